//! Which images an app makes and what goes into each: pure, from the manifest and a
//! render of it with the images' prefix.
//!
//! One image per service. Its component goes in, and so does every other component
//! whose programs or release directory the service's command, environment, readiness
//! probe or config files name: the RQ worker's readiness script calls `redis-cli`, so
//! the worker's image holds the Redis component's packages too.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use berth_image::{Healthcheck, ImageConfig};
use berth_model::LoadedManifest;
use berth_model::manifest::ComponentSource;
use berth_render::DesiredState;
use berth_supervisor_protocol::Probe;

use crate::{BERTH_IN_IMAGE, SERVICE_UID};

/// One service's image, planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolePlan {
    /// The service.
    pub service: String,
    /// Its component.
    pub component: String,
    /// The components whose parts it carries, its own first.
    pub components: Vec<String>,
    /// Debian packages of the system components among them, sorted.
    pub packages: Vec<String>,
    /// The bundled components among them (their payload goes in).
    pub payload: Vec<String>,
    /// The user the service runs as (its component's user, or the app's name).
    pub user: String,
    /// Data directories of its component, relative to `<prefix>/data`.
    pub data_dirs: Vec<String>,
    /// The image's tag in the layout (`<service>-<version>`).
    pub tag: String,
    /// Its name once loaded (`localhost/<app>-<service>:<version>`).
    pub repo_tag: String,
    /// Its config (without the build's time).
    pub config: ImageConfig,
}

/// The rendered files of `component` in `state`: those it owns, and those only rendered
/// while it is enabled.
pub fn component_files<'a>(
    m: &berth_model::Manifest,
    state: &'a DesiredState,
    component: &str,
) -> Vec<&'a berth_render::FileSpec> {
    let wanted: Vec<std::path::PathBuf> = m
        .files
        .iter()
        .filter(|f| {
            f.owner.as_deref() == Some(component) || f.component.as_deref() == Some(component)
        })
        .map(|f| state.paths.etc.join(&f.path))
        .collect();
    state
        .files
        .iter()
        .filter(|f| wanted.contains(&f.path))
        .collect()
}

