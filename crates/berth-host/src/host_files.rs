//! Host files (`[[host_files]]`): symlinks and copies outside the prefix, where another
//! program looks for them (`/etc/nginx/sites-enabled`, `/etc/cron.d`).
//!
//! Every path is reached from `/` by descriptors without following a symlink on the
//! way (a directory on the path that is a symlink is refused), and berth only ever
//! creates, replaces or removes what it made itself: before it makes a host file it
//! records it (`<state>/host-files.json`: the path and the link target or the SHA-256
//! of the content), and a path that holds anything else (a file the administrator put
//! there, or one of berth's that was edited since) is refused and left as it is.

use std::path::{Path, PathBuf};

use berth_render::{HostFileKind, HostFileSpec};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::beneath::SafeDir;
use crate::{HostError, Result};

/// What berth made at a path, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Made {
    /// A symlink to this target.
    Link(PathBuf),
    /// A regular file with content of this SHA-256 (hex).
    File(String),
}

/// One recorded host file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Its absolute path.
    pub path: PathBuf,
    /// What berth made there.
    pub made: Made,
}

/// What [`HostFiles::converge`] or [`HostFiles::remove_all`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Made where nothing was.
    pub created: Vec<PathBuf>,
    /// berth's own, replaced with new content or a new target.
    pub updated: Vec<PathBuf>,
    /// berth's own, removed.
    pub removed: Vec<PathBuf>,
    /// No longer wanted, but changed since berth made it: left in place.
    pub left: Vec<PathBuf>,
}

/// The host files of one instance, with the record of what berth made.
pub struct HostFiles {
    record: PathBuf,
}

fn made_of(spec: &HostFileSpec) -> Made {
    match &spec.kind {
        HostFileKind::Link { target } => Made::Link(target.clone()),
        HostFileKind::File { content, .. } => Made::File(hex::encode(Sha256::digest(content))),
    }
}

/// The directory holding `path`, reached from `/` without following symlinks, and
/// `path`'s name.
fn parent_of(path: &Path) -> Result<(SafeDir, PathBuf)> {
    let bad = |why: &str| HostError::HostFile {
        path: path.to_path_buf(),
        why: why.to_owned(),
    };
    let rel = path
        .strip_prefix("/")
        .map_err(|_| bad("not an absolute path"))?;
    let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
        return Err(bad("not a file's path"));
    };
    let dir = SafeDir::open_trusted(Path::new("/"))?
        .open_dir(parent)
        .map_err(|e| HostError::HostFile {
            path: path.to_path_buf(),
            why: format!(
                "its directory cannot be used ({e}); it must exist, with no symlink on the \
                 way (install the package that reads it)"
            ),
        })?;
    Ok((dir, PathBuf::from(name)))
}

/// What is at `name` in `dir` now, in the terms of [`Made`] (`None`: nothing; an
/// error for something that is neither a symlink nor a regular file).
fn found(dir: &SafeDir, name: &Path) -> Result<Option<Made>> {
    let Some(st) = dir.stat(name)? else {
        return Ok(None);
    };
    if st.is_symlink() {
        return Ok(dir.read_link(name)?.map(Made::Link));
    }
    if st.is_file() {
        return Ok(Some(Made::File(hex::encode(Sha256::digest(
            dir.read(name)?,
        )))));
    }
    Ok(Some(Made::File(String::new())))
}

fn not_ours(path: &Path) -> HostError {
    HostError::HostFile {
        path: path.to_path_buf(),
        why: "something berth did not make (or changed since) is there; berth leaves it \
              alone: move it away, then run the command again"
            .to_owned(),
    }
}

impl HostFiles {
    /// The host files recorded in `record` (`<state>/host-files.json`).
    pub fn new(record: PathBuf) -> Self {
        Self { record }
    }

    /// What berth made, as recorded (nothing before the first host file).
    pub fn recorded(&self) -> Result<Vec<Entry>> {
        match std::fs::read(&self.record) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| HostError::HostFile {
                path: self.record.clone(),
                why: format!("the record of host files is not readable ({e})"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(HostError::Read {
                path: self.record.clone(),
                source,
            }),
        }
    }

    fn save(&self, entries: &[Entry]) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(entries).expect("entries serialise");
        crate::fsutil::write_atomic(&self.record, &bytes, 0o600, None).map(drop)
    }

