//! What can go wrong building or opening a bundle.

use std::path::PathBuf;

/// A bundle could not be built or is not to be believed.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// The manifest is invalid (positioned diagnostics).
    #[error(transparent)]
    Manifest(#[from] berth_model::Diagnostics),
    /// The archive layer refused or failed (signature, checksum, I/O).
    #[error(transparent)]
    Archive(#[from] berth_archive::ArchiveError),
    /// A file could not be read or written.
    #[error(transparent)]
    Host(#[from] berth_host::HostError),
    /// The bundle is authentic but not what it must be.
    #[error("`{}` is not a release bundle berth can use: {reason}", path.display())]
    NotABundle {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A build input is unusable.
    #[error("{what}")]
    Input {
        /// What is wrong and what to do.
        what: String,
    },
}
