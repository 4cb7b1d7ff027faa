//! `berth up`: install what is missing, converge, start the supervisor and every
//! service (running hooks in order), and wait until the app answers.

use std::path::Path;

use berth_supervisor_protocol::{Request, Target};

use berth_render::DesiredState;

use crate::change::Change;
use crate::desired::{preview, render, secrets};
use crate::error::Result;
use crate::instance::{Instance, Locate};
use crate::progress::Progress;
use crate::run::{Outcome, Run};
use crate::state_files::write_site_template;
use crate::{health, hooks, preflight, release, supervisor};

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

/// `berth up`: install what is missing, converge, start the supervisor and every
/// service (running hooks in order), and wait until the app answers. Recorded in the
/// history as an `up` run.
pub fn up(
    inst: &Instance,
    loc: &Locate,
    berth_exe: &Path,
    progress: &dyn Progress,
) -> Result<UpReport> {
    // Checks that change nothing come first: a failure leaves the host as it was
    // (not even a state directory is made).
    let preview = checks(inst, loc.payload.as_deref(), progress)?;
    let run = Run::begin(
        inst,
        "up",
        &format!("{} {}", preview.app.name, preview.app.version),
        progress,
    )?;
    let result = up_steps(&run, loc, berth_exe, &preview, false, &|_| false, &mut || Ok(()));
    let duration = run.elapsed();
    let mut report = run.finish(result, |r| r.outcome.recorded())?;
    report.outcome.duration = duration;
    Ok(report)
}

/// `berth preflight`: every check `up` makes of the host before it changes anything
/// (the manifest's `[preflight]`, free space for berth's state, the clock, the
/// services' ports), for the instance as it is configured. Changes nothing.
pub fn preflight_report(inst: &Instance) -> Result<berth_preflight::Report> {
    let preview = preview(inst)?;
    let running = supervisor::running_services(&inst.paths);
    Ok(preflight::report(inst, &preview, &running))
}

/// The preflight checks alone, refusing on a failure (warnings said): what an upgrade
/// runs against the new version's instance before its backup, and anything else that
/// must stop before it changes the host.
pub fn preflight_check(inst: &Instance, progress: &dyn Progress) -> Result<()> {
    let preview = preview(inst)?;
    let running = supervisor::running_services(&inst.paths);
    preflight::check_host(inst, &preview, &running, progress)
}

/// Refuses an instance whose service users cannot reach the paths they use (a prefix
/// inside a directory they cannot enter), before anything changes: `up` and
/// `reconfigure` check it themselves, a restore into a new prefix before it moves
/// anything in.
pub fn check_reachable(inst: &Instance) -> Result<()> {
    preflight::check_reachable(inst, &preview(inst)?)
}

/// `up` as part of another operation's run (a restore's last step): the same checks
/// and steps, recorded in `run`.
pub fn up_within(run: &Run, loc: &Locate, berth_exe: &Path) -> Result<UpReport> {
    up_within_then(run, loc, berth_exe, false, &mut || Ok(()))
}

/// As [`up_within`], with `started` run once every service has been started and
/// before the health gate: an upgrade takes its maintenance page down there (the
/// gate asks through the front end, which answers 503 while the page is up).
///
/// With `beside`, services that declare `beside` and are restarted once the hooks ran
/// are handed over instead ([`crate::handover`]): an online upgrade hop.
pub fn up_within_then(
    run: &Run,
    loc: &Locate,
    berth_exe: &Path,
    beside: bool,
    started: &mut dyn FnMut() -> Result<()>,
) -> Result<UpReport> {
    let preview = checks(run.inst, loc.payload.as_deref(), run.progress)?;
    up_steps(run, loc, berth_exe, &preview, beside, &|_| false, started)
}

/// As [`up_within_then`] without handing over, leaving the hooks `held` picks for a
/// later `up` (they stay due): a fleet upgrade runs the release's post-deploy
/// migrations only once every node runs the new release.
pub fn up_holding(
    run: &Run,
    loc: &Locate,
    berth_exe: &Path,
    held: &dyn Fn(&berth_render::HookSpec) -> bool,
    started: &mut dyn FnMut() -> Result<()>,
) -> Result<UpReport> {
    let preview = checks(run.inst, loc.payload.as_deref(), run.progress)?;
    up_steps(run, loc, berth_exe, &preview, false, held, started)
}