/// The texts of `state` a service's process sees or runs.
fn texts_of<'a>(state: &'a DesiredState, service: &str, files_of: &[&'a str]) -> Vec<&'a str> {
    let mut out: Vec<&str> = files_of.to_vec();
    if let Some(s) = state.services.iter().find(|s| s.name == service) {
        out.extend(s.argv.iter().map(String::as_str));
        out.extend(s.env.values().map(String::as_str));
        if let Some(r) = &s.readiness
            && let Probe::Command { argv } = &r.probe
        {
            out.extend(argv.iter().map(String::as_str));
        }
    }
    out
}

/// The plan of every service's image (or of `only`, when given), sorted by service.
///
/// # Errors
/// A service named in `only` that the manifest does not have.
pub fn plan(
    manifest: &LoadedManifest,
    state: &DesiredState,
    only: &[String],
    source_date_epoch: u64,
) -> Result<Vec<RolePlan>, String> {
    let m = &manifest.manifest;
    for name in only {
        if !m.services.contains_key(name) {
            let hint = berth_model::suggest::closest(name, m.services.keys().map(String::as_str))
                .map(|c| format!("; did you mean `{c}`?"))
                .unwrap_or_default();
            return Err(format!("the manifest has no service `{name}`{hint}"));
        }
    }
    let paths = &state.paths;
    let mut plans = Vec::new();
    for (name, decl) in &m.services {
        if !only.is_empty() && !only.contains(name) {
            continue;
        }
        if !state.services.iter().any(|s| &s.name == name) {
            continue; // its component is turned off
        }
        let own = &decl.component;
        let file_texts: Vec<&str> = component_files(m, state, own)
            .into_iter()
            .map(|f| f.content.as_str())
            .collect();
        let texts = texts_of(state, name, &file_texts);
        let names = |needle: &str| !needle.is_empty() && texts.iter().any(|t| t.contains(needle));
        let mut used = BTreeSet::new();
        for (cname, comp) in &m.components {
            if cname == own {
                continue;
            }
            let by_binary = state
                .binaries
                .iter()
                .filter(|(key, _)| key.split_once('.').is_some_and(|(c, _)| c == cname))
                .any(|(_, path)| names(&path.to_string_lossy()));
            let by_dir = comp.source == ComponentSource::Bundled
                && names(&paths.bundle_dir(cname).to_string_lossy());
            if by_binary || by_dir {
                used.insert(cname.clone());
            }
        }
        let mut components = vec![own.clone()];
        components.extend(used);
        let mut packages = BTreeSet::new();
        let mut payload = Vec::new();
        for c in &components {
            let Some(comp) = m.components.get(c) else {
                continue;
            };
            match comp.source {
                ComponentSource::System => packages.extend(comp.packages.iter().cloned()),
                ComponentSource::Bundled if comp.build.is_some() => payload.push(c.clone()),
                ComponentSource::Bundled => {}
            }
        }
        let comp = m.components.get(own);
        let run_as = comp
            .and_then(|c| c.user.clone())
            .unwrap_or_else(|| m.app.name.clone());
        let data_dirs = comp
            .map(|c| c.data_dirs.iter().map(|d| d.path().to_owned()).collect())
            .unwrap_or_default();
        let config = image_config(manifest, state, name, source_date_epoch);
        plans.push(RolePlan {
            service: name.clone(),
            component: own.clone(),
            components,
            packages: packages.into_iter().collect(),
            payload,
            user: run_as,
            data_dirs,
            tag: layout_tag(name, &m.app.version),
            repo_tag: format!("localhost/{}-{name}:{}", m.app.name, m.app.version),
            config,
        });
    }
    Ok(plans)
}

/// The image config of `service`: berth as the entry point running it, the service
/// user, the ports it declares, its readiness probe as the health check, labels.
fn image_config(
    manifest: &LoadedManifest,
    state: &DesiredState,
    service: &str,
    source_date_epoch: u64,
) -> ImageConfig {
    let m = &manifest.manifest;
    let decl = &m.services[service];
    let spec = state.services.iter().find(|s| s.name == service);
    let mut config = ImageConfig::new(source_date_epoch);
    config.entrypoint = vec![BERTH_IN_IMAGE.to_owned(), "container".to_owned()];
    config.cmd = vec!["run".to_owned(), service.to_owned()];
    config.env = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
        "LANG=C.UTF-8".to_owned(),
        format!("BERTH_PREFIX={}", state.paths.prefix.display()),
    ];
    config.user = format!("{SERVICE_UID}:{SERVICE_UID}");
    config.working_dir = Some(
        spec.and_then(|s| s.cwd.clone())
            .unwrap_or_else(|| state.paths.prefix.clone())
            .display()
            .to_string(),
    );
    // The ports it declares, and the one its readiness probe finds it on.
    let mut addresses: Vec<String> = state.listen.get(service).cloned().unwrap_or_default();
    match spec.and_then(|s| s.readiness.as_ref()).map(|r| &r.probe) {
        Some(Probe::Tcp { address }) => addresses.push(address.clone()),
        Some(Probe::Http { url, .. }) => addresses.extend(
            url.strip_prefix("http://")
                .and_then(|rest| rest.split('/').next())
                .map(str::to_owned),
        ),
        _ => {}
    }
    for address in &addresses {
        if let Some((_, port)) = address.rsplit_once(':')
            && port.parse::<u16>().is_ok()
        {
            config.exposed_ports.insert(format!("{port}/tcp"));
        }
    }
    let description = if decl.description.is_empty() {
        format!("{}: the {service} service", m.app.summary)
    } else {
        decl.description.clone()
    };
    let labels: BTreeMap<String, String> = [
        (
            "org.opencontainers.image.title",
            format!("{}-{service}", m.app.name),
        ),
        ("org.opencontainers.image.version", m.app.version.clone()),
        ("org.opencontainers.image.description", description),
        (
            "org.opencontainers.image.created",
            jiff::Timestamp::from_second(i64::try_from(source_date_epoch).unwrap_or(0))
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string(),
        ),
        (
            "org.opencontainers.image.ref.name",
            format!("{service}-{}", m.app.version),
        ),
        ("io.berth.app", m.app.name.clone()),
        ("io.berth.service", service.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    config.labels = labels;
    if let Some(r) = spec.and_then(|s| s.readiness.as_ref()) {
        config.healthcheck = Some(Healthcheck {
            test: vec![
                "CMD".to_owned(),
                BERTH_IN_IMAGE.to_owned(),
                "container".to_owned(),
                "ready".to_owned(),
                service.to_owned(),
            ],
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            retries: 3,
            // The time the manifest gives the service to become ready.
            start_period: r.timeout,
        });
    }
    config
}

/// The tag of a service's image in the OCI layout `berth image build --out` writes:
/// `<service>-<version>`.
pub fn layout_tag(service: &str, version: &str) -> String {
    format!("{service}-{version}")
}
