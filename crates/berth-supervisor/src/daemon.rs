//! The daemon: control socket, pid file and signals.
//!
//! It runs in the foreground; whoever starts it (`berth supervise`, spawned by
//! berth-lifecycle in a session of its own) detaches it and redirects its output.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use berth_supervisor_protocol::{Request, Response, SupervisionPlan};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;

use crate::client::is_running;
use crate::config::DaemonConfig;
use crate::error::SupervisorError;
use crate::graph;
use crate::say::say;
use crate::supervisor::Supervisor;

/// Run the supervisor in this process until `Shutdown`, SIGTERM or SIGINT.
///
/// Reads and validates the plan, takes over the control socket (refusing if another
/// supervisor answers on it, removing it if it is stale), writes the pid file,
/// optionally starts every service, and serves requests. On the way out it stops
/// every service in reverse dependency order and removes the socket and pid file.
///
/// Builds its own tokio runtime: call it from a thread that is not inside one.
#[allow(clippy::needless_pass_by_value)] // owned, so the CLI can hand over its config
pub fn run_daemon(cfg: DaemonConfig) -> Result<(), SupervisorError> {
    let plan = load_plan(&cfg.plan_path)?;
    take_over_socket(&cfg.socket)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("berth-supervisor")
        .enable_all()
        .build()
        .map_err(|source| SupervisorError::Runtime { source })?;
    let result = runtime.block_on(serve(&cfg, plan));
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

fn load_plan(path: &Path) -> Result<SupervisionPlan, SupervisorError> {
    let text = fs::read_to_string(path).map_err(|source| SupervisorError::ReadPlan {
        path: path.to_path_buf(),
        source,
    })?;
    let plan: SupervisionPlan =
        serde_json::from_str(&text).map_err(|source| SupervisorError::ParsePlan {
            path: path.to_path_buf(),
            source,
        })?;
    graph::validate(&plan).map_err(|reason| SupervisorError::InvalidPlan {
        path: path.to_path_buf(),
        reason,
    })?;
    Ok(plan)
}

/// Refuse if a live supervisor answers on `socket`; remove a stale socket file.
fn take_over_socket(socket: &Path) -> Result<(), SupervisorError> {
    if socket.symlink_metadata().is_err() {
        return Ok(());
    }
    if is_running(socket) {
        return Err(SupervisorError::AlreadyRunning {
            socket: socket.to_path_buf(),
        });
    }
    fs::remove_file(socket).map_err(|source| SupervisorError::RemoveStaleSocket {
        socket: socket.to_path_buf(),
        source,
    })
}

fn bind(socket: &Path) -> Result<UnixListener, SupervisorError> {
    let bind_err = |source| SupervisorError::Bind {
        socket: socket.to_path_buf(),
        source,
    };
    if let Some(parent) = socket.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(bind_err)?;
    }
    let listener = UnixListener::bind(socket).map_err(bind_err)?;
    fs::set_permissions(socket, fs::Permissions::from_mode(0o600)).map_err(|source| {
        SupervisorError::SocketMode {
            socket: socket.to_path_buf(),
            source,
        }
    })?;
    Ok(listener)
}

/// Write the pid file atomically (temp file, then rename).
fn write_pid_file(path: &Path) -> Result<(), SupervisorError> {
    let pid_err = |source| SupervisorError::PidFile {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(pid_err)?;
    }
    let temp = path.with_extension("pid.tmp");
    let mut file = File::create(&temp).map_err(pid_err)?;
    writeln!(file, "{}", std::process::id())
        .and_then(|()| file.sync_all())
        .map_err(pid_err)?;
    fs::rename(&temp, path).map_err(pid_err)
}

async fn serve(cfg: &DaemonConfig, plan: SupervisionPlan) -> Result<(), SupervisorError> {
    let listener = bind(&cfg.socket)?;
    let runtime_err = |source| SupervisorError::Runtime { source };
    let mut sigterm = signal(SignalKind::terminate()).map_err(runtime_err)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(runtime_err)?;
    if let Err(err) = write_pid_file(&cfg.pid_file) {
        let _ = fs::remove_file(&cfg.socket);
        return Err(err);
    }
    say!(
        "supervising {} services and {} jobs on `{}` (pid {})",
        plan.services.len(),
        plan.jobs.len(),
        cfg.socket.display(),
        std::process::id()
    );
    let supervisor = Supervisor::new(plan, cfg.backoff);
    let quit = Arc::new(Notify::new());
    if cfg.autostart {
        let supervisor = Arc::clone(&supervisor);
        tokio::spawn(async move {
            let names = supervisor.all_names();
            if let Err(err) = supervisor.start(&names).await {
                say!("autostart: {err}");
            }
        });
    }
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, Arc::clone(&supervisor), Arc::clone(&quit)));
                }
                Err(err) => say!("failed to accept a control connection: {err}"),
            },
            () = quit.notified() => break,
            _ = sigterm.recv() => { say!("SIGTERM received; shutting down"); break }
            _ = sigint.recv() => { say!("SIGINT received; shutting down"); break }
        }
    }
    drop(listener);
    supervisor.close().await;
    let _ = fs::remove_file(&cfg.socket);
    let _ = fs::remove_file(&cfg.pid_file);
    say!("stopped");
    Ok(())
}

/// Serve one client: any number of requests, one JSON line each.
async fn connection(stream: UnixStream, supervisor: Arc<Supervisor>, quit: Arc<Notify>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().is_empty() {
            continue;
        }
        let (response, shutting_down) = match serde_json::from_str::<Request>(&line) {
            Ok(request) => {
                let shutting_down = request == Request::Shutdown;
                (supervisor.handle(request).await, shutting_down)
            }
            Err(err) => (
                Response::Error {
                    message: format!("Failed to parse the request: {err}"),
                },
                false,
            ),
        };
        let mut bytes = serde_json::to_vec(&response).unwrap_or_else(|err| {
            format!(r#"{{"result":"error","message":"Failed to encode the answer: {err}"}}"#)
                .into_bytes()
        });
        bytes.push(b'\n');
        let written = write.write_all(&bytes).await;
        if shutting_down {
            quit.notify_one();
            return;
        }
        if written.is_err() {
            return;
        }
    }
}
