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
    let Some(o) = &r.outcome else {
        return format!("{s} unfinished (interrupted)");
    };
    let status = match &o.status {
        RunStatus::Succeeded => "succeeded".to_owned(),
        RunStatus::NoChange => "no change".to_owned(),
        RunStatus::Failed { error } => {
            format!("failed: {}", error.lines().next().unwrap_or_default())
        }
    };
    let _ = write!(s, " {status:<10} {dur:>8}");
    if !o.files_changed.is_empty() {
        let _ = write!(s, "  files: {}", o.files_changed.len());
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
    s
}
