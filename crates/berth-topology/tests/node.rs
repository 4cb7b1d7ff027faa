//! One node of a fleet: the app narrowed to its roles (services, the components they
//! use, `once` hooks and jobs on one node only) and rendered with the fleet's
//! addresses, through the same functions `berth up` uses.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use berth_model::{Facts, LoadedManifest, parse_site, resolve};
use berth_render::{Paths, RenderInput, UserNames, render};
use berth_topology::node::{localize, once_node, takes_everything};

fn load(dir: &str) -> LoadedManifest {
    let m = LoadedManifest::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(dir),
    )
    .expect("loads");
    berth_model::validate(&m).expect("valid");
    m
}

/// A node's site config as `berth fleet up` writes it.
fn node_site(node: &str, nodes: &[(&str, &str, &[&str])]) -> String {
    let me = nodes.iter().find(|n| n.0 == node).unwrap();
    let roles = |r: &[&str]| {
        r.iter()
            .map(|x| format!("\"{x}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut s = format!(
        "roles = [{}]\n\n[fleet]\nname = \"lab\"\nnode = \"{node}\"\n",
        roles(me.2)
    );
    for (name, address, r) in nodes {
        let _ = write!(
            s,
            "\n[fleet.nodes.{name}]\naddress = \"{address}\"\nroles = [{}]\n",
            roles(r)
        );
    }
    s
}

const FLEET: &[(&str, &str, &[&str])] = &[
    ("db", "10.0.0.1", &["database", "cache"]),
    ("web-1", "10.0.0.2", &["web"]),
    ("web-2", "10.0.0.3", &["web"]),
];

/// Node `node` of `fleet` for the app in `dir`, narrowed and rendered as `berth up`
/// does: what it runs, and its desired state.
fn render_in(
    dir: &str,
    fleet: &[(&str, &str, &[&str])],
    node: &str,
) -> (berth_topology::node::NodeApp, berth_render::DesiredState) {
    let m = load(dir);
    let site = parse_site("site.toml", &node_site(node, fleet), &m).expect("valid node config");
    let mut config = resolve(&m, &site, &Facts::fixture()).expect("resolves");
    let roles = config.roles.clone().unwrap();
    let app = localize(&m, &roles, config.fleet.as_ref());
    config.app_components = Some(config.enabled_components.clone());
    app.narrow(&mut config.enabled_components);
    let secrets: BTreeMap<String, String> =
        berth_render::secret_specs(&app.manifest, &Facts::fixture(), &UserNames::shared())
            .into_iter()
            .map(|s| (s.name.clone(), format!("{}-value", s.name)))
            .collect();
    let paths = Paths::for_prefix(Path::new("/var/opt/berth/app"), "1.0.0");
    let state = render(&RenderInput {
        manifest: &app.manifest,
        config: &config,
        facts: &Facts::fixture(),
        secrets: &secrets,
        paths: &paths,
        users: &UserNames::shared(),
    })
    .expect("renders");
    (app, state)
}

/// Renders node `node` of `FLEET` for the app in `dir`: its files by path (relative
/// to `etc/`) and its services, hooks and jobs.
fn render_node(
    dir: &str,
    node: &str,
) -> (
    BTreeMap<String, String>,
    Vec<String>,
    Vec<String>,
    Vec<String>,
) {
    let (_, state) = render_in(dir, FLEET, node);
    let etc = Path::new("/var/opt/berth/app/etc");
    let files = state
        .files
        .iter()
        .map(|f| {
            let rel = f
                .path
                .strip_prefix(etc)
                .unwrap_or(&f.path)
                .display()
                .to_string();
            (rel, f.content.clone())
        })
        .collect();
    let services = state.services.iter().map(|s| s.name.clone()).collect();
    let hooks = state.hooks.iter().map(|h| h.name.clone()).collect();
    let jobs = state.jobs.iter().map(|j| j.name.clone()).collect();
    (files, services, hooks, jobs)
}

#[test]
fn a_database_node_runs_the_database_and_lets_the_fleet_in() {
    let (files, services, hooks, jobs) = render_node("tests/fixtures/ministack", "db");
    assert_eq!(services, ["postgresql", "redis"]);
    assert_eq!(hooks, ["createdb", "initdb"]);
    assert_eq!(jobs, ["vacuum"]);
    assert!(
        !files.contains_key("app/app.json"),
        "no app here: {:?}",
        files.keys()
    );
    assert!(!files.contains_key("nginx/nginx.conf"));
    insta::assert_snapshot!("db_postgresql_conf", files["postgresql/postgresql.conf"]);
    insta::assert_snapshot!("db_pg_hba", files["postgresql/pg_hba.conf"]);
    insta::assert_snapshot!("db_redis_conf", files["redis/redis.conf"]);
}

#[test]
fn a_web_node_runs_the_app_against_the_database_node() {
    let (files, services, hooks, jobs) = render_node("tests/fixtures/ministack", "web-2");
    assert_eq!(services, ["app", "nginx"]);
    assert!(hooks.is_empty(), "{hooks:?}");
    assert!(jobs.is_empty(), "{jobs:?}");
    assert!(!files.contains_key("postgresql/postgresql.conf"));
    insta::assert_snapshot!("web_app_json", files["app/app.json"]);
    assert!(
        files["nginx/nginx.conf"].contains("listen 10.0.0.3:18080;"),
        "{}",
        files["nginx/nginx.conf"]
    );
}

#[test]
fn netbox_runs_its_migrations_and_housekeeping_on_one_node() {
    let m = load("examples/netbox");
    let site = parse_site("site.toml", &node_site("web-2", FLEET), &m).unwrap();
    let config = resolve(&m, &site, &Facts::fixture()).unwrap();
    let fleet = config.fleet.as_ref().unwrap();
    // The first node, in bring-up order, that has NetBox: web-1 (the database node
    // comes up first but has no NetBox).
    assert_eq!(once_node(&m.manifest, fleet, "netbox"), Some("web-1"));
    let (files, services, hooks, jobs) = render_node("examples/netbox", "web-1");
    let conf = &files["netbox/configuration.py"];
    assert_eq!(conf.matches("'HOST': '10.0.0.1',").count(), 3, "{conf}");
    assert!(
        files["netbox/worker-ready.sh"].contains("-h 10.0.0.1 -p"),
        "{}",
        files["netbox/worker-ready.sh"]
    );
    assert_eq!(services, ["nginx", "web"]);
    assert_eq!(hooks, ["collectstatic", "create_admin", "migrate"]);
    assert_eq!(jobs, ["clearsessions"]);
    let (_, _, hooks, jobs) = render_node("examples/netbox", "web-2");
    assert_eq!(hooks, ["collectstatic"]);
    assert!(jobs.is_empty());
    assert!(!takes_everything(&m.manifest, &["web".to_owned()]));
    assert!(takes_everything(
        &m.manifest,
        &["database", "cache", "web", "worker"].map(String::from)
    ));
}

#[test]
fn a_consensus_node_runs_berths_etcd_with_every_member() {
    let fleet: &[(&str, &str, &[&str])] = &[
        (
            "db-1",
            "10.0.0.1",
            &["database", "consensus", "cache", "web"],
        ),
        ("db-2", "10.0.0.2", &["database", "consensus"]),
        ("db-3", "10.0.0.3", &["database", "consensus"]),
    ];
    let (app, state) = render_in("tests/fixtures/ministack", fleet, "db-2");
    assert!(app.components.contains("berth-etcd"));
    let names: Vec<&str> = state.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["berth-etcd", "postgresql"]);
    assert!(
        state.packages.contains(&"etcd-server".to_owned()),
        "{:?}",
        state.packages
    );
    assert_eq!(
        app.manifest.manifest.components["berth-etcd"]
            .user
            .as_deref(),
        Some("ministack-etcd")
    );
    let etcd = state
        .files
        .iter()
        .find(|f| f.path.ends_with("berth-etcd/etcd.yml"))
        .expect("etcd.yml");
    insta::assert_snapshot!("etcd_yml", etcd.content);
}

/// Three database nodes with etcd, a load balancer and a web node.
const HA_FLEET: &[(&str, &str, &[&str])] = &[
    (
        "db-1",
        "10.0.0.1",
        &["database", "consensus", "pooler", "cache"],
    ),
    (
        "db-2",
        "10.0.0.2",
        &["database", "consensus", "pooler", "cache"],
    ),
    (
        "db-3",
        "10.0.0.3",
        &["database", "consensus", "pooler", "cache"],
    ),
    ("lb", "10.0.0.4", &["load-balancer"]),
    ("web", "10.0.0.5", &["web"]),
];

fn file_of<'s>(state: &'s berth_render::DesiredState, end: &str) -> &'s berth_render::FileSpec {
    state
        .files
        .iter()
        .find(|f| f.path.ends_with(end))
        .unwrap_or_else(|| panic!("no {end}"))
}

