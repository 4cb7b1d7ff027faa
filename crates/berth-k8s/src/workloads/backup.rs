//! The backup CronJob: `berth container backup` in the database's image, dumping the
//! database over its Service as the role that owns it and copying the backed-up data
//! directories from their claims (read-only), into a claim of its own; signed with the
//! deployment's key file (a Secret of its own, made once by `berth k8s render`), so a
//! host's `berth restore --key` takes it as it takes a host's archive. A database
//! elsewhere (`[external]`) is dumped at its address the same way.

use std::collections::BTreeMap;

use berth_render::{BackupPolicy, Schedule};
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{ConfigMap, SecretVolumeSource, Volume};

use super::restore::{
    claim_volume, elsewhere, home, job_spec, sized_like_database, volumes_and_mounts,
};
use super::{Context, Workload, labels, meta, one_off_container, pod, site_config_volume, to_yaml};
use crate::K8sError;

/// Where the backup pod writes its archives (the claim `<app>-backups`).
pub const BACKUPS_DIR: &str = "/var/opt/berth/backups";

/// Where the backup pod finds its key file (`key`, from the Secret `<app>-backup-key`).
pub const KEY_DIR: &str = "/var/opt/berth/backup-key";

/// The file under the base's `secrets/` the key file is generated from, and its key in
/// the Secret `<app>-backup-key`.
pub const KEY_FILE: &str = "backup-key";

/// The schedule of a CronJob that is rendered suspended: it runs on demand only
/// (`kubectl create job --from=cronjob/<app>-backup`).
const ON_DEMAND: &str = "@daily";

/// The backup's objects, by file name (`cronjob-<app>-backup.yaml`,
/// `pvc-<app>-backups.yaml`); none when the manifest backs up nothing, or when its
/// database names no `password` and the site config sets nothing of `[backup]`
/// (`asked`).
///
/// # Errors
/// `backup.schedule` is not one a CronJob can say; the site config sets `[backup]` and
/// the manifest's database has no `password` for a dump over the network; a claim's
/// size or YAML fails.
pub fn objects(
    m: &berth_model::Manifest,
    plan: &[Workload],
    ctx: &Context<'_>,
    (policy, asked): (&BackupPolicy, bool),
) -> Result<BTreeMap<String, String>, K8sError> {
    let mut out = BTreeMap::new();
    // In the cluster, or elsewhere with its address.
    let Some((home, service, outside)) = home(m, plan)
        .map(|(w, s)| (w, s, None))
        .or_else(|| elsewhere(m, plan, ctx).map(|(w, s, a)| (w, s, Some(a))))
    else {
        return Ok(out);
    };
    let (app, version) = (&m.app.name, &m.app.version);
    let Some(args) = args(m, home, outside, asked)? else {
        return Ok(out);
    };
    let (schedule, suspend) = schedule(policy)?;
    let claim = format!("{app}-backups");
    let key = Volume {
        name: "backup-key".to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(format!("{app}-backup-key")),
            default_mode: Some(0o440),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    };
    let (vols, mounted) = volumes_and_mounts(
        m,
        plan,
        (home, None),
        ctx,
        true,
        vec![
            (
                claim_volume("backups", &claim),
                BACKUPS_DIR.to_owned(),
                false,
            ),
            (key, KEY_DIR.to_owned(), true),
        ],
    );
    let (vols, site) = own_site(m, home, ctx, (vols, &service))?;
    let mut spec = pod(ctx, m, home, Some("Never"));
    spec.init_containers = None;
    spec.containers = vec![one_off_container(
        ctx,
        m,
        ("backup", &service),
        args,
        mounted,
    )];
    if site.is_some() {
        no_node_address(&mut spec);
    }
    spec.volumes = Some(vols);
    out.extend(site);
    let cron = CronJob {
        metadata: meta(&format!("{app}-backup"), labels(app, version, "backup")),
        spec: CronJobSpec {
            schedule,
            suspend: Some(suspend),
            // One backup at a time; a failed one is not retried in a loop (the next
            // scheduled one comes).
            concurrency_policy: Some("Forbid".to_owned()),
            job_template: JobTemplateSpec {
                metadata: None,
                spec: Some(job_spec(spec, 1)),
            },
            ..CronJobSpec::default()
        },
        ..CronJob::default()
    };
    out.insert(format!("cronjob-{app}-backup.yaml"), to_yaml(&cron)?);
    // Room for a few archives, each a compressed dump and the files.
    let pvc = sized_like_database(m, (home, &service), (&claim, "backup"), ctx)?;
    out.insert(format!("pvc-{claim}.yaml"), to_yaml(&pvc)?);
    Ok(out)
}

