//! The database a release bundle carries already migrated (`[seed]` in the manifest).
//!
//! A first install should not replay every migration an app ever had (NetBox's take
//! minutes). At release-build time, [`capture`] sets up a throwaway instance of the
//! release (from the components just built, in a temporary prefix, on free ports),
//! runs only the hooks the database needs (`backup.database.restore_after`, then the
//! seed hook, each with the hooks it follows) and dumps the database right after: the
//! state of a fully migrated, empty database, without anything a later hook would add
//! (an administrator and their password, say). A first `berth up --bundle` then runs
//! [`up_seeded`]: the hooks that make the database, the dump loaded into it, then the
//! normal `up`, whose seed hook finds nothing left to do. Upgrades never load a seed.

mod restrict;

use std::path::Path;

use berth_backup::database::{self, Database};
use berth_backup::{BackupError, Result};
use berth_lifecycle::{Instance, Locate, Progress, Run, UpReport, hooks, instance, up};
use berth_supervisor_protocol::{Request, Target};

/// The file of a seed directory (the bundle's `seed/`) that holds the dump.
pub const SEED_FILE: &str = "seed.sql";

/// Makes the seed of the manifest in `manifest_dir` into `dest` (a directory, created,
/// holding [`SEED_FILE`], a `pg_dump --format=plain` dump), running the components built in `payload`
/// (one directory per component, left as they are) with `berth_exe` as the throwaway
/// instance's berth. The instance is stopped and removed afterwards, whatever happened.
/// The build's time `epoch` replaces the times the build ran at (the manifest's
/// `build_time_columns`); a plain dump names no catalog OID (which another cluster
/// assigns differently) and no time, so two builds make the same seed.
pub fn capture(
    manifest_dir: &Path,
    payload: &Path,
    dest: &Path,
    berth_exe: &Path,
    epoch: u64,
    progress: &dyn Progress,
) -> Result<()> {
    stop_orphans(progress);
    // Short: PostgreSQL's socket lives under it, and socket paths are limited.
    let tmp = tempfile::Builder::new()
        .prefix(TMP_PREFIX)
        .tempdir()
        .map_err(BackupError::io("create a temporary directory", "/tmp"))?;
    set_mode(tmp.path(), 0o755)?;
    let owner = tmp.path().join(OWNER_FILE);
    berth_host::fsutil::write_atomic(
        &owner,
        std::process::id().to_string().as_bytes(),
        0o644,
        None,
    )?;
    let prefix = tmp.path().join("i");
    berth_host::fsutil::ensure_dir(&prefix, 0o755)?;
    set_mode(&prefix, 0o755)?;
    // The instance moves the components it is given into its release: give it copies.
    let copies = tmp.path().join("payload");
    berth_host::interpreter::copy_tree(payload, &copies, &|_, _| false)
        .map_err(BackupError::io("copy the built components to", &copies))?;
    let loc = Locate {
        prefix: Some(prefix.clone()),
        manifest: Some(manifest_dir.to_path_buf()),
        config: None,
        embedded: None,
        payload: Some(copies),
    };
    let config = prefix.join("site.toml");
    let first = instance::open(&loc)?;
    let mut site = throwaway_site(&first.manifest.manifest)?;
    if first.facts.is_root {
        // Its service users get names of their own, and are removed afterwards.
        site.insert_str(0, &format!("instance = \"{INSTANCE}\"\n"));
    }
    berth_host::fsutil::write_atomic(&config, site.as_bytes(), 0o644, None)?;
    let mut inst = instance::open(&loc)?;
    // Never a unit of the host's init system, whatever the machine runs.
    inst.facts.systemd = false;
    let users: Vec<String> = if inst.facts.is_root {
        berth_lifecycle::desired::preview(&inst)?
            .users
            .into_iter()
            .map(|u| u.name)
            .collect()
    } else {
        Vec::new()
    };
    let made = remove_leftover_users(&users)?;
    let result = capture_in(&inst, &loc, dest, berth_exe, epoch, progress);
    let stopped = berth_lifecycle::down(&inst.paths);
    for user in made
        .iter()
        .filter(|u| berth_host::users::lookup(u).is_some())
    {
        remove_user(user)?;
    }
    result?;
    stopped?;
    Ok(())
}

