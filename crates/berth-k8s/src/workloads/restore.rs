//! The restore Job: a backup (`berth backup create` on a host, or in another
//! deployment) restored into the deployment's volumes by one pod that mounts them
//! all, in the database's image, while the workloads are scaled to 0 (their Services
//! must stop answering before it begins). The archive and its key file come through a
//! claim of their own; the pod waits for them.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Volume,
    VolumeMount,
};

use super::{
    Context, Kind, Workload, claim_name, claim_spec, data_path, hook_container, labels, meta,
    mounts, one_off_container, pod, to_yaml, volume_name, volumes,
};
use crate::K8sError;

/// Where the restore pod finds the archive (`archive`), its key file (`key`) and the
/// word to begin (`ready`).
pub const RESTORE_DIR: &str = "/var/opt/berth/restore";

/// The workload the restore runs in: the database's (its image has the database
/// server and tools), else the first with data.
pub(super) fn home<'p>(
    m: &berth_model::Manifest,
    plan: &'p [Workload],
) -> Option<(&'p Workload, String)> {
    let backup = m.backup.as_ref()?;
    if let Some(db) = &backup.database {
        let w = plan.iter().find(|w| w.services.contains(&db.service))?;
        return Some((w, db.service.clone()));
    }
    let w = plan.iter().find(|w| !w.data_dirs.is_empty())?;
    Some((w, w.services.first()?.clone()))
}

/// With the database elsewhere (`[external]`): the one-off pod (the backup's, the
/// restore's) is made from the first workload with data (else the first), still in
/// the database service's image, which has its tools; the database's address.
pub(super) fn elsewhere<'p>(
    m: &berth_model::Manifest,
    plan: &'p [Workload],
    ctx: &Context<'_>,
) -> Option<(&'p Workload, String, String)> {
    let db = m.backup.as_ref()?.database.as_ref()?;
    let outside = ctx.outside.iter().find(|o| o.service == db.service)?;
    let w = plan
        .iter()
        .find(|w| !w.data_dirs.is_empty())
        .or_else(|| plan.first())?;
    Some((w, db.service.clone(), outside.address.clone()))
}

/// The claim a workload's data directory is on: the shared one of a Deployment, the
/// first pod's of a StatefulSet.
fn claim_of(app: &str, w: &Workload, dir: &str) -> String {
    match w.kind {
        Kind::Deployment => claim_name(app, dir),
        Kind::StatefulSet => format!("{}-{}-0", volume_name(dir), w.name),
    }
}

/// A one-off pod's volumes and its containers' mounts (the restore's, the backup's):
/// the site config and secrets of `home`, the data directories of the component of
/// `own` (the database's own volume, `None`: not mounted) and those holding what the
/// manifest backs up, each on its claim (read-only when `read_only`), and `extra`
/// (volume, mount path, read-only).
pub(super) fn volumes_and_mounts(
    m: &berth_model::Manifest,
    plan: &[Workload],
    (home, own): (&Workload, Option<&str>),
    ctx: &Context<'_>,
    read_only: bool,
    extra: Vec<(Volume, String, bool)>,
) -> (Vec<Volume>, Vec<VolumeMount>) {
    let app = m.app.name.as_str();
    let component = own
        .and_then(|s| m.services.get(s))
        .map(|s| s.component.as_str());
    let backed_up = m
        .backup
        .as_ref()
        .map(|b| b.data_dirs.as_slice())
        .unwrap_or_default();
    // The service's own (the database's) and those holding a backed-up directory.
    let needed = |c: &str, dir: &str| {
        Some(c) == component
            || backed_up
                .iter()
                .any(|b| b == dir || b.starts_with(&format!("{dir}/")))
    };
    let mut vols: Vec<Volume> = volumes(app, home)
        .into_iter()
        .filter(|v| v.persistent_volume_claim.is_none())
        .collect();
    let mut mounted = mounts(ctx, home);
    mounted.retain(|v| !v.name.starts_with("data-"));
    for w in plan {
        for (c, dir) in &w.data_dirs {
            let name = volume_name(dir);
            if !needed(c, dir) || vols.iter().any(|v| v.name == name) {
                continue;
            }
            vols.push(Volume {
                name: name.clone(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim_of(app, w, dir),
                    read_only: Some(read_only).filter(|r| *r),
                }),
                ..Volume::default()
            });
            mounted.push(VolumeMount {
                name,
                mount_path: data_path(ctx.prefix, dir),
                read_only: Some(read_only).filter(|r| *r),
                ..VolumeMount::default()
            });
        }
    }
    for (volume, path, read_only) in extra {
        mounted.push(VolumeMount {
            name: volume.name.clone(),
            mount_path: path,
            read_only: Some(read_only).filter(|r| *r),
            ..VolumeMount::default()
        });
        vols.push(volume);
    }
    (vols, mounted)
}

