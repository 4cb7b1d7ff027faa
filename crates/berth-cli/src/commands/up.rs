//! `berth up`, `berth reconfigure`, `berth plan`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use berth_lifecycle::{Locate, instance};

use crate::output::Terminal;

pub fn up(loc: &Locate, quiet: bool) -> Result<ExitCode> {
    let inst = instance::open(loc)?;
    let progress = Terminal::new(quiet);
    let exe = std::env::current_exe().context("Failed to find the berth executable")?;
    let report = berth_lifecycle::up(&inst, loc, &exe, &progress)?;
    drop(progress);
    println!();
    println!(
        "{} {} is up at {}",
        inst.manifest.manifest.app.name, inst.manifest.manifest.app.version, report.url
    );
    println!("  site config: {}", inst.config_path.display());
    for line in &report.next_steps {
        println!("  {line}");
    }
    println!();
    println!(
        "Next: edit the site config, then `berth reconfigure`; `berth status` shows every service."
    );
    Ok(ExitCode::SUCCESS)
}

pub fn reconfigure(loc: &Locate, dry_run: bool, quiet: bool) -> Result<ExitCode> {
    let inst = instance::open(loc)?;
    if dry_run {
        print!("{}", berth_lifecycle::dry_run(&inst)?);
        return Ok(ExitCode::SUCCESS);
    }
    let progress = Terminal::new(quiet);
    let o = berth_lifecycle::reconfigure(&inst, loc, &progress)?;
    drop(progress);
    if o.is_noop() {
        println!("Nothing changed ({} ms).", o.duration.as_millis());
    } else {
        for d in &o.dirs_created {
            println!("created directory {}", d.display());
        }
        for d in &o.dirs_changed {
            println!("updated directory {}", d.display());
        }
        for f in &o.files_changed {
            println!("updated {}", f.display());
        }
        if !o.restarted.is_empty() {
            println!("restarted: {}", o.restarted.join(", "));
        }
        if !o.reloaded.is_empty() {
            println!("reloaded: {}", o.reloaded.join(", "));
        }
        if !o.stopped.is_empty() {
            println!("stopped: {}", o.stopped.join(", "));
        }
        if !o.started.is_empty() {
            println!("started: {}", o.started.join(", "));
        }
        if !o.hooks_run.is_empty() {
            println!("hooks run: {}", o.hooks_run.join(", "));
        }
        println!("Done in {} ms.", o.duration.as_millis());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn plan(loc: &Locate) -> Result<ExitCode> {
    let inst = instance::open(loc)?;
    print!("{}", berth_lifecycle::dry_run(&inst)?);
    Ok(ExitCode::SUCCESS)
}
