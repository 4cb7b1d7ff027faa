//! Finishing what a killed run left undone.
//!
//! Before a run writes config files it records in the state database what it means to
//! do to the services ([`Change::write`](crate::change::Change::write)); once the
//! supervisor has acted on them ([`Change::acted`](crate::change::Change::acted)) the
//! record is cleared. A run killed in between leaves files that are new while
//! their services still run with the old ones, and nothing on disk says so any more:
//! the next converge finds no file to change. So `up` and `reconfigure` first look
//! for such records (`finish`) and do what those runs meant to: hand the
//! supervisor the plan on disk with the restarts and reloads they recorded, start
//! what they would have started, and wait for the app to answer.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use berth_render::DesiredState;
use berth_state::{PendingServices, Unfinished};
use berth_supervisor_protocol::{Request, Response, SupervisionPlan, Target};

use crate::change::add;
use crate::error::Result;
use crate::instance::Instance;
use crate::run::{Outcome, Run};
use crate::state_files::applied_plan;
use crate::{health, hooks, supervisor};

/// What runs that never finished left pending, read without changing anything: for
/// the dry run.
pub fn left_pending(inst: &Instance) -> Result<Vec<Unfinished>> {
    match berth_state::StateDb::open_read_only(inst.paths.state_db())? {
        Some(db) => Ok(db.pending_services(None)?),
        None => Ok(Vec::new()),
    }
}

/// Finish what interrupted runs left pending (journaled step `finish interrupted
/// run <id>`), adding what was done to `outcome` and saying so through the run's
/// progress. With no supervisor running nothing runs the old configuration: the
/// records are dropped, and the services read the new files when they start.
pub(crate) fn finish(run: &Run, state: &DesiredState, outcome: &mut Outcome) -> Result<()> {
    let unfinished = run.db.pending_services(Some(run.id))?;
    if unfinished.is_empty() {
        return Ok(());
    }
    let inst = run.inst;
    let runs = unfinished
        .iter()
        .map(|u| format!("{} ({})", u.run, u.kind))
        .collect::<Vec<_>>()
        .join(", ");
    let plan = applied_plan(&inst.paths.supervision_plan());
    if let (true, Some(plan)) = (run.supervisor().is_running(), plan) {
        let wanted = merged(&unfinished, &plan);
        // Hooks the killed run would have run before restarting the services they
        // gate (a migration before the app server) are still due: those services
        // wait for them here too, as they would have in the run itself.
        let due = hooks::due(run, state, &hooks::every_due(false))?;
        let (now, later) = split(&wanted, &hooks::gated_services(&due));
        let mut done = Outcome::default();
        // The app is checked once the last of it is done (not at all when nothing was).
        let healthy = |done: &Outcome| {
            let stopped = supervisor::stopped_services(run.supervisor());
            if !done.is_noop() && stopped.is_empty() {
                health::wait_healthy(state)?;
            }
            Ok::<_, crate::LifecycleError>(())
        };
        run.progress
            .begin(&format!("Finishing interrupted run {runs}"));
        run.step(&format!("finish interrupted run {runs}"), || {
            act(run, plan.clone(), &now, &mut done)?;
            if later.is_empty() {
                healthy(&done)?;
            }
            Ok::<_, crate::LifecycleError>(())
        })?;
        run.progress.end("");
        if !later.is_empty() {
            add(&mut outcome.hooks_run, hooks::run_due(run, &due)?);
            run.step(
                &format!("finish interrupted run {runs} after hooks"),
                || {
                    let mut after = Outcome::default();
                    act(run, plan, &later, &mut after)?;
                    merge(&mut done, after);
                    healthy(&done)
                },
            )?;
        }
        run.progress.note(&describe(&runs, &done));
        merge(outcome, done);
    }
    for u in &unfinished {
        run.db.clear_pending_services(u.run)?;
    }
    Ok(())
}

fn merge(into: &mut Outcome, from: Outcome) {
    add(&mut into.restarted, from.restarted);
    add(&mut into.reloaded, from.reloaded);
    add(&mut into.stopped, from.stopped);
    add(&mut into.started, from.started);
}