#[test]
fn patroni_runs_postgresql_where_the_fleet_has_etcd_and_one_node_makes_the_cluster() {
    let (app, state) = render_in("tests/fixtures/ministack", HA_FLEET, "db-1");
    let pg = state
        .services
        .iter()
        .find(|s| s.name == "postgresql")
        .unwrap();
    assert_eq!(pg.argv[0], "/usr/bin/patroni", "{:?}", pg.argv);
    // Patroni makes the cluster (no initdb hook); the app's database is made once.
    let hooks: Vec<&str> = state.hooks.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(hooks, ["createdb"]);
    // Its passwords are the fleet's, readable by PostgreSQL's user only.
    for s in [
        "berth_pg_superuser",
        "berth_pg_replication",
        "berth_pg_rewind",
        "berth_patroni_api",
    ] {
        assert!(app.manifest.manifest.secrets.contains_key(s), "{s}");
    }
    let yml = file_of(&state, "berth-patroni/patroni.yml");
    assert_eq!(yml.mode, 0o600);
    insta::assert_snapshot!("patroni_bootstrap_yml", yml.content);
    // A change to PostgreSQL's settings reloads Patroni, which reloads PostgreSQL:
    // restarting it would hand the lead to another node.
    // PgBouncer's user and its password lookup are made with the cluster.
    insta::assert_snapshot!(
        "post_bootstrap_sh",
        file_of(&state, "berth-patroni/post-bootstrap.sh").content
    );
    let ini = file_of(&state, "berth-pgbouncer/pgbouncer.ini");
    insta::assert_snapshot!("pgbouncer_ini", ini.content);
    let users = file_of(&state, "berth-pgbouncer/userlist.txt");
    assert_eq!(users.mode, 0o600);
    assert_eq!(
        users.content,
        "\"berth_pgbouncer\" \"berth_pgbouncer-value\"\n"
    );
    let conf = file_of(&state, "postgresql/postgresql.conf");
    assert!(conf.restarts.is_empty(), "{:?}", conf.restarts);
    assert_eq!(conf.reloads, ["postgresql"]);

    // The others wait for it and clone it.
    let (_, state) = render_in("tests/fixtures/ministack", HA_FLEET, "db-2");
    assert!(state.hooks.is_empty(), "{:?}", state.hooks);
    let yml = &file_of(&state, "berth-patroni/patroni.yml").content;
    assert!(!yml.contains("bootstrap:"), "{yml}");
    assert!(yml.contains("name: \"db-2\""), "{yml}");
    assert!(
        yml.contains("hosts: \"10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379\""),
        "{yml}"
    );
}

