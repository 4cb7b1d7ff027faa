//! `berth fleet`: check, status, up and reconfigure on the admin's machine; `node-up` and
//! `node-digest`, what they run on each node.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use berth_fleet::{NodeCheck, NodeStatus};
use berth_lifecycle::Locate;
use berth_model::{LoadedFleet, LoadedManifest, terminal_safe};

use crate::cli::FleetArgs;

/// This berth's version: every node must run the same.
pub(super) const VERSION: &str = env!("CARGO_PKG_VERSION");

pub(super) fn load(loc: &Locate, args: &FleetArgs) -> Result<(LoadedManifest, LoadedFleet)> {
    let manifest = berth_lifecycle::instance::manifest(loc)?;
    let fleet = LoadedFleet::load(&args.fleet, &manifest)?;
    Ok((manifest, fleet))
}

/// Pads each column to its widest cell.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub fn check(loc: &Locate, args: &FleetArgs) -> Result<ExitCode> {
    let (manifest, fleet) = load(loc, args)?;
    let checks = berth_fleet::check(&fleet, VERSION);
    let bad: Vec<&NodeCheck> = checks.iter().filter(|c| c.problem.is_some()).collect();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "fleet": fleet.fleet.fleet.name,
                "ready": bad.is_empty(),
                "nodes": checks,
            }))?
        );
    } else {
        let app = &manifest.manifest.app;
        println!(
            "Fleet `{}`: {} nodes for {} {} (berth {VERSION} here)\n",
            fleet.fleet.fleet.name,
            checks.len(),
            app.name,
            app.version
        );
        let mut rows = vec![
            ["NODE", "ADDRESS", "ROLES", "SSH", "BERTH"]
                .map(String::from)
                .to_vec(),
        ];
        for c in &checks {
            rows.push(vec![
                c.node.clone(),
                c.address.clone(),
                c.roles.join(", "),
                match (&c.ssh_ms, &c.problem) {
                    (Some(ms), _) => format!("ok {ms} ms"),
                    (None, Some(p)) => p.short(),
                    (None, None) => "-".to_owned(),
                },
                match (&c.problem, &c.berth) {
                    (Some(p), _) if !matches!(p, berth_fleet::Problem::Remote { .. }) => p.short(),
                    (None, Some(v)) => v.clone(),
                    _ => "-".to_owned(),
                },
            ]);
        }
        print!("{}", terminal_safe(&table(&rows)));
    }
    if bad.is_empty() {
        if !args.json {
            println!("\nEvery node is ready.");
        }
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "\nerror: {} of {} nodes are not ready; nothing was changed on any node",
        bad.len(),
        checks.len()
    );
    for c in bad {
        if let Some(p) = &c.problem {
            let (message, hint) = p.explain();
            eprintln!("  {}: {}", c.node, terminal_safe(&message));
            eprintln!("    hint: {}", terminal_safe(&hint));
        }
    }
    Ok(ExitCode::FAILURE)
}