/// What `up` checks and installs before it changes the instance (ports, system
/// packages, host files, interpreters), then the bundled components built (or moved
/// from `payload`, a release bundle's): an upgrade readies the new release this way
/// while the old one keeps serving.
pub fn prepare_release(
    inst: &Instance,
    payload: Option<&Path>,
    progress: &dyn Progress,
) -> Result<DesiredState> {
    let preview = checks(inst, payload, progress)?;
    release::ensure_bundles(&preview, payload, &inst.children(), progress)?;
    Ok(preview)
}

/// What `up` checks before it changes anything: ports, packages (installed here when
/// root), interpreters. Returns the desired state as it renders before secrets exist.
fn checks(
    inst: &Instance,
    payload: Option<&Path>,
    progress: &dyn Progress,
) -> Result<DesiredState> {
    // Users that cannot be named are refused before anything changes.
    inst.naming.usable()?;
    let preview = preview(inst)?;
    let running = supervisor::running_services(&inst.paths);
    // The host's resources, system and ports first: the manifest's `[preflight]`.
    preflight::check_host(inst, &preview, &running, progress)?;
    preflight::check_reachable(inst, &preview)?;
    progress.begin("Checking system packages");
    let mut needed = preview.clone();
    needed.packages = packages_needed(inst, &preview, payload);
    preflight::ensure_packages(&needed, inst.facts.is_root, progress)?;
    progress.end("");
    // Again: a package's own daemon may have been started by a local start policy.
    preflight::check_ports(inst, &preview, &running)?;
    // Host files: a path holding something berth did not make is refused now, before
    // anything changes.
    host_files(inst).check(&preview.host_files)?;
    // A bundle still to build needs its interpreter: say which is missing before
    // anything is created (packages, which may bring one, are installed by now).
    for b in preview
        .bundles
        .iter()
        .filter(|b| !b.dest.is_dir() && release::prebuilt(payload, &b.component).is_none())
    {
        let berth_model::manifest::BundleBuild::PythonVenv { python, .. } = &b.build;
        berth_host::python::find_interpreter(python)?;
    }
    Ok(preview)
}

/// The distribution packages the enabled components need now: a bundled component's
/// are what building it needs (a compiler, headers), so they are left out once it is
/// built, or comes built from a release bundle (`payload`).
fn packages_needed(inst: &Instance, preview: &DesiredState, payload: Option<&Path>) -> Vec<String> {
    let built: std::collections::BTreeSet<&str> = preview
        .bundles
        .iter()
        .filter(|b| b.dest.is_dir() || release::prebuilt(payload, &b.component).is_some())
        .map(|b| b.component.as_str())
        .collect();
    let mut out = std::collections::BTreeSet::new();
    for (name, c) in &inst.manifest.manifest.components {
        if inst.config.enabled_components.contains(name) && !built.contains(name.as_str()) {
            out.extend(c.packages.iter().cloned());
        }
    }
    out.into_iter().collect()
}

/// The first half of `up`: users, secrets, release, configuration written, and the
/// supervisor running with the new plan (started or told to apply it). No service is
/// started here that was not running, apart from services new to the plan.
///
/// With `hold_for_hooks`, services that due hooks (as `up` picks them) must run
/// before are not restarted, reloaded or started yet: the caller runs the hooks, then
/// [`Change::release_held`].
pub fn prepare(
    run: &Run,
    loc: &Locate,
    berth_exe: &Path,
    preview: &DesiredState,
    hold_for_hooks: bool,
) -> Result<(DesiredState, Outcome, Change)> {
    let (inst, progress) = (run.inst, run.progress);
    let mut outcome = Outcome::default();
    if inst.facts.is_root {
        let report = run.step("users", || {
            crate::users::check_own(&inst.paths, &inst.naming)?;
            let report = berth_host::users::ensure_users(&preview.paths, &preview.users, true)?;
            crate::users::record(&inst.paths, &inst.users)?;
            Ok::<_, crate::LifecycleError>(report)
        })?;
        for user in &report.rehome_later {
            progress.note(&format!(
                "The passwd entry of `{user}` still names {} as its home: `usermod` cannot \
                 change it while the user has processes running. berth gives its \
                 processes HOME={} anyway; `berth down` then `berth up` changes the entry.",
                inst.paths.data.display(),
                inst.paths.user_home(user).display()
            ));
        }
    }
    let secrets = run.step("secrets", || secrets(inst, true))?;
    run.step("bundles", || {
        release::ensure_bundles(
            preview,
            loc.payload.as_deref(),
            &run.inst.children(),
            progress,
        )
    })?;
    let installed = run.step("install berth", || {
        release::install_berth(&inst.paths, berth_exe)
    })?;
    let berth_exe = installed.as_path();
    let state = render(inst, &secrets)?;
    crate::interrupted::finish(run, &state, &mut outcome)?;

    progress.begin("Writing configuration");
    let running = supervisor::services_running(run.supervisor());
    let mut change = Change::write(run, &state, &secrets, running)?;
    change.record_written(&mut outcome);
    release::store_manifest(inst, loc)?;
    if !inst.config_exists && inst.config_path.starts_with(&inst.paths.prefix) {
        write_site_template(&inst.config_path)?;
    }
    progress.end(&format!("{} file(s) changed", outcome.files_changed.len()));

    if run.supervisor().is_running() {
        if hold_for_hooks {
            let due = hooks::due(run, &state, &hooks::every_due(true))?;
            change.hold(&hooks::gated_services(&due));
        }
        change.guard(run, |change| change.apply_to_supervisor(run, &mut outcome))?;
    } else {
        progress.begin("Starting the supervisor");
        change.guard(run, |_| {
            run.step("start supervisor", || {
                if inst.facts.systemd && inst.facts.is_root {
                    crate::systemd::Systemd::default().install_and_start(
                        &state.app.name,
                        &inst.paths,
                        berth_exe,
                    )
                } else {
                    supervisor::spawn(&inst.paths, berth_exe)
                }
            })
        })?;
        change.started_supervisor = true;
        change.acted(run)?;
        progress.end("");
    }

    Ok((state, outcome, change))
}

