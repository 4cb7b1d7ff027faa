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
use berth_supervisor_protocol::{Request, Response, ServiceSpec, SupervisionPlan, Target};

use crate::desired::{mask_list, supervision_plan};
use crate::error::{LifecycleError, Result};
use crate::instance::Instance;
use crate::run::{Outcome, Run};
use crate::state_files::{write_managed_files, write_plan};
use crate::supervisor::Supervisor;

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
    /// Services the change restarts, reloads or starts that wait for hooks
    /// ([`Change::hold`]); sorted.
    held: Vec<String>,
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
            held: Vec::new(),
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

    /// Records in `outcome` what the change wrote: the files, the directories it
    /// created and those it gave another mode or owner, each on its own list.
    pub fn record_written(&self, outcome: &mut Outcome) {
        let Some(a) = &self.applied else {
            return;
        };
        outcome.files_changed.clone_from(&a.report.changed);
        outcome.dirs_created.clone_from(&a.report.dirs_created);
        outcome.dirs_changed.clone_from(&a.report.dirs_changed);
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

    /// Hold back what the change would restart, reload or start among `gated` (the
    /// services due hooks must run before): [`Change::apply_to_supervisor`] leaves them
    /// as they run, [`Change::release_held`] acts on them once the hooks succeeded.
    /// A service the change restarts, reloads or starts that depends (through
    /// `depends_on`) on a held one waits too: starting it would start what it needs.
    /// On a first `up` nothing runs yet and nothing is held.
    pub fn hold(&mut self, gated: &BTreeSet<String>) {
        if self.old_plan.is_none() {
            return;
        }
        let deps: BTreeMap<&str, &[String]> = self
            .new_plan
            .services
            .iter()
            .map(|s| (s.name.as_str(), s.depends_on.as_slice()))
            .collect();
        let changing: BTreeSet<&String> = self
            .services
            .restart
            .iter()
            .chain(&self.services.reload)
            .chain(&self.services.start)
            .collect();
        let mut held: BTreeSet<String> = changing
            .iter()
            .filter(|s| gated.contains(s.as_str()))
            .map(|s| (*s).clone())
            .collect();
        let needs_held = |name: &str, held: &BTreeSet<String>| {
            let mut seen = BTreeSet::new();
            let mut stack: Vec<&str> = deps
                .get(name)
                .copied()
                .unwrap_or_default()
                .iter()
                .map(String::as_str)
                .collect();
            while let Some(d) = stack.pop() {
                if held.contains(d) {
                    return true;
                }
                if seen.insert(d) {
                    stack.extend(
                        deps.get(d)
                            .copied()
                            .unwrap_or_default()
                            .iter()
                            .map(String::as_str),
                    );
                }
            }
            false
        };
        loop {
            let more: Vec<String> = changing
                .iter()
                .filter(|s| !held.contains(s.as_str()) && needs_held(s, &held))
                .map(|s| (*s).clone())
                .collect();
            if more.is_empty() {
                break;
            }
            held.extend(more);
        }
        self.held = held.into_iter().collect();
    }

    /// The services held back for hooks ([`Change::hold`]).
    pub fn held(&self) -> &[String] {
        &self.held
    }

    /// The plan the supervisor runs while services are held: the new one, but each
    /// held service keeps the spec it runs with (so it is not restarted for a new
    /// command), along with services it needs that leave the plan (stopped once the
    /// held ones are released). A held service new to the plan is in it, not started.
    pub(crate) fn plan_holding(&self) -> SupervisionPlan {
        let Some(old) = &self.old_plan else {
            return self.new_plan.clone();
        };
        let old_spec = |name: &str| old.services.iter().find(|s| s.name == name);
        let mut plan = self.new_plan.clone();
        for spec in &mut plan.services {
            if self.held.contains(&spec.name)
                && let Some(before) = old_spec(&spec.name)
            {
                *spec = before.clone();
            }
        }
        let mut wanted: Vec<String> = plan
            .services
            .iter()
            .flat_map(|s| s.depends_on.iter().cloned())
            .collect();
        while let Some(name) = wanted.pop() {
            if plan.services.iter().any(|s| s.name == name) {
                continue;
            }
            if let Some(gone) = old_spec(&name) {
                wanted.extend(gone.depends_on.iter().cloned());
                plan.services.push(gone.clone());
            }
        }
        plan
    }

    /// Hand the new plan to a running supervisor (journaled step `apply to
    /// supervisor`): services whose files or command changed restart or reload,
    /// services that left the plan stop, services new to it start. Services stopped
    /// by the administrator stay stopped. Held services ([`Change::hold`]) are left as
    /// they run until [`Change::release_held`].
    pub fn apply_to_supervisor(&self, run: &Run, outcome: &mut Outcome) -> Result<()> {
        let supervisor = run.supervisor();
        if !supervisor.is_running() {
            return Ok(());
        }
        let not_held = |names: &[String]| -> Vec<String> {
            names
                .iter()
                .filter(|n| !self.held.contains(n))
                .cloned()
                .collect()
        };
        // A process the plan does not have (a service started beside itself by an
        // upgrade that was killed) leaves with the plan.
        let stray = self
            .running_before
            .iter()
            .any(|name| !self.new_plan.services.iter().any(|s| &s.name == name));
        if self.plan_changed
            || stray
            || !self.plan.restart.is_empty()
            || !self.plan.reload.is_empty()
        {
            let req = Request::Apply {
                plan: self.plan_holding(),
                restart: not_held(&self.plan.restart),
                reload: not_held(&self.plan.reload),
            };
            send_apply(run, "apply to supervisor", &req, outcome)?;
        }
        start_new(
            run,
            "start new services",
            not_held(&self.new_services()),
            outcome,
        )?;
        if self.held.is_empty() {
            self.acted(run)?;
        }
        Ok(())
    }

    /// Act on the held services (journaled step `restart after hooks`): the supervisor
    /// gets the whole new plan, restarting or reloading them, and the new ones start.
    /// Only then is nothing left pending.
    pub fn release_held(&self, run: &Run, outcome: &mut Outcome) -> Result<()> {
        self.release_held_beside(run, outcome, &[])
    }

    /// The new plan the supervisor runs once nothing is held, with `extra` services
    /// (processes started beside their service) in it too.
    pub(crate) fn new_plan_with(&self, extra: &[ServiceSpec]) -> SupervisionPlan {
        let mut plan = self.new_plan.clone();
        plan.services.extend(extra.iter().cloned());
        plan
    }

    /// As [`Change::release_held`], with `extra` services (processes started beside
    /// their service) kept running meanwhile.
    pub(crate) fn release_held_beside(
        &self,
        run: &Run,
        outcome: &mut Outcome,
        extra: &[ServiceSpec],
    ) -> Result<()> {
        let supervisor = run.supervisor();
        if self.held.is_empty() || !supervisor.is_running() {
            return Ok(());
        }
        let held = |names: &[String]| -> Vec<String> {
            names
                .iter()
                .filter(|n| self.held.contains(n))
                .cloned()
                .collect()
        };
        let req = Request::Apply {
            plan: self.new_plan_with(extra),
            restart: held(&self.plan.restart),
            reload: held(&self.plan.reload),
        };
        send_apply(run, "restart after hooks", &req, outcome)?;
        start_new(
            run,
            "start held services",
            held(&self.new_services()),
            outcome,
        )?;
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
        let result = run.step("roll back", || self.put_back(run));
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

    fn put_back(&mut self, run: &Run) -> Result<()> {
        // A path that could not be put back (one a service user replaced, say) does not
        // stop the rest: the old plan and services come back, then it is reported.
        let undo = self.applied.take().map(Applied::roll_back);
        let rest = self.put_back_plan_and_services(run.inst, run.supervisor());
        if let Some(Err(e)) = undo {
            return Err(e.into());
        }
        rest
    }

    fn put_back_plan_and_services(
        &mut self,
        inst: &Instance,
        supervisor: &dyn Supervisor,
    ) -> Result<()> {
        restore_file(&inst.paths.managed_files(), self.old_managed.as_deref());
        let plan_path = inst.paths.supervision_plan();
        match &self.old_plan_bytes {
            Some(bytes) => berth_host::fsutil::write_atomic(&plan_path, bytes, 0o600, None)?,
            None => {
                berth_host::fsutil::remove_file_if_exists(&plan_path)?;
            }
        }
        if !supervisor.is_running() {
            return Ok(());
        }
        // Every request is sent even when one is refused: a refused old plan must not
        // leave the services that ran before stopped. The first refusal is the error.
        let mut first_err = None;
        for req in self.put_back_requests() {
            match supervisor.request(&req) {
                Ok(_) if matches!(req, Request::Shutdown) => {
                    supervisor.wait_exited(std::time::Duration::from_mins(2));
                }
                Ok(_) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
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

/// Send an `Apply` as journaled step `step`; add what it did to `outcome`.
pub(crate) fn send_apply(
    run: &Run,
    step: &str,
    req: &Request,
    outcome: &mut Outcome,
) -> Result<()> {
    let supervisor = run.supervisor();
    let answer = run.step(step, || {
        supervisor
            .request(req)
            .map_err(|e| supervisor.with_failed_logs(e))
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
    Ok(())
}

/// Start `new` (journaled step `step`) and add them to `outcome`.
fn start_new(run: &Run, step: &str, new: Vec<String>, outcome: &mut Outcome) -> Result<()> {
    if new.is_empty() {
        return Ok(());
    }
    let supervisor = run.supervisor();
    run.step(step, || {
        supervisor
            .request(&Request::Start {
                target: Target::Many(new.clone()),
            })
            .map_err(|e| supervisor.with_failed_logs(e))
    })?;
    add(&mut outcome.started, new);
    Ok(())
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
            metrics: None,
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
            held: vec![],
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

    mod with_a_supervisor {
        use std::collections::{BTreeMap, BTreeSet};
        use std::path::PathBuf;

        use berth_render::{DesiredState, FileSpec};
        use berth_state::StepStatus;
        use berth_supervisor_protocol::{Request, Response, SupervisionPlan, Target};

        use crate::change::Change;
        use crate::desired::supervision_plan;
        use crate::testing::{Scripted, instance, names, service, state_on};
        use crate::{Instance, LifecycleError, Outcome, Run, Silent};

        /// An instance with one config file, `etc/app.conf`, that web restarts for; the
        /// plan on disk has the services `before` (none: never set up), the new one web
        /// and db.
        struct Fixture {
            _tmp: tempfile::TempDir,
            inst: Instance,
            state: DesiredState,
            conf: PathBuf,
            old_plan: Option<SupervisionPlan>,
        }

        fn fixture(before: &[&str]) -> Fixture {
            let tmp = tempfile::tempdir().unwrap();
            let inst = instance(&tmp.path().join("inst"));
            let prefix = inst.paths.prefix.clone();
            let conf = prefix.join("etc/app.conf");
            std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
            std::fs::create_dir_all(&inst.paths.state).unwrap();
            std::fs::write(&conf, "old\n").unwrap();
            let mut state = state_on(
                &prefix,
                vec![service("web", &[]), service("db", &[])],
                vec![],
            );
            state.files = vec![FileSpec {
                path: conf.clone(),
                content: "new\n".into(),
                owner: None,
                mode: 0o644,
                restarts: names(&["web"]),
                reloads: vec![],
            }];
            let old_plan = (!before.is_empty()).then(|| {
                let mut old = state.clone();
                old.services = before.iter().map(|n| service(n, &[])).collect();
                let plan = supervision_plan(&inst, &old);
                std::fs::write(
                    inst.paths.supervision_plan(),
                    serde_json::to_vec_pretty(&plan).unwrap(),
                )
                .unwrap();
                plan
            });
            Fixture {
                _tmp: tmp,
                inst,
                state,
                conf,
                old_plan,
            }
        }

        fn write(f: &Fixture, run: &Run, running: &[&str]) -> Change {
            let running: BTreeSet<String> = names(running).into_iter().collect();
            Change::write(run, &f.state, &BTreeMap::new(), running).unwrap()
        }

        fn steps(run: &Run) -> Vec<(String, bool)> {
            run.db
                .steps(run.id)
                .unwrap()
                .into_iter()
                .map(|(name, status)| (name, status == Some(StepStatus::Done)))
                .collect()
        }

        fn applied(restarted: &[&str]) -> Response {
            Response::Applied {
                restarted: names(restarted),
                reloaded: vec![],
                removed: vec![],
            }
        }

        fn health_failed() -> LifecycleError {
            LifecycleError::Health {
                url: "http://127.0.0.1:1/health".into(),
                secs: 180,
                last: "connection refused".into(),
            }
        }

        /// The health gate fails after the supervisor applied the change: the files
        /// are put back, the supervisor gets the old plan with a restart of what the
        /// change restarted, and what ran before is started again, in that order.
        #[test]
        fn a_failed_health_wait_rolls_the_change_back_and_asks_exactly_this() {
            let f = fixture(&["web", "db"]);
            let sup = Scripted::answering(vec![applied(&["web"])]);
            let run = Run::begin(&f.inst, "reconfigure", "", &Silent)
                .unwrap()
                .with_supervisor(&sup);
            let mut change = write(&f, &run, &["db", "web"]);
            assert_eq!(std::fs::read_to_string(&f.conf).unwrap(), "new\n");
            let mut outcome = Outcome::default();
            let err = change
                .guard(&run, |c| {
                    c.apply_to_supervisor(&run, &mut outcome)?;
                    Err::<(), _>(health_failed())
                })
                .unwrap_err();
            assert!(
                matches!(&err, LifecycleError::RolledBack { files: 1, cause } if matches!(**cause, LifecycleError::Health { .. })),
                "{err}"
            );
            assert_eq!(outcome.restarted, ["web"]);
            assert_eq!(
                sup.sent(),
                [
                    Request::Apply {
                        plan: supervision_plan(&f.inst, &f.state),
                        restart: names(&["web"]),
                        reload: vec![],
                    },
                    Request::Apply {
                        plan: f.old_plan.clone().unwrap(),
                        restart: names(&["web"]),
                        reload: vec![],
                    },
                    Request::Start {
                        target: Target::Many(names(&["db", "web"])),
                    },
                ]
            );
            assert_eq!(std::fs::read_to_string(&f.conf).unwrap(), "old\n");
            let on_disk: SupervisionPlan =
                serde_json::from_slice(&std::fs::read(f.inst.paths.supervision_plan()).unwrap())
                    .unwrap();
            assert_eq!(Some(on_disk), f.old_plan);
            assert!(
                !f.inst.paths.managed_files().exists(),
                "it did not exist before"
            );
            assert_eq!(
                steps(&run),
                [
                    ("converge".to_owned(), true),
                    ("apply to supervisor".to_owned(), true),
                    ("roll back".to_owned(), true),
                ]
            );
        }

        /// The supervisor refuses the new plan: the journal shows the refusal, and the
        /// files and the plan are put back all the same.
        #[test]
        fn a_refused_apply_leaves_the_files_put_back() {
            let f = fixture(&["web", "db"]);
            let sup = Scripted::answering(vec![Response::Error {
                message: "service `web`: no such program".into(),
            }]);
            let run = Run::begin(&f.inst, "reconfigure", "", &Silent)
                .unwrap()
                .with_supervisor(&sup);
            let mut change = write(&f, &run, &["web"]);
            let mut outcome = Outcome::default();
            let err = change
                .guard(&run, |c| c.apply_to_supervisor(&run, &mut outcome))
                .unwrap_err();
            assert!(matches!(err, LifecycleError::RolledBack { .. }), "{err}");
            assert_eq!(std::fs::read_to_string(&f.conf).unwrap(), "old\n");
            assert!(outcome.is_noop(), "{outcome:?}");
            let sent = sup.sent();
            assert_eq!(sent.len(), 3, "{sent:?}");
            assert_eq!(
                sent[2],
                Request::Start {
                    target: Target::Many(names(&["web"]))
                }
            );
            let journal = run.db.steps(run.id).unwrap();
            assert_eq!(journal[1].0, "apply to supervisor");
            assert_eq!(
                journal[1].1,
                Some(StepStatus::Failed {
                    error: "service `web`: no such program".into()
                })
            );
        }

        /// Putting back fails too (the supervisor refuses the old plan): both causes
        /// are reported, the files are back nonetheless, and the services that ran
        /// before are asked to start.
        #[test]
        fn a_roll_back_the_supervisor_refuses_still_puts_the_files_back() {
            let f = fixture(&["web", "db"]);
            let sup = Scripted::answering(vec![
                applied(&["web"]),
                Response::Error {
                    message: "busy".into(),
                },
            ]);
            let run = Run::begin(&f.inst, "reconfigure", "", &Silent)
                .unwrap()
                .with_supervisor(&sup);
            let mut change = write(&f, &run, &["web"]);
            let mut outcome = Outcome::default();
            let err = change
                .guard(&run, |c| {
                    c.apply_to_supervisor(&run, &mut outcome)?;
                    Err::<(), _>(health_failed())
                })
                .unwrap_err();
            let LifecycleError::RollbackFailed { undo, .. } = &err else {
                panic!("{err}");
            };
            assert_eq!(undo.to_string(), "busy");
            assert_eq!(std::fs::read_to_string(&f.conf).unwrap(), "old\n");
            // The old plan was refused; what ran before is started all the same.
            let sent = sup.sent();
            assert_eq!(sent.len(), 3, "{sent:?}");
            assert!(matches!(sent[2], Request::Start { .. }), "{sent:?}");
        }

        /// A first `up` has nothing to go back to: what it did is kept, the error is
        /// passed on as it is, and the supervisor is asked nothing more.
        #[test]
        fn a_first_up_that_fails_keeps_what_it_did() {
            let f = fixture(&[]);
            let sup = Scripted::answering(vec![applied(&[])]);
            let run = Run::begin(&f.inst, "up", "", &Silent)
                .unwrap()
                .with_supervisor(&sup);
            let mut change = write(&f, &run, &[]);
            let mut outcome = Outcome::default();
            let err = change
                .guard(&run, |c| {
                    c.apply_to_supervisor(&run, &mut outcome)?;
                    Err::<(), _>(health_failed())
                })
                .unwrap_err();
            assert!(matches!(err, LifecycleError::Health { .. }), "{err}");
            assert_eq!(std::fs::read_to_string(&f.conf).unwrap(), "new\n");
            // No new service is started on a first up (`up` starts everything itself).
            assert!(matches!(sup.sent()[..], [Request::Apply { .. }]));
            assert!(f.inst.paths.supervision_plan().exists());
        }

        /// A service new to the plan is started after the supervisor applied it, and
        /// once it has, nothing is left pending for a later run.
        #[test]
        fn new_services_start_after_the_apply_and_nothing_stays_pending() {
            let f = fixture(&["web"]);
            let sup = Scripted::answering(vec![applied(&["web"])]);
            let run = Run::begin(&f.inst, "reconfigure", "", &Silent)
                .unwrap()
                .with_supervisor(&sup);
            let change = write(&f, &run, &["web"]);
            let pending = run.db.pending_services(None).unwrap();
            assert_eq!(pending.len(), 1);
            assert_eq!(pending[0].services.start, ["db"]);
            assert_eq!(pending[0].services.restart, ["web"]);
            let mut outcome = Outcome::default();
            change.apply_to_supervisor(&run, &mut outcome).unwrap();
            assert_eq!(
                sup.sent()[1],
                Request::Start {
                    target: Target::Many(names(&["db"]))
                }
            );
            assert_eq!(
                (outcome.restarted, outcome.started),
                (names(&["web"]), names(&["db"]))
            );
            assert!(run.db.pending_services(None).unwrap().is_empty());
            let names: Vec<String> = steps(&run).into_iter().map(|(n, _)| n).collect();
            assert_eq!(
                names,
                ["converge", "apply to supervisor", "start new services"]
            );
        }

        /// With no supervisor running nothing is asked, and the change's pending
        /// services stay recorded: the next `up` starts the services with the new files.
        #[test]
        fn without_a_supervisor_nothing_is_asked_and_the_record_stays() {
            let f = fixture(&["web"]);
            let sup = Scripted::default();
            let run = Run::begin(&f.inst, "reconfigure", "", &Silent)
                .unwrap()
                .with_supervisor(&sup);
            let change = write(&f, &run, &[]);
            let mut outcome = Outcome::default();
            change.apply_to_supervisor(&run, &mut outcome).unwrap();
            assert!(sup.requests.borrow().is_empty());
            assert!(outcome.is_noop());
            assert_eq!(run.db.pending_services(None).unwrap().len(), 1);
        }

        /// A change that started the supervisor (the instance was down) shuts it down
        /// again when it is rolled back, and asks nothing else.
        #[test]
        fn rolling_back_a_change_that_started_the_supervisor_shuts_it_down_again() {
            let f = fixture(&["web", "db"]);
            let sup = Scripted::answering(vec![]);
            let run = Run::begin(&f.inst, "up", "", &Silent)
                .unwrap()
                .with_supervisor(&sup);
            let mut change = write(&f, &run, &[]);
            change.started_supervisor = true;
            let err = change
                .guard(&run, |_| Err::<(), _>(health_failed()))
                .unwrap_err();
            assert!(matches!(err, LifecycleError::RolledBack { .. }), "{err}");
            assert_eq!(sup.sent(), [Request::Shutdown]);
            assert_eq!(std::fs::read_to_string(&f.conf).unwrap(), "old\n");
        }

        /// A `migrate` hook gating `web` (`before`) that appends to `journal`, as the
        /// scripted supervisor does with each request; `fails` makes it exit 1.
        fn with_migrate(f: &mut Fixture, journal: &std::path::Path, fails: bool) {
            std::fs::create_dir_all(f.inst.paths.prefix.join("log/hooks")).unwrap();
            let mut h = crate::testing::hook("migrate", &["db"], &["web"]);
            h.log_file = f.inst.paths.prefix.join("log/hooks/migrate.log");
            h.argv = names(&[
                "/bin/sh",
                "-c",
                &format!(
                    "echo hook migrate >> {}; exit {}",
                    journal.display(),
                    u8::from(fails)
                ),
            ]);
            f.state.hooks = vec![h];
        }

        /// Held, hooks, release: what `reconfigure` does with a change.
        fn apply_hooks_release(
            change: &mut Change,
            run: &Run,
            state: &DesiredState,
            outcome: &mut Outcome,
        ) -> crate::Result<()> {
            let due = crate::hooks::due(run, state, &crate::hooks::every_due(true))?;
            change.hold(&crate::hooks::gated_services(&due));
            change.guard(run, |c| {
                c.apply_to_supervisor(run, outcome)?;
                outcome.hooks_run = crate::hooks::run_due(run, &due)?;
                c.release_held(run, outcome)
            })
        }

        fn lines(journal: &std::path::Path) -> Vec<String> {
            std::fs::read_to_string(journal)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }

        /// A hook declared before `web` runs before `web` is restarted for the change:
        /// the first apply leaves `web` alone (and on the command it ran with), the
        /// hook runs, then the supervisor gets the whole new plan with `web`'s
        /// restart. The change stays pending until then.
        #[test]
        fn a_service_a_due_hook_gates_restarts_only_after_the_hook() {
            let mut f = fixture(&["web", "db"]);
            let journal = f.inst.paths.prefix.with_file_name("journal");
            with_migrate(&mut f, &journal, false);
            // `web` gets a new command as well as a changed file.
            f.state.services[0].argv = names(&["/bin/web", "--new"]);
            // Answers: the first apply, the start of `db` for the hook, the release.
            let sup = Scripted::answering(vec![applied(&[]), Response::Ok, applied(&["web"])])
                .journaling(&journal);
            let run = Run::begin(&f.inst, "reconfigure", "", &Silent)
                .unwrap()
                .with_supervisor(&sup);
            let mut change = write(&f, &run, &["db", "web"]);
            let mut outcome = Outcome::default();
            apply_hooks_release(&mut change, &run, &f.state, &mut outcome).unwrap();
            assert_eq!(change.held(), ["web"]);
            assert_eq!(
                lines(&journal),
                [
                    "apply [web:/bin/true;db:/bin/true] restart= reload=",
                    "start db",
                    "hook migrate",
                    "apply [web:/bin/web --new;db:/bin/true] restart=web reload=",
                ]
            );
            assert_eq!(outcome.restarted, ["web"]);
            assert_eq!(outcome.hooks_run, ["migrate"]);
            assert!(run.db.pending_services(None).unwrap().is_empty());
            let names: Vec<String> = steps(&run).into_iter().map(|(n, _)| n).collect();
            assert_eq!(
                names,
                [
                    "converge",
                    "apply to supervisor",
                    "hook migrate",
                    "restart after hooks"
                ]
            );
        }

        /// The gating hook fails: `web` was never restarted on the new config, and the
        /// whole change is rolled back (files, plan, services) as for any failure.
        #[test]
        fn a_failed_gating_hook_rolls_back_before_the_service_restarts() {
            let mut f = fixture(&["web", "db"]);
            let journal = f.inst.paths.prefix.with_file_name("journal");
            with_migrate(&mut f, &journal, true);
            let sup = Scripted::answering(vec![applied(&[])]).journaling(&journal);
            let run = Run::begin(&f.inst, "reconfigure", "", &Silent)
                .unwrap()
                .with_supervisor(&sup);
            let mut change = write(&f, &run, &["db", "web"]);
            let mut outcome = Outcome::default();
            let err = apply_hooks_release(&mut change, &run, &f.state, &mut outcome).unwrap_err();
            assert!(
                matches!(&err, LifecycleError::RolledBack { cause, .. } if matches!(**cause, LifecycleError::Hook { .. })),
                "{err}"
            );
            assert_eq!(
                lines(&journal),
                [
                    "apply [web:/bin/true;db:/bin/true] restart= reload=",
                    "start db",
                    "hook migrate",
                    "apply [web:/bin/true;db:/bin/true] restart=web reload=",
                    "start db,web",
                ]
            );
            assert!(outcome.restarted.is_empty(), "{outcome:?}");
            assert_eq!(std::fs::read_to_string(&f.conf).unwrap(), "old\n");
            assert_eq!(steps(&run).last(), Some(&("roll back".to_owned(), true)));
        }

        /// What the change restarts or starts that needs a held service waits with
        /// it (starting it would start the held one); the rest goes ahead. A first
        /// `up` holds nothing: nothing runs yet.
        #[test]
        fn what_needs_a_held_service_is_held_too() {
            let mut f = fixture(&["web", "db"]);
            f.state.services.push(service("proxy", &["web"]));
            f.state.services.push(service("cache", &[]));
            let sup = Scripted::answering(vec![]);
            let run = Run::begin(&f.inst, "reconfigure", "", &Silent)
                .unwrap()
                .with_supervisor(&sup);
            let mut change = write(&f, &run, &["db", "web"]);
            change.hold(&names(&["web"]).into_iter().collect());
            assert_eq!(change.held(), ["proxy", "web"]);
            let mut outcome = Outcome::default();
            change.apply_to_supervisor(&run, &mut outcome).unwrap();
            assert_eq!(
                sup.sent()[1],
                Request::Start {
                    target: Target::Many(names(&["cache"]))
                }
            );
            change.release_held(&run, &mut outcome).unwrap();
            assert_eq!(
                sup.sent()[3],
                Request::Start {
                    target: Target::Many(names(&["proxy"]))
                }
            );

            let first = fixture(&[]);
            let run = Run::begin(&first.inst, "up", "", &Silent)
                .unwrap()
                .with_supervisor(&sup);
            let mut change = write(&first, &run, &[]);
            change.hold(&names(&["web"]).into_iter().collect());
            assert!(change.held().is_empty());
        }

        /// Writing what is already there changes nothing: no file, no plan, nothing to
        /// put back, and no request.
        #[test]
        fn a_change_that_writes_nothing_asks_nothing() {
            let f = fixture(&["web", "db"]);
            let sup = Scripted::answering(vec![]);
            let first = Run::begin(&f.inst, "reconfigure", "", &Silent)
                .unwrap()
                .with_supervisor(&sup);
            let change = write(&f, &first, &[]);
            change.acted(&first).unwrap();
            let again = write(&f, &first, &["web", "db"]);
            assert!(again.is_empty(), "{:?}", again.files());
            let mut outcome = Outcome::default();
            again.apply_to_supervisor(&first, &mut outcome).unwrap();
            assert!(sup.requests.borrow().is_empty());
        }
    }
}
