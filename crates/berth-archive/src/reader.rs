//! Reading an archive in full: [`verify`] and [`extract`].

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};
use tar::EntryType;

use crate::decode::{Decompressed, StreamFailure};
use crate::error::ArchiveError;
use crate::index::{Index, open_archive, read_index_of};
use crate::manifest::{ArchiveManifest, Entry, EntryKind, MANIFEST_ENTRY};
use crate::path::{path_problem, symlink_problem};
use crate::signing::PublicKey;
use crate::writer::BUF_SIZE;

/// What [`verify`] checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The number of entries (files, directories and symlinks), the manifest not counted.
    pub entries: usize,
    /// The number of regular files.
    pub files: usize,
    /// The total size of the files' content, in bytes.
    pub bytes: u64,
    /// The size of the archive file, in bytes.
    pub archive_bytes: u64,
    /// How long the verification took.
    pub duration: Duration,
    /// The trusted key that signed the archive.
    pub signer: PublicKey,
    /// The archive's format: 3, or 2 for an archive written by an earlier berth.
    pub format: u32,
    /// For an archive of an earlier format (2), one line on what its signature does not
    /// cover and the advice to take a new backup; `None` for a current archive.
    pub format_note: Option<&'static str>,
}

/// An archive opened once and authenticated: its index's signature checked against a
/// trusted key, its manifest checked, and its file name tied to the signed metadata.
///
/// Everything afterwards ([`Archive::verify`], [`Archive::extract`]) reads the same open
/// file, never the path again: whoever can write to the backup target cannot swap the
/// file between the signature check and the extraction.
#[derive(Debug)]
pub struct Archive {
    path: PathBuf,
    file: File,
    index: Index,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("format", &self.format.number)
            .field("signer", &self.signer)
            .field("frame_start", &self.frame_start)
            .finish_non_exhaustive()
    }
}

impl Archive {
    /// Opens `path` and authenticates it against `trusted` (an empty list is an error),
    /// reading only the end of the file.
    ///
    /// Also refuses a file whose name is an archive name ([`crate::parse_archive_name`])
    /// other than the one its signed metadata gives ([`crate::archive_name`] of its `app`,
    /// `app_version` and `created`): a genuine older archive copied over last night's name
    /// is not last night's backup. A file named otherwise, or metadata without those
    /// three keys, makes no such claim.
    pub fn open(path: &Path, trusted: &[PublicKey]) -> Result<Self, ArchiveError> {
        let file = open_archive(path)?;
        let index = read_index_of(&file, path)?.authenticate(path, trusted)?;
        check_manifest(&index.manifest, path)?;
        check_name(path, &index.manifest)?;
        Ok(Self {
            path: path.to_owned(),
            file,
            index,
        })
    }

    /// The signed manifest: what the key holder wrote, though the content has not been
    /// checked against it until [`Archive::verify`] or [`Archive::extract`] succeeds.
    pub fn manifest(&self) -> &ArchiveManifest {
        &self.index.manifest
    }

    /// The manifest, consuming the archive.
    pub fn into_manifest(self) -> ArchiveManifest {
        self.index.manifest
    }

    /// The trusted key that signed the archive.
    pub fn signer(&self) -> PublicKey {
        self.index.signer
    }

    /// The archive's format: 3, or 2 for an archive written by an earlier berth, which is
    /// read with every check that format allows (see [`Archive::format_note`]).
    pub fn format(&self) -> u32 {
        self.index.format.number
    }

