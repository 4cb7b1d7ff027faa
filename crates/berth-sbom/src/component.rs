//! The parts of a bill of materials, before it is written in a format: what it
//! describes, its components, their kinds, hashes and package URLs.

use std::fmt::Write as _;

use crate::licence::Licence;
use crate::python;

/// The thing a bill of materials describes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Subject {
    /// The app's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its one-line summary.
    pub summary: Option<String>,
}

/// What kind of component (CycloneDX's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A program that runs (berth, the interpreter).
    Application,
    /// A library (a Python distribution, a crate).
    Library,
}

/// A checksum of a component's artifact.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Hash {
    /// `SHA-256`, as CycloneDX names it.
    pub alg: &'static str,
    /// Lower-case hex.
    pub value: String,
}

/// One component.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Component {
    /// Its kind.
    pub kind: Kind,
    /// Its name as its ecosystem spells it.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its package URL (`pkg:pypi/django@5.1.2`).
    pub purl: String,
    /// Its licence.
    pub licence: Licence,
    /// Checksums, when the artifact is known.
    pub hashes: Vec<Hash>,
    /// Its summary.
    pub summary: Option<String>,
    /// Its home page.
    pub homepage: Option<String>,
    /// Its author.
    pub author: Option<String>,
    /// The bundled component it is part of (`payload/<name>/`), if any.
    pub within: Option<String>,
    /// Who supplies it, as `Name <address>` (a Debian package's maintainer).
    pub supplier: Option<String>,
    /// The package URL of the source it is built from (a Debian source package:
    /// `pkg:deb/debian/postgresql-15@15.13-0%2Bdeb12u1?arch=source&distro=debian-12`).
    pub source: Option<String>,
}

impl Component {
    /// A reference unique in one document: the package URL, qualified by the bundled
    /// component it is in (two virtualenvs may hold the same distribution).
    pub fn bom_ref(&self) -> String {
        match &self.within {
            Some(w) => format!("{w}/{}", self.purl),
            None => self.purl.clone(),
        }
    }
}

/// `Name <address>` (a Debian `Maintainer:`) as its name and address; text without an
/// address in angle brackets is all name.
pub fn name_and_address(s: &str) -> (&str, Option<&str>) {
    if let Some((name, rest)) = s.split_once('<')
        && let Some(addr) = rest.strip_suffix('>')
        && addr.contains('@')
        && !name.trim().is_empty()
    {
        return (name.trim(), Some(addr.trim()));
    }
    (s.trim(), None)
}

/// A bill of materials, before it is written in a format.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Inventory {
    /// What it describes.
    pub subject: Subject,
    /// When it was made (the build's `SOURCE_DATE_EPOCH`).
    pub created: u64,
    /// The berth that made it (`berth-0.1.0`).
    pub tool_version: String,
    /// Everything in it, sorted by (within, name, version).
    pub components: Vec<Component>,
}

/// Characters a purl keeps as they are in a name or version; the rest are
/// percent-encoded.
fn purl_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The package URL of a PyPI distribution (name normalized, as the purl spec says).
pub fn pypi_purl(name: &str, version: &str) -> String {
    format!(
        "pkg:pypi/{}@{}",
        purl_escape(&python::normalize(name)),
        purl_escape(version)
    )
}

/// The package URL of a crate.
pub fn cargo_purl(name: &str, version: &str) -> String {
    format!("pkg:cargo/{}@{}", purl_escape(name), purl_escape(version))
}

/// The package URL of something no package manager names.
pub fn generic_purl(name: &str, version: &str) -> String {
    format!("pkg:generic/{}@{}", purl_escape(name), purl_escape(version))
}
