//! `berth up`, `berth reconfigure`, `berth plan`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use berth_lifecycle::{Locate, Progress, instance};

use crate::output::Terminal;

pub fn up(loc: &Locate, quiet: bool) -> Result<ExitCode> {
    let inst = instance::open(loc)?;
    let progress = Terminal::new(quiet);
    let exe = std::env::current_exe().context("Failed to find the berth executable")?;
    let report = berth_lifecycle::up(&inst, loc, &exe, &progress)?;
    drop(progress);
    print_up(&inst, &report);
    Ok(ExitCode::SUCCESS)
}

/// `berth preflight`: every check, its verdict and fix; exit status 1 when one fails.
pub fn preflight(loc: &Locate, json: bool) -> Result<ExitCode> {
    let inst = instance::open(loc)?;
    let report = berth_lifecycle::preflight_report(&inst)?;
    let failed = report.worst() == berth_preflight::Status::Fail;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "Preflight of {} {} on {}:",
            inst.manifest.manifest.app.name,
            inst.manifest.manifest.app.version,
            inst.facts.hostname
        );
        print!("{}", berth_preflight::Report::lines(&report.checks));
        println!("{}", report.summary());
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// After `command` failed with `err`: the redacted error report, written under the
/// instance's state and sent when `diagnose.report_url` says where. Nothing here may
/// hide the command's own error, so every failure of its own is a note.
pub fn report_failure(loc: &Locate, command: &str, err: &anyhow::Error) {
    // A refusal before anything changed (bad input, a host that does not meet the
    // app's needs, an upgrade that cannot begin) is all in its message, and writing a
    // report would change the host it promised to leave alone.
    let refusal = err.chain().any(|e| {
        e.downcast_ref::<berth_model::Diagnostics>().is_some()
            || e.downcast_ref::<berth_lifecycle::LifecycleError>()
                .is_some_and(berth_lifecycle::LifecycleError::is_refusal)
            || match e.downcast_ref::<berth_backup::BackupError>() {
                Some(
                    berth_backup::BackupError::Cannot { .. }
                    | berth_backup::BackupError::Invalid(_),
                ) => true,
                Some(berth_backup::BackupError::Lifecycle(l)) => l.is_refusal(),
                _ => false,
            }
    });
    if refusal {
        return;
    }
    let Ok(inst) = instance::open(loc) else {
        return;
    };
    match berth_diagnose::error_report(&inst, command, &format!("{err:#}")) {
        Ok(Some(r)) => {
            eprintln!(
                "note: a redacted error report is in {} ({} removal(s))",
                r.path.display(),
                r.removed
            );
            match r.sent {
                Some(Ok(status)) => eprintln!("note: the report was sent (answer {status})"),
                Some(Err(why)) => eprintln!("note: the report could not be sent: {why}"),
                None => {}
            }
        }
        Ok(None) => {}
        Err(e) => eprintln!("note: no error report could be written: {e}"),
    }
}

