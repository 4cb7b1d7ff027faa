//! Scans against real advisories: the subset of the PyPA and RustSec databases in
//! `tests/fixtures/advisories` at the repository root (see its README). The expected
//! ids were read off the advisory files themselves.

use std::path::{Path, PathBuf};
use std::time::Instant;

use berth_audit::{
    AdvisoryDb, AuditError, Ecosystem, Finding, Kind, Package, Policy, Severity, Source, evaluate,
    scan,
};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/advisories")
}

fn db() -> AdvisoryDb {
    AdvisoryDb::load(&fixture()).expect("the fixture snapshot loads")
}

fn pypi(name: &str, version: &str) -> Package {
    Package::new(Ecosystem::PyPI, name, version).unwrap()
}

fn krate(name: &str, version: &str) -> Package {
    Package::new(Ecosystem::CratesIo, name, version).unwrap()
}

fn ids(findings: &[Finding]) -> Vec<&str> {
    findings.iter().map(|f| f.id.as_str()).collect()
}

/// One line per finding: what a reviewer checks against the advisory files.
fn lines(findings: &[Finding]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for f in findings {
        let kind = match &f.kind {
            Kind::Vulnerability => String::new(),
            Kind::Informational(what) => format!(" [{what}]"),
        };
        let _ = writeln!(
            out,
            "{} {} {} {}{kind} aliases={} fixed={} severity={}{}",
            f.package,
            f.version,
            f.id,
            f.title.chars().take(50).collect::<String>(),
            f.aliases.join(","),
            f.fixed.join(","),
            f.severity,
            f.cvss
                .as_ref()
                .map(|c| format!(" ({})", c.score))
                .unwrap_or_default(),
        );
    }
    out
}

#[test]
fn sources_are_counted_and_dated() {
    let db = db();
    let sources = db.sources();
    assert_eq!(sources.len(), 2);
    assert_eq!(sources[0].source, Source::PyPA);
    let pypa_files = std::fs::read_dir(fixture().join("pypa/vulns"))
        .unwrap()
        .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
        .sum::<usize>();
    assert_eq!(sources[0].advisories + sources[0].withdrawn, pypa_files);
    assert!(sources[0].withdrawn >= 1, "redis has withdrawn advisories");
    assert_eq!(sources[0].skipped_ranges, 1, "binderhub's 0.2.0-n653");
    assert_eq!(sources[1].source, Source::RustSec);
    assert_eq!(sources[1].advisories, 9);
    assert_eq!(sources[1].withdrawn, 1, "markdown's");
    insta::assert_snapshot!(
        format!("{:?} {:?}", sources[0].newest, sources[1].newest),
        @"Some(2024-10-08) Some(2026-03-17)"
    );
}

#[test]
fn an_old_django_has_real_advisories() {
    let db = db();
    let findings = scan(&db, &[pypi("Django", "3.2.0")]);
    // Read off the files: PYSEC-2021-7 is `introduced: '3.2'`, `fixed: 3.2.1`;
    // PYSEC-2024-102 (CVE-2024-45230) is 4.2 before 4.2.16 only, so not 3.2.
    assert!(ids(&findings).contains(&"PYSEC-2021-7"));
    assert!(!ids(&findings).contains(&"PYSEC-2024-102"));
    let f = findings.iter().find(|f| f.id == "PYSEC-2021-7").unwrap();
    assert_eq!(f.aliases, ["CVE-2021-31542", "GHSA-rxjp-mfm9-w4wr"]);
    assert_eq!(f.fixed.first().map(String::as_str), Some("3.2.1"));
    assert_eq!(f.package, "Django", "the caller's spelling");
    insta::assert_snapshot!(lines(&findings));
}

