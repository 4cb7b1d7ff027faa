//! A Debian binary package, written reproducibly: an `ar` archive of `debian-binary`,
//! `control.tar.gz` and `data.tar.gz` (the members every dpkg reads and Debian's
//! policy checker accepts), every entry owned by root, timed at the epoch, in path
//! order, with a gzip header that carries no time or name, so the same inputs give the
//! same bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use md5::Digest;

use crate::PackageError;

/// What a file in the package holds.
#[derive(Debug, Clone)]
pub enum Content {
    /// These bytes.
    Bytes(Vec<u8>),
    /// The bytes of this file, read when the package is written.
    File(PathBuf),
}

/// One file of the installed tree.
#[derive(Debug, Clone)]
pub struct DataFile {
    /// Its absolute path once installed (`/opt/app/bin/berth`).
    pub path: String,
    /// Its permission bits.
    pub mode: u32,
    /// What it holds.
    pub content: Content,
}

/// A package to write.
#[derive(Debug, Clone)]
pub struct Deb {
    /// The `control` file's fields, in order, without `Installed-Size` (computed).
    pub control: Vec<(String, String)>,
    /// Files of the tree that are conffiles (absolute paths).
    pub conffiles: Vec<String>,
    /// Maintainer scripts by name (`preinst`, `postinst`, `prerm`, `postrm`).
    pub scripts: BTreeMap<String, String>,
    /// The installed files; their directories are added (0755).
    pub files: Vec<DataFile>,
    /// Every entry's time (`SOURCE_DATE_EPOCH`).
    pub epoch: u64,
}

/// Writes `deb` to `out` (a new file: one there already is never replaced), in one
/// rename once it is complete.
pub fn write(deb: &Deb, out: &Path) -> Result<(), PackageError> {
    let dir = out.parent().unwrap_or(Path::new("."));
    // An anonymous file: `data.tar.gz` is measured before it goes into the `ar`.
    let mut data = tempfile::tempfile_in(dir).map_err(PackageError::io("create", dir))?;
    let (md5sums, installed_kib) = write_data(deb, &mut data)?;
    let control = control_tar(deb, &md5sums, installed_kib)?;
    let size = data
        .metadata()
        .map_err(PackageError::io("read", out))?
        .len();
    data.seek(std::io::SeekFrom::Start(0))
        .map_err(PackageError::io("read", out))?;
    let (parent, name) = berth_host::beneath::in_parent(out)?;
    parent.write_new_with(
        &name,
        &mut |file| {
            let mut ar = ar::Builder::new(std::io::BufWriter::new(file));
            let member = |name: &str, size: u64| {
                let mut h = ar::Header::new(name.as_bytes().to_vec(), size);
                h.set_mtime(deb.epoch);
                h.set_uid(0);
                h.set_gid(0);
                h.set_mode(0o100_644);
                h
            };
            ar.append(&member("debian-binary", 4), &b"2.0\n"[..])?;
            ar.append(
                &member("control.tar.gz", control.len() as u64),
                &control[..],
            )?;
            ar.append(&member("data.tar.gz", size), &mut data)?;
            ar.into_inner()?.flush()
        },
        0o644,
        None,
    )?;
    Ok(())
}

/// `data.tar.gz` into `dest`; returns the `md5sums` text and the installed size in KiB.
pub(crate) fn write_data(
    deb: &Deb,
    out: &mut std::fs::File,
) -> Result<(String, u64), PackageError> {
    write_tree(deb, out, &|_| true)
}

