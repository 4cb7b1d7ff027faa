//! `[external]`: roles whose services run elsewhere (a managed PostgreSQL, Redis). No
//! workload runs them, their components' hooks are left to the external server's
//! administrator, the pods reach them at their host and the site's port, and the
//! backup CronJob dumps the database there.

use berth_k8s::{Options, render};

use super::{SITE, netbox, pod_files};

#[test]
fn an_external_database_is_no_workload_and_the_pods_reach_it_at_its_host() {
    let site = format!("{SITE}\n[external]\ndatabase = \"pg.example.com\"\n");
    let r = render(&netbox(), "site.toml", &site, &Options::default()).unwrap();
    let plan: Vec<String> = r
        .workloads
        .iter()
        .map(|w| format!("{} {:?} {:?} {:?}", w.name, w.kind, w.roles, w.services))
        .collect();
    // Redis, `with` the database on a host, has pods of its own.
    insta::assert_snapshot!(plan.join("\n"), @r#"
    netbox-cache StatefulSet ["cache"] ["redis"]
    netbox-web Deployment ["web"] ["web", "nginx"]
    netbox-worker Deployment ["worker"] ["worker"]
    "#);
    assert_eq!(r.skipped_hooks, ["initdb", "createdb"]);
    let places: Vec<String> = r.hooks.iter().map(|(h, p)| format!("{h}: {p:?}")).collect();
    insta::assert_snapshot!(places.join("\n"), @r#"
    collectstatic: Init("netbox-web")
    migrate: Job
    create_admin: InService("web")
    "#);
    let waits: Vec<String> = r
        .workloads
        .iter()
        .map(|w| format!("{}: {:?}", w.name, w.waits))
        .collect();
    insta::assert_snapshot!(waits.join("\n"), @r#"
    netbox-cache: []
    netbox-web: [Hook { hook: "migrate", site: "netbox-web" }]
    netbox-worker: [Hook { hook: "migrate", site: "netbox-web" }]
    "#);
    // The migration waits for the database where it is, and the cache's Service.
    let job = &r.files["base/job-netbox-migrate-4-7-3.yaml"];
    assert!(
        job.contains("- wait-for\n        - pg.example.com:5433"),
        "{job}"
    );
    assert!(
        job.contains("- wait-for\n        - netbox-cache:6380"),
        "{job}"
    );
    assert!(
        !r.files.keys().any(|k| k.contains("netbox-database")),
        "{:?}",
        r.files.keys()
    );

    // The pods see where the database is, as a node of their fleet at its host; no
    // pod's site config has `[external]` (a pod's berth runs what it is given).
    for text in r.sites.values() {
        assert!(!text.contains("[external]"), "{text}");
    }
    insta::assert_snapshot!(r.sites["netbox-web"], @r#"
    # The `web` pods' site config, written by `berth k8s render`: the site config
    # given to it, with the pods' roles and where every role's Service is.
    roles = ["web"]
    external_url = "https://netbox.example.com/"

    [fleet]
    name = "netbox"
    node = "web"
    networks = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8"]

    [fleet.nodes.cache]
    address = "netbox-cache"
    roles = ["cache"]

    [fleet.nodes.web]
    address = "netbox-web"
    roles = ["web"]

    [fleet.nodes.worker]
    address = "netbox-worker"
    roles = ["worker"]

    [fleet.nodes.database]
    address = "pg.example.com"
    roles = ["database"]
    "#);
    let web = pod_files(&r, "netbox-web", "10.244.1.7");
    let config = &web["/var/opt/berth/netbox/etc/netbox/configuration.py"];
    assert_eq!(
        config.matches("'HOST': 'pg.example.com'").count(),
        1,
        "{config}"
    );
    assert_eq!(
        config.matches("'HOST': 'netbox-cache'").count(),
        2,
        "{config}"
    );
    let cache = pod_files(&r, "netbox-cache", "10.244.2.9");
    let redis = &cache["/var/opt/berth/netbox/etc/redis/redis.conf"];
    assert!(redis.contains("bind 127.0.0.1 10.244.2.9"), "{redis}");
}

/// The backup CronJob dumps the database where it is, in the database's image (its
/// dump tools), with a site config of its own in which the database service is on.
#[test]
fn the_backup_cronjob_dumps_an_external_database_where_it_is() {
    let site = format!("{SITE}\n[external]\ndatabase = \"pg.example.com\"\n");
    let r = render(&netbox(), "site.toml", &site, &Options::default()).unwrap();
    let cron = &r.files["base/cronjob-netbox-backup.yaml"];
    assert!(
        cron.contains("- --database\n") && cron.contains("- pg.example.com:5433\n"),
        "{cron}"
    );
    assert!(
        cron.contains("image: localhost/netbox-postgresql:4.7.3"),
        "{cron}"
    );
    assert!(cron.contains("name: netbox-backup-site"), "{cron}");
    // No node's address to give it: its site config names no fleet.
    assert!(
        !cron.contains("BERTH_NODE_ADDRESS") && cron.contains("BERTH_CONFIG"),
        "{cron}"
    );
    let own = &r.files["base/configmap-netbox-backup-site.yaml"];
    assert!(
        own.contains("external_url = \\\"https://netbox.example.com/\\\"")
            || own.contains("external_url = \"https://netbox.example.com/\""),
        "{own}"
    );
    assert!(
        !own.contains("external]") && !own.contains("roles"),
        "{own}"
    );
    let kustomization = &r.files["base/kustomization.yaml"];
    assert!(
        kustomization.contains("- configmap-netbox-backup-site.yaml"),
        "{kustomization}"
    );
}

/// The restore Job loads the dump into the database where it is, as its owner, in the
/// database's image; it mounts the data the manifest backs up (no database volume is
/// here), runs none of the database server's hooks, and its claim is sized as the
/// manifest sizes the database's volume.
#[test]
fn the_restore_job_loads_an_external_database_where_it_is() {
    let site = format!("{SITE}\n[external]\ndatabase = \"pg.example.com\"\n");
    let r = render(&netbox(), "site.toml", &site, &Options::default()).unwrap();
    let job = &r.files["restore-base/job-netbox-restore.yaml"];
    assert!(
        job.contains("- --database\n") && job.contains("- pg.example.com:5433\n"),
        "{job}"
    );
    assert!(
        job.contains("image: localhost/netbox-postgresql:4.7.3"),
        "{job}"
    );
    assert!(job.contains("name: netbox-backup-site"), "{job}");
    assert!(!job.contains("initContainers"), "{job}");
    assert!(!job.contains("BERTH_NODE_ADDRESS"), "{job}");
    assert!(!job.contains("data-postgresql"), "{job}");
    assert!(
        job.contains("mountPath: /var/opt/berth/netbox/data/netbox"),
        "{job}"
    );
    // Every workload stops first, and its Service stops answering.
    for w in ["netbox-cache:6380", "netbox-web:8001"] {
        assert!(
            job.contains(&format!("- --not-while\n        - {w}\n")),
            "{job}"
        );
    }
    let claim = &r.files["restore-base/pvc-netbox-restore.yaml"];
    let database = &r.files["base/pvc-netbox-data-netbox.yaml"];
    let storage = |text: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with("storage:"))
            .map(str::to_owned)
    };
    insta::assert_snapshot!(storage(claim).unwrap(), @"      storage: 10Gi");
    assert!(storage(database).is_some(), "{database}");
    for env in [
        "restore/production/stop-netbox-web.yaml",
        "restore/production/stop-netbox-cache.yaml",
    ] {
        assert!(r.files.contains_key(env), "{:?}", r.files.keys());
    }
}

/// Both of NetBox's stores at one host: one node of the pods' fleet (a node's address
/// is its own), and only the app's workloads.
#[test]
fn a_database_and_a_cache_at_one_host_are_one_node() {
    let site = format!("{SITE}\n[external]\ndatabase = \"10.0.5.7\"\ncache = \"10.0.5.7\"\n");
    let r = render(&netbox(), "site.toml", &site, &Options::default()).unwrap();
    let names: Vec<&str> = r.workloads.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["netbox-web", "netbox-worker"]);
    let outside: Vec<String> = r
        .outside
        .iter()
        .map(|o| format!("{} {} {}", o.role, o.service, o.address))
        .collect();
    assert_eq!(
        outside,
        [
            "cache redis 10.0.5.7:6380",
            "database postgresql 10.0.5.7:5433"
        ]
    );
    let web = &r.sites["netbox-web"];
    assert!(
        web.contains(
            "[fleet.nodes.cache]\naddress = \"10.0.5.7\"\nroles = [\"cache\", \"database\"]\n"
        ),
        "{web}"
    );
    let job = &r.files["base/job-netbox-migrate-4-7-3.yaml"];
    assert!(
        job.contains("- 10.0.5.7:5433") && job.contains("- 10.0.5.7:6380"),
        "{job}"
    );
    let files = pod_files(&r, "netbox-worker", "10.244.3.3");
    let config = &files["/var/opt/berth/netbox/etc/netbox/configuration.py"];
    assert_eq!(config.matches("'HOST': '10.0.5.7'").count(), 3, "{config}");
}

/// What cannot be elsewhere, or is not a place, is refused by position, with the fix.
#[test]
fn an_external_role_must_be_one_that_can_run_elsewhere_at_a_host() {
    let refused = |external: &str| {
        let site = format!("{SITE}\n[external]\n{external}\n");
        render(&netbox(), "site.toml", &site, &Options::default())
            .unwrap_err()
            .to_string()
    };
    let e = refused("databse = \"pg.example.com\"");
    assert!(
        e.contains("site.toml:4:1") && e.contains("unknown role `databse` in `[external]`"),
        "{e}"
    );
    assert!(e.contains("did you mean `database`?"), "{e}");
    let e = refused("web = \"web.example.com\"");
    assert!(e.contains("role `web` serves `external_url`"), "{e}");
    let e = refused("consensus = \"etcd.example.com\"");
    assert!(
        e.contains("role `consensus` runs no service of the app's"),
        "{e}"
    );
    assert!(
        e.contains("roles that can be external: `cache`, `database`"),
        "{e}"
    );
    let e = refused("database = \"postgres://pg.example.com:5432\"");
    assert!(
        e.contains("site.toml:4:12") && e.contains("is not a host name or an IP address"),
        "{e}"
    );
    assert!(e.contains("the port is the site's setting"), "{e}");
    let e = refused("database = 5432");
    assert!(
        e.contains("expected a host name or IP address for `external.database`"),
        "{e}"
    );
}
