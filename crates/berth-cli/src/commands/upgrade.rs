//! `berth upgrade plan|apply|resume|abort`, `berth releases` and `berth config migrate`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use berth_lifecycle::{Locate, upgrade};
use berth_upgrade::UpgradePlan;

pub fn plan(loc: &Locate, to: &[PathBuf], json: bool) -> Result<ExitCode> {
    let inst = upgrade::installed(loc)?;
    let targets = upgrade::load_targets(to)?;
    let plan = upgrade::plan(&inst, &targets)?;
    let checks = upgrade::preflight(&inst, &plan, &targets);
    let ready = checks.iter().all(|c| c.ok);
    if json {
        let mut v = serde_json::to_value(&plan)?;
        v["preflight"] = serde_json::to_value(&checks)?;
        v["ready"] = ready.into();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", describe(&plan, to));
        println!("\nPreflight:");
        for c in &checks {
            println!(
                "  {} {}: {}",
                if c.ok { "✓" } else { "✗" },
                c.what,
                c.detail
            );
        }
        if !ready {
            println!("\nBefore the upgrade can run, fix what is marked ✗.");
        }
        println!("\nNothing was changed.");
    }
    Ok(ExitCode::SUCCESS)
}

/// The plan in words: each hop with its steps and downtime, then the settings to
/// change and the versions given that are not needed.
fn describe(plan: &UpgradePlan, to: &[PathBuf]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let hops = plan.hops.len();
    let _ = writeln!(
        out,
        "Upgrade {} {} → {} in {hops} hop{}:",
        plan.app,
        plan.from,
        plan.to,
        if hops == 1 { "" } else { "s" }
    );
    for (n, hop) in plan.hops.iter().enumerate() {
        let stop = if n + 1 < hops {
            " (a required upgrade stop)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "\n{}. {} → {}{stop}: {} migrations",
            n + 1,
            hop.from,
            hop.to,
            match hop.migrations {
                berth_upgrade::Migrations::Online => "online",
                berth_upgrade::Migrations::Offline => "offline",
            }
        );
        let _ = writeln!(out, "   downtime: {}", hop.downtime());
        for (i, step) in hop.steps.iter().enumerate() {
            let _ = writeln!(out, "   {}. {}", i + 1, step.describe());
        }
    }
    if !plan.settings.is_empty() {
        let dirs: Vec<String> = to.iter().map(|d| format!("--to {}", d.display())).collect();
        let _ = writeln!(out, "\nSettings of the site config to change first:");
        for s in &plan.settings {
            match &s.renamed_to {
                Some(new) => {
                    let _ = writeln!(
                        out,
                        "  {} was renamed to {new} in {}: `berth config migrate {}` moves it",
                        s.key,
                        s.since,
                        dirs.join(" ")
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "  {} was removed in {}: remove it from the site config",
                        s.key, s.since
                    );
                }
            }
            if !s.message.is_empty() {
                let _ = writeln!(out, "    {}", berth_model::terminal_safe(&s.message));
            }
        }
    }
    if !plan.unused.is_empty() {
        let _ = writeln!(
            out,
            "\nNot on the path (ignored): {}",
            plan.unused.join(", ")
        );
    }
    out
}