/// How the throwaway instances' directories are named (in the temporary directory).
const TMP_PREFIX: &str = "berth-seed.";

/// The file in such a directory naming the process that made it.
const OWNER_FILE: &str = "owner";

/// Stops and removes the throwaway instances of captures that were killed: directories
/// named [`TMP_PREFIX`]… of this user (no one else's is touched) whose [`OWNER_FILE`]
/// names a process that is gone.
fn stop_orphans(progress: &dyn Progress) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    let me = nix::unistd::geteuid().as_raw();
    for entry in entries.flatten() {
        let dir = entry.path();
        let ours = entry.file_name().to_string_lossy().starts_with(TMP_PREFIX)
            && std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir() && m.uid() == me);
        if !ours {
            continue;
        }
        let owner = std::fs::read_to_string(dir.join(OWNER_FILE))
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok());
        let alive = owner.is_some_and(|pid| {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        });
        if alive {
            continue;
        }
        progress.note(&format!(
            "Removing a throwaway instance a killed build left: {}",
            dir.display()
        ));
        let _ = berth_lifecycle::down(&berth_render::Paths::unversioned(&dir.join("i")));
        let _ = berth_host::beneath::remove_tree_at(&dir);
    }
}

/// The instance name of the throwaway instance when berth runs as root.
const INSTANCE: &str = "berth-seed";

/// The users of `names` that do not exist (the capture makes them, and removes them
/// afterwards). One left by a capture that was killed (its home under a throwaway
/// directory that is gone) is removed first; any other that exists is refused.
fn remove_leftover_users(names: &[String]) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for name in names {
        match nix::unistd::User::from_name(name).ok().flatten() {
            None => missing.push(name.clone()),
            Some(u) if u.dir.starts_with(std::env::temp_dir()) && !u.dir.exists() => {
                remove_user(name)?;
                missing.push(name.clone());
            }
            Some(u) => {
                return Err(BackupError::Cannot {
                    what: format!(
                        "user `{name}` exists already (home {}): the throwaway instance \
                         that makes the seed needs users of its own",
                        u.dir.display()
                    ),
                    hint: format!(
                        "remove it (`userdel {name}`) if nothing else uses it, or build as \
                         an ordinary user"
                    ),
                });
            }
        }
    }
    Ok(missing)
}

