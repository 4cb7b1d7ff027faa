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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::time::Duration;

    use berth_model::manifest::HookWhen;
    use berth_supervisor_protocol::{RestartPolicy, ServiceSpec};

    use super::{hook_order, hook_prerequisites};
    use crate::{AppId, BackupPolicy, BackupTarget, DesiredState, HookSpec, Paths, Schedule};

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn service(name: &str, deps: &[&str]) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            argv: vec!["/bin/true".into()],
            env: BTreeMap::new(),
            cwd: None,
            user: None,
            depends_on: names(deps),
            readiness: None,
            stop_signal: "SIGTERM".into(),
            stop_timeout: Duration::from_secs(1),
            reload_signal: None,
            restart: RestartPolicy::Always,
            log_dir: PathBuf::from("/l"),
            log_max_bytes: 1,
            log_keep: 1,
        }
    }

    fn hook(name: &str, after: &[&str], before: &[&str]) -> HookSpec {
        HookSpec {
            name: name.into(),
            description: String::new(),
            argv: vec!["/bin/true".into()],
            check: None,
            env: BTreeMap::new(),
            cwd: None,
            user: None,
            when: HookWhen::Once,
            after: names(after),
            before: names(before),
            after_hooks: vec![],
            before_hooks: vec![],
            rerun_key: None,
            rerun_inputs: vec![],
            timeout: Duration::from_secs(1),
            log_file: PathBuf::from("/l/h.log"),
            creates: None,
            secrets_out: Vec::new(),
        }
    }

    fn state(services: Vec<ServiceSpec>, hooks: Vec<HookSpec>) -> DesiredState {
        DesiredState {
            app: AppId {
                name: "a".into(),
                version: "1".into(),
            },
            paths: Paths::for_prefix("/p".as_ref(), "1"),
            users: vec![],
            dirs: vec![],
            files: vec![],
            host_files: Vec::new(),
            packages: vec![],
            binaries: BTreeMap::new(),
            bundles: vec![],
            secrets: vec![],
            services,
            jobs: vec![],
            listen: BTreeMap::new(),
            hooks,
            health_url: String::new(),
            next_steps: vec![],
            backup: None,
            backup_policy: BackupPolicy {
                target: BackupTarget::Default("/p/backups".into()),
                schedule: Schedule::Off,
                jobs: 1,
                compression_level: 3,
                keep_last: 7,
                keep_daily: 7,
                keep_weekly: 4,
                ssh_identity: None,
                ssh_known_hosts: None,
                recipient: None,
            },
            upgrade_policy: crate::UpgradePolicy {
                auto: crate::AutoUpgrade::Off,
                source: None,
                window: (180, 300),
                check_every: std::time::Duration::from_hours(1),
                keep_releases: 2,
            },
            metrics_listen: None,
            metrics_endpoints: std::collections::BTreeMap::new(),
            console: None,
        }
    }

    fn prereqs(s: &DesiredState, targets: &[&str]) -> Vec<String> {
        hook_prerequisites(s, &names(targets)).into_iter().collect()
    }

    #[test]
    fn a_hook_runs_before_hooks_that_need_the_services_it_gates() {
        // Name order would run `a_admin` and `b_createdb` before `z_initdb`, whose
        // `before` gates the database every other hook needs.
        let s = state(
            vec![service("db", &[]), service("web", &["db"])],
            vec![
                hook("a_admin", &["web"], &[]),
                hook("b_createdb", &["db"], &["web"]),
                hook("m_migrate", &["db"], &["web"]),
                hook("z_initdb", &[], &["db"]),
            ],
        );
        assert_eq!(
            hook_order(&s),
            ["z_initdb", "b_createdb", "m_migrate", "a_admin"]
        );
    }

    #[test]
    fn unrelated_hooks_run_in_name_order() {
        let s = state(
            vec![service("db", &[])],
            vec![hook("two", &["db"], &[]), hook("one", &["db"], &[])],
        );
        assert_eq!(hook_order(&s), ["one", "two"]);
    }

    /// `after = ["hook:…"]` and `before = ["hook:…"]` order hooks that share no service.
    #[test]
    fn hook_entries_order_hooks_against_their_names() {
        let mut a = hook("a_migrate", &[], &[]);
        a.after_hooks = names(&["z_createdb"]);
        let mut m = hook("m_admin", &[], &[]);
        m.before_hooks = names(&["b_index"]);
        let s = state(
            vec![],
            vec![
                a,
                hook("b_index", &[], &[]),
                m,
                hook("z_createdb", &[], &[]),
            ],
        );
        assert_eq!(
            hook_order(&s),
            ["m_admin", "b_index", "z_createdb", "a_migrate"]
        );
    }

    #[test]
    fn a_restore_point_needs_the_hooks_that_gate_its_services() {
        // Restoring after `createdb` needs the database, which `initdb` gates; the
        // migration and the admin user come after the restore.
        let s = state(
            vec![
                service("db", &[]),
                service("web", &["db"]),
                service("proxy", &["web"]),
            ],
            vec![
                hook("admin", &["web"], &[]),
                hook("createdb", &["db"], &["web"]),
                hook("initdb", &[], &["db"]),
                hook("migrate", &["db"], &["web"]),
                hook("static", &[], &["proxy"]),
            ],
        );
        assert_eq!(prereqs(&s, &["createdb"]), ["initdb"]);
        assert_eq!(prereqs(&s, &["admin"]), ["createdb", "initdb", "migrate"]);
    }

    /// A hook needing a service only through a chain of `depends_on` still runs after
    /// the hook that gates the end of that chain.
    #[test]
    fn a_hook_waits_for_what_its_services_need_through_depends_on() {
        let s = state(
            vec![
                service("db", &[]),
                service("app", &["db"]),
                service("proxy", &["app"]),
            ],
            vec![
                hook("a_warm_cache", &["proxy"], &[]),
                hook("b_initdb", &[], &["db"]),
            ],
        );
        assert_eq!(hook_order(&s), ["b_initdb", "a_warm_cache"]);
    }

    /// Prerequisites are followed through other prerequisites, and a hook already
    /// among the targets is not listed as its own prerequisite.
    #[test]
    fn prerequisites_follow_chains_and_leave_out_the_targets() {
        let s = state(
            vec![
                service("db", &[]),
                service("cache", &[]),
                service("web", &["db"]),
            ],
            vec![
                hook("migrate", &["web"], &[]),
                hook("createdb", &["db"], &["web"]),
                hook("initdb", &[], &["db"]),
                hook("flush", &["cache"], &[]),
            ],
        );
        assert_eq!(prereqs(&s, &["migrate"]), ["createdb", "initdb"]);
        assert_eq!(prereqs(&s, &["migrate", "createdb"]), ["initdb"]);
        assert!(prereqs(&s, &["flush"]).is_empty());
    }
}