pub fn migrate(loc: &Locate, to: &[PathBuf], dry_run: bool) -> Result<ExitCode> {
    let inst = upgrade::installed(loc)?;
    let targets = upgrade::load_targets(to)?;
    let m = upgrade::migrate_config(&inst, &targets, dry_run)?;
    if m.renames.is_empty() {
        println!(
            "Nothing to migrate: `{}` sets no setting renamed on the way to {}.",
            m.path.display(),
            targets
                .iter()
                .map(|t| t.manifest.app.version.as_str())
                .max_by(|a, b| berth_model::version::compare_versions(a, b))
                .unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", m.diff());
    for (old, new) in &m.renames {
        println!("{old} → {new}");
    }
    match &m.kept {
        Some(kept) => println!(
            "Rewrote `{}`; the text before is in `{}`.",
            m.path.display(),
            kept.display()
        ),
        None => println!("Dry run: nothing was written."),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn releases(loc: &Locate, json: bool) -> Result<ExitCode> {
    let inst = upgrade::installed(loc)?;
    let paths = berth_render::Paths::unversioned(&inst.prefix);
    let list =
        berth_lifecycle::release::list(&paths.releases(), &inst.manifest.manifest.app.version)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        println!(
            "No release is installed under `{}`.",
            paths.releases().display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:<20} {:>10}  CURRENT",
        "VERSION", "INSTALLED (UTC)", "SIZE"
    );
    for r in &list {
        println!(
            "{:<20} {:<20} {:>10}  {}",
            berth_model::terminal_safe(&r.version),
            installed(r.installed_unix),
            berth_target::human_bytes(r.bytes),
            if r.current { "*" } else { "" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `2026-12-03 14:31` for seconds since the epoch.
fn installed(unix: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    let text = humantime::format_rfc3339_seconds(t).to_string();
    text.replacen('T', " ", 1)
        .trim_end_matches('Z')
        .chars()
        .take(16)
        .collect()
}

/// `berth upgrade apply`.
pub fn apply(loc: &Locate, to: &[PathBuf], json: bool, quiet: bool) -> Result<ExitCode> {
    let report = with_context(loc, json || quiet, false, |ctx| {
        berth_upgrade_apply::apply(ctx, to)
    })?;
    print_report(&report, json)
}

/// `berth upgrade apply --bundle B… --public-key KEY`: every bundle's signature checked
/// before anything is made, each unpacked into `tmp/release-<version>/` with every byte
/// checked, then the upgrade applied to their manifests; each hop installs its
/// release from its bundle's built components. The unpacked bundles stay while the
/// upgrade is unfinished (`resume` needs them) and go when it is over.
pub fn apply_bundles(
    loc: &Locate,
    bundles: &[PathBuf],
    key: &str,
    json: bool,
    quiet: bool,
) -> Result<ExitCode> {
    let trusted = [super::release::public_key(key)?];
    let paths = berth_lifecycle::paths(loc)?;
    let mut infos = Vec::new();
    for b in bundles {
        infos.push(berth_release::open(b, &trusted)?.1);
    }
    let top = berth_host::beneath::SafeDir::open_trusted(&paths.prefix)?;
    super::up::ensure_tmp(&top, &paths)?;
    let mut staged = Vec::new();
    let result = (|| -> Result<ExitCode> {
        let mut to = Vec::new();
        for (bundle, info) in bundles.iter().zip(&infos) {
            // Listed before unpacking, so a half-unpacked one is removed too.
            staged.push(
                paths
                    .beneath(&paths.release_staging(&info.version))
                    .to_owned(),
            );
            let (extracted, _) =
                super::up::unpack_bundle(&top, &paths, &info.version, bundle, &trusted)?;
            to.push(extracted.manifest_dir);
        }
        apply(loc, &to, json, quiet)
    })();
    // Kept for `resume` while the upgrade is unfinished; `resume` or `abort` removes them.
    if !paths.upgrade_journal().exists() {
        for rel in &staged {
            let _ = top.remove_tree(rel);
        }
    }
    result
}

/// `berth upgrade apply --channel DIR [--version V]`: the channel's index checked
/// against the key, the path from the running version picked from it (the newest
/// release of every required stop, then the target), each bundle's bytes checked
/// against the index, then [`apply_bundles`].
pub fn apply_channel(
    loc: &Locate,
    channel: &str,
    version: Option<&str>,
    key: &str,
    json: bool,
    quiet: bool,
) -> Result<ExitCode> {
    let trusted = [super::release::public_key(key)?];
    let source = berth_release::channel::Source::parse(channel);
    let index = source.open(&trusted)?;
    let staging = tempfile::Builder::new()
        .prefix("berth-channel-")
        .tempdir()
        .context("Failed to make a directory for the downloads")?;
    let inst = berth_lifecycle::instance::open(loc)?;
    let running = &inst.manifest.manifest.app.version;
    let target = index.pick(version)?.version.clone();
    let mut bundles = Vec::new();
    for release in index.upgrade_path(running, &target)? {
        bundles.push(source.bundle(release, staging.path())?);
    }
    apply_bundles(loc, &bundles, key, json, quiet)
}

/// Run `f` with the context every upgrade command gives: the instance, this binary and
/// progress on stderr (silent when `quiet`), the progress ended before the caller prints.
fn with_context<T>(
    loc: &Locate,
    quiet: bool,
    automatic: bool,
    f: impl FnOnce(&berth_upgrade_apply::Context<'_>) -> berth_backup::Result<T>,
) -> Result<T> {
    let progress = crate::output::Terminal::new(quiet);
    let exe = std::env::current_exe().context("Failed to find the berth executable")?;
    let ctx = berth_upgrade_apply::Context {
        loc,
        berth_exe: &exe,
        progress: &progress,
        automatic,
    };
    let out = f(&ctx)?;
    drop(progress);
    Ok(out)
}

/// `berth upgrade resume`.
pub fn resume(loc: &Locate, json: bool, quiet: bool) -> Result<ExitCode> {
    let report = with_context(loc, json || quiet, false, berth_upgrade_apply::resume)?;
    print_report(&report, json)
}

/// `berth upgrade abort`.
pub fn abort(loc: &Locate, json: bool, quiet: bool) -> Result<ExitCode> {
    let report = with_context(loc, json || quiet, false, berth_upgrade_apply::abort)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "The upgrade was undone: version {} runs again{}.",
            berth_model::terminal_safe(&report.version),
            if report.restored {
                ", its database and data restored from the pre-upgrade backup"
            } else {
                ""
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &berth_upgrade_apply::ApplyReport, json: bool) -> Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(ExitCode::SUCCESS);
    }
    let safe = berth_model::terminal_safe;
    println!(
        "Upgraded {} {} → {}.",
        safe(&r.app),
        safe(&r.from),
        safe(&r.to)
    );
    for h in &r.hops {
        let steps: Vec<String> = h
            .steps
            .iter()
            .map(|(name, s)| format!("{name} {s:.1} s"))
            .collect();
        println!(
            "  {} → {} in {:.1} s ({})",
            safe(&h.from),
            safe(&h.to),
            h.seconds,
            steps.join(", ")
        );
        if let Some(m) = h.maintenance_seconds {
            println!("    maintenance page up for {m:.1} s");
        }
        if let Some(b) = &h.backup {
            println!("    backup taken before: {}", safe(b));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `berth upgrade auto`.
pub fn auto(loc: &Locate, json: bool, quiet: bool) -> Result<ExitCode> {
    use berth_upgrade_apply::auto::AutoOutcome;
    let outcome = with_context(loc, json || quiet, true, |ctx| {
        berth_upgrade_apply::auto::auto(ctx, berth_upgrade_apply::auto::minute_now())
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
        return Ok(ExitCode::SUCCESS);
    }
    match &outcome {
        AutoOutcome::Off => println!("Automatic upgrades are off (`upgrade.auto`)."),
        AutoOutcome::OutsideWindow { window } => {
            println!("Outside the upgrade window ({window}): nothing done.");
        }
        AutoOutcome::UpToDate { version } => println!(
            "Up to date: no newer version `upgrade.auto` allows than {}.",
            berth_model::terminal_safe(version)
        ),
        AutoOutcome::Upgraded(r) => return print_report(r, false),
    }
    Ok(ExitCode::SUCCESS)
}
