//! `berth backup`: create, list, verify and prune archives, and the backup key.
//!
//! An archive holds the database dump (`database/<name>/`, pg_dump's directory
//! format), the manifest's backup data directories (`data/<dir>/`), the site config
//! (`config/site.toml`), the app manifest the instance runs (`manifest/`) and the
//! secrets encrypted to the backup key (`secrets.age`). See `docs/backup.md`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_archive::{ArchiveWriter, Meta, WriteOptions};
use berth_host::fsutil::tree_size;

use crate::meta::{BackupMeta, DatabaseMeta, QuiesceMeta, SecretsMeta};
use berth_render::{BackupPlan, BackupPolicy, BackupTarget, DesiredState};
use berth_supervisor_protocol::Request;
use berth_target::{SshOptions, TargetSpec};
use serde::Serialize;

use berth_lifecycle::{Instance, Progress, Run, fault, supervisor};

use crate::database;
use crate::error::{BackupError, Result};
use crate::leftovers;

/// The current step's byte counter, for archive reads and writes.
pub(crate) fn progress_fn(progress: &dyn Progress) -> Box<dyn FnMut(u64) + Send> {
    progress.byte_sink()
}

/// The longest writers stay paused, should the supervisor not notice that berth is
/// gone (it resumes them as soon as berth's connection closes, a kill included).
const PAUSE_DEADLINE: Duration = Duration::from_mins(30);

/// A byte count for people, e.g. `12.3 MiB`.
pub use berth_target::human_bytes as human;

/// The instance's backup policy (`[backup]` in its site config), typed.
pub fn settings(inst: &Instance) -> Result<BackupPolicy> {
    Ok(berth_lifecycle::desired::backup_policy(inst)?)
}

/// Parallel jobs for pg_dump and pg_restore (`backup.jobs`).
pub fn jobs(inst: &Instance) -> Result<u32> {
    Ok(settings(inst)?.jobs)
}

/// The target named on the command line, else `backup.target`, else the default.
pub fn target_spec(inst: &Instance, to: Option<&str>) -> Result<TargetSpec> {
    choose_target(to, settings(inst)?.target)
}

/// The target: `to` (named on the command line) wins over the site config's
/// `backup.target`; without either, the instance's default directory.
fn choose_target(to: Option<&str>, policy: BackupTarget) -> Result<TargetSpec> {
    let text = match (to, policy) {
        (Some(t), _) => t.to_owned(),
        (None, BackupTarget::Configured(t)) => t,
        (None, BackupTarget::Default(dir)) => return Ok(TargetSpec::Local(dir)),
    };
    Ok(TargetSpec::parse(&text)?)
}

/// SSH options from `backup.ssh_identity` and `backup.ssh_known_hosts`.
pub fn ssh_options(inst: &Instance) -> Result<SshOptions> {
    let policy = settings(inst)?;
    Ok(SshOptions {
        identity_file: policy.ssh_identity,
        known_hosts: policy.ssh_known_hosts,
        ..SshOptions::default()
    })
}

/// The recipient secrets are encrypted to: `backup.recipient`, else the instance's key.
fn recipient(inst: &Instance, policy: &BackupPolicy) -> Result<Option<String>> {
    if let Some(configured) = &policy.recipient {
        // Checked before anything is dumped, not when the secrets are encrypted.
        berth_archive::secrets::parse_recipient(configured)?;
        return Ok(Some(configured.clone()));
    }
    let path = inst.paths.backup_key();
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(
            berth_archive::secrets::parse_identity(&text)?
                .recipient()
                .to_owned(),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(BackupError::io("read the backup key", &path)(e)),
    }
}

/// What `berth backup key` did.
#[derive(Debug, Clone, Serialize)]
pub struct KeyReport {
    /// The identity file on this instance.
    pub path: PathBuf,
    /// Its public half: archives' secrets are encrypted to it.
    pub recipient: String,
    /// Whether it was created now.
    pub created: bool,
    /// The archive signing key file on this instance.
    pub signing_path: PathBuf,
    /// Its public half (`ed25519:…`): archives signed by it are trusted.
    pub signing_public_key: String,
    /// Whether the signing key was created now.
    pub signing_created: bool,
    /// Where a copy of both keys was exported, if asked.
    pub exported: Option<PathBuf>,
}

/// Create the backup key and the archive signing key if the instance lacks them; export
/// both into one new file if asked (never over an existing path, never through a
/// symlink).
pub fn key(inst: &Instance, export: Option<&Path>) -> Result<KeyReport> {
    let path = inst.paths.backup_key();
    let (text, created) = crate::trust::ensure_identity_text(inst, &path)?;
    let recipient = berth_archive::secrets::parse_identity(&text)?
        .recipient()
        .to_owned();
    let (signing, signing_created) = crate::trust::ensure_signing_key(inst)?;
    if let Some(dest) = export {
        let both = format!(
            "{}{}",
            text.trim_end().to_owned() + "\n",
            berth_archive::signing::signing_key_file_text(&signing, jiff::Timestamp::now())
        );
        crate::trust::create_private(dest, both.as_bytes())?;
    }
    Ok(KeyReport {
        path,
        recipient,
        created,
        signing_path: inst.paths.signing_key(),
        signing_public_key: signing.public_key().to_string(),
        signing_created,
        exported: export.map(Path::to_path_buf),
    })
}

/// Options of `berth backup create`.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Target (directory or `sftp://…`); default from the site config.
    pub to: Option<String>,
}

/// What `berth backup create` did.
#[derive(Debug, Clone, Serialize)]
pub struct CreateReport {
    /// Archive file name.
    pub archive: String,
    /// Where it is kept.
    pub target: String,
    /// Size of the archive in bytes.
    pub bytes: u64,
    /// Bytes of data that went in (before compression).
    pub input_bytes: u64,
    /// Entries in the archive.
    pub entries: usize,
    /// Whole duration in seconds.
    pub seconds: f64,
    /// Duration of the database dump in seconds (0 without a database).
    pub dump_seconds: f64,
    /// How long writers were paused, in milliseconds.
    pub quiesce_ms: u64,
    /// Services that were paused.
    pub quiesced: Vec<String>,
    /// Whether the secrets are in the archive (encrypted).
    pub secrets_included: bool,
    /// Loud warnings (e.g. secrets left out).
    pub warnings: Vec<String>,
}

