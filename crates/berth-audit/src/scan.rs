//! Matching installed packages against the advisories.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::advisory::{Affected, Kind};
use crate::package::ParsedVersion;
use crate::severity::{Cvss, Severity};
use crate::{AdvisoryDb, Ecosystem, Package};

/// An advisory that applies to an installed package.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The advisory (`PYSEC-…`, `RUSTSEC-…`).
    pub id: String,
    /// Other ids of the same issue (`CVE-…`, `GHSA-…`).
    pub aliases: Vec<String>,
    /// The package's ecosystem.
    pub ecosystem: Ecosystem,
    /// The package, as the caller named it.
    pub package: String,
    /// The installed version.
    pub version: String,
    /// Where the fix is. PyPI: the fixed versions above the installed one, lowest
    /// first (upgrade to the first); empty when no fix is known. crates.io: the
    /// `patched` requirements as the advisory writes them (`>= 1.2.3, < 1.3.0`).
    pub fixed: Vec<String>,
    /// The rating of the CVSS score; `Unknown` without one.
    pub severity: Severity,
    /// The CVSS vector and base score, when known.
    pub cvss: Option<Cvss>,
    /// One line on what is wrong.
    pub title: String,
    /// Where to read more.
    pub url: Option<String>,
    /// Vulnerability, or informational (unmaintained, unsound).
    pub kind: Kind,
}

impl Finding {
    /// Whether this is a vulnerability (not an informational notice).
    pub fn is_vulnerability(&self) -> bool {
        self.kind == Kind::Vulnerability
    }

    /// Whether `id` names this finding: its advisory id or one of its aliases.
    pub fn is_named(&self, id: &str) -> bool {
        self.id.eq_ignore_ascii_case(id) || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(id))
    }
}

/// The advisories that apply to `packages`, vulnerabilities and informational notices
/// alike ([`Finding::kind`]), ordered by package name, version, then advisory id.
/// A package listed twice is reported once.
pub fn scan(db: &AdvisoryDb, packages: &[Package]) -> Vec<Finding> {
    let mut seen = BTreeSet::new();
    let mut findings = Vec::new();
    for package in packages {
        if !seen.insert((
            package.ecosystem(),
            package.normalized_name(),
            package.version(),
        )) {
            continue;
        }
        for advisory in db.for_package(package.ecosystem(), package.name()) {
            let fixed = match (&advisory.affected, package.parsed()) {
                (Affected::Osv(entries), ParsedVersion::Pep440(v)) => {
                    if !entries.iter().any(|e| e.affects(v)) {
                        continue;
                    }
                    let mut fixed: Vec<_> = entries.iter().flat_map(|e| e.fixed_above(v)).collect();
                    fixed.sort();
                    fixed.dedup();
                    fixed.iter().map(ToString::to_string).collect()
                }
                (
                    Affected::RustSec {
                        patched,
                        unaffected,
                    },
                    ParsedVersion::Semver(v),
                ) => {
                    if !crate::rustsec_req::affects(patched, unaffected, v) {
                        continue;
                    }
                    patched.clone()
                }
                // An advisory of one ecosystem is filed under that ecosystem only.
                _ => continue,
            };
            findings.push(Finding {
                id: advisory.id.clone(),
                aliases: advisory.aliases.clone(),
                ecosystem: package.ecosystem(),
                package: package.name().to_owned(),
                version: package.version().to_owned(),
                fixed,
                severity: advisory
                    .cvss
                    .as_ref()
                    .map_or(Severity::Unknown, Cvss::severity),
                cvss: advisory.cvss.clone(),
                title: advisory.title.clone(),
                url: advisory.url.clone(),
                kind: advisory.kind.clone(),
            });
        }
    }
    findings.sort_by(|a, b| {
        let key = |f: &Finding| {
            (
                f.ecosystem.normalize_name(&f.package),
                f.ecosystem,
                f.version.clone(),
                f.id.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    findings
}
