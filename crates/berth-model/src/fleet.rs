//! The fleet file: the machines of one installation of an app, which roles each takes,
//! and how berth reaches them (the system's OpenSSH client, host keys checked).
//!
//! ```toml
//! [fleet]
//! name = "netbox-prod"
//! identity = "id_ed25519"        # relative to this file
//! known_hosts = "known_hosts"    # every node's host key, checked strictly
//! site = "site.toml"             # the site config every node starts from
//!
//! [nodes.database-1]
//! address = "10.0.0.11"
//! roles = ["database", "cache", "consensus", "pooler"]
//!
//! [nodes.web-1]
//! address = "10.0.0.21"
//! roles = ["web"]
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A whole fleet file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetFile {
    /// How berth reaches the nodes, and what every node shares.
    pub fleet: FleetMeta,
    /// The machines, by name.
    #[serde(default)]
    pub nodes: BTreeMap<String, NodeDecl>,
}

/// `[fleet]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetMeta {
    /// The fleet's name, shown by `fleet status` (lowercase letters, digits, `-`).
    pub name: String,
    /// The user berth logs in as over SSH (it runs berth there, so root or one allowed
    /// to become root without a password).
    #[serde(default = "root")]
    pub user: String,
    /// The SSH private key, relative to the fleet file.
    pub identity: String,
    /// The nodes' host keys (OpenSSH `known_hosts`), relative to the fleet file. A node
    /// whose key is missing or different is refused.
    pub known_hosts: String,
    /// The site config every node starts from, relative to the fleet file; berth adds
    /// each node's `roles` and the fleet's addresses.
    #[serde(default)]
    pub site: Option<String>,
    /// The instance's prefix on every node (default berth's own).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Where berth is on every node.
    #[serde(default = "default_berth")]
    pub berth: String,
    /// How long to wait for a node to answer, e.g. `"5s"`.
    #[serde(default = "default_timeout")]
    pub connect_timeout: String,
}

fn root() -> String {
    "root".to_owned()
}

fn default_berth() -> String {
    "/usr/local/bin/berth".to_owned()
}

fn default_timeout() -> String {
    "5s".to_owned()
}

/// `[nodes.<name>]`: one machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeDecl {
    /// The address berth and the other nodes reach it at: an IP address or a DNS name.
    pub address: String,
    /// Its SSH port.
    #[serde(default = "ssh_port")]
    pub ssh_port: u16,
    /// The roles it takes (the manifest's `[roles]`).
    pub roles: Vec<String>,
    /// The instance's prefix on this node, if not the fleet's.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Settings of this node only, over the shared site config's:
    /// `[nodes.web-1.settings.web] workers = 9`.
    #[serde(default)]
    pub settings: toml::Table,
}

fn ssh_port() -> u16 {
    22
}

/// A fleet file with its text and directory (paths in it are relative to that).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedFleet {
    /// The parsed file.
    pub fleet: FleetFile,
    /// Display name of the file.
    pub source_name: String,
    /// Its text.
    pub source_text: String,
    /// The directory it is in.
    pub dir: PathBuf,
    /// The shared site config's text (empty when `site` is not given).
    pub site_text: String,
}

impl LoadedFleet {
    /// `path` from the fleet file, made absolute against its directory.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    /// The nodes taking `role`, by name.
    pub fn nodes_with(&self, role: &str) -> Vec<&str> {
        self.fleet
            .nodes
            .iter()
            .filter(|(_, n)| n.roles.iter().any(|r| r == role))
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

/// `[fleet]` of a node's site config, written by `berth fleet up`: which node this is
/// and where every node of the fleet is, so templates can point at the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetView {
    /// The fleet's name.
    pub name: String,
    /// This node's name (a key of `nodes`).
    pub node: String,
    /// Every node of the fleet.
    pub nodes: BTreeMap<String, FleetPeer>,
    /// The networks the other nodes connect from, for access lists
    /// (`node.peer_networks`); each node's address as a one-host network when empty.
    /// A cluster's pods connect from its pod network, not from their Services.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
}

/// One node as the others see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetPeer {
    /// Its address.
    pub address: String,
    /// Its roles.
    pub roles: Vec<String>,
}

/// Whether `s` is a network as access lists take it: an IP address, `/`, a prefix
/// length no longer than the address.
pub fn is_network(s: &str) -> bool {
    let Some((ip, len)) = s.split_once('/') else {
        return false;
    };
    let Ok(ip) = ip.parse::<std::net::IpAddr>() else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    !len.is_empty()
        && len.len() <= 3
        && len.chars().all(|c| c.is_ascii_digit())
        && len.parse::<u8>().is_ok_and(|n| n <= max)
}

impl FleetView {
    /// This node's own entry.
    pub fn me(&self) -> Option<&FleetPeer> {
        self.nodes.get(&self.node)
    }

    /// Whether some node of the fleet takes a role of `m` that runs `engine`.
    pub fn runs(&self, m: &crate::Manifest, engine: crate::topology::Engine) -> bool {
        self.nodes.values().any(|n| {
            n.roles
                .iter()
                .any(|r| m.roles.get(r).is_some_and(|d| d.engines.contains(&engine)))
        })
    }

    /// The role of `m` whose PostgreSQL Patroni runs in this fleet: the one with
    /// `ha = "patroni"`, once some node runs etcd for it to elect its leader in.
    pub fn patroni_role<'m>(&self, m: &'m crate::Manifest) -> Option<&'m str> {
        if !self.runs(m, crate::topology::Engine::Etcd) {
            return None;
        }
        m.roles
            .iter()
            .find(|(_, d)| d.ha == crate::topology::HaKind::Patroni && d.patroni.is_some())
            .map(|(name, _)| name.as_str())
    }

    /// The role of `m` whose Redis Sentinel watches in this fleet: the one with
    /// `ha = "sentinel"` and a `sentinel` table, once more than one node takes it.
    pub fn sentinel_role<'m>(&self, m: &'m crate::Manifest) -> Option<&'m str> {
        m.roles
            .iter()
            .find(|(_, d)| d.ha == crate::topology::HaKind::Sentinel && d.sentinel.is_some())
            .map(|(name, _)| name.as_str())
            .filter(|r| self.hosts(r).len() > 1)
    }

    /// Addresses of the nodes taking `role`, by node name.
    pub fn hosts(&self, role: &str) -> Vec<&str> {
        self.nodes
            .values()
            .filter(|n| n.roles.iter().any(|r| r == role))
            .map(|n| n.address.as_str())
            .collect()
    }
}

#[cfg(test)]
mod network_tests {
    /// Only an address with a prefix length that fits it: anything else could add a
    /// method or an option to an access list line.
    #[test]
    fn only_networks_are_networks() {
        for ok in ["10.244.0.0/16", "0.0.0.0/0", "fd00::/8", "10.0.0.1/32"] {
            assert!(super::is_network(ok), "{ok}");
        }
        for bad in ["10.0.0.0", "10.0.0.0/33", "fd00::/129", "10.0.0.0/8 trust", "host/8", "10.0.0.0/", "10.0.0.0/+8"] {
            assert!(!super::is_network(bad), "{bad}");
        }
    }
}
