//! `berth audit` against real advisory data (a subset of the PyPA and RustSec
//! databases, copied unmodified into tests/fixtures/advisories): a bundle whose Python
//! carries Django 3.2.0 has Django's real advisories and nothing else; its bill of
//! materials gives the same findings; an ignore entry with a reason hides a finding
//! until it expires, and then the finding fails the audit again; a Django that no
//! advisory covers passes.
#![allow(clippy::missing_panics_doc, missing_docs)]

use std::path::{Path, PathBuf};

use berth_tests::{Berth, Run};

fn berth(args: &[&str]) -> Run {
    Berth::new(Path::new("/nonexistent-prefix"), Path::new("")).run(args)
}

fn advisories() -> PathBuf {
    berth_tests::fixture("advisories")
}

/// A ministack bundle whose Python has `Django` at `version` installed (a wheel made
/// here: what a scan matches is the name and version its metadata gives), and the
/// public key it verifies with.
fn bundle_with_django(t: &Path, version: &str) -> (PathBuf, String) {
    let wheel = berth_tests::wheel(t, "Django", version);
    berth_tests::ministack_bundle_with(t, &wheel)
}

fn failing_ids(json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut ids: Vec<String> = v["verdict"]["failing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[test]
#[allow(clippy::too_many_lines)] // one bundle, every way it is audited
fn an_old_django_has_its_real_advisories_and_an_ignore_entry_expires() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (bundle, public) = bundle_with_django(t, "3.2.0");
    let db = advisories();
    let audit = |target: &Path, extra: &[&str]| {
        let mut args = vec![
            "audit",
            target.to_str().unwrap(),
            "--public-key",
            &public,
            "--db",
            db.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        berth(&args)
    };
    let r = audit(&bundle, &[]).expect(1);
    // PYSEC-2021-7 (CVE-2021-31542): Django before 3.2.1; read in its file.
    assert!(r.stdout.contains("PYSEC-2021-7 "), "{}", r.stdout);
    assert!(r.stdout.contains("fixed in 3.2.1"), "{}", r.stdout);
    assert!(r.stdout.contains("Failed:"), "{}", r.stdout);
    let r = audit(&bundle, &["--json"]).expect(1);
    let ids = failing_ids(&r.stdout);
    assert!(ids.contains(&"PYSEC-2021-7".to_owned()), "{ids:?}");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    // Only Django's: nothing for the other distributions, nor the demo crates' versions
    // the subset does not cover.
    for f in v["verdict"]["failing"].as_array().unwrap() {
        assert_eq!(f["package"], "django", "{f}");
    }

    // The bill of materials gives the same findings.
    let cdx = t.join("bom.cdx.json");
    berth(&[
        "sbom",
        bundle.to_str().unwrap(),
        "--public-key",
        &public,
        "--out",
        cdx.to_str().unwrap(),
    ])
    .expect(0);
    let r = audit(&cdx, &["--json"]).expect(1);
    assert_eq!(failing_ids(&r.stdout), ids);

    // An ignore entry with a reason, until a day to come: that finding is ignored,
    // with the reason shown.
    let policy = t.join("audit.toml");
    std::fs::write(
        &policy,
        "[[ignore]]\nid = \"PYSEC-2021-7\"\nreason = \"MultiPartParser is not reachable here\"\nexpires = 2999-01-01\n",
    )
    .unwrap();
    let r = audit(&bundle, &["--policy", policy.to_str().unwrap()]).expect(1);
    assert!(
        r.stdout
            .contains("ignored until 2999-01-01: MultiPartParser is not reachable here"),
        "{}",
        r.stdout
    );
    let r = audit(&bundle, &["--policy", policy.to_str().unwrap(), "--json"]).expect(1);
    assert!(!failing_ids(&r.stdout).contains(&"PYSEC-2021-7".to_owned()));
    // Expired: it ignores nothing any more, and the audit says so.
    std::fs::write(
        &policy,
        "[[ignore]]\nid = \"PYSEC-2021-7\"\nreason = \"MultiPartParser is not reachable here\"\nexpires = 2020-01-01\n",
    )
    .unwrap();
    let r = audit(&bundle, &["--policy", policy.to_str().unwrap()]).expect(1);
    assert!(
        r.stdout
            .contains("the ignore entry for PYSEC-2021-7 expired on 2020-01-01"),
        "{}",
        r.stdout
    );
    let r = audit(&bundle, &["--policy", policy.to_str().unwrap(), "--json"]).expect(1);
    assert_eq!(failing_ids(&r.stdout), ids);
    // A policy with no reason is refused before anything is scanned.
    std::fs::write(
        &policy,
        "[[ignore]]\nid = \"PYSEC-2021-7\"\nreason = \"\"\nexpires = 2999-01-01\n",
    )
    .unwrap();
    let r = audit(&bundle, &["--policy", policy.to_str().unwrap()]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("reason"), "{}", r.stderr);

    // A bundle must be checked: no key, no scan.
    let r = berth(&[
        "audit",
        bundle.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("--public-key"), "{}", r.stderr);
}

/// The crates compiled into berth match two RustSec advisories (through the `rpm`
/// crate's `pgp`): a bundle berth builds has exactly those findings against them, and
/// berth's own policy (`audit-policy.toml`) accepts both, each with its reason.
#[test]
fn berths_own_crates_have_the_findings_its_policy_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let (bundle, public) = bundle_with_django(tmp.path(), "5.1.2");
    let db = berth_tests::fixture("advisories-berth");
    let policy = berth_tests::root().join("audit-policy.toml");
    let audit = |extra: &[&str]| {
        let mut args = vec![
            "audit",
            bundle.to_str().unwrap(),
            "--public-key",
            &public,
            "--db",
            db.to_str().unwrap(),
            "--json",
        ];
        args.extend_from_slice(extra);
        berth(&args)
    };
    let r = audit(&[]).expect(1);
    assert_eq!(
        failing_ids(&r.stdout),
        ["RUSTSEC-2023-0071", "RUSTSEC-2025-0144"],
        "{}",
        r.stdout
    );
    let r = audit(&["--policy", policy.to_str().unwrap()]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let ignored: Vec<&str> = v["verdict"]["ignored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            f["finding"]["id"]
                .as_str()
                .or_else(|| f["id"].as_str())
                .unwrap()
        })
        .collect();
    assert_eq!(ignored.len(), 2, "{}", r.stdout);
    assert!(
        v["verdict"]["stale"].as_array().is_none_or(Vec::is_empty),
        "{}",
        r.stdout
    );
}

#[test]
fn a_django_no_advisory_covers_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let (bundle, public) = bundle_with_django(tmp.path(), "5.1.2");
    let r = berth(&[
        "audit",
        bundle.to_str().unwrap(),
        "--public-key",
        &public,
        "--db",
        advisories().to_str().unwrap(),
    ])
    .expect(0);
    assert!(r.stdout.contains("Passed"), "{}", r.stdout);
}

struct Down<'a>(&'a Berth);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        self.0.run(&["down"]);
    }
}

