//! `berth history`.

use std::process::ExitCode;

use anyhow::Result;
use berth_lifecycle::{Locate, instance};
use berth_state::StateDb;

pub fn history(loc: &Locate, limit: usize, json: bool) -> Result<ExitCode> {
    let facts = berth_host::facts::probe();
    let (prefix, manifest, _) = instance::locate(loc, &facts)?;
    let paths = berth_render::Paths::for_prefix(&prefix, &manifest.manifest.app.version);
    if !paths.state_db().exists() {
        println!("No history: `{}` has not been set up yet.", prefix.display());
        return Ok(ExitCode::SUCCESS);
    }
    let db = StateDb::open(&paths.state_db())?;
    let runs = db.history(limit)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(ExitCode::SUCCESS);
    }
    for r in runs {
        println!("{r}");
    }
    Ok(ExitCode::SUCCESS)
}
