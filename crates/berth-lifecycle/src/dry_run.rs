//! `berth reconfigure --dry-run` and `berth plan`: what a converge would change, as
//! text. Writes nothing.

use std::fmt::Write as _;

use berth_render::service_changes;

use crate::desired::{mask, mask_list, render, secrets, supervision_plan};
use crate::error::Result;
use crate::instance::Instance;
use crate::interrupted::left_pending;
use crate::state_files::{applied_plan, managed_files};

/// `berth reconfigure --dry-run` and `berth plan`: what would change, as text. Writes nothing.
pub fn dry_run(inst: &Instance) -> Result<String> {
    let secrets = secrets(inst, false)?;
    let state = render(inst, &secrets)?;
    let plan = berth_host::converge::plan(&state, &mask_list(&secrets), inst.facts.is_root)?
        .remove_stale(&state, &managed_files(inst));
    let new_plan = supervision_plan(inst, &state);
    let old_plan = applied_plan(&inst.paths.supervision_plan());
    let mut out = String::new();
    if plan.is_empty() {
        out.push_str("No file changes.\n");
    } else {
        out.push_str(&mask(&plan.to_string(), &secrets));
    }
    // The file changes' restarts and reloads are in the plan's text above; what the
    // supervision plan changes comes here.
    let services = service_changes(old_plan.as_ref(), &new_plan, &[], &[]);
    if !services.restart.is_empty() {
        let _ = writeln!(
            out,
            "services whose command or environment changed (restart): {}",
            services.restart.join(", ")
        );
    }
    let jobs: Vec<String> = new_plan
        .jobs
        .iter()
        .map(|j| format!("{} every {}", j.name, humantime::format_duration(j.every)))
        .collect();
    if !jobs.is_empty() {
        let _ = writeln!(out, "periodic jobs: {}", jobs.join(", "));
    }
    if old_plan.is_some() {
        if !services.start.is_empty() {
            let _ = writeln!(out, "new services (start): {}", services.start.join(", "));
        }
        if !services.stop.is_empty() {
            let _ = writeln!(
                out,
                "services leaving the plan (stop): {}",
                services.stop.join(", ")
            );
        }
    } else {
        out.push_str("The instance has not been set up yet: `berth up` would install and start everything.\n");
    }
    for unfinished in left_pending(inst)? {
        write_pending(&mut out, &unfinished);
    }
    Ok(out)
}

/// What an interrupted run left for the next `up` or `reconfigure` to do.
fn write_pending(out: &mut String, u: &berth_state::Unfinished) {
    let _ = writeln!(
        out,
        "run {} ({}) was interrupted before it acted on its services; the next `berth reconfigure` or `berth up` finishes it:",
        u.run, u.kind
    );
    let s = &u.services;
    for (what, names) in [
        ("restart", &s.restart),
        ("reload", &s.reload),
        ("start", &s.start),
        ("stop", &s.stop),
    ] {
        if !names.is_empty() {
            let _ = writeln!(out, "  {what}: {}", names.join(", "));
        }
    }
}

#[cfg(test)]
mod tests {
    use berth_state::{PendingServices, RunId, Unfinished};

    use super::write_pending;

    #[test]
    fn an_interrupted_run_is_listed_with_what_it_left() {
        let mut out = String::new();
        write_pending(
            &mut out,
            &Unfinished {
                run: RunId(12),
                kind: "reconfigure".into(),
                recorded_at: jiff::Timestamp::UNIX_EPOCH,
                services: PendingServices {
                    restart: vec!["app".into()],
                    reload: vec!["nginx".into(), "postgresql".into()],
                    start: Vec::new(),
                    stop: vec!["redis".into()],
                },
            },
        );
        assert_eq!(
            out,
            "run 12 (reconfigure) was interrupted before it acted on its services; \
             the next `berth reconfigure` or `berth up` finishes it:\n  \
             restart: app\n  reload: nginx, postgresql\n  stop: redis\n"
        );
    }
}
