//! `berth backup …` and `berth restore`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use berth_backup::backup::{self, human};
use berth_backup::restore::{self, RestoreOptions};
use berth_lifecycle::{Locate, instance};

use crate::output::Terminal;

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn rate(bytes: u64, seconds: f64) -> String {
    if seconds <= 0.0 {
        return String::new();
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let per_sec = (bytes as f64 / seconds) as u64;
    format!(", {}/s", human(per_sec))
}

pub fn create(
    loc: &Locate,
    to: Option<String>,
    prune: bool,
    json: bool,
    quiet: bool,
) -> Result<ExitCode> {
    let inst = instance::open(loc)?;
    let progress = Terminal::new(quiet || json);
    let opts = backup::CreateOptions { to };
    let report = backup::create(&inst, &opts, &progress)?;
    let pruned = if prune {
        Some(backup::prune(&inst, opts.to.as_deref(), false)?)
    } else {
        None
    };
    drop(progress);
    if json {
        // Loud even for scripts: on stderr, beside the JSON.
        for w in &report.warnings {
            eprintln!("{w}");
        }
        print_json(&serde_json::json!({ "backup": report, "prune": pruned }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Backup {} written to {}: {} ({} of data{}) in {:.1} s",
        report.archive,
        report.target,
        human(report.bytes),
        human(report.input_bytes),
        rate(report.input_bytes, report.seconds),
        report.seconds
    );
    if report.dump_seconds > 0.0 {
        println!("  database dump: {:.1} s", report.dump_seconds);
    }
    if !report.quiesced.is_empty() {
        println!(
            "  {} paused for {} ms while data directories were copied",
            report.quiesced.join(", "),
            report.quiesce_ms
        );
    }
    if report.secrets_included {
        println!("  secrets: included, encrypted to the backup key");
    }
    for w in &report.warnings {
        eprintln!("\n{w}\n");
    }
    if let Some(p) = pruned {
        if p.deleted.is_empty() {
            println!("  prune: nothing to delete");
        } else {
            println!("  pruned: {}", p.deleted.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn list(loc: &Locate, to: Option<&str>, json: bool) -> Result<ExitCode> {
    let inst = instance::open(loc)?;
    let (target, archives) = backup::list(&inst, to)?;
    if json {
        print_json(&serde_json::json!({ "target": target, "archives": archives }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if archives.is_empty() {
        println!(
            "No archives of {} in {target}.",
            inst.manifest.manifest.app.name
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Archives in {}, newest first:",
        berth_model::terminal_safe(&target)
    );
    for a in &archives {
        println!("{}", list_line(a));
    }
    Ok(ExitCode::SUCCESS)
}

/// One line of `backup list`. The name and the problem come from the target (an SFTP
/// server is a network peer) and from unauthenticated archives: escaped for the terminal.
fn list_line(a: &backup::Listed) -> String {
    let secrets = match a.secrets_included {
        Some(true) => "secrets included",
        Some(false) => "NO SECRETS",
        None => "",
    };
    let problem = a
        .problem
        .as_deref()
        .map(|p| format!("  !! {p}"))
        .unwrap_or_default();
    berth_model::terminal_safe(&format!(
        "  {}  {:>10}  {}{problem}",
        a.name,
        human(a.size),
        secrets
    ))
}

pub fn verify(
    loc: &Locate,
    archive: &str,
    from: Option<&str>,
    key: Option<&Path>,
    json: bool,
    quiet: bool,
) -> Result<ExitCode> {
    let inst = instance::open(loc)?;
    let progress = Terminal::new(quiet || json);
    let r = backup::verify(&inst, archive, from, key, &progress)?;
    drop(progress);
    // An intact archive whose secrets the given key does not open fails the check: a
    // restore with that key would be refused.
    let code = if r.key_opens_secrets == Some(false) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    };
    if json {
        print_json(&r)?;
        return Ok(code);
    }
    println!(
        "{} is intact and signed by a trusted key: {} {} of {}, {} entries ({}) checked in {:.1} s{}",
        r.archive.display(),
        r.app,
        r.app_version,
        r.created,
        r.entries,
        human(r.bytes),
        r.seconds,
        rate(r.bytes, r.seconds)
    );
    println!(
        "  made {} (signed metadata), signed by {}",
        r.created, r.signer
    );
    if let Some(n) = r.dump_toc_entries {
        println!("  database dump readable: {n} entries in its table of contents");
    }
    match (r.secrets_included, r.key_opens_secrets) {
        (true, Some(true)) => println!("  secrets: included, and the key opens them"),
        (true, Some(false)) => println!(
            "  secrets: included, but the given key does NOT open them (they were encrypted to another backup key)"
        ),
        (true, _) => println!("  secrets: included (pass --key FILE to check the key opens them)"),
        (false, _) => println!("  secrets: NOT included (made without a backup key)"),
    }
    if let Some(note) = &r.format_note {
        println!("  note: {note}");
    }
    Ok(code)
}

pub fn prune(loc: &Locate, to: Option<&str>, dry_run: bool, json: bool) -> Result<ExitCode> {
    let inst = instance::open(loc)?;
    let r = backup::prune(&inst, to, dry_run)?;
    if json {
        print_json(&r)?;
        return Ok(ExitCode::SUCCESS);
    }
    let p = backup::policy(&inst)?;
    println!(
        "Retention in {}: keep last {}, daily {}, weekly {}",
        r.target, p.keep_last, p.keep_daily, p.keep_weekly
    );
    for d in &r.decisions {
        if d.keep {
            println!("  keep    {}  ({})", d.name, d.reasons.join(", "));
        } else if dry_run {
            println!("  would delete  {}", d.name);
        } else {
            println!("  deleted {}", d.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn key(loc: &Locate, export: Option<&Path>, json: bool) -> Result<ExitCode> {
    let inst = instance::open(loc)?;
    let r = backup::key(&inst, export)?;
    if json {
        print_json(&r)?;
        return Ok(ExitCode::SUCCESS);
    }
    if r.created {
        println!("Created the backup key: {}", r.path.display());
    } else {
        println!("The backup key is {}", r.path.display());
    }
    println!(
        "  public key (archives' secrets are encrypted to it): {}",
        r.recipient
    );
    if r.signing_created {
        println!(
            "Created the archive signing key: {}",
            r.signing_path.display()
        );
    } else {
        println!("The archive signing key is {}", r.signing_path.display());
    }
    println!(
        "  public key (archives signed by it are trusted): {}",
        r.signing_public_key
    );
    if let Some(e) = &r.exported {
        println!("  exported both keys to {} (mode 0600)", e.display());
    }
    println!();
    println!(
        "Keep a copy of the exported key file OFF this machine (a password manager, an offline medium): \
         a backup can only be verified and its secrets restored with it on another machine, and a lost \
         machine takes this copy with it. Restore with `berth restore ARCHIVE --key FILE`."
    );
    Ok(ExitCode::SUCCESS)
}

pub fn restore(
    loc: &Locate,
    opts: &RestoreOptions,
    abort: bool,
    json: bool,
    quiet: bool,
) -> Result<ExitCode> {
    let progress = Terminal::new(quiet || json);
    let exe = std::env::current_exe().context("Failed to find the berth executable")?;
    if abort {
        restore::abort(loc, &exe, &progress)?;
        drop(progress);
        if json {
            print_json(&serde_json::json!({ "aborted": true }))?;
        } else {
            println!("The interrupted restore was undone.");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let r = restore::restore(loc, opts, &exe, &progress)?;
    drop(progress);
    if json {
        print_json(&r)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Restored {} {} from {} in {:.1} s; it answers at {}",
        r.app, r.app_version, r.archive, r.seconds, r.url
    );
    if let Some(b) = &r.safety_backup {
        println!("  the instance as it was before: {b}");
    }
    if !r.secrets_restored {
        println!("  secrets: NOT restored (the archive had none): new ones were generated");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attack: an archive whose unauthenticated index holds an escape sequence, which the
    /// parse error quotes: `backup list` prints it escaped, so it cannot rewrite the
    /// terminal (title, colours, what the lines above say).
    #[test]
    fn list_lines_are_terminal_safe() {
        let line = list_line(&backup::Listed {
            name: "app-1-20250101T000000Z.berth.tar.zst".to_owned(),
            size: 1,
            created: None,
            app_version: None,
            secrets_included: None,
            problem: Some("unknown variant `\u{1b}]0;pwned\u{7}\u{1b}[2J`".to_owned()),
        });
        assert!(
            !line.contains('\u{1b}') && !line.contains('\u{7}'),
            "{line:?}"
        );
        assert!(line.contains("pwned"), "{line}");
    }
}
