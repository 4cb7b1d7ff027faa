//! `up` and `reconfigure`: from a validated instance to a converged, running one.
//!
//! Every step is written to the state database's journal before it is taken, so a
//! crash leaves a record of exactly how far a run got.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use berth_host::converge::ConvergePlan;
use berth_model::manifest::HookWhen;
use berth_render::{DesiredState, RenderInput};
use berth_state::{RunOutcome, RunStatus, StateDb, StepStatus};
use berth_supervisor_protocol::{Probe, Request, Response, SupervisionPlan, Target};

use crate::instance::{Instance, Locate, stored_manifest_dir};
use crate::progress::Progress;
use crate::{hooks, http, supervisor};

/// What a run changed.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Outcome {
    /// Config files written.
    pub files_changed: Vec<PathBuf>,
    /// Services restarted.
    pub restarted: Vec<String>,
    /// Services reloaded.
    pub reloaded: Vec<String>,
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
            && self.hooks_run.is_empty()
    }
}

/// How a successful run is recorded in the history.
fn recorded(o: &Outcome) -> RunOutcome {
    RunOutcome {
        status: if o.is_noop() {
            RunStatus::NoChange
        } else {
            RunStatus::Succeeded
        },
        files_changed: o
            .files_changed
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        services_restarted: o.restarted.clone(),
        services_reloaded: o.reloaded.clone(),
        hooks_run: o.hooks_run.clone(),
    }
}

/// How a failed run is recorded.
fn failed(error: &str) -> RunOutcome {
    RunOutcome {
        status: RunStatus::Failed {
            error: error.to_owned(),
        },
        ..RunOutcome::default()
    }
}

/// Placeholder shown in dry runs for secrets that do not exist yet.
const NOT_YET_GENERATED: &str = "<generated on first up>";

/// Secret values for rendering. With `create`, missing secrets are generated and stored
/// (mode 0600); without, they render as a placeholder and nothing is written.
fn secrets(inst: &Instance, create: bool) -> Result<BTreeMap<String, String>> {
    let specs = berth_render::secret_specs(&inst.manifest, &inst.facts);
    if create {
        let store = berth_host::secrets::SecretStore::open(&inst.paths.secrets)?;
        return Ok(store.ensure(&specs)?);
    }
    let mut out = BTreeMap::new();
    let existing = if inst.paths.secrets.is_dir() {
        Some(berth_host::secrets::SecretStore::open(&inst.paths.secrets)?)
    } else {
        None
    };
    for s in &specs {
        let value = match &existing {
            Some(store) => store.get(&s.name)?,
            None => None,
        };
        out.insert(
            s.name.clone(),
            value.unwrap_or_else(|| NOT_YET_GENERATED.to_owned()),
        );
    }
    Ok(out)
}

/// Render the desired state of an instance.
pub fn render(inst: &Instance, secrets: &BTreeMap<String, String>) -> Result<DesiredState> {
    Ok(berth_render::render(&RenderInput {
        manifest: &inst.manifest,
        config: &inst.config,
        facts: &inst.facts,
        secrets,
        paths: &inst.paths,
    })?)
}

/// The supervision plan of a desired state.
fn supervision_plan(state: &DesiredState) -> SupervisionPlan {
    SupervisionPlan {
        services: state.services.clone(),
        jobs: state.jobs.clone(),
    }
}

/// The secret values to mask in anything shown to a person.
fn mask_list(secrets: &BTreeMap<String, String>) -> Vec<String> {
    secrets
        .values()
        .filter(|v| v.as_str() != NOT_YET_GENERATED && !v.is_empty())
        .cloned()
        .collect()
}

/// Replace every secret value in `text` with `********`.
pub fn mask(text: &str, secrets: &BTreeMap<String, String>) -> String {
    let mut out = text.to_owned();
    for v in mask_list(secrets) {
        out = out.replace(&v, "********");
    }
    out
}

/// The currently applied supervision plan, if any.
fn applied_plan(path: &Path) -> Option<SupervisionPlan> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Services whose rendered spec differs from the applied plan (they restart).
fn changed_services(old: Option<&SupervisionPlan>, new: &SupervisionPlan) -> Vec<String> {
    let Some(old) = old else {
        return Vec::new();
    };
    new.services
        .iter()
        .filter(|s| {
            old.services
                .iter()
                .find(|o| o.name == s.name)
                .is_some_and(|o| o != *s)
        })
        .map(|s| s.name.clone())
        .collect()
}

