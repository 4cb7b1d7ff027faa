//! Roles to workloads, and the workloads, their services, volumes, hooks, periodic
//! jobs and the Ingress as Kubernetes objects.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use berth_container::plan::RolePlan;
use berth_model::LoadedManifest;
use berth_model::manifest::HookWhen;
use berth_model::topology::HaKind;
use berth_render::DesiredState;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, StatefulSet, StatefulSetSpec,
};
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    ExecAction, KeyToPath, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext, Service,
    ServicePort, ServiceSpec, Sysctl, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::{K8sError, Options, data_path};

pub mod backup;
pub mod restore;

/// The user every image of the app runs as.
const UID: i64 = berth_container::SERVICE_UID as i64;

/// What kind of workload a role becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Copies that share their volumes (`ReadWriteMany` claims).
    Deployment,
    /// One copy per volume set: a role with data of its own that is not copied
    /// (PostgreSQL, Redis), each replica with its own claims.
    StatefulSet,
}

/// Where a hook runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookPlace {
    /// An init container of this workload, before its services start (it comes
    /// before a service of the pod, and waits for nothing outside it).
    Init(String),
    /// Its own Job (it waits for services of other workloads, or for nothing).
    Job,
    /// Inside this service's container, once it is ready (it needs the service, in
    /// the same pod: a socket, a first user).
    InService(String),
}

/// One role of the app as a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// `<app>-<role>`: the workload's, its Service's and its pods' name.
    pub name: String,
    /// The role (or, for a service no role names, the service).
    pub role: String,
    /// Every role its pods take: the role, and those the manifest puts `with` it.
    pub roles: Vec<String>,
    /// Its services, one container each.
    pub services: Vec<String>,
    /// Deployment or StatefulSet.
    pub kind: Kind,
    /// Copies in the base; overlays may say more.
    pub replicas: i32,
    /// CPUs and memory one pod asks for (the role's sizing).
    pub cpus: Option<u32>,
    /// Memory, as the manifest writes it.
    pub memory: Option<String>,
    /// Ports its services listen on: (service, port).
    pub ports: Vec<(String, i32)>,
    /// The data directories of its components, relative to `<prefix>/data`.
    pub data_dirs: Vec<(String, String)>,
    /// Hooks run as its init containers, in order.
    pub init_hooks: Vec<String>,
    /// What its pods wait for before those hooks and its services start.
    pub waits: Vec<Wait>,
}

/// What a pod waits for in an init container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// A hook run as a Job, until its `check` says it has nothing left to do.
    Hook {
        /// The hook.
        hook: String,
        /// The workload whose pods the Job's is made from: its site config renders
        /// the hook (a fleet's `once` hook is in that node's manifest only).
        site: String,
    },
    /// A service of another workload, until its Service answers (once a pod of it is
    /// ready, and with it the hooks that run inside it): `<Service>:<port>`.
    Service {
        /// The service.
        service: String,
        /// Its Service's name and port.
        address: String,
    },
}

/// The workloads, where each hook runs, and what each hook run as a Job waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The workloads.
    pub workloads: Vec<Workload>,
    /// Where each hook of an enabled component runs, in the order they run.
    pub hooks: Vec<(String, HookPlace)>,
    /// The services each Job's hook waits for, by hook.
    pub job_waits: BTreeMap<String, Vec<Wait>>,
    /// The services of roles the site config puts elsewhere (`[external]`).
    pub outside: Vec<Outside>,
    /// The hooks of their components, which the deployment does not run (the
    /// external server's administrator does what they do: a role, a database).
    pub skipped: Vec<String>,
}

/// A service of a role the site config puts elsewhere (`[external] <role> = "<host>"`):
/// no workload runs it; the others reach it at its host and the port its settings
/// name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outside {
    /// The role.
    pub role: String,
    /// The service.
    pub service: String,
    /// The host `[external]` names.
    pub host: String,
    /// `<host>:<port>`.
    pub address: String,
}

/// A role (or a lone service) with the services it runs, and the roles the manifest
/// puts `with` it.
struct Group<'m> {
    role: String,
    roles: Vec<String>,
    services: Vec<String>,
    decls: Vec<&'m berth_model::topology::RoleDecl>,
}

/// The services that run, by role; a role `with` another one shares its pods, as it
/// shares its machines in a fleet (NetBox's Redis beside PostgreSQL); a service no role
/// names is a group of its own.
fn groups<'m>(
    m: &'m berth_model::Manifest,
    state: &DesiredState,
    external: &BTreeMap<String, String>,
) -> Vec<Group<'m>> {
    // What runs elsewhere is no workload's.
    let elsewhere: BTreeSet<&str> = external
        .keys()
        .filter_map(|r| m.roles.get(r))
        .flat_map(|d| d.services.iter().map(String::as_str))
        .collect();
    let running: BTreeSet<&str> = state
        .services
        .iter()
        .map(|s| s.name.as_str())
        .filter(|s| !elsewhere.contains(s))
        .collect();
    let mut groups: Vec<Group<'m>> = Vec::new();
    let mut placed = BTreeSet::new();
    let services_of = |decl: &berth_model::topology::RoleDecl| -> Vec<String> {
        decl.services
            .iter()
            .filter(|s| running.contains(s.as_str()))
            .cloned()
            .collect()
    };
    // Where a role's pods are: the end of its `with` chain, short of a role that is
    // elsewhere (Redis beside an external PostgreSQL has pods of its own).
    let host = |role: &str| -> String {
        let mut at = role.to_owned();
        for _ in 0..m.roles.len() {
            match m.roles.get(&at).and_then(|d| d.with.clone()) {
                Some(next) if m.roles.contains_key(&next) && !external.contains_key(&next) => {
                    at = next;
                }
                _ => break,
            }
        }
        at
    };
    for (role, decl) in &m.roles {
        let services = services_of(decl);
        if services.is_empty() {
            continue;
        }
        placed.extend(services.iter().cloned());
        let home = host(role);
        if let Some(g) = groups.iter_mut().find(|g| g.role == home) {
            g.roles.push(role.clone());
            // The pod's own role's services first: its first container asks for the
            // pod's size.
            if *role == home {
                g.services.splice(0..0, services);
            } else {
                g.services.extend(services);
            }
            g.decls.push(decl);
        } else {
            groups.push(Group {
                role: home.clone(),
                roles: vec![role.clone()],
                services,
                decls: vec![decl],
            });
        }
    }
    for g in &mut groups {
        g.roles.sort();
        g.roles.dedup();
    }
    for s in &running {
        if !placed.contains(*s) {
            groups.push(Group {
                role: (*s).to_owned(),
                roles: Vec::new(),
                services: vec![(*s).to_owned()],
                decls: Vec::new(),
            });
        }
    }
    groups
}

