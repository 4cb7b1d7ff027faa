//! Acting as root on paths under directories someone else owns, without ever following
//! a symlink that someone put there.
//!
//! berth runs as root, but a service user owns its data directories and can replace
//! anything in them (with a symlink to `/etc/shadow`, say) between the moment root
//! looks at a path and the moment it acts on it. So root never acts on such a path by
//! name: it opens a [`SafeDir`] from a directory it trusts (the instance's prefix,
//! which only root can change), resolves every path beneath it with `openat2(2)` and
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS` (or, on kernels
//! without `openat2`, one component at a time with `O_NOFOLLOW`), and then changes
//! modes, owners and content through the descriptor it opened (`fchmod`, `fchown`),
//! or through `*at` calls relative to the descriptor of the parent directory.
//!
//! A symlink where a directory or file is expected is an error naming the path
//! ([`HostError::SymlinkRefused`]), never something to follow; a `..` or an absolute
//! path is refused before anything is opened ([`HostError::NotBeneath`]).
//!
//! ```no_run
//! # fn demo() -> berth_host::Result<()> {
//! use berth_host::beneath::SafeDir;
//!
//! let prefix = SafeDir::open_trusted("/var/opt/berth/app".as_ref())?;
//! // Give the restored media to the app's user; a symlink anywhere below is refused.
//! prefix.chown_tree("data/app/media".as_ref(), (998, 998))?;
//! # Ok(())
//! # }
//! ```

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, RenameFlags, ResolveFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::unistd::{Gid, Uid, UnlinkatFlags};

use crate::{HostError, Result};

/// The bits a tree handed to a service user never keeps.
const SETID: u32 = 0o6000;

/// What `stat` says about a file, directory or symlink (never following it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// The device it is on.
    pub dev: u64,
    /// Its inode number: with `dev`, what tells "the same directory" from "another one
    /// put in its place".
    pub ino: u64,
    /// The whole `st_mode`: type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Number of hard links.
    pub nlink: u64,
    /// Size in bytes.
    pub size: u64,
}

impl Stat {
    fn from_raw(st: &FileStat) -> Self {
        Self {
            dev: st.st_dev,
            ino: st.st_ino,
            mode: st.st_mode,
            uid: st.st_uid,
            gid: st.st_gid,
            nlink: st.st_nlink,
            size: u64::try_from(st.st_size).unwrap_or(0),
        }
    }

    fn kind(&self) -> u32 {
        self.mode & SFlag::S_IFMT.bits()
    }

    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind() == SFlag::S_IFDIR.bits()
    }

    /// Whether it is a regular file.
    pub fn is_file(&self) -> bool {
        self.kind() == SFlag::S_IFREG.bits()
    }

    /// Whether it is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.kind() == SFlag::S_IFLNK.bits()
    }

    /// Whether it is a Unix socket.
    pub fn is_socket(&self) -> bool {
        self.kind() == SFlag::S_IFSOCK.bits()
    }

    /// Whether it is a character or block device.
    pub fn is_device(&self) -> bool {
        self.kind() == SFlag::S_IFCHR.bits() || self.kind() == SFlag::S_IFBLK.bits()
    }

    /// The permission bits (with setuid, setgid and sticky).
    pub fn perm(&self) -> u32 {
        self.mode & 0o7777
    }

    /// Device and inode: the identity of what was opened.
    pub fn id(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }
}

/// An open directory that paths are resolved beneath, never following a symlink.
#[derive(Debug)]
pub struct SafeDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// An open directory or regular file (never a symlink), whose mode and owner are
/// changed through its descriptor: whatever happens to its name afterwards, the
/// change lands on what was opened.
#[derive(Debug)]
pub struct Node {
    fd: OwnedFd,
    path: PathBuf,
    stat: Stat,
}

impl Node {
    /// The path it was opened as (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What it was when it was opened.
    pub fn stat(&self) -> &Stat {
        &self.stat
    }

    /// Sets its permission bits.
    pub fn set_mode(&self, mode: u32) -> Result<()> {
        fchmod(self.fd.as_fd(), &self.path, mode)
    }

    /// Sets its owner and group.
    pub fn set_owner(&self, owner: (u32, u32)) -> Result<()> {
        fchown(self.fd.as_fd(), &self.path, owner)
    }
}

/// Open flags every open here gets: never a controlling terminal, never inherited by
/// children, never following a final symlink.
fn base_flags() -> OFlag {
    OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NOCTTY
}

