//! The engines berth runs itself on the nodes of a fleet (`engines = [...]` of a role,
//! and Patroni for a role with `ha = "patroni"`): each added to the node's app as a
//! component, a service and its config files, so they get users, directories,
//! escaping, supervision and restarts like the app's own. Their names begin `berth-`,
//! which an app cannot use.

use std::collections::BTreeMap;

use berth_model::fleet::FleetView;
use berth_model::manifest::{SecretDecl, ServiceDecl};
use berth_model::topology::{Engine, PatroniDecl, SentinelDecl};
use berth_model::{LoadedManifest, Manifest};

const ETCD_YML: &str = include_str!("engines/etcd.yml.j2");
const PATRONI_YML: &str = include_str!("engines/patroni.yml.j2");
const HAPROXY_CFG: &str = include_str!("engines/haproxy.cfg.j2");
const PGBOUNCER_INI: &str = include_str!("engines/pgbouncer.ini.j2");
const PGBOUNCER_USERS: &str = include_str!("engines/pgbouncer-users.txt.j2");
const POST_BOOTSTRAP: &str = include_str!("engines/post-bootstrap.sh.j2");
const SENTINEL_CONF: &str = include_str!("engines/sentinel.conf.j2");
const REDIS_REPLICA_CONF: &str = include_str!("engines/redis-replica.conf.j2");

/// Patroni's readiness, asked of its REST API (the URL is the first argument):
/// PostgreSQL runs here (`/health`), and the cluster has a leader (`/cluster`).
const PATRONI_READY: &str = "import json, sys, urllib.request as u
api = sys.argv[1]
u.urlopen(api + '/health', timeout=2)
members = json.load(u.urlopen(api + '/cluster', timeout=2))['members']
sys.exit(0 if any(m['role'] == 'leader' for m in members) else 1)
";

/// The port PgBouncer listens on, on every node of its role.
pub const POOL_PORT: u16 = 6432;

/// The secrets berth's engines use in a fleet of `m`, made once and shared by every
/// node like the app's: PostgreSQL's superuser, replication and rewind passwords and
/// the password of Patroni's REST API (readable by PostgreSQL's user), and PgBouncer's
/// own PostgreSQL password.
pub fn secrets(m: &Manifest) -> BTreeMap<String, SecretDecl> {
    let mut out = BTreeMap::new();
    let secret = |what: &str, readable_by: Option<String>| SecretDecl {
        description: what.to_owned(),
        length: Some(32),
        alphabet: None,
        readable_by,
        from_hook: None,
    };
    if patroni_of(m).is_some() && runs_pgbouncer(m) {
        out.insert(
            "berth_pgbouncer".to_owned(),
            secret("PgBouncer's own PostgreSQL user", None),
        );
    }
    if let Some((_, component)) = patroni_of(m) {
        for (name, what) in [
            ("berth_pg_superuser", "PostgreSQL's superuser under Patroni"),
            ("berth_pg_replication", "PostgreSQL's replication user"),
            ("berth_pg_rewind", "PostgreSQL's pg_rewind user"),
            ("berth_patroni_api", "Patroni's REST API (changes)"),
        ] {
            out.insert(name.to_owned(), secret(what, Some(component.clone())));
        }
    }
    out
}

/// Whether a role of `m` runs PgBouncer.
fn runs_pgbouncer(m: &Manifest) -> bool {
    m.roles
        .values()
        .any(|r| r.engines.contains(&Engine::Pgbouncer))
}

/// The role with `ha = "patroni"` and the component of its one service.
fn patroni_of(m: &Manifest) -> Option<(&str, String)> {
    let (name, role) = m
        .roles
        .iter()
        .find(|(_, r)| r.ha == berth_model::topology::HaKind::Patroni && r.patroni.is_some())?;
    let service = role.services.first()?;
    let component = m.services.get(service)?.component.clone();
    Some((name.as_str(), component))
}

/// A string as a template's string literal (the values are checked plain words).
fn lit(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// `settings["a"]["b"]` for the setting named `a.b`.
fn setting_expr(name: &str) -> String {
    let (group, key) = name.split_once('.').unwrap_or((name, ""));
    format!("settings[{}][{}]", lit(group), lit(key))
}

/// One engine berth runs: a component from the distribution's package (its own user
/// `<app>-<engine>`, a private data directory), one config file rendered from a
/// template of this crate, and its service.
struct Part<'a> {
    /// `berth-<engine>`: the component's, the service's and the data directory's name.
    name: &'a str,
    /// Debian's package and the RPM one.
    packages: (&'a str, &'a str),
    /// The program, by name and path.
    binary: (&'a str, &'a str),
    /// The config file, relative to `etc/<name>/`, its template and format, and
    /// whether a change `restarts` or `reloads` the service.
    file: (&'a str, &'a str, &'a str, &'a str),
    /// The service, as manifest TOML.
    service: &'a str,
}

