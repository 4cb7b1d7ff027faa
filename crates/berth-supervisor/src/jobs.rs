//! Periodic jobs: one task per job, one run at a time, killed after its timeout.

use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use berth_supervisor_protocol::{JobSpec, JobStatus};
use nix::sys::signal::Signal;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior, interval_at};

use crate::logs::{RotatingLog, pump};
use crate::process::{Launch, describe_exit, signal_child_group, signal_leftovers};
use crate::say::say;

/// Job logs rotate at this size (a job spec has no log limits of its own).
pub(crate) const JOB_LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Rotated job log files kept.
pub(crate) const JOB_LOG_KEEP: u32 = 5;

/// Answers "is this service ready right now?" for `requires`.
pub(crate) type ReadyCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;

#[derive(Debug)]
struct Record {
    next_run: Instant,
    last_run_unix: Option<u64>,
    last_result: Option<String>,
    runs: u32,
    failures: u32,
}

/// A running job task. Dropping the handle (or [`JobHandle::cancel`]) ends the task
/// and kills a run in progress.
#[derive(Debug)]
pub(crate) struct JobHandle {
    pub(crate) spec: JobSpec,
    record: Arc<Mutex<Record>>,
    cancel: watch::Sender<()>,
    task: JoinHandle<()>,
}

impl JobHandle {
    /// Spawn the task for `spec`: first run one interval from now.
    pub(crate) fn spawn(spec: JobSpec, ready: ReadyCheck) -> Self {
        let record = Arc::new(Mutex::new(Record {
            next_run: Instant::now() + spec.every,
            last_run_unix: None,
            last_result: None,
            runs: 0,
            failures: 0,
        }));
        let (cancel, cancelled) = watch::channel(());
        let task = tokio::spawn(run(spec.clone(), Arc::clone(&record), ready, cancelled));
        Self {
            spec,
            record,
            cancel,
            task,
        }
    }

    pub(crate) fn status(&self) -> JobStatus {
        let record = self.record.lock().unwrap_or_else(PoisonError::into_inner);
        JobStatus {
            name: self.spec.name.clone(),
            next_run_in_secs: record
                .next_run
                .saturating_duration_since(Instant::now())
                .as_secs(),
            last_run_unix: record.last_run_unix,
            last_result: record.last_result.clone(),
            runs: record.runs,
            failures: record.failures,
        }
    }

    /// End the task, killing a run in progress, and wait for it.
    pub(crate) async fn cancel(self) {
        drop(self.cancel);
        let _ = self.task.await;
    }
}

async fn run(
    spec: JobSpec,
    record: Arc<Mutex<Record>>,
    ready: ReadyCheck,
    mut cancelled: watch::Receiver<()>,
) {
    let mut ticks = interval_at(Instant::now() + spec.every, spec.every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let tick_at = tokio::select! {
            tick_at = ticks.tick() => tick_at,
            _ = cancelled.changed() => return,
        };
        let result = if let Some(missing) = spec.requires.iter().find(|name| !ready(name)) {
            format!("skipped: {missing} not ready")
        } else {
            match run_once(&spec, &mut cancelled).await {
                Some(result) => result,
                None => return,
            }
        };
        let mut record = record.lock().unwrap_or_else(PoisonError::into_inner);
        if !result.starts_with("skipped") {
            record.runs += 1;
            if result != "exit 0" {
                record.failures += 1;
            }
            record.last_run_unix = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs());
        }
        record.last_result = Some(result);
        // Ticks are `every` apart; after an overrun the next run starts right away
        // (and the schedule moves on from there), never alongside this one.
        record.next_run = (tick_at + spec.every).max(Instant::now());
    }
}

/// One run; `None` when the job was cancelled meanwhile.
async fn run_once(spec: &JobSpec, cancelled: &mut watch::Receiver<()>) -> Option<String> {
    let log = match crate::logs::log_group(spec.user.as_deref()).and_then(|group| {
        RotatingLog::open_shared(&spec.log_dir, JOB_LOG_MAX_BYTES, JOB_LOG_KEEP, group)
    }) {
        Ok(log) => log,
        Err(err) => {
            return Some(format!(
                "failed to open log directory `{}`: {err}",
                spec.log_dir.display()
            ));
        }
    };
    let mut cmd = match Launch::job(spec).command() {
        Ok(cmd) => cmd,
        Err(err) => return Some(format!("failed to prepare the command: {err}")),
    };
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(err) => return Some(format!("failed to spawn: {err}")),
    };
    let pid = child.id().unwrap_or_default();
    if let Some(out) = child.stdout.take() {
        pump(out, Arc::clone(&log), spec.name.clone());
    }
    if let Some(err) = child.stderr.take() {
        pump(err, log, spec.name.clone());
    }
    let result = tokio::select! {
        status = child.wait() => match status {
            Ok(status) => describe_exit(status),
            Err(err) => format!("lost track of the process: {err}"),
        },
        () = tokio::time::sleep(spec.timeout) => {
            say!("job `{}`: still running after {}; killing it", spec.name, humantime::format_duration(spec.timeout));
            signal_child_group(pid, Signal::SIGKILL);
            let _ = child.wait().await;
            "timeout".to_owned()
        },
        _ = cancelled.changed() => {
            signal_child_group(pid, Signal::SIGKILL);
            let _ = child.wait().await;
            return None;
        },
    };
    // Children the job left behind do not outlive the run.
    signal_leftovers(pid, Signal::SIGKILL);
    say!("job `{}`: {result}", spec.name);
    Some(result)
}