#[cfg(test)]
thread_local! {
    /// Makes this thread resolve paths one component at a time, as on kernels without
    /// `openat2`, so the tests cover both ways.
    static FORCE_WALK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn force_walk() -> bool {
    #[cfg(test)]
    {
        FORCE_WALK.with(std::cell::Cell::get)
    }
    #[cfg(not(test))]
    {
        false
    }
}

/// Opens `rel` (already checked to be plain components) beneath `dir`, never
/// following a symlink at any component.
fn open_beneath(dir: BorrowedFd<'_>, rel: &Path, flags: OFlag, mode: Mode) -> nix::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    if !force_walk() {
        let how = OpenHow::new()
            .flags(flags | base_flags())
            .mode(mode)
            .resolve(
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            );
        match nix::fcntl::openat2(dir, rel, how) {
            Err(Errno::ENOSYS) => {}
            other => return other,
        }
    }
    // Older kernels: one component at a time, each opened with O_NOFOLLOW.
    let parts: Vec<&OsStr> = rel.iter().filter(|p| *p != OsStr::new(".")).collect();
    let Some((last, middle)) = parts.split_last() else {
        return nix::fcntl::openat(dir, ".", flags | base_flags(), mode);
    };
    let mut held: Option<OwnedFd> = None;
    for part in middle {
        let at = held.as_ref().map_or(dir, AsFd::as_fd);
        let next = nix::fcntl::openat(
            at,
            *part,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | base_flags(),
            Mode::empty(),
        )?;
        held = Some(next);
    }
    let at = held.as_ref().map_or(dir, AsFd::as_fd);
    nix::fcntl::openat(at, *last, flags | base_flags(), mode)
}

/// `rel` as plain components: no root, no `..`; `.` components dropped.
fn plain(base: &Path, rel: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(HostError::NotBeneath {
                    base: base.to_path_buf(),
                    path: rel.to_path_buf(),
                });
            }
        }
    }
    Ok(out)
}

/// The error for a failed open of `path`: a symlink found on the way is named as such.
fn open_error(path: &Path, errno: Errno) -> HostError {
    match errno {
        Errno::ELOOP => HostError::SymlinkRefused {
            path: path.to_path_buf(),
        },
        e => HostError::Read {
            path: path.to_path_buf(),
            source: e.into(),
        },
    }
}

fn fchmod(fd: BorrowedFd<'_>, path: &Path, mode: u32) -> Result<()> {
    nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(mode & 0o7777)).map_err(|e| {
        HostError::SetMode {
            path: path.to_path_buf(),
            mode,
            source: e.into(),
        }
    })
}

fn fchown(fd: BorrowedFd<'_>, path: &Path, (uid, gid): (u32, u32)) -> Result<()> {
    nix::unistd::fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).map_err(|e| {
        HostError::SetOwner {
            path: path.to_path_buf(),
            uid,
            gid,
            source: e.into(),
        }
    })
}

fn fstat(fd: BorrowedFd<'_>, path: &Path) -> Result<Stat> {
    nix::sys::stat::fstat(fd)
        .map(|st| Stat::from_raw(&st))
        .map_err(|e| HostError::Read {
            path: path.to_path_buf(),
            source: e.into(),
        })
}

/// The names in the directory `fd` (without `.` and `..`).
fn names(fd: BorrowedFd<'_>, path: &Path) -> Result<Vec<Vec<u8>>> {
    let read_err = |e: Errno| HostError::Read {
        path: path.to_path_buf(),
        source: e.into(),
    };
    let dup = fd.try_clone_to_owned().map_err(|source| HostError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut dir = nix::dir::Dir::from_fd(dup).map_err(read_err)?;
    let mut out = Vec::new();
    for entry in dir.iter() {
        let name = entry.map_err(read_err)?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            out.push(name);
        }
    }
    Ok(out)
}

/// A temporary name no one else uses, for atomic writes.
fn temp_name(name: &OsStr) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    PathBuf::from(format!(
        ".{}.{}-{n}-{nanos}.berth-tmp",
        name.to_string_lossy(),
        std::process::id()
    ))
}

