//! A bill of materials for what berth ships: which components a release carries, at
//! which versions, under which licences, with package URLs an advisory scanner matches
//! on.
//!
//! [`inventory::of_release`] reads an extracted release bundle (berth, each bundled
//! component's interpreter and Python distributions, from their installed metadata);
//! [`cyclonedx::document`] and [`spdx::document`] write it as CycloneDX 1.6 and SPDX
//! 2.3 JSON. Both are pure functions of the inventory and the build's time: the same
//! release gives the same bytes (serial numbers and namespaces are derived from the
//! content, not drawn at random).

pub mod component;
pub mod crates;
pub mod cyclonedx;
pub mod dpkg;
pub mod inventory;
pub mod licence;
pub mod licences;
pub mod policy;
pub mod python;
pub mod spdx;

use std::path::PathBuf;

pub use component::{Component, Hash, Inventory, Kind, Subject};
pub use licence::{Licence, LicenceText};

/// A bill of materials could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    /// A file could not be read.
    #[error("Failed to {action} `{}`: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// What was read is not what it should be.
    #[error("{what}")]
    Input {
        /// What is wrong and what to do.
        what: String,
    },
}

impl SbomError {
    /// An I/O error on `path` while doing `action`.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}

/// `epoch` as RFC 3339 UTC (`2023-11-14T22:13:20Z`).
pub(crate) fn rfc3339(epoch: u64) -> String {
    jiff::Timestamp::from_second(i64::try_from(epoch).unwrap_or(i64::MAX))
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A name-based UUID (version 5 layout, SHA-256 of `content`): the same document gets
/// the same serial number, another gets another.
pub(crate) fn content_uuid(content: &[u8]) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(content);
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