#[test]
fn haproxy_fronts_the_web_nodes_and_sends_database_clients_to_the_leader() {
    let (app, state) = render_in("tests/fixtures/ministack", HA_FLEET, "lb");
    let names: Vec<&str> = state.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["berth-haproxy"]);
    assert!(app.components.contains("berth-haproxy"));
    insta::assert_snapshot!(
        "haproxy_cfg",
        file_of(&state, "berth-haproxy/haproxy.cfg").content
    );
    // The app reaches its database through the load balancer.
    let (_, state) = render_in("tests/fixtures/ministack", HA_FLEET, "web");
    let json = &file_of(&state, "app/app.json").content;
    assert!(json.contains("\"host\": \"10.0.0.4\""), "{json}");
}

#[test]
fn redis_replicates_from_the_first_cache_node_and_sentinel_watches_it() {
    let (_, state) = render_in("tests/fixtures/ministack", HA_FLEET, "db-1");
    let redis = state.services.iter().find(|s| s.name == "redis").unwrap();
    assert!(
        redis.argv[1].ends_with("etc/berth-sentinel/redis.conf"),
        "{:?}",
        redis.argv
    );
    let first = &file_of(&state, "berth-sentinel/redis.conf").content;
    assert!(!first.contains("replicaof"), "{first}");
    insta::assert_snapshot!(
        "sentinel_conf",
        file_of(&state, "berth-sentinel/sentinel.conf").content
    );
    let (_, state) = render_in("tests/fixtures/ministack", HA_FLEET, "db-3");
    insta::assert_snapshot!(
        "redis_replica_conf",
        file_of(&state, "berth-sentinel/redis.conf").content
    );
    let names: Vec<&str> = state.services.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"berth-sentinel"), "{names:?}");
    // The app finds the master through the Sentinels.
    let (_, state) = render_in("tests/fixtures/ministack", HA_FLEET, "web");
    let json = &file_of(&state, "app/app.json").content;
    assert!(
        json.contains(r#""sentinel": {"master":"ministack","port":26379,"hosts":["10.0.0.1","10.0.0.2","10.0.0.3"]}"#),
        "{json}"
    );
}
