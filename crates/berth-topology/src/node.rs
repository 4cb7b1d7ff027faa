//! What one node of a fleet runs: the app narrowed to the roles it takes.

use std::collections::{BTreeMap, BTreeSet};

use berth_model::LoadedManifest;
use berth_model::fleet::FleetView;
use berth_model::topology::Placement;

/// The app as one node runs it.
#[derive(Debug, Clone)]
pub struct NodeApp {
    /// The manifest without the services of roles the node does not take, and without
    /// the hooks and jobs placed `once` on another node.
    pub manifest: LoadedManifest,
    /// Components the node has: each with a service here, or with no service at all.
    pub components: BTreeSet<String>,
}

impl NodeApp {
    /// The app's enabled components narrowed to this node's, with berth's engines.
    pub fn narrow(&self, enabled: &mut BTreeSet<String>) {
        enabled.retain(|c| self.components.contains(c));
        enabled.extend(
            self.components
                .iter()
                .filter(|c| c.starts_with("berth-"))
                .cloned(),
        );
    }
}

/// How early each role comes up: 0 for a role after nothing, else one more than the
/// latest role it comes after (a role placed `with` another comes up with it).
pub fn role_ranks(m: &berth_model::Manifest) -> BTreeMap<String, usize> {
    fn rank(
        m: &berth_model::Manifest,
        role: &str,
        seen: &mut BTreeSet<String>,
        memo: &mut BTreeMap<String, usize>,
    ) -> usize {
        if let Some(r) = memo.get(role) {
            return *r;
        }
        // The model refuses circles; a circle reached anyway ends here.
        if !seen.insert(role.to_owned()) {
            return 0;
        }
        let Some(decl) = m.roles.get(role) else {
            return 0;
        };
        let r = match &decl.with {
            Some(host) => rank(m, host, seen, memo),
            None => decl
                .after
                .iter()
                .map(|a| rank(m, a, seen, memo) + 1)
                .max()
                .unwrap_or(0),
        };
        memo.insert(role.to_owned(), r);
        r
    }
    let mut memo = BTreeMap::new();
    for role in m.roles.keys() {
        rank(m, role, &mut BTreeSet::new(), &mut memo);
    }
    memo
}

/// The services the roles in `roles` run.
pub fn services_of<'a>(m: &'a berth_model::Manifest, roles: &[String]) -> BTreeSet<&'a str> {
    m.roles
        .iter()
        .filter(|(name, _)| roles.contains(name))
        .flat_map(|(_, r)| r.services.iter().map(String::as_str))
        .collect()
}

/// The components a node taking `roles` has.
fn components_of(m: &berth_model::Manifest, roles: &[String]) -> BTreeSet<String> {
    let here = services_of(m, roles);
    m.components
        .keys()
        .filter(|c| {
            let mut services = m.services.iter().filter(|(_, s)| &s.component == *c);
            let mut again = services.clone();
            again.next().is_none() || services.any(|(name, _)| here.contains(name.as_str()))
        })
        .cloned()
        .collect()
}

/// The node of `fleet` that runs the `once` hooks and jobs of `component` (and, for
/// PostgreSQL under Patroni, makes the cluster): the first, in bring-up order (a node
/// comes up with its latest role; then by name), that has the component.
pub fn once_node<'f>(
    m: &berth_model::Manifest,
    fleet: &'f FleetView,
    component: &str,
) -> Option<&'f str> {
    let ranks = role_ranks(m);
    fleet
        .nodes
        .iter()
        .filter(|(_, p)| components_of(m, &p.roles).contains(component))
        .map(|(name, p)| {
            // A node comes up with its latest role (`fleet up`'s waves).
            let rank = p
                .roles
                .iter()
                .filter_map(|r| ranks.get(r))
                .max()
                .copied()
                .unwrap_or(0);
            (rank, name.as_str())
        })
        .min()
        .map(|(_, name)| name)
}

/// Whether the roles in `roles` run every service of the app.
pub fn takes_everything(m: &berth_model::Manifest, roles: &[String]) -> bool {
    m.roles_left_out(roles).is_empty()
}

/// The app as the node taking `roles` in `fleet` runs it (alone, with no fleet: the
/// roles are all of them, and only the services are narrowed).
pub fn localize(m: &LoadedManifest, roles: &[String], fleet: Option<&FleetView>) -> NodeApp {
    let man = &m.manifest;
    let here = services_of(man, roles);
    let components = components_of(man, roles);
    let mut local = m.clone();
    local
        .manifest
        .services
        .retain(|name, _| here.contains(name.as_str()));
    // The engines of its roles, as components and services of their own.
    let mut components = components;
    for (name, role) in man.roles.iter().filter(|(n, _)| roles.contains(n)) {
        for engine in &role.engines {
            crate::engines::add(&mut local, name, *engine, fleet);
        }
    }
    // Redis replicated and watched by Sentinel, where the role has several nodes.
    if let Some(fleet) = fleet
        && let Some(cache) = fleet.sentinel_role(man)
        && roles.iter().any(|r| r == cache)
        && let Some(decl) = man.roles.get(cache).and_then(|r| r.sentinel.as_ref())
    {
        crate::engines::sentinel(&mut local, cache, decl);
    }
    // PostgreSQL under Patroni, where the fleet runs etcd for it.
    if let Some(fleet) = fleet
        && let Some(db) = fleet.patroni_role(man)
        && roles.iter().any(|r| r == db)
        && let Some(decl) = man.roles.get(db).and_then(|r| r.patroni.as_ref())
    {
        let component = man.roles[db]
            .services
            .first()
            .and_then(|s| man.services.get(s))
            .map(|s| s.component.as_str())
            .unwrap_or_default();
        let bootstrap = once_node(man, fleet, component) == Some(fleet.node.as_str());
        let pooled = fleet.runs(man, berth_model::topology::Engine::Pgbouncer);
        crate::engines::patroni(&mut local, db, decl, bootstrap, pooled);
    }
    components.extend(
        local
            .manifest
            .components
            .keys()
            .filter(|c| c.starts_with("berth-"))
            .cloned(),
    );
    if let Some(fleet) = fleet {
        let mine = |component: &str, placement: Placement| {
            placement == Placement::Every
                || once_node(man, fleet, component) == Some(fleet.node.as_str())
        };
        local
            .manifest
            .hooks
            .retain(|_, h| mine(&h.component, h.fleet));
        local
            .manifest
            .jobs
            .retain(|_, j| mine(&j.component, j.fleet));
    }
    NodeApp {
        manifest: local,
        components,
    }
}
