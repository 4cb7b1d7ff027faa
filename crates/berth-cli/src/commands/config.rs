//! `berth config check|show`.

use std::process::ExitCode;

use anyhow::Result;
use berth_lifecycle::{Locate, instance};

pub fn check(loc: &Locate) -> Result<ExitCode> {
    let inst = instance::open(loc)?;
    inst.naming.usable()?;
    let what = if inst.config_exists {
        format!("`{}`", inst.config_path.display())
    } else {
        format!(
            "no site config at `{}` (all defaults)",
            inst.config_path.display()
        )
    };
    println!(
        "ok: manifest {} {} and {what} are valid",
        inst.manifest.manifest.app.name, inst.manifest.manifest.app.version
    );
    Ok(ExitCode::SUCCESS)
}

pub fn show(loc: &Locate) -> Result<ExitCode> {
    let inst = instance::open(loc)?;
    print!(
        "{}",
        berth_model::render_effective(&inst.manifest, &inst.config)
    );
    let secrets = &inst.manifest.manifest.secrets;
    if !secrets.is_empty() {
        println!();
        println!("# Secrets (values never shown; each is a mode 0600 file):");
        for (name, decl) in secrets {
            let made = decl
                .from_hook
                .as_ref()
                .map(|hook| format!("; made by hook `{hook}`"))
                .unwrap_or_default();
            println!(
                "#   {name} = ********  ({}{made})",
                inst.paths.secret(name).display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
