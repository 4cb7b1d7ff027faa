//! The berth supervisor: runs an app's services and jobs, and the client to control it.
//!
//! berth renders a [`SupervisionPlan`](berth_supervisor_protocol::SupervisionPlan)
//! from the app manifest and site config; this crate keeps it running, the way
//! runit or systemd would, but driven by that one plan:
//!
//! - **Daemon** ([`run_daemon`], [`DaemonConfig`]): one foreground process owning
//!   every service (its caller detaches it and redirects its output). Each service runs in its own process group with a
//!   clean environment (and its own user when the daemon is root), starts only once
//!   its dependencies are ready, is restarted when it crashes (at once after it had
//!   been up for a while, with exponential backoff when it keeps crashing quickly:
//!   [`BackoffConfig`]), and is stopped with its stop signal, then
//!   `SIGKILL` of the whole group after its stop timeout.
//! - **Readiness**: a TCP connect, an HTTP GET or a command, retried with backoff
//!   until the service's readiness timeout.
//! - **Logs**: each service's stdout and stderr go to `<log_dir>/current`, rotated by
//!   size to `current.1` … `current.<keep>`; as root the directory is 0750 and the files
//!   0640, owned by root and the service's group ([`open_log_file`] for other logs).
//!   [`service_logs`], [`last_lines`] and [`Follower`] read them back, following the
//!   rotation (`berth tail -f`).
//! - **Jobs**: periodic commands, one run at a time, killed after their timeout and
//!   skipped while a service they require is not ready.
//! - **Pause** ([`Client::pause`], [`Paused`]): `SIGSTOP` to a service's whole process
//!   group (e.g. while a backup copies its data) and `SIGCONT` on resume, on stop, when
//!   the control connection that asked for the pause closes, or when the pause's own
//!   timeout passes, so a caller that dies cannot leave the service frozen.
//! - **Control** ([`Client`], [`is_running`]): one JSON
//!   [`Request`](berth_supervisor_protocol::Request) line and one
//!   [`Response`](berth_supervisor_protocol::Response) line over a Unix socket with
//!   mode 0600 (bound in a private directory, then moved into place, so it is never
//!   open to others); each connection's peer must be root or the daemon's own user
//!   (`SO_PEERCRED`), others are refused and the refusal logged.
//!
//! # Example
//!
//! ```no_run
//! use berth_supervisor::{Client, DaemonConfig, BackoffConfig, is_running, run_daemon};
//! use berth_supervisor_protocol::{Request, Response, Target};
//!
//! # fn main() -> Result<(), berth_supervisor::SupervisorError> {
//! let paths = berth_layout::Paths::unversioned("/var/opt/berth/app".as_ref());
//! let cfg = DaemonConfig {
//!     socket: paths.supervisor_socket(),
//!     plan_path: paths.supervision_plan(),
//!     pid_file: paths.supervisor_pid(),
//!     log_file: paths.supervisor_log(),
//!     autostart: false,
//!     backoff: BackoffConfig::default(),
//! };
//! // The daemon runs until `Shutdown`; berth runs it as a separate process
//! // (`berth supervise`), a thread does for this example.
//! let daemon = std::thread::spawn({
//!     let cfg = cfg.clone();
//!     move || run_daemon(cfg)
//! });
//! while !is_running(&cfg.socket) {
//!     std::thread::sleep(std::time::Duration::from_millis(20));
//! }
//! let mut client = Client::connect(&cfg.socket)?;
//! match client.request(&Request::Start { target: Target::All })? {
//!     Response::Ok => eprintln!("everything is ready"),
//!     Response::Error { message } => eprintln!("{message}"),
//!     _ => {}
//! }
//! client.request(&Request::Shutdown)?;
//! daemon.join().expect("the daemon thread panicked")?;
//! # Ok(())
//! # }
//! ```

mod client;
mod config;
mod daemon;
mod error;
mod graph;
mod jobs;
mod logs;
mod memory;
pub mod metrics;
mod probe;
mod process;
mod say;
mod service;
mod supervisor;

pub use client::{Client, DEFAULT_REQUEST_TIMEOUT, Paused, is_running};
pub use config::{BackoffConfig, DaemonConfig};
pub use daemon::run_daemon;
pub use error::SupervisorError;
pub use logs::{
    Follower, LOG_DIR_MODE, LOG_FILE_MODE, LineSink, ServiceLog, last_lines, log_group,
    open_log_file, service_logs,
};
pub use probe::{http_get_status, probe_service_once};
