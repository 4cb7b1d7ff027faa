//! The upgrade journal, `state/upgrade.json`: the hops still to do, the steps of the
//! current one begun and done, its pre-upgrade backup, and whether it is being rolled
//! back. Written atomically (0600) before and after every step, so a berth killed at
//! any moment leaves a journal `resume` and `abort` can act on.

use std::path::Path;

use berth_backup::{BackupError, Result};
use berth_render::Paths;
use serde::{Deserialize, Serialize};

/// One hop still to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    /// The version it starts from.
    pub from: String,
    /// The version it reaches.
    pub to: String,
    /// Whether its migrations are offline (the maintenance page is served while they run).
    pub offline: bool,
}

/// An unfinished upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// The app.
    pub app: String,
    /// The version the instance ran when the upgrade began.
    pub started_from: String,
    /// The hops still to do, the current one first.
    pub hops: Vec<Hop>,
    /// Steps of the current hop begun (a step is begun before it changes anything).
    pub begun: Vec<String>,
    /// Steps of the current hop done.
    pub done: Vec<String>,
    /// The current hop's pre-upgrade backup: the archive's name in the backup target.
    pub backup: Option<String>,
    /// The current hop's run in the history.
    pub run: Option<i64>,
    /// Set when a rollback began: why.
    pub rolling_back: Option<String>,
}

impl Journal {
    /// Whether step `name` of the current hop is done.
    pub fn has_done(&self, name: &str) -> bool {
        self.done.iter().any(|d| d == name)
    }

    /// Whether step `name` of the current hop was begun.
    pub fn has_begun(&self, name: &str) -> bool {
        self.begun.iter().any(|d| d == name)
    }

    /// The current hop.
    pub fn hop(&self) -> Option<&Hop> {
        self.hops.first()
    }

    /// Go on to the next hop: its steps, backup and run start afresh.
    pub fn next_hop(&mut self) {
        if !self.hops.is_empty() {
            self.hops.remove(0);
        }
        self.begun.clear();
        self.done.clear();
        self.backup = None;
        self.run = None;
    }
}

/// Write the journal (atomically, 0600).
pub fn save(paths: &Paths, j: &Journal) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(j)?;
    berth_host::fsutil::write_atomic(&paths.upgrade_journal(), &bytes, 0o600, None)?;
    Ok(())
}

/// The journal of an unfinished upgrade of the instance at `paths`, if there is one.
///
/// # Errors
///
/// A journal that cannot be read or decoded: berth cannot tell what the upgrade did,
/// so it says where the file is rather than guess.
pub fn load(paths: &Paths) -> Result<Option<Journal>> {
    let path = paths.upgrade_journal();
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| BackupError::Cannot {
                what: format!("The upgrade journal `{}` cannot be read: {e}", path.display()),
                hint: "it is written by berth only; restore the instance from the backup the upgrade took (`berth backup list`)".to_owned(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(BackupError::io("read the upgrade journal", &path)(e)),
    }
}

/// Forget the upgrade: the journal, then the manifests it kept.
pub fn remove(paths: &Paths) -> Result<()> {
    match std::fs::remove_file(paths.upgrade_journal()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(BackupError::io(
                "remove the upgrade journal",
                paths.upgrade_journal(),
            )(e));
        }
    }
    berth_host::beneath::remove_tree_at(&paths.upgrade_manifests())?;
    // Release bundles unpacked for it (`upgrade apply --bundle`), kept for `resume`.
    let tmp = paths.tmp();
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("release-") {
                berth_host::beneath::remove_tree_at(&e.path())?;
            }
        }
    }
    Ok(())
}

/// Refuse a command that would change the instance at `prefix` while an upgrade is
/// unfinished, saying which of `resume` and `abort` to run.
pub fn refuse_if_unfinished(prefix: &Path, command: &str) -> Result<()> {
    let paths = Paths::unversioned(prefix);
    let Some(j) = load(&paths)? else {
        return Ok(());
    };
    let to = j.hops.last().map_or("?", |h| h.to.as_str());
    Err(BackupError::Cannot {
        what: match &j.rolling_back {
            Some(why) => format!(
                "`berth {command}` refused: the upgrade of {} from {} to {to} failed ({why}) and its rollback did not finish",
                j.app, j.started_from
            ),
            None => format!(
                "`berth {command}` refused: the upgrade of {} from {} to {to} is unfinished ({} step(s) of the current hop done)",
                j.app,
                j.started_from,
                j.done.len()
            ),
        },
        hint: if j.rolling_back.is_some() {
            "run `berth upgrade abort` to finish the rollback".to_owned()
        } else {
            "run `berth upgrade resume` to finish it, or `berth upgrade abort` to go back to where it began".to_owned()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::{Hop, Journal};

    fn journal() -> Journal {
        Journal {
            app: "app".into(),
            started_from: "1.0.0".into(),
            hops: vec![
                Hop {
                    from: "1.0.0".into(),
                    to: "1.5.0".into(),
                    offline: true,
                },
                Hop {
                    from: "1.5.0".into(),
                    to: "2.0.0".into(),
                    offline: false,
                },
            ],
            begun: vec!["backup".into()],
            done: vec!["backup".into()],
            backup: Some("a.berth.tar.zst".into()),
            run: Some(3),
            rolling_back: None,
        }
    }

    /// Saved and loaded unchanged (0600); every other command is refused while it is
    /// there, with the command that finishes or reverses it; gone once removed.
    #[test]
    fn a_journal_refuses_other_commands_until_removed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let paths = berth_render::Paths::unversioned(dir.path());
        std::fs::create_dir_all(&paths.state).unwrap();
        super::refuse_if_unfinished(dir.path(), "up").unwrap();
        let j = journal();
        super::save(&paths, &j).unwrap();
        let mode = std::fs::metadata(paths.upgrade_journal())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(super::load(&paths).unwrap(), Some(j.clone()));
        let err = super::refuse_if_unfinished(dir.path(), "reconfigure").unwrap_err();
        assert!(
            err.to_string()
                .contains("upgrade of app from 1.0.0 to 2.0.0 is unfinished"),
            "{err}"
        );
        assert!(err.hint().unwrap().contains("berth upgrade resume"));
        let mut failing = j;
        failing.rolling_back = Some("migrate failed".into());
        super::save(&paths, &failing).unwrap();
        let err = super::refuse_if_unfinished(dir.path(), "up").unwrap_err();
        assert!(err.hint().unwrap().contains("berth upgrade abort"), "{err}");
        super::remove(&paths).unwrap();
        assert_eq!(super::load(&paths).unwrap(), None);
        super::refuse_if_unfinished(dir.path(), "up").unwrap();
    }

    /// The next hop starts with nothing begun, no backup and no run.
    #[test]
    fn the_next_hop_starts_afresh() {
        let mut j = journal();
        j.next_hop();
        assert_eq!(j.hop().unwrap().from, "1.5.0");
        assert!(j.begun.is_empty() && j.done.is_empty());
        assert_eq!((j.backup, j.run), (None, None));
    }

    /// A journal that is not one is an error naming the file, not an upgrade to guess at.
    #[test]
    fn a_damaged_journal_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let paths = berth_render::Paths::unversioned(dir.path());
        std::fs::create_dir_all(&paths.state).unwrap();
        std::fs::write(paths.upgrade_journal(), "{\"app\":").unwrap();
        let err = super::load(&paths).unwrap_err();
        assert!(err.to_string().contains("upgrade.json"), "{err}");
    }
}
