//! The secrets of an archive, for a deployment that takes an instance in (`berth k8s
//! render --secrets-from`): the archive authenticated by the key file's signing key
//! alone (no instance here has a key of its own to trust), of the same app, its
//! secrets decrypted with the key file's backup key into a private directory that is
//! gone when this returns. Nothing else of the archive is read.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{BackupError, Result};

/// The archive's secrets by name, each value without its final newline.
///
/// # Errors
/// The key file cannot be read or holds no signing key or no backup key; the archive
/// is not signed by it, is damaged, is of another app, or holds no secrets; they do not
/// decrypt with the key file's backup key.
pub fn read(archive: &Path, key: &Path, app: &str) -> Result<BTreeMap<String, String>> {
    let key_text = crate::trust::read_key_file(key)?;
    let trusted = crate::trust::trusted_keys_of(&key_text)?;
    let identity = crate::backup::read_identity(&key_text)?;
    let opened = berth_archive::Archive::open(archive, &trusted)?;
    let index = opened.manifest();
    let meta = crate::trust::read_meta(index, archive)?;
    if meta.app != app {
        return Err(BackupError::Cannot {
            what: format!(
                "`{}` is a backup of `{}`, not of `{app}`",
                archive.display(),
                meta.app.escape_debug()
            ),
            hint: "take the secrets from a backup of this app".to_owned(),
        });
    }
    if index.entry(SECRETS).is_none() {
        return Err(BackupError::Cannot {
            what: format!(
                "`{}` holds no secrets (it was made without a backup key)",
                archive.display()
            ),
            hint: "back the instance up again after `berth backup key`, or render without `--secrets-from` (new secrets are made)".to_owned(),
        });
    }
    let scratch = tempfile::Builder::new()
        .prefix(".berth-secrets-from-")
        .tempdir()
        .map_err(BackupError::io("create", std::env::temp_dir()))?;
    let unpacked = scratch.path().join("archive");
    std::fs::create_dir(&unpacked).map_err(BackupError::io("create", &unpacked))?;
    opened.extract(&unpacked, &|p: &str| p == SECRETS, &mut |_| {})?;
    let blob = std::fs::read(unpacked.join(SECRETS))
        .map_err(BackupError::io("read", unpacked.join(SECRETS)))?;
    let dir = scratch.path().join("secrets");
    berth_archive::secrets::decrypt_to_dir(&blob, &identity, &dir)?;
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).map_err(BackupError::io("read", &dir))? {
        let entry = entry.map_err(BackupError::io("read", &dir))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let meta = std::fs::symlink_metadata(&path).map_err(BackupError::io("inspect", &path))?;
        let bytes = if meta.is_file() {
            std::fs::read(&path).map_err(BackupError::io("read", &path))?
        } else {
            return Err(crate::trust::crafted(
                archive,
                &format!("its secret `{}` is not a regular file", name.escape_debug()),
            ));
        };
        let text = String::from_utf8(bytes).map_err(|_| {
            crate::trust::crafted(
                archive,
                &format!("its secret `{}` is not text", name.escape_debug()),
            )
        })?;
        out.insert(name, text.trim_end_matches(['\n', '\r']).to_owned());
    }
    Ok(out)
}

/// The archive's entry holding the secrets.
const SECRETS: &str = "secrets.age";