/// The installed instance, audited against the database `--update-from` installed in
/// it: before that, the audit says how to get one; after, it finds the real advisory
/// of the Django its virtualenv holds.
#[test]
#[allow(clippy::print_stderr)] // a skipped test says why
fn an_instance_is_audited_against_the_database_installed_in_it() {
    if !berth_tests::is_root() {
        eprintln!("skipped: an instance with service users needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let wheel = berth_tests::wheel(tmp.path(), "Django", "3.2.0");
    let manifest = berth_tests::ministack_at(tmp.path(), "1.0.0", |text| {
        text.replace(
            "requirements = []",
            &format!("requirements = [\"{}\"]", wheel.display()),
        )
    });
    let pdir = berth_tests::prefix_dir("audit");
    let b = Berth::new(pdir.path(), &manifest);
    b.write_site(
        "external_url = \"http://127.0.0.1:56580/\"\n\
         [postgresql]\nport = 56532\n[redis]\nport = 56563\n\
         [app]\nport = 56501\nspare_port = 56502\n",
    );
    let r = b.run(&["up"]);
    let _down = Down(&b);
    r.expect(0);
    let r = b.run(&["audit"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("--update-from"), "{}", r.stderr);
    let r = b
        .run(&["audit", "--update-from", advisories().to_str().unwrap()])
        .expect(0);
    assert!(
        r.stdout.contains("Installed the advisory database"),
        "{}",
        r.stdout
    );
    let index = pdir.path().join("state/advisories.idx");
    assert!(index.is_file());
    let r = b.run(&["audit", "--json"]).expect(1);
    let ids = failing_ids(&r.stdout);
    assert!(ids.contains(&"PYSEC-2021-7".to_owned()), "{ids:?}");
    // `berth status` says so in one line, and stays healthy: the services run.
    let r = b.run(&["status"]).expect(0);
    assert!(
        r.stdout
            .contains(&format!("known vulnerabilities: {} in ", ids.len())),
        "{}",
        r.stdout
    );
    let r = b.run(&["status", "--json"]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["audit"]["failing"], ids.len());
}
