//! One layer: a directory tree as a reproducible tar, gzipped into a blob named by its
//! digest.
//!
//! The tar is a function of the tree's content, never of the machine that built it:
//! entries are sorted by name (a directory before what it holds), times are clamped
//! to `SOURCE_DATE_EPOCH`, owners come from [`LayerOptions`] rather than from whoever
//! ran the build, and no extended (pax) headers carry access or change times. Paths
//! are relative to the tree (`usr/bin/berth`), never the build directory's.
//!
//! Symlinks are stored as symlinks and never followed (a link pointing out of the tree
//! carries only its target's name); hard links are stored as separate regular files;
//! devices, FIFOs and sockets are refused, since an image's tree should hold none.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use berth_host::beneath::SafeDir;
use flate2::{Compression, GzBuilder};
use tar::{EntryType, Header};

use crate::digest::Hashing;
use crate::{ImageError, Result};

/// A numeric owner and group of the entries in a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl Owner {
    /// `root:root`.
    pub const ROOT: Self = Self { uid: 0, gid: 0 };
}

/// Who owns the entries of a layer, before [`LayerOptions::owners`] overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ownership {
    /// Everything `root:root` (the default): the build's own user (often uid 1000 on one
    /// machine, 1001 on another) must not leak into the image, and a file the service
    /// user must not change is owned by root anyway. What the service writes is given
    /// to it with [`LayerOptions::owners`].
    #[default]
    Root,
    /// The numeric ids the files have on disk: for a tree made as root with the
    /// owners it should have (a base root filesystem made by mmdebstrap).
    KeepNumeric,
}

/// How a tree becomes a layer.
#[derive(Debug, Clone, Default)]
pub struct LayerOptions {
    /// The build's time (`SOURCE_DATE_EPOCH`): no entry is newer.
    pub source_date_epoch: u64,
    /// Who owns the entries.
    pub ownership: Ownership,
    /// Owners of subtrees, as paths relative to the tree (`var/lib/app`): an entry at or
    /// under one of them gets its owner; the longest matching path wins.
    pub owners: Vec<(PathBuf, Owner)>,
    /// What made the layer, for the image's history (`berth: the app's payload`).
    pub created_by: String,
}

/// A directory tree to be written as one layer of an image.
#[derive(Debug, Clone)]
pub struct Layer {
    dir: PathBuf,
    options: LayerOptions,
    known: Option<WrittenLayer>,
}

/// A layer written into a layout's `blobs/sha256/`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WrittenLayer {
    /// `sha256:` of the gzipped blob: what manifests reference.
    pub digest: String,
    /// `sha256:` of the uncompressed tar: what the config's `rootfs.diff_ids` lists.
    pub diff_id: String,
    /// Size of the gzipped blob in bytes.
    pub size: u64,
    /// What made it ([`LayerOptions::created_by`]).
    pub created_by: String,
}

impl Layer {
    /// The tree under `dir` as a layer. Nothing is read until the layer is written.
    pub fn from_dir(dir: impl Into<PathBuf>, options: LayerOptions) -> Self {
        Self {
            dir: dir.into(),
            options,
            known: None,
        }
    }

    /// The same layer, known to have been written as `known` before (recorded by the
    /// caller for a tree that does not change, such as a cached base root): when the
    /// layout has that blob already, with that digest, it is not written again.
    #[must_use]
    pub fn with_known(mut self, known: WrittenLayer) -> Self {
        self.known = Some(known);
        self
    }

    /// `known`'s blob, when `blobs` has it with the right size and digest.
    fn reuse(&self, blobs: &SafeDir) -> Result<Option<WrittenLayer>> {
        let Some(known) = &self.known else {
            return Ok(None);
        };
        if known.created_by != self.options.created_by {
            return Ok(None);
        }
        let name = Path::new(crate::digest::hex_part(&known.digest));
        match blobs.stat(name)? {
            Some(st) if st.is_file() && st.size == known.size => {}
            _ => return Ok(None),
        }
        let mut file = blobs.open_file(name)?;
        let mut hashing = Hashing::new(io::sink());
        io::copy(&mut file, &mut hashing).map_err(ImageError::io("read", name))?;
        let (_, digest, _) = hashing.finish();
        Ok((digest == known.digest).then(|| known.clone()))
    }

    /// The tree's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How the tree is written.
    pub fn options(&self) -> &LayerOptions {
        &self.options
    }

    /// Writes the uncompressed tar of the tree to `out` (streamed: file contents are
    /// copied, never held whole) and gives `out` back.
    pub fn write_tar<W: Write>(&self, out: W) -> Result<W> {
        let meta = std::fs::metadata(&self.dir).map_err(ImageError::io("read", &self.dir))?;
        if !meta.is_dir() {
            return Err(ImageError::Invalid {
                what: format!(
                    "The layer's tree `{}` is not a directory: give the directory to pack",
                    self.dir.display()
                ),
            });
        }
        let mut builder = tar::Builder::new(out);
        self.walk(&mut builder, &self.dir, Path::new(""))?;
        builder
            .into_inner()
            .map_err(ImageError::io("write the tar of", &self.dir))
    }

