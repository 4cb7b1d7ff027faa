//! The supervision plan of a desired state: its services and jobs, and the job that
//! takes scheduled backups.

use std::collections::BTreeMap;
use std::path::Path;

use berth_supervisor_protocol::{JobSpec, SupervisionPlan};

use crate::{DesiredState, Schedule};

/// Name of the supervisor job that takes scheduled backups.
pub const SCHEDULED_BACKUP_JOB: &str = "berth-backup";

/// What the supervisor runs for `state`: its services, its jobs and, when
/// `backup.schedule` is on, [`scheduled_backup_job`].
///
/// `berth` is the berth program the job runs (the instance's installed copy);
/// `config` the site config the instance was rendered from.
pub fn supervision_plan(state: &DesiredState, berth: &Path, config: &Path) -> SupervisionPlan {
    let mut jobs = state.jobs.clone();
    jobs.extend(scheduled_backup_job(state, berth, config));
    SupervisionPlan {
        services: state.services.clone(),
        jobs,
    }
}

/// The job for `backup.schedule` (`None` when it is `off`): `berth backup create
/// --prune` every interval, as the user berth runs as, once the database is ready.
pub fn scheduled_backup_job(state: &DesiredState, berth: &Path, config: &Path) -> Option<JobSpec> {
    let Schedule::Every(every) = state.backup_policy.schedule else {
        return None;
    };
    let prefix = &state.paths.prefix;
    let mut argv = vec![
        berth.display().to_string(),
        "--prefix".to_owned(),
        prefix.display().to_string(),
    ];
    // The default location needs no flag; anything else must be named, or the job
    // would back up with another config than the instance runs.
    if config != state.paths.site_config() {
        argv.push("--config".to_owned());
        argv.push(config.display().to_string());
    }
    argv.extend(["--quiet", "backup", "create", "--prune"].map(str::to_owned));
    Some(JobSpec {
        name: SCHEDULED_BACKUP_JOB.to_owned(),
        argv,
        env: BTreeMap::new(),
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
