//! The supervision plan of a desired state: its services and jobs, and berth's own
//! jobs: scheduled backups and automatic upgrades.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use berth_supervisor_protocol::{
    JobSpec, MetricsSpec, Probe, Readiness, RestartPolicy, ServiceSpec, SupervisionPlan,
};

use crate::{DesiredState, Schedule};

/// Name of the supervisor job that takes scheduled backups.
pub const SCHEDULED_BACKUP_JOB: &str = "berth-backup";

/// Name of the supervisor job that looks for and applies automatic upgrades.
pub const SCHEDULED_UPGRADE_JOB: &str = "berth-upgrade";

/// Name of the service that runs the web console when `console.listen` is set.
pub const CONSOLE_SERVICE: &str = "berth-console";

/// What the supervisor runs for `state`: its services, its jobs and, when
/// `backup.schedule` is on, [`scheduled_backup_job`].
///
/// `berth` is the berth program the job runs (the instance's installed copy);
/// `config` the site config the instance was rendered from.
pub fn supervision_plan(state: &DesiredState, berth: &Path, config: &Path) -> SupervisionPlan {
    let mut jobs = state.jobs.clone();
    jobs.extend(scheduled_backup_job(state, berth, config));
    jobs.extend(scheduled_upgrade_job(state, berth, config));
    let mut services = state.services.clone();
    services.extend(console_service(state, berth, config));
    SupervisionPlan {
        services,
        jobs,
        metrics: state.metrics_listen.as_ref().map(|listen| MetricsSpec {
            listen: listen.clone(),
            app: state.app.name.clone(),
            last_backup: state.paths.last_backup_record(),
            app_endpoints: state.metrics_endpoints.clone(),
        }),
    }
}

/// The job for `backup.schedule` (`None` when it is `off`): `berth backup create
/// --prune` every interval, as the user berth runs as, once the database is ready.
pub fn scheduled_backup_job(state: &DesiredState, berth: &Path, config: &Path) -> Option<JobSpec> {
    let Schedule::Every(every) = state.backup_policy.schedule else {
        return None;
    };
    let prefix = &state.paths.prefix;
    let argv = berth_argv(state, berth, config, &["backup", "create", "--prune"]);
    Some(JobSpec {
        name: SCHEDULED_BACKUP_JOB.to_owned(),
        argv,
        env: actor("supervisor: scheduled backup"),
        cwd: Some(prefix.clone()),
        user: None,
        every,
        // A backup that takes longer than its interval is stuck, or the next one would
        // pile up behind it.
        timeout: every,
        requires: state
            .backup
            .as_ref()
            .and_then(|b| b.database.as_ref())
            .map(|d| vec![d.service.clone()])
            .unwrap_or_default(),
        log_dir: state.paths.job_log_dir(SCHEDULED_BACKUP_JOB),
    })
}

/// The web console as a service (`None` when `console.listen` is empty): `berth
/// console` on that address under `console.path`, as the user berth runs as (its
/// changes are berth's own commands), restarted whenever it ends. It depends on no
/// app service: it is how an administrator sees why one does not start.
pub fn console_service(state: &DesiredState, berth: &Path, config: &Path) -> Option<ServiceSpec> {
    let console = state.console.as_ref()?;
    let argv = berth_argv(
        state,
        berth,
        config,
        &[
            "console",
            "--listen",
            &console.listen,
            "--base-path",
            &console.path,
        ],
    );
    Some(ServiceSpec {
        name: CONSOLE_SERVICE.to_owned(),
        argv,
        env: BTreeMap::new(),
        cwd: Some(state.paths.prefix.clone()),
        user: None,
        depends_on: Vec::new(),
        readiness: Some(Readiness {
            probe: Probe::Tcp {
                address: console.listen.clone(),
            },
            timeout: Duration::from_secs(30),
        }),
        stop_signal: "SIGTERM".to_owned(),
        stop_timeout: Duration::from_secs(10),
        reload_signal: None,
        restart: RestartPolicy::Always,
        log_dir: state.paths.service_log_dir(CONSOLE_SERVICE),
        log_max_bytes: 10 << 20,
        log_keep: 3,
    })
}

/// The environment of one of berth's own jobs: who the history says started its runs.
fn actor(who: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("BERTH_ACTOR".to_owned(), who.to_owned())])
}

/// `berth --prefix P [--config C] --quiet <command>` for one of berth's own jobs.
fn berth_argv(state: &DesiredState, berth: &Path, config: &Path, command: &[&str]) -> Vec<String> {
    let mut argv = vec![
        berth.display().to_string(),
        "--prefix".to_owned(),
        state.paths.prefix.display().to_string(),
    ];
    // The default location needs no flag; anything else must be named, or the job
    // would act with another config than the instance runs.
    if config != state.paths.site_config() {
        argv.push("--config".to_owned());
        argv.push(config.display().to_string());
    }
    argv.push("--quiet".to_owned());
    argv.extend(command.iter().map(|s| (*s).to_owned()));
    argv
}

/// The job for `upgrade.auto` (`None` when it is `off`): `berth upgrade auto` every
/// `upgrade.check_every`; the command itself keeps to the window.
pub fn scheduled_upgrade_job(state: &DesiredState, berth: &Path, config: &Path) -> Option<JobSpec> {
    let policy = &state.upgrade_policy;
    if policy.auto == crate::AutoUpgrade::Off {
        return None;
    }
    Some(JobSpec {
        name: SCHEDULED_UPGRADE_JOB.to_owned(),
        argv: berth_argv(state, berth, config, &["upgrade", "auto"]),
        env: actor("supervisor: automatic upgrade"),
        cwd: Some(state.paths.prefix.clone()),
        user: None,
        every: policy.check_every,
        // An upgrade builds a release and migrates a database: hours, not minutes,
        // before it counts as stuck.
        timeout: std::time::Duration::from_hours(6),
        requires: Vec::new(),
        log_dir: state.paths.job_log_dir(SCHEDULED_UPGRADE_JOB),
    })
}
