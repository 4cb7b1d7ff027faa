//! `fleet upgrade`, carried out: each action of a [`Plan`] run on its nodes
//! over SSH by their own berth (`fleet node-upgrade`, `fleet node-balancer`,
//! `backup create`), one action after the other; the first that fails ends the run.
//!
//! What a failure leaves: on an online hop, every node already switched is put back
//! on the old release (`node-upgrade back` with the old manifest; an online hop's
//! migrations are safe for the old release), and every node taken out of the load
//! balancer is put back, so the fleet runs the old version throughout. On an offline
//! hop the same happens while no node has switched; once one has, the database may be
//! migrated, so nothing is undone: the run stops, says which nodes run which version
//! and names the backup made first, and `fleet upgrade` run again goes on from there
//! (nodes that run the new version already are left alone).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use berth_model::{LoadedFleet, LoadedManifest};
use berth_remote::Target;
use serde::Serialize;

use crate::node::{BundleRef, NodePayload, manifest_files, site_config};
use crate::up::Bundle;
use crate::upgrade::{Action, Plan};
use crate::{PARALLEL, prefix, targets};

/// The command run on a node, by its name.
type Argv<'a> = &'a (dyn Fn(&str) -> Vec<String> + Sync);
/// What a node is sent on its standard input, by its name.
type Input<'a> = Option<&'a (dyn Fn(&str) -> Cow<'a, [u8]> + Sync)>;

/// One action done (or not) on one node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Done {
    /// What: `backup`, `send` (a release bundle, before `install`), `install`,
    /// `maintenance`, `drain`, `switch`, `restore`, `post-deploy`, or `back` (put back
    /// on the old release after a failure).
    pub action: &'static str,
    /// The node.
    pub node: String,
    /// `ok` or `failed`.
    pub result: &'static str,
    /// How long it took there.
    pub seconds: f64,
    /// Where its output is.
    pub log: Option<String>,
}

/// What the whole run did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// Every action on every node, in order.
    pub steps: Vec<Done>,
    /// Whether every action succeeded.
    pub ok: bool,
    /// The pre-upgrade backup: node and archive name.
    pub backup: Option<(String, String)>,
    /// Nodes running the new version at the end.
    pub upgraded: Vec<String>,
    /// Whether the nodes switched before a failure were put back.
    pub rolled_back: bool,
}

/// What the caller hears as the run goes.
pub enum Event<'a> {
    /// An action begins on these nodes.
    Begin(&'static str, &'a [String]),
    /// An action ended on one node, with its whole output.
    End(&'a Done, &'a str),
}

/// Everything the run needs that does not change.
pub struct Upgrade<'a> {
    /// The fleet.
    pub fleet: &'a LoadedFleet,
    /// The manifest every node runs now.
    pub old: &'a LoadedManifest,
    /// The manifest of the version the fleet goes to.
    pub new: &'a LoadedManifest,
    /// The fleet's secrets (the new manifest's, which hold the old one's).
    pub secrets: &'a BTreeMap<String, String>,
    /// The new version's release bundle, when it comes in one: sent to the nodes
    /// that install the release, which build nothing.
    pub bundle: Option<&'a Bundle>,
    /// Where each node's output goes (`<node>.<action>.log`).
    pub logs: &'a Path,
}

struct Runner<'a, 'e> {
    up: &'a Upgrade<'a>,
    targets: BTreeMap<String, Target>,
    on: &'e mut dyn FnMut(Event<'_>),
    steps: Vec<Done>,
}

impl Runner<'_, '_> {
    fn payload(&self, node: &str, m: &LoadedManifest, bundle: Option<&Bundle>) -> Vec<u8> {
        let p = NodePayload {
            manifest: manifest_files(m),
            site: site_config(self.up.fleet, node),
            secrets: self.up.secrets.clone(),
            bundle: bundle.map(|b| BundleRef {
                file: b.file.clone(),
                public_key: b.public_key.clone(),
            }),
        };
        serde_json::to_vec(&p).unwrap_or_default()
    }

    fn prefix(&self, node: &str) -> String {
        prefix(self.up.fleet, &self.up.new.manifest.app.name, node)
    }