    /// For an archive of an earlier format (2), one line telling what its signature does
    /// not cover and advising a new backup, for reports; `None` for a current archive.
    pub fn format_note(&self) -> Option<&'static str> {
        self.index.format.note
    }

    /// The path it was opened from (for messages: it is never opened again).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// [`verify`], on this open file.
    pub fn verify(&self, progress: &mut dyn FnMut(u64)) -> Result<VerifyReport, ArchiveError> {
        let start = Instant::now();
        scan(&self.path, &self.file, &self.index, None, progress)?;
        Ok(VerifyReport {
            entries: self.index.manifest.entries.len(),
            files: self.index.manifest.file_count(),
            bytes: self.index.manifest.total_size(),
            archive_bytes: self.index.file_len,
            duration: start.elapsed(),
            signer: self.index.signer,
            format: self.format(),
            format_note: self.format_note(),
        })
    }

    /// [`extract`], from this open file.
    pub fn extract(
        &self,
        dest: &Path,
        filter: &dyn Fn(&str) -> bool,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), ArchiveError> {
        let root = rustix::fs::open(
            dest,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ArchiveError::io("open the directory", dest, e.into()))?;
        let mut out = Extractor {
            archive: self.path.clone(),
            dest: dest.to_owned(),
            root,
            filter,
            last_parent: None,
            fixups: Vec::new(),
        };
        scan(
            &self.path,
            &self.file,
            &self.index,
            Some(&mut out),
            progress,
        )?;
        out.finish()
    }
}

/// Refuses a file named like an archive whose name disagrees with its signed metadata.
fn check_name(path: &Path, manifest: &ArchiveManifest) -> Result<(), ArchiveError> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(());
    };
    if crate::parse_archive_name(name).is_none() {
        return Ok(());
    }
    let meta = &manifest.meta;
    // Metadata without them (not berth's: it always sets all three) names nothing.
    let (Some(app), Some(version), Some(created)) =
        (meta.app(), meta.app_version(), meta.created())
    else {
        return Ok(());
    };
    let signed = crate::archive_name(app, version, created);
    if signed != name {
        return Err(ArchiveError::NameMismatch {
            path: path.to_owned(),
            signed,
        });
    }
    Ok(())
}

/// Reads the whole archive and checks everything in it, writing nothing.
///
/// First checks that the index is signed by one of the `trusted` keys: nothing in an
/// archive is believed before that (an empty `trusted` is an error). Then checks the zstd
/// frames (their checksums included), that every tar entry has the path, kind, mode,
/// size, SHA-256 and symlink target its manifest lists, in the same order, with no entry
/// missing or extra, that the manifest stored in the tar is byte for byte the index, that
/// nothing follows the end of the tar stream, and that the bytes before the index, exactly
/// as stored, have the length and SHA-256 the signed index gives: a byte changed anywhere
/// in the file is refused, even one that decompresses to the same entries. (An archive of
/// format 2, which records no such digest, gets every check but that last one; the report
/// says so in [`VerifyReport::format_note`].) Also refuses
/// archives with entries [`extract`] would refuse (paths leaving the root, symlinks
/// pointing outside).
///
/// `progress` receives the cumulative number of bytes of file content checked so far,
/// whose total is [`ArchiveManifest::total_size`].
pub fn verify(
    path: &Path,
    trusted: &[PublicKey],
    progress: &mut dyn FnMut(u64),
) -> Result<VerifyReport, ArchiveError> {
    Archive::open(path, trusted)?.verify(progress)
}

/// Extracts the archive into the existing directory `dest`, verifying it on the way.
///
/// The index's signature is checked against `trusted` before anything is written. Then
/// one pass: each file is written, hashed and compared with the manifest as it streams,
/// and the whole archive is checked as [`verify`] does, including the entries `filter`
/// rejects, which are read and checked but not written.
///
/// Nothing from the archive is trusted to decide ownership or privileges: every entry is
/// created by the caller (so owned by it), with the setuid, setgid and sticky bits
/// cleared from its mode (directories are 0700 until their final mode is set at the
/// end). Entries are created relative to directory descriptors with
/// `O_EXCL | O_NOFOLLOW`, so nothing is ever written outside `dest`, no symlink is ever
/// followed, and no existing file is ever replaced. On error, `dest` may hold part of the
/// archive and even files that fail their check: the caller removes it.
pub fn extract(
    path: &Path,
    dest: &Path,
    trusted: &[PublicKey],
    filter: &dyn Fn(&str) -> bool,
    progress: &mut dyn FnMut(u64),
) -> Result<ArchiveManifest, ArchiveError> {
    let archive = Archive::open(path, trusted)?;
    archive.extract(dest, filter, progress)?;
    Ok(archive.into_manifest())
}

