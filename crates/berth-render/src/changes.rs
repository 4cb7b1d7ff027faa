//! What changes for the services when a new desired state replaces the old one.
//!
//! One pure function decides it for everyone: converge's plan (from the files it
//! writes), the supervisor applying a new plan, and the dry run. The rules:
//!
//! - a service new to the plan **starts**; one that left it **stops**;
//! - a service whose spec (command, environment, user ...) changed **restarts**, and
//!   so does one a changed file restarts;
//! - a service a changed file reloads **reloads**, unless it restarts anyway;
//! - without an old plan (nothing was set up yet) every service starts.
//!
//! Every list is sorted and holds each name once.
//!
//! ```
//! use berth_render::service_changes;
//! use berth_supervisor_protocol::SupervisionPlan;
//!
//! let changes = service_changes(None, &SupervisionPlan::default(), &[], &[]);
//! assert!(changes.is_empty());
//! ```

use std::collections::{BTreeMap, BTreeSet};

use berth_supervisor_protocol::{ServiceSpec, SupervisionPlan};
use serde::{Deserialize, Serialize};

/// The services to restart, reload, start and stop. Sorted, each name once, and a
/// name is in at most one list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceChanges {
    /// Services whose spec or a file they read changed.
    pub restart: Vec<String>,
    /// Services a changed file asks to reload (never also in `restart`).
    pub reload: Vec<String>,
    /// Services new to the plan.
    pub start: Vec<String>,
    /// Services that left the plan.
    pub stop: Vec<String>,
}

impl ServiceChanges {
    /// Whether no service changes.
    pub fn is_empty(&self) -> bool {
        self.restart.is_empty()
            && self.reload.is_empty()
            && self.start.is_empty()
            && self.stop.is_empty()
    }

    /// The restarts and reloads asked for by changed files alone, before any plan is
    /// known (converge's view): restart wins over reload.
    pub fn of_files<'a>(
        restarts: impl IntoIterator<Item = &'a String>,
        reloads: impl IntoIterator<Item = &'a String>,
    ) -> Self {
        let restart: BTreeSet<&String> = restarts.into_iter().collect();
        let reload: BTreeSet<&String> = reloads
            .into_iter()
            .filter(|s| !restart.contains(s))
            .collect();
        Self {
            restart: restart.into_iter().cloned().collect(),
            reload: reload.into_iter().cloned().collect(),
            ..Self::default()
        }
    }
}