/// A pod's volumes, and a ConfigMap's file name and text.
pub(super) type WithSite = (Vec<Volume>, Option<(String, String)>);

/// With the database elsewhere, the pod's site config of its own: the whole app's
/// (the administrator's without `[external]`), in which the database service is on
/// and so its dump is planned (`--database` says where it is); the ConfigMap
/// `<app>-backup-site` in place of `home`'s, by file name.
pub(super) fn own_site(
    m: &berth_model::Manifest,
    home: &Workload,
    ctx: &Context<'_>,
    (mut vols, service): (Vec<Volume>, &str),
) -> Result<WithSite, K8sError> {
    if home.services.iter().any(|s| s == service) {
        return Ok((vols, None));
    }
    let (app, version) = (&m.app.name, &m.app.version);
    let name = format!("{app}-backup-site");
    let map = ConfigMap {
        metadata: meta(&name, labels(app, version, "backup")),
        data: Some(BTreeMap::from([(
            "site.toml".to_owned(),
            ctx.site.to_owned(),
        )])),
        ..ConfigMap::default()
    };
    for v in &mut vols {
        if v.name == "site" {
            *v = site_config_volume("site".to_owned(), &format!("{app}-backup"));
        }
    }
    Ok((
        vols,
        Some((format!("configmap-{name}.yaml"), to_yaml(&map)?)),
    ))
}

/// A pod of the whole app's site config, no node of a fleet: its address has nothing
/// to replace in it.
pub(super) fn no_node_address(spec: &mut k8s_openapi::api::core::v1::PodSpec) {
    for c in &mut spec.containers {
        if let Some(env) = &mut c.env {
            env.retain(|e| e.name != berth_container::settings::NODE_ADDRESS);
        }
    }
}

/// `berth container backup`'s arguments, the database at `home`'s Service or at
/// `outside` (its address elsewhere); `None` when the database names no password and
/// nobody asked for backups.
fn args(
    m: &berth_model::Manifest,
    home: &Workload,
    outside: Option<String>,
    asked: bool,
) -> Result<Option<Vec<String>>, K8sError> {
    let mut args = vec![
        "backup".to_owned(),
        "--to".to_owned(),
        BACKUPS_DIR.to_owned(),
        "--key".to_owned(),
        format!("{KEY_DIR}/key"),
    ];
    if let Some(db) = m.backup.as_ref().and_then(|b| b.database.as_ref()) {
        if db.password.is_none() {
            if !asked {
                return Ok(None);
            }
            return Err(K8sError::Unsupported(format!(
                "the site config sets `[backup]`, and the backup CronJob would dump the database over its Service as `{}`, for which the manifest's `[backup.database]` names no `password` secret: add one to the manifest, or remove `[backup]` from the site config",
                db.owner
            )));
        }
        let address = home
            .ports
            .iter()
            .find(|(s, _)| s == &db.service)
            .map(|(_, p)| format!("{}:{p}", home.name))
            .or(outside)
            .ok_or_else(|| {
                K8sError::Unsupported(format!(
                    "the database service `{}` listens on no port its Service could offer the backup CronJob",
                    db.service
                ))
            })?;
        args.push("--database".to_owned());
        args.push(address);
    }
    Ok(Some(args))
}

/// The CronJob's schedule, and whether it is suspended (`backup.schedule` off).
fn schedule(policy: &BackupPolicy) -> Result<(String, bool), K8sError> {
    Ok(match policy.schedule {
        Schedule::Off => (ON_DEMAND.to_owned(), true),
        Schedule::Every(every) => {
            let secs = every.as_secs();
            let text = if secs % 60 == 0 {
                format!("{}m", secs / 60)
            } else {
                format!("{secs}s")
            };
            let schedule = super::schedule(&text).ok_or_else(|| {
                K8sError::Unsupported(format!(
                    "`backup.schedule` of {text} is not a schedule a CronJob can say: make it a whole number of minutes dividing an hour, of hours dividing a day, or `24h`"
                ))
            })?;
            (schedule, false)
        }
    })
}
