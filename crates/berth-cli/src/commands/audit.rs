//! `berth audit`: known vulnerabilities in what a bundle, a bill of materials or the
//! installed instance carries, from advisory data on disk (no network).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use berth_audit::{AdvisoryDb, Finding, Package, Policy, Severity};
use berth_lifecycle::Locate;

/// What `berth audit` was asked.
pub struct Request<'a> {
    /// A release bundle or an SBOM file; `None`: the installed instance.
    pub target: Option<&'a Path>,
    /// The vendor's key, for a bundle.
    pub public_key: Option<&'a str>,
    /// The advisory data: a snapshot directory or an index; `None`: the instance's.
    pub db: Option<&'a Path>,
    /// The policy file (threshold, ignore list); `None`: the defaults.
    pub policy: Option<&'a Path>,
    /// Machine-readable output.
    pub json: bool,
}

/// Installs the snapshot in `from` as the instance's advisory database, or as the
/// index file `to`.
pub fn update(loc: &Locate, from: &Path, to: Option<&Path>, json: bool) -> Result<ExitCode> {
    let db = AdvisoryDb::load(from)?;
    let index = if let Some(file) = to {
        file.to_path_buf()
    } else {
        let paths = berth_lifecycle::instance::open(loc)?.paths;
        berth_host::fsutil::ensure_dir(&paths.state, 0o700)?;
        paths.advisories_index()
    };
    db.write_index(&index)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "index": index,
                "sources": db.sources(),
            }))?
        );
    } else {
        println!("Installed the advisory database in {}", index.display());
        for s in db.sources() {
            println!("  {}", source_line(s));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn source_line(s: &berth_audit::SourceInfo) -> String {
    format!(
        "{:?}: {} advisories ({} withdrawn), newest {}{}",
        s.source,
        s.advisories,
        s.withdrawn,
        s.newest
            .map_or_else(|| "unknown".to_owned(), |d| d.to_string()),
        if s.skipped_ranges > 0 {
            format!(", {} version ranges it cannot compare", s.skipped_ranges)
        } else {
            String::new()
        }
    )
}

/// What `berth status` says of the instance's known vulnerabilities: `None` when no
/// advisory database is installed; the scan against it with the default policy
/// otherwise (or why it could not run: status must still answer).
pub fn status_summary(loc: &Locate) -> Option<std::result::Result<serde_json::Value, String>> {
    let inst = berth_lifecycle::instance::open(loc).ok()?;
    let index = inst.paths.advisories_index();
    if !index.exists() {
        return None;
    }
    Some(
        (|| -> Result<serde_json::Value> {
            let db = AdvisoryDb::open_index(&index)?;
            let (_, packages) = instance_packages(&inst)?;
            let findings = berth_audit::scan(&db, &packages);
            let verdict = berth_audit::evaluate(
                &findings,
                &Policy::default(),
                jiff::ZonedDateTime::now().date(),
            );
            let newest = db.sources().iter().filter_map(|s| s.newest).max();
            Ok(serde_json::json!({
                "packages": packages.len(),
                "failing": verdict.failing.len(),
                "informational": verdict.informational.len(),
                "advisories_newest": newest.map(|d| d.to_string()),
            }))
        })()
        .map_err(|e| format!("{e:#}")),
    )
}

/// The packages of an inventory a scan can match (PyPI distributions, crates).
fn inventory_packages(inv: &berth_sbom::Inventory) -> Result<Vec<Package>> {
    let mut out = Vec::new();
    for c in &inv.components {
        if let Some(p) = Package::from_purl(&c.purl)? {
            out.push(p);
        }
    }
    Ok(out)
}

/// The installed instance's packages: its own berth and the components of its
/// release. What it is, for the report.
fn instance_packages(inst: &berth_lifecycle::Instance) -> Result<(String, Vec<Package>)> {
    let app = &inst.manifest.manifest.app;
    let paths = &inst.paths;
    let inv = berth_sbom::inventory::of_parts(
        &paths.installed_berth(),
        &paths.releases().join(&app.version),
        berth_sbom::Subject {
            name: app.name.clone(),
            version: app.version.clone(),
            summary: None,
        },
        0,
        env!("CARGO_PKG_VERSION"),
    )?;
    Ok((
        format!("{} {} in {}", app.name, app.version, paths.prefix.display()),
        inventory_packages(&inv)?,
    ))
}

/// Scans what `req` names and reports; exit 1 when the policy fails the audit.
pub fn run(loc: &Locate, req: &Request<'_>) -> Result<ExitCode> {
    let (what, packages) = packages(loc, req)?;
    let db = match req.db {
        Some(path) if path.is_dir() => AdvisoryDb::load(path)?,
        Some(path) => AdvisoryDb::open_index(path)?,
        None => {
            let index = berth_lifecycle::instance::open(loc)?
                .paths
                .advisories_index();
            if !index.exists() {
                bail!(
                    "there is no advisory database at {}: install one with \
                     `berth audit --update-from DIR` (an OSV snapshot), or give `--db DIR`",
                    index.display()
                );
            }
            AdvisoryDb::open_index(&index)?
        }
    };
    let policy = match req.policy {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("Failed to read the audit policy `{}`", file.display()))?;
            Policy::from_toml(&text)
                .with_context(|| format!("`{}` is not an audit policy", file.display()))?
        }
        None => Policy::default(),
    };
    let findings = berth_audit::scan(&db, &packages);
    let today = jiff::ZonedDateTime::now().date();
    let verdict = berth_audit::evaluate(&findings, &policy, today);
    if req.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "target": what,
                "packages": packages.len(),
                "sources": db.sources(),
                "passed": verdict.passed(),
                "verdict": verdict,
            }))?
        );
    } else {
        print_report(&what, packages.len(), &db, &verdict);
    }
    Ok(if verdict.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The packages a scan matches: PyPI distributions and crates, from the target.
fn packages(loc: &Locate, req: &Request<'_>) -> Result<(String, Vec<Package>)> {
    let Some(target) = req.target else {
        return instance_packages(&berth_lifecycle::instance::open(loc)?);
    };
    let name = target.to_string_lossy();
    if name.ends_with(".tar.zst") {
        let Some(key) = req.public_key else {
            bail!("a release bundle is checked before it is read: give `--public-key KEY`");
        };
        let inv = super::sbom::of_bundle(target, key)?;
        let what = format!("{} {} (bundle)", inv.subject.name, inv.subject.version);
        return Ok((what, inventory_packages(&inv)?));
    }
    let text = std::fs::read_to_string(target)
        .with_context(|| format!("Failed to read `{}`", target.display()))?;
    let doc: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "`{}` is neither a release bundle (`.tar.zst`) nor a JSON bill of materials",
            target.display()
        )
    })?;
    let purls: Vec<&str> = if doc["bomFormat"] == "CycloneDX" {
        doc["components"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["purl"].as_str())
            .collect()
    } else if doc["spdxVersion"].is_string() {
        doc["packages"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|p| p["externalRefs"].as_array().into_iter().flatten())
            .filter(|r| r["referenceType"] == "purl")
            .filter_map(|r| r["referenceLocator"].as_str())
            .collect()
    } else {
        bail!(
            "`{}` is JSON but neither CycloneDX nor SPDX",
            target.display()
        );
    };
    let mut out = Vec::new();
    for purl in purls {
        if let Some(p) = Package::from_purl(purl)? {
            out.push(p);
        }
    }
    Ok((format!("{} (bill of materials)", target.display()), out))
}

