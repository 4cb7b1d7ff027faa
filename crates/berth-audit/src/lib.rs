//! Offline advisory scanning: which installed packages have known vulnerabilities,
//! from advisory data on disk, and whether that fails an audit.
//!
//! An app's SBOM names what it installs (PyPI distributions, crates); this crate
//! matches those against the PyPA advisory database (OSV YAML) and the RustSec
//! advisory database, without the network, so an audit gives the same answer on an
//! air-gapped host as in CI, for the snapshot it was given.
//!
//! - [`Package`]: what is installed (also from a purl, as the SBOM writes it);
//! - [`AdvisoryDb`]: a snapshot read from its folder ([`AdvisoryDb::load`]), or the
//!   compact index made of it ([`AdvisoryDb::write_index`], [`AdvisoryDb::open_index`]);
//! - [`scan`]: the [`Finding`]s, with fixed versions, severity and kind;
//! - [`Severity`], [`Cvss`]: CVSS base scores and their rating;
//! - [`Policy`], [`evaluate`]: the threshold and the ignore list (each entry with a
//!   reason and an expiry), giving a [`Verdict`].
//!
//! Versions compare as their ecosystem says: PEP 440 for PyPI (`pep440_rs`), SemVer
//! for crates. Matching is pure; only [`AdvisoryDb::load`], [`AdvisoryDb::open_index`]
//! and [`AdvisoryDb::write_index`] touch the disk.

mod advisory;
mod db;
mod osv;
mod osv_range;
mod package;
mod policy;
mod rustsec;
mod rustsec_req;
mod scan;
mod severity;

use std::path::PathBuf;

pub use advisory::{Advisory, Kind};
pub use db::{AdvisoryDb, Source, SourceInfo};
pub use package::{Ecosystem, Package, normalize_pypi_name};
pub use policy::{IgnoreEntry, Ignored, Policy, Verdict, evaluate};
pub use scan::{Finding, scan};
pub use severity::{Cvss, Severity, base_score_v3};

/// Advisory data, a package or a policy is unusable.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A package (or purl) is malformed.
    #[error("{what}")]
    Package {
        /// What is wrong and what to do.
        what: String,
    },
    /// The folder given is not an advisory snapshot.
    #[error("{what}")]
    Layout {
        /// What is wrong and what to do.
        what: String,
    },
    /// One advisory file could not be parsed.
    #[error(
        "`{}`{}: {what}; the advisory snapshot is damaged or newer than this berth reads: \
         replace it with an intact copy",
        file.display(),
        line.map(|l| format!(":{l}")).unwrap_or_default()
    )]
    Parse {
        /// The file.
        file: PathBuf,
        /// The line, from 1, when known.
        line: Option<usize>,
        /// What is wrong.
        what: String,
    },
    /// Advisory files could not be parsed; nothing was loaded.
    #[error(
        "{total} advisory file(s) could not be read, so the snapshot was not loaded:\n{}",
        list_errors(first, *total)
    )]
    Damaged {
        /// How many files failed.
        total: usize,
        /// The first few errors.
        first: Vec<AuditError>,
    },
    /// The advisory index is unusable.
    #[error(
        "The advisory index `{}` {what}: rebuild it from a snapshot (`berth audit --update-from DIR`)",
        path.display()
    )]
    Index {
        /// The index file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The policy is malformed.
    #[error(
        "audit policy{}: {what}",
        line.map(|l| format!(", line {l}")).unwrap_or_default()
    )]
    Policy {
        /// The line, from 1, when known.
        line: Option<usize>,
        /// What is wrong and what to do.
        what: String,
    },
    /// A file could not be written safely.
    #[error(transparent)]
    Host(#[from] berth_host::HostError),
    /// A file or folder could not be read.
    #[error("Failed to {action} `{}`: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The errors one per line, then how many more there were.
fn list_errors(first: &[AuditError], total: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for e in first {
        let _ = writeln!(out, "  - {e}");
    }
    if total > first.len() {
        let _ = writeln!(out, "  and {} more", total - first.len());
    }
    out
}

impl AuditError {
    /// An I/O error on `path` while doing `action`.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }

    /// An index error with its file named.
    fn at(self, file: &std::path::Path) -> Self {
        match self {
            Self::Index { what, .. } => Self::Index {
                path: file.to_path_buf(),
                what,
            },
            e => e,
        }
    }
}
