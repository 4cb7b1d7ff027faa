//! `berth restore`: bring an instance back from an archive, on this prefix or a new one.
//!
//! Journaled in `<prefix>/tmp/restore.json`, written before each step is taken and
//! after it is done. Every step can run again after an interruption, so `--resume`
//! after a kill -9 continues where it stopped, and `--abort` undoes whatever was done:
//!
//! 1. `stage`: verify and extract the whole archive into `<prefix>/tmp/restore-<id>`,
//!    decrypt the secrets with the key. Nothing outside that directory changes, and it
//!    is removed if anything is wrong (corrupt, truncated, other app, other version,
//!    wrong key).
//! 2. `safety-backup`: restoring over a running instance, back it up first
//!    (`--no-safety-backup` skips it).
//! 3. `stop`: stop every service but the database (and what it needs).
//! 4. `files`: the site config, the secrets and each data directory are moved aside
//!    (into the staging directory) and the archive's moved in: renames, on one
//!    filesystem.
//! 5. `prepare-database`: configuration rewritten from the restored site config and
//!    secrets, the supervisor running, the database service started and the hooks
//!    the manifest names in `restore_after` run (e.g. the one creating the owner role).
//! 6. `load-database`: `pg_restore --jobs` into a new database beside the app's.
//! 7. `swap-database`: the app's database renamed aside, the restored one renamed in.
//! 8. `start`: `berth up`: remaining hooks, every service, health through the front door.
//! 9. `commit`: the database and files kept from before are deleted, the journal removed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use berth_render::{DesiredState, Paths};
use berth_supervisor_protocol::{Request, Target};
use serde::{Deserialize, Serialize};

use berth_lifecycle::{Instance, Locate, Progress, Run, fault, hooks, instance, supervisor, up};

use crate::backup::{self, Fetched};
use crate::database;
use crate::error::{BackupError, Result};

/// The steps of a restore, in order.
pub const STEPS: [&str; 9] = [
    "stage",
    "safety-backup",
    "stop",
    "files",
    "prepare-database",
    "load-database",
    "swap-database",
    "start",
    "commit",
];

/// What `berth restore` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Archive: a file, or a name in the target.
    pub archive: Option<String>,
    /// Target to find a named archive in.
    pub from: Option<String>,
    /// Backup key (age identity file) to decrypt the secrets.
    pub key: Option<PathBuf>,
    /// Restore an archive without secrets: new ones are generated.
    pub without_secrets: bool,
    /// Continue an interrupted restore.
    pub resume: bool,
    /// Skip the backup of the current instance an in-place restore takes first.
    pub no_safety_backup: bool,
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// The archive restored.
    pub archive: String,
    /// App and version.
    pub app: String,
    /// App version.
    pub app_version: String,
    /// Where the app answers.
    pub url: String,
    /// Seconds per step.
    pub steps: Vec<(String, f64)>,
    /// Whole duration.
    pub seconds: f64,
    /// Whether the secrets came back from the archive.
    pub secrets_restored: bool,
    /// The backup of the instance taken before restoring over it.
    pub safety_backup: Option<String>,
}

/// The restore journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[allow(clippy::struct_excessive_bools)] // a record of independent facts
struct Journal {
    /// The archive as named on the command line, the target it came from, the key.
    source: String,
    from: Option<String>,
    key: Option<PathBuf>,
    without_secrets: bool,
    /// The local file read.
    archive: String,
    /// The prefix did not exist before.
    was_new: bool,
    staging: PathBuf,
    app: String,
    app_version: String,
    /// The prefix held no instance before the restore.
    new_instance: bool,
    /// Entries of the prefix before the restore (a new instance's abort removes the rest).
    existed: Vec<String>,
    /// The supervisor was running before.
    was_running: bool,
    secrets_restored: bool,
    /// Skip the safety backup.
    #[serde(default)]
    no_safety_backup: bool,
    /// The backup of the instance taken before an in-place restore.
    #[serde(default)]
    safety_backup: Option<String>,
    /// Archive data directories, relative to `<prefix>/data`.
    data_dirs: Vec<String>,
    done: Vec<String>,
    /// An abort has put the files and the database back; what is left of it is to
    /// bring the instance up and forget the restore.
    #[serde(default)]
    undone: bool,
}

impl Journal {
    fn has(&self, step: &str) -> bool {
        self.done.iter().any(|d| d == step)
    }
}

fn journal_path(prefix: &Path) -> PathBuf {
    Paths::unversioned(prefix).restore_journal()
}

fn save(prefix: &Path, j: &Journal) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(j)?;
    berth_host::fsutil::write_atomic(&journal_path(prefix), &bytes, 0o600, None)?;
    Ok(())
}

fn load(prefix: &Path) -> Result<Option<Journal>> {
    let path = journal_path(prefix);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(BackupError::io("read the restore journal", &path)(e)),
    }
}

/// The live path, the staged path and the aside path of every item a restore swaps.
fn items(inst: &Instance, j: &Journal) -> Vec<(PathBuf, PathBuf, PathBuf)> {
    let x = j.staging.join("x");
    let aside = j.staging.join("previous");
    let mut out = vec![(
        inst.config_path.clone(),
        x.join("config/site.toml"),
        aside.join("site.toml"),
    )];
    if j.secrets_restored {
        out.push((
            inst.paths.secrets.clone(),
            j.staging.join("secrets"),
            aside.join("secrets"),
        ));
    }
    for d in &j.data_dirs {
        out.push((
            inst.paths.data_dir(d),
            x.join("data").join(d),
            aside.join("data").join(d),
        ));
    }
    out
}

/// Whether a prefix holds an instance (a site config alone, e.g. one written to
/// reach an SFTP target, does not make one).
fn has_instance(prefix: &Path) -> bool {
    Paths::unversioned(prefix).state_db().exists()
}

/// How a restore begins.
#[derive(Debug)]
enum Begin<'a> {
    /// No journal: stage the archive named on the command line.
    Fresh(&'a str),
    /// `--resume` of a restore killed while it unpacked: unpack again from the start.
    Restage(Box<Journal>),
    /// `--resume`: go on after the last step done.
    Resume(Box<Journal>),
}

/// How a restore begins, given the journal an earlier one left in `prefix` (if any),
/// whether `--resume` was given and the archive named. Refuses to begin a new restore
/// over an interrupted one, to resume what is not there, and to resume or begin
/// anything while an abort is half done.
fn how_to_begin<'a>(
    existing: Option<Journal>,
    resume: bool,
    archive: Option<&'a str>,
    prefix: &Path,
) -> Result<Begin<'a>> {
    match (existing, resume) {
        (Some(j), _) if j.undone => Err(BackupError::Cannot {
            what: format!(
                "An abort of the restore of `{}` into {} was begun and did not finish",
                j.archive,
                prefix.display()
            ),
            hint: "run `berth restore --abort` again to finish it".to_owned(),
        }),
        (Some(j), true) if !j.has("stage") => Ok(Begin::Restage(Box::new(j))),
        (Some(j), true) => Ok(Begin::Resume(Box::new(j))),
        (Some(j), false) => Err(BackupError::Cannot {
            what: format!(
                "A restore of `{}` into {} was interrupted ({} of {} steps done)",
                j.archive,
                prefix.display(),
                j.done.len(),
                STEPS.len()
            ),
            hint: "run `berth restore --resume` to finish it or `berth restore --abort` to undo it"
                .to_owned(),
        }),
        (None, true) => Err(BackupError::Cannot {
            what: format!("No interrupted restore in {}", prefix.display()),
            hint: "start one with `berth restore ARCHIVE`".to_owned(),
        }),
        (None, false) => archive
            .map(Begin::Fresh)
            .ok_or_else(|| BackupError::Cannot {
                what: "No archive named".to_owned(),
                hint: "`berth restore ARCHIVE`; `berth backup list` shows the archives".to_owned(),
            }),
    }
}

