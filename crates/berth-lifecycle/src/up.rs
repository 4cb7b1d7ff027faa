//! `berth up`: install what is missing, converge, start the supervisor and every
//! service (running hooks in order), and wait until the app answers.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use berth_state::StateDb;
use berth_supervisor_protocol::{Request, Response, Target};

use berth_render::DesiredState;

use crate::change::Change;
use crate::converge::{
    Outcome, autostart_marker, error_text, failed, recorded, render, secrets, step,
    write_site_template,
};
use crate::error::{LifecycleError, Result};
use crate::instance::{Instance, Locate};
use crate::progress::Progress;
use crate::{hooks, http, preflight, release, supervisor};

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
    let running = preflight::running_services(inst);
    preflight::check_ports(inst, &preview, &running)?;
    progress.begin("Checking system packages");
    preflight::ensure_packages(&preview, inst.facts.is_root, progress)?;
    progress.end("");
    // Again: a package's own daemon may have been started by a local start policy.
    preflight::check_ports(inst, &preview, &running)?;
    // A bundle still to build needs its interpreter: say which is missing before
    // anything is created (packages, which may bring one, are installed by now).
    for b in preview.bundles.iter().filter(|b| !b.dest.is_dir()) {
        let berth_model::manifest::BundleBuild::PythonVenv { python, .. } = &b.build;
        berth_host::python::find_interpreter(python)?;
    }

    std::fs::create_dir_all(&inst.paths.state)
        .map_err(LifecycleError::io("create", &inst.paths.state))?;
    let db = StateDb::open(inst.paths.state_db())?;
    let run = db.begin_run(
        "up",
        &format!("{} {}", preview.app.name, preview.app.version),
    )?;
    let result = up_steps(inst, loc, berth_exe, &preview, &db, run, progress);
    let (mut outcome, next_steps) = match result {
        Ok(done) => done,
        Err(e) => {
            db.finish_run(run, &failed(&error_text(&e)))?;
            return Err(e);
        }
    };
    outcome.duration = started.elapsed();
    db.finish_run(run, &recorded(&outcome))?;
    Ok(UpReport {
        url: inst.config.external_url.to_string(),
        next_steps,
        outcome,
    })
}

/// The first half of `up`: users, secrets, release, configuration written, and the
/// supervisor running with the new plan (started or told to apply it). No service is
/// started here that was not running, apart from services new to the plan.
pub(crate) fn prepare(
    inst: &Instance,
    loc: &Locate,
    berth_exe: &Path,
    preview: &berth_render::DesiredState,
    db: &StateDb,
    run: berth_state::RunId,
    progress: &dyn Progress,
) -> Result<(DesiredState, Outcome, Change)> {
    let mut outcome = Outcome::default();
    if inst.facts.is_root {
        step(db, run, "users", || {
            for u in &preview.users {
                berth_host::users::ensure_user(u)?;
            }
            Ok(())
        })?;
    }
    let secrets = step(db, run, "secrets", || secrets(inst, true))?;
    step(db, run, "bundles", || {
        release::ensure_bundles(preview, progress)
    })?;
    let installed = step(db, run, "install berth", || {
        release::install_berth(&inst.paths, berth_exe)
    })?;
    let berth_exe = installed.as_path();
    let state = render(inst, &secrets)?;

    progress.begin("Writing configuration");
    let running = preflight::running_services(inst);
    let mut change = Change::write(inst, &state, &secrets, running, db, run)?;
    outcome.files_changed = change.files();
    release::store_manifest(inst, loc)?;
    if !inst.config_exists && inst.config_path.starts_with(&inst.paths.prefix) {
        write_site_template(&inst.config_path)?;
    }
    progress.end(&format!("{} file(s) changed", outcome.files_changed.len()));

    if supervisor::is_running(&inst.paths) {
        change.guard(inst, db, run, |change| {
            change.apply_to_supervisor(inst, db, run, &mut outcome)
        })?;
    } else {
        progress.begin("Starting the supervisor");
        change.guard(inst, db, run, |_| {
            step(db, run, "start supervisor", || {
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
        progress.end("");
    }

    Ok((state, outcome, change))
}

fn up_steps(
    inst: &Instance,
    loc: &Locate,
    berth_exe: &Path,
    preview: &berth_render::DesiredState,
    db: &StateDb,
    run: berth_state::RunId,
    progress: &dyn Progress,
) -> Result<(Outcome, Vec<String>)> {
    let (state, mut outcome, mut change) =
        prepare(inst, loc, berth_exe, preview, db, run, progress)?;
    change.guard(inst, db, run, |_| {
        outcome.hooks_run = hooks::run_hooks(inst, &state, db, run, true, progress)?;

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
        step(db, run, "health", || wait_healthy(&state))?;
        progress.end("");
        Ok(())
    })?;
    preflight::record_ports(inst, &state)?;
    // From now on a supervisor started at boot (the systemd unit) starts everything.
    berth_host::fsutil::write_atomic(&autostart_marker(&inst.paths), b"", 0o644, None)?;
    Ok((outcome, state.next_steps))
}

/// Wait until the app answers at its health URL (at most [`HEALTH_DEADLINE`]).
pub(crate) fn wait_healthy(state: &DesiredState) -> Result<()> {
    let url = url::Url::parse(&state.health_url)
        .map_err(|_| LifecycleError::HealthUrl(state.health_url.clone()))?;
    http::wait_ok(&url, HEALTH_DEADLINE)
        .map(|_| ())
        .map_err(|last| LifecycleError::Health {
            url: url.to_string(),
            secs: HEALTH_DEADLINE.as_secs(),
            last,
        })
}

/// Add the last log lines of every service that is not ready to a start error.
pub(crate) fn with_failed_logs(inst: &Instance, err: LifecycleError) -> LifecycleError {
    let Ok(Response::Status { services, .. }) = supervisor::request(&inst.paths, &Request::Status)
    else {
        return err;
    };
    let mut text = String::new();
    for s in services.iter().filter(|s| !s.ready) {
        let log = inst.paths.log.join(&s.name).join("current");
        if log.exists() {
            let _ = write!(
                text,
                "\nlast lines of `{}`:\n{}",
                log.display(),
                hooks::tail(&log, 10)
            );
        }
    }
    if text.is_empty() {
        err
    } else {
        LifecycleError::ServicesFailed {
            cause: Box::new(err),
            logs: text,
        }
    }
}
