//! An app on Kubernetes from its manifest and site config: the objects a cluster
//! needs, typed (`k8s-openapi`), written as a kustomize base with an overlay per
//! environment. Pure: nothing here reads or writes the host.
//!
//! Each role of the manifest that runs services (`database`, `cache`, `web`, …)
//! becomes one workload whose pod holds one container per service of the role, each
//! the service's own image (`berth image build`) running `berth container run
//! <service>`: the config is rendered in the container from the site config, as on
//! a host, so a setting means the same thing on both. Roles of engines only (etcd,
//! PgBouncer, HAProxy: a fleet's machinery) are a cluster's own business and are
//! left out; the Ingress takes the load balancer's place.

mod kustomize;
mod site;
mod site_check;
mod workloads;

use std::collections::BTreeMap;
use std::path::Path;

use berth_model::{Facts, LoadedManifest};
use berth_render::{Paths, RenderInput, UserNames};

pub use workloads::backup::KEY_FILE as BACKUP_KEY_FILE;
pub use workloads::{HookPlace, Outside, Wait, Workload};

/// What a render needs besides the manifest and the site config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Where the images are: `<registry>/<app>-<service>:<version>` (`localhost`, as
    /// `berth image build --docker-archives` names them once loaded, by default).
    pub registry: String,
    /// The storage class of every volume claim; the cluster's default when `None`.
    pub storage_class: Option<String>,
    /// The environments that get an overlay (`overlays/<name>/`), each with its own
    /// namespace `<app>-<name>`.
    pub environments: Vec<String>,
    /// The networks pods connect from (the cluster's pod network), which the services'
    /// access lists let in; every private range when empty.
    pub pod_networks: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            registry: "localhost".to_owned(),
            storage_class: None,
            environments: vec!["production".to_owned()],
            pod_networks: Vec::new(),
        }
    }
}

/// A render: the files of the kustomize tree, by path relative to its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// `base/kustomization.yaml`, `base/<object>.yaml`, `overlays/<env>/…`.
    pub files: BTreeMap<String, String>,
    /// The secrets the deployment needs, each a file `base/secrets/<name>` that the
    /// base's `secretGenerator` reads (made once, by the caller, never rendered).
    pub secrets: Vec<berth_render::SecretSpec>,
    /// The workloads, as planned.
    pub workloads: Vec<Workload>,
    /// Where each hook of an enabled component runs.
    pub hooks: Vec<(String, HookPlace)>,
    /// The site config each workload's pods see (its ConfigMap), by workload name.
    pub sites: BTreeMap<String, String>,
    /// Whether the backup CronJob needs its key file `base/secrets/backup-key` (a new
    /// backup key and signing key, as `berth backup key --export` writes, made once
    /// by the caller).
    pub backup_key: bool,
    /// The services the site config puts elsewhere (`[external]`), where the pods
    /// reach them.
    pub outside: Vec<Outside>,
    /// The hooks of their components, which the deployment leaves to the external
    /// server's administrator (creating the app's database role and database).
    pub skipped_hooks: Vec<String>,
    /// Every image the objects name, with its service: `(reference, service)`.
    pub images: Vec<(String, String)>,
}

/// Why a render failed: each names what to change.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    /// The site config does not parse, does not fit the manifest, or sets what only a
    /// host has: every problem with its position.
    #[error("{0}")]
    Site(berth_model::Diagnostics),
    /// The manifest does not render.
    #[error("{0}")]
    Render(String),
    /// Something the manifest or the options ask cannot be done on Kubernetes.
    #[error("{0}")]
    Unsupported(String),
    /// An option is not usable.
    #[error("{0}")]
    Option(String),
}