#[test]
fn a_fixed_boundary_is_not_affected() {
    let db = db();
    let at_fix = scan(&db, &[pypi("django", "3.2.1")]);
    assert!(!ids(&at_fix).contains(&"PYSEC-2021-7"));
    // PYSEC-2024-102 lists its branches out of order (5.1, 5.0, 4.2).
    assert!(ids(&scan(&db, &[pypi("django", "5.1")])).contains(&"PYSEC-2024-102"));
    assert!(!ids(&scan(&db, &[pypi("django", "5.1.1")])).contains(&"PYSEC-2024-102"));
    assert!(ids(&scan(&db, &[pypi("django", "4.2.15")])).contains(&"PYSEC-2024-102"));
    assert!(!ids(&scan(&db, &[pypi("django", "4.2.16")])).contains(&"PYSEC-2024-102"));
}

#[test]
fn a_recent_version_has_none() {
    let db = db();
    assert_eq!(scan(&db, &[pypi("django", "5.1.2")]), []);
    assert_eq!(scan(&db, &[pypi("Jinja2", "3.1.4")]), []);
    assert_eq!(scan(&db, &[pypi("PyYAML", "6.0.2")]), []);
    assert_eq!(scan(&db, &[pypi("not-in-the-data", "1.0")]), []);
}

#[test]
fn pre_releases_order_as_pep440_says() {
    let db = db();
    // PYSEC-2020-176: introduced 5.1, fixed 5.2b1.
    assert!(ids(&scan(&db, &[pypi("pyyaml", "5.2a1")])).contains(&"PYSEC-2020-176"));
    assert!(!ids(&scan(&db, &[pypi("pyyaml", "5.2b1")])).contains(&"PYSEC-2020-176"));
    assert!(!ids(&scan(&db, &[pypi("pyyaml", "5.1b1")])).contains(&"PYSEC-2020-176"));
    // PEP 503: any spelling of the name finds the advisories.
    assert_eq!(
        scan(&db, &[pypi("PyYAML", "5.3")]).len(),
        scan(&db, &[pypi("pyyaml", "5.3")]).len()
    );
}

#[test]
fn odd_advisories() {
    let db = db();
    // py: `last_affected: 1.11.0`.
    assert_eq!(
        ids(&scan(&db, &[pypi("py", "1.11.0")])),
        ["PYSEC-2022-42969"]
    );
    assert_eq!(scan(&db, &[pypi("py", "1.11.1")]), []);
    // gratient: an explicit version list, no range.
    assert_eq!(
        ids(&scan(&db, &[pypi("gratient", "0.5")])),
        ["PYSEC-2024-1"]
    );
    assert_eq!(scan(&db, &[pypi("gratient", "0.6")]), []);
    // redis: PYSEC-2023-73 is withdrawn, though every version is in its range.
    assert!(!ids(&scan(&db, &[pypi("redis", "2.10.0")])).contains(&"PYSEC-2023-73"));
    // binderhub: `fixed: 0.2.0-n653` is not PEP 440 and there is no version list, so
    // nothing can be matched; the load says so (`SourceInfo::skipped_ranges`).
    assert_eq!(scan(&db, &[pypi("binderhub", "0.1.0")]), []);
}

