//! `berth sbom` of a real release bundle: ministack with a wheel installed into its
//! bundled Python. The CycloneDX document validates against the CycloneDX 1.6 JSON
//! schema (CycloneDX's own Python library) and the SPDX one with SPDX's tools; the
//! Python distributions listed are those the bundled interpreter itself finds; two
//! runs give the same bytes; a bundle signed by another key gives no document.
#![allow(clippy::missing_panics_doc, missing_docs)]

use std::path::Path;
use std::process::Command;

use berth_tests::{Berth, Run};

const EPOCH: &str = "1700000000";

fn berth(args: &[&str]) -> Run {
    Berth::new(Path::new("/nonexistent-prefix"), Path::new("")).run(args)
}

#[test]
#[allow(clippy::too_many_lines)] // one bundle, read by every consumer
fn a_bundles_bill_of_materials_validates_and_lists_what_python_finds() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let wheel = berth_tests::demo_wheel(t, "1.2.0");
    let (bundle, public) = berth_tests::ministack_bundle_with(t, &wheel);
    let sbom = |format: &str, out: &Path| {
        berth(&[
            "sbom",
            bundle.to_str().unwrap(),
            "--public-key",
            &public,
            "--format",
            format,
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let cdx = t.join("bom.cdx.json");
    let spdx = t.join("bom.spdx.json");
    let r = sbom("cyclonedx", &cdx).expect(0);
    assert!(r.stderr.contains("components"), "{}", r.stderr);
    sbom("spdx", &spdx).expect(0);
    // Never over an existing file.
    let r = sbom("cyclonedx", &cdx).expect(1);
    assert!(r.stderr.contains("exists"), "{}", r.stderr);

    // The formats' own validators.
    berth_tests::assert_valid_boms(&cdx, &spdx);

    // What it lists is what is there: the interpreter's version, and the distributions
    // the bundled interpreter itself finds.
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cdx).unwrap()).unwrap();
    let components = doc["components"].as_array().unwrap();
    let purls: Vec<&str> = components
        .iter()
        .map(|c| c["purl"].as_str().unwrap())
        .collect();
    let x = t.join("x");
    std::fs::create_dir(&x).unwrap();
    let untar = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -dc {} | tar -x -C {} payload",
            bundle.display(),
            x.display()
        ))
        .status()
        .unwrap();
    assert!(untar.success());
    let python = x.join("payload/app/bin/python3");
    let found = Command::new(&python)
        .args([
            "-I",
            "-c",
            "import importlib.metadata as m, platform\n\
             print(platform.python_version())\n\
             for d in sorted(m.distributions(), key=lambda d: d.metadata['Name'].lower()):\n    \
             print(d.metadata['Name'], d.version)",
        ])
        .output()
        .unwrap();
    assert!(found.status.success(), "{found:?}");
    let found = String::from_utf8_lossy(&found.stdout).into_owned();
    let mut lines = found.lines();
    let version = lines.next().unwrap();
    assert!(
        purls.contains(&format!("pkg:generic/python@{version}").as_str()),
        "{purls:?}"
    );
    let mut listed: Vec<String> = components
        .iter()
        .filter(|c| c["purl"].as_str().unwrap().starts_with("pkg:pypi/"))
        .map(|c| {
            format!(
                "{} {}",
                c["name"].as_str().unwrap(),
                c["version"].as_str().unwrap()
            )
        })
        .collect();
    listed.sort_by_key(|l| l.to_lowercase());
    let installed: Vec<String> = lines.map(str::to_owned).collect();
    assert_eq!(listed, installed);
    assert!(
        installed.iter().any(|l| l == "demo_pkg 1.2.0"),
        "{installed:?}"
    );
    let demo = components.iter().find(|c| c["name"] == "demo_pkg").unwrap();
    assert_eq!(demo["licenses"][0]["expression"], "MIT");
    assert_eq!(demo["purl"], "pkg:pypi/demo-pkg@1.2.0");
    assert!(purls.contains(&"pkg:generic/berth@0.1.0"), "{purls:?}");
    // The crates compiled into berth, each with the checksum Cargo.lock pins.
    let lock: toml::Table = std::fs::read_to_string(berth_tests::root().join("Cargo.lock"))
        .unwrap()
        .parse()
        .unwrap();
    let crates: Vec<&serde_json::Value> = components
        .iter()
        .filter(|c| c["purl"].as_str().unwrap().starts_with("pkg:cargo/"))
        .collect();
    assert!(crates.len() > 100, "{}", crates.len());
    for name in ["clap", "serde", "tar"] {
        let c = crates.iter().find(|c| c["name"] == name).unwrap();
        let pinned = lock["package"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| {
                p["name"].as_str() == Some(name) && p["version"].as_str() == c["version"].as_str()
            })
            .unwrap();
        assert_eq!(
            c["hashes"][0]["content"].as_str(),
            pinned["checksum"].as_str()
        );
        assert!(
            c["licenses"][0]["expression"]
                .as_str()
                .unwrap()
                .contains("MIT"),
            "{c}"
        );
    }
    assert_eq!(doc["metadata"]["timestamp"], "2023-11-14T22:13:20Z");

    // The licence page: every component of the bill of materials, with its licence
    // texts (the wheel's own file, the crates' files berth's build recorded).
    let page = t.join("page");
    let licences = || {
        berth(&[
            "licences",
            bundle.to_str().unwrap(),
            "--public-key",
            &public,
            "--out",
            page.to_str().unwrap(),
        ])
    };
    let r = licences().expect(0);
    assert!(r.stdout.contains("licences.html"), "{}", r.stdout);
    let listed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(page.join("licences.json")).unwrap())
            .unwrap();
    let entries = listed["components"].as_array().unwrap();
    assert_eq!(entries.len(), components.len());
    let texts = listed["texts"].as_array().unwrap();
    let text_of = |name: &str| -> Vec<String> {
        let c = entries.iter().find(|c| c["name"] == name).unwrap();
        c["texts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                texts[usize::try_from(i.as_u64().unwrap()).unwrap()]["text"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(
        text_of("demo_pkg"),
        ["MIT License

Copyright (c) demo
"]
    );
    assert!(
        text_of("clap")
            .iter()
            .any(|t| t.contains("Permission is hereby granted")),
        "{:?}",
        text_of("clap")
    );
    assert!(text_of("berth")[0].contains("Apache License"));
    let html = std::fs::read_to_string(page.join("licences.html")).unwrap();
    assert!(
        html.contains("<td>demo_pkg</td><td>1.2.0</td><td>MIT"),
        "{html}"
    );
    assert!(!html.contains("<script"));
    // Never over what is there.
    let r = licences().expect(1);
    assert!(r.stderr.contains("exists already"), "{}", r.stderr);

    // The same bundle gives the same bytes.
    let again = t.join("again.cdx.json");
    sbom("cyclonedx", &again).expect(0);
    berth_tests::assert_reproducible(&cdx, &again);

    // Another key: refused, nothing written.
    let other = t.join("other.key");
    berth(&["release", "key", "--out", other.to_str().unwrap()]).expect(0);
    let refused = t.join("refused.json");
    let r = berth(&[
        "sbom",
        bundle.to_str().unwrap(),
        "--public-key",
        &format!("{}.pub", other.display()),
        "--out",
        refused.to_str().unwrap(),
    ])
    .expect(1);
    assert!(!refused.exists());
    assert!(r.stderr.contains("sign"), "{}", r.stderr);
}

/// A manifest whose licence policy denies a licence a bundled component has: the build
/// fails naming the component and writes no bundle. Allowed, with a reviewed
/// conclusion, it builds, and the bill of materials says what the vendor concluded.
#[test]
#[allow(clippy::too_many_lines)] // two builds, and every document of the second
fn a_licence_the_policy_denies_fails_the_build_naming_the_component() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let wheel = berth_tests::demo_wheel(t, "1.2.0");
    let key = t.join("vendor.key");
    berth(&["release", "key", "--out", key.to_str().unwrap()]).expect(0);
    let build = |name: &str, policy: &str| {
        let dir = t.join(name);
        std::fs::create_dir(&dir).unwrap();
        let manifest = berth_tests::ministack_at(&dir, "1.0.0", |text| {
            format!(
                "{}\n{policy}",
                text.replace(
                    "requirements = []",
                    &format!("requirements = [\"{}\"]", wheel.display()),
                )
            )
        });
        let out = dir.join("dist");
        std::fs::create_dir(&out).unwrap();
        let r = Berth::new(Path::new("/nonexistent-prefix"), &manifest).run_env(
            &[
                "release",
                "build",
                "--key",
                key.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--berth",
                "/bin/true",
            ],
            &[("SOURCE_DATE_EPOCH", EPOCH)],
        );
        (r, out)
    };
    let (r, out) = build("denied", "[licences]\ndeny = [\"MIT\"]\n");
    let r = r.expect(1);
    assert!(
        r.stderr.contains("demo_pkg 1.2.0 (in `app`): MIT") && r.stderr.contains("`MIT` is denied"),
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "a bundle was written"
    );

    // Allowed only by a review: it builds, and the review is in the documents.
    let (r, out) = build(
        "reviewed",
        "[licences]\nallow = [\"Apache-2.0\", \"PSF-2.0\"]\n\n\
         [licences.components.demo-pkg]\nconcluded = \"Apache-2.0\"\n\
         reason = \"relicensed to us in writing\"\n",
    );
    let r = r.expect(0);
    assert!(
        r.stderr.contains("checked against the policy"),
        "{}",
        r.stderr
    );
    let bundle = out.join("ministack-1.0.0.berth-release.tar.zst");
    let sbom = berth(&[
        "sbom",
        bundle.to_str().unwrap(),
        "--public-key",
        &format!("{}.pub", key.display()),
        "--format",
        "spdx",
    ])
    .expect(0);
    let doc: serde_json::Value = serde_json::from_str(&sbom.stdout).unwrap();
    let demo = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "demo_pkg")
        .unwrap();
    assert_eq!(demo["licenseDeclared"], "MIT");
    assert_eq!(demo["licenseConcluded"], "Apache-2.0");
    assert!(
        demo["licenseComments"]
            .as_str()
            .unwrap()
            .contains("relicensed to us in writing")
    );
    // The licence page says the bundle's policy passes, and shows the conclusion.
    let page = t.join("page");
    let r = berth(&[
        "licences",
        bundle.to_str().unwrap(),
        "--public-key",
        &format!("{}.pub", key.display()),
        "--out",
        page.to_str().unwrap(),
    ])
    .expect(0);
    assert!(
        r.stdout
            .contains("The licence policy passes (0 accepted by review)"),
        "{}",
        r.stdout
    );
    let html = std::fs::read_to_string(page.join("licences.html")).unwrap();
    assert!(
        html.contains("Apache-2.0 <small>(concluded: relicensed to us in writing)</small>"),
        "{html}"
    );
}
