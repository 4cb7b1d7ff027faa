//! The planner: a request against roles and sizing, by tiers or by capacity.

use std::collections::{BTreeMap, BTreeSet};

use berth_model::topology::{HaKind, RoleDecl, TierDecl};

use crate::{Basis, Load, NodePlan, Plan, Refusal, Request, RolePlan, Sizing, Total};

fn refuse(message: String, help: impl Into<String>) -> Refusal {
    Refusal {
        message,
        help: help.into(),
    }
}

/// Bytes of a size the model has already checked (0 if it somehow does not parse).
fn bytes(s: &str) -> u64 {
    berth_model::parse_size(s)
        .ok()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0)
}

/// Plans `req` against `s`.
///
/// # Errors
///
/// A [`Refusal`] when the load is zero or cannot be turned into requests per second,
/// when no measured tier carries it, when a role would need more nodes than its
/// `nodes.max`, when a role placed with another cannot keep its quorum there, or when
/// a multi-node plan has a role without CPUs or memory to size its nodes by.
pub fn plan(s: &Sizing<'_>, req: &Request) -> Result<Plan, Refusal> {
    if s.roles.is_empty() {
        return Err(refuse(
            format!(
                "`{}` declares no roles, so it cannot be spread over nodes",
                s.name
            ),
            "declare `[roles.<name>]` tables (docs/manifest.md, \"Roles and sizing\")",
        ));
    }
    let (rps, users) = match req.load {
        Load::Rps(0) | Load::Users(0) => {
            return Err(refuse(
                "the load is 0".to_owned(),
                "give the peak load: `--users N` or `--rps R`, at least 1",
            ));
        }
        Load::Rps(r) => (r, None),
        Load::Users(u) => {
            let Some(per) = s.sizing.users_per_rps else {
                return Err(refuse(
                    format!(
                        "`{}` does not say how many users make one request per second",
                        s.name
                    ),
                    "give the load as `--rps R`, or set `sizing.users_per_rps`",
                ));
            };
            (u.div_ceil(u64::from(per)), Some(u))
        }
    };
    let mut built = if s.sizing.tiers.is_empty() {
        by_capacity(s, rps, req.ha)?
    } else {
        by_tiers(s, rps, users, req.ha)?
    };
    built.finish(s, rps, users, req.ha)
}

/// Roles and their counts, before nodes are laid out.
struct Draft {
    basis: Basis,
    /// Own roles: name → (count, cpus, memory, why).
    own: BTreeMap<String, (u32, Option<u32>, Option<u64>, String)>,
    /// One node holding every role (a single-node size).
    single: Option<(u32, u64, Vec<String>)>,
}

/// Roles a single node runs: those that always have a node and front nothing.
fn single_node_roles(s: &Sizing<'_>) -> Vec<String> {
    s.roles
        .iter()
        .filter(|(_, r)| r.nodes.min >= 1 && r.fronts.is_none() && r.with.is_none())
        .map(|(n, _)| n.clone())
        .collect()
}

fn by_tiers(s: &Sizing<'_>, rps: u64, users: Option<u64>, ha: bool) -> Result<Draft, Refusal> {
    let tiers = &s.sizing.tiers;
    let largest = tiers.last().map_or(0, |t| u64::from(t.rps));
    let carries = |t: &&TierDecl| u64::from(t.rps) >= rps;
    let Some(tier) = tiers.iter().filter(|t| !ha || t.ha).find(carries) else {
        let asked = match users {
            Some(u) => format!("{u} users ({rps} RPS)"),
            None => format!("{rps} RPS"),
        };
        let biggest = tiers.iter().rfind(|t| !ha || t.ha);
        return Err(match biggest {
            Some(b) => refuse(
                format!(
                    "{asked} is beyond the largest{} size `{}` measured ({} RPS{})",
                    if ha { " highly available" } else { "" },
                    b.name,
                    b.rps,
                    b.users.map(|u| format!(", {u} users")).unwrap_or_default(),
                ),
                format!(
                    "`{}` has no measured shape above {largest} RPS: plan for at most that, or measure a larger size and add it as a tier",
                    s.name
                ),
            ),
            None => refuse(
                format!("`{}` has no highly available size", s.name),
                "plan without `--ha`, or add a tier with `ha = true`",
            ),
        });
    };
    // A smaller, non-HA tier would carry the load: the HA tier is cut down.
    let reduced = ha
        && tiers
            .iter()
            .take_while(|t| t.name != tier.name)
            .any(|t| !t.ha && u64::from(t.rps) >= rps);
    let basis = Basis::Tier {
        name: tier.name.clone(),
        rps: u64::from(tier.rps),
        users: tier.users.map(u64::from),
        reduced,
    };
    if let Some(node) = &tier.single_node {
        return Ok(Draft {
            basis,
            own: BTreeMap::new(),
            single: Some((node.cpus, bytes(&node.memory), single_node_roles(s))),
        });
    }
    let mut own = BTreeMap::new();
    for (name, spec) in &tier.roles {
        if spec.nodes == 0 {
            continue;
        }
        let decl = &s.roles[name];
        let mut n = spec.nodes;
        let mut why = format!("tier {}", tier.name);
        if reduced && decl.ha != HaKind::None {
            let least = decl.nodes.ha.unwrap_or(decl.ha.least_nodes());
            if least < n {
                n = least;
                why = format!(
                    "tier {} cut to the fewest for `{}` ({least})",
                    tier.name,
                    decl.ha.as_str()
                );
            }
        }
        own.insert(
            name.clone(),
            (n, Some(spec.cpus), Some(bytes(&spec.memory)), why),
        );
    }
    Ok(Draft {
        basis,
        own,
        single: None,
    })
}

