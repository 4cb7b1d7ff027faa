//! The app's database reached over the network from a one-off pod (the backup
//! CronJob's, the restore Job's): its address, the owning role's password once the
//! server answers, and a private directory for the password file libpq reads.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::start::{self, Options};
use crate::{ContainerError, Result};

/// How long the database's Service may take to accept connections.
const STARTING: Duration = Duration::from_mins(5);

/// The owner's password from the secret `secret`, once the database at `address`
/// takes connections (5 minutes at most); `None` when stopped meanwhile. `nothing`
/// ends the error past that time ("nothing was backed up").
pub(crate) fn password_when_up(
    opts: &Options,
    secret: &str,
    address: &str,
    nothing: &str,
    say: &mut dyn FnMut(&str),
) -> Result<Option<String>> {
    let password = start::read_secret(&opts.secrets_dir.join(secret))?.ok_or_else(|| {
        ContainerError::Invalid(format!(
            "the secret `{secret}` (the database owner's password) is not in {}: mount the \
             app's Secret there, or point BERTH_SECRETS_DIR at it",
            opts.secrets_dir.display()
        ))
    })?;
    match crate::wait_for(address, STARTING, say) {
        0 => Ok(Some(password)),
        crate::init::STOPPED => Ok(None),
        _ => Err(ContainerError::Invalid(format!(
            "the database at {address} did not answer within {}s: {nothing}",
            STARTING.as_secs()
        ))),
    }
}

/// What the manifest backs up, checked: the name of the secret holding the database
/// owner's password, when there is a database.
pub(crate) fn check_manifest(m: &berth_model::Manifest) -> Result<Option<String>> {
    let Some(b) = m
        .backup
        .as_ref()
        .filter(|b| !b.data_dirs.is_empty() || b.database.is_some())
    else {
        return Err(ContainerError::Invalid(format!(
            "the manifest of {} backs up nothing (no `[backup]` data_dirs or database): there \
             is nothing to back up",
            m.app.name
        )));
    };
    match &b.database {
        None => Ok(None),
        Some(db) => db.password.clone().map(Some).ok_or_else(|| {
            ContainerError::Invalid(format!(
                "the manifest's `[backup.database]` has no `password`: a dump over the network \
                 needs the secret holding the password of `{}`; add `password = \"SECRET\"` \
                 naming it",
                db.owner
            ))
        }),
    }
}

/// `HOST:PORT` (or `[V6]:PORT`) as libpq takes them.
pub(crate) fn split_address(address: &str) -> Result<(String, String)> {
    let (host, port) = address
        .rsplit_once(':')
        .filter(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        .ok_or_else(|| {
            ContainerError::Invalid(format!(
                "--database {address}: not HOST:PORT (the database's Service and port)"
            ))
        })?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Ok((host.to_owned(), port.to_owned()))
}

/// A private directory (mode 0700), made anew under `parent` and removed with
/// everything in it when dropped, whether the backup or restore succeeded or not.
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    pub(crate) fn new(parent: &Path, label: &str) -> Result<Self> {
        use std::hash::{BuildHasher as _, Hasher as _};
        // Random, so two pods' backups sharing a claim never meet.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let name = format!("{label}-{}-{random:016x}", std::process::id());
        berth_host::beneath::SafeDir::open_trusted(parent)?.create_dir(
            Path::new(&name),
            0o700,
            None,
        )?;
        Ok(Self(parent.join(name)))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = berth_host::beneath::remove_tree_at(&self.0);
    }
}

/// A libpq password file in `private` giving `owner` its `password`: never on a
/// command line or in an environment a process listing shows.
pub(crate) fn passfile(private: &Scratch, owner: &str, password: &str) -> Result<PathBuf> {
    let path = private.0.join("pgpass");
    let text = berth_backup::database::passfile_text(owner, password);
    berth_host::fsutil::write_new(&path, text.as_bytes(), 0o600, None)?;
    Ok(path)
}