/// The workloads of the app: one per role that runs services, one per service no
/// role names.
///
/// # Errors
/// A hook run as a Job comes before services of other pods and has no `check` to say
/// when it is done; a hook waits for a service that listens on no port.
pub fn plan(
    manifest: &LoadedManifest,
    state: &DesiredState,
    images: &[RolePlan],
    external: &BTreeMap<String, String>,
) -> Result<Plan, K8sError> {
    let m = &manifest.manifest;
    let app = &m.app.name;
    let groups = groups(m, state, external);
    let outside = outside(m, state, images, external)?;
    // Which workloads each component runs in: data a component shares across
    // workloads must be one volume every pod mounts.
    let component_of = |s: &str| {
        m.services
            .get(s)
            .map(|d| d.component.clone())
            .unwrap_or_default()
    };
    let mut homes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for g in &groups {
        for s in &g.services {
            homes
                .entry(component_of(s))
                .or_default()
                .insert(g.role.clone());
        }
    }
    let mut out = Vec::new();
    for g in groups {
        let Group {
            role,
            roles,
            services,
            decls,
        } = g;
        // The pod's size and how it is made available are its own role's.
        let decl = m.roles.get(&role).filter(|_| !decls.is_empty());
        let components: BTreeSet<String> = services.iter().map(|s| component_of(s)).collect();
        let mut all_dirs = Vec::new();
        for c in &components {
            if let Some(comp) = m.components.get(c) {
                for d in &comp.data_dirs {
                    all_dirs.push((c.clone(), d.path().to_owned()));
                }
            }
        }
        // A directory inside another one lives on that one's volume.
        let data_dirs: Vec<(String, String)> = all_dirs
            .iter()
            .filter(|(_, d)| {
                !all_dirs
                    .iter()
                    .any(|(_, o)| o != d && d.starts_with(&format!("{o}/")))
            })
            .cloned()
            .collect();
        let ha = decl.map_or(HaKind::None, |d| d.ha);
        let shared = components.iter().any(|c| homes[c].len() > 1);
        let kind = if !data_dirs.is_empty() && ha != HaKind::Replicas && !shared {
            Kind::StatefulSet
        } else {
            Kind::Deployment
        };
        let replicas = decl.map_or(1, |d| d.nodes.min.max(1));
        let ports = ports_of(&services, images);
        // A pod asks for what each role in it needs.
        let cpus: Option<u32> = decls.iter().filter_map(|d| d.cpus).reduce(|a, b| a + b);
        let memory_bytes: i64 = decls
            .iter()
            .filter_map(|d| d.memory.as_deref())
            .filter_map(|m| berth_model::parse_size(m).ok())
            .sum();
        out.push(Workload {
            name: format!("{app}-{role}"),
            role,
            roles,
            services,
            kind,
            replicas: i32::try_from(replicas).unwrap_or(1),
            cpus,
            memory: (memory_bytes > 0).then(|| format!("{}MiB", memory_bytes >> 20)),
            ports,
            data_dirs,
            init_hooks: Vec::new(),
            waits: Vec::new(),
        });
    }
    let (hooks, skipped) = hook_places(manifest, state, &out, &outside);
    for (hook, place) in &hooks {
        if let HookPlace::Init(w) = place
            && let Some(w) = out.iter_mut().find(|x| &x.name == w)
        {
            w.init_hooks.push(hook.clone());
        }
    }
    let job_waits = job_waits(state, &hooks, (&out, &outside))?;
    for i in 0..out.len() {
        let waits = waits_of(m, state, &hooks, &out[i], (&out, &outside))?;
        out[i].waits = waits;
    }
    Ok(Plan {
        workloads: out,
        hooks,
        job_waits,
        outside,
        skipped,
    })
}

/// The services of the roles `external` puts elsewhere, each at its host and the
/// port its image exposes (the site's setting).
fn outside(
    m: &berth_model::Manifest,
    state: &DesiredState,
    images: &[RolePlan],
    external: &BTreeMap<String, String>,
) -> Result<Vec<Outside>, K8sError> {
    let mut out = Vec::new();
    for (role, host) in external {
        let Some(decl) = m.roles.get(role) else {
            continue;
        };
        for service in &decl.services {
            if !state.services.iter().any(|s| &s.name == service) {
                continue;
            }
            let ports = ports_of(std::slice::from_ref(service), images);
            let Some((_, port)) = ports.first() else {
                return Err(K8sError::Unsupported(format!(
                    "`[external] {role}`: the {service} service listens on no TCP port, so the pods could not reach it elsewhere"
                )));
            };
            // An IPv6 address in brackets, as an address with a port is written.
            let address = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            out.push(Outside {
                role: role.clone(),
                service: service.clone(),
                host: host.clone(),
                address,
            });
        }
    }
    Ok(out)
}

