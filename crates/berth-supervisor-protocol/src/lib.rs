//! The contract between berth and its supervisor daemon.
//!
//! Two kinds of types live here:
//!
//! - **Specs** ([`ServiceSpec`], [`JobSpec`], [`SupervisionPlan`]): the fully
//!   rendered description of what must run. `berth-render` produces them from the
//!   app manifest and the site config; the supervisor only consumes them. Nothing in
//!   a spec is a template any more: every path is absolute, every duration is known.
//! - **Control messages** ([`Request`], [`Response`]): one JSON object per line over
//!   the supervisor's Unix socket (mode 0600).
//!
//! ```
//! use berth_supervisor_protocol::{Request, Target};
//! let line = serde_json::to_string(&Request::Restart { target: Target::One("web".into()) }).unwrap();
//! assert_eq!(line, r#"{"op":"restart","target":{"one":"web"}}"#);
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `PATH` of the minimal clean environment every service, job and hook starts from.
pub const BASE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything the supervisor runs for one instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisionPlan {
    /// Long-running services, in no particular order (dependencies decide the order).
    pub services: Vec<ServiceSpec>,
    /// Periodic jobs.
    pub jobs: Vec<JobSpec>,
    /// Where to serve metrics in Prometheus' text format, if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsSpec>,
}

/// The supervisor's metrics endpoint (`GET /metrics`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSpec {
    /// `127.0.0.1:9464`.
    pub listen: String,
    /// The app's name, a label on every series.
    pub app: String,
    /// The record `berth backup create` keeps of the last backup (JSON,
    /// [`LastBackup`]): read at each scrape.
    pub last_backup: PathBuf,
    /// The app's own metrics endpoints, by service (the manifest's `metrics`): listed
    /// as `berth_app_metrics_endpoint_info` for discovery.
    #[serde(default)]
    pub app_endpoints: BTreeMap<String, String>,
}

/// What `berth backup create` records of the last backup it wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastBackup {
    /// Unix time the backup was finished.
    pub finished_unix: u64,
    /// The archive's size in bytes.
    pub bytes: u64,
    /// The archive's name.
    pub name: String,
}

/// One long-running service, fully rendered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Unique name, e.g. `web`.
    pub name: String,
    /// Program and arguments; `argv[0]` is an absolute path or a name looked up in `PATH`.
    pub argv: Vec<String>,
    /// Environment, on top of a minimal clean one (`PATH`, `HOME`, `USER`, `LANG`).
    /// May hold secrets: never print it.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// System user to run as; `None` runs as the supervisor's own user.
    #[serde(default)]
    pub user: Option<String>,
    /// Services that must be ready before this one starts.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// How to tell the service is ready; `None` means "ready once started".
    #[serde(default)]
    pub readiness: Option<Readiness>,
    /// Signal that asks the service to stop (e.g. `SIGTERM`, `SIGINT`, `SIGQUIT`).
    pub stop_signal: String,
    /// How long to wait after `stop_signal` before `SIGKILL` of the whole process group.
    pub stop_timeout: Duration,
    /// Signal that makes the service re-read its config; `None` means reload = restart.
    #[serde(default)]
    pub reload_signal: Option<String>,
    /// What to do when the process exits.
    pub restart: RestartPolicy,
    /// Where stdout/stderr go: `<log_dir>/current`, rotated to `current.1`, `current.2`, ...
    pub log_dir: PathBuf,
    /// Rotate `current` when it grows past this many bytes.
    pub log_max_bytes: u64,
    /// Rotated files to keep.
    pub log_keep: u32,
}

/// How readiness is probed. A probe is retried with backoff until `timeout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Readiness {
    /// What to probe.
    pub probe: Probe,
    /// Give up (service state `failed`) after this long without success.
    pub timeout: Duration,
}

/// One readiness probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// A TCP connect to `host:port` succeeds.
    Tcp {
        /// `host:port`, e.g. `127.0.0.1:5432`.
        address: String,
    },
    /// An HTTP GET answers with a status below 500 (or exactly `status` when given).
    Http {
        /// Plain `http://` URL.
        url: String,
        /// Exact status to expect.
        #[serde(default)]
        status: Option<u16>,
    },
    /// A command exits 0. Runs as the service's user with its environment.
    Command {
        /// Program and arguments.
        argv: Vec<String>,
    },
}

