//! What an interrupted backup or restore left behind, and its removal by the next one.
//!
//! A backup, restore or verify works in staging directories under `<prefix>/tmp`, each
//! named after the process that made it ([`StagingName`]); a process killed outright
//! removes none of them, nor the `<archive>.partial` it was writing to a local target.
//! The next backup or restore removes what a gone process left, by descriptors, and
//! says so. A restore's own staging (`restore-<id>`) belongs to its journal and is left
//! to `--resume` or `--abort`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use berth_host::beneath::SafeDir;
use berth_host::staging::{self, StagingName};
use berth_lifecycle::Progress;
use berth_render::Paths;
use serde::{Deserialize, Serialize};

use crate::error::{BackupError, Result};

/// Labels of the staging directories backups and verifies make.
pub(crate) const LABELS: [&str; 5] = ["backup", "upload", "dump", "fetch", "verify"];

/// In a backup's staging directory: the partial archive it is writing to a local target.
const PARTIAL_MARKER: &str = "partial.json";

/// The partial archive a backup is writing, as recorded for the next one.
#[derive(Debug, Serialize, Deserialize)]
struct Partial {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

/// A fresh private directory `<prefix>/tmp/<label>-<time>-<pid>`, root's, mode 0700;
/// `tmp` itself is 0711 so the database user can reach its own dump directory below.
pub(crate) fn make_staging(paths: &Paths, label: &str) -> Result<PathBuf> {
    let root = paths.tmp();
    berth_host::fsutil::ensure_dir(&root, 0o711)?;
    let tmp = SafeDir::open_trusted(&root)?;
    tmp.set_mode(Path::new(""), 0o711)?;
    let name = StagingName::new(label).to_string();
    // Created here, so never an existing directory or a link someone planted.
    tmp.create_dir(Path::new(&name), 0o700, None)?;
    Ok(root.join(name))
}

/// Record in `staging` (a backup's) that this process is writing `partial`, created by
/// it a moment ago, so that the next backup can remove it should this one be killed.
pub(crate) fn record_partial(staging: &Path, partial: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(partial).map_err(BackupError::io("inspect", partial))?;
    let record = Partial {
        path: partial.to_path_buf(),
        dev: meta.dev(),
        ino: meta.ino(),
    };
    berth_host::fsutil::write_atomic(
        &staging.join(PARTIAL_MARKER),
        &serde_json::to_vec(&record)?,
        0o600,
        None,
    )?;
    Ok(())
}

/// Remove what interrupted backups, restores and verifies of this instance left, and
/// say what through `progress`.
pub fn sweep(paths: &Paths, progress: &dyn Progress) -> Result<()> {
    let root = paths.tmp();
    if !root.is_dir() {
        return Ok(());
    }
    let tmp = SafeDir::open_trusted(&root)?;
    for gone in staging::abandoned(&tmp, &LABELS)? {
        let name = gone.to_string();
        if gone.label == "backup"
            && let Some(partial) = remove_partial(&tmp, &name)?
        {
            progress.note(&format!(
                "Removed `{}`, the unfinished archive of an interrupted backup (pid {})",
                partial.display(),
                gone.pid
            ));
        }
        if tmp.remove_tree(Path::new(&name))? {
            progress.note(&format!(
                "Removed `{}`, left by an interrupted {} (pid {})",
                root.join(&name).display(),
                what(&gone.label),
                gone.pid
            ));
        }
    }
    Ok(())
}

fn what(label: &str) -> &'static str {
    match label {
        "verify" => "verify",
        "fetch" => "restore or verify",
        _ => "backup",
    }
}

/// The partial archive a gone backup recorded in its staging directory `name`, removed
/// if it is still the very file it made (same device and inode, never through a
/// symlink); returns its path then.
fn remove_partial(tmp: &SafeDir, name: &str) -> Result<Option<PathBuf>> {
    let dir = tmp.open_dir(Path::new(name))?;
    if dir.stat(Path::new(PARTIAL_MARKER))?.is_none() {
        return Ok(None);
    }
    // Written by root in a directory only root can enter: trusted as written.
    let Ok(record) = serde_json::from_slice::<Partial>(&dir.read(Path::new(PARTIAL_MARKER))?)
    else {
        return Ok(None);
    };
    let Ok((parent, file)) = berth_host::beneath::in_parent(&record.path) else {
        return Ok(None);
    };
    match parent.stat(&file)? {
        Some(stat) if stat.is_file() && stat.id() == (record.dev, record.ino) => {
            parent.remove_file(&file)?;
            Ok(Some(record.path))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use berth_host::staging::StagingName;

    use crate::testing::{Notes, instance};

    /// A process id that is certainly gone: a child that has been waited for.
    fn gone_pid() -> u32 {
        let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    /// The next backup removes the staging directories of a gone process, and the
    /// partial archive it recorded if that is still the very file it made; its own,
    /// and a restore's (left to `--resume` or `--abort`), stay.
    #[test]
    fn what_a_gone_backup_left_is_removed_and_the_rest_stays() {
        let tmp = tempfile::tempdir().unwrap();
        let inst = instance(&tmp.path().join("inst"));
        let mine = super::make_staging(&inst.paths, "backup").unwrap();
        let root = inst.paths.tmp();
        let pid = gone_pid();
        let gone = |label: &str, created: i64| {
            let name = StagingName {
                label: label.into(),
                created,
                pid,
            }
            .to_string();
            std::fs::create_dir(root.join(&name)).unwrap();
            root.join(name)
        };
        let target = tmp.path().join("backups");
        std::fs::create_dir(&target).unwrap();
        let backup = gone("backup", 1);
        let partial = target.join("a.berth.tar.zst.partial");
        std::fs::write(&partial, b"half").unwrap();
        super::record_partial(&backup, &partial).unwrap();
        let other = gone("verify", 1);
        // A second gone backup whose partial file was replaced since it was recorded.
        let replaced = target.join("b.berth.tar.zst.partial");
        std::fs::write(&replaced, b"half").unwrap();
        let second = gone("backup", 2);
        super::record_partial(&second, &replaced).unwrap();
        // Made while the first still exists, so it cannot get its inode number.
        let other_file = target.join("other");
        std::fs::write(&other_file, b"someone else's").unwrap();
        std::fs::rename(&other_file, &replaced).unwrap();
        let restore = root.join("restore-17");
        std::fs::create_dir(&restore).unwrap();

        let notes = Notes::default();
        super::sweep(&inst.paths, &notes).unwrap();
        assert!(mine.is_dir());
        assert!(restore.is_dir());
        for left in [&backup, &other, &second] {
            assert!(!left.exists(), "{}", left.display());
        }
        assert!(!partial.exists());
        assert!(
            replaced.exists(),
            "a replaced file is not the partial archive"
        );
        let notes = notes.0.into_inner();
        assert_eq!(notes.len(), 4, "{notes:#?}");
        assert_eq!(
            notes[0],
            format!(
                "Removed `{}`, the unfinished archive of an interrupted backup (pid {pid})",
                partial.display()
            )
        );
        assert!(
            notes[1].contains("left by an interrupted backup"),
            "{}",
            notes[1]
        );
        assert!(
            notes
                .iter()
                .any(|n| n.contains("left by an interrupted verify"))
        );
        assert_eq!(super::what("fetch"), "restore or verify");
        // Nothing to sweep without a `tmp/`.
        let bare = instance(&tmp.path().join("bare"));
        super::sweep(&bare.paths, &Notes::default()).unwrap();
        assert!(!Path::new(&bare.paths.tmp()).exists());
    }
}
