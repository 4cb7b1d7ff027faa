//! A restore where no supervisor runs the instance: a container's volumes, whose pods
//! are stopped (Kubernetes' restore Job). The archive is authenticated and checked as
//! `berth restore` checks it; each data directory is unpacked beside its live copy (on
//! the same volume) and the dump into `scratch`; the dump is loaded into an incoming
//! database on a server the caller starts for the restore. Only once all of it is
//! there are the directories and the database swapped in; a failure on the way puts
//! back what was there, and so does the next attempt after an interruption.
//!
//! The archive's site config and secrets stay in it: the deployment's own (its
//! ConfigMaps and Secret) are what it runs with.
//!
//! A database elsewhere (a managed PostgreSQL, `[external]`) is restored the same way
//! over the network, as its owning role: the incoming database made and swapped in by
//! that role, which must be allowed to create databases.

use std::path::{Path, PathBuf};

use berth_lifecycle::{Instance, Progress};

use crate::database::{self, Database};
use crate::error::Result;

/// What the place the restore runs in does for it.
pub trait Site {
    /// Start the database service here and wait until it is ready; dropping what is
    /// returned stops it.
    ///
    /// # Errors
    /// It could not be started, or did not become ready.
    fn start_database(&mut self, service: &str) -> Result<Box<dyn std::any::Any>>;
    /// Run a hook here, once, to its end.
    ///
    /// # Errors
    /// It could not be run, or failed.
    fn run_hook(&mut self, hook: &str) -> Result<()>;
}

/// The server the dump is loaded into.
pub enum Server<'a> {
    /// The database service, started here by the site for the time of the restore,
    /// after the hooks `restore_after` names.
    Here(&'a mut dyn Site),
    /// A server elsewhere, reached over the network as the owning role. Its
    /// administrator made the role and the database: no hook runs.
    Elsewhere(database::Network<'a>),
}

impl<'a> Server<'a> {
    /// How the tools reach it: over the network, or through the local socket.
    fn network(&self) -> Option<database::Network<'a>> {
        match self {
            Self::Here(_) => None,
            Self::Elsewhere(net) => Some(*net),
        }
    }
}

/// What was restored.
#[derive(Debug, Clone)]
pub struct OfflineReport {
    /// The archive's app and version.
    pub app: String,
    /// Its version.
    pub app_version: String,
    /// When the backup was made (signed metadata).
    pub created: String,
    /// The data directories put in place, relative to `<prefix>/data`.
    pub data_dirs: Vec<String>,
    /// The database loaded, if the archive has one.
    pub database: Option<String>,
}

/// Where a data directory is unpacked: beside it, on its volume.
fn staging_of(live: &Path) -> PathBuf {
    live.with_file_name(format!(
        ".berth-restore-{}",
        live.file_name().unwrap_or_default().to_string_lossy()
    ))
}

/// Where the live copy of a data directory is kept until the restore is committed.
fn previous_of(live: &Path) -> PathBuf {
    live.with_file_name(format!(
        ".berth-before-restore-{}",
        live.file_name().unwrap_or_default().to_string_lossy()
    ))
}

/// Whether `path` exists, not following a symlink at its end.
fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// A tree removed by descriptors (a symlink inside is removed, never followed).
fn remove(path: &Path) -> Result<()> {
    if exists(path) {
        berth_host::beneath::remove_tree_at(path)?;
    }
    Ok(())
}

/// `path` made anew, empty and private (through its parent's descriptor).
fn fresh_dir(path: &Path) -> Result<()> {
    remove(path)?;
    let (parent, name) = berth_host::beneath::in_parent(path)?;
    parent.create_dir(&name, 0o700, None)?;
    Ok(())
}

/// `from` moved to `to` by descriptors of their parents, never over something.
fn rename(from: &Path, to: &Path) -> Result<()> {
    let (from_dir, from_name) = berth_host::beneath::in_parent(from)?;
    let (to_dir, to_name) = berth_host::beneath::in_parent(to)?;
    from_dir.rename(&from_name, &to_dir, &to_name)?;
    Ok(())
}

/// The file in `scratch` that says a restore committed.
const COMMITTED: &str = "committed";

/// What a committed restore kept from before, and what it unpacked, removed.
fn forget_previous(inst: &Instance, dirs: &[String]) -> Result<()> {
    for d in dirs {
        let live = inst.paths.data_dir(d);
        remove(&previous_of(&live))?;
        remove(&staging_of(&live))?;
    }
    Ok(())
}

