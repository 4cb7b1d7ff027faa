//! The scheduled backup: a supervisor job that runs `berth backup create --prune`
//! every `backup.schedule`.

use berth_model::SettingValue;
use berth_render::DesiredState;
use berth_supervisor_protocol::JobSpec;

use crate::instance::Instance;

/// Name of the supervisor job that takes scheduled backups.
pub const SCHEDULED_JOB: &str = "berth-backup";

fn setting<'a>(inst: &'a Instance, key: &str) -> Option<&'a SettingValue> {
    inst.config
        .settings
        .get(berth_model::builtin::BACKUP_GROUP)
        .and_then(|g| g.get(key))
        .map(|r| &r.value)
}

/// A `backup.*` setting that is a string (empty when unset).
pub fn backup_setting_str(inst: &Instance, key: &str) -> String {
    match setting(inst, key) {
        Some(SettingValue::String(s)) => s.clone(),
        _ => String::new(),
    }
}

/// A `backup.*` setting that is a number, `default` when unset.
pub fn backup_setting_int(inst: &Instance, key: &str, default: i64) -> i64 {
    match setting(inst, key) {
        Some(SettingValue::Int(i)) => *i,
        _ => default,
    }
}

/// The supervisor job for `backup.schedule` (`None` when it is `off`): `berth backup
/// create --prune` every interval, as the user berth runs as.
pub fn scheduled_backup(inst: &Instance, state: &DesiredState) -> Option<JobSpec> {
    let schedule = backup_setting_str(inst, "schedule");
    if schedule.is_empty() || schedule == "off" {
        return None;
    }
    let every = humantime::parse_duration(&schedule).ok()?;
    // The instance's own copy (what its supervisor runs), once `up` has put it there.
    let installed = inst.paths.installed_berth();
    let exe = if installed.exists() {
        installed
    } else {
        std::env::current_exe().ok()?
    };
    let mut argv = vec![
        exe.display().to_string(),
        "--prefix".to_owned(),
        inst.paths.prefix.display().to_string(),
    ];
    if inst.config_path != inst.paths.site_config() {
        argv.push("--config".to_owned());
        argv.push(inst.config_path.display().to_string());
    }
    argv.extend(["--quiet", "backup", "create", "--prune"].map(str::to_owned));
    Some(JobSpec {
        name: SCHEDULED_JOB.to_owned(),
        argv,
        env: std::collections::BTreeMap::new(),
        cwd: Some(inst.paths.prefix.clone()),
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
        log_dir: inst.paths.job_log_dir(SCHEDULED_JOB),
    })
}
