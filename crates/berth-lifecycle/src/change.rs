//! A new desired state applied to an instance as one change: config files, the
//! supervision plan and the services running with them. When a later part of `up` or
//! `reconfigure` fails (a service that does not get ready, a failing hook, no answer
//! at the health URL), the whole change is put back and the services run with the
//! configuration they had before.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use berth_host::converge::{Applied, ConvergePlan};
use berth_render::{DesiredState, ServiceChanges, service_changes};
use berth_state::PendingServices;
use berth_supervisor_protocol::{Request, Response, SupervisionPlan, Target};

use crate::desired::{mask_list, supervision_plan};
use crate::error::{LifecycleError, Result};
use crate::instance::Instance;
use crate::run::{Outcome, Run};
use crate::state_files::{write_managed_files, write_plan};
use crate::supervisor;

/// Files written and the plan stored, with what it takes to put them back.
pub struct Change {
    /// The file changes, and the services they restart or reload.
    pub plan: ConvergePlan,
    applied: Option<Applied>,
    /// The list of files berth wrote, as it was.
    old_managed: Option<Vec<u8>>,
    /// The plan file as it was (`None`: there was none).
    old_plan_bytes: Option<Vec<u8>>,
    old_plan: Option<SupervisionPlan>,
    new_plan: SupervisionPlan,
    plan_changed: bool,
    /// What the change does to the services (recorded as pending before any file is
    /// written, so a killed run is finished by the next one).
    services: ServiceChanges,
    /// Services that had a process before the change.
    running_before: BTreeSet<String>,
    /// Whether the supervisor was started for this change (it is stopped again on
    /// roll back, so the instance is down as it was).
    pub started_supervisor: bool,
}

impl Change {
    /// Write the files (journaled step `converge`) and the supervision plan.
    /// `running_before`: the services that have a process now.
    pub fn write(
        run: &Run,
        state: &DesiredState,
        secrets: &BTreeMap<String, String>,
        running_before: BTreeSet<String>,
    ) -> Result<Self> {
        let inst = run.inst;
        let old_plan_bytes = std::fs::read(inst.paths.supervision_plan()).ok();
        let old_plan = old_plan_bytes
            .as_deref()
            .and_then(|b| serde_json::from_slice(b).ok());
        let new_plan = supervision_plan(inst, state);
        let old_managed = std::fs::read(inst.paths.managed_files()).ok();
        let previous: Vec<PathBuf> = old_managed
            .as_deref()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or_default();
        let (plan, services, applied) = run.step("converge", || {
            let plan = berth_host::converge::plan(state, &mask_list(secrets), inst.facts.is_root)?
                .remove_stale(state, &previous);
            let services =
                service_changes(old_plan.as_ref(), &new_plan, &plan.restart, &plan.reload);
            if !services.is_empty() {
                run.db
                    .record_pending_services(run.id, &pending(&services))?;
            }
            let applied = if plan.is_empty() {
                None
            } else {
                Some(berth_host::converge::apply(&plan, state)?)
            };
            Ok::<_, LifecycleError>((plan, services, applied))
        })?;
        let mut change = Self {
            plan,
            applied,
            old_managed,
            old_plan_bytes,
            old_plan,
            plan_changed: false,
            services,
            new_plan,
            running_before,
            started_supervisor: false,
        };
        let written =
            write_managed_files(inst, state).and_then(|()| write_plan(inst, &change.new_plan));
        match written {
            Ok(changed) => change.plan_changed = changed,
            Err(e) => return Err(change.undo_files_after(inst, e)),
        }
        // Written, not yet acted on: what the pending record is for.
        crate::fault::point("change:written");
        Ok(change)
    }

    /// The config files written.
    pub fn files(&self) -> Vec<PathBuf> {
        self.applied
            .as_ref()
            .map(|a| a.report.changed.clone())
            .unwrap_or_default()
    }

    /// Whether nothing was written: then there is nothing to put back.
    pub fn is_empty(&self) -> bool {
        self.applied.is_none() && !self.plan_changed
    }

    /// Whether there is an earlier configuration to go back to. A first `up` has
    /// none: what it did is kept, and running `berth up` again carries on.
    fn has_previous(&self) -> bool {
        self.old_plan.is_some()
    }

