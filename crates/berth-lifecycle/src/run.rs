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
use crate::supervisor::{Socket, Supervisor};

/// Who the history says started this process's runs ([`set_actor`]).
static ACTOR: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Record `actor` as who starts this process's runs (`root`, `alice via sudo`,
/// `console: …`). Set once, early; later calls are ignored.
pub fn set_actor(actor: &str) {
    let _ = ACTOR.set(actor.to_owned());
}

fn actor() -> &'static str {
    ACTOR.get().map_or("", String::as_str)
}

/// What a run changed.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Outcome {
    /// Config files written (created, rewritten, re-moded or removed).
    pub files_changed: Vec<PathBuf>,
    /// Directories created, parents first.
    pub dirs_created: Vec<PathBuf>,
    /// Directories given another mode or owner.
    pub dirs_changed: Vec<PathBuf>,
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
            && self.dirs_created.is_empty()
            && self.dirs_changed.is_empty()
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
            files_changed: shown(&self.files_changed),
            dirs_created: shown(&self.dirs_created),
            dirs_changed: shown(&self.dirs_changed),
            services_restarted: self.restarted.clone(),
            services_reloaded: self.reloaded.clone(),
            hooks_run: self.hooks_run.clone(),
            services_stopped: self.stopped.clone(),
            services_started: self.started.clone(),
        }
    }
}

