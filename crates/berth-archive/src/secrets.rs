//! The backup's secrets: a small tar of the secrets directory, encrypted with age to the
//! instance's backup key, so an archive can be copied anywhere without exposing them.
//!
//! The blob is the binary age format, with one X25519 recipient; its plaintext is an
//! uncompressed tar of the directory's regular files and subdirectories (names and modes).
//! Nothing here ever puts a secret value, key or file content into an error or into
//! `Debug` output.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::iter;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use age::secrecy::ExposeSecret;
use jiff::Timestamp;

use crate::error::ArchiveError;
use crate::path::path_problem;

/// The prefix of a secret signing key's text form.
/// Defined here, not in `signing`, because a key file holds both keys and the age
/// reader must skip this one.
pub const SIGNING_KEY_PREFIX: &str = "BERTH-SIGNING-KEY-1";

const SECRET_KEY_PREFIX: &str = "AGE-SECRET-KEY-1";

/// An age X25519 identity (a backup key): what decrypts a backup's secrets.
///
/// Its `Debug` output shows only its public recipient.
pub struct Identity {
    inner: age::x25519::Identity,
    recipient: String,
}

impl Identity {
    /// The public recipient (`age1...`) secrets are encrypted to for this identity.
    pub fn recipient(&self) -> &str {
        &self.recipient
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("recipient", &self.recipient)
            .finish_non_exhaustive()
    }
}

/// An age X25519 recipient (`age1...`): what secrets are encrypted to.
#[derive(Clone)]
pub struct Recipient(age::x25519::Recipient);

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recipient({})", self.0)
    }
}

/// Generates a new backup key: its secret identity (`AGE-SECRET-KEY-1...`) and its public
/// recipient (`age1...`).
pub fn generate_identity() -> (String, String) {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    (identity.to_string().expose_secret().to_owned(), recipient)
}

/// Parses a backup key: either the bare `AGE-SECRET-KEY-1...` string or an identity file
/// as written by `age-keygen` or [`identity_file_text`], whose `#` lines are comments.
///
/// The file must hold exactly one key. If it has a `# public key: age1...` comment, that
/// must be the key's recipient (a mismatch means the file was edited by hand).
pub fn parse_identity(text: &str) -> Result<Identity, ArchiveError> {
    let invalid = |reason: &str| ArchiveError::InvalidKey {
        reason: reason.to_owned(),
    };
    let mut keys = Vec::new();
    let mut public = None;
    for line in text.lines().map(str::trim) {
        if let Some(comment) = line.strip_prefix('#') {
            if let Some(key) = comment.trim().strip_prefix("public key:") {
                public = Some(key.trim());
            }
        } else if !line.is_empty() && !line.starts_with(SIGNING_KEY_PREFIX) {
            // A key file may also hold the archive signing key, which is not age's.
            keys.push(line);
        }
    }
    let key = match keys.as_slice() {
        [key] => *key,
        [] => {
            return Err(invalid(&format!(
                "no key found (expected a line starting with `{SECRET_KEY_PREFIX}`)"
            )));
        }
        more => {
            return Err(invalid(&format!(
                "{} lines that are not comments, but a backup key file holds exactly one key",
                more.len()
            )));
        }
    };
    if !key.starts_with(SECRET_KEY_PREFIX) {
        return Err(invalid(&format!(
            "the key does not start with `{SECRET_KEY_PREFIX}`"
        )));
    }
    let inner: age::x25519::Identity = key
        .parse()
        .map_err(|e: &str| invalid(&format!("the secret key is not valid ({e})")))?;
    let recipient = inner.to_public().to_string();
    if let Some(public) = public
        && public != recipient
    {
        return Err(invalid(&format!(
            "its `# public key: {public}` comment does not match the key, whose recipient is {recipient}"
        )));
    }
    Ok(Identity { inner, recipient })
}

/// Parses a recipient (`age1...`).
pub fn parse_recipient(s: &str) -> Result<Recipient, ArchiveError> {
    s.trim()
        .parse()
        .map(Recipient)
        .map_err(|e: &str| ArchiveError::InvalidKey {
            // Only echo what looks like a recipient: a secret key pasted by mistake
            // must not end up in an error message.
            reason: if s.trim().starts_with("age1") {
                format!("`{}` is not a valid age recipient ({e})", s.trim())
            } else {
                format!("not an age recipient (expected `age1...`): {e}")
            },
        })
}

/// The text of an identity file for `identity`, in the format of `age-keygen`:
/// a `# created:` and a `# public key:` comment line, then the key.
pub fn identity_file_text(identity: &str, recipient: &str, created: Timestamp) -> String {
    format!(
        "# created: {}\n# public key: {recipient}\n{identity}\n",
        created.strftime("%Y-%m-%dT%H:%M:%SZ")
    )
}

/// Packs the files under `dir` into a tar and encrypts it to `recipient`.
///
/// Regular files and subdirectories are kept with their names and modes; anything else
/// (a symlink, a socket) is an error, since a secrets directory holds plain files.
pub fn encrypt_dir(dir: &Path, recipient: &str) -> Result<Vec<u8>, ArchiveError> {
    let recipient = parse_recipient(recipient)?;
    let encryptor =
        age::Encryptor::with_recipients(iter::once(&recipient.0 as &dyn age::Recipient))
            .map_err(|e| secrets_error(&format!("cannot encrypt: {e}")))?;
    // The plaintext streams from the files through the tar into the encryption: it is never
    // held in memory as a whole.
    let writer = encryptor
        .wrap_output(Vec::new())
        .map_err(|e| secrets_error(&format!("cannot encrypt: {e}")))?;
    let mut builder = tar::Builder::new(writer);
    add_dir(&mut builder, dir, "")?;
    let writer = builder
        .into_inner()
        .map_err(|e| secrets_error(&format!("cannot encrypt: {e}")))?;
    writer
        .finish()
        .map_err(|e| secrets_error(&format!("cannot encrypt: {e}")))
}

