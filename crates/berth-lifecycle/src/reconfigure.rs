//! `berth reconfigure`: apply the site config, touching only what changed.

use std::time::Instant;

use crate::change::Change;
use crate::converge::{Outcome, error_text, failed, recorded, render, secrets, step};
use crate::error::{LifecycleError, Result};
use crate::instance::{Instance, Locate};
use crate::progress::Progress;
use crate::{hooks, preflight, release, supervisor};
use berth_state::StateDb;

/// `berth reconfigure`: apply the site config, touching only what changed.
pub fn reconfigure(inst: &Instance, loc: &Locate, progress: &dyn Progress) -> Result<Outcome> {
    let started = Instant::now();
    if !inst.paths.state_db().exists() {
        return Err(LifecycleError::NotSetUp(inst.paths.prefix.clone()));
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
            db.finish_run(run, &failed(&error_text(&e)))?;
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
    let running = preflight::running_services(inst);
    preflight::check_ports(inst, &state, &running)?;
    let mut change = Change::write(inst, &state, &secrets, running, db, run)?;
    outcome.files_changed = change.files();
    release::store_manifest(inst, loc)?;
    let running = supervisor::is_running(&inst.paths);
    if !running {
        progress.note("The supervisor is not running: files were updated, nothing was restarted (start with `berth up`)");
        return Ok(outcome);
    }
    change.guard(inst, db, run, |change| {
        change.apply_to_supervisor(inst, db, run, &mut outcome)?;
        if !outcome.is_noop() {
            outcome.hooks_run = hooks::run_hooks(inst, &state, db, run, true, progress)?;
            // The change is kept only if the app still answers; unless a service is
            // stopped on purpose, when it may well not.
            let stopped = stopped_services(inst);
            if stopped.is_empty() {
                progress.begin(&format!("Waiting for {}", state.health_url));
                step(db, run, "health", || crate::up::wait_healthy(&state))?;
                progress.end("");
            } else {
                progress.note(&format!(
                    "Not waiting for {}: {} stopped",
                    state.health_url,
                    stopped.join(", ")
                ));
            }
        }
        Ok(())
    })?;
    preflight::record_ports(inst, &state)?;
    Ok(outcome)
}

/// Services of the plan that are stopped (by an administrator).
fn stopped_services(inst: &Instance) -> Vec<String> {
    preflight::service_statuses(inst)
        .into_iter()
        .filter(|s| s.state == berth_supervisor_protocol::ServiceState::Stopped)
        .map(|s| s.name)
        .collect()
}