/// `berth restore`.
pub fn restore(
    loc: &Locate,
    opts: &RestoreOptions,
    berth_exe: &Path,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    let started = Instant::now();
    // The manifest is the one `up` would use (`--manifest`, the prefix's stored copy),
    // except in a prefix that has none: there it is the archive's own, read once the
    // archive is authenticated and unpacked (never the one built into berth).
    let inst = match archive_manifest_prefix(loc)? {
        Some(prefix) => Known::FromArchive {
            paths: Paths::unversioned(&prefix),
            loc,
        },
        None => Known::Instance(Box::new(instance::open(loc)?)),
    };
    let paths = inst.paths();
    // Before anything of an interrupted attempt is removed or redone.
    berth_lifecycle::leftovers::stop_leftover_children_at(paths, progress)?;
    let prefix = paths.prefix.clone();
    let existing = load(&prefix)?;
    crate::leftovers::sweep(paths, progress)?;
    let staging_started = Instant::now();
    let (mut j, staged_now) =
        match how_to_begin(existing, opts.resume, opts.archive.as_deref(), &prefix)? {
            Begin::Restage(j) => {
                // Interrupted while unpacking: unpack again from the start.
                let _ = remove_tree_at(&j.staging);
                let again = RestoreOptions {
                    archive: Some(j.source.clone()),
                    from: j.from.clone(),
                    key: j.key.clone(),
                    without_secrets: j.without_secrets,
                    resume: false,
                    no_safety_backup: j.no_safety_backup,
                };
                let staged = stage(
                    &inst,
                    &j.source,
                    &again,
                    Some((j.was_new, j.existed.clone())),
                    progress,
                )?;
                (staged, true)
            }
            Begin::Resume(j) => (*j, false),
            Begin::Fresh(archive) => (stage(&inst, archive, opts, None, progress)?, true),
        };
    let mut timings = Vec::new();
    if staged_now {
        timings.push(("stage".to_owned(), staging_started.elapsed().as_secs_f64()));
    }
    run_steps(loc, &mut j, opts.resume, berth_exe, progress, &mut timings)?;
    let inst = instance::open(loc)?;
    Ok(RestoreReport {
        archive: j.archive.clone(),
        app: j.app.clone(),
        app_version: j.app_version.clone(),
        url: inst.config.external_url.to_string(),
        steps: timings,
        seconds: started.elapsed().as_secs_f64(),
        secrets_restored: j.secrets_restored,
        safety_backup: j.safety_backup.clone(),
    })
}

/// What a restore knows of the instance before it unpacks the archive.
enum Known<'a> {
    /// Its manifest (`--manifest`, or the prefix's stored copy) and site config.
    Instance(Box<Instance>),
    /// Only where it goes: a prefix with no manifest of its own, restored without
    /// `--manifest`, takes the one the archive carries.
    FromArchive {
        /// The prefix's paths (those that do not depend on the app's version).
        paths: Paths,
        /// How the command line locates the instance.
        loc: &'a Locate,
    },
}

impl Known<'_> {
    fn paths(&self) -> &Paths {
        match self {
            Known::Instance(inst) => &inst.paths,
            Known::FromArchive { paths, .. } => paths,
        }
    }
}

/// The prefix a restore takes the archive's manifest for: one without a stored
/// manifest, restored without `--manifest`. `None` when the manifest is the one `up`
/// would use (`--manifest`, or the prefix's stored copy).
fn archive_manifest_prefix(loc: &Locate) -> Result<Option<PathBuf>> {
    if loc.manifest.is_some() {
        return Ok(None);
    }
    let prefix = if let Some(p) = &loc.prefix {
        instance::checked_prefix(p)?
    } else {
        match instance::locate(loc, &berth_host::facts::probe())? {
            (prefix, _, instance::ManifestOrigin::Embedded) => prefix,
            _ => return Ok(None),
        }
    };
    let stored = Paths::unversioned(&prefix)
        .manifest_dir()
        .join("berth.toml");
    Ok((!stored.is_file()).then_some(prefix))
}

/// The most a restore reads of the manifest an archive carries (`manifest/`, from its
/// signed index, before anything is unpacked): a real one is a few dozen KiB, and its
/// files are read whole into memory.
const MAX_ARCHIVE_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

/// Checks what the signed index says of the archive's `manifest/` before a restore
/// unpacks it to use it: there is one (`berth.toml`), it holds only files and
/// directories (berth stores nothing else there) and it is small.
fn check_archive_manifest(index: &berth_archive::ArchiveManifest, archive: &Path) -> Result<()> {
    if index.entry("manifest/berth.toml").is_none() {
        return Err(BackupError::Cannot {
            what: format!(
                "`{}` carries no app manifest (`manifest/berth.toml`), and the prefix has none",
                archive.display(),
            ),
            hint: "restore it with the app's manifest: `berth restore ARCHIVE --manifest DIR`"
                .to_owned(),
        });
    }
    let mut total = 0u64;
    for e in index
        .entries
        .iter()
        .filter(|e| e.path == "manifest" || e.path.starts_with("manifest/"))
    {
        if !matches!(
            e.kind,
            berth_archive::EntryKind::File | berth_archive::EntryKind::Dir
        ) {
            return Err(crate::trust::crafted(
                archive,
                &format!(
                    "its manifest holds `{}`, which is neither a file nor a directory",
                    e.path.escape_debug()
                ),
            ));
        }
        total = total.saturating_add(e.size);
    }
    if total > MAX_ARCHIVE_MANIFEST_BYTES {
        return Err(crate::trust::crafted(
            archive,
            &format!(
                "its manifest has {total} bytes, more than the {MAX_ARCHIVE_MANIFEST_BYTES} a manifest may have"
            ),
        ));
    }
    Ok(())
}

/// The instance a restore into a prefix without a manifest becomes: the archive's
/// manifest, unpacked into the private `x/` (so authenticated and checked entry by
/// entry against the signed index), loaded and validated as one from disk would be
/// (templates confined to its directory, sizes capped), checked to be of the app and
/// version the signed metadata names, then kept as the prefix's stored copy (only
/// `berth.toml` and the templates it names), which every later step, `--resume` and
/// `--abort` read.
fn adopt_archive_manifest(
    loc: &Locate,
    prefix: &Path,
    x: &Path,
    meta: &crate::meta::BackupMeta,
    archive: &Path,
) -> Result<Instance> {
    let unpacked = Locate {
        prefix: Some(prefix.to_owned()),
        manifest: Some(x.join("manifest")),
        config: loc.config.clone(),
        embedded: None,
        payload: None,
    };
    let inst = instance::open(&unpacked)?;
    let app = &inst.manifest.manifest.app;
    if app.name != meta.app || app.version != meta.app_version {
        return Err(crate::trust::crafted(
            archive,
            &format!(
                "its manifest installs {} {}, but its metadata says it holds {} {}",
                app.name, app.version, meta.app, meta.app_version
            ),
        ));
    }
    berth_lifecycle::release::store_manifest(&inst, &unpacked)?;
    let stored = Locate {
        prefix: Some(prefix.to_owned()),
        manifest: None,
        config: loc.config.clone(),
        embedded: None,
        payload: None,
    };
    Ok(instance::open(&stored)?)
}

/// Refuses an archive of another app or version than the manifest of the instance,
/// saying where that manifest came from and the way out.
pub(crate) fn check_same_app(
    inst: &Instance,
    meta: &crate::meta::BackupMeta,
    archive: &Path,
) -> Result<()> {
    let app = &inst.manifest.manifest.app;
    let prefix = &inst.paths.prefix;
    let (archived_app, archived_version) = (&meta.app, &meta.app_version);
    let origin = match &inst.origin {
        instance::ManifestOrigin::Dir(dir) => {
            format!("the manifest given with `--manifest {}`", dir.display())
        }
        instance::ManifestOrigin::Stored(_) => format!("the instance in {}", prefix.display()),
        instance::ManifestOrigin::Embedded => "the manifest built into berth".to_owned(),
    };
    if *archived_app != app.name {
        let hint = match &inst.origin {
            instance::ManifestOrigin::Dir(_) => format!(
                "leave out `--manifest`: restored into a prefix of its own (`--prefix DIR`), an \
                 archive brings its own manifest of `{archived_app}`"
            ),
            _ => format!(
                "restore it into a prefix of its own (`--prefix DIR`): there the archive's own \
                 manifest of `{archived_app}` is used"
            ),
        };
        return Err(BackupError::Cannot {
            what: format!(
                "`{}` is a backup of `{archived_app}`, but {origin} is of `{}`",
                archive.display(),
                app.name
            ),
            hint,
        });
    }
    if *archived_version != app.version {
        return Err(BackupError::Cannot {
            what: format!(
                "`{}` holds {} {archived_version}, but {origin} installs {} {}",
                archive.display(),
                app.name,
                app.name,
                app.version
            ),
            hint: format!(
                "a restore only goes into the same version: 1. restore it into a new prefix \
                 (`berth --prefix NEW-DIR restore ARCHIVE`, without `--manifest`: the archive's own \
                 manifest of {name} {archived_version} is used), 2. let that restore finish, 3. upgrade \
                 to {} by running `berth --prefix NEW-DIR --manifest DIR up` with the newer manifest",
                app.version,
                name = app.name,
            ),
        });
    }
    Ok(())
}

