//! Starting a service beside itself, for an online upgrade hop without a failed
//! request: the site config in which each `beside` service's port setting has its
//! spare's value, and what differs between the desired state rendered from it and the
//! usual one. Pure: the upgrade acts on what [`handover`] returns.

use std::time::Duration;

use berth_model::manifest::Manifest;
use berth_model::{ResolvedConfig, SettingValue};
use berth_supervisor_protocol::ServiceSpec;

use crate::desired::{DesiredState, FileSpec};

/// A service started beside itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BesideService {
    /// The service (`web`).
    pub name: String,
    /// The process on the spare port: the service's spec rendered with the spare's
    /// value for its port, named `<name>@next`, with a log directory of its own.
    pub spec: ServiceSpec,
    /// The addresses it listens on (its `listen`, rendered the same way): free before
    /// it starts.
    pub listen: Vec<String>,
    /// How long the old process keeps its requests once the front end was pointed
    /// away from it, before it is stopped.
    pub drain: Duration,
}

/// What moves traffic to the services started beside themselves and back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Handover {
    /// The services, in the order of the manifest.
    pub services: Vec<BesideService>,
    /// The files that change with the ports, as they point at the spare ports.
    /// Written, then `reload` reloaded: traffic goes to the new release; the usual
    /// contents written and reloaded again: it comes back to the service's own port.
    pub files: Vec<FileSpec>,
    /// The services those files reload (the front end).
    pub reload: Vec<String>,
}

/// The name of a service's process started beside it.
pub fn beside_name(service: &str) -> String {
    format!("{service}@next")
}

/// `config` with every running-capable `beside` service's `port` setting given its
/// `spare`'s value. `None` when no enabled service declares `beside`. An error when a
/// spare has the port's own value (then nothing can start beside).
pub fn beside_config(
    manifest: &Manifest,
    config: &ResolvedConfig,
) -> Result<Option<ResolvedConfig>, String> {
    let mut out = config.clone();
    let mut any = false;
    for (name, svc) in &manifest.services {
        let Some(b) = &svc.beside else { continue };
        if !config.enabled_components.contains(&svc.component) {
            continue;
        }
        let value = |key: &str| -> Option<SettingValue> {
            let (g, k) = key.split_once('.')?;
            Some(config.settings.get(g)?.get(k)?.value.clone())
        };
        let (Some(port), Some(spare)) = (value(&b.port), value(&b.spare)) else {
            return Err(format!(
                "service `{name}`: `beside` names a setting the config does not have"
            ));
        };
        if port == spare {
            return Err(format!(
                "service `{name}` cannot start beside itself: `{}` and `{}` are both {}",
                b.spare,
                b.port,
                shown(&port)
            ));
        }
        let (g, k) = b.port.split_once('.').unwrap_or_default();
        if let Some(slot) = out.settings.get_mut(g).and_then(|m| m.get_mut(k)) {
            slot.value = spare;
        }
        any = true;
    }
    Ok(any.then_some(out))
}

fn shown(v: &SettingValue) -> String {
    match v {
        SettingValue::Int(i) => i.to_string(),
        other => format!("{other:?}"),
    }
}

/// How traffic moves to the `beside` services of `normal` and back, from `beside`
/// (rendered from [`beside_config`]). The reason it cannot when a file that changes
/// with a port restarts something or is not the front end's (only a reload may move
/// traffic, and the old process must not see a changed file), when another service's
/// command changes with a port, or when no file changes (nothing points at the port).
pub fn handover(
    manifest: &Manifest,
    normal: &DesiredState,
    beside: &DesiredState,
) -> Result<Handover, String> {
    let mut services = Vec::new();
    let mut names = Vec::new();
    for (name, svc) in &manifest.services {
        let Some(b) = &svc.beside else { continue };
        let Some(spec) = beside.services.iter().find(|s| &s.name == name) else {
            continue;
        };
        let mut spec = spec.clone();
        spec.name = beside_name(name);
        spec.log_dir = normal.paths.service_log_dir(&spec.name);
        services.push(BesideService {
            name: name.clone(),
            spec,
            listen: beside.listen.get(name).cloned().unwrap_or_default(),
            drain: humantime::parse_duration(b.drain.trim())
                .map_err(|e| format!("service `{name}`: `beside.drain` `{}`: {e}", b.drain))?,
        });
        names.push(name.clone());
    }
    for spec in &beside.services {
        if names.contains(&spec.name) {
            continue;
        }
        if normal.services.iter().find(|s| s.name == spec.name) != Some(spec) {
            return Err(format!(
                "service `{}` is started differently when a `beside` port changes",
                spec.name
            ));
        }
    }
    let mut files = Vec::new();
    let mut reload: Vec<String> = Vec::new();
    for file in &beside.files {
        let usual = normal.files.iter().find(|f| f.path == file.path);
        if usual.is_some_and(|u| u.content == file.content) {
            continue;
        }
        let path = file.path.display();
        if !file.restarts.is_empty() {
            return Err(format!(
                "`{path}` changes with a `beside` port and restarts {}: only a file the \
                 front end reloads may name the port",
                file.restarts.join(", ")
            ));
        }
        if file.reloads.is_empty() || file.reloads.iter().any(|s| names.contains(s)) {
            return Err(format!(
                "`{path}` changes with a `beside` port but is not a file another service \
                 reloads: only a file the front end reloads may name the port"
            ));
        }
        for s in &file.reloads {
            if !reload.contains(s) {
                reload.push(s.clone());
            }
        }
        files.push(file.clone());
    }
    if services.is_empty() {
        return Err("no enabled service declares `beside`".to_owned());
    }
    if files.is_empty() {
        return Err(
            "no file the front end reads changes with a `beside` port: traffic cannot be moved"
                .to_owned(),
        );
    }
    Ok(Handover {
        services,
        files,
        reload,
    })
}