fn severity(f: &Finding) -> String {
    match (&f.severity, &f.cvss) {
        (Severity::Unknown, _) => "unknown".to_owned(),
        (s, Some(c)) => format!("{s:?} {:.1}", c.score).to_lowercase(),
        (s, None) => format!("{s:?}").to_lowercase(),
    }
}

fn line(f: &Finding) -> String {
    let fixed = if f.fixed.is_empty() {
        "no fix".to_owned()
    } else {
        format!("fixed in {}", f.fixed.join(", "))
    };
    format!(
        "  {:<20} {} {}  {}  {}  {}",
        f.id,
        berth_model::terminal_safe(&f.package),
        berth_model::terminal_safe(&f.version),
        severity(f),
        fixed,
        berth_model::terminal_safe(&f.title)
    )
}

fn print_report(what: &str, packages: usize, db: &AdvisoryDb, v: &berth_audit::Verdict) {
    println!("Audit of {what}: {packages} packages");
    for s in db.sources() {
        println!("  advisories: {}", source_line(s));
    }
    if !v.failing.is_empty() {
        println!("\nFailing ({}):", v.failing.len());
        v.failing.iter().for_each(|f| println!("{}", line(f)));
    }
    if !v.below_threshold.is_empty() {
        println!("\nBelow the threshold ({}):", v.below_threshold.len());
        v.below_threshold
            .iter()
            .for_each(|f| println!("{}", line(f)));
    }
    if !v.informational.is_empty() {
        println!("\nInformational ({}):", v.informational.len());
        v.informational.iter().for_each(|f| println!("{}", line(f)));
    }
    if !v.ignored.is_empty() {
        println!("\nIgnored ({}):", v.ignored.len());
        for i in &v.ignored {
            println!(
                "{}\n      ignored until {}: {}",
                line(&i.finding),
                i.entry.expires,
                berth_model::terminal_safe(&i.entry.reason)
            );
        }
    }
    for e in &v.expired {
        println!(
            "\nwarning: the ignore entry for {} expired on {}: it ignores nothing any more",
            e.id, e.expires
        );
    }
    for e in &v.stale {
        println!(
            "\nwarning: the ignore entry for {} matches no finding",
            e.id
        );
    }
    if v.passed() {
        println!("\nPassed: nothing at or above the threshold.");
    } else {
        println!(
            "\nFailed: {} finding(s) at or above the threshold.",
            v.failing.len()
        );
    }
}