    /// Writes the layer as a gzipped blob into `blobs` (a layout's `blobs/sha256/`),
    /// named by its digest. A blob already there (the same layer in another image) is
    /// kept as it is.
    pub fn write_blob(&self, blobs: &SafeDir) -> Result<WrittenLayer> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        if let Some(known) = self.reuse(blobs)? {
            return Ok(known);
        }
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = PathBuf::from(format!(".layer-{}-{n}.partial", std::process::id()));
        let mut failure: Option<ImageError> = None;
        let mut sums = None;
        blobs
            .write_new_with(
                &tmp,
                &mut |file| {
                    // Fixed gzip header: no file name, mtime 0, the same OS byte everywhere.
                    let gz = GzBuilder::new().mtime(0).operating_system(255).write(
                        Hashing::new(io::BufWriter::with_capacity(1 << 16, file)),
                        Compression::default(),
                    );
                    let tar = match self.write_tar(Hashing::new(gz)) {
                        Ok(tar) => tar,
                        Err(e) => {
                            failure = Some(e);
                            return Err(io::Error::other("the layer's tree could not be read"));
                        }
                    };
                    let (gz, diff_id, _) = tar.finish();
                    let (buffered, digest, size) = gz.finish()?.finish();
                    buffered
                        .into_inner()
                        .map_err(io::IntoInnerError::into_error)?;
                    sums = Some((digest, diff_id, size));
                    Ok(())
                },
                0o644,
                None,
            )
            .map_err(|e| failure.take().unwrap_or(ImageError::Host(e)))?;
        let Some((digest, diff_id, size)) = sums else {
            return Err(ImageError::Invalid {
                what: "A layer was written without its digest being computed".to_owned(),
            });
        };
        let name = Path::new(crate::digest::hex_part(&digest));
        if blobs.stat(name)?.is_some() {
            blobs.remove_file(&tmp)?;
        } else if let Err(e) = blobs.rename(&tmp, blobs, name) {
            // Another build wrote the same blob meanwhile: same name, same bytes.
            blobs.remove_file(&tmp)?;
            if blobs.stat(name)?.is_none() {
                return Err(e.into());
            }
        }
        Ok(WrittenLayer {
            digest,
            diff_id,
            size,
            created_by: self.options.created_by.clone(),
        })
    }

    fn owner_of(&self, rel: &Path, meta: &std::fs::Metadata) -> Owner {
        let best = self
            .options
            .owners
            .iter()
            .filter(|(p, _)| rel.starts_with(p))
            .max_by_key(|(p, _)| p.components().count());
        match (best, self.options.ownership) {
            (Some((_, owner)), _) => *owner,
            (None, Ownership::Root) => Owner::ROOT,
            (None, Ownership::KeepNumeric) => Owner {
                uid: meta.uid(),
                gid: meta.gid(),
            },
        }
    }

    fn header(&self, rel: &Path, meta: &std::fs::Metadata, kind: EntryType) -> Header {
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(meta.mode() & 0o7777);
        let owner = self.owner_of(rel, meta);
        header.set_uid(owner.uid.into());
        header.set_gid(owner.gid.into());
        let mtime = u64::try_from(meta.mtime()).unwrap_or(0);
        header.set_mtime(mtime.min(self.options.source_date_epoch));
        header.set_size(0);
        header
    }

    fn walk<W: Write>(&self, builder: &mut tar::Builder<W>, abs: &Path, rel: &Path) -> Result<()> {
        let mut names: Vec<OsString> = std::fs::read_dir(abs)
            .map_err(ImageError::io("list", abs))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(ImageError::io("list", abs))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let abs = abs.join(&name);
            let rel = rel.join(&name);
            let write_err = ImageError::io("write the tar entry for", &abs);
            let meta = std::fs::symlink_metadata(&abs).map_err(ImageError::io("read", &abs))?;
            let kind = meta.file_type();
            if kind.is_dir() {
                let mut header = self.header(&rel, &meta, EntryType::Directory);
                builder
                    .append_data(&mut header, &rel, io::empty())
                    .map_err(write_err)?;
                self.walk(builder, &abs, &rel)?;
            } else if kind.is_symlink() {
                let target = std::fs::read_link(&abs).map_err(ImageError::io("read", &abs))?;
                let mut header = self.header(&rel, &meta, EntryType::Symlink);
                builder
                    .append_link(&mut header, &rel, &target)
                    .map_err(write_err)?;
            } else if kind.is_file() {
                // O_NOFOLLOW: a file swapped for a symlink since the listing is refused,
                // not followed; the size and mode are those of what was opened.
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&abs)
                    .map_err(ImageError::io("open", &abs))?;
                let meta = file.metadata().map_err(ImageError::io("read", &abs))?;
                let mut header = self.header(&rel, &meta, EntryType::Regular);
                header.set_size(meta.len());
                let exact = Exact {
                    inner: file,
                    left: meta.len(),
                };
                builder
                    .append_data(&mut header, &rel, exact)
                    .map_err(write_err)?;
            } else {
                let what = if kind.is_block_device() || kind.is_char_device() {
                    "device"
                } else if kind.is_fifo() {
                    "FIFO"
                } else {
                    "socket"
                };
                return Err(ImageError::Unsupported {
                    path: abs,
                    kind: what,
                });
            }
        }
        Ok(())
    }
}

