//! One service's state machine, run as its own task.
//!
//! ```text
//!            start                 probe ok
//! Stopped ─────────► Starting ───────────────► Ready
//!    ▲                  │ probe timeout          │ exit (policy restarts)
//!    │ stop             ▼                        ▼
//!    └─────────────── Failed ◄──(policy gives up)─ Backoff ──(delay)──► Starting
//!
//! An exit after the service had been up for the backoff's `reset_after` skips Backoff:
//! the service is started again at once. Only quick crashes in a row back off.
//!
//! Starting, Ready ──pause──► Paused ──resume, deadline or last holder gone──► Starting (probe anew), Ready
//! ```
//!
//! A pause is held by the control connections that asked for it ([`Holder`]); when
//! the last of them closes, the service is resumed.
//!
//! The task owns the child process and waits on four things at once: the child's
//! exit, the readiness probe, the end of a pause, and control commands. A flapping
//! service therefore only ever delays itself. Other tasks see its state through
//! [`Shared`].

use std::collections::BTreeSet;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_supervisor_protocol::{
    Readiness, RestartPolicy, ServiceSpec, ServiceState, ServiceStatus,
};
use nix::sys::signal::Signal;
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep, sleep_until};

use crate::config::BackoffConfig;
use crate::logs::{RotatingLog, SharedLog, pump};
use crate::probe::wait_ready;
use crate::process::{
    Launch, describe_exit, group_alive, group_stopped, parse_signal, signal_child_group,
    signal_leftovers, signal_process,
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
    /// From the current process's start to its first ready probe.
    pub(crate) ready_after: Option<Duration>,
    pub(crate) pause: Option<Pause>,
}

/// A pause in progress: when it began, and when it ends by itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pause {
    since: SystemTime,
    until: Instant,
}

/// One control connection, as the holder of the pauses it asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Holder(pub(crate) u64);

