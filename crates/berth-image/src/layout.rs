//! The OCI image layout: a directory `skopeo`, `umoci` and `podman` read an image from
//! (`oci:DIR:TAG`).
//!
//! ```text
//! oci-layout                  {"imageLayoutVersion":"1.0.0"}
//! index.json                  the manifests, each annotated with its tag
//! blobs/sha256/<hex>          layers, configs and manifests, named by their digest
//! ```
//!
//! Several images may share one layout (one per service role): each tag has its
//! manifest in `index.json`, and a layer they share is one blob.

use std::path::{Path, PathBuf};

use berth_host::beneath::SafeDir;
use serde::Serialize;

use crate::config::ImageConfig;
use crate::layer::{Layer, WrittenLayer};
use crate::{ImageError, MEDIA_CONFIG, MEDIA_INDEX, MEDIA_LAYER, MEDIA_MANIFEST, Result};

/// The annotation naming a manifest in `index.json`: the `TAG` of `oci:DIR:TAG`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An image written into a layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// `sha256:` of the manifest: the image's identity (what `podman images --digests`
    /// shows once it is pushed).
    pub manifest_digest: String,
    /// `sha256:` of the config: the image id Docker and podman show.
    pub config_digest: String,
    /// Its layers, in order.
    pub layers: Vec<WrittenLayer>,
}

/// A content descriptor: what a manifest or index points at.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of what it points at.
    pub media_type: String,
    /// `sha256:` of it.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// Annotations (the tag, in `index.json`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
    /// What kind of artifact a referrer manifest it points at carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    fn new(media_type: &str, digest: &str, size: u64) -> Self {
        Self {
            media_type: media_type.to_owned(),
            digest: digest.to_owned(),
            size,
            annotations: std::collections::BTreeMap::new(),
            artifact_type: None,
        }
    }
}

/// An image manifest: the config and the layers.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`MEDIA_MANIFEST`].
    pub media_type: String,
    /// The config blob.
    pub config: Descriptor,
    /// The layer blobs, the base first.
    pub layers: Vec<Descriptor>,
    /// For a referrer: what it carries (`application/vnd.cyclonedx+json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// For a referrer: the manifest it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// An image index: the layout's `index.json`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// [`MEDIA_INDEX`].
    #[serde(default)]
    pub media_type: String,
    /// One manifest per tag.
    pub manifests: Vec<Descriptor>,
}

/// Writes the image made of `layers` (the base first) and `config` into the layout at
/// `dir` (made if missing), tagged `tag`. Layers are streamed into
/// `blobs/sha256/`; blobs already there are kept, and other tags' manifests in
/// `index.json` stay, so images written one after the other share their common layers.
pub fn write_layout(
    dir: &Path,
    layers: &[Layer],
    config: &ImageConfig,
    tag: &str,
) -> Result<Written> {
    check_tag(tag)?;
    config.validate()?;
    berth_host::fsutil::ensure_dir(dir, 0o755)?;
    let root = SafeDir::open_trusted(dir)?;
    let blobs = root.create_dir_all(Path::new("blobs/sha256"), 0o755, None)?;

    let written = layers
        .iter()
        .map(|layer| layer.write_blob(&blobs))
        .collect::<Result<Vec<_>>>()?;
    let diff_ids: Vec<String> = written.iter().map(|l| l.diff_id.clone()).collect();
    let created_by: Vec<String> = written.iter().map(|l| l.created_by.clone()).collect();

    let config_json = config.to_json(&diff_ids, &created_by);
    let config_digest = write_blob(&blobs, &config_json)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: MEDIA_MANIFEST.to_owned(),
        config: Descriptor::new(MEDIA_CONFIG, &config_digest, config_json.len() as u64),
        layers: written
            .iter()
            .map(|l| Descriptor::new(MEDIA_LAYER, &l.digest, l.size))
            .collect(),
        artifact_type: None,
        subject: None,
        annotations: std::collections::BTreeMap::new(),
    };
    let manifest_json = crate::json::to_vec(&manifest);
    let manifest_digest = write_blob(&blobs, &manifest_json)?;

    let mut index = read_index(&root)?.unwrap_or(Index {
        schema_version: 2,
        media_type: MEDIA_INDEX.to_owned(),
        manifests: Vec::new(),
    });
    MEDIA_INDEX.clone_into(&mut index.media_type);
    index
        .manifests
        .retain(|m| m.annotations.get(REF_NAME).map(String::as_str) != Some(tag));
    let mut entry = Descriptor::new(MEDIA_MANIFEST, &manifest_digest, manifest_json.len() as u64);
    entry
        .annotations
        .insert(REF_NAME.to_owned(), tag.to_owned());
    index.manifests.push(entry);
    write_index(&root, &mut index)?;
    Ok(Written {
        manifest_digest,
        config_digest,
        layers: written,
    })
}