    /// Hand the new plan to a running supervisor (journaled step `apply to
    /// supervisor`): services whose files or command changed restart or reload,
    /// services that left the plan stop, services new to it start. Services stopped
    /// by the administrator stay stopped.
    pub fn apply_to_supervisor(&self, run: &Run, outcome: &mut Outcome) -> Result<()> {
        let inst = run.inst;
        if !supervisor::is_running(&inst.paths) {
            return Ok(());
        }
        if self.plan_changed || !self.plan.restart.is_empty() || !self.plan.reload.is_empty() {
            let req = Request::Apply {
                plan: self.new_plan.clone(),
                restart: self.plan.restart.clone(),
                reload: self.plan.reload.clone(),
            };
            let answer = run.step("apply to supervisor", || {
                supervisor::request(&inst.paths, &req)
                    .map_err(|e| supervisor::with_failed_logs(&inst.paths, e))
            })?;
            if let Response::Applied {
                restarted,
                reloaded,
                removed,
            } = answer
            {
                add(&mut outcome.restarted, restarted);
                add(&mut outcome.reloaded, reloaded);
                add(&mut outcome.stopped, removed);
            }
        }
        let new = self.new_services();
        if !new.is_empty() {
            run.step("start new services", || {
                supervisor::request(
                    &inst.paths,
                    &Request::Start {
                        target: Target::Many(new.clone()),
                    },
                )
                .map_err(|e| supervisor::with_failed_logs(&inst.paths, e))
            })?;
            add(&mut outcome.started, new);
        }
        self.acted(run)
    }

    /// The services run with the new files and plan now (the supervisor applied it, or
    /// was started with it): nothing is left pending for a later run to finish.
    pub fn acted(&self, run: &Run) -> Result<()> {
        if !self.services.is_empty() {
            run.db.clear_pending_services(run.id)?;
        }
        Ok(())
    }

    /// Services in the new plan that the old one did not have (none on a first `up`,
    /// which starts everything).
    fn new_services(&self) -> Vec<String> {
        if self.old_plan.is_none() {
            return Vec::new();
        }
        self.services.start.clone()
    }

    /// Run `f`; when it fails, put the change back and say so in the error.
    pub fn guard<T>(&mut self, run: &Run, f: impl FnOnce(&Self) -> Result<T>) -> Result<T> {
        match f(self) {
            Ok(v) => Ok(v),
            // Nothing to put back, or nothing to go back to.
            Err(e) if (self.is_empty() && !self.started_supervisor) || !self.has_previous() => {
                Err(e)
            }
            Err(e) => Err(self.roll_back(run, e)),
        }
    }

    fn undo_files_after(self, inst: &Instance, cause: LifecycleError) -> LifecycleError {
        restore_file(&inst.paths.managed_files(), self.old_managed.as_deref());
        match self.applied.map(Applied::roll_back) {
            None | Some(Ok(_)) => cause,
            Some(Err(undo)) => LifecycleError::RollbackFailed {
                cause: Box::new(cause),
                undo: Box::new(undo.into()),
            },
        }
    }

    /// Put files and plan back, give the supervisor the old plan (restarting what the
    /// change restarted or reloaded), and start again what was running before.
    fn roll_back(&mut self, run: &Run, cause: LifecycleError) -> LifecycleError {
        let files = self.files().len();
        let result = run.step("roll back", || self.put_back(run.inst));
        match result {
            Ok(()) => LifecycleError::RolledBack {
                cause: Box::new(cause),
                files,
            },
            Err(undo) => LifecycleError::RollbackFailed {
                cause: Box::new(cause),
                undo: Box::new(undo),
            },
        }
    }

    fn put_back(&mut self, inst: &Instance) -> Result<()> {
        // A path that could not be put back (one a service user replaced, say) does not
        // stop the rest: the old plan and services come back, then it is reported.
        let undo = self.applied.take().map(Applied::roll_back);
        let rest = self.put_back_plan_and_services(inst);
        if let Some(Err(e)) = undo {
            return Err(e.into());
        }
        rest
    }

    fn put_back_plan_and_services(&mut self, inst: &Instance) -> Result<()> {
        restore_file(&inst.paths.managed_files(), self.old_managed.as_deref());
        let plan_path = inst.paths.supervision_plan();
        match &self.old_plan_bytes {
            Some(bytes) => berth_host::fsutil::write_atomic(&plan_path, bytes, 0o600, None)?,
            None => {
                berth_host::fsutil::remove_file_if_exists(&plan_path)?;
            }
        }
        if !supervisor::is_running(&inst.paths) {
            return Ok(());
        }
        for req in self.put_back_requests() {
            supervisor::request(&inst.paths, &req)?;
            if matches!(req, Request::Shutdown) {
                supervisor::wait_exited(&inst.paths, std::time::Duration::from_mins(2));
            }
        }
        Ok(())
    }

    /// What the supervisor is asked, in order, to run the services as before the change.
    /// A supervisor started for the change is shut down: the instance was down. Else it
    /// gets the old plan back, restarting or reloading for the old files what the change
    /// restarted or reloaded for the new ones (services the old plan does not have are
    /// left to the plan), then starts again every service that was running before.
    fn put_back_requests(&self) -> Vec<Request> {
        if self.started_supervisor {
            return vec![Request::Shutdown];
        }
        let mut out = Vec::new();
        if let Some(old) = &self.old_plan {
            let known = |names: &[String]| -> Vec<String> {
                names
                    .iter()
                    .filter(|s| old.services.iter().any(|o| &o.name == *s))
                    .cloned()
                    .collect()
            };
            out.push(Request::Apply {
                plan: old.clone(),
                restart: known(&self.plan.restart),
                reload: known(&self.plan.reload),
            });
        }
        if !self.running_before.is_empty() {
            out.push(Request::Start {
                target: Target::Many(self.running_before.iter().cloned().collect()),
            });
        }
        out
    }
}