/// The TCP ports the services' images expose: (service, port).
fn ports_of(services: &[String], images: &[RolePlan]) -> Vec<(String, i32)> {
    let mut ports = Vec::new();
    for s in services {
        let Some(image) = images.iter().find(|p| &p.service == s) else {
            continue;
        };
        for p in &image.config.exposed_ports {
            if let Some(n) = p.strip_suffix("/tcp").and_then(|n| n.parse::<i32>().ok()) {
                ports.push((s.clone(), n));
            }
        }
    }
    ports
}

/// The workload a Job's pod is made from: the first that runs a service of the hook's
/// component.
fn job_home(m: &berth_model::Manifest, hook: &str, workloads: &[Workload]) -> Option<String> {
    let component = &m.hooks.get(hook)?.component;
    runs_component(m, workloads, component).map(|w| w.name.clone())
}

/// What each hook run as a Job waits for: the services it comes after.
fn job_waits(
    state: &DesiredState,
    hooks: &[(String, HookPlace)],
    workloads: (&[Workload], &[Outside]),
) -> Result<BTreeMap<String, Vec<Wait>>, K8sError> {
    let mut out = BTreeMap::new();
    for (hook, place) in hooks {
        if *place == HookPlace::Job
            && let Some(spec) = state.hooks.iter().find(|h| &h.name == hook)
        {
            let waits = spec
                .after
                .iter()
                .map(|s| service_wait(hook, s, workloads))
                .collect::<Result<Vec<_>, _>>()?;
            out.insert(hook.clone(), waits);
        }
    }
    Ok(out)
}

/// A service of another workload, at its Service's name and the service's first
/// port; one that is elsewhere, at its address.
fn service_wait(
    hook: &str,
    service: &str,
    (workloads, outside): (&[Workload], &[Outside]),
) -> Result<Wait, K8sError> {
    let address = workloads
        .iter()
        .find_map(|w| {
            w.ports
                .iter()
                .find(|(s, _)| s == service)
                .map(|(_, p)| format!("{}:{p}", w.name))
        })
        .or_else(|| {
            outside
                .iter()
                .find(|o| o.service == service)
                .map(|o| o.address.clone())
        });
    match address {
        Some(address) => Ok(Wait::Service {
            service: service.to_owned(),
            address,
        }),
        None => Err(K8sError::Unsupported(format!(
            "hook `{hook}` waits for the {service} service, which listens on no port another pod could wait for: a pod cannot see when it is ready"
        ))),
    }
}

/// What `w`'s pods wait for: the hooks that come before its services and run
/// elsewhere (a Job until its check passes; a hook inside another pod's service
/// until that Service answers).
fn waits_of(
    m: &berth_model::Manifest,
    state: &DesiredState,
    hooks: &[(String, HookPlace)],
    w: &Workload,
    (workloads, outside): (&[Workload], &[Outside]),
) -> Result<Vec<Wait>, K8sError> {
    let mut waits = Vec::new();
    for (hook, place) in hooks {
        let Some(spec) = state.hooks.iter().find(|h| &h.name == hook) else {
            continue;
        };
        if !spec.before.iter().any(|s| w.services.contains(s)) {
            continue;
        }
        let wait = match place {
            HookPlace::Init(_) => continue,
            // Services of one pod start together: nothing to wait with.
            HookPlace::InService(s) if w.services.contains(s) => continue,
            HookPlace::InService(s) => service_wait(hook, s, (workloads, outside))?,
            HookPlace::Job if spec.check.is_none() => {
                return Err(K8sError::Unsupported(format!(
                    "hook `{hook}` runs as a Job before the {} pods, which cannot see when it is done: give `[hooks.{hook}]` a `check`, a command that exits 0 once it has nothing left to do",
                    w.name
                )));
            }
            HookPlace::Job => Wait::Hook {
                hook: hook.clone(),
                site: job_home(m, hook, workloads).unwrap_or_else(|| w.name.clone()),
            },
        };
        if !waits.contains(&wait) {
            waits.push(wait);
        }
    }
    Ok(waits)
}