/// The permission bits extraction ever sets: never setuid, setgid or sticky.
pub const EXTRACTED_MODE_MASK: u32 = 0o777;

/// Where the entries go while an archive is read.
struct Extractor<'a> {
    archive: PathBuf,
    dest: PathBuf,
    /// `dest`, open.
    root: OwnedFd,
    filter: &'a dyn Fn(&str) -> bool,
    /// The parent directory of the last entry, open (consecutive entries mostly share it).
    last_parent: Option<(String, OwnedFd)>,
    /// Directories whose mode and mtime are set at the end, once their content is written.
    fixups: Vec<(String, u32, u64)>,
}

impl Extractor<'_> {
    fn wants(&self, path: &str) -> bool {
        (self.filter)(path)
    }

    fn unsafe_entry(&self, entry: &str, reason: String) -> ArchiveError {
        ArchiveError::UnsafeEntry {
            archive: self.archive.clone(),
            entry: entry.to_owned(),
            reason,
        }
    }

    /// Opens the directory `rel` under `dest`, one component at a time and never through
    /// a symlink, creating missing components (0700) when `create` is set.
    fn open_dir(&self, rel: &str, entry: &str, create: bool) -> Result<OwnedFd, ArchiveError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut dir = rustix::fs::openat(&self.root, ".", flags, Mode::empty())
            .map_err(|e| ArchiveError::io("open", &self.dest, e.into()))?;
        if rel.is_empty() {
            return Ok(dir);
        }
        let mut done = 0;
        for component in rel.split('/') {
            done += component.len() + 1;
            let prefix = &rel[..done - 1];
            let full = || self.dest.join(prefix);
            let next = match rustix::fs::openat(&dir, component, flags, Mode::empty()) {
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&dir, component, Mode::from_raw_mode(0o700)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => {
                            return Err(ArchiveError::io("create the directory", full(), e.into()));
                        }
                    }
                    rustix::fs::openat(&dir, component, flags, Mode::empty())
                }
                other => other,
            };
            dir = match next {
                Ok(fd) => fd,
                Err(Errno::LOOP | Errno::NOTDIR) => {
                    return Err(self.unsafe_entry(entry, format!("`{prefix}` is not a directory")));
                }
                Err(e) => return Err(ArchiveError::io("open", full(), e.into())),
            };
        }
        Ok(dir)
    }

    /// The open parent directory of `path` (created if missing) and `path`'s last name.
    fn parent<'p>(&mut self, path: &'p str) -> Result<(&OwnedFd, &'p str), ArchiveError> {
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        if self.last_parent.as_ref().is_none_or(|(p, _)| p != parent) {
            let fd = self.open_dir(parent, path, true)?;
            self.last_parent = Some((parent.to_owned(), fd));
        }
        let (_, fd) = self.last_parent.as_ref().expect("just set");
        Ok((fd, name))
    }

    fn dir(&mut self, entry: &Entry, mtime: u64) -> Result<(), ArchiveError> {
        let full = self.dest.join(&entry.path);
        let (parent, name) = self.parent(&entry.path)?;
        // Private until its final mode is set at the end.
        match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let st = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| ArchiveError::io("inspect", &full, e.into()))?;
                if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                    return Err(exists(&full));
                }
            }
            Err(e) => return Err(ArchiveError::io("create the directory", &full, e.into())),
        }
        self.fixups
            .push((entry.path.clone(), entry.mode & EXTRACTED_MODE_MASK, mtime));
        Ok(())
    }

    fn file(&mut self, entry: &Entry) -> Result<(File, PathBuf), ArchiveError> {
        let full = self.dest.join(&entry.path);
        let (parent, name) = self.parent(&entry.path)?;
        // O_EXCL never follows a symlink in the last component and never replaces.
        let fd = rustix::fs::openat(
            parent,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| {
            if e == Errno::EXIST {
                exists(&full)
            } else {
                ArchiveError::io("create", &full, e.into())
            }
        })?;
        Ok((File::from(fd), full))
    }

    fn symlink(&mut self, entry: &Entry, target: &str) -> Result<(), ArchiveError> {
        let full = self.dest.join(&entry.path);
        let (parent, name) = self.parent(&entry.path)?;
        rustix::fs::symlinkat(target, parent, name).map_err(|e| {
            if e == Errno::EXIST {
                exists(&full)
            } else {
                ArchiveError::io("create the symlink", &full, e.into())
            }
        })
    }

    fn finish(&mut self) -> Result<(), ArchiveError> {
        self.last_parent = None;
        // Children before parents, so a read-only directory is made read-only last and
        // writing into a directory does not change its mtime after it was set.
        let fixups = std::mem::take(&mut self.fixups);
        for (rel, mode, mtime) in fixups.into_iter().rev() {
            let full = self.dest.join(&rel);
            let dir = self.open_dir(&rel, &rel, false)?;
            rustix::fs::fchmod(&dir, Mode::from_raw_mode(mode))
                .map_err(|e| ArchiveError::io("set the mode of", &full, e.into()))?;
            File::from(dir)
                .set_modified(system_time(mtime))
                .map_err(|e| ArchiveError::io("set the mtime of", &full, e))?;
        }
        Ok(())
    }
}

