//! One hop, step by step, each journaled before it runs and skipped once done (so
//! `resume` goes on where a killed berth stopped).

use std::cell::Cell;
use std::path::Path;
use std::time::Instant;

use berth_backup::{BackupError, Result};
use berth_lifecycle::run::Run;
use berth_lifecycle::{Instance, Locate, instance};
use berth_model::LoadedManifest;
use berth_render::Paths;
use berth_state::{RunId, RunOutcome, RunStatus};
use berth_supervisor_protocol::{Request, Response, ServiceState, Target};

use crate::journal::{self, Hop, Journal};
use crate::{Context, HopReport};

/// Copy the manifest `loaded` was read from (`dir`: its `berth.toml` and templates) to
/// `dest`, then read the copy back: it must be the same app and version, and its
/// templates the same, or the directory changed while it was read.
pub fn copy_manifest(dir: &Path, loaded: &LoadedManifest, dest: &Path) -> Result<()> {
    berth_host::fsutil::ensure_dir(dest, 0o700)?;
    let mut names = vec!["berth.toml".to_owned()];
    names.extend(loaded.templates.keys().cloned());
    for name in &names {
        let from = dir.join(name);
        let text = std::fs::read(&from).map_err(BackupError::io("read the manifest", &from))?;
        let to = dest.join(name);
        if let Some(parent) = to.parent() {
            berth_host::fsutil::ensure_dir(parent, 0o700)?;
        }
        berth_host::fsutil::write_atomic(&to, &text, 0o600, None)?;
    }
    let copy = LoadedManifest::load(dest)?;
    berth_model::validate(&copy)?;
    let same = |m: &LoadedManifest| (m.manifest.app.name.clone(), m.manifest.app.version.clone());
    if same(&copy) != same(loaded) || copy.templates != loaded.templates {
        return Err(BackupError::Cannot {
            what: format!("`{}` changed while it was read", dir.display()),
            hint:
                "run the upgrade again once the manifest directory is complete; nothing was changed"
                    .to_owned(),
        });
    }
    Ok(())
}

/// Run step `name` of the current hop unless it is done: journaled as begun before
/// `f` runs and as done after, each in the journal file and in the run's steps, then
/// the fault point `upgrade:<name>` (test builds kill berth there).
fn step<T>(
    paths: &Paths,
    j: &mut Journal,
    run: &Run,
    name: &str,
    timings: &mut Vec<(String, f64)>,
    f: impl FnOnce(&mut Journal) -> Result<T>,
) -> Result<Option<T>> {
    if j.has_done(name) {
        return Ok(None);
    }
    if !j.has_begun(name) {
        j.begun.push(name.to_owned());
        journal::save(paths, j)?;
    }
    let started = Instant::now();
    let value = run.step(name, || f(j))?;
    timings.push((name.to_owned(), started.elapsed().as_secs_f64()));
    j.done.push(name.to_owned());
    journal::save(paths, j)?;
    berth_lifecycle::fault::point(&format!("upgrade:{name}"));
    Ok(Some(value))
}