/// The warning given when there is no backup key.
pub const NO_KEY_WARNING: &str = "WARNING: this backup does NOT contain the instance's secrets (no backup key). \
     Restored from it alone, the app cannot read what those secrets protect (sessions, tokens, encrypted fields). \
     Run `berth backup key`, keep the key file somewhere safe off this machine, and back up again.";

fn plan(inst: &Instance) -> Result<DesiredState> {
    Ok(berth_lifecycle::desired::preview(inst)?)
}

/// Removes a directory tree when dropped (temporary staging), by descriptors: what a
/// database user left in its dump directory (symlinks included) is removed, never
/// followed.
struct TempTree(PathBuf);

impl Drop for TempTree {
    fn drop(&mut self) {
        let _ = berth_host::beneath::remove_tree_at(&self.0);
    }
}

/// A fresh private directory under `<prefix>/tmp`, root's, mode 0700, removed when
/// dropped (or, should this process be killed, by the next backup or restore).
fn staging(inst: &Instance, label: &str) -> Result<TempTree> {
    leftovers::make_staging(&inst.paths, label).map(TempTree)
}

/// Gives `path` (a directory berth just created in its staging) to `user`.
fn chown_to(path: &Path, user: Option<&str>) -> Result<()> {
    let Some(user) = user else {
        return Ok(());
    };
    let owner = berth_host::users::lookup(user).ok_or_else(|| BackupError::Cannot {
        what: format!("user `{user}` does not exist"),
        hint: "run `berth up` first".to_owned(),
    })?;
    let (dir, name) = berth_host::beneath::in_parent(path)?;
    dir.set_owner(&name, owner)?;
    Ok(())
}

/// Adds the directory `rel` beneath `base` to the archive, walking it by descriptors and
/// refusing a symlink at any component: a service user who replaced its data directory
/// (or one above it) with a link to root's files gets a refusal, not root's files in the
/// archive.
fn add_tree_beneath(
    writer: &mut ArchiveWriter,
    archive_dir: &str,
    base: &Path,
    rel: &str,
) -> Result<()> {
    writer
        .add_tree_beneath(archive_dir, base, rel)
        .map(drop)
        .map_err(|e| BackupError::Cannot {
            what: format!(
                "Refusing to back up `{}`: {}",
                base.join(rel).display(),
                berth_lifecycle::run::error_text(&BackupError::from(e))
            ),
            hint: "nothing was kept of this backup; if a directory was replaced by a link, put the real directory back in place (as root), then back up again".to_owned(),
        })
}

fn ready_services(inst: &Instance) -> Vec<String> {
    match supervisor::request(&inst.paths, &Request::Status) {
        Ok(berth_supervisor_protocol::Response::Status { services, .. }) => services
            .into_iter()
            .filter(|s| s.ready)
            .map(|s| s.name)
            .collect(),
        _ => Vec::new(),
    }
}

/// The name of a new archive of `app` `version` made at `now()`: while `taken` says
/// that name is in use, `wait` and take the time again. Returns the name and the time
/// it carries.
fn free_archive_name(
    app: &str,
    version: &str,
    taken: impl Fn(&str) -> bool,
    mut now: impl FnMut() -> jiff::Timestamp,
    mut wait: impl FnMut(),
) -> (String, jiff::Timestamp) {
    let mut created = now();
    let mut name = berth_archive::archive_name(app, version, created);
    while taken(&name) {
        wait();
        created = now();
        name = berth_archive::archive_name(app, version, created);
    }
    (name, created)
}

/// Whether an archive at `path` is there, or being written (its `.partial`).
fn in_use(path: &Path) -> bool {
    let mut partial = path.as_os_str().to_owned();
    partial.push(berth_target::PARTIAL_SUFFIX);
    path.exists() || Path::new(&partial).exists()
}

/// The site config an archive carries.
#[derive(Debug, Clone, Copy)]
pub enum SiteConfig<'a> {
    /// The instance's own file.
    File(&'a Path),
    /// This text (empty: the instance has none).
    Text(&'a [u8]),
}

/// The database dump an archive carries: the directory `rel` beneath `base`, read by
/// descriptors (the database's user may own it).
#[derive(Debug, Clone)]
pub struct Dump<'a> {
    /// The database dumped.
    pub plan: &'a berth_render::DatabasePlan,
    /// A directory berth made, above the dump.
    pub base: &'a Path,
    /// The dump (`pg_dump --format=directory`), relative to `base`.
    pub rel: &'a str,
    /// The parallel jobs it was made with.
    pub jobs: u32,
    /// The server's version.
    pub server_version: String,
    /// How long the dump took.
    pub seconds: f64,
}

/// What an archive holds and says about itself, however it was gathered: by
/// `berth backup create` on a host, or by a deployment's backup pod (`berth container
/// backup`: the dump made over the network, the pod's secrets).
#[derive(Debug)]
pub struct Contents<'a> {
    /// The app.
    pub app: &'a str,
    /// Its version.
    pub version: &'a str,
    /// The app's enabled components (all of them, not one node's).
    pub components: Vec<String>,
    /// `<prefix>/data`, which the data directories are relative to.
    pub data_root: &'a Path,
    /// The data directories backed up (relative, absolute); a missing one is left out.
    pub data_dirs: &'a [(String, PathBuf)],
    /// The database dump.
    pub dump: Option<Dump<'a>>,
    /// `config/site.toml`.
    pub site_config: SiteConfig<'a>,
    /// The manifest directory, stored as `manifest/`.
    pub manifest_dir: Option<&'a Path>,
    /// A directory holding only the secrets (plain files), and the age recipient they
    /// are encrypted to; `None`: the archive holds no secrets, and says why.
    pub secrets: Option<(&'a Path, &'a str)>,
    /// The key that signs the archive.
    pub signing_key: &'a berth_archive::SigningKey,
}

/// The writer of a new archive at `path` (`<path>.partial` until it is finished),
/// compressed at `level` with every CPU.
fn open_writer(path: &Path, level: i32) -> Result<ArchiveWriter> {
    let threads =
        std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1));
    Ok(ArchiveWriter::create(
        path,
        WriteOptions {
            level,
            threads,
            source_date_epoch: None,
        },
    )?)
}