fn add_dir<W: Write>(
    builder: &mut tar::Builder<W>,
    dir: &Path,
    prefix: &str,
) -> Result<(), ArchiveError> {
    let mut names = fs::read_dir(dir)
        .and_then(|d| {
            d.map(|e| e.map(|e| e.file_name()))
                .collect::<io::Result<Vec<_>>>()
        })
        .map_err(|e| ArchiveError::io("list", dir, e))?;
    names.sort();
    for name in names {
        let src = dir.join(&name);
        let Some(name) = name.to_str() else {
            return Err(ArchiveError::InvalidSource {
                path: src,
                reason: "its name is not valid UTF-8".to_owned(),
            });
        };
        let path = format!("{prefix}{name}");
        let meta = fs::symlink_metadata(&src).map_err(|e| ArchiveError::io("inspect", &src, e))?;
        let mut header = tar::Header::new_gnu();
        header.set_mode(meta.mode() & 0o777);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        if meta.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            builder
                .append_data(&mut header, &path, io::empty())
                .map_err(|e| secrets_error(&format!("cannot encrypt: {e}")))?;
            add_dir(builder, &src, &format!("{path}/"))?;
        } else if meta.is_file() {
            // Read whole, so the size in the header is the size of what follows it even
            // if the file changes meanwhile (secrets are small); through a descriptor that
            // is not a symlink swapped in since the look above.
            let mut file = OpenOptions::new()
                .read(true)
                .custom_flags(crate::path::oflag(
                    rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK,
                ))
                .open(&src)
                .map_err(|e| ArchiveError::io("open", &src, e))?;
            if !file
                .metadata()
                .map_err(|e| ArchiveError::io("inspect", &src, e))?
                .is_file()
            {
                return Err(ArchiveError::InvalidSource {
                    path: src,
                    reason: "secrets must be regular files or directories".to_owned(),
                });
            }
            let mut data = Vec::new();
            io::Read::read_to_end(&mut file, &mut data)
                .map_err(|e| ArchiveError::io("read", &src, e))?;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(data.len() as u64);
            builder
                .append_data(&mut header, &path, data.as_slice())
                .map_err(|e| secrets_error(&format!("cannot encrypt: {e}")))?;
        } else {
            return Err(ArchiveError::InvalidSource {
                path: src,
                reason: "secrets must be regular files or directories".to_owned(),
            });
        }
    }
    Ok(())
}

/// Decrypts secrets made by [`encrypt_dir`] into `dest` and returns the paths of the files
/// written, relative to `dest`.
///
/// `dest` is created if missing and set to mode 0700. Files are created with mode 0600
/// and then given their stored mode without its group and other bits; subdirectories get
/// mode 0700. Existing files are never replaced. A key other than the one the secrets were
/// encrypted to gives [`ArchiveError::WrongKey`].
pub fn decrypt_to_dir(
    blob: &[u8],
    identity: &Identity,
    dest: &Path,
) -> Result<Vec<String>, ArchiveError> {
    let decryptor = age::Decryptor::new_buffered(blob)
        .map_err(|e| secrets_error(&format!("they are not a valid age file ({e})")))?;
    let reader = decryptor
        .decrypt(iter::once(&identity.inner as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => ArchiveError::WrongKey {
                recipient: identity.recipient.clone(),
            },
            e => secrets_error(&format!("they cannot be decrypted ({e})")),
        })?;

    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dest)
        .map_err(|e| ArchiveError::io("create the directory", dest, e))?;
    fs::set_permissions(dest, fs::Permissions::from_mode(0o700))
        .map_err(|e| ArchiveError::io("set the mode of", dest, e))?;

    let damaged = |e: io::Error| secrets_error(&format!("they are damaged ({e})"));
    let mut archive = tar::Archive::new(reader);
    let mut written = Vec::new();
    for entry in archive.entries().map_err(damaged)? {
        let mut entry = entry.map_err(damaged)?;
        let raw = entry.path_bytes();
        let path = std::str::from_utf8(&raw)
            .map_err(|_| secrets_error("a file name is not valid UTF-8"))?
            .trim_end_matches('/')
            .to_owned();
        drop(raw);
        if let Some(problem) = path_problem(&path) {
            return Err(secrets_error(&format!(
                "the entry `{path}` is unsafe: {problem}"
            )));
        }
        let full = dest.join(&path);
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&full)
                    .map_err(|e| ArchiveError::io("create the directory", &full, e))?;
            }
            tar::EntryType::Regular => {
                let mode = entry.header().mode().map_err(damaged)? & 0o700;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&full)
                    .map_err(|e| ArchiveError::io("create", &full, e))?;
                io::copy(&mut entry, &mut file).map_err(|e| {
                    if e.kind() == io::ErrorKind::InvalidData {
                        damaged(e)
                    } else {
                        ArchiveError::io("write", &full, e)
                    }
                })?;
                file.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(|e| ArchiveError::io("set the mode of", &full, e))?;
                written.push(path);
            }
            other => {
                return Err(secrets_error(&format!(
                    "the entry `{path}` is of tar type {other:?}, which secrets never contain"
                )));
            }
        }
    }
    // Reading on to the end makes age check the last chunk's authentication tag.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(damaged)?;
    Ok(written)
}

fn secrets_error(reason: &str) -> ArchiveError {
    ArchiveError::Secrets {
        reason: reason.to_owned(),
    }
}
