//! `berth fleet` across machines that are network namespaces on a private bridge, each
//! with its own sshd; berth runs in an admin namespace and reaches them with the
//! system's ssh, host keys checked against the fleet's own known_hosts.
//!
//! Before anything changes, every node must answer with its recorded host key and run
//! this berth: an unreachable node, a wrong or missing host key, and two nodes with one
//! address are each refused, and no node is touched.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use berth_tests::netns::Lab;
use berth_tests::{berth_bin, prefix_dir, root};

fn netbox() -> String {
    root().join("examples/netbox").display().to_string()
}

/// A fleet file for NetBox with nodes `(name, address, roles)`, the lab's key, and
/// `known_hosts` as given.
fn fleet_file(lab: &Lab, dir: &Path, nodes: &[(&str, &str, &str)], known_hosts: &str) -> PathBuf {
    std::fs::write(dir.join("known_hosts"), known_hosts).unwrap();
    let mut text = format!(
        "[fleet]\nname = \"lab\"\nidentity = \"{}\"\nknown_hosts = \"known_hosts\"\n\
         berth = \"{}\"\nprefix = \"{}\"\nconnect_timeout = \"2s\"\n",
        lab.identity().display(),
        berth_bin().display(),
        dir.join("instance").display()
    );
    for (name, address, roles) in nodes {
        let _ = write!(
            text,
            "\n[nodes.{name}]\naddress = \"{address}\"\nroles = [{roles}]\n"
        );
    }
    let path = dir.join("fleet.toml");
    std::fs::write(&path, text).unwrap();
    path
}

const DB: &str = "\"database\", \"cache\"";
const WEB: &str = "\"web\"";
const WORKER: &str = "\"worker\"";

/// A lab of three machines, sshd on the first two (the third refuses connections).
fn lab() -> (tempfile::TempDir, Lab) {
    let dir = prefix_dir("fleet");
    let mut lab = Lab::new(3, dir.path());
    lab.start_sshd(1);
    lab.start_sshd(2);
    (dir, lab)
}

fn addresses(lab: &Lab) -> (String, String, String) {
    (
        lab.nodes[0].address.clone(),
        lab.nodes[1].address.clone(),
        lab.nodes[2].address.clone(),
    )
}

fn fleet(lab: &Lab, command: &str, f: &Path, json: bool) -> berth_tests::Run {
    let f = f.display().to_string();
    let mut args = vec![
        "--manifest",
        NETBOX.as_str(),
        "fleet",
        command,
        "--fleet",
        &f,
    ];
    if json {
        args.push("--json");
    }
    lab.berth(&args)
}

static NETBOX: std::sync::LazyLock<String> = std::sync::LazyLock::new(netbox);

/// The web node also takes the worker's role: two machines carry the whole app.
const WEB_AND_WORKER: &str = "\"web\", \"worker\"";

#[test]
fn ready_nodes_pass_and_report_their_status() {
    let (dir, lab) = lab();
    let (a1, a2, _) = addresses(&lab);
    let hosts = format!("{}{}", lab.known_host(1), lab.known_host(2));
    let f = fleet_file(
        &lab,
        dir.path(),
        &[("db", &a1, DB), ("web", &a2, WEB_AND_WORKER)],
        &hosts,
    );
    let r = fleet(&lab, "check", &f, false);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("Every node is ready."), "{}", r.stdout);
    assert!(r.stdout.contains(&format!("{a1}:22")), "{}", r.stdout);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        r.stdout.lines().filter(|l| l.ends_with(version)).count(),
        2,
        "both nodes run berth {version}: {}",
        r.stdout
    );
    let r = fleet(&lab, "check", &f, true);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["ready"], true);
    assert_eq!(v["nodes"][0]["berth"], version);

    // Status: every node answers; none is set up yet, so the fleet is not healthy.
    let r = fleet(&lab, "status", &f, true);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["healthy"], false);
    assert_eq!(v["nodes"].as_array().unwrap().len(), 2);
    for n in v["nodes"].as_array().unwrap() {
        assert_eq!(n["set_up"], false, "{n}");
        assert!(n["problem"].is_null(), "{n}");
    }
    let r = fleet(&lab, "status", &f, false);
    assert!(r.stdout.contains("not set up"), "{}", r.stdout);
    assert!(r.stdout.contains("0 of 2 nodes healthy."), "{}", r.stdout);
    assert!(!dir.path().join("instance").exists(), "no node was changed");
}

