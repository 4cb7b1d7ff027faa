//! `berth container backup`: the backup a deployment's CronJob runs, in the database
//! service's image. The database is dumped over the network (its server runs in
//! another pod) as the owning role, with the password the manifest names; the data
//! directories are read from the volumes mounted at their paths; the archive is
//! written as `berth backup create` writes one ([`berth_backup::backup::write_in_dir`]),
//! so a host's `berth restore` and `berth backup verify` take it. No writer is paused:
//! the web pods keep serving.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_archive::SigningKey;
use berth_backup::BackupError;
use berth_backup::backup::{Contents, Dump, SiteConfig};
use berth_lifecycle::Instance;

use crate::remote::{Scratch, check_manifest, password_when_up, split_address};
use crate::start::{self, Options};
use crate::{ContainerError, Result};

/// What a failed backup leaves.
const NOTHING: &str = "nothing was backed up";

/// `berth container backup --to DIR --key FILE --database HOST:PORT`: an archive of the
/// instance written into `to` (an existing directory), signed with the signing key in
/// `key`, its secrets encrypted to the site config's `backup.recipient` or else to the
/// key file's backup key; then `to` pruned by the retention policy. Returns the exit
/// status.
///
/// # Errors
/// `to` is not a directory; the key file holds no signing key; the manifest backs up
/// nothing, or has a database but no `password`; the database does not answer within
/// 5 minutes, or the dump or the archive fails (nothing of it is left in `to`).
pub fn backup(
    opts: &Options,
    to: &Path,
    key: &Path,
    database: &str,
    say: &mut dyn FnMut(&str),
) -> Result<u8> {
    check_dir(to)?;
    for left in sweep(to, std::time::SystemTime::now()) {
        say(&format!(
            "berth: removed what an interrupted backup left: {}",
            left.display()
        ));
    }
    let keys = read_keys(key)?;
    let inst = start::open(opts)?;
    let password_secret = check_manifest(&inst.manifest.manifest)?;
    let (values, _) = start::read_secrets(&inst, &opts.secrets_dir)?;
    let state = crate::render(&inst, &values)?;
    let plan = state.backup.clone().unwrap_or(berth_render::BackupPlan {
        data_dirs: Vec::new(),
        quiesce: Vec::new(),
        database: None,
    });
    let policy = &state.backup_policy;
    let app = &state.app;
    on_volumes(&plan.data_dirs)?;

    // The password and the secrets' plain copies stay off the backup volume, which
    // other tools may read; the dump, as big as the database, goes there.
    let private = Scratch::new(&std::env::temp_dir(), "berth-backup")?;
    let secrets_dir = private.0.join("secrets");
    let (recipient, warnings) = gather_secrets(&inst, opts, policy, keys.1, &secrets_dir)?;
    let scratch = match password_secret {
        Some(_) => Some(Scratch::new(to, ".berth-backup")?),
        None => None,
    };
    let mut dump = None;
    if let (Some(secret), Some(scratch)) = (&password_secret, &scratch) {
        let db = plan.database.as_ref().ok_or_else(|| {
            ContainerError::Invalid(
                "the database service is turned off in this pod's site config: run the backup \
                 in the database service's pod, with its site config"
                    .to_owned(),
            )
        })?;
        let Some(password) = password_when_up(opts, secret, database, NOTHING, say)? else {
            return Ok(crate::init::STOPPED);
        };
        dump = Some(dump_over_network(
            &inst,
            db,
            &password,
            database,
            policy.jobs,
            &private,
            &scratch.0,
            say,
        )?);
    }

    let site = if inst.config_exists {
        administrators_site_config(&read(&inst.config_path)?)?
    } else {
        String::new()
    };
    let contents = Contents {
        app: &app.name,
        version: &app.version,
        components: app_components(&inst).iter().cloned().collect(),
        data_root: &inst.paths.data,
        data_dirs: &plan.data_dirs,
        dump,
        site_config: SiteConfig::Text(site.as_bytes()),
        manifest_dir: manifest_dir(&inst),
        secrets: recipient.as_deref().map(|r| (secrets_dir.as_path(), r)),
        signing_key: &keys.0,
    };
    let (name, written) = berth_backup::backup::write_in_dir(
        to,
        policy.compression_level,
        &contents,
        &berth_lifecycle::Silent,
    )
    .map_err(failed)?;
    drop(scratch);
    drop(private);
    for w in &warnings {
        say(w);
    }
    say(&format!(
        "berth: backed up {} {} to {} ({})",
        app.name,
        app.version,
        to.join(&name).display(),
        berth_backup::backup::human(written.size)
    ));
    let pruned = berth_backup::backup::prune_in(
        &berth_target::LocalTarget::new(to),
        &app.name,
        &berth_backup::backup::retention(policy),
        false,
    )
    .map_err(|e| ContainerError::Invalid(format!("the backup is written, but {}", message(&e))))?;
    if !pruned.deleted.is_empty() {
        say(&format!(
            "berth: removed by the retention policy: {}",
            pruned.deleted.join(", ")
        ));
    }
    Ok(0)
}