/// A config file of an engine, rendered from one of this crate's templates.
struct File<'a> {
    /// Relative to `etc/`.
    path: &'a str,
    template: &'a str,
    format: &'a str,
    /// The component whose user owns it.
    owner: &'a str,
    mode: &'a str,
    component: &'a str,
    /// `("restarts" | "reloads", service)`: what a change to it does.
    on_change: Option<(&'a str, &'a str)>,
}

/// Adds `file` to the manifest's `[[files]]`.
///
/// # Panics
///
/// Never: what is parsed here is made of this crate's constants.
fn add_file(m: &mut Manifest, file: &File<'_>) {
    let File {
        path,
        template,
        format,
        owner,
        mode,
        component,
        on_change,
    } = *file;
    let change = on_change.map_or_else(String::new, |(how, service)| {
        format!("{how} = [\"{service}\"]")
    });
    m.files.push(
        toml::from_str(&format!(
            r#"
path = "{path}"
template = "{template}"
format = "{format}"
owner = "{owner}"
mode = "{mode}"
component = "{component}"
{change}
"#
        ))
        .expect("an engine's file"),
    );
}

/// Adds `part`'s component, config file and service to `local`.
///
/// # Panics
///
/// Never: what is parsed here is made of this crate's constants.
fn add_parts(local: &mut LoadedManifest, part: &Part<'_>) {
    let app = local.manifest.app.name.clone();
    let Part {
        name,
        packages: (deb, rpm),
        binary: (bin, path),
        file: (file, template, format, on_change),
        service,
    } = *part;
    let engine = name.trim_start_matches("berth-");
    let m = &mut local.manifest;
    m.components.insert(
        name.to_owned(),
        toml::from_str(&format!(
            r#"
source = "system"
packages = ["{deb}"]
rpm_packages = ["{rpm}"]
binaries = {{ {bin} = "{path}" }}
user = "{app}-{engine}"
data_dirs = [{{ path = "{name}", mode = "0700" }}]
"#
        ))
        .expect("an engine's component"),
    );
    add_file(
        m,
        &File {
            path: &format!("{name}/{file}"),
            template,
            format,
            owner: name,
            mode: "0640",
            component: name,
            on_change: Some((on_change, name)),
        },
    );
    m.services.insert(
        name.to_owned(),
        toml::from_str(service).expect("an engine's service"),
    );
}

/// Adds to `local` what engine `engine` of role `role` needs on a node of `fleet`.
pub fn add(local: &mut LoadedManifest, role: &str, engine: Engine, fleet: Option<&FleetView>) {
    match engine {
        Engine::Etcd => etcd(local, role),
        Engine::Haproxy => haproxy(local, role, fleet),
        Engine::Pgbouncer => pgbouncer(local, role),
    }
}

/// etcd, a member of the fleet's consensus store.
fn etcd(local: &mut LoadedManifest, role: &str) {
    let template = "berth/etcd.yml.j2";
    local
        .templates
        .insert(template.to_owned(), ETCD_YML.replace("ROLE", role));
    add_parts(
        local,
        &Part {
            name: "berth-etcd",
            packages: ("etcd-server", "etcd"),
            binary: ("etcd", "/usr/bin/etcd"),
            file: ("etcd.yml", template, "yaml", "restarts"),
            service: r#"
component = "berth-etcd"
description = "etcd, the fleet's consensus store"
command = ["/usr/bin/etcd", "--config-file", "{{ paths.etc }}/berth-etcd/etcd.yml"]
working_dir = "{{ paths.data }}/berth-etcd"
ready = { http = "http://127.0.0.1:2379/health", timeout = "120s" }
stop_timeout = "30s"
"#,
        },
    );
}

