//! One service's state machine, run as its own task.
//!
//! ```text
//!            start                 probe ok
//! Stopped ─────────► Starting ───────────────► Ready
//!    ▲                  │ probe timeout          │ exit (policy restarts)
//!    │ stop             ▼                        ▼
//!    └─────────────── Failed ◄──(policy gives up)─ Backoff ──(delay)──► Starting
//! ```
//!
//! The task owns the child process and waits on three things at once: the child's
//! exit, the readiness probe, and control commands. A flapping service therefore only
//! ever delays itself. Other tasks see its state through [`Shared`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use berth_supervisor_protocol::{RestartPolicy, ServiceSpec, ServiceState, ServiceStatus};
use nix::sys::signal::Signal;
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep, sleep_until};

use crate::config::BackoffConfig;
use crate::logs::{RotatingLog, SharedLog, pump};
use crate::probe::wait_ready;
use crate::process::{
    Launch, describe_exit, group_alive, parse_signal, signal_child_group, signal_leftovers,
    signal_process,
};
use crate::say::say;

/// What other tasks may read about a service at any time.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) state: ServiceState,
    pub(crate) pid: Option<u32>,
    pub(crate) started: Option<Instant>,
    pub(crate) restarts: u32,
    pub(crate) last_exit: Option<String>,
    pub(crate) ready: bool,
}

impl Shared {
    pub(crate) fn status(&self, name: &str) -> ServiceStatus {
        ServiceStatus {
            name: name.to_owned(),
            state: self.state,
            pid: self.pid,
            uptime_secs: self.started.map(|t| t.elapsed().as_secs()),
            restarts: self.restarts,
            last_exit: self.last_exit.clone(),
            ready: self.ready,
        }
    }
}

type Reply<T> = oneshot::Sender<T>;
type Outcome = Result<(), String>;

enum Command {
    Start(Reply<Outcome>),
    Stop(Reply<()>),
    Restart(Reply<Outcome>),
    Reload(Reply<Outcome>),
    Update(Box<ServiceSpec>),
    Shutdown(Reply<()>),
}

/// The control side of a service task. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct ServiceHandle {
    pub(crate) spec: ServiceSpec,
    pub(crate) shared: Arc<Mutex<Shared>>,
    tx: mpsc::UnboundedSender<Command>,
}

