//! `berth sbom`: the bill of materials of a release bundle.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::SbomFormat;

/// Writes the bill of materials of `bundle` (checked against `key` first) in `format`
/// to `out`, or to standard output.
pub fn write(bundle: &Path, key: &str, format: SbomFormat, out: Option<&Path>) -> Result<ExitCode> {
    let inventory = of_bundle(bundle, key)?;
    let text = match format {
        SbomFormat::Cyclonedx => berth_sbom::cyclonedx::document(&inventory),
        SbomFormat::Spdx => berth_sbom::spdx::document(&inventory),
    };
    match out {
        None => print!("{text}"),
        Some(path) => {
            let (parent, name) = berth_host::beneath::in_parent(path)?;
            parent.write_new_with(
                &name,
                &mut |file| std::io::Write::write_all(file, text.as_bytes()),
                0o644,
                None,
            )?;
            eprintln!(
                "Wrote the bill of materials of {} {} ({} components) to {}",
                inventory.subject.name,
                inventory.subject.version,
                inventory.components.len(),
                path.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the licence page of `bundle` (checked against `key` first) into `out`.
pub fn licences(bundle: &Path, key: &str, out: &Path) -> Result<ExitCode> {
    let (inventory, verdict) = checked_bundle(bundle, key)?;
    berth_host::fsutil::ensure_dir(out, 0o755)?;
    let files = [
        ("licences.html", berth_sbom::licences::html(&inventory)),
        ("licences.json", berth_sbom::licences::json(&inventory)),
    ];
    // Both or neither: refuse before writing if either exists.
    for (name, _) in &files {
        if out.join(name).exists() {
            anyhow::bail!(
                "`{}` exists already: it is never overwritten; move it away first",
                out.join(name).display()
            );
        }
    }
    for (name, text) in &files {
        let (parent, file) = berth_host::beneath::in_parent(&out.join(name))?;
        parent.write_new_with(
            &file,
            &mut |f| std::io::Write::write_all(f, text.as_bytes()),
            0o644,
            None,
        )?;
    }
    println!(
        "Wrote the licence page of {} {} ({} components) to {} (licences.html, licences.json)",
        inventory.subject.name,
        inventory.subject.version,
        inventory.components.len(),
        out.display()
    );
    // The bundle's policy, as a release build of it would apply it now (a bundle built
    // before the policy changed may fail it).
    match verdict {
        None => println!("The manifest declares no licence policy."),
        Some(v) if v.refused.is_empty() => println!(
            "The licence policy passes ({} accepted by review).",
            v.accepted.len()
        ),
        Some(v) => {
            eprintln!("{}", v.message());
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The inventory of `bundle`, once it checks out against `key`, with the vendor's
/// licence conclusions recorded.
pub fn of_bundle(bundle: &Path, key: &str) -> Result<berth_sbom::Inventory> {
    Ok(checked_bundle(bundle, key)?.0)
}

/// The same, with what the bundle's own licence policy says of it (if it has one).
fn checked_bundle(
    bundle: &Path,
    key: &str,
) -> Result<(berth_sbom::Inventory, Option<berth_sbom::policy::Verdict>)> {
    let key = super::release::public_key(key)?;
    let tmp = tempfile::tempdir().context("Failed to make a temporary directory")?;
    // Extracting checks every entry against the bundle's signed index.
    let (archive, info) = berth_release::open(bundle, &[key])?;
    archive.extract(
        tmp.path(),
        &|p| p.starts_with("manifest/") || p == "bin/berth" || p.starts_with("payload/"),
        &mut |_| {},
    )?;
    let manifest = berth_model::LoadedManifest::load(&tmp.path().join("manifest"))?.manifest;
    let created = info
        .created
        .parse::<jiff::Timestamp>()
        .ok()
        .and_then(|t| u64::try_from(t.as_second()).ok())
        .unwrap_or(0);
    let mut inventory = berth_sbom::inventory::of_release(
        tmp.path(),
        berth_sbom::Subject {
            name: manifest.app.name.clone(),
            version: manifest.app.version.clone(),
            summary: Some(manifest.app.summary.clone()).filter(|s| !s.is_empty()),
        },
        created,
        &info.berth_version,
    )?;
    // The vendor's conclusions go into the document; the policy itself was enforced
    // when the bundle was built.
    let verdict = manifest
        .licences
        .as_ref()
        .map(|policy| berth_sbom::policy::apply(&mut inventory, policy));
    Ok((inventory, verdict))
}