/// HAProxy: the web nodes at the app's URL and, under Patroni, the database leader.
fn haproxy(local: &mut LoadedManifest, role: &str, fleet: Option<&FleetView>) {
    let m = &local.manifest;
    let fronts = m
        .roles
        .get(role)
        .and_then(|r| r.fronts.clone())
        .unwrap_or_default();
    let database = fleet.and_then(|f| f.patroni_role(m)).and_then(|db| {
        let p = m.roles.get(db)?.patroni.as_ref()?;
        Some((db.to_owned(), p.clone()))
    });
    let mut text = HAPROXY_CFG
        .replace("@ROLE@", role)
        .replace("@FRONTS@", &fronts)
        .replace(
            "@HEALTH_PATH@",
            &lit(m.app.health_path.as_deref().unwrap_or("/")),
        )
        .replace(
            "@DATABASE@",
            if database.is_some() { "true" } else { "false" },
        );
    // Without Patroni the database section is never rendered, but it still
    // must parse.
    let pooled = fleet.is_some_and(|f| f.runs(&local.manifest, Engine::Pgbouncer));
    let (db, rest, port) = match &database {
        Some((db, p)) => (db.clone(), p.rest_port.to_string(), setting_expr(&p.port)),
        None => (String::new(), "0".to_owned(), "0".to_owned()),
    };
    let server_port = if pooled {
        POOL_PORT.to_string()
    } else {
        port.clone()
    };
    text = text
        .replace("@DBROLE@", &db)
        .replace("@REST_PORT@", &rest)
        .replace("@SERVER_PORT@", &server_port)
        .replace("@PORT@", &port);
    let template = "berth/haproxy.cfg.j2";
    local.templates.insert(template.to_owned(), text);
    add_parts(
        local,
        &Part {
            name: "berth-haproxy",
            packages: ("haproxy", "haproxy"),
            binary: ("haproxy", "/usr/sbin/haproxy"),
            file: ("haproxy.cfg", template, "haproxy", "reloads"),
            service: r#"
component = "berth-haproxy"
description = "HAProxy, in front of the web nodes and the PostgreSQL leader"
command = ["/usr/sbin/haproxy", "-W", "-db", "-f", "{{ paths.etc }}/berth-haproxy/haproxy.cfg"]
working_dir = "{{ paths.data }}/berth-haproxy"
ready = { tcp = "{{ node.address }}:{{ external_url.port }}", timeout = "30s" }
# The master process starts new workers on the new config; the old ones finish
# their connections.
reload_signal = "SIGUSR2"
stop_timeout = "60s"
"#,
        },
    );
}

/// PgBouncer, pooling the connections to this node's PostgreSQL (the database role's,
/// under Patroni).
fn pgbouncer(local: &mut LoadedManifest, role: &str) {
    let Some((_, decl)) = local
        .manifest
        .roles
        .iter()
        .find_map(|(n, r)| r.patroni.as_ref().map(|p| (n.clone(), p.clone())))
    else {
        return;
    };
    let ini = "berth/pgbouncer.ini.j2";
    let users = "berth/pgbouncer-users.txt.j2";
    local.templates.insert(
        ini.to_owned(),
        PGBOUNCER_INI
            .replace("@ROLE@", role)
            .replace("@POOL_PORT@", &POOL_PORT.to_string())
            .replace("@PORT@", &setting_expr(&decl.port)),
    );
    local
        .templates
        .insert(users.to_owned(), PGBOUNCER_USERS.to_owned());
    add_parts(
        local,
        &Part {
            name: "berth-pgbouncer",
            packages: ("pgbouncer", "pgbouncer"),
            binary: ("pgbouncer", "/usr/sbin/pgbouncer"),
            file: ("pgbouncer.ini", ini, "conf", "reloads"),
            service: &format!(
                r#"
component = "berth-pgbouncer"
description = "PgBouncer, pooling connections to the PostgreSQL leader"
command = ["/usr/sbin/pgbouncer", "{{{{ paths.etc }}}}/berth-pgbouncer/pgbouncer.ini"]
working_dir = "{{{{ paths.data }}}}/berth-pgbouncer"
ready = {{ tcp = "127.0.0.1:{POOL_PORT}", timeout = "30s" }}
# SIGINT: no new connections, the current ones finish.
stop_signal = "SIGINT"
stop_timeout = "30s"
reload_signal = "SIGHUP"
"#
            ),
        },
    );
    add_file(
        &mut local.manifest,
        &File {
            path: "berth-pgbouncer/userlist.txt",
            template: users,
            format: "conf",
            owner: "berth-pgbouncer",
            mode: "0600",
            component: "berth-pgbouncer",
            on_change: Some(("reloads", "berth-pgbouncer")),
        },
    );
    for (name, decl) in secrets(&local.manifest) {
        local.manifest.secrets.entry(name).or_insert(decl);
    }
}