    /// Runs `what` on `nodes` at once: `argv(node)` with `stdin(node)`; true when
    /// every node succeeded. Each node's output goes to its log.
    fn on_nodes(
        &mut self,
        what: &'static str,
        nodes: &[String],
        argv: Argv<'_>,
        stdin: Input<'_>,
    ) -> (bool, Vec<String>) {
        (self.on)(Event::Begin(what, nodes));
        let todo: Vec<Target> = nodes.iter().map(|n| self.targets[n].clone()).collect();
        let results = berth_remote::each(&todo, PARALLEL, |t| {
            let words = argv(&t.name);
            let refs: Vec<&str> = words.iter().map(String::as_str).collect();
            let input = stdin.map(|s| s(&t.name));
            let started = Instant::now();
            (t.run(&refs, input.as_deref()), started.elapsed())
        });
        let mut all = true;
        let mut outs = Vec::new();
        for (t, (out, took)) in todo.iter().zip(results) {
            let (ok, text, stdout) = match &out {
                Ok(o) => (
                    o.code == 0,
                    format!("{}{}", o.stdout, o.stderr),
                    o.stdout.clone(),
                ),
                Err(e) => (false, format!("{e}\nhint: {}\n", e.hint()), String::new()),
            };
            let log = self.up.logs.join(format!("{}.{what}.log", t.name));
            let _ = std::fs::write(&log, &text);
            let done = Done {
                action: what,
                node: t.name.clone(),
                result: if ok { "ok" } else { "failed" },
                seconds: took.as_secs_f64(),
                log: Some(log.display().to_string()),
            };
            (self.on)(Event::End(&done, &text));
            self.steps.push(done);
            all &= ok;
            outs.push(stdout);
        }
        (all, outs)
    }

    /// `fleet node-upgrade <step>` on `nodes`, sent `m`.
    fn node_upgrade(
        &mut self,
        what: &'static str,
        step: &str,
        nodes: &[String],
        m: &LoadedManifest,
        more: &[&str],
    ) -> bool {
        let berth = self.up.fleet.fleet.fleet.berth.clone();
        // Only `install` unpacks the bundle; the switch finds the release built.
        let bundle = self.up.bundle.filter(|_| step == "install");
        let payloads: BTreeMap<String, Vec<u8>> = nodes
            .iter()
            .map(|n| (n.clone(), self.payload(n, m, bundle)))
            .collect();
        let prefixes: BTreeMap<String, String> =
            nodes.iter().map(|n| (n.clone(), self.prefix(n))).collect();
        let more: Vec<String> = more.iter().map(|s| (*s).to_owned()).collect();
        let argv = move |n: &str| {
            let mut v = vec![
                berth.clone(),
                "--prefix".into(),
                prefixes[n].clone(),
                "--quiet".into(),
                "fleet".into(),
                "node-upgrade".into(),
                step.to_owned(),
            ];
            v.extend(more.iter().cloned());
            v
        };
        let stdin = |n: &str| Cow::Borrowed(payloads[n].as_slice());
        self.on_nodes(what, nodes, &argv, Some(&stdin)).0
    }

    /// The release bundle sent to `nodes` (`fleet node-receive`), for their `install`.
    fn send(&mut self, nodes: &[String], bundle: &Bundle) -> bool {
        let berth = self.up.fleet.fleet.fleet.berth.clone();
        let prefixes: BTreeMap<String, String> =
            nodes.iter().map(|n| (n.clone(), self.prefix(n))).collect();
        let file = bundle.file.clone();
        let argv = move |n: &str| {
            vec![
                berth.clone(),
                "--prefix".into(),
                prefixes[n].clone(),
                "fleet".into(),
                "node-receive".into(),
                "--name".into(),
                file.clone(),
            ]
        };
        let stdin = |_: &str| Cow::Borrowed(bundle.bytes.as_slice());
        self.on_nodes("send", nodes, &argv, Some(&stdin)).0
    }

    /// Node `node` out of (`state` = `maint`) or back into (`ready`) every balancer.
    fn balance(
        &mut self,
        what: &'static str,
        node: &str,
        balancers: &[String],
        state: &str,
    ) -> bool {
        let berth = self.up.fleet.fleet.fleet.berth.clone();
        let prefixes: BTreeMap<String, String> = balancers
            .iter()
            .map(|n| (n.clone(), self.prefix(n)))
            .collect();
        let argv = move |b: &str| {
            vec![
                berth.clone(),
                "--prefix".into(),
                prefixes[b].clone(),
                "fleet".into(),
                "node-balancer".into(),
                "--server".into(),
                node.to_owned(),
                "--state".into(),
                state.to_owned(),
            ]
        };
        self.on_nodes(what, balancers, &argv, None).0
    }

