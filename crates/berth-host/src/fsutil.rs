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

/// Bytes of the regular files under `dir`, for estimates and listings: symlinks are
/// never followed (a `dir` that is itself one, or is missing, counts nothing), and a
/// file with several hard links counts once. Entries that vanish meanwhile are skipped.
pub fn tree_size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    if std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_symlink()) {
        return 0;
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() && seen.insert((meta.dev(), meta.ino())) {
                total += meta.len();
            }
        }
    }
    total
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

/// Makes the directory `path` and its missing parents, each new one with `mode`, in a
/// tree berth itself owns (the prefix and what root made in it).
pub fn ensure_dir(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(|source| HostError::CreateDir {
            path: path.to_path_buf(),
            source,
        })
}

/// Removes the file (or symlink, never what it points to) at `path`; whether there was
/// one. Its directory is trusted as it is.
pub fn remove_file_if_exists(path: &Path) -> Result<bool> {
    let (dir, name) = trusted_parent(path)?;
    match dir.remove_file(&name) {
        Ok(()) => Ok(true),
        Err(HostError::Remove { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Copies the file `src` (berth itself, a release bundle) to `dest` (mode `mode`)
/// unless `dest` is that file or
/// already a copy of it (same size and modification time); whether it copied. The copy
/// keeps the source's modification time, which marks it as this build, and replaces
/// `dest` atomically: a process running the old file keeps its inode.
pub fn install_copy(src: &Path, dest: &Path, mode: u32) -> Result<bool> {
    let same_file = std::fs::canonicalize(src)
        .ok()
        .zip(std::fs::canonicalize(dest).ok())
        .is_some_and(|(a, b)| a == b);
    if same_file {
        return Ok(false);
    }
    let read_err = |source| HostError::Read {
        path: src.to_path_buf(),
        source,
    };
    let src_meta = std::fs::metadata(src).map_err(read_err)?;
    let stamp = |m: &std::fs::Metadata| (m.len(), m.modified().ok());
    if std::fs::metadata(dest).is_ok_and(|m| stamp(&m) == stamp(&src_meta)) {
        return Ok(false);
    }
    if let Some(parent) = dest.parent() {
        ensure_dir(parent, 0o755)?;
    }
    let (dir, name) = trusted_parent(dest)?;
    let mut from = File::open(src).map_err(read_err)?;
    let modified = src_meta.modified().ok();
    dir.write_atomic_with(
        &name,
        &mut |to| {
            std::io::copy(&mut from, to)?;
            // The source's time marks the copy as this build; the next install compares it.
            if let Some(t) = modified {
                to.set_modified(t)?;
            }
            Ok(())
        },
        mode,
        None,
    )?;
    Ok(true)
}

/// Makes the new directory `scratch` (mode 0700) and in it a private copy `name`
/// (mode 0600) of the file `src`, never following a symlink at `src`; both are given to
/// `owner` when set. For handing a file berth does not trust to an unprivileged reader:
/// only that reader can open the copy, and the original stays out of its reach.
pub fn private_copy(
    src: &Path,
    scratch: &Path,
    name: &str,
    owner: Option<(u32, u32)>,
) -> Result<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    let (parent, dir_name) = trusted_parent(scratch)?;
    let dir = parent.create_dir(&dir_name, 0o700, owner)?;
    let mut from = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(src)
        .map_err(|source| HostError::Read {
            path: src.to_path_buf(),
            source,
        })?;
    dir.write_atomic_with(
        Path::new(name),
        &mut |to| std::io::copy(&mut from, to).map(drop),
        0o600,
        owner,
    )?;
    Ok(scratch.join(name))
}

/// Takes the exclusive lock on the file `path` (made, mode 0644, if missing; a symlink
/// there is refused, never followed) without waiting: the lock while the returned file
/// lives, or `None` when another process holds it.
pub fn try_lock(path: &Path) -> Result<Option<nix::fcntl::Flock<File>>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| HostError::Write {
            path: path.to_path_buf(),
            source,
        })?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(HostError::Write {
            path: path.to_path_buf(),
            source: e.into(),
        }),
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

    /// The instance's copy of berth: copied once per build (same size and time: not
    /// again), atomically, keeping the build's time, and a symlink planted at the
    /// destination is replaced, never written through.
    #[test]
    fn install_copy_copies_once_per_build_and_never_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("berth");
        std::fs::write(&src, b"build 1").unwrap();
        let dest = dir.path().join("prefix/bin/berth");
        assert!(install_copy(&src, &dest, 0o755).unwrap());
        assert_eq!(std::fs::read(&dest).unwrap(), b"build 1");
        let meta = std::fs::metadata(&dest).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o755);
        assert_eq!(
            meta.modified().unwrap(),
            std::fs::metadata(&src).unwrap().modified().unwrap()
        );
        assert!(!install_copy(&src, &dest, 0o755).unwrap(), "copied again");
        assert!(!install_copy(&dest, &dest, 0o755).unwrap());

        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"root's").unwrap();
        std::fs::remove_file(&dest).unwrap();
        std::os::unix::fs::symlink(&victim, &dest).unwrap();
        std::fs::write(&src, b"build 2!").unwrap();
        assert!(install_copy(&src, &dest, 0o755).unwrap());
        assert_eq!(std::fs::read(&victim).unwrap(), b"root's");
        assert!(!std::fs::symlink_metadata(&dest).unwrap().is_symlink());
        assert_eq!(std::fs::read(&dest).unwrap(), b"build 2!");
        let names: Vec<_> = std::fs::read_dir(dest.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1, "a temporary file was left");
    }

    #[test]
    fn remove_file_if_exists_says_whether_there_was_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        assert!(!remove_file_if_exists(&path).unwrap());
        std::fs::write(&path, b"{}").unwrap();
        assert!(remove_file_if_exists(&path).unwrap());
        assert!(!path.exists());
    }

    #[test]
    fn a_lock_is_held_once_and_a_symlink_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let held = super::try_lock(&path).unwrap();
        assert!(held.is_some());
        assert!(super::try_lock(&path).unwrap().is_none());
        drop(held);
        assert!(super::try_lock(&path).unwrap().is_some());
        let link = dir.path().join("link.lock");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
        assert!(super::try_lock(&link).is_err());
        assert!(!dir.path().join("elsewhere").exists());
    }
}
