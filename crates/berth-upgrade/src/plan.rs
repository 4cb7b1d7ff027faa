//! The path from the running version to the target, hop by hop, from the upgrade
//! rules the manifests carry (`[upgrade]`).

use std::cmp::Ordering;
use std::collections::BTreeSet;

use berth_model::LoadedManifest;
use berth_model::version::{at_least, compare_versions, in_series};
use serde::Serialize;

/// Why an upgrade is refused before anything changes. Each says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No target manifest was given.
    #[error("no target version given: name the new version's manifest directory with `--to DIR`")]
    NoTarget,
    /// A manifest of another app.
    #[error(
        "`{given}` is a manifest of app `{given_app}`, but this instance runs `{app}`: give a manifest of `{app}`"
    )]
    OtherApp {
        /// Where that manifest is (or its version).
        given: String,
        /// The app it describes.
        given_app: String,
        /// The instance's app.
        app: String,
    },
    /// Two manifests of one version.
    #[error("two manifests given for version {version}: give one")]
    Duplicate {
        /// The version.
        version: String,
    },
    /// The target is the running version.
    #[error("{app} is already at {version}: nothing to upgrade")]
    SameVersion {
        /// The app.
        app: String,
        /// Its version.
        version: String,
    },
    /// The target is older than the running version.
    #[error(
        "{to} is older than the running {from}: downgrades are refused (the database may already hold {from}'s schema); to go back, restore a backup made on {to} with `berth restore`"
    )]
    Downgrade {
        /// The running version.
        from: String,
        /// The target.
        to: String,
    },
    /// A required stop was skipped and no manifest for it was given.
    #[error(
        "upgrading from {from} to {to} must pass through a {series}.x release first (a required upgrade stop): give that release's manifest too, e.g. `--to DIR-of-{series}.x --to DIR-of-{to}`"
    )]
    MissingStop {
        /// The running version (or the hop's start).
        from: String,
        /// The target.
        to: String,
        /// The stop's series.
        series: String,
    },
    /// A hop starts below the oldest version its target upgrades from.
    #[error(
        "{to} upgrades only from {floor} or newer, not from {from}: upgrade to a release between them first and give its manifest with another `--to`"
    )]
    BelowFloor {
        /// The hop's start.
        from: String,
        /// The hop's target.
        to: String,
        /// The target's `[upgrade] from`.
        floor: String,
    },
}

/// How a hop's migrations can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Migrations {
    /// Safe while the old release keeps serving: no downtime.
    Online,
    /// The old release must stop first: the maintenance page is served meanwhile.
    Offline,
}

/// One step of a hop, in order. `berth upgrade apply` journals each before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Disk, database version, ports, settings.
    Preflight,
    /// A verified backup of the instance (database at least).
    Backup,
    /// The new release built or installed beside the running one, which keeps serving.
    Install,
    /// Online migrations, with the old release serving.
    MigrateOnline,
    /// The maintenance page up, the old release stopped.
    Maintenance,
    /// Offline migrations, while the maintenance page answers.
    MigrateOffline,
    /// The current release switched, atomically.
    Switch,
    /// The app's services started on the new release.
    Restart,
    /// Services that declare `beside` started on their spare port beside the old
    /// release, traffic moved to them by reloading the front end, then restarted on
    /// their own port and traffic moved back; the others restarted.
    Handover,
    /// The app must answer through its front door, or everything goes back.
    HealthGate,
    /// Migrations the new release runs once it serves.
    PostDeploy,
    /// The new version recorded; the old release kept for rollback.
    Record,
}

impl Step {
    /// What the step does, in a line.
    pub fn describe(self) -> &'static str {
        match self {
            Step::Preflight => "preflight: free disk, database version, ports, settings",
            Step::Backup => "back up the instance (verified) before anything changes",
            Step::Install => "install the new release beside the running one",
            Step::MigrateOnline => "run the online migrations while the old release serves",
            Step::Maintenance => "serve the maintenance page (HTTP 503), stop the old release",
            Step::MigrateOffline => "run the migrations",
            Step::Switch => "switch the current release (one atomic rename)",
            Step::Restart => "start the app's services on the new release",
            Step::Handover => {
                "start the new release beside the old one on a spare port, reload the front end to move traffic to it, restart the service on its own port, move traffic back"
            }
            Step::HealthGate => "health gate: the app must answer, or everything goes back",
            Step::PostDeploy => {
                "run the release hooks that come after the app's services (post-deploy migrations)"
            }
            Step::Record => "record the new version, keep the old release for rollback",
        }
    }
}

