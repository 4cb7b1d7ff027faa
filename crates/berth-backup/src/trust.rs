//! What a backup archive is trusted for, and the keys that decide it.
//!
//! Whoever can write to a backup target can put an archive there, so `backup verify` and
//! `restore` believe nothing in one before its signature checks out against a trusted
//! key (the instance's own signing key, or the one in the key file given with `--key`),
//! and even then validate its metadata against the **manifest** this berth runs: the data
//! directories it names must be ones the manifest backs up, the site config goes through
//! the same validation as on the host, and the secrets must be the manifest's.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use berth_archive::signing::{KeyFile, SigningKey, parse_key_file, signing_key_file_text};
use berth_archive::{ArchiveManifest, PublicKey};
use berth_process::ChildCommand;

use crate::error::{BackupError, Result};
use berth_lifecycle::Instance;

use crate::meta::BackupMeta;

/// Creates `<prefix>/state` if missing, and makes sure it is mode 0700 whoever made it:
/// it holds the keys.
pub(crate) fn private_state_dir(inst: &Instance) -> Result<()> {
    let dir = &inst.paths.state;
    if let Some(prefix) = dir.parent() {
        // The prefix itself: the administrator's path, made before any instance exists.
        berth_host::fsutil::ensure_dir(prefix, 0o755)?;
    }
    let (parent, name) = berth_host::beneath::in_parent(dir)?;
    match parent.stat(&name)? {
        None => drop(parent.create_dir(&name, 0o700, None)?),
        Some(st) if !st.is_dir() => {
            return Err(BackupError::Cannot {
                what: format!("`{}` is not a directory", dir.display()),
                hint: "it must be a real directory owned by root: move whatever is there away"
                    .to_owned(),
            });
        }
        Some(st) if st.perm() != 0o700 => parent.set_mode(&name, 0o700)?,
        Some(_) => {}
    }
    Ok(())
}

/// Reads a key file that must be private: a regular file (not a symlink), owned by the
/// user berth runs as, readable by nobody else.
fn read_private(path: &Path, what: &str) -> Result<Option<String>> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(BackupError::io("read", path)(e)),
    };
    let meta = file.metadata().map_err(BackupError::io("inspect", path))?;
    if !meta.is_file() || meta.mode() & 0o077 != 0 || meta.uid() != nix::unistd::geteuid().as_raw()
    {
        return Err(BackupError::Cannot {
            what: format!(
                "The {what} `{}` is not private (mode {:04o}, owner uid {}): someone else may have read or replaced it",
                path.display(),
                meta.mode() & 0o7777,
                meta.uid()
            ),
            hint: format!(
                "check who changed it; if it is yours, `chown root: {p}; chmod 600 {p}`",
                p = path.display()
            ),
        });
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut &file, &mut text).map_err(BackupError::io("read", path))?;
    Ok(Some(text))
}

/// Writes `bytes` to the new file `path`, mode 0600: never over an existing path and
/// never through a symlink (the no-replace rename of [`berth_host::fsutil::write_new`]).
pub(crate) fn create_private(path: &Path, bytes: &[u8]) -> Result<()> {
    if publish_private(path, bytes)? {
        Ok(())
    } else {
        Err(BackupError::Cannot {
            what: format!("`{}` already exists", path.display()),
            hint: "name a new file: a key is never written over another file".to_owned(),
        })
    }
}