/// What an interrupted attempt left: each data directory it had swapped goes back
/// (the restored copy out, the kept one in), and what it unpacked goes.
fn undo_files(inst: &Instance, dirs: &[String]) -> Result<()> {
    for d in dirs {
        let live = inst.paths.data_dir(d);
        let previous = previous_of(&live);
        if exists(&previous) {
            remove(&live)?;
            rename(&previous, &live)?;
        }
        remove(&staging_of(&live))?;
    }
    Ok(())
}

/// Each data directory of `wanted` the archive holds, unpacked beside the live one;
/// those it held.
fn unpack_dirs(
    inst: &Instance,
    opened: &berth_archive::Archive,
    wanted: &[String],
    progress: &dyn Progress,
) -> Result<Vec<String>> {
    let mut dirs = Vec::new();
    for d in wanted {
        let live = inst.paths.data_dir(d);
        let staging = staging_of(&live);
        fresh_dir(&staging)?;
        let entry = format!("data/{d}");
        progress.begin(&format!("Unpacking {d}"));
        opened.extract(
            &staging,
            &|p: &str| p == entry || p.starts_with(&format!("{entry}/")),
            &mut crate::backup::progress_fn(progress),
        )?;
        progress.end("");
        if std::fs::symlink_metadata(staging.join(&entry)).is_ok_and(|m| m.is_dir()) {
            // No setuid or setgid file ever comes out of an archive.
            berth_host::beneath::SafeDir::open_trusted(&staging)?
                .clear_setid_tree(Path::new("data"))?;
            dirs.push(d.clone());
        }
    }
    Ok(dirs)
}

/// The dump unpacked into `scratch` and checked, the database server started with
/// what the dump needs (the hooks `restore_after` names), and the dump loaded beside
/// the live database. Returns the running server.
fn load_database(
    db: &Database<'_>,
    opened: &berth_archive::Archive,
    dump: &str,
    scratch: &Path,
    committed: bool,
    server: &mut Server<'_>,
    progress: &dyn Progress,
) -> Result<Box<dyn std::any::Any>> {
    progress.begin("Unpacking the database dump");
    opened.extract(
        scratch,
        &|p: &str| p == dump || p.starts_with(&format!("{dump}/")),
        &mut crate::backup::progress_fn(progress),
    )?;
    progress.end("");
    crate::trust::list_dump(
        Path::new(&db.bin_dir),
        &scratch.join(dump).join("toc.dat"),
        &scratch.join("toc-check"),
    )?;
    let running = match server {
        Server::Here(site) => {
            let running = site.start_database(&db.service)?;
            for hook in &db.restore_after {
                site.run_hook(hook)?;
            }
            running
        }
        // Checked before anything was unpacked.
        Server::Elsewhere(_) => Box::new(()),
    };
    // An interrupted attempt that swapped its database in: the one from before comes
    // back first, unless that attempt had committed.
    if database::exists(db, &database::previous_name(db.plan))? {
        if committed {
            database::drop_previous(db)?;
        } else {
            database::swap_back(db)?;
        }
    }
    progress.begin(&format!("Restoring database `{}`", db.name));
    database::restore_into_incoming(db, &scratch.join(dump), 2)?;
    progress.end("");
    Ok(running)
}

/// Says where the database is, and refuses (before anything is unpacked) a role that
/// cannot make the incoming database.
fn check_elsewhere(
    plan: &berth_render::DatabasePlan,
    children: &berth_host::children::ChildRecords,
    net: database::Network<'_>,
    progress: &dyn Progress,
) -> Result<()> {
    progress.note(&format!(
        "The database is at {}:{}, restored as its owner `{}`",
        net.host, net.port, plan.owner
    ));
    database::check_can_create(&Database {
        plan,
        children,
        network: Some(net),
    })
}