/// Carry out the current hop of `j`.
pub(crate) fn hop(ctx: &Context<'_>, prefix: &Path, j: &mut Journal) -> Result<HopReport> {
    let hop = j.hop().cloned().ok_or_else(|| BackupError::Cannot {
        what: "The upgrade journal names no hop".to_owned(),
        hint: "`berth upgrade abort`".to_owned(),
    })?;
    let started = Instant::now();
    let paths = Paths::unversioned(prefix);
    berth_lifecycle::leftovers::stop_leftover_children_at(&paths, ctx.progress)?;
    let loc_from = ctx.locate(prefix, &hop.from);
    let loc_to = ctx.locate(prefix, &hop.to);
    let inst_from = instance::open(&loc_from)?;
    let run = if let Some(id) = j.run {
        Run::attach(&inst_from, RunId(id), ctx.progress)?
    } else {
        let run = Run::begin_existing(
            &inst_from,
            "upgrade",
            &format!(
                "{} {} → {}{}",
                j.app,
                hop.from,
                hop.to,
                if ctx.automatic { " (automatic)" } else { "" }
            ),
            ctx.progress,
        )?;
        j.run = Some(run.id.0);
        journal::save(&paths, j)?;
        run
    };
    let mut timings = Vec::new();
    let maintenance = hop_steps(
        ctx,
        &paths,
        j,
        &run,
        &inst_from,
        &loc_to,
        &hop,
        &mut timings,
    )?;
    run.finish(Ok::<_, BackupError>(()), |()| RunOutcome {
        status: RunStatus::Succeeded,
        ..RunOutcome::default()
    })?;
    Ok(HopReport {
        from: hop.from,
        to: hop.to,
        offline: hop.offline,
        backup: j.backup.clone(),
        steps: timings,
        maintenance_seconds: maintenance,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[allow(clippy::too_many_arguments)] // the hop's parts, each used by several steps
fn hop_steps(
    ctx: &Context<'_>,
    paths: &Paths,
    j: &mut Journal,
    run: &Run,
    inst_from: &Instance,
    loc_to: &Locate,
    hop: &Hop,
    timings: &mut Vec<(String, f64)>,
) -> Result<Option<f64>> {
    let progress = ctx.progress;
    step(paths, j, run, "preflight", timings, |j| {
        // The site config must suit the new version (renamed settings migrated) and
        // its users be usable, before anything changes.
        let inst_to = instance::open(loc_to)?;
        inst_to.naming.usable()?;
        // The host against the new version's `[preflight]` (and berth's own checks).
        berth_lifecycle::up::preflight_check(&inst_to, progress)?;
        if !berth_lifecycle::supervisor::is_running(paths) {
            return Err(BackupError::Cannot {
                what: format!("{} is not running", j.app),
                hint: "start it with `berth up`, then `berth upgrade resume`".to_owned(),
            });
        }
        if !hop.offline {
            // The spare ports the new release starts on beside the old one.
            berth_lifecycle::handover::preflight(&inst_to, progress)?;
        }
        Ok(())
    })?;
    // The new version's instance, read once: the steps below only act on it.
    let inst_to = instance::open(loc_to)?;
    step(paths, j, run, "backup", timings, |j| {
        progress.note("Backing up before the upgrade");
        let report = berth_backup::backup::create(
            inst_from,
            &berth_backup::backup::CreateOptions::default(),
            progress,
        )?;
        j.backup = Some(report.archive);
        Ok(())
    })?;
    step(paths, j, run, "install", timings, |_| {
        berth_lifecycle::up::prepare_release(&inst_to, loc_to.payload.as_deref(), progress)?;
        Ok(())
    })?;
    let page_up: Cell<Option<Instant>> = Cell::new(None);
    let page_down: Cell<Option<Instant>> = Cell::new(None);
    if hop.offline {
        step(paths, j, run, "maintenance", timings, |j| {
            maintenance(inst_from, &inst_to, &j.app, progress)?;
            page_up.set(Some(Instant::now()));
            Ok(())
        })?;
    }
    step(paths, j, run, "switch", timings, |_| {
        let run_to = Run::attach(&inst_to, run.id, progress)?;
        berth_lifecycle::up::up_within_then(
            &run_to,
            loc_to,
            ctx.berth_exe,
            !hop.offline,
            &mut || {
                remove_maintenance_page(paths)?;
                if page_up.get().is_some() {
                    page_down.set(Some(Instant::now()));
                }
                Ok(())
            },
        )?;
        Ok(())
    })?;
    step(paths, j, run, "health-gate", timings, |_| {
        remove_maintenance_page(paths)?;
        all_ready(paths)?;
        let state = berth_lifecycle::desired::preview(&inst_to)?;
        berth_lifecycle::health::wait_healthy(&state)?;
        Ok(())
    })?;
    step(paths, j, run, "record", timings, |_| {
        prune_releases(&inst_to, &hop.to, progress)
    })?;
    Ok(match (page_up.get(), page_down.get()) {
        (Some(up), Some(down)) => Some(down.duration_since(up).as_secs_f64()),
        _ => None,
    })
}

/// The maintenance page up, then the running services of bundled components (the
/// release's own code, in the old manifest or the new) stopped: the front end keeps
/// answering, with the page.
pub fn maintenance(
    from: &Instance,
    to: &Instance,
    app: &str,
    progress: &dyn berth_lifecycle::Progress,
) -> Result<()> {
    let paths = &Paths::unversioned(&from.paths.prefix);
    write_maintenance_page(paths, app, &to.manifest.manifest.app.version)?;
    let stop = bundled_services([from, to], paths);
    if !stop.is_empty() {
        progress.begin(&format!("Stopping {}", stop.join(", ")));
        request(
            paths,
            &Request::StopOnly {
                target: Target::Many(stop),
            },
        )?;
        progress.end("");
    }
    Ok(())
}

/// The releases beyond the `keep` newest (the current one always kept and counted),
/// oldest first. `list` is in version order, as [`berth_lifecycle::release::list`] gives it.
fn to_prune(list: &[berth_lifecycle::release::ReleaseInfo], keep: usize) -> Vec<&str> {
    let others: Vec<&str> = list
        .iter()
        .filter(|r| !r.current)
        .map(|r| r.version.as_str())
        .collect();
    let drop_n = others.len().saturating_sub(keep.max(1) - 1);
    others[..drop_n].to_vec()
}

/// One request to the instance's supervisor; an error answer is an error.
pub(crate) fn request(paths: &Paths, req: &Request) -> Result<Response> {
    match berth_lifecycle::supervisor::request(paths, req)? {
        Response::Error { message } => Err(BackupError::Cannot {
            what: format!("The supervisor refused: {message}"),
            hint: "`berth status` shows the services; their logs are under the prefix's log/"
                .to_owned(),
        }),
        other => Ok(other),
    }
}

/// The running services of bundled components, in the old manifest or the new: their
/// code is the release's, so an offline migration stops them (the front end, a system
/// package, keeps answering).
fn bundled_services(manifests: [&Instance; 2], paths: &Paths) -> Vec<String> {
    let running = berth_lifecycle::supervisor::running_services(paths);
    let mut names = std::collections::BTreeSet::new();
    for inst in manifests {
        let m = &inst.manifest.manifest;
        names.extend(
            m.services
                .iter()
                .filter(|(name, svc)| {
                    running.contains(*name)
                        && m.components.get(&svc.component).is_some_and(|c| {
                            c.source == berth_model::manifest::ComponentSource::Bundled
                        })
                })
                .map(|(name, _)| name.clone()),
        );
    }
    names.into_iter().collect()
}

/// Every service of the supervisor's plan must be ready.
fn all_ready(paths: &Paths) -> Result<()> {
    let Response::Status { services, .. } = request(paths, &Request::Status)? else {
        return Err(BackupError::Cannot {
            what: "The supervisor gave no status".to_owned(),
            hint: "`berth status`".to_owned(),
        });
    };
    let not: Vec<String> = services
        .iter()
        .filter(|s| s.state != ServiceState::Ready)
        .map(|s| format!("{} ({:?})", s.name, s.state))
        .collect();
    if !not.is_empty() {
        return Err(BackupError::Cannot {
            what: format!("not ready after the switch: {}", not.join(", ")),
            hint: "their logs are under the prefix's log/".to_owned(),
        });
    }
    Ok(())
}

/// The maintenance page: written (root's, 0644) before the old release stops; a
/// front end serves it with 503 while it exists.
pub(crate) fn write_maintenance_page(paths: &Paths, app: &str, to: &str) -> Result<()> {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"refresh\" content=\"30\">\n<title>{app} — down for maintenance</title>\n\
         </head>\n<body>\n<h1>{app} is being upgraded</h1>\n\
         <p>{app} is moving to version {to}. It will be back in a few minutes; this page \
         reloads by itself.</p>\n</body>\n</html>\n",
        app = esc(app),
        to = esc(to)
    );
    berth_host::fsutil::ensure_dir(&paths.run, 0o755)?;
    berth_host::fsutil::write_atomic(&paths.maintenance_page(), page.as_bytes(), 0o644, None)?;
    Ok(())
}

/// Take the maintenance page down (nothing to do when it is not up).
pub fn remove_maintenance_page(paths: &Paths) -> berth_lifecycle::Result<()> {
    let page = paths.maintenance_page();
    match std::fs::remove_file(&page) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(berth_lifecycle::LifecycleError::io(
            "remove the maintenance page",
            &page,
        )(e)),
    }
}

/// Remove old release directories beyond `upgrade.keep_releases` (the current one
/// counts; the newest others are kept).
fn prune_releases(
    inst: &Instance,
    current: &str,
    progress: &dyn berth_lifecycle::Progress,
) -> Result<()> {
    // The site's `[upgrade]` settings, typed, with the built-in default behind them.
    let policy = berth_render::upgrade_policy(&inst.config, &inst.facts)
        .map_err(berth_lifecycle::LifecycleError::from)?;
    let keep = usize::try_from(policy.keep_releases).unwrap_or(usize::MAX);
    let releases = inst.paths.releases();
    let list = berth_lifecycle::release::list(&releases, current)?;
    for version in to_prune(&list, keep) {
        progress.note(&format!(
            "Removing release {version} (upgrade.keep_releases = {keep})"
        ));
        berth_host::beneath::remove_tree_at(&releases.join(version))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use berth_lifecycle::release::ReleaseInfo;

    fn release(version: &str, current: bool) -> ReleaseInfo {
        ReleaseInfo {
            version: version.to_owned(),
            installed_unix: 0,
            bytes: 0,
            current,
        }
    }

    /// The current release always stays and counts; the oldest others go first.
    #[test]
    fn releases_beyond_keep_are_pruned_oldest_first() {
        let list = [
            release("1.0.0", false),
            release("1.1.0", false),
            release("1.2.0", true),
            release("1.3.0", false),
        ];
        assert_eq!(super::to_prune(&list, 1), ["1.0.0", "1.1.0", "1.3.0"]);
        assert_eq!(super::to_prune(&list, 2), ["1.0.0", "1.1.0"]);
        assert_eq!(super::to_prune(&list, 4), Vec::<&str>::new());
        assert_eq!(super::to_prune(&list, 0), ["1.0.0", "1.1.0", "1.3.0"]);
    }

    /// The page names the app and version, escaped for HTML.
    #[test]
    fn the_maintenance_page_escapes_what_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let paths = berth_render::Paths::unversioned(dir.path());
        super::write_maintenance_page(&paths, "a<b>&\"c", "2.0~rc1").unwrap();
        let page = std::fs::read_to_string(paths.maintenance_page()).unwrap();
        assert!(
            page.contains("a&lt;b&gt;&amp;&quot;c is being upgraded"),
            "{page}"
        );
        assert!(page.contains("version 2.0~rc1"), "{page}");
        assert!(!page.contains("<b>"));
        super::remove_maintenance_page(&paths).unwrap();
        super::remove_maintenance_page(&paths).unwrap();
        assert!(!paths.maintenance_page().exists());
    }
}