/// What the supervisor does when a service's process exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Restart on any exit, with exponential backoff.
    Always,
    /// Restart only on a non-zero exit or a signal.
    OnFailure,
    /// Never restart.
    Never,
}

/// A periodic job (housekeeping, scheduled backups).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Unique name, e.g. `housekeeping`.
    pub name: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Environment (may hold secrets).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// System user to run as.
    #[serde(default)]
    pub user: Option<String>,
    /// Run every this long (first run one interval after the supervisor starts).
    pub every: Duration,
    /// Kill the run (process group) after this long.
    pub timeout: Duration,
    /// Services that must be ready for the job to run; a run is skipped otherwise.
    #[serde(default)]
    pub requires: Vec<String>,
    /// Where the job's output goes (same rotation as services).
    pub log_dir: PathBuf,
}

/// Which services a control request is about.
///
/// JSON: `"all"`, `{"one":"web"}` or `{"many":["web","worker"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Every service (in dependency order; reverse order for stop).
    All,
    /// One service by name.
    One(String),
    /// Several services by name, in one request (duplicates count once). Every name
    /// must exist; an empty list is a request about no service.
    Many(Vec<String>),
}

/// A control request: one JSON object per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Report every service and job.
    Status,
    /// Start services (and their dependencies). Answers once they are ready or failed.
    Start {
        /// Which.
        target: Target,
    },
    /// Stop services (and the services that depend on them).
    Stop {
        /// Which.
        target: Target,
    },
    /// Stop these services alone, dependents of theirs left running: for a backend
    /// stopped while its proxy answers with a maintenance page (an offline migration).
    StopOnly {
        /// Which.
        target: Target,
    },
    /// Stop then start.
    Restart {
        /// Which.
        target: Target,
    },
    /// Send the reload signal (restart when the service has none).
    Reload {
        /// Which.
        target: Target,
    },
    /// Replace the plan. Removed services are stopped, new ones are *not* started
    /// (send `Start`), changed ones are restarted if running. Services named in
    /// `restart`/`reload` get that action if running and unchanged.
    Apply {
        /// The new plan.
        plan: SupervisionPlan,
        /// Services whose config files changed and need a restart.
        #[serde(default)]
        restart: Vec<String>,
        /// Services whose config files changed and can reload.
        #[serde(default)]
        reload: Vec<String>,
    },
    /// Stop every service in reverse dependency order, then exit.
    Shutdown,
    /// Freeze services: `SIGSTOP` to each one's whole process group, e.g. to quiesce
    /// writers while their data is copied. Answers once the signals are sent and the
    /// processes are seen stopped (or after a short grace when one is stuck in a
    /// system call).
    ///
    /// A named service must be running (`starting`, `ready` or already `paused`);
    /// with [`Target::All`], stopped and failed services are skipped. When one service
    /// cannot be paused, the ones this request paused are resumed and the answer is
    /// an error. Pausing a paused service moves its deadline later, never earlier.
    ///
    /// A pause belongs to the connection that asked for it: when that connection
    /// closes (its caller finished, or died), the supervisor resumes the services it
    /// paused, except those another open connection has paused too. So keep the
    /// connection open while the services must stay frozen. As a second guard, the
    /// supervisor resumes a service by itself `timeout_ms` after the pause, even while
    /// the connection stays open. Stop, restart and shutdown resume
    /// it right after sending the stop signal. A reload signal sent meanwhile takes
    /// effect on resume. A pause ends with its process: one killed while paused is
    /// restarted (policy permitting) unpaused. A readiness probe under way is
    /// dropped and starts over on resume.
    Pause {
        /// Which.
        target: Target,
        /// Resume automatically after this many milliseconds (at least 1).
        timeout_ms: u64,
    },
    /// `SIGCONT` to paused services and cancel their deadlines, whichever connections
    /// paused them. Services that are not paused are left alone, so resuming twice (or
    /// resuming `all`) is fine.
    Resume {
        /// Which.
        target: Target,
    },
}

/// Answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    /// Done.
    Ok,
    /// Answer to [`Request::Status`].
    Status {
        /// The supervisor's own pid.
        supervisor_pid: u32,
        /// One entry per service.
        services: Vec<ServiceStatus>,
        /// One entry per job.
        jobs: Vec<JobStatus>,
    },
    /// Answer to [`Request::Apply`]: what was done.
    Applied {
        /// Services (re)started.
        restarted: Vec<String>,
        /// Services sent their reload signal.
        reloaded: Vec<String>,
        /// Services stopped because they left the plan.
        removed: Vec<String>,
    },
    /// The request failed; `message` says why in a sentence.
    Error {
        /// What went wrong.
        message: String,
    },
}

