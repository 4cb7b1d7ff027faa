//! `berth reconfigure --dry-run` and `berth plan`: what a converge would change, as
//! text. Writes nothing.

use std::fmt::Write as _;

use berth_render::{ServiceChanges, service_changes};
use berth_state::Unfinished;
use berth_supervisor_protocol::JobSpec;

use crate::desired::{mask, mask_list, render, secrets, supervision_plan};
use crate::error::Result;
use crate::hooks;
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
    let files = (!plan.is_empty()).then(|| mask(&plan.to_string(), &secrets));
    // The file changes' restarts and reloads are in the plan's text; what the
    // supervision plan changes is added to it.
    let services = service_changes(old_plan.as_ref(), &new_plan, &[], &[]);
    let mut out = describe(
        files.as_deref(),
        &services,
        &new_plan.jobs,
        old_plan.is_some(),
        &left_pending(inst)?,
    );
    let db = berth_state::StateDb::open_read_only(inst.paths.state_db())?;
    write_hooks(&mut out, &hooks::due_with_reasons(db.as_ref(), &state)?);
    Ok(out)
}

/// The hooks that are due, each with why, one a line.
fn write_hooks(out: &mut String, due: &[(String, String)]) {
    if due.is_empty() {
        return;
    }
    out.push_str(
        "hooks due (run by `berth up`, and by `berth reconfigure` when something changes):\n",
    );
    for (name, why) in due {
        let _ = writeln!(out, "  {name}: {why}");
    }
}

/// The dry run's text: the file changes (`None`: there are none, else the plan's text,
/// secrets masked), what the supervision plan changes, the periodic jobs, whether the
/// instance is set up (`set_up`: a plan was applied before), and what interrupted runs
/// left for the next converge.
fn describe(
    files: Option<&str>,
    services: &ServiceChanges,
    jobs: &[JobSpec],
    set_up: bool,
    pending: &[Unfinished],
) -> String {
    let mut out = String::new();
    match files {
        None => out.push_str("No file changes.\n"),
        Some(text) => out.push_str(text),
    }
    if !services.restart.is_empty() {
        let _ = writeln!(
            out,
            "services whose command or environment changed (restart): {}",
            services.restart.join(", ")
        );
    }
    let jobs: Vec<String> = jobs
        .iter()
        .map(|j| format!("{} every {}", j.name, humantime::format_duration(j.every)))
        .collect();
    if !jobs.is_empty() {
        let _ = writeln!(out, "periodic jobs: {}", jobs.join(", "));
    }
    if set_up {
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
    for unfinished in pending {
        write_pending(&mut out, unfinished);
    }
    out
}

/// What an interrupted run left for the next `up` or `reconfigure` to do.
fn write_pending(out: &mut String, u: &Unfinished) {
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
    use std::time::Duration;

    use berth_render::ServiceChanges;
    use berth_state::{PendingServices, RunId, Unfinished};
    use berth_supervisor_protocol::JobSpec;

    use super::{describe, write_hooks, write_pending};

    #[test]
    fn due_hooks_are_listed_with_why() {
        let mut out = String::new();
        write_hooks(&mut out, &[]);
        assert_eq!(out, "");
        write_hooks(
            &mut out,
            &[
                ("createdb".to_owned(), "has not run yet".to_owned()),
                (
                    "migrate".to_owned(),
                    "package mediawiki 1:1.39.10-1 → 1:1.39.11-1".to_owned(),
                ),
            ],
        );
        assert_eq!(
            out,
            "hooks due (run by `berth up`, and by `berth reconfigure` when something changes):\n  \
             createdb: has not run yet\n  migrate: package mediawiki 1:1.39.10-1 → 1:1.39.11-1\n"
        );
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn job(name: &str, every: Duration) -> JobSpec {
        JobSpec {
            name: name.into(),
            argv: vec!["/bin/true".into()],
            env: std::collections::BTreeMap::new(),
            cwd: None,
            user: None,
            every,
            timeout: Duration::from_mins(1),
            requires: Vec::new(),
            log_dir: "/p/log/jobs".into(),
        }
    }

    fn unfinished(run: i64, kind: &str, services: PendingServices) -> Unfinished {
        Unfinished {
            run: RunId(run),
            kind: kind.into(),
            recorded_at: jiff::Timestamp::UNIX_EPOCH,
            services,
        }
    }

    #[test]
    fn an_interrupted_run_is_listed_with_what_it_left() {
        let mut out = String::new();
        write_pending(
            &mut out,
            &unfinished(
                12,
                "reconfigure",
                PendingServices {
                    restart: vec!["app".into()],
                    reload: vec!["nginx".into(), "postgresql".into()],
                    start: Vec::new(),
                    stop: vec!["redis".into()],
                },
            ),
        );
        assert_eq!(
            out,
            "run 12 (reconfigure) was interrupted before it acted on its services; \
             the next `berth reconfigure` or `berth up` finishes it:\n  \
             restart: app\n  reload: nginx, postgresql\n  stop: redis\n"
        );
    }

    /// Before the first `up` there is no plan to compare with: every service is new, so
    /// none is listed as started or stopped; the dry run says `up` installs everything.
    #[test]
    fn a_dry_run_before_the_first_up_says_everything_is_installed() {
        let services = ServiceChanges {
            start: names(&["app", "postgresql"]),
            ..ServiceChanges::default()
        };
        let text = describe(
            Some("create /p/etc/app/app.json (0640)\n"),
            &services,
            &[job("vacuum", Duration::from_hours(1))],
            false,
            &[],
        );
        insta::assert_snapshot!(text);
    }

    /// On a set-up instance the supervision plan's changes are listed (the file
    /// changes' restarts and reloads are part of the plan's own text), and what killed
    /// runs left pending comes last, oldest first.
    #[test]
    fn a_dry_run_lists_service_changes_and_what_interrupted_runs_left() {
        let services = ServiceChanges {
            restart: names(&["app"]),
            reload: names(&["nginx"]),
            start: names(&["worker"]),
            stop: names(&["redis"]),
        };
        let pending = [
            unfinished(
                4,
                "up",
                PendingServices {
                    start: names(&["app"]),
                    ..PendingServices::default()
                },
            ),
            unfinished(
                7,
                "reconfigure",
                PendingServices {
                    reload: names(&["nginx"]),
                    ..PendingServices::default()
                },
            ),
        ];
        let text = describe(
            None,
            &services,
            &[
                job("vacuum", Duration::from_hours(1)),
                job("backup", Duration::from_hours(24)),
            ],
            true,
            &pending,
        );
        insta::assert_snapshot!(text);
    }

    /// Nothing to change on a set-up instance: one line, nothing else.
    #[test]
    fn a_dry_run_with_nothing_to_do_says_so_in_one_line() {
        assert_eq!(
            describe(None, &ServiceChanges::default(), &[], true, &[]),
            "No file changes.\n"
        );
    }
}