fn up_steps(
    run: &Run,
    loc: &Locate,
    berth_exe: &Path,
    preview: &DesiredState,
    beside: bool,
    held: &dyn Fn(&berth_render::HookSpec) -> bool,
    started: &mut dyn FnMut() -> Result<()>,
) -> Result<UpReport> {
    let (inst, progress) = (run.inst, run.progress);
    let (state, mut outcome, mut change) = prepare(run, loc, berth_exe, preview, true)?;
    let handover = if beside {
        match crate::handover::plan(inst, &secrets(inst, false)?, &state)? {
            Ok(h) => Some(h),
            Err(why) => {
                progress.note(&format!(
                    "The app's services restart instead of starting beside themselves: {why}"
                ));
                None
            }
        }
    } else {
        None
    };
    change.guard(run, |change| {
        let due = hooks::due(run, &state, &|h, scheduled| {
            scheduled.unwrap_or(true) && !held(h)
        })?;
        outcome.hooks_run = hooks::run_due(run, &due)?;
        let handed = match &handover {
            Some(h) => crate::handover::run(run, change, &state, h, &mut outcome)?,
            None => false,
        };
        if !handed {
            change.release_held(run, &mut outcome)?;
        }

        progress.begin("Starting services");
        run.step("start services", || {
            let supervisor = run.supervisor();
            supervisor
                .request(&Request::Start {
                    target: Target::All,
                })
                .map(|_| ())
                .map_err(|e| supervisor.with_failed_logs(e))
        })?;
        progress.end("");
        started()?;

        progress.begin(&health::waiting_for(&state));
        run.step("health", || health::wait_healthy(&state))?;
        progress.end("");
        Ok(())
    })?;
    preflight::record_ports(inst, &state)?;
    converge_host_files(run, &state)?;
    // From now on a supervisor started at boot (the systemd unit) starts everything.
    berth_host::fsutil::write_atomic(&inst.paths.autostart_marker(), b"", 0o644, None)?;
    Ok(UpReport {
        url: inst.config.external_url.to_string(),
        next_steps: state.next_steps,
        outcome,
    })
}

/// The host files of an instance and the record of what berth made.
pub(crate) fn host_files(inst: &Instance) -> berth_host::host_files::HostFiles {
    berth_host::host_files::HostFiles::new(inst.paths.host_files_record())
}

/// Make the host files of `state` and remove berth's own that left it (journaled step
/// `host files`). After the change is kept: links point at the files it wrote, and
/// nothing outside the prefix changes for a change that is rolled back.
pub(crate) fn converge_host_files(run: &Run, state: &DesiredState) -> Result<()> {
    let report = run.step("host files", || {
        host_files(run.inst)
            .converge(&state.host_files)
            .map_err(crate::LifecycleError::from)
    })?;
    for path in &report.left {
        run.progress.note(&format!(
            "Left `{}`: no longer wanted, but changed since berth made it",
            path.display()
        ));
    }
    Ok(())
}