/// `berth reconfigure --dry-run` and `berth plan`: what would change, as text. Writes nothing.
pub fn dry_run(inst: &Instance) -> Result<String> {
    let secrets = secrets(inst, false)?;
    let state = render(inst, &secrets)?;
    let plan = berth_host::converge::plan(&state, &mask_list(&secrets), inst.facts.is_root)?;
    let new_plan = supervision_plan(&state);
    let old_plan = applied_plan(&inst.paths.supervision_plan());
    let mut out = String::new();
    if plan.is_empty() {
        out.push_str("No file changes.\n");
    } else {
        out.push_str(&mask(&plan.to_string(), &secrets));
    }
    let spec_changes = changed_services(old_plan.as_ref(), &new_plan);
    if !spec_changes.is_empty() {
        out.push_str(&format!(
            "services whose command or environment changed (restart): {}\n",
            spec_changes.join(", ")
        ));
    }
    if let Some(old) = &old_plan {
        let added: Vec<_> = new_plan
            .services
            .iter()
            .filter(|s| !old.services.iter().any(|o| o.name == s.name))
            .map(|s| s.name.as_str())
            .collect();
        if !added.is_empty() {
            out.push_str(&format!("new services (start): {}\n", added.join(", ")));
        }
    } else {
        out.push_str("The instance has not been set up yet: `berth up` would install and start everything.\n");
    }
    Ok(out)
}

