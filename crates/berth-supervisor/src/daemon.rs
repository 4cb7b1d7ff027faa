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
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;

use crate::client::is_running;
use crate::config::DaemonConfig;
use crate::error::SupervisorError;
use crate::graph;
use crate::say::say;
use crate::service::Holder;
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

/// Bind the control socket so that it is never reachable by other users, not even for
/// an instant: bound inside a fresh 0700 directory next to it, given mode 0600 there,
/// then renamed into place (a socket keeps working under its new name).
fn bind(socket: &Path) -> Result<UnixListener, SupervisorError> {
    let bind_err = |source| SupervisorError::Bind {
        socket: socket.to_path_buf(),
        source,
    };
    let parent = socket
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(bind_err)?;
    let private = tempfile::Builder::new()
        .prefix(".supervisor-bind.")
        .permissions(fs::Permissions::from_mode(0o700))
        .tempdir_in(parent)
        .map_err(bind_err)?;
    let staged = private.path().join("sock");
    let listener = std::os::unix::net::UnixListener::bind(&staged).map_err(bind_err)?;
    fs::set_permissions(&staged, fs::Permissions::from_mode(0o600)).map_err(|source| {
        SupervisorError::SocketMode {
            socket: socket.to_path_buf(),
            source,
        }
    })?;
    fs::rename(&staged, socket).map_err(bind_err)?;
    drop(private);
    listener.set_nonblocking(true).map_err(bind_err)?;
    UnixListener::from_std(listener).map_err(bind_err)
}

/// Whether the peer of a control connection may talk to the supervisor: root, or the
/// user the supervisor runs as. The socket's mode already keeps others out; this holds
/// even if its mode or directory were changed behind the supervisor's back.
fn peer_allowed(stream: &UnixStream) -> Result<(), String> {
    let me = nix::unistd::geteuid().as_raw();
    match stream.peer_cred() {
        Ok(cred) if cred.uid() == 0 || cred.uid() == me => Ok(()),
        Ok(cred) => Err(format!(
            "refused a control connection from uid {} (pid {}): only root and uid {me} may control the supervisor",
            cred.uid(),
            cred.pid()
                .map_or_else(|| "unknown".to_owned(), |pid| pid.to_string())
        )),
        Err(err) => Err(format!(
            "refused a control connection whose peer could not be identified: {err}"
        )),
    }
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
    let metrics = tokio::spawn(crate::metrics::serve(Arc::clone(&supervisor)));
    let quit = Arc::new(Notify::new());
    let mut next_holder = 0_u64;
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
                Ok((stream, _)) => match peer_allowed(&stream) {
                    Ok(()) => {
                        next_holder += 1;
                        let holder = Holder(next_holder);
                        tokio::spawn(connection(stream, holder, Arc::clone(&supervisor), Arc::clone(&quit)));
                    }
                    Err(why) => {
                        say!("{why}");
                        tokio::spawn(refuse(stream));
                    }
                },
                Err(err) => say!("failed to accept a control connection: {err}"),
            },
            () = quit.notified() => break,
            _ = sigterm.recv() => { say!("SIGTERM received; shutting down"); break }
            _ = sigint.recv() => { say!("SIGINT received; shutting down"); break }
        }
    }
    drop(listener);
    metrics.abort();
    supervisor.close().await;
    let _ = fs::remove_file(&cfg.socket);
    let _ = fs::remove_file(&cfg.pid_file);
    say!("stopped");
    Ok(())
}

/// Answer a refused peer with one error line, so its user sees why, then hang up.
///
/// Its first request line is read (and ignored) first: hanging up on unread data would
/// reset the connection, and the client would see a broken pipe instead of the reason.
async fn refuse(stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut first = Vec::new();
    let mut limited = BufReader::new(read.take(64 * 1024));
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        limited.read_until(b'\n', &mut first),
    )
    .await;
    let answer = Response::Error {
        message: "Permission denied: only root and the user the supervisor runs as may control it"
            .to_owned(),
    };
    if let Ok(mut bytes) = serde_json::to_vec(&answer) {
        bytes.push(b'\n');
        let _ = tokio::time::timeout(Duration::from_secs(1), write.write_all(&bytes)).await;
    }
}

/// Serve one client: any number of requests, one JSON line each. The pauses it asked
/// for end with it, however it ends (the caller finished, hung up or was killed).
async fn connection(
    stream: UnixStream,
    holder: Holder,
    supervisor: Arc<Supervisor>,
    quit: Arc<Notify>,
) {
    let paused = serve_requests(stream, holder, &supervisor, &quit).await;
    if paused {
        let resumed = supervisor.release(holder).await;
        if !resumed.is_empty() {
            say!(
                "a control connection that had paused services closed; resumed {}",
                resumed.join(", ")
            );
        }
    }
}

/// Answer requests until the peer hangs up or asks for shutdown; returns whether it
/// sent a pause.
async fn serve_requests(
    stream: UnixStream,
    holder: Holder,
    supervisor: &Supervisor,
    quit: &Notify,
) -> bool {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut paused = false;
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().is_empty() {
            continue;
        }
        let (response, shutting_down) = match serde_json::from_str::<Request>(&line) {
            Ok(request) => {
                let shutting_down = request == Request::Shutdown;
                paused |= matches!(request, Request::Pause { .. });
                (supervisor.handle(request, holder).await, shutting_down)
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
            return paused;
        }
        if written.is_err() {
            return paused;
        }
    }
    paused
}
