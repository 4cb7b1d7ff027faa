//! The dependency graph between services: validation, start order, stop order.
//!
//! Orders are returned as *levels*: every service in a level may start (or stop)
//! at the same time, and a level only begins once the previous one is done.

use std::collections::{BTreeMap, BTreeSet};

use berth_supervisor_protocol::SupervisionPlan;

use crate::process::parse_signal;

/// `depends_on` per service name.
pub(crate) type Deps = BTreeMap<String, Vec<String>>;

/// Check names are unique, dependencies and job requirements exist, there is no
/// cycle and every signal name parses.
pub(crate) fn validate(plan: &SupervisionPlan) -> Result<(), String> {
    let mut deps = Deps::new();
    for service in &plan.services {
        if service.argv.is_empty() {
            return Err(format!(
                "service `{}` has an empty command line",
                service.name
            ));
        }
        if deps
            .insert(service.name.clone(), service.depends_on.clone())
            .is_some()
        {
            return Err(format!("service `{}` is defined twice", service.name));
        }
        parse_signal(&service.stop_signal)
            .map_err(|err| format!("service `{}`: stop_signal {err}", service.name))?;
        if let Some(reload) = &service.reload_signal {
            parse_signal(reload)
                .map_err(|err| format!("service `{}`: reload_signal {err}", service.name))?;
        }
    }
    for (name, wants) in &deps {
        for dep in wants {
            if !deps.contains_key(dep) {
                return Err(format!(
                    "service `{name}` depends on `{dep}`, which is not in the plan"
                ));
            }
        }
    }
    let mut jobs = BTreeSet::new();
    for job in &plan.jobs {
        if job.argv.is_empty() {
            return Err(format!("job `{}` has an empty command line", job.name));
        }
        if !jobs.insert(job.name.as_str()) {
            return Err(format!("job `{}` is defined twice", job.name));
        }
        if job.every.is_zero() {
            return Err(format!("job `{}` has a zero interval", job.name));
        }
        if let Some(missing) = job.requires.iter().find(|r| !deps.contains_key(*r)) {
            return Err(format!(
                "job `{}` requires `{missing}`, which is not in the plan",
                job.name
            ));
        }
    }
    depths(&deps).map(drop)
}

/// Depth of each service: 0 without dependencies, else one more than its deepest dependency.
fn depths(deps: &Deps) -> Result<BTreeMap<&str, usize>, String> {
    fn visit<'a>(
        name: &'a str,
        deps: &'a Deps,
        done: &mut BTreeMap<&'a str, usize>,
        path: &mut Vec<&'a str>,
    ) -> Result<usize, String> {
        if let Some(depth) = done.get(name) {
            return Ok(*depth);
        }
        if let Some(at) = path.iter().position(|p| *p == name) {
            let mut cycle: Vec<&str> = path[at..].to_vec();
            cycle.push(name);
            return Err(format!(
                "services depend on each other in a cycle: {}",
                cycle.join(" -> ")
            ));
        }
        path.push(name);
        let mut depth = 0;
        for dep in deps.get(name).into_iter().flatten() {
            if deps.contains_key(dep) {
                depth = depth.max(visit(dep, deps, done, path)? + 1);
            }
        }
        path.pop();
        done.insert(name, depth);
        Ok(depth)
    }
    let mut done = BTreeMap::new();
    for name in deps.keys() {
        visit(name, deps, &mut done, &mut Vec::new())?;
    }
    Ok(done)
}

fn group_by_depth(deps: &Deps, chosen: &BTreeSet<String>) -> Vec<Vec<String>> {
    // A validated graph has no cycle; an unvalidated one degrades to one level.
    let depth = depths(deps).unwrap_or_default();
    let mut levels: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for name in chosen {
        levels
            .entry(depth.get(name.as_str()).copied().unwrap_or(0))
            .or_default()
            .push(name.clone());
    }
    levels.into_values().collect()
}

/// `targets` plus everything they (transitively) depend on, dependencies first.
pub(crate) fn start_levels(deps: &Deps, targets: &[String]) -> Vec<Vec<String>> {
    let mut chosen = BTreeSet::new();
    let mut todo: Vec<&String> = targets.iter().collect();
    while let Some(name) = todo.pop() {
        if chosen.insert(name.clone()) {
            todo.extend(deps.get(name).into_iter().flatten());
        }
    }
    group_by_depth(deps, &chosen)
}

/// `targets` plus everything that (transitively) depends on them, dependents first.
pub(crate) fn stop_levels(deps: &Deps, targets: &[String]) -> Vec<Vec<String>> {
    let mut chosen: BTreeSet<String> = targets.iter().cloned().collect();
    loop {
        let more: Vec<String> = deps
            .iter()
            .filter(|(name, wants)| {
                !chosen.contains(*name) && wants.iter().any(|w| chosen.contains(w))
            })
            .map(|(name, _)| name.clone())
            .collect();
        if more.is_empty() {
            break;
        }
        chosen.extend(more);
    }
    let mut levels = group_by_depth(deps, &chosen);
    levels.reverse();
    levels
}

/// "Unknown service `wbe`; did you mean `web`?"
pub(crate) fn unknown(
    kind: &str,
    name: &str,
    known: impl IntoIterator<Item = impl AsRef<str>>,
) -> String {
    // Close means a couple of edits (a swap counts as one) or a shared long prefix.
    let best = known
        .into_iter()
        .map(|k| {
            let k = k.as_ref();
            (
                strsim::damerau_levenshtein(name, k),
                strsim::jaro_winkler(name, k),
                k.to_owned(),
            )
        })
        .filter(|(edits, similarity, _)| (*edits <= 2 && *edits < name.len()) || *similarity > 0.9)
        .min_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)))
        .map(|(_, _, k)| k);
    match best {
        Some(suggestion) => format!("Unknown {kind} `{name}`; did you mean `{suggestion}`?"),
        None => format!("Unknown {kind} `{name}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deps(pairs: &[(&str, &[&str])]) -> Deps {
        pairs
            .iter()
            .map(|(n, d)| ((*n).to_owned(), d.iter().map(|s| (*s).to_owned()).collect()))
            .collect()
    }

    #[test]
    fn orders() {
        let d = deps(&[
            ("db", &[]),
            ("cache", &[]),
            ("web", &["db", "cache"]),
            ("proxy", &["web"]),
            ("other", &[]),
        ]);
        assert_eq!(
            start_levels(&d, &["proxy".into()]),
            vec![vec!["cache", "db"], vec!["web"], vec!["proxy"]]
        );
        assert_eq!(
            stop_levels(&d, &["db".into()]),
            vec![vec!["proxy"], vec!["web"], vec!["db"]]
        );
    }

    #[test]
    fn cycles_and_suggestions() {
        let d = deps(&[("a", &["b"]), ("b", &["a"])]);
        assert!(depths(&d).unwrap_err().contains("cycle"));
        assert_eq!(
            unknown("service", "wbe", ["web", "db"]),
            "Unknown service `wbe`; did you mean `web`?"
        );
        assert_eq!(unknown("service", "zzz", ["web"]), "Unknown service `zzz`");
    }
}