/// Ports the services will listen on, from their readiness probes.
fn listen_addresses(state: &DesiredState) -> Vec<(String, SocketAddr)> {
    let mut out = Vec::new();
    for (service, addrs) in &state.listen {
        for a in addrs {
            if let Some(a) = a.to_socket_addrs().ok().and_then(|mut i| i.next()) {
                out.push((service.clone(), a));
            }
        }
    }
    for s in &state.services {
        let addr = match s.readiness.as_ref().map(|r| &r.probe) {
            Some(Probe::Tcp { address }) => address.clone(),
            Some(Probe::Http { url, .. }) => match url::Url::parse(url) {
                Ok(u) => format!(
                    "{}:{}",
                    u.host_str().unwrap_or("127.0.0.1"),
                    u.port_or_known_default().unwrap_or(80)
                ),
                Err(_) => continue,
            },
            _ => continue,
        };
        if let Some(a) = addr.to_socket_addrs().ok().and_then(|mut i| i.next()) {
            out.push((s.name.clone(), a));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Refuse to start anything if a port a service needs is taken by another program.
fn check_ports(state: &DesiredState, running: &BTreeSet<String>) -> Result<()> {
    let mut taken = Vec::new();
    for (service, addr) in listen_addresses(state) {
        if running.contains(&service) {
            continue;
        }
        if let Err(e) = TcpListener::bind(addr) {
            taken.push(format!("  {addr} (service `{service}`): {e}"));
        }
    }
    if !taken.is_empty() {
        bail!(
            "Ports needed by the app are already in use, nothing was started:\n{}\nhint: stop the program using them, or change the port in the site config and run `berth up` again",
            taken.join("\n")
        );
    }
    Ok(())
}

/// Services the supervisor currently runs (any state but stopped/failed).
fn running_services(inst: &Instance) -> BTreeSet<String> {
    if !supervisor::is_running(&inst.paths) {
        return BTreeSet::new();
    }
    match supervisor::request(&inst.paths, &Request::Status) {
        Ok(Response::Status { services, .. }) => services
            .into_iter()
            .filter(|s| s.pid.is_some())
            .map(|s| s.name)
            .collect(),
        _ => BTreeSet::new(),
    }
}

/// Install missing distribution packages (root), or say exactly what to run.
fn ensure_packages(state: &DesiredState, is_root: bool, progress: &dyn Progress) -> Result<()> {
    let missing = berth_host::packages::missing(&state.packages)?;
    if !missing.is_empty() {
        if !is_root {
            bail!(
                "These packages are needed and not installed: {}\nhint: run `{}`, then `berth up` again",
                missing.join(", "),
                berth_host::packages::install_hint(&missing)
            );
        }
        progress.begin(&format!("Installing packages: {}", missing.join(", ")));
        berth_host::packages::install(&missing)?;
        progress.end("");
    }
    let absent: Vec<String> = state
        .binaries
        .iter()
        .filter(|(_, p)| !p.exists())
        .map(|(n, p)| format!("{n} ({})", p.display()))
        .collect();
    if !absent.is_empty() {
        bail!(
            "Programs the manifest names are missing after installing its packages: {}",
            absent.join(", ")
        );
    }
    Ok(())
}

/// Build bundled components that are not built yet.
fn ensure_bundles(state: &DesiredState, progress: &dyn Progress) -> Result<()> {
    for b in &state.bundles {
        if b.dest.is_dir() {
            continue;
        }
        match &b.build {
            berth_model::manifest::BundleBuild::PythonVenv {
                python,
                requirements,
            } => {
                let found = berth_host::python::find_interpreter(python)?;
                // Service users must be able to run it: copy a private one into the release.
                let interpreter = berth_host::interpreter::shareable_interpreter(
                    &found,
                    &b.dest.with_file_name(format!("{}-python", b.component)),
                )?;
                let what = if requirements.is_empty() {
                    String::new()
                } else {
                    format!("{} ", requirements.join(" "))
                };
                progress.begin(&format!(
                    "Building `{}` ({what}with {})",
                    b.component,
                    interpreter.display()
                ));
                berth_host::python::build_venv(&interpreter, requirements, &b.dest)?;
                progress.end("");
            }
        }
    }
    Ok(())
}

/// Keep a copy of the manifest the instance runs, so later commands need no `--manifest`.
fn store_manifest(inst: &Instance, loc: &Locate) -> Result<()> {
    let dir = stored_manifest_dir(&inst.paths.prefix);
    let files = inst.manifest_files(loc)?;
    let unchanged = files
        .iter()
        .all(|(name, text)| std::fs::read_to_string(dir.join(name)).is_ok_and(|t| &t == text));
    if unchanged && dir.is_dir() {
        return Ok(());
    }
    let tmp = inst.paths.prefix.join(".manifest.new");
    let _ = std::fs::remove_dir_all(&tmp);
    for (name, text) in &files {
        let path = tmp.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text)
            .with_context(|| format!("Failed to write `{}`", path.display()))?;
    }
    let old = inst.paths.prefix.join(".manifest.old");
    let _ = std::fs::remove_dir_all(&old);
    if dir.exists() {
        std::fs::rename(&dir, &old)?;
    }
    std::fs::rename(&tmp, &dir)?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Write the supervision plan (mode 0600: service environments hold secrets).
fn write_plan(inst: &Instance, plan: &SupervisionPlan) -> Result<bool> {
    let path = inst.paths.supervision_plan();
    let bytes = serde_json::to_vec_pretty(plan)?;
    if std::fs::read(&path).is_ok_and(|old| old == bytes) {
        return Ok(false);
    }
    berth_host::fsutil::write_atomic(&path, &bytes, 0o600, None)?;
    Ok(true)
}

/// Whether a hook is due, and the scope it is recorded under.
fn hook_scope(hook: &berth_render::HookSpec, version: &str) -> Option<String> {
    match hook.when {
        HookWhen::Once => Some("instance".to_owned()),
        HookWhen::Release => Some(format!("release {version}")),
        HookWhen::Always => None,
    }
}

/// Run the hooks that are due, starting the services each needs first.
fn run_hooks(
    inst: &Instance,
    state: &DesiredState,
    db: &StateDb,
    run: berth_state::RunId,
    include_always: bool,
    progress: &dyn Progress,
) -> Result<Vec<String>> {
    let mut ran = Vec::new();
    for hook in hook_order(state) {
        let scope = hook_scope(hook, &state.app.version);
        let due = match &scope {
            Some(scope) => !db.hook_ran(&hook.name, scope)?,
            None => include_always,
        };
        if !due {
            continue;
        }
        if !hook.after.is_empty() {
            progress.begin(&format!(
                "Starting {} for hook `{}`",
                hook.after.join(", "),
                hook.name
            ));
            for svc in &hook.after {
                supervisor::request(
                    &inst.paths,
                    &Request::Start {
                        target: Target::One(svc.clone()),
                    },
                )
                .map_err(|e| with_failed_logs(inst, e))
                .with_context(|| {
                    format!("Failed to start `{svc}`, which hook `{}` needs", hook.name)
                })?;
            }
            progress.end("");
        }
        let label = if hook.description.is_empty() {
            hook.name.clone()
        } else {
            hook.description.clone()
        };
        progress.begin(&format!("Running hook `{}`: {label}", hook.name));
        let step = db.begin_step(run, &format!("hook {}", hook.name))?;
        match hooks::run(hook) {
            Ok(()) => {
                db.finish_step(step, &StepStatus::Done)?;
                if let Some(scope) = &scope {
                    db.record_hook(&hook.name, scope, run)?;
                }
                progress.end("");
                ran.push(hook.name.clone());
            }
            Err(e) => {
                db.finish_step(
                    step,
                    &StepStatus::Failed {
                        error: format!("{e:#}"),
                    },
                )?;
                return Err(e);
            }
        }
    }
    Ok(ran)
}

/// Hooks in the order they must run: a hook whose `before` services are needed
/// (directly or through `depends_on`) by another hook's `after` runs first. Ties keep
/// the manifest's (alphabetical) order. The manifest's validation rejects cycles.
fn hook_order(state: &DesiredState) -> Vec<&berth_render::HookSpec> {
    let deps: BTreeMap<&str, &[String]> = state
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.depends_on.as_slice()))
        .collect();
    let needed = |hook: &'_ berth_render::HookSpec| -> BTreeSet<String> {
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut stack: Vec<&str> = hook.after.iter().map(String::as_str).collect();
        while let Some(s) = stack.pop() {
            if seen.insert(s.to_owned()) {
                stack.extend(
                    deps.get(s)
                        .into_iter()
                        .flat_map(|d| d.iter().map(String::as_str)),
                );
            }
        }
        seen
    };
    let hooks = &state.hooks;
    let must_precede = |a: &berth_render::HookSpec, b: &berth_render::HookSpec| {
        let n = needed(b);
        a.before.iter().any(|s| n.contains(s))
    };
    let mut done = vec![false; hooks.len()];
    let mut order = Vec::with_capacity(hooks.len());
    while order.len() < hooks.len() {
        let next = (0..hooks.len()).find(|&i| {
            !done[i]
                && (0..hooks.len())
                    .all(|j| j == i || done[j] || !must_precede(&hooks[j], &hooks[i]))
        });
        // A cycle cannot pass validation; if one did, fall back to declared order.
        let i = next.unwrap_or_else(|| (0..hooks.len()).find(|&i| !done[i]).unwrap_or(0));
        done[i] = true;
        order.push(&hooks[i]);
    }
    order
}