/// One hop: from a version to the next on the path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hop {
    /// The version it starts from.
    pub from: String,
    /// The version it reaches.
    pub to: String,
    /// Index of `to`'s manifest among those given.
    #[serde(skip)]
    pub manifest: usize,
    /// How its migrations run.
    pub migrations: Migrations,
    /// The target's services that start beside themselves on an online hop
    /// (`beside`), enabled or not.
    pub beside: Vec<String>,
    /// What it does, in order.
    pub steps: Vec<Step>,
}

impl Hop {
    /// The expected downtime, in words.
    pub fn downtime(&self) -> String {
        match self.migrations {
            Migrations::Online if !self.beside.is_empty() => format!(
                "none: the old release serves while the migrations run, then {} start(s) \
                 beside it and a reload of the front end moves traffic; other services restart",
                self.beside.join(", ")
            ),
            Migrations::Online => {
                "a restart of the app's services: the old release serves while the migrations run"
                    .to_owned()
            }
            Migrations::Offline => {
                "the maintenance page (HTTP 503, Retry-After) while the migrations run".to_owned()
            }
        }
    }
}

/// A setting the site config sets that a hop renames or removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettingChange {
    /// The setting, `group.key`, as the site config has it before the hop.
    pub key: String,
    /// The version that renamed or removed it.
    pub since: String,
    /// Its new name, when renamed: `berth config migrate` moves the value there.
    pub renamed_to: Option<String>,
    /// The vendor's words.
    pub message: String,
}

/// The whole upgrade, before anything changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpgradePlan {
    /// The app.
    pub app: String,
    /// The running version.
    pub from: String,
    /// The target.
    pub to: String,
    /// The hops, in order: through every required stop, then to the target.
    pub hops: Vec<Hop>,
    /// Settings of the site config renamed or removed on the way.
    pub settings: Vec<SettingChange>,
    /// Versions given that the path does not need.
    pub unused: Vec<String>,
}

impl UpgradePlan {
    /// The renames `berth config migrate` applies, in order (old key, new key).
    pub fn renames(&self) -> Vec<(String, String)> {
        self.settings
            .iter()
            .filter_map(|s| s.renamed_to.clone().map(|to| (s.key.clone(), to)))
            .collect()
    }
}

/// The plan to take app `app`, running `current`, to the newest of `targets` (the
/// others may be required stops on the way), for a site config that sets `site_keys`
/// (`group.key`).
///
/// The stops are those of every manifest given (the newest knows them all). A hop's
/// migrations are online when its target's `online_from` is at or below the hop's
/// start; its floor is its target's `[upgrade] from`. Settings are those a hop's target
/// renamed or removed in a version after the hop's start, that the site config sets
/// (following earlier renames).
pub fn plan(
    app: &str,
    current: &str,
    targets: &[&LoadedManifest],
    site_keys: &BTreeSet<String>,
) -> Result<UpgradePlan, Refused> {
    let order = ordered(app, targets)?;
    let &last = order.last().ok_or(Refused::NoTarget)?;
    let to = version_of(targets, last).to_owned();
    match compare_versions(&to, current) {
        Ordering::Equal => {
            return Err(Refused::SameVersion {
                app: app.to_owned(),
                version: to,
            });
        }
        Ordering::Less => {
            return Err(Refused::Downgrade {
                from: current.to_owned(),
                to,
            });
        }
        Ordering::Greater => {}
    }
    let path = path(current, targets, &order)?;
    let (hops, settings) = hops(current, targets, &path, site_keys)?;
    let unused = order
        .iter()
        .filter(|i| !path.contains(i))
        .map(|&i| version_of(targets, i).to_owned())
        .collect();
    Ok(UpgradePlan {
        app: app.to_owned(),
        from: current.to_owned(),
        to,
        hops,
        settings,
        unused,
    })
}

fn version_of<'m>(targets: &[&'m LoadedManifest], i: usize) -> &'m str {
    targets[i].manifest.app.version.as_str()
}

/// The indices of `targets`, oldest version first; each must be of `app`, one per version.
fn ordered(app: &str, targets: &[&LoadedManifest]) -> Result<Vec<usize>, Refused> {
    for m in targets {
        if m.manifest.app.name != app {
            return Err(Refused::OtherApp {
                given: m.source_name.clone(),
                given_app: m.manifest.app.name.clone(),
                app: app.to_owned(),
            });
        }
    }
    let mut order: Vec<usize> = (0..targets.len()).collect();
    order.sort_by(|&a, &b| compare_versions(version_of(targets, a), version_of(targets, b)));
    for w in order.windows(2) {
        if compare_versions(version_of(targets, w[0]), version_of(targets, w[1])) == Ordering::Equal
        {
            return Err(Refused::Duplicate {
                version: version_of(targets, w[0]).to_owned(),
            });
        }
    }
    Ok(order)
}