/// `berth diagnose`: the redacted support bundle.
pub fn diagnose(
    loc: &Locate,
    out: Option<std::path::PathBuf>,
    lines: usize,
    json: bool,
) -> Result<ExitCode> {
    let inst = instance::open(loc)?;
    let out = out.unwrap_or_else(|| {
        std::path::PathBuf::from(berth_diagnose::default_name(
            &inst.manifest.manifest.app.name,
        ))
    });
    let report = berth_diagnose::diagnose(
        &inst,
        &berth_diagnose::Options {
            out,
            log_lines: lines,
        },
    )?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Wrote {} ({} bytes, {} files, mode 0600)",
        report.path.display(),
        report.bytes,
        report.files
    );
    println!(
        "  redacted: {} removal(s) in {} file(s); `redaction.json` in the bundle lists them",
        report.removed,
        report.redaction.len()
    );
    if !report.secrets_not_searched.is_empty() {
        println!(
            "  not searched for (shorter than {} characters): {}",
            berth_redact::MIN_SECRET_LEN,
            report.secrets_not_searched.join(", ")
        );
    }
    println!(
        "  Read it before you send it: `tar -I zstd -tvf {}`",
        report.path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `up` of a new instance from a bundle that carries a seed ([`berth_seed::up_seeded`]).
fn up_seeded(loc: &Locate, seed: &Path, quiet: bool) -> Result<ExitCode> {
    let inst = instance::open(loc)?;
    let progress = Terminal::new(quiet);
    let exe = std::env::current_exe().context("Failed to find the berth executable")?;
    let report = berth_seed::up_seeded(&inst, loc, seed, &exe, &progress)?;
    drop(progress);
    print_up(&inst, &report);
    Ok(ExitCode::SUCCESS)
}

fn print_up(inst: &berth_lifecycle::Instance, report: &berth_lifecycle::UpReport) {
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
}

/// The prefix's `tmp/` (opened as `top`), made if missing: root's, 0711, so others
/// pass through to what is theirs beneath it.
pub(super) fn ensure_tmp(
    top: &berth_host::beneath::SafeDir,
    paths: &berth_render::Paths,
) -> Result<()> {
    let tmp = paths.beneath(&paths.tmp()).to_owned();
    if top.stat(&tmp)?.is_none() {
        top.create_dir(&tmp, 0o711, None)?;
    }
    Ok(())
}

/// `bundle` unpacked, every byte checked against `trusted`, into the prefix's
/// `tmp/release-<version>/` (opened as `top`), made anew and root's only. The caller
/// removes it (its path beneath the prefix is returned) when done.
pub(super) fn unpack_bundle(
    top: &berth_host::beneath::SafeDir,
    paths: &berth_render::Paths,
    version: &str,
    bundle: &Path,
    trusted: &[berth_archive::PublicKey],
) -> Result<(berth_release::Extracted, std::path::PathBuf)> {
    let staging = paths.release_staging(version);
    let rel = paths.beneath(&staging).to_owned();
    top.remove_tree(&rel)?;
    top.create_dir(&rel, 0o700, None)?;
    Ok((berth_release::extract(bundle, trusted, &staging)?, rel))
}

/// `berth up --bundle`: the bundle's signature checked first (nothing is touched
/// before), then the bundle extracted under the prefix with every byte checked, and
/// `up` run with its manifest and its built components. The extracted copy is removed
/// afterwards, whatever happened; a prefix this made is removed again if `up` failed
/// before putting anything in it.
pub fn up_from_bundle(loc: &Locate, bundle: &Path, key: &str, quiet: bool) -> Result<ExitCode> {
    up_from_bundle_with(loc, bundle, key, quiet, true)
}

/// [`up_from_bundle`], loading the bundle's seed into a new instance only with
/// `seed` (a fleet node's database is not its own to load).
pub fn up_from_bundle_with(
    loc: &Locate,
    bundle: &Path,
    key: &str,
    quiet: bool,
    seed: bool,
) -> Result<ExitCode> {
    let trusted = [super::release::public_key(key)?];
    let (_, info) = berth_release::open(bundle, &trusted)?;
    let prefix = match &loc.prefix {
        Some(p) => p.clone(),
        None => instance::default_prefix(&info.app, berth_host::users::is_root()),
    };
    let made_prefix = !prefix.exists();
    let paths = berth_render::Paths::for_prefix(&prefix, &info.version);
    let staging = paths.release_staging(&info.version);
    let made = (|| -> Result<berth_host::beneath::SafeDir> {
        if made_prefix {
            berth_host::fsutil::ensure_dir(&prefix, 0o755)?;
        }
        let top = berth_host::beneath::SafeDir::open_trusted(&prefix)?;
        ensure_tmp(&top, &paths)?;
        Ok(top)
    })();
    let result = made.and_then(|top| {
        let progress = Terminal::new(quiet);
        progress.begin(&format!(
            "Checking and unpacking {} {} ({})",
            info.app,
            info.version,
            bundle.display()
        ));
        let (extracted, _) = unpack_bundle(&top, &paths, &info.version, bundle, &trusted)?;
        progress.end(&format!("signed by {}", extracted.info.signer));
        drop(progress);
        let from_bundle = Locate {
            prefix: Some(prefix.clone()),
            manifest: Some(extracted.manifest_dir),
            payload: Some(extracted.payload_dir),
            ..loc.clone()
        };
        match &extracted.seed_dir {
            // A new instance starts from the bundle's migrated database.
            Some(dump) if seed && !paths.state_db().exists() => {
                up_seeded(&from_bundle, dump, quiet)
            }
            _ => up(&from_bundle, quiet),
        }
    });
    if let Ok(top) = berth_host::beneath::SafeDir::open_trusted(&prefix) {
        let _ = top.remove_tree(paths.beneath(&staging));
        if made_prefix && result.is_err() {
            let _ = top.remove_empty_dir(paths.beneath(&paths.tmp()));
            if let Ok((parent, name)) = berth_host::beneath::in_parent(&prefix) {
                let _ = parent.remove_empty_dir(&name);
            }
        }
    }
    result
}

/// `berth up --channel DIR|URL [--version V]`: the channel's index checked against the key,
/// the release picked, its bundle's bytes checked against the index, then
/// [`up_from_bundle`].
pub fn up_from_channel(
    loc: &Locate,
    channel: &str,
    version: Option<&str>,
    key: &str,
    quiet: bool,
) -> Result<ExitCode> {
    let trusted = [super::release::public_key(key)?];
    let source = berth_release::channel::Source::parse(channel);
    let index = source.open(&trusted)?;
    let release = index.pick(version)?;
    // A download lands in a directory of root's own, removed when done.
    let staging = tempfile::Builder::new()
        .prefix("berth-channel-")
        .tempdir()
        .context("Failed to make a directory for the download")?;
    let bundle = source.bundle(release, staging.path())?;
    up_from_bundle(loc, &bundle, key, quiet)
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
