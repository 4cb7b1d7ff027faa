//! Why a backup or restore failed. [`BackupError::hint`] names what to do next.

use std::path::PathBuf;

/// Result of backup and restore operations.
pub type Result<T, E = BackupError> = std::result::Result<T, E>;

/// A failed backup, verification, prune or restore.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A lifecycle step (rendering, the supervisor, `up`) failed.
    #[error(transparent)]
    Lifecycle(#[from] berth_lifecycle::LifecycleError),
    /// A host operation failed.
    #[error(transparent)]
    Host(#[from] berth_host::HostError),
    /// The state database failed.
    #[error(transparent)]
    State(#[from] berth_state::StateError),
    /// Input (a key file, an archive's site config) is invalid.
    #[error(transparent)]
    Invalid(#[from] berth_model::Diagnostics),
    /// A journal or report could not be encoded or decoded.
    #[error("Failed to encode or decode JSON")]
    Json(#[from] serde_json::Error),
    /// A database tool failed.
    #[error("Database: {what}{}", if .stderr.is_empty() { String::new() } else { format!(":\n{stderr}") })]
    Database {
        /// What was being done.
        what: String,
        /// The tool's own message.
        stderr: String,
    },
    /// A backup archive is unreadable, corrupt, truncated, unsigned or not berth's.
    #[error(transparent)]
    Archive(#[from] berth_archive::ArchiveError),
    /// A backup target is unreachable, full or refused the operation.
    #[error(transparent)]
    Target(#[from] berth_target::TargetError),
    /// A backup or restore cannot go on; `hint` says what to do.
    #[error("{what}")]
    Cannot {
        /// What is wrong.
        what: String,
        /// What to do about it.
        hint: String,
    },
}

impl BackupError {
    /// What to do next, as a command line or a short instruction.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Lifecycle(e) => e.hint(),
            Self::Cannot { hint, .. } => Some(hint.clone()),
            Self::Archive(_) => Some(
                "the archive cannot be trusted: use another one (`berth backup list`); nothing was changed"
                    .to_owned(),
            ),
            _ => None,
        }
    }

    /// Wrap an I/O error with what was being done and to which path (the lifecycle's
    /// own wording, so every file error reads alike).
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let wrap = berth_lifecycle::LifecycleError::io(action, path);
        move |source| Self::Lifecycle(wrap(source))
    }
}