/// The life-cycle state of one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// Not running and not asked to.
    Stopped,
    /// Waiting for dependencies to become ready.
    Waiting,
    /// Process started, readiness not yet confirmed.
    Starting,
    /// Readiness confirmed (or no probe).
    Ready,
    /// Stop signal sent, waiting for exit.
    Stopping,
    /// Exited; waiting out the backoff before the next start.
    Backoff,
    /// Gave up: readiness timed out, or exited under `never`/`on-failure` policy.
    Failed,
    /// Frozen by [`Request::Pause`] until resumed or its deadline passes.
    Paused,
}

impl ServiceState {
    /// The name as serialized, e.g. `ready` or `paused`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Waiting => "waiting",
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Stopping => "stopping",
            Self::Backoff => "backoff",
            Self::Failed => "failed",
            Self::Paused => "paused",
        }
    }
}

/// Status of one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Service name.
    pub name: String,
    /// Current state.
    pub state: ServiceState,
    /// Main process id when running.
    pub pid: Option<u32>,
    /// Seconds since the current process started.
    pub uptime_secs: Option<u64>,
    /// Automatic restarts after the process exited on its own (crashes), since the
    /// supervisor started. Restarts that were asked for are not counted.
    pub restarts: u32,
    /// How the last process ended, e.g. `exit 1` or `signal SIGKILL`.
    pub last_exit: Option<String>,
    /// Whether the readiness probe last succeeded.
    pub ready: bool,
    /// How long the current process took from its start to ready, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_after_ms: Option<u64>,
    /// Unix time (seconds) the current pause began, when `paused`.
    #[serde(default)]
    pub paused_since_unix: Option<u64>,
    /// Milliseconds until the supervisor resumes the service by itself, when `paused`.
    #[serde(default)]
    pub resume_in_ms: Option<u64>,
    /// Memory its processes take, proportional set size in bytes (the whole process
    /// group: workers and backends too), when running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pss_bytes: Option<u64>,
}

/// Status of one periodic job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    /// Job name.
    pub name: String,
    /// Seconds until the next run.
    pub next_run_in_secs: u64,
    /// Unix time of the last run's end.
    pub last_run_unix: Option<u64>,
    /// How the last run ended, e.g. `exit 0`, `timeout`, `skipped: web not ready`.
    pub last_result: Option<String>,
    /// Runs so far.
    pub runs: u32,
    /// Runs that did not end with exit status 0 (timeouts included).
    #[serde(default)]
    pub failures: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json<T: Serialize>(value: &T) -> String {
        serde_json::to_string(value).unwrap()
    }

    #[test]
    fn pause_and_resume_requests() {
        let pause = Request::Pause {
            target: Target::Many(vec!["web".into(), "worker".into()]),
            timeout_ms: 60_000,
        };
        let line = r#"{"op":"pause","target":{"many":["web","worker"]},"timeout_ms":60000}"#;
        assert_eq!(json(&pause), line);
        assert_eq!(serde_json::from_str::<Request>(line).unwrap(), pause);
        let resume = Request::Resume {
            target: Target::All,
        };
        assert_eq!(json(&resume), r#"{"op":"resume","target":"all"}"#);
        // What existing clients send is unchanged.
        assert_eq!(
            json(&Request::Stop {
                target: Target::One("web".into())
            }),
            r#"{"op":"stop","target":{"one":"web"}}"#
        );
    }

    #[test]
    fn state_names_match_their_json() {
        for state in [
            ServiceState::Stopped,
            ServiceState::Waiting,
            ServiceState::Starting,
            ServiceState::Ready,
            ServiceState::Stopping,
            ServiceState::Backoff,
            ServiceState::Failed,
            ServiceState::Paused,
        ] {
            assert_eq!(json(&state), format!("\"{}\"", state.as_str()));
        }
    }

    #[test]
    fn status_from_a_supervisor_without_pause_fields() {
        let old = r#"{"name":"web","state":"ready","pid":7,"uptime_secs":3,"restarts":0,"last_exit":null,"ready":true}"#;
        let status: ServiceStatus = serde_json::from_str(old).unwrap();
        assert_eq!(
            (status.paused_since_unix, status.resume_in_ms),
            (None, None)
        );
    }
}
