//! The typed backup and upgrade policies and berth's own jobs (scheduled backups,
//! automatic upgrades), rendered from real site configs through the model's
//! resolution (defaults from its built-in declarations).

use std::collections::BTreeMap;
use std::path::Path;

use berth_model::{Facts, LoadedManifest, parse_site, resolve};
use berth_render::{
    AutoUpgrade, BackupTarget, DesiredState, Paths, RenderInput, SCHEDULED_BACKUP_JOB,
    SCHEDULED_UPGRADE_JOB, Schedule, backup_policy, render, scheduled_backup_job,
    scheduled_upgrade_job, supervision_plan,
};

const MANIFEST: &str = r#"
[app]
name = "shop"
version = "2.0.0"

[components.db]
source = "system"
packages = ["postgresql"]

[components.app]
source = "system"

[services.db]
component = "db"
command = ["postgres", "-D", "{{ paths.data }}/db"]

[services.web]
component = "app"
command = ["shop-web"]
depends_on = ["db"]

[jobs.cleanup]
component = "app"
command = ["shop-cleanup"]
every = "1h"
timeout = "5m"

[backup]
data_dirs = ["media"]
quiesce = ["web"]

[backup.database]
kind = "postgresql"
service = "db"
host = "127.0.0.1"
port = "5432"
name = "shop"
owner = "shop"
bin_dir = "/usr/lib/postgresql/15/bin"
"#;

fn manifest() -> LoadedManifest {
    LoadedManifest::from_sources("shop/berth.toml", MANIFEST, BTreeMap::new())
        .unwrap_or_else(|d| panic!("{d}"))
}

fn facts() -> Facts {
    Facts {
        cpus: 12,
        ..Facts::fixture()
    }
}

fn paths() -> Paths {
    Paths::for_prefix(Path::new("/var/opt/berth/shop"), "2.0.0")
}

fn state(site: &str) -> DesiredState {
    let m = manifest();
    let site = parse_site("site.toml", site, &m).unwrap_or_else(|d| panic!("{d}"));
    let config = resolve(&m, &site, &facts()).unwrap_or_else(|d| panic!("{d}"));
    render(&RenderInput {
        manifest: &m,
        config: &config,
        facts: &facts(),
        secrets: &BTreeMap::new(),
        paths: &paths(),
        users: &berth_render::UserNames::shared(),
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn defaults_come_from_the_builtin_declarations() {
    let policy = state("").backup_policy;
    // `jobs` is derived: the CPU count, at most 8.
    assert_eq!(policy.jobs, 8);
    assert_eq!(
        policy.target,
        BackupTarget::Default("/var/opt/berth/shop/backups".into())
    );
    insta::assert_yaml_snapshot!(policy);
}

#[test]
fn every_setting_typed() {
    let policy = state(
        r#"
[backup]
target = "sftp://backup@vault.example.com:2222/srv/shop"
schedule = "12h"
jobs = 3
compression_level = 9
keep_last = 2
keep_daily = 10
keep_weekly = 0
ssh_identity = "/root/.ssh/shop_backup"
ssh_known_hosts = "/root/.ssh/known_hosts_backup"
recipient = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
"#,
    )
    .backup_policy;
    assert_eq!(
        policy.schedule,
        Schedule::Every(std::time::Duration::from_hours(12))
    );
    insta::assert_yaml_snapshot!(policy);
}

#[test]
fn a_config_resolved_without_berths_settings_still_gets_the_defaults() {
    let m = manifest();
    let mut config = resolve(&m, &parse_site("site.toml", "", &m).unwrap(), &facts()).unwrap();
    config.settings.remove("backup");
    let policy = backup_policy(&config, &Facts { cpus: 2, ..facts() }, &paths()).unwrap();
    assert_eq!(policy, {
        let mut expected = state("").backup_policy;
        expected.jobs = 2;
        expected
    });
}

#[test]
fn no_schedule_no_job() {
    let state = state("[backup]\nschedule = \"off\"\n");
    let berth = Path::new("/var/opt/berth/shop/bin/berth");
    let config = Path::new("/var/opt/berth/shop/site.toml");
    assert_eq!(scheduled_backup_job(&state, berth, config), None);
    let plan = supervision_plan(&state, berth, config);
    assert_eq!(plan.services, state.services);
    assert_eq!(plan.jobs, state.jobs);
}

#[test]
fn scheduled_job_with_the_default_config() {
    let state = state("[backup]\nschedule = \"1d\"\n");
    let berth = Path::new("/var/opt/berth/shop/bin/berth");
    let plan = supervision_plan(&state, berth, &state.paths.prefix.join("site.toml"));
    let names: Vec<&str> = plan.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["cleanup", SCHEDULED_BACKUP_JOB]);
    insta::assert_yaml_snapshot!(plan.jobs[1]);
}

#[test]
fn scheduled_job_names_a_config_elsewhere() {
    let state = state("[backup]\nschedule = \"90m\"\n");
    let job = scheduled_backup_job(
        &state,
        Path::new("/usr/local/bin/berth"),
        Path::new("/etc/shop/site.toml"),
    )
    .unwrap();
    insta::assert_yaml_snapshot!(job.argv, @r#"
    - /usr/local/bin/berth
    - "--prefix"
    - /var/opt/berth/shop
    - "--config"
    - /etc/shop/site.toml
    - "--quiet"
    - backup
    - create
    - "--prune"
    "#);
    assert_eq!(job.every, std::time::Duration::from_mins(90));
}

/// Automatic upgrades are off by default: no job. Switched on, the job runs `berth
/// upgrade auto` every `check_every`, beside the backup job; the window and source are
/// the policy's, typed.
#[test]
fn automatic_upgrades_add_their_job() {
    let berth = Path::new("/var/opt/berth/shop/bin/berth");
    let config = Path::new("/var/opt/berth/shop/site.toml");
    let off = state("");
    assert_eq!(off.upgrade_policy.auto, AutoUpgrade::Off);
    assert_eq!(off.upgrade_policy.window, (180, 300));
    assert_eq!(scheduled_upgrade_job(&off, berth, config), None);

    let on = state(
        "[backup]\nschedule = \"1d\"\n[upgrade]\nauto = \"minor\"\nsource = \"/srv/releases\"\n\
         window = \"23:30-01:15\"\ncheck_every = \"30m\"\n",
    );
    let p = &on.upgrade_policy;
    assert_eq!(p.auto, AutoUpgrade::Minor);
    assert_eq!(p.source.as_deref(), Some(Path::new("/srv/releases")));
    assert_eq!(p.window, (23 * 60 + 30, 75));
    assert!(p.in_window(0) && !p.in_window(120));
    let plan = supervision_plan(&on, berth, config);
    let names: Vec<&str> = plan.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(
        names,
        ["cleanup", SCHEDULED_BACKUP_JOB, SCHEDULED_UPGRADE_JOB]
    );
    let job = &plan.jobs[2];
    assert_eq!(
        job.argv,
        [
            "/var/opt/berth/shop/bin/berth",
            "--prefix",
            "/var/opt/berth/shop",
            "--quiet",
            "upgrade",
            "auto"
        ]
    );
    assert_eq!(job.every, std::time::Duration::from_mins(30));
    assert_eq!(job.user, None);
}