fn exists(path: &Path) -> ArchiveError {
    ArchiveError::AlreadyExists {
        path: path.to_owned(),
        reason: "extraction never replaces a file".to_owned(),
    }
}

fn system_time(mtime: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(mtime)
}

/// Checks that the manifest describes a sound archive before anything is read or written.
fn check_manifest(manifest: &ArchiveManifest, path: &Path) -> Result<(), ArchiveError> {
    let unsafe_entry = |entry: &Entry, reason: &str| ArchiveError::UnsafeEntry {
        archive: path.to_owned(),
        entry: entry.path.clone(),
        reason: reason.to_owned(),
    };
    let corrupt = |entry: &Entry, reason: &str| {
        ArchiveError::corrupt(
            path,
            format!("its manifest lists `{}` {reason}", entry.path),
        )
    };
    let mut kinds: HashMap<&str, EntryKind> = HashMap::new();
    for entry in &manifest.entries {
        if let Some(problem) = path_problem(&entry.path) {
            return Err(unsafe_entry(entry, problem));
        }
        if entry.path == MANIFEST_ENTRY {
            return Err(corrupt(entry, "under the manifest's own name"));
        }
        // A parent that is a symlink or a file would make extraction go through it.
        let mut end = 0;
        while let Some(slash) = entry.path[end..].find('/') {
            end += slash;
            match kinds.get(&entry.path[..end]) {
                Some(EntryKind::Dir) | None => {}
                Some(_) => {
                    return Err(unsafe_entry(
                        entry,
                        &format!("`{}` is not a directory", &entry.path[..end]),
                    ));
                }
            }
            end += 1;
        }
        if kinds.insert(&entry.path, entry.kind).is_some() {
            return Err(corrupt(entry, "twice"));
        }
        if entry.mode > 0o7777 {
            return Err(corrupt(entry, "with an invalid mode"));
        }
        let sha_ok = entry.sha256.as_deref().is_some_and(|s| {
            s.len() == 64
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        match entry.kind {
            EntryKind::File if !sha_ok || entry.target.is_some() => {
                return Err(corrupt(entry, "as a file without a valid SHA-256"));
            }
            EntryKind::Dir | EntryKind::Symlink if entry.size != 0 || entry.sha256.is_some() => {
                return Err(corrupt(
                    entry,
                    "with a size or SHA-256, which only files have",
                ));
            }
            EntryKind::Dir if entry.target.is_some() => {
                return Err(corrupt(entry, "as a directory with a symlink target"));
            }
            EntryKind::Symlink => {
                let Some(target) = &entry.target else {
                    return Err(corrupt(entry, "as a symlink without a target"));
                };
                if let Some(problem) = symlink_problem(&entry.path, target) {
                    return Err(unsafe_entry(entry, problem));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Reads the whole archive, checking it, and hands its entries to `out` if there is one.
/// `index` is the authenticated index of `file`, which is read again from its start
/// through a duplicate of the same descriptor (never by path).
fn scan(
    path: &Path,
    file: &File,
    index: &Index,
    out: Option<&mut Extractor<'_>>,
    progress: &mut dyn FnMut(u64),
) -> Result<(), ArchiveError> {
    let mut file = file
        .try_clone()
        .map_err(|e| ArchiveError::io("read", path, e))?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| ArchiveError::io("read", path, e))?;

    let decoder = Decompressed::spawn(file, index.frame_start)
        .map_err(|e| ArchiveError::io("start decompressing", path, e))?;
    let mut archive = tar::Archive::new(decoder);

    let mut state = ScanState {
        path,
        index,
        buf: vec![0; BUF_SIZE],
        done: 0,
        progress,
        seen_manifest: false,
        position: 0,
    };
    let result = state.entries(&mut archive, out);
    let mut decoder = archive.into_inner();
    let stream_error = |e: io::Error, decoder: &mut Decompressed| match decoder.take_failure() {
        Some(StreamFailure {
            error, io: true, ..
        }) => ArchiveError::io("read", path, error),
        Some(StreamFailure { error, at, .. }) if error.to_string().contains("checksum") => {
            ArchiveError::corrupt(
                path,
                format!("the compressed stream fails its checksum at byte {at}"),
            )
        }
        Some(StreamFailure { error, at, .. }) => ArchiveError::corrupt(
            path,
            format!("the compressed stream is damaged near byte {at}: {error}"),
        ),
        None => ArchiveError::corrupt(path, format!("its tar stream is damaged: {e}")),
    };
    match result {
        Ok(()) => {}
        Err(ScanError::Archive(e)) => return Err(e),
        Err(ScanError::Stream(e)) => return Err(stream_error(e, &mut decoder)),
    }

    // Past the end-of-archive block only zeros may follow; reading to the end also makes
    // the decompressor check the frame checksum.
    let mut tail = std::mem::take(&mut state.buf);
    loop {
        match decoder.read(&mut tail) {
            Ok(0) => break,
            Ok(n) => {
                if tail[..n].iter().any(|&b| b != 0) {
                    return Err(ArchiveError::corrupt(
                        path,
                        "there is data after the end of its tar stream",
                    ));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(stream_error(e, &mut decoder)),
        }
    }
    // Everything before the index frame, byte for byte as stored, must be what was signed
    // (format 3): content checks alone pass bytes that decode to the same entries (tar
    // header fields berth does not compare, padding, zstd frame fields). A format 2 index
    // records no digest of them: its archives get the content checks only.
    let Some(raw) = decoder.raw_digest() else {
        return Err(ArchiveError::corrupt(
            path,
            "its compressed stream could not be read to its end",
        ));
    };
    if let Some(signed) = index.data_sha256
        && (raw.len != index.frame_start || raw.sha256 != signed)
    {
        return Err(ArchiveError::corrupt(
            path,
            format!(
                "its compressed data is not what was signed (SHA-256 {}… where its signed \
                 index says {}…): it was damaged or altered after it was written",
                &hex::encode(raw.sha256)[..12],
                &hex::encode(signed)[..12],
            ),
        ));
    }
    if decoder.consumed() != Some(index.frame_start) {
        return Err(ArchiveError::corrupt(
            path,
            "its compressed stream ends before its index frame",
        ));
    }
    Ok(())
}

/// An error while reading entries: either about the archive's content, or an error of
/// the underlying stream, which is located afterwards.
enum ScanError {
    Archive(ArchiveError),
    Stream(io::Error),
}

impl From<ArchiveError> for ScanError {
    fn from(e: ArchiveError) -> Self {
        Self::Archive(e)
    }
}

struct ScanState<'a, 'p> {
    path: &'a Path,
    index: &'a Index,
    buf: Vec<u8>,
    done: u64,
    progress: &'p mut dyn FnMut(u64),
    seen_manifest: bool,
    position: usize,
}

impl ScanState<'_, '_> {
    fn corrupt(&self, reason: String) -> ScanError {
        ScanError::Archive(ArchiveError::corrupt(self.path, reason))
    }

    fn entries(
        &mut self,
        archive: &mut tar::Archive<Decompressed>,
        mut out: Option<&mut Extractor<'_>>,
    ) -> Result<(), ScanError> {
        let listed = &self.index.manifest.entries;
        for tar_entry in archive.entries().map_err(ScanError::Stream)? {
            let mut tar_entry = tar_entry.map_err(ScanError::Stream)?;
            let raw = tar_entry.path_bytes();
            let Ok(name) = std::str::from_utf8(&raw) else {
                return Err(self.corrupt(format!(
                    "entry #{} has a path that is not valid UTF-8",
                    self.position + 1
                )));
            };
            let entry_type = tar_entry.header().entry_type();
            let name = if entry_type == EntryType::Directory {
                name.strip_suffix('/').unwrap_or(name)
            } else {
                name
            }
            .to_owned();
            drop(raw);

            if self.seen_manifest {
                return Err(self.corrupt(format!(
                    "entry `{name}` follows the manifest, which must be the last entry"
                )));
            }
            let Some(expected) = listed.get(self.position) else {
                self.manifest_entry(&name, entry_type, &mut tar_entry)?;
                continue;
            };
            self.position += 1;
            if name != expected.path {
                return Err(self.corrupt(format!(
                    "entry #{} is `{name}` but the archive manifest lists `{}` there",
                    self.position, expected.path
                )));
            }
            let (kind, mtime) = self.check_header(&name, entry_type, &tar_entry, expected)?;
            let wanted = out.as_deref().is_some_and(|o| o.wants(&name));
            match kind {
                EntryKind::Dir => {
                    if let (true, Some(out)) = (wanted, out.as_deref_mut()) {
                        out.dir(expected, mtime)?;
                    }
                }
                EntryKind::Symlink => {
                    let target = tar_entry.link_name_bytes();
                    let target = target.as_deref().map(std::str::from_utf8);
                    let Some(Ok(target)) = target else {
                        return Err(self.corrupt(format!("symlink `{name}` has no valid target")));
                    };
                    if Some(target) != expected.target.as_deref() {
                        return Err(self.corrupt(format!(
                            "symlink `{name}` points to `{target}` but the archive manifest says `{}`",
                            expected.target.as_deref().unwrap_or_default()
                        )));
                    }
                    if let (true, Some(out)) = (wanted, out.as_deref_mut()) {
                        out.symlink(expected, target)?;
                    }
                }
                EntryKind::File => {
                    let dest = match (wanted, out.as_deref_mut()) {
                        (true, Some(out)) => Some(out.file(expected)?),
                        _ => None,
                    };
                    self.file(expected, &mut tar_entry, dest, mtime)?;
                }
            }
        }
        if !self.seen_manifest {
            return Err(self.corrupt(if self.position < listed.len() {
                format!(
                    "its tar stream ends at entry #{}, but its manifest lists {} entries (`{}` is missing)",
                    self.position + 1,
                    listed.len(),
                    listed[self.position].path
                )
            } else {
                format!("its tar stream ends without the manifest entry `{MANIFEST_ENTRY}`")
            }));
        }
        Ok(())
    }

    /// Checks an entry's header against its manifest entry; returns its kind and mtime.
    fn check_header(
        &self,
        name: &str,
        entry_type: EntryType,
        tar_entry: &tar::Entry<'_, Decompressed>,
        expected: &Entry,
    ) -> Result<(EntryKind, u64), ScanError> {
        let kind = match entry_type {
            EntryType::Regular | EntryType::Continuous => EntryKind::File,
            EntryType::Directory => EntryKind::Dir,
            EntryType::Symlink => EntryKind::Symlink,
            other => {
                return Err(self.corrupt(format!(
                    "entry `{name}` is of tar type {other:?}, which berth archives never contain"
                )));
            }
        };
        if kind != expected.kind {
            return Err(self.corrupt(format!(
                "entry `{name}` is a {kind:?} but the archive manifest says {:?}",
                expected.kind
            )));
        }
        let header = tar_entry.header();
        let mode = header
            .mode()
            .map_err(|e| self.corrupt(format!("entry `{name}` has an invalid mode: {e}")))?
            & 0o7777;
        if mode != expected.mode {
            return Err(self.corrupt(format!(
                "entry `{name}` has mode {mode:04o} but the archive manifest says {:04o}",
                expected.mode
            )));
        }
        let mtime = header.mtime().unwrap_or(0);
        let size = tar_entry.size();
        if size != expected.size {
            return Err(self.corrupt(format!(
                "entry `{name}` has {size} bytes but the archive manifest says {}",
                expected.size
            )));
        }
        Ok((kind, mtime))
    }

    /// Checks the entry after the last listed one: the manifest, equal to the index.
    fn manifest_entry(
        &mut self,
        name: &str,
        entry_type: EntryType,
        tar_entry: &mut tar::Entry<'_, Decompressed>,
    ) -> Result<(), ScanError> {
        if name != MANIFEST_ENTRY || entry_type != EntryType::Regular {
            return Err(self.corrupt(format!("entry `{name}` is not in the archive manifest")));
        }
        let json = &self.index.json;
        if tar_entry.size() != json.len() as u64 {
            return Err(self.corrupt(format!(
                "the `{MANIFEST_ENTRY}` inside the archive differs from its index"
            )));
        }
        let mut stored = Vec::with_capacity(json.len());
        tar_entry
            .read_to_end(&mut stored)
            .map_err(ScanError::Stream)?;
        if &stored != json {
            return Err(self.corrupt(format!(
                "the `{MANIFEST_ENTRY}` inside the archive differs from its index"
            )));
        }
        self.seen_manifest = true;
        Ok(())
    }

    /// Streams one file's content through the hash, and into `dest` if given.
    fn file(
        &mut self,
        expected: &Entry,
        tar_entry: &mut tar::Entry<'_, Decompressed>,
        mut dest: Option<(File, PathBuf)>,
        mtime: u64,
    ) -> Result<(), ScanError> {
        let mut hasher = Sha256::new();
        let mut remaining = expected.size;
        while remaining > 0 {
            let want = usize::try_from(remaining).map_or(self.buf.len(), |r| r.min(self.buf.len()));
            let n = match tar_entry.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(ScanError::Stream(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("entry `{}` ends early", expected.path),
                    )));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ScanError::Stream(e)),
            };
            let chunk = &self.buf[..n];
            hasher.update(chunk);
            if let Some((file, full)) = &mut dest {
                file.write_all(chunk)
                    .map_err(|e| ArchiveError::io("write", full.as_path(), e))?;
            }
            remaining -= n as u64;
            self.done += n as u64;
            (self.progress)(self.done);
        }
        let actual = hex::encode(hasher.finalize());
        let listed = expected.sha256.as_deref().unwrap_or_default();
        if actual != listed {
            return Err(self.corrupt(format!(
                "entry `{}` has SHA-256 {}… but the archive manifest says {}…",
                expected.path,
                &actual[..12],
                &listed[..12.min(listed.len())]
            )));
        }
        if let Some((file, full)) = dest {
            file.set_permissions(fs::Permissions::from_mode(
                expected.mode & EXTRACTED_MODE_MASK,
            ))
            .map_err(|e| ArchiveError::io("set the mode of", &full, e))?;
            file.set_modified(system_time(mtime))
                .map_err(|e| ArchiveError::io("set the mtime of", &full, e))?;
        }
        Ok(())
    }
}

/// Reads an archive's index and checks its signature against `trusted`, reading only the
/// end of the file: the manifest returned is the one the key holder wrote, though the
/// content has not been checked against it yet ([`crate::verify`] and [`crate::extract`]
/// do that).
pub fn read_signed_index(
    path: &Path,
    trusted: &[PublicKey],
) -> Result<ArchiveManifest, ArchiveError> {
    Ok(Archive::open(path, trusted)?.into_manifest())
}