/// Writes a new key file atomically, only if nothing is at `path` yet (two backups
/// starting at once keep one key): whether it was written.
fn publish_private(path: &Path, bytes: &[u8]) -> Result<bool> {
    match berth_host::fsutil::write_new(path, bytes, 0o600, None) {
        Ok(()) => Ok(true),
        Err(berth_host::HostError::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The instance's signing key, if it has one.
pub fn signing_key(inst: &Instance) -> Result<Option<SigningKey>> {
    signing_key_at(&inst.paths)
}

/// The signing key of the instance at `paths`, if it has one.
fn signing_key_at(paths: &berth_render::Paths) -> Result<Option<SigningKey>> {
    let path = paths.signing_key();
    let Some(text) = read_private(&path, "archive signing key")? else {
        return Ok(None);
    };
    match parse_key_file(&text) {
        Ok(KeyFile {
            signing: Some(key), ..
        }) => Ok(Some(key)),
        Ok(_) => Err(BackupError::Cannot {
            what: format!("`{}` holds no signing key", path.display()),
            hint: "move it away; `berth backup key` then creates a new one".to_owned(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// The instance's signing key, created (and reported as created) if it has none.
pub fn ensure_signing_key(inst: &Instance) -> Result<(SigningKey, bool)> {
    // Tightened every time: `state/` may have been made by an older berth, or by hand.
    private_state_dir(inst)?;
    if let Some(key) = signing_key(inst)? {
        return Ok((key, false));
    }
    let key = SigningKey::generate()?;
    let text = signing_key_file_text(&key, jiff::Timestamp::now());
    if publish_private(&inst.paths.signing_key(), text.as_bytes())? {
        return Ok((key, true));
    }
    // Another berth made one meanwhile: use it.
    let key = signing_key(inst)?.ok_or_else(|| BackupError::Cannot {
        what: "the archive signing key vanished while it was created".to_owned(),
        hint: "run the command again".to_owned(),
    })?;
    Ok((key, false))
}

/// The text of the instance's backup key file (age identity), created if missing.
pub(crate) fn ensure_identity_text(inst: &Instance, path: &Path) -> Result<(String, bool)> {
    private_state_dir(inst)?;
    if let Some(text) = read_private(path, "backup key")? {
        return Ok((text, false));
    }
    let (identity, recipient) = berth_archive::secrets::generate_identity();
    let text =
        berth_archive::secrets::identity_file_text(&identity, &recipient, jiff::Timestamp::now());
    if publish_private(path, text.as_bytes())? {
        return Ok((text, true));
    }
    let text = read_private(path, "backup key")?.unwrap_or_default();
    Ok((text, false))
}

/// A key file named on the command line (`--key`), read once: what it says is used for
/// both the signature check and the secrets.
#[derive(Debug, Clone)]
pub struct KeyFileText {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its text.
    pub text: String,
}

/// Reads the key file given with `--key` the careful way ([`berth_model::read_input`]):
/// a FIFO, a device, a directory, a huge or non-UTF-8 file is bad input (exit 2), never a
/// hang or a memory blow-up.
pub fn read_key_file(path: &Path) -> Result<KeyFileText> {
    let text = berth_model::read_input(
        path,
        "the key file",
        "pass the key file `berth backup key --export FILE` wrote: `--key FILE`",
    )
    .map_err(|e| BackupError::Invalid(e.into_diagnostics()))?;
    Ok(KeyFileText {
        path: path.to_owned(),
        text,
    })
}

/// The keys an archive may be signed with: the signing key in `key_file` (given with
/// `--key`) and the instance's own. Refuses when there is none, or when `key_file` holds
/// no signing key.
pub fn trusted_keys(inst: &Instance, key_file: Option<&KeyFileText>) -> Result<Vec<PublicKey>> {
    trusted_keys_at(&inst.paths, key_file)
}

/// [`trusted_keys`] for the instance at `paths`, before its manifest is known.
pub(crate) fn trusted_keys_at(
    paths: &berth_render::Paths,
    key_file: Option<&KeyFileText>,
) -> Result<Vec<PublicKey>> {
    let mut trusted = Vec::new();
    if let Some(key_file) = key_file {
        trusted = trusted_keys_of(key_file)?;
    }
    if let Some(own) = signing_key_at(paths)? {
        let own = own.public_key();
        if !trusted.contains(&own) {
            trusted.push(own);
        }
    }
    if trusted.is_empty() {
        return Err(BackupError::Cannot {
            what:
                "No trusted archive signing key: this instance has none, and no key file was given"
                    .to_owned(),
            hint: "pass the key file exported on the instance that made the backup: \
                   `--key FILE` (`berth backup key --export FILE` writes it)"
                .to_owned(),
        });
    }
    Ok(trusted)
}

/// The key `key_file` vouches for archives with: its signing key. Refuses a key file
/// without one.
pub(crate) fn trusted_keys_of(key_file: &KeyFileText) -> Result<Vec<PublicKey>> {
    let KeyFileText { path, text } = key_file;
    match parse_key_file(text)? {
        KeyFile {
            signing: Some(key), ..
        } => Ok(vec![key.public_key()]),
        KeyFile { signing: None, .. } => Err(BackupError::Cannot {
            what: format!(
                "`{}` holds no archive signing key, so it cannot vouch for an archive",
                path.display()
            ),
            hint: "on the instance that made the backups, export its keys again: \
                   `berth backup key --export NEW-FILE`"
                .to_owned(),
        }),
    }
}

/// What an authenticated archive's metadata says, once checked against the manifest.
#[derive(Debug, Clone)]
pub(crate) struct ArchiveFacts {
    /// Data directories to restore, relative to `<prefix>/data`: each one the manifest's
    /// `[backup] data_dirs` declares.
    pub data_dirs: Vec<String>,
    /// The dump directory's entry (`database/<name>`), if there is a dump.
    pub dump_path: Option<String>,
    /// Entries whose mode carries setuid, setgid or sticky bits (which berth never
    /// writes, and a restore drops).
    pub privileged_entries: Vec<String>,
}

pub(crate) fn crafted(archive: &Path, what: &str) -> BackupError {
    BackupError::Cannot {
        what: format!("`{}` cannot be restored: {what}", archive.display()),
        hint: "berth never writes such an archive: do not restore it, and check who can write to the backup target"
            .to_owned(),
    }
}

/// Whether `rel` is a plain relative path: components that are not empty, `.` or `..`.
fn plain_relative(rel: &str) -> bool {
    !rel.is_empty()
        && !rel.starts_with('/')
        && !rel.contains('\0')
        && rel
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// The typed metadata of an authenticated archive; a signed archive whose metadata
/// does not have berth's shape is refused by name.
pub(crate) fn read_meta(manifest: &ArchiveManifest, archive: &Path) -> Result<BackupMeta> {
    BackupMeta::from_meta(&manifest.meta).map_err(|e| {
        crafted(
            archive,
            &format!("its metadata is not a berth backup's ({e})"),
        )
    })
}

/// The data directories the manifest backs up (`[backup] data_dirs`).
pub(crate) fn declared_dirs(inst: &Instance) -> Vec<String> {
    inst.manifest
        .manifest
        .backup
        .as_ref()
        .map(|b| b.data_dirs.clone())
        .unwrap_or_default()
}

/// Checks an authenticated archive's metadata against the manifest this berth runs.
pub(crate) fn check_meta(
    inst: &Instance,
    meta: &BackupMeta,
    manifest: &ArchiveManifest,
    archive: &Path,
) -> Result<ArchiveFacts> {
    let declared = declared_dirs(inst);
    let mut data_dirs = Vec::new();
    for d in &meta.data_dirs {
        if !plain_relative(d) {
            return Err(crafted(
                archive,
                &format!(
                    "its data directory `{}` is not a plain relative path (it could reach outside {})",
                    d.escape_debug(),
                    inst.paths.data.display()
                ),
            ));
        }
        if !declared.iter().any(|x| x == d) {
            return Err(crafted(
                archive,
                &format!(
                    "its data directory `{}` is not one the manifest backs up ({})",
                    d.escape_debug(),
                    if declared.is_empty() {
                        "it declares none".to_owned()
                    } else {
                        declared.join(", ")
                    }
                ),
            ));
        }
        if !data_dirs.contains(d) {
            data_dirs.push(d.clone());
        }
    }
    let dump_path = match meta.database.as_ref().map(|d| &d.path) {
        None => None,
        Some(p)
            if plain_relative(p)
                && p.strip_prefix("database/")
                    .is_some_and(|name| !name.contains('/')) =>
        {
            Some(p.clone())
        }
        Some(other) => {
            return Err(crafted(
                archive,
                &format!(
                    "its database dump path `{}` is not `database/<name>`",
                    other.escape_debug()
                ),
            ));
        }
    };
    let privileged_entries = manifest
        .entries
        .iter()
        .filter(|e| e.mode & 0o7000 != 0)
        .map(|e| format!("{} ({:04o})", e.path, e.mode))
        .collect();
    Ok(ArchiveFacts {
        data_dirs,
        dump_path,
        privileged_entries,
    })
}

/// Checks a site config taken from an archive the way the host checks its own: parsed
/// and resolved against the manifest.
pub(crate) fn check_site_config(inst: &Instance, path: &Path) -> Result<()> {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map_err(|_| BackupError::Cannot {
            what: format!(
                "the archive's site config `{}` is not UTF-8 text",
                path.display()
            ),
            hint: "do not restore this archive".to_owned(),
        })?,
        Err(e) if e.kind() == ErrorKind::NotFound => String::new(),
        Err(e) => return Err(BackupError::io("read", path)(e)),
    };
    let site = berth_model::parse_site("site.toml (from the archive)", &text, &inst.manifest)?;
    berth_model::resolve_at(
        &inst.manifest,
        &site,
        &inst.facts,
        Some(&berth_render::derive_paths(&inst.paths)),
    )?;
    Ok(())
}

/// Checks decrypted secrets: only regular files named after the manifest's secrets (or
/// berth's own, [`berth_render::berth_secret_specs`]),
/// each a value the secret can have ([`berth_render::SecretSpec::check_value`]): a
/// generated one only the characters its alphabet produces, so a crafted value cannot
/// bring quotes, newlines or other characters the generated ones never have into a
/// rendered file; one a hook made, one line without control characters.
pub(crate) fn check_secrets(inst: &Instance, dir: &Path) -> Result<()> {
    let mut specs = berth_render::secret_specs_enabled(
        &inst.manifest,
        &inst.facts,
        &inst.users,
        &inst.config.enabled_components,
    );
    // berth's own (the console password) come back too.
    specs.extend(berth_render::berth_secret_specs());
    let bad = |what: String| BackupError::Cannot {
        what: format!("The archive's secrets are not this app's: {what}"),
        hint: "do not restore this archive (or restore it with `--without-secrets`)".to_owned(),
    };
    for entry in std::fs::read_dir(dir).map_err(BackupError::io("read", dir))? {
        let entry = entry.map_err(BackupError::io("read", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(spec) = specs.iter().find(|s| s.name == name) else {
            return Err(bad(format!(
                "`{}` is not a secret the manifest declares",
                name.escape_debug()
            )));
        };
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).map_err(BackupError::io("inspect", &path))?;
        if !meta.is_file() {
            return Err(bad(format!("`{name}` is not a regular file")));
        }
        let bytes = std::fs::read(&path).map_err(BackupError::io("read", &path))?;
        let text = String::from_utf8(bytes).map_err(|_| bad(format!("`{name}` is not text")))?;
        let value = text.trim_end_matches(['\n', '\r']);
        if let Err(why) = spec.check_value(value) {
            return Err(bad(format!(
                "the value of `{name}` is not one it can have: {why}"
            )));
        }
    }
    Ok(())
}

/// The user untrusted parsers run as: berth's own unprivileged build user (created if
/// missing), not the shared `nobody`, whose processes other daemons may also run as.
fn unprivileged_user() -> Result<(u32, u32)> {
    let name = berth_host::python::BUILD_USER;
    berth_host::users::ensure_user(&berth_render::UserSpec {
        name: name.to_owned(),
        home: PathBuf::from("/nonexistent"),
    })?;
    match berth_host::users::lookup(name) {
        Some((uid, gid)) if uid != 0 => Ok((uid, gid)),
        found => Err(BackupError::Cannot {
            what: format!(
                "the unprivileged user `{name}` that reads archives' dumps {}",
                if found.is_some() {
                    "has uid 0"
                } else {
                    "cannot be found after it was created"
                }
            ),
            hint: format!("give `{name}` an unprivileged uid of its own (`usermod -u`)"),
        }),
    }
}

/// `pg_restore --list` of the dump whose table of contents is `toc`, as an unprivileged
/// user with a clean environment: it parses a file from the archive, so a bug in it must
/// not run as root. The TOC is copied into a private directory `scratch` (created here)
/// that only that user can read. Returns the number of entries.
pub(crate) fn list_dump(bin_dir: &Path, toc: &Path, scratch: &Path) -> Result<usize> {
    let root = berth_host::users::is_root();
    let owner = if root {
        Some(unprivileged_user()?)
    } else {
        None
    };
    berth_host::fsutil::private_copy(toc, scratch, "toc.dat", owner)?;
    let program = bin_dir.join("pg_restore");
    let could_not = |e: std::io::Error| BackupError::Database {
        what: format!("could not run `{}`: {e}", program.display()),
        stderr: String::new(),
    };
    let mut cmd = ChildCommand::new(&program);
    cmd.arg("--list")
        .arg(scratch)
        .user(owner.map(|_| berth_host::python::BUILD_USER))
        .path("/usr/bin:/bin")
        .env("LC_ALL", "C")
        .current_dir(scratch)
        .die_with_parent();
    let out = cmd
        .build()
        .map_err(|e| could_not(e.into()))?
        .output()
        .map_err(could_not)?;
    if !out.status.success() {
        return Err(BackupError::Database {
            what: format!(
                "`pg_restore --list` cannot read the dump's table of contents `{}` ({})",
                toc.display(),
                // A signal is not a refusal of the file: say which it was.
                out.status
            ),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .count())
}

#[cfg(test)]
mod tests {
    use super::{list_dump, plain_relative};
    use std::os::unix::fs::PermissionsExt;

    /// An archive's site config is checked against a manifest whose setting derives
    /// from `paths.*`: it resolves with this instance's paths (and is not refused as
    /// using paths that are not known), and a bad value is still refused.
    #[test]
    fn a_site_config_is_checked_with_settings_derived_from_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let from =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/ministack");
        let manifest = tmp.path().join("manifest");
        std::fs::create_dir_all(manifest.join("templates")).unwrap();
        for entry in std::fs::read_dir(from.join("templates")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(
                entry.path(),
                manifest.join("templates").join(entry.file_name()),
            )
            .unwrap();
        }
        let text = std::fs::read_to_string(from.join("berth.toml")).unwrap();
        std::fs::write(
            manifest.join("berth.toml"),
            text + "\n[settings.app.uploads]\ntype = \"string\"\n\
                    derive = \"paths.data ~ '/app/uploads'\"\n",
        )
        .unwrap();
        let inst = berth_lifecycle::instance::open(&berth_lifecycle::Locate {
            prefix: Some(tmp.path().join("inst")),
            manifest: Some(manifest),
            ..berth_lifecycle::Locate::default()
        })
        .unwrap();
        let site = tmp.path().join("site.toml");
        std::fs::write(&site, "[app]\ngreeting = \"good day\"\n").unwrap();
        super::check_site_config(&inst, &site).unwrap();
        std::fs::write(&site, "[app]\ngreeting = \"NOT LOWER\"\n").unwrap();
        assert!(super::check_site_config(&inst, &site).is_err());
    }

    /// Attack: an archive's secret that a hook makes (`from_hook`) carries a second line
    /// or a terminal escape. It is refused like a generated secret outside its
    /// alphabet, with the reason and never the value; one line of any other text (what
    /// an app's key looks like) is accepted.
    #[test]
    fn a_hooks_secret_from_an_archive_is_one_line_of_text() {
        let tmp = tempfile::tempdir().unwrap();
        let manifest =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/minted");
        let inst = berth_lifecycle::instance::open(&berth_lifecycle::Locate {
            prefix: Some(tmp.path().join("inst")),
            manifest: Some(manifest),
            ..berth_lifecycle::Locate::default()
        })
        .unwrap();
        let secrets = tmp.path().join("secrets");
        std::fs::create_dir(&secrets).unwrap();
        std::fs::write(secrets.join("session_key"), "a".repeat(32)).unwrap();
        std::fs::write(secrets.join("admin_api_key"), "c0ffee\n").unwrap();
        super::check_secrets(&inst, &secrets).unwrap();
        for bad in ["c0ffee\nlisten 0.0.0.0:80;", "\u{1b}]0;x\u{7}", "C0FFEE"] {
            std::fs::write(secrets.join("admin_api_key"), bad).unwrap();
            let err = super::check_secrets(&inst, &secrets)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("`admin_api_key` is not one it can have"),
                "{err}"
            );
            assert!(!err.contains("0.0.0.0") && !err.contains("C0FFEE"), "{err}");
        }
        std::fs::write(secrets.join("admin_api_key"), "c0ffee\n").unwrap();
        // berth's own console password comes back with the app's, checked the same way.
        std::fs::write(secrets.join("berth-console-password"), "A".repeat(24)).unwrap();
        super::check_secrets(&inst, &secrets).unwrap();
        std::fs::write(secrets.join("berth-console-password"), "A\nB").unwrap();
        let err = super::check_secrets(&inst, &secrets)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`berth-console-password` is not one it can have"),
            "{err}"
        );
        std::fs::remove_file(secrets.join("berth-console-password")).unwrap();
        std::fs::write(secrets.join("berth-other"), "x").unwrap();
        let err = super::check_secrets(&inst, &secrets)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`berth-other` is not a secret"), "{err}");
    }

    /// Attack: a crafted dump exploits a bug in `pg_restore`'s parser. It must then run
    /// as berth's own unprivileged user (not root, nor the `nobody` other daemons share),
    /// and without root's environment.
    #[test]
    fn the_dump_is_listed_unprivileged_with_a_clean_environment() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = tmp.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Lists two entries only if it is not root and does not see root's environment
        // (its HOME is the build user's own); it can read its copy of the TOC.
        let script = "#!/bin/sh\n[ \"$(id -u)\" != 0 ] || exit 3\n\
                      [ \"$(id -un)\" = berth-build ] || exit 6\n\
                      [ \"$HOME\" = \"$(getent passwd berth-build | cut -d: -f6)\" ] || exit 4\n\
                      cat \"$2/toc.dat\" >/dev/null || exit 5\necho one\necho two\n";
        let tool = bin.join("pg_restore");
        std::fs::write(&tool, script).unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let toc = tmp.path().join("toc.dat");
        std::fs::write(&toc, "toc").unwrap();
        std::fs::set_permissions(&toc, std::fs::Permissions::from_mode(0o600)).unwrap();
        let listed = list_dump(&bin, &toc, &tmp.path().join("scratch"));
        assert_eq!(listed.unwrap(), 2);
    }

    #[test]
    fn data_dirs_must_be_plain_relative_paths() {
        for ok in ["app", "netbox/media", "a..b", "..."] {
            assert!(plain_relative(ok), "{ok}");
        }
        // Each of these could name a directory outside `<prefix>/data`.
        for bad in [
            "",
            "/etc",
            "app/../../victim",
            "..",
            "app/..",
            "./app",
            "app//x",
            "app/",
            "a\0b",
        ] {
            assert!(!plain_relative(bad), "{bad:?}");
        }
    }
}
