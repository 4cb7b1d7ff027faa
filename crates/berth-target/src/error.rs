//! The one error type of every target operation.

use std::io;
use std::path::PathBuf;

/// What went wrong with a backup target.
///
/// Every variant names the target (its [`crate::Target::describe`] text) so a message
/// stands on its own in a log. Remote messages are ssh's or sftp's own words, trimmed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// The target text could not be understood.
    #[error("invalid backup target {input:?}: {reason}")]
    InvalidSpec {
        /// The text as given (a password in a URL is masked).
        input: String,
        /// Why it was rejected, with a hint.
        reason: String,
    },
    /// An archive name that cannot be stored safely (empty, a path, a control character...).
    #[error("invalid archive name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The SSH connection failed or broke: host unreachable, connection refused or
    /// timed out, host key unknown, login refused.
    #[error("connection to {target} failed: {message}")]
    Connection {
        /// The target.
        target: String,
        /// ssh's own message.
        message: String,
    },
    /// The target exists but this user may not write (or read) there.
    #[error("permission denied on {target}: {message}")]
    PermissionDenied {
        /// The target.
        target: String,
        /// The system's or sftp's message.
        message: String,
    },
    /// The target directory does not exist (`check` creates it).
    #[error("the backup directory of {target} does not exist")]
    MissingDirectory {
        /// The target.
        target: String,
    },
    /// The target path exists but is not a directory.
    #[error("{target} is not a directory")]
    NotADirectory {
        /// The target.
        target: String,
    },
    /// `check` found less free space than needed.
    #[error(
        "not enough space on {target}: {} needed, {} free",
        crate::human_bytes(*needed),
        crate::human_bytes(*free)
    )]
    NotEnoughSpace {
        /// The target.
        target: String,
        /// Bytes needed.
        needed: u64,
        /// Bytes free for this user.
        free: u64,
    },
    /// The target ran out of space while writing; the partial file was removed.
    #[error("target is full: {target} ran out of space while writing {name}")]
    Full {
        /// The target.
        target: String,
        /// The archive being written.
        name: String,
    },
    /// An archive of that name is already on the target; it is never overwritten.
    #[error("{name} already exists on {target}")]
    AlreadyExists {
        /// The target.
        target: String,
        /// The archive name.
        name: String,
    },
    /// No archive of that name on the target.
    #[error("{name} not found on {target}")]
    NotFound {
        /// The target.
        target: String,
        /// The archive name.
        name: String,
    },
    /// A download would replace an existing local file.
    #[error("{} already exists", path.display())]
    LocalExists {
        /// The local file.
        path: PathBuf,
    },
    /// After a transfer the copy's size differs from the original's; the partial file is
    /// kept so a later attempt can resume or restart.
    #[error("transfer of {name} on {target} is incomplete: {actual} of {expected} bytes")]
    SizeMismatch {
        /// The target.
        target: String,
        /// The archive name.
        name: String,
        /// Size of the original.
        expected: u64,
        /// Size of the copy.
        actual: u64,
    },
    /// A local file operation failed.
    #[error("{target}: {context}: {source}")]
    Io {
        /// The target.
        target: String,
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An sftp command failed for a reason not covered above.
    #[error("{target}: {action} failed: {message}")]
    Remote {
        /// The target.
        target: String,
        /// What was being done ("upload", "list"...).
        action: String,
        /// sftp's message.
        message: String,
    },
    /// `sftp` could not be started.
    #[error("cannot run {program} (is openssh-client installed?): {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}