/// Where each hook of an enabled component runs, and the hooks of components that
/// run only elsewhere (`[external]`), which do not run at all.
fn hook_places(
    manifest: &LoadedManifest,
    state: &DesiredState,
    workloads: &[Workload],
    outside: &[Outside],
) -> (Vec<(String, HookPlace)>, Vec<String>) {
    let m = &manifest.manifest;
    let home = |service: &str| {
        workloads
            .iter()
            .find(|w| w.services.iter().any(|s| s == service))
    };
    let component_in = |w: &Workload, c: &str| {
        w.services
            .iter()
            .any(|s| m.services.get(s).is_some_and(|d| d.component == c))
    };
    let runs_here = |c: &str| workloads.iter().any(|w| component_in(w, c));
    let runs_elsewhere = |c: &str| {
        outside
            .iter()
            .any(|o| m.services.get(&o.service).is_some_and(|d| d.component == c))
    };
    // Where a service runs: its workload's name, or its role's outside.
    let place_of = |service: &str| {
        home(service).map(|w| w.name.clone()).or_else(|| {
            outside
                .iter()
                .find(|o| o.service == service)
                .map(|o| format!("[external] {}", o.role))
        })
    };
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    // In the order they run: a service's hooks run in this order inside it.
    for name in berth_render::hook_order(state) {
        let Some(spec) = state.hooks.iter().find(|h| h.name == name) else {
            continue;
        };
        let Some(decl) = m.hooks.get(&spec.name) else {
            continue;
        };
        if !runs_here(&decl.component) && runs_elsewhere(&decl.component) {
            skipped.push(spec.name.clone());
            continue;
        }
        let services = |list: &[String]| -> Vec<String> {
            list.iter()
                .filter(|x| !x.starts_with("hook:") && m.services.contains_key(x.as_str()))
                .cloned()
                .collect()
        };
        let after = services(&decl.after);
        let before = services(&decl.before);
        let after_homes: BTreeSet<String> = after.iter().filter_map(|s| place_of(s)).collect();
        let place = match after_homes.len() {
            0 => before
                .iter()
                .filter_map(|s| home(s))
                .find(|w| component_in(w, &decl.component))
                .map_or(HookPlace::Job, |w| HookPlace::Init(w.name.clone())),
            1 => {
                let only = after_homes.first().expect("one home");
                match workloads.iter().find(|w| &w.name == only) {
                    Some(w) if component_in(w, &decl.component) => {
                        let service = after
                            .iter()
                            .find(|s| w.services.contains(s))
                            .cloned()
                            .unwrap_or_default();
                        HookPlace::InService(service)
                    }
                    // Another workload's, or elsewhere.
                    _ => HookPlace::Job,
                }
            }
            _ => HookPlace::Job,
        };
        out.push((spec.name.clone(), place));
    }
    (out, skipped)
}

/// What the objects are made from.
pub struct Context<'a> {
    pub options: &'a Options,
    pub prefix: &'a Path,
    /// Each workload's site config, by its name.
    pub sites: &'a BTreeMap<String, String>,
    /// Where each hook runs.
    pub hooks: &'a [(String, HookPlace)],
    /// What each Job's hook waits for.
    pub job_waits: &'a BTreeMap<String, Vec<Wait>>,
    pub external_url: &'a url::Url,
    pub images: &'a [RolePlan],
    /// The services that run elsewhere.
    pub outside: &'a [Outside],
    /// The administrator's site config without `[external]`: the whole app's.
    pub site: &'a str,
}

fn labels(app: &str, version: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), app.to_owned()),
        (
            "app.kubernetes.io/component".to_owned(),
            component.to_owned(),
        ),
        ("app.kubernetes.io/version".to_owned(), version.to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "berth".to_owned(),
        ),
    ])
}

fn selector(app: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), app.to_owned()),
        (
            "app.kubernetes.io/component".to_owned(),
            component.to_owned(),
        ),
    ])
}

fn meta(name: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        labels: Some(labels),
        ..ObjectMeta::default()
    }
}

/// `4GiB` as Kubernetes writes it (`4Gi`), from the manifest's size syntax.
fn quantity(size: &str) -> Result<Quantity, K8sError> {
    let bytes = berth_model::parse_size(size)
        .map_err(|e| K8sError::Unsupported(format!("`{size}`: {e}")))?;
    let mib = bytes >> 20;
    Ok(Quantity(if mib % 1024 == 0 {
        format!("{}Gi", mib / 1024)
    } else {
        format!("{mib}Mi")
    }))
}

/// A data directory's volume name (`data-netbox-media`).
fn volume_name(dir: &str) -> String {
    let mut name = format!("data-{}", dir.replace(['/', '_', '.'], "-"));
    name.truncate(63);
    name.trim_end_matches('-').to_owned()
}

/// A claim's size: what the manifest's `[[preflight.disk]]` recommends (else
/// requires) for that directory and those inside it, added up; 1 GiB when it says
/// nothing of them.
fn claim_size(m: &berth_model::Manifest, dir: &str) -> Result<Quantity, K8sError> {
    let wanted = format!("data/{dir}");
    let mut total: i64 = 0;
    for d in &m.preflight.disk {
        if d.path != wanted && !d.path.starts_with(&format!("{wanted}/")) {
            continue;
        }
        if let Some(size) = d
            .recommended
            .as_ref()
            .or(d.min.as_ref())
            .and_then(|v| v.as_str())
        {
            total += berth_model::parse_size(size)
                .map_err(|e| K8sError::Unsupported(format!("`{size}`: {e}")))?;
        }
    }
    if total == 0 {
        return quantity("1GiB");
    }
    quantity(&format!("{}MiB", (total + (1 << 20) - 1) >> 20))
}

fn claim_spec(
    m: &berth_model::Manifest,
    dir: &str,
    mode: &str,
    options: &Options,
) -> Result<PersistentVolumeClaimSpec, K8sError> {
    Ok(PersistentVolumeClaimSpec {
        access_modes: Some(vec![mode.to_owned()]),
        storage_class_name: options.storage_class.clone(),
        resources: Some(VolumeResourceRequirements {
            requests: Some(BTreeMap::from([(
                "storage".to_owned(),
                claim_size(m, dir)?,
            )])),
            ..VolumeResourceRequirements::default()
        }),
        ..PersistentVolumeClaimSpec::default()
    })
}

/// Where the site config's ConfigMap is mounted: a directory of its own, not a file
/// over the image's (a `subPath` mount never sees the ConfigMap change).
const SITE_DIR: &str = "/etc/berth/site";

/// The site config's path, and the pod's own address, which `berth container` puts
/// in as this node's address of `[fleet]`: where its services listen for the other
/// pods.
fn node_env() -> Vec<EnvVar> {
    vec![
        EnvVar {
            name: "BERTH_CONFIG".to_owned(),
            value: Some(format!("{SITE_DIR}/site.toml")),
            ..EnvVar::default()
        },
        EnvVar {
            name: berth_container::settings::NODE_ADDRESS.to_owned(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "status.podIP".to_owned(),
                    ..ObjectFieldSelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        },
    ]
}

fn security() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(UID),
        run_as_group: Some(UID),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}

