//! The children of lifecycle steps (hooks, Python builds, database tools), recorded
//! while they run so that what a killed berth left running can be stopped by the
//! next berth command before it touches the same files.
//!
//! Each child leads its own process group and dies with berth
//! ([`ChildCommand::die_with_parent`](berth_process::ChildCommand::die_with_parent)),
//! but what it started itself (initdb's bootstrap `postgres`, a compiler under pip)
//! does not inherit that. So before waiting on a child, berth writes one small file
//! per process group into the records directory (`<prefix>/state/children/`, root's,
//! 0700): the group id, its leader's start time and the boot id
//! ([`ProcessGroup`]), and what it is for. The file goes when the child has been
//! waited for. A file still there belongs to an interrupted run:
//! [`ChildRecords::stop_leftovers`] kills each such group that is still alive
//! (`SIGKILL` to the whole group, never a recycled pid) and waits until it is gone.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use berth_process::{Killed, ProcessGroup, ProcessStamp};

use crate::{HostError, Result, fsutil};

/// How long a killed group may take to disappear.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// The records directory of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildRecords {
    dir: PathBuf,
}

/// A group a killed berth left running, as [`ChildRecords::stop_leftovers`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// What the child was for (`hook initdb`, `pip install` ...).
    pub what: String,
    /// Its process group.
    pub pgid: u32,
    /// Whether something of it was still alive and has been killed (else it had ended).
    pub killed: bool,
}

/// A child's record; dropping it removes the file (the child has been waited for).
#[derive(Debug)]
#[must_use = "the record is removed when this is dropped"]
pub struct Recorded {
    path: PathBuf,
}

impl Drop for Recorded {
    fn drop(&mut self) {
        // A record left behind names a group that is gone: the next run drops it quietly.
        let _ = std::fs::remove_file(&self.path);
    }
}