impl ServiceHandle {
    /// Spawn the task for `spec` (stopped) on the current runtime.
    pub(crate) fn spawn(spec: ServiceSpec, backoff: BackoffConfig) -> Self {
        let shared = Arc::new(Mutex::new(Shared {
            state: ServiceState::Stopped,
            pid: None,
            started: None,
            restarts: 0,
            last_exit: None,
            ready: false,
        }));
        let (tx, rx) = mpsc::unbounded_channel();
        let actor = Actor {
            spec: spec.clone(),
            shared: Arc::clone(&shared),
            rx,
            backoff,
            attempt: 0,
            waiters: Vec::new(),
            phase: Phase::Down,
            log: None,
        };
        tokio::spawn(actor.run());
        Self { spec, shared, tx }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Shared> {
        lock(&self.shared)
    }

    pub(crate) fn state(&self) -> ServiceState {
        self.lock().state
    }

    /// Whether a process is (or is about to be) running.
    pub(crate) fn is_active(&self) -> bool {
        matches!(
            self.state(),
            ServiceState::Starting
                | ServiceState::Ready
                | ServiceState::Backoff
                | ServiceState::Stopping
        )
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(make(reply)).ok()?;
        answer.await.ok()
    }

    fn gone(&self) -> String {
        format!("the task supervising `{}` has ended", self.spec.name)
    }

    /// Start (if needed) and wait until ready or failed.
    pub(crate) async fn start(&self) -> Outcome {
        self.ask(Command::Start)
            .await
            .unwrap_or_else(|| Err(self.gone()))
    }

    /// Stop (if running) and wait until the process group is gone.
    pub(crate) async fn stop(&self) {
        self.ask(Command::Stop).await;
    }

    /// Stop, then start and wait until ready.
    pub(crate) async fn restart(&self) -> Outcome {
        self.ask(Command::Restart)
            .await
            .unwrap_or_else(|| Err(self.gone()))
    }

    /// Send the reload signal, or restart when there is none. No-op when not running.
    pub(crate) async fn reload(&self) -> Outcome {
        self.ask(Command::Reload)
            .await
            .unwrap_or_else(|| Err(self.gone()))
    }

    /// Use `spec` from the next start on.
    pub(crate) fn update(&mut self, spec: ServiceSpec) {
        self.spec = spec.clone();
        let _ = self.tx.send(Command::Update(Box::new(spec)));
    }

    /// Stop and end the task.
    pub(crate) async fn shutdown(&self) {
        self.ask(Command::Shutdown).await;
    }
}

pub(crate) fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

type ProbeFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

struct Running {
    child: Child,
    pid: u32,
    started: Instant,
    probe: Option<ProbeFuture>,
}

enum Phase {
    Down,
    Running(Box<Running>),
    Backoff(Instant),
}

enum Event {
    Command(Option<Command>),
    Exited(io::Result<ExitStatus>),
    Probed(Outcome),
    BackoffOver,
}

struct Actor {
    spec: ServiceSpec,
    shared: Arc<Mutex<Shared>>,
    rx: mpsc::UnboundedReceiver<Command>,
    backoff: BackoffConfig,
    /// Crash restarts since the service was last healthy for `reset_after`.
    attempt: u32,
    /// Callers waiting for the current start to become ready (or fail).
    waiters: Vec<Reply<Outcome>>,
    phase: Phase,
    /// The open log, kept across restarts so one writer tracks its size.
    log: Option<SharedLog>,
}

impl Actor {
    async fn run(mut self) {
        loop {
            match self.next_event().await {
                Event::Command(None) => {
                    self.stop_process().await;
                    return;
                }
                Event::Command(Some(Command::Shutdown(reply))) => {
                    self.stop_process().await;
                    let _ = reply.send(());
                    return;
                }
                Event::Command(Some(command)) => self.handle(command).await,
                Event::Exited(status) => self.on_exit(status),
                Event::Probed(outcome) => self.on_probe(outcome).await,
                Event::BackoffOver => {
                    lock(&self.shared).restarts += 1;
                    if let Err(err) = self.spawn() {
                        say!("service `{}`: {err}", self.spec.name);
                        self.schedule_restart_or_give_up(false);
                    }
                }
            }
        }
    }

    async fn next_event(&mut self) -> Event {
        match &mut self.phase {
            Phase::Down => Event::Command(self.rx.recv().await),
            Phase::Backoff(until) => tokio::select! {
                () = sleep_until(*until) => Event::BackoffOver,
                command = self.rx.recv() => Event::Command(command),
            },
            Phase::Running(running) => {
                let Running { child, probe, .. } = &mut **running;
                let probed = async {
                    match probe {
                        Some(probe) => probe.as_mut().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    status = child.wait() => Event::Exited(status),
                    outcome = probed => Event::Probed(outcome),
                    command = self.rx.recv() => Event::Command(command),
                }
            }
        }
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Start(reply) => match &self.phase {
                Phase::Running(running) if running.probe.is_none() => {
                    let _ = reply.send(Ok(()));
                }
                Phase::Running(_) => self.waiters.push(reply),
                Phase::Down | Phase::Backoff(_) => {
                    self.waiters.push(reply);
                    self.start_now();
                }
            },
            Command::Stop(reply) => {
                self.stop_process().await;
                let _ = reply.send(());
            }
            Command::Restart(reply) => self.restart(reply).await,
            Command::Reload(reply) => {
                let Phase::Running(running) = &self.phase else {
                    let _ = reply.send(Ok(()));
                    return;
                };
                match self.spec.reload_signal.as_deref().map(parse_signal) {
                    None => self.restart(reply).await,
                    Some(Err(err)) => {
                        let _ = reply.send(Err(err));
                    }
                    Some(Ok(sig)) => {
                        say!(
                            "service `{}`: sending {} to pid {}",
                            self.spec.name,
                            sig.as_str(),
                            running.pid
                        );
                        let _ = reply.send(signal_process(running.pid, sig));
                    }
                }
            }
            Command::Update(spec) => {
                if (&spec.log_dir, spec.log_max_bytes, spec.log_keep)
                    != (
                        &self.spec.log_dir,
                        self.spec.log_max_bytes,
                        self.spec.log_keep,
                    )
                {
                    self.log = None;
                }
                self.spec = *spec;
            }
            Command::Shutdown(_) => unreachable!("handled in run"),
        }
    }

