//! The planner against the shipped catalog (a published reference-architecture table)
//! and the reference app's manifest; refusals of impossible requests.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use berth_model::{LoadedCatalog, LoadedManifest};
use berth_topology::{Load, Plan, Request, Sizing, plan, show, site_config};
use insta::assert_snapshot;

fn examples() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples"))
}

fn catalog() -> LoadedCatalog {
    LoadedCatalog::load(&examples().join("catalogs/gitlab-reference-architectures.toml"))
        .expect("the shipped catalog is valid")
}

fn netbox() -> LoadedManifest {
    let m = LoadedManifest::load(&examples().join("netbox")).expect("loads");
    berth_model::validate(&m).expect("valid");
    m
}

fn users(n: u64, ha: bool) -> Request {
    Request {
        load: Load::Users(n),
        ha,
    }
}

fn counts(p: &Plan) -> BTreeMap<&str, u32> {
    p.roles
        .iter()
        .filter(|r| r.with.is_none())
        .map(|r| (r.name.as_str(), r.nodes))
        .collect()
}

/// The published node counts, typed from the reference-architecture pages (not read
/// from the catalog): role → nodes at 2K, 3K, 5K, 10K, 25K, 50K (0: not in that size).
const PUBLISHED: [(&str, [u32; 6]); 14] = [
    ("external-load-balancer", [1, 1, 1, 1, 1, 1]),
    ("consul", [0, 3, 3, 3, 3, 3]),
    ("postgresql", [1, 3, 3, 3, 3, 3]),
    ("pgbouncer", [0, 3, 3, 3, 3, 3]),
    ("internal-load-balancer", [0, 1, 1, 1, 1, 1]),
    ("redis", [1, 3, 3, 0, 0, 0]),
    ("redis-cache", [0, 0, 0, 3, 3, 3]),
    ("redis-persistent", [0, 0, 0, 3, 3, 3]),
    ("gitaly", [1, 3, 3, 3, 3, 3]),
    ("praefect", [0, 3, 3, 3, 3, 3]),
    ("praefect-postgresql", [0, 1, 1, 1, 1, 1]),
    ("sidekiq", [1, 2, 2, 4, 4, 4]),
    ("rails", [2, 3, 3, 3, 5, 12]),
    ("monitoring", [1, 1, 1, 1, 1, 1]),
];

/// Each size, its user count and its published number of machines.
const SIZES: [(&str, u64, u32); 6] = [
    ("2K", 2000, 8),
    ("3K", 3000, 27),
    ("5K", 5000, 27),
    ("10K", 10000, 32),
    ("25K", 25000, 34),
    ("50K", 50000, 41),
];

#[test]
fn the_catalog_reproduces_the_published_node_counts() {
    let c = catalog();
    let s = Sizing::of_catalog(&c.catalog);
    for (i, (size, at, total)) in SIZES.iter().enumerate() {
        // At the size's own user count, and just above the size before it.
        let previous = if i == 0 { 1001 } else { SIZES[i - 1].1 + 1 };
        for n in [*at, previous] {
            let p = plan(&s, &users(n, false)).expect("plans");
            for (role, published) in PUBLISHED {
                assert_eq!(p.count(role), published[i], "{role} at {size} ({n} users)");
            }
            assert_eq!(p.total.nodes, *total, "nodes at {size} ({n} users)");
        }
    }
    // 1K: one node runs everything, 8 vCPU and 16 GB.
    let p = plan(&s, &users(1000, false)).expect("plans");
    assert_eq!(p.nodes.len(), 1);
    assert_eq!(
        (p.nodes[0].cpus, p.nodes[0].memory_bytes),
        (8, 16_000_000_000)
    );
    assert_eq!(
        p.nodes[0].roles,
        ["gitaly", "postgresql", "rails", "redis", "sidekiq"]
    );
}

#[test]
fn catalog_plans_as_text() {
    let c = catalog();
    let s = Sizing::of_catalog(&c.catalog);
    let mut out = String::new();
    for n in [1000, 2000, 3000, 10_000, 50_000] {
        out.push_str(&show(&plan(&s, &users(n, false)).expect("plans")));
        out.push_str("\n----\n\n");
    }
    assert_snapshot!(out);
}

#[test]
fn ha_below_the_smallest_ha_size_is_the_published_cut_down_3k() {
    let c = catalog();
    let s = Sizing::of_catalog(&c.catalog);
    let p = plan(&s, &users(1000, true)).expect("plans");
    let got = counts(&p);
    // "Rails and Sidekiq: two; PostgreSQL and PgBouncer: two; Consul, Redis Sentinel
    // and Praefect: an odd number, at least three."
    for (role, n) in [
        ("rails", 2),
        ("sidekiq", 2),
        ("postgresql", 2),
        ("pgbouncer", 2),
        ("consul", 3),
        ("redis", 3),
        ("praefect", 3),
        ("gitaly", 3),
    ] {
        assert_eq!(got[role], n, "{role}");
    }
    assert_snapshot!(show(&p));
    // At 3,000 users the HA size is the published 3K as it is.
    let p = plan(&s, &users(3000, true)).expect("plans");
    assert_eq!(p.count("rails"), 3);
    assert_eq!(p.count("postgresql"), 3);
}

