//! Roles and sizing: how an app is spread over several machines.
//!
//! `[roles.<name>]` says what a node of each role runs (manifest services, or one of
//! the engines berth configures itself), what must be up before it, how it is made
//! highly available and how it grows with load. `[sizing]` turns a number of users
//! into requests per second and may carry a measured table of sizes (tiers). A
//! standalone catalog ([`Catalog`]) has the same two sections without an app: a
//! published reference-architecture table as data. The planner is `berth-topology`'s.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `[roles.<name>]`: one kind of node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleDecl {
    /// What the role is for, one line.
    #[serde(default)]
    pub summary: String,
    /// Manifest services a node of this role runs (each service in one role).
    #[serde(default)]
    pub services: Vec<String>,
    /// Engines berth configures and runs on a node of this role, beside its services.
    #[serde(default)]
    pub engines: Vec<Engine>,
    /// Placed on the nodes of this other role instead of nodes of its own (PgBouncer
    /// on the database nodes): as many as that role has, its CPUs and memory added.
    #[serde(default)]
    pub with: Option<String>,
    /// Roles brought up before this one (a fleet converges in this order).
    #[serde(default)]
    pub after: Vec<String>,
    /// How the role survives losing a node.
    #[serde(default)]
    pub ha: HaKind,
    /// How many nodes it takes.
    #[serde(default)]
    pub nodes: NodeCounts,
    /// Requests per second one node of this role carries: the count grows with load.
    #[serde(default)]
    pub capacity_rps: Option<u32>,
    /// Present only when the role it names has more than one node (a load balancer
    /// in front of the web nodes).
    #[serde(default)]
    pub fronts: Option<String>,
    /// CPUs one node of this role needs.
    #[serde(default)]
    pub cpus: Option<u32>,
    /// Memory one node of this role needs (`"4GiB"`, `"7.5GB"`).
    #[serde(default)]
    pub memory: Option<String>,
    /// Its nodes answer at the app's URL: `up` on them waits for the health path
    /// (asked of the node itself); a node without such a role waits for its services.
    #[serde(default)]
    pub health: bool,
    /// With `ha = "patroni"`: where the role's PostgreSQL keeps its cluster, so that
    /// Patroni can run it.
    #[serde(default)]
    pub patroni: Option<PatroniDecl>,
    /// With `ha = "sentinel"`: what Sentinel needs to know of the app's Redis.
    #[serde(default)]
    pub sentinel: Option<SentinelDecl>,
}

/// `[roles.<name>.sentinel]`: what Sentinel needs to know of the app's Redis. In a
/// fleet where the role has several nodes, the first is the master, the others its
/// replicas, and a Sentinel on each node promotes a replica when the master fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentinelDecl {
    /// The setting holding Redis's port (`"redis.port"`).
    pub port: String,
    /// A file of `[[files]]` (its `path`): the app's `redis.conf`, which berth's own
    /// includes before making the node a replica.
    pub config_file: String,
    /// The secret Redis asks its clients for (`requirepass`): replicas and Sentinel
    /// log in to the master with it.
    pub password: String,
    /// The port Sentinel listens on, on each node of the role.
    #[serde(default = "SentinelDecl::default_port")]
    pub sentinel_port: u16,
}

impl SentinelDecl {
    /// Sentinel's own default.
    fn default_port() -> u16 {
        26379
    }
}

/// `[roles.<name>.patroni]`: what Patroni needs to know of the app's PostgreSQL. In a
/// fleet with a consensus role, Patroni takes over the role's one service: it
/// bootstraps the cluster on one node, clones it to the others and elects the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatroniDecl {
    /// PostgreSQL's binaries (`initdb`, `pg_ctl`, `pg_rewind`, ...).
    pub bin_dir: String,
    /// The cluster's directory, relative to the instance's data directory.
    pub data_dir: String,
    /// The setting holding PostgreSQL's port (`"postgresql.port"`).
    pub port: String,
    /// A file of `[[files]]` (its `path`) with the app's PostgreSQL settings: Patroni
    /// includes it, then sets what replication needs (addresses, port, WAL).
    pub config_file: String,
    /// A file of `[[files]]` (its `path`): the app's `pg_hba.conf`, which must let the
    /// database nodes replicate from each other (`host replication all <peer> ...`).
    pub hba_file: String,
    /// Hooks that Patroni's bootstrap does instead (the one running `initdb`): they do
    /// not run under Patroni.
    #[serde(default)]
    pub bootstrap_hooks: Vec<String>,
    /// Port of Patroni's REST API on each database node (the load balancer asks it
    /// which node leads).
    #[serde(default = "PatroniDecl::default_rest_port")]
    pub rest_port: u16,
}

impl PatroniDecl {
    /// Patroni's own default.
    fn default_rest_port() -> u16 {
        8008
    }
}

/// `nodes = { min = 1, ha = 3, max = 9 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeCounts {
    /// Nodes it always has once the app spans several machines (0: only when highly
    /// available, or only when it fronts several nodes).
    #[serde(default = "one")]
    pub min: u32,
    /// The fewest nodes that make it highly available (`berth plan topology --ha`).
    #[serde(default)]
    pub ha: Option<u32>,
    /// The most it may have (a plan needing more is refused).
    #[serde(default)]
    pub max: Option<u32>,
}

