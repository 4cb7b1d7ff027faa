//! Starting and talking to the instance's supervisor.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use berth_render::Paths;
use berth_supervisor::{Client, DaemonConfig, Paused, SupervisorError};
use berth_supervisor_protocol::{Request, Response, Target};

use crate::error::{LifecycleError, Result};

/// The instance's supervisor as a lifecycle step talks to it: [`Socket`], the running
/// daemon, in every operation; in the unit tests, one that answers from a script.
pub trait Supervisor {
    /// Whether it answers.
    fn is_running(&self) -> bool;
    /// Send one request; an `Error` answer is [`LifecycleError::SupervisorRefused`].
    fn request(&self, req: &Request) -> Result<Response>;
    /// Wait until its process has exited (after a `Shutdown`), at most `timeout`.
    fn wait_exited(&self, timeout: Duration) -> bool;
    /// `err` (a start that failed) with the last log lines of every service that is
    /// not ready.
    fn with_failed_logs(&self, err: LifecycleError) -> LifecycleError;
}

impl<T: Supervisor + ?Sized> Supervisor for &T {
    fn is_running(&self) -> bool {
        (**self).is_running()
    }
    fn request(&self, req: &Request) -> Result<Response> {
        (**self).request(req)
    }
    fn wait_exited(&self, timeout: Duration) -> bool {
        (**self).wait_exited(timeout)
    }
    fn with_failed_logs(&self, err: LifecycleError) -> LifecycleError {
        (**self).with_failed_logs(err)
    }
}

/// The supervisor of the instance at `paths`, reached on its control socket.
#[derive(Debug, Clone, Copy)]
pub struct Socket<'a>(pub &'a Paths);

impl Supervisor for Socket<'_> {
    fn is_running(&self) -> bool {
        is_running(self.0)
    }
    fn request(&self, req: &Request) -> Result<Response> {
        request(self.0, req)
    }
    fn wait_exited(&self, timeout: Duration) -> bool {
        wait_exited(self.0, timeout)
    }
    fn with_failed_logs(&self, err: LifecycleError) -> LifecycleError {
        with_failed_logs(self.0, err)
    }
}

/// The supervisor's configuration for an instance.
pub fn daemon_config(paths: &Paths, autostart: bool) -> DaemonConfig {
    DaemonConfig {
        socket: paths.supervisor_socket(),
        plan_path: paths.supervision_plan(),
        pid_file: paths.supervisor_pid(),
        log_file: paths.supervisor_log(),
        autostart,
        backoff: berth_supervisor::BackoffConfig::default(),
    }
}