/// A container named `name` running `berth container <args>` in `service`'s image,
/// with `mounts`, as every one-off pod of the app runs it (a Job's, the restore's,
/// the backup's).
fn one_off_container(
    ctx: &Context<'_>,
    m: &berth_model::Manifest,
    (name, service): (&str, &str),
    args: Vec<String>,
    mounts: Vec<VolumeMount>,
) -> Container {
    Container {
        name: name.to_owned(),
        image: Some(image_of(ctx, &m.app.name, &m.app.version, service)),
        args: Some(args),
        volume_mounts: Some(mounts),
        security_context: Some(security()),
        env: Some(node_env()),
        ..Container::default()
    }
}

fn image_of(ctx: &Context<'_>, app: &str, version: &str, service: &str) -> String {
    format!("{}/{app}-{service}:{version}", ctx.options.registry)
}

/// The mounts every container of a pod gets: the site config, the secrets, the
/// pod's data directories.
fn mounts(ctx: &Context<'_>, w: &Workload) -> Vec<VolumeMount> {
    let mut v = vec![
        VolumeMount {
            name: "site".to_owned(),
            mount_path: SITE_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "secrets".to_owned(),
            mount_path: berth_container::DEFAULT_SECRETS_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
    ];
    for (_, dir) in &w.data_dirs {
        v.push(VolumeMount {
            name: volume_name(dir),
            mount_path: data_path(ctx.prefix, dir),
            ..VolumeMount::default()
        });
    }
    v
}

fn probe(argv: &[String], period: i32, timeout: i32, failures: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(argv.to_vec()),
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(timeout),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

fn container(
    ctx: &Context<'_>,
    app: &str,
    version: &str,
    w: &Workload,
    service: &str,
) -> Container {
    let plan = ctx.images.iter().find(|p| p.service == service);
    let mut run = vec!["run".to_owned(), service.to_owned()];
    // The hooks that need it running, once it is ready; it is not ready before.
    for (hook, place) in ctx.hooks {
        if matches!(place, HookPlace::InService(s) if s == service) {
            run.push("--then".to_owned());
            run.push(hook.clone());
        }
    }
    let mut c = Container {
        name: service.to_owned(),
        image: Some(image_of(ctx, app, version, service)),
        args: Some(run),
        ports: Some(
            w.ports
                .iter()
                .filter(|(s, _)| s == service)
                .map(|(_, p)| ContainerPort {
                    container_port: *p,
                    protocol: Some("TCP".to_owned()),
                    ..ContainerPort::default()
                })
                .collect(),
        )
        .filter(|p: &Vec<ContainerPort>| !p.is_empty()),
        volume_mounts: Some(mounts(ctx, w)),
        security_context: Some(security()),
        env: Some(node_env()),
        ..Container::default()
    };
    // The image's health check is one attempt of the service's readiness probe.
    if let Some(h) = plan.and_then(|p| p.config.healthcheck.as_ref())
        && h.test.first().map(String::as_str) == Some("CMD")
    {
        let argv = &h.test[1..];
        let timeout = i32::try_from(h.timeout.as_secs().max(1)).unwrap_or(30);
        // Until it first answers, as long as the manifest lets it take.
        let start = i32::try_from(h.start_period.as_secs() / 5 + 1).unwrap_or(60);
        c.startup_probe = Some(probe(argv, 5, timeout, start));
        c.readiness_probe = Some(probe(argv, 10, timeout, 3));
        c.liveness_probe = Some(probe(argv, 30, timeout, 3));
    }
    c
}

fn pod(
    ctx: &Context<'_>,
    m: &berth_model::Manifest,
    w: &Workload,
    restart: Option<&str>,
) -> PodSpec {
    let (app, version) = (&m.app.name, &m.app.version);
    let mut containers: Vec<Container> = w
        .services
        .iter()
        .map(|s| container(ctx, app, version, w, s))
        .collect();
    if let (Some(first), Some(cpus)) = (containers.first_mut(), w.cpus) {
        let mut requests = BTreeMap::from([("cpu".to_owned(), Quantity(cpus.to_string()))]);
        let mut limits = BTreeMap::new();
        if let Some(mem) = w.memory.as_deref().and_then(|m| quantity(m).ok()) {
            requests.insert("memory".to_owned(), mem.clone());
            limits.insert("memory".to_owned(), mem);
        }
        first.resources = Some(ResourceRequirements {
            requests: Some(requests),
            limits: Some(limits).filter(|l| !l.is_empty()),
            ..ResourceRequirements::default()
        });
    }
    let init: Vec<Container> = w
        .waits
        .iter()
        .map(|wait| wait_container(ctx, m, w, wait))
        .chain(w.init_hooks.iter().map(|h| hook_container(ctx, m, w, h)))
        .collect();
    PodSpec {
        containers,
        init_containers: Some(init).filter(|i| !i.is_empty()),
        volumes: Some(volumes(app, w)),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(UID),
            run_as_group: Some(UID),
            fs_group: Some(UID),
            fs_group_change_policy: Some("OnRootMismatch".to_owned()),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..SeccompProfile::default()
            }),
            // A port below 1024 (an `https` external URL's 443) without a capability:
            // a namespaced sysctl Kubernetes counts as safe.
            sysctls: w.ports.iter().any(|(_, p)| *p < 1024).then(|| {
                vec![Sysctl {
                    name: "net.ipv4.ip_unprivileged_port_start".to_owned(),
                    value: "0".to_owned(),
                }]
            }),
            ..PodSecurityContext::default()
        }),
        restart_policy: restart.map(str::to_owned),
        enable_service_links: Some(false),
        ..PodSpec::default()
    }
}

