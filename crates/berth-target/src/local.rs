//! A target that is a local directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};

use crate::{ARCHIVE_SUFFIX, PARTIAL_SUFFIX, RemoteEntry, Space, Target, TargetError};

/// Numbers the write checks of this process, so concurrent checks never share a file.
static CHECKS: AtomicU64 = AtomicU64::new(0);

/// Large enough that copying a multi-gigabyte archive is not syscall-bound.
const COPY_BUFFER: usize = 1 << 20;

/// A local directory of archives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalTarget {
    dir: PathBuf,
}

impl LocalTarget {
    /// A target for `dir` (not touched until a method is called).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io(&self, context: impl Into<String>) -> impl FnOnce(io::Error) -> TargetError + '_ {
        let context = context.into();
        move |source| self.io_error(context, source)
    }

    /// Maps an I/O error to the variants callers tell apart: permission and space
    /// problems get their own messages.
    fn io_error(&self, context: String, source: io::Error) -> TargetError {
        let target = self.describe();
        match source.raw_os_error().map(Errno::from_raw) {
            Some(Errno::EACCES | Errno::EPERM | Errno::EROFS) => TargetError::PermissionDenied {
                target,
                message: format!("{context}: {source}"),
            },
            _ => TargetError::Io {
                target,
                context,
                source,
            },
        }
    }

    fn archive(&self, name: &str) -> Result<PathBuf, TargetError> {
        crate::validate_name(name)?;
        Ok(self.dir.join(name))
    }

    fn require_dir(&self) -> Result<(), TargetError> {
        match fs::metadata(&self.dir) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(TargetError::NotADirectory {
                target: self.describe(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(TargetError::MissingDirectory {
                target: self.describe(),
            }),
            Err(e) => Err(self.io_error("reading the directory".to_owned(), e)),
        }
    }

    fn exists(&self, path: &Path) -> Result<bool, TargetError> {
        path.try_exists()
            .map_err(self.io(format!("looking for {}", path.display())))
    }

    /// Opens `partial` for writing, keeping its content when it is a prefix of
    /// `source` (an interrupted upload of the same file); returns the resume offset
    /// with both files positioned there.
    fn open_partial(
        &self,
        partial: &Path,
        source: &mut File,
        source_len: u64,
    ) -> Result<(File, u64), TargetError> {
        let context = || format!("opening {}", partial.display());
        let mut out = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(partial)
            .map_err(self.io(context()))?;
        // A partial left by another user or umask must not stay readable by others.
        out.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(self.io(context()))?;
        let existing = out.metadata().map_err(self.io(context()))?.len();
        let resume = existing > 0
            && existing <= source_len
            && same_prefix(&mut out, source, existing).map_err(self.io(context()))?;
        let offset = if resume { existing } else { 0 };
        if !resume {
            out.set_len(0).map_err(self.io(context()))?;
        }
        out.seek(SeekFrom::Start(offset))
            .map_err(self.io(context()))?;
        source
            .seek(SeekFrom::Start(offset))
            .map_err(self.io(context()))?;
        Ok((out, offset))
    }

    fn sync_dir(&self) -> Result<(), TargetError> {
        sync_dir(&self.dir).map_err(self.io("syncing the directory"))
    }
}

impl Target for LocalTarget {
    fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    fn check(&self, needed: Option<u64>) -> Result<Space, TargetError> {
        match fs::metadata(&self.dir) {
            Ok(meta) if !meta.is_dir() => {
                return Err(TargetError::NotADirectory {
                    target: self.describe(),
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&self.dir)
                    .map_err(self.io("creating the directory"))?;
            }
            Err(e) => return Err(self.io_error("reading the directory".to_owned(), e)),
        }
        // Writing a file is the only test that catches read-only mounts, immutable
        // directories and ACLs alike, whoever we run as.
        let probe = self.dir.join(format!(
            ".berth-check-{}-{}",
            std::process::id(),
            CHECKS.fetch_add(1, Ordering::Relaxed)
        ));
        File::create(&probe).map_err(self.io("creating a file in the directory"))?;
        fs::remove_file(&probe).map_err(self.io("removing the check file"))?;

        let stat = nix::sys::statvfs::statvfs(&self.dir)
            .map_err(|e| self.io_error("reading free space".to_owned(), e.into()))?;
        let free = stat.blocks_available().saturating_mul(stat.fragment_size());
        if let Some(needed) = needed
            && needed > free
        {
            return Err(TargetError::NotEnoughSpace {
                target: self.describe(),
                needed,
                free,
            });
        }
        Ok(Space { free: Some(free) })
    }

    fn list(&self) -> Result<Vec<RemoteEntry>, TargetError> {
        self.require_dir()?;
        let mut entries = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(self.io("listing the directory"))? {
            let entry = entry.map_err(self.io("listing the directory"))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !name.ends_with(ARCHIVE_SUFFIX) {
                continue;
            }
            // Follows symlinks: an archive linked into the directory is still an archive.
            let meta = match fs::metadata(entry.path()) {
                Ok(meta) if meta.is_file() => meta,
                Ok(_) => continue,
                // Deleted between readdir and stat (a concurrent prune).
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io_error(format!("reading {name}"), e)),
            };
            entries.push(RemoteEntry {
                modified: meta
                    .modified()
                    .ok()
                    .and_then(|t| jiff::Timestamp::try_from(t).ok()),
                size: meta.len(),
                name,
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    fn put(
        &self,
        local: &Path,
        name: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), TargetError> {
        let dest = self.archive(name)?;
        self.require_dir()?;
        if self.exists(&dest)? {
            return Err(TargetError::AlreadyExists {
                target: self.describe(),
                name: name.to_owned(),
            });
        }
        let read_context = || format!("reading {}", local.display());
        let size = source_size(local).map_err(self.io(read_context()))?;
        let mut source = File::open(local).map_err(self.io(read_context()))?;
        let partial = self.dir.join(format!("{name}{PARTIAL_SUFFIX}"));
        let (mut out, offset) = self.open_partial(&partial, &mut source, size)?;
        progress(offset);

        let written = copy(&mut source, &mut out, offset, progress).and_then(|n| {
            out.sync_all()?;
            Ok(n)
        });
        let written = match written {
            Ok(n) => n,
            Err(CopyError::Read(e)) => return Err(self.io_error(read_context(), e)),
            Err(CopyError::Write(e)) if is_full(&e) => {
                drop(out);
                // Best effort: the full disk is the error to report, not this cleanup.
                let _ = fs::remove_file(&partial);
                return Err(TargetError::Full {
                    target: self.describe(),
                    name: name.to_owned(),
                });
            }
            Err(CopyError::Write(e)) => {
                return Err(self.io_error(format!("writing {}", partial.display()), e));
            }
        };
        drop(out);
        if written != size {
            // The source changed while it was copied; start over next time.
            let _ = fs::remove_file(&partial);
            return Err(TargetError::SizeMismatch {
                target: self.describe(),
                name: name.to_owned(),
                expected: size,
                actual: written,
            });
        }
        rename_noreplace(&partial, &dest).map_err(|e| self.rename_error(e, name))?;
        self.sync_dir()?;
        progress(size);
        Ok(())
    }

    fn put_move(
        &self,
        local: &Path,
        name: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), TargetError> {
        let dest = self.archive(name)?;
        self.require_dir()?;
        let size = source_size(local).map_err(self.io(format!("reading {}", local.display())))?;
        progress(0);
        match rename_noreplace(local, &dest) {
            Ok(()) => {
                self.sync_dir()?;
                if let Some(parent) = local.parent().filter(|p| *p != self.dir) {
                    sync_dir(parent).map_err(self.io("syncing the source directory"))?;
                }
                progress(size);
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(Errno::EXDEV as i32) => {
                self.put(local, name, progress)?;
                fs::remove_file(local)
                    .map_err(self.io(format!("removing {} after copying it", local.display())))
            }
            Err(e) => Err(self.rename_error(e, name)),
        }
    }

    fn get(
        &self,
        name: &str,
        local: &Path,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), TargetError> {
        let source_path = self.archive(name)?;
        let mut source = File::open(&source_path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                TargetError::NotFound {
                    target: self.describe(),
                    name: name.to_owned(),
                }
            } else {
                self.io_error(format!("reading {name}"), e)
            }
        })?;
        download_into(&mut source, local, progress).map_err(|e| match e {
            DownloadError::Exists => TargetError::LocalExists {
                path: local.to_owned(),
            },
            DownloadError::Read(e) => self.io_error(format!("reading {name}"), e),
            DownloadError::Write(e) => self.io_error(format!("writing {}", local.display()), e),
        })
    }

    fn delete(&self, name: &str) -> Result<(), TargetError> {
        let path = self.archive(name)?;
        fs::remove_file(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                TargetError::NotFound {
                    target: self.describe(),
                    name: name.to_owned(),
                }
            } else {
                self.io_error(format!("deleting {name}"), e)
            }
        })?;
        self.sync_dir()
    }

    fn local_path(&self, name: &str) -> Option<PathBuf> {
        self.archive(name).ok()
    }
}

impl LocalTarget {
    fn rename_error(&self, e: io::Error, name: &str) -> TargetError {
        if e.kind() == io::ErrorKind::AlreadyExists {
            TargetError::AlreadyExists {
                target: self.describe(),
                name: name.to_owned(),
            }
        } else {
            self.io_error(format!("renaming into {name}"), e)
        }
    }
}

/// The size of a file to upload, which must be a regular file.
pub(crate) fn source_size(local: &Path) -> io::Result<u64> {
    let meta = fs::metadata(local)?;
    if meta.is_file() {
        Ok(meta.len())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ))
    }
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

impl From<io::Error> for CopyError {
    fn from(e: io::Error) -> Self {
        Self::Write(e)
    }
}

/// Copies the rest of `source` to `out`, reporting cumulative bytes from `offset`;
/// returns the final size of `out`'s content.
fn copy(
    source: &mut File,
    out: &mut File,
    offset: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut total = offset;
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        out.write_all(&buf[..n]).map_err(CopyError::Write)?;
        total += n as u64;
        progress(total);
    }
}

