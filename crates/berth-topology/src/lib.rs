//! Plans a fleet: how many nodes of each role an app needs for a load, how big each
//! is, which roles share nodes, and the order a fleet brings them up in.
//!
//! Pure: a manifest's (or a catalog's) `[roles]` and `[sizing]` and a request in, a
//! [`Plan`] or a [`Refusal`] out. Two ways of sizing, by what the input has:
//!
//! - **Measured tiers** (`[[sizing.tiers]]`, a published reference-architecture
//!   table): the smallest tier that carries the load, highly available if asked. Below
//!   the smallest highly available tier, `--ha` takes that tier with each role cut to
//!   the fewest nodes its kind of availability needs (the published "lower user
//!   counts" rule). Beyond the largest tier nothing was measured: refused.
//! - **Per-role capacity**: one node of `[sizing.single_node]`'s size while it carries
//!   the load; else each role `max(nodes.min, ⌈load / capacity_rps⌉)` nodes, raised to
//!   `nodes.ha` (odd for a majority) with `--ha`, refused above `nodes.max`.
//!
//! [`show`] prints a plan as tables; [`site_config`] writes one node's `site.toml`.

pub mod engines;
pub mod node;
mod plan;
mod show;

use std::collections::BTreeMap;

use berth_model::topology::{Catalog, RoleDecl, SizingDecl};
use serde::Serialize;

pub use plan::plan;
pub use show::{human_memory, show, site_config};

/// Roles and sizing to plan with: an app manifest's or a catalog's.
#[derive(Debug, Clone, Copy)]
pub struct Sizing<'a> {
    /// The app's or the catalog's name, shown in plans.
    pub name: &'a str,
    /// `[roles]`.
    pub roles: &'a BTreeMap<String, RoleDecl>,
    /// `[sizing]`.
    pub sizing: &'a SizingDecl,
}

impl<'a> Sizing<'a> {
    /// The roles and sizing of an app manifest.
    pub fn of_manifest(m: &'a berth_model::Manifest) -> Self {
        Self {
            name: &m.app.name,
            roles: &m.roles,
            sizing: &m.sizing,
        }
    }

    /// The roles and sizing of a standalone catalog.
    pub fn of_catalog(c: &'a Catalog) -> Self {
        Self {
            name: &c.catalog.name,
            roles: &c.roles,
            sizing: &c.sizing,
        }
    }
}

/// The load to plan for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Users, turned into requests per second by `sizing.users_per_rps`.
    Users(u64),
    /// Peak requests per second.
    Rps(u64),
}

/// What to plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The load.
    pub load: Load,
    /// Whether every role that can be made highly available must be.
    pub ha: bool,
}

/// Why no plan could be made, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// What is impossible, as a sentence without a final period.
    pub message: String,
    /// How to get a plan.
    pub help: String,
}

/// A planned fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The app or catalog planned from.
    pub source: String,
    /// The peak requests per second planned for.
    pub rps: u64,
    /// The users asked for, when the load was given as users.
    pub users: Option<u64>,
    /// Whether the plan is highly available.
    pub ha: bool,
    /// How the sizes were reached.
    pub basis: Basis,
    /// Every role with nodes, in bring-up order.
    pub roles: Vec<RolePlan>,
    /// Every node.
    pub nodes: Vec<NodePlan>,
    /// Roles brought up together, wave after wave (a role placed with another comes
    /// up with it).
    pub waves: Vec<Vec<String>>,
    /// Roles whose one node, lost, takes their function down.
    pub single_points: Vec<String>,
    /// Sums over every node.
    pub total: Total,
}

/// How a plan's sizes were reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Basis {
    /// One node runs every role.
    SingleNode {
        /// The most it carries.
        max_rps: u64,
    },
    /// A measured tier.
    Tier {
        /// Its name.
        name: String,
        /// Its load.
        rps: u64,
        /// Its users, as published.
        users: Option<u64>,
        /// Cut to the fewest highly available nodes, for a load a smaller tier carries.
        reduced: bool,
    },
    /// Per-role capacity.
    Capacity,
}

/// One role in a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolePlan {
    /// Its name.
    pub name: String,
    /// Its nodes (those of the role it is placed with, if it is).
    pub nodes: u32,
    /// The role whose nodes it shares.
    pub with: Option<String>,
    /// CPUs it needs on each node, when known.
    pub cpus: Option<u32>,
    /// Memory it needs on each node, when known.
    pub memory_bytes: Option<u64>,
    /// Why this many.
    pub why: String,
}

/// One node in a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodePlan {
    /// `web-2`.
    pub name: String,
    /// Its roles, its own first.
    pub roles: Vec<String>,
    /// CPUs.
    pub cpus: u32,
    /// Memory.
    pub memory_bytes: u64,
}

/// Sums over a plan's nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Total {
    /// Nodes.
    pub nodes: u32,
    /// CPUs.
    pub cpus: u64,
    /// Memory.
    pub memory_bytes: u64,
}

impl Plan {
    /// How many nodes role `name` has (0 when it has none).
    pub fn count(&self, name: &str) -> u32 {
        self.roles
            .iter()
            .find(|r| r.name == name)
            .map_or(0, |r| r.nodes)
    }
}
