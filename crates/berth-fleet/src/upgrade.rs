//! `fleet upgrade`, planned: which node does what, in which order, to take every node
//! of a fleet from the version it runs to the next. Pure: [`plan`] reads the fleet
//! file and the two manifests; [`crate::rolling`] carries the plan out.
//!
//! The order is the one `fleet up` brings nodes up in ([`crate::node::waves`]): the
//! consensus store, the database, the pooler and the cache before the load balancer
//! and the app. On an online hop the old release keeps serving while the new one is
//! built beside it on every node, then nodes switch one at a time: a node behind the
//! load balancer is first taken out of it (and its requests finish), switches, must
//! answer, and is put back. The first node that runs the app's `once` hooks switches
//! first among the app's nodes, so its `up` runs the release's migrations while the
//! old release serves (an online hop's migrations are safe for it); hooks that come
//! after the app's services (post-deploy migrations) run once every node is switched.
//! On an offline hop every app node serves the maintenance page and stops the old
//! release before the first switch, then nodes switch wave by wave.

use std::collections::BTreeSet;

use berth_model::manifest::ComponentSource;
use berth_model::{LoadedFleet, LoadedManifest, Manifest};
use serde::Serialize;

use crate::node::{site_config, waves};

/// One thing the fleet upgrade does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// A backup (`berth backup create`) on the node that holds the database.
    Backup {
        /// The node.
        node: String,
    },
    /// The new release built (or unpacked) beside the running one; nothing switches.
    Install {
        /// The nodes, at once.
        nodes: Vec<String>,
    },
    /// Offline hops: the maintenance page up and the old release's app services
    /// stopped.
    Maintenance {
        /// The nodes, at once.
        nodes: Vec<String>,
    },
    /// The node taken out of every load balancer in front of it; its requests finish.
    Drain {
        /// The node.
        node: String,
        /// The nodes running the load balancer.
        balancers: Vec<String>,
    },
    /// `up` with the new manifest: config written, the release switched, the release's
    /// hooks run, services restarted, the app asked (a web node's own health path).
    Switch {
        /// The nodes, at once.
        nodes: Vec<String>,
    },
    /// The node put back into every load balancer, which must see it answer.
    Restore {
        /// The node.
        node: String,
        /// The nodes running the load balancer.
        balancers: Vec<String>,
    },
    /// Hooks that come after the app's services (post-deploy migrations), held back
    /// by the switches, run once every node runs the new release: `up` again on every
    /// node of the app (where nothing is due, it changes nothing).
    PostDeploy {
        /// The nodes, at once.
        nodes: Vec<String>,
    },
}

/// The whole upgrade of a fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The app.
    pub app: String,
    /// The version the fleet runs.
    pub from: String,
    /// The version it goes to.
    pub to: String,
    /// Whether the old release serves throughout (an online hop).
    pub online: bool,
    /// Nodes that already run the new version (an upgrade that stopped half way, run
    /// again): they are left alone.
    pub done: Vec<String>,
    /// What happens, in order.
    pub actions: Vec<Action>,
}

/// Why a fleet upgrade cannot begin. Nothing has changed on any node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The single-node planner's refusal (same version, downgrade, skipped stop…).
    #[error("{0}")]
    Plan(#[from] berth_upgrade::Refused),
    /// The path needs stops: one hop per run.
    #[error(
        "{app} {from} reaches {to} only through {stops}: a fleet upgrade takes one hop at a time; upgrade the fleet to {first} first (`berth fleet upgrade --to` its manifest), then to {to}"
    )]
    Stops {
        /// The app.
        app: String,
        /// The running version.
        from: String,
        /// The target.
        to: String,
        /// The stops on the way, in words.
        stops: String,
        /// The first stop.
        first: String,
    },
    /// The fleet's site config sets a setting the new version renamed or removed.
    #[error(
        "the fleet's site config sets `{key}`, which {app} {to} {what}: change it in the fleet's site config (or the node's settings) first; no node was changed"
    )]
    Setting {
        /// The app.
        app: String,
        /// The target.
        to: String,
        /// The setting.
        key: String,
        /// `renamed to `x`` or `no longer has`.
        what: String,
    },
}

