//! `berth upgrade apply`, `resume` and `abort`: an upgrade plan ([`berth_upgrade`])
//! carried out one hop at a time on the instance.
//!
//! Each hop is one run in the history, its steps journaled in the state database and
//! in `state/upgrade.json` ([`journal`]) before each runs:
//!
//! 1. `preflight`: the new manifest accepts the site config; the instance is running;
//! 2. `backup`: a backup like `berth backup create` (database and data), kept in the
//!    backup target;
//! 3. `install`: system packages and the bundled components of the new release,
//!    built beside the running one, which keeps serving;
//! 4. `maintenance` (offline migrations only): the maintenance page up, then the
//!    services of bundled components stopped (the front end keeps answering, 503);
//! 5. `switch`: `up` with the new manifest: config written, the stored manifest
//!    exchanged for the new one in one rename, the release's hooks (migrations) run
//!    before the services they gate restart, the maintenance page taken down once every
//!    service is started, then the app's health URL must answer;
//! 6. `health-gate`: every service of the new plan ready;
//! 7. `record`: old releases beyond `upgrade.keep_releases` removed.
//!
//! A failing step rolls the hop back ([`rollback`]): before `switch` began, the old
//! release simply starts again; after, the pre-upgrade backup is restored in place
//! (database, data, site config) with the old manifest.

pub mod auto;
pub mod journal;
mod rollback;
mod steps;

use std::path::{Path, PathBuf};

use berth_backup::{BackupError, Result};
use berth_lifecycle::{Locate, Progress, upgrade};
use berth_render::Paths;

pub use journal::{Journal, refuse_if_unfinished};
pub use steps::{copy_manifest, maintenance, remove_maintenance_page};

/// What an upgrade did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ApplyReport {
    /// The app.
    pub app: String,
    /// The version it ran before.
    pub from: String,
    /// The version it runs now.
    pub to: String,
    /// Each hop done by this command.
    pub hops: Vec<HopReport>,
}

/// One hop done.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HopReport {
    /// From this version.
    pub from: String,
    /// To this one.
    pub to: String,
    /// Whether its migrations were offline.
    pub offline: bool,
    /// The pre-upgrade backup (archive name in the backup target).
    pub backup: Option<String>,
    /// Seconds per step, in order.
    pub steps: Vec<(String, f64)>,
    /// How long the maintenance page was up, in seconds (offline hops).
    pub maintenance_seconds: Option<f64>,
    /// Whole hop, in seconds.
    pub seconds: f64,
}

/// What the command line gives every upgrade command.
pub struct Context<'a> {
    /// `--prefix`, `--config` (`--manifest` is refused: the manifests are the
    /// instance's and the targets').
    pub loc: &'a Locate,
    /// This berth binary (installed into the instance by `up`).
    pub berth_exe: &'a Path,
    /// Where progress goes.
    pub progress: &'a dyn Progress,
    /// Whether this is an automatic upgrade (the supervisor's job): said in the history.
    pub automatic: bool,
}

impl Context<'_> {
    /// The instance at `prefix` with the kept manifest of `version`.
    fn locate(&self, prefix: &Path, version: &str) -> Locate {
        Locate {
            prefix: Some(prefix.to_path_buf()),
            manifest: Some(kept_manifest(prefix, version)),
            config: self.loc.config.clone(),
            embedded: None,
            payload: staged_payload(prefix, version),
        }
    }
}

/// The built components of `version` when it came in a release bundle, unpacked (and
/// checked) by `upgrade apply --bundle` into `tmp/release-<version>/payload/`.
fn staged_payload(prefix: &Path, version: &str) -> Option<PathBuf> {
    let dir = Paths::unversioned(prefix)
        .release_staging(version)
        .join("payload");
    std::fs::symlink_metadata(&dir)
        .is_ok_and(|m| m.is_dir())
        .then_some(dir)
}

/// Where an unfinished upgrade keeps the manifest of `version`.
fn kept_manifest(prefix: &Path, version: &str) -> PathBuf {
    Paths::unversioned(prefix).upgrade_manifests().join(version)
}

