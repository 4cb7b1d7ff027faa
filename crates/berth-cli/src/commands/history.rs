//! `berth history`.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use berth_lifecycle::Locate;
use berth_state::{RunStatus, StateDb};

pub fn history(loc: &Locate, limit: usize, json: bool) -> Result<ExitCode> {
    let paths = berth_lifecycle::paths(loc)?;
    if !paths.state_db().exists() {
        println!(
            "No history: `{}` has not been set up yet.",
            paths.prefix.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let db = StateDb::open(paths.state_db())?;
    let runs = db.history(limit)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(ExitCode::SUCCESS);
    }
    for r in &runs {
        println!("{}", line(r));
    }
    Ok(ExitCode::SUCCESS)
}

/// One run as a line: `#12 2026-11-25 14:02:11Z reconfigure  succeeded 31 ms  restarted: web`.
fn line(r: &berth_state::RunRecord) -> String {
    let when = r.started_at.strftime("%Y-%m-%d %H:%M:%SZ");
    let dur = r
        .duration_ms
        .map_or_else(|| "-".to_owned(), |d| format!("{d} ms"));
    let mut s = format!("#{:<4} {when} {:<12}", r.id.0, r.kind);
    let by = r
        .actor
        .as_deref()
        .map(|a| format!("  by: {}", berth_model::terminal_safe(a)))
        .unwrap_or_default();
    let Some(o) = &r.outcome else {
        return format!("{s} unfinished (interrupted){by}");
    };
    let status = match &o.status {
        RunStatus::Succeeded => "succeeded".to_owned(),
        RunStatus::NoChange => "no change".to_owned(),
        RunStatus::Failed { error } => {
            format!("failed: {}", error.lines().next().unwrap_or_default())
        }
    };
    let _ = write!(s, " {status:<10} {dur:>8}");
    // Counts: the paths are in `--json`. Directories are not files.
    for (label, list) in [
        ("files", &o.files_changed),
        ("dirs created", &o.dirs_created),
        ("dirs changed", &o.dirs_changed),
    ] {
        if !list.is_empty() {
            let _ = write!(s, "  {label}: {}", list.len());
        }
    }
    for (label, list) in [
        ("restarted", &o.services_restarted),
        ("reloaded", &o.services_reloaded),
        ("stopped", &o.services_stopped),
        ("started", &o.services_started),
        ("hooks", &o.hooks_run),
    ] {
        if !list.is_empty() {
            let _ = write!(s, "  {label}: {}", list.join(", "));
        }
    }
    s + &by
}

#[cfg(test)]
mod tests {
    use berth_state::{RunId, RunOutcome, RunRecord, RunStatus};

    fn run(id: i64, kind: &str, outcome: Option<RunOutcome>) -> RunRecord {
        let at: jiff::Timestamp = "2026-11-25T14:02:11Z".parse().unwrap();
        RunRecord {
            id: RunId(id),
            kind: kind.to_owned(),
            detail: String::new(),
            started_at: at,
            finished_at: outcome.as_ref().map(|_| at),
            duration_ms: outcome.as_ref().map(|_| 31),
            actor: Some("alice via sudo".to_owned()),
            outcome,
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    /// A first `up` creates directories and files: the history counts them apart (the
    /// directories used to be counted among the changed files), as does `--json`.
    #[test]
    fn created_directories_are_not_changed_files() {
        let first_up = RunOutcome {
            status: RunStatus::Succeeded,
            files_changed: names(&["/p/etc/app.conf", "/p/etc/nginx.conf"]),
            dirs_created: names(&["/p/etc", "/p/data", "/p/data/app"]),
            services_started: names(&["app", "nginx"]),
            hooks_run: names(&["initdb"]),
            ..RunOutcome::default()
        };
        let re_moded = RunOutcome {
            status: RunStatus::Succeeded,
            dirs_changed: names(&["/p/data/app"]),
            ..RunOutcome::default()
        };
        let failed = RunOutcome {
            status: RunStatus::Failed {
                error: "hook `migrate` failed\nexit status 1".to_owned(),
            },
            ..RunOutcome::default()
        };
        let runs = [
            run(1, "up", Some(first_up)),
            run(2, "reconfigure", Some(re_moded)),
            run(3, "reconfigure", Some(failed)),
            run(
                4,
                "up",
                Some(RunOutcome {
                    status: RunStatus::NoChange,
                    ..RunOutcome::default()
                }),
            ),
            run(5, "reconfigure", None),
        ];
        let text: Vec<String> = runs.iter().map(super::line).collect();
        insta::assert_snapshot!(text.join("\n"));
        let json = serde_json::to_value(&runs[0]).unwrap();
        assert_eq!(
            json["outcome"]["dirs_created"],
            serde_json::json!(["/p/etc", "/p/data", "/p/data/app"])
        );
        assert_eq!(
            json["outcome"]["files_changed"],
            serde_json::json!(["/p/etc/app.conf", "/p/etc/nginx.conf"])
        );
    }
}
