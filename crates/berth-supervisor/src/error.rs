//! The one error type of this crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while running, starting or talking to the supervisor.
///
/// Each variant names the file or socket it is about; the underlying cause (if any)
/// is available through [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// The plan file could not be read.
    #[error("Failed to read supervision plan `{path}`")]
    ReadPlan {
        /// The plan file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The plan file is not a valid JSON `SupervisionPlan`.
    #[error("Failed to parse supervision plan `{path}`")]
    ParsePlan {
        /// The plan file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The plan parsed but cannot be run (duplicate names, unknown dependencies, cycles, bad signals).
    #[error("Supervision plan `{path}` is invalid: {reason}")]
    InvalidPlan {
        /// The plan file.
        path: PathBuf,
        /// What is wrong, as a sentence fragment.
        reason: String,
    },
    /// Another supervisor already answers on the control socket.
    #[error("Another supervisor is already running on control socket `{socket}`")]
    AlreadyRunning {
        /// The control socket.
        socket: PathBuf,
    },
    /// A leftover socket file from a dead supervisor could not be removed.
    #[error("Failed to remove stale control socket `{socket}`")]
    RemoveStaleSocket {
        /// The control socket.
        socket: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The control socket could not be created.
    #[error("Failed to bind control socket `{socket}`")]
    Bind {
        /// The control socket.
        socket: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The control socket could not be restricted to mode 0600.
    #[error("Failed to set mode 0600 on control socket `{socket}`")]
    SocketMode {
        /// The control socket.
        socket: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The pid file could not be written.
    #[error("Failed to write pid file `{path}`")]
    PidFile {
        /// The pid file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The async runtime or a signal handler could not be set up.
    #[error("Failed to set up the supervisor's event loop")]
    Runtime {
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The control socket could not be reached.
    #[error("Failed to connect to control socket `{socket}`")]
    Connect {
        /// The control socket.
        socket: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Reading from or writing to the control socket failed (this includes the read timeout).
    #[error("Failed to exchange a request with the supervisor on `{socket}`")]
    Exchange {
        /// The control socket.
        socket: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The supervisor closed the connection before answering.
    #[error("The supervisor on `{socket}` closed the connection without answering")]
    NoAnswer {
        /// The control socket.
        socket: PathBuf,
    },
    /// A service has no log (yet).
    #[error("No log for `{service}` at `{path}`")]
    NoLog {
        /// The service or job.
        service: String,
        /// Where its log would be.
        path: PathBuf,
    },
    /// A log file or the log directory could not be read or watched.
    #[error("Failed to read the log `{path}`")]
    ReadLog {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Waiting for the logs to change failed.
    #[error("Failed to follow the logs")]
    FollowLogs {
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The line sink of a [`Follower`](crate::Follower) failed (e.g. a closed pipe).
    #[error("Failed to print a log line")]
    PrintLog {
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The supervisor answered the request with an error.
    #[error("The supervisor on `{socket}` refused the request: {message}")]
    Refused {
        /// The control socket.
        socket: PathBuf,
        /// The supervisor's reason, a sentence.
        message: String,
    },
    /// The supervisor's answer (or our request) is not valid protocol JSON.
    #[error("Failed to encode or decode a control message on `{socket}`")]
    Protocol {
        /// The control socket.
        socket: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}