/// How a run's service changes are recorded.
pub(crate) fn pending(changes: &ServiceChanges) -> PendingServices {
    PendingServices {
        restart: changes.restart.clone(),
        reload: changes.reload.clone(),
        start: changes.start.clone(),
        stop: changes.stop.clone(),
    }
}

/// Add `names` to an outcome's list, each once.
pub(crate) fn add(list: &mut Vec<String>, names: Vec<String>) {
    for name in names {
        if !list.contains(&name) {
            list.push(name);
        }
    }
}

/// Put a small state file back as it was (`None`: it did not exist). Best effort: a
/// stale list only means a file is not removed, or removed one converge later.
fn restore_file(path: &std::path::Path, old: Option<&[u8]>) {
    let _ = match old {
        Some(bytes) => berth_host::fsutil::write_atomic(path, bytes, 0o644, None).map(drop),
        None => berth_host::fsutil::remove_file_if_exists(path).map(drop),
    };
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::PathBuf;
    use std::time::Duration;

    use berth_host::converge::ConvergePlan;
    use berth_supervisor_protocol::{Request, RestartPolicy, ServiceSpec, SupervisionPlan, Target};

    use super::{Change, service_changes};

    fn service(name: &str, port: &str) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            argv: vec!["/bin/app".into(), port.into()],
            env: BTreeMap::new(),
            cwd: None,
            user: None,
            depends_on: vec![],
            readiness: None,
            stop_signal: "SIGTERM".into(),
            stop_timeout: Duration::from_secs(1),
            reload_signal: None,
            restart: RestartPolicy::Always,
            log_dir: PathBuf::from("/l"),
            log_max_bytes: 1,
            log_keep: 1,
        }
    }

    fn plan(services: Vec<ServiceSpec>) -> SupervisionPlan {
        SupervisionPlan {
            services,
            jobs: vec![],
        }
    }

    fn change(
        old_plan: Option<SupervisionPlan>,
        restart: &[&str],
        reload: &[&str],
        running: &[&str],
    ) -> Change {
        let plan_of_files = ConvergePlan {
            restart: restart.iter().map(|s| (*s).to_owned()).collect(),
            reload: reload.iter().map(|s| (*s).to_owned()).collect(),
            ..ConvergePlan::default()
        };
        let new_plan = plan(vec![
            service("web", "2"),
            service("db", "1"),
            service("cache", "1"),
        ]);
        Change {
            services: service_changes(
                old_plan.as_ref(),
                &new_plan,
                &plan_of_files.restart,
                &plan_of_files.reload,
            ),
            plan: plan_of_files,
            applied: None,
            old_managed: None,
            old_plan_bytes: None,
            old_plan,
            new_plan,
            plan_changed: true,
            running_before: running
                .iter()
                .map(|s| (*s).to_owned())
                .collect::<BTreeSet<_>>(),
            started_supervisor: false,
        }
    }

    /// A failed reconfigure puts the old plan back, restarting (for the old files) what
    /// it restarted for the new ones, but not a service the old plan never had, and
    /// starts what was running before, not what an administrator had stopped.
    #[test]
    fn rolling_back_gives_the_old_plan_and_restarts_what_was_restarted() {
        let old = plan(vec![service("web", "1"), service("db", "1")]);
        let c = change(
            Some(old.clone()),
            &["web", "cache"],
            &["db"],
            &["db", "web"],
        );
        assert_eq!(
            c.put_back_requests(),
            [
                Request::Apply {
                    plan: old,
                    restart: vec!["web".to_owned()],
                    reload: vec!["db".to_owned()],
                },
                Request::Start {
                    target: Target::Many(vec!["db".to_owned(), "web".to_owned()]),
                },
            ]
        );
    }

    /// An instance that was down before the change (its supervisor started for it) is
    /// down again after the roll back.
    #[test]
    fn rolling_back_a_change_that_started_the_supervisor_shuts_it_down() {
        let mut c = change(Some(plan(vec![service("web", "1")])), &["web"], &[], &[]);
        c.started_supervisor = true;
        assert_eq!(c.put_back_requests(), [Request::Shutdown]);
    }

    /// Nothing was running and there was no plan: nothing to ask.
    #[test]
    fn rolling_back_with_nothing_before_asks_nothing() {
        assert_eq!(change(None, &["web"], &[], &[]).put_back_requests(), []);
    }
}