/// `wanted` split into what can be done at once and what waits for due hooks (the
/// services those hooks gate). Stops never wait.
fn split(wanted: &PendingServices, gated: &BTreeSet<String>) -> (PendingServices, PendingServices) {
    let waits = |n: &String| gated.contains(n);
    let part = |list: &[String], later: bool| -> Vec<String> {
        list.iter().filter(|n| waits(n) == later).cloned().collect()
    };
    let now = PendingServices {
        restart: part(&wanted.restart, false),
        reload: part(&wanted.reload, false),
        start: part(&wanted.start, false),
        stop: wanted.stop.clone(),
    };
    let later = PendingServices {
        restart: part(&wanted.restart, true),
        reload: part(&wanted.reload, true),
        start: part(&wanted.start, true),
        stop: Vec::new(),
    };
    (now, later)
}

/// What every unfinished run meant to do, limited to services of `plan` (the one on
/// disk, which the last of them wrote).
fn merged(unfinished: &[Unfinished], plan: &SupervisionPlan) -> PendingServices {
    let known = |name: &String| plan.services.iter().any(|s| &s.name == name);
    let mut all = PendingServices::default();
    for u in unfinished {
        let s = &u.services;
        add(
            &mut all.restart,
            s.restart.iter().filter(|n| known(n)).cloned().collect(),
        );
        add(
            &mut all.reload,
            s.reload.iter().filter(|n| known(n)).cloned().collect(),
        );
        add(
            &mut all.start,
            s.start.iter().filter(|n| known(n)).cloned().collect(),
        );
    }
    all.reload.retain(|n| !all.restart.contains(n));
    all
}

/// Hand the supervisor `plan` with the pending restarts and reloads (it stops what
/// left the plan and restarts what changed in it), then start the pending new services.
fn act(
    run: &Run,
    plan: SupervisionPlan,
    wanted: &PendingServices,
    done: &mut Outcome,
) -> Result<()> {
    let supervisor = run.supervisor();
    let answer = supervisor
        .request(&Request::Apply {
            plan,
            restart: wanted.restart.clone(),
            reload: wanted.reload.clone(),
        })
        .map_err(|e| supervisor.with_failed_logs(e))?;
    if let Response::Applied {
        restarted,
        reloaded,
        removed,
    } = answer
    {
        done.restarted = restarted;
        done.reloaded = reloaded;
        done.stopped = removed;
    }
    if !wanted.start.is_empty() {
        supervisor
            .request(&Request::Start {
                target: Target::Many(wanted.start.clone()),
            })
            .map_err(|e| supervisor.with_failed_logs(e))?;
        done.started.clone_from(&wanted.start);
    }
    Ok(())
}

