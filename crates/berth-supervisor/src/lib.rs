//! The berth supervisor: runs an app's services and jobs, and the client to control it.
//!
//! berth renders a [`SupervisionPlan`](berth_supervisor_protocol::SupervisionPlan)
//! from the app manifest and site config; this crate keeps it running, the way
//! runit or systemd would, but driven by that one plan:
//!
//! - **Daemon** ([`run_daemon`], [`daemonize_and_run`], [`DaemonConfig`]): one
//!   process owning every service. Each service runs in its own process group with a
//!   clean environment (and its own user when the daemon is root), starts only once
//!   its dependencies are ready, is restarted with exponential backoff
//!   ([`BackoffConfig`]) when it crashes, and is stopped with its stop signal, then
//!   `SIGKILL` of the whole group after its stop timeout.
//! - **Readiness**: a TCP connect, an HTTP GET or a command, retried with backoff
//!   until the service's readiness timeout.
//! - **Logs**: each service's stdout and stderr go to `<log_dir>/current`, rotated by
//!   size to `current.1` … `current.<keep>`.
//! - **Jobs**: periodic commands, one run at a time, killed after their timeout and
//!   skipped while a service they require is not ready.
//! - **Pause**: `SIGSTOP` to a service's whole process group (e.g. while a backup
//!   copies its data) and `SIGCONT` on resume, on stop, or when the pause's own
//!   timeout passes, so a caller that dies cannot leave the service frozen.
//! - **Control** ([`Client`], [`is_running`]): one JSON
//!   [`Request`](berth_supervisor_protocol::Request) line and one
//!   [`Response`](berth_supervisor_protocol::Response) line over a Unix socket with
//!   mode 0600.
//!
//! # Example
//!
//! ```no_run
//! use berth_supervisor::{Client, DaemonConfig, BackoffConfig, daemonize_and_run};
//! use berth_supervisor_protocol::{Request, Response, Target};
//!
//! # fn main() -> Result<(), berth_supervisor::SupervisorError> {
//! let cfg = DaemonConfig {
//!     socket: "/var/opt/app/run/supervisor.sock".into(),
//!     plan_path: "/var/opt/app/supervision.json".into(),
//!     pid_file: "/var/opt/app/run/supervisor.pid".into(),
//!     log_file: "/var/log/app/supervisor.log".into(),
//!     autostart: false,
//!     backoff: BackoffConfig::default(),
//! };
//! let pid = daemonize_and_run(cfg.clone())?; // returns once the socket answers
//! let mut client = Client::connect(&cfg.socket)?;
//! match client.request(&Request::Start { target: Target::All })? {
//!     Response::Ok => eprintln!("supervisor {pid}: everything is ready"),
//!     Response::Error { message } => eprintln!("{message}"),
//!     _ => {}
//! }
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
mod probe;
mod process;
mod say;
mod service;
mod supervisor;

pub use client::{Client, DEFAULT_REQUEST_TIMEOUT, is_running};
pub use config::{BackoffConfig, DaemonConfig};
pub use daemon::{daemonize_and_run, run_daemon};
pub use error::SupervisorError;