/// The site keys (`group.key`) node `node`'s site config sets.
fn site_keys(f: &LoadedFleet, node: &str) -> BTreeSet<String> {
    let Ok(doc) = site_config(f, node).parse::<toml_edit::DocumentMut>() else {
        return BTreeSet::new();
    };
    doc.iter()
        .filter_map(|(g, v)| v.as_table().map(|t| (g, t)))
        .flat_map(|(g, t)| t.iter().map(move |(k, _)| format!("{g}.{k}")))
        .collect()
}

/// Whether a node taking `roles` runs the release's own code: a service of a bundled
/// component (the app, its worker), which the new release replaces.
pub fn runs_release(m: &Manifest, roles: &[String]) -> bool {
    berth_topology::node::services_of(m, roles)
        .iter()
        .filter_map(|s| m.services.get(*s))
        .any(|s| {
            m.components
                .get(&s.component)
                .is_some_and(|c| c.source == ComponentSource::Bundled)
        })
}

/// The nodes running the load balancer in front of node `node`'s roles, when it is
/// behind one.
fn balancers_of(f: &LoadedFleet, m: &Manifest, node: &str) -> Vec<String> {
    let roles = &f.fleet.nodes[node].roles;
    let fronting: Vec<&String> = m
        .roles
        .iter()
        .filter(|(_, d)| d.fronts.as_ref().is_some_and(|r| roles.contains(r)))
        .map(|(name, _)| name)
        .collect();
    f.fleet
        .nodes
        .iter()
        .filter(|(_, n)| n.roles.iter().any(|r| fronting.contains(&r)))
        .map(|(name, _)| name.clone())
        .collect()
}

/// Where the release's migrations run: the node that runs the `once` hooks of the
/// first release hook of a bundled component (the app's own code).
fn migrating_node(f: &LoadedFleet, m: &Manifest) -> Option<String> {
    let view = crate::node::view(f, "");
    m.hooks
        .values()
        .filter(|h| h.when == berth_model::manifest::HookWhen::Release)
        .filter(|h| {
            m.components
                .get(&h.component)
                .is_some_and(|c| c.source == ComponentSource::Bundled)
        })
        .find_map(|h| berth_topology::node::once_node(m, &view, &h.component))
        .map(str::to_owned)
}