/// The objects of `manifest` with the site config `site` (its text, named
/// `site_file` in errors), as a kustomize tree.
pub fn render(
    manifest: &LoadedManifest,
    site_file: &str,
    site: &str,
    options: &Options,
) -> Result<Rendered, K8sError> {
    check_options(options)?;
    let app = &manifest.manifest.app.name;
    // The images' instance: a root install's prefix, its paths the same in every
    // container; facts only decide derived defaults, which each container derives
    // again from its own limits.
    let facts = Facts {
        is_root: true,
        ..Facts::fixture()
    };
    let parsed = berth_model::parse_site(site_file, site, manifest).map_err(K8sError::Site)?;
    site_check::refuse_host_settings(&parsed, site_file, site).map_err(K8sError::Site)?;
    let config = berth_model::resolve(manifest, &parsed, &facts).map_err(K8sError::Site)?;
    let users = UserNames::shared();
    let mut specs =
        berth_render::secret_specs_enabled(manifest, &facts, &users, &config.enabled_components);
    for s in &mut specs {
        if let Some(hook) = &s.from_hook {
            return Err(K8sError::Unsupported(format!(
                "secret `{}` is made by hook `{hook}` on a host; a cluster's Secret is made before any pod runs, so it cannot take it",
                s.name
            )));
        }
        // The files are the admin's, on the machine that renders.
        s.owner = None;
    }
    let secrets: BTreeMap<String, String> = specs
        .iter()
        .map(|s| (s.name.clone(), "secret".to_owned()))
        .collect();
    let prefix = berth_container::build::image_prefix(app);
    let paths = Paths::for_prefix(&prefix, &manifest.manifest.app.version);
    let state = berth_render::render(&RenderInput {
        manifest,
        config: &config,
        facts: &facts,
        secrets: &secrets,
        paths: &paths,
        users: &users,
    })
    .map_err(|e| K8sError::Render(e.to_string()))?;
    let images = berth_container::plan::plan(manifest, &state, &[], 0).map_err(K8sError::Render)?;
    let workloads::Plan {
        workloads: plan,
        hooks,
        job_waits,
        outside,
        skipped,
    } = workloads::plan(manifest, &state, &images, &external_roles(&parsed))?;
    let mut files = BTreeMap::new();
    let sites = site::per_workload(app, site, (&plan, &outside), &pod_networks(options));
    let whole = site::without_external(site);
    let ctx = workloads::Context {
        options,
        prefix: &prefix,
        sites: &sites,
        hooks: &hooks,
        job_waits: &job_waits,
        external_url: &config.external_url,
        images: &images,
        outside: &outside,
        site: &whole,
    };
    let mut objects = workloads::objects(manifest, &plan, &ctx)?;
    let restore = workloads::restore::objects(&manifest.manifest, &plan, &ctx)?;
    let backup_key = with_backup(&mut objects, manifest, &plan, &ctx, (&state, &parsed))?;
    let names: Vec<String> = objects.keys().cloned().collect();
    for (name, text) in objects {
        files.insert(format!("base/{name}"), text);
    }
    let secret_names: Vec<String> = secrets.keys().cloned().collect();
    files.insert(
        "base/kustomization.yaml".to_owned(),
        kustomize::base(
            app,
            &names,
            &secret_names,
            backup_key.then_some(workloads::backup::KEY_FILE),
        ),
    );
    for env in &options.environments {
        files.insert(
            format!("overlays/{env}/kustomization.yaml"),
            kustomize::overlay(app, env),
        );
    }
    files.extend(workloads::restore::files(
        app,
        &options.environments,
        restore,
    ));
    let images = images_named(manifest, options, &files);
    Ok(Rendered {
        images,
        files,
        secrets: specs,
        workloads: plan,
        hooks,
        sites,
        backup_key,
        skipped_hooks: skipped,
        outside,
    })
}

/// The images the files name (`image: <reference>`, as the objects are written), each
/// with its service.
fn images_named(
    manifest: &LoadedManifest,
    options: &Options,
    files: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let app = &manifest.manifest.app;
    manifest
        .manifest
        .services
        .keys()
        .map(|s| {
            let reference = format!("{}/{}-{s}:{}", options.registry, app.name, app.version);
            (reference, s.clone())
        })
        .filter(|(reference, _)| {
            let line = format!("image: {reference}\n");
            files.values().any(|text| text.contains(&line))
        })
        .collect()
}

/// The networks the pods connect from: the options', else every private range.
fn pod_networks(options: &Options) -> Vec<String> {
    if options.pod_networks.is_empty() {
        site::PRIVATE_NETWORKS
            .iter()
            .map(|n| (*n).to_owned())
            .collect()
    } else {
        options.pod_networks.clone()
    }
}

/// `[external]`: each role's host, by role.
fn external_roles(site: &berth_model::SiteConfig) -> BTreeMap<String, String> {
    site.external
        .as_ref()
        .map(|e| {
            e.get_ref()
                .iter()
                .map(|(role, host)| (role.clone(), host.get_ref().clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// The backup CronJob's objects added to `objects`; whether there are any (and so a
/// key file for them).
fn with_backup(
    objects: &mut BTreeMap<String, String>,
    manifest: &LoadedManifest,
    plan: &[Workload],
    ctx: &workloads::Context<'_>,
    (state, site): (&berth_render::DesiredState, &berth_model::SiteConfig),
) -> Result<bool, K8sError> {
    let asked = site
        .settings
        .get(berth_model::builtin::BACKUP_GROUP)
        .is_some_and(|keys| !keys.is_empty());
    let backup =
        workloads::backup::objects(&manifest.manifest, plan, ctx, (&state.backup_policy, asked))?;
    let any = !backup.is_empty();
    objects.extend(backup);
    Ok(any)
}

/// A name Kubernetes takes for an object or a namespace (RFC 1123 label).
fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn check_options(o: &Options) -> Result<(), K8sError> {
    if o.registry.is_empty()
        || o.registry.ends_with('/')
        || !o
            .registry
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:".contains(c))
    {
        return Err(K8sError::Option(format!(
            "`{}` is not an image registry and path (e.g. `registry.example.com/netbox`)",
            o.registry.escape_default()
        )));
    }
    if let Some(class) = &o.storage_class
        && !dns_label(class)
        && !class.split('.').all(dns_label)
    {
        return Err(K8sError::Option(if class.is_empty() {
            "the storage class is empty: name one (`--storage-class standard`), or leave it out for the cluster's default".to_owned()
        } else {
            format!(
                "`{}` is not a storage class name (lowercase letters, digits, `-` and `.`)",
                class.escape_default()
            )
        }));
    }
    for net in &o.pod_networks {
        if !berth_model::fleet::is_network(net) {
            return Err(K8sError::Option(format!(
                "`{}` is not a network (`10.244.0.0/16`, `fd00::/8`)",
                net.escape_default()
            )));
        }
    }
    for env in &o.environments {
        if !dns_label(env) || env.len() > 40 {
            return Err(K8sError::Option(format!(
                "`{}` is not an environment name (lowercase letters, digits and `-`, at most 40)",
                env.escape_default()
            )));
        }
    }
    Ok(())
}

/// Where a data directory of the images' instance is.
fn data_path(prefix: &Path, dir: &str) -> String {
    prefix.join("data").join(dir).display().to_string()
}