/// Refuses a data directory that is there but not on a volume.
fn on_volumes(dirs: &[(String, PathBuf)]) -> Result<()> {
    for (_, dir) in dirs {
        // An unmounted volume leaves the image's empty directory: an archive of it
        // would look whole and restore nothing.
        if std::fs::symlink_metadata(dir).is_ok() {
            crate::restore::on_a_volume(
                dir,
                "a backup of it would hold the image's empty directory; mount the volume \
                 holding it there (the backup CronJob `berth k8s render` writes mounts them all)",
            )?;
        }
    }
    Ok(())
}

/// The app's enabled components, all of them: in a pod of one role the instance's
/// own are narrowed to that role's.
fn app_components(inst: &Instance) -> &std::collections::BTreeSet<String> {
    inst.config
        .app_components
        .as_ref()
        .unwrap_or(&inst.config.enabled_components)
}

/// A backup error as this command's, with what to do.
#[allow(clippy::needless_pass_by_value)] // taken as `map_err` hands it over
fn failed(e: BackupError) -> ContainerError {
    ContainerError::Invalid(format!("the backup failed: {}", message(&e)))
}

/// `pg_dump` of the database at `address` (`HOST:PORT`) into `scratch/db`, as the
/// owning role with `password` (in a password file in `private`), and the server's
/// version, as a host's backup records them.
#[allow(clippy::too_many_arguments)] // each a separate input of the one dump
fn dump_over_network<'a>(
    inst: &Instance,
    db: &'a berth_render::DatabasePlan,
    password: &str,
    address: &str,
    jobs: u32,
    private: &Scratch,
    scratch: &'a Path,
    say: &mut dyn FnMut(&str),
) -> Result<Dump<'a>> {
    let passfile = crate::remote::passfile(private, &db.owner, password)?;
    let (host, port) = split_address(address)?;
    let children = inst.children();
    let remote = berth_backup::database::Database {
        plan: db,
        children: &children,
        network: Some(berth_backup::database::Network {
            host: &host,
            port: &port,
            passfile: &passfile,
        }),
    };
    say(&format!(
        "berth: dumping database `{}` from {address} ({jobs} jobs)",
        db.name
    ));
    let started = Instant::now();
    let server_version = berth_backup::database::server_version(&remote).map_err(failed)?;
    berth_backup::database::dump(&remote, &scratch.join("db"), jobs).map_err(failed)?;
    Ok(Dump {
        plan: db,
        base: scratch,
        rel: "db",
        jobs,
        server_version,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The app's secrets copied into `dir`, and the recipient they are encrypted to: the
/// site config's `backup.recipient`, else the key file's backup key (`key_recipient`);
/// with the warnings to give (secrets left out).
fn gather_secrets(
    inst: &Instance,
    opts: &Options,
    policy: &berth_render::BackupPolicy,
    key_recipient: Option<String>,
    dir: &Path,
) -> Result<(Option<String>, Vec<String>)> {
    let mut warnings = Vec::new();
    let missing = copy_secrets(inst, &opts.secrets_dir, dir)?;
    if !missing.is_empty() {
        warnings.push(format!(
            "berth: WARNING: the secret{} {} {} not in {}, so not in the backup: a host \
             restoring it generates new ones",
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", "),
            if missing.len() == 1 { "is" } else { "are" },
            opts.secrets_dir.display()
        ));
    }
    let recipient = match &policy.recipient {
        Some(r) => {
            berth_archive::secrets::parse_recipient(r)
                .map_err(|e| ContainerError::Invalid(format!("backup.recipient: {e}")))?;
            Some(r.clone())
        }
        None => key_recipient,
    };
    if recipient.is_none() {
        warnings.push(format!("berth: {}", berth_backup::backup::NO_KEY_WARNING));
    }
    Ok((recipient, warnings))
}

fn message(e: &BackupError) -> String {
    let hint = e.hint().map(|h| format!(" ({h})")).unwrap_or_default();
    format!("{}{hint}", berth_lifecycle::run::error_text(e))
}

/// Refuses `to` unless it is an existing directory: a claim that is not mounted must
/// not get an archive in the container's own file system, gone with it.
fn check_dir(to: &Path) -> Result<()> {
    match std::fs::metadata(to) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(ContainerError::Invalid(format!(
            "--to {}: not a directory; name the directory the archives go to (the backup \
             CronJob mounts its claim there)",
            to.display()
        ))),
        Err(e) => Err(ContainerError::Invalid(format!(
            "--to {}: {e}; name an existing directory (the backup CronJob mounts its claim \
             there)",
            to.display()
        ))),
    }
}

