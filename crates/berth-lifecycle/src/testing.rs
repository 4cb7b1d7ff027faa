//! What the unit tests of the lifecycle share: small desired states and the fixture
//! instance on a prefix of its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_render::{AppId, DesiredState, HookSpec, Paths};
use berth_supervisor_protocol::{RestartPolicy, ServiceSpec};

use crate::instance::{Instance, Locate};

/// Owned names.
pub fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// A service that needs `deps`.
pub fn service(name: &str, deps: &[&str]) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        argv: vec!["/bin/true".into()],
        env: BTreeMap::new(),
        cwd: None,
        user: None,
        depends_on: names(deps),
        readiness: None,
        stop_signal: "SIGTERM".into(),
        stop_timeout: Duration::from_secs(1),
        reload_signal: None,
        restart: RestartPolicy::Always,
        log_dir: PathBuf::from("/l"),
        log_max_bytes: 1,
        log_keep: 1,
    }
}

/// A desired state of app `a` 1.0.0 on `prefix`, with nothing but `services` and `hooks`.
pub fn state_on(prefix: &Path, services: Vec<ServiceSpec>, hooks: Vec<HookSpec>) -> DesiredState {
    DesiredState {
        app: AppId {
            name: "a".into(),
            version: "1.0.0".into(),
        },
        paths: Paths::for_prefix(prefix, "1.0.0"),
        users: vec![],
        dirs: vec![],
        files: vec![],
        packages: vec![],
        binaries: BTreeMap::new(),
        bundles: vec![],
        secrets: vec![],
        services,
        jobs: vec![],
        listen: BTreeMap::new(),
        hooks,
        health_url: String::new(),
        next_steps: vec![],
        backup: None,
        backup_policy: berth_render::BackupPolicy {
            target: berth_render::BackupTarget::Default(prefix.join("backups")),
            schedule: berth_render::Schedule::Off,
            jobs: 1,
            compression_level: 3,
            keep_last: 7,
            keep_daily: 7,
            keep_weekly: 4,
            ssh_identity: None,
            ssh_known_hosts: None,
            recipient: None,
        },
    }
}

/// The small fixture app, on a prefix of its own (nothing is installed or started).
pub fn instance(prefix: &Path) -> Instance {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/ministack");
    crate::instance::open(&Locate {
        prefix: Some(prefix.to_path_buf()),
        manifest: Some(manifest),
        ..Locate::default()
    })
    .unwrap()
}