#[test]
fn impossible_requests_are_refused_with_the_fix() {
    let c = catalog();
    let s = Sizing::of_catalog(&c.catalog);
    let mut out = String::new();
    for req in [
        users(50_001, false),
        users(0, false),
        Request {
            load: Load::Rps(5000),
            ha: true,
        },
    ] {
        let r = plan(&s, &req).expect_err("refused");
        let _ = write!(out, "{req:?}\nerror: {}\nhelp: {}\n\n", r.message, r.help);
    }
    // No users-per-RPS figure: only `--rps` can be planned.
    let mut no_ratio = c.catalog.clone();
    no_ratio.sizing.users_per_rps = None;
    let r = plan(&Sizing::of_catalog(&no_ratio), &users(100, false)).expect_err("refused");
    let _ = write!(
        out,
        "without users_per_rps\nerror: {}\nhelp: {}\n",
        r.message, r.help
    );
    assert_snapshot!(out);
}

#[test]
fn netbox_small_to_highly_available() {
    let m = netbox();
    let s = Sizing::of_manifest(&m.manifest);
    // Up to 20 RPS (400 users): one node.
    let p = plan(&s, &users(400, false)).expect("plans");
    assert_eq!(p.nodes.len(), 1);
    assert_eq!(p.nodes[0].roles, ["database", "web", "worker", "cache"]);
    // Beyond: the database node keeps Redis; web nodes grow with load, HAProxy in front.
    let p = plan(&s, &users(2000, false)).expect("plans");
    assert_eq!(
        counts(&p),
        BTreeMap::from([
            ("database", 1),
            ("web", 4),
            ("worker", 1),
            ("load-balancer", 1)
        ])
    );
    // Highly available at a small load: 3 database + 2 web + 1 worker + 1 load
    // balancer, with etcd, PgBouncer and Redis under Sentinel on the database nodes.
    let p = plan(
        &s,
        &Request {
            load: Load::Rps(20),
            ha: true,
        },
    )
    .expect("plans");
    assert_eq!(
        counts(&p),
        BTreeMap::from([
            ("database", 3),
            ("web", 2),
            ("worker", 1),
            ("load-balancer", 1)
        ])
    );
    assert_eq!(
        p.nodes[0].roles,
        ["database", "cache", "consensus", "pooler"]
    );
    assert_eq!(
        p.waves,
        [
            vec!["database"],
            // Under Patroni the app reaches the database through the load balancer.
            vec!["load-balancer"],
            vec!["web", "worker"]
        ]
    );
    assert_eq!(p.single_points, ["load-balancer", "worker"]);
    assert_snapshot!(show(&p));
    let configs: Vec<String> = p.nodes.iter().map(|n| site_config(&p, n)).collect();
    assert_snapshot!("netbox_ha_site_configs", configs.join("\n"));
    // The JSON a fleet tool reads.
    let json = serde_json::to_value(&p).expect("serialises");
    assert_eq!(json["total"]["nodes"], 7);
    assert_eq!(json["basis"]["kind"], "capacity");
}

#[test]
fn capacity_limits_and_quorum_placement_are_refused() {
    let m = netbox();
    let mut man = m.manifest.clone();
    man.roles.get_mut("web").expect("web").nodes.max = Some(3);
    let r = plan(&Sizing::of_manifest(&man), &users(2000, false)).expect_err("refused");
    assert!(
        r.message.contains("`web` would need 4 nodes"),
        "{}",
        r.message
    );
    assert!(r.help.contains("roles.web.nodes.max"), "{}", r.help);
    // Redis under Sentinel on two database nodes cannot keep a majority.
    let mut man = m.manifest.clone();
    man.roles.get_mut("database").expect("database").nodes.ha = Some(2);
    let r = plan(&Sizing::of_manifest(&man), &users(100, true)).expect_err("refused");
    assert_eq!(
        r.message,
        "role `cache` is placed with `database`, which has 2 node(s); `ha = \"sentinel\"` needs an odd number, at least 3"
    );
    // No CPUs to size a node by.
    let mut man = m.manifest.clone();
    man.roles.get_mut("web").expect("web").cpus = None;
    let r = plan(&Sizing::of_manifest(&man), &users(2000, false)).expect_err("refused");
    assert_eq!(r.message, "role `web` has no `cpus` to size its nodes by");
}