/// How old what a backup leaves in `--to` while it runs (its scratch directory, its
/// `.partial` archive) must be before another backup takes it for an interrupted
/// one's: a pod killed outright leaves them, and no backup runs this long.
const LEFT_AFTER: Duration = Duration::from_hours(12);

/// Removes from `to` the scratch directories and partial archives of backups that
/// were interrupted (older than [`LEFT_AFTER`] at `now`), by descriptors; what it
/// removed.
fn sweep(to: &Path, now: std::time::SystemTime) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(to).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with(".berth-backup-") || name.ends_with(berth_target::PARTIAL_SUFFIX)) {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age > LEFT_AFTER));
        if old && berth_host::beneath::remove_tree_at(&entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

/// The signing key in the key file, and the recipient of its backup key if it has one.
fn read_keys(path: &Path) -> Result<(SigningKey, Option<String>)> {
    let bad = |why: String| {
        ContainerError::Invalid(format!(
            "--key {}: {why}; pass the key file `berth backup key --export FILE` wrote",
            path.display()
        ))
    };
    let text = berth_backup::trust::read_key_file(path).map_err(|e| bad(message(&e)))?;
    let file =
        berth_archive::signing::parse_key_file(&text.text).map_err(|e| bad(e.to_string()))?;
    let signing = file.signing.ok_or_else(|| {
        bad(
            "it holds no archive signing key, so no host would trust an archive signed here"
                .to_owned(),
        )
    })?;
    Ok((signing, file.identity.map(|i| i.recipient().to_owned())))
}

/// The site config a host restoring the archive gets: the pod's, without the `roles`
/// and `[fleet]` that `berth k8s render` adds to each pod's copy (the administrator's
/// config cannot have them).
fn administrators_site_config(text: &str) -> Result<String> {
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| ContainerError::Invalid(format!("the site config: {e}")))?;
    doc.remove("roles");
    doc.remove("fleet");
    Ok(doc.to_string())
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| ContainerError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })
}

/// The manifest directory the instance runs from, stored in the archive.
fn manifest_dir(inst: &Instance) -> Option<&Path> {
    match &inst.origin {
        berth_lifecycle::instance::ManifestOrigin::Dir(d)
        | berth_lifecycle::instance::ManifestOrigin::Stored(d) => Some(d),
        berth_lifecycle::instance::ManifestOrigin::Embedded => None,
    }
}

