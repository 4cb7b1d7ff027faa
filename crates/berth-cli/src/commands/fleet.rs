//! `berth fleet check` and `berth fleet status`.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use berth_fleet::{NodeCheck, NodeStatus};
use berth_lifecycle::Locate;
use berth_model::{LoadedFleet, LoadedManifest, terminal_safe};

use crate::cli::FleetArgs;

/// This berth's version: every node must run the same.
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn load(loc: &Locate, args: &FleetArgs) -> Result<(LoadedManifest, LoadedFleet)> {
    let manifest = berth_lifecycle::instance::manifest(loc)?;
    let fleet = LoadedFleet::load(&args.fleet, &manifest)?;
    Ok((manifest, fleet))
}

/// Pads each column to its widest cell.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub fn check(loc: &Locate, args: &FleetArgs) -> Result<ExitCode> {
    let (manifest, fleet) = load(loc, args)?;
    let checks = berth_fleet::check(&fleet, VERSION);
    let bad: Vec<&NodeCheck> = checks.iter().filter(|c| c.problem.is_some()).collect();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "fleet": fleet.fleet.fleet.name,
                "ready": bad.is_empty(),
                "nodes": checks,
            }))?
        );
    } else {
        let app = &manifest.manifest.app;
        println!(
            "Fleet `{}`: {} nodes for {} {} (berth {VERSION} here)\n",
            fleet.fleet.fleet.name,
            checks.len(),
            app.name,
            app.version
        );
        let mut rows = vec![
            ["NODE", "ADDRESS", "ROLES", "SSH", "BERTH"]
                .map(String::from)
                .to_vec(),
        ];
        for c in &checks {
            rows.push(vec![
                c.node.clone(),
                c.address.clone(),
                c.roles.join(", "),
                match (&c.ssh_ms, &c.problem) {
                    (Some(ms), _) => format!("ok {ms} ms"),
                    (None, Some(p)) => p.short(),
                    (None, None) => "-".to_owned(),
                },
                match (&c.problem, &c.berth) {
                    (Some(p), _) if !matches!(p, berth_fleet::Problem::Remote { .. }) => p.short(),
                    (None, Some(v)) => v.clone(),
                    _ => "-".to_owned(),
                },
            ]);
        }
        print!("{}", terminal_safe(&table(&rows)));
    }
    if bad.is_empty() {
        if !args.json {
            println!("\nEvery node is ready.");
        }
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "\nerror: {} of {} nodes are not ready; nothing was changed on any node",
        bad.len(),
        checks.len()
    );
    for c in bad {
        if let Some(p) = &c.problem {
            let (message, hint) = p.explain();
            eprintln!("  {}: {}", c.node, terminal_safe(&message));
            eprintln!("    hint: {}", terminal_safe(&hint));
        }
    }
    Ok(ExitCode::FAILURE)
}

pub fn status(loc: &Locate, args: &FleetArgs) -> Result<ExitCode> {
    let (manifest, fleet) = load(loc, args)?;
    let nodes = berth_fleet::status(&fleet, &manifest.manifest.app.name);
    let healthy = nodes.iter().all(NodeStatus::healthy);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "fleet": fleet.fleet.fleet.name,
                "healthy": healthy,
                "nodes": nodes,
            }))?
        );
        return Ok(if healthy {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    println!(
        "Fleet `{}`: {} nodes\n",
        fleet.fleet.fleet.name,
        nodes.len()
    );
    let mut rows = vec![
        ["NODE", "ADDRESS", "ROLES", "SERVICE", "STATE", "MEMORY"]
            .map(String::from)
            .to_vec(),
    ];
    for n in &nodes {
        let head = |rows: &mut Vec<Vec<String>>, service: String, state: String, memory: String| {
            rows.push(vec![
                n.node.clone(),
                n.address.clone(),
                n.roles.join(", "),
                service,
                state,
                memory,
            ]);
        };
        if let Some(p) = &n.problem {
            head(&mut rows, "-".into(), p.short(), "-".into());
        } else if !n.set_up {
            head(&mut rows, "-".into(), "not set up".into(), "-".into());
        } else if n.services.is_empty() {
            let state = if n.supervisor_running {
                "no services"
            } else {
                "supervisor down"
            };
            head(&mut rows, "-".into(), state.into(), "-".into());
        } else {
            for (i, s) in n.services.iter().enumerate() {
                let memory = s
                    .pss_bytes
                    .map_or_else(|| "-".to_owned(), |b| format!("{} MiB", b >> 20));
                let state = format!("{:?}", s.state).to_lowercase();
                if i == 0 {
                    head(&mut rows, s.name.clone(), state, memory);
                } else {
                    rows.push(vec![
                        String::new(),
                        String::new(),
                        String::new(),
                        s.name.clone(),
                        state,
                        memory,
                    ]);
                }
            }
        }
    }
    print!("{}", terminal_safe(&table(&rows)));
    for n in &nodes {
        if let Some(p) = &n.problem {
            let (message, hint) = p.explain();
            eprintln!("{}: {}", n.node, terminal_safe(&message));
            eprintln!("  hint: {}", terminal_safe(&hint));
        }
    }
    let ready = nodes.iter().filter(|n| n.healthy()).count();
    println!("\n{ready} of {} nodes healthy.", nodes.len());
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
