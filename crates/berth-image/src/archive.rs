//! A layout as one file: the `oci-archive` (`skopeo copy oci-archive:FILE:TAG …`,
//! `podman load`) and the `docker-archive` (`docker load`, `podman load`).
//!
//! Both are plain tars of the layout, entries sorted, owned by `0:0`, with mtime 0, so
//! the same layout gives the same bytes. Only blobs that an included manifest
//! references go in: leftovers of earlier builds in the layout directory change
//! nothing. The `docker-archive` is what Docker 25 and later save: the OCI layout of
//! one image plus the `manifest.json` older Dockers and containers/image read.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use berth_host::beneath::SafeDir;
use serde::Serialize;
use tar::{EntryType, Header};

use crate::layout::{Descriptor, Index, REF_NAME, blob_path, read_index, read_manifest};
use crate::{ImageError, Result};

/// Writes the layout at `layout_dir` (every tag in it) as an `oci-archive` at
/// `out_file`, atomically.
pub fn write_oci_archive(layout_dir: &Path, out_file: &Path) -> Result<()> {
    let root = SafeDir::open_trusted(layout_dir)?;
    let index = existing_index(&root)?;
    let blobs = referenced_blobs(&root, &index.manifests)?;
    let files = vec![
        (
            "index.json".to_owned(),
            Content::File(PathBuf::from("index.json")),
        ),
        (
            "oci-layout".to_owned(),
            Content::File(PathBuf::from("oci-layout")),
        ),
    ];
    write_tar(&root, &blobs, &files, out_file)
}

/// Writes the image tagged `tag` in the layout at `layout_dir` as a `docker-archive`
/// at `out_file`, named `repo_tag` once loaded (`localhost/app-web:1.2.3`).
pub fn write_docker_archive(
    layout_dir: &Path,
    tag: &str,
    repo_tag: &str,
    out_file: &Path,
) -> Result<()> {
    if repo_tag.is_empty() || repo_tag.chars().any(char::is_whitespace) {
        return Err(ImageError::Invalid {
            what: format!(
                "`{repo_tag}` is not an image name: give one such as `localhost/app:1.0`"
            ),
        });
    }
    let root = SafeDir::open_trusted(layout_dir)?;
    let index = existing_index(&root)?;
    let Some(entry) = index
        .manifests
        .iter()
        .find(|m| m.annotations.get(REF_NAME).map(String::as_str) == Some(tag))
    else {
        return Err(ImageError::Invalid {
            what: format!(
                "The layout `{}` has no image tagged `{tag}`: write it first",
                layout_dir.display()
            ),
        });
    };
    let manifest = read_manifest(&root, &entry.digest)?;
    let blobs = referenced_blobs(&root, std::slice::from_ref(entry))?;
    let as_path = |d: &Descriptor| blob_path(&d.digest).to_string_lossy().into_owned();
    let docker = [DockerManifest {
        config: as_path(&manifest.config),
        repo_tags: vec![repo_tag.to_owned()],
        layers: manifest.layers.iter().map(as_path).collect(),
    }];
    // Only `manifest.json`, no `index.json` or `oci-layout` beside it (which Docker 25
    // also writes): `podman load` reads a tar that has them as an `oci-archive`, naming
    // the image after the layout's tag and dropping its health check. Every `docker
    // load` reads this form.
    let files = vec![(
        "manifest.json".to_owned(),
        Content::Bytes(crate::json::to_vec(&docker)),
    )];
    write_tar(&root, &blobs, &files, out_file)
}

/// One image of `manifest.json`, as `docker load` reads it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

enum Content {
    File(PathBuf),
    Bytes(Vec<u8>),
}

fn existing_index(root: &SafeDir) -> Result<Index> {
    read_index(root)?.ok_or_else(|| ImageError::Invalid {
        what: format!(
            "`{}` is not an OCI image layout (it has no index.json): write the image first",
            root.path().display()
        ),
    })
}

/// The blobs the manifests reference, with the manifests themselves.
fn referenced_blobs(root: &SafeDir, manifests: &[Descriptor]) -> Result<BTreeSet<String>> {
    let mut blobs = BTreeSet::new();
    for entry in manifests {
        let manifest = read_manifest(root, &entry.digest)?;
        blobs.insert(entry.digest.clone());
        blobs.insert(manifest.config.digest.clone());
        blobs.extend(manifest.layers.iter().map(|l| l.digest.clone()));
    }
    Ok(blobs
        .iter()
        .map(|d| crate::digest::hex_part(d).to_owned())
        .collect())
}

/// The tar: `blobs/`, `blobs/sha256/`, the blobs, then `files` (sorted by the caller:
/// each name sorts after `blobs/`).
fn write_tar(
    root: &SafeDir,
    blobs: &BTreeSet<String>,
    files: &[(String, Content)],
    out_file: &Path,
) -> Result<()> {
    let (dir, name) = berth_host::beneath::in_parent(out_file)?;
    let mut failure = None;
    dir.write_atomic_with(
        &name,
        &mut |file| {
            let mut tar = tar::Builder::new(io::BufWriter::with_capacity(1 << 16, file));
            let written = (|| -> Result<()> {
                let werr = ImageError::io("write", out_file);
                append_dir(&mut tar, "blobs").map_err(&werr)?;
                append_dir(&mut tar, "blobs/sha256").map_err(&werr)?;
                for hex in blobs {
                    let rel = Path::new("blobs/sha256").join(hex);
                    let blob: File = root.open_file(&rel)?;
                    let len = blob
                        .metadata()
                        .map_err(ImageError::io("read", &root.path().join(&rel)))?
                        .len();
                    append_file(&mut tar, &rel.to_string_lossy(), len, blob).map_err(&werr)?;
                }
                for (name, content) in files {
                    let bytes = match content {
                        Content::File(rel) => root.read(rel)?,
                        Content::Bytes(b) => b.clone(),
                    };
                    append_file(&mut tar, name, bytes.len() as u64, bytes.as_slice())
                        .map_err(&werr)?;
                }
                Ok(())
            })();
            if let Err(e) = written {
                failure = Some(e);
                return Err(io::Error::other("the layout could not be read"));
            }
            tar.into_inner()?.flush()
        },
        0o644,
        None,
    )
    .map_err(|e| failure.take().unwrap_or(ImageError::Host(e)))
}

fn fixed_header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(size);
    header
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, name: &str) -> io::Result<()> {
    let mut header = fixed_header(EntryType::Directory, 0o755, 0);
    tar.append_data(&mut header, name, io::empty())
}

fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    data: impl io::Read,
) -> io::Result<()> {
    let mut header = fixed_header(EntryType::Regular, 0o644, size);
    tar.append_data(&mut header, name, io::Read::take(data, size))
}
