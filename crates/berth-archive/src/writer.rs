//! Writing an archive: [`ArchiveWriter`].

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::ArchiveError;
use crate::index::{FORMAT_3, MAX_INDEX_BYTES, signed_frame};
use crate::manifest::{ArchiveManifest, Entry, EntryKind, FORMAT, MANIFEST_ENTRY, Meta};
use crate::path::{oflag, path_problem, symlink_problem};
use crate::signing::{DataDigest, SigningKey};
use crate::tarfmt::{self, HeaderSpec};

/// The size of the buffers between the files, the compressor and the archive file.
pub(crate) const BUF_SIZE: usize = 1 << 20;

/// How an archive is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// The zstd compression level (1 to 22; 3 by default, as the `zstd` tool).
    pub level: i32,
    /// The number of compression threads; 0 compresses on the calling thread.
    /// By default, the number of CPUs available.
    pub threads: u32,
    /// `SOURCE_DATE_EPOCH`: write what two runs over the same content write alike, on
    /// any machine. Every mtime is this time (a file's own mtime says when it was
    /// copied or built, not what it holds), owners are 0, modes are 0755 for directories and executable files, 0644 for
    /// other files; compression runs on one worker thread, whatever `threads` says.
    pub source_date_epoch: Option<u64>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX));
        Self {
            level: 3,
            threads,
            source_date_epoch: None,
        }
    }
}

/// The mode a reproducible archive gives an entry of `kind` whose mode is `mode`.
fn normalized_mode(kind: EntryKind, mode: u32) -> u32 {
    match kind {
        EntryKind::Dir => 0o755,
        EntryKind::File if mode & 0o111 != 0 => 0o755,
        EntryKind::File => 0o644,
        EntryKind::Symlink => 0o777,
    }
}

/// A progress callback: it receives the cumulative number of bytes of file content
/// consumed so far.
pub type ProgressFn = Box<dyn FnMut(u64) + Send>;

/// A finished archive.
#[derive(Debug, Clone)]
pub struct Written {
    /// Where it is: the final path given to [`ArchiveWriter::create`].
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Its manifest.
    pub manifest: ArchiveManifest,
}

/// Something [`ArchiveWriter::add_tree`] left out of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The source file.
    pub path: PathBuf,
    /// The path it would have had in the archive.
    pub archive_path: String,
    /// Why it was left out.
    pub reason: SkipReason,
}

/// Why [`ArchiveWriter::add_tree`] left something out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// It disappeared between being listed and being read.
    Vanished,
    /// It is a socket, a FIFO or a device, which have no content to back up.
    Special,
    /// It is a symlink that points outside the archive, which could not be restored safely.
    UnsafeSymlink {
        /// Where it points.
        target: String,
    },
    /// It is the archive being written, which lies inside the tree.
    ArchiveItself,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Vanished => f.write_str("it disappeared while the backup was being written"),
            Self::Special => f.write_str("it is a socket, FIFO or device"),
            Self::UnsafeSymlink { target } => write!(
                f,
                "it is a symlink to `{target}`, outside the backup, which berth cannot restore safely"
            ),
            Self::ArchiveItself => f.write_str("it is the backup archive being written"),
        }
    }
}

type Stream = BufWriter<zstd::stream::write::Encoder<'static, BufWriter<Hashing>>>;