/// The service that runs Patroni in place of the app's PostgreSQL.
///
/// # Panics
///
/// Never: the declaration parsed here is a constant of this crate.
fn patroni_service(component: &str, rest: u16) -> ServiceDecl {
    let mut svc: ServiceDecl = toml::from_str(&format!(
        r#"
component = "{component}"
description = "PostgreSQL under Patroni (leader election, replication, failover)"
command = ["/usr/bin/patroni", "{{{{ paths.etc }}}}/berth-patroni/patroni.yml"]
stop_timeout = "120s"
reload_signal = "SIGHUP"
"#
    ))
    .expect("Patroni's service");
    // Ready once PostgreSQL runs here and the cluster has a leader: the node that
    // makes the cluster takes the lead only after its post-bootstrap step, which the
    // app's own hooks (creating its database from `template1`) must come after.
    svc.ready = Some(berth_model::manifest::ReadyDecl {
        tcp: None,
        http: None,
        command: Some(vec![
            "/usr/bin/python3".to_owned(),
            "-c".to_owned(),
            PATRONI_READY.to_owned(),
            format!("http://{{{{ node.address }}}}:{rest}"),
        ]),
        timeout: "600s".to_owned(),
    });
    svc
}

/// Hands the PostgreSQL of role `role` to Patroni on this node (the one that makes the
/// cluster when `bootstrap`, the node that runs the role's `once` hooks; with PgBouncer's
/// user and lookup function when the fleet is `pooled`): its service runs
/// Patroni (which runs PostgreSQL), with Patroni's config file beside the app's, the
/// hooks Patroni's bootstrap replaces dropped, and changes to PostgreSQL's own files
/// reloaded through Patroni rather than restarting it (a restart would move the lead).
///
/// # Panics
///
/// Never: the declarations parsed here are constants of this crate.
pub fn patroni(
    local: &mut LoadedManifest,
    role: &str,
    decl: &PatroniDecl,
    bootstrap: bool,
    pooled: bool,
) {
    let m = &mut local.manifest;
    let Some(service) = m.roles.get(role).and_then(|r| r.services.first()).cloned() else {
        return;
    };
    let local_etcd = m.services.contains_key("berth-etcd");
    let Some(svc) = m.services.get_mut(&service) else {
        return;
    };
    let component = svc.component.clone();
    let consensus = m
        .roles
        .iter()
        .find(|(_, r)| r.engines.contains(&Engine::Etcd))
        .map(|(n, _)| n.clone())
        .unwrap_or_default();
    let patroni_svc = patroni_service(&component, decl.rest_port);
    let old = std::mem::replace(svc, patroni_svc);
    svc.depends_on = old.depends_on;
    svc.listen = old.listen;
    // Patroni's helper processes return to the directory it started in: one its user
    // can enter.
    svc.working_dir = old.working_dir.or_else(|| {
        let parent = decl.data_dir.rsplit_once('/').map(|(p, _)| format!("/{p}"));
        Some(format!(
            "{{{{ paths.data }}}}{}",
            parent.unwrap_or_default()
        ))
    });
    // etcd on this node first: Patroni elects its leader there.
    if local_etcd {
        svc.depends_on.push("berth-etcd".to_owned());
    }
    for f in &mut m.files {
        if f.restarts.contains(&service) {
            f.restarts.retain(|s| s != &service);
            if !f.reloads.contains(&service) {
                f.reloads.push(service.clone());
            }
        }
    }
    m.hooks
        .retain(|name, _| !decl.bootstrap_hooks.contains(name));
    let owner = m
        .files
        .iter()
        .find(|f| f.path == decl.config_file)
        .and_then(|f| f.owner.clone())
        .unwrap_or_else(|| component.clone());
    let template = "berth/patroni.yml.j2";
    let text = PATRONI_YML
        .replace("@ROLE@", role)
        .replace("@BOOTSTRAP@", if bootstrap { "true" } else { "false" })
        .replace("@POOLER@", if pooled { "true" } else { "false" })
        .replace("@CONSENSUS@", &consensus)
        .replace("@COMPONENT@", &component)
        .replace("@REST_PORT@", &decl.rest_port.to_string())
        .replace("@DATA_DIR@", &lit(&decl.data_dir))
        .replace("@BIN_DIR@", &lit(&decl.bin_dir))
        .replace("@CONFIG_FILE@", &lit(&decl.config_file))
        .replace("@HBA_FILE@", &lit(&decl.hba_file))
        .replace("@PORT@", &setting_expr(&decl.port));
    local.templates.insert(template.to_owned(), text);
    add_file(
        &mut local.manifest,
        &File {
            path: "berth-patroni/patroni.yml",
            template,
            format: "yaml",
            owner: &owner,
            mode: "0600",
            component: &component,
            on_change: Some(("reloads", service.as_str())),
        },
    );
    if pooled {
        post_bootstrap(local, decl, &owner, &component);
    }
    for (name, decl) in secrets(&local.manifest) {
        local.manifest.secrets.entry(name).or_insert(decl);
    }
}