/// Adds each data directory that exists as `data/<rel>`.
fn add_data_dirs(writer: &mut ArchiveWriter, contents: &Contents<'_>) -> Result<()> {
    for (rel, abs) in contents.data_dirs {
        // Not followed if it is a symlink: `add_tree_beneath` refuses a link at any
        // component below `data/`, whose directories service users own.
        if std::fs::symlink_metadata(abs).is_ok() {
            add_tree_beneath(writer, &format!("data/{rel}"), contents.data_root, rel)?;
        }
    }
    Ok(())
}

/// Adds the dump, the site config, the manifest and the secrets after the data
/// directories, then the metadata, and signs the archive (renamed from `.partial`).
fn finish_archive(
    mut writer: ArchiveWriter,
    contents: &Contents<'_>,
    created: jiff::Timestamp,
    quiesce: QuiesceMeta,
) -> Result<berth_archive::Written> {
    if let Some(dump) = &contents.dump {
        // The database user owns this directory: read it like a data directory.
        let dir = dump.base.join(dump.rel);
        if std::fs::symlink_metadata(&dir).is_err() {
            return Err(BackupError::Cannot {
                what: format!("pg_dump left no dump in `{}`", dir.display()),
                hint: "run the backup again; `berth tail` shows the database's log".to_owned(),
            });
        }
        add_tree_beneath(
            &mut writer,
            &format!("database/{}", dump.plan.name),
            dump.base,
            dump.rel,
        )?;
    }
    match contents.site_config {
        SiteConfig::File(path) => writer.add_file("config/site.toml", path)?,
        SiteConfig::Text(text) => writer.add_bytes("config/site.toml", text, 0o644)?,
    }
    if let Some(dir) = contents.manifest_dir {
        writer.add_tree("manifest", dir)?;
    }
    if let Some((dir, recipient)) = contents.secrets {
        let blob = berth_archive::secrets::encrypt_dir(dir, recipient)?;
        writer.add_bytes("secrets.age", &blob, 0o600)?;
    }
    let meta = backup_meta(contents, created, quiesce).to_meta()?;
    Ok(writer.finish(meta, contents.signing_key)?)
}

/// The metadata of an archive of `contents` made at `created`.
fn backup_meta(
    contents: &Contents<'_>,
    created: jiff::Timestamp,
    quiesce: QuiesceMeta,
) -> BackupMeta {
    let created_text = Meta::new(contents.app, contents.version, created)
        .get("created")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned();
    BackupMeta {
        app: contents.app.to_owned(),
        app_version: contents.version.to_owned(),
        created: created_text,
        berth_version: env!("CARGO_PKG_VERSION").to_owned(),
        hostname: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        components: contents.components.clone(),
        data_dirs: contents
            .data_dirs
            .iter()
            .map(|(rel, _)| rel.clone())
            .collect(),
        database: contents.dump.as_ref().map(|dump| DatabaseMeta {
            kind: dump.plan.kind,
            name: dump.plan.name.clone(),
            format: "directory".to_owned(),
            path: format!("database/{}", dump.plan.name),
            jobs: dump.jobs,
            server_version: dump.server_version.clone(),
            dump_seconds: dump.seconds,
        }),
        quiesce,
        signed_by: contents.signing_key.public_key().to_string(),
        secrets: match contents.secrets {
            Some((_, r)) => SecretsMeta {
                included: true,
                encryption: Some("age".to_owned()),
                recipient: Some(r.to_owned()),
                warning: None,
            },
            None => SecretsMeta {
                included: false,
                encryption: None,
                recipient: None,
                warning: Some(NO_KEY_WARNING.to_owned()),
            },
        },
    }
}

/// Writes an archive of `contents` into the local directory `dir` as `berth backup
/// create` writes one there (the same name scheme, `.partial` until signed), for a
/// backup gathered elsewhere: a deployment's backup pod, where no writer is paused.
/// Returns its name and what was written.
///
/// # Errors
/// A data directory has a symlink on its way, or the archive cannot be written
/// (nothing of it is left in `dir` then).
pub fn write_in_dir(
    dir: &Path,
    level: i32,
    contents: &Contents<'_>,
    progress: &dyn Progress,
) -> Result<(String, berth_archive::Written)> {
    let (name, created) = free_archive_name(
        contents.app,
        contents.version,
        |name| in_use(&dir.join(name)),
        jiff::Timestamp::now,
        || std::thread::sleep(Duration::from_millis(200)),
    );
    let mut writer = open_writer(&dir.join(&name), level)?;
    progress.begin(&format!("Writing {name}"));
    writer.on_progress(progress_fn(progress));
    add_data_dirs(&mut writer, contents)?;
    let quiesce = QuiesceMeta {
        services: Vec::new(),
        milliseconds: 0,
    };
    let written = finish_archive(writer, contents, created, quiesce)?;
    progress.end(&human(written.size));
    Ok((name, written))
}

/// `berth backup create`, recorded in the instance's history (`berth history`) when
/// it has one.
pub fn create(
    inst: &Instance,
    opts: &CreateOptions,
    progress: &dyn Progress,
) -> Result<CreateReport> {
    if !inst.paths.state_db().exists() {
        return create_archive(inst, opts, progress);
    }
    let run = Run::begin_existing(inst, "backup", opts.to.as_deref().unwrap_or(""), progress)?;
    let result = run.step("archive", || create_archive(inst, opts, progress));
    run.finish(result, |report| berth_state::RunOutcome {
        status: berth_state::RunStatus::Succeeded,
        files_changed: vec![format!("{}/{}", report.target, report.archive)],
        ..berth_state::RunOutcome::default()
    })
}