/// `userdel NAME`: a user the throwaway instance made.
fn remove_user(name: &str) -> Result<()> {
    let out = std::process::Command::new("userdel")
        .arg(name)
        .output()
        .map_err(BackupError::io("run", "userdel"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(BackupError::Cannot {
        what: format!(
            "`userdel {name}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        hint: format!("remove the user `{name}` yourself"),
    })
}

fn capture_in(
    inst: &Instance,
    loc: &Locate,
    dest: &Path,
    berth_exe: &Path,
    epoch: u64,
    progress: &dyn Progress,
) -> Result<()> {
    let Some(seed) = inst.manifest.manifest.seed.clone() else {
        return Err(BackupError::Cannot {
            what: "the manifest declares no `[seed]`".to_owned(),
            hint: "add `[seed] hook = \"…\"` naming the hook that migrates the database".to_owned(),
        });
    };
    let preview = up::prepare_release(inst, loc.payload.as_deref(), progress)?;
    let run = Run::begin(inst, "seed", &format!("hook `{}`", seed.hook), progress)?;
    let result = (|| -> Result<()> {
        let (state, _, _) = up::prepare(&run, loc, berth_exe, &preview, false)?;
        let db = database_plan(&state)?;
        make_database(&run, &state, &db)?;
        hooks::run_selected(&run, &state, &|h, scheduled| {
            h.name == seed.hook
                || (berth_render::hook_prerequisites(&state, std::slice::from_ref(&seed.hook))
                    .contains(&h.name)
                    && scheduled.unwrap_or(true))
        })?;
        let children = inst.children();
        let handle = Database {
            plan: &db,
            children: &children,
            network: None,
        };
        if !seed.build_time_columns.is_empty() {
            progress.begin("Setting the build-time columns to the build's time");
            database::set_columns_to_time(&handle, &seed.build_time_columns, epoch)?;
            progress.end(&seed.build_time_columns.join(", "));
        }
        progress.begin(&format!("Dumping database `{}`", db.name));
        // pg_dump runs as the database's user: it writes into a directory of its own.
        let work = inst.paths.tmp().join("seed-dump");
        berth_host::fsutil::ensure_dir(&inst.paths.tmp(), 0o711)?;
        berth_host::beneath::remove_tree_at(&work)?;
        berth_host::fsutil::ensure_dir(&work, 0o700)?;
        give_to(&work, db.user.as_deref())?;
        let dumped = work.join(SEED_FILE);
        database::dump_sql(&handle, &dumped)?;
        berth_lifecycle::fault::point("seed:dumped");
        // Read without following a symlink: the directory is the database user's.
        let bytes =
            berth_host::beneath::in_parent(&dumped).and_then(|(dir, name)| dir.read(&name))?;
        berth_host::fsutil::ensure_dir(dest, 0o755)?;
        berth_host::fsutil::write_atomic(
            &dest.join(SEED_FILE),
            &restrict::unrestricted(&bytes),
            0o644,
            None,
        )?;
        progress.end("");
        Ok(())
    })();
    run.finish(result, |()| berth_lifecycle::Outcome::default().recorded())
}

/// A site config for the throwaway instance: the defaults (what a first install
/// runs), with every port setting on a port free now.
fn throwaway_site(manifest: &berth_model::manifest::Manifest) -> Result<String> {
    use std::fmt::Write as _;
    let mut text = format!("external_url = \"http://127.0.0.1:{}/\"\n", free_port()?);
    for (group, settings) in &manifest.settings {
        let ports: Vec<&String> = settings
            .iter()
            .filter(|(_, d)| d.kind == berth_model::manifest::SettingType::Port)
            .map(|(k, _)| k)
            .collect();
        if ports.is_empty() {
            continue;
        }
        let _ = writeln!(text, "[{group}]");
        for key in ports {
            let _ = writeln!(text, "{key} = {}", free_port()?);
        }
    }
    Ok(text)
}

/// A TCP port on 127.0.0.1 that nothing listens on now.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(BackupError::io("find a free port on", "127.0.0.1"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(BackupError::io("find a free port on", "127.0.0.1"))
}

/// Sets up a new instance from a release bundle whose `seed` (a directory holding
/// [`SEED_FILE`], which this process made and no one else can write) holds its database already migrated: the
/// hooks that create the database (`backup.database.restore_after`, with what they
/// follow), the dump loaded into it, then `up` as usual (whose seed hook finds nothing
/// to do). Recorded as one `up` run. A database that already holds anything is left
/// as it is and the seed is not used.
pub fn up_seeded(
    inst: &Instance,
    loc: &Locate,
    seed: &Path,
    berth_exe: &Path,
    progress: &dyn Progress,
) -> Result<UpReport> {
    let preview = up::prepare_release(inst, loc.payload.as_deref(), progress)?;
    let app = &preview.app;
    let run = Run::begin(
        inst,
        "up",
        &format!("{} {} (seeded)", app.name, app.version),
        progress,
    )?;
    let result = (|| -> Result<UpReport> {
        let (state, _, _) = up::prepare(&run, loc, berth_exe, &preview, false)?;
        let db = database_plan(&state)?;
        make_database(&run, &state, &db)?;
        let children = inst.children();
        let handle = Database {
            plan: &db,
            children: &children,
            network: None,
        };
        if database::relation_count(&handle)? == 0 {
            let file = seed.join(SEED_FILE);
            if !std::fs::symlink_metadata(&file).is_ok_and(|m| m.is_file()) {
                return Err(BackupError::Cannot {
                    what: format!(
                        "the bundle's seed has no `{SEED_FILE}` (a bundle built by an older \
                         berth carries a directory dump instead)"
                    ),
                    hint: "build the bundle again with this berth".to_owned(),
                });
            }
            progress.begin(&format!("Loading the seed into database `{}`", db.name));
            // psql runs as the database's user: the dump becomes readable to it.
            readable_by(seed, db.user.as_deref())?;
            database::load_into_incoming(&handle, &file)?;
            database::swap_in(&handle)?;
            database::drop_previous(&handle)?;
            progress.end("");
        } else {
            progress.note(&format!(
                "Database `{}` is not empty: the seed is not loaded",
                db.name
            ));
        }
        Ok(up::up_within(&run, loc, berth_exe)?)
    })();
    run.finish(result, |r| r.outcome.recorded())
}

/// The database the seed is of.
fn database_plan(state: &berth_render::DesiredState) -> Result<berth_render::DatabasePlan> {
    state
        .backup
        .as_ref()
        .and_then(|b| b.database.clone())
        .ok_or_else(|| BackupError::Cannot {
            what: "the manifest declares no `[backup.database]` to seed".to_owned(),
            hint: "a seed is a dump of the database `[backup.database]` declares".to_owned(),
        })
}

/// Runs the hooks that create the database (`restore_after`, with the hooks they
/// follow) and starts the database's service.
fn make_database(
    run: &Run,
    state: &berth_render::DesiredState,
    db: &berth_render::DatabasePlan,
) -> Result<()> {
    let prereqs = berth_render::hook_prerequisites(state, &db.restore_after);
    hooks::run_selected(run, state, &|h, scheduled| {
        db.restore_after.contains(&h.name)
            || (prereqs.contains(&h.name) && scheduled.unwrap_or(true))
    })?;
    run.progress.begin(&format!("Starting `{}`", db.service));
    berth_lifecycle::supervisor::request(
        &run.inst.paths,
        &Request::Start {
            target: Target::One(db.service.clone()),
        },
    )?;
    run.progress.end("");
    Ok(())
}

/// Gives the directory `path` (made by this process) to `user`.
fn give_to(path: &Path, user: Option<&str>) -> Result<()> {
    let Some(owner) = user.map(existing_user).transpose()? else {
        return Ok(());
    };
    let (dir, name) = berth_host::beneath::in_parent(path)?;
    dir.set_owner(&name, owner)?;
    Ok(())
}

/// Makes the tree `path` (this process's) the database user's, and its parent
/// traversable, so psql can read it.
fn readable_by(path: &Path, user: Option<&str>) -> Result<()> {
    let Some(owner) = user.map(existing_user).transpose()? else {
        return Ok(());
    };
    let (dir, name) = berth_host::beneath::in_parent(path)?;
    dir.chown_tree(&name, owner)?;
    dir.set_mode(Path::new(""), 0o711)?;
    Ok(())
}

/// The uid and gid of `user`, which `up` made.
fn existing_user(user: &str) -> Result<(u32, u32)> {
    berth_host::users::lookup(user).ok_or_else(|| BackupError::Cannot {
        what: format!("user `{user}` does not exist"),
        hint: "it is made by `up`".to_owned(),
    })
}

/// Sets the mode of `path` (a directory this process made), by descriptor.
fn set_mode(path: &Path, mode: u32) -> Result<()> {
    let (dir, name) = berth_host::beneath::in_parent(path)?;
    dir.set_mode(&name, mode)?;
    Ok(())
}
