//! Private working directories of one berth process under an instance's `tmp/`, and
//! the sweep that removes those an interrupted process left.
//!
//! A staging directory is named `<label>-<unix seconds>-<pid>`: what it is for, when
//! it was made and by which process. A process killed outright (`SIGKILL`, power
//! loss) removes nothing; the next one finds its directories by name and removes each
//! whose process is gone, by descriptors (what a service user left inside, symlinks
//! included, is removed, never followed).
//!
//! ```no_run
//! # fn demo() -> berth_host::Result<()> {
//! use berth_host::{beneath::SafeDir, staging};
//! let tmp = SafeDir::open_trusted("/var/opt/app/tmp".as_ref())?;
//! for gone in staging::sweep(&tmp, &["backup", "dump"])? {
//!     eprintln!("removed `{}`, left by pid {}", gone.name, gone.pid);
//! }
//! let name = staging::StagingName::new("backup").to_string();
//! tmp.create_dir(name.as_ref(), 0o700, None)?;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::path::Path;

use crate::Result;
use crate::beneath::SafeDir;

/// The name of a staging directory: `<label>-<unix seconds>-<pid>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagingName {
    /// What it is for, e.g. `backup` or `dump` (no `-`).
    pub label: String,
    /// When it was made, in Unix seconds.
    pub created: i64,
    /// The process that made it.
    pub pid: u32,
}

impl StagingName {
    /// A name for a directory this process makes now.
    pub fn new(label: &str) -> Self {
        Self {
            label: label.to_owned(),
            created: unix_now(),
            pid: std::process::id(),
        }
    }

    /// Reads a name made by [`StagingName::new`]; `None` for any other name.
    pub fn parse(name: &str) -> Option<Self> {
        let mut parts = name.rsplitn(3, '-');
        let pid = parts.next()?.parse().ok()?;
        let created = parts.next()?.parse().ok()?;
        let label = parts.next()?;
        if label.is_empty() || label.contains('-') {
            return None;
        }
        Some(Self {
            label: label.to_owned(),
            created,
            pid,
        })
    }

    /// Whether the process that made the directory may still be using it: `pid` is
    /// alive, runs the same program as this process (by name), and started no later
    /// than the directory was made (else the pid was reused).
    pub fn owner_alive(&self) -> bool {
        if self.pid == std::process::id() {
            return true;
        }
        let Some(process) = Process::read(self.pid) else {
            return false;
        };
        let Some(me) = Process::read(std::process::id()) else {
            // Cannot tell: keep the directory rather than guess.
            return true;
        };
        // One second of slack: the directory's time is whole seconds.
        process.comm == me.comm && process.started.is_none_or(|s| s <= self.created + 1)
    }
}

impl fmt::Display for StagingName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.label, self.created, self.pid)
    }
}

/// A staging directory [`sweep`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swept {
    /// Its name in `tmp/`.
    pub name: String,
    /// The process that made it and is gone.
    pub pid: u32,
    /// What it was for.
    pub label: String,
}

/// The directories in `tmp` named like a [`StagingName`] with one of `labels` whose
/// process is gone ([`StagingName::owner_alive`]), by name. Anything else in `tmp`
/// (other names, files, a live process's directories) is not listed.
pub fn abandoned(tmp: &SafeDir, labels: &[&str]) -> Result<Vec<StagingName>> {
    let mut found = Vec::new();
    let mut names: Vec<String> = tmp
        .names()?
        .into_iter()
        .filter_map(|n| n.into_string().ok())
        .collect();
    names.sort();
    for name in names {
        let Some(staging) = StagingName::parse(&name) else {
            continue;
        };
        if !labels.contains(&staging.label.as_str()) || staging.owner_alive() {
            continue;
        }
        if tmp
            .stat(Path::new(&name))?
            .is_some_and(|stat| stat.is_dir())
        {
            found.push(staging);
        }
    }
    Ok(found)
}

/// Removes the [`abandoned`] directories in `tmp`, by descriptors; returns those removed.
pub fn sweep(tmp: &SafeDir, labels: &[&str]) -> Result<Vec<Swept>> {
    let mut swept = Vec::new();
    for staging in abandoned(tmp, labels)? {
        let name = staging.to_string();
        if tmp.remove_tree(Path::new(&name))? {
            swept.push(Swept {
                name,
                pid: staging.pid,
                label: staging.label,
            });
        }
    }
    Ok(swept)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// What `/proc` says about a process.
struct Process {
    /// Its program name (`comm`).
    comm: String,
    /// When it started, in Unix seconds, if that can be worked out.
    started: Option<i64>,
}

impl Process {
    fn read(pid: u32) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // `pid (comm) state ...`: the name may hold spaces and parentheses.
        let (head, rest) = stat.rsplit_once(") ")?;
        let comm = head.split_once(" (")?.1.to_owned();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z") {
            return None;
        }
        // Field 22 of the whole line is the start time, in clock ticks after boot;
        // `rest` starts at field 3.
        let ticks: i64 = fields.get(19)?.parse().ok()?;
        Some(Self {
            comm,
            started: boot_time()
                .zip(ticks_per_second())
                .map(|(boot, hz)| boot + ticks / hz),
        })
    }
}

