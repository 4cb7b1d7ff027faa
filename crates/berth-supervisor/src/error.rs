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
    /// The daemon's log file (or `/dev/null`) could not be opened.
    #[error("Failed to open log file `{path}`")]
    LogFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `daemonize_and_run` was called from a process that already runs other threads.
    #[error(
        "Failed to start the supervisor daemon: the calling process already runs {threads} threads and cannot fork safely"
    )]
    NotSingleThreaded {
        /// Threads seen in the calling process.
        threads: usize,
    },
    /// `fork` failed.
    #[error("Failed to fork the supervisor daemon")]
    Fork {
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// The daemon process died before its control socket answered.
    #[error(
        "The supervisor daemon exited during startup ({status}); last lines of `{log_file}`:\n{tail}"
    )]
    DaemonDied {
        /// How it ended, e.g. `exit 1`.
        status: String,
        /// The daemon's log file.
        log_file: PathBuf,
        /// Its last lines.
        tail: String,
    },
    /// The daemon did not answer on its control socket before the deadline.
    #[error(
        "The supervisor daemon did not answer on `{socket}` within {secs} s; last lines of `{log_file}`:\n{tail}"
    )]
    DaemonTimeout {
        /// The control socket.
        socket: PathBuf,
        /// The deadline in seconds.
        secs: u64,
        /// The daemon's log file.
        log_file: PathBuf,
        /// Its last lines.
        tail: String,
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
