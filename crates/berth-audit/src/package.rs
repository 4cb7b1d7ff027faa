//! What is installed: a package's ecosystem, name and version, as an SBOM names it.
//!
//! The version is parsed when the package is made (PEP 440 for PyPI, SemVer for
//! crates), so a scan never meets a version it cannot compare: an unusable version is
//! the caller's error, reported with the package it belongs to.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::AuditError;

/// A package ecosystem the advisory data covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Ecosystem {
    /// Python distributions (PyPI); versions are PEP 440, names compare per PEP 503.
    PyPI,
    /// Rust crates (crates.io); versions are SemVer, names compare exactly.
    CratesIo,
}

impl Ecosystem {
    /// The name OSV gives the ecosystem (`PyPI`, `crates.io`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PyPI => "PyPI",
            Self::CratesIo => "crates.io",
        }
    }

    /// The name in the form the advisory data compares it: PEP 503 for PyPI (lowercase,
    /// each run of `-`, `_`, `.` becomes one `-`), as given for crates.
    pub fn normalize_name(self, name: &str) -> String {
        match self {
            Self::PyPI => normalize_pypi_name(name),
            Self::CratesIo => name.to_owned(),
        }
    }
}

impl fmt::Display for Ecosystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A PyPI project name normalized per PEP 503: `Foo.Bar__baz` → `foo-bar-baz`.
pub fn normalize_pypi_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_separator_run = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_separator_run {
                out.push('-');
            }
            in_separator_run = true;
        } else {
            out.extend(c.to_lowercase());
            in_separator_run = false;
        }
    }
    out
}

/// A parsed version, in its ecosystem's ordering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParsedVersion {
    Pep440(pep440_rs::Version),
    Semver(semver::Version),
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    ecosystem: Ecosystem,
    name: String,
    version: String,
    parsed: ParsedVersion,
}

impl Package {
    /// A package; fails when `version` is not a version of the ecosystem (PEP 440 for
    /// PyPI, SemVer for crates) or `name` is empty.
    pub fn new(ecosystem: Ecosystem, name: &str, version: &str) -> Result<Self, AuditError> {
        let bad = |why: String| AuditError::Package {
            what: format!(
                "{ecosystem} package `{name}` version `{version}`: {why}; \
                 give the version exactly as installed"
            ),
        };
        if name.trim().is_empty() {
            return Err(bad("the name is empty".to_owned()));
        }
        let parsed = match ecosystem {
            Ecosystem::PyPI => pep440_rs::Version::from_str(version)
                .map(ParsedVersion::Pep440)
                .map_err(|e| bad(format!("not a PEP 440 version ({e})")))?,
            Ecosystem::CratesIo => semver::Version::parse(version)
                .map(ParsedVersion::Semver)
                .map_err(|e| bad(format!("not a SemVer version ({e})")))?,
        };
        Ok(Self {
            ecosystem,
            name: name.to_owned(),
            version: version.to_owned(),
            parsed,
        })
    }

    /// A package from a package URL (`pkg:pypi/django@4.2.1`, `pkg:cargo/serde@1.0.0`),
    /// as an SBOM gives it. `Ok(None)` for a purl type the advisory data does not cover
    /// (`pkg:deb/…`, `pkg:npm/…`), which the caller skips; an error for a purl that is
    /// malformed or has no version.
    pub fn from_purl(purl: &str) -> Result<Option<Self>, AuditError> {
        let bad = |why: &str| AuditError::Package {
            what: format!("package URL `{purl}`: {why}"),
        };
        let rest = purl
            .strip_prefix("pkg:")
            .ok_or_else(|| bad("does not start with `pkg:`"))?;
        // Qualifiers (`?…`) and a subpath (`#…`) say nothing about the version.
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let (kind, rest) = rest
            .split_once('/')
            .ok_or_else(|| bad("has no `type/name`"))?;
        let ecosystem = match kind.to_ascii_lowercase().as_str() {
            "pypi" => Ecosystem::PyPI,
            "cargo" => Ecosystem::CratesIo,
            _ => return Ok(None),
        };
        let (name, version) = rest
            .rsplit_once('@')
            .ok_or_else(|| bad("has no `@version`: the SBOM must name installed versions"))?;
        // A pypi or cargo purl has no namespace; the name is the last segment.
        let name = percent_decode(name.rsplit('/').next().unwrap_or(name));
        let version = percent_decode(version);
        if name.is_empty() || version.is_empty() {
            return Err(bad("has an empty name or version"));
        }
        Self::new(ecosystem, &name, &version).map(Some)
    }

    /// The ecosystem.
    pub fn ecosystem(&self) -> Ecosystem {
        self.ecosystem
    }

    /// The name as given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version as given.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The name the advisory data is keyed by ([`Ecosystem::normalize_name`]).
    pub fn normalized_name(&self) -> String {
        self.ecosystem.normalize_name(&self.name)
    }

    pub(crate) fn parsed(&self) -> &ParsedVersion {
        &self.parsed
    }
}

/// `%XX` escapes decoded; anything malformed is kept as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pep503_normalization() {
        assert_eq!(normalize_pypi_name("Django"), "django");
        assert_eq!(normalize_pypi_name("PyYAML"), "pyyaml");
        assert_eq!(normalize_pypi_name("zope.interface"), "zope-interface");
        assert_eq!(normalize_pypi_name("Foo.-_Bar__baz"), "foo-bar-baz");
        assert_eq!(normalize_pypi_name("jinja2"), "jinja2");
        assert_eq!(
            Ecosystem::CratesIo.normalize_name("Serde_json"),
            "Serde_json"
        );
    }

    #[test]
    fn purls() {
        let p = Package::from_purl("pkg:pypi/django@4.2.1")
            .unwrap()
            .unwrap();
        assert_eq!(
            (p.ecosystem(), p.name(), p.version()),
            (Ecosystem::PyPI, "django", "4.2.1")
        );
        let p = Package::from_purl("pkg:cargo/serde@1.0.0?foo=bar")
            .unwrap()
            .unwrap();
        assert_eq!(
            (p.ecosystem(), p.name(), p.version()),
            (Ecosystem::CratesIo, "serde", "1.0.0")
        );
        let p = Package::from_purl("pkg:pypi/zope.interface@5.0%2Blocal")
            .unwrap()
            .unwrap();
        assert_eq!(p.version(), "5.0+local");
        assert!(
            Package::from_purl("pkg:deb/debian/curl@7.0")
                .unwrap()
                .is_none()
        );
        assert!(
            Package::from_purl("pkg:npm/%40scope/x@1.0.0")
                .unwrap()
                .is_none()
        );
        assert!(Package::from_purl("pypi/django@1.0").is_err());
        assert!(Package::from_purl("pkg:pypi/django").is_err());
        assert!(Package::from_purl("pkg:cargo/serde@not-a-version").is_err());
    }

    #[test]
    fn versions_are_checked() {
        assert!(Package::new(Ecosystem::PyPI, "django", "3.2.0rc1").is_ok());
        assert!(Package::new(Ecosystem::PyPI, "django", "three").is_err());
        assert!(Package::new(Ecosystem::CratesIo, "serde", "1.0").is_err());
        assert!(Package::new(Ecosystem::CratesIo, "", "1.0.0").is_err());
    }
}
