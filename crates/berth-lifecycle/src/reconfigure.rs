//! `berth reconfigure`: apply the site config, touching only what changed.

use crate::change::Change;
use crate::desired::{render, secrets};
use crate::error::Result;
use crate::instance::{Instance, Locate};
use crate::progress::Progress;
use crate::run::{Outcome, Run};
use crate::{health, hooks, preflight, release, supervisor};

/// `berth reconfigure`: apply the site config, touching only what changed.
pub fn reconfigure(inst: &Instance, loc: &Locate, progress: &dyn Progress) -> Result<Outcome> {
    let run = Run::begin_existing(inst, "reconfigure", "", progress)?;
    let result = reconfigure_steps(&run, loc);
    let duration = run.elapsed();
    let mut outcome = run.finish(result, Outcome::recorded)?;
    outcome.duration = duration;
    Ok(outcome)
}

fn reconfigure_steps(run: &Run, loc: &Locate) -> Result<Outcome> {
    let (inst, progress) = (run.inst, run.progress);
    let mut outcome = Outcome::default();
    if inst.facts.is_root {
        // A user a change brings (a component switched on) is created by converge: it
        // must not be another instance's.
        crate::users::check_own(&inst.paths, &inst.naming)?;
    }
    let secrets = secrets(inst, true)?;
    let state = render(inst, &secrets)?;
    crate::interrupted::finish(run, &state, &mut outcome)?;
    let running = supervisor::services_running(run.supervisor());
    preflight::check_ports(inst, &state, &running)?;
    preflight::check_reachable(inst, &state)?;
    crate::up::host_files(inst).check(&state.host_files)?;
    let mut change = Change::write(run, &state, &secrets, running)?;
    change.record_written(&mut outcome);
    release::store_manifest(inst, loc)?;
    if !run.supervisor().is_running() {
        progress.note("The supervisor is not running: files were updated, nothing was restarted (start with `berth up`)");
        return Ok(outcome);
    }
    // Hooks run when something changed, and before the services they gate are
    // restarted for it: those are held back until the hooks succeeded.
    let changing = !outcome.is_noop() || !change.is_empty();
    let due = if changing {
        hooks::due(run, &state, &hooks::every_due(true))?
    } else {
        Vec::new()
    };
    change.hold(&hooks::gated_services(&due));
    change.guard(run, |change| {
        change.apply_to_supervisor(run, &mut outcome)?;
        if changing {
            outcome.hooks_run = hooks::run_due(run, &due)?;
            change.release_held(run, &mut outcome)?;
        }
        if !outcome.is_noop() {
            // The change is kept only if the app still answers; unless a service is
            // stopped on purpose, when it may well not.
            let stopped = supervisor::stopped_services(run.supervisor());
            if stopped.is_empty() {
                progress.begin(&health::waiting_for(&state));
                run.step("health", || health::wait_healthy(&state))?;
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
    crate::up::converge_host_files(run, &state)?;
    Ok(outcome)
}