    fn backup(&mut self, node: &str) -> Option<String> {
        let berth = self.up.fleet.fleet.fleet.berth.clone();
        let p = self.prefix(node);
        let argv = move |_: &str| {
            vec![
                berth.clone(),
                "--prefix".into(),
                p.clone(),
                "--quiet".into(),
                "backup".into(),
                "create".into(),
                "--json".into(),
            ]
        };
        let (ok, outs) = self.on_nodes("backup", &[node.to_owned()], &argv, None);
        if !ok {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(outs.first()?).ok()?;
        v["backup"]["archive"].as_str().map(str::to_owned)
    }
}

/// Every node that switched (the last first) and every node that stopped for the
/// maintenance page back on the old release, each behind the load balancer out of it
/// meanwhile; then every node into the load balancer again. True when all of it
/// worked.
fn roll_back(
    r: &mut Runner<'_, '_>,
    plan: &Plan,
    switched: &[String],
    stopped: &[String],
    mut drained: Vec<(String, Vec<String>)>,
) -> bool {
    let up = r.up;
    // Back to the old release, the last switched first; then every node that
    // stopped for the maintenance page; then into the balancers again.
    let mut back: Vec<String> = switched.iter().rev().cloned().collect();
    for n in stopped {
        if !back.contains(n) {
            back.push(n.clone());
        }
    }
    // A node behind the load balancer goes back out of it, as it switched.
    let behind: BTreeMap<&String, &Vec<String>> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Drain { node, balancers } => Some((node, balancers)),
            _ => None,
        })
        .collect();
    let mut all = true;
    for n in &back {
        let balancers = behind.get(n).copied();
        if let Some(b) = balancers
            && !drained.iter().any(|(d, _)| d == n)
        {
            all &= r.balance("drain", n, b, "maint");
        }
        all &= r.node_upgrade("back", "back", std::slice::from_ref(n), up.old, &[]);
        if let Some(b) = balancers {
            all &= r.balance("restore", n, b, "ready");
            drained.retain(|(d, _)| d != n);
        }
    }
    for (node, balancers) in &drained {
        all &= r.balance("restore", node, balancers, "ready");
    }
    all
}

/// Carries out `plan` (see the module's text for what a failure leaves).
pub fn carry_out(up: &Upgrade<'_>, plan: &Plan, on: &mut dyn FnMut(Event<'_>)) -> Outcome {
    let mut r = Runner {
        up,
        targets: targets(up.fleet)
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect(),
        on,
        steps: Vec::new(),
    };
    let hold = if plan
        .actions
        .iter()
        .any(|a| matches!(a, Action::PostDeploy { .. }))
    {
        &["--hold-post-deploy"][..]
    } else {
        &[]
    };
    let mut switched: Vec<String> = Vec::new();
    let mut drained: Vec<(String, Vec<String>)> = Vec::new();
    let mut stopped: Vec<String> = Vec::new();
    let mut backup = None;
    let mut ok = true;
    for action in &plan.actions {
        ok = match action {
            Action::Backup { node } => match r.backup(node) {
                Some(archive) => {
                    backup = Some((node.clone(), archive));
                    true
                }
                None => false,
            },
            Action::Install { nodes } => {
                up.bundle.is_none_or(|b| r.send(nodes, b))
                    && r.node_upgrade("install", "install", nodes, up.new, &[])
            }
            Action::Maintenance { nodes } => {
                stopped.clone_from(nodes);
                r.node_upgrade("maintenance", "maintenance", nodes, up.new, &[])
            }
            Action::Drain { node, balancers } => {
                drained.push((node.clone(), balancers.clone()));
                r.balance("drain", node, balancers, "maint")
            }
            Action::Switch { nodes } => {
                switched.extend(nodes.iter().cloned());
                r.node_upgrade("switch", "switch", nodes, up.new, hold)
            }
            Action::Restore { node, balancers } => {
                let ok = r.balance("restore", node, balancers, "ready");
                if ok {
                    drained.retain(|(n, _)| n != node);
                }
                ok
            }
            Action::PostDeploy { nodes } => {
                r.node_upgrade("post-deploy", "post-deploy", nodes, up.new, &[])
            }
        };
        if !ok {
            break;
        }
    }
    let rolled_back = !ok
        && (plan.online || switched.is_empty())
        && roll_back(&mut r, plan, &switched, &stopped, drained);
    // A node runs the new version once its switch succeeded, unless it went back.
    let mut upgraded: Vec<String> = plan.done.clone();
    for s in &r.steps {
        match (s.action, s.result) {
            ("switch", "ok") => upgraded.push(s.node.clone()),
            ("back", "ok") => upgraded.retain(|n| n != &s.node),
            _ => {}
        }
    }
    upgraded.sort();
    upgraded.dedup();
    Outcome {
        steps: r.steps,
        ok,
        backup,
        upgraded,
        rolled_back,
    }
}
