//! `fleet upgrade`'s plan for NetBox's seven-node fleet (three database nodes, a load
//! balancer, two web nodes, a worker): the order, the drains, the maintenance page, the
//! migrating node first; a plan that needs a stop or moves backwards is refused.

use std::collections::BTreeSet;
use std::path::Path;

use berth_fleet::upgrade::{Action, Refused, plan};
use berth_model::{LoadedFleet, LoadedManifest};
use insta::assert_snapshot;

fn netbox() -> LoadedManifest {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/netbox");
    LoadedManifest::load(Path::new(root)).expect("loads")
}

/// NetBox's manifest at `version`.
fn at(version: &str) -> LoadedManifest {
    let mut m = netbox();
    version.clone_into(&mut m.manifest.app.version);
    m
}

const FLEET: &str = r#"
[fleet]
name = "prod"
identity = "id_ed25519"
known_hosts = "known_hosts"
site = "site.toml"

[nodes.db-1]
address = "10.77.0.1"
roles = ["database", "consensus", "pooler", "cache"]
[nodes.db-2]
address = "10.77.0.2"
roles = ["database", "consensus", "pooler", "cache"]
[nodes.db-3]
address = "10.77.0.3"
roles = ["database", "consensus", "pooler", "cache"]
[nodes.lb]
address = "10.77.0.4"
roles = ["load-balancer"]
[nodes.web-1]
address = "10.77.0.5"
roles = ["web"]
[nodes.web-2]
address = "10.77.0.6"
roles = ["web"]
[nodes.worker]
address = "10.77.0.7"
roles = ["worker"]
"#;

fn fleet(site: &str) -> (tempfile::TempDir, LoadedFleet) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("id_ed25519"), "key").unwrap();
    std::fs::write(dir.path().join("known_hosts"), "").unwrap();
    std::fs::write(dir.path().join("fleet.toml"), FLEET).unwrap();
    std::fs::write(dir.path().join("site.toml"), site).unwrap();
    let f = LoadedFleet::load(&dir.path().join("fleet.toml"), &netbox()).expect("valid");
    (dir, f)
}

/// The plan, one action per line.
fn lines(actions: &[Action]) -> String {
    actions
        .iter()
        .map(|a| match a {
            Action::Backup { node } => format!("backup       {node}"),
            Action::Install { nodes } => format!("install      {}", nodes.join(", ")),
            Action::Maintenance { nodes } => format!("maintenance  {}", nodes.join(", ")),
            Action::Drain { node, balancers } => {
                format!("drain        {node} (from {})", balancers.join(", "))
            }
            Action::Switch { nodes } => format!("switch       {}", nodes.join(", ")),
            Action::Restore { node, balancers } => {
                format!("restore      {node} (into {})", balancers.join(", "))
            }
            Action::PostDeploy { nodes } => format!("post-deploy  {}", nodes.join(", ")),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const SITE: &str = "external_url = \"http://10.77.0.4/\"\n";

/// 4.6.5 → 4.7.3 is offline (NetBox declares hops from 4.7.0 on online): the page on
/// the app's nodes, then the waves, the migrating web node alone before the other app
/// nodes.
#[test]
fn an_offline_hop_puts_the_page_up_then_switches_wave_by_wave() {
    let (_d, f) = fleet(SITE);
    let p = plan(&f, &at("4.6.5").manifest, &netbox(), &BTreeSet::new()).unwrap();
    assert!(!p.online);
    assert_snapshot!(lines(&p.actions), @r"
    backup       db-1
    install      web-1, web-2, worker
    maintenance  web-1, web-2, worker
    switch       db-1, db-2, db-3
    switch       lb
    switch       web-1
    switch       web-2, worker
    ");
}

/// 4.7.0 → 4.7.3 is online (NetBox's `online_from`): one node at a time; each web
/// node out of the load balancer while it switches.
#[test]
fn an_online_hop_switches_one_node_at_a_time_each_web_node_drained() {
    let (_d, f) = fleet(SITE);
    let p = plan(&f, &at("4.7.0").manifest, &netbox(), &BTreeSet::new()).unwrap();
    assert!(p.online);
    assert_snapshot!(lines(&p.actions), @r"
    backup       db-1
    install      web-1, web-2, worker
    switch       db-1
    switch       db-2
    switch       db-3
    switch       lb
    drain        web-1 (from lb)
    switch       web-1
    restore      web-1 (into lb)
    drain        web-2 (from lb)
    switch       web-2
    restore      web-2 (into lb)
    switch       worker
    ");
}

/// Run again after it stopped half way: the nodes on the new version are left
/// alone, and no second backup is made.
#[test]
fn a_plan_run_again_leaves_the_upgraded_nodes_alone() {
    let (_d, f) = fleet(SITE);
    let done: BTreeSet<String> = ["db-1", "db-2", "db-3", "lb", "web-1"]
        .map(String::from)
        .into();
    let p = plan(&f, &at("4.6.5").manifest, &netbox(), &done).unwrap();
    assert_eq!(p.done, ["db-1", "db-2", "db-3", "lb", "web-1"]);
    assert_snapshot!(lines(&p.actions), @r"
    install      web-2, worker
    maintenance  web-2, worker
    switch       web-2, worker
    ");
}

/// A stop on the way, a downgrade, the same version, and a setting the new version
/// renamed: refused, with what to do.
#[test]
fn impossible_upgrades_are_refused_with_the_way_out() {
    let (_d, f) = fleet(SITE);
    let err = plan(&f, &at("3.6.0").manifest, &netbox(), &BTreeSet::new()).unwrap_err();
    assert!(matches!(err, Refused::Stops { .. }), "{err}");
    assert_snapshot!(err.to_string(), @"netbox 3.6.0 reaches 4.7.3 only through a 3.7.x release: a fleet upgrade takes one hop at a time; upgrade the fleet to a 3.7.x release first (`berth fleet upgrade --to` its manifest), then to 4.7.3");
    let err = plan(&f, &at("4.8.0").manifest, &netbox(), &BTreeSet::new()).unwrap_err();
    assert!(err.to_string().contains("4.8.0"), "{err}");
    let err = plan(&f, &netbox().manifest, &netbox(), &BTreeSet::new()).unwrap_err();
    assert!(err.to_string().contains("already at 4.7.3"), "{err}");
}
