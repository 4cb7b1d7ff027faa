//! Loads an advisory snapshot and prints how long loading, indexing and scanning take:
//! `cargo run --release -p berth-audit --example audit_timings -- SNAPSHOT_DIR`.
//!
//! The budget: `berth audit` must open its data and scan an app in well under a second.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use berth_audit::{AdvisoryDb, Ecosystem, Package, scan};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os()
        .nth(1)
        .ok_or("give the folder of an advisory snapshot")?;
    let dir = std::path::PathBuf::from(dir);

    let t = Instant::now();
    let db = AdvisoryDb::load(&dir)?;
    let load = t.elapsed();
    for s in db.sources() {
        println!(
            "{}: {} advisories ({} withdrawn, {} ranges not PEP 440), newest {}",
            s.source.as_str(),
            s.advisories,
            s.withdrawn,
            s.skipped_ranges,
            s.newest.map_or_else(|| "-".to_owned(), |d| d.to_string())
        );
    }
    println!("{} advisory records", db.advisories().len());

    // A directory of its own (removed when dropped): never a guessable name in /tmp.
    let dir = tempfile::tempdir()?;
    let tmp = dir.path().join("advisories.idx");
    let t = Instant::now();
    db.write_index(&tmp)?;
    let write = t.elapsed();
    let size = std::fs::metadata(&tmp)?.len();
    let t = Instant::now();
    let db = AdvisoryDb::open_index(&tmp)?;
    let open = t.elapsed();
    drop(dir);

    // Every package the data knows of, at an old version: the worst case for a scan.
    let mut packages = Vec::new();
    for a in db.advisories() {
        let version = match a.ecosystem {
            Ecosystem::PyPI => "1.0",
            Ecosystem::CratesIo => "0.1.0",
        };
        packages.push(Package::new(a.ecosystem, &a.package, version)?);
    }
    packages.dedup_by(|a, b| a.ecosystem() == b.ecosystem() && a.name() == b.name());
    let t = Instant::now();
    let findings = scan(&db, &packages);
    let scan_all = t.elapsed();

    let app = [
        Package::new(Ecosystem::PyPI, "Django", "3.2.0")?,
        Package::new(Ecosystem::PyPI, "Jinja2", "2.10")?,
        Package::new(Ecosystem::PyPI, "PyYAML", "5.3")?,
        Package::new(Ecosystem::PyPI, "requests", "2.19.0")?,
        Package::new(Ecosystem::CratesIo, "tokio", "1.0.0")?,
        Package::new(Ecosystem::CratesIo, "openssl", "0.10.0")?,
    ];
    let t = Instant::now();
    let app_findings = scan(&db, &app);
    let scan_app = t.elapsed();

    println!("load snapshot:  {load:?}");
    println!("write index:    {write:?} ({size} bytes)");
    println!("open index:     {open:?}");
    println!(
        "scan {} packages: {scan_all:?} ({} findings)",
        packages.len(),
        findings.len()
    );
    println!(
        "scan a small app ({} packages): {scan_app:?} ({} findings)",
        app.len(),
        app_findings.len()
    );
    Ok(())
}
