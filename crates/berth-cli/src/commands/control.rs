//! Commands that talk to the supervisor: status, start, stop, restart, reload, tail, down,
//! and `supervise`, which is the supervisor.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Result, bail};
use berth_lifecycle::{Down, Locate, paths, supervisor};
use berth_render::Paths;
use berth_supervisor_protocol::{Request, ServiceState, Target};

fn target(service: Option<String>) -> Target {
    service.map_or(Target::All, Target::One)
}

pub fn status(loc: &Locate, json: bool) -> Result<ExitCode> {
    let paths = paths(loc)?;
    let berth_lifecycle::supervisor::Status {
        supervisor_pid,
        services,
        jobs,
    } = supervisor::status(&paths)?;
    let unfinished =
        berth_upgrade_apply::journal::load(&berth_render::Paths::unversioned(&paths.prefix))?;
    let last_upgrade = last_upgrade(&paths);
    let audit = super::audit::status_summary(loc);
    // What the whole stack takes: PSS adds up across processes, unlike RSS.
    let memory: Option<u64> = services
        .iter()
        .filter_map(|s| s.pss_bytes)
        .reduce(|a, b| a + b);
    let budget = memory_budget(loc);
    let over = matches!((memory, &budget), (Some(m), Some((_, b))) if m > *b);
    if json {
        let v = serde_json::json!({
            "supervisor_running": supervisor_pid.is_some(),
            "supervisor_pid": supervisor_pid,
            "memory_pss_bytes": memory,
            "memory_budget": budget.as_ref().map(|(profile, bytes)| serde_json::json!({
                "profile": profile,
                "bytes": bytes,
                "within": memory.map(|m| m <= *bytes),
            })),
            "services": services,
            "jobs": jobs,
            "upgrade": {
                "unfinished": unfinished,
                "last": last_upgrade,
            },
            "audit": match &audit {
                None => serde_json::Value::Null,
                Some(Ok(a)) => a.clone(),
                Some(Err(e)) => serde_json::json!({ "error": e }),
            },
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut unhealthy = print_services(&services, memory);
    print_budget(memory, budget.as_ref());
    unhealthy |= over;
    if !jobs.is_empty() {
        println!();
        println!(
            "{:<14} {:>10} {:>6}  LAST RESULT",
            "JOB", "NEXT RUN", "RUNS"
        );
        for j in &jobs {
            println!(
                "{:<14} {:>10} {:>6}  {}",
                j.name,
                human_secs(j.next_run_in_secs),
                j.runs,
                j.last_result.as_deref().unwrap_or("-")
            );
        }
    }
    unhealthy |= print_upgrade(unfinished.as_ref(), last_upgrade.as_ref());
    // Known vulnerabilities are reported, not counted as ill health: the services run.
    match &audit {
        None => {}
        Some(Ok(a)) => {
            println!();
            println!(
                "known vulnerabilities: {} in {} packages (advisories up to {}); `berth audit` for details",
                a["failing"],
                a["packages"],
                a["advisories_newest"].as_str().unwrap_or("?")
            );
        }
        Some(Err(e)) => {
            println!();
            println!(
                "known vulnerabilities: the audit could not run: {}",
                safe(e)
            );
        }
    }
    println!();
    match supervisor_pid {
        Some(pid) => println!("supervisor pid {pid}, {}", paths.prefix.display()),
        None => println!(
            "supervisor not running (`berth down`, or stopped), {}; `berth up` starts it",
            paths.prefix.display()
        ),
    }
    // Exit 3 when something is not ready, so scripts can check health with `berth status`.
    Ok(if unhealthy {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// The stack's memory against its profile's budget, when it has one.
fn print_budget(memory: Option<u64>, budget: Option<&(String, u64)>) {
    let (Some(total), Some((profile, bytes))) = (memory, budget) else {
        return;
    };
    let human = berth_preflight::human_size;
    if total > *bytes {
        println!(
            "OVER the `{profile}` profile's memory budget of {}: {} more (the MEMORY column shows where)",
            human(*bytes),
            human(total - bytes)
        );
    } else {
        println!(
            "within the `{profile}` profile's memory budget of {} ({} to spare)",
            human(*bytes),
            human(bytes - total)
        );
    }
}

/// The memory budget of the instance's profile, if it has one: the profile's name and
/// the budget in bytes. An instance whose config cannot be read has none here (its
/// other commands report why).
fn memory_budget(loc: &Locate) -> Option<(String, u64)> {
    let inst = berth_lifecycle::instance::open(loc).ok()?;
    let profile = inst.config.profile.clone()?;
    let budget = inst
        .manifest
        .manifest
        .profiles
        .get(&profile)?
        .memory_budget
        .as_deref()?;
    let bytes = u64::try_from(berth_model::parse_size(budget).ok()?).ok()?;
    Some((profile, bytes))
}

/// The services' table of `status`, and the stack's memory; true when one is not ready.
fn print_services(
    services: &[berth_supervisor_protocol::ServiceStatus],
    memory: Option<u64>,
) -> bool {
    println!(
        "{:<14} {:<9} {:>8} {:>10} {:>8}  {:<6} {:>10}  LAST EXIT",
        "SERVICE", "STATE", "PID", "UPTIME", "RESTARTS", "READY", "MEMORY"
    );
    let mut unhealthy = false;
    for s in services {
        let state = format!("{:?}", s.state).to_lowercase();
        unhealthy |= !matches!(s.state, ServiceState::Ready);
        println!(
            "{:<14} {:<9} {:>8} {:>10} {:>8}  {:<6} {:>10}  {}",
            s.name,
            state,
            s.pid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            s.uptime_secs.map_or_else(|| "-".to_owned(), human_secs),
            s.restarts,
            if s.ready { "yes" } else { "no" },
            s.pss_bytes
                .map_or_else(|| "-".to_owned(), berth_preflight::human_size),
            s.last_exit.as_deref().unwrap_or("-"),
        );
    }
    if let Some(total) = memory {
        println!(
            "{:<14} {:>56}  (proportional set size of every service's processes)",
            "",
            format!("{} in all", berth_preflight::human_size(total))
        );
    }
    unhealthy
}

/// The upgrade lines of `status`: an unfinished upgrade (then true: the instance is not
/// healthy until it is resumed or aborted), else the last upgrade.
fn print_upgrade(
    unfinished: Option<&berth_upgrade_apply::Journal>,
    last: Option<&berth_state::RunRecord>,
) -> bool {
    if let Some(j) = unfinished {
        let to = j.hops.last().map_or("?", |h| h.to.as_str());
        println!();
        println!(
            "UPGRADE UNFINISHED: {} {} → {} ({}); run {}",
            safe(&j.app),
            safe(&j.started_from),
            safe(to),
            match &j.rolling_back {
                Some(why) => format!("rolling back: {}", safe(why)),
                None => format!("{} step(s) of the current hop done", j.done.len()),
            },
            if j.rolling_back.is_some() {
                "`berth upgrade abort`"
            } else {
                "`berth upgrade resume` or `berth upgrade abort`"
            }
        );
    } else if let Some(last) = last {
        println!();
        let when = last
            .finished_at
            .map_or_else(|| "-".to_owned(), |t| t.to_string());
        match last.outcome.as_ref().map(|o| &o.status) {
            Some(berth_state::RunStatus::Failed { error }) => println!(
                "last upgrade: {} FAILED at {when}: {}",
                safe(&last.detail),
                safe(error)
            ),
            _ => println!("last upgrade: {} at {when}", safe(&last.detail)),
        }
    }
    unfinished.is_some()
}

fn safe(s: &str) -> String {
    berth_model::terminal_safe(s)
}

/// The newest `upgrade` run of the instance's history (read only; none when there is
/// no history yet).
fn last_upgrade(paths: &berth_render::Paths) -> Option<berth_state::RunRecord> {
    let db = berth_state::StateDb::open_read_only(paths.state_db()).ok()??;
    db.history(50)
        .ok()?
        .into_iter()
        .find(|r| r.kind == "upgrade")
}

fn human_secs(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

fn simple(loc: &Locate, req: &Request, verb: &str, service: Option<&str>) -> Result<ExitCode> {
    let paths = paths(loc)?;
    supervisor::request(&paths, req)?;
    println!("{verb} {}", service.unwrap_or("all services"));
    Ok(ExitCode::SUCCESS)
}

pub fn start(loc: &Locate, service: Option<String>) -> Result<ExitCode> {
    let s = service.clone();
    simple(
        loc,
        &Request::Start {
            target: target(service),
        },
        "started",
        s.as_deref(),
    )
}

pub fn stop(loc: &Locate, service: Option<String>) -> Result<ExitCode> {
    let s = service.clone();
    simple(
        loc,
        &Request::Stop {
            target: target(service),
        },
        "stopped",
        s.as_deref(),
    )
}

pub fn restart(loc: &Locate, service: Option<String>) -> Result<ExitCode> {
    let s = service.clone();
    simple(
        loc,
        &Request::Restart {
            target: target(service),
        },
        "restarted",
        s.as_deref(),
    )
}

pub fn reload(loc: &Locate, service: Option<String>) -> Result<ExitCode> {
    let s = service.clone();
    simple(
        loc,
        &Request::Reload {
            target: target(service),
        },
        "reloaded",
        s.as_deref(),
    )
}

pub fn down(loc: &Locate, purge: bool) -> Result<ExitCode> {
    let paths = paths(loc)?;
    let prefix = paths.prefix.display();
    match berth_lifecycle::down(&paths)? {
        Down::NotRunning => {
            println!("Nothing to stop: the supervisor of {prefix} is not running.");
        }
        Down::Stopped => println!("Stopped every service and the supervisor of {prefix}."),
    }
    if purge {
        let report = berth_lifecycle::remove_host_files(&paths)?;
        for path in &report.removed {
            println!("Removed {}", path.display());
        }
        for path in &report.left {
            println!(
                "Left {}: changed since berth made it, so it is not berth's to remove",
                path.display()
            );
        }
        if berth_lifecycle::remove_homes(&paths)? {
            println!("Removed {}", paths.homes().display());
        }
        let facts = berth_host::facts::probe();
        let (_, manifest, _) = berth_lifecycle::instance::locate(loc, &facts)?;
        print!(
            "{}",
            describe_kept(&berth_lifecycle::kept(&paths, &manifest.manifest))
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What `down --purge` keeps, each with how to remove it.
fn describe_kept(k: &berth_lifecycle::Kept) -> String {
    use std::fmt::Write as _;
    let mut out =
        String::from("Kept (berth removes nothing it cannot tell is only this instance's):\n");
    let _ = writeln!(
        out,
        "  {}: site config, secrets, data, backups and logs; delete it yourself once you no longer need them",
        k.prefix.display()
    );
    if !k.users.is_empty() {
        let _ = writeln!(
            out,
            "  system users {}: `userdel NAME` once nothing they own is left",
            k.users.join(", ")
        );
    }
    if !k.packages.is_empty() {
        let _ = writeln!(
            out,
            "  packages {}: the system may use them too (`apt-get purge` them yourself)",
            k.packages.join(" ")
        );
    }
    if let Some(unit) = &k.unit {
        let _ = writeln!(
            out,
            "  {}: starts the supervisor at boot, which leaves the services stopped (`systemctl disable --now` and remove it)",
            unit.display()
        );
    }
    out
}

pub fn supervise(loc: &Locate, autostart: bool) -> Result<ExitCode> {
    let Some(prefix) = &loc.prefix else {
        bail!("`berth supervise` needs `--prefix`");
    };
    let prefix = &berth_lifecycle::instance::checked_prefix(prefix)?;
    // The daemon needs the socket, plan, pid file, log and autostart marker, none of
    // which depend on the app version. The version is in the stored manifest, but
    // loading and validating that here would let a manifest problem keep the
    // supervisor from starting (at boot too) for a path it never uses.
    let paths = Paths::unversioned(prefix);
    let autostart = autostart && paths.autostart_marker().exists();
    berth_supervisor::run_daemon(berth_lifecycle::supervisor::daemon_config(
        &paths, autostart,
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn write_line(out: &mut impl Write, label: Option<&str>, line: &str) -> std::io::Result<()> {
    match label {
        Some(name) => writeln!(out, "{name:>12} | {line}"),
        None => writeln!(out, "{line}"),
    }
}

pub fn tail(loc: &Locate, service: Option<&str>, n: usize, follow: bool) -> Result<ExitCode> {
    let paths = paths(loc)?;
    let logs = berth_supervisor::service_logs(&paths.log, service)?;
    let many = logs.len() > 1;
    let mut out = std::io::stdout().lock();
    let mut print = |service: &str, line: &str| write_line(&mut out, many.then_some(service), line);
    if follow {
        let mut follower = berth_supervisor::Follower::new(&logs)?;
        follower.last(n, &mut print)?;
        follower.run(&mut print)?;
        return Ok(ExitCode::SUCCESS);
    }
    for log in &logs {
        for line in berth_supervisor::last_lines(&log.current, n)? {
            print(&log.service, &line)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