/// Paths as the history shows them.
fn shown(paths: &[PathBuf]) -> Vec<String> {
    paths.iter().map(|p| p.display().to_string()).collect()
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
    /// The instance's supervisor, as the steps talk to it.
    supervisor: Box<dyn Supervisor + 'a>,
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
        berth_host::fsutil::ensure_dir(&inst.paths.state, 0o755)?;
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
            supervisor: Box::new(Socket(&inst.paths)),
            started: Instant::now(),
        })
    }

    fn open(
        inst: &'a Instance,
        kind: &str,
        detail: &str,
        progress: &'a dyn Progress,
    ) -> Result<Self> {
        crate::leftovers::stop_leftover_children(inst, progress)?;
        let db = StateDb::open(inst.paths.state_db())?;
        let id = db.begin_run_by(kind, detail, actor())?;
        Ok(Self {
            inst,
            db,
            id,
            progress,
            supervisor: Box::new(Socket(&inst.paths)),
            started: Instant::now(),
        })
    }

    /// The instance's supervisor, as the steps talk to it.
    pub fn supervisor(&self) -> &dyn Supervisor {
        self.supervisor.as_ref()
    }

    /// The same run with its steps talking to `supervisor` (a scripted one, in tests).
    #[cfg(test)]
    pub(crate) fn with_supervisor(mut self, supervisor: impl Supervisor + 'a) -> Self {
        self.supervisor = Box::new(supervisor);
        self
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

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use berth_state::{RunStatus, StepStatus};

    use super::{Outcome, Run};
    use crate::{Instance, LifecycleError, Locate, Silent};

    /// The small fixture app, on a prefix of its own (nothing is installed or started).
    fn instance(prefix: &Path) -> Instance {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/ministack");
        crate::instance::open(&Locate {
            prefix: Some(prefix.to_path_buf()),
            manifest: Some(manifest),
            ..Locate::default()
        })
        .unwrap()
    }

    fn boom() -> LifecycleError {
        LifecycleError::io("read", "/nowhere")(std::io::Error::other("disk on fire"))
    }

    /// Each step is journaled with how it ended, a failure with its whole chain of
    /// causes, and the run with the error that ended it.
    #[test]
    fn a_run_journals_each_step_and_the_error_that_ended_it() {
        let dir = tempfile::tempdir().unwrap();
        let inst = instance(&dir.path().join("inst"));
        let run = Run::begin(&inst, "up", "ministack 1.0.0", &Silent).unwrap();
        assert!(inst.paths.state_db().exists());
        let id = run.id;
        assert_eq!(run.step("first", || Ok::<_, LifecycleError>(7)).unwrap(), 7);
        let failed = run.step("second", || Err::<(), _>(boom()));
        assert!(failed.is_err());
        assert!(
            run.finish(failed, |()| Outcome::default().recorded())
                .is_err()
        );

        let db = berth_state::StateDb::open(inst.paths.state_db()).unwrap();
        let steps = db.steps(id).unwrap();
        let cause = "Failed to read `/nowhere`: disk on fire".to_owned();
        assert_eq!(
            steps,
            [
                ("first".to_owned(), Some(StepStatus::Done)),
                (
                    "second".to_owned(),
                    Some(StepStatus::Failed {
                        error: cause.clone()
                    })
                ),
            ]
        );
        let last = &db.history(1).unwrap()[0];
        assert_eq!(
            (last.kind.as_str(), last.detail.as_str()),
            ("up", "ministack 1.0.0")
        );
        assert_eq!(
            last.outcome.as_ref().unwrap().status,
            RunStatus::Failed { error: cause }
        );
    }

    /// What a run records is what it did: changes are "succeeded" with the services
    /// and files, nothing changed is "no change".
    #[test]
    fn a_run_records_its_real_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let inst = instance(&dir.path().join("inst"));
        let changed = Outcome {
            files_changed: vec![PathBuf::from("/p/etc/app.conf")],
            restarted: vec!["web".to_owned()],
            ..Outcome::default()
        };
        for (outcome, status) in [
            (changed, RunStatus::Succeeded),
            (Outcome::default(), RunStatus::NoChange),
        ] {
            let run = Run::begin(&inst, "reconfigure", "", &Silent).unwrap();
            let expected = outcome.recorded();
            run.finish(Ok::<_, LifecycleError>(outcome), Outcome::recorded)
                .unwrap();
            let db = berth_state::StateDb::open(inst.paths.state_db()).unwrap();
            let recorded = db.history(1).unwrap()[0].outcome.clone().unwrap();
            assert_eq!(recorded, expected);
            assert_eq!(recorded.status, status);
        }
    }

    /// `reconfigure` on a prefix that was never set up says so and creates nothing.
    #[test]
    fn an_instance_not_set_up_gets_no_run_and_no_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        let inst = instance(&dir.path().join("inst"));
        let err = Run::begin_existing(&inst, "reconfigure", "", &Silent)
            .err()
            .unwrap();
        assert!(matches!(err, LifecycleError::NotSetUp(_)), "{err}");
        assert!(!inst.paths.state.exists());
    }

    /// An operation that opens its instance again between steps goes on recording the
    /// same run.
    #[test]
    fn attach_goes_on_with_the_same_run() {
        let dir = tempfile::tempdir().unwrap();
        let inst = instance(&dir.path().join("inst"));
        let run = Run::begin(&inst, "restore", "a.berth.tar.zst", &Silent).unwrap();
        let id = run.id;
        run.step("stage", || Ok::<_, LifecycleError>(())).unwrap();
        drop(run);
        let again = instance(&dir.path().join("inst"));
        let run = Run::attach(&again, id, &Silent).unwrap();
        run.step("files", || Ok::<_, LifecycleError>(())).unwrap();
        run.finish(Ok::<_, LifecycleError>(()), |()| berth_state::RunOutcome {
            status: RunStatus::Succeeded,
            ..berth_state::RunOutcome::default()
        })
        .unwrap();
        let db = berth_state::StateDb::open(again.paths.state_db()).unwrap();
        let names: Vec<String> = db.steps(id).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["stage", "files"]);
        let history = db.history(10).unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(
            history[0].outcome.as_ref().unwrap().status,
            RunStatus::Succeeded
        );
    }

    /// The history's text of a failure carries every cause, outermost first: a hook
    /// that could not start its service says which service, and what the supervisor
    /// answered.
    #[test]
    fn an_error_is_recorded_with_its_whole_chain() {
        let err = LifecycleError::HookNeeds {
            hook: "createdb".into(),
            service: "postgresql".into(),
            source: Box::new(boom()),
        };
        assert_eq!(
            super::error_text(&err),
            "Failed to start `postgresql`, which hook `createdb` needs: \
             Failed to read `/nowhere`: disk on fire"
        );
        assert_eq!(
            super::failed("it broke").status,
            RunStatus::Failed {
                error: "it broke".into()
            }
        );
    }

    /// Any one thing done makes a run "succeeded": a run that only ran hooks, or only
    /// started a service, is not recorded as "no change".
    #[test]
    fn a_run_that_did_any_one_thing_is_not_no_change() {
        let one = || vec!["x".to_owned()];
        let outcomes = [
            Outcome {
                files_changed: vec![PathBuf::from("/p/etc/x")],
                ..Outcome::default()
            },
            Outcome {
                restarted: one(),
                ..Outcome::default()
            },
            Outcome {
                reloaded: one(),
                ..Outcome::default()
            },
            Outcome {
                stopped: one(),
                ..Outcome::default()
            },
            Outcome {
                started: one(),
                ..Outcome::default()
            },
            Outcome {
                hooks_run: one(),
                ..Outcome::default()
            },
        ];
        for o in outcomes {
            assert!(!o.is_noop(), "{o:?}");
            let recorded = o.recorded();
            assert_eq!(recorded.status, RunStatus::Succeeded, "{o:?}");
            let listed = [
                recorded.files_changed,
                recorded.services_restarted,
                recorded.services_reloaded,
                recorded.services_stopped,
                recorded.services_started,
                recorded.hooks_run,
            ];
            assert_eq!(listed.iter().map(Vec::len).sum::<usize>(), 1, "{o:?}");
        }
        // How long it took is no change.
        let slow = Outcome {
            duration: std::time::Duration::from_secs(9),
            ..Outcome::default()
        };
        assert_eq!(slow.recorded().status, RunStatus::NoChange);
    }
}