/// A backup that records no run of its own: a step of another operation's run (a
/// restore's safety backup), so the history shows that operation as what it is.
#[allow(clippy::too_many_lines)] // one sequence of steps, each short
pub(crate) fn create_archive(
    inst: &Instance,
    opts: &CreateOptions,
    progress: &dyn Progress,
) -> Result<CreateReport> {
    let started = Instant::now();
    let state = plan(inst)?;
    let empty = BackupPlan {
        data_dirs: Vec::new(),
        quiesce: Vec::new(),
        database: None,
    };
    let backup = state.backup.as_ref().unwrap_or(&empty);
    let spec = target_spec(inst, opts.to.as_deref())?;
    let target = berth_target::open(&spec, &ssh_options(inst)?);

    // What an interrupted backup left goes first: it takes room the checks count.
    leftovers::sweep(&inst.paths, progress)?;
    // Checks that change nothing come first.
    progress.begin(&format!("Checking {}", target.describe()));
    let ready = ready_services(inst);
    if let Some(db) = &backup.database
        && !ready.contains(&db.service)
    {
        return Err(BackupError::Cannot {
            what: format!(
                "The database service `{}` is not running: a backup needs it to dump the database",
                db.service
            ),
            hint: "start the instance with `berth up` (or `berth start`), then back up".to_owned(),
        });
    }
    let children = inst.children();
    let database = backup.database.as_ref().map(|plan| database::Database {
        plan,
        children: &children,
        network: None,
    });
    let db_size = match &database {
        Some(db) => database::size(db)?,
        None => 0,
    };
    let files_size: u64 = backup.data_dirs.iter().map(|(_, p)| tree_size(p)).sum();
    // The compressed size is unknown before compressing; a third of the raw size is
    // a floor that catches a target that is plainly full without refusing tight ones.
    target.check(Some((db_size + files_size) / 3))?;
    progress.end("");

    let recipient = recipient(inst, &state.backup_policy)?;
    // Every archive is signed; the key is made on the first backup if need be.
    let (signing_key, _) = crate::trust::ensure_signing_key(inst)?;
    let mut warnings = Vec::new();
    if recipient.is_none() {
        progress.note(NO_KEY_WARNING);
        warnings.push(NO_KEY_WARNING.to_owned());
    }

    // The archive waits for its upload in root's own 0700 directory; only the
    // database dump gets a directory the database user owns.
    let tmp = staging(inst, "backup")?;
    // Names have whole seconds: a second backup within the same second (a scheduled
    // one beside a manual one, a restore's safety backup) waits for the next one
    // rather than collide with, or ever replace, the first.
    let remote_names: Vec<String> = match spec {
        TargetSpec::Local(_) => Vec::new(),
        TargetSpec::Ssh(_) => target.list()?.into_iter().map(|e| e.name).collect(),
    };
    let taken = |name: &str| {
        remote_names.iter().any(|n| n == name)
            || target.local_path(name).is_some_and(|p| in_use(&p))
    };
    let (name, created) = free_archive_name(
        &state.app.name,
        &state.app.version,
        taken,
        jiff::Timestamp::now,
        || std::thread::sleep(Duration::from_millis(200)),
    );
    // A remote target's archive waits for its upload in a directory of its own that only
    // root can enter: the dump's directory belongs to the database's user.
    let upload = match target.local_path(&name) {
        Some(_) => None,
        None => Some(staging(inst, "upload")?),
    };
    let local_archive = target
        .local_path(&name)
        .or_else(|| upload.as_ref().map(|u| u.0.join(&name)))
        .unwrap_or_else(|| tmp.0.join(&name));
    if let Some(dir) = local_archive.parent() {
        berth_host::fsutil::ensure_dir(dir, 0o700)?;
    }

    // 1. The database: one snapshot shared by every pg_dump job.
    let mut dump_seconds = 0.0;
    let mut server_version = String::new();
    let dump_tmp = staging(inst, "dump")?;
    let dump_dir = dump_tmp.0.join("db");
    if let Some(db) = &database {
        progress.begin(&format!(
            "Dumping database `{}` ({} jobs)",
            db.name, state.backup_policy.jobs
        ));
        chown_to(&dump_tmp.0, db.user.as_deref())?;
        let t = Instant::now();
        server_version = database::server_version(db)?;
        database::dump(db, &dump_dir, state.backup_policy.jobs)?;
        dump_seconds = t.elapsed().as_secs_f64();
        progress.end(&human(tree_size(&dump_dir)));
    }

    // 2. The archive: data directories first, while writers are paused.
    let manifest_dir = inst.paths.manifest_dir();
    let contents = Contents {
        app: &state.app.name,
        version: &state.app.version,
        components: inst.config.enabled_components.iter().cloned().collect(),
        data_root: &inst.paths.data,
        data_dirs: &backup.data_dirs,
        dump: backup.database.as_ref().map(|db| Dump {
            plan: db,
            base: &dump_tmp.0,
            rel: "db",
            jobs: state.backup_policy.jobs,
            server_version: server_version.clone(),
            seconds: dump_seconds,
        }),
        site_config: if inst.config_exists {
            SiteConfig::File(&inst.config_path)
        } else {
            SiteConfig::Text(b"")
        },
        manifest_dir: manifest_dir.is_dir().then_some(manifest_dir.as_path()),
        secrets: recipient
            .as_deref()
            .map(|r| (inst.paths.secrets.as_path(), r)),
        signing_key: &signing_key,
    };
    let mut writer = open_writer(&local_archive, state.backup_policy.compression_level)?;
    if target.local_path(&name).is_some() {
        // The writer's documented name for the archive until it is finished.
        let mut partial = local_archive.clone().into_os_string();
        partial.push(".partial");
        leftovers::record_partial(&tmp.0, Path::new(&partial))?;
    }
    let total = db_size + files_size;
    progress.begin(&format!("Writing {name}"));
    progress.bytes(Some(total));
    writer.on_progress(progress_fn(progress));

    let paused: Vec<String> = backup
        .quiesce
        .iter()
        .filter(|s| ready.contains(s))
        .cloned()
        .collect();
    let quiesce_started = Instant::now();
    // Held for the copy: should this process die, its connection closes and the
    // supervisor resumes the services at once.
    let pause = if paused.is_empty() {
        None
    } else {
        let pause = supervisor::pause(&inst.paths, paused.clone(), PAUSE_DEADLINE)?;
        fault::point("backup:paused");
        Some(pause)
    };
    let copied = add_data_dirs(&mut writer, &contents);
    if let Some(pause) = pause {
        // Resume even when the copy failed.
        let resumed = pause
            .resume()
            .map_err(berth_lifecycle::LifecycleError::from);
        copied?;
        resumed?;
    } else {
        copied?;
    }
    let quiesce_ms = if paused.is_empty() {
        0
    } else {
        u64::try_from(quiesce_started.elapsed().as_millis()).unwrap_or(u64::MAX)
    };
    let quiesce = QuiesceMeta {
        services: paused.clone(),
        milliseconds: quiesce_ms,
    };
    let written = finish_archive(writer, &contents, created, quiesce)?;
    let secrets_included = recipient.is_some();
    progress.end(&human(written.size));

    if target.local_path(&name).is_none() {
        progress.begin(&format!("Uploading to {}", target.describe()));
        progress.bytes(Some(written.size));
        let mut advance = |n: u64| progress.advance(n);
        target.put(&written.path, &name, &mut advance)?;
        progress.end("");
    }
    if let Err(e) = record_last_backup(inst, &name, written.size) {
        warnings.push(format!(
            "The backup is written, but its record for the metrics is not ({}): {e}",
            inst.paths.last_backup_record().display()
        ));
    }

    Ok(CreateReport {
        archive: name,
        target: target.describe(),
        bytes: written.size,
        input_bytes: written.manifest.total_size(),
        entries: written.manifest.entries.len(),
        seconds: started.elapsed().as_secs_f64(),
        dump_seconds,
        quiesce_ms,
        quiesced: paused,
        secrets_included,
        warnings,
    })
}

