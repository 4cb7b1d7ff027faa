//! Starting and talking to the instance's supervisor.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use berth_render::Paths;
use berth_supervisor::{Client, DaemonConfig};
use berth_supervisor_protocol::{Request, Response};

/// The supervisor's configuration for an instance.
pub fn daemon_config(paths: &Paths, autostart: bool) -> DaemonConfig {
    DaemonConfig {
        socket: paths.supervisor_socket(),
        plan_path: paths.supervision_plan(),
        pid_file: paths.run.join("supervisor.pid"),
        log_file: paths.log.join("supervisor.log"),
        autostart,
        backoff: berth_supervisor::BackoffConfig::default(),
    }
}

/// Whether the instance's supervisor answers on its socket.
pub fn is_running(paths: &Paths) -> bool {
    berth_supervisor::is_running(&paths.supervisor_socket())
}

/// Connect to the running supervisor, or explain how to start it.
pub fn connect(paths: &Paths) -> Result<Client> {
    Client::connect(&paths.supervisor_socket()).with_context(|| {
        format!(
            "The supervisor of `{}` is not running\nhint: start it with `berth up`",
            paths.prefix.display()
        )
    })
}

/// Send one request and turn an `Error` answer into an error.
pub fn request(paths: &Paths, req: &Request) -> Result<Response> {
    let mut client = connect(paths)?;
    match client.request(req)? {
        Response::Error { message } => bail!("{message}"),
        other => Ok(other),
    }
}

/// Start `berth supervise` in the background (its own session, output to
/// `<log>/supervisor.log`) and wait until it answers.
pub fn spawn(paths: &Paths, berth_exe: &Path) -> Result<()> {
    let cfg = daemon_config(paths, false);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&cfg.log_file)
        .with_context(|| format!("Failed to open `{}`", cfg.log_file.display()))?;
    let mut cmd = Command::new(berth_exe);
    cmd.arg("--prefix")
        .arg(&paths.prefix)
        .arg("supervise")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // A new session: the supervisor outlives this command and its terminal.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("Failed to start the supervisor")?;
    let start = Instant::now();
    let mut pause = Duration::from_millis(10);
    while start.elapsed() < Duration::from_secs(10) {
        if is_running(paths) {
            // The child is the daemon itself; let it run on unreaped by us: it is
            // re-parented to init when this command exits.
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "The supervisor exited at start ({status}); last lines of `{}`:\n{}",
                cfg.log_file.display(),
                crate::hooks::tail(&cfg.log_file, 15)
            );
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
    bail!(
        "The supervisor did not answer on `{}` within 10 s; see `{}`",
        cfg.socket.display(),
        cfg.log_file.display()
    )
}
