//! The coordinator: holds every service and job task and answers control requests.
//!
//! It never blocks on a service: it computes an order from the dependency graph,
//! sends commands to the service tasks level by level and awaits their answers,
//! holding its registry lock only to look things up.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::process;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use berth_supervisor_protocol::{
    JobStatus, MetricsSpec, Request, Response, ServiceState, ServiceStatus, SupervisionPlan, Target,
};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::BackoffConfig;
use crate::graph::{self, Deps};
use crate::jobs::{JobHandle, ReadyCheck};
use crate::say::say;
use crate::service::{Holder, PauseOutcome, ServiceHandle, lock};

#[derive(Default)]
struct Registry {
    services: BTreeMap<String, ServiceHandle>,
    jobs: BTreeMap<String, JobHandle>,
}

/// Shared by every connection task.
pub(crate) struct Supervisor {
    registry: Mutex<Registry>,
    backoff: BackoffConfig,
    me: Weak<Supervisor>,
    /// The plan's metrics endpoint: the metrics task follows it (`crate::metrics`).
    metrics: watch::Sender<Option<MetricsSpec>>,
}

impl Supervisor {
    /// Create the tasks for a validated plan (all services stopped). Needs a runtime.
    pub(crate) fn new(plan: SupervisionPlan, backoff: BackoffConfig) -> Arc<Self> {
        let (metrics, _) = watch::channel(plan.metrics.clone());
        Arc::new_cyclic(|me: &Weak<Self>| {
            let mut registry = Registry::default();
            for spec in plan.services {
                registry
                    .services
                    .insert(spec.name.clone(), ServiceHandle::spawn(spec, backoff));
            }
            let ready = ready_check(me);
            for spec in plan.jobs {
                registry.jobs.insert(
                    spec.name.clone(),
                    JobHandle::spawn(spec, Arc::clone(&ready)),
                );
            }
            Self {
                registry: Mutex::new(registry),
                backoff,
                me: me.clone(),
                metrics,
            }
        })
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answer one request that came over the connection `holder`.
    pub(crate) async fn handle(&self, request: Request, holder: Holder) -> Response {
        let result = match request {
            Request::Status => return self.status(),
            Request::Start { target } => self.start_target(&target).await,
            Request::Stop { target } => self.stop_target(&target).await,
            Request::StopOnly { target } => {
                let names = self.resolve(&target);
                match names {
                    Ok(names) => {
                        self.stop_only(&names).await;
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            Request::Restart { target } => self.restart_target(&target).await,
            Request::Reload { target } => self.reload_target(&target).await,
            Request::Apply {
                plan,
                restart,
                reload,
            } => return self.apply(plan, &restart, &reload).await,
            Request::Shutdown => {
                self.stop_all().await;
                Ok(())
            }
            Request::Pause { target, timeout_ms } => {
                self.pause_target(&target, timeout_ms, holder).await
            }
            Request::Resume { target } => self.resume_target(&target).await,
        };
        match result {
            Ok(()) => Response::Ok,
            Err(message) => Response::Error { message },
        }
    }

    fn status(&self) -> Response {
        let (services, jobs) = self.statuses();
        Response::Status {
            supervisor_pid: process::id(),
            services,
            jobs,
        }
    }

    /// Every service's and job's status, now.
    pub(crate) fn statuses(&self) -> (Vec<ServiceStatus>, Vec<JobStatus>) {
        let (mut services, jobs) = {
            let registry = self.registry();
            (
                registry
                    .services
                    .iter()
                    .map(|(name, handle)| handle.lock().status(name))
                    .collect::<Vec<_>>(),
                registry.jobs.values().map(JobHandle::status).collect(),
            )
        };
        // Read without holding the registry: /proc takes a moment.
        let leaders: Vec<u32> = services.iter().filter_map(|s| s.pid).collect();
        let pss = crate::memory::pss_of_groups(&leaders);
        for s in &mut services {
            s.pss_bytes = s.pid.and_then(|p| pss.get(&p).copied());
        }
        (services, jobs)
    }

    /// The metrics endpoint of the plan in force, as it changes.
    pub(crate) fn metrics_spec(&self) -> watch::Receiver<Option<MetricsSpec>> {
        self.metrics.subscribe()
    }

    /// Every service name.
    pub(crate) fn all_names(&self) -> Vec<String> {
        self.registry().services.keys().cloned().collect()
    }

    fn resolve(&self, target: &Target) -> Result<Vec<String>, String> {
        let registry = self.registry();
        match target {
            Target::All => Ok(registry.services.keys().cloned().collect()),
            Target::One(name) if registry.services.contains_key(name) => Ok(vec![name.clone()]),
            Target::One(name) => Err(graph::unknown("service", name, registry.services.keys())),
            Target::Many(names) => {
                let mut unique = Vec::with_capacity(names.len());
                for name in names {
                    if !registry.services.contains_key(name) {
                        return Err(graph::unknown("service", name, registry.services.keys()));
                    }
                    if !unique.contains(name) {
                        unique.push(name.clone());
                    }
                }
                Ok(unique)
            }
        }
    }

    /// The dependency graph and handles, copied out of the lock.
    fn snapshot(&self) -> (Deps, BTreeMap<String, ServiceHandle>) {
        let registry = self.registry();
        let deps = registry
            .services
            .iter()
            .map(|(n, h)| (n.clone(), h.spec.depends_on.clone()))
            .collect();
        (deps, registry.services.clone())
    }

    async fn start_target(&self, target: &Target) -> Result<(), String> {
        let names = self.resolve(target)?;
        self.start(&names).await
    }

    /// Start `names` and their dependencies, a level at a time.
    pub(crate) async fn start(&self, names: &[String]) -> Result<(), String> {
        let (deps, handles) = self.snapshot();
        let levels = graph::start_levels(&deps, names);
        let waiting: Vec<&ServiceHandle> = levels
            .iter()
            .skip(1)
            .flatten()
            .filter_map(|n| handles.get(n))
            .collect();
        for handle in &waiting {
            let mut shared = handle.lock();
            if matches!(shared.state, ServiceState::Stopped | ServiceState::Failed) {
                shared.state = ServiceState::Waiting;
            }
        }
        for level in &levels {
            let mut tasks = JoinSet::new();
            for name in level {
                if let Some(handle) = handles.get(name).cloned() {
                    tasks.spawn(async move { (handle.spec.name.clone(), handle.start().await) });
                }
            }
            let failures = collect_failures(tasks).await;
            if !failures.is_empty() {
                for handle in &waiting {
                    let mut shared = handle.lock();
                    if shared.state == ServiceState::Waiting {
                        shared.state = ServiceState::Stopped;
                    }
                }
                return Err(failures.join("; "));
            }
        }
        Ok(())
    }

    async fn stop_target(&self, target: &Target) -> Result<(), String> {
        let names = self.resolve(target)?;
        self.stop(&names).await;
        Ok(())
    }

    /// Stop `names` and everything depending on them, dependents first.
    pub(crate) async fn stop(&self, names: &[String]) {
        let (deps, handles) = self.snapshot();
        for level in graph::stop_levels(&deps, names) {
            let mut tasks = JoinSet::new();
            for name in level {
                if let Some(handle) = handles.get(&name).cloned() {
                    tasks.spawn(async move { handle.stop().await });
                }
            }
            tasks.join_all().await;
        }
    }

    /// Stop `names` alone (the services depending on them keep running), dependents
    /// among them first.
    pub(crate) async fn stop_only(&self, names: &[String]) {
        let (deps, handles) = self.snapshot();
        let chosen: BTreeSet<&String> = names.iter().collect();
        for level in graph::stop_levels(&deps, names) {
            let mut tasks = JoinSet::new();
            for name in level.into_iter().filter(|n| chosen.contains(n)) {
                if let Some(handle) = handles.get(&name).cloned() {
                    tasks.spawn(async move { handle.stop().await });
                }
            }
            tasks.join_all().await;
        }
    }

    /// Stop every service, in reverse dependency order.
    pub(crate) async fn stop_all(&self) {
        let names: Vec<String> = self.registry().services.keys().cloned().collect();
        self.stop(&names).await;
    }

    /// Restart `names` one by one in dependency order, starting their dependencies first.
    async fn restart_target(&self, target: &Target) -> Result<(), String> {
        let names = self.resolve(target)?;
        self.restart(&names).await
    }

    async fn restart(&self, names: &[String]) -> Result<(), String> {
        let (deps, handles) = self.snapshot();
        let chosen: BTreeSet<&String> = names.iter().collect();
        let dependencies: Vec<String> = graph::start_levels(&deps, names)
            .into_iter()
            .flatten()
            .filter(|n| !chosen.contains(n))
            .collect();
        self.start(&dependencies).await?;
        for name in graph::start_levels(&deps, names)
            .into_iter()
            .flatten()
            .filter(|n| chosen.contains(n))
        {
            if let Some(handle) = handles.get(&name) {
                handle
                    .restart()
                    .await
                    .map_err(|err| format!("Failed to restart service `{name}`: {err}"))?;
            }
        }
        Ok(())
    }

    async fn reload_target(&self, target: &Target) -> Result<(), String> {
        let names = self.resolve(target)?;
        let (_, handles) = self.snapshot();
        for name in names {
            if let Some(handle) = handles.get(&name) {
                handle
                    .reload()
                    .await
                    .map_err(|err| format!("Failed to reload service `{name}`: {err}"))?;
            }
        }
        Ok(())
    }

    /// Pause every target at once for `holder`; all or nothing, see [`Request::Pause`].
    async fn pause_target(
        &self,
        target: &Target,
        timeout_ms: u64,
        holder: Holder,
    ) -> Result<(), String> {
        if timeout_ms == 0 {
            return Err("A pause needs a timeout: `timeout_ms` must be at least 1".to_owned());
        }
        let timeout = Duration::from_millis(timeout_ms);
        let until = Instant::now()
            .checked_add(timeout)
            .ok_or_else(|| format!("A pause timeout of {timeout_ms} ms is too long"))?;
        let names = self.resolve(target)?;
        let (_, handles) = self.snapshot();
        let mut tasks = JoinSet::new();
        for name in &names {
            if let Some(handle) = handles.get(name).cloned() {
                let name = name.clone();
                tasks.spawn(async move { (name, handle.pause(until, timeout, holder).await) });
            }
        }
        let mut failures = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((_, Ok(PauseOutcome::Paused | PauseOutcome::Extended))) => {}
                // `all` means whatever runs; nothing starts these without a request.
                Ok((
                    _,
                    Ok(PauseOutcome::NotRunning(ServiceState::Stopped | ServiceState::Failed)),
                )) if *target == Target::All => {}
                Ok((name, Ok(PauseOutcome::NotRunning(state)))) => failures.push(format!(
                    "Failed to pause service `{name}`: it is not running (state `{}`)",
                    state.as_str()
                )),
                Ok((name, Err(err))) => {
                    failures.push(format!("Failed to pause service `{name}`: {err}"));
                }
                Err(err) => failures.push(format!("A pause task failed: {err}")),
            }
        }
        if failures.is_empty() {
            return Ok(());
        }
        // A caller that gets an error may not send `Resume`: undo what this request did,
        // leaving alone what another connection's pause still holds.
        let mut resumed = release(&handles, &names, holder).await;
        failures.sort();
        let mut message = failures.join("; ");
        if !resumed.is_empty() {
            resumed.sort();
            let _ = write!(
                message,
                "; resumed the services this request had paused ({})",
                resumed.join(", ")
            );
        }
        Err(message)
    }

    /// The connection `holder` closed: resume what it paused and no other connection
    /// holds. Returns the services resumed.
    pub(crate) async fn release(&self, holder: Holder) -> Vec<String> {
        let (_, handles) = self.snapshot();
        let names: Vec<String> = handles.keys().cloned().collect();
        release(&handles, &names, holder).await
    }

    /// Resume the paused ones among the targets.
    async fn resume_target(&self, target: &Target) -> Result<(), String> {
        let names = self.resolve(target)?;
        let (_, handles) = self.snapshot();
        let mut tasks = JoinSet::new();
        for name in names {
            if let Some(handle) = handles.get(&name).cloned() {
                tasks.spawn(async move { handle.resume().await });
            }
        }
        tasks.join_all().await;
        Ok(())
    }

    /// Replace the plan; see [`Request::Apply`].
    async fn apply(
        &self,
        plan: SupervisionPlan,
        restart: &[String],
        reload: &[String],
    ) -> Response {
        match self.try_apply(plan, restart, reload).await {
            Ok(response) => response,
            Err(message) => Response::Error { message },
        }
    }

    async fn try_apply(
        &self,
        plan: SupervisionPlan,
        restart: &[String],
        reload: &[String],
    ) -> Result<Response, String> {
        graph::validate(&plan).map_err(|reason| format!("The new plan is invalid: {reason}"))?;
        let new_names: BTreeSet<&str> = plan.services.iter().map(|s| s.name.as_str()).collect();
        if let Some(name) = restart
            .iter()
            .chain(reload)
            .find(|n| !new_names.contains(n.as_str()))
        {
            return Err(graph::unknown("service", name, &new_names));
        }
        let (_, old) = self.snapshot();
        let was_active: BTreeSet<String> = old
            .iter()
            .filter(|(_, h)| h.is_active())
            .map(|(n, _)| n.clone())
            .collect();
        // Decided from the plan the supervisor runs, by the rule everyone uses.
        let running_plan = SupervisionPlan {
            services: old.values().map(|h| h.spec.clone()).collect(),
            jobs: Vec::new(),
            metrics: None,
        };
        let changes = berth_render::service_changes(Some(&running_plan), &plan, restart, reload);
        let removed = changes.stop;

        self.metrics.send_if_modified(|m| {
            let moved = *m != plan.metrics;
            if moved {
                m.clone_from(&plan.metrics);
            }
            moved
        });
        // Removed services go first, in the old plan's reverse dependency order.
        self.stop(&removed).await;
        let (dropped_services, dropped_jobs) = self.swap_plan(plan, &removed);
        for handle in dropped_services {
            handle.shutdown().await;
        }
        for job in dropped_jobs {
            job.cancel().await;
        }

        let (deps, handles) = self.snapshot();
        let mut restarted = Vec::new();
        let mut reloaded = Vec::new();
        let order: Vec<String> =
            graph::start_levels(&deps, &deps.keys().cloned().collect::<Vec<_>>()).concat();
        for name in &order {
            let Some(handle) = handles.get(name) else {
                continue;
            };
            if !was_active.contains(name) {
                continue;
            }
            let outcome = if changes.restart.contains(name) {
                restarted.push(name.clone());
                handle.restart().await
            } else if changes.reload.contains(name) {
                if handle.spec.reload_signal.is_some() {
                    reloaded.push(name.clone());
                } else {
                    restarted.push(name.clone());
                }
                handle.reload().await
            } else {
                continue;
            };
            outcome.map_err(|err| {
                format!("Failed to restart service `{name}` with its new configuration: {err}")
            })?;
        }
        say!(
            "applied a new plan: {} restarted, {} reloaded, {} removed",
            restarted.len(),
            reloaded.len(),
            removed.len()
        );
        Ok(Response::Applied {
            restarted,
            reloaded,
            removed,
        })
    }

    /// Install `plan` in the registry; return the tasks that left it.
    fn swap_plan(
        &self,
        plan: SupervisionPlan,
        removed: &[String],
    ) -> (Vec<ServiceHandle>, Vec<JobHandle>) {
        let mut registry = self.registry();
        let dropped_services = removed
            .iter()
            .filter_map(|name| registry.services.remove(name))
            .collect();
        for spec in plan.services {
            match registry.services.get_mut(&spec.name) {
                Some(handle) if handle.spec != spec => handle.update(spec),
                Some(_) => {}
                None => {
                    registry
                        .services
                        .insert(spec.name.clone(), ServiceHandle::spawn(spec, self.backoff));
                }
            }
        }
        let mut old_jobs = std::mem::take(&mut registry.jobs);
        let ready = ready_check(&self.me);
        for spec in plan.jobs {
            let handle = match old_jobs.remove(&spec.name) {
                Some(handle) if handle.spec == spec => handle,
                _ => JobHandle::spawn(spec, Arc::clone(&ready)),
            };
            registry.jobs.insert(handle.spec.name.clone(), handle);
        }
        (dropped_services, old_jobs.into_values().collect())
    }

    /// Stop every service and job and end their tasks (daemon exit).
    pub(crate) async fn close(&self) {
        self.stop_all().await;
        let (services, jobs) = {
            let mut registry = self.registry();
            (
                std::mem::take(&mut registry.services),
                std::mem::take(&mut registry.jobs),
            )
        };
        for handle in services.into_values() {
            handle.shutdown().await;
        }
        for job in jobs.into_values() {
            job.cancel().await;
        }
    }
}

/// A readiness lookup for jobs that does not keep the supervisor alive.
fn ready_check(me: &Weak<Supervisor>) -> ReadyCheck {
    let me = me.clone();
    Arc::new(move |name: &str| {
        me.upgrade().is_some_and(|sup| {
            sup.registry()
                .services
                .get(name)
                .is_some_and(|h| lock(&h.shared).state == ServiceState::Ready)
        })
    })
}

/// Drop `holder`'s pause of each of `names`; returns those this resumed.
async fn release(
    handles: &BTreeMap<String, ServiceHandle>,
    names: &[String],
    holder: Holder,
) -> Vec<String> {
    let mut tasks = JoinSet::new();
    for name in names {
        if let Some(handle) = handles.get(name).cloned() {
            let name = name.clone();
            tasks.spawn(async move { (name, handle.release(holder).await) });
        }
    }
    let mut resumed = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((name, true)) = joined {
            resumed.push(name);
        }
    }
    resumed
}

async fn collect_failures(mut tasks: JoinSet<(String, Result<(), String>)>) -> Vec<String> {
    let mut failures = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((_, Ok(()))) => {}
            Ok((name, Err(err))) => {
                failures.push(format!("Failed to start service `{name}`: {err}"));
            }
            Err(err) => failures.push(format!("A start task failed: {err}")),
        }
    }
    failures.sort();
    failures
}
