//! `berth fleet upgrade` on the admin's machine; `fleet node-upgrade` and
//! `fleet node-balancer`, what it runs on the nodes.

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use berth_fleet::rolling::{Event, Upgrade};
use berth_lifecycle::{Locate, Progress as _, instance};
use berth_model::{LoadedFleet, LoadedManifest, terminal_safe};

use super::fleet::{
    Staged, checked_bundle_name, every_node_ready, fleet_secrets, load, open_bundle, print_tail,
    put_site_and_secrets, received_dir, refuse_hook_secrets, stage,
};
use crate::cli::{BalancerState, FleetArgs, NodeUpgradeStep};
use crate::output::Terminal;

/// Where the new version comes from.
pub enum To {
    /// A manifest directory: each app node builds the release.
    Dir(PathBuf),
    /// A release bundle and the vendor's key: its built components are sent.
    Bundle(PathBuf, String),
}

/// `berth fleet upgrade --to DIR | --bundle B --public-key K`.
pub fn upgrade(loc: &Locate, args: &FleetArgs, to: &To, quiet: bool) -> Result<ExitCode> {
    let started = Instant::now();
    let (old, fleet) = load(loc, args)?;
    let (new, bundle) = match to {
        To::Dir(dir) => {
            let new = LoadedManifest::load(dir)?;
            berth_model::validate(&new)?;
            (new, None)
        }
        To::Bundle(path, key) => {
            let (new, bundle) = open_bundle(path, key)?;
            (new, Some(bundle))
        }
    };
    // The fleet file must suit the new version too (a role it dropped or renamed).
    LoadedFleet::load(&args.fleet, &new)?;
    refuse_hook_secrets(&new)?;
    if !every_node_ready(&fleet) {
        return Ok(ExitCode::FAILURE);
    }
    let app = old.manifest.app.name.clone();
    let done = already_upgraded(&fleet, &old, &new)?;
    if done.len() == fleet.fleet.nodes.len() {
        println!(
            "Every node of fleet `{}` runs {app} {} already.",
            fleet.fleet.fleet.name, new.manifest.app.version
        );
        return Ok(ExitCode::SUCCESS);
    }
    let plan = berth_fleet::upgrade::plan(&fleet, &old.manifest, &new, &done)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let talk = !quiet && !args.json;
    if talk {
        eprintln!(
            "Upgrading fleet `{}` from {app} {} to {} ({} hop){}",
            fleet.fleet.fleet.name,
            plan.from,
            plan.to,
            if plan.online { "online" } else { "offline" },
            if done.is_empty() {
                String::new()
            } else {
                format!("; {} run(s) {} already", plan.done.join(", "), plan.to)
            }
        );
    }
    let secrets = fleet_secrets(&fleet, &new)?;
    let logs = fleet.dir.join("fleet-logs");
    std::fs::create_dir_all(&logs)
        .with_context(|| format!("Failed to create `{}`", logs.display()))?;
    let up = Upgrade {
        fleet: &fleet,
        old: &old,
        new: &new,
        secrets: &secrets,
        bundle: bundle.as_ref(),
        logs: &logs,
    };
    let outcome = berth_fleet::rolling::carry_out(&up, &plan, &mut |e| match e {
        Event::Begin(what, nodes) if talk => eprintln!("{what}: {}", nodes.join(", ")),
        Event::End(done, text) if talk => {
            if done.result == "ok" {
                eprintln!("  {}: {} in {:.1} s", done.node, done.action, done.seconds);
            } else {
                eprintln!(
                    "  {}: {} FAILED after {:.1} s; the end of its output ({}):",
                    done.node,
                    done.action,
                    done.seconds,
                    done.log.as_deref().unwrap_or("-")
                );
                print_tail(text);
            }
        }
        _ => {}
    });
    print_outcome(
        &fleet,
        &plan,
        &outcome,
        started.elapsed().as_secs_f64(),
        args.json,
    )?;
    Ok(if outcome.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The nodes that run `new` already; every other must run `old`, or nothing changes.
fn already_upgraded(
    fleet: &LoadedFleet,
    old: &LoadedManifest,
    new: &LoadedManifest,
) -> Result<BTreeSet<String>> {
    let app = &old.manifest.app.name;
    let digest =
        |m: &LoadedManifest| berth_fleet::node::digest_files(&berth_fleet::node::manifest_files(m));
    let (old_digest, new_digest) = (digest(old), digest(new));
    let mut done = BTreeSet::new();
    let mut strays = Vec::new();
    for (node, d) in berth_fleet::up::digests(fleet, app) {
        match d {
            Some(d) if d.manifest == new_digest => {
                done.insert(node);
            }
            Some(d) if d.manifest == old_digest => {}
            _ => strays.push(node),
        }
    }
    if !strays.is_empty() {
        anyhow::bail!(
            "{} run(s) neither the manifest given with `--manifest` ({} {}) nor the one of `--to`; nothing was changed on any node\nhint: bring every node to the fleet's manifest first (`berth fleet reconfigure`), then upgrade",
            strays.join(", "),
            app,
            old.manifest.app.version
        );
    }
    Ok(done)
}

/// The summary of a fleet upgrade (or its JSON).
fn print_outcome(
    fleet: &LoadedFleet,
    plan: &berth_fleet::upgrade::Plan,
    outcome: &berth_fleet::rolling::Outcome,
    seconds: f64,
    json: bool,
) -> Result<()> {
    let app = &plan.app;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "fleet": fleet.fleet.fleet.name,
                "ok": outcome.ok,
                "from": plan.from,
                "to": plan.to,
                "online": plan.online,
                "seconds": seconds,
                "backup": outcome.backup.as_ref().map(|(node, archive)| serde_json::json!({"node": node, "archive": archive})),
                "upgraded": outcome.upgraded,
                "rolled_back": outcome.rolled_back,
                "plan": plan.actions,
                "steps": outcome.steps,
            }))?
        );
    } else if outcome.ok {
        println!(
            "Fleet `{}`: {app} {} on every node, in {seconds:.1} s{}",
            fleet.fleet.fleet.name,
            plan.to,
            outcome
                .backup
                .as_ref()
                .map(|(n, a)| format!(" (backup before: {a} on {n})"))
                .unwrap_or_default()
        );
    } else {
        report_failure(fleet, plan, outcome);
    }
    Ok(())
}

