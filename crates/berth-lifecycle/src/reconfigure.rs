//! `berth reconfigure`: apply the site config, touching only what changed.

use std::time::Instant;

use berth_state::StateDb;
use berth_supervisor_protocol::{Request, Response, Target};

use crate::converge::{
    Outcome, converge, error_text, failed, recorded, render, secrets, step, supervision_plan,
    write_plan,
};
use crate::error::{LifecycleError, Result};
use crate::instance::{Instance, Locate};
use crate::progress::Progress;
use crate::{hooks, release, supervisor};

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
    let (plan, applied) = step(db, run, "converge", || converge(inst, &state, &secrets))?;
    outcome.files_changed = applied;
    release::store_manifest(inst, loc)?;
    let new_plan = supervision_plan(inst, &state);
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
        outcome.hooks_run = hooks::run_hooks(inst, &state, db, run, true, progress)?;
    }
    Ok(outcome)
}
