//! Service and job output: a size-rotated `current` file fed by pipe-reading tasks.
//!
//! Layout, as with runit's `svlogd`: `<log_dir>/current` is being written,
//! `current.1` is the most recent rotated file, `current.<keep>` the oldest kept.
//! Rotation happens at line boundaries, so a file only exceeds the limit when a
//! single line is longer than the limit. Reading them back, following rotations, is
//! in [`read`].

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use berth_layout::logs::CURRENT;
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag, openat, renameat};
use nix::sys::stat::{Mode, SFlag, fchmod, fstat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, User, fchown, unlinkat};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

use crate::say::say;

mod read;

pub use read::{Follower, LineSink, ServiceLog, last_lines, service_logs};

/// Mode of every log file: the administrator (root) writes and reads it, the service's
/// group reads it, nobody else (logs carry request data, tokens, tracebacks).
pub const LOG_FILE_MODE: u32 = 0o640;
/// Mode of each service's or job's log directory, so nothing inside is reachable by
/// other users whatever the files' own modes (a file made by an older berth).
pub const LOG_DIR_MODE: u32 = 0o750;

/// The group that may read the logs of a process running as `user`.
///
/// As root: `user`'s primary group (root's when `user` is `None`), so that files end up
/// `root:<group>`. Otherwise `None`: logs stay owned by the user the supervisor runs as.
pub fn log_group(user: Option<&str>) -> io::Result<Option<Gid>> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let Some(name) = user else {
        return Ok(Some(Gid::from_raw(0)));
    };
    let entry = User::from_name(name)
        .map_err(io::Error::from)?
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("there is no system user `{name}` to give its logs to"),
            )
        })?;
    Ok(Some(entry.gid))
}

