//! `[roles]` and `[sizing]` of a manifest, and standalone sizing catalogs: every
//! mistake reported at its line and column, with the fix.

use std::collections::BTreeMap;

use berth_model::{LoadedCatalog, LoadedManifest, validate};
use insta::assert_snapshot;

const APP: &str = r#"[app]
name = "demo"
version = "1"

[components.app]
source = "system"

[services.postgresql]
component = "app"
command = ["pg"]

[services.redis]
component = "app"
command = ["redis"]

[services.web]
component = "app"
command = ["web"]
"#;

fn errors(roles: &str) -> String {
    let text = format!("{APP}\n{roles}");
    match LoadedManifest::from_sources("berth.toml", &text, BTreeMap::new()) {
        Ok(m) => validate(&m).expect_err("expected errors").to_string(),
        Err(d) => d.to_string(),
    }
}

/// `text` with what a Patroni table names: PostgreSQL's port setting and its two files.
fn with_pg(text: &str) -> String {
    format!(
        "{text}\n{}",
        r#"
[settings.postgresql.port]
type = "port"
default = 5432

[settings.postgresql.name]
type = "string"
default = "app"

[settings.redis.port]
type = "port"
default = 6379

[secrets.redis_password]

[[files]]
path = "redis.conf"
template = "r.j2"
format = "redis"
owner = "app"

[[files]]
path = "pg/postgresql.conf"
template = "t.j2"
format = "postgresql"
owner = "app"

[[files]]
path = "pg/pg_hba.conf"
template = "h.j2"
format = "conf"
owner = "app"
"#
    )
}

fn templates() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("t.j2".to_owned(), "# empty\n".to_owned()),
        ("h.j2".to_owned(), "# empty\n".to_owned()),
        ("r.j2".to_owned(), "# empty\n".to_owned()),
    ])
}

#[test]
fn a_patroni_table_names_a_plain_directory_the_manifests_files_a_port_and_hooks() {
    let text = with_pg(&format!(
        "{APP}\n{}",
        r#"
[roles.consensus]
engines = ["etcd"]
with = "database"
ha = "quorum"
nodes = { min = 0, ha = 3 }

[roles.database]
services = ["postgresql"]
ha = "patroni"
nodes = { min = 1, ha = 3 }

[roles.database.patroni]
bin_dir = "usr/lib/postgresql"
data_dir = "../pg"
port = "postgresql.name"
config_file = "pg/postgresq.conf"
hba_file = "pg/pg_hba.conf"
bootstrap_hooks = ["initdb"]

[roles.web]
services = ["web", "redis"]
patroni = { bin_dir = "/x", data_dir = "x", port = "postgresql.port", config_file = "pg/pg_hba.conf", hba_file = "pg/pg_hba.conf" }
"#
    ));
    let m = LoadedManifest::from_sources("berth.toml", &text, templates()).expect("parses");
    assert_snapshot!(validate(&m).expect_err("invalid").to_string());
}

#[test]
fn a_manifest_with_good_roles_is_valid() {
    let text = format!(
        "{APP}\n{}",
        r#"
[sizing]
users_per_rps = 20
single_node = { max_rps = 20, cpus = 4, memory = "8GiB" }

[roles.consensus]
engines = ["etcd"]
with = "database"
ha = "quorum"
nodes = { min = 0, ha = 3 }

[roles.database]
services = ["postgresql"]
after = ["consensus"]
ha = "patroni"
nodes = { min = 1, ha = 3 }
cpus = 2
memory = "4GiB"

[roles.database.patroni]
bin_dir = "/usr/lib/postgresql/15/bin"
data_dir = "pg/main"
port = "postgresql.port"
config_file = "pg/postgresql.conf"
hba_file = "pg/pg_hba.conf"

[roles.cache]
services = ["redis"]
with = "database"
ha = "sentinel"
nodes = { ha = 3 }

[roles.cache.sentinel]
port = "redis.port"
config_file = "redis.conf"
password = "redis_password"

[roles.web]
services = ["web"]
after = ["database", "cache"]
ha = "replicas"
capacity_rps = 25
cpus = 4
memory = "7.5GB"
"#
    );
    let m =
        LoadedManifest::from_sources("berth.toml", &with_pg(&text), templates()).expect("parses");
    validate(&m).expect("valid");
    assert_eq!(m.manifest.roles.len(), 4);
}

#[test]
fn references_and_placement() {
    assert_snapshot!(errors(
        r#"
[roles.database]
services = ["postgres"]
after = ["cahce"]

[roles.cache]
services = ["redis", "postgresql"]
with = "dtabase"

[roles.web]
services = ["web"]
after = ["web"]
fronts = "nowhere"
"#
    ));
}

#[test]
fn a_service_in_no_role() {
    assert_snapshot!(errors(
        r#"
[roles.database]
services = ["postgresql", "redis"]
"#
    ));
}

#[test]
fn roles_waiting_in_a_circle() {
    assert_snapshot!(errors(
        r#"
[roles.database]
services = ["postgresql"]
after = ["web"]

[roles.cache]
services = ["redis"]
after = ["database"]

[roles.web]
services = ["web"]
after = ["cache"]
"#
    ));
}

