//! The site config each workload's pods see: the administrator's, with the pod's role
//! and `[fleet]` naming every role's Service as that role's node, so each service finds
//! the others where a cluster puts them (`roles.<role>.host` is `<app>-<role>`) and
//! listens on its pod's address (`BERTH_NODE_ADDRESS`, from the downward API, replaces
//! its own node's address when the container starts). A role the site config puts
//! elsewhere (`[external]`) is a node at its host.

use std::collections::BTreeMap;

use toml_edit::{Array, DocumentMut, Item, Table, value};

use crate::workloads::{Outside, Workload};

/// The networks pods connect from when `--pod-network` names none: every private
/// range, so any cluster's pod network is in it (passwords still checked).
pub const PRIVATE_NETWORKS: [&str; 4] =
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8"];

/// Each role workload's site config text, by workload name; workloads of services no
/// role names get the administrator's text as it is (they find the others at
/// `127.0.0.1`, so they must share a pod with them).
pub fn per_workload(
    app: &str,
    site: &str,
    (plan, outside): (&[Workload], &[Outside]),
    networks: &[String],
) -> BTreeMap<String, String> {
    let nodes: Vec<&Workload> = plan.iter().filter(|w| !w.roles.is_empty()).collect();
    let mut out = BTreeMap::new();
    for w in plan {
        if w.roles.is_empty() {
            out.insert(w.name.clone(), without_external(site));
            continue;
        }
        // The administrator's text was parsed and checked before this.
        let mut doc: DocumentMut = site.parse().unwrap_or_default();
        let mut top = DocumentMut::new();
        top.decor_mut().set_prefix(format!(
            "# The `{}` pods' site config, written by `berth k8s render`: the site config\n\
             # given to it, with the pods' roles and where every role's Service is.\n",
            w.role
        ));
        top["roles"] = value(w.roles.iter().map(String::as_str).collect::<Array>());
        // `[external]` becomes the nodes below: the pods see where those roles are.
        doc.remove("external");
        for (k, v) in doc.as_table_mut().iter_mut() {
            top.insert(&k.to_string(), std::mem::replace(v, Item::None));
        }
        let mut fleet = Table::new();
        fleet["name"] = value(app);
        fleet["node"] = value(w.role.as_str());
        fleet["networks"] = value(networks.iter().map(String::as_str).collect::<Array>());
        let mut peers = Table::new();
        peers.set_implicit(true);
        for n in &nodes {
            let mut peer = Table::new();
            peer["address"] = value(n.name.as_str());
            peer["roles"] = value(n.roles.iter().map(String::as_str).collect::<Array>());
            peers.insert(&n.role, Item::Table(peer));
        }
        // A role elsewhere is a node at its host; roles at one host, one node (a
        // node's address is its own).
        let mut hosts: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for o in outside {
            let roles = hosts.entry(o.host.as_str()).or_default();
            if !roles.contains(&o.role.as_str()) {
                roles.push(&o.role);
            }
        }
        for (host, roles) in hosts {
            let mut peer = Table::new();
            peer["address"] = value(host);
            peer["roles"] = value(roles.iter().copied().collect::<Array>());
            peers.insert(roles[0], Item::Table(peer));
        }
        fleet.insert("nodes", Item::Table(peers));
        top.insert("fleet", Item::Table(fleet));
        out.insert(w.name.clone(), top.to_string());
    }
    out
}

/// The administrator's site config without `[external]`, which is the render's to
/// act on: a pod's berth runs what its site config gives it, as on a host.
pub fn without_external(site: &str) -> String {
    let mut doc: DocumentMut = site.parse().unwrap_or_default();
    if doc.remove("external").is_none() {
        return site.to_owned();
    }
    doc.to_string()
}