fn one() -> u32 {
    1
}

impl Default for NodeCounts {
    fn default() -> Self {
        Self {
            min: 1,
            ha: None,
            max: None,
        }
    }
}

/// How a role is made highly available.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HaKind {
    /// It cannot be: one node, a single point of failure the plan names.
    #[default]
    None,
    /// Stateless copies behind a load balancer or a queue: two are enough.
    Replicas,
    /// PostgreSQL under Patroni: a leader elected in the consensus store, streaming
    /// replicas, automatic failover. Needs a role with the `etcd` engine.
    Patroni,
    /// Redis replicas watched by Sentinel, which promotes one when the master fails:
    /// an odd number of at least three.
    Sentinel,
    /// A consensus store (etcd): an odd number of at least three, a majority up.
    Quorum,
}

impl HaKind {
    /// Its name in a manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Replicas => "replicas",
            Self::Patroni => "patroni",
            Self::Sentinel => "sentinel",
            Self::Quorum => "quorum",
        }
    }

    /// The fewest nodes that make a role of this kind highly available.
    pub fn least_nodes(self) -> u32 {
        match self {
            Self::None => 1,
            Self::Replicas | Self::Patroni => 2,
            Self::Sentinel | Self::Quorum => 3,
        }
    }

    /// Whether a majority vote needs an odd number of nodes.
    pub fn needs_odd(self) -> bool {
        matches!(self, Self::Sentinel | Self::Quorum)
    }
}

/// Engines berth itself configures and supervises on a node (from the distribution's
/// packages), as opposed to the app's own services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// etcd: the consensus store Patroni elects its leader in.
    Etcd,
    /// PgBouncer: a connection pooler in front of the PostgreSQL leader.
    Pgbouncer,
    /// HAProxy: spreads requests over the web nodes, sends database clients to the leader.
    Haproxy,
}

impl Engine {
    /// Every engine, for help lines.
    pub const ALL: [Engine; 3] = [Engine::Etcd, Engine::Pgbouncer, Engine::Haproxy];

    /// Its name in a manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Etcd => "etcd",
            Self::Pgbouncer => "pgbouncer",
            Self::Haproxy => "haproxy",
        }
    }
}

/// Where a hook or a job runs in a fleet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// On every node that has its component.
    #[default]
    Every,
    /// On one node of the fleet: the first, in bring-up order, that has its component.
    Once,
}

/// `[sizing]`: from users to load, and measured sizes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizingDecl {
    /// How many users make one request per second at peak (`--users` is divided by it).
    #[serde(default)]
    pub users_per_rps: Option<u32>,
    /// Up to this load, without `--ha`, every role shares one node of this size.
    #[serde(default)]
    pub single_node: Option<SingleNodeDecl>,
    /// Measured sizes, smallest first: a plan takes the smallest that carries the load.
    #[serde(default)]
    pub tiers: Vec<TierDecl>,
}

/// `[sizing.single_node]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SingleNodeDecl {
    /// The most requests per second one node carries.
    pub max_rps: u32,
    /// Its CPUs.
    pub cpus: u32,
    /// Its memory.
    pub memory: String,
}

/// `[[sizing.tiers]]`: one measured size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierDecl {
    /// Its name (`"3K"`).
    pub name: String,
    /// The peak requests per second it was sized for.
    pub rps: u32,
    /// The users it was sized for, as published.
    #[serde(default)]
    pub users: Option<u32>,
    /// Whether it is highly available as published.
    #[serde(default)]
    pub ha: bool,
    /// A size where one node runs every role.
    #[serde(default)]
    pub single_node: Option<TierNode>,
    /// Nodes of each role, with their size.
    #[serde(default)]
    pub roles: BTreeMap<String, TierRole>,
}

/// One node's size in a tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierNode {
    /// CPUs.
    pub cpus: u32,
    /// Memory.
    pub memory: String,
}

/// `roles.<name> = { nodes = 3, cpus = 8, memory = "7.2GB" }` in a tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierRole {
    /// How many nodes.
    pub nodes: u32,
    /// CPUs of each.
    pub cpus: u32,
    /// Memory of each.
    pub memory: String,
}

/// A standalone sizing catalog: `[catalog]`, `[roles]`, `[sizing]`, no app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// What the catalog is and where its figures come from.
    pub catalog: CatalogMeta,
    /// The roles its sizes are made of.
    #[serde(default)]
    pub roles: BTreeMap<String, RoleDecl>,
    /// Its sizes.
    #[serde(default)]
    pub sizing: SizingDecl,
}

/// `[catalog]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogMeta {
    /// Short name, shown in plans.
    pub name: String,
    /// One line saying what it is.
    #[serde(default)]
    pub summary: String,
    /// Where the figures were published.
    #[serde(default)]
    pub source: String,
}

/// A catalog with the text it was parsed from, for positioned errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedCatalog {
    /// The parsed catalog.
    pub catalog: Catalog,
    /// Display name of the file.
    pub source_name: String,
    /// Its text.
    pub source_text: String,
}
