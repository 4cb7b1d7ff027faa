//! `fleet up` and `fleet reconfigure`: every node given the manifest, its own site
//! config and the fleet's secrets, and brought up by its own berth, wave by wave.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use berth_model::{LoadedFleet, LoadedManifest};
use berth_remote::Target;
use serde::Serialize;

use crate::node::{NodeDigest, NodePayload, manifest_files, site_config, waves};
use crate::{PARALLEL, prefix, targets};

/// What happened on one node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeRun {
    /// The node.
    pub node: String,
    /// Its wave, from 1.
    pub wave: usize,
    /// `up`, `unchanged` (a reconfigure that did not reach it), `failed`, or
    /// `not reached` (a node of an earlier wave failed).
    pub result: &'static str,
    /// How long its `up` took.
    pub seconds: f64,
    /// Where its output is.
    pub log: Option<String>,
}

/// What the caller hears while nodes come up.
pub enum Event<'a> {
    /// A wave starts with these nodes.
    Wave(usize, &'a [String]),
    /// A node finished: its run and its whole output.
    Done(&'a NodeRun, &'a str),
}

/// What every node runs, as digests (`berth fleet node-digest`); `None` for a node
/// that cannot say.
pub fn digests(f: &LoadedFleet, app: &str) -> BTreeMap<String, Option<NodeDigest>> {
    let berth = &f.fleet.fleet.berth;
    let all = targets(f);
    let now = berth_remote::each(&all, PARALLEL, |t| {
        t.run(
            &[
                berth,
                "--prefix",
                &prefix(f, app, &t.name),
                "fleet",
                "node-digest",
            ],
            None,
        )
        .ok()
        .filter(|o| o.code == 0)
        .and_then(|o| serde_json::from_str::<NodeDigest>(&o.stdout).ok())
    });
    all.into_iter().map(|t| t.name).zip(now).collect()
}

/// The nodes whose manifest or site config differ from what they run now (a node
/// that cannot say counts as changed).
fn changed_nodes(
    f: &LoadedFleet,
    app: &str,
    payloads: &BTreeMap<String, NodePayload>,
) -> BTreeSet<String> {
    digests(f, app)
        .into_iter()
        .filter(|(n, d)| d.as_ref() != Some(&payloads[n].digest()))
        .map(|(n, _)| n)
        .collect()
}

/// A release bundle the nodes that run the app's own code install from.
pub struct Bundle {
    /// Its file name.
    pub file: String,
    /// Its bytes (sent to each of those nodes over SSH before its `up`).
    pub bytes: Vec<u8>,
    /// The vendor's public key it must be signed with (`ed25519:…`).
    pub public_key: String,
}

/// Brings the fleet up: every node (or, with `only_changed`, those whose manifest or
/// site config differ from what they run) in waves, independent nodes at once; the
/// first wave with a failed node ends it. Every node's output is kept in `logs`.
pub fn bring_up(
    f: &LoadedFleet,
    m: &LoadedManifest,
    secrets: &BTreeMap<String, String>,
    only_changed: bool,
    bundle: Option<&Bundle>,
    logs: &Path,
    on: &mut dyn FnMut(Event<'_>),
) -> Vec<NodeRun> {
    let app = &m.manifest.app.name;
    let files = manifest_files(m);
    let payloads: BTreeMap<String, NodePayload> = f
        .fleet
        .nodes
        .iter()
        .map(|(n, node)| {
            let p = NodePayload {
                manifest: files.clone(),
                site: site_config(f, n),
                secrets: secrets.clone(),
                // Only the nodes that run the app's own code need what it carries built.
                bundle: bundle
                    .filter(|_| crate::upgrade::runs_release(&m.manifest, &node.roles))
                    .map(|b| crate::node::BundleRef {
                        file: b.file.clone(),
                        public_key: b.public_key.clone(),
                    }),
            };
            (n.clone(), p)
        })
        .collect();
    let targets: BTreeMap<String, Target> = targets(f)
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect();
    let berth = f.fleet.fleet.berth.clone();
    let changed = if only_changed {
        changed_nodes(f, app, &payloads)
    } else {
        targets.keys().cloned().collect()
    };
    let mut runs = Vec::new();
    let mut failed = false;
    for (i, wave) in waves(f, &m.manifest).iter().enumerate() {
        let todo: Vec<Target> = wave
            .iter()
            .filter(|n| changed.contains(*n))
            .map(|n| targets[n].clone())
            .collect();
        for n in wave.iter().filter(|n| !changed.contains(*n)) {
            runs.push(NodeRun {
                node: n.clone(),
                wave: i + 1,
                result: "unchanged",
                seconds: 0.0,
                log: None,
            });
        }
        if failed {
            for t in &todo {
                runs.push(NodeRun {
                    node: t.name.clone(),
                    wave: i + 1,
                    result: "not reached",
                    seconds: 0.0,
                    log: None,
                });
            }
            continue;
        }
        if todo.is_empty() {
            continue;
        }
        let names: Vec<String> = todo.iter().map(|t| t.name.clone()).collect();
        on(Event::Wave(i + 1, &names));
        let results = berth_remote::each(&todo, PARALLEL, |t| {
            let payload = serde_json::to_vec(&payloads[&t.name]).unwrap_or_default();
            let started = Instant::now();
            let at = prefix(f, app, &t.name);
            if let (Some(b), Some(_)) = (bundle, &payloads[&t.name].bundle) {
                let argv = [&berth, "--prefix", &at, "fleet", "node-receive", "--name", &b.file];
                match t.run(&argv, Some(&b.bytes)) {
                    Ok(o) if o.code == 0 => {}
                    other => return (other, started.elapsed()),
                }
            }
            let argv = [&berth, "--prefix", &at, "--quiet", "fleet", "node-up"];
            let out = t.run(&argv, Some(&payload));
            (out, started.elapsed())
        });
        for (t, (out, took)) in todo.iter().zip(results) {
            let (ok, text) = match &out {
                Ok(o) => (o.code == 0, format!("{}{}", o.stdout, o.stderr)),
                Err(e) => (false, format!("{e}\nhint: {}\n", e.hint())),
            };
            let log = logs.join(format!("{}.log", t.name));
            let _ = std::fs::write(&log, &text);
            let run = NodeRun {
                node: t.name.clone(),
                wave: i + 1,
                result: if ok { "up" } else { "failed" },
                seconds: Duration::as_secs_f64(&took),
                log: Some(log.display().to_string()),
            };
            on(Event::Done(&run, &text));
            failed |= !ok;
            runs.push(run);
        }
    }
    runs
}