/// What changes for the services when `new` replaces `old` (`None`: there was no
/// plan), given the services the changed files restart and reload.
///
/// Files name services of the new plan only; a name the old plan lacks starts
/// instead, and one the new plan lacks is left out.
pub fn service_changes(
    old: Option<&SupervisionPlan>,
    new: &SupervisionPlan,
    file_restarts: &[String],
    file_reloads: &[String],
) -> ServiceChanges {
    let new_specs: BTreeMap<&str, &ServiceSpec> =
        new.services.iter().map(|s| (s.name.as_str(), s)).collect();
    let Some(old) = old else {
        return ServiceChanges {
            start: new_specs.keys().map(|&n| n.to_owned()).collect(),
            ..ServiceChanges::default()
        };
    };
    let old_specs: BTreeMap<&str, &ServiceSpec> =
        old.services.iter().map(|s| (s.name.as_str(), s)).collect();
    let in_both = |name: &String| {
        old_specs.contains_key(name.as_str()) && new_specs.contains_key(name.as_str())
    };
    let spec_changed = new_specs
        .iter()
        .filter(|(name, spec)| old_specs.get(*name).is_some_and(|old| old != *spec))
        .map(|(name, _)| (*name).to_owned())
        .collect::<Vec<_>>();
    let files = ServiceChanges::of_files(
        spec_changed
            .iter()
            .chain(file_restarts)
            .filter(|n| in_both(n)),
        file_reloads.iter().filter(|n| in_both(n)),
    );
    ServiceChanges {
        start: new_specs
            .keys()
            .filter(|n| !old_specs.contains_key(*n))
            .map(|&n| n.to_owned())
            .collect(),
        stop: old_specs
            .keys()
            .filter(|n| !new_specs.contains_key(*n))
            .map(|&n| n.to_owned())
            .collect(),
        ..files
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use berth_supervisor_protocol::RestartPolicy;

    use super::*;

    fn spec(name: &str, argv: &str) -> ServiceSpec {
        ServiceSpec {
            name: name.to_owned(),
            argv: argv.split(' ').map(str::to_owned).collect(),
            env: BTreeMap::new(),
            cwd: None,
            user: None,
            depends_on: Vec::new(),
            readiness: None,
            stop_signal: "SIGTERM".to_owned(),
            stop_timeout: Duration::from_secs(10),
            reload_signal: None,
            restart: RestartPolicy::Always,
            log_dir: PathBuf::from("/srv/app/log").join(name),
            log_max_bytes: 1024,
            log_keep: 2,
        }
    }

    fn plan(services: &[ServiceSpec]) -> SupervisionPlan {
        SupervisionPlan {
            services: services.to_vec(),
            jobs: Vec::new(),
            metrics: None,
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    /// The stack the cases start from: a database, a web app and a proxy.
    fn before() -> SupervisionPlan {
        plan(&[
            spec("db", "postgres -D /srv/app/data/db"),
            spec("web", "gunicorn app:wsgi"),
            spec("proxy", "nginx -g daemon-off"),
        ])
    }

    #[test]
    fn nothing_changed() {
        let changes = service_changes(Some(&before()), &before(), &[], &[]);
        assert!(changes.is_empty());
        insta::assert_yaml_snapshot!(changes);
    }

    #[test]
    fn no_old_plan_starts_everything() {
        // Files asking for restarts change nothing: nothing runs yet.
        let changes = service_changes(None, &before(), &names(&["web"]), &names(&["proxy"]));
        insta::assert_yaml_snapshot!(changes);
    }

    #[test]
    fn changed_files_restart_and_reload() {
        let changes = service_changes(
            Some(&before()),
            &before(),
            &names(&["web", "db", "web"]),
            &names(&["proxy"]),
        );
        insta::assert_yaml_snapshot!(changes);
    }

    #[test]
    fn restart_wins_over_reload() {
        let changes = service_changes(
            Some(&before()),
            &before(),
            &names(&["proxy"]),
            &names(&["proxy", "web"]),
        );
        insta::assert_yaml_snapshot!(changes);
    }

    #[test]
    fn a_changed_spec_restarts_even_when_a_file_would_reload_it() {
        let mut new = before();
        new.services[1].env.insert("WORKERS".into(), "9".into());
        new.services[2].argv.push("-q".into());
        let changes = service_changes(Some(&before()), &new, &[], &names(&["proxy"]));
        insta::assert_yaml_snapshot!(changes);
    }

    #[test]
    fn new_services_start_and_leaving_ones_stop() {
        let mut new = before();
        new.services.retain(|s| s.name != "proxy");
        new.services.push(spec("worker", "rq worker"));
        new.services.push(spec("cache", "redis-server"));
        // A file of the new worker asks for a restart, one of the leaving proxy for a
        // reload: the worker starts, the proxy stops, neither is restarted or reloaded.
        let changes = service_changes(
            Some(&before()),
            &new,
            &names(&["worker", "web"]),
            &names(&["proxy"]),
        );
        insta::assert_yaml_snapshot!(changes);
    }

    #[test]
    fn everything_at_once() {
        let mut new = before();
        new.services[0].user = Some("postgres".into());
        new.services.retain(|s| s.name != "web");
        new.services.push(spec("web2", "gunicorn app:wsgi"));
        let changes = service_changes(
            Some(&before()),
            &new,
            &names(&["proxy"]),
            &names(&["db", "proxy"]),
        );
        insta::assert_yaml_snapshot!(changes);
    }

    #[test]
    fn files_alone() {
        let restarts = names(&["web", "proxy"]);
        let reloads = names(&["proxy", "worker", "cache", "worker"]);
        let changes = ServiceChanges::of_files(&restarts, &reloads);
        assert_eq!(changes.restart, ["proxy", "web"]);
        assert_eq!(changes.reload, ["cache", "worker"]);
        assert!(changes.start.is_empty() && changes.stop.is_empty());
    }
}
