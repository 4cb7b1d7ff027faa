//! `berth reconfigure --dry-run` and `berth plan`: what a converge would change, as
//! text. Writes nothing.

use std::fmt::Write as _;

use berth_supervisor_protocol::SupervisionPlan;

use crate::desired::{mask, mask_list, render, secrets, supervision_plan};
use crate::error::Result;
use crate::instance::Instance;
use crate::state_files::{applied_plan, managed_files};

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
    let spec_changes = changed_services(old_plan.as_ref(), &new_plan);
    if !spec_changes.is_empty() {
        let _ = writeln!(
            out,
            "services whose command or environment changed (restart): {}",
            spec_changes.join(", ")
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
    if let Some(old) = &old_plan {
        let added: Vec<_> = new_plan
            .services
            .iter()
            .filter(|s| !old.services.iter().any(|o| o.name == s.name))
            .map(|s| s.name.as_str())
            .collect();
        if !added.is_empty() {
            let _ = writeln!(out, "new services (start): {}", added.join(", "));
        }
        let leaving: Vec<_> = old
            .services
            .iter()
            .filter(|o| !new_plan.services.iter().any(|s| s.name == o.name))
            .map(|s| s.name.as_str())
            .collect();
        if !leaving.is_empty() {
            let _ = writeln!(
                out,
                "services leaving the plan (stop): {}",
                leaving.join(", ")
            );
        }
    } else {
        out.push_str("The instance has not been set up yet: `berth up` would install and start everything.\n");
    }
    Ok(out)
}