/// Open the log file `path` for appending: created with [`LOG_FILE_MODE`], an existing
/// one tightened to it, owned by root and `group` when `group` is given (see
/// [`log_group`]).
///
/// The last component is opened with `O_NOFOLLOW` and must be a regular file, and the
/// owner and mode are set on the open descriptor, so a symlink or FIFO planted where the
/// log goes is refused instead of followed. The parent directory is created if missing
/// (it belongs to root: berth makes the log tree).
pub fn open_log_file(path: &Path, group: Option<Gid>) -> io::Result<File> {
    let (dir, name) = split(path)?;
    fs::create_dir_all(dir)?;
    let dir_fd = openat(
        AT_FDCWD,
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    open_in(&dir_fd, name, group, false)
}

fn split(path: &Path) -> io::Result<(&Path, &Path)> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{}` does not name a file", path.display()),
        )
    })?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok((dir, Path::new(name)))
}

/// Open (or create) `name` in `dir` for appending, never following a symlink, and give
/// it [`LOG_FILE_MODE`] and its owner on the descriptor.
fn open_in(dir: &OwnedFd, name: &Path, group: Option<Gid>, truncate: bool) -> io::Result<File> {
    let mut flags = OFlag::O_WRONLY
        | OFlag::O_APPEND
        | OFlag::O_CREAT
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_CLOEXEC;
    if truncate {
        flags |= OFlag::O_TRUNC;
    }
    let fd = openat(dir, name, flags, Mode::from_bits_truncate(LOG_FILE_MODE))
        .map_err(|err| refusal(err, name))?;
    secure(&fd, group, LOG_FILE_MODE, SFlag::S_IFREG)?;
    Ok(File::from(fd))
}

/// A symlink where a log goes fails `O_NOFOLLOW` with `ELOOP`: say so plainly.
fn refusal(err: Errno, name: &Path) -> io::Error {
    if err == Errno::ELOOP {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "`{}` is a symbolic link; logs are never written through one (remove it)",
                name.display()
            ),
        )
    } else {
        io::Error::from(err)
    }
}

/// Check that `fd` is of `kind`, then set its owner (root and `group`, when given) and mode.
fn secure(fd: &impl AsFd, group: Option<Gid>, mode: u32, kind: SFlag) -> io::Result<()> {
    let st = fstat(fd.as_fd())?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != kind {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a log path is not a regular file (or a log directory not a directory)",
        ));
    }
    if let Some(group) = group {
        fchown(fd.as_fd(), Some(Uid::from_raw(0)), Some(group))?;
    }
    fchmod(fd.as_fd(), Mode::from_bits_truncate(mode))?;
    Ok(())
}

/// A log file that rotates itself when it grows past `max_bytes`.
#[derive(Debug)]
pub(crate) struct RotatingLog {
    dir: OwnedFd,
    group: Option<Gid>,
    file: File,
    size: u64,
    max_bytes: u64,
    keep: u32,
}

/// A log shared by the stdout and stderr readers of one process.
pub(crate) type SharedLog = Arc<Mutex<RotatingLog>>;

impl RotatingLog {
    /// Open (creating the directory) `<dir>/current` for appending.
    ///
    /// The directory gets [`LOG_DIR_MODE`], the files [`LOG_FILE_MODE`], all owned by
    /// root and `group` when `group` is given; files left by an older berth are
    /// tightened. Rotation renames within the directory's descriptor, so it never
    /// leaves it.
    pub(crate) fn open(
        dir: &Path,
        max_bytes: u64,
        keep: u32,
        group: Option<Gid>,
    ) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let dir_fd = openat(
            AT_FDCWD,
            dir,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|err| refusal(err, dir))?;
        secure(&dir_fd, group, LOG_DIR_MODE, SFlag::S_IFDIR)?;
        let file = open_in(&dir_fd, Path::new(CURRENT), group, false)?;
        for index in 1..=keep {
            tighten(&dir_fd, &rotated(index), group)?;
        }
        let size = file.metadata()?.len();
        Ok(Self {
            dir: dir_fd,
            group,
            file,
            size,
            max_bytes: max_bytes.max(1),
            keep,
        })
    }

    /// Open and wrap for sharing between reader tasks.
    pub(crate) fn open_shared(
        dir: &Path,
        max_bytes: u64,
        keep: u32,
        group: Option<Gid>,
    ) -> io::Result<SharedLog> {
        Self::open(dir, max_bytes, keep, group).map(|log| Arc::new(Mutex::new(log)))
    }

    /// Append `data`, rotating before any line that would push `current` past the limit.
    pub(crate) fn write(&mut self, data: &[u8]) -> io::Result<()> {
        for piece in data.split_inclusive(|byte| *byte == b'\n') {
            let len = piece.len() as u64;
            if self.size > 0 && self.size + len > self.max_bytes {
                self.rotate()?;
            }
            self.file.write_all(piece)?;
            self.size += len;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.keep == 0 {
            self.file = open_in(&self.dir, Path::new(CURRENT), self.group, true)?;
        } else {
            ignore_missing(unlinkat(
                &self.dir,
                &rotated(self.keep),
                UnlinkatFlags::NoRemoveDir,
            ))?;
            for index in (1..self.keep).rev() {
                ignore_missing(renameat(
                    &self.dir,
                    &rotated(index),
                    &self.dir,
                    &rotated(index + 1),
                ))?;
            }
            // A rename keeps the inode, and so the mode and owner.
            renameat(&self.dir, CURRENT, &self.dir, &rotated(1))?;
            self.file = open_in(&self.dir, Path::new(CURRENT), self.group, false)?;
        }
        self.size = 0;
        Ok(())
    }
}

fn rotated(index: u32) -> PathBuf {
    PathBuf::from(berth_layout::logs::rotated(index))
}

/// Give an existing rotated file the log mode and owner; a missing one, or anything
/// that is not a regular file, is left alone (rotation renames over it).
fn tighten(dir: &OwnedFd, name: &Path, group: Option<Gid>) -> io::Result<()> {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    match openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => {
            let st = fstat(fd.as_fd())?;
            if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG {
                secure(&fd, group, LOG_FILE_MODE, SFlag::S_IFREG)?;
            }
            Ok(())
        }
        Err(Errno::ENOENT | Errno::ELOOP | Errno::ENXIO) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

fn ignore_missing(result: nix::Result<()>) -> io::Result<()> {
    match result {
        Err(Errno::ENOENT) => Ok(()),
        other => other.map_err(io::Error::from),
    }
}

/// Copy everything from `reader` (a child's stdout or stderr) into `log` until EOF.
///
/// Runs as its own task so a slow disk or a rotation never blocks the child for long:
/// the child only ever writes into the pipe buffer.
pub(crate) fn pump<R>(mut reader: R, log: SharedLog, owner: String) -> JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut buf = vec![0_u8; 16 * 1024];
        let mut reported = false;
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let result = log
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .write(&buf[..n]);
                    if let Err(err) = result
                        && !reported
                    {
                        reported = true;
                        say!("failed to write the log of `{owner}`: {err}");
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_line_boundaries_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RotatingLog::open(dir.path(), 100, 2, None).unwrap();
        for i in 0..100 {
            log.write(format!("line number {i:04}\n").as_bytes())
                .unwrap();
        }
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["current", "current.1", "current.2"]);
        for name in &names {
            let text = fs::read_to_string(dir.path().join(name)).unwrap();
            assert!(text.len() <= 100, "{name} has {} bytes", text.len());
            assert!(text.ends_with('\n'));
        }
        let newest = fs::read_to_string(dir.path().join("current")).unwrap();
        assert!(newest.ends_with("line number 0099\n"));
    }
}

#[cfg(test)]
mod access_tests {
    //! Logs are readable by root and the service's group only (they were 0644 in 0755
    //! directories: any local user read every service's output), and root never writes
    //! a log through a symlink planted where the log goes.

    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// A group that is not root's, when running as root; `None` otherwise (then only
    /// the modes are checked: an unprivileged test cannot give files away).
    fn other_group() -> Option<Gid> {
        log_group(Some("nobody")).ok().flatten()
    }

    #[test]
    fn files_and_directory_are_private_to_root_and_the_group_also_after_rotation() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("web");
        let group = other_group();
        let mut log = RotatingLog::open(&dir, 30, 2, group).unwrap();
        log.write(b"first line, long enough to rotate\n").unwrap();
        log.write(b"second line, long enough to rotate\n").unwrap();
        log.write(b"third\n").unwrap();
        assert_eq!(mode(&dir), 0o750);
        for name in ["current", "current.1", "current.2"] {
            let path = dir.join(name);
            assert_eq!(mode(&path), 0o640, "{name}");
            if let Some(group) = group {
                let meta = fs::metadata(&path).unwrap();
                assert_eq!((meta.uid(), meta.gid()), (0, group.as_raw()), "{name}");
            }
        }
        if let Some(group) = group {
            assert_eq!(fs::metadata(&dir).unwrap().gid(), group.as_raw());
        }
    }

    #[test]
    fn logs_left_world_readable_by_an_older_berth_are_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("web");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        for name in ["current", "current.1"] {
            fs::write(dir.join(name), "old\n").unwrap();
            fs::set_permissions(dir.join(name), fs::Permissions::from_mode(0o644)).unwrap();
        }
        let _log = RotatingLog::open(&dir, 1000, 3, other_group()).unwrap();
        assert_eq!(mode(&dir), 0o750);
        assert_eq!(mode(&dir.join("current")), 0o640);
        assert_eq!(mode(&dir.join("current.1")), 0o640);

        let single = tmp.path().join("hook.log");
        fs::write(&single, "old\n").unwrap();
        fs::set_permissions(&single, fs::Permissions::from_mode(0o644)).unwrap();
        drop(open_log_file(&single, other_group()).unwrap());
        assert_eq!(mode(&single), 0o640);
    }

    #[test]
    fn a_symlink_planted_at_current_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("web");
        fs::create_dir(&dir).unwrap();
        let victim = tmp.path().join("victim");
        fs::write(&victim, "precious\n").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("current")).unwrap();
        let err = RotatingLog::open(&dir, 1000, 1, other_group()).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        std::os::unix::fs::symlink(&victim, tmp.path().join("hook.log")).unwrap();
        assert!(open_log_file(&tmp.path().join("hook.log"), other_group()).is_err());
        // The target kept its content, mode and owner.
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
        assert_eq!(mode(&victim), 0o600);
        assert_eq!(
            fs::metadata(&victim).unwrap().gid(),
            nix::unistd::getegid().as_raw()
        );
    }
}
