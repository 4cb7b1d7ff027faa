//! Checks `up` makes before it changes anything: ports, packages, programs, and
//! whether the service users can reach their paths ([`reach`]).

mod reach;

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
        if let Some(a) = probe_address(s) {
            out.push((s.name.clone(), a));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The address a service's `tcp` or `http` readiness probe asks: one it listens on.
pub(crate) fn probe_address(s: &berth_supervisor_protocol::ServiceSpec) -> Option<SocketAddr> {
    let addr = match s.readiness.as_ref().map(|r| &r.probe) {
        Some(Probe::Tcp { address }) => address.clone(),
        Some(Probe::Http { url, .. }) => {
            let u = url::Url::parse(url).ok()?;
            format!(
                "{}:{}",
                u.host_str().unwrap_or("127.0.0.1"),
                u.port_or_known_default().unwrap_or(80)
            )
        }
        _ => return None,
    };
    addr.to_socket_addrs().ok().and_then(|mut i| i.next())
}

/// Remember the addresses `state` listens on, once it has come up: a later check
/// knows which taken ports are the running services' own.
pub(crate) fn record_ports(inst: &Instance, state: &DesiredState) -> Result<()> {
    let bytes = serde_json::to_vec(&listen_addresses(state))?;
    berth_host::fsutil::write_if_changed(&inst.paths.ports_file(), &bytes, 0o644)?;
    Ok(())
}

/// The addresses the services will listen on, each with why it cannot be bound when
/// another program holds it. A running service's own address is not "taken"; a
/// running service that moves to another address needs that one free.
fn ports(
    inst: &Instance,
    state: &DesiredState,
    running: &BTreeSet<String>,
) -> Vec<berth_preflight::PortFound> {
    let recorded: Option<Vec<(String, SocketAddr)>> = std::fs::read(inst.paths.ports_file())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    listen_addresses(state)
        .into_iter()
        .map(|(service, addr)| {
            let own = recorded
                .as_ref()
                .is_none_or(|r| r.iter().any(|(s, a)| *s == service && *a == addr));
            let taken = if running.contains(&service) && own {
                None
            } else {
                TcpListener::bind(addr).err().map(|e| e.to_string())
            };
            berth_preflight::PortFound {
                service,
                address: addr.to_string(),
                taken,
            }
        })
        .collect()
}

/// The whole preflight report of the instance as `state` would run it: the manifest's
/// `[preflight]` and berth's own checks (free space for its state, the clock, the
/// services' ports), on this host.
pub fn report(
    inst: &Instance,
    state: &DesiredState,
    running: &BTreeSet<String>,
) -> berth_preflight::Report {
    let spec = berth_preflight::spec(&inst.manifest.manifest.preflight, &inst.paths);
    let mut host = berth_host::preflight::probe(&spec, &inst.facts);
    host.ports = ports(inst, state, running);
    berth_preflight::evaluate(&spec, &host)
}

/// Refuse to change anything when a preflight check fails, naming each with its fix;
/// warnings are said and do not stop.
pub(crate) fn check_host(
    inst: &Instance,
    state: &DesiredState,
    running: &BTreeSet<String>,
    progress: &dyn Progress,
) -> Result<()> {
    let report = report(inst, state, running);
    for c in report.with(berth_preflight::Status::Warn) {
        progress.note(&format!(
            "preflight: {}: {}{}",
            c.name,
            c.found,
            c.fix.as_ref().map(|f| format!("; {f}")).unwrap_or_default()
        ));
    }
    if report.worst() == berth_preflight::Status::Fail {
        return Err(LifecycleError::Preflight(berth_preflight::Report::lines(
            report.with(berth_preflight::Status::Fail),
        )));
    }
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
    let taken: Vec<String> = ports(inst, state, running)
        .into_iter()
        .filter_map(|p| {
            p.taken
                .map(|e| format!("  {} (service `{}`): {e}", p.address, p.service))
        })
        .collect();
    if !taken.is_empty() {
        return Err(LifecycleError::PortsInUse(taken));
    }
    Ok(())
}

/// Refuse to change anything when a service user cannot search a directory on the way
/// to a path it uses (a prefix inside a 0700 directory): the error names each such
/// directory, the users it stops and the fix. Without root every process runs as the
/// invoking user, who reaches the prefix it named: nothing to check.
pub(crate) fn check_reachable(inst: &Instance, state: &DesiredState) -> Result<()> {
    if !inst.facts.is_root {
        return Ok(());
    }
    let blocked = reach::blocked(state, true, &reach::lookup)?;
    if blocked.is_empty() {
        Ok(())
    } else {
        Err(reach::unreachable(&blocked))
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

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::net::{SocketAddr, TcpListener};
    use std::time::Duration;

    use berth_supervisor_protocol::{Probe, Readiness};

    use super::{check_ports, listen_addresses, record_ports};
    use crate::LifecycleError;
    use crate::testing::{instance, names, service, state_on};

    fn probing(name: &str, probe: Probe) -> berth_supervisor_protocol::ServiceSpec {
        let mut s = service(name, &[]);
        s.readiness = Some(Readiness {
            probe,
            timeout: Duration::from_secs(1),
        });
        s
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    /// The addresses come from the declared `listen` entries and from TCP and HTTP
    /// readiness probes (an HTTP URL without a port is port 80); a command probe or a
    /// URL that does not parse gives none, and each address is listed once.
    #[test]
    fn listen_addresses_come_from_listen_entries_and_probes() {
        let mut state = state_on(
            "/p".as_ref(),
            vec![
                probing(
                    "db",
                    Probe::Tcp {
                        address: "127.0.0.1:5432".into(),
                    },
                ),
                probing(
                    "web",
                    Probe::Http {
                        url: "http://127.0.0.1:8080/health".into(),
                        status: None,
                    },
                ),
                probing(
                    "proxy",
                    Probe::Http {
                        url: "http://127.0.0.1/".into(),
                        status: Some(200),
                    },
                ),
                probing(
                    "worker",
                    Probe::Command {
                        argv: names(&["/bin/true"]),
                    },
                ),
                probing(
                    "odd",
                    Probe::Http {
                        url: "not a url".into(),
                        status: None,
                    },
                ),
            ],
            vec![],
        );
        state.listen = BTreeMap::from([
            (
                "db".to_owned(),
                names(&["127.0.0.1:5432", "127.0.0.1:5433"]),
            ),
            ("cache".to_owned(), names(&["127.0.0.1:6379"])),
        ]);
        assert_eq!(
            listen_addresses(&state),
            [
                ("cache".to_owned(), addr("127.0.0.1:6379")),
                ("db".to_owned(), addr("127.0.0.1:5432")),
                ("db".to_owned(), addr("127.0.0.1:5433")),
                ("proxy".to_owned(), addr("127.0.0.1:80")),
                ("web".to_owned(), addr("127.0.0.1:8080")),
            ]
        );
    }

    /// A port taken by another program stops the operation and is named; a running
    /// service's own port is not "taken" (with no record, every running service is
    /// taken to hold its own), but once the record says the service held another
    /// address, the new one must be free.
    #[test]
    fn a_taken_port_is_refused_unless_the_running_service_holds_it() {
        let tmp = tempfile::tempdir().unwrap();
        let inst = instance(&tmp.path().join("inst"));
        let holder = TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = holder.local_addr().unwrap();
        let mut state = state_on(&inst.paths.prefix, vec![service("web", &[])], vec![]);
        state.listen = BTreeMap::from([("web".to_owned(), vec![taken.to_string()])]);

        let err = check_ports(&inst, &state, &BTreeSet::new()).unwrap_err();
        let LifecycleError::PortsInUse(lines) = &err else {
            panic!("{err}");
        };
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].starts_with(&format!("  {taken} (service `web`): ")),
            "{lines:?}"
        );

        let running = BTreeSet::from(["web".to_owned()]);
        check_ports(&inst, &state, &running).unwrap();

        // Recorded when the service held another address: this one is someone else's.
        let mut before = state.clone();
        before.listen = BTreeMap::from([("web".to_owned(), names(&["127.0.0.1:1"]))]);
        std::fs::create_dir_all(&inst.paths.state).unwrap();
        record_ports(&inst, &before).unwrap();
        assert!(matches!(
            check_ports(&inst, &state, &running),
            Err(LifecycleError::PortsInUse(_))
        ));
        // Recorded with this address: it is the running service's own.
        record_ports(&inst, &state).unwrap();
        check_ports(&inst, &state, &running).unwrap();
    }
}
