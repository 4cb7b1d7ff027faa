//! NetBox's Kubernetes objects, from `examples/netbox` and a site config naming its
//! external URL: every file of the kustomize tree, snapshotted; the workloads as
//! planned; and what is refused.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use berth_k8s::{Options, render};
use berth_model::LoadedManifest;

fn netbox() -> LoadedManifest {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/netbox");
    LoadedManifest::load(&dir).unwrap_or_else(|d| panic!("{d}"))
}

const SITE: &str = "external_url = \"https://netbox.example.com/\"\n";

#[test]
fn netbox_renders_a_workload_per_role_and_a_kustomize_tree() {
    let r = render(&netbox(), "site.toml", SITE, &Options::default()).unwrap();
    let mut all = String::new();
    for (path, text) in &r.files {
        let _ = write!(all, "=== {path}\n{text}");
    }
    insta::assert_snapshot!("netbox-tree", all);
    let plan: Vec<String> = r
        .workloads
        .iter()
        .map(|w| {
            format!(
                "{} {:?} x{} {:?} init {:?}",
                w.name, w.kind, w.replicas, w.services, w.init_hooks
            )
        })
        .collect();
    insta::assert_snapshot!(plan.join("\n"), @r#"
    netbox-database StatefulSet x1 ["postgresql", "redis"] init ["initdb"]
    netbox-web Deployment x1 ["web", "nginx"] init ["collectstatic"]
    netbox-worker Deployment x1 ["worker"] init []
    "#);
    let names: Vec<&str> = r.secrets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "admin_password",
            "api_token_pepper",
            "db_password",
            "redis_password",
            "secret_key"
        ]
    );
}

#[test]
fn options_a_cluster_cannot_take_are_refused() {
    let bad = |o: Options| {
        render(&netbox(), "site.toml", SITE, &o)
            .unwrap_err()
            .to_string()
    };
    let e = bad(Options {
        storage_class: Some(String::new()),
        ..Options::default()
    });
    assert!(e.contains("storage class is empty"), "{e}");
    let e = bad(Options {
        registry: "registry.example.com/netbox/".to_owned(),
        ..Options::default()
    });
    assert!(e.contains("not an image registry"), "{e}");
    let e = bad(Options {
        environments: vec!["Prod".to_owned()],
        ..Options::default()
    });
    assert!(e.contains("not an environment name"), "{e}");
    let e = render(
        &netbox(),
        "site.toml",
        "[web]\nwokers = 3\n",
        &Options::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("did you mean"), "{e}");
}

/// A periodic job every 90 minutes has no CronJob schedule: refused, naming it.
#[test]
fn a_job_a_cron_schedule_cannot_say_is_refused() {
    let mut m = netbox();
    m.manifest.jobs.get_mut("clearsessions").unwrap().every = "90m".to_owned();
    let e = render(&m, "site.toml", SITE, &Options::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("job `clearsessions` runs every `90m`"), "{e}");
}