/// Whether the first `len` bytes of both files are equal (reads from the start).
fn same_prefix(a: &mut File, b: &mut File, len: u64) -> io::Result<bool> {
    a.seek(SeekFrom::Start(0))?;
    b.seek(SeekFrom::Start(0))?;
    let mut buf_a = vec![0u8; COPY_BUFFER];
    let mut buf_b = vec![0u8; COPY_BUFFER];
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left.min(COPY_BUFFER as u64)).unwrap_or(COPY_BUFFER);
        a.read_exact(&mut buf_a[..n])?;
        match b.read_exact(&mut buf_b[..n]) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e),
        }
        if buf_a[..n] != buf_b[..n] {
            return Ok(false);
        }
        left -= n as u64;
    }
    Ok(true)
}

pub(crate) enum DownloadError {
    Exists,
    Read(io::Error),
    Write(io::Error),
}

/// Copies `source` into `local` through `local.partial` (mode 0600), fsyncs, and
/// renames without replacing.
fn download_into(
    source: &mut File,
    local: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<(), DownloadError> {
    if local.try_exists().map_err(DownloadError::Write)? {
        return Err(DownloadError::Exists);
    }
    let partial = partial_path(local);
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .map_err(DownloadError::Write)?;
    progress(0);
    let result = copy(source, &mut out, 0, progress).and_then(|_| Ok(out.sync_all()?));
    match result {
        Ok(()) => {}
        Err(CopyError::Read(e)) => return Err(DownloadError::Read(e)),
        Err(CopyError::Write(e)) => {
            let _ = fs::remove_file(&partial);
            return Err(DownloadError::Write(e));
        }
    }
    drop(out);
    finish_download(&partial, local)
}

/// Renames a finished download into place and makes the rename durable.
pub(crate) fn finish_download(partial: &Path, local: &Path) -> Result<(), DownloadError> {
    rename_noreplace(partial, local).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            DownloadError::Exists
        } else {
            DownloadError::Write(e)
        }
    })?;
    let parent = local
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    sync_dir(parent).map_err(DownloadError::Write)
}

/// `local` with `.partial` appended to its file name.
pub(crate) fn partial_path(local: &Path) -> PathBuf {
    let mut name = local.as_os_str().to_owned();
    name.push(PARTIAL_SUFFIX);
    PathBuf::from(name)
}

/// Renames without ever replacing `to`: `renameat2(RENAME_NOREPLACE)`, or a hard link
/// and unlink on filesystems without it. Either way an existing `to` is `AlreadyExists`.
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL | Errno::ENOSYS) => {
            fs::hard_link(from, to)?;
            fs::remove_file(from)
        }
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn is_full(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::ENOSPC | Errno::EDQUOT)
    )
}