/// Run one journaled step.
fn step<T>(
    db: &StateDb,
    run: berth_state::RunId,
    name: &str,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let id = db.begin_step(run, name)?;
    match f() {
        Ok(v) => {
            db.finish_step(id, &StepStatus::Done)?;
            Ok(v)
        }
        Err(e) => {
            db.finish_step(
                id,
                &StepStatus::Failed {
                    error: format!("{e:#}"),
                },
            )?;
            Err(e)
        }
    }
}

/// What `up` reports when it succeeds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UpReport {
    /// Where the app answers.
    pub url: String,
    /// The manifest's next-steps lines, rendered.
    pub next_steps: Vec<String>,
    /// What changed.
    pub outcome: Outcome,
}

/// How long `up` waits for the app to answer through its front door.
const HEALTH_DEADLINE: Duration = Duration::from_mins(3);

/// `berth up`: install what is missing, converge, start the supervisor and every
/// service (running hooks in order), and wait until the app answers.
pub fn up(
    inst: &Instance,
    loc: &Locate,
    berth_exe: &Path,
    progress: &dyn Progress,
) -> Result<UpReport> {
    let started = Instant::now();
    // Checks that change nothing come first: a failure leaves the host as it was.
    let preview_secrets = secrets(inst, false)?;
    let preview = render(inst, &preview_secrets)?;
    let running = running_services(inst);
    check_ports(&preview, &running)?;
    progress.begin("Checking system packages");
    ensure_packages(&preview, inst.facts.is_root, progress)?;
    progress.end("");
    if !inst.facts.is_root {
        for b in &preview.bundles {
            let berth_model::manifest::BundleBuild::PythonVenv { python, .. } = &b.build;
            berth_host::python::find_interpreter(python)?;
        }
    }

    std::fs::create_dir_all(&inst.paths.state)
        .with_context(|| format!("Failed to create `{}`", inst.paths.state.display()))?;
    let db = StateDb::open(inst.paths.state_db())?;
    let run = db.begin_run(
        "up",
        &format!("{} {}", preview.app.name, preview.app.version),
    )?;
    let result = up_steps(inst, loc, berth_exe, &db, run, progress);
    let mut outcome = match result {
        Ok(o) => o,
        Err(e) => {
            db.finish_run(run, &failed(&format!("{e:#}")))?;
            return Err(e);
        }
    };
    outcome.duration = started.elapsed();
    db.finish_run(run, &recorded(&outcome))?;
    Ok(UpReport {
        url: inst.config.external_url.to_string(),
        next_steps: render(inst, &secrets(inst, false)?)?.next_steps,
        outcome,
    })
}

