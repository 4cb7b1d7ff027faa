//! What a container's berth does before its service runs: the instance opened as on a
//! host (the manifest the image carries, the site config if one is mounted, settings
//! from `BERTH_SET_…`), secrets read from files the runtime mounts, the same render as
//! on a host, and the files of the service's component written. Nothing is generated:
//! every container of an app must see the same secrets, so a missing one is an error
//! naming it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_lifecycle::{Instance, Locate};
use berth_render::{FileSpec, HookSpec};
use berth_supervisor_protocol::{Probe, ServiceSpec};

use crate::{ContainerError, Result, settings};

/// Where a container's secrets are mounted unless `BERTH_SECRETS_DIR` says otherwise:
/// where podman and Docker put `--secret`s, and where Kubernetes is told to.
pub const DEFAULT_SECRETS_DIR: &str = "/run/secrets";

/// How a container's berth finds its instance.
#[derive(Debug, Clone)]
pub struct Options {
    /// The prefix, manifest and site config, as on a host (`BERTH_PREFIX`…).
    pub locate: Locate,
    /// The process's environment (`BERTH_SET_…` are read from it).
    pub vars: Vec<(String, String)>,
    /// One file per secret, named after it.
    pub secrets_dir: PathBuf,
}

/// What runs: a service or a hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What<'a> {
    /// `berth container run <service>`.
    Service(&'a str),
    /// `berth container hook <hook>`.
    Hook(&'a str),
    /// `berth container job <job>`: one run of a periodic job (a CronJob's).
    Job(&'a str),
}

/// An instance rendered for one service or hook of a container.
pub struct Prepared {
    /// The instance.
    pub instance: Instance,
    /// The component the service or hook belongs to.
    pub component: String,
    /// The config files of that component.
    pub files: Vec<FileSpec>,
    /// The service, when a service runs.
    pub service: Option<ServiceSpec>,
    /// The hook, when a hook runs.
    pub hook: Option<HookSpec>,
    /// The periodic job, when one of its runs runs.
    pub job: Option<berth_supervisor_protocol::JobSpec>,
}

/// The instance, with the settings the environment gives; never as root.
///
/// # Errors
/// Run as root; the manifest or site config is invalid.
pub fn open(opts: &Options) -> Result<Instance> {
    // As root, berth would make the service users a host install makes; an image has
    // its one user already, and its files are that user's.
    if nix::unistd::geteuid().is_root() {
        return Err(ContainerError::Invalid(format!(
            "berth container runs as the image's service user ({}), not as root: run the \
             container without `--user 0` (or `runAsUser: 0`)",
            crate::SERVICE_UID
        )));
    }
    let vars = opts.vars.clone();
    Ok(berth_lifecycle::instance::open_amended(
        &opts.locate,
        &|m, name, text| {
            settings::amend(&m.manifest, name, text, &vars)
                .map_err(berth_lifecycle::LifecycleError::Environment)
        },
    )?)
}

/// Open and render the instance for `what`, checking that every secret it uses is
/// there. Writes nothing.
///
/// # Errors
/// The manifest or site config is invalid, a setting variable is unknown, a secret it
/// uses is missing or invalid, or `what` is not in the manifest.
#[allow(clippy::too_many_lines)] // each kind of process found, then every secret it sees checked
pub fn prepare(opts: &Options, what: What<'_>) -> Result<Prepared> {
    let instance = open(opts)?;
    let manifest = &instance.manifest.manifest;
    let (component, runs) = match what {
        What::Service(name) => {
            let decl = manifest.services.get(name).ok_or_else(|| {
                not_found(
                    "service",
                    name,
                    manifest.services.keys().map(String::as_str),
                )
            })?;
            (decl.component.clone(), format!("the {name} service"))
        }
        What::Hook(name) => {
            let decl = manifest.hooks.get(name).ok_or_else(|| {
                not_found("hook", name, manifest.hooks.keys().map(String::as_str))
            })?;
            (decl.component.clone(), format!("the {name} hook"))
        }
        What::Job(name) => {
            let decl = manifest
                .jobs
                .get(name)
                .ok_or_else(|| not_found("job", name, manifest.jobs.keys().map(String::as_str)))?;
            (decl.component.clone(), format!("the {name} job"))
        }
    };
    if !instance.config.enabled_components.contains(&component) {
        return Err(ContainerError::Invalid(format!(
            "{runs} belongs to the component `{component}`, which the site config turns off"
        )));
    }
    let (secrets, missing) = read_secrets(&instance, &opts.secrets_dir)?;
    let state = crate::render(&instance, &secrets)?;
    let files: Vec<FileSpec> =
        crate::plan::component_files(&instance.manifest.manifest, &state, &component)
            .into_iter()
            .cloned()
            .collect();
    let service = match what {
        What::Service(name) => state.services.iter().find(|s| s.name == name).cloned(),
        _ => None,
    };
    let hook = match what {
        What::Hook(name) => state.hooks.iter().find(|h| h.name == name).cloned(),
        _ => None,
    };
    let job = match what {
        What::Job(name) => state.jobs.iter().find(|j| j.name == name).cloned(),
        _ => None,
    };
    // What the process sees: its files, its command line and environment, its probe.
    let mut seen: Vec<&str> = files.iter().map(|f| f.content.as_str()).collect();
    if let Some(s) = &service {
        seen.extend(s.argv.iter().map(String::as_str));
        seen.extend(s.env.values().map(String::as_str));
        if let Some(r) = &s.readiness {
            match &r.probe {
                Probe::Command { argv } => seen.extend(argv.iter().map(String::as_str)),
                Probe::Tcp { address } => seen.push(address),
                Probe::Http { url, .. } => seen.push(url),
            }
        }
    }
    if let Some(h) = &hook {
        seen.extend(h.argv.iter().map(String::as_str));
        seen.extend(h.env.values().map(String::as_str));
    }
    if let Some(j) = &job {
        seen.extend(j.argv.iter().map(String::as_str));
        seen.extend(j.env.values().map(String::as_str));
    }
    let needed: Vec<&String> = missing
        .iter()
        .filter(|(_, marker)| seen.iter().any(|text| text.contains(marker.as_str())))
        .map(|(name, _)| name)
        .collect();
    if !needed.is_empty() {
        let list: Vec<String> = needed.iter().map(|n| format!("`{n}`")).collect();
        return Err(ContainerError::Invalid(format!(
            "{runs} needs the secret{} {}, which {} not in {}: mount each as a file named \
             after it there (`podman run --secret NAME`, a Kubernetes Secret volume), or \
             point BERTH_SECRETS_DIR at the directory that holds them",
            if needed.len() == 1 { "" } else { "s" },
            list.join(", "),
            if needed.len() == 1 { "is" } else { "are" },
            opts.secrets_dir.display()
        )));
    }
    if service.is_none() && hook.is_none() && job.is_none() {
        return Err(ContainerError::Invalid(format!(
            "{runs} is not rendered for this instance: its component is turned off"
        )));
    }
    Ok(Prepared {
        instance,
        component,
        files,
        service,
        hook,
        job,
    })
}

fn not_found<'a>(
    kind: &str,
    name: &str,
    known: impl Iterator<Item = &'a str> + Clone,
) -> ContainerError {
    let hint = berth_model::suggest::closest(name, known.clone()).map_or_else(
        || {
            let all: Vec<&str> = known.collect();
            format!("; the manifest's are: {}", all.join(", "))
        },
        |c| format!("; did you mean `{c}`?"),
    );
    ContainerError::Invalid(format!("the manifest has no {kind} `{name}`{hint}"))
}

/// The secrets in `dir`, checked against their declarations; a missing one gets a
/// marker value (returned with it) so that the render shows whether anything this
/// container runs uses it. A secret a hook makes is never read here.
/// Secret values by name, and the (name, marker) of each missing one.
pub(crate) type ReadSecrets = (BTreeMap<String, String>, Vec<(String, String)>);

pub(crate) fn read_secrets(instance: &Instance, dir: &Path) -> Result<ReadSecrets> {
    let specs = berth_render::secret_specs_enabled(
        &instance.manifest,
        &instance.facts,
        &instance.users,
        &instance.config.enabled_components,
    );
    let mut values = BTreeMap::new();
    let mut missing = Vec::new();
    for spec in &specs {
        if spec.from_hook.is_some() {
            continue;
        }
        let path = dir.join(&spec.name);
        if let Some(value) = read_secret(&path)? {
            spec.check_value(&value).map_err(|why| {
                ContainerError::Invalid(format!(
                    "the secret `{}` in {}: {why}",
                    spec.name,
                    path.display()
                ))
            })?;
            values.insert(spec.name.clone(), value);
        } else {
            // Letters only: it comes through every format's escaping unchanged.
            let marker = format!("BERTHMISSINGSECRET{}X", letters(&spec.name));
            values.insert(spec.name.clone(), marker.clone());
            missing.push((spec.name.clone(), marker));
        }
    }
    Ok((values, missing))
}

/// `name` in the letters `a` to `p`, two per byte.
fn letters(name: &str) -> String {
    let mut out = String::with_capacity(name.len() * 2);
    for b in name.bytes() {
        out.push(char::from(b'a' + (b >> 4)));
        out.push(char::from(b'a' + (b & 15)));
    }
    out
}

/// A secret's value: the file's text, without one final newline (`echo value >`
/// writes one). `None` when there is no such file.
pub(crate) fn read_secret(path: &Path) -> Result<Option<String>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let mut text = String::from_utf8(bytes).map_err(|_| {
                ContainerError::Invalid(format!("the secret {} is not UTF-8 text", path.display()))
            })?;
            if text.ends_with('\n') {
                text.pop();
                if text.ends_with('\r') {
                    text.pop();
                }
            }
            Ok(Some(text))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ContainerError::Io {
            action: "read the secret",
            path: path.to_owned(),
            source,
        }),
    }
}

