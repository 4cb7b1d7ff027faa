//! What an advisory is, once read: the fields a scan reports, and which versions it
//! covers in its own database's terms ([`crate::osv_range`], [`crate::rustsec_req`]).
//!
//! The parsers ([`crate::osv`], [`crate::rustsec`]) make these, the database
//! ([`crate::db`]) keeps and indexes them, and a scan reads them.

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::Ecosystem;
use crate::osv_range::OsvAffected;
use crate::severity::Cvss;

/// Whether an advisory reports a vulnerability, or only informs (RustSec's
/// `informational`: `unmaintained`, `unsound`, `notice`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A vulnerability.
    Vulnerability,
    /// Not a vulnerability: what kind of notice (`unmaintained`, `unsound`, …).
    Informational(String),
}

/// One advisory about one package, with what a scan reports of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advisory {
    /// `PYSEC-…`, `RUSTSEC-…`.
    pub id: String,
    /// Other ids of the same issue (`CVE-…`, `GHSA-…`).
    pub aliases: Vec<String>,
    /// The package's ecosystem.
    pub ecosystem: Ecosystem,
    /// The package, as [`Ecosystem::normalize_name`] gives it.
    pub package: String,
    /// One line on what is wrong.
    pub title: String,
    /// Where to read more.
    pub url: Option<String>,
    /// Vulnerability or informational.
    pub kind: Kind,
    /// The CVSS vector and score, when the advisory has one that can be scored.
    pub cvss: Option<Cvss>,
    /// When the advisory was last modified (PyPA) or dated (RustSec).
    pub date: Option<Date>,
    pub(crate) affected: Affected,
}

/// Which versions an advisory covers, in its database's terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Affected {
    /// OSV `affected` entries for this package (any one that matches counts).
    Osv(Vec<OsvAffected>),
    /// RustSec: every version but those matching a requirement here.
    RustSec {
        patched: Vec<String>,
        unaffected: Vec<String>,
    },
}

/// The date at the start of an RFC 3339 timestamp (`2024-01-03T22:31:36Z`).
pub(crate) fn date_prefix(s: &str) -> Option<Date> {
    s.get(..10)?.parse().ok()
}