/// The archive file, hashing what is written to it: the compressed bytes, whose SHA-256
/// the signed index records.
struct Hashing {
    file: File,
    hasher: Sha256,
    len: u64,
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Writes one archive, entry by entry, then [`finish`](Self::finish)es it.
///
/// The archive is written to `<final path>.partial` and renamed to its final path only
/// once complete and synced, so a failed or interrupted backup never leaves a file that
/// looks complete. Dropping a writer without finishing it removes the partial file.
pub struct ArchiveWriter {
    final_path: PathBuf,
    partial_path: PathBuf,
    /// `None` once finished.
    out: Option<Stream>,
    /// The partial file's device and inode, so a tree containing it leaves it out.
    partial_id: (u64, u64),
    /// The owner (uid) of the root of the tree being added: a hard-linked file of
    /// another owner below it is refused.
    tree_owner: Option<u64>,
    entries: Vec<Entry>,
    paths: HashSet<String>,
    progress: Option<ProgressFn>,
    consumed: u64,
    buf: Vec<u8>,
    /// The mtime of entries that have no source file.
    now: u64,
    /// [`WriteOptions::source_date_epoch`].
    epoch: Option<u64>,
    /// Set when an error may have left the tar stream inconsistent.
    failed: bool,
    /// Set once the archive has its final name.
    published: bool,
}

impl fmt::Debug for ArchiveWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArchiveWriter")
            .field("partial_path", &self.partial_path)
            .field("entries", &self.entries.len())
            .field("consumed", &self.consumed)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl ArchiveWriter {
    /// Starts an archive that will be at `final_path` once finished.
    ///
    /// Creates `<final_path>.partial` exclusively, with mode 0600; the final name appears
    /// only in [`finish`](Self::finish). Fails if the final file already exists (an earlier
    /// archive is never replaced) or if the partial file exists (another backup is being
    /// written to the same name, or an earlier one was interrupted).
    pub fn create(final_path: &Path, opts: WriteOptions) -> Result<Self, ArchiveError> {
        if fs::symlink_metadata(final_path).is_ok() {
            return Err(already_exists(final_path));
        }
        let mut partial = final_path.as_os_str().to_owned();
        partial.push(".partial");
        let partial_path = PathBuf::from(partial);
        // O_EXCL never follows nor replaces; O_NOFOLLOW says so twice.
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(oflag(OFlags::NOFOLLOW))
            .open(&partial_path)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    ArchiveError::AlreadyExists {
                        path: partial_path.clone(),
                        reason: "another backup is being written to the same name, or an \
                                 earlier one was interrupted (remove it if no backup is running)"
                            .to_owned(),
                    }
                } else {
                    ArchiveError::io("create", &partial_path, e)
                }
            })?;
        // From here on, errors must remove the partial file: build `Self` first so that
        // its `Drop` does.
        let meta = file.metadata();
        let mut writer = Self {
            final_path: final_path.to_owned(),
            partial_path,
            out: None,
            partial_id: (0, 0),
            tree_owner: None,
            entries: Vec::new(),
            paths: HashSet::new(),
            progress: None,
            consumed: 0,
            buf: vec![0; BUF_SIZE],
            now: opts
                .source_date_epoch
                .unwrap_or_else(|| u64::try_from(jiff::Timestamp::now().as_second()).unwrap_or(0)),
            epoch: opts.source_date_epoch,
            failed: false,
            published: false,
        };
        let meta = meta.map_err(|e| ArchiveError::io("inspect", &writer.partial_path, e))?;
        writer.partial_id = (meta.dev(), meta.ino());
        let hashing = Hashing {
            file,
            hasher: Sha256::new(),
            len: 0,
        };
        let encoder = zstd::stream::write::Encoder::new(
            BufWriter::with_capacity(BUF_SIZE, hashing),
            opts.level,
        )
        .and_then(|mut enc| {
            enc.include_checksum(true)?;
            // zstd's output depends on whether workers are used, not on how many: one
            // worker thread gives the bytes any machine gives.
            let threads = if opts.source_date_epoch.is_some() {
                1
            } else {
                opts.threads
            };
            if threads > 0 {
                enc.multithread(threads)?;
            }
            Ok(enc)
        })
        .map_err(|e| ArchiveError::io("start compressing", &writer.partial_path, e))?;
        writer.out = Some(BufWriter::with_capacity(BUF_SIZE, encoder));
        Ok(writer)
    }

    /// Calls `f` with the cumulative number of bytes of file content consumed, after each
    /// chunk of at most 1 MiB.
    pub fn on_progress(&mut self, f: impl FnMut(u64) + Send + 'static) {
        self.progress = Some(Box::new(f));
    }

    /// The entries written so far.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Adds the directory `src` as `archive_dir`, with everything under it.
    ///
    /// Entries are added depth first, sorted by name, starting with the directory itself.
    /// No symlink is ever followed: `src` itself must be a real directory (a symlink is
    /// refused), and below it every entry is opened relative to its parent's descriptor
    /// with `O_NOFOLLOW`, its kind, size and mode taken from the open descriptor, so
    /// swapping a file for a symlink while the tree is read cannot make the archive hold
    /// the link's target. Symlinks are stored as symlinks. Sockets, FIFOs and devices,
    /// files that disappear or change kind while the tree is walked, symlinks pointing
    /// outside the archive and the archive itself are left out and returned. A file that
    /// changes size while it is read is an error.
    pub fn add_tree(
        &mut self,
        archive_dir: &str,
        src: &Path,
    ) -> Result<Vec<Skipped>, ArchiveError> {
        self.check_new_path(archive_dir)?;
        let dir = open_dir_nofollow(rustix::fs::CWD, src, src)?;
        self.add_tree_fd(archive_dir, &dir, src)
    }

    /// Adds the directory `rel` under `base` as `archive_dir`, as [`add_tree`](Self::add_tree)
    /// does, refusing a symlink at **every** component of `rel`.
    ///
    /// `base` is trusted (it may itself be reached through a symlink); `rel` is relative,
    /// `/`-separated, without `.` or `..`, and walked one component at a time with
    /// `O_NOFOLLOW`, so whoever owns a directory below `base` cannot redirect the backup
    /// elsewhere by replacing it with a symlink.
    pub fn add_tree_beneath(
        &mut self,
        archive_dir: &str,
        base: &Path,
        rel: &str,
    ) -> Result<Vec<Skipped>, ArchiveError> {
        self.check_new_path(archive_dir)?;
        if let Some(problem) = path_problem(rel) {
            return Err(ArchiveError::InvalidSource {
                path: base.join(rel),
                reason: problem.to_owned(),
            });
        }
        let base_fd = rustix::fs::open(
            base,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ArchiveError::io("open", base, e.into()))?;
        let mut dir = base_fd;
        let mut shown = base.to_path_buf();
        for component in rel.split('/') {
            shown.push(component);
            dir = open_dir_nofollow(dir.as_fd(), Path::new(component), &shown)?;
        }
        self.add_tree_fd(archive_dir, &dir, &shown)
    }

    fn add_tree_fd(
        &mut self,
        archive_dir: &str,
        dir: &OwnedFd,
        shown: &Path,
    ) -> Result<Vec<Skipped>, ArchiveError> {
        let meta = SourceMeta::of_fd(dir).map_err(|e| ArchiveError::io("inspect", shown, e))?;
        let children = list_dir(dir).map_err(|e| ArchiveError::io("list", shown, e))?;
        let mut skipped = Vec::new();
        self.tree_owner = Some(meta.uid);
        let walked = self.guard(|w| w.walk(archive_dir, dir, shown, &meta, children, &mut skipped));
        self.tree_owner = None;
        walked?;
        Ok(skipped)
    }

    /// Adds the regular file `src` as `archive_path`. A symlink is refused, not followed;
    /// the kind, size and mode come from the opened file.
    pub fn add_file(&mut self, archive_path: &str, src: &Path) -> Result<(), ArchiveError> {
        self.check_new_path(archive_path)?;
        let not_a_file = |what: &str| ArchiveError::InvalidSource {
            path: src.to_owned(),
            reason: format!("it is not a regular file ({what})"),
        };
        // O_NONBLOCK: opening a FIFO must not block; it is refused just after.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(oflag(OFlags::NOFOLLOW | OFlags::NONBLOCK))
            .open(src)
            .map_err(|e| {
                if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                    not_a_file("a symlink, which berth does not follow")
                } else if e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error()) {
                    not_a_file("a socket")
                } else {
                    ArchiveError::io("open", src, e)
                }
            })?;
        let meta = SourceMeta::of_fd(&file).map_err(|e| ArchiveError::io("inspect", src, e))?;
        if meta.kind != FileType::RegularFile {
            return Err(not_a_file("a directory, socket, FIFO or device"));
        }
        self.guard(|w| w.write_file(archive_path, src, file, &meta))
    }

    /// Adds `data` as the file `archive_path` with permission bits `mode`.
    pub fn add_bytes(
        &mut self,
        archive_path: &str,
        data: &[u8],
        mode: u32,
    ) -> Result<(), ArchiveError> {
        self.check_new_path(archive_path)?;
        let sha256 = hex::encode(Sha256::digest(data));
        let mut entry = Entry {
            path: archive_path.to_owned(),
            kind: EntryKind::File,
            size: data.len() as u64,
            sha256: Some(sha256),
            mode: mode & 0o777,
            target: None,
        };
        let now = self.now;
        self.guard(|w| {
            w.write_header(&mut entry, now, 0, 0)?;
            let out = w.stream()?;
            out.write_all(data)
                .and_then(|()| tarfmt::padding(out, entry.size))
                .map_err(|e| ArchiveError::io("write", &w.partial_path, e))?;
            w.advance(entry.size);
            w.entries.push(entry);
            Ok(())
        })
    }

    /// Completes the archive, signs it with `key` and gives it its final name.
    ///
    /// Appends the manifest (`meta` and the list of entries) as the last tar entry, ends
    /// the tar and zstd streams, appends the index frame (the manifest, the length and
    /// SHA-256 of the compressed bytes written before it, the signature of all that by
    /// `key` and `key`'s public half), syncs the file, renames it to its final path
    /// (refusing to replace an existing file) and syncs the directory.
    pub fn finish(mut self, meta: Meta, key: &SigningKey) -> Result<Written, ArchiveError> {
        if self.failed {
            return Err(ArchiveError::Abandoned {
                path: self.final_path.clone(),
            });
        }
        let manifest = ArchiveManifest {
            format: FORMAT,
            meta,
            entries: std::mem::take(&mut self.entries),
        };
        let mut json = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
        json.push(b'\n');
        // Never write an archive no reader would open.
        let (final_path, json_len) = (self.final_path.clone(), json.len());
        let too_large = move || ArchiveError::InvalidSource {
            path: final_path.clone(),
            reason: format!(
                "its manifest has {json_len} bytes, more than the {MAX_INDEX_BYTES} an \
                 archive's index may have (too many files: back up fewer directories per \
                 archive)"
            ),
        };
        if json.len() as u64 > MAX_INDEX_BYTES {
            return Err(too_large());
        }

        let partial = self.partial_path.clone();
        let write_err = |e| ArchiveError::io("write", &partial, e);
        let mut manifest_entry = Entry {
            path: MANIFEST_ENTRY.to_owned(),
            kind: EntryKind::File,
            size: json.len() as u64,
            sha256: None,
            mode: 0o644,
            target: None,
        };
        let now = self.now;
        self.write_header(&mut manifest_entry, now, 0, 0)?;
        let mut out = self.out.take().expect("not finished yet");
        out.write_all(&json).map_err(write_err)?;
        tarfmt::padding(&mut out, json.len() as u64).map_err(write_err)?;
        tarfmt::end_of_archive(&mut out).map_err(write_err)?;
        let encoder = out.into_inner().map_err(|e| write_err(e.into_error()))?;
        let hashing = encoder
            .finish()
            .map_err(write_err)?
            .into_inner()
            .map_err(|e| write_err(e.into_error()))?;
        let Hashing {
            mut file,
            hasher,
            len,
        } = hashing;
        let data = DataDigest {
            len,
            sha256: hasher.finalize().into(),
        };
        let frame = signed_frame(&FORMAT_3, Some(data), &json, key).ok_or_else(too_large)?;
        file.write_all(&frame).map_err(write_err)?;
        file.sync_all()
            .map_err(|e| ArchiveError::io("sync", &partial, e))?;
        let size = file
            .metadata()
            .map_err(|e| ArchiveError::io("inspect", &partial, e))?
            .len();
        drop(file);

        publish(&partial, &self.final_path)?;
        self.published = true;
        let dir = match self.final_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ArchiveError::io("sync the directory", dir, e))?;
        Ok(Written {
            path: self.final_path.clone(),
            size,
            manifest,
        })
    }

    /// Runs `f`; if it fails, the archive is abandoned (its stream may be inconsistent).
    fn guard<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, ArchiveError>,
    ) -> Result<T, ArchiveError> {
        if self.failed {
            return Err(ArchiveError::Abandoned {
                path: self.final_path.clone(),
            });
        }
        let result = f(self);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn stream(&mut self) -> Result<&mut Stream, ArchiveError> {
        self.out.as_mut().ok_or_else(|| ArchiveError::Abandoned {
            path: self.final_path.clone(),
        })
    }

    fn check_new_path(&self, path: &str) -> Result<(), ArchiveError> {
        if let Some(problem) = path_problem(path) {
            return Err(ArchiveError::invalid_path(path, problem));
        }
        if path == MANIFEST_ENTRY {
            return Err(ArchiveError::invalid_path(
                path,
                "the name is reserved for the archive manifest",
            ));
        }
        if self.paths.contains(path) {
            return Err(ArchiveError::invalid_path(
                path,
                "it is already in the archive",
            ));
        }
        Ok(())
    }

    fn advance(&mut self, bytes: u64) {
        self.consumed += bytes;
        if let Some(progress) = &mut self.progress {
            progress(self.consumed);
        }
    }

    fn write_header(
        &mut self,
        entry: &mut Entry,
        mtime: u64,
        uid: u64,
        gid: u64,
    ) -> Result<(), ArchiveError> {
        let (mtime, uid, gid) = match self.epoch {
            Some(epoch) => {
                entry.mode = normalized_mode(entry.kind, entry.mode);
                (epoch, 0, 0)
            }
            None => (mtime, uid, gid),
        };
        let spec = HeaderSpec {
            path: &entry.path,
            kind: entry.kind,
            size: entry.size,
            mode: entry.mode,
            mtime,
            uid,
            gid,
            target: entry.target.as_deref(),
        };
        // Trees can bring paths that were added before: two entries with one path would
        // make extraction fail.
        if !self.paths.insert(entry.path.clone()) {
            return Err(ArchiveError::invalid_path(
                &entry.path,
                "it is already in the archive",
            ));
        }
        let partial = self.partial_path.clone();
        tarfmt::write_header(self.stream()?, &spec)
            .map_err(|e| ArchiveError::io("write", partial, e))
    }

    fn walk(
        &mut self,
        archive_dir: &str,
        dir: &OwnedFd,
        shown: &Path,
        meta: &SourceMeta,
        children: Vec<OsString>,
        skipped: &mut Vec<Skipped>,
    ) -> Result<(), ArchiveError> {
        let mut entry = Entry {
            path: archive_dir.to_owned(),
            kind: EntryKind::Dir,
            size: 0,
            sha256: None,
            mode: meta.mode,
            target: None,
        };
        self.write_header(&mut entry, meta.mtime, meta.uid, meta.gid)?;
        self.entries.push(entry);

        for name in children {
            let child_src = shown.join(&name);
            let Some(name_str) = name.to_str() else {
                return Err(ArchiveError::InvalidSource {
                    path: child_src,
                    reason: "its name is not valid UTF-8".to_owned(),
                });
            };
            let child = format!("{archive_dir}/{name_str}");
            if let Some(reason) = self.walk_child(&child, dir, &name, &child_src, skipped)? {
                skipped.push(Skipped {
                    path: child_src,
                    archive_path: child,
                    reason,
                });
            }
        }
        Ok(())
    }

    /// Adds one thing found in a tree, or tells why it is left out. Everything is looked
    /// at relative to `dir` and never through a symlink.
    fn walk_child(
        &mut self,
        child: &str,
        dir: &OwnedFd,
        name: &OsString,
        child_src: &Path,
        skipped: &mut Vec<Skipped>,
    ) -> Result<Option<SkipReason>, ArchiveError> {
        use rustix::io::Errno;
        // Gone, or replaced by something of another kind since it was listed.
        let changed = |e: Errno| matches!(e, Errno::NOENT | Errno::LOOP | Errno::NOTDIR);
        let listed = match rustix::fs::statat(dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => SourceMeta::from_stat(&st),
            Err(e) if e == Errno::NOENT => return Ok(Some(SkipReason::Vanished)),
            Err(e) => return Err(ArchiveError::io("inspect", child_src, e.into())),
        };
        match listed.kind {
            FileType::Directory => {
                let sub = match rustix::fs::openat(
                    dir,
                    name.as_os_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    Err(e) if changed(e) => return Ok(Some(SkipReason::Vanished)),
                    Err(e) => return Err(ArchiveError::io("open", child_src, e.into())),
                };
                let meta = SourceMeta::of_fd(&sub)
                    .map_err(|e| ArchiveError::io("inspect", child_src, e))?;
                match list_dir(&sub) {
                    Ok(grandchildren) => {
                        self.walk(child, &sub, child_src, &meta, grandchildren, skipped)?;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        return Ok(Some(SkipReason::Vanished));
                    }
                    Err(e) => return Err(ArchiveError::io("list", child_src, e)),
                }
            }
            FileType::RegularFile => {
                if (listed.dev, listed.ino) == self.partial_id {
                    return Ok(Some(SkipReason::ArchiveItself));
                }
                let fd = match rustix::fs::openat(
                    dir,
                    name.as_os_str(),
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    Err(e) if changed(e) => return Ok(Some(SkipReason::Vanished)),
                    Err(e) => return Err(ArchiveError::io("open", child_src, e.into())),
                };
                let meta = SourceMeta::of_fd(&fd)
                    .map_err(|e| ArchiveError::io("inspect", child_src, e))?;
                if meta.kind != FileType::RegularFile {
                    return Ok(Some(SkipReason::Vanished));
                }
                if (meta.dev, meta.ino) == self.partial_id {
                    return Ok(Some(SkipReason::ArchiveItself));
                }
                self.refuse_foreign_hard_link(child_src, &meta)?;
                self.write_file(child, child_src, File::from(fd), &meta)?;
            }
            FileType::Symlink => {
                let target = match rustix::fs::readlinkat(dir, name.as_os_str(), Vec::new()) {
                    Ok(target) => target,
                    Err(e) if changed(e) || e == Errno::INVAL => {
                        return Ok(Some(SkipReason::Vanished));
                    }
                    Err(e) => {
                        return Err(ArchiveError::io("read the symlink", child_src, e.into()));
                    }
                };
                let Ok(target) = target.into_string() else {
                    return Err(ArchiveError::InvalidSource {
                        path: child_src.to_owned(),
                        reason: "its target is not valid UTF-8".to_owned(),
                    });
                };
                if symlink_problem(child, &target).is_some() {
                    return Ok(Some(SkipReason::UnsafeSymlink { target }));
                }
                let mut entry = Entry {
                    path: child.to_owned(),
                    kind: EntryKind::Symlink,
                    size: 0,
                    sha256: None,
                    mode: listed.mode,
                    target: Some(target),
                };
                self.write_header(&mut entry, listed.mtime, listed.uid, listed.gid)?;
                self.entries.push(entry);
            }
            _ => return Ok(Some(SkipReason::Special)),
        }
        Ok(None)
    }

    /// The rule `beneath::chown_tree` applies: whoever owns the tree can hard-link a file
    /// it cannot read (`/etc/shadow`) into it, and a restore would hand the copy to them.
    /// A file with more than one link, owned by someone else than the tree's root, is an
    /// error (which abandons the whole archive).
    fn refuse_foreign_hard_link(&self, src: &Path, meta: &SourceMeta) -> Result<(), ArchiveError> {
        let Some(owner) = self.tree_owner else {
            return Ok(());
        };
        if meta.nlink <= 1 || meta.uid == owner {
            return Ok(());
        }
        Err(ArchiveError::InvalidSource {
            path: src.to_owned(),
            reason: format!(
                "it is a hard link ({} links) owned by uid {}, not by the owner of the \
                 directory backed up (uid {owner}): its other name may be a file that owner \
                 must not read; nothing was kept of this archive (remove the link, as root, \
                 after checking what it points to)",
                meta.nlink, meta.uid
            ),
        })
    }

    /// Writes one file: header, content (hashed on the way) and padding.
    fn write_file(
        &mut self,
        archive_path: &str,
        src: &Path,
        mut file: File,
        meta: &SourceMeta,
    ) -> Result<(), ArchiveError> {
        let size = meta.size;
        let mut entry = Entry {
            path: archive_path.to_owned(),
            kind: EntryKind::File,
            size,
            sha256: None,
            mode: meta.mode,
            target: None,
        };
        self.write_header(&mut entry, meta.mtime, meta.uid, meta.gid)?;

        let mut hasher = Sha256::new();
        let mut remaining = size;
        let mut buf = std::mem::take(&mut self.buf);
        let result = (|| {
            while remaining > 0 {
                let want = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
                let n = read_some(&mut file, &mut buf[..want])
                    .map_err(|e| ArchiveError::io("read", src, e))?;
                if n == 0 {
                    return Err(ArchiveError::SourceChanged {
                        path: src.to_owned(),
                        expected: size,
                        actual: size - remaining,
                    });
                }
                hasher.update(&buf[..n]);
                let partial = &self.partial_path;
                let out = self.out.as_mut().expect("not finished");
                out.write_all(&buf[..n])
                    .map_err(|e| ArchiveError::io("write", partial, e))?;
                remaining -= n as u64;
                self.advance(n as u64);
            }
            // One more read tells whether the file grew while it was copied.
            if read_some(&mut file, &mut buf[..1]).map_err(|e| ArchiveError::io("read", src, e))?
                > 0
            {
                let actual = file.metadata().map_or(size + 1, |m| m.len().max(size + 1));
                return Err(ArchiveError::SourceChanged {
                    path: src.to_owned(),
                    expected: size,
                    actual,
                });
            }
            Ok(())
        })();
        self.buf = buf;
        result?;

        let partial = self.partial_path.clone();
        tarfmt::padding(self.stream()?, size).map_err(|e| ArchiveError::io("write", partial, e))?;
        entry.sha256 = Some(hex::encode(hasher.finalize()));
        self.entries.push(entry);
        Ok(())
    }
}