#[test]
fn crates_follow_rustsec_rules() {
    let db = db();
    let tokio = |v: &str| scan(&db, &[krate("tokio", v)]);
    // 1.8.0: patched by none of the requirements, unaffected by none.
    let findings = tokio("1.8.0");
    assert_eq!(
        ids(&findings),
        [
            "RUSTSEC-2021-0072",
            "RUSTSEC-2021-0124",
            "RUSTSEC-2023-0001",
            "RUSTSEC-2023-0005",
            "RUSTSEC-2025-0023"
        ]
    );
    let vulnerabilities: Vec<_> = findings.iter().filter(|f| f.is_vulnerability()).collect();
    assert_eq!(vulnerabilities.len(), 3, "two are `unsound` notices");
    // 1.8.4: `>= 1.8.1` patches 0072, `>= 1.8.4, < 1.9.0` patches 0124.
    assert_eq!(
        ids(&tokio("1.8.4")),
        [
            "RUSTSEC-2023-0001",
            "RUSTSEC-2023-0005",
            "RUSTSEC-2025-0023"
        ]
    );
    // 1.9.0 is above the patched 1.8 line and below 1.13.1.
    assert!(ids(&tokio("1.9.0")).contains(&"RUSTSEC-2021-0124"));
    // `unaffected` versions.
    assert_eq!(tokio("0.1.13"), []);
    assert_eq!(tokio("1.44.2"), []);

    // serde_yaml: unaffected `< 0.6.0-rc1`, patched `>= 0.8.4`.
    let serde_yaml = |v: &str| ids(&scan(&db, &[krate("serde_yaml", v)])).len();
    assert_eq!(serde_yaml("0.5.9"), 0);
    assert_eq!(serde_yaml("0.6.0-rc1"), 1);
    assert_eq!(serde_yaml("0.8.3"), 1);
    assert_eq!(serde_yaml("0.8.4"), 0);

    // Crate names are exact: PEP 503 does not apply.
    assert_eq!(scan(&db, &[krate("Tokio", "1.8.0")]), []);
}

#[test]
fn crate_findings_carry_severity_and_kind() {
    let db = db();
    let findings = scan(
        &db,
        &[
            krate("yaml-rust", "0.4.0"),
            krate("lz4_flex", "0.12.0"),
            krate("lz4_flex", "0.11.6"),
        ],
    );
    insta::assert_snapshot!(lines(&findings));
    let unmaintained = findings
        .iter()
        .find(|f| f.id == "RUSTSEC-2024-0320")
        .unwrap();
    assert_eq!(
        unmaintained.kind,
        Kind::Informational("unmaintained".to_owned())
    );
    let crash = findings
        .iter()
        .find(|f| f.id == "RUSTSEC-2018-0006")
        .unwrap();
    assert_eq!(crash.severity, Severity::High, "CVSS:3.0 …/A:H is 7.5");
}

#[test]
fn packages_from_purls() {
    let db = db();
    let packages: Vec<Package> = [
        "pkg:pypi/django@3.2.0",
        "pkg:cargo/tokio@1.8.0",
        "pkg:deb/debian/curl@8.0",
    ]
    .iter()
    .filter_map(|p| Package::from_purl(p).unwrap())
    .collect();
    assert_eq!(packages.len(), 2);
    let findings = scan(&db, &packages);
    // By package name, then id: django's first, then tokio's.
    assert_eq!(findings.first().map(|f| f.package.as_str()), Some("django"));
    assert_eq!(
        findings.last().map(|f| f.id.as_str()),
        Some("RUSTSEC-2025-0023")
    );
    let mut sorted = findings.clone();
    sorted.sort_by(|a, b| (&a.package, &a.id).cmp(&(&b.package, &b.id)));
    assert_eq!(sorted, findings);
}

#[test]
fn policy_over_real_findings() {
    let db = db();
    let findings = scan(&db, &[pypi("django", "3.2.0"), krate("yaml-rust", "0.4.0")]);
    let policy = Policy::from_toml(
        r#"
threshold = "high"

[[ignore]]
id = "CVE-2021-31542"
reason = "uploads are not taken from untrusted users"
expires = 2026-01-31

[[ignore]]
id = "RUSTSEC-2018-0006"
reason = "only the vendor's own YAML is parsed"
expires = 2026-12-31
"#,
    )
    .unwrap();
    let today = jiff::civil::date(2026, 6, 1);
    let verdict = evaluate(&findings, &policy, today);
    // The CVE entry expired in January: PYSEC-2021-7 (unscored) fails again.
    assert_eq!(verdict.expired.len(), 1);
    assert_eq!(verdict.expired[0].id, "CVE-2021-31542");
    assert!(ids(&verdict.failing).contains(&"PYSEC-2021-7"));
    assert_eq!(verdict.ignored.len(), 1);
    assert_eq!(verdict.ignored[0].finding.id, "RUSTSEC-2018-0006");
    assert_eq!(ids(&verdict.informational), ["RUSTSEC-2024-0320"]);
    assert!(verdict.stale.is_empty());
    assert!(!verdict.passed());
}