/// What a failed fleet upgrade left, and what to do.
fn report_failure(
    fleet: &LoadedFleet,
    plan: &berth_fleet::upgrade::Plan,
    outcome: &berth_fleet::rolling::Outcome,
) {
    let old: Vec<&String> = fleet
        .fleet
        .nodes
        .keys()
        .filter(|n| !outcome.upgraded.contains(n))
        .collect();
    let backup = outcome
        .backup
        .as_ref()
        .map(|(n, a)| format!("; the backup made before is {a} on {n}"))
        .unwrap_or_default();
    if outcome.upgraded.is_empty() {
        eprintln!(
            "\nerror: the upgrade to {} failed{}; every node runs {} {}{backup}",
            plan.to,
            if outcome.rolled_back {
                " and was rolled back"
            } else {
                ""
            },
            plan.app,
            plan.from
        );
    } else {
        eprintln!(
            "\nerror: the upgrade to {} stopped half way: {} run(s) {}, {} run(s) {}{backup}",
            plan.to,
            outcome.upgraded.join(", "),
            plan.to,
            old.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            plan.from
        );
        eprintln!(
            "hint: fix the cause (the failed node's log above), then run `berth fleet upgrade` again: it goes on with the nodes that still run {}",
            plan.from
        );
    }
}

/// `berth fleet node-upgrade STEP`, on a node.
pub fn node_upgrade(
    loc: &Locate,
    step: NodeUpgradeStep,
    hold_post_deploy: bool,
    quiet: bool,
) -> Result<ExitCode> {
    let staged = stage(loc, "node-upgrade")?;
    let progress = Terminal::new(quiet);
    let exe = std::env::current_exe().context("Failed to find the berth executable")?;
    let paths = staged.paths.clone();
    // The site config the new release will run with, beside its manifest: the old
    // release keeps its own until the switch.
    let staged_site = || -> Result<Locate> {
        let site = staged.dir.path().join(".site.toml");
        berth_host::fsutil::write_atomic(&site, staged.payload.site.as_bytes(), 0o600, None)?;
        Ok(Locate {
            config: Some(site),
            ..staged.locate(loc)
        })
    };
    match step {
        NodeUpgradeStep::Install => {
            let inst = instance::open(&staged_site()?)?;
            match staged.payload.bundle.clone() {
                None => {
                    berth_lifecycle::up::prepare_release(&inst, None, &progress)?;
                }
                Some(bundle) => install_from_bundle(&staged, &inst, &bundle, &progress)?,
            }
        }
        NodeUpgradeStep::Maintenance => {
            let from = instance::open(&installed(loc, &paths))?;
            let to = instance::open(&staged_site()?)?;
            let app = from.manifest.manifest.app.name.clone();
            berth_upgrade_apply::maintenance(&from, &to, &app, &progress)?;
        }
        NodeUpgradeStep::Switch => {
            let from = instance::open(&installed(loc, &paths))?;
            // The manifest the node runs, kept: a failed `up` puts files and services
            // back, and this puts the manifest back, so the node runs the old
            // version whole and a `fleet upgrade` run again switches it.
            let kept = tempfile::Builder::new()
                .prefix("berth-fleet-old-")
                .tempdir()
                .context("Failed to make a private directory for the manifest")?;
            // As stored (an instance's own manifest is narrowed to the node's roles).
            let stored = paths.manifest_dir();
            let whole = LoadedManifest::load(&stored)?;
            berth_upgrade_apply::copy_manifest(&stored, &whole, kept.path())?;
            let from_loc = Locate {
                manifest: Some(kept.path().to_path_buf()),
                ..installed(loc, &paths)
            };
            let from_version = from.manifest.manifest.app.version.clone();
            put_site_and_secrets(&staged)?;
            let l = staged.locate(loc);
            let inst = instance::open(&l)?;
            let held = if hold_post_deploy {
                berth_fleet::upgrade::post_deploy_hooks(&inst.manifest.manifest)
            } else {
                BTreeSet::new()
            };
            let detail = format!(
                "{} {from_version} → {} (fleet)",
                inst.manifest.manifest.app.name, inst.manifest.manifest.app.version
            );
            let run = berth_lifecycle::Run::begin_existing(&inst, "upgrade", &detail, &progress)?;
            let result = berth_lifecycle::up::up_holding(
                &run,
                &l,
                &exe,
                &|h| held.contains(&h.name),
                &mut || berth_upgrade_apply::remove_maintenance_page(&paths),
            );
            if let Err(e) = run.finish(result, |r| r.outcome.recorded()) {
                let back = instance::open(&from_loc)
                    .and_then(|i| berth_lifecycle::release::store_manifest(&i, &from_loc));
                if let Err(b) = back {
                    progress.note(&format!(
                        "The manifest of {from_version} could not be put back: {}",
                        berth_lifecycle::run::error_text(&b)
                    ));
                }
                return Err(e.into());
            }
        }
        NodeUpgradeStep::PostDeploy => {
            put_site_and_secrets(&staged)?;
            return super::up::up(&staged.locate(loc), quiet);
        }
        NodeUpgradeStep::Back => {
            put_site_and_secrets(&staged)?;
            berth_upgrade_apply::remove_maintenance_page(&paths)?;
            return super::up::up(&staged.locate(loc), quiet);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The new release installed from the bundle `fleet node-receive` stored: its
/// signature and every byte checked as it is unpacked into `tmp/release-<version>/`,
/// its manifest the one the fleet sent, then its built components put in place.
/// The unpacked copy and the received bundle go afterwards, whatever happened.
fn install_from_bundle(
    staged: &Staged,
    inst: &instance::Instance,
    bundle: &berth_fleet::node::BundleRef,
    progress: &Terminal,
) -> Result<()> {
    let paths = &staged.paths;
    let received = received_dir(paths).join(checked_bundle_name(&bundle.file)?);
    let version = &inst.manifest.manifest.app.version;
    let top = berth_host::beneath::SafeDir::open_trusted(&paths.prefix)?;
    let rel = paths.beneath(&paths.release_staging(version)).to_owned();
    let result = (|| -> Result<()> {
        let trusted = [super::release::public_key(&bundle.public_key)?];
        let (extracted, _) = super::up::unpack_bundle(&top, paths, version, &received, &trusted)?;
        staged.carried_by(&extracted.manifest_dir, &bundle.file)?;
        berth_lifecycle::up::prepare_release(inst, Some(&extracted.payload_dir), progress)?;
        Ok(())
    })();
    let _ = top.remove_tree(&rel);
    let _ = std::fs::remove_file(&received);
    result
}

/// The instance as it is set up: its stored manifest and site config.
fn installed(loc: &Locate, paths: &berth_render::Paths) -> Locate {
    Locate {
        prefix: Some(paths.prefix.clone()),
        manifest: Some(paths.manifest_dir()),
        config: None,
        ..loc.clone()
    }
}

/// The backend of the load balancer's config that holds the web nodes.
const WEB_BACKEND: &str = "web";
/// How long a server may take to finish its requests, or to pass HAProxy's checks.
const BALANCER_WAIT: Duration = Duration::from_mins(1);

/// `berth fleet node-balancer --server NAME --state maint|ready`, on a load-balancer
/// node: through HAProxy's admin socket (`data/berth-haproxy/admin.sock`, root's).
pub fn node_balancer(loc: &Locate, server: &str, state: BalancerState) -> Result<ExitCode> {
    // The name goes into HAProxy's command line: a node name, nothing else.
    if server.is_empty()
        || server.len() > 48
        || !server
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        anyhow::bail!("`{}` is not a node name", terminal_safe(server));
    }
    let Some(prefix) = loc.prefix.clone() else {
        anyhow::bail!("`fleet node-balancer` needs `--prefix`");
    };
    let paths = berth_render::Paths::unversioned(&prefix);
    let admin = Admin::open(&paths)?;
    let word = match state {
        BalancerState::Maint => "maint",
        BalancerState::Ready => "ready",
    };
    let answer = admin.ask(&format!("set server {WEB_BACKEND}/{server} state {word}"))?;
    if !answer.trim().is_empty() {
        anyhow::bail!(
            "HAProxy refused to set `{server}` to {word}: {}",
            terminal_safe(answer.trim())
        );
    }
    let started = Instant::now();
    loop {
        let (status, sessions) = admin.server(server)?;
        let settled = match state {
            BalancerState::Maint => sessions == 0,
            BalancerState::Ready => status == "UP",
        };
        if settled {
            println!("{server}: {status}, {sessions} request(s) in flight");
            return Ok(ExitCode::SUCCESS);
        }
        if started.elapsed() > BALANCER_WAIT {
            match state {
                // Its requests are cut when its services restart; say so and go on.
                BalancerState::Maint => {
                    eprintln!(
                        "warning: {server} still has {sessions} request(s) after {} s; going on",
                        BALANCER_WAIT.as_secs()
                    );
                    return Ok(ExitCode::SUCCESS);
                }
                BalancerState::Ready => anyhow::bail!(
                    "HAProxy does not see `{server}` up after {} s (it says {status}): its health path does not answer",
                    BALANCER_WAIT.as_secs()
                ),
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// HAProxy's admin socket, reached through its directory opened without following
/// symlinks (the directory is the HAProxy user's).
struct Admin {
    dir: berth_host::beneath::SafeDir,
}

impl Admin {
    fn open(paths: &berth_render::Paths) -> Result<Admin> {
        let prefix = berth_host::beneath::SafeDir::open_trusted(&paths.prefix)?;
        let rel = paths
            .data
            .strip_prefix(&paths.prefix)
            .unwrap_or(&paths.data)
            .join("berth-haproxy");
        let dir = prefix.open_dir(&rel)?;
        let socket = Path::new("admin.sock");
        match dir.stat(socket)? {
            Some(st) if st.is_socket() => Ok(Admin { dir }),
            _ => anyhow::bail!(
                "`{}` is not HAProxy's admin socket: is this node a load balancer of the fleet, and is HAProxy running?",
                paths.data.join("berth-haproxy/admin.sock").display()
            ),
        }
    }

    /// One command, its whole answer.
    fn ask(&self, command: &str) -> Result<String> {
        let path = self.dir.fd_path().join("admin.sock");
        let mut s = std::os::unix::net::UnixStream::connect(&path)
            .with_context(|| "Failed to reach HAProxy's admin socket".to_owned())?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(format!("{command}\n").as_bytes())?;
        let mut out = String::new();
        s.take(4 << 20).read_to_string(&mut out)?;
        Ok(out)
    }

    /// The server's status (`UP`, `DOWN`, `MAINT`…) and requests in flight, from
    /// `show stat`.
    fn server(&self, server: &str) -> Result<(String, u64)> {
        let stat = self.ask("show stat")?;
        let mut lines = stat.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let col = |name: &str| header.iter().position(|h| *h == name);
        let (Some(px), Some(sv), Some(scur), Some(status)) =
            (col("pxname"), col("svname"), col("scur"), col("status"))
        else {
            anyhow::bail!("HAProxy's `show stat` has no pxname, svname, scur and status columns");
        };
        for line in lines {
            let f: Vec<&str> = line.split(',').collect();
            if f.get(px) == Some(&WEB_BACKEND) && f.get(sv) == Some(&server) {
                let n = f.get(scur).and_then(|v| v.parse().ok()).unwrap_or(0);
                return Ok((f.get(status).unwrap_or(&"").to_string(), n));
            }
        }
        anyhow::bail!("HAProxy has no server `{server}` in backend `{WEB_BACKEND}`")
    }
}