#[test]
fn unreachable_nodes_are_refused() {
    let (dir, lab) = lab();
    let (a1, a2, a3) = addresses(&lab);
    let hosts = format!("{}{}", lab.known_host(1), lab.known_host(2));
    // Nothing at one address; a machine without sshd at the other.
    let f = fleet_file(
        &lab,
        dir.path(),
        &[
            ("db", &a1, DB),
            ("web", &a2, WEB),
            ("worker", &lab.nobody(), WORKER),
            ("worker-2", &a3, WORKER),
        ],
        &hosts,
    );
    let r = fleet(&lab, "check", &f, false);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("2 of 4 nodes are not ready; nothing was changed on any node"),
        "{}",
        r.stderr
    );
    let nobody = lab.nobody();
    assert!(
        r.stderr.contains(&format!(
            "worker: node `worker` ({nobody}:22) cannot be reached"
        )),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!(
            "worker-2: node `worker-2` ({a3}:22) cannot be reached"
        )),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("Connection refused"), "{}", r.stderr);
    assert!(r.stdout.contains("unreachable"), "{}", r.stdout);
    assert!(!dir.path().join("instance").exists(), "no node was changed");
}

#[test]
fn host_keys_are_checked_never_learnt() {
    let (dir, lab) = lab();
    let (a1, a2, _) = addresses(&lab);
    // A key that is not the node's: refused, with what to find out first.
    let other = dir.path().join("other_key");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(out.status.success());
    let other_key = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let other_key: Vec<&str> = other_key.split_whitespace().take(2).collect();
    let wrong = format!("{}{a2} {}\n", lab.known_host(1), other_key.join(" "));
    let f = fleet_file(
        &lab,
        dir.path(),
        &[("db", &a1, DB), ("web", &a2, WEB_AND_WORKER)],
        &wrong,
    );
    let r = fleet(&lab, "check", &f, false);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("HOST KEY CHANGED"), "{}", r.stdout);
    assert!(
        r.stderr.contains(&format!(
            "web: node `web` ({a2}:22) answered with a different host key than the fleet's known hosts file records"
        )),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("someone may be in the middle"),
        "{}",
        r.stderr
    );

    // A node whose key is not recorded at all: refused, and the key is not added.
    let only_first = lab.known_host(1);
    let f = fleet_file(
        &lab,
        dir.path(),
        &[("db", &a1, DB), ("web", &a2, WEB_AND_WORKER)],
        &only_first,
    );
    let r = fleet(&lab, "check", &f, false);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("host key unknown"), "{}", r.stdout);
    assert!(
        r.stderr
            .contains("has no host key in the fleet's known hosts file"),
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("known_hosts")).unwrap(),
        only_first,
        "ssh must not add the key it was shown"
    );
    assert!(!dir.path().join("instance").exists(), "no node was changed");
}

#[test]
fn two_nodes_with_one_address_are_refused_before_any_ssh() {
    let (dir, lab) = lab();
    let (a1, a2, _) = addresses(&lab);
    let hosts = format!("{}{}", lab.known_host(1), lab.known_host(2));
    let f = fleet_file(
        &lab,
        dir.path(),
        &[("db", &a1, DB), ("web", &a2, WEB), ("worker", &a2, WORKER)],
        &hosts,
    );
    let r = fleet(&lab, "check", &f, false);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "nodes `web` and `worker` have the same address `{a2}`"
        )),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("fleet.toml:"), "{}", r.stderr);
    assert!(r.stdout.is_empty(), "no node was contacted: {}", r.stdout);
}