/// The hooks: `initdb` before PostgreSQL in its pod, `collectstatic` before nginx in
/// the web pod, `migrate` a Job of this version (it waits for the database and the
/// cache, in other pods), `createdb` and `create_admin` in their service's container.
#[test]
fn each_hook_runs_where_what_it_waits_for_is() {
    let r = render(&netbox(), "site.toml", SITE, &Options::default()).unwrap();
    let places: Vec<String> = r.hooks.iter().map(|(h, p)| format!("{h}: {p:?}")).collect();
    insta::assert_snapshot!(places.join("\n"), @r#"
    collectstatic: Init("netbox-web")
    initdb: Init("netbox-database")
    createdb: InService("postgresql")
    migrate: Job
    create_admin: InService("web")
    "#);
    // What the pods wait for: the database's Service (it answers once PostgreSQL is
    // ready and `createdb` ran in it) and the migration Job's check, rendered with
    // the site config of the web pods the Job is made from (a `once` hook is in that
    // node's manifest only); the Job itself waits for the database and the cache.
    let waits: Vec<String> = r
        .workloads
        .iter()
        .map(|w| format!("{}: {:?}", w.name, w.waits))
        .collect();
    insta::assert_snapshot!(waits.join("\n"), @r#"
    netbox-database: []
    netbox-web: [Service { service: "postgresql", address: "netbox-database:5433" }, Hook { hook: "migrate", site: "netbox-web" }]
    netbox-worker: [Service { service: "postgresql", address: "netbox-database:5433" }, Hook { hook: "migrate", site: "netbox-web" }]
    "#);
    let job = &r.files["base/job-netbox-migrate-4-7-3.yaml"];
    assert!(
        job.contains("- wait-for\n        - netbox-database:6380"),
        "{job}"
    );
    let db = &r.files["base/statefulset-netbox-database.yaml"];
    assert!(
        db.contains("- run\n        - postgresql\n        - --then\n        - createdb\n"),
        "{db}"
    );
    assert!(r.files.contains_key("base/job-netbox-migrate-4-7-3.yaml"));
    let jobs: Vec<&String> = r
        .files
        .keys()
        .filter(|k| k.starts_with("base/job-"))
        .collect();
    assert_eq!(jobs, ["base/job-netbox-migrate-4-7-3.yaml"]);
    let db = &r.files["base/statefulset-netbox-database.yaml"];
    assert!(db.contains("  - hook\n        - initdb\n"), "{db}");
    let web = &r.files["base/deployment-netbox-web.yaml"];
    assert!(web.contains("- hook\n        - collectstatic"), "{web}");
}

/// A Job's hook the web pods come after, with no `check` to say when it is done: the
/// pods could not wait for it, so the render refuses it, naming the fix.
#[test]
fn a_job_hook_with_no_check_is_refused() {
    let mut m = netbox();
    m.manifest.hooks.get_mut("migrate").unwrap().check = None;
    let e = render(&m, "site.toml", SITE, &Options::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("hook `migrate` runs as a Job before the netbox-web pods")
            && e.contains("give `[hooks.migrate]` a `check`"),
        "{e}"
    );
}

/// Settings of a host are refused, each by its position, all at once: never ignored.
#[test]
fn settings_only_a_host_has_are_refused_by_position() {
    let site = "users = \"shared\"\nexternal_url = \"https://netbox.example.com/\"\n\n[metrics]\nlisten = \"127.0.0.1:9100\"\n\n[upgrade]\nauto = \"patch\"\n";
    let e = render(&netbox(), "site.toml", site, &Options::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("site.toml:1:"), "{e}");
    assert!(
        e.contains("`users` chooses how a host's OS users are named"),
        "{e}"
    );
    assert!(
        e.contains("site.toml:5:") && e.contains("`metrics.listen` does not apply"),
        "{e}"
    );
    assert!(
        e.contains("site.toml:8:") && e.contains("`upgrade.auto` does not apply"),
        "{e}"
    );
    assert!(e.contains("help: remove `[upgrade]`"), "{e}");
}

/// `[backup]` means on Kubernetes what it means on a host: `schedule` becomes the
/// CronJob's (off: a suspended CronJob, for backups on demand), retention and the
/// rest go to `berth container backup` through the pods' site config; where archives
/// go is the CronJob's claim, so a host's target is refused by position.
#[test]
fn backup_settings_become_the_cronjobs_or_are_refused_by_position() {
    let cron = |site: &str| {
        let r = render(&netbox(), "site.toml", site, &Options::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(r.backup_key);
        assert!(
            r.files["base/kustomization.yaml"].contains("- key=secrets/backup-key"),
            "{}",
            r.files["base/kustomization.yaml"]
        );
        r.files["base/cronjob-netbox-backup.yaml"].clone()
    };
    let off = cron(SITE);
    assert!(off.contains("suspend: true"), "{off}");
    let daily = cron(&format!(
        "{SITE}[backup]\nschedule = \"24h\"\nkeep_last = 3\n"
    ));
    assert!(
        daily.contains("schedule: \"@daily\"") && daily.contains("suspend: false"),
        "{daily}"
    );
    assert!(
        cron(&format!("{SITE}[backup]\nschedule = \"6h\"\n")).contains("schedule: 0 */6 * * *")
    );
    // Retention reaches the pods as the administrator wrote it.
    let r = render(
        &netbox(),
        "site.toml",
        &format!("{SITE}[backup]\nkeep_last = 3\n"),
        &Options::default(),
    )
    .unwrap();
    assert!(r.sites["netbox-database"].contains("keep_last = 3"));

    let e = render(
        &netbox(),
        "site.toml",
        &format!("{SITE}\n[backup]\ntarget = \"/srv/backups\"\nschedule = \"24h\"\n"),
        &Options::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("site.toml:4:") && e.contains("`backup.target` does not apply in a cluster"),
        "{e}"
    );
    assert!(!e.contains("backup.schedule"), "{e}");
    let e = render(
        &netbox(),
        "site.toml",
        &format!("{SITE}[backup]\nschedule = \"7h\"\n"),
        &Options::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("`backup.schedule` of 420m is not a schedule a CronJob can say"),
        "{e}"
    );
}

/// A manifest whose database names no password for a dump over the network: no
/// backup CronJob, and a site config asking for backups is refused, saying why.
#[test]
fn without_the_databases_password_there_is_no_backup_cronjob() {
    let mut m = netbox();
    if let Some(db) = m.manifest.backup.as_mut().and_then(|b| b.database.as_mut()) {
        db.password = None;
    }
    let r = render(&m, "site.toml", SITE, &Options::default()).unwrap();
    assert!(!r.backup_key);
    assert!(
        !r.files.keys().any(|f| f.contains("backup")),
        "{:?}",
        r.files.keys()
    );
    let e = render(
        &m,
        "site.toml",
        &format!("{SITE}[backup]\nschedule = \"24h\"\n"),
        &Options::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("names no `password` secret"), "{e}");
}

/// What a pod renders from its ConfigMap once `berth container` has put its own
/// address in (`BERTH_NODE_ADDRESS`): each rendered file of the instance, by path.
fn pod_files(r: &berth_k8s::Rendered, workload: &str, pod_ip: &str) -> BTreeMap<String, String> {
    let m = netbox();
    let vars = [(
        berth_container::settings::NODE_ADDRESS.to_owned(),
        pod_ip.to_owned(),
    )];
    let (name, text) =
        berth_container::settings::amend(&m.manifest, "site.toml", &r.sites[workload], &vars)
            .unwrap();
    let site = berth_model::parse_site(&name, &text, &m).unwrap_or_else(|d| panic!("{d}"));
    let facts = berth_model::Facts {
        is_root: true,
        ..berth_model::Facts::fixture()
    };
    let config = berth_model::resolve(&m, &site, &facts).unwrap_or_else(|d| panic!("{d}"));
    let secrets: BTreeMap<String, String> = r
        .secrets
        .iter()
        .map(|s| (s.name.clone(), format!("test-{}", s.name)))
        .collect();
    let paths = berth_render::Paths::for_prefix(Path::new("/var/opt/berth/netbox"), "4.7.3");
    let state = berth_render::render(&berth_render::RenderInput {
        manifest: &m,
        config: &config,
        facts: &facts,
        secrets: &secrets,
        paths: &paths,
        users: &berth_render::UserNames::shared(),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    state
        .files
        .into_iter()
        .map(|f| (f.path.display().to_string(), f.content))
        .collect()
}

/// Each pod finds the other roles at their Services and listens on its own address:
/// NetBox's web pod reaches PostgreSQL and Redis at `netbox-database` (the manifest
/// puts the cache role `with` the database, so Redis shares its pods), nginx listens
/// on the pod's address too; PostgreSQL and Redis listen on their pod's address, and
/// PostgreSQL lets the pod networks in (with the password).
#[test]
fn each_pod_finds_the_others_at_their_services_and_listens_on_its_own_address() {
    let r = render(&netbox(), "site.toml", SITE, &Options::default()).unwrap();
    let web = pod_files(&r, "netbox-web", "10.244.1.7");
    let config = &web["/var/opt/berth/netbox/etc/netbox/configuration.py"];
    assert!(config.contains("'HOST': 'netbox-database'"), "{config}");
    assert_eq!(
        config.matches("'HOST': 'netbox-database'").count(),
        3,
        "{config}"
    );
    assert!(config.contains("'10.244.1.7'"), "ALLOWED_HOSTS: {config}");
    let nginx = &web["/var/opt/berth/netbox/etc/nginx/nginx.conf"];
    assert!(nginx.contains("listen 10.244.1.7:443;"), "{nginx}");
    let db = pod_files(&r, "netbox-database", "10.244.2.9");
    let pg = &db["/var/opt/berth/netbox/etc/postgresql/postgresql.conf"];
    assert!(
        pg.contains("listen_addresses = '127.0.0.1,10.244.2.9'"),
        "{pg}"
    );
    let hba = &db["/var/opt/berth/netbox/etc/postgresql/pg_hba.conf"];
    assert!(
        hba.contains("host    all       all   10.0.0.0/8   scram-sha-256"),
        "{hba}"
    );
    let redis = &db["/var/opt/berth/netbox/etc/redis/redis.conf"];
    assert!(redis.contains("bind 127.0.0.1 10.244.2.9"), "{redis}");
    // The site config of the web pods, as its ConfigMap holds it.
    insta::assert_snapshot!(r.sites["netbox-web"], @r#"
    # The `web` pods' site config, written by `berth k8s render`: the site config
    # given to it, with the pods' roles and where every role's Service is.
    roles = ["web"]
    external_url = "https://netbox.example.com/"

    [fleet]
    name = "netbox"
    node = "web"
    networks = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8"]

    [fleet.nodes.database]
    address = "netbox-database"
    roles = ["cache", "database"]

    [fleet.nodes.web]
    address = "netbox-web"
    roles = ["web"]

    [fleet.nodes.worker]
    address = "netbox-worker"
    roles = ["worker"]
    "#);
}

#[path = "netbox/external.rs"]
mod external;