/// `berth upgrade apply --to DIR…`: plan, check, then carry out every hop. A failing
/// hop is rolled back and the error says what failed; hops done before it stay done.
pub fn apply(ctx: &Context<'_>, to: &[PathBuf]) -> Result<ApplyReport> {
    let inst = upgrade::installed(ctx.loc)?;
    let prefix = inst.prefix.clone();
    let paths = Paths::unversioned(&prefix);
    refuse_if_unfinished(&prefix, "upgrade apply")?;
    if paths.restore_journal().exists() {
        return Err(BackupError::Cannot {
            what: "A restore of this instance is unfinished".to_owned(),
            hint: "finish it first: `berth restore --resume` or `berth restore --abort`".to_owned(),
        });
    }
    let targets = upgrade::load_targets(to)?;
    let plan = upgrade::plan(&inst, &targets)?;
    let failed: Vec<String> = upgrade::preflight(&inst, &plan, &targets)
        .into_iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.what, c.detail))
        .collect();
    if !failed.is_empty() {
        return Err(BackupError::Cannot {
            what: format!(
                "The upgrade cannot begin; nothing was changed:\n  {}",
                failed.join("\n  ")
            ),
            hint: "`berth upgrade plan --to …` shows every check".to_owned(),
        });
    }
    if !berth_lifecycle::supervisor::is_running(&paths) {
        return Err(BackupError::Cannot {
            what: format!("{} is not running", plan.app),
            hint: "start it with `berth up`, then upgrade (the backup an upgrade takes first needs its database)".to_owned(),
        });
    }
    // The manifests are copied now and the copies are what the upgrade uses, so a
    // directory changed meanwhile (or gone before a resume) changes nothing.
    let kept = paths.upgrade_manifests();
    berth_host::beneath::remove_tree_at(&kept)?;
    berth_host::fsutil::ensure_dir(&kept, 0o700)?;
    let stored = paths.manifest_dir();
    steps::copy_manifest(&stored, &inst.manifest, &kept.join(&plan.from))?;
    for hop in &plan.hops {
        let dir = &to[hop.manifest];
        steps::copy_manifest(dir, &targets[hop.manifest], &kept.join(&hop.to))?;
    }
    let j = Journal {
        app: plan.app.clone(),
        started_from: plan.from.clone(),
        hops: plan
            .hops
            .iter()
            .map(|h| journal::Hop {
                from: h.from.clone(),
                to: h.to.clone(),
                offline: h.migrations == berth_upgrade::Migrations::Offline,
            })
            .collect(),
        begun: Vec::new(),
        done: Vec::new(),
        backup: None,
        run: None,
        rolling_back: None,
    };
    journal::save(&paths, &j)?;
    berth_lifecycle::fault::point("upgrade:journal");
    run_hops(ctx, &prefix, j)
}

/// `berth upgrade resume`: go on with an unfinished upgrade from the first step not
/// done (an interrupted rollback is finished instead).
pub fn resume(ctx: &Context<'_>) -> Result<ApplyReport> {
    let (prefix, j) = unfinished(ctx)?;
    if let Some(why) = j.rolling_back.clone() {
        rollback::rollback(ctx, &prefix, j, &why)?;
        return Err(BackupError::Cannot {
            what: format!("The upgrade had failed ({why}); its rollback is now finished"),
            hint: "`berth history` shows what happened; fix the cause, then `berth upgrade apply` again".to_owned(),
        });
    }
    run_hops(ctx, &prefix, j)
}

/// What `berth upgrade abort` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AbortReport {
    /// The version the instance runs again.
    pub version: String,
    /// Whether the pre-upgrade backup was restored (migrations may have run).
    pub restored: bool,
    /// Whether the old release had stopped and was started again.
    pub restarted: bool,
}

/// `berth upgrade abort`: put the current hop back (hops finished before it stay).
pub fn abort(ctx: &Context<'_>) -> Result<AbortReport> {
    let (prefix, j) = unfinished(ctx)?;
    let why = j
        .rolling_back
        .clone()
        .unwrap_or_else(|| "aborted by `berth upgrade abort`".to_owned());
    rollback::rollback(ctx, &prefix, j, &why)
}

fn unfinished(ctx: &Context<'_>) -> Result<(PathBuf, Journal)> {
    if ctx.loc.manifest.is_some() {
        return Err(BackupError::Cannot {
            what: "`--manifest` is not taken here: the upgrade uses the manifests it kept when it began".to_owned(),
            hint: "leave `--manifest` out".to_owned(),
        });
    }
    let paths = berth_lifecycle::paths(ctx.loc)?;
    let prefix = paths.prefix.clone();
    match journal::load(&Paths::unversioned(&prefix))? {
        Some(j) if j.hop().is_some() => Ok((prefix, j)),
        _ => Err(BackupError::Cannot {
            what: format!("No unfinished upgrade in {}", prefix.display()),
            hint: "`berth upgrade apply --to DIR` begins one".to_owned(),
        }),
    }
}

/// Carry out the hops of `j`, one after the other, rolling back the one that fails.
fn run_hops(ctx: &Context<'_>, prefix: &Path, mut j: Journal) -> Result<ApplyReport> {
    let paths = Paths::unversioned(prefix);
    let from = j.hop().map(|h| h.from.clone()).unwrap_or_default();
    let app = j.app.clone();
    let mut reports = Vec::new();
    while let Some(hop) = j.hop().cloned() {
        match steps::hop(ctx, prefix, &mut j) {
            Ok(report) => {
                reports.push(report);
                j.next_hop();
                if j.hops.is_empty() {
                    journal::remove(&paths)?;
                } else {
                    journal::save(&paths, &j)?;
                }
            }
            Err(e) => {
                let why = berth_lifecycle::run::error_text(&e);
                let back = rollback::rollback(ctx, prefix, j, &why);
                let logs = paths.log.display().to_string();
                return Err(match back {
                    Ok(_) => BackupError::Cannot {
                        what: format!(
                            "The upgrade from {} to {} failed and was rolled back; {app} {} is running again. What failed: {why}",
                            hop.from, hop.to, hop.from
                        ),
                        hint: format!(
                            "`berth history` shows the failed step; the logs are under {logs} (hooks: {logs}/hooks/)"
                        ),
                    },
                    Err(back) => BackupError::Cannot {
                        what: format!(
                            "The upgrade from {} to {} failed ({why}), and so did its rollback: {}",
                            hop.from,
                            hop.to,
                            berth_lifecycle::run::error_text(&back)
                        ),
                        hint: "run `berth upgrade abort` to finish the rollback".to_owned(),
                    },
                });
            }
        }
    }
    Ok(ApplyReport {
        app,
        from,
        to: reports.last().map(|r| r.to.clone()).unwrap_or_default(),
        hops: reports,
    })
}