fn up_steps(
    inst: &Instance,
    loc: &Locate,
    berth_exe: &Path,
    db: &StateDb,
    run: berth_state::RunId,
    progress: &dyn Progress,
) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    let preview = render(inst, &secrets(inst, false)?)?;
    if inst.facts.is_root {
        step(db, run, "users", || {
            for u in &preview.users {
                berth_host::users::ensure_user(u)?;
            }
            Ok(())
        })?;
    }
    let secrets = step(db, run, "secrets", || secrets(inst, true))?;
    step(db, run, "bundles", || ensure_bundles(&preview, progress))?;
    let state = render(inst, &secrets)?;

    progress.begin("Writing configuration");
    let (plan, applied) = step(db, run, "converge", || converge(inst, &state, &secrets))?;
    outcome.files_changed = applied.clone();
    store_manifest(inst, loc)?;
    if !inst.config_exists && inst.config_path.starts_with(&inst.paths.prefix) {
        write_site_template(&inst.config_path)?;
    }
    let new_plan = supervision_plan(&state);
    let old_plan = applied_plan(&inst.paths.supervision_plan());
    write_plan(inst, &new_plan)?;
    progress.end(&format!("{} file(s) changed", applied.len()));

    if supervisor::is_running(&inst.paths) {
        let restart: Vec<String> = plan.restart.clone();
        let reload: Vec<String> = plan.reload.clone();
        if (old_plan.as_ref() != Some(&new_plan) || !restart.is_empty() || !reload.is_empty())
            && let Response::Applied {
                restarted,
                reloaded,
                ..
            } = supervisor::request(
                &inst.paths,
                &Request::Apply {
                    plan: new_plan,
                    restart,
                    reload,
                },
            )?
        {
            outcome.restarted = restarted;
            outcome.reloaded = reloaded;
        }
    } else {
        progress.begin("Starting the supervisor");
        step(db, run, "start supervisor", || {
            if inst.facts.systemd && inst.facts.is_root {
                crate::systemd::install_and_start(&state.app.name, &inst.paths, berth_exe)
            } else {
                supervisor::spawn(&inst.paths, berth_exe)
            }
        })?;
        progress.end("");
    }

    outcome.hooks_run = run_hooks(inst, &state, db, run, true, progress)?;

    progress.begin("Starting services");
    step(db, run, "start services", || {
        supervisor::request(
            &inst.paths,
            &Request::Start {
                target: Target::All,
            },
        )
        .map(|_| ())
        .map_err(|e| with_failed_logs(inst, e))
    })?;
    progress.end("");

    progress.begin(&format!("Waiting for {}", state.health_url));
    let url = url::Url::parse(&state.health_url)
        .with_context(|| format!("The health URL `{}` is not a URL", state.health_url))?;
    step(db, run, "health", || {
        http::wait_ok(&url, HEALTH_DEADLINE).map_err(|last| {
            anyhow::anyhow!(
                "The app did not answer at `{url}` within {} s (last: {last})\nhint: `berth status` shows which service is unhealthy, `berth tail SERVICE` shows its log",
                HEALTH_DEADLINE.as_secs()
            )
        })
    })?;
    progress.end("");
    // From now on a supervisor started at boot (the systemd unit) starts everything.
    berth_host::fsutil::write_atomic(&autostart_marker(&inst.paths), b"", 0o644, None)?;
    Ok(outcome)
}

/// Present once `up` has succeeded and until `down`: a supervisor started with
/// `--autostart` (at boot) starts the services only then, never before the first
/// `up` has run its hooks.
pub fn autostart_marker(paths: &berth_render::Paths) -> PathBuf {
    paths.state.join("autostart")
}