/// Remember the backup just written for the supervisor's metrics (its age and size).
/// A failure here costs the metrics, never the backup: the caller warns.
fn record_last_backup(inst: &Instance, name: &str, bytes: u64) -> std::result::Result<(), String> {
    if !inst.paths.state.is_dir() {
        return Ok(());
    }
    let record = berth_supervisor_protocol::LastBackup {
        finished_unix: jiff::Timestamp::now().as_second().try_into().unwrap_or(0),
        bytes,
        name: name.to_owned(),
    };
    let json = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
    berth_host::fsutil::write_atomic(&inst.paths.last_backup_record(), &json, 0o644, None)
        .map_err(|e| e.to_string())
}

/// One archive in a target, as `berth backup list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    /// File name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// When it was taken (from its name).
    pub created: Option<String>,
    /// App version it holds.
    pub app_version: Option<String>,
    /// Whether its secrets are in it (local targets, read from the index).
    pub secrets_included: Option<bool>,
    /// Why its index cannot be read (local targets), e.g. truncated.
    pub problem: Option<String>,
}

/// `berth backup list`: this app's archives in the target, newest first.
pub fn list(inst: &Instance, to: Option<&str>) -> Result<(String, Vec<Listed>)> {
    let spec = target_spec(inst, to)?;
    let target = berth_target::open(&spec, &ssh_options(inst)?);
    let app = &inst.manifest.manifest.app.name;
    let mut out = Vec::new();
    // No directory yet: no backup was taken yet (the first one makes it).
    let entries = match target.list() {
        Err(berth_target::TargetError::MissingDirectory { .. }) => Vec::new(),
        other => other?,
    };
    for e in entries {
        let Some((a, version, created)) = berth_archive::parse_archive_name(&e.name) else {
            continue;
        };
        if &a != app {
            continue;
        }
        let mut listed = Listed {
            name: e.name.clone(),
            size: e.size,
            created: Some(created.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()),
            app_version: Some(version),
            secrets_included: None,
            problem: None,
        };
        if let Some(path) = target.local_path(&e.name) {
            // Unauthenticated: only shown, never acted upon.
            match berth_archive::read_index(&path) {
                Ok(index) => match BackupMeta::from_meta(&index.manifest.meta) {
                    Ok(meta) => listed.secrets_included = Some(meta.secrets.included),
                    Err(err) => listed.problem = Some(format!("unreadable metadata: {err}")),
                },
                Err(err) => listed.problem = Some(err.to_string()),
            }
        }
        out.push((created, listed));
    }
    out.sort_by_key(|(created, _)| std::cmp::Reverse(*created));
    Ok((target.describe(), out.into_iter().map(|(_, l)| l).collect()))
}

/// An archive ready to read: a local file, downloaded into staging when remote.
pub(crate) struct Fetched {
    /// The local file.
    pub path: PathBuf,
    /// Keeps a downloaded copy alive until dropped.
    _staging: Option<TempTree>,
}

/// Find `archive`: an existing file path, else a name in the target.
pub(crate) fn fetch(
    inst: &Instance,
    archive: &str,
    to: Option<&str>,
    progress: &dyn Progress,
) -> Result<Fetched> {
    if let Some(local) = as_file(archive) {
        return Ok(local);
    }
    let spec = target_spec(inst, to)?;
    fetch_from(&inst.paths, &spec, &ssh_options(inst)?, archive, progress)
}

/// `archive` itself, when it names an existing file.
fn as_file(archive: &str) -> Option<Fetched> {
    let as_path = Path::new(archive);
    as_path.is_file().then(|| Fetched {
        path: as_path.to_path_buf(),
        _staging: None,
    })
}

/// Find `archive` (an existing file path, else a name in the target `spec`), downloading
/// it into a staging directory of the instance at `paths` when the target is remote.
/// For a restore that has no instance to ask yet (the archive's manifest decides it).
pub(crate) fn fetch_from(
    paths: &berth_render::Paths,
    spec: &TargetSpec,
    ssh: &SshOptions,
    archive: &str,
    progress: &dyn Progress,
) -> Result<Fetched> {
    if let Some(local) = as_file(archive) {
        return Ok(local);
    }
    let target = berth_target::open(spec, ssh);
    if let Some(p) = target.local_path(archive)
        && p.is_file()
    {
        return Ok(Fetched {
            path: p,
            _staging: None,
        });
    }
    if archive.contains('/') || matches!(spec, TargetSpec::Local(_)) {
        return Err(BackupError::Cannot {
            what: format!(
                "No archive `{archive}` (neither a file nor in {})",
                target.describe()
            ),
            hint: "`berth backup list` shows the archives in the target".to_owned(),
        });
    }
    let tmp = leftovers::make_staging(paths, "fetch").map(TempTree)?;
    let dest = tmp.0.join(archive);
    progress.begin(&format!("Downloading {archive} from {}", target.describe()));
    progress.bytes(None);
    let mut advance = |n: u64| progress.advance(n);
    target.get(archive, &dest, &mut advance)?;
    progress.end("");
    Ok(Fetched {
        path: dest,
        _staging: Some(tmp),
    })
}

