//! The handover of an online upgrade hop: each `beside` service's new release started
//! on its spare port while the old process serves, the front end pointed at it (the
//! files that name the port rewritten, their services reloaded), the old process
//! drained and the service restarted on its own port, the front end pointed back, and
//! the spare process drained and stopped. No request meets a stopped backend.
//!
//! A file written here is put back by the next converge if berth dies half way (its
//! content differs from the desired one), and the spare process leaves with the next
//! plan the supervisor gets: nothing here needs a journal of its own.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_render::{DesiredState, FileSpec, Handover};
use berth_supervisor_protocol::{Request, ServiceSpec, Target};

use crate::change::{Change, send_apply};
use crate::error::{LifecycleError, Result};
use crate::instance::Instance;
use crate::run::{Outcome, Run};

/// How the services of `state` (rendered from `inst`, the version being switched
/// to) would start beside themselves, or why they cannot (then they restart, as on
/// any change).
pub fn plan(
    inst: &Instance,
    secrets: &BTreeMap<String, String>,
    state: &DesiredState,
) -> Result<std::result::Result<Handover, String>> {
    let config = match berth_render::beside_config(&inst.manifest.manifest, &inst.config) {
        Ok(Some(config)) => config,
        Ok(None) => return Ok(Err("no service declares `beside`".to_owned())),
        Err(why) => return Ok(Err(why)),
    };
    let beside = crate::desired::render_with(inst, &config, secrets)?;
    Ok(berth_render::handover(
        &inst.manifest.manifest,
        state,
        &beside,
    ))
}

/// Before an online upgrade hop changes anything (`inst`: the new version's
/// instance): the spare ports of the services that will start beside themselves must
/// be free. When they cannot start beside themselves, a note says why (they restart).
pub fn preflight(inst: &Instance, progress: &dyn crate::Progress) -> Result<()> {
    let m = &inst.manifest.manifest;
    if !m.services.values().any(|s| s.beside.is_some()) {
        return Ok(());
    }
    let state = crate::desired::preview(inst)?;
    match plan(inst, &crate::desired::secrets(inst, false)?, &state)? {
        Ok(h) => {
            let names: Vec<String> = h.services.iter().map(|s| s.spec.name.clone()).collect();
            check_free(&h, &names)
        }
        Err(why) => {
            progress.note(&format!(
                "The app's services will restart instead of starting beside themselves: {why}"
            ));
            Ok(())
        }
    }
}

/// Restart the held services of `change`, moving traffic as `h` says for those of
/// its services that run and are held. Returns `false`, having done nothing, when
/// none is: the caller releases the held services as usual.
pub(crate) fn run(
    run: &Run,
    change: &Change,
    state: &DesiredState,
    h: &Handover,
    outcome: &mut Outcome,
) -> Result<bool> {
    let running = crate::supervisor::services_running(run.supervisor());
    let extra: Vec<ServiceSpec> = h
        .services
        .iter()
        .filter(|s| running.contains(&s.name) && change.held().contains(&s.name))
        .map(|s| s.spec.clone())
        .collect();
    if extra.is_empty() {
        return Ok(false);
    }
    let names: Vec<String> = extra.iter().map(|s| s.name.clone()).collect();
    let drain = h.services.iter().map(|s| s.drain).max().unwrap_or_default();
    check_free(h, &names)?;

    // The new release beside the old one, ready before any traffic goes to it.
    run.progress.begin(&format!(
        "Starting {} beside the old release",
        names.join(", ")
    ));
    let mut plan = change.plan_holding();
    plan.services.extend(extra.iter().cloned());
    let started = send_apply(
        run,
        "start beside",
        &Request::Apply {
            plan,
            restart: Vec::new(),
            reload: Vec::new(),
        },
        outcome,
    )
    .and_then(|()| start(run, &names))
    .and_then(|()| check_own(run, h, &names));
    if let Err(e) = started {
        return Err(undo(run, change, state, h, e, false));
    }
    run.progress.end("");

    let moved = (|| {
        run.progress.begin("Moving traffic to the new release");
        write_files(run, state, &h.files)?;
        reload(run, "move traffic", &h.reload)?;
        std::thread::sleep(drain);
        run.progress.end("");
        crate::fault::point("handover:moved");
        // The old process, drained, gives way to the new release on its own port.
        change.release_held_beside(run, outcome, &extra)
    })();
    if let Err(e) = moved {
        return Err(undo(run, change, state, h, e, true));
    }

    run.progress
        .begin("Moving traffic back to the service's own port");
    let usual = usual_files(state, h);
    write_files(run, state, &usual)?;
    reload(run, "move traffic back", &h.reload)?;
    std::thread::sleep(drain);
    crate::fault::point("handover:back");
    send_apply(
        run,
        "stop beside",
        &Request::Apply {
            plan: change.new_plan_with(&[]),
            restart: Vec::new(),
            reload: Vec::new(),
        },
        outcome,
    )?;
    run.progress.end("");
    Ok(true)
}