/// Without `--prefix` a restore goes to the default prefix of the app: with the
/// archive's manifest, that is the archive's app's default prefix, which berth only
/// learns from the signed metadata, after it has looked for the archive and its keys in
/// the default prefix of the app built into berth. Refused when the two differ, naming
/// the prefix to give.
fn check_default_prefix(
    loc: &Locate,
    prefix: &Path,
    meta: &crate::meta::BackupMeta,
    archive: &Path,
) -> Result<()> {
    if loc.prefix.is_some() {
        return Ok(());
    }
    let wanted = instance::default_prefix(&meta.app, berth_host::users::is_root());
    if wanted == prefix {
        return Ok(());
    }
    Err(BackupError::Cannot {
        what: format!(
            "`{}` is a backup of `{}`, whose default prefix is {}, not {}",
            archive.display(),
            meta.app,
            wanted.display(),
            prefix.display()
        ),
        hint: format!(
            "name the prefix to restore into: `berth --prefix {} restore ARCHIVE`",
            wanted.display()
        ),
    })
}

/// The target and SSH options a restore fetches from before it knows the manifest:
/// `--from`, else what `[backup]` of the site config says (`target`, `ssh_identity`,
/// `ssh_known_hosts`; the file is validated whole against the archive's manifest once
/// that is unpacked), else the prefix's default directory.
fn target_before_manifest(
    loc: &Locate,
    paths: &Paths,
    from: Option<&str>,
) -> Result<(berth_target::TargetSpec, berth_target::SshOptions)> {
    let config = loc
        .config
        .as_deref()
        .map_or_else(|| paths.site_config(), Path::to_path_buf);
    let text = match berth_model::read_input(
        &config,
        "the site config",
        "the site config must be a regular UTF-8 file",
    ) {
        Ok(text) => text,
        Err(berth_model::InputError::Missing(_)) if loc.config.is_none() => String::new(),
        Err(e) => return Err(BackupError::Invalid(e.into_diagnostics())),
    };
    let site: toml::Table = toml::from_str(&text).map_err(|e| BackupError::Cannot {
        what: format!("`{}` is not valid TOML: {}", config.display(), e.message()),
        hint: "fix the site config (`berth config check` names the place once the instance exists)"
            .to_owned(),
    })?;
    let backup = site.get("backup").and_then(toml::Value::as_table);
    let text = |key: &str| {
        backup
            .and_then(|b| b.get(key))
            .and_then(toml::Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let spec = match from.map(str::to_owned).or_else(|| text("target")) {
        Some(t) => berth_target::TargetSpec::parse(&t)?,
        None => berth_target::TargetSpec::Local(paths.default_backups()),
    };
    let ssh = berth_target::SshOptions {
        identity_file: text("ssh_identity").map(PathBuf::from),
        known_hosts: text("ssh_known_hosts").map(PathBuf::from),
        ..berth_target::SshOptions::default()
    };
    Ok((spec, ssh))
}

/// Step `stage`: everything that can fail without touching the instance. `origin` is what
/// an earlier, interrupted attempt recorded about the prefix before it began.
#[allow(clippy::too_many_lines)] // one sequence of checks
fn stage(
    known: &Known<'_>,
    archive: &str,
    opts: &RestoreOptions,
    origin: Option<(bool, Vec<String>)>,
    progress: &dyn Progress,
) -> Result<Journal> {
    let paths = known.paths();
    let prefix = &paths.prefix;
    let (was_new, existed) = match origin {
        Some(o) => o,
        None if !prefix.exists() => (true, Vec::new()),
        None => (
            false,
            std::fs::read_dir(prefix)
                .map_err(BackupError::io("read", prefix))?
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect(),
        ),
    };
    let staging_root = paths.tmp();
    let staging = staging_root.join(format!("restore-{}", jiff::Timestamp::now().as_second()));
    let stored_manifest = paths.manifest_dir();
    // On any failure: nothing of this attempt stays behind.
    let forget = |e: BackupError| {
        let _ = remove_tree_at(&staging);
        let _ = berth_host::fsutil::remove_file_if_exists(&journal_path(prefix));
        if was_new {
            let _ = remove_tree_at(prefix);
        } else {
            let made = |dir: &Path| !existed.iter().any(|n| Path::new(n) == paths.beneath(dir));
            if made(&staging_root) {
                let _ = remove_tree_at(&staging_root);
            }
            // The archive's manifest, kept as the prefix's copy before a later check
            // failed.
            if matches!(known, Known::FromArchive { .. }) && made(&stored_manifest) {
                let _ = remove_tree_at(&stored_manifest);
            }
        }
        e
    };
    let fetched: Fetched = match known {
        Known::Instance(inst) => backup::fetch(inst, archive, opts.from.as_deref(), progress),
        Known::FromArchive { loc, .. } => target_before_manifest(loc, paths, opts.from.as_deref())
            .and_then(|(spec, ssh)| backup::fetch_from(paths, &spec, &ssh, archive, progress)),
    }
    .map_err(forget)?;
    // The key file is read once: the same text vouches for the archive and opens its
    // secrets.
    let key_text = opts
        .key
        .as_deref()
        .map(crate::trust::read_key_file)
        .transpose()
        .map_err(forget)?;
    // Nothing in the archive is looked at before its signature checks out, and the file
    // is opened once: what is extracted below is what was authenticated here.
    let trusted = crate::trust::trusted_keys_at(paths, key_text.as_ref()).map_err(forget)?;
    let opened =
        berth_archive::Archive::open(&fetched.path, &trusted).map_err(|e| forget(e.into()))?;
    let index = opened.manifest();
    let meta = crate::trust::read_meta(index, &fetched.path).map_err(forget)?;
    // The signed creation time, not the file name's: an older genuine archive copied
    // over a newer name is refused, and the administrator sees which backup this is.
    progress.note(&format!(
        "Restoring the backup made {} (signed metadata), signed by {}",
        meta.created,
        opened.signer()
    ));
    // With the manifest known, the archive must be of its app and version before
    // anything is unpacked; without, the archive's own manifest is checked from the
    // signed index now and used once it is unpacked.
    let mut facts = None;
    match known {
        Known::Instance(inst) => {
            check_same_app(inst, &meta, &fetched.path).map_err(forget)?;
            facts =
                Some(crate::trust::check_meta(inst, &meta, index, &fetched.path).map_err(forget)?);
        }
        Known::FromArchive { loc, .. } => {
            check_default_prefix(loc, prefix, &meta, &fetched.path).map_err(forget)?;
            check_archive_manifest(index, &fetched.path).map_err(forget)?;
        }
    }
    let secrets_in_archive = index.entry("secrets.age").is_some();
    let key_file = match (key_text, secrets_in_archive) {
        (Some(k), true) => Some(k),
        (None, true) => {
            let own = paths.backup_key();
            if own.is_file() {
                Some(crate::trust::read_key_file(&own).map_err(forget)?)
            } else {
                return Err(forget(BackupError::Cannot {
                    what: "The archive's secrets are encrypted and no backup key was given".to_owned(),
                    hint: "pass the key file the backup was made with: `berth restore ARCHIVE --key FILE`"
                        .to_owned(),
                }));
            }
        }
        (_, false) if !opts.without_secrets => {
            return Err(forget(BackupError::Cannot {
                what: format!(
                    "`{}` does not contain the instance's secrets (it was made without a backup key)",
                    fetched.path.display()
                ),
                hint: "restoring it generates new secrets, so whatever they protected (sessions, tokens, \
                       encrypted fields) is lost; pass `--without-secrets` to restore anyway"
                    .to_owned(),
            }));
        }
        (_, false) => None,
    };
    let identity = match &key_file {
        Some(k) => Some(backup::read_identity(k).map_err(forget)?),
        None => None,
    };

    // From here on the journal exists, so an interruption can be resumed or aborted.
    let x = staging.join("x");
    make_staging(&staging_root, &staging).map_err(forget)?;
    let mut j = Journal {
        source: archive.to_owned(),
        from: opts.from.clone(),
        key: opts.key.clone(),
        without_secrets: opts.without_secrets,
        archive: fetched.path.display().to_string(),
        was_new,
        staging: staging.clone(),
        app: meta.app.clone(),
        app_version: meta.app_version.clone(),
        new_instance: !has_instance(prefix),
        existed: existed.clone(),
        was_running: supervisor::is_running(paths),
        secrets_restored: identity.is_some(),
        no_safety_backup: opts.no_safety_backup,
        safety_backup: None,
        data_dirs: Vec::new(),
        done: Vec::new(),
        undone: false,
    };
    save(prefix, &j).map_err(forget)?;

    progress.begin(&format!(
        "Verifying and unpacking {}",
        fetched.path.display()
    ));
    progress.bytes(Some(index.total_size()));
    let all = |_: &str| true;
    opened
        .extract(&x, &all, &mut backup::progress_fn(progress))
        .map_err(|e| forget(e.into()))?;
    // No setuid or setgid file ever comes out of an archive, whatever the extractor let by.
    berth_host::beneath::SafeDir::open_trusted(&staging)
        .and_then(|d| d.clear_setid_tree(Path::new("x")))
        .map_err(|e| forget(e.into()))?;
    progress.end("");
    let adopted;
    let (inst, facts) = match (known, facts) {
        (Known::Instance(inst), Some(facts)) => (&**inst, facts),
        (Known::FromArchive { loc, .. }, _) => {
            adopted =
                adopt_archive_manifest(loc, prefix, &x, &meta, &fetched.path).map_err(forget)?;
            progress.note(&format!(
                "Using the manifest the archive carries: {} {}",
                adopted.manifest.manifest.app.name, adopted.manifest.manifest.app.version
            ));
            let facts =
                crate::trust::check_meta(&adopted, &meta, index, &fetched.path).map_err(forget)?;
            (&adopted, facts)
        }
        (Known::Instance(inst), None) => {
            let facts =
                crate::trust::check_meta(inst, &meta, index, &fetched.path).map_err(forget)?;
            (&**inst, facts)
        }
    };
    // Before anything moves in: the service users must reach the prefix.
    berth_lifecycle::up::check_reachable(inst).map_err(|e| forget(e.into()))?;
    if !facts.privileged_entries.is_empty() {
        progress.note(&format!(
            "The archive asks for setuid, setgid or sticky bits, which were dropped: {}",
            facts.privileged_entries.join(", ")
        ));
    }
    crate::trust::check_site_config(inst, &x.join("config/site.toml")).map_err(forget)?;

    let db_path = facts.dump_path.clone();
    if let (Some(p), Some(db)) = (
        &db_path,
        inst.manifest
            .manifest
            .backup
            .as_ref()
            .and_then(|b| b.database.as_ref()),
    ) {
        crate::trust::list_dump(
            Path::new(&db.bin_dir),
            &x.join(p).join("toc.dat"),
            &staging.join("toc-check"),
        )
        .map_err(forget)?;
    }
    if let Some(identity) = &identity {
        let blob = std::fs::read(x.join("secrets.age"))
            .map_err(BackupError::io("read", x.join("secrets.age")))
            .map_err(forget)?;
        berth_archive::secrets::decrypt_to_dir(&blob, identity, &staging.join("secrets"))
            .map_err(|e| forget(e.into()))?;
        crate::trust::check_secrets(inst, &staging.join("secrets")).map_err(forget)?;
    }
    // Only the data directories the manifest declares (checked above), and only those
    // the archive really holds as directories.
    j.data_dirs = facts
        .data_dirs
        .into_iter()
        .filter(|d| std::fs::symlink_metadata(x.join("data").join(d)).is_ok_and(|m| m.is_dir()))
        .collect();
    fault::point("restore:stage");
    j.done.push("stage".to_owned());
    save(prefix, &j).map_err(forget)?;
    Ok(j)
}

/// What this invocation of a restore did, for the history.
#[derive(Default)]
struct Done {
    hooks_run: Vec<String>,
    started: Vec<String>,
}

fn run_steps(
    loc: &Locate,
    j: &mut Journal,
    resumed: bool,
    berth_exe: &Path,
    progress: &dyn Progress,
    timings: &mut Vec<(String, f64)>,
) -> Result<()> {
    // The history records the restore as one run, from the first step at which the
    // instance has a state database (a new prefix gets one in `prepare-database`).
    let mut run_id = None;
    let mut done = Done::default();
    let result = run_pending_steps(
        loc,
        j,
        resumed,
        berth_exe,
        progress,
        timings,
        &mut run_id,
        &mut done,
    );
    let Some(id) = run_id else {
        return result;
    };
    let inst = instance::open(loc)?;
    let run = Run::attach(&inst, id, progress)?;
    let restored: Vec<String> = items(&inst, j)
        .into_iter()
        .map(|(live, _, _)| live.display().to_string())
        .collect();
    run.finish(result, |()| berth_state::RunOutcome {
        status: berth_state::RunStatus::Succeeded,
        files_changed: restored,
        hooks_run: done.hooks_run.clone(),
        services_started: done.started.clone(),
        ..berth_state::RunOutcome::default()
    })
}

/// The steps of `j` still to take, in order.
fn remaining_steps(j: &Journal) -> Vec<&'static str> {
    STEPS.into_iter().filter(|step| !j.has(step)).collect()
}

/// Whether the restore's run in the history begins at `step`: at the first step taken
/// on an instance that has a state database, or at `prepare-database`, which makes one.
fn run_begins_at(step: &str, has_state_db: bool) -> bool {
    step == "prepare-database" || has_state_db
}

/// How the history names a restore's run: its archive, and whether this is a
/// `--resume` of an interrupted one. (How many steps are done does not tell: a restore
/// into a new prefix begins its run at `prepare-database`, four steps in.)
fn run_detail(j: &Journal, resumed: bool) -> String {
    let resumed = if resumed { " (resumed)" } else { "" };
    format!("{}{resumed}", j.archive)
}

#[allow(clippy::too_many_arguments)] // the restore's whole context, passed through
fn run_pending_steps(
    loc: &Locate,
    j: &mut Journal,
    resumed: bool,
    berth_exe: &Path,
    progress: &dyn Progress,
    timings: &mut Vec<(String, f64)>,
    run_id: &mut Option<berth_state::RunId>,
    done: &mut Done,
) -> Result<()> {
    for step in remaining_steps(j) {
        let t = Instant::now();
        let inst = instance::open(loc)?;
        if run_id.is_none() && run_begins_at(step, inst.paths.state_db().exists()) {
            let begun = Run::begin(&inst, "restore", &run_detail(j, resumed), progress)?;
            *run_id = Some(begun.id);
        }
        let run = match run_id {
            Some(id) => Some(Run::attach(&inst, *id, progress)?),
            None => None,
        };
        let mut act = || -> Result<()> {
            restore_step(step, loc, &inst, run.as_ref(), j, berth_exe, progress, done)
        };
        match &run {
            Some(run) => run.step(step, act)?,
            None => act()?,
        }
        fault::point(&format!("restore:{step}"));
        timings.push((step.to_owned(), t.elapsed().as_secs_f64()));
        j.done.push(step.to_owned());
        if step == "commit" {
            let _ = berth_host::fsutil::remove_file_if_exists(&journal_path(&inst.paths.prefix));
        } else {
            save(&inst.paths.prefix, j)?;
        }
    }
    Ok(())
}

/// One step of a restore; see the module's documentation for what each does.
#[allow(clippy::too_many_arguments)] // the step's whole context, passed through
fn restore_step(
    step: &str,
    loc: &Locate,
    inst: &Instance,
    run: Option<&Run>,
    j: &mut Journal,
    berth_exe: &Path,
    progress: &dyn Progress,
    done: &mut Done,
) -> Result<()> {
    match step {
        // Restoring over a running instance replaces it: back it up first, so even
        // the restore of a wrong archive loses nothing.
        "safety-backup" if wants_safety_backup(j, supervisor::is_running(&inst.paths)) => {
            progress.note("Backing up the current instance before restoring over it");
            // A step of the restore's run, not a run of its own.
            let report = backup::create_archive(inst, &backup::CreateOptions::default(), progress)
                .map_err(|e| BackupError::Cannot {
                    what: format!("The backup of the current instance failed: {e}"),
                    hint: "fix the cause and `berth restore --resume`, or `berth restore --abort`"
                        .to_owned(),
                })?;
            j.safety_backup = Some(format!("{}/{}", report.target, report.archive));
        }
        "stop" => stop_writers(inst, progress)?,
        "files" => swap_files(inst, j, progress)?,
        "prepare-database" => {
            let run = run.ok_or_else(|| BackupError::Cannot {
                what: "The restore has no run in the state database".to_owned(),
                hint: "`berth restore --abort`, then restore again".to_owned(),
            })?;
            done.hooks_run
                .extend(prepare_database(loc, run, j, berth_exe)?);
        }
        "load-database" => {
            if let Some(db) = db_plan(inst)? {
                let jobs = backup::jobs(inst)?;
                progress.begin(&format!("Restoring database `{}` ({jobs} jobs)", db.name));
                let dump = dump_for_database_user(j, db.user.as_deref())?.join(&db.name);
                let children = inst.children();
                let db = database::Database {
                    plan: &db,
                    children: &children,
                    network: None,
                };
                database::restore_into_incoming(&db, &dump, jobs)?;
                progress.end("");
            }
        }
        "swap-database" => {
            if let Some(db) = db_plan(inst)? {
                let children = inst.children();
                database::swap_in(&database::Database {
                    plan: &db,
                    children: &children,
                    network: None,
                })?;
            }
        }
        "start" => {
            let report = match run {
                Some(run) => up::up_within(run, loc, berth_exe)?,
                None => up::up(inst, loc, berth_exe, progress)?,
            };
            done.hooks_run.extend(report.outcome.hooks_run);
            done.started.extend(report.outcome.started);
        }
        "commit" => commit(inst, j)?,
        _ => {}
    }
    Ok(())
}

/// Whether step `safety-backup` backs the instance up: only a running instance that
/// the restore replaces, unless `--no-safety-backup` was given.
fn wants_safety_backup(j: &Journal, running: bool) -> bool {
    !j.new_instance && !j.no_safety_backup && running
}

pub(crate) fn db_plan(inst: &Instance) -> Result<Option<berth_render::DatabasePlan>> {
    Ok(desired(inst)?.backup.and_then(|b| b.database))
}

fn desired(inst: &Instance) -> Result<DesiredState> {
    Ok(berth_lifecycle::desired::preview(inst)?)
}

/// Step `stop`: stop every service but the database and what it depends on.
fn stop_writers(inst: &Instance, progress: &dyn Progress) -> Result<()> {
    if !supervisor::is_running(&inst.paths) {
        return Ok(());
    }
    let state = desired(inst)?;
    progress.begin("Stopping the services that write");
    for name in writers(&state) {
        supervisor::request(
            &inst.paths,
            &Request::Stop {
                target: Target::One(name),
            },
        )?;
    }
    progress.end("");
    Ok(())
}

/// The services step `stop` stops, in the order it stops them: every one but the
/// database and what it needs, last declared first.
fn writers(state: &DesiredState) -> Vec<String> {
    let keep = keep_running(state);
    state
        .services
        .iter()
        .rev()
        .filter(|s| !keep.contains(&s.name))
        .map(|s| s.name.clone())
        .collect()
}

/// The database service and everything it depends on.
fn keep_running(state: &DesiredState) -> Vec<String> {
    let Some(db) = state.backup.as_ref().and_then(|b| b.database.as_ref()) else {
        return Vec::new();
    };
    let mut keep = vec![db.service.clone()];
    let mut i = 0;
    while i < keep.len() {
        if let Some(s) = state.services.iter().find(|s| s.name == keep[i]) {
            for d in &s.depends_on {
                if !keep.contains(d) {
                    keep.push(d.clone());
                }
            }
        }
        i += 1;
    }
    keep
}

/// Give a whole tree to `user` (root only; a no-op otherwise), by descriptors beneath
/// `base`: a symlink on the way or inside is never followed, setuid and setgid bits are
/// cleared, and a `..` in `root` is refused, so nothing outside `base` is ever touched.
fn chown_tree(base: &Path, root: &Path, user: Option<&str>) -> Result<()> {
    let Some(user) = user else {
        return Ok(());
    };
    if !berth_host::users::is_root() {
        return Ok(());
    }
    let Some(owner) = berth_host::users::lookup(user) else {
        return Ok(());
    };
    let (dir, rel) = berth_host::beneath::locate(base, root)?;
    dir.chown_tree(&rel, owner)?;
    Ok(())
}

/// The staging directories of a restore: `<prefix>/tmp` (0711, root's) and in it
/// `restore-<id>` (0711: the database user must reach the dump moved into its
/// `database/` for `pg_restore`, and nothing else) holding `x/`, where the archive is
/// unpacked, 0700, so no one but root ever reaches what an archive brings.
fn make_staging(staging_root: &Path, staging: &Path) -> Result<()> {
    berth_host::fsutil::ensure_dir(staging_root, 0o711)?;
    let root = berth_host::beneath::SafeDir::open_trusted(staging_root)?;
    root.set_mode(Path::new(""), 0o711)?;
    let name = Path::new(staging.file_name().unwrap_or_default());
    // Made here by berth (root when root runs it); an existing one (a resumed
    // restore) is tightened again.
    let dir = match root.create_dir(name, 0o711, None) {
        Err(berth_host::HostError::CreateDir { source, .. })
            if source.kind() == std::io::ErrorKind::AlreadyExists =>
        {
            root.open_dir(name)?
        }
        other => other?,
    };
    dir.set_mode(Path::new(""), 0o711)?;
    match dir.create_dir(Path::new("x"), 0o700, None) {
        Err(berth_host::HostError::CreateDir { source, .. })
            if source.kind() == std::io::ErrorKind::AlreadyExists =>
        {
            dir.set_mode(Path::new("x"), 0o700)?;
        }
        other => drop(other?),
    }
    Ok(())
}

/// The unpacked dump, moved out of the private `x/` into the staging directory's
/// `database/` and given to the database user, who runs `pg_restore` on it.
fn dump_for_database_user(j: &Journal, user: Option<&str>) -> Result<PathBuf> {
    let staging = berth_host::beneath::SafeDir::open_trusted(&j.staging)?;
    let moved = Path::new("database");
    if staging.stat(moved)?.is_none() {
        staging.rename(Path::new("x/database"), &staging, moved)?;
    }
    staging.set_mode(moved, 0o700)?;
    chown_tree(&j.staging, &j.staging.join(moved), user)?;
    Ok(j.staging.join(moved))
}

/// Remove a tree by descriptors, trusting only its parent directory.
fn remove_tree_at(path: &Path) -> Result<()> {
    berth_host::beneath::remove_tree_at(path)?;
    Ok(())
}

/// Whether `path` exists (not following a symlink at its end), looking beneath `base`.
fn exists(base: &Path, path: &Path) -> Result<bool> {
    let (dir, rel) = berth_host::beneath::locate(base, path)?;
    Ok(dir.stat(&rel)?.is_some())
}

/// Whether `path` is a directory (a symlink is not), looking beneath `base`.
fn is_dir(base: &Path, path: &Path) -> Result<bool> {
    let (dir, rel) = berth_host::beneath::locate(base, path)?;
    Ok(dir.stat(&rel)?.is_some_and(|s| s.is_dir()))
}

/// Remove `path` and what is under it by descriptors beneath `base`.
fn remove_beneath(base: &Path, path: &Path) -> Result<()> {
    let (dir, rel) = berth_host::beneath::locate(base, path)?;
    dir.remove_tree(&rel)?;
    Ok(())
}

/// Owner of a data directory: the closest declared directory at or above it.
fn data_owner(state: &DesiredState, path: &Path) -> Option<String> {
    state
        .dirs
        .iter()
        .filter(|d| path.starts_with(&d.path))
        .max_by_key(|d| d.path.components().count())
        .and_then(|d| d.owner.clone())
}

/// Move `from` to `to` (both resolved beneath `base`, never through a symlink, never
/// over something), creating `to`'s missing parents with `parent_mode`.
fn rename(base: &Path, from: &Path, to: &Path, parent_mode: u32) -> Result<()> {
    let (from_dir, from_rel) = berth_host::beneath::locate(base, from)?;
    let (to_dir, to_rel) = berth_host::beneath::locate(base, to)?;
    if let Some(parent) = to_rel.parent().filter(|p| !p.as_os_str().is_empty()) {
        to_dir.create_dir_all(parent, parent_mode, None)?;
    }
    from_dir.rename(&from_rel, &to_dir, &to_rel)?;
    Ok(())
}

/// Step `files`: move the live items aside and the restored ones in.
fn swap_files(inst: &Instance, j: &Journal, progress: &dyn Progress) -> Result<()> {
    progress.begin("Putting the site config, secrets and data in place");
    let state = desired(inst)?;
    let prefix = &inst.paths.prefix;
    for (live, staged, aside) in items(inst, j) {
        if !exists(prefix, &staged)? {
            continue;
        }
        if is_dir(prefix, &staged)? && live.starts_with(&inst.paths.data) {
            chown_tree(prefix, &staged, data_owner(&state, &live).as_deref())?;
        }
        if exists(prefix, &live)? && !exists(prefix, &aside)? {
            rename(prefix, &live, &aside, 0o700)?;
        }
        rename(prefix, &staged, &live, 0o755)?;
    }
    progress.end("");
    Ok(())
}

/// Step `prepare-database`: configuration from the restored site config and secrets, the database
/// service running, and the hooks the restored dump needs. Returns the hooks run.
fn prepare_database(loc: &Locate, run: &Run, j: &Journal, berth_exe: &Path) -> Result<Vec<String>> {
    let (inst, progress) = (run.inst, run.progress);
    let preview = desired(inst)?;
    let (state, _, _) = up::prepare(run, loc, berth_exe, &preview, false)?;
    // On a new machine the service users exist only now: the restored data
    // directories become theirs before any service reads them.
    for d in &j.data_dirs {
        let live = inst.paths.data_dir(d);
        chown_tree(
            &inst.paths.data,
            &live,
            data_owner(&state, &live).as_deref(),
        )?;
    }
    let Some(db) = state.backup.as_ref().and_then(|b| b.database.clone()) else {
        return Ok(Vec::new());
    };
    let prereqs = berth_render::hook_prerequisites(&state, &db.restore_after);
    let ran = hooks::run_selected(run, &state, &|h, scheduled| {
        db.restore_after.contains(&h.name)
            || (prereqs.contains(&h.name) && scheduled.unwrap_or(true))
    })?;
    progress.begin(&format!("Starting `{}`", db.service));
    supervisor::request(
        &inst.paths,
        &Request::Start {
            target: Target::One(db.service.clone()),
        },
    )?;
    progress.end("");
    Ok(ran)
}

/// Step `commit`: forget what was kept from before.
fn commit(inst: &Instance, j: &Journal) -> Result<()> {
    if let Some(db) = db_plan(inst)? {
        let children = inst.children();
        database::drop_previous(&database::Database {
            plan: &db,
            children: &children,
            network: None,
        })?;
    }
    remove_tree_at(&j.staging)
}

/// The files of an interrupted restore out, the kept ones back. After `stage`, an
/// item whose staged copy is gone was moved in by the restore: it is removed (and
/// what was there before, moved aside, comes back). Removal is by descriptors beneath
/// the prefix, so a symlink a service user put in a data directory's place is removed
/// itself, never followed.
fn undo_files(inst: &Instance, j: &Journal) -> Result<()> {
    if !j.has("stage") {
        return Ok(());
    }
    let prefix = &inst.paths.prefix;
    if !prefix.is_dir() {
        return Ok(());
    }
    for (live, staged, aside) in items(inst, j) {
        let kept = exists(prefix, &aside)?;
        let restored = !exists(prefix, &staged)?;
        if (kept || restored) && exists(prefix, &live)? {
            remove_beneath(prefix, &live)?;
            if !kept && j.new_instance {
                remove_empty_parents(prefix, &inst.paths.data, &live)?;
            }
        }
        if kept {
            rename(prefix, &aside, &live, 0o755)?;
        }
    }
    Ok(())
}

/// The directories a restore made to hold `path` in a new instance (empty ones, up
/// to `data`, which stays): abort leaves no trace of them.
fn remove_empty_parents(prefix: &Path, data: &Path, path: &Path) -> Result<()> {
    for parent in path.ancestors().skip(1) {
        if !parent.starts_with(data) || parent == data {
            break;
        }
        let (dir, rel) = berth_host::beneath::locate(prefix, parent)?;
        if !dir.remove_empty_dir(&rel)? {
            break;
        }
    }
    Ok(())
}

/// What `--abort` does with an interrupted restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AbortWay {
    /// Only the commit was left: it is finished instead.
    Forward,
    /// The prefix held no instance before: what the restore made is removed.
    RemoveAll,
    /// The instance's own files (`undo`: unless an earlier abort put them back) and
    /// database (`swap_back_database`: once the restore may have touched it) are put
    /// back, and it is brought up again if it was running (`bring_up`).
    PutBack {
        /// Put the files (and the database) back.
        undo: bool,
        /// Swap the app's own database back in.
        swap_back_database: bool,
        /// Run `up` once everything is back.
        bring_up: bool,
    },
}