/// Sorted by tag, then digest (referrers have no tag): the same set of images gives the
/// same index, whatever the order they were written in.
fn write_index(root: &SafeDir, index: &mut Index) -> Result<()> {
    index.manifests.sort_by(|a, b| {
        (a.annotations.get(REF_NAME), &a.digest).cmp(&(b.annotations.get(REF_NAME), &b.digest))
    });
    root.write_atomic(
        Path::new("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
        0o644,
        None,
    )?;
    root.write_atomic(
        Path::new("index.json"),
        &crate::json::to_vec(index),
        0o644,
        None,
    )?;
    Ok(())
}

/// Media type of the empty config of an artifact manifest (its blob is `{}`).
pub const MEDIA_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// Writes `content` (of media type `artifact_type`) into the layout at `dir` as an OCI
/// 1.1 referrer of the image whose manifest is `subject_digest`: an artifact manifest
/// whose `subject` is that image, listed in `index.json` with its `artifactType`, the
/// way a registry's referrers API lists it (`oras discover`, `cosign`). A referrer of
/// the same type and subject written before is replaced. Returns the referrer
/// manifest's digest.
pub fn write_referrer(
    dir: &Path,
    subject_digest: &str,
    artifact_type: &str,
    content: &[u8],
    annotations: &std::collections::BTreeMap<String, String>,
) -> Result<String> {
    let root = SafeDir::open_trusted(dir)?;
    let mut index = read_index(&root)?.ok_or_else(|| ImageError::Invalid {
        what: format!(
            "`{}` has no index.json: write the image first",
            dir.display()
        ),
    })?;
    let subject = index
        .manifests
        .iter()
        .find(|m| m.digest == subject_digest && m.artifact_type.is_none())
        .map(|m| Descriptor::new(&m.media_type, &m.digest, m.size))
        .ok_or_else(|| ImageError::Invalid {
            what: format!(
                "The layout `{}` has no image {subject_digest}: write it first",
                dir.display()
            ),
        })?;
    let blobs = root.create_dir_all(Path::new("blobs/sha256"), 0o755, None)?;
    let empty = write_blob(&blobs, b"{}")?;
    let content_digest = write_blob(&blobs, content)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: MEDIA_MANIFEST.to_owned(),
        config: Descriptor::new(MEDIA_EMPTY, &empty, 2),
        layers: vec![Descriptor::new(
            artifact_type,
            &content_digest,
            content.len() as u64,
        )],
        artifact_type: Some(artifact_type.to_owned()),
        subject: Some(subject),
        annotations: annotations.clone(),
    };
    let json = crate::json::to_vec(&manifest);
    let digest = write_blob(&blobs, &json)?;
    let mut stale = Vec::new();
    for m in &index.manifests {
        if m.artifact_type.as_deref() == Some(artifact_type) {
            let other = read_manifest(&root, &m.digest)?;
            if other.subject.as_ref().map(|s| s.digest.as_str()) == Some(subject_digest) {
                stale.push(m.digest.clone());
            }
        }
    }
    index.manifests.retain(|m| !stale.contains(&m.digest));
    let mut entry = Descriptor::new(MEDIA_MANIFEST, &digest, json.len() as u64);
    entry.artifact_type = Some(artifact_type.to_owned());
    entry.annotations = annotations.clone();
    index.manifests.push(entry);
    write_index(&root, &mut index)?;
    Ok(digest)
}

/// The referrers in the layout at `root` of the image `subject_digest`: each one's
/// manifest digest and manifest.
pub fn referrers(root: &SafeDir, subject_digest: &str) -> Result<Vec<(String, Manifest)>> {
    let mut out = Vec::new();
    for m in read_index(root)?.map(|i| i.manifests).unwrap_or_default() {
        if m.artifact_type.is_some() {
            let manifest = read_manifest(root, &m.digest)?;
            if manifest
                .subject
                .as_ref()
                .is_some_and(|s| s.digest == subject_digest)
            {
                out.push((m.digest.clone(), manifest));
            }
        }
    }
    Ok(out)
}

/// The layout's `index.json`, if it has one.
pub fn read_index(root: &SafeDir) -> Result<Option<Index>> {
    if root.stat(Path::new("index.json"))?.is_none() {
        return Ok(None);
    }
    let bytes = root.read(Path::new("index.json"))?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ImageError::Invalid {
            what: format!(
                "`{}` is not an OCI image index ({e}): write the image into an empty directory",
                root.path().join("index.json").display()
            ),
        })
}

/// The manifest `digest` of the layout at `root`.
pub fn read_manifest(root: &SafeDir, digest: &str) -> Result<Manifest> {
    let path = blob_path(digest);
    let bytes = root.read(&path)?;
    serde_json::from_slice(&bytes).map_err(|e| ImageError::Invalid {
        what: format!(
            "`{}` is not an OCI image manifest ({e}): rewrite the layout",
            root.path().join(&path).display()
        ),
    })
}

/// Where the blob `digest` is in a layout: `blobs/sha256/<hex>`.
pub fn blob_path(digest: &str) -> PathBuf {
    Path::new("blobs/sha256").join(crate::digest::hex_part(digest))
}

/// Writes `bytes` as a blob named by their digest (kept if already there).
fn write_blob(blobs: &SafeDir, bytes: &[u8]) -> Result<String> {
    let digest = crate::digest::of(bytes);
    let name = Path::new(crate::digest::hex_part(&digest));
    if blobs.stat(name)?.is_none() {
        match blobs.write_new(name, bytes, 0o644, None) {
            Ok(()) | Err(berth_host::HostError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(digest)
}

/// A tag as the OCI spec allows (and as `oci:DIR:TAG` can name it).
fn check_tag(tag: &str) -> Result<()> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && tag.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(ImageError::Invalid {
            what: format!(
                "Tag `{tag}` is not a valid image tag: use letters, digits, `.`, `_` and `-` \
                 (starting with a letter or digit, at most 128)"
            ),
        })
    }
}
