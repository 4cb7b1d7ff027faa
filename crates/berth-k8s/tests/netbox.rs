//! NetBox's Kubernetes objects, from `examples/netbox` and a site config naming its
//! external URL: every file of the kustomize tree, snapshotted; the workloads as
//! planned; and what is refused.

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
    netbox-cache StatefulSet x1 ["redis"] init []
    netbox-database StatefulSet x1 ["postgresql"] init ["initdb"]
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
    create_admin: InService("web")
    createdb: InService("postgresql")
    initdb: Init("netbox-database")
    migrate: Job
    "#);
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
