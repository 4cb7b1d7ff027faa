//! Checks `up` makes before it changes anything: ports, packages, programs.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};

use berth_render::DesiredState;
use berth_supervisor_protocol::Probe;

use crate::error::{LifecycleError, Result};
use crate::instance::Instance;
use crate::progress::Progress;

/// Ports the services will listen on, from their readiness probes.
fn listen_addresses(state: &DesiredState) -> Vec<(String, SocketAddr)> {
    let mut out = Vec::new();
    for (service, addrs) in &state.listen {
        for a in addrs {
            if let Some(a) = a.to_socket_addrs().ok().and_then(|mut i| i.next()) {
                out.push((service.clone(), a));
            }
        }
    }
    for s in &state.services {
        let addr = match s.readiness.as_ref().map(|r| &r.probe) {
            Some(Probe::Tcp { address }) => address.clone(),
            Some(Probe::Http { url, .. }) => match url::Url::parse(url) {
                Ok(u) => format!(
                    "{}:{}",
                    u.host_str().unwrap_or("127.0.0.1"),
                    u.port_or_known_default().unwrap_or(80)
                ),
                Err(_) => continue,
            },
            _ => continue,
        };
        if let Some(a) = addr.to_socket_addrs().ok().and_then(|mut i| i.next()) {
            out.push((s.name.clone(), a));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Remember the addresses `state` listens on, once it has come up: a later check
/// knows which taken ports are the running services' own.
pub(crate) fn record_ports(inst: &Instance, state: &DesiredState) -> Result<()> {
    let bytes = serde_json::to_vec(&listen_addresses(state))?;
    berth_host::fsutil::write_if_changed(&inst.paths.ports_file(), &bytes, 0o644)?;
    Ok(())
}

/// Refuse to start or change anything if a port a service needs is taken by another
/// program. A running service's own address is not "taken"; a running service that
/// moves to another address needs that one free.
pub(crate) fn check_ports(
    inst: &Instance,
    state: &DesiredState,
    running: &BTreeSet<String>,
) -> Result<()> {
    let recorded: Option<Vec<(String, SocketAddr)>> = std::fs::read(inst.paths.ports_file())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let mut taken = Vec::new();
    for (service, addr) in listen_addresses(state) {
        let own = recorded
            .as_ref()
            .is_none_or(|r| r.iter().any(|(s, a)| *s == service && *a == addr));
        if running.contains(&service) && own {
            continue;
        }
        if let Err(e) = TcpListener::bind(addr) {
            taken.push(format!("  {addr} (service `{service}`): {e}"));
        }
    }
    if !taken.is_empty() {
        return Err(LifecycleError::PortsInUse(taken));
    }
    Ok(())
}

/// Install missing distribution packages (root), or say exactly what to run.
pub(crate) fn ensure_packages(
    state: &DesiredState,
    is_root: bool,
    progress: &dyn Progress,
) -> Result<()> {
    let missing = berth_host::packages::missing(&state.packages)?;
    if !missing.is_empty() {
        if !is_root {
            return Err(LifecycleError::PackagesMissing {
                install: berth_host::packages::install_hint(&missing),
                missing,
            });
        }
        progress.begin(&format!("Installing packages: {}", missing.join(", ")));
        let installed = berth_host::packages::install(&missing)?;
        progress.end("");
        if !installed.units_disabled.is_empty() {
            progress.note(&format!(
                "Disabled the packages' own services ({}): berth runs these programs itself",
                installed.units_disabled.join(", ")
            ));
        }
    }
    let absent: Vec<String> = state
        .binaries
        .iter()
        .filter(|(_, p)| !p.exists())
        .map(|(n, p)| format!("{n} ({})", p.display()))
        .collect();
    if !absent.is_empty() {
        return Err(LifecycleError::BinariesMissing(absent));
    }
    Ok(())
}