#[test]
fn availability_needs() {
    assert_snapshot!(errors(
        r#"
[roles.database]
services = ["postgresql", "redis"]
ha = "patroni"
nodes = { min = 1, ha = 1 }

[roles.web]
services = ["web"]
ha = "replicas"
nodes = { min = 2, ha = 4, max = 3 }
capacity_rps = 0
cpus = 0
memory = "lots"

[roles.consensus]
engines = ["etcd", "etcd"]
ha = "sentinel"
nodes = { min = 0, ha = 4 }
"#
    ));
}

#[test]
fn unknown_keys_and_values_get_a_did_you_mean() {
    assert_snapshot!(errors(
        r#"
[roles.web]
services = ["web", "postgresql", "redis"]
capactiy_rps = 10
engines = ["ha-proxy"]
ha = "replica"
"#
    ));
}

#[test]
fn catalog_tiers_in_order_naming_declared_roles() {
    let text = r#"[catalog]
name = "vendor"

[roles.app]
ha = "replicas"

[roles.db]
ha = "quorum"
nodes = { ha = 3 }

[roles.db-pooler]
with = "db"

[sizing]
users_per_rps = 0

[[sizing.tiers]]
name = "small"
rps = 20
single_node = { cpus = 4, memory = "8.5.5GB" }

[[sizing.tiers]]
name = "small"
rps = 10
ha = true
[sizing.tiers.roles]
app = { nodes = 1, cpus = 4, memory = "8GB" }
db = { nodes = 2, cpus = 2, memory = "4GB" }
dbb = { nodes = 1, cpus = 2, memory = "4GB" }
db-pooler = { nodes = 1, cpus = 1, memory = "1GB" }

[[sizing.tiers]]
name = "empty"
rps = 30
"#;
    let err = LoadedCatalog::parse("vendor.toml", text).expect_err("errors");
    assert_snapshot!(err.to_string());
}

#[test]
fn the_shipped_catalog_and_manifests_are_valid() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let c = LoadedCatalog::load(
        &std::path::Path::new(root).join("catalogs/gitlab-reference-architectures.toml"),
    )
    .expect("catalog valid");
    assert_eq!(c.catalog.sizing.tiers.len(), 7);
    for app in ["netbox", "mediawiki"] {
        let m = LoadedManifest::load(&std::path::Path::new(root).join(app)).expect("loads");
        validate(&m).expect("valid");
    }
}

// ---- `roles` in the site config ---------------------------------------------------

fn netbox() -> LoadedManifest {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/netbox");
    LoadedManifest::load(std::path::Path::new(root)).expect("loads")
}

#[test]
fn site_roles_name_declared_roles_with_their_hosts() {
    let m = netbox();
    let site = berth_model::parse_site(
        "site.toml",
        "roles = [\"database\", \"cache\", \"consensus\", \"pooler\"]\n",
        &m,
    )
    .expect("valid");
    let r = berth_model::resolve(&m, &site, &berth_model::Facts::fixture()).expect("resolves");
    assert_eq!(
        r.roles.as_deref(),
        Some(&["database", "cache", "consensus", "pooler"].map(String::from)[..])
    );
    let mut out = String::new();
    for text in [
        "roles = [\"databse\", \"web\", \"web\"]\n",
        "roles = [\"pooler\", \"web\"]\n",
        "roles = \"web\"\n",
        "roles = []\n",
        "roles = [1]\n",
    ] {
        let err = berth_model::parse_site("site.toml", text, &m).expect_err("refused");
        out.push_str(&err.to_string());
        out.push_str("\n\n");
    }
    // An app without roles runs whole on every node.
    let text = format!("{APP}\n[roles]\n");
    let plain = LoadedManifest::from_sources("berth.toml", &text, BTreeMap::new()).expect("parses");
    let err =
        berth_model::parse_site("site.toml", "roles = [\"web\"]\n", &plain).expect_err("refused");
    out.push_str(&err.to_string());
    assert_snapshot!(out);
}

/// A role placed `with` another is taken without it when `[fleet]` puts that one on
/// other nodes (a cluster's Redis pods, PostgreSQL elsewhere); not otherwise, and never
/// a role `[external]` puts elsewhere.
#[test]
fn a_role_is_taken_without_its_host_only_where_the_fleet_puts_the_host() {
    let m = netbox();
    let fleet = "roles = [\"cache\"]\n[fleet]\nname = \"netbox\"\nnode = \"cache\"\n\
                 [fleet.nodes.cache]\naddress = \"netbox-cache\"\nroles = [\"cache\"]\n\
                 [fleet.nodes.database]\naddress = \"pg.example.com\"\nroles = [\"database\"]\n";
    berth_model::parse_site("site.toml", fleet, &m).unwrap_or_else(|d| panic!("{d}"));
    let alone = berth_model::parse_site("site.toml", "roles = [\"cache\"]\n", &m)
        .expect_err("refused")
        .to_string();
    assert!(
        alone.contains(
            "role `cache` runs on the nodes of `database`, which this node does not take"
        ),
        "{alone}"
    );
    let taken = berth_model::parse_site(
        "site.toml",
        "roles = [\"database\", \"cache\"]\n[external]\ndatabase = \"pg.example.com\"\n",
        &m,
    )
    .expect_err("refused")
    .to_string();
    assert!(
        taken.contains("site.toml:1:9")
            && taken.contains("`roles` has `database`, which `[external]` says runs elsewhere"),
        "{taken}"
    );
}