/// Write the component's files (as the container's user, mode as the manifest says)
/// and make the directories the service needs: the files' directories, its working
/// directory, the component's data and run directories. Inside the container's own
/// tree: nobody else can change it.
///
/// # Errors
/// A directory or file cannot be made (a volume mounted read-only or owned by another
/// user: the error names the path).
pub fn write(prepared: &Prepared) -> Result<()> {
    let paths = &prepared.instance.paths;
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(decl) = prepared
        .instance
        .manifest
        .manifest
        .components
        .get(&prepared.component)
    {
        for d in &decl.data_dirs {
            dirs.push(paths.data_dir(d.path()));
        }
    }
    dirs.push(paths.component_run_dir(&prepared.component));
    let cwd = prepared
        .service
        .as_ref()
        .and_then(|s| s.cwd.clone())
        .or_else(|| prepared.hook.as_ref().and_then(|h| h.cwd.clone()));
    dirs.extend(cwd);
    for f in &prepared.files {
        if let Some(parent) = f.path.parent() {
            dirs.push(parent.to_owned());
        }
    }
    for dir in &dirs {
        berth_host::fsutil::ensure_dir(dir, 0o755)?;
    }
    for f in &prepared.files {
        berth_host::fsutil::write_atomic(&f.path, f.content.as_bytes(), f.mode, None)?;
    }
    Ok(())
}