/// An init container waiting for `wait`: a Job's hook to be done, in its
/// component's image; a Service to answer, in the pod's own first image.
fn wait_container(
    ctx: &Context<'_>,
    m: &berth_model::Manifest,
    w: &Workload,
    wait: &Wait,
) -> Container {
    match wait {
        Wait::Hook { hook, site } => {
            let mut c = hook_container(ctx, m, w, hook);
            if site != &w.name {
                for mount in c.volume_mounts.iter_mut().flatten() {
                    if mount.name == "site" {
                        mount.name = site_volume(site);
                    }
                }
            }
            Container {
                name: format!("wait-hook-{}", hook.replace('_', "-")),
                args: Some(vec!["wait-hook".to_owned(), hook.clone()]),
                ..c
            }
        }
        Wait::Service { service, address } => Container {
            name: format!("wait-for-{}", service.replace('_', "-")),
            image: Some(image_of(
                ctx,
                &m.app.name,
                &m.app.version,
                w.services.first().map_or("", String::as_str),
            )),
            args: Some(vec!["wait-for".to_owned(), address.clone()]),
            security_context: Some(security()),
            ..Container::default()
        },
    }
}

/// A container running hook `hook`, from the image of a service of its component
/// (in `w` when it has one).
fn hook_container(
    ctx: &Context<'_>,
    m: &berth_model::Manifest,
    w: &Workload,
    hook: &str,
) -> Container {
    let component = m
        .hooks
        .get(hook)
        .map(|h| h.component.as_str())
        .unwrap_or_default();
    let service = w
        .services
        .iter()
        .find(|s| m.services.get(*s).is_some_and(|d| d.component == component))
        .cloned()
        .or_else(|| {
            m.services
                .iter()
                .find(|(_, d)| d.component == component)
                .map(|(n, _)| n.clone())
        })
        .unwrap_or_default();
    Container {
        name: format!("hook-{}", hook.replace('_', "-")),
        image: Some(image_of(ctx, &m.app.name, &m.app.version, &service)),
        args: Some(vec!["hook".to_owned(), hook.to_owned()]),
        volume_mounts: Some(mounts(ctx, w)),
        security_context: Some(security()),
        env: Some(node_env()),
        ..Container::default()
    }
}

fn volumes(app: &str, w: &Workload) -> Vec<Volume> {
    let mut v = vec![
        site_config_volume("site".to_owned(), &w.name),
        Volume {
            name: "secrets".to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(format!("{app}-secrets")),
                // Root's files, of the pod's group (`fsGroup`): readable by the service's user
                // through its group, and by no one else.
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
    ];
    for wait in &w.waits {
        if let Wait::Hook { site, .. } = wait
            && site != &w.name
            && !v.iter().any(|x| x.name == site_volume(site))
        {
            v.push(site_config_volume(site_volume(site), site));
        }
    }
    if w.kind == Kind::Deployment {
        for (_, dir) in &w.data_dirs {
            v.push(Volume {
                name: volume_name(dir),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim_name(app, dir),
                    ..PersistentVolumeClaimVolumeSource::default()
                }),
                ..Volume::default()
            });
        }
    }
    v
}

