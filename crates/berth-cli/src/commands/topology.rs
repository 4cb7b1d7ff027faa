//! `berth plan topology`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use berth_lifecycle::Locate;
use berth_topology::{Load, Plan, Request, Sizing};

use crate::cli::TopologyArgs;

/// Exit status of a plan that cannot be made (as for other bad input).
const REFUSED: u8 = 2;

pub fn plan(loc: &Locate, args: &TopologyArgs) -> Result<ExitCode> {
    let load = match (args.users, args.rps) {
        (Some(u), _) => Load::Users(u),
        (None, Some(r)) => Load::Rps(r),
        (None, None) => anyhow::bail!("give the load: `--users N` or `--rps R`"),
    };
    let req = Request { load, ha: args.ha };
    let catalog;
    let manifest;
    let sizing = if let Some(file) = &args.catalog {
        catalog = berth_model::LoadedCatalog::load(file)?;
        Sizing::of_catalog(&catalog.catalog)
    } else {
        manifest = berth_lifecycle::instance::manifest(loc)?;
        Sizing::of_manifest(&manifest.manifest)
    };
    let plan = match berth_topology::plan(&sizing, &req) {
        Ok(p) => p,
        Err(refusal) => {
            eprintln!("error: {}", berth_model::terminal_safe(&refusal.message));
            eprintln!("hint: {}", berth_model::terminal_safe(&refusal.help));
            return Ok(ExitCode::from(REFUSED));
        }
    };
    if let Some(dir) = &args.write {
        write_site_configs(&plan, dir)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", berth_topology::show(&plan));
        if let Some(dir) = &args.write {
            println!(
                "\nWrote {} site configs to {}/ (one per node).",
                plan.nodes.len(),
                dir.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One `<node>.toml` per node, all or none: nothing is written if any exists, and
/// what was written is taken back if a later file fails.
fn write_site_configs(plan: &Plan, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("Failed to create `{}`", dir.display()))?;
    let files: Vec<_> = plan
        .nodes
        .iter()
        .map(|n| {
            (
                dir.join(format!("{}.toml", n.name)),
                berth_topology::site_config(plan, n),
            )
        })
        .collect();
    if let Some((path, _)) = files.iter().find(|(p, _)| p.symlink_metadata().is_ok()) {
        anyhow::bail!(
            "`{}` already exists: nothing was written (write the plan into an empty directory)",
            path.display()
        );
    }
    let mut written = Vec::new();
    for (path, text) in &files {
        if let Err(e) = berth_host::fsutil::write_new(path, text.as_bytes(), 0o644, None) {
            for w in &written {
                let _ = std::fs::remove_file(w);
            }
            return Err(e).with_context(|| format!("Failed to write `{}`", path.display()));
        }
        written.push(path.clone());
    }
    Ok(())
}
