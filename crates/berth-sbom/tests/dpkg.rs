//! This host's own Debian packages, read from `/var/lib/dpkg/status`: as many as
//! dpkg-query counts installed, and documents made of them that the formats' own
//! validators accept (the validators are those scripts/test.sh installs and names in
//! `BERTH_TEST_TOOLS`).

use std::path::PathBuf;
use std::process::Command;

use berth_sbom::dpkg::debian_components;
use berth_sbom::{Inventory, Subject, cyclonedx, spdx};

#[test]
fn the_hosts_packages_are_those_dpkg_query_counts() {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${db:Status-Status}\n"])
        .output()
        .expect("dpkg-query runs on a Debian host");
    assert!(out.status.success(), "{out:?}");
    let installed = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| *l == "installed")
        .count();
    let components = debian_components(std::path::Path::new("/")).unwrap();
    assert_eq!(components.len(), installed);

    let dpkg = components.iter().find(|c| c.name == "dpkg").unwrap();
    assert!(
        dpkg.purl
            .starts_with(&format!("pkg:deb/debian/dpkg@{}?arch=", dpkg.version)),
        "{}",
        dpkg.purl
    );
    assert!(dpkg.purl.ends_with("&distro=debian-12"), "{}", dpkg.purl);
    // dpkg's copyright file is machine-readable: its licences (one, public-domain-s-s-d,
    // is no SPDX licence, so Debian's words) and its text.
    assert_eq!(
        dpkg.licence.declared_as.as_deref(),
        Some("GPL-2+ and GPL-2 and BSD-2-clause and public-domain-s-s-d"),
        "{:?}",
        dpkg.licence.declared_as
    );
    // Many machine-readable files map to an SPDX expression (not all: one licence
    // without an SPDX identifier, as Perl's `Artistic` or `public-domain`, keeps a
    // file's licences Debian's words), and each such expression is valid SPDX.
    let expressions: Vec<&str> = components
        .iter()
        .filter_map(|c| c.licence.expression.as_deref())
        .collect();
    assert!(expressions.len() > 20, "{expressions:?}");
    for e in &expressions {
        assert!(::spdx::Expression::parse(e).is_ok(), "{e}");
    }
    assert!(!dpkg.licence.texts.is_empty());
    assert!(dpkg.supplier.is_some());
    // bom-refs are unique (Multi-Arch: same packages differ by arch).
    let mut refs: Vec<String> = components
        .iter()
        .map(berth_sbom::Component::bom_ref)
        .collect();
    refs.sort();
    refs.dedup();
    assert_eq!(refs.len(), components.len());
}

#[test]
#[allow(clippy::print_stderr)] // a skipped test says why
fn documents_of_the_hosts_packages_validate() {
    let Some(bin) = std::env::var_os("BERTH_TEST_TOOLS").map(PathBuf::from) else {
        eprintln!(
            "skipped: BERTH_TEST_TOOLS is not set (scripts/test.sh installs the CycloneDX and \
             SPDX validators and sets it)"
        );
        return;
    };
    let inv = Inventory {
        subject: Subject {
            name: "host".to_owned(),
            version: "1".to_owned(),
            summary: Some("This host's Debian packages".to_owned()),
        },
        created: 1_700_000_000,
        tool_version: "berth-0.1.0".to_owned(),
        components: debian_components(std::path::Path::new("/")).unwrap(),
    };
    let tmp = tempfile::tempdir().unwrap();
    let cdx = tmp.path().join("host.cdx.json");
    let spdx_file = tmp.path().join("host.spdx.json");
    std::fs::write(&cdx, cyclonedx::document(&inv)).unwrap();
    std::fs::write(&spdx_file, spdx::document(&inv)).unwrap();

    let check = Command::new(bin.join("python"))
        .arg("-c")
        .arg(
            "import sys\n\
             from cyclonedx.validation.json import JsonStrictValidator\n\
             from cyclonedx.schema import SchemaVersion\n\
             e = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())\n\
             sys.exit(str(e).splitlines()[0] if e else 0)\n",
        )
        .arg(&cdx)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let check = Command::new(bin.join("pyspdxtools"))
        .arg("-i")
        .arg(&spdx_file)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");

    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cdx).unwrap()).unwrap();
    let dpkg = doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "dpkg")
        .unwrap();
    assert!(dpkg["supplier"]["name"].is_string(), "{dpkg}");
    assert!(
        dpkg["properties"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "berth:source"),
        "{dpkg}"
    );
}