/// Add the last log lines of every service that is not ready to a start error.
fn with_failed_logs(inst: &Instance, err: anyhow::Error) -> anyhow::Error {
    let Ok(Response::Status { services, .. }) = supervisor::request(&inst.paths, &Request::Status)
    else {
        return err;
    };
    let mut text = String::new();
    for s in services.iter().filter(|s| !s.ready) {
        let log = inst.paths.log.join(&s.name).join("current");
        if log.exists() {
            text.push_str(&format!(
                "\nlast lines of `{}`:\n{}",
                log.display(),
                hooks::tail(&log, 10)
            ));
        }
    }
    if text.is_empty() {
        err
    } else {
        anyhow::anyhow!(
            "{err:#}{text}\nhint: fix the cause, then run `berth up` again; it resumes where it stopped"
        )
    }
}

/// Plan and apply the file/dir/user changes; returns the plan and the paths written.
fn converge(
    inst: &Instance,
    state: &DesiredState,
    secrets: &BTreeMap<String, String>,
) -> Result<(ConvergePlan, Vec<PathBuf>)> {
    let plan = berth_host::converge::plan(state, &mask_list(secrets), inst.facts.is_root)?;
    if plan.is_empty() {
        return Ok((plan, Vec::new()));
    }
    let report = berth_host::converge::apply(&plan, state)?;
    Ok((plan, report.changed))
}

/// The first site config: empty apart from comments saying how to use it.
fn write_site_template(path: &Path) -> Result<()> {
    let text = "# Site config: every setting you change from the defaults goes here.\n\
                # `berth config show` prints every setting with its current value;\n\
                # `berth reconfigure` applies this file.\n";
    berth_host::fsutil::write_atomic(path, text.as_bytes(), 0o644, None)?;
    Ok(())
}

/// `berth reconfigure`: apply the site config, touching only what changed.
pub fn reconfigure(inst: &Instance, loc: &Locate, progress: &dyn Progress) -> Result<Outcome> {
    let started = Instant::now();
    if !inst.paths.state_db().exists() {
        bail!(
            "`{}` has not been set up yet\nhint: run `berth up` first",
            inst.paths.prefix.display()
        );
    }
    let db = StateDb::open(inst.paths.state_db())?;
    let run = db.begin_run("reconfigure", "")?;
    match reconfigure_steps(inst, loc, &db, run, progress) {
        Ok(mut outcome) => {
            outcome.duration = started.elapsed();
            db.finish_run(run, &recorded(&outcome))?;
            Ok(outcome)
        }
        Err(e) => {
            db.finish_run(run, &failed(&format!("{e:#}")))?;
            Err(e)
        }
    }
}

fn reconfigure_steps(
    inst: &Instance,
    loc: &Locate,
    db: &StateDb,
    run: berth_state::RunId,
    progress: &dyn Progress,
) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    let secrets = secrets(inst, true)?;
    let state = render(inst, &secrets)?;
    let (plan, applied) = step(db, run, "converge", || converge(inst, &state, &secrets))?;
    outcome.files_changed = applied;
    store_manifest(inst, loc)?;
    let new_plan = supervision_plan(&state);
    let plan_changed = write_plan(inst, &new_plan)?;
    let running = supervisor::is_running(&inst.paths);
    if (plan_changed || !plan.restart.is_empty() || !plan.reload.is_empty()) && running {
        let req = Request::Apply {
            plan: new_plan,
            restart: plan.restart.clone(),
            reload: plan.reload.clone(),
        };
        if let Response::Applied {
            restarted,
            reloaded,
            ..
        } = step(db, run, "apply to supervisor", || {
            supervisor::request(&inst.paths, &req)
        })? {
            outcome.restarted = restarted;
            outcome.reloaded = reloaded;
        }
        // Services new in the plan are started; running ones are left alone.
        supervisor::request(
            &inst.paths,
            &Request::Start {
                target: Target::All,
            },
        )?;
    } else if !running {
        progress.note("The supervisor is not running: files were updated, nothing was restarted (start with `berth up`)");
    }
    if !outcome.is_noop() && running {
        outcome.hooks_run = run_hooks(inst, &state, db, run, true, progress)?;
    }
    Ok(outcome)
}