/// Each process started beside its service must be what listens on its addresses: a
/// probe that answered proves only that something does (a service user could have
/// bound the spare port after the preflight).
fn check_own(run: &Run, h: &Handover, names: &[String]) -> Result<()> {
    let statuses = crate::supervisor::statuses(run.supervisor());
    for s in h.services.iter().filter(|s| names.contains(&s.spec.name)) {
        let pid = statuses
            .iter()
            .find(|st| st.name == s.spec.name)
            .and_then(|st| st.pid);
        for addr in addresses(s) {
            let verdict = match pid {
                // The supervisor starts each service in a process group of its own.
                Some(pid) => berth_host::listeners::held_only_by_group(addr, pid),
                None => Err("it has no process".to_owned()),
            };
            if let Err(detail) = verdict {
                return Err(LifecycleError::NotTheService {
                    service: s.spec.name.clone(),
                    addr: addr.to_string(),
                    detail,
                });
            }
        }
    }
    Ok(())
}

/// Where a process started beside its service listens: its `listen` entries and the
/// address its readiness probe asks.
fn addresses(s: &berth_render::BesideService) -> Vec<std::net::SocketAddr> {
    let mut addrs: Vec<std::net::SocketAddr> = s
        .listen
        .iter()
        .filter_map(|a| {
            std::net::ToSocketAddrs::to_socket_addrs(a.as_str())
                .ok()?
                .next()
        })
        .collect();
    addrs.extend(crate::preflight::probe_address(&s.spec));
    addrs.sort();
    addrs.dedup();
    addrs
}

/// The spare ports must be free: something else on one would take the traffic.
fn check_free(h: &Handover, names: &[String]) -> Result<()> {
    let mut taken = Vec::new();
    for s in h.services.iter().filter(|s| names.contains(&s.spec.name)) {
        for addr in addresses(s) {
            if let Err(e) = std::net::TcpListener::bind(addr) {
                taken.push(format!("  {addr} (service `{}`, beside): {e}", s.spec.name));
            }
        }
    }
    if taken.is_empty() {
        Ok(())
    } else {
        Err(LifecycleError::PortsInUse(taken))
    }
}

/// The files as the desired state has them (pointing at the services' own ports).
fn usual_files(state: &DesiredState, h: &Handover) -> Vec<FileSpec> {
    h.files
        .iter()
        .filter_map(|f| state.files.iter().find(|u| u.path == f.path).cloned())
        .collect()
}

/// Write `files` over the desired state's own, as converge writes any file (owner,
/// mode, atomically, never through a link).
fn write_files(run: &Run, state: &DesiredState, files: &[FileSpec]) -> Result<()> {
    let mut moved = state.clone();
    for f in files {
        if let Some(slot) = moved.files.iter_mut().find(|x| x.path == f.path) {
            slot.clone_from(f);
        }
    }
    let plan = berth_host::converge::plan(&moved, &[], run.inst.facts.is_root)?;
    berth_host::converge::apply(&plan, &moved)?;
    Ok(())
}

fn reload(run: &Run, step: &str, services: &[String]) -> Result<()> {
    let supervisor = run.supervisor();
    run.step(step, || {
        supervisor
            .request(&Request::Reload {
                target: Target::Many(services.to_vec()),
            })
            .map(|_| ())
            .map_err(|e| supervisor.with_failed_logs(e))
    })
}

fn start(run: &Run, names: &[String]) -> Result<()> {
    let supervisor = run.supervisor();
    run.step("start beside", || {
        supervisor
            .request(&Request::Start {
                target: Target::Many(names.to_vec()),
            })
            .map(|_| ())
            .map_err(|e| supervisor.with_failed_logs(e))
    })
}

/// After a failure: the front end pointed at the services' own ports again (when it
/// was moved) and the spare processes stopped, best effort, before the change is
/// rolled back; the first error is the one reported.
fn undo(
    run: &Run,
    change: &Change,
    state: &DesiredState,
    h: &Handover,
    err: LifecycleError,
    moved: bool,
) -> LifecycleError {
    run.progress.end("failed");
    if moved {
        let _ = write_files(run, state, &usual_files(state, h))
            .and_then(|()| reload(run, "move traffic back", &h.reload));
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = run.supervisor().request(&Request::Apply {
        plan: change.plan_holding(),
        restart: Vec::new(),
        reload: Vec::new(),
    });
    err
}