/// The manifests the path visits, in order, ending with the newest: a release of each
/// stop (of any manifest given) the running version is not yet at and the target is
/// past, the newest release given of that series.
fn path(
    current: &str,
    targets: &[&LoadedManifest],
    order: &[usize],
) -> Result<Vec<usize>, Refused> {
    let last = *order.last().ok_or(Refused::NoTarget)?;
    let to = version_of(targets, last);
    let mut stops: Vec<&str> = targets
        .iter()
        .flat_map(|m| m.manifest.upgrade.stops.iter().map(String::as_str))
        .collect();
    stops.sort_by(|a, b| compare_versions(a, b));
    stops.dedup();
    let mut path: Vec<usize> = Vec::new();
    let mut at = current;
    for series in stops {
        if at_least(at, series) || !is_past(to, series) {
            continue;
        }
        let stop = order
            .iter()
            .rev()
            .copied()
            .find(|&i| {
                in_series(version_of(targets, i), series)
                    && compare_versions(version_of(targets, i), at).is_gt()
            })
            .ok_or_else(|| Refused::MissingStop {
                from: at.to_owned(),
                to: to.to_owned(),
                series: series.to_owned(),
            })?;
        path.push(stop);
        at = version_of(targets, stop);
    }
    path.push(last);
    Ok(path)
}

/// Each hop of `path` from `current`: its floor checked, its migrations, its steps; and
/// the settings of `site_keys` the hops rename or remove (following renames).
fn hops(
    current: &str,
    targets: &[&LoadedManifest],
    path: &[usize],
    site_keys: &BTreeSet<String>,
) -> Result<(Vec<Hop>, Vec<SettingChange>), Refused> {
    let mut hops = Vec::new();
    let mut settings = Vec::new();
    let mut keys = site_keys.clone();
    let mut from = current;
    for &i in path {
        let rules = &targets[i].manifest.upgrade;
        let hop_to = version_of(targets, i);
        if let Some(floor) = &rules.from
            && !at_least(from, floor)
        {
            return Err(Refused::BelowFloor {
                from: from.to_owned(),
                to: hop_to.to_owned(),
                floor: floor.clone(),
            });
        }
        let migrations = match &rules.online_from {
            Some(f) if at_least(from, f) => Migrations::Online,
            _ => Migrations::Offline,
        };
        for c in &rules.settings {
            let in_hop = compare_versions(&c.since, from).is_gt()
                && compare_versions(&c.since, hop_to).is_le();
            if in_hop && keys.remove(&c.key) {
                if let Some(new) = &c.renamed_to {
                    keys.insert(new.clone());
                }
                settings.push(SettingChange {
                    key: c.key.clone(),
                    since: c.since.clone(),
                    renamed_to: c.renamed_to.clone(),
                    message: c.message.clone(),
                });
            }
        }
        let beside: Vec<String> = targets[i]
            .manifest
            .services
            .iter()
            .filter(|(_, s)| s.beside.is_some())
            .map(|(name, _)| name.clone())
            .collect();
        hops.push(Hop {
            from: from.to_owned(),
            to: hop_to.to_owned(),
            manifest: i,
            migrations,
            steps: steps(migrations, !beside.is_empty()),
            beside,
        });
        from = hop_to;
    }
    Ok((hops, settings))
}

/// Whether `version` is beyond series `series` (newer, and not one of its releases).
fn is_past(version: &str, series: &str) -> bool {
    !in_series(version, series) && compare_versions(version, series).is_gt()
}

fn steps(migrations: Migrations, beside: bool) -> Vec<Step> {
    match migrations {
        Migrations::Online => vec![
            Step::Preflight,
            Step::Backup,
            Step::Install,
            Step::MigrateOnline,
            Step::Switch,
            if beside {
                Step::Handover
            } else {
                Step::Restart
            },
            Step::HealthGate,
            Step::PostDeploy,
            Step::Record,
        ],
        Migrations::Offline => vec![
            Step::Preflight,
            Step::Backup,
            Step::Install,
            Step::Maintenance,
            Step::MigrateOffline,
            Step::Switch,
            Step::Restart,
            Step::HealthGate,
            Step::PostDeploy,
            Step::Record,
        ],
    }
}