/// Volume `name` of workload `workload`'s site config ConfigMap.
fn site_config_volume(name: String, workload: &str) -> Volume {
    Volume {
        name,
        config_map: Some(ConfigMapVolumeSource {
            name: format!("{workload}-site"),
            items: Some(vec![KeyToPath {
                key: "site.toml".to_owned(),
                path: "site.toml".to_owned(),
                ..KeyToPath::default()
            }]),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// The volume of another workload's site config (`site-netbox-web`).
fn site_volume(workload: &str) -> String {
    let mut name = format!("site-{workload}");
    name.truncate(63);
    name.trim_end_matches('-').to_owned()
}

/// A shared claim's name: `<app>-data-<dir>`.
fn claim_name(app: &str, dir: &str) -> String {
    format!("{app}-{}", volume_name(dir))
}

/// A Kubernetes port name: at most 15 characters, a letter in it.
fn port_name(service: &str, port: i32, several: bool) -> String {
    let name = if several {
        format!("{service}-{port}")
    } else {
        service.to_owned()
    };
    if name.len() <= 15 && name.chars().any(|c| c.is_ascii_lowercase()) {
        name.replace('_', "-")
    } else {
        format!("p{port}")
    }
}

fn to_yaml<T: serde::Serialize>(v: &T) -> Result<String, K8sError> {
    serde_saphyr::to_string(v).map_err(|e| K8sError::Render(format!("YAML: {e}")))
}

/// Every object, as `<kind>-<name>.yaml` → its YAML.
#[allow(clippy::too_many_lines)] // one kind of object after the other
pub fn objects(
    manifest: &LoadedManifest,
    plan: &[Workload],
    ctx: &Context<'_>,
) -> Result<BTreeMap<String, String>, K8sError> {
    let m = &manifest.manifest;
    let (app, version) = (&m.app.name, &m.app.version);
    let mut out = BTreeMap::new();
    for w in plan {
        let name = format!("{}-site", w.name);
        let site = ConfigMap {
            metadata: meta(&name, labels(app, version, &w.role)),
            data: Some(BTreeMap::from([(
                "site.toml".to_owned(),
                ctx.sites.get(&w.name).cloned().unwrap_or_default(),
            )])),
            ..ConfigMap::default()
        };
        out.insert(format!("configmap-{name}.yaml"), to_yaml(&site)?);
    }
    let mut claims = BTreeSet::new();
    for w in plan {
        let labels_w = labels(app, version, &w.role);
        let template = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels_w.clone()),
                ..ObjectMeta::default()
            }),
            spec: Some(pod(ctx, m, w, None)),
        };
        let select = LabelSelector {
            match_labels: Some(selector(app, &w.role)),
            ..LabelSelector::default()
        };
        match w.kind {
            Kind::Deployment => {
                for (_, dir) in &w.data_dirs {
                    let name = claim_name(app, dir);
                    if claims.insert(name.clone()) {
                        let pvc = PersistentVolumeClaim {
                            metadata: meta(&name, labels(app, version, "data")),
                            spec: Some(claim_spec(m, dir, "ReadWriteMany", ctx.options)?),
                            ..PersistentVolumeClaim::default()
                        };
                        out.insert(format!("pvc-{name}.yaml"), to_yaml(&pvc)?);
                    }
                }
                let d = Deployment {
                    metadata: meta(&w.name, labels_w.clone()),
                    spec: DeploymentSpec {
                        replicas: Some(w.replicas),
                        selector: select,
                        // Pods of two releases share the volumes: one replaces the
                        // other one pod at a time, never all at once.
                        strategy: Some(DeploymentStrategy {
                            type_: Some("RollingUpdate".to_owned()),
                            ..DeploymentStrategy::default()
                        }),
                        template,
                        ..DeploymentSpec::default()
                    },
                    ..Deployment::default()
                };
                out.insert(format!("deployment-{}.yaml", w.name), to_yaml(&d)?);
            }
            Kind::StatefulSet => {
                let mut claims = Vec::new();
                for (_, dir) in &w.data_dirs {
                    claims.push(PersistentVolumeClaim {
                        metadata: ObjectMeta {
                            name: Some(volume_name(dir)),
                            ..ObjectMeta::default()
                        },
                        spec: Some(claim_spec(m, dir, "ReadWriteOnce", ctx.options)?),
                        ..PersistentVolumeClaim::default()
                    });
                }
                let s = StatefulSet {
                    metadata: meta(&w.name, labels_w.clone()),
                    spec: StatefulSetSpec {
                        replicas: Some(w.replicas),
                        selector: select,
                        service_name: Some(w.name.clone()),
                        template,
                        volume_claim_templates: Some(claims).filter(|c| !c.is_empty()),
                        ..StatefulSetSpec::default()
                    },
                    ..StatefulSet::default()
                };
                out.insert(format!("statefulset-{}.yaml", w.name), to_yaml(&s)?);
            }
        }
        if !w.ports.is_empty() {
            let svc = Service {
                metadata: meta(&w.name, labels_w),
                spec: Some(ServiceSpec {
                    selector: Some(selector(app, &w.role)),
                    ports: Some(
                        w.ports
                            .iter()
                            .map(|(s, p)| ServicePort {
                                name: Some(port_name(
                                    s,
                                    *p,
                                    w.ports.iter().filter(|(x, _)| x == s).count() > 1,
                                )),
                                port: *p,
                                protocol: Some("TCP".to_owned()),
                                ..ServicePort::default()
                            })
                            .collect(),
                    ),
                    ..ServiceSpec::default()
                }),
                ..Service::default()
            };
            out.insert(format!("service-{}.yaml", w.name), to_yaml(&svc)?);
        }
    }
    jobs(manifest, plan, ctx, &mut out)?;
    cron_jobs(manifest, plan, ctx, &mut out)?;
    if let Some(ingress) = ingress(m, plan, ctx)? {
        out.insert(format!("ingress-{app}.yaml"), to_yaml(&ingress)?);
    }
    Ok(out)
}

/// The first workload with a service of `component`: where its hooks and jobs find
/// their image, volumes and site config.
fn runs_component<'p>(
    m: &berth_model::Manifest,
    plan: &'p [Workload],
    component: &str,
) -> Option<&'p Workload> {
    plan.iter().find(|w| {
        w.services
            .iter()
            .any(|s| m.services.get(s).is_some_and(|d| d.component == component))
    })
}

/// The hooks that run as Jobs.
fn jobs(
    manifest: &LoadedManifest,
    plan: &[Workload],
    ctx: &Context<'_>,
    out: &mut BTreeMap<String, String>,
) -> Result<(), K8sError> {
    let m = &manifest.manifest;
    let (app, version) = (&m.app.name, &m.app.version);
    for (hook, _) in ctx.hooks.iter().filter(|(_, p)| *p == HookPlace::Job) {
        let Some(decl) = m.hooks.get(hook) else {
            continue;
        };
        let Some(w) = runs_component(m, plan, &decl.component) else {
            continue;
        };
        // A release's hook runs once per version: the version is in its name, so the
        // next release's is a new Job.
        let name = match decl.when {
            HookWhen::Release => format!(
                "{app}-{}-{}",
                hook.replace('_', "-"),
                version.replace(['.', '+', '~'], "-")
            ),
            _ => format!("{app}-{}", hook.replace('_', "-")),
        };
        let mut spec = pod(ctx, m, w, Some("Never"));
        spec.containers = vec![hook_container(ctx, m, w, hook)];
        spec.init_containers = ctx
            .job_waits
            .get(hook)
            .map(|waits| {
                waits
                    .iter()
                    .map(|wait| wait_container(ctx, m, w, wait))
                    .collect::<Vec<_>>()
            })
            .filter(|c| !c.is_empty());
        let timeout = berth_model::parse_duration(&decl.timeout)
            .map_err(|e| K8sError::Unsupported(format!("hook `{hook}`: {e}")))?;
        let job = Job {
            metadata: meta(
                &name,
                labels(app, version, &format!("hook-{}", hook.replace('_', "-"))),
            ),
            spec: Some(JobSpec {
                backoff_limit: Some(3),
                active_deadline_seconds: Some(i64::try_from(timeout.as_secs()).unwrap_or(3600)),
                template: PodTemplateSpec {
                    metadata: None,
                    spec: Some(spec),
                },
                ..JobSpec::default()
            }),
            ..Job::default()
        };
        out.insert(format!("job-{name}.yaml"), to_yaml(&job)?);
    }
    Ok(())
}

