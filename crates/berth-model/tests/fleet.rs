//! Fleet files checked against the app: every mistake reported at once, at its line
//! and column, with the fix; nothing about a node is left to be found over SSH.

use std::path::Path;

use berth_model::{LoadedFleet, LoadedManifest};
use insta::assert_snapshot;

fn netbox() -> LoadedManifest {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/netbox");
    LoadedManifest::load(Path::new(root)).expect("loads")
}

/// A directory with a key and a known_hosts file, and `fleet.toml` holding `text`.
fn fleet_dir(text: &str, site: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("id_ed25519"), "key").unwrap();
    std::fs::write(dir.path().join("known_hosts"), "").unwrap();
    std::fs::write(dir.path().join("fleet.toml"), text).unwrap();
    if let Some(site) = site {
        std::fs::write(dir.path().join("site.toml"), site).unwrap();
    }
    dir
}

fn errors(text: &str, site: Option<&str>) -> String {
    let dir = fleet_dir(text, site);
    let err = LoadedFleet::load(&dir.path().join("fleet.toml"), &netbox()).expect_err("errors");
    err.to_string()
        .replace(&dir.path().display().to_string(), "<dir>")
}

const HEAD: &str = r#"[fleet]
name = "prod"
identity = "id_ed25519"
known_hosts = "known_hosts"
site = "site.toml"
"#;

#[test]
fn the_reference_topology_is_valid() {
    let text = format!(
        "{HEAD}{}",
        r#"
[nodes.db-1]
address = "10.77.0.1"
roles = ["database", "cache", "consensus", "pooler"]
[nodes.db-2]
address = "10.77.0.2"
roles = ["database", "cache", "consensus", "pooler"]
[nodes.db-3]
address = "10.77.0.3"
roles = ["database", "cache", "consensus", "pooler"]
[nodes.lb]
address = "10.77.0.4"
roles = ["load-balancer"]
[nodes.web-1]
address = "10.77.0.5"
roles = ["web"]
[nodes.web-2]
address = "web2.example.net"
ssh_port = 2222
roles = ["web"]
[nodes.worker]
address = "10.77.0.7"
roles = ["worker"]
"#
    );
    let dir = fleet_dir(&text, Some("external_url = \"http://10.77.0.4/\"\n"));
    let f = LoadedFleet::load(&dir.path().join("fleet.toml"), &netbox()).expect("valid");
    assert_eq!(f.fleet.nodes.len(), 7);
    assert_eq!(f.nodes_with("web"), ["web-1", "web-2"]);
    assert_eq!(f.fleet.fleet.user, "root");
    assert_eq!(f.fleet.fleet.berth, "/usr/local/bin/berth");
    assert!(f.site_text.contains("external_url"));
}

#[test]
fn nodes_addresses_and_ssh_settings() {
    assert_snapshot!(errors(
        r#"[fleet]
name = "Prod"
user = "-oProxyCommand=sh"
identity = "missing_key"
known_hosts = "../known_hosts"
berth = "berth"
connect_timeout = "0s"
prefix = "relative/dir"

[nodes.db]
address = "10.77.0.1"
roles = ["database", "cache"]

[nodes.Web]
address = "10.77.0.01"
roles = ["web", "worker"]

[nodes.web-2]
address = "-oProxyCommand=touch /tmp/x"
roles = ["web"]

[nodes.web-3]
address = "10.77.0.1"
ssh_port = 22
roles = ["web"]
"#,
        None
    ));
}

#[test]
fn roles_and_what_each_kind_of_availability_needs() {
    assert_snapshot!(errors(
        &format!(
            "{HEAD}{}",
            r#"
[nodes.db-1]
address = "10.0.0.1"
roles = ["database", "cache", "pooler", "pooler"]
[nodes.db-2]
address = "10.0.0.2"
roles = ["database", "cache", "consensus"]
[nodes.web-1]
address = "10.0.0.3"
roles = ["web", "databse", "consensus"]
[nodes.web-2]
address = "10.0.0.4"
roles = []
[nodes.web-3]
address = "10.0.0.5"
roles = ["web"]
"#
        ),
        Some("roles = [\"web\"]\n[web]\nwrokers = 3\n")
    ));
}
