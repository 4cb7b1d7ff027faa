//! A lifecycle operation as the instance's history records it: one run, made of named
//! steps, each written to the state database's journal before it is taken, and
//! finished with what it really did. `up`, `reconfigure`, `backup` and `restore` are
//! each a short sequence of [`Run::step`]s ending in [`Run::finish`].

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_state::{RunId, RunOutcome, RunStatus, StateDb, StepStatus};

use crate::error::{LifecycleError, Result};
use crate::instance::Instance;
use crate::progress::Progress;

/// What a run changed.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Outcome {
    /// Config files written.
    pub files_changed: Vec<PathBuf>,
    /// Services restarted.
    pub restarted: Vec<String>,
    /// Services reloaded.
    pub reloaded: Vec<String>,
    /// Services stopped because they left the plan (e.g. a component switched off).
    pub stopped: Vec<String>,
    /// Services started because they are new to the plan.
    pub started: Vec<String>,
    /// Hooks run.
    pub hooks_run: Vec<String>,
    /// How long the run took.
    pub duration: Duration,
}

impl Outcome {
    /// Whether the run changed nothing at all.
    pub fn is_noop(&self) -> bool {
        self.files_changed.is_empty()
            && self.restarted.is_empty()
            && self.reloaded.is_empty()
            && self.stopped.is_empty()
            && self.started.is_empty()
            && self.hooks_run.is_empty()
    }

    /// How this outcome is recorded in the history: a run that changed nothing is
    /// "no change", anything else "succeeded".
    pub fn recorded(&self) -> RunOutcome {
        RunOutcome {
            status: if self.is_noop() {
                RunStatus::NoChange
            } else {
                RunStatus::Succeeded
            },
            files_changed: self
                .files_changed
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            services_restarted: self.restarted.clone(),
            services_reloaded: self.reloaded.clone(),
            hooks_run: self.hooks_run.clone(),
            services_stopped: self.stopped.clone(),
            services_started: self.started.clone(),
        }
    }
}

/// How a failed run is recorded.
pub fn failed(error: &str) -> RunOutcome {
    RunOutcome {
        status: RunStatus::Failed {
            error: error.to_owned(),
        },
        ..RunOutcome::default()
    }
}

/// An error and its causes on one line each, as stored in the journal and history.
pub fn error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(text, ": {s}");
        source = s.source();
    }
    text
}

/// One lifecycle operation in progress: the instance, its state database, the run's
/// id in the history, and where progress goes.
pub struct Run<'a> {
    /// The instance it acts on.
    pub inst: &'a Instance,
    /// The instance's state database.
    pub db: StateDb,
    /// This run's id in the history.
    pub id: RunId,
    /// Where steps report progress.
    pub progress: &'a dyn Progress,
    started: Instant,
}

impl<'a> Run<'a> {
    /// Begin a run of `kind` (`up`, `backup` …), creating the state directory and its
    /// database if this is the instance's first.
    pub fn begin(
        inst: &'a Instance,
        kind: &str,
        detail: &str,
        progress: &'a dyn Progress,
    ) -> Result<Self> {
        std::fs::create_dir_all(&inst.paths.state)
            .map_err(LifecycleError::io("create", &inst.paths.state))?;
        Self::open(inst, kind, detail, progress)
    }

    /// Begin a run on an instance that has been set up (its state database exists).
    pub fn begin_existing(
        inst: &'a Instance,
        kind: &str,
        detail: &str,
        progress: &'a dyn Progress,
    ) -> Result<Self> {
        if !inst.paths.state_db().exists() {
            return Err(LifecycleError::NotSetUp(inst.paths.prefix.clone()));
        }
        Self::open(inst, kind, detail, progress)
    }

    /// Go on recording run `id` (begun earlier in this process) with a freshly opened
    /// instance: an operation whose instance changes under it (a restore swaps the site
    /// config in) opens it again between steps.
    pub fn attach(inst: &'a Instance, id: RunId, progress: &'a dyn Progress) -> Result<Self> {
        Ok(Self {
            inst,
            db: StateDb::open(inst.paths.state_db())?,
            id,
            progress,
            started: Instant::now(),
        })
    }

    fn open(
        inst: &'a Instance,
        kind: &str,
        detail: &str,
        progress: &'a dyn Progress,
    ) -> Result<Self> {
        let db = StateDb::open(inst.paths.state_db())?;
        let id = db.begin_run(kind, detail)?;
        Ok(Self {
            inst,
            db,
            id,
            progress,
            started: Instant::now(),
        })
    }

    /// How long the run has taken so far.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Run one journaled step: recorded as begun before `f` runs, then as done or
    /// failed with the error's whole chain.
    pub fn step<T, E>(&self, name: &str, f: impl FnOnce() -> Result<T, E>) -> Result<T, E>
    where
        E: std::error::Error + From<berth_state::StateError>,
    {
        let id = self.db.begin_step(self.id, name)?;
        match f() {
            Ok(v) => {
                self.db.finish_step(id, &StepStatus::Done)?;
                Ok(v)
            }
            Err(e) => {
                self.db.finish_step(
                    id,
                    &StepStatus::Failed {
                        error: error_text(&e),
                    },
                )?;
                Err(e)
            }
        }
    }

    /// End the run with what `result` says: `record` turns a success into what the
    /// history shows; a failure is recorded with its error. The result is passed on.
    pub fn finish<T, E>(
        self,
        result: Result<T, E>,
        record: impl FnOnce(&T) -> RunOutcome,
    ) -> Result<T, E>
    where
        E: std::error::Error + From<berth_state::StateError>,
    {
        match result {
            Ok(v) => {
                self.db.finish_run(self.id, &record(&v))?;
                Ok(v)
            }
            Err(e) => {
                self.db.finish_run(self.id, &failed(&error_text(&e)))?;
                Err(e)
            }
        }
    }
}