/// Restores `archive` (signed by the key in `key`) into the instance `inst`, whose
/// services are stopped; `scratch` is a directory for the dump, on a volume with
/// room for it; the dump is loaded into `server`.
///
/// # Errors
/// The archive is not authentic, not of this app and version, or crafted; a data
/// directory or the database could not be restored (what was there is put back).
pub fn restore(
    inst: &Instance,
    archive: &Path,
    key: &Path,
    scratch: &Path,
    mut server: Server<'_>,
    progress: &dyn Progress,
) -> Result<OfflineReport> {
    let key_text = crate::trust::read_key_file(key)?;
    // Only the key file vouches: the place restored into has no signing key of its own
    // that an archive should be trusted for.
    let trusted = crate::trust::trusted_keys_at(&inst.paths, Some(&key_text))?;
    let opened = berth_archive::Archive::open(archive, &trusted)?;
    let index = opened.manifest();
    let meta = crate::trust::read_meta(index, archive)?;
    progress.note(&format!(
        "Restoring the backup made {} (signed metadata), signed by {}",
        meta.created,
        opened.signer()
    ));
    crate::restore::check_same_app(inst, &meta, archive)?;
    let facts = crate::trust::check_meta(inst, &meta, index, archive)?;
    if !facts.privileged_entries.is_empty() {
        progress.note(&format!(
            "The archive asks for setuid, setgid or sticky bits, which were dropped: {}",
            facts.privileged_entries.join(", ")
        ));
    }
    let db = crate::restore::db_plan(inst)?;
    let children = inst.children();
    if let (Server::Elsewhere(net), Some(plan), Some(_)) = (&server, &db, &facts.dump_path) {
        check_elsewhere(plan, &children, *net, progress)?;
    }
    let declared = crate::trust::declared_dirs(inst);
    // Whatever an interrupted attempt left, of every directory it could have touched:
    // put back, unless it had committed (then only what it kept from before goes).
    let committed = exists(&scratch.join(COMMITTED));
    if committed {
        forget_previous(inst, &declared)?;
    } else {
        undo_files(inst, &declared)?;
    }
    fresh_dir(scratch)?;
    let dirs = unpack_dirs(inst, &opened, &facts.data_dirs, progress)?;
    let network = server.network();
    let reach = |plan| Database {
        plan,
        children: &children,
        network,
    };
    let (loaded, running) = match (&facts.dump_path, &db) {
        (Some(dump), Some(plan)) => {
            let running = load_database(
                &reach(plan),
                &opened,
                dump,
                scratch,
                committed,
                &mut server,
                progress,
            )?;
            (Some(plan.name.clone()), Some(running))
        }
        _ => (None, None),
    };

    // All of it is there: swapped in, or everything put back.
    progress.begin("Putting the data in place");
    let swapped = (|| -> Result<()> {
        for d in &dirs {
            let live = inst.paths.data_dir(d);
            if exists(&live) {
                rename(&live, &previous_of(&live))?;
            }
            rename(&staging_of(&live).join("data").join(d), &live)?;
        }
        if let (Some(_), Some(plan)) = (&loaded, &db) {
            database::swap_in(&reach(plan))?;
        }
        Ok(())
    })();
    if let Err(e) = swapped {
        let _ = undo_files(inst, &dirs);
        if let (Some(_), Some(plan)) = (&loaded, &db) {
            let _ = database::swap_back(&reach(plan));
        }
        return Err(e);
    }
    // Committed (the mark tells an attempt after an interruption from here on):
    // what was kept from before goes.
    berth_host::fsutil::write_atomic(&scratch.join(COMMITTED), b"", 0o600, None)?;
    if let (Some(_), Some(plan)) = (&loaded, &db) {
        database::drop_previous(&reach(plan))?;
    }
    drop(running);
    forget_previous(inst, &dirs)?;
    remove(scratch)?;
    progress.end("");
    Ok(OfflineReport {
        app: meta.app.clone(),
        app_version: meta.app_version.clone(),
        created: meta.created.clone(),
        data_dirs: dirs,
        database: loaded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    /// A staging directory is made anew and private; a move never replaces what is
    /// at its destination.
    #[test]
    fn staging_is_fresh_and_moves_never_replace() {
        let t = tempfile::tempdir().unwrap();
        let live = t.path().join("media");
        let staging = staging_of(&live);
        std::fs::create_dir(&staging).unwrap();
        std::fs::write(staging.join("old"), "x").unwrap();
        fresh_dir(&staging).unwrap();
        assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);
        let mode = std::fs::metadata(&staging).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::create_dir(&live).unwrap();
        assert!(
            rename(&staging, &live).is_err(),
            "moved over a live directory"
        );
        rename(&live, &previous_of(&live)).unwrap();
        rename(&staging, &live).unwrap();
        assert!(live.is_dir() && previous_of(&live).is_dir() && !exists(&staging));
    }
}