pub fn status(loc: &Locate, args: &FleetArgs) -> Result<ExitCode> {
    let (manifest, fleet) = load(loc, args)?;
    let nodes = berth_fleet::status(&fleet, &manifest.manifest.app.name);
    let healthy = nodes.iter().all(NodeStatus::healthy);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "fleet": fleet.fleet.fleet.name,
                "healthy": healthy,
                "nodes": nodes,
            }))?
        );
        return Ok(if healthy {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    println!(
        "Fleet `{}`: {} nodes\n",
        fleet.fleet.fleet.name,
        nodes.len()
    );
    let mut rows = vec![
        ["NODE", "ADDRESS", "ROLES", "SERVICE", "STATE", "MEMORY"]
            .map(String::from)
            .to_vec(),
    ];
    for n in &nodes {
        let head = |rows: &mut Vec<Vec<String>>, service: String, state: String, memory: String| {
            rows.push(vec![
                n.node.clone(),
                n.address.clone(),
                n.roles.join(", "),
                service,
                state,
                memory,
            ]);
        };
        if let Some(p) = &n.problem {
            head(&mut rows, "-".into(), p.short(), "-".into());
        } else if !n.set_up {
            head(&mut rows, "-".into(), "not set up".into(), "-".into());
        } else if n.services.is_empty() {
            let state = if n.supervisor_running {
                "no services"
            } else {
                "supervisor down"
            };
            head(&mut rows, "-".into(), state.into(), "-".into());
        } else {
            for (i, s) in n.services.iter().enumerate() {
                let memory = s
                    .pss_bytes
                    .map_or_else(|| "-".to_owned(), |b| format!("{} MiB", b >> 20));
                let state = format!("{:?}", s.state).to_lowercase();
                if i == 0 {
                    head(&mut rows, s.name.clone(), state, memory);
                } else {
                    rows.push(vec![
                        String::new(),
                        String::new(),
                        String::new(),
                        s.name.clone(),
                        state,
                        memory,
                    ]);
                }
            }
        }
    }
    print!("{}", terminal_safe(&table(&rows)));
    for n in &nodes {
        if let Some(p) = &n.problem {
            let (message, hint) = p.explain();
            eprintln!("{}: {}", n.node, terminal_safe(&message));
            eprintln!("  hint: {}", terminal_safe(&hint));
        }
    }
    let ready = nodes.iter().filter(|n| n.healthy()).count();
    println!("\n{ready} of {} nodes healthy.", nodes.len());
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The manifest a bundle carries (checked against `key`; read from a private
/// directory removed afterwards), the fleet file loaded against it, and the bundle
/// to send.
fn from_bundle(
    loc: &Locate,
    args: &FleetArgs,
    path: &std::path::Path,
    key: &str,
) -> Result<(LoadedManifest, LoadedFleet, berth_fleet::up::Bundle)> {
    if loc.manifest.is_some() {
        anyhow::bail!(
            "`fleet up --bundle` installs the manifest the bundle carries: give `--manifest` or `--bundle`, not both"
        );
    }
    let (manifest, bundle) = open_bundle(path, key)?;
    let fleet = LoadedFleet::load(&args.fleet, &manifest)?;
    Ok((manifest, fleet, bundle))
}

/// The manifest the bundle at `path` carries, its signature checked against `key`
/// (read from a private directory removed afterwards), and the bundle to send.
pub(super) fn open_bundle(
    path: &std::path::Path,
    key: &str,
) -> Result<(LoadedManifest, berth_fleet::up::Bundle)> {
    let trusted = super::release::public_key(key)?;
    let unpacked = tempfile::Builder::new()
        .prefix("berth-fleet-bundle-")
        .tempdir()
        .context("Failed to make a private directory for the bundle's manifest")?;
    let (info, dir) =
        berth_release::extract_manifest(path, std::slice::from_ref(&trusted), unpacked.path())?;
    let manifest = LoadedManifest::load(&dir)?;
    berth_model::validate(&manifest)?;
    let bytes =
        std::fs::read(path).with_context(|| format!("Failed to read `{}`", path.display()))?;
    let bundle = berth_fleet::up::Bundle {
        file: berth_release::bundle_name(&info.app, &info.version),
        bytes,
        public_key: trusted.to_string(),
    };
    Ok((manifest, bundle))
}

/// `berth fleet up` (from a release bundle: `bundle` and its key) and `berth fleet
/// reconfigure` (`only_changed`).
pub fn up(
    loc: &Locate,
    args: &FleetArgs,
    only_changed: bool,
    quiet: bool,
    bundle: Option<(&std::path::Path, &str)>,
) -> Result<ExitCode> {
    use berth_fleet::up::Event;
    let started = std::time::Instant::now();
    // A bundle's manifest, checked against the key before anything is sent.
    let (manifest, fleet, bundle) = match bundle {
        None => {
            let (m, f) = load(loc, args)?;
            (m, f, None)
        }
        Some((path, key)) => {
            let (m, f, b) = from_bundle(loc, args, path, key)?;
            (m, f, Some(b))
        }
    };
    refuse_hook_secrets(&manifest)?;
    if !every_node_ready(&fleet) {
        return Ok(ExitCode::FAILURE);
    }
    let secrets = fleet_secrets(&fleet, &manifest)?;
    let logs = fleet.dir.join("fleet-logs");
    std::fs::create_dir_all(&logs)
        .with_context(|| format!("Failed to create `{}`", logs.display()))?;
    let talk = !quiet && !args.json;
    let runs = berth_fleet::up::bring_up(
        &fleet,
        &manifest,
        &secrets,
        only_changed,
        bundle.as_ref(),
        &logs,
        &mut |e| match e {
            Event::Wave(i, names) if talk => eprintln!("wave {i}: {}", names.join(", ")),
            Event::Done(run, text) if talk => {
                if run.result == "up" {
                    eprintln!("  {}: up in {:.1} s", run.node, run.seconds);
                } else {
                    eprintln!(
                        "  {}: FAILED after {:.1} s; the end of its output ({}):",
                        run.node,
                        run.seconds,
                        run.log.as_deref().unwrap_or("-")
                    );
                    print_tail(text);
                }
            }
            _ => {}
        },
    );
    let failed = runs.iter().any(|r| r.result == "failed");
    let total = started.elapsed().as_secs_f64();
    let sum: f64 = runs.iter().map(|r| r.seconds).sum();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "fleet": fleet.fleet.fleet.name,
                "ok": !failed,
                "seconds": total,
                "node_seconds": sum,
                "nodes": runs,
            }))?
        );
    } else if failed {
        eprintln!(
            "\nerror: the fleet is not up: a node failed (the nodes of later waves were not touched)"
        );
    } else {
        let reached = runs.iter().filter(|r| r.result == "up").count();
        let unchanged = runs.len() - reached;
        println!(
            "Fleet `{}`: {reached} node(s) brought up in {total:.1} s ({sum:.1} s of node time){}",
            fleet.fleet.fleet.name,
            if only_changed {
                format!("; {unchanged} unchanged")
            } else {
                String::new()
            }
        );
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// A secret made by a hook lives on the node that ran it; a fleet shares its secrets.
pub(super) fn refuse_hook_secrets(manifest: &LoadedManifest) -> Result<()> {
    if let Some((name, _)) = manifest
        .manifest
        .secrets
        .iter()
        .find(|(_, s)| s.from_hook.is_some())
    {
        anyhow::bail!(
            "secret `{name}` is made by a hook on the node that runs it; a fleet shares its secrets, and this version of berth cannot yet hand one made on a node to the others"
        );
    }
    Ok(())
}

/// `fleet check` of every node; false (each problem said) when one is not ready:
/// nothing changes anywhere then.
pub(super) fn every_node_ready(fleet: &LoadedFleet) -> bool {
    let checks = berth_fleet::check(fleet, VERSION);
    if checks.iter().all(|c| c.problem.is_none()) {
        return true;
    }
    eprintln!("Not every node is ready; nothing was changed on any node:");
    for c in &checks {
        if let Some(p) = &c.problem {
            let (message, hint) = p.explain();
            eprintln!("  {}: {}", c.node, terminal_safe(&message));
            eprintln!("    hint: {}", terminal_safe(&hint));
        }
    }
    false
}

/// The last lines of a node's output, indented.
pub(super) fn print_tail(text: &str) {
    let lines: Vec<&str> = text.lines().collect();
    for line in &lines[lines.len().saturating_sub(15)..] {
        eprintln!("    {}", terminal_safe(line));
    }
}

/// The fleet's secrets, generated once into `secrets/` beside the fleet file (mode
/// 0700, each file 0600) and the same on every node.
pub(super) fn fleet_secrets(
    fleet: &LoadedFleet,
    manifest: &LoadedManifest,
) -> Result<std::collections::BTreeMap<String, String>> {
    let facts = berth_host::facts::probe();
    // With the secrets of berth's own engines (Patroni's users).
    let mut manifest = manifest.clone();
    manifest
        .manifest
        .secrets
        .extend(berth_topology::engines::secrets(&manifest.manifest));
    let specs: Vec<berth_render::SecretSpec> =
        berth_render::secret_specs(&manifest, &facts, &berth_render::UserNames::shared())
            .into_iter()
            .map(|mut s| {
                // Owned by whoever runs `fleet up`: the nodes give each its owner.
                s.owner = None;
                s
            })
            .collect();
    let store = berth_host::secrets::SecretStore::open(fleet.dir.join("secrets"))?;
    Ok(store.ensure(&specs)?)
}

/// The most `fleet node-up` reads from its standard input.
const MAX_PAYLOAD: u64 = 32 << 20;

/// What a node was sent, checked, with the manifest staged in a private directory.
pub(super) struct Staged {
    /// The manifest's files (removed when this is dropped).
    pub dir: tempfile::TempDir,
    /// The instance's paths.
    pub paths: berth_render::Paths,
    /// The payload.
    pub payload: berth_fleet::node::NodePayload,
}

impl Staged {
    /// Where the instance is, with the manifest staged.
    pub fn locate(&self, loc: &Locate) -> Locate {
        Locate {
            prefix: Some(self.paths.prefix.clone()),
            manifest: Some(self.dir.path().to_path_buf()),
            config: None,
            ..loc.clone()
        }
    }

    /// Fails unless the manifest in `dir`, which the bundle `file` carries, is the one
    /// the fleet sent (and so every other node).
    pub fn carried_by(&self, dir: &std::path::Path, file: &str) -> Result<()> {
        let carried = berth_fleet::node::manifest_files(&LoadedManifest::load(dir)?);
        if berth_fleet::node::digest_files(&carried)
            != berth_fleet::node::digest_files(&self.payload.manifest)
        {
            anyhow::bail!(
                "the bundle `{file}` carries another manifest than the one the fleet sent; nothing was changed"
            );
        }
        Ok(())
    }
}

/// Reads what the fleet sends on standard input and stages its manifest: plain
/// relative file names only, a valid manifest, only secrets it (or berth's engines)
/// declares. Nothing of the instance changes.
pub(super) fn stage(loc: &Locate, command: &str) -> Result<Staged> {
    use std::io::Read as _;
    let Some(prefix) = loc.prefix.clone() else {
        anyhow::bail!("`fleet {command}` needs `--prefix`");
    };
    let mut buf = Vec::new();
    std::io::stdin()
        .take(MAX_PAYLOAD + 1)
        .read_to_end(&mut buf)
        .context("Failed to read the fleet's payload")?;
    if buf.len() as u64 > MAX_PAYLOAD {
        anyhow::bail!(
            "the fleet's payload is larger than {} MiB",
            MAX_PAYLOAD >> 20
        );
    }
    // serde's message could quote the input, which holds secrets: position only.
    let payload: berth_fleet::node::NodePayload = serde_json::from_slice(&buf).map_err(|e| {
        anyhow::anyhow!(
            "the fleet's payload is not valid (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    drop(buf);
    let staging = tempfile::Builder::new()
        .prefix("berth-fleet-")
        .tempdir()
        .context("Failed to make a private directory for the manifest")?;
    for (name, text) in &payload.manifest {
        let plain = !name.is_empty()
            && !name.starts_with('/')
            && name
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".." && !c.starts_with('.'))
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
        if !plain {
            anyhow::bail!(
                "the fleet's manifest has a file named `{}`, which is not a plain relative path",
                terminal_safe(name)
            );
        }
        let path = staging.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        berth_host::fsutil::write_new(&path, text.as_bytes(), 0o600, None)?;
    }
    let manifest = LoadedManifest::load(staging.path())?;
    berth_model::validate(&manifest)?;
    let engines = berth_topology::engines::secrets(&manifest.manifest);
    for name in payload.secrets.keys() {
        if !manifest.manifest.secrets.contains_key(name) && !engines.contains_key(name) {
            anyhow::bail!(
                "the fleet sent secret `{}`, which the manifest does not declare",
                terminal_safe(name)
            );
        }
    }
    let paths =
        berth_render::Paths::unversioned(&berth_lifecycle::instance::checked_prefix(&prefix)?);
    Ok(Staged {
        dir: staging,
        paths,
        payload,
    })
}

/// The node's site config and the fleet's secrets put in place: a secret the node
/// has already must be the fleet's, or nothing is replaced.
pub(super) fn put_site_and_secrets(s: &Staged) -> Result<()> {
    let paths = &s.paths;
    berth_host::fsutil::ensure_dir(&paths.prefix, 0o755)?;
    let store = berth_host::secrets::SecretStore::open(&paths.secrets)?;
    for (name, value) in &s.payload.secrets {
        if let Some(v) = store.get(name)?
            && &v != value
        {
            anyhow::bail!(
                "secret `{name}` on this node differs from the fleet's: this node was set up apart from the fleet; nothing was replaced (compare {} with the fleet's secrets/{name})",
                paths.secrets.join(name).display()
            );
        }
    }
    let site = paths.site_config();
    if std::fs::read_to_string(&site).ok().as_deref() != Some(s.payload.site.as_str()) {
        berth_host::fsutil::write_atomic(&site, s.payload.site.as_bytes(), 0o640, None)?;
    }
    for (name, value) in &s.payload.secrets {
        if store.get(name)?.is_none() {
            berth_host::fsutil::write_new(
                &paths.secrets.join(name),
                value.as_bytes(),
                0o600,
                None,
            )?;
        }
    }
    Ok(())
}

/// `berth fleet node-up`, on a node: the payload from standard input checked, the
/// manifest staged in a private directory, the site config and the fleet's secrets
/// put in place (a secret the node has already must be the fleet's), then `up`.
pub fn node_up(loc: &Locate, quiet: bool) -> Result<ExitCode> {
    let staged = stage(loc, "node-up")?;
    let Some(bundle) = staged.payload.bundle.clone() else {
        put_site_and_secrets(&staged)?;
        return super::up::up(&staged.locate(loc), quiet);
    };
    let received = received_dir(&staged.paths).join(checked_bundle_name(&bundle.file)?);
    let result = (|| -> Result<ExitCode> {
        let trusted = super::release::public_key(&bundle.public_key)?;
        let look = tempfile::Builder::new().prefix("berth-fleet-").tempdir()?;
        let (_, dir) = berth_release::extract_manifest(&received, &[trusted], look.path())?;
        staged.carried_by(&dir, &bundle.file)?;
        put_site_and_secrets(&staged)?;
        let at = Locate {
            prefix: Some(staged.paths.prefix.clone()),
            manifest: None,
            config: None,
            ..loc.clone()
        };
        // A fleet's database is Patroni's: the bundle's seed is not loaded into it.
        super::up::up_from_bundle_with(&at, &received, &bundle.public_key, quiet, false)
    })();
    let _ = std::fs::remove_file(&received);
    result
}

/// Where `fleet node-receive` keeps a bundle until `node-up` installs it: root's
/// alone, under the prefix's `tmp/`.
pub(super) fn received_dir(paths: &berth_render::Paths) -> std::path::PathBuf {
    paths.tmp().join("fleet")
}

/// A bundle's file name as `fleet up` sends it: `<app>-<version>.berth-release.tar.zst`,
/// one plain name.
pub(super) fn checked_bundle_name(name: &str) -> Result<&str> {
    let plain = name.ends_with(".berth-release.tar.zst")
        && !name.starts_with('.')
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+~".contains(c));
    if !plain {
        anyhow::bail!(
            "`{}` is not a release bundle's file name",
            terminal_safe(name)
        );
    }
    Ok(name)
}

/// The most `fleet node-receive` takes.
const MAX_BUNDLE: u64 = 16 << 30;

/// `berth fleet node-receive --name NAME`, on a node: the bundle on standard input
/// written to `tmp/fleet/NAME` under the prefix (a directory only root can enter; the
/// file is made new, never followed), for `node-up` to check and install.
pub fn node_receive(loc: &Locate, name: &str) -> Result<ExitCode> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let name = checked_bundle_name(name)?;
    let Some(prefix) = loc.prefix.clone() else {
        anyhow::bail!("`fleet node-receive` needs `--prefix`");
    };
    let paths =
        berth_render::Paths::unversioned(&berth_lifecycle::instance::checked_prefix(&prefix)?);
    berth_host::fsutil::ensure_dir(&paths.prefix, 0o755)?;
    let top = berth_host::beneath::SafeDir::open_trusted(&paths.prefix)?;
    super::up::ensure_tmp(&top, &paths)?;
    let rel = paths.beneath(&received_dir(&paths)).to_owned();
    let dir = top.create_dir_all(&rel, 0o700, None)?;
    let _ = std::fs::remove_file(dir.fd_path().join(name));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(dir.fd_path().join(name))
        .with_context(|| format!("Failed to create `{}`", rel.join(name).display()))?;
    let copied = std::io::copy(&mut std::io::stdin().take(MAX_BUNDLE + 1), &mut file)
        .context("Failed to receive the bundle")?;
    if copied > MAX_BUNDLE {
        let _ = std::fs::remove_file(dir.fd_path().join(name));
        anyhow::bail!("the bundle is larger than {} GiB", MAX_BUNDLE >> 30);
    }
    file.sync_all()?;
    Ok(ExitCode::SUCCESS)
}

/// `berth fleet node-digest`, on a node: what it runs, as digests (nothing set up:
/// empty ones).
pub fn node_digest(loc: &Locate) -> Result<ExitCode> {
    let Some(prefix) = loc.prefix.clone() else {
        anyhow::bail!("`fleet node-digest` needs `--prefix`");
    };
    let paths = berth_render::Paths::unversioned(&prefix);
    let site = std::fs::read_to_string(paths.site_config()).unwrap_or_default();
    let mut files = std::collections::BTreeMap::new();
    let dir = paths.manifest_dir();
    if dir.join("berth.toml").is_file() {
        let m = LoadedManifest::load(&dir)?;
        files = berth_fleet::node::manifest_files(&m);
    }
    let digest = berth_fleet::node::NodeDigest {
        manifest: berth_fleet::node::digest_files(&files),
        site: berth_fleet::node::digest_text(&site),
    };
    println!("{}", serde_json::to_string(&digest)?);
    Ok(ExitCode::SUCCESS)
}