impl Drop for ArchiveWriter {
    fn drop(&mut self) {
        // Not finished (or finishing failed): an incomplete archive must not stay around
        // looking like one. The final path is never touched here.
        if !self.published {
            drop(self.out.take());
            let _ = fs::remove_file(&self.partial_path);
        }
    }
}

/// What the writer needs to know about a source, from `fstat` or `fstatat`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SourceMeta {
    kind: FileType,
    size: u64,
    /// Permission bits, with setuid, setgid and sticky.
    mode: u32,
    mtime: u64,
    uid: u64,
    gid: u64,
    dev: u64,
    ino: u64,
    nlink: u64,
}

impl SourceMeta {
    fn from_stat(st: &rustix::fs::Stat) -> Self {
        Self {
            kind: FileType::from_raw_mode(st.st_mode),
            size: u64::try_from(st.st_size).unwrap_or(0),
            // Setuid, setgid and sticky bits are never stored: no archive berth writes
            // asks for them back.
            mode: st.st_mode & 0o777,
            mtime: u64::try_from(st.st_mtime).unwrap_or(0),
            uid: u64::from(st.st_uid),
            gid: u64::from(st.st_gid),
            dev: st.st_dev,
            ino: st.st_ino,
            nlink: st.st_nlink,
        }
    }

