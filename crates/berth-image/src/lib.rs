//! Container images without a container daemon: reproducible layers made from
//! directories, and the image written as an OCI image layout, an `oci-archive` and a
//! `docker-archive`.
//!
//! An image is an ordered list of layers (each a gzipped tar of one directory tree)
//! plus a config (architecture, entrypoint, user, labels…). [`Layer::from_dir`] names a
//! tree and how its entries are owned; [`write_layout`] streams every layer into the
//! layout's `blobs/sha256/`, then writes the config, the manifest and `index.json`;
//! [`write_oci_archive`] and [`write_docker_archive`] pack a layout into the tarballs
//! `skopeo` and `docker load` / `podman load` read.
//!
//! Everything is a function of the trees' content and the build's time
//! (`SOURCE_DATE_EPOCH`): entries are sorted, times clamped, owners mapped, JSON keys
//! sorted, gzip headers fixed. Two builds of the same trees give the same digests, and
//! a layer whose tree did not change keeps its digest from one image (or release) to
//! the next, so an upgrade ships only the layers that changed.

pub mod archive;
pub mod base;
pub mod config;
pub mod digest;
pub mod json;
pub mod layer;
pub mod layout;

use std::path::PathBuf;

pub use archive::{write_docker_archive, write_oci_archive};
pub use base::{BaseSpec, base_key, ensure_base};
pub use config::{Healthcheck, ImageConfig};
pub use layer::{Layer, LayerOptions, Owner, Ownership, WrittenLayer};
pub use layout::{Written, write_layout, write_referrer};

/// Media type of a gzipped layer.
pub const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Media type of an image config.
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of an image manifest.
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an image index.
pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// An image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file or directory could not be read or written.
    #[error("Failed to {action} `{}`: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A host write (through `berth_host`'s safe helpers) failed.
    #[error(transparent)]
    Host(#[from] berth_host::HostError),
    /// A layer's tree holds something a layer cannot carry.
    #[error(
        "`{}` is a {kind}: an image layer carries only directories, regular files and \
         symlinks; remove it from the tree (or create it when the container starts)",
        path.display()
    )]
    Unsupported {
        /// The entry.
        path: PathBuf,
        /// What it is (`device`, `FIFO`, `socket`).
        kind: &'static str,
    },
    /// The image's description is not valid.
    #[error("{what}")]
    Invalid {
        /// What is wrong and what to do.
        what: String,
    },
    /// A tool berth runs failed (or could not start).
    #[error("`{command}` failed ({status}){}", if output.is_empty() { String::new() } else { format!(":\n{output}") })]
    Tool {
        /// The command line.
        command: String,
        /// Its exit status, or why it could not start.
        status: String,
        /// The end of its output.
        output: String,
    },
    /// Something needs root and berth is not root.
    #[error("{what}")]
    NotRoot {
        /// What needs it and what to do.
        what: String,
    },
}

impl ImageError {
    /// An I/O error on `path` while doing `action`.
    pub fn io(
        action: &'static str,
        path: &std::path::Path,
    ) -> impl Fn(std::io::Error) -> Self + use<> {
        let path = path.to_path_buf();
        move |source| Self::Io {
            action,
            path: path.clone(),
            source,
        }
    }
}

/// What this crate's functions return.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

/// `epoch` as RFC 3339 UTC (`2023-11-14T22:13:20Z`).
pub(crate) fn rfc3339(epoch: u64) -> String {
    jiff::Timestamp::from_second(i64::try_from(epoch).unwrap_or(i64::MAX))
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