/// Copies the app's secrets from `from` into the new private directory `to` as plain
/// files: only the manifest's names are read (a Kubernetes Secret volume also holds
/// `..data` and its timestamped directory, whose files are symlinked), never the key
/// file. Returns the names not there.
fn copy_secrets(inst: &Instance, from: &Path, to: &Path) -> Result<Vec<String>> {
    let specs = berth_render::secret_specs_enabled(
        &inst.manifest,
        &inst.facts,
        &inst.users,
        app_components(inst),
    );
    berth_host::fsutil::ensure_dir(to, 0o700)?;
    let mut found = BTreeMap::new();
    let mut missing = Vec::new();
    for spec in &specs {
        match start::read_secret(&from.join(&spec.name))? {
            Some(value) => {
                found.insert(spec.name.clone(), value);
            }
            // A hook's secret may not have been made yet; it is not the app's loss.
            None if spec.from_hook.is_some() => {}
            None => missing.push(format!("`{}`", spec.name)),
        }
    }
    for (name, value) in &found {
        berth_host::fsutil::write_new(&to.join(name), value.as_bytes(), 0o600, None)?;
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::{check_manifest, split_address};

    /// What an interrupted backup left goes once it is old; a running backup's, and
    /// everything else, stays.
    #[test]
    fn what_an_interrupted_backup_left_goes_once_it_is_old() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join(".berth-backup-1-00aa")).unwrap();
        std::fs::write(d.join(".berth-backup-1-00aa/dump"), "x").unwrap();
        std::fs::write(d.join("app-1.0.0-2026-01-01T000000Z.tar.zst.partial"), "x").unwrap();
        std::fs::write(d.join("app-1.0.0-2026-01-01T000000Z.tar.zst"), "x").unwrap();
        std::fs::write(d.join("notes"), "x").unwrap();
        let now = std::time::SystemTime::now();
        assert!(sweep(d, now).is_empty());
        let removed = sweep(d, now + LEFT_AFTER + Duration::from_mins(1));
        assert_eq!(removed.len(), 2, "{removed:?}");
        let mut left: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["app-1.0.0-2026-01-01T000000Z.tar.zst", "notes"]);
    }

    /// The text `berth k8s render` gives a role's pods: the administrator's, with its
    /// header, the pod's `roles` and the `[fleet]` naming every role's Service.
    const POD_SITE: &str = "# The `database` pods' site config, written by `berth k8s render`: the site config\n\
        # given to it, with the pods' roles and where every role's Service is.\n\
        roles = [\"database\"]\n\
        external_url = \"https://netbox.example.org/\"\n\
        # the administrator's own comment\n\
        [netbox]\n\
        time_zone = \"Europe/Berlin\"\n\
        \n\
        [fleet]\n\
        name = \"netbox\"\n\
        node = \"database\"\n\
        networks = [\"10.0.0.0/8\"]\n\
        [fleet.nodes.database]\n\
        address = \"netbox-database\"\n\
        roles = [\"database\"]\n";

    /// A host restoring the archive gets the administrator's settings, comments
    /// included, without what the render added for the pod.
    #[test]
    fn the_archive_gets_the_administrators_site_config() {
        assert_eq!(
            administrators_site_config(POD_SITE).unwrap(),
            "external_url = \"https://netbox.example.org/\"\n\
             # the administrator's own comment\n\
             [netbox]\n\
             time_zone = \"Europe/Berlin\"\n"
        );
        // A pod of no role has the administrator's text as it is.
        let plain = "external_url = \"https://x.example/\"\n[netbox]\ntime_zone = \"UTC\"\n";
        assert_eq!(administrators_site_config(plain).unwrap(), plain);
    }

    /// No backup into a directory that is not there (an unmounted claim), nor into a
    /// file; the error says what `--to` must be.
    #[test]
    fn the_target_must_be_an_existing_directory() {
        let tmp = tempfile::tempdir().unwrap();
        check_dir(tmp.path()).unwrap();
        let missing = tmp.path().join("backups");
        let e = check_dir(&missing).unwrap_err().to_string();
        assert!(
            e.contains("--to") && e.contains("existing directory"),
            "{e}"
        );
        assert!(!missing.exists(), "made the directory");
        std::fs::write(&missing, "").unwrap();
        let e = check_dir(&missing).unwrap_err().to_string();
        assert!(e.contains("not a directory"), "{e}");
    }

    /// A missing key file, or one with only a backup key, is refused by name; a key
    /// file as `berth backup key --export` writes one gives both keys.
    #[test]
    fn the_key_file_must_hold_a_signing_key() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("key");
        let e = read_keys(&path).unwrap_err().to_string();
        assert!(
            e.contains("--key") && e.contains("berth backup key --export"),
            "{e}"
        );

        let (identity, recipient) = berth_archive::secrets::generate_identity();
        let only_age = berth_archive::secrets::identity_file_text(
            &identity,
            &recipient,
            jiff::Timestamp::UNIX_EPOCH,
        );
        std::fs::write(&path, only_age).unwrap();
        let e = read_keys(&path).unwrap_err().to_string();
        assert!(e.contains("holds no archive signing key"), "{e}");

        let both = berth_archive::signing::new_key_file_text(jiff::Timestamp::UNIX_EPOCH).unwrap();
        std::fs::write(&path, &both).unwrap();
        let (signing, recipient) = read_keys(&path).unwrap();
        let parsed = berth_archive::signing::parse_key_file(&both).unwrap();
        assert_eq!(signing.public_key(), parsed.signing.unwrap().public_key());
        assert_eq!(
            recipient.as_deref(),
            Some(parsed.identity.unwrap().recipient())
        );
    }

    fn manifest(backup: &str) -> berth_model::Manifest {
        let text = format!(
            "[app]\nname = \"demo\"\nversion = \"1.0.0\"\n\
             [components.db]\nsource = \"system\"\n\
             [services.db]\ncomponent = \"db\"\ncommand = [\"/bin/true\"]\n\
             [secrets.db_password]\nlength = 32\n{backup}"
        );
        berth_model::LoadedManifest::from_sources("berth.toml", &text, BTreeMap::new())
            .unwrap()
            .manifest
    }

    /// A manifest that backs up nothing, or whose database has no `password`, is
    /// refused with what to add; one with both backs up with that secret.
    #[test]
    fn the_manifest_must_back_up_something_and_name_the_password() {
        let e = check_manifest(&manifest("")).unwrap_err().to_string();
        assert!(e.contains("backs up nothing"), "{e}");
        let e = check_manifest(&manifest("[backup]\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("backs up nothing"), "{e}");
        let db = "[backup.database]\nkind = \"postgresql\"\nservice = \"db\"\nhost = \"h\"\n\
                  port = \"5432\"\nname = \"demo\"\nowner = \"demo\"\nbin_dir = \"/usr/bin\"\n";
        let e = check_manifest(&manifest(&format!("[backup]\n{db}")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no `password`") && e.contains("`demo`") && e.contains("password = "),
            "{e}"
        );
        let with = format!("[backup]\n{db}password = \"db_password\"\n");
        assert_eq!(
            check_manifest(&manifest(&with)).unwrap().as_deref(),
            Some("db_password")
        );
        let files = check_manifest(&manifest("[backup]\ndata_dirs = [\"media\"]\n")).unwrap();
        assert_eq!(files, None);
    }

    /// The address libpq gets: a name or an IPv6 address without its brackets, and a
    /// port; anything else is refused.
    #[test]
    fn the_database_address_is_host_and_port() {
        let ok = |a: &str| split_address(a).unwrap();
        assert_eq!(
            ok("netbox-database:5432"),
            ("netbox-database".into(), "5432".into())
        );
        assert_eq!(ok("[::1]:5432"), ("::1".into(), "5432".into()));
        for bad in ["netbox-database", ":5432", "db:port", "db:99999"] {
            assert!(split_address(bad).is_err(), "{bad}");
        }
    }
}