/// The release hooks of `m` that come after a service of a bundled component
/// (post-deploy migrations).
pub fn post_deploy_hooks(m: &Manifest) -> BTreeSet<String> {
    m.hooks
        .iter()
        .filter(|(_, h)| {
            h.when == berth_model::manifest::HookWhen::Release
                && h.after.iter().any(|s| {
                    m.services.get(s).is_some_and(|svc| {
                        m.components
                            .get(&svc.component)
                            .is_some_and(|c| c.source == ComponentSource::Bundled)
                    })
                })
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// The upgrade of fleet `f` from `old` (what every node not in `done` runs) to `new`.
/// `done` are the nodes found running `new` already.
///
/// # Errors
/// The hop is refused as a single node's would be, needs a stop on the way, or the
/// fleet's site config sets a setting the new version renamed or removed.
pub fn plan(
    f: &LoadedFleet,
    old: &Manifest,
    new: &LoadedManifest,
    done: &BTreeSet<String>,
) -> Result<Plan, Refused> {
    let app = &old.app.name;
    let keys: BTreeSet<String> = f.fleet.nodes.keys().flat_map(|n| site_keys(f, n)).collect();
    let up = berth_upgrade::plan(app, &old.app.version, &[new], &keys).map_err(|e| match e {
        // One `--to` here: the stop is a run of its own, not another `--to`.
        berth_upgrade::Refused::MissingStop { from, to, series } => Refused::Stops {
            app: app.clone(),
            from,
            to,
            stops: format!("a {series}.x release"),
            first: format!("a {series}.x release"),
        },
        e => Refused::Plan(e),
    })?;
    if up.hops.len() > 1 {
        let stops: Vec<&str> = up.hops[..up.hops.len() - 1]
            .iter()
            .map(|h| h.to.as_str())
            .collect();
        return Err(Refused::Stops {
            app: app.clone(),
            from: up.from,
            to: up.to,
            stops: stops.join(", "),
            first: stops[0].to_owned(),
        });
    }
    if let Some(s) = up.settings.first() {
        return Err(Refused::Setting {
            app: app.clone(),
            to: up.to,
            key: s.key.clone(),
            what: s
                .renamed_to
                .as_ref()
                .map_or_else(|| "no longer has".to_owned(), |r| format!("renamed to `{r}`")),
        });
    }
    let online = up.hops[0].migrations == berth_upgrade::Migrations::Online;
    let m = &new.manifest;
    let order: Vec<Vec<String>> = waves(f, m)
        .into_iter()
        .map(|w| w.into_iter().filter(|n| !done.contains(n)).collect())
        .filter(|w: &Vec<String>| !w.is_empty())
        .collect();
    let release_nodes: Vec<String> = order
        .iter()
        .flatten()
        .filter(|n| runs_release(m, &f.fleet.nodes[n.as_str()].roles))
        .cloned()
        .collect();
    let mut actions = Vec::new();
    if done.is_empty()
        && let Some(node) = backup_node(f, old)
    {
        actions.push(Action::Backup { node });
    }
    if !release_nodes.is_empty() {
        actions.push(Action::Install {
            nodes: release_nodes.clone(),
        });
    }
    actions.extend(switches(f, m, order, release_nodes, online));
    if !post_deploy_hooks(m).is_empty() {
        // Also the nodes switched by an earlier run that stopped half way: their
        // held hooks are still due.
        let nodes: Vec<String> = waves(f, m)
            .into_iter()
            .flatten()
            .filter(|n| runs_release(m, &f.fleet.nodes[n.as_str()].roles))
            .collect();
        actions.push(Action::PostDeploy { nodes });
    }
    Ok(Plan {
        app: app.clone(),
        from: old.app.version.clone(),
        to: m.app.version.clone(),
        online,
        done: done.iter().cloned().collect(),
        actions,
    })
}

/// The switches of the plan, in order, with the drains around them (online) or the
/// maintenance page before them (offline).
fn switches(
    f: &LoadedFleet,
    m: &Manifest,
    order: Vec<Vec<String>>,
    release_nodes: Vec<String>,
    online: bool,
) -> Vec<Action> {
    let mut actions = Vec::new();
    // The node that runs the release's migrations switches alone, before every other
    // node of the app: none of them may run the new code on an unmigrated database.
    let mut order = order;
    if let Some(first) = migrating_node(f, m)
        && order.iter().flatten().any(|n| *n == first)
    {
        for wave in &mut order {
            wave.retain(|n| *n != first);
        }
        order.retain(|w| !w.is_empty());
        let at = order
            .iter()
            .position(|w| w.iter().any(|n| release_nodes.contains(n)))
            .unwrap_or(order.len());
        order.insert(at, vec![first]);
    }
    if online {
        let nodes: Vec<&String> = order.iter().flatten().collect();
        for node in nodes {
            let balancers = balancers_of(f, m, node);
            if !balancers.is_empty() {
                actions.push(Action::Drain {
                    node: node.clone(),
                    balancers: balancers.clone(),
                });
            }
            actions.push(Action::Switch {
                nodes: vec![node.clone()],
            });
            if !balancers.is_empty() {
                actions.push(Action::Restore {
                    node: node.clone(),
                    balancers,
                });
            }
        }
    } else {
        if !release_nodes.is_empty() {
            actions.push(Action::Maintenance {
                nodes: release_nodes,
            });
        }
        for wave in order {
            actions.push(Action::Switch { nodes: wave });
        }
    }
    actions
}

/// The node a pre-upgrade backup is made on: the first (in bring-up order) that runs
/// the service `[backup.database]` names, or, without a database, the first that
/// runs the app's release.
fn backup_node(f: &LoadedFleet, m: &Manifest) -> Option<String> {
    let backup = m.backup.as_ref()?;
    let service = backup.database.as_ref().map(|d| d.service.as_str());
    let order: Vec<String> = waves(f, m).into_iter().flatten().collect();
    order.into_iter().find(|n| {
        let roles = &f.fleet.nodes[n.as_str()].roles;
        match service {
            Some(s) => berth_topology::node::services_of(m, roles).contains(s),
            None => runs_release(m, roles),
        }
    })
}
