//! What a node is given: the app's manifest, its own site config (the fleet's shared
//! one with its `roles` and `[fleet]`), and the fleet's secrets; the order nodes come
//! up in; digests that tell which nodes a change reaches.

use std::collections::{BTreeMap, BTreeSet};

use berth_model::{LoadedFleet, LoadedManifest};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Everything `berth fleet node-up` needs on a node, sent on its standard input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodePayload {
    /// The manifest's files by relative path (`berth.toml` and its templates).
    pub manifest: BTreeMap<String, String>,
    /// The node's site config.
    pub site: String,
    /// The fleet's secrets by name (the same on every node).
    pub secrets: BTreeMap<String, String>,
    /// The release bundle the node installs from, sent before (`fleet node-receive`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<BundleRef>,
}

/// A release bundle a node was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleRef {
    /// Its file name (`<app>-<version>.berth-release.tar.zst`), as received.
    pub file: String,
    /// The vendor's public key it must be signed with (`ed25519:…`).
    pub public_key: String,
}

impl NodePayload {
    /// The digest of what would change the node: its manifest and site config.
    pub fn digest(&self) -> NodeDigest {
        NodeDigest {
            manifest: digest_files(&self.manifest),
            site: digest_text(&self.site),
        }
    }
}

/// What a node runs, as digests: compared to tell whether a change reaches it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDigest {
    /// SHA-256 of the manifest's files ([`digest_files`]).
    pub manifest: String,
    /// SHA-256 of the site config.
    pub site: String,
}

/// SHA-256 of `files`, each as its name and content with their lengths, in name order.
pub fn digest_files(files: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (name, text) in files {
        h.update((name.len() as u64).to_be_bytes());
        h.update(name.as_bytes());
        h.update((text.len() as u64).to_be_bytes());
        h.update(text.as_bytes());
    }
    hex::encode(h.finalize())
}

/// SHA-256 of `text`.
pub fn digest_text(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The manifest's files as a node stores them: `berth.toml` and every template.
pub fn manifest_files(m: &LoadedManifest) -> BTreeMap<String, String> {
    let mut files = m.templates.clone();
    files.insert("berth.toml".to_owned(), m.manifest.source_text.clone());
    files
}

/// Node `node`'s site config: the fleet's shared one with the node's `roles` first
/// and `[fleet]` (every node's address and roles) last, comments kept.
pub fn site_config(f: &LoadedFleet, node: &str) -> String {
    use toml_edit::{Array, DocumentMut, Item, Table, value};
    // The shared text was parsed and checked when the fleet file was loaded.
    let mut doc: DocumentMut = f.site_text.parse().unwrap_or_default();
    let roles: Array = f.fleet.nodes[node]
        .roles
        .iter()
        .map(String::as_str)
        .collect();
    let mut top = DocumentMut::new();
    top.decor_mut().set_prefix(format!(
        "# Node `{node}` of fleet `{}`, written by `berth fleet up`.\n",
        f.fleet.fleet.name
    ));
    top["roles"] = value(roles);
    for (k, v) in doc.as_table_mut().iter_mut() {
        top.insert(&k.to_string(), std::mem::replace(v, Item::None));
    }
    // The node's own settings over the shared ones, key by key.
    for (group, keys) in &f.fleet.nodes[node].settings {
        let Some(keys) = keys.as_table() else {
            continue;
        };
        if !top.contains_key(group) {
            let mut t = Table::new();
            t.decor_mut().set_prefix(format!(
                "\n# Settings of node `{node}` (the fleet file's).\n"
            ));
            top.insert(group, Item::Table(t));
        }
        for (key, v) in keys {
            if let Ok(parsed) = v.to_string().parse::<toml_edit::Value>() {
                top[group.as_str()][key.as_str()] = value(parsed);
            }
        }
    }
    let mut fleet = Table::new();
    fleet["name"] = value(f.fleet.fleet.name.as_str());
    fleet["node"] = value(node);
    let mut nodes = Table::new();
    nodes.set_implicit(true);
    for (name, n) in &f.fleet.nodes {
        let mut t = Table::new();
        t["address"] = value(n.address.as_str());
        let r: Array = n.roles.iter().map(String::as_str).collect();
        t["roles"] = value(r);
        nodes.insert(name, Item::Table(t));
    }
    fleet.insert("nodes", Item::Table(nodes));
    top.insert("fleet", Item::Table(fleet));
    top.to_string()
}

/// The nodes in bring-up order: waves of nodes brought up together. A node comes
/// after every role its roles come after (its latest role's rank); within a rank,
/// each node that runs a `once` hook or job comes first, alone, so the rest find its
/// work done (a migrated database), unless it is a member of a quorum.
pub fn waves(f: &LoadedFleet, m: &berth_model::Manifest) -> Vec<Vec<String>> {
    let ranks = berth_topology::node::role_ranks(m);
    let view = view(f, "");
    let once: BTreeSet<&str> = m
        .hooks
        .values()
        .filter(|h| h.fleet == berth_model::topology::Placement::Once)
        .map(|h| h.component.as_str())
        .chain(
            m.jobs
                .values()
                .filter(|j| j.fleet == berth_model::topology::Placement::Once)
                .map(|j| j.component.as_str()),
        )
        .filter_map(|c| berth_topology::node::once_node(m, &view, c))
        .collect();
    let mut by_rank: BTreeMap<usize, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for (name, n) in &f.fleet.nodes {
        let rank = n
            .roles
            .iter()
            .filter_map(|r| ranks.get(r))
            .max()
            .copied()
            .unwrap_or(0);
        // A member of a quorum (etcd) never comes up alone: its store needs a majority.
        let quorum = n.roles.iter().any(|r| {
            m.roles
                .get(r)
                .is_some_and(|d| d.ha == berth_model::topology::HaKind::Quorum)
        });
        let entry = by_rank.entry(rank).or_default();
        if once.contains(name.as_str()) && !quorum {
            entry.0.push(name.clone());
        } else {
            entry.1.push(name.clone());
        }
    }
    let mut out = Vec::new();
    for (_, (first, rest)) in by_rank {
        for n in first {
            out.push(vec![n]);
        }
        if !rest.is_empty() {
            out.push(rest);
        }
    }
    out
}

/// The fleet as node `node` sees it (`[fleet]` of its site config).
pub fn view(f: &LoadedFleet, node: &str) -> berth_model::fleet::FleetView {
    berth_model::fleet::FleetView {
        name: f.fleet.fleet.name.clone(),
        node: node.to_owned(),
        nodes: f
            .fleet
            .nodes
            .iter()
            .map(|(name, n)| {
                (
                    name.clone(),
                    berth_model::fleet::FleetPeer {
                        address: n.address.clone(),
                        roles: n.roles.clone(),
                    },
                )
            })
            .collect(),
        networks: Vec::new(),
    }
}
