//! The documents written for a small release tree, as snapshots: a Python tree with
//! its interpreter, a distribution declaring an SPDX expression, one known by its
//! classifier only, one whose licence is ambiguous words, one with a licence file it
//! names and a symlinked licence file that must not be followed.
#![allow(clippy::missing_panics_doc, missing_docs)]

use std::path::Path;

use berth_sbom::{Subject, cyclonedx, inventory, spdx};

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn release_tree(root: &Path) {
    write(root, "bin/berth", "not really berth\n");
    write(
        root,
        "payload/app/include/python3.12/patchlevel.h",
        "/* Version as a string */\n#define PY_VERSION              \"3.12.7\"\n",
    );
    write(
        root,
        "payload/app/lib/python3.12/LICENSE.txt",
        "PSF LICENSE AGREEMENT\n",
    );
    let site = "payload/app/lib/python3.12/site-packages";
    write(
        root,
        &format!("{site}/Django-5.1.2.dist-info/METADATA"),
        "Metadata-Version: 2.4\nName: Django\nVersion: 5.1.2\nSummary: A web framework\n\
         License-Expression: BSD-3-Clause\nLicense-File: LICENSE\n\
         Project-URL: Homepage, https://www.djangoproject.com/\n\nLong description\n",
    );
    write(
        root,
        &format!("{site}/Django-5.1.2.dist-info/licenses/LICENSE"),
        "Copyright (c) Django Software Foundation\n",
    );
    write(
        root,
        &format!("{site}/redis-5.0.8.dist-info/METADATA"),
        "Metadata-Version: 2.1\nName: redis\nVersion: 5.0.8\nLicense: MIT\n\
         Classifier: License :: OSI Approved :: MIT License\n",
    );
    write(
        root,
        &format!("{site}/zope.interface-7.0.dist-info/METADATA"),
        "Metadata-Version: 2.1\nName: zope.interface\nVersion: 7.0\nLicense: ZPL 2.1\n\
         Classifier: License :: OSI Approved :: Zope Public License\n",
    );
    write(
        root,
        &format!("{site}/oddball-1.0+local.dist-info/METADATA"),
        "Metadata-Version: 2.1\nName: Odd_Ball\nVersion: 1.0+local\nLicense: BSD\n\
         Author: Some One\n",
    );
    std::os::unix::fs::symlink(
        "/etc/shadow",
        root.join(format!("{site}/oddball-1.0+local.dist-info/LICENSE")),
    )
    .unwrap();
    write(
        root,
        "payload/app/installed.json",
        r#"[{"name": "django", "version": "5.1.2", "file": "django-5.1.2-py3-none-any.whl", "sha256": "bd7376f90c99f96b643722eee676498706c9fd7dc759f55ebfaf2c08ebcdf4f0"},
            {"name": "redis", "version": "5.0.8", "file": "redis-5.0.8.tar.gz", "sha256": null}]"#,
    );
}

#[test]
fn a_release_tree_in_both_formats() {
    let tmp = tempfile::tempdir().unwrap();
    release_tree(tmp.path());
    let mut inv = inventory::of_release(
        tmp.path(),
        Subject {
            name: "demo".to_owned(),
            version: "1.0.0".to_owned(),
            summary: Some("A demo app".to_owned()),
        },
        1_700_000_000,
        "0.1.0",
    )
    .unwrap();
    let names: Vec<_> = inv.components.iter().map(|c| c.purl.as_str()).collect();
    assert_eq!(
        names,
        [
            "pkg:generic/berth@0.1.0",
            "pkg:pypi/django@5.1.2",
            "pkg:pypi/odd-ball@1.0%2Blocal",
            "pkg:generic/python@3.12.7",
            "pkg:pypi/redis@5.0.8",
            "pkg:pypi/zope-interface@7.0",
        ]
    );
    // The symlinked licence file is not read; the named one is.
    let odd = &inv.components[2];
    assert!(odd.licence.texts.is_empty());
    assert_eq!(inv.components[1].licence.texts[0].file, "LICENSE");
    assert_eq!(inv.components[3].licence.texts[0].file, "LICENSE.txt");
    // The vendor concluded one ambiguous licence; the documents say so.
    let policy: berth_model::manifest::LicencesDecl = toml::from_str(
        "[components.odd-ball]\nconcluded = \"BSD-2-Clause\"\nreason = \"its LICENSE is BSD 2-clause\"\n",
    )
    .unwrap();
    let verdict = berth_sbom::policy::apply(&mut inv, &policy);
    assert!(
        verdict.refused.iter().all(|r| r.name == "zope.interface"),
        "{verdict:?}"
    );
    let cdx = cyclonedx::document(&inv);
    insta::assert_snapshot!("cyclonedx", cdx);
    insta::assert_snapshot!("spdx", spdx::document(&inv));
    // The same inventory gives the same bytes; another gives another serial number.
    assert_eq!(cdx, cyclonedx::document(&inv));
    let mut other = inv.clone();
    other.components.pop();
    let serial = |d: &str| {
        serde_json::from_str::<serde_json::Value>(d).unwrap()["serialNumber"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_ne!(serial(&cdx), serial(&cyclonedx::document(&other)));
}

#[test]
fn a_distribution_without_a_version_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "payload/app/lib/python3.12/site-packages/broken-1.dist-info/METADATA",
        "Metadata-Version: 2.1\nName: broken\n",
    );
    let e = inventory::of_release(
        tmp.path(),
        Subject {
            name: "demo".to_owned(),
            version: "1".to_owned(),
            summary: None,
        },
        0,
        "0.1.0",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("broken-1.dist-info/METADATA") && e.contains("Version:"),
        "{e}"
    );
}