fn boot_time() -> Option<i64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

fn ticks_per_second() -> Option<i64> {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|hz| *hz > 0)
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn names_round_trip_and_others_are_not_staging() {
        let name = StagingName::new("dump");
        assert_eq!(StagingName::parse(&name.to_string()), Some(name.clone()));
        assert_eq!(name.pid, std::process::id());
        assert_eq!(
            StagingName::parse("backup-1700000000-42"),
            Some(StagingName {
                label: "backup".into(),
                created: 1_700_000_000,
                pid: 42
            })
        );
        for other in [
            "restore-7f3a",
            "backup-x-42",
            "backup-1-",
            "-1-2",
            "a-b-1-2",
            "restore.json",
        ] {
            assert_eq!(StagingName::parse(other), None, "{other}");
        }
    }

    /// Run by [`owners_alive_dead_reused_and_other_programs`] as a second process of
    /// this program: waits until its stdin closes.
    #[test]
    #[ignore = "a helper process, started by another test"]
    fn a_sibling_that_waits() {
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
    }

    #[test]
    fn owners_alive_dead_reused_and_other_programs() {
        assert!(StagingName::new("backup").owner_alive());

        // Another program under the pid: the owner is gone.
        let mut other = Command::new("sleep").arg("30").spawn().unwrap();
        let by_other = StagingName {
            label: "backup".into(),
            created: unix_now(),
            pid: other.id(),
        };
        assert!(!by_other.owner_alive());
        other.kill().unwrap();
        other.wait().unwrap();
        // A dead pid.
        assert!(!by_other.owner_alive());

        // The same program: alive if it started before the directory was made.
        let mut sibling = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "staging::tests::a_sibling_that_waits",
                "--ignored",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = Process::read(sibling.id()).unwrap().started.unwrap();
        let mut by_sibling = StagingName {
            label: "dump".into(),
            created: unix_now(),
            pid: sibling.id(),
        };
        assert!(by_sibling.owner_alive());
        // Made a minute before that process started: the pid was reused.
        by_sibling.created = started - 60;
        assert!(!by_sibling.owner_alive());
        drop(sibling.stdin.take());
        sibling.wait().unwrap();
    }

    #[test]
    fn sweep_removes_only_what_a_gone_process_left() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = SafeDir::open_trusted(dir.path()).unwrap();
        let mut child = Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let gone = format!("backup-{}-{dead}", unix_now());
        let gone_dump = format!("dump-{}-{dead}", unix_now());
        let mine = StagingName::new("backup").to_string();
        let other_label = format!("fetch-{}-{dead}", unix_now());
        for name in [
            &gone,
            &gone_dump,
            &mine,
            &other_label,
            &"restore-abc".to_owned(),
        ] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        // What a database user left in its dump: a file and a link to something of root's.
        std::fs::create_dir(dir.path().join(&gone_dump).join("db")).unwrap();
        std::fs::write(dir.path().join(&gone_dump).join("db/toc.dat"), "x").unwrap();
        let precious = dir.path().join("precious");
        std::fs::write(&precious, "keep").unwrap();
        std::os::unix::fs::symlink(&precious, dir.path().join(&gone_dump).join("db/link")).unwrap();
        // A file by a staging name is not a staging directory.
        let file = format!("backup-{}-{dead}.partial", unix_now());
        std::fs::write(dir.path().join(&file), "").unwrap();

        let swept = sweep(&tmp, &["backup", "dump"]).unwrap();
        let names: Vec<&str> = swept.iter().map(|s| s.name.as_str()).collect();
        let mut expected = vec![gone.as_str(), gone_dump.as_str()];
        expected.sort_unstable();
        assert_eq!(names, expected);
        assert!(swept.iter().all(|s| s.pid == dead));
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut kept = vec![
            mine,
            other_label,
            "restore-abc".to_owned(),
            "precious".to_owned(),
            file,
        ];
        kept.sort();
        assert_eq!(left, kept);
        assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep");
        // Nothing more to do the second time.
        assert!(sweep(&tmp, &["backup", "dump"]).unwrap().is_empty());
    }
}