fn by_capacity(s: &Sizing<'_>, rps: u64, ha: bool) -> Result<Draft, Refusal> {
    if let Some(single) = &s.sizing.single_node
        && !ha
        && rps <= u64::from(single.max_rps)
    {
        return Ok(Draft {
            basis: Basis::SingleNode {
                max_rps: u64::from(single.max_rps),
            },
            own: BTreeMap::new(),
            single: Some((single.cpus, bytes(&single.memory), single_node_roles(s))),
        });
    }
    let mut own = BTreeMap::new();
    for (name, r) in s.roles {
        if r.with.is_some() || r.fronts.is_some() {
            continue;
        }
        let (mut n, mut why) = (r.nodes.min, format!("nodes.min = {}", r.nodes.min));
        if let Some(cap) = r.capacity_rps {
            let needed = u32::try_from(rps.div_ceil(u64::from(cap))).unwrap_or(u32::MAX);
            if needed > n {
                n = needed;
                why = format!("{rps} RPS at {cap} per node");
            }
        }
        if ha && r.ha != HaKind::None {
            let least = r.nodes.ha.unwrap_or(r.ha.least_nodes());
            if n < least {
                n = least;
                why = format!("highly available by `{}`: {least}", r.ha.as_str());
            }
            if r.ha.needs_odd() && n % 2 == 0 {
                n += 1;
                why = format!("{why}, odd for a majority");
            }
        }
        if let Some(max) = r.nodes.max
            && n > max
        {
            return Err(refuse(
                format!(
                    "role `{name}` would need {n} nodes ({why}), more than its `nodes.max` of {max}"
                ),
                format!(
                    "plan for a smaller load, or raise `roles.{name}.nodes.max` if the app scales that far"
                ),
            ));
        }
        if n > 0 {
            own.insert(
                name.clone(),
                (n, r.cpus, r.memory.as_deref().map(bytes), why),
            );
        }
    }
    // A role in front of another: one node once that one has several.
    for (name, r) in s.roles {
        if let Some(front) = &r.fronts {
            let behind = own.get(front).map_or(0, |o| o.0);
            if behind > 1 {
                let n = r.nodes.min.max(1);
                let why = format!("in front of {behind} `{front}` nodes");
                own.insert(
                    name.clone(),
                    (n, r.cpus, r.memory.as_deref().map(bytes), why),
                );
            }
        }
    }
    for (name, (_, cpus, memory, _)) in &own {
        if cpus.is_none() || memory.is_none() {
            return Err(refuse(
                format!(
                    "role `{name}` has no {} to size its nodes by",
                    if cpus.is_none() { "`cpus`" } else { "`memory`" }
                ),
                format!("give `roles.{name}.cpus` and `roles.{name}.memory` (one node's needs)"),
            ));
        }
    }
    Ok(Draft {
        basis: Basis::Capacity,
        own,
        single: None,
    })
}

/// Whether a role placed with another is in the plan.
fn placed_present(r: &RoleDecl, ha: bool) -> bool {
    r.nodes.min >= 1 || (ha && r.nodes.ha.is_some())
}