/// A file's content, exactly as long as its header says: a file that shrinks while it
/// is read is an error, not a short entry that would corrupt the rest of the tar.
struct Exact {
    inner: File,
    left: u64,
}

impl Read for Exact {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was read; build from a tree nothing changes",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};
    use std::time::{Duration, SystemTime};

    use super::*;

    const EPOCH: u64 = 1_700_000_000;

    fn tree(root: &Path, mtime: u64) {
        let long = "a-rather-long-directory-name-that-goes-on".repeat(3);
        for dir in ["b", "a/z", &format!("a/{long}")] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::fs::write(root.join("a.txt"), "a").unwrap();
        std::fs::write(root.join("a/z/file"), "z").unwrap();
        std::fs::write(root.join(format!("a/{long}/file")), "long").unwrap();
        std::fs::write(root.join("b/old"), "old").unwrap();
        std::fs::set_permissions(root.join("a.txt"), std::fs::Permissions::from_mode(0o4750))
            .unwrap();
        symlink("../a.txt", root.join("b/link")).unwrap();
        std::fs::hard_link(root.join("a.txt"), root.join("b/hard")).unwrap();
        let at = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        for p in ["a.txt", "a/z/file", "a/z", "a", "b"] {
            std::fs::File::open(root.join(p))
                .unwrap()
                .set_modified(at(mtime))
                .unwrap();
        }
        // Older than the build: kept as it is.
        std::fs::File::open(root.join("b/old"))
            .unwrap()
            .set_modified(at(1000))
            .unwrap();
    }

    fn layer(root: &Path, owners: Vec<(PathBuf, Owner)>) -> Layer {
        Layer::from_dir(
            root,
            LayerOptions {
                source_date_epoch: EPOCH,
                owners,
                ..LayerOptions::default()
            },
        )
    }

    /// (path, type, mode, uid, gid, mtime) of every entry.
    fn entries(tar: &[u8]) -> Vec<(String, u8, u32, u64, u64, u64)> {
        tar::Archive::new(tar)
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.entry_type().as_byte(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mtime().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn the_tar_depends_on_the_content_only() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        tree(one.path(), EPOCH + 5);
        tree(&two.path().join("elsewhere"), EPOCH + 50_000);
        let a = layer(one.path(), Vec::new()).write_tar(Vec::new()).unwrap();
        let b = layer(&two.path().join("elsewhere"), Vec::new())
            .write_tar(Vec::new())
            .unwrap();
        assert!(
            a == b,
            "two trees with the same content gave different tars"
        );
        // No path of the build machine, no pax records (atime, ctime), no owner names.
        let text = String::from_utf8_lossy(&a);
        assert!(!text.contains(&*one.path().to_string_lossy()));
        for e in entries(&a) {
            assert!(!matches!(e.1, b'x' | b'g'), "pax header in {e:?}");
        }
        for e in tar::Archive::new(a.as_slice()).entries().unwrap() {
            let e = e.unwrap();
            assert_eq!(e.header().username().unwrap(), Some(""));
        }
    }

    #[test]
    fn entries_are_sorted_owned_and_dated_as_asked() {
        let tmp = tempfile::tempdir().unwrap();
        tree(tmp.path(), EPOCH + 5);
        let owners = vec![(
            PathBuf::from("b"),
            Owner {
                uid: 1000,
                gid: 1000,
            },
        )];
        let tar = layer(tmp.path(), owners).write_tar(Vec::new()).unwrap();
        let got = entries(&tar);
        let long = "a-rather-long-directory-name-that-goes-on".repeat(3);
        let names: Vec<&str> = got.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "a",
                &format!("a/{long}"),
                &format!("a/{long}/file"),
                "a/z",
                "a/z/file",
                "a.txt",
                "b",
                "b/hard",
                "b/link",
                "b/old",
            ]
        );
        let by_name = |n: &str| got.iter().find(|e| e.0 == n).unwrap().clone();
        // Modes kept (setuid too), root by default, clamped to the build's time.
        assert_eq!(
            by_name("a.txt"),
            ("a.txt".into(), b'0', 0o4750, 0, 0, EPOCH)
        );
        assert_eq!(by_name("a").1, b'5');
        // The subtree given to 1000:1000; an older time kept.
        assert_eq!(
            by_name("b/old"),
            ("b/old".into(), b'0', 0o644, 1000, 1000, 1000)
        );
        assert_eq!(by_name("b/link").1, b'2');
        // A hard link is a file of its own.
        assert_eq!(by_name("b/hard").1, b'0');
    }

    #[test]
    fn a_tree_that_is_not_a_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("f"), "").unwrap();
        let err = layer(&tmp.path().join("f"), Vec::new())
            .write_tar(Vec::new())
            .unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }
}