#[test]
fn the_index_answers_as_the_snapshot_does() {
    let db = db();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("advisories.idx");
    db.write_index(&path).unwrap();
    let indexed = AdvisoryDb::open_index(&path).unwrap();
    assert_eq!(indexed.sources(), db.sources());
    assert_eq!(indexed.advisories(), db.advisories());
    let packages = [
        pypi("django", "2.2.0"),
        krate("tokio", "1.8.0"),
        pypi("gratient", "0.5"),
    ];
    assert_eq!(scan(&indexed, &packages), scan(&db, &packages));

    std::fs::write(&path, b"not an index").unwrap();
    let e = AdvisoryDb::open_index(&path).unwrap_err().to_string();
    assert!(e.contains("advisories.idx") && e.contains("rebuild"), "{e}");
}

#[test]
fn one_tree_alone_loads() {
    let pypa = AdvisoryDb::load(&fixture().join("pypa")).unwrap();
    assert_eq!(pypa.sources().len(), 1);
    assert_eq!(pypa.sources()[0].source, Source::PyPA);
    let rustsec = AdvisoryDb::load(&fixture().join("rustsec")).unwrap();
    assert_eq!(rustsec.sources()[0].source, Source::RustSec);
    let e = AdvisoryDb::load(&fixture().join("pypa/vulns/django")).unwrap_err();
    assert!(matches!(e, AuditError::Layout { .. }), "{e}");
}

#[test]
fn a_damaged_file_refuses_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let crates = dir.path().join("crates");
    std::fs::create_dir_all(crates.join("tokio")).unwrap();
    std::fs::create_dir_all(crates.join("broken")).unwrap();
    for entry in std::fs::read_dir(fixture().join("rustsec/crates/tokio")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), crates.join("tokio").join(entry.file_name())).unwrap();
    }
    std::fs::write(
        crates.join("broken/RUSTSEC-2099-0001.md"),
        "```toml\n[advisory]\nid = \"RUSTSEC-2099-0001\"\npackage = \"broken\"\ndate = \"2099-01-01\n```\n",
    )
    .unwrap();
    let e = AdvisoryDb::load(dir.path()).unwrap_err();
    let AuditError::Damaged { total, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(*total, 1);
    let message = e.to_string();
    assert!(message.contains("RUSTSEC-2099-0001.md`:5"), "{message}");
}

/// The whole snapshot, timed: `BERTH_ADVISORY_SNAPSHOT=DIR cargo test --release -p
/// berth-audit -- --ignored --nocapture full_snapshot`.
#[test]
#[ignore = "needs a full advisory snapshot in BERTH_ADVISORY_SNAPSHOT"]
#[allow(clippy::print_stdout)]
fn full_snapshot() {
    let Some(dir) = std::env::var_os("BERTH_ADVISORY_SNAPSHOT") else {
        println!("BERTH_ADVISORY_SNAPSHOT is not set: nothing to do");
        return;
    };
    let t = Instant::now();
    let db = AdvisoryDb::load(Path::new(&dir)).unwrap();
    let load = t.elapsed();
    let bytes = db.index_bytes().unwrap();
    let t = Instant::now();
    let db = AdvisoryDb::from_index_bytes(&bytes).unwrap();
    let open = t.elapsed();
    let packages = [
        pypi("django", "3.2.0"),
        pypi("jinja2", "2.10"),
        krate("tokio", "1.8.0"),
    ];
    let t = Instant::now();
    let findings = scan(&db, &packages);
    let scanned = t.elapsed();
    println!(
        "load {load:?}; index {} bytes, opened in {open:?}; scan {scanned:?}, {} findings",
        bytes.len(),
        findings.len()
    );
    assert!(ids(&findings).contains(&"PYSEC-2021-7"));
}
