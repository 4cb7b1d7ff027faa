//! Preflight: what a host must have before berth changes anything, judged against
//! what a probe found there.
//!
//! Pure. [`spec`] turns the manifest's `[preflight]` and berth's own needs into a
//! [`Spec`] of concrete paths and numbers; `berth-host` probes the machine for what
//! the spec asks ([`Host`]); [`evaluate`] gives one [`Check`] per question, each
//! `pass`, `warn` or `fail` with what was found, what was wanted, and the fix. `up`
//! and `upgrade` stop on a failure before they change anything; `berth preflight`
//! prints the whole report.

mod evaluate;
mod spec;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use evaluate::evaluate;
pub use spec::{BERTH_STATE_MIN, BERTH_STATE_RECOMMENDED, spec};

/// A level a check can end at, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Met.
    Pass,
    /// Not what is recommended, or could not be told: said, and not a reason to stop.
    Warn,
    /// Not met: `up` and `upgrade` stop before changing anything.
    Fail,
}

impl Status {
    /// `pass`, `warn`, `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }
}

/// What a check that is not met ends at (the manifest's `fail`, `warn`, `off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Fail.
    Fail,
    /// Warn.
    Warn,
    /// Not checked.
    Off,
}

/// A lower bound that fails and one that warns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Below it: fail.
    pub min: Option<u64>,
    /// Below it: warn.
    pub recommended: Option<u64>,
}

impl Limits {
    /// Whether there is anything to check.
    pub fn is_empty(&self) -> bool {
        self.min.is_none() && self.recommended.is_none()
    }
}

/// Free space wanted where a directory lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSpec {
    /// How the report names it: the manifest's `path` (`data/postgresql`), or
    /// `berth state` for berth's own.
    pub name: String,
    /// The directory (it may not exist yet: the probe measures its nearest existing
    /// parent, the filesystem it will be on).
    pub path: PathBuf,
    /// The free space wanted, in bytes.
    pub limits: Limits,
}

/// Everything to check, with concrete paths and numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// CPUs.
    pub cpus: Limits,
    /// Memory, in bytes.
    pub memory: Limits,
    /// Free space per directory (several may share a filesystem: each is checked
    /// alone, as the manifest wrote them).
    pub disks: Vec<DiskSpec>,
    /// The oldest kernel release.
    pub kernel: Option<String>,
    /// Supported distributions (`debian 12`, `debian`); empty: any.
    pub distributions: Vec<String>,
    /// What another distribution gets.
    pub other_distributions: Option<Level>,
    /// Programs: names looked up on `PATH`, or absolute paths.
    pub binaries: Vec<String>,
    /// What an unsynchronised clock gets.
    pub clock_sync: Option<Level>,
    /// Packages and the oldest version of each.
    pub packages: BTreeMap<String, String>,
}

/// A directory's filesystem, as measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskFound {
    /// The directory measured (the spec's, or its nearest existing parent).
    pub measured: PathBuf,
    /// Bytes an unprivileged writer may still use.
    pub free: u64,
    /// The filesystem's size.
    pub total: u64,
}

/// A package, as the package manager knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "version")]
pub enum PackageFound {
    /// Installed, at this version.
    Installed(String),
    /// Not installed; the package manager would install this version.
    Candidate(String),
    /// Neither installed nor available from the configured repositories.
    Unavailable,
}

/// An address a service will listen on, and whether it is free.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortFound {
    /// The service.
    pub service: String,
    /// `127.0.0.1:8080`.
    pub address: String,
    /// Why it cannot be bound, when it cannot (another program holds it).
    pub taken: Option<String>,
}

/// What the probe found, for one [`Spec`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// CPUs berth may use.
    pub cpus: u64,
    /// Memory the instance has, in bytes.
    pub memory_bytes: u64,
    /// By the spec's directory; an error text where it could not be measured.
    pub disks: BTreeMap<PathBuf, Result<DiskFound, String>>,
    /// `uname -r`.
    pub kernel: String,
    /// `ID` of `/etc/os-release`.
    pub os_id: String,
    /// `VERSION_ID` of `/etc/os-release`.
    pub os_version: String,
    /// By the spec's program: where it was found.
    pub binaries: BTreeMap<String, Option<PathBuf>>,
    /// Whether the kernel says the clock is synchronised; `None`: it could not be told.
    pub clock_synced: Option<bool>,
    /// By the spec's package.
    pub packages: BTreeMap<String, PackageFound>,
    /// The addresses the services will listen on (berth's own check), when known.
    pub ports: Vec<PortFound>,
}

/// One answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What was checked: `cpus`, `memory`, `disk data/postgresql`, `kernel`,
    /// `distribution`, `binary rsync`, `clock`, `package postgresql-15`,
    /// `port 127.0.0.1:5432`.
    pub name: String,
    /// The verdict.
    pub status: Status,
    /// What the host has.
    pub found: String,
    /// What is wanted (empty when nothing is asked beyond being there).
    pub wanted: String,
    /// What to do, for anything but a pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Every answer, in a fixed order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The checks.
    pub checks: Vec<Check>,
}

impl Report {
    /// The worst verdict (`pass` for no checks).
    pub fn worst(&self) -> Status {
        self.checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Pass)
    }

    /// The checks at `status`.
    pub fn with(&self, status: Status) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(move |c| c.status == status)
    }

    /// `3 passed, 1 warning, 1 failed`.
    pub fn summary(&self) -> String {
        let n = |s| self.with(s).count();
        let (w, f) = (n(Status::Warn), n(Status::Fail));
        format!(
            "{} passed, {w} warning{}, {f} failed",
            n(Status::Pass),
            if w == 1 { "" } else { "s" }
        )
    }

    /// One line per check, its fix under it: what `berth preflight` prints, and what
    /// `up` prints for the checks that stop it.
    pub fn lines<'a>(checks: impl IntoIterator<Item = &'a Check>) -> String {
        let checks: Vec<&Check> = checks.into_iter().collect();
        let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let mut out = String::new();
        for c in checks {
            let wanted = if c.wanted.is_empty() {
                String::new()
            } else {
                format!(" (wanted: {})", c.wanted)
            };
            let _ = writeln!(
                out,
                "  {}  {:width$}  {}{wanted}",
                c.status.as_str(),
                c.name,
                c.found
            );
            if let Some(fix) = &c.fix {
                let _ = writeln!(out, "        {:width$}  fix: {fix}", "");
            }
        }
        out
    }
}

/// `15.6 GiB`, `512 MiB`, `300 kB`: a measured size, rounded for people.
pub fn human_size(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)] // one decimal shown
    let b = bytes as f64;
    for (factor, unit) in [(1u64 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB")] {
        #[allow(clippy::cast_precision_loss)]
        let f = factor as f64;
        if b >= f {
            let v = b / f;
            return if (v - v.round()).abs() < 0.05 {
                format!("{v:.0} {unit}")
            } else {
                format!("{v:.1} {unit}")
            };
        }
    }
    if bytes >= 1024 {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}