    async fn restart(&mut self, reply: Reply<Outcome>) {
        // A restart someone asked for is not a crash: `restarts` counts only the
        // supervisor's own restarts after an exit, so crashes stand out in `status`.
        self.stop_process().await;
        self.waiters.push(reply);
        self.start_now();
    }

    /// Spawn for an explicit request: a spawn failure fails the service and its waiters.
    fn start_now(&mut self) {
        if let Err(err) = self.spawn() {
            say!("service `{}`: {err}", self.spec.name);
            let mut shared = lock(&self.shared);
            shared.state = ServiceState::Failed;
            drop(shared);
            self.phase = Phase::Down;
            self.answer_waiters(&Err(err));
        }
    }

    fn answer_waiters(&mut self, outcome: &Outcome) {
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(outcome.clone());
        }
    }

    /// Spawn the process, its log pumps and its readiness probe.
    fn spawn(&mut self) -> Outcome {
        let spec = &self.spec;
        let log = if let Some(log) = &self.log {
            Arc::clone(log)
        } else {
            let log = RotatingLog::open_shared(&spec.log_dir, spec.log_max_bytes, spec.log_keep)
                .map_err(|err| {
                    format!(
                        "failed to open log directory `{}`: {err}",
                        spec.log_dir.display()
                    )
                })?;
            self.log = Some(Arc::clone(&log));
            log
        };
        let launch = Launch::service(spec);
        let program = spec.argv.first().map_or("", String::as_str);
        let mut cmd = launch
            .command()
            .map_err(|err| format!("failed to prepare `{program}`: {err}"))?;
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|err| format!("failed to spawn `{program}`: {err}"))?;
        let pid = child.id().unwrap_or_default();
        if let Some(out) = child.stdout.take() {
            pump(out, Arc::clone(&log), spec.name.clone());
        }
        if let Some(err) = child.stderr.take() {
            pump(err, log, spec.name.clone());
        }
        let probe = spec
            .readiness
            .clone()
            .map(|readiness| Box::pin(wait_ready(readiness, launch)) as ProbeFuture);
        let ready = probe.is_none();
        let started = Instant::now();
        {
            let mut shared = lock(&self.shared);
            shared.state = if ready {
                ServiceState::Ready
            } else {
                ServiceState::Starting
            };
            shared.pid = Some(pid);
            shared.started = Some(started);
            shared.ready = ready;
        }
        say!("service `{}`: started, pid {pid}", spec.name);
        self.phase = Phase::Running(Box::new(Running {
            child,
            pid,
            started,
            probe,
        }));
        if ready {
            self.answer_waiters(&Ok(()));
        }
        Ok(())
    }

    fn on_exit(&mut self, status: io::Result<ExitStatus>) {
        let Phase::Running(running) = std::mem::replace(&mut self.phase, Phase::Down) else {
            return;
        };
        let (description, success) = match status {
            Ok(status) => (describe_exit(status), status.success()),
            Err(err) => (format!("lost track of the process: {err}"), false),
        };
        // Like systemd's control-group kill: whatever the main process left behind goes too.
        signal_leftovers(running.pid, Signal::SIGKILL);
        {
            let mut shared = lock(&self.shared);
            shared.last_exit = Some(description.clone());
            shared.pid = None;
            shared.started = None;
            shared.ready = false;
        }
        say!(
            "service `{}`: pid {} ended with {description}",
            self.spec.name,
            running.pid
        );
        if !self.waiters.is_empty() {
            self.answer_waiters(&Err(format!("exited during start with {description}")));
        }
        if running.started.elapsed() >= self.backoff.reset_after {
            self.attempt = 0;
        }
        self.schedule_restart_or_give_up(success);
    }

    fn schedule_restart_or_give_up(&mut self, success: bool) {
        let restart = match self.spec.restart {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => !success,
            RestartPolicy::Never => false,
        };
        let mut shared = lock(&self.shared);
        if restart {
            let delay = self.backoff.delay(self.attempt);
            self.attempt = self.attempt.saturating_add(1);
            shared.state = ServiceState::Backoff;
            self.phase = Phase::Backoff(Instant::now() + delay);
            say!(
                "service `{}`: restarting in {}",
                self.spec.name,
                humantime::format_duration(delay)
            );
        } else {
            shared.state = if success {
                ServiceState::Stopped
            } else {
                ServiceState::Failed
            };
            self.phase = Phase::Down;
        }
    }

    async fn on_probe(&mut self, outcome: Outcome) {
        if let Phase::Running(running) = &mut self.phase {
            running.probe = None;
        }
        match outcome {
            Ok(()) => {
                let mut shared = lock(&self.shared);
                shared.state = ServiceState::Ready;
                shared.ready = true;
                drop(shared);
                say!("service `{}`: ready", self.spec.name);
                self.answer_waiters(&Ok(()));
            }
            Err(err) => {
                say!("service `{}`: {err}; stopping it", self.spec.name);
                let waiters = std::mem::take(&mut self.waiters);
                self.stop_process().await;
                lock(&self.shared).state = ServiceState::Failed;
                self.waiters = waiters;
                self.answer_waiters(&Err(err));
            }
        }
    }

    /// Stop signal to the group, SIGKILL after `stop_timeout`, then wait for the group to be gone.
    async fn stop_process(&mut self) {
        let running = match std::mem::replace(&mut self.phase, Phase::Down) {
            Phase::Running(running) => running,
            Phase::Down | Phase::Backoff(_) => {
                lock(&self.shared).state = ServiceState::Stopped;
                self.attempt = 0;
                return;
            }
        };
        let Running { mut child, pid, .. } = *running;
        lock(&self.shared).state = ServiceState::Stopping;
        let sig = parse_signal(&self.spec.stop_signal).unwrap_or(Signal::SIGTERM);
        let deadline = Instant::now() + self.spec.stop_timeout;
        say!(
            "service `{}`: sending {} to process group {pid}",
            self.spec.name,
            sig.as_str()
        );
        signal_child_group(pid, sig);
        let status = tokio::select! {
            status = child.wait() => status,
            () = sleep_until(deadline) => {
                say!("service `{}`: still running after {}; sending SIGKILL", self.spec.name,
                    humantime::format_duration(self.spec.stop_timeout));
                signal_child_group(pid, Signal::SIGKILL);
                child.wait().await
            }
        };
        wait_group_gone(pid, deadline).await;
        let description = status.map_or_else(
            |err| format!("lost track of the process: {err}"),
            describe_exit,
        );
        say!("service `{}`: stopped ({description})", self.spec.name);
        {
            let mut shared = lock(&self.shared);
            shared.state = ServiceState::Stopped;
            shared.pid = None;
            shared.started = None;
            shared.ready = false;
            shared.last_exit = Some(description);
        }
        self.attempt = 0;
        self.answer_waiters(&Err("it was stopped before it became ready".to_owned()));
    }
}

/// Give the rest of the group until `deadline` to exit on its own, then SIGKILL it
/// and allow a moment for the kernel to finish it off.
///
/// Processes that are not our children cannot be waited on, so this checks the group
/// at a slowly growing interval; it returns at once in the common case (group gone).
async fn wait_group_gone(pgid: u32, deadline: Instant) {
    const KILL_GRACE: Duration = Duration::from_secs(1);
    let mut pause = Duration::from_millis(5);
    let mut killed_at = None;
    while group_alive(pgid) {
        let now = Instant::now();
        match killed_at {
            None if now >= deadline => {
                signal_leftovers(pgid, Signal::SIGKILL);
                killed_at = Some(now);
            }
            Some(at) if now >= at + KILL_GRACE => {
                say!("process group {pgid} still has processes after SIGKILL");
                return;
            }
            _ => {}
        }
        sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}
