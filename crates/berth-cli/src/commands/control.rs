//! Commands that talk to the supervisor: status, start, stop, restart, reload, tail, down,
//! and `supervise`, which is the supervisor.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use berth_lifecycle::{Locate, instance, supervisor};
use berth_render::Paths;
use berth_supervisor_protocol::{Request, Response, ServiceState, Target};

/// The instance's paths, from `--prefix`/`--manifest` or the defaults.
fn paths(loc: &Locate) -> Result<Paths> {
    let facts = berth_host::facts::probe();
    let (prefix, manifest, _) = instance::locate(loc, &facts)?;
    Ok(Paths::for_prefix(&prefix, &manifest.manifest.app.version))
}

fn target(service: Option<String>) -> Target {
    service.map_or(Target::All, Target::One)
}

pub fn status(loc: &Locate, json: bool) -> Result<ExitCode> {
    let paths = paths(loc)?;
    let resp = supervisor::request(&paths, &Request::Status)?;
    let Response::Status {
        supervisor_pid,
        services,
        jobs,
    } = resp
    else {
        bail!("The supervisor sent an unexpected answer to `status`");
    };
    if json {
        let v = serde_json::json!({ "supervisor_pid": supervisor_pid, "services": services, "jobs": jobs });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<14} {:<9} {:>8} {:>10} {:>8}  {:<6} LAST EXIT",
        "SERVICE", "STATE", "PID", "UPTIME", "RESTARTS", "READY"
    );
    let mut unhealthy = false;
    for s in &services {
        let state = format!("{:?}", s.state).to_lowercase();
        unhealthy |= !matches!(s.state, ServiceState::Ready);
        println!(
            "{:<14} {:<9} {:>8} {:>10} {:>8}  {:<6} {}",
            s.name,
            state,
            s.pid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            s.uptime_secs.map_or_else(|| "-".to_owned(), human_secs),
            s.restarts,
            if s.ready { "yes" } else { "no" },
            s.last_exit.as_deref().unwrap_or("-"),
        );
    }
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
    println!();
    println!(
        "supervisor pid {supervisor_pid}, {}",
        paths.prefix.display()
    );
    // Exit 3 when something is not ready, so scripts can check health with `berth status`.
    Ok(if unhealthy {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

fn human_secs(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

fn simple(loc: &Locate, req: Request, verb: &str, service: Option<&str>) -> Result<ExitCode> {
    let paths = paths(loc)?;
    supervisor::request(&paths, &req)?;
    println!("{verb} {}", service.unwrap_or("all services"));
    Ok(ExitCode::SUCCESS)
}

pub fn start(loc: &Locate, service: Option<String>) -> Result<ExitCode> {
    let s = service.clone();
    simple(
        loc,
        Request::Start {
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
        Request::Stop {
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
        Request::Restart {
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
        Request::Reload {
            target: target(service),
        },
        "reloaded",
        s.as_deref(),
    )
}

pub fn down(loc: &Locate) -> Result<ExitCode> {
    let paths = paths(loc)?;
    if !supervisor::is_running(&paths) {
        println!(
            "Nothing to stop: the supervisor of {} is not running.",
            paths.prefix.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    // Stopped on purpose: a supervisor started at boot leaves the services stopped.
    let _ = std::fs::remove_file(berth_lifecycle::converge::autostart_marker(&paths));
    supervisor::request(&paths, &Request::Shutdown)?;
    // Shutdown answers once the services are stopped, before the daemon has removed
    // its socket and pid file: wait for the process itself to be gone.
    if !supervisor::wait_exited(&paths, Duration::from_mins(2)) {
        bail!(
            "The supervisor of {} did not exit within 2 minutes of stopping its services",
            paths.prefix.display()
        );
    }
    println!(
        "Stopped every service and the supervisor of {}.",
        paths.prefix.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn supervise(loc: &Locate, autostart: bool) -> Result<ExitCode> {
    let Some(prefix) = &loc.prefix else {
        bail!("`berth supervise` needs `--prefix`");
    };
    // Only the socket, plan, pid and log paths matter here, not the release.
    let paths = Paths::for_prefix(prefix, "current");
    let autostart = autostart && berth_lifecycle::converge::autostart_marker(&paths).exists();
    berth_supervisor::run_daemon(berth_lifecycle::supervisor::daemon_config(
        &paths, autostart,
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// Log files to show: one service's `current`, or every service's.
fn log_files(paths: &Paths, service: Option<&str>) -> Result<Vec<(String, PathBuf)>> {
    if let Some(s) = service {
        let f = paths.log.join(s).join("current");
        if !f.exists() {
            bail!("No log for `{s}` at `{}`", f.display());
        }
        return Ok(vec![(s.to_owned(), f)]);
    }
    let mut out = Vec::new();
    let entries = std::fs::read_dir(&paths.log)
        .with_context(|| format!("Failed to read `{}`", paths.log.display()))?;
    for e in entries.flatten() {
        let f = e.path().join("current");
        if f.is_file() {
            out.push((e.file_name().to_string_lossy().into_owned(), f));
        }
    }
    out.sort();
    Ok(out)
}

fn last_lines(path: &Path, n: usize) -> Result<(Vec<String>, u64)> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    // Read at most the last 1 MiB: enough for any sensible `-n`.
    let start = len.saturating_sub(1 << 20);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let skip = lines.len().saturating_sub(n);
    Ok((lines[skip..].to_vec(), len))
}

pub fn tail(loc: &Locate, service: Option<&str>, n: usize, follow: bool) -> Result<ExitCode> {
    let paths = paths(loc)?;
    let files = log_files(&paths, service)?;
    let many = files.len() > 1;
    let mut offsets = Vec::new();
    let mut out = std::io::stdout().lock();
    for (name, f) in &files {
        let (lines, len) = last_lines(f, n)?;
        for l in lines {
            if many {
                writeln!(out, "{name:>12} | {l}")?;
            } else {
                writeln!(out, "{l}")?;
            }
        }
        offsets.push(len);
    }
    out.flush()?;
    if !follow {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        std::thread::sleep(Duration::from_millis(250));
        for ((name, f), off) in files.iter().zip(offsets.iter_mut()) {
            let Ok(meta) = std::fs::metadata(f) else {
                continue;
            };
            if meta.len() < *off {
                *off = 0; // rotated
            }
            if meta.len() == *off {
                continue;
            }
            let mut file = std::fs::File::open(f)?;
            file.seek(SeekFrom::Start(*off))?;
            let mut buf = Vec::new();
            file.read_to_end(&mut buf)?;
            *off += buf.len() as u64;
            for l in String::from_utf8_lossy(&buf).lines() {
                if many {
                    writeln!(out, "{name:>12} | {l}")?;
                } else {
                    writeln!(out, "{l}")?;
                }
            }
            out.flush()?;
        }
    }
}