/// What a pause request did to one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PauseOutcome {
    /// It was running and is now paused.
    Paused,
    /// It was paused already; its deadline is now the later of the two.
    Extended,
    /// It has no process to pause; this is its state.
    NotRunning(ServiceState),
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
            ready_after_ms: self
                .ready_after
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            paused_since_unix: self.pause.map(|p| {
                p.since
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            }),
            resume_in_ms: self.pause.map(|p| {
                let left = p.until.saturating_duration_since(Instant::now());
                u64::try_from(left.as_millis()).unwrap_or(u64::MAX)
            }),
            // Filled in by the supervisor, from /proc, for every service at once.
            pss_bytes: None,
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
    Pause {
        until: Instant,
        timeout: Duration,
        holder: Holder,
        reply: Reply<PauseOutcome>,
    },
    Resume(Reply<()>),
    Release {
        holder: Holder,
        reply: Reply<bool>,
    },
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
            ready_after: None,
            pause: None,
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
                | ServiceState::Paused
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

    /// Freeze the process group until `until` at the latest, on behalf of `holder`;
    /// `timeout` is only for the log.
    pub(crate) async fn pause(
        &self,
        until: Instant,
        timeout: Duration,
        holder: Holder,
    ) -> Result<PauseOutcome, String> {
        self.ask(|reply| Command::Pause {
            until,
            timeout,
            holder,
            reply,
        })
        .await
        .ok_or_else(|| self.gone())
    }

    /// `holder` no longer holds the pause; resume when nobody else does. Returns
    /// whether this resumed the service.
    pub(crate) async fn release(&self, holder: Holder) -> bool {
        self.ask(|reply| Command::Release { holder, reply })
            .await
            .unwrap_or(false)
    }

    /// Continue a paused process group; no-op when not paused.
    pub(crate) async fn resume(&self) {
        self.ask(Command::Resume).await;
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
    /// `Some` until readiness is confirmed.
    probe: Option<ProbeFuture>,
    /// What the probe was made from, to probe anew after a pause.
    readiness: Option<Readiness>,
    launch: Launch,
    pause: Option<Pause>,
    /// The connections holding the pause; empty when not paused.
    holders: BTreeSet<Holder>,
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
    PauseOver,
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
                Event::PauseOver => {
                    self.resume("its pause timed out; ");
                }
                Event::BackoffOver => self.restart_after_crash(),
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
                let Running {
                    child,
                    probe,
                    pause,
                    ..
                } = &mut **running;
                let probed = async {
                    match probe {
                        Some(probe) => probe.as_mut().await,
                        None => std::future::pending().await,
                    }
                };
                // The deadline that keeps a caller that died from leaving the service frozen.
                let resume_at = pause.as_ref().map(|p| p.until);
                let pause_over = async move {
                    match resume_at {
                        Some(at) => sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    status = child.wait() => Event::Exited(status),
                    outcome = probed => Event::Probed(outcome),
                    () = pause_over => Event::PauseOver,
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
            Command::Pause {
                until,
                timeout,
                holder,
                reply,
            } => {
                let outcome = self.pause(until, timeout, holder).await;
                let _ = reply.send(outcome);
            }
            Command::Resume(reply) => {
                self.resume("");
                let _ = reply.send(());
            }
            Command::Release { holder, reply } => {
                let _ = reply.send(self.release(holder));
            }
            Command::Shutdown(_) => unreachable!("handled in run"),
        }
    }

    /// `SIGSTOP` to the whole group, then wait until it has taken effect.
    async fn pause(&mut self, until: Instant, timeout: Duration, holder: Holder) -> PauseOutcome {
        let Phase::Running(running) = &mut self.phase else {
            return PauseOutcome::NotRunning(lock(&self.shared).state);
        };
        let pid = running.pid;
        // Also when already paused: a process continued from outside is frozen again.
        signal_child_group(pid, Signal::SIGSTOP);
        running.holders.insert(holder);
        let outcome = if let Some(pause) = &mut running.pause {
            pause.until = pause.until.max(until);
            PauseOutcome::Extended
        } else {
            running.pause = Some(Pause {
                since: SystemTime::now(),
                until,
            });
            // A probe would only time out against a frozen process: drop it (and the
            // probe command it may be running) and probe anew on resume.
            if let Some(probe) = &mut running.probe {
                *probe = Box::pin(std::future::pending());
            }
            PauseOutcome::Paused
        };
        {
            let mut shared = lock(&self.shared);
            shared.state = ServiceState::Paused;
            shared.pause = running.pause;
        }
        if outcome == PauseOutcome::Paused {
            say!(
                "service `{}`: paused (SIGSTOP to process group {pid}); resuming it in {} at the latest",
                self.spec.name,
                humantime::format_duration(timeout)
            );
        }
        if !wait_group_stopped(pid).await {
            say!(
                "service `{}`: process group {pid} is not all stopped yet; a process in a system call stops when it returns",
                self.spec.name
            );
        }
        outcome
    }

    /// Drop `holder`'s hold on the pause; resume once no connection holds it.
    fn release(&mut self, holder: Holder) -> bool {
        let Phase::Running(running) = &mut self.phase else {
            return false;
        };
        if !running.holders.remove(&holder) || !running.holders.is_empty() {
            return false;
        }
        self.resume("the connection that paused it closed; ")
    }

    /// `SIGCONT` to the group if paused; `why` prefixes the log line. Returns whether
    /// it was paused.
    fn resume(&mut self, why: &str) -> bool {
        let Phase::Running(running) = &mut self.phase else {
            return false;
        };
        let Some(pause) = running.pause.take() else {
            return false;
        };
        running.holders.clear();
        signal_child_group(running.pid, Signal::SIGCONT);
        if running.probe.is_some() {
            running.probe = running.readiness.clone().map(|readiness| {
                Box::pin(wait_ready(readiness, running.launch.clone())) as ProbeFuture
            });
        }
        {
            let mut shared = lock(&self.shared);
            shared.state = if running.probe.is_some() {
                ServiceState::Starting
            } else {
                ServiceState::Ready
            };
            shared.pause = None;
        }
        let paused_for = pause.since.elapsed().unwrap_or_default();
        say!(
            "service `{}`: {why}resumed (SIGCONT to process group {}) after {}",
            self.spec.name,
            running.pid,
            humantime::format_duration(Duration::from_millis(
                u64::try_from(paused_for.as_millis()).unwrap_or(u64::MAX)
            ))
        );
        true
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
            let log = crate::logs::log_group(spec.user.as_deref())
                .and_then(|group| {
                    RotatingLog::open_shared(
                        &spec.log_dir,
                        spec.log_max_bytes,
                        spec.log_keep,
                        group,
                    )
                })
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
        // A readiness command can ask about the process it probes (like systemd's $MAINPID).
        let mut launch = launch;
        launch
            .env
            .insert("BERTH_MAIN_PID".to_owned(), pid.to_string());
        let readiness = spec.readiness.clone();
        let probe = readiness
            .clone()
            .map(|readiness| Box::pin(wait_ready(readiness, launch.clone())) as ProbeFuture);
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
            shared.ready_after = ready.then_some(Duration::ZERO);
        }
        say!("service `{}`: started, pid {pid}", spec.name);
        self.phase = Phase::Running(Box::new(Running {
            child,
            pid,
            started,
            probe,
            readiness,
            launch,
            pause: None,
            holders: BTreeSet::new(),
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
            shared.ready_after = None;
            shared.pause = None;
        }
        // Whole milliseconds: enough for the log, and humantime prints them short.
        let uptime = Duration::from_millis(
            u64::try_from(running.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        );
        say!(
            "service `{}`: pid {} ended with {description} after {}",
            self.spec.name,
            running.pid,
            humantime::format_duration(uptime)
        );
        if !self.waiters.is_empty() {
            self.answer_waiters(&Err(format!("exited during start with {description}")));
        }
        self.schedule_restart_or_give_up(success, Some(running.started.elapsed()));
    }

    /// After an exit: restart as the restart policy says, at once when the service had
    /// been up for the reset window (`uptime`; `None` when it never got going), else
    /// after the backoff of its quick crashes in a row.
    fn schedule_restart_or_give_up(&mut self, success: bool, uptime: Option<Duration>) {
        let restart = match self.spec.restart {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => !success,
            RestartPolicy::Never => false,
        };
        let mut shared = lock(&self.shared);
        if restart {
            let (delay, attempt) = self.backoff.after_crash(uptime, self.attempt);
            self.attempt = attempt;
            shared.state = ServiceState::Backoff;
            drop(shared);
            say!(
                "service `{}`: restarting in {}",
                self.spec.name,
                humantime::format_duration(delay)
            );
            if delay.is_zero() {
                self.phase = Phase::Down;
                self.restart_after_crash();
            } else {
                self.phase = Phase::Backoff(Instant::now() + delay);
            }
        } else {
            shared.state = if success {
                ServiceState::Stopped
            } else {
                ServiceState::Failed
            };
            self.phase = Phase::Down;
        }
    }

    /// The supervisor's own restart after an exit (counted in `restarts`); a spawn
    /// failure backs off and tries again.
    fn restart_after_crash(&mut self) {
        lock(&self.shared).restarts += 1;
        if let Err(err) = self.spawn() {
            say!("service `{}`: {err}", self.spec.name);
            self.schedule_restart_or_give_up(false, None);
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
                if shared.ready_after.is_none() {
                    shared.ready_after = shared.started.map(|t| t.elapsed());
                }
                drop(shared);
                say!("service `{}`: ready", self.spec.name);
                self.answer_waiters(&Ok(()));
            }
            Err(err) => {
                say!("service `{}`: {err}; stopping it", self.spec.name);
                let waiters = std::mem::take(&mut self.waiters);
                let asked = !waiters.is_empty();
                let attempt = self.attempt;
                self.stop_process().await;
                self.attempt = attempt;
                lock(&self.shared).last_exit = Some(err.clone());
                self.waiters = waiters;
                self.answer_waiters(&Err(err));
                if asked {
                    // Someone is waiting on this start (`up`, `start`): they get the error
                    // and the service stays down until asked again.
                    lock(&self.shared).state = ServiceState::Failed;
                } else {
                    // A restart after a crash that never got ready is one more failed
                    // attempt: back off and try again, as the restart policy says.
                    self.schedule_restart_or_give_up(false, None);
                }
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
        let Running {
            mut child,
            pid,
            pause,
            ..
        } = *running;
        {
            let mut shared = lock(&self.shared);
            shared.state = ServiceState::Stopping;
            shared.pause = None;
        }
        let sig = parse_signal(&self.spec.stop_signal).unwrap_or(Signal::SIGTERM);
        let deadline = Instant::now() + self.spec.stop_timeout;
        say!(
            "service `{}`: sending {} to process group {pid}",
            self.spec.name,
            sig.as_str()
        );
        signal_child_group(pid, sig);
        if pause.is_some() {
            // A stopped process acts on the stop signal only once continued; sent after
            // it, so the stop signal is the first thing the process sees.
            say!(
                "service `{}`: sending SIGCONT to paused process group {pid}",
                self.spec.name
            );
            signal_child_group(pid, Signal::SIGCONT);
        }
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

/// Wait until every process of the paused group `pgid` is stopped, so that when a
/// pause is answered none of them is still in the middle of a write. A process in
/// uninterruptible sleep stops only once its system call returns: give up after a
/// second then (returns false).
async fn wait_group_stopped(pgid: u32) -> bool {
    const LIMIT: Duration = Duration::from_secs(1);
    let deadline = Instant::now() + LIMIT;
    let mut pause = Duration::from_millis(1);
    while !group_stopped(pgid) {
        if Instant::now() >= deadline {
            return false;
        }
        sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
    true
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