/// What `berth backup verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The archive.
    pub archive: PathBuf,
    /// App and version it holds.
    pub app: String,
    /// App version.
    pub app_version: String,
    /// When it was taken, from its signed metadata.
    pub created: String,
    /// The trusted key that signed it (`ed25519:…`).
    pub signer: String,
    /// Entries checked (size and SHA-256 each).
    pub entries: usize,
    /// Bytes of data checked.
    pub bytes: u64,
    /// Entries in the database dump's table of contents (`pg_restore --list`).
    pub dump_toc_entries: Option<usize>,
    /// Whether the secrets are in the archive.
    pub secrets_included: bool,
    /// Whether the given key opens them: `Some(false)` when the archive is intact but
    /// its secrets were encrypted to another key (`None`: no key given, or no secrets).
    pub key_opens_secrets: Option<bool>,
    /// The archive's format number.
    pub format: u32,
    /// For an archive of an earlier format, what its signature does not cover and what
    /// to do about it; `None` for the current format.
    pub format_note: Option<String>,
    /// Seconds taken.
    pub seconds: f64,
}

/// `berth backup verify`: the signature against the trusted keys (the one in `key`, the
/// instance's own), the metadata against the manifest, every checksum, the compression's
/// integrity, the site config through the host's validation, the dump readable by
/// `pg_restore --list` (run unprivileged), and with `key` the secrets decryptable and the
/// manifest's.
pub fn verify(
    inst: &Instance,
    archive: &str,
    to: Option<&str>,
    key: Option<&Path>,
    progress: &dyn Progress,
) -> Result<VerifyReport> {
    let started = Instant::now();
    let key = key.map(crate::trust::read_key_file).transpose()?;
    let trusted = crate::trust::trusted_keys(inst, key.as_ref())?;
    let fetched = fetch(inst, archive, to, progress)?;
    let path = &fetched.path;
    // Opened once and authenticated before anything in it is looked at; everything
    // below reads that open file, never the path again.
    let opened = berth_archive::Archive::open(path, &trusted)?;
    let index = opened.manifest();
    let meta = crate::trust::read_meta(index, path)?;
    let facts = crate::trust::check_meta(inst, &meta, index, path)?;
    if !facts.privileged_entries.is_empty() {
        return Err(BackupError::Cannot {
            what: format!(
                "`{}` has entries with setuid, setgid or sticky bits, which berth never writes: {}",
                path.display(),
                facts.privileged_entries.join(", ")
            ),
            hint:
                "a restore would drop those bits; check who made this archive before restoring it"
                    .to_owned(),
        });
    }
    let tmp = staging(inst, "verify")?;
    // Traversable, so the unprivileged `pg_restore` reaches its own directory below.
    let (parent, name) = berth_host::beneath::in_parent(&tmp.0)?;
    parent.set_mode(&name, 0o711)?;
    let out = private_subdir(&tmp.0, "x")?;
    let toc = facts.dump_path.as_ref().map(|p| format!("{p}/toc.dat"));
    progress.begin(&format!("Verifying {}", path.display()));
    progress.bytes(Some(index.total_size()));
    let toc_filter = toc.clone();
    let filter = move |entry: &str| {
        toc_filter.as_deref() == Some(entry)
            || entry == "secrets.age"
            || entry == "config/site.toml"
    };
    opened.extract(&out, &filter, &mut progress_fn(progress))?;
    progress.end("");
    crate::trust::check_site_config(inst, &out.join("config/site.toml"))?;
    let dump_toc_entries = match &toc {
        Some(t) => Some(crate::trust::list_dump(
            &state_bin_dir(inst),
            &out.join(t),
            &tmp.0.join("toc-check"),
        )?),
        None => None,
    };
    let secrets_included = index.entry("secrets.age").is_some();
    let identity = match &key {
        Some(k) => berth_archive::signing::parse_key_file(&k.text)?.identity,
        None => None,
    };
    let key_opens_secrets = match (identity, secrets_included) {
        (Some(identity), true) => {
            let blob = std::fs::read(out.join("secrets.age"))
                .map_err(BackupError::io("read", out.join("secrets.age")))?;
            let dest = tmp.0.join("secrets");
            match berth_archive::secrets::decrypt_to_dir(&blob, &identity, &dest) {
                Ok(_) => {
                    crate::trust::check_secrets(inst, &dest)?;
                    Some(true)
                }
                // The archive is intact; the key is not the one it was made with.
                Err(berth_archive::ArchiveError::WrongKey { .. }) => Some(false),
                Err(e) => return Err(e.into()),
            }
        }
        _ => None,
    };
    Ok(VerifyReport {
        archive: path.clone(),
        app: meta.app.clone(),
        app_version: meta.app_version.clone(),
        created: meta.created.clone(),
        signer: opened.signer().to_string(),
        entries: index.entries.len(),
        bytes: index.total_size(),
        dump_toc_entries,
        secrets_included,
        key_opens_secrets,
        format: opened.format(),
        format_note: opened.format_note().map(str::to_owned),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Creates `name` in the directory `parent` berth just made, mode 0700 and root's
/// whatever the umask, by descriptor: what is unpacked there is nobody else's to read.
fn private_subdir(parent: &Path, name: &str) -> Result<PathBuf> {
    let dir = berth_host::beneath::SafeDir::open_trusted(parent)?;
    dir.create_dir(Path::new(name), 0o700, None)?;
    Ok(parent.join(name))
}

/// Where `pg_restore` is: the manifest's database `bin_dir`, else the PATH's.
fn state_bin_dir(inst: &Instance) -> PathBuf {
    inst.manifest
        .manifest
        .backup
        .as_ref()
        .and_then(|b| b.database.as_ref())
        .map_or_else(|| PathBuf::from("/usr/bin"), |d| PathBuf::from(&d.bin_dir))
}

/// The identity in a key file given on the command line, read once with
/// [`crate::trust::read_key_file`].
pub(crate) fn read_identity(
    key: &crate::trust::KeyFileText,
) -> Result<berth_archive::secrets::Identity> {
    Ok(berth_archive::secrets::parse_identity(&key.text)?)
}

/// What `berth backup prune` decided.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    /// The target.
    pub target: String,
    /// Every archive with the decision and its reasons.
    pub decisions: Vec<berth_target::retention::Decision>,
    /// Archives deleted (none on a dry run).
    pub deleted: Vec<String>,
}

/// The retention policy from the site config.
pub fn policy(inst: &Instance) -> Result<berth_target::retention::Policy> {
    Ok(retention(&settings(inst)?))
}

/// The retention part of a backup policy.
pub fn retention(p: &BackupPolicy) -> berth_target::retention::Policy {
    berth_target::retention::Policy {
        keep_last: p.keep_last,
        keep_daily: p.keep_daily,
        keep_weekly: p.keep_weekly,
    }
}

/// `berth backup prune`: delete this app's archives the retention policy does not keep.
pub fn prune(inst: &Instance, to: Option<&str>, dry_run: bool) -> Result<PruneReport> {
    let spec = target_spec(inst, to)?;
    let target = berth_target::open(&spec, &ssh_options(inst)?);
    prune_in(
        target.as_ref(),
        &inst.manifest.manifest.app.name,
        &policy(inst)?,
        dry_run,
    )
}

/// Deletes the archives of `app` in `target` that `policy` does not keep (none on a
/// dry run); other files, and other apps' archives, stay.
///
/// # Errors
/// The target cannot be listed or an archive deleted; the policy keeps nothing.
pub fn prune_in(
    target: &dyn berth_target::Target,
    app: &str,
    policy: &berth_target::retention::Policy,
    dry_run: bool,
) -> Result<PruneReport> {
    let backups: Vec<(String, jiff::Timestamp)> = target
        .list()?
        .into_iter()
        .filter_map(|e| {
            let (a, _, created) = berth_archive::parse_archive_name(&e.name)?;
            (a == app).then_some((e.name, created))
        })
        .collect();
    let decisions =
        berth_target::retention::decide(&backups, policy).map_err(|e| BackupError::Cannot {
            what: e.to_string(),
            hint:
                "set `keep_last`, `keep_daily` or `keep_weekly` under [backup] in the site config"
                    .to_owned(),
        })?;
    let mut deleted = Vec::new();
    if !dry_run {
        for d in decisions.iter().filter(|d| !d.keep) {
            target.delete(&d.name)?;
            deleted.push(d.name.clone());
        }
    }
    Ok(PruneReport {
        target: target.describe(),
        decisions,
        deleted,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    /// Attack: `backup verify` unpacked the archive's site config and secrets into a
    /// directory made with the umask's mode (0755), readable by every local user while
    /// the verification ran. It is 0700 and the caller's, whatever the umask.
    #[test]
    fn verify_unpacks_into_a_private_directory() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
        let made = super::private_subdir(tmp.path(), "x");
        nix::sys::stat::umask(old);
        let meta = std::fs::symlink_metadata(made.unwrap()).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.mode() & 0o7777, 0o700);
        assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
        // Never an existing directory or a link someone planted there.
        std::os::unix::fs::symlink("/etc", tmp.path().join("y")).unwrap();
        assert!(super::private_subdir(tmp.path(), "y").is_err());
    }

    use std::cell::Cell;
    use std::path::Path;

    use berth_render::BackupTarget;
    use berth_target::TargetSpec;

    use super::{choose_target, free_archive_name, tree_size};
    use crate::BackupError;
    use crate::testing::{Notes, instance};

    fn at(text: &str) -> jiff::Timestamp {
        text.parse().unwrap()
    }

    fn name(created: &str) -> String {
        berth_archive::archive_name("ministack", "1.0.0", at(created))
    }

    /// A backup never takes the name of an archive already there: it waits for the
    /// next second and asks the clock again, and the name carries the time it got.
    #[test]
    fn a_backup_waits_for_a_name_no_archive_has() {
        let times = [
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:01Z",
        ];
        let asked = Cell::new(0);
        let waited = Cell::new(0);
        let taken = [name(times[0])];
        let (chosen, created) = free_archive_name(
            "ministack",
            "1.0.0",
            |n| taken.iter().any(|t| t == n),
            || {
                asked.set(asked.get() + 1);
                at(times[asked.get() - 1])
            },
            || waited.set(waited.get() + 1),
        );
        assert_eq!(chosen, name(times[2]));
        assert_eq!(created, at(times[2]));
        assert_eq!((asked.get(), waited.get()), (3, 2));

        // A free name is taken at once.
        let (chosen, _) = free_archive_name(
            "ministack",
            "1.0.0",
            |_| false,
            || at(times[0]),
            || panic!("no wait for a free name"),
        );
        assert_eq!(chosen, name(times[0]));
    }

    /// `--to` wins over the site config's target, which wins over the default
    /// directory; a target that does not parse is refused, not replaced by another.
    #[test]
    fn the_target_is_the_command_lines_then_the_site_configs_then_the_default() {
        let default = || BackupTarget::Default("/p/backups".into());
        let configured = || BackupTarget::Configured("/srv/backups".into());
        let local = |p: &str| TargetSpec::Local(p.into());
        assert_eq!(
            choose_target(Some("/mnt/usb"), configured()).unwrap(),
            local("/mnt/usb")
        );
        assert_eq!(
            choose_target(None, configured()).unwrap(),
            local("/srv/backups")
        );
        assert_eq!(choose_target(None, default()).unwrap(), local("/p/backups"));
        assert!(matches!(
            choose_target(Some("ftp://host/dir"), default()),
            Err(BackupError::Target(_))
        ));
        assert!(matches!(
            choose_target(None, BackupTarget::Configured("ftp://host/dir".into())),
            Err(BackupError::Target(_))
        ));
    }

    /// What a backup's size check counts: regular files under the directory, not
    /// what symlinks lead to (a data directory that is itself a link counts nothing).
    #[test]
    fn the_size_of_a_tree_counts_its_files_and_never_follows_links() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("one"), vec![0u8; 100]).unwrap();
        std::fs::write(dir.join("a/b/two"), vec![0u8; 20]).unwrap();
        let big = tmp.path().join("big");
        std::fs::write(&big, vec![0u8; 5000]).unwrap();
        std::os::unix::fs::symlink(&big, dir.join("a/link")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), dir.join("loop")).unwrap();
        assert_eq!(tree_size(&dir), 120);
        let linked = tmp.path().join("linked");
        std::os::unix::fs::symlink(&dir, &linked).unwrap();
        assert_eq!(tree_size(&linked), 0);
        assert_eq!(tree_size(&tmp.path().join("missing")), 0);
    }

    fn archive_in(dir: &Path, app: &str, created: &str, content: &[u8]) -> String {
        let name = berth_archive::archive_name(app, "1.0.0", at(created));
        std::fs::write(dir.join(&name), content).unwrap();
        name
    }

    /// `backup list` shows this app's archives only, newest first, and says of one whose
    /// index cannot be read what is wrong with it.
    #[test]
    fn the_list_shows_this_apps_archives_newest_first_with_their_problems() {
        let tmp = tempfile::tempdir().unwrap();
        let inst = instance(&tmp.path().join("inst"));
        let dir = inst.paths.default_backups();
        std::fs::create_dir_all(&dir).unwrap();
        let older = archive_in(&dir, "ministack", "2026-01-01T10:00:00Z", b"truncated");
        let newer = archive_in(&dir, "ministack", "2026-02-01T10:00:00Z", b"");
        archive_in(&dir, "otherapp", "2026-03-01T10:00:00Z", b"");
        std::fs::write(dir.join("notes.txt"), b"").unwrap();
        let (target, listed) = super::list(&inst, None).unwrap();
        assert!(target.contains(&dir.display().to_string()), "{target}");
        let names: Vec<&str> = listed.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, [newer.as_str(), older.as_str()]);
        assert_eq!(
            listed[1].created.as_deref(),
            Some("2026-01-01 10:00:00 UTC")
        );
        assert_eq!(listed[1].app_version.as_deref(), Some("1.0.0"));
        assert!(
            listed
                .iter()
                .all(|l| l.problem.is_some() && l.secrets_included.is_none())
        );
    }

    /// `backup prune` deletes exactly the archives retention does not keep, never
    /// another app's, and a dry run deletes nothing.
    #[test]
    fn prune_deletes_what_retention_drops_and_a_dry_run_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let inst = instance(&tmp.path().join("inst"));
        let dir = inst.paths.default_backups();
        std::fs::create_dir_all(&dir).unwrap();
        for day in 1..=28 {
            archive_in(
                &dir,
                "ministack",
                &format!("2026-02-{day:02}T03:00:00Z"),
                b"",
            );
            archive_in(
                &dir,
                "ministack",
                &format!("2026-02-{day:02}T15:00:00Z"),
                b"",
            );
        }
        let other = archive_in(&dir, "otherapp", "2026-01-01T00:00:00Z", b"");
        let count = || std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(count(), 57);

        let dry = super::prune(&inst, None, true).unwrap();
        assert!(dry.deleted.is_empty());
        assert_eq!(count(), 57);
        assert_eq!(
            dry.decisions.len(),
            56,
            "the other app's archive is not decided on"
        );

        let pruned = super::prune(&inst, None, false).unwrap();
        let dropped: Vec<String> = pruned
            .decisions
            .iter()
            .filter(|d| !d.keep)
            .map(|d| d.name.clone())
            .collect();
        assert!(!dropped.is_empty());
        assert_eq!(pruned.deleted, dropped);
        assert_eq!(count(), 57 - dropped.len());
        assert!(dir.join(other).exists());
        for d in &pruned.decisions {
            assert_eq!(dir.join(&d.name).exists(), d.keep, "{}", d.name);
        }
    }

    /// An archive is found as a file path, else by name in the target; a name found in
    /// neither is refused with how to list what there is.
    #[test]
    fn an_archive_is_found_by_path_or_by_name_in_the_target() {
        let tmp = tempfile::tempdir().unwrap();
        let inst = instance(&tmp.path().join("inst"));
        let dir = inst.paths.default_backups();
        std::fs::create_dir_all(&dir).unwrap();
        let named = archive_in(&dir, "ministack", "2026-01-01T10:00:00Z", b"x");
        let elsewhere = tmp.path().join("copy.berth.tar.zst");
        std::fs::write(&elsewhere, b"x").unwrap();
        let notes = Notes::default();

        let by_path = super::fetch(&inst, elsewhere.to_str().unwrap(), None, &notes).unwrap();
        assert_eq!(by_path.path, elsewhere);
        let by_name = super::fetch(&inst, &named, None, &notes).unwrap();
        assert_eq!(by_name.path, dir.join(&named));
        let Err(BackupError::Cannot { what, hint }) = super::fetch(
            &inst,
            "ministack-1.0.0-20990101T000000Z.berth.tar.zst",
            None,
            &notes,
        ) else {
            panic!("a missing archive was found");
        };
        assert!(
            what.starts_with("No archive `ministack-1.0.0-20990101T000000Z"),
            "{what}"
        );
        assert!(hint.contains("berth backup list"), "{hint}");
        // Nothing was staged for a local target.
        assert!(!inst.paths.tmp().exists());
    }

    /// Secrets are encrypted to `backup.recipient` when set (checked before anything is
    /// dumped), else to the instance's own key, else not at all.
    #[test]
    fn secrets_go_to_the_configured_recipient_else_the_instance_key() {
        let tmp = tempfile::tempdir().unwrap();
        let inst = instance(&tmp.path().join("inst"));
        let mut policy = super::settings(&inst).unwrap();
        assert_eq!(super::recipient(&inst, &policy).unwrap(), None);

        let made = super::key(&inst, None).unwrap();
        assert!(made.created && made.signing_created);
        assert_eq!(
            super::recipient(&inst, &policy).unwrap().as_deref(),
            Some(made.recipient.as_str())
        );

        let (_, other) = berth_archive::secrets::generate_identity();
        policy.recipient = Some(other.clone());
        assert_eq!(super::recipient(&inst, &policy).unwrap(), Some(other));
        policy.recipient = Some("age1notakey".into());
        assert!(super::recipient(&inst, &policy).is_err());

        // A second `backup key` keeps both keys.
        let again = super::key(&inst, None).unwrap();
        assert!(!again.created && !again.signing_created);
        assert_eq!(again.recipient, made.recipient);
        assert_eq!(again.signing_public_key, made.signing_public_key);
    }
}