impl SafeDir {
    /// Opens a directory root trusts: one only root can change (the instance's prefix,
    /// `/etc`), so the path to it may be followed as it is. Everything beneath it is
    /// then resolved without following symlinks.
    pub fn open_trusted(path: &Path) -> Result<Self> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::ENOTDIR => HostError::NotADirectory {
                path: path.to_path_buf(),
            },
            e => HostError::Read {
                path: path.to_path_buf(),
                source: e.into(),
            },
        })?;
        Ok(Self {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The path this directory was opened as (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path through which path-based readers reach exactly this directory, whatever
    /// happens to its name: `/proc/self/fd/N` (valid while `self` lives).
    pub fn fd_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    /// The names in this directory (without `.` and `..`), in no particular order.
    pub fn names(&self) -> Result<Vec<std::ffi::OsString>> {
        Ok(names(self.fd.as_fd(), &self.path)?
            .into_iter()
            .map(std::ffi::OsString::from_vec)
            .collect())
    }

    /// What this directory is.
    pub fn stat_self(&self) -> Result<Stat> {
        fstat(self.fd.as_fd(), &self.path)
    }

    fn shown(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.path.clone()
        } else {
            self.path.join(rel)
        }
    }

    /// The directory holding `rel` (opened beneath this one) and `rel`'s last name.
    fn parent_of(&self, rel: &Path) -> Result<(Self, PathBuf)> {
        let rel = plain(&self.path, rel)?;
        let Some(name) = rel.file_name().map(PathBuf::from) else {
            return Err(HostError::NotBeneath {
                base: self.path.clone(),
                path: rel,
            });
        };
        let parent = rel.parent().unwrap_or(Path::new(""));
        Ok((self.open_dir(parent)?, name))
    }

    /// Opens the directory `rel` beneath this one (`""` opens this one again).
    pub fn open_dir(&self, rel: &Path) -> Result<Self> {
        let rel = plain(&self.path, rel)?;
        let path = self.shown(&rel);
        let fd = open_beneath(
            self.fd.as_fd(),
            &rel,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .map_err(|e| match e {
            // O_DIRECTORY meeting a symlink at the end says ENOTDIR: name it for what it is.
            Errno::ENOTDIR
                if self
                    .stat(&rel)
                    .ok()
                    .flatten()
                    .is_some_and(|s| s.is_symlink()) =>
            {
                HostError::SymlinkRefused { path: path.clone() }
            }
            Errno::ENOTDIR => HostError::NotADirectory { path: path.clone() },
            e => open_error(&path, e),
        })?;
        Ok(Self { fd, path })
    }

    /// Opens the directory or regular file `rel` beneath this one, to change its mode
    /// or owner through the descriptor. Anything else (a FIFO, a device) is refused
    /// without being opened for reading.
    pub fn open_node(&self, rel: &Path) -> Result<Node> {
        let rel = plain(&self.path, rel)?;
        let path = self.shown(&rel);
        if !rel.as_os_str().is_empty() {
            // Checked first: opening a FIFO or a device has effects of its own.
            match self.stat(&rel)? {
                Some(st) if st.is_dir() || st.is_file() || st.is_symlink() => {}
                Some(_) => return Err(HostError::NotAFile { path }),
                None => {
                    return Err(HostError::Read {
                        path,
                        source: std::io::ErrorKind::NotFound.into(),
                    });
                }
            }
        }
        let fd = open_beneath(
            self.fd.as_fd(),
            &rel,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK,
            Mode::empty(),
        )
        .map_err(|e| open_error(&path, e))?;
        let stat = fstat(fd.as_fd(), &path)?;
        if !stat.is_dir() && !stat.is_file() {
            return Err(HostError::NotAFile { path });
        }
        Ok(Node { fd, path, stat })
    }

    /// Opens the regular file `rel` beneath this one for reading.
    pub fn open_file(&self, rel: &Path) -> Result<File> {
        let node = self.open_node(rel)?;
        if !node.stat.is_file() {
            return Err(HostError::NotAFile { path: node.path });
        }
        // Back to blocking reads: it is a regular file, so O_NONBLOCK did nothing.
        Ok(File::from(node.fd))
    }

    /// The whole content of the regular file `rel`.
    pub fn read(&self, rel: &Path) -> Result<Vec<u8>> {
        let mut file = self.open_file(rel)?;
        let mut out = Vec::new();
        file.read_to_end(&mut out)
            .map_err(|source| HostError::Read {
                path: self.shown(rel),
                source,
            })?;
        Ok(out)
    }

    /// The end of the regular file `rel`: at most its last `max` bytes, cut to its last
    /// `lines` lines when given (for logs others write: opened by descriptor, never
    /// through a symlink, and never read whole however large it grew).
    pub fn tail(&self, rel: &Path, lines: Option<usize>, max: u64) -> Result<Vec<u8>> {
        use std::io::{Seek, SeekFrom};
        let mut file = self.open_file(rel)?;
        let io = |source| HostError::Read {
            path: self.shown(rel),
            source,
        };
        let len = file.metadata().map_err(io)?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(max)))
            .map_err(io)?;
        let mut buf = Vec::new();
        file.take(max).read_to_end(&mut buf).map_err(io)?;
        let Some(n) = lines else {
            return Ok(buf);
        };
        let text = String::from_utf8_lossy(&buf);
        let all: Vec<&str> = text.lines().collect();
        let kept = all[all.len().saturating_sub(n)..].join("\n");
        Ok(format!("{kept}\n").into_bytes())
    }

    /// What `rel` is, not following it if it is a symlink; `None` when it does not exist.
    pub fn stat(&self, rel: &Path) -> Result<Option<Stat>> {
        let rel = plain(&self.path, rel)?;
        if rel.as_os_str().is_empty() {
            return self.stat_self().map(Some);
        }
        let (parent, name) = match self.parent_of(&rel) {
            Ok(p) => p,
            Err(HostError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        match nix::sys::stat::fstatat(parent.fd.as_fd(), &name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(Stat::from_raw(&st))),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(HostError::Read {
                path: self.shown(&rel),
                source: e.into(),
            }),
        }
    }

    /// Sets the permission bits of the directory or file `rel`, through its descriptor.
    pub fn set_mode(&self, rel: &Path, mode: u32) -> Result<()> {
        self.open_node(rel)?.set_mode(mode)
    }

    /// Sets the owner and group of the directory or file `rel`, through its descriptor.
    pub fn set_owner(&self, rel: &Path, owner: (u32, u32)) -> Result<()> {
        self.open_node(rel)?.set_owner(owner)
    }

    /// Creates the directory `rel` (its parent must exist) with `mode` and, when given,
    /// `owner`, and opens it. An existing one is an error.
    pub fn create_dir(&self, rel: &Path, mode: u32, owner: Option<(u32, u32)>) -> Result<Self> {
        let (parent, name) = self.parent_of(rel)?;
        let path = parent.shown(&name);
        // Private until it has its owner and mode.
        nix::sys::stat::mkdirat(parent.fd.as_fd(), &name, Mode::from_bits_truncate(0o700))
            .map_err(|e| HostError::CreateDir {
                path: path.clone(),
                source: e.into(),
            })?;
        let dir = parent.open_dir(&name)?;
        if let Some(owner) = owner {
            fchown(dir.fd.as_fd(), &path, owner)?;
        }
        fchmod(dir.fd.as_fd(), &path, mode)?;
        Ok(dir)
    }

    /// Opens the directory `rel`, creating it and any missing parent beneath this one
    /// first; what is created gets `mode` and `owner`, what exists is left as it is.
    pub fn create_dir_all(&self, rel: &Path, mode: u32, owner: Option<(u32, u32)>) -> Result<Self> {
        let rel = plain(&self.path, rel)?;
        let mut dir = self.open_dir(Path::new(""))?;
        for part in &rel {
            dir = match dir.create_dir(Path::new(part), mode, owner) {
                Ok(d) => d,
                Err(HostError::CreateDir { source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists =>
                {
                    dir.open_dir(Path::new(part))?
                }
                Err(e) => return Err(e),
            };
        }
        Ok(dir)
    }

    /// Writes `bytes` to the file `rel` so that readers see the old content or the new,
    /// never a part: a new temporary file (`O_EXCL`, so never an existing file or a
    /// symlink) in the same directory gets the content, `mode` and `owner`, is flushed,
    /// then renamed over `rel`, and the directory is flushed.
    pub fn write_atomic(
        &self,
        rel: &Path,
        bytes: &[u8],
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<()> {
        self.write_new_or_replace(rel, &mut |f| f.write_all(bytes), mode, owner, false)
    }

    /// Like [`SafeDir::write_atomic`], with the content written by `fill` into the new
    /// file (a copy streamed from another file, say).
    pub fn write_atomic_with(
        &self,
        rel: &Path,
        fill: &mut dyn FnMut(&mut File) -> std::io::Result<()>,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<()> {
        self.write_new_or_replace(rel, fill, mode, owner, false)
    }

    /// Like [`SafeDir::write_atomic`], but refuses to replace anything already at `rel`
    /// (checked by the rename itself, so nothing can slip in between).
    pub fn write_new(
        &self,
        rel: &Path,
        bytes: &[u8],
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<()> {
        self.write_new_or_replace(rel, &mut |f| f.write_all(bytes), mode, owner, true)
    }

    /// Like [`SafeDir::write_new`], with the content written by `fill` (a file too large
    /// to hold in memory).
    pub fn write_new_with(
        &self,
        rel: &Path,
        fill: &mut dyn FnMut(&mut File) -> std::io::Result<()>,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<()> {
        self.write_new_or_replace(rel, fill, mode, owner, true)
    }

    fn write_new_or_replace(
        &self,
        rel: &Path,
        content: &mut dyn FnMut(&mut File) -> std::io::Result<()>,
        mode: u32,
        owner: Option<(u32, u32)>,
        no_replace: bool,
    ) -> Result<()> {
        let (parent, name) = self.parent_of(rel)?;
        let path = parent.shown(&name);
        let write_err = |source: std::io::Error| HostError::Write {
            path: path.clone(),
            source,
        };
        let (tmp, fd) = loop {
            let tmp = temp_name(name.as_os_str());
            match nix::fcntl::openat(
                parent.fd.as_fd(),
                &tmp,
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | base_flags(),
                Mode::from_bits_truncate(0o600),
            ) {
                Ok(fd) => break (tmp, fd),
                Err(Errno::EEXIST) => {}
                Err(e) => return Err(write_err(e.into())),
            }
        };
        let unlink_tmp = || {
            let _ = nix::unistd::unlinkat(parent.fd.as_fd(), &tmp, UnlinkatFlags::NoRemoveDir);
        };
        let mut file = File::from(fd);
        let written = (|| {
            content(&mut file).map_err(write_err)?;
            if let Some(owner) = owner {
                fchown(file.as_fd(), &path, owner)?;
            }
            fchmod(file.as_fd(), &path, mode)?;
            file.sync_all().map_err(write_err)?;
            let flags = if no_replace {
                RenameFlags::RENAME_NOREPLACE
            } else {
                RenameFlags::empty()
            };
            nix::fcntl::renameat2(parent.fd.as_fd(), &tmp, parent.fd.as_fd(), &name, flags).map_err(
                |e| match e {
                    Errno::EEXIST => HostError::AlreadyExists { path: path.clone() },
                    e => write_err(e.into()),
                },
            )
        })();
        if let Err(e) = written {
            unlink_tmp();
            return Err(e);
        }
        parent.sync()
    }

    /// Flushes this directory's entries (new names, renames) to disk.
    pub fn sync(&self) -> Result<()> {
        nix::unistd::fsync(self.fd.as_fd()).map_err(|e| HostError::Write {
            path: self.path.clone(),
            source: e.into(),
        })
    }

    /// Moves `from` (beneath this directory) to `to` beneath `dest`, refusing to
    /// replace anything there. Symlinks are moved as they are, never followed.
    pub fn rename(&self, from: &Path, dest: &Self, to: &Path) -> Result<()> {
        let (from_dir, from_name) = self.parent_of(from)?;
        let (to_dir, to_name) = dest.parent_of(to)?;
        nix::fcntl::renameat2(
            from_dir.fd.as_fd(),
            &from_name,
            to_dir.fd.as_fd(),
            &to_name,
            RenameFlags::RENAME_NOREPLACE,
        )
        .map_err(|e| HostError::Rename {
            from: from_dir.shown(&from_name),
            to: to_dir.shown(&to_name),
            source: e.into(),
        })?;
        from_dir.sync()?;
        to_dir.sync()
    }

    /// Swaps `a` and `b` (both beneath this directory, both existing) in one step
    /// (`RENAME_EXCHANGE`): a reader sees one or the other, never neither.
    pub fn exchange(&self, a: &Path, b: &Path) -> Result<()> {
        let (a_dir, a_name) = self.parent_of(a)?;
        let (b_dir, b_name) = self.parent_of(b)?;
        nix::fcntl::renameat2(
            a_dir.fd.as_fd(),
            &a_name,
            b_dir.fd.as_fd(),
            &b_name,
            RenameFlags::RENAME_EXCHANGE,
        )
        .map_err(|e| HostError::Rename {
            from: a_dir.shown(&a_name),
            to: b_dir.shown(&b_name),
            source: e.into(),
        })?;
        a_dir.sync()?;
        b_dir.sync()
    }

    /// Makes `rel` a symlink to `target`. With `replace`, what is at `rel` (a file or
    /// symlink) is swapped for it in one rename; without, anything there is refused.
    pub fn symlink(&self, rel: &Path, target: &Path, replace: bool) -> Result<()> {
        let (parent, name) = self.parent_of(rel)?;
        let path = parent.shown(&name);
        let write_err = |e: Errno| HostError::Write {
            path: path.clone(),
            source: e.into(),
        };
        let tmp = loop {
            let tmp = temp_name(name.as_os_str());
            match nix::unistd::symlinkat(target, parent.fd.as_fd(), &tmp) {
                Ok(()) => break tmp,
                Err(Errno::EEXIST) => {}
                Err(e) => return Err(write_err(e)),
            }
        };
        let flags = if replace {
            RenameFlags::empty()
        } else {
            RenameFlags::RENAME_NOREPLACE
        };
        if let Err(e) =
            nix::fcntl::renameat2(parent.fd.as_fd(), &tmp, parent.fd.as_fd(), &name, flags)
        {
            let _ = nix::unistd::unlinkat(parent.fd.as_fd(), &tmp, UnlinkatFlags::NoRemoveDir);
            return Err(match e {
                Errno::EEXIST => HostError::AlreadyExists { path },
                e => write_err(e),
            });
        }
        parent.sync()
    }

    /// Where the symlink `rel` points (`None`: `rel` is not a symlink).
    pub fn read_link(&self, rel: &Path) -> Result<Option<PathBuf>> {
        let (parent, name) = self.parent_of(rel)?;
        match nix::fcntl::readlinkat(parent.fd.as_fd(), &name) {
            Ok(target) => Ok(Some(PathBuf::from(target))),
            Err(Errno::EINVAL | Errno::ENOENT) => Ok(None),
            Err(e) => Err(HostError::Read {
                path: parent.shown(&name),
                source: e.into(),
            }),
        }
    }

    /// Removes the file or symlink `rel` (never what a symlink points to).
    pub fn remove_file(&self, rel: &Path) -> Result<()> {
        let (parent, name) = self.parent_of(rel)?;
        nix::unistd::unlinkat(parent.fd.as_fd(), &name, UnlinkatFlags::NoRemoveDir).map_err(|e| {
            HostError::Remove {
                path: parent.shown(&name),
                source: e.into(),
            }
        })
    }

    /// Removes the directory `rel` if it is empty; whether it was removed (a directory
    /// something was written to since is kept).
    pub fn remove_empty_dir(&self, rel: &Path) -> Result<bool> {
        let (parent, name) = self.parent_of(rel)?;
        match nix::unistd::unlinkat(parent.fd.as_fd(), &name, UnlinkatFlags::RemoveDir) {
            Ok(()) => Ok(true),
            Err(Errno::ENOTEMPTY | Errno::EEXIST) => Ok(false),
            Err(e) => Err(HostError::Remove {
                path: parent.shown(&name),
                source: e.into(),
            }),
        }
    }

    /// Removes `rel` and everything under it, walking by descriptors: symlinks are
    /// removed, never followed, and a mount point below is refused
    /// ([`HostError::MountPoint`]) rather than emptied. Whether there was anything.
    pub fn remove_tree(&self, rel: &Path) -> Result<bool> {
        let Some(st) = self.stat(rel)? else {
            return Ok(false);
        };
        let (parent, name) = self.parent_of(rel)?;
        if st.is_dir() {
            let dir = parent.open_dir(&name)?;
            if dir.stat_self()?.id() != st.id() {
                return Err(HostError::Replaced { path: dir.path });
            }
            if st.dev != parent.stat_self()?.dev {
                return Err(HostError::MountPoint { path: dir.path });
            }
            empty_dir(&dir, st.dev)?;
            nix::unistd::unlinkat(parent.fd.as_fd(), &name, UnlinkatFlags::RemoveDir)
        } else {
            nix::unistd::unlinkat(parent.fd.as_fd(), &name, UnlinkatFlags::NoRemoveDir)
        }
        .map_err(|e| HostError::Remove {
            path: parent.shown(&name),
            source: e.into(),
        })?;
        Ok(true)
    }

    /// Gives `rel` and everything under it to `owner`, walking by descriptors: a
    /// symlink gets the owner itself (`AT_SYMLINK_NOFOLLOW`), never its target; setuid
    /// and setgid bits are cleared everywhere (a tree handed to a service user never
    /// carries root's privileges); nothing on another file system is touched. Refused:
    /// a symlink at `rel` or on the way to it, a device node, and a file with more
    /// than one hard link not already the owner's (the other link could be anywhere).
    pub fn chown_tree(&self, rel: &Path, owner: (u32, u32)) -> Result<()> {
        let root = self.open_node(rel)?;
        fix_node(&root, Some(owner))?;
        if root.stat.is_dir() {
            let dir = Self {
                fd: root.fd,
                path: root.path,
            };
            fix_tree(&dir, root.stat.dev, Some(owner))?;
        }
        Ok(())
    }

    /// Clears the setuid and setgid bits of `rel` and everything under it, walking by
    /// descriptors (the same walk as [`SafeDir::chown_tree`], without changing owners).
    pub fn clear_setid_tree(&self, rel: &Path) -> Result<()> {
        let root = self.open_node(rel)?;
        fix_node(&root, None)?;
        if root.stat.is_dir() {
            let dir = Self {
                fd: root.fd,
                path: root.path,
            };
            fix_tree(&dir, root.stat.dev, None)?;
        }
        Ok(())
    }

    /// Hands the directory `rel`, made by the unprivileged user `maker` (a build, say),
    /// to root, walking by descriptors and following nothing. Every entry must belong to
    /// `maker` ([`HostError::ForeignOwner`] otherwise: a hard link to someone else's
    /// file is never taken over); each becomes root's: directories mode 0755, files
    /// 0755 when any execute bit was set and 0644 otherwise (so no setuid, setgid or
    /// write bit for others survives), symlinks as they are (`AT_SYMLINK_NOFOLLOW`).
    /// Refused: a FIFO, socket or device node, a mount point, an entry replaced while
    /// it is walked. `rel` itself becomes root's with mode 0700 first, so no one else
    /// can enter while the rest is walked, and keeps it: the caller opens it up when
    /// it is done with the tree.
    pub fn take_over_tree(&self, rel: &Path, maker: u32) -> Result<()> {
        let top = self.open_node(rel)?;
        if !top.stat.is_dir() {
            return Err(HostError::NotADirectory { path: top.path });
        }
        owned_by(&top.path, &top.stat, maker)?;
        to_root(&top, 0o700)?;
        let dev = top.stat.dev;
        let dir = Self {
            fd: top.fd,
            path: top.path,
        };
        take_over_entries(&dir, dev, maker)
    }
}

impl AsFd for SafeDir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Gives one opened directory or file its owner (if any) and drops setuid/setgid.
fn fix_node(node: &Node, owner: Option<(u32, u32)>) -> Result<()> {
    if let Some(owner) = owner
        && (node.stat.uid, node.stat.gid) != owner
    {
        if node.stat.is_file() && node.stat.nlink > 1 {
            return Err(HostError::HardLinked {
                path: node.path.clone(),
            });
        }
        node.set_owner(owner)?;
    }
    // Read again: chown may already have dropped the bits.
    let now = fstat(node.fd.as_fd(), &node.path)?;
    if now.perm() & SETID != 0 {
        node.set_mode(now.perm() & !SETID)?;
    }
    Ok(())
}

/// [`fix_node`] for everything under `dir`.
fn fix_tree(dir: &SafeDir, dev: u64, owner: Option<(u32, u32)>) -> Result<()> {
    for name in names(dir.fd.as_fd(), &dir.path)? {
        let name = PathBuf::from(OsStr::from_bytes(&name));
        let path = dir.path.join(&name);
        let st = match nix::sys::stat::fstatat(dir.fd.as_fd(), &name, AtFlags::AT_SYMLINK_NOFOLLOW)
        {
            Ok(st) => Stat::from_raw(&st),
            // Gone while walking: nothing to give away.
            Err(Errno::ENOENT) => continue,
            Err(e) => {
                return Err(HostError::Read {
                    path,
                    source: e.into(),
                });
            }
        };
        if st.dev != dev {
            // Another file system mounted here: not part of the tree.
            continue;
        }
        if st.is_device() {
            return Err(HostError::DeviceRefused { path });
        }
        if st.is_dir() || st.is_file() {
            let node = dir.open_node(&name)?;
            if node.stat.id() != st.id() {
                return Err(HostError::Replaced { path });
            }
            fix_node(&node, owner)?;
            if node.stat.is_dir() {
                let child = SafeDir {
                    fd: node.fd,
                    path: node.path,
                };
                fix_tree(&child, dev, owner)?;
            }
        } else if let Some((uid, gid)) = owner {
            // Symlinks, sockets, FIFOs: the entry itself, never what it points to.
            nix::unistd::fchownat(
                dir.fd.as_fd(),
                &name,
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| HostError::SetOwner {
                path,
                uid,
                gid,
                source: e.into(),
            })?;
        }
    }
    Ok(())
}

/// Refuses `st` (of `path`) unless it belongs to `maker`.
fn owned_by(path: &Path, st: &Stat, maker: u32) -> Result<()> {
    if st.uid == maker {
        Ok(())
    } else {
        Err(HostError::ForeignOwner {
            path: path.to_path_buf(),
            uid: st.uid,
            maker,
        })
    }
}

/// Gives an opened node to root with `mode` (chown first: it clears setuid/setgid).
fn to_root(node: &Node, mode: u32) -> Result<()> {
    node.set_owner((0, 0))?;
    node.set_mode(mode)
}

/// [`SafeDir::take_over_tree`] for everything in `dir`.
fn take_over_entries(dir: &SafeDir, dev: u64, maker: u32) -> Result<()> {
    for name in names(dir.fd.as_fd(), &dir.path)? {
        let name = PathBuf::from(OsStr::from_bytes(&name));
        let path = dir.path.join(&name);
        let st = nix::sys::stat::fstatat(dir.fd.as_fd(), &name, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map(|st| Stat::from_raw(&st))
            .map_err(|e| HostError::Read {
                path: path.clone(),
                source: e.into(),
            })?;
        owned_by(&path, &st, maker)?;
        if st.dev != dev {
            return Err(HostError::MountPoint { path });
        }
        if st.is_symlink() {
            nix::unistd::fchownat(
                dir.fd.as_fd(),
                &name,
                Some(Uid::from_raw(0)),
                Some(Gid::from_raw(0)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| HostError::SetOwner {
                path,
                uid: 0,
                gid: 0,
                source: e.into(),
            })?;
            continue;
        }
        if st.is_device() {
            return Err(HostError::DeviceRefused { path });
        }
        if !st.is_dir() && !st.is_file() {
            return Err(HostError::NotAFile { path });
        }
        let node = dir.open_node(&name)?;
        // The very entry checked above, still the maker's.
        if node.stat.id() != st.id() || node.stat.uid != maker {
            return Err(HostError::Replaced { path });
        }
        if node.stat.is_dir() {
            to_root(&node, 0o700)?;
            let child = SafeDir {
                fd: node.fd,
                path: node.path,
            };
            take_over_entries(&child, dev, maker)?;
            fchmod(child.fd.as_fd(), &child.path, 0o755)?;
        } else {
            let mode = if node.stat.perm() & 0o111 == 0 {
                0o644
            } else {
                0o755
            };
            to_root(&node, mode)?;
        }
    }
    Ok(())
}

/// Removes everything in `dir`, refusing to descend into another file system.
fn empty_dir(dir: &SafeDir, dev: u64) -> Result<()> {
    for name in names(dir.fd.as_fd(), &dir.path)? {
        let name = PathBuf::from(OsStr::from_bytes(&name));
        let path = dir.path.join(&name);
        let st = match nix::sys::stat::fstatat(dir.fd.as_fd(), &name, AtFlags::AT_SYMLINK_NOFOLLOW)
        {
            Ok(st) => Stat::from_raw(&st),
            Err(Errno::ENOENT) => continue,
            Err(e) => {
                return Err(HostError::Read {
                    path,
                    source: e.into(),
                });
            }
        };
        let removed = if st.is_dir() {
            if st.dev != dev {
                return Err(HostError::MountPoint { path });
            }
            // RESOLVE_NO_XDEV also catches bind mounts of the same file system.
            let how = OpenHow::new()
                .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | base_flags())
                .resolve(
                    ResolveFlag::RESOLVE_BENEATH
                        | ResolveFlag::RESOLVE_NO_SYMLINKS
                        | ResolveFlag::RESOLVE_NO_XDEV,
                );
            let fd = match nix::fcntl::openat2(dir.fd.as_fd(), &name, how) {
                Err(Errno::ENOSYS) => open_beneath(
                    dir.fd.as_fd(),
                    &name,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                    Mode::empty(),
                ),
                other => other,
            }
            .map_err(|e| match e {
                Errno::EXDEV => HostError::MountPoint { path: path.clone() },
                e => open_error(&path, e),
            })?;
            let child = SafeDir {
                fd,
                path: path.clone(),
            };
            if child.stat_self()?.id() != st.id() {
                return Err(HostError::Replaced { path });
            }
            empty_dir(&child, dev)?;
            nix::unistd::unlinkat(dir.fd.as_fd(), &name, UnlinkatFlags::RemoveDir)
        } else {
            nix::unistd::unlinkat(dir.fd.as_fd(), &name, UnlinkatFlags::NoRemoveDir)
        };
        match removed {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => {
                return Err(HostError::Remove {
                    path,
                    source: e.into(),
                });
            }
        }
    }
    Ok(())
}

/// Opens what holds `path` for acting on it safely: when `path` is strictly beneath
/// `base` (a directory root trusts, e.g. the instance's prefix), `base` and the rest
/// of the path, so every component below `base` is resolved without following
/// symlinks; otherwise (a path the administrator chose elsewhere) its parent, trusted
/// as it is, and its file name.
pub fn locate(base: &Path, path: &Path) -> Result<(SafeDir, PathBuf)> {
    if let Ok(rel) = path.strip_prefix(base)
        && !rel.as_os_str().is_empty()
    {
        return Ok((SafeDir::open_trusted(base)?, rel.to_path_buf()));
    }
    in_parent(path)
}

/// The directory holding `path`, trusted as it is (root's own), and `path`'s name:
/// for acting on a file root trusts the directory of, never following the file itself.
pub fn in_parent(path: &Path) -> Result<(SafeDir, PathBuf)> {
    let parent = crate::fsutil::parent_dir(path);
    let name = path.file_name().ok_or_else(|| HostError::NotBeneath {
        base: parent.to_path_buf(),
        path: path.to_path_buf(),
    })?;
    Ok((SafeDir::open_trusted(parent)?, PathBuf::from(name)))
}

/// Removes `path` and everything under it by descriptors ([`SafeDir::remove_tree`]),
/// trusting only its parent directory; whether there was anything.
pub fn remove_tree_at(path: &Path) -> Result<bool> {
    let parent = crate::fsutil::parent_dir(path);
    let Some(name) = path.file_name() else {
        return Err(HostError::NotBeneath {
            base: parent.to_path_buf(),
            path: path.to_path_buf(),
        });
    };
    match SafeDir::open_trusted(parent) {
        Ok(dir) => dir.remove_tree(Path::new(name)),
        Err(HostError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;