/// The script Patroni runs once the cluster is made, where the fleet runs PgBouncer:
/// PgBouncer's user and its password lookup function.
///
/// # Panics
///
/// Never: the declaration parsed here is a constant of this crate.
fn post_bootstrap(local: &mut LoadedManifest, decl: &PatroniDecl, owner: &str, component: &str) {
    let script = "berth/post-bootstrap.sh.j2";
    local.templates.insert(
        script.to_owned(),
        POST_BOOTSTRAP.replace("@BIN_DIR@", &lit(&decl.bin_dir)),
    );
    add_file(
        &mut local.manifest,
        &File {
            path: "berth-patroni/post-bootstrap.sh",
            template: script,
            format: "shell",
            owner,
            mode: "0700",
            component,
            on_change: None,
        },
    );
}

/// Makes the Redis of role `role` on this node one of a replicated set watched by
/// Sentinel: its service runs on berth's config (the app's included, then
/// `masterauth`, and `replicaof` the role's first node on every other node), and a
/// Sentinel (`berth-sentinel`) runs beside it.
///
/// # Panics
///
/// Never: the declarations parsed here are constants of this crate.
pub fn sentinel(local: &mut LoadedManifest, role: &str, decl: &SentinelDecl) {
    let m = &mut local.manifest;
    let Some(service) = m.roles.get(role).and_then(|r| r.services.first()).cloned() else {
        return;
    };
    let Some(svc) = m.services.get_mut(&service) else {
        return;
    };
    let component = svc.component.clone();
    let program = svc.command.first().cloned().unwrap_or_default();
    svc.command = vec![
        program,
        "{{ paths.etc }}/berth-sentinel/redis.conf".to_owned(),
    ];
    let owner = m
        .files
        .iter()
        .find(|f| f.path == decl.config_file)
        .and_then(|f| f.owner.clone())
        .unwrap_or_else(|| component.clone());
    let fill = |t: &str| {
        t.replace("@ROLE@", role)
            .replace("@SENTINEL_PORT@", &decl.sentinel_port.to_string())
            .replace("@PORT@", &setting_expr(&decl.port))
            .replace("@PASSWORD@", &lit(&decl.password))
            .replace("@CONFIG_FILE@", &lit(&decl.config_file))
    };
    let replica = "berth/redis-replica.conf.j2";
    let seed = "berth/sentinel.conf.j2";
    local
        .templates
        .insert(replica.to_owned(), fill(REDIS_REPLICA_CONF));
    local.templates.insert(seed.to_owned(), fill(SENTINEL_CONF));
    add_file(
        &mut local.manifest,
        &File {
            path: "berth-sentinel/redis.conf",
            template: replica,
            format: "redis",
            owner: &owner,
            mode: "0640",
            component: &component,
            on_change: Some(("restarts", service.as_str())),
        },
    );
    let port = decl.sentinel_port;
    add_parts(
        local,
        &Part {
            name: "berth-sentinel",
            packages: ("redis-server", "redis"),
            binary: ("redis-server", "/usr/bin/redis-server"),
            file: ("sentinel.conf", seed, "redis", "restarts"),
            service: &format!(
                r#"
component = "berth-sentinel"
description = "Redis Sentinel: promotes a replica when the Redis master fails"
# Sentinel rewrites its config as it learns: it runs on a copy, made again when
# berth's changes.
command = ["/bin/sh", "-c", 'cmp -s "$0" "$1.seed" || {{ cp "$0" "$1" && cp "$0" "$1.seed"; }}; exec /usr/bin/redis-server "$1" --sentinel', "{{{{ paths.etc }}}}/berth-sentinel/sentinel.conf", "{{{{ paths.data }}}}/berth-sentinel/sentinel.conf"]
working_dir = "{{{{ paths.data }}}}/berth-sentinel"
depends_on = ["{service}"]
ready = {{ tcp = "127.0.0.1:{port}", timeout = "30s" }}
stop_timeout = "10s"
"#
            ),
        },
    );
}
