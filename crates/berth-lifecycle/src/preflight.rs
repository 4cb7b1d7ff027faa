//! Checks `up` makes before it changes anything: ports, packages, programs.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};

use berth_render::DesiredState;
use berth_supervisor_protocol::{Probe, Request, Response};

use crate::error::{LifecycleError, Result};
use crate::instance::Instance;
use crate::progress::Progress;
use crate::supervisor;

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

/// Refuse to start anything if a port a service needs is taken by another program.
pub(crate) fn check_ports(state: &DesiredState, running: &BTreeSet<String>) -> Result<()> {
    let mut taken = Vec::new();
    for (service, addr) in listen_addresses(state) {
        if running.contains(&service) {
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

/// Services the supervisor currently runs (any state but stopped/failed).
pub(crate) fn running_services(inst: &Instance) -> BTreeSet<String> {
    if !supervisor::is_running(&inst.paths) {
        return BTreeSet::new();
    }
    match supervisor::request(&inst.paths, &Request::Status) {
        Ok(Response::Status { services, .. }) => services
            .into_iter()
            .filter(|s| s.pid.is_some())
            .map(|s| s.name)
            .collect(),
        _ => BTreeSet::new(),
    }
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
        berth_host::packages::install(&missing)?;
        progress.end("");
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