/// One line for the administrator: which run, and what was done for it.
fn describe(runs: &str, done: &Outcome) -> String {
    let mut text = format!("Run {runs} was interrupted before it acted on its services:");
    let mut any = false;
    for (verb, names) in [
        ("restarted", &done.restarted),
        ("reloaded", &done.reloaded),
        ("started", &done.started),
        ("stopped", &done.stopped),
    ] {
        if !names.is_empty() {
            let _ = write!(
                text,
                "{} {verb} {}",
                if any { ";" } else { "" },
                names.join(", ")
            );
            any = true;
        }
    }
    if !any {
        text.push_str(" nothing was left to do");
    }
    text
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use berth_state::RunId;
    use berth_supervisor_protocol::{RestartPolicy, ServiceSpec};

    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn unfinished(run: i64, restart: &[&str], reload: &[&str], start: &[&str]) -> Unfinished {
        Unfinished {
            run: RunId(run),
            kind: "reconfigure".into(),
            recorded_at: jiff::Timestamp::UNIX_EPOCH,
            services: PendingServices {
                restart: names(restart),
                reload: names(reload),
                start: names(start),
                stop: Vec::new(),
            },
        }
    }

    fn plan(services: &[&str]) -> SupervisionPlan {
        SupervisionPlan {
            services: services
                .iter()
                .map(|name| ServiceSpec {
                    name: (*name).to_owned(),
                    argv: vec!["true".into()],
                    env: std::collections::BTreeMap::new(),
                    cwd: None,
                    user: None,
                    depends_on: Vec::new(),
                    readiness: None,
                    stop_signal: "SIGTERM".into(),
                    stop_timeout: Duration::from_secs(1),
                    reload_signal: None,
                    restart: RestartPolicy::Always,
                    log_dir: format!("/p/log/{name}").into(),
                    log_max_bytes: 1,
                    log_keep: 1,
                })
                .collect(),
            jobs: Vec::new(),
            metrics: None,
        }
    }

    /// Two killed runs: what either meant to do is done once, a restart wins over a
    /// reload, and services the plan on disk no longer has are left out.
    #[test]
    fn the_pending_work_of_several_runs_is_merged_against_the_plan_on_disk() {
        let runs = [
            unfinished(3, &["app"], &["nginx", "gone"], &[]),
            unfinished(5, &["nginx", "app"], &["postgresql"], &["worker", "left"]),
        ];
        let wanted = merged(&runs, &plan(&["app", "nginx", "postgresql", "worker"]));
        assert_eq!(wanted.restart, ["app", "nginx"]);
        assert_eq!(wanted.reload, ["postgresql"]);
        assert_eq!(wanted.start, ["worker"]);
        assert!(wanted.stop.is_empty(), "the plan on disk stops what left");
    }

    #[test]
    fn what_was_done_in_one_line() {
        let done = Outcome {
            restarted: names(&["app"]),
            reloaded: names(&["nginx", "postgresql"]),
            ..Outcome::default()
        };
        assert_eq!(
            describe("7 (reconfigure)", &done),
            "Run 7 (reconfigure) was interrupted before it acted on its services: \
             restarted app; reloaded nginx, postgresql"
        );
        assert_eq!(
            describe("7 (up)", &Outcome::default()),
            "Run 7 (up) was interrupted before it acted on its services: nothing was left to do"
        );
    }

    /// Started and stopped services are named too, after the restarts and reloads.
    #[test]
    fn what_was_started_and_stopped_is_said_after_the_restarts() {
        let done = Outcome {
            stopped: names(&["redis"]),
            started: names(&["worker", "mail"]),
            restarted: names(&["app"]),
            ..Outcome::default()
        };
        assert_eq!(
            describe("3 (up), 5 (reconfigure)", &done),
            "Run 3 (up), 5 (reconfigure) was interrupted before it acted on its services: \
             restarted app; started worker, mail; stopped redis"
        );
    }

    /// A run that recorded nothing the plan on disk still has leaves nothing to do: a
    /// later run switched those services off.
    #[test]
    fn pending_work_for_services_no_longer_planned_is_dropped() {
        let runs = [unfinished(2, &["gone"], &["old"], &["left"])];
        let wanted = merged(&runs, &plan(&["app"]));
        assert_eq!(wanted, PendingServices::default());
    }

    /// A reload recorded by a later run is dropped when an earlier one restarts the
    /// same service: the restart reads the new files anyway.
    #[test]
    fn a_restart_of_an_earlier_run_wins_over_a_later_reload() {
        let runs = [
            unfinished(3, &["nginx"], &[], &[]),
            unfinished(5, &[], &["nginx", "app"], &[]),
        ];
        let wanted = merged(&runs, &plan(&["app", "nginx"]));
        assert_eq!(wanted.restart, ["nginx"]);
        assert_eq!(wanted.reload, ["app"]);
    }

    mod finishing {
        use std::cell::RefCell;

        use berth_state::{PendingServices, StepStatus};
        use berth_supervisor_protocol::{
            Request, Response, ServiceState, ServiceStatus, SupervisionPlan, Target,
        };

        use crate::desired::supervision_plan;
        use crate::progress::Progress;
        use crate::testing::{Scripted, instance, names, service, state_on};
        use crate::{Instance, LifecycleError, Outcome, Run, Silent};

        #[derive(Default)]
        struct Notes(RefCell<Vec<String>>);

        impl Progress for Notes {
            fn begin(&self, _: &str) {}
            fn end(&self, _: &str) {}
            fn note(&self, line: &str) {
                self.0.borrow_mut().push(line.to_owned());
            }
        }

        /// An instance whose plan on disk has web and db, and a `reconfigure` run
        /// killed after it recorded `pending` (it never finished).
        fn killed_run(
            tmp: &tempfile::TempDir,
            pending: &PendingServices,
        ) -> (Instance, SupervisionPlan, berth_state::RunId) {
            let inst = instance(&tmp.path().join("inst"));
            let killed = {
                let run = Run::begin(&inst, "reconfigure", "", &Silent).unwrap();
                run.db.record_pending_services(run.id, pending).unwrap();
                run.id
            };
            let state = state_on(
                &inst.paths.prefix,
                vec![service("web", &[]), service("db", &[])],
                vec![],
            );
            let plan = supervision_plan(&inst, &state);
            std::fs::write(
                inst.paths.supervision_plan(),
                serde_json::to_vec(&plan).unwrap(),
            )
            .unwrap();
            (inst, plan, killed)
        }

        fn status(name: &str, state: ServiceState) -> ServiceStatus {
            ServiceStatus {
                name: name.into(),
                state,
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

        fn pending() -> PendingServices {
            PendingServices {
                restart: names(&["web"]),
                reload: vec![],
                start: names(&["db"]),
                stop: vec![],
            }
        }

        /// The next run hands the supervisor the plan on disk with the killed run's
        /// restarts, starts what it would have started, says so, and clears the
        /// record (here a service is stopped on purpose, so it does not wait for health).
        #[test]
        fn the_next_run_does_what_a_killed_one_left_and_clears_its_record() {
            let tmp = tempfile::tempdir().unwrap();
            let (inst, plan, killed) = killed_run(&tmp, &pending());
            let mut sup = Scripted::answering(vec![Response::Applied {
                restarted: names(&["web"]),
                reloaded: vec![],
                removed: vec![],
            }]);
            sup.status = Some(Response::Status {
                supervisor_pid: 1,
                services: vec![status("mail", ServiceState::Stopped)],
                jobs: vec![],
            });
            let notes = Notes::default();
            let run = Run::begin(&inst, "up", "", &notes)
                .unwrap()
                .with_supervisor(&sup);
            let state = state_on(&inst.paths.prefix, vec![], vec![]);
            let mut outcome = Outcome::default();
            super::super::finish(&run, &state, &mut outcome).unwrap();
            assert_eq!(
                sup.sent(),
                [
                    Request::Apply {
                        plan,
                        restart: names(&["web"]),
                        reload: vec![],
                    },
                    Request::Start {
                        target: Target::Many(names(&["db"]))
                    },
                ]
            );
            assert_eq!(outcome.restarted, ["web"]);
            assert_eq!(outcome.started, ["db"]);
            assert_eq!(
                *notes.0.borrow(),
                [format!(
                    "Run {killed} (reconfigure) was interrupted before it acted on its services: \
                     restarted web; started db"
                )]
            );
            assert!(run.db.pending_services(None).unwrap().is_empty());
            let steps = run.db.steps(run.id).unwrap();
            assert_eq!(
                steps,
                [(
                    format!("finish interrupted run {killed} (reconfigure)"),
                    Some(StepStatus::Done)
                )]
            );
        }

        /// A killed run whose restart of `web` waited for a due hook (`migrate`,
        /// `before = ["web"]`): the next run restarts what did not wait at once, runs
        /// the hook, and only then restarts `web`, never early on the new files.
        #[test]
        fn a_service_held_for_a_due_hook_is_restarted_after_it() {
            let tmp = tempfile::tempdir().unwrap();
            let pending = PendingServices {
                restart: names(&["web", "db"]),
                reload: vec![],
                start: vec![],
                stop: vec![],
            };
            let (inst, _, _) = killed_run(&tmp, &pending);
            std::fs::create_dir_all(inst.paths.prefix.join("log/hooks")).unwrap();
            let journal = tmp.path().join("journal");
            let mut migrate = crate::testing::hook("migrate", &[], &["web"]);
            migrate.log_file = inst.paths.prefix.join("log/hooks/migrate.log");
            migrate.argv = names(&[
                "/bin/sh",
                "-c",
                &format!("echo hook migrate >> {}", journal.display()),
            ]);
            let mut sup = Scripted::answering(vec![
                Response::Applied {
                    restarted: names(&["db"]),
                    reloaded: vec![],
                    removed: vec![],
                },
                Response::Applied {
                    restarted: names(&["web"]),
                    reloaded: vec![],
                    removed: vec![],
                },
            ])
            .journaling(&journal);
            sup.status = Some(Response::Status {
                supervisor_pid: 1,
                services: vec![status("mail", ServiceState::Stopped)],
                jobs: vec![],
            });
            let run = Run::begin(&inst, "up", "", &Silent)
                .unwrap()
                .with_supervisor(&sup);
            let state = state_on(&inst.paths.prefix, vec![], vec![migrate]);
            let mut outcome = Outcome::default();
            super::super::finish(&run, &state, &mut outcome).unwrap();
            let lines: Vec<String> = std::fs::read_to_string(&journal)
                .unwrap()
                .lines()
                .map(|l| {
                    l.split_once("] ")
                        .map_or(l.to_owned(), |(_, tail)| tail.to_owned())
                })
                .collect();
            assert_eq!(
                lines,
                ["restart=db reload=", "hook migrate", "restart=web reload="]
            );
            assert_eq!(outcome.hooks_run, ["migrate"]);
            assert_eq!(outcome.restarted, ["db", "web"]);
            assert!(run.db.pending_services(None).unwrap().is_empty());
        }

        /// When the app does not answer after the killed run's work is done, the run
        /// fails and the record stays: the next run tries again.
        #[test]
        fn a_finish_that_fails_its_health_check_keeps_the_record() {
            let tmp = tempfile::tempdir().unwrap();
            let (inst, _, killed) = killed_run(&tmp, &pending());
            let sup = Scripted::answering(vec![Response::Applied {
                restarted: names(&["web"]),
                reloaded: vec![],
                removed: vec![],
            }]);
            let run = Run::begin(&inst, "up", "", &Silent)
                .unwrap()
                .with_supervisor(&sup);
            // A URL that cannot be asked: the health check fails at once.
            let mut state = state_on(&inst.paths.prefix, vec![], vec![]);
            state.health_url = "not a url".to_owned();
            let err = super::super::finish(&run, &state, &mut Outcome::default()).unwrap_err();
            assert!(matches!(err, LifecycleError::HealthUrl(_)), "{err}");
            let left = run.db.pending_services(Some(run.id)).unwrap();
            assert_eq!(left.len(), 1);
            assert_eq!(left[0].run, killed);
        }

        /// Nothing runs the old configuration when no supervisor is running: the record
        /// is dropped and nothing is asked (the services read the new files as they start).
        #[test]
        fn without_a_supervisor_the_record_is_dropped() {
            let tmp = tempfile::tempdir().unwrap();
            let (inst, _, _) = killed_run(&tmp, &pending());
            let sup = Scripted::default();
            let run = Run::begin(&inst, "up", "", &Silent)
                .unwrap()
                .with_supervisor(&sup);
            let state = state_on(&inst.paths.prefix, vec![], vec![]);
            let mut outcome = Outcome::default();
            super::super::finish(&run, &state, &mut outcome).unwrap();
            assert!(outcome.is_noop());
            assert!(sup.requests.borrow().is_empty());
            assert!(run.db.pending_services(None).unwrap().is_empty());
        }

        /// A refused apply fails the run with the supervisor's words and keeps the record.
        #[test]
        fn a_refused_finish_keeps_the_record() {
            let tmp = tempfile::tempdir().unwrap();
            let (inst, _, _) = killed_run(&tmp, &pending());
            let sup = Scripted::answering(vec![Response::Error {
                message: "no".into(),
            }]);
            let run = Run::begin(&inst, "up", "", &Silent)
                .unwrap()
                .with_supervisor(&sup);
            let state = state_on(&inst.paths.prefix, vec![], vec![]);
            let err = super::super::finish(&run, &state, &mut Outcome::default()).unwrap_err();
            assert_eq!(err.to_string(), "no");
            assert_eq!(sup.sent().len(), 1, "nothing is started after a refusal");
            assert_eq!(run.db.pending_services(Some(run.id)).unwrap().len(), 1);
        }
    }
}