impl ChildRecords {
    /// The records kept in `dir` (created on first use).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The records directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Start `cmd` (prepared by [`berth_process::ChildCommand`], so it leads its own
    /// process group) and record its group before returning it. If the record cannot
    /// be written, the child is killed: nothing runs unrecorded.
    pub fn spawn(&self, cmd: &mut Command, what: &str) -> Result<(Child, Recorded)> {
        let mut child = cmd.spawn().map_err(|source| HostError::Spawn {
            program: cmd.get_program().to_string_lossy().into_owned(),
            source,
        })?;
        let recorded = ProcessGroup::led_by(child.id())
            .map_err(|source| HostError::Read {
                path: PathBuf::from(format!("/proc/{}/stat", child.id())),
                source,
            })
            .and_then(|group| self.record(&group, what));
        match recorded {
            Ok(recorded) => Ok((child, recorded)),
            Err(e) => {
                if let Ok(pgid) = i32::try_from(child.id()) {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pgid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// Record `group`, started by this process for `what`.
    pub fn record(&self, group: &ProcessGroup, what: &str) -> Result<Recorded> {
        let owner = ProcessStamp::current().map_err(|source| HostError::Read {
            path: PathBuf::from("/proc/self/stat"),
            source,
        })?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|source| HostError::CreateDir {
                path: self.dir.clone(),
                source,
            })?;
        let path = self
            .dir
            .join(format!("{}-{}", group.pgid, group.start_time));
        // One line, whatever `what` holds.
        let what = what.replace(['\n', '\r'], " ");
        let text = format!(
            "{} {} {} {} {}\n{what}\n",
            group.pgid, group.start_time, group.boot_id, owner.pid, owner.start_time
        );
        fsutil::write_atomic(&path, text.as_bytes(), 0o600, None)?;
        Ok(Recorded { path })
    }

    /// Kill every recorded group whose berth process has ended (killed, crashed) and
    /// that is still alive, wait until it is gone, and drop those records. Groups of a
    /// berth that still runs (a scheduled backup next to an `up`) are left alone.
    /// Returns what was found.
    ///
    /// # Errors
    /// The directory cannot be read, or a group is still alive after `SIGKILL` (a
    /// process stuck in the kernel): then its record stays for the next attempt.
    pub fn stop_leftovers(&self) -> Result<Vec<Leftover>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(HostError::Read {
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let mut records: Vec<PathBuf> = entries
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()
            .map_err(|source| HostError::Read {
                path: self.dir.clone(),
                source,
            })?;
        records.sort();
        let mut found = Vec::new();
        for path in records {
            if path.extension().is_some() {
                // A temporary file of an interrupted write: it names nothing.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|source| HostError::Read {
                path: path.clone(),
                source,
            })?;
            let parsed = parse(&text);
            if let Some((group, owner, _)) = &parsed
                && owner.is_alive()
                && berth_process::current_boot_id().is_ok_and(|b| b == group.boot_id)
            {
                continue;
            }
            if let Some((group, _, what)) = parsed {
                let killed = group
                    .kill(KILL_WAIT)
                    .map_err(|source| HostError::Leftover {
                        what: what.clone(),
                        pgid: group.pgid,
                        source,
                    })?;
                found.push(Leftover {
                    what,
                    pgid: group.pgid,
                    killed: killed == Killed::Killed,
                });
            }
            std::fs::remove_file(&path).map_err(|source| HostError::Remove {
                path: path.clone(),
                source,
            })?;
        }
        Ok(found)
    }
}

/// A record's group, the berth process that started it, and what it was for; `None`
/// for a file that is not a record.
fn parse(text: &str) -> Option<(ProcessGroup, ProcessStamp, String)> {
    let (ids, what) = text.split_once('\n')?;
    let mut ids = ids.split(' ');
    let group = ProcessGroup {
        pgid: ids.next()?.parse().ok()?,
        start_time: ids.next()?.parse().ok()?,
        boot_id: ids.next()?.to_owned(),
    };
    let owner = ProcessStamp {
        pid: ids.next()?.parse().ok()?,
        start_time: ids.next()?.parse().ok()?,
    };
    Some((group, owner, what.trim_end().to_owned()))
}

#[cfg(test)]
mod tests {
    use std::process::Stdio;

    use berth_process::{ChildCommand, process_alive as alive};

    use super::*;

    /// A record that outlived its berth (the guard never dropped) names a group whose
    /// leader died with berth but whose own child did not: the next run kills that
    /// child, says what it was, and drops the record; a record whose child was
    /// waited for is gone, and the group of a berth that still runs is left alone.
    #[test]
    fn leftovers_of_an_interrupted_run_are_killed() {
        let tmp = tempfile::tempdir().unwrap();
        let records = ChildRecords::new(tmp.path().join("children"));
        assert_eq!(records.stop_leftovers().unwrap(), []);

        let (mut done, record) = records
            .spawn(
                ChildCommand::new("/bin/true")
                    .build()
                    .unwrap()
                    .stdin(Stdio::null()),
                "hook quick",
            )
            .unwrap();
        done.wait().unwrap();
        drop(record);

        let mut cmd = ChildCommand::new("/bin/sh")
            .args(["-c", "sleep 1000 & echo $!; wait"])
            .build()
            .unwrap();
        cmd.stdout(Stdio::piped());
        let (mut leader, record) = records.spawn(&mut cmd, "hook\ninitdb").unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(leader.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let grandchild: u32 = line.trim().parse().unwrap();
        // While the berth that started it runs, its group is not a leftover.
        assert_eq!(records.stop_leftovers().unwrap(), []);
        assert!(alive(grandchild));
        // berth is killed: its record stays, its direct child dies, the grandchild lives
        // on. (The record is made to name a berth that has ended: this test process runs on.)
        std::mem::forget(record);
        leader.kill().unwrap();
        leader.wait().unwrap();
        assert!(alive(grandchild));
        let path = std::fs::read_dir(records.dir())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let text = std::fs::read_to_string(&path).unwrap();
        let (ids, what) = text.split_once('\n').unwrap();
        let ids: Vec<&str> = ids.split(' ').collect();
        std::fs::write(&path, format!("{} 0 0\n{what}", ids[..3].join(" "))).unwrap();

        let found = records.stop_leftovers().unwrap();
        assert_eq!(
            found,
            [Leftover {
                what: "hook initdb".to_owned(),
                pgid: leader.id(),
                killed: true
            }]
        );
        assert!(!alive(grandchild));
        assert_eq!(std::fs::read_dir(records.dir()).unwrap().count(), 0);
        assert_eq!(records.stop_leftovers().unwrap(), []);
    }
}