    /// Refuse, changing nothing, when a wanted host file's path holds something berth
    /// did not make (or its directory cannot be reached without a symlink).
    pub fn check(&self, wanted: &[HostFileSpec]) -> Result<()> {
        let recorded = self.recorded()?;
        for spec in wanted {
            let (dir, name) = parent_of(&spec.path)?;
            let now = found(&dir, &name)?;
            // Even what berth would make itself is refused when berth did not make it:
            // removing it later would take away something that is not its own.
            let ours = recorded
                .iter()
                .any(|e| e.path == spec.path && Some(&e.made) == now.as_ref());
            if now.is_some() && !ours {
                return Err(not_ours(&spec.path));
            }
        }
        Ok(())
    }

    /// Make the host files `wanted`, and remove berth's own that are no longer wanted
    /// (a component switched off, an entry gone). Each is recorded before it is made,
    /// so one made by a run killed right after is still known as berth's.
    pub fn converge(&self, wanted: &[HostFileSpec]) -> Result<Report> {
        self.check(wanted)?;
        let mut recorded = self.recorded()?;
        let mut report = Report::default();
        let gone: Vec<PathBuf> = paths_of(&recorded)
            .into_iter()
            .filter(|p| !wanted.iter().any(|w| &w.path == p))
            .collect();
        for path in gone {
            remove_one(&path, &recorded, &mut report)?;
            recorded.retain(|e| e.path != path);
            self.save(&recorded)?;
        }
        for spec in wanted {
            let (dir, name) = parent_of(&spec.path)?;
            let made = made_of(spec);
            let now = found(&dir, &name)?;
            let entry = Entry {
                path: spec.path.clone(),
                made: made.clone(),
            };
            if now.as_ref() == Some(&made) {
                // Recorded as exactly this (a run killed after the write below leaves
                // the old one recorded too).
                let mine: Vec<&Entry> = recorded.iter().filter(|e| e.path == spec.path).collect();
                if mine != [&entry] {
                    recorded.retain(|e| e.path != spec.path);
                    recorded.push(entry);
                    self.save(&recorded)?;
                }
                continue;
            }
            let replace = now.is_some();
            // Until the new one is in place both the old and the new are berth's: a run
            // killed in between finds one of the two and still knows it as its own.
            if !recorded.contains(&entry) {
                recorded.push(entry.clone());
                self.save(&recorded)?;
            }
            match &spec.kind {
                HostFileKind::Link { target } => dir.symlink(&name, target, replace)?,
                HostFileKind::File { content, mode, .. } if replace => {
                    dir.write_atomic(&name, content.as_bytes(), *mode, None)?;
                }
                HostFileKind::File { content, mode, .. } => {
                    dir.write_new(&name, content.as_bytes(), *mode, None)?;
                }
            }
            if recorded.iter().any(|e| e.path == spec.path && e != &entry) {
                recorded.retain(|e| e.path != spec.path || e == &entry);
                self.save(&recorded)?;
            }
            if replace {
                report.updated.push(spec.path.clone());
            } else {
                report.created.push(spec.path.clone());
            }
        }
        Ok(report)
    }

    /// Remove every host file berth made that is still as it made it (`berth down
    /// --purge`); one changed since is left, and listed.
    pub fn remove_all(&self) -> Result<Report> {
        let mut recorded = self.recorded()?;
        let mut report = Report::default();
        while let Some(path) = paths_of(&recorded).pop() {
            remove_one(&path, &recorded, &mut report)?;
            recorded.retain(|e| e.path != path);
            self.save(&recorded)?;
        }
        Ok(report)
    }
}

/// The recorded paths, each once, in the order first recorded.
fn paths_of(recorded: &[Entry]) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = Vec::new();
    for e in recorded {
        if !paths.contains(&e.path) {
            paths.push(e.path.clone());
        }
    }
    paths
}

/// Remove `path` if it is still as berth made it (as one of its `recorded` entries);
/// else (changed, or its directory cannot be reached without a symlink) name it in
/// `report.left`.
fn remove_one(path: &Path, recorded: &[Entry], report: &mut Report) -> Result<()> {
    let Ok((dir, name)) = parent_of(path) else {
        // Its directory is gone (the package that reads it was removed) or is no
        // longer a plain one: nothing berth can tell is its own.
        if std::fs::symlink_metadata(path).is_ok() {
            report.left.push(path.to_path_buf());
        }
        return Ok(());
    };
    match found(&dir, &name)? {
        Some(now) if recorded.iter().any(|e| e.path == path && e.made == now) => {
            dir.remove_file(&name)?;
            report.removed.push(path.to_path_buf());
        }
        Some(_) => report.left.push(path.to_path_buf()),
        None => {}
    }
    Ok(())
}