/// The periodic jobs as CronJobs.
fn cron_jobs(
    manifest: &LoadedManifest,
    plan: &[Workload],
    ctx: &Context<'_>,
    out: &mut BTreeMap<String, String>,
) -> Result<(), K8sError> {
    let m = &manifest.manifest;
    let (app, version) = (&m.app.name, &m.app.version);
    for (name, decl) in &m.jobs {
        let Some(w) = runs_component(m, plan, &decl.component) else {
            continue;
        };
        let schedule = schedule(&decl.every).ok_or_else(|| {
            K8sError::Unsupported(format!(
                "job `{name}` runs every `{}`, which a CronJob's schedule cannot say: make it a whole number of minutes dividing an hour, of hours dividing a day, or `24h`",
                decl.every
            ))
        })?;
        let service = w
            .services
            .iter()
            .find(|s| {
                m.services
                    .get(*s)
                    .is_some_and(|d| d.component == decl.component)
            })
            .cloned()
            .unwrap_or_default();
        let mut spec = pod(ctx, m, w, Some("Never"));
        spec.init_containers = None;
        spec.containers = vec![one_off_container(
            ctx,
            m,
            (&format!("job-{}", name.replace('_', "-")), &service),
            vec!["job".to_owned(), name.clone()],
            mounts(ctx, w),
        )];
        let timeout = berth_model::parse_duration(&decl.timeout)
            .map_err(|e| K8sError::Unsupported(format!("job `{name}`: {e}")))?;
        let cron_name = format!("{app}-{}", name.replace('_', "-"));
        let cron = CronJob {
            metadata: meta(
                &cron_name,
                labels(app, version, &format!("job-{}", name.replace('_', "-"))),
            ),
            spec: CronJobSpec {
                schedule,
                concurrency_policy: Some("Forbid".to_owned()),
                job_template: JobTemplateSpec {
                    metadata: None,
                    spec: Some(JobSpec {
                        backoff_limit: Some(0),
                        active_deadline_seconds: Some(
                            i64::try_from(timeout.as_secs()).unwrap_or(3600),
                        ),
                        template: PodTemplateSpec {
                            metadata: None,
                            spec: Some(spec),
                        },
                        ..JobSpec::default()
                    }),
                },
                ..CronJobSpec::default()
            },
            ..CronJob::default()
        };
        out.insert(format!("cronjob-{cron_name}.yaml"), to_yaml(&cron)?);
    }
    Ok(())
}

/// `every` as a CronJob schedule, when one can say it.
fn schedule(every: &str) -> Option<String> {
    let secs = berth_model::parse_duration(every).ok()?.as_secs();
    if secs == 0 || secs % 60 != 0 {
        return None;
    }
    let minutes = secs / 60;
    match minutes {
        1440 => Some("@daily".to_owned()),
        60 => Some("@hourly".to_owned()),
        m if m < 60 && 60 % m == 0 => Some(format!("*/{m} * * * *")),
        m if m % 60 == 0 && m < 1440 && 1440 % m == 0 => Some(format!("0 */{} * * *", m / 60)),
        _ => None,
    }
}

/// The Ingress for `external_url`, to the workload of the role with the health path
/// (the front), at the port `external_url` names if it listens there.
fn ingress(
    m: &berth_model::Manifest,
    plan: &[Workload],
    ctx: &Context<'_>,
) -> Result<Option<Ingress>, K8sError> {
    let (app, version) = (&m.app.name, &m.app.version);
    let front = m
        .roles
        .iter()
        .find(|(_, d)| d.health)
        .and_then(|(r, _)| plan.iter().find(|w| &w.role == r))
        .or_else(|| plan.iter().find(|w| !w.ports.is_empty()));
    let Some(front) = front else {
        return Ok(None);
    };
    let url = ctx.external_url;
    let Some(host) = url.host_str() else {
        return Err(K8sError::Unsupported(format!(
            "external_url `{url}` names no host for the Ingress"
        )));
    };
    let port = url.port_or_known_default().map(i32::from);
    let target = front
        .ports
        .iter()
        .find(|(_, p)| Some(*p) == port)
        .or_else(|| front.ports.first())
        .map(|(_, p)| *p);
    let Some(target) = target else {
        return Ok(None);
    };
    // An address is not a host name an Ingress rule can take: the rule then has none.
    let named = host.parse::<std::net::IpAddr>().is_err()
        && host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_err();
    let path = url.path().to_owned();
    Ok(Some(Ingress {
        metadata: meta(app, labels(app, version, "front")),
        spec: Some(IngressSpec {
            tls: (url.scheme() == "https" && named).then(|| {
                vec![IngressTLS {
                    hosts: Some(vec![host.to_owned()]),
                    secret_name: Some(format!("{app}-tls")),
                }]
            }),
            rules: Some(vec![IngressRule {
                host: named.then(|| host.to_owned()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some(path),
                        path_type: "Prefix".to_owned(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: front.name.clone(),
                                port: Some(ServiceBackendPort {
                                    number: Some(target),
                                    ..ServiceBackendPort::default()
                                }),
                            }),
                            ..IngressBackend::default()
                        },
                    }],
                }),
            }]),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    }))
}
