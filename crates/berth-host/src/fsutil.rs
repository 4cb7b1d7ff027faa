//! Atomic, durable file writes and small file-system helpers.

use std::fs::File;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::beneath::SafeDir;
use crate::{HostError, Result};

/// Writes `bytes` to `path` so that readers see either the old file or the new one,
/// never a part: a temporary file in the same directory is written, flushed to disk,
/// given `mode` (and `owner` as `(uid, gid)`, when given), then renamed over `path`,
/// and the directory is flushed so the rename survives a crash.
///
/// The directory holding `path` is trusted as it is; the file itself is never
/// followed if it is a symlink (the link is replaced), and the temporary file is
/// created new (`O_EXCL`) with mode 0600, so content is never visible to others
/// before its mode is set. See [`crate::beneath::SafeDir::write_atomic`].
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32, owner: Option<(u32, u32)>) -> Result<()> {
    let (dir, name) = trusted_parent(path)?;
    dir.write_atomic(&name, bytes, mode, owner)
}

/// Like [`write_atomic`], but never replaces anything already at `path`, not even a
/// dangling symlink ([`HostError::AlreadyExists`]); the check is the rename itself.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32, owner: Option<(u32, u32)>) -> Result<()> {
    let (dir, name) = trusted_parent(path)?;
    dir.write_new(&name, bytes, mode, owner)
}

fn trusted_parent(path: &Path) -> Result<(SafeDir, PathBuf)> {
    crate::beneath::in_parent(path).map_err(|e| match e {
        HostError::Read { source, .. } => HostError::Write {
            path: path.to_path_buf(),
            source,
        },
        e => e,
    })
}

/// [`write_atomic`] unless `path` already holds exactly `bytes` (then nothing is
/// written, so a run that changes nothing touches no file and waits on no disk flush);
/// whether it wrote. Only for content: the mode of an existing file is not checked.
pub fn write_if_changed(path: &Path, bytes: &[u8], mode: u32) -> Result<bool> {
    let same = trusted_parent(path)
        .and_then(|(dir, name)| dir.read(&name))
        .is_ok_and(|old| old == bytes);
    if same {
        return Ok(false);
    }
    write_atomic(path, bytes, mode, None)?;
    Ok(true)
}

/// Flushes a directory's entries (new names, renames) to disk.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| HostError::Write {
            path: dir.to_path_buf(),
            source,
        })
}

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The directory holding `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn same_content_is_not_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert!(write_if_changed(&path, b"[1]", 0o644).unwrap());
        let inode = std::fs::metadata(&path).unwrap().ino();
        assert!(!write_if_changed(&path, b"[1]", 0o644).unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode, "rewritten");
        assert!(write_if_changed(&path, b"[2]", 0o644).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"[2]");
    }

    #[test]
    fn writes_content_and_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.conf");
        write_atomic(&path, b"one\n", 0o640, None).unwrap();
        write_atomic(&path, b"two\n", 0o600, None).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two\n");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn sets_owner_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owned");
        let me = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        write_atomic(&path, b"x", 0o644, Some(me)).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), me);
    }

    #[test]
    fn fails_with_the_path_when_the_directory_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing/app.conf");
        let err = write_atomic(&path, b"x", 0o644, None).unwrap_err();
        assert!(err.to_string().contains("missing/app.conf"), "{err}");
    }

    #[test]
    fn sha256_is_hex() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
