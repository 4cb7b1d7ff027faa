//! The order hooks run in, and the hooks a hook needs first: pure functions of a
//! desired state, so the lifecycle, the dry run and tests agree.
//!
//! Hook `b` runs before hook `a` when
//!
//! 1. `a` names it in `after` (`"hook:b"`), or `b` names `a` in `before` (`"hook:a"`);
//! 2. `b`'s `before` holds a service `a` needs: one of `a`'s `after` services, or a
//!    service those depend on (`depends_on`, all the way down).
//!
//! Apart from that, hooks run in the order of their names: among the hooks whose
//! predecessors have all run, the one whose name sorts first (byte order) runs next.

use std::collections::{BTreeMap, BTreeSet};

use crate::{DesiredState, HookSpec};

/// For each hook, the hooks that must run before it (rules 1 and 2 above), among the
/// hooks of `state`.
fn predecessors(state: &DesiredState) -> BTreeMap<&str, BTreeSet<&str>> {
    let deps: BTreeMap<&str, &[String]> = state
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.depends_on.as_slice()))
        .collect();
    let names: BTreeSet<&str> = state.hooks.iter().map(|h| h.name.as_str()).collect();
    let mut preds: BTreeMap<&str, BTreeSet<&str>> =
        names.iter().map(|n| (*n, BTreeSet::new())).collect();
    for a in &state.hooks {
        let needed = needed_services(&deps, a);
        let entry = preds.entry(a.name.as_str()).or_default();
        entry.extend(
            a.after_hooks
                .iter()
                .map(String::as_str)
                .filter(|b| names.contains(b) && *b != a.name),
        );
        for b in &state.hooks {
            if b.name != a.name
                && (b.before_hooks.contains(&a.name)
                    || b.before.iter().any(|s| needed.contains(s.as_str())))
            {
                entry.insert(b.name.as_str());
            }
        }
    }
    preds
}

/// The services a hook needs ready: its `after` services and what they depend on.
fn needed_services<'s>(
    deps: &BTreeMap<&'s str, &'s [String]>,
    hook: &'s HookSpec,
) -> BTreeSet<&'s str> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<&str> = hook.after.iter().map(String::as_str).collect();
    while let Some(s) = stack.pop() {
        if seen.insert(s) {
            stack.extend(
                deps.get(s)
                    .copied()
                    .unwrap_or_default()
                    .iter()
                    .map(String::as_str),
            );
        }
    }
    seen
}

/// The names of the hooks of `state` in the order they run: every hook after the
/// hooks it must follow, ties broken by name (see the module's rules). Deterministic:
/// the same state always gives the same order.
///
/// The manifest's validation refuses cycles; should a state have one anyway, the hooks
/// that cannot be placed (in the cycle, or after it) come last, in name order.
pub fn hook_order(state: &DesiredState) -> Vec<&str> {
    let mut preds = predecessors(state);
    let mut order = Vec::with_capacity(preds.len());
    while let Some(next) = preds
        .iter()
        .find(|(_, p)| p.is_empty())
        .map(|(name, _)| *name)
    {
        preds.remove(next);
        for p in preds.values_mut() {
            p.remove(next);
        }
        order.push(next);
    }
    order.extend(preds.keys());
    order
}

/// The hooks that must run before `targets` can (not the targets themselves), for an
/// operation that runs only some hooks (a restore runs `restore_after`): every hook a
/// target follows, directly or through another such hook. Run them and the targets in
/// [`hook_order`].
pub fn hook_prerequisites(state: &DesiredState, targets: &[String]) -> BTreeSet<String> {
    let preds = predecessors(state);
    let mut found: BTreeSet<String> = BTreeSet::new();
    let mut stack: Vec<&str> = targets.iter().map(String::as_str).collect();
    while let Some(h) = stack.pop() {
        for p in preds.get(h).into_iter().flatten() {
            if !targets.iter().any(|t| t == p) && found.insert((*p).to_owned()) {
                stack.push(p);
            }
        }
    }
    found
}