/// What `--abort` does with the restore journaled in `j`.
fn abort_way(j: &Journal) -> AbortWay {
    if j.has("start") {
        AbortWay::Forward
    } else if j.new_instance || !j.has("stage") && j.was_new {
        AbortWay::RemoveAll
    } else {
        AbortWay::PutBack {
            undo: !j.undone,
            swap_back_database: j.has("prepare-database"),
            bring_up: j.was_running,
        }
    }
}

/// `berth restore --abort`: undo an interrupted restore, leaving the instance as it
/// was before it began (a prefix that held none is emptied of what the restore made).
pub fn abort(loc: &Locate, berth_exe: &Path, progress: &dyn Progress) -> Result<()> {
    let inst = instance::open(loc)?;
    // Nothing of the interrupted attempt may still write while it is undone.
    berth_lifecycle::leftovers::stop_leftover_children(&inst, progress)?;
    let prefix = inst.paths.prefix.clone();
    let Some(mut j) = load(&prefix)? else {
        return Err(BackupError::Cannot {
            what: format!("No interrupted restore in {}", prefix.display()),
            hint: "nothing to abort".to_owned(),
        });
    };
    crate::leftovers::sweep(&inst.paths, progress)?;
    let (inst, j) = (&inst, &mut j);
    let way = abort_way(j);
    if way == AbortWay::Forward {
        // Only the commit was left: the restored instance is running and what was kept
        // from before may already be gone, so the way out is forward.
        progress.begin("The restore was interrupted while committing: finishing it");
        commit(inst, j)?;
        let _ = berth_host::fsutil::remove_file_if_exists(&journal_path(&prefix));
        progress.end("");
        return Ok(());
    }
    progress.begin("Undoing the interrupted restore");
    if way == AbortWay::RemoveAll {
        // Nothing to keep: stop what the restore started and remove what it created.
        if supervisor::is_running(&inst.paths) {
            let _ = supervisor::request(&inst.paths, &Request::Shutdown);
            supervisor::wait_exited(&inst.paths, std::time::Duration::from_mins(2));
        }
        // What the restore moved into entries that were there before (a `data/` made
        // ready for it, say) goes too, and what it moved aside comes back.
        undo_files(inst, j)?;
        let root = berth_host::beneath::SafeDir::open_trusted(&prefix)?;
        for e in std::fs::read_dir(&prefix)
            .map_err(BackupError::io("read", &prefix))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if !j.existed.contains(&name) {
                root.remove_tree(Path::new(&e.file_name()))?;
            }
        }
        let _ = remove_tree_at(&j.staging);
        let _ = berth_host::fsutil::remove_file_if_exists(&journal_path(&prefix));
        if j.was_new {
            let _ = remove_tree_at(&prefix);
        }
        progress.end("");
        return Ok(());
    }
    // Undone once only: a second pass would take what came back for what the restore
    // moved in. The journal says so, and stays until the instance is up again, so an
    // abort that fails after this point can be run again.
    if let AbortWay::PutBack {
        undo: true,
        swap_back_database,
        ..
    } = way
    {
        // The database: put the app's own back (it needs its service running).
        if swap_back_database && let Some(db) = db_plan(inst)? {
            if !supervisor::is_running(&inst.paths) {
                supervisor::spawn(&inst.paths, berth_exe)?;
            }
            supervisor::request(
                &inst.paths,
                &Request::Start {
                    target: Target::One(db.service.clone()),
                },
            )?;
            let children = inst.children();
            database::swap_back(&database::Database {
                plan: &db,
                children: &children,
                network: None,
            })?;
        }
        undo_files(inst, j)?;
        j.undone = true;
        save(&prefix, j)?;
    }
    progress.end("");
    fault::point("restore-abort:undone");
    if matches!(way, AbortWay::PutBack { bring_up: true, .. }) {
        // The instance's own config and secrets are back: bring it up as it was.
        let inst = instance::open(loc)?;
        up::up(&inst, loc, berth_exe, progress)?;
    }
    remove_tree_at(&j.staging)?;
    berth_host::fsutil::remove_file_if_exists(&journal_path(&prefix))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};

    use crate::testing::instance;
    use berth_render::{BackupPlan, DatabasePlan, DesiredState, DirSpec};

    use super::{
        AbortWay, Begin, Journal, STEPS, abort_way, data_owner, how_to_begin, items, keep_running,
        remaining_steps, run_begins_at, run_detail, wants_safety_backup, writers,
    };

    fn journal(staging: &Path, done: &[&str]) -> Journal {
        Journal {
            source: "ministack-1.0.0-20260101T000000Z.berth.tar.zst".into(),
            from: None,
            key: None,
            without_secrets: false,
            archive: "/backups/ministack-1.0.0-20260101T000000Z.berth.tar.zst".into(),
            was_new: false,
            staging: staging.to_path_buf(),
            app: "ministack".into(),
            app_version: "1.0.0".into(),
            new_instance: false,
            existed: vec!["site.toml".into(), "state".into()],
            was_running: true,
            secrets_restored: false,
            no_safety_backup: false,
            safety_backup: None,
            data_dirs: vec!["app".into()],
            done: done.iter().map(|s| (*s).to_owned()).collect(),
            undone: false,
        }
    }

    fn refusal(result: super::Result<Begin<'_>>) -> String {
        match result {
            Err(super::BackupError::Cannot { what, hint }) => format!("{what}\nhint: {hint}"),
            other => panic!("not a refusal: {other:?}"),
        }
    }

    /// Without a journal a restore stages the archive named; `--resume` goes on after
    /// the last step done, or unpacks again when it was killed while unpacking.
    #[test]
    fn a_restore_begins_fresh_resumes_or_stages_again() {
        let prefix = Path::new("/srv/app");
        let staging = Path::new("/srv/app/tmp/restore-1");
        assert!(matches!(
            how_to_begin(None, false, Some("a.berth.tar.zst"), prefix),
            Ok(Begin::Fresh("a.berth.tar.zst"))
        ));
        // `--resume` ignores an archive named again: the journal's is the one.
        let resumed = how_to_begin(
            Some(journal(staging, &["stage", "stop"])),
            true,
            Some("other"),
            prefix,
        );
        let Ok(Begin::Resume(j)) = resumed else {
            panic!("{resumed:?}");
        };
        assert_eq!(j.done, ["stage", "stop"]);
        assert!(matches!(
            how_to_begin(Some(journal(staging, &[])), true, None, prefix),
            Ok(Begin::Restage(_))
        ));
    }

    fn index(entries: &[(&str, &str, u64)]) -> berth_archive::ArchiveManifest {
        let entries: Vec<serde_json::Value> = entries
            .iter()
            .map(|(path, kind, size)| {
                serde_json::json!({"path": path, "kind": kind, "size": size, "mode": "0644"})
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "format": 3, "meta": {}, "entries": entries,
        }))
        .unwrap()
    }

    /// Before a restore unpacks an archive to use the manifest it carries, the signed
    /// index must show one, made only of files and directories, and small.
    #[test]
    fn the_archive_manifest_is_checked_from_the_signed_index() {
        let archive = Path::new("/b/a.berth.tar.zst");
        let check = |entries: &[(&str, &str, u64)]| {
            super::check_archive_manifest(&index(entries), archive).map_err(|e| e.to_string())
        };
        let honest = [
            ("manifest", "dir", 0),
            ("manifest/berth.toml", "file", 4000),
            ("manifest/templates", "dir", 0),
            ("manifest/templates/a.conf.j2", "file", 300),
            // Big data elsewhere does not count.
            ("data/app/big", "file", 1 << 40),
        ];
        check(&honest).unwrap();
        let none = check(&[("data/app", "dir", 0)]).unwrap_err();
        assert!(none.contains("carries no app manifest"), "{none}");
        let link = check(&[
            ("manifest/berth.toml", "file", 10),
            ("manifest/templates/a.j2", "symlink", 0),
        ])
        .unwrap_err();
        assert!(link.contains("neither a file nor a directory"), "{link}");
        let huge = check(&[
            ("manifest/berth.toml", "file", 10),
            (
                "manifest/templates/a.j2",
                "file",
                super::MAX_ARCHIVE_MANIFEST_BYTES,
            ),
        ])
        .unwrap_err();
        assert!(huge.contains("more than the"), "{huge}");
        // A name that only begins like it is not part of it.
        check(&[
            ("manifest/berth.toml", "file", 10),
            ("manifests/huge", "symlink", 0),
        ])
        .unwrap();
    }

    /// What a restore refuses to begin, and what it says to do instead.
    #[test]
    fn a_restore_refuses_to_begin_over_an_interrupted_one_or_a_half_done_abort() {
        let prefix = Path::new("/srv/app");
        let staging = Path::new("/srv/app/tmp/restore-1");
        let mut undone = journal(staging, &["stage", "safety-backup", "stop", "files"]);
        undone.undone = true;
        let texts = [
            refusal(how_to_begin(None, false, None, prefix)),
            refusal(how_to_begin(None, true, None, prefix)),
            refusal(how_to_begin(
                Some(journal(staging, &["stage", "safety-backup"])),
                false,
                Some("b.berth.tar.zst"),
                prefix,
            )),
            refusal(how_to_begin(Some(undone.clone()), false, None, prefix)),
            refusal(how_to_begin(Some(undone), true, None, prefix)),
        ];
        insta::assert_snapshot!(texts.join("\n---\n"));
    }

    /// A resumed restore takes the steps not done yet, in order; the history's run
    /// begins at the first of them on an instance with a state database, else at
    /// `prepare-database`, which makes one.
    #[test]
    fn a_resumed_restore_goes_on_after_the_last_step_done() {
        let staging = Path::new("/s");
        assert_eq!(remaining_steps(&journal(staging, &[])), STEPS);
        assert_eq!(
            remaining_steps(&journal(staging, &["stage", "safety-backup", "stop"])),
            [
                "files",
                "prepare-database",
                "load-database",
                "swap-database",
                "start",
                "commit"
            ]
        );
        assert!(remaining_steps(&journal(staging, &STEPS)).is_empty());
        assert!(run_begins_at("stop", true));
        assert!(!run_begins_at("stop", false));
        assert!(run_begins_at("prepare-database", false));
    }

    /// Only a running instance that the restore replaces is backed up first, and not
    /// with `--no-safety-backup`.
    #[test]
    fn the_safety_backup_is_taken_only_of_a_running_instance_being_replaced() {
        let mut j = journal(Path::new("/s"), &["stage"]);
        assert!(wants_safety_backup(&j, true));
        assert!(!wants_safety_backup(&j, false));
        j.no_safety_backup = true;
        assert!(!wants_safety_backup(&j, true));
        j.no_safety_backup = false;
        j.new_instance = true;
        assert!(!wants_safety_backup(&j, true));
    }

    /// `--abort` goes forward once only the commit was left, removes everything from a
    /// prefix that held no instance, and otherwise puts files and database back once,
    /// then brings the instance up if it was running.
    #[test]
    fn abort_finishes_removes_or_puts_back_by_how_far_the_restore_got() {
        let s = Path::new("/s");
        let all_but_commit = &STEPS[..STEPS.len() - 1];
        assert_eq!(abort_way(&journal(s, all_but_commit)), AbortWay::Forward);

        let mut new = journal(s, &["stage", "files", "prepare-database"]);
        new.new_instance = true;
        assert_eq!(abort_way(&new), AbortWay::RemoveAll);
        // Killed while unpacking into a prefix it created: nothing there is anyone's.
        let mut unpacking = journal(s, &[]);
        unpacking.was_new = true;
        assert_eq!(abort_way(&unpacking), AbortWay::RemoveAll);
        // A prefix that existed but held no instance is a new instance once staged.
        unpacking.done = vec!["stage".into()];
        assert_eq!(
            abort_way(&unpacking),
            AbortWay::PutBack {
                undo: true,
                swap_back_database: false,
                bring_up: true
            }
        );

        let mut existing = journal(
            s,
            &[
                "stage",
                "safety-backup",
                "stop",
                "files",
                "prepare-database",
            ],
        );
        assert_eq!(
            abort_way(&existing),
            AbortWay::PutBack {
                undo: true,
                swap_back_database: true,
                bring_up: true
            }
        );
        // A second abort after the first put everything back: only `up` is left.
        existing.undone = true;
        existing.was_running = false;
        assert_eq!(
            abort_way(&existing),
            AbortWay::PutBack {
                undo: false,
                swap_back_database: true,
                bring_up: false
            }
        );
    }

    fn with_database(mut state: DesiredState, service: &str) -> DesiredState {
        state.backup = Some(BackupPlan {
            data_dirs: Vec::new(),
            quiesce: Vec::new(),
            database: Some(DatabasePlan {
                kind: berth_model::manifest::DatabaseKind::Postgresql,
                service: service.into(),
                host: "/run/pg".into(),
                port: "5432".into(),
                name: "app".into(),
                owner: "app".into(),
                bin_dir: "/usr/bin".into(),
                user: None,
                home: None,
                restore_after: Vec::new(),
            }),
        });
        state
    }

    fn rendered(prefix: &Path) -> DesiredState {
        berth_lifecycle::desired::preview(&instance(prefix)).unwrap()
    }

    /// Step `stop` keeps the database and what it needs (through `depends_on`, however
    /// deep) and stops the rest, last declared first.
    #[test]
    fn the_stop_step_keeps_the_database_and_what_it_needs() {
        let tmp = tempfile::tempdir().unwrap();
        let mut state = rendered(&tmp.path().join("inst"));
        let spec = |name: &str, deps: &[&str]| {
            let mut s = state.services[0].clone();
            s.name = name.into();
            s.depends_on = deps.iter().map(|d| (*d).to_owned()).collect();
            s
        };
        state.services = vec![
            spec("disk", &[]),
            spec("db", &["vault"]),
            spec("vault", &["disk"]),
            spec("app", &["db"]),
            spec("proxy", &["app"]),
        ];
        let state = with_database(state, "db");
        assert_eq!(keep_running(&state), ["db", "vault", "disk"]);
        assert_eq!(writers(&state), ["proxy", "app"]);
        // An app without a database stops everything.
        let mut none = state.clone();
        none.backup = None;
        assert!(keep_running(&none).is_empty());
        assert_eq!(writers(&none), ["proxy", "app", "vault", "db", "disk"]);
    }

    /// A restored data directory goes to the owner of the closest declared directory
    /// at or above it; one under no declared directory stays root's.
    #[test]
    fn a_restored_data_directory_goes_to_the_closest_declared_owner() {
        let tmp = tempfile::tempdir().unwrap();
        let mut state = rendered(&tmp.path().join("inst"));
        let dir = |path: &str, owner: Option<&str>| DirSpec {
            path: PathBuf::from(path),
            owner: owner.map(str::to_owned),
            mode: 0o750,
        };
        state.dirs = vec![
            dir("/p/data", None),
            dir("/p/data/app", Some("app")),
            dir("/p/data/app/media", Some("media")),
            dir("/p/data/pg", Some("postgres")),
        ];
        let owner = |p: &str| data_owner(&state, Path::new(p));
        assert_eq!(owner("/p/data/app/media/x").as_deref(), Some("media"));
        assert_eq!(owner("/p/data/app/cache").as_deref(), Some("app"));
        assert_eq!(owner("/p/data/app").as_deref(), Some("app"));
        // A sibling whose name only starts like a declared directory is not under it.
        assert_eq!(owner("/p/data/application"), None);
        assert_eq!(owner("/p/data/other"), None);
    }

    /// What a restore swaps: the site config always, the secrets only when they came
    /// back from the archive, and each data directory of the archive; each with its
    /// place in the staging directory and the place the live one is kept aside.
    #[test]
    fn a_restore_swaps_the_site_config_the_secrets_it_restores_and_its_data_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let inst = instance(&tmp.path().join("inst"));
        let staging = inst.paths.tmp().join("restore-1");
        let mut j = journal(&staging, &["stage"]);
        j.data_dirs = vec!["app".into(), "app/media".into()];
        let swapped = items(&inst, &j);
        let relative = |p: &PathBuf| {
            p.strip_prefix(&inst.paths.prefix)
                .unwrap()
                .display()
                .to_string()
        };
        let listed: Vec<[String; 3]> = swapped
            .iter()
            .map(|(live, staged, aside)| [relative(live), relative(staged), relative(aside)])
            .collect();
        insta::assert_debug_snapshot!(listed);
        j.secrets_restored = true;
        let with_secrets = items(&inst, &j);
        assert_eq!(with_secrets.len(), swapped.len() + 1);
        assert_eq!(with_secrets[1].0, inst.paths.secrets);
        assert_eq!(with_secrets[1].1, staging.join("secrets"));
    }

    /// The journal reads back as written (mode 0600: it names the key file), and a
    /// journal written before the newer fields existed still reads.
    #[test]
    fn the_journal_reads_back_and_older_journals_still_read() {
        let tmp = tempfile::tempdir().unwrap();
        let prefix = tmp.path();
        assert!(super::load(prefix).unwrap().is_none());
        std::fs::create_dir_all(prefix.join("tmp")).unwrap();
        let mut j = journal(&prefix.join("tmp/restore-1"), &["stage", "stop"]);
        j.safety_backup = Some("/backups/x.berth.tar.zst".into());
        super::save(prefix, &j).unwrap();
        let path = super::journal_path(prefix);
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let back = super::load(prefix).unwrap().unwrap();
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&j).unwrap()
        );

        let mut old = serde_json::to_value(&j).unwrap();
        let map = old.as_object_mut().unwrap();
        for newer in ["no_safety_backup", "safety_backup", "undone"] {
            map.remove(newer);
        }
        std::fs::write(&path, serde_json::to_vec(&old).unwrap()).unwrap();
        let back = super::load(prefix).unwrap().unwrap();
        assert!(!back.undone && !back.no_safety_backup && back.safety_backup.is_none());
        assert_eq!(back.done, ["stage", "stop"]);

        std::fs::write(&path, b"{ not json").unwrap();
        assert!(
            super::load(prefix).is_err(),
            "a damaged journal is not `no restore`"
        );
    }

    /// The history says a restore was resumed when it was, however many steps it had
    /// done: a fresh restore into a new prefix, whose run begins four steps in, is not
    /// "resumed", and a resume after the first step is.
    #[test]
    fn the_history_says_resumed_only_of_a_resumed_restore() {
        let archive = "/backups/ministack-1.0.0-20260101T000000Z.berth.tar.zst";
        let new_prefix = journal(
            Path::new("/s"),
            &["stage", "safety-backup", "stop", "files"],
        );
        assert_eq!(run_detail(&new_prefix, false), archive);
        let after_staging = journal(Path::new("/s"), &["stage"]);
        assert_eq!(
            run_detail(&after_staging, true),
            format!("{archive} (resumed)")
        );
    }

    fn put(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    /// Step `files` moves the live site config and data aside and the archive's in;
    /// `--abort` puts the live ones back and removes what the restore moved in.
    #[test]
    fn the_files_step_swaps_in_and_abort_puts_everything_back() {
        let tmp = tempfile::tempdir().unwrap();
        let inst = instance(&tmp.path().join("inst"));
        let prefix = inst.paths.prefix.clone();
        let staging = inst.paths.tmp().join("restore-1");
        put(&inst.config_path, "# live\n");
        put(&inst.paths.data_dir("app").join("db.sqlite"), "live");
        put(&staging.join("x/config/site.toml"), "# restored\n");
        put(&staging.join("x/data/app/db.sqlite"), "restored");
        let j = journal(&staging, &["stage", "safety-backup", "stop"]);

        super::swap_files(&inst, &j, &berth_lifecycle::Silent).unwrap();
        assert_eq!(read(&inst.config_path), "# restored\n");
        assert_eq!(
            read(&inst.paths.data_dir("app").join("db.sqlite")),
            "restored"
        );
        assert_eq!(read(&staging.join("previous/site.toml")), "# live\n");
        assert!(!staging.join("x/data/app").exists());
        // Run again after a kill: what is in place stays, what was kept aside too.
        super::swap_files(&inst, &j, &berth_lifecycle::Silent).unwrap();
        assert_eq!(read(&staging.join("previous/data/app/db.sqlite")), "live");

        super::undo_files(&inst, &j).unwrap();
        assert_eq!(read(&inst.config_path), "# live\n");
        assert_eq!(read(&inst.paths.data_dir("app").join("db.sqlite")), "live");
        assert!(!staging.join("previous/site.toml").exists());
        assert!(prefix.join("data").is_dir());
    }

    /// Aborting a restore into a new instance removes the data directories it moved in
    /// and the empty parents it made for them, up to `data/`, which stays.
    #[test]
    fn abort_of_a_new_instance_leaves_no_directory_the_restore_made() {
        let tmp = tempfile::tempdir().unwrap();
        let inst = instance(&tmp.path().join("inst"));
        let staging = inst.paths.tmp().join("restore-1");
        std::fs::create_dir_all(&inst.paths.data).unwrap();
        put(&staging.join("x/data/app/media/a.png"), "png");
        let mut j = journal(&staging, &["stage", "safety-backup", "stop"]);
        j.new_instance = true;
        j.data_dirs = vec!["app/media".into()];

        super::swap_files(&inst, &j, &berth_lifecycle::Silent).unwrap();
        assert_eq!(read(&inst.paths.data_dir("app/media").join("a.png")), "png");
        super::undo_files(&inst, &j).unwrap();
        assert!(!inst.paths.data_dir("app").exists());
        assert!(inst.paths.data.is_dir());
        // Before `stage` is done nothing was moved: nothing is touched.
        put(&inst.paths.data_dir("app/keep"), "x");
        super::undo_files(&inst, &journal(&staging, &[])).unwrap();
        assert!(inst.paths.data_dir("app/keep").exists());
    }
}
