//! Writing an archive: [`ArchiveWriter`].

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::ArchiveError;
use crate::index::index_frame;
use crate::manifest::{ArchiveManifest, Entry, EntryKind, FORMAT, MANIFEST_ENTRY, Meta};
use crate::path::{path_problem, symlink_problem};
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
}

impl Default for WriteOptions {
    fn default() -> Self {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX));
        Self { level: 3, threads }
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

type Stream = BufWriter<zstd::stream::write::Encoder<'static, BufWriter<File>>>;

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
    entries: Vec<Entry>,
    paths: HashSet<String>,
    progress: Option<ProgressFn>,
    consumed: u64,
    buf: Vec<u8>,
    /// The mtime of entries that have no source file.
    now: u64,
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
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
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
            entries: Vec::new(),
            paths: HashSet::new(),
            progress: None,
            consumed: 0,
            buf: vec![0; BUF_SIZE],
            now: u64::try_from(jiff::Timestamp::now().as_second()).unwrap_or(0),
            failed: false,
            published: false,
        };
        let meta = meta.map_err(|e| ArchiveError::io("inspect", &writer.partial_path, e))?;
        writer.partial_id = (meta.dev(), meta.ino());
        let encoder =
            zstd::stream::write::Encoder::new(BufWriter::with_capacity(BUF_SIZE, file), opts.level)
                .and_then(|mut enc| {
                    enc.include_checksum(true)?;
                    if opts.threads > 0 {
                        enc.multithread(opts.threads)?;
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
    /// `src` itself may be a symlink to a directory; below it, symlinks are stored as
    /// symlinks, never followed. Sockets, FIFOs and devices, files that disappear while
    /// the tree is walked, symlinks pointing outside the archive and the archive itself are
    /// left out and returned. A file that changes size while it is read is an error.
    pub fn add_tree(
        &mut self,
        archive_dir: &str,
        src: &Path,
    ) -> Result<Vec<Skipped>, ArchiveError> {
        self.check_new_path(archive_dir)?;
        let meta = fs::metadata(src).map_err(|e| ArchiveError::io("read", src, e))?;
        if !meta.is_dir() {
            return Err(ArchiveError::InvalidSource {
                path: src.to_owned(),
                reason: "it is not a directory".to_owned(),
            });
        }
        let children = list_dir(src).map_err(|e| ArchiveError::io("list", src, e))?;
        let mut skipped = Vec::new();
        self.guard(|w| w.walk(archive_dir, src, &meta, children, &mut skipped))?;
        Ok(skipped)
    }

    /// Adds the regular file `src` as `archive_path`, following `src` if it is a symlink.
    pub fn add_file(&mut self, archive_path: &str, src: &Path) -> Result<(), ArchiveError> {
        self.check_new_path(archive_path)?;
        let not_a_file = || ArchiveError::InvalidSource {
            path: src.to_owned(),
            reason: "it is not a regular file".to_owned(),
        };
        // Checked before opening, since opening a FIFO blocks.
        let meta = fs::metadata(src).map_err(|e| ArchiveError::io("inspect", src, e))?;
        if !meta.is_file() {
            return Err(not_a_file());
        }
        let file = File::open(src).map_err(|e| ArchiveError::io("open", src, e))?;
        let meta = file
            .metadata()
            .map_err(|e| ArchiveError::io("inspect", src, e))?;
        if !meta.is_file() {
            return Err(not_a_file());
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
        let entry = Entry {
            path: archive_path.to_owned(),
            kind: EntryKind::File,
            size: data.len() as u64,
            sha256: Some(sha256),
            mode: mode & 0o7777,
            target: None,
        };
        let now = self.now;
        self.guard(|w| {
            w.write_header(&entry, now, 0, 0)?;
            let out = w.stream()?;
            out.write_all(data)
                .and_then(|()| tarfmt::padding(out, entry.size))
                .map_err(|e| ArchiveError::io("write", &w.partial_path, e))?;
            w.advance(entry.size);
            w.entries.push(entry);
            Ok(())
        })
    }

    /// Completes the archive and gives it its final name.
    ///
    /// Appends the manifest (`meta` and the list of entries) as the last tar entry, ends
    /// the tar and zstd streams, appends the index frame, syncs the file, renames it to its
    /// final path (refusing to replace an existing file) and syncs the directory.
    pub fn finish(mut self, meta: Meta) -> Result<Written, ArchiveError> {
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
        let frame = index_frame(&json).ok_or_else(|| ArchiveError::InvalidSource {
            path: self.final_path.clone(),
            reason: "its manifest is larger than 4 GiB".to_owned(),
        })?;

        let partial = self.partial_path.clone();
        let write_err = |e| ArchiveError::io("write", &partial, e);
        let manifest_entry = Entry {
            path: MANIFEST_ENTRY.to_owned(),
            kind: EntryKind::File,
            size: json.len() as u64,
            sha256: None,
            mode: 0o644,
            target: None,
        };
        let now = self.now;
        self.write_header(&manifest_entry, now, 0, 0)?;
        let mut out = self.out.take().expect("not finished yet");
        out.write_all(&json).map_err(write_err)?;
        tarfmt::padding(&mut out, json.len() as u64).map_err(write_err)?;
        tarfmt::end_of_archive(&mut out).map_err(write_err)?;
        let encoder = out.into_inner().map_err(|e| write_err(e.into_error()))?;
        let mut file = encoder.finish().map_err(write_err)?;
        file.write_all(&frame).map_err(write_err)?;
        let file = file.into_inner().map_err(|e| write_err(e.into_error()))?;
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
        entry: &Entry,
        mtime: u64,
        uid: u64,
        gid: u64,
    ) -> Result<(), ArchiveError> {
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
        src: &Path,
        meta: &fs::Metadata,
        children: Vec<OsString>,
        skipped: &mut Vec<Skipped>,
    ) -> Result<(), ArchiveError> {
        let entry = Entry {
            path: archive_dir.to_owned(),
            kind: EntryKind::Dir,
            size: 0,
            sha256: None,
            mode: meta.mode() & 0o7777,
            target: None,
        };
        self.write_header(
            &entry,
            mtime_of(meta),
            u64::from(meta.uid()),
            u64::from(meta.gid()),
        )?;
        self.entries.push(entry);

        for name in children {
            let child_src = src.join(&name);
            let Some(name) = name.to_str() else {
                return Err(ArchiveError::InvalidSource {
                    path: child_src,
                    reason: "its name is not valid UTF-8".to_owned(),
                });
            };
            let child = format!("{archive_dir}/{name}");
            if let Some(reason) = self.walk_child(&child, &child_src, skipped)? {
                skipped.push(Skipped {
                    path: child_src,
                    archive_path: child,
                    reason,
                });
            }
        }
        Ok(())
    }

    /// Adds one thing found in a tree, or tells why it is left out.
    fn walk_child(
        &mut self,
        child: &str,
        child_src: &Path,
        skipped: &mut Vec<Skipped>,
    ) -> Result<Option<SkipReason>, ArchiveError> {
        let vanished = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
        let meta = match fs::symlink_metadata(child_src) {
            Ok(meta) => meta,
            Err(e) if vanished(&e) => return Ok(Some(SkipReason::Vanished)),
            Err(e) => return Err(ArchiveError::io("inspect", child_src, e)),
        };
        let kind = meta.file_type();
        if kind.is_dir() {
            match list_dir(child_src) {
                Ok(grandchildren) => self.walk(child, child_src, &meta, grandchildren, skipped)?,
                Err(e) if vanished(&e) => return Ok(Some(SkipReason::Vanished)),
                Err(e) => return Err(ArchiveError::io("list", child_src, e)),
            }
        } else if kind.is_file() {
            if (meta.dev(), meta.ino()) == self.partial_id {
                return Ok(Some(SkipReason::ArchiveItself));
            }
            let file = match File::open(child_src) {
                Ok(file) => file,
                Err(e) if vanished(&e) => return Ok(Some(SkipReason::Vanished)),
                Err(e) => return Err(ArchiveError::io("open", child_src, e)),
            };
            let meta = file
                .metadata()
                .map_err(|e| ArchiveError::io("inspect", child_src, e))?;
            if !meta.is_file() {
                // Replaced by something else since it was listed.
                return Ok(Some(SkipReason::Vanished));
            }
            self.write_file(child, child_src, file, &meta)?;
        } else if kind.is_symlink() {
            let target = match fs::read_link(child_src) {
                Ok(target) => target,
                Err(e) if vanished(&e) => return Ok(Some(SkipReason::Vanished)),
                Err(e) => return Err(ArchiveError::io("read the symlink", child_src, e)),
            };
            let Some(target) = target.to_str() else {
                return Err(ArchiveError::InvalidSource {
                    path: child_src.to_owned(),
                    reason: "its target is not valid UTF-8".to_owned(),
                });
            };
            if symlink_problem(child, target).is_some() {
                return Ok(Some(SkipReason::UnsafeSymlink {
                    target: target.to_owned(),
                }));
            }
            let entry = Entry {
                path: child.to_owned(),
                kind: EntryKind::Symlink,
                size: 0,
                sha256: None,
                mode: meta.mode() & 0o7777,
                target: Some(target.to_owned()),
            };
            self.write_header(
                &entry,
                mtime_of(&meta),
                u64::from(meta.uid()),
                u64::from(meta.gid()),
            )?;
            self.entries.push(entry);
        } else {
            return Ok(Some(SkipReason::Special));
        }
        Ok(None)
    }

    /// Writes one file: header, content (hashed on the way) and padding.
    fn write_file(
        &mut self,
        archive_path: &str,
        src: &Path,
        mut file: File,
        meta: &fs::Metadata,
    ) -> Result<(), ArchiveError> {
        let size = meta.len();
        let mut entry = Entry {
            path: archive_path.to_owned(),
            kind: EntryKind::File,
            size,
            sha256: None,
            mode: meta.mode() & 0o7777,
            target: None,
        };
        self.write_header(
            &entry,
            mtime_of(meta),
            u64::from(meta.uid()),
            u64::from(meta.gid()),
        )?;

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

/// The names in a directory, sorted.
fn list_dir(dir: &Path) -> io::Result<Vec<OsString>> {
    let mut names = fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<io::Result<Vec<_>>>()?;
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

fn mtime_of(meta: &fs::Metadata) -> u64 {
    u64::try_from(meta.mtime()).unwrap_or(0)
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