/// Wait until the supervisor process whose pid file is at hand has exited (its pid
/// file removed, or the process gone or a zombie), at most `timeout`.
///
/// The socket stops answering before the daemon has removed its socket and pid
/// files; callers that go on to touch the prefix must wait for this instead.
pub fn wait_exited(paths: &Paths, timeout: Duration) -> bool {
    let file = paths.supervisor_pid();
    let pid = std::fs::read_to_string(&file)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok());
    let deadline = Instant::now() + timeout;
    loop {
        let alive = file.exists()
            && pid.is_none_or(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
                    .unwrap_or(false)
            });
        if !alive {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the instance's supervisor answers on its socket.
pub fn is_running(paths: &Paths) -> bool {
    berth_supervisor::is_running(&paths.supervisor_socket())
}

/// Connect to the running supervisor, or explain how to start it.
pub fn connect(paths: &Paths) -> Result<Client> {
    Client::connect(&paths.supervisor_socket()).map_err(|source| LifecycleError::SupervisorDown {
        prefix: paths.prefix.clone(),
        source,
    })
}

/// Send one request and turn an `Error` answer into an error.
pub fn request(paths: &Paths, req: &Request) -> Result<Response> {
    let mut client = connect(paths)?;
    match client.request(req)? {
        Response::Error { message } => Err(LifecycleError::SupervisorRefused(message)),
        other => Ok(other),
    }
}

/// Freeze `services` until the returned [`Paused`] is resumed or dropped: the pause
/// belongs to this process's connection, so it ends when this process does, however
/// it ends (a `SIGKILL` too). `deadline` is the supervisor's own limit, a second guard.
pub fn pause(paths: &Paths, services: Vec<String>, deadline: Duration) -> Result<Paused> {
    connect(paths)?
        .pause(Target::Many(services), deadline)
        .map_err(|err| match err {
            SupervisorError::Refused { message, .. } => LifecycleError::SupervisorRefused(message),
            other => LifecycleError::Supervisor(other),
        })
}

/// Start `berth supervise` in the background (its own session, output to
/// `<log>/supervisor.log`) and wait until it answers.
pub fn spawn(paths: &Paths, berth_exe: &Path) -> Result<()> {
    let cfg = daemon_config(paths, false);
    // Root's and the supervisor's own only (0640), never through a symlink.
    let log = berth_supervisor::log_group(None)
        .and_then(|group| berth_supervisor::open_log_file(&cfg.log_file, group))
        .map_err(LifecycleError::io("open", &cfg.log_file))?;
    let out = log
        .try_clone()
        .map_err(LifecycleError::io("open", &cfg.log_file))?;
    // A new session: the supervisor outlives this command and its terminal (so it
    // does not die with berth). A clean environment, as systemd would give it.
    let mut cmd = berth_process::ChildCommand::new(berth_exe);
    cmd.arg("--prefix").arg(&paths.prefix).arg("supervise");
    let mut cmd = cmd
        .build()
        .map_err(|e| LifecycleError::io("start the supervisor", berth_exe)(e.into()))?;
    cmd.stdout(out).stderr(log);
    let mut child = cmd
        .spawn()
        .map_err(LifecycleError::io("start the supervisor", berth_exe))?;
    let start = Instant::now();
    let mut pause = Duration::from_millis(10);
    while start.elapsed() < Duration::from_secs(10) {
        if is_running(paths) {
            // The child is the daemon itself; let it run on unreaped by us: it is
            // re-parented to init when this command exits.
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(LifecycleError::SupervisorExited {
                status,
                tail: tail(&cfg.log_file, 15),
                log: cfg.log_file,
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
    Err(LifecycleError::SupervisorSilent {
        socket: cfg.socket,
        log: cfg.log_file,
    })
}

/// The last `n` lines of a file, indented, for error messages (none when it cannot be
/// read).
pub fn tail(path: &Path, n: usize) -> String {
    berth_supervisor::last_lines(path, n)
        .unwrap_or_default()
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Add the last log lines of every service that is not ready to a start error.
pub fn with_failed_logs(paths: &Paths, err: LifecycleError) -> LifecycleError {
    let Ok(Response::Status { services, .. }) = request(paths, &Request::Status) else {
        return err;
    };
    let mut text = String::new();
    for s in services.iter().filter(|s| !s.ready) {
        let log = paths.service_log(&s.name);
        if log.exists() {
            let _ = write!(
                text,
                "\nlast lines of `{}`:\n{}",
                log.display(),
                tail(&log, 10)
            );
        }
    }
    if text.is_empty() {
        err
    } else {
        LifecycleError::ServicesFailed {
            cause: Box::new(err),
            logs: text,
        }
    }
}

/// Every service's status, as the supervisor reports it (none when it is not running).
pub fn service_statuses(paths: &Paths) -> Vec<berth_supervisor_protocol::ServiceStatus> {
    statuses(&Socket(paths))
}

/// Every service's status, as `supervisor` reports it (none when it is not running).
fn statuses(supervisor: &dyn Supervisor) -> Vec<berth_supervisor_protocol::ServiceStatus> {
    if !supervisor.is_running() {
        return Vec::new();
    }
    match supervisor.request(&Request::Status) {
        Ok(Response::Status { services, .. }) => services,
        _ => Vec::new(),
    }
}

/// Services of the plan that are stopped (by an administrator).
pub(crate) fn stopped_services(supervisor: &dyn Supervisor) -> Vec<String> {
    statuses(supervisor)
        .into_iter()
        .filter(|s| s.state == berth_supervisor_protocol::ServiceState::Stopped)
        .map(|s| s.name)
        .collect()
}

/// Services the supervisor currently runs (any state but stopped/failed).
pub fn running_services(paths: &Paths) -> std::collections::BTreeSet<String> {
    services_running(&Socket(paths))
}

/// Services `supervisor` currently runs (any state but stopped/failed).
pub(crate) fn services_running(supervisor: &dyn Supervisor) -> std::collections::BTreeSet<String> {
    statuses(supervisor)
        .into_iter()
        .filter(|s| s.pid.is_some())
        .map(|s| s.name)
        .collect()
}