impl Draft {
    #[allow(clippy::too_many_lines)] // laying out nodes, waves and totals in one pass
    fn finish(
        &mut self,
        s: &Sizing<'_>,
        rps: u64,
        users: Option<u64>,
        ha: bool,
    ) -> Result<Plan, Refusal> {
        let mut roles = Vec::new();
        let mut nodes = Vec::new();
        let mut single_points = Vec::new();
        // Roles placed with others: host → [(name, decl)].
        let mut guests: BTreeMap<&str, Vec<(&str, &RoleDecl)>> = BTreeMap::new();
        for (name, r) in s.roles {
            if let Some(host) = &r.with
                && placed_present(r, ha)
            {
                guests.entry(host.as_str()).or_default().push((name, r));
            }
        }
        if let Some((cpus, memory, on_it)) = self.single.take() {
            let mut all = on_it.clone();
            for host in &on_it {
                for (g, _) in guests.get(host.as_str()).into_iter().flatten() {
                    all.push((*g).to_owned());
                }
            }
            for name in &all {
                roles.push(RolePlan {
                    name: name.clone(),
                    nodes: 1,
                    with: None,
                    cpus: None,
                    memory_bytes: None,
                    why: "every role on one node".to_owned(),
                });
                single_points.push(name.clone());
            }
            nodes.push(NodePlan {
                name: "node-1".to_owned(),
                roles: all,
                cpus,
                memory_bytes: memory,
            });
        } else {
            for (name, (n, cpus, memory, why)) in &self.own {
                let mut node_cpus = cpus.unwrap_or(0);
                let mut node_memory = memory.unwrap_or(0);
                let mut on_node = vec![name.clone()];
                roles.push(RolePlan {
                    name: name.clone(),
                    nodes: *n,
                    with: None,
                    cpus: *cpus,
                    memory_bytes: *memory,
                    why: why.clone(),
                });
                if *n == 1 {
                    single_points.push(name.clone());
                }
                for (g, gr) in guests.get(name.as_str()).into_iter().flatten() {
                    if ha && gr.ha != HaKind::None {
                        let least = gr.nodes.ha.unwrap_or(gr.ha.least_nodes());
                        if *n < least || (gr.ha.needs_odd() && n % 2 == 0) {
                            return Err(refuse(
                                format!(
                                    "role `{g}` is placed with `{name}`, which has {n} node(s); `ha = \"{}\"` needs {}at least {least}",
                                    gr.ha.as_str(),
                                    if gr.ha.needs_odd() {
                                        "an odd number, "
                                    } else {
                                        ""
                                    }
                                ),
                                format!(
                                    "set `roles.{name}.nodes.ha` to {least} or more, or give `{g}` nodes of its own"
                                ),
                            ));
                        }
                    }
                    let gm = gr.memory.as_deref().map(bytes);
                    node_cpus += gr.cpus.unwrap_or(0);
                    node_memory += gm.unwrap_or(0);
                    on_node.push((*g).to_owned());
                    roles.push(RolePlan {
                        name: (*g).to_owned(),
                        nodes: *n,
                        with: Some(name.clone()),
                        cpus: gr.cpus,
                        memory_bytes: gm,
                        why: format!("on the `{name}` nodes"),
                    });
                    if *n == 1 {
                        single_points.push((*g).to_owned());
                    }
                }
                for i in 1..=*n {
                    nodes.push(NodePlan {
                        name: format!("{name}-{i}"),
                        roles: on_node.clone(),
                        cpus: node_cpus,
                        memory_bytes: node_memory,
                    });
                }
            }
        }
        let waves = waves(s, &roles);
        // Roles (and nodes) in bring-up order, each wave's by name.
        let rank: BTreeMap<&str, usize> = waves
            .iter()
            .enumerate()
            .flat_map(|(i, w)| w.iter().map(move |r| (r.as_str(), i)))
            .collect();
        let order = |r: &str| rank.get(r).copied().unwrap_or(usize::MAX);
        roles.sort_by(|a, b| {
            let host = |p: &RolePlan| p.with.clone().unwrap_or_else(|| p.name.clone());
            (order(&host(a)), host(a), a.with.is_some(), a.name.clone()).cmp(&(
                order(&host(b)),
                host(b),
                b.with.is_some(),
                b.name.clone(),
            ))
        });
        nodes.sort_by_key(|n| {
            (
                order(&n.roles[0]),
                n.roles[0].clone(),
                n.name.len(),
                n.name.clone(),
            )
        });
        single_points.sort();
        let total = Total {
            nodes: u32::try_from(nodes.len()).unwrap_or(u32::MAX),
            cpus: nodes.iter().map(|n| u64::from(n.cpus)).sum(),
            memory_bytes: nodes.iter().map(|n| n.memory_bytes).sum(),
        };
        Ok(Plan {
            source: s.name.to_owned(),
            rps,
            users,
            ha,
            basis: self.basis.clone(),
            roles,
            nodes,
            waves,
            single_points,
            total,
        })
    }
}

/// Waves of roles: each after every role it names in `after` that has nodes. A role
/// placed with another comes up with it, so its `after` counts as its host's.
fn waves(s: &Sizing<'_>, planned: &[RolePlan]) -> Vec<Vec<String>> {
    let host_of = |name: &str| -> String {
        planned
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.with.clone())
            .unwrap_or_else(|| name.to_owned())
    };
    let present: BTreeSet<String> = planned.iter().map(|p| p.name.clone()).collect();
    let mut needs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in planned {
        let host = host_of(&p.name);
        let entry = needs.entry(host.clone()).or_default();
        for a in &s.roles[&p.name].after {
            if present.contains(a) {
                let h = host_of(a);
                if h != host {
                    entry.insert(h);
                }
            }
        }
    }
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    while done.len() < needs.len() {
        let wave: Vec<String> = needs
            .iter()
            .filter(|(r, n)| !done.contains(*r) && n.iter().all(|d| done.contains(d)))
            .map(|(r, _)| r.clone())
            .collect();
        if wave.is_empty() {
            // The model refuses circles; whatever is left comes up last, together.
            out.push(
                needs
                    .keys()
                    .filter(|r| !done.contains(*r))
                    .cloned()
                    .collect(),
            );
            break;
        }
        done.extend(wave.iter().cloned());
        out.push(wave);
    }
    out
}
