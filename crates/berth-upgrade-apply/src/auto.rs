//! `berth upgrade auto`, which the supervisor's `berth-upgrade` job runs every
//! `upgrade.check_every` when `upgrade.auto` is on: inside `upgrade.window`, the newest
//! version in `upgrade.source` that `upgrade.auto` allows, upgraded to by the same plan,
//! checks and rollback as `berth upgrade apply`.

use std::path::{Path, PathBuf};

use berth_backup::{BackupError, Result};
use berth_lifecycle::instance;
use berth_model::LoadedManifest;
use berth_model::version::compare_versions;
use berth_render::{AutoUpgrade, UpgradePolicy};

use crate::{ApplyReport, Context};

/// What `berth upgrade auto` did.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum AutoOutcome {
    /// `upgrade.auto` is `off`.
    Off,
    /// Now is outside `upgrade.window`.
    OutsideWindow {
        /// The window, `HH:MM-HH:MM` UTC.
        window: String,
    },
    /// No newer version the policy allows is in the source.
    UpToDate {
        /// The running version.
        version: String,
    },
    /// Upgraded.
    Upgraded(ApplyReport),
}

/// `berth upgrade auto` at `minute` (after midnight UTC).
pub fn auto(ctx: &Context<'_>, minute: u16) -> Result<AutoOutcome> {
    if ctx.loc.manifest.is_some() {
        return Err(BackupError::Cannot {
            what: "`--manifest` is not taken here: the instance runs the manifest it keeps"
                .to_owned(),
            hint: "leave `--manifest` out".to_owned(),
        });
    }
    let inst = instance::open(ctx.loc)?;
    let state = berth_lifecycle::desired::preview(&inst)?;
    let policy = &state.upgrade_policy;
    if policy.auto == AutoUpgrade::Off {
        return Ok(AutoOutcome::Off);
    }
    if !policy.in_window(minute) {
        return Ok(AutoOutcome::OutsideWindow {
            window: window_text(policy),
        });
    }
    let source = policy.source.clone().ok_or_else(|| BackupError::Cannot {
        what: "`upgrade.auto` is on but `upgrade.source` is empty".to_owned(),
        hint: "set `upgrade.source` in the site config to the directory holding the new versions' manifest directories, then `berth reconfigure`".to_owned(),
    })?;
    let app = &inst.manifest.manifest.app;
    let found = candidates(&source, &app.name, &app.version, ctx.progress, |v| {
        allowed(policy.auto, &app.version, v)
    })?;
    let Some(newest) = found.last() else {
        return Ok(AutoOutcome::UpToDate {
            version: app.version.clone(),
        });
    };
    ctx.progress.note(&format!(
        "Automatic upgrade of {} {} to {} (from {})",
        app.name,
        app.version,
        newest.1,
        source.display()
    ));
    let dirs: Vec<PathBuf> = found.into_iter().map(|(d, _)| d).collect();
    crate::apply(ctx, &dirs).map(AutoOutcome::Upgraded)
}

/// Every version of `app` in `source` newer than `current`, whatever `upgrade.auto`
/// allows, oldest first with its manifest directory: what an administrator may
/// upgrade to by hand (the console lists them).
///
/// # Errors
/// `source` cannot be read.
pub fn available(
    source: &Path,
    app: &str,
    current: &str,
    progress: &dyn berth_lifecycle::Progress,
) -> Result<Vec<(PathBuf, String)>> {
    candidates(source, app, current, progress, |_| true)
}

/// The manifest directories under `source` of `app` newer than `current` that `keep`
/// accepts, oldest first with their versions. A directory whose manifest does not
/// load is skipped with a note (it may be half copied); so is another app's.
fn candidates(
    source: &Path,
    app: &str,
    current: &str,
    progress: &dyn berth_lifecycle::Progress,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<(PathBuf, String)>> {
    let entries =
        std::fs::read_dir(source).map_err(BackupError::io("read the upgrade source", source))?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        if !dir.join("berth.toml").is_file() {
            continue;
        }
        let m = match LoadedManifest::load(&dir)
            .map_err(|d| d.to_string())
            .and_then(|m| {
                berth_model::validate(&m)
                    .map(|()| m)
                    .map_err(|d| d.to_string())
            }) {
            Ok(m) => m,
            Err(e) => {
                progress.note(&format!("Skipping `{}`: {e}", dir.display()));
                continue;
            }
        };
        let version = m.manifest.app.version.clone();
        if m.manifest.app.name == app
            && compare_versions(&version, current).is_gt()
            && keep(&version)
        {
            out.push((dir, version));
        }
    }
    out.sort_by(|a, b| compare_versions(&a.1, &b.1));
    Ok(out)
}

/// Whether `auto` allows going from `current` to `candidate`: `patch` within the same
/// `major.minor`, `minor` within the same major.
pub fn allowed(auto: AutoUpgrade, current: &str, candidate: &str) -> bool {
    let parts = match auto {
        AutoUpgrade::Off => return false,
        AutoUpgrade::Patch => 2,
        AutoUpgrade::Minor => 1,
    };
    let series = |v: &str| -> Vec<String> {
        // The upstream part: no epoch, no Debian revision or pre-release suffix.
        let v = v.split_once(':').map_or(v, |(_, rest)| rest);
        let v = v.split(['-', '~', '+']).next().unwrap_or(v);
        v.split('.').take(parts).map(str::to_owned).collect()
    };
    let (a, b) = (series(current), series(candidate));
    a.len() == parts && a == b
}

fn window_text(p: &UpgradePolicy) -> String {
    let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
    format!("{}-{} UTC", hm(p.window.0), hm(p.window.1))
}

/// Minutes after midnight UTC, now.
pub fn minute_now() -> u16 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    u16::try_from(secs % 86_400 / 60).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use berth_render::AutoUpgrade::{Minor, Off, Patch};

    /// `patch` stays in the minor series, `minor` in the major one, `off` nowhere.
    #[test]
    fn how_far_each_policy_goes() {
        assert!(super::allowed(Patch, "4.7.0", "4.7.3"));
        assert!(!super::allowed(Patch, "4.7.0", "4.8.0"));
        assert!(super::allowed(Minor, "4.7.0", "4.9.1"));
        assert!(!super::allowed(Minor, "4.7.0", "5.0.0"));
        assert!(!super::allowed(Off, "4.7.0", "4.7.1"));
        assert!(super::allowed(Patch, "1:4.7.0-2", "1:4.7.1~rc1"));
        assert!(!super::allowed(Patch, "4", "4.0.1"));
    }

    /// A window that passes midnight holds the minutes on both sides of it.
    #[test]
    fn windows_pass_midnight() {
        let mut p = berth_render::UpgradePolicy {
            auto: Patch,
            source: None,
            window: (23 * 60, 60),
            check_every: std::time::Duration::from_hours(1),
            keep_releases: 2,
        };
        assert!(p.in_window(23 * 60 + 30) && p.in_window(30) && !p.in_window(61));
        p.window = (180, 300);
        assert!(p.in_window(180) && p.in_window(299) && !p.in_window(300) && !p.in_window(0));
        assert_eq!(super::window_text(&p), "03:00-05:00 UTC");
    }
}