    fn of_fd(fd: &impl AsFd) -> io::Result<Self> {
        Ok(Self::from_stat(&rustix::fs::fstat(fd)?))
    }
}

/// Opens the directory `path` (relative to `at`) without following a symlink at its
/// last component.
fn open_dir_nofollow(
    at: BorrowedFd<'_>,
    path: &Path,
    shown: &Path,
) -> Result<OwnedFd, ArchiveError> {
    let is_symlink = || {
        rustix::fs::statat(at, path, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink)
    };
    rustix::fs::openat(
        at,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        // Linux says ENOTDIR for a symlink opened with O_DIRECTORY | O_NOFOLLOW.
        rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR if is_symlink() => {
            ArchiveError::InvalidSource {
                path: shown.to_owned(),
                reason: "it is a symlink, which berth never follows when it backs up (someone \
                     replaced a directory with a link: check who can write to its parent)"
                    .to_owned(),
            }
        }
        rustix::io::Errno::NOTDIR => ArchiveError::InvalidSource {
            path: shown.to_owned(),
            reason: "it is not a directory".to_owned(),
        },
        e => ArchiveError::io("open", shown, e.into()),
    })
}

/// The names in the directory open as `dir`, sorted.
fn list_dir(dir: &OwnedFd) -> io::Result<Vec<OsString>> {
    use std::os::unix::ffi::OsStrExt;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(std::ffi::OsStr::from_bytes(name).to_owned());
        }
    }
    names.sort();
    Ok(names)
}

fn read_some(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

fn already_exists(path: &Path) -> ArchiveError {
    ArchiveError::AlreadyExists {
        path: path.to_owned(),
        reason: "berth never replaces an existing backup archive".to_owned(),
    }
}

/// Gives the complete partial file its final name, failing if that name is taken.
fn publish(partial: &Path, final_path: &Path) -> Result<(), ArchiveError> {
    // A hard link is an atomic "rename unless the target exists".
    match fs::hard_link(partial, final_path) {
        Ok(()) => fs::remove_file(partial).map_err(|e| ArchiveError::io("remove", partial, e)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(already_exists(final_path)),
        Err(_) => {
            // Some file systems have no hard links: check, then rename.
            if fs::symlink_metadata(final_path).is_ok() {
                return Err(already_exists(final_path));
            }
            fs::rename(partial, final_path).map_err(|e| ArchiveError::io("rename", partial, e))
        }
    }
}