/// A volume of the claim `claim`, named `name`.
pub(super) fn claim_volume(name: &str, claim: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.to_owned(),
            ..PersistentVolumeClaimVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// A Job's spec: `spec`'s pod, retried `backoff` times.
pub(super) fn job_spec(spec: PodSpec, backoff: i32) -> JobSpec {
    JobSpec {
        backoff_limit: Some(backoff),
        template: PodTemplateSpec {
            metadata: None,
            spec: Some(spec),
        },
        ..JobSpec::default()
    }
}

/// The claim `name` (labelled `component`) as large as the volume of the database
/// service `service` (the manifest's first data directory of its component), which a
/// dump or an archive of it fits in; else as `home`'s first volume.
pub(super) fn sized_like_database(
    m: &berth_model::Manifest,
    (home, service): (&Workload, &str),
    (name, component): (&str, &str),
    ctx: &Context<'_>,
) -> Result<PersistentVolumeClaim, K8sError> {
    let database = m
        .services
        .get(service)
        .and_then(|s| m.components.get(&s.component))
        .and_then(|c| c.data_dirs.first())
        .map(|d| d.path().to_owned());
    let sized = database
        .or_else(|| home.data_dirs.first().map(|(_, d)| d.clone()))
        .unwrap_or_else(|| name.to_owned());
    sized_like(m, &sized, (name, component), ctx)
}

/// The claim `name` (labelled `component`) as large as the manifest's data directory
/// `dir`.
fn sized_like(
    m: &berth_model::Manifest,
    sized: &str,
    (name, component): (&str, &str),
    ctx: &Context<'_>,
) -> Result<PersistentVolumeClaim, K8sError> {
    let (app, version) = (&m.app.name, &m.app.version);
    Ok(PersistentVolumeClaim {
        metadata: meta(name, labels(app, version, component)),
        spec: Some(claim_spec(m, sized, "ReadWriteOnce", ctx.options)?),
        ..PersistentVolumeClaim::default()
    })
}

/// The restore's objects, and the workloads it stops.
#[derive(Debug, Default)]
pub struct Restore {
    /// By file name: `job-<app>-restore.yaml`, `pvc-<app>-restore.yaml`.
    pub objects: BTreeMap<String, String>,
    /// Every workload, scaled to 0 while the restore runs.
    pub stopped: Vec<(Kind, String)>,
}

/// The restore's objects; none when the manifest backs up nothing.
///
/// # Errors
/// A claim's size cannot be worked out, or YAML fails.
pub fn objects(
    m: &berth_model::Manifest,
    plan: &[Workload],
    ctx: &Context<'_>,
) -> Result<Restore, K8sError> {
    let mut out = BTreeMap::new();
    let (home, service, database) = match (home(m, plan), elsewhere(m, plan, ctx)) {
        (Some((w, s)), _) => (w, s, None),
        // Over the network as the owning role: with its password only.
        (None, Some((w, s, address)))
            if m.backup
                .as_ref()
                .and_then(|b| b.database.as_ref())
                .is_some_and(|d| d.password.is_some()) =>
        {
            (w, s, Some(address))
        }
        _ => return Ok(Restore::default()),
    };
    let (app, version) = (&m.app.name, &m.app.version);
    let claim = format!("{app}-restore");
    let mut spec = pod(ctx, m, home, Some("Never"));
    // What the database's pods run first (`initdb` on an empty volume); nothing to
    // wait for.
    spec.init_containers = Some(
        home.init_hooks
            .iter()
            .map(|h| hook_container(ctx, m, home, h))
            .collect::<Vec<_>>(),
    )
    .filter(|c| !c.is_empty());
    let (vols, mounted) = volumes_and_mounts(
        m,
        plan,
        (home, Some(service.as_str()).filter(|_| database.is_none())),
        ctx,
        false,
        vec![(
            claim_volume("restore", &claim),
            RESTORE_DIR.to_owned(),
            false,
        )],
    );
    // Elsewhere, the whole app's site config (the backup's), in which the database
    // service is on and so its dump planned; no hook of the server's runs here.
    let (vols, _) = match database {
        Some(_) => {
            spec.init_containers = None;
            super::backup::own_site(m, home, ctx, (vols, &service))?
        }
        None => (vols, None),
    };
    for c in spec.init_containers.iter_mut().flatten() {
        c.volume_mounts = Some(mounted.clone());
    }
    let mut args = vec![
        "restore".to_owned(),
        format!("{RESTORE_DIR}/archive"),
        "--key".to_owned(),
        format!("{RESTORE_DIR}/key"),
        "--wait".to_owned(),
    ];
    if let Some(address) = &database {
        args.push("--database".to_owned());
        args.push(address.clone());
    }
    // Each Service, which answers while a pod that uses the volumes runs.
    for w in plan {
        if let Some((_, port)) = w.ports.first() {
            args.push("--not-while".to_owned());
            args.push(format!("{}:{port}", w.name));
        }
    }
    spec.containers = vec![one_off_container(
        ctx,
        m,
        ("restore", &service),
        args,
        mounted,
    )];
    if database.is_some() {
        super::backup::no_node_address(&mut spec);
    }
    spec.volumes = Some(vols);
    let job = Job {
        metadata: meta(&claim, labels(app, version, "restore")),
        // A failed attempt puts back what it changed, and the next one begins anew.
        spec: Some(job_spec(spec, 2)),
        ..Job::default()
    };
    out.insert(format!("job-{claim}.yaml"), to_yaml(&job)?);
    // The dump is smaller than the database.
    let pvc = sized_like_database(m, (home, &service), (&claim, "restore"), ctx)?;
    out.insert(format!("pvc-{claim}.yaml"), to_yaml(&pvc)?);
    Ok(Restore {
        objects: out,
        stopped: plan.iter().map(|w| (w.kind, w.name.clone())).collect(),
    })
}

/// The restore's files of the kustomize tree: `restore-base/` with the objects, and
/// for each environment `restore/<env>/`, which is the environment's overlay with
/// every workload stopped and the objects added (kustomize takes no overlay inside
/// the directory of one of its bases).
pub fn files(app: &str, environments: &[String], r: Restore) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    if r.objects.is_empty() {
        return files;
    }
    let names: Vec<String> = r.objects.keys().cloned().collect();
    for (name, text) in r.objects {
        files.insert(format!("restore-base/{name}"), text);
    }
    files.insert(
        "restore-base/kustomization.yaml".to_owned(),
        crate::kustomize::restore_base(&names),
    );
    let names: Vec<String> = r.stopped.iter().map(|(_, n)| n.clone()).collect();
    for env in environments {
        files.insert(
            format!("restore/{env}/kustomization.yaml"),
            crate::kustomize::restore_overlay(app, env, RESTORE_DIR, &names),
        );
        for (kind, name) in &r.stopped {
            let kind = match kind {
                Kind::Deployment => "Deployment",
                Kind::StatefulSet => "StatefulSet",
            };
            files.insert(
                format!("restore/{env}/stop-{name}.yaml"),
                crate::kustomize::stop(kind, name),
            );
        }
    }
    files
}
