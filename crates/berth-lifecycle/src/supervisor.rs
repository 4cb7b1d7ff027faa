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

/// What `berth status` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The supervisor's pid; `None` when it is not running (after `berth down`).
    pub supervisor_pid: Option<u32>,
    /// Every service of the plan.
    pub services: Vec<berth_supervisor_protocol::ServiceStatus>,
    /// Periodic jobs (none while the supervisor is down: nothing runs them).
    pub jobs: Vec<berth_supervisor_protocol::JobStatus>,
}

/// The instance's status: the supervisor's answer, or, when it is not running, the
/// services of the last plan that came up, all stopped. An instance never brought up
/// is [`LifecycleError::NotSetUp`].
pub fn status(paths: &Paths) -> Result<Status> {
    status_from(&Socket(paths), paths)
}

fn status_from(supervisor: &dyn Supervisor, paths: &Paths) -> Result<Status> {
    if supervisor.is_running() {
        return match supervisor.request(&Request::Status)? {
            Response::Status {
                supervisor_pid,
                services,
                jobs,
            } => Ok(Status {
                supervisor_pid: Some(supervisor_pid),
                services,
                jobs,
            }),
            _ => Err(LifecycleError::UnexpectedAnswer("status")),
        };
    }
    let plan = crate::state_files::applied_plan(&paths.supervision_plan())
        .ok_or_else(|| LifecycleError::NotSetUp(paths.prefix.clone()))?;
    Ok(Status {
        supervisor_pid: None,
        services: plan.services.iter().map(|s| stopped(&s.name)).collect(),
        jobs: Vec::new(),
    })
}

/// The status of a service nothing runs.
fn stopped(name: &str) -> berth_supervisor_protocol::ServiceStatus {
    berth_supervisor_protocol::ServiceStatus {
        name: name.to_owned(),
        state: berth_supervisor_protocol::ServiceState::Stopped,
        pid: None,
        uptime_secs: None,
        restarts: 0,
        last_exit: None,
        ready: false,
        ready_after_ms: None,
        paused_since_unix: None,
        resume_in_ms: None,
        pss_bytes: None,
    }
}

/// Every service's status, as the supervisor reports it (none when it is not running).
pub fn service_statuses(paths: &Paths) -> Vec<berth_supervisor_protocol::ServiceStatus> {
    statuses(&Socket(paths))
}

/// Every service's status, as `supervisor` reports it (none when it is not running).
pub(crate) fn statuses(
    supervisor: &dyn Supervisor,
) -> Vec<berth_supervisor_protocol::ServiceStatus> {
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

#[cfg(test)]
mod tests {
    use berth_render::Paths;
    use berth_supervisor_protocol::{Response, ServiceState, SupervisionPlan};

    use super::status_from;
    use crate::error::LifecycleError;
    use crate::testing::{Scripted, service};

    fn paths(dir: &std::path::Path) -> Paths {
        Paths::for_prefix(dir, "1.0.0")
    }

    /// After `berth down`: the services of the last plan, all stopped, and no pid.
    #[test]
    fn status_with_the_supervisor_down_lists_the_plans_services_as_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path());
        let plan = SupervisionPlan {
            services: vec![service("web", &[]), service("db", &[])],
            jobs: vec![],
            metrics: None,
        };
        std::fs::create_dir_all(paths.supervision_plan().parent().unwrap()).unwrap();
        std::fs::write(paths.supervision_plan(), serde_json::to_vec(&plan).unwrap()).unwrap();
        let down = Scripted::default();
        let status = status_from(&down, &paths).unwrap();
        assert_eq!(status.supervisor_pid, None);
        let names: Vec<_> = status.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["web", "db"]);
        assert!(
            status
                .services
                .iter()
                .all(|s| s.state == ServiceState::Stopped && s.pid.is_none() && !s.ready)
        );
        assert!(down.requests.borrow().is_empty(), "nothing was asked");
    }

    /// An instance never brought up has no plan: "run `berth up` first".
    #[test]
    fn status_of_an_instance_never_brought_up_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let err = status_from(&Scripted::default(), &paths(dir.path())).unwrap_err();
        assert!(matches!(err, LifecycleError::NotSetUp(_)), "{err}");
        assert_eq!(err.hint().as_deref(), Some("run `berth up` first"));
    }

    /// A running supervisor's answer is passed on as it is.
    #[test]
    fn status_with_the_supervisor_up_is_its_answer() {
        let dir = tempfile::tempdir().unwrap();
        let mut up = Scripted::answering(vec![]);
        up.status = Some(Response::Status {
            supervisor_pid: 42,
            services: vec![],
            jobs: vec![],
        });
        let status = status_from(&up, &paths(dir.path())).unwrap();
        assert_eq!(status.supervisor_pid, Some(42));
    }
}