/// Like [`write_data`], with entries only for the directories `keep_dir` names
/// (`/opt/app`): an archive unpacked over `/` by tar then leaves the system's own
/// directories as they are (tar would replace a `/lib` that is a symlink to `usr/lib`
/// with a directory, and reset the modes and times of `/usr`).
pub(crate) fn write_tree(
    deb: &Deb,
    out: &mut std::fs::File,
    keep_dir: &dyn Fn(&str) -> bool,
) -> Result<(String, u64), PackageError> {
    let dest = Path::new("data.tar.gz");
    let mut files: Vec<&DataFile> = deb.files.iter().collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let mut dirs = BTreeSet::new();
    for f in &files {
        check_path(&f.path)?;
        let mut p = Path::new(&f.path).parent();
        while let Some(d) = p {
            if d != Path::new("/") {
                dirs.insert(d.to_string_lossy().into_owned());
            }
            p = d.parent();
        }
    }
    let gz = flate2::GzBuilder::new().write(out, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    // Entries in path order, each directory before what it holds ("./" first).
    let mut entries: Vec<(String, Option<&DataFile>)> = dirs
        .into_iter()
        .filter(|d| keep_dir(d))
        .map(|d| (d, None))
        .collect();
    entries.extend(files.iter().map(|f| (f.path.clone(), Some(*f))));
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    if keep_dir("/") {
        append(&mut tar, deb.epoch, "./", 0o755, None)?;
    }
    let mut md5sums = String::new();
    let mut bytes: u64 = 0;
    let mut count: u64 = 1;
    for (path, file) in entries {
        let name = format!(".{path}");
        count += 1;
        match file {
            None => append(&mut tar, deb.epoch, &format!("{name}/"), 0o755, None)?,
            Some(f) => {
                let data = match &f.content {
                    Content::Bytes(b) => b.clone(),
                    Content::File(p) => {
                        let mut v = Vec::new();
                        std::fs::File::open(p)
                            .and_then(|mut file| file.read_to_end(&mut v))
                            .map_err(PackageError::io("read", p))?;
                        v
                    }
                };
                bytes += data.len() as u64;
                let _ = writeln!(
                    md5sums,
                    "{}  {}",
                    hex::encode(md5::Md5::digest(&data)),
                    path.trim_start_matches('/')
                );
                append(&mut tar, deb.epoch, &name, f.mode, Some(&data))?;
            }
        }
    }
    let gz = tar.into_inner().map_err(PackageError::io("write", dest))?;
    gz.finish().map_err(PackageError::io("write", dest))?;
    // dpkg's own estimate: bytes in KiB, rounded up, plus one per entry.
    Ok((md5sums, bytes.div_ceil(1024) + count))
}

/// One tar entry: a directory (no data) or a regular file.
fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    epoch: u64,
    name: &str,
    mode: u32,
    data: Option<&[u8]>,
) -> Result<(), PackageError> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(if data.is_some() {
        tar::EntryType::Regular
    } else {
        tar::EntryType::Directory
    });
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_username("root")
        .map_err(PackageError::io("write", name))?;
    h.set_groupname("root")
        .map_err(PackageError::io("write", name))?;
    h.set_mtime(epoch);
    h.set_size(data.map_or(0, |d| d.len() as u64));
    // Names as dpkg-deb writes them (`./etc/…`): the tar crate's own path setter drops
    // the `./`, so a name that fits the header goes in as it is.
    let bytes = name.as_bytes();
    if bytes.len() < 100 {
        let gnu = h.as_gnu_mut().ok_or_else(|| PackageError::Input {
            what: "not a GNU tar header".to_owned(),
        })?;
        gnu.name = [0; 100];
        gnu.name[..bytes.len()].copy_from_slice(bytes);
        h.set_cksum();
        tar.append(&h, data.unwrap_or_default())
            .map_err(PackageError::io("write", name))
    } else {
        tar.append_data(&mut h, name, data.unwrap_or_default())
            .map_err(PackageError::io("write", name))
    }
}

/// `control.tar.gz`: `control`, `md5sums`, `conffiles` and the maintainer scripts.
fn control_tar(deb: &Deb, md5sums: &str, installed_kib: u64) -> Result<Vec<u8>, PackageError> {
    let mut control = String::new();
    for (key, value) in &deb.control {
        let _ = writeln!(control, "{key}: {value}");
        if key == "Architecture" {
            let _ = writeln!(control, "Installed-Size: {installed_kib}");
        }
    }
    let mut members: BTreeMap<String, (u32, Vec<u8>)> = BTreeMap::new();
    members.insert("control".to_owned(), (0o644, control.into_bytes()));
    members.insert("md5sums".to_owned(), (0o644, md5sums.as_bytes().to_vec()));
    if !deb.conffiles.is_empty() {
        let mut text = deb.conffiles.join("\n");
        text.push('\n');
        members.insert("conffiles".to_owned(), (0o644, text.into_bytes()));
    }
    for (name, text) in &deb.scripts {
        members.insert(name.clone(), (0o755, text.as_bytes().to_vec()));
    }
    let gz = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::best());
    let mut tar = tar::Builder::new(gz);
    append(&mut tar, deb.epoch, "./", 0o755, None)?;
    for (name, (mode, data)) in &members {
        append(&mut tar, deb.epoch, &format!("./{name}"), *mode, Some(data))?;
    }
    tar.into_inner()
        .and_then(flate2::write::GzEncoder::finish)
        .map_err(PackageError::io("write", "control"))
}

/// An installed path: absolute, plain components only.
fn check_path(path: &str) -> Result<(), PackageError> {
    let ok = path.starts_with('/')
        && path[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains(['\n', '\\']));
    if ok {
        Ok(())
    } else {
        Err(PackageError::Input {
            what: format!("`{path}` is not a path a package can install"),
        })
    }
}

/// `text` gzip-compressed, with no time or name in the header (for `changelog.gz`).
pub fn gzip(text: &[u8]) -> Vec<u8> {
    let mut gz = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::best());
    // Writing into memory cannot fail.
    let _ = gz.write_all(text);
    gz.finish().unwrap_or_default()
}
