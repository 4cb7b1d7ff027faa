//! `berth upgrade plan` and `berth config migrate`: the instance's facts (its installed
//! version, the settings its site config sets) handed to the pure planner
//! ([`berth_upgrade`]), and the site config rewritten for renamed settings.
//!
//! The site config is read as plain TOML here, not checked against a manifest: before
//! an upgrade it may already hold a name only the new version knows, after one a name
//! only the old version knew.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use berth_model::LoadedManifest;
use berth_target::human_bytes;
use berth_upgrade::UpgradePlan;

use crate::error::{LifecycleError, Result};
use crate::instance::{Locate, ManifestOrigin};

/// An installed instance as an upgrade sees it.
pub struct Installed {
    /// Its prefix.
    pub prefix: PathBuf,
    /// The manifest it was set up with (its version is the running one).
    pub manifest: LoadedManifest,
    /// Its site config file.
    pub config_path: PathBuf,
    /// The site config's text (empty when there is none).
    pub site: String,
}

/// The instance `global` names, which must have been set up (`--manifest` is refused:
/// the running version is the one the instance was set up with).
pub fn installed(global: &Locate) -> Result<Installed> {
    let facts = berth_host::facts::probe();
    let (prefix, manifest, origin) = crate::instance::locate(global, &facts)?;
    if !matches!(origin, ManifestOrigin::Stored(_)) {
        return Err(LifecycleError::UpgradeNeedsInstance { prefix });
    }
    let config_path = crate::instance::config_path(global, &prefix)?;
    let site = match berth_model::read_input(
        &config_path,
        "the site config",
        "the site config must be a regular UTF-8 file",
    ) {
        Ok(t) => t,
        Err(berth_model::InputError::Missing(_)) => String::new(),
        Err(e) => return Err(e.into_diagnostics().into()),
    };
    Ok(Installed {
        prefix,
        manifest,
        config_path,
        site,
    })
}

/// The target manifests (`--to DIR`, one per version), each loaded and validated.
pub fn load_targets(dirs: &[PathBuf]) -> Result<Vec<LoadedManifest>> {
    dirs.iter()
        .map(|dir| {
            if std::fs::symlink_metadata(dir.join("berth.toml")).is_err() {
                return Err(LifecycleError::NoManifest(dir.join("berth.toml")));
            }
            let m = LoadedManifest::load(dir)?;
            berth_model::validate(&m)?;
            Ok(m)
        })
        .collect()
}

/// The settings `site` sets, `group.key` (its top-level keys such as `external_url`
/// are not settings). A site config that is not TOML sets none: parsing it later says
/// where it is wrong.
pub fn site_keys(site: &str) -> BTreeSet<String> {
    let Ok(table) = site.parse::<toml::Table>() else {
        return BTreeSet::new();
    };
    table
        .iter()
        .filter_map(|(g, v)| v.as_table().map(|t| (g, t)))
        .flat_map(|(g, t)| t.keys().map(move |k| format!("{g}.{k}")))
        .collect()
}

/// The upgrade plan from the version the instance runs to the newest of `targets`.
pub fn plan(inst: &Installed, targets: &[LoadedManifest]) -> Result<UpgradePlan> {
    let app = &inst.manifest.manifest.app;
    let refs: Vec<&LoadedManifest> = targets.iter().collect();
    Ok(berth_upgrade::plan(
        &app.name,
        &app.version,
        &refs,
        &site_keys(&inst.site),
    )?)
}

/// One preflight check of an upgrade plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// What was checked: `disk`, `settings`, `database`.
    pub what: &'static str,
    /// Whether the upgrade can go ahead as far as this check goes.
    pub ok: bool,
    /// What was found, and the fix when not ok.
    pub detail: String,
}

/// The checks an upgrade must pass before anything changes, as far as they can be made
/// without running it: free disk for the new releases and the pre-upgrade backups, the
/// settings to rename or remove first, the database server staying the same.
pub fn preflight(inst: &Installed, plan: &UpgradePlan, targets: &[LoadedManifest]) -> Vec<Check> {
    let paths = berth_render::Paths::unversioned(&inst.prefix);
    let current = &inst.manifest.manifest.app.version;
    let release = berth_host::fsutil::tree_size(&paths.releases().join(current));
    let data = berth_host::fsutil::tree_size(&paths.data);
    let hops = u64::try_from(plan.hops.len()).unwrap_or(u64::MAX);
    // Each hop installs a release about the size of the current one and backs up
    // the data (the database cluster's files bound its dump from above).
    let need = hops.saturating_mul(release.saturating_add(data));
    let free = nix::sys::statvfs::statvfs(&inst.prefix)
        .map(|s| s.blocks_available().saturating_mul(s.fragment_size()))
        .ok();
    let mut checks = vec![match free {
        Some(free) => Check {
            what: "disk",
            ok: free >= need,
            detail: format!(
                "about {} needed ({hops} hop(s), each a release like the current one, {}, and a backup of the data, at most {}); {} free on the prefix's filesystem{}",
                human_bytes(need),
                human_bytes(release),
                human_bytes(data),
                human_bytes(free),
                if free >= need {
                    ""
                } else {
                    ": free some space, or back up to another target first"
                }
            ),
        },
        None => Check {
            what: "disk",
            ok: false,
            detail: format!(
                "the free space of `{}` cannot be read",
                inst.prefix.display()
            ),
        },
    }];
    let renamed: Vec<&str> = plan
        .settings
        .iter()
        .filter(|s| s.renamed_to.is_some())
        .map(|s| s.key.as_str())
        .collect();
    let removed: Vec<&str> = plan
        .settings
        .iter()
        .filter(|s| s.renamed_to.is_none())
        .map(|s| s.key.as_str())
        .collect();
    let mut fix = Vec::new();
    if !renamed.is_empty() {
        fix.push(format!("`berth config migrate` for {}", renamed.join(", ")));
    }
    if !removed.is_empty() {
        fix.push(format!(
            "remove {} from the site config",
            removed.join(", ")
        ));
    }
    checks.push(Check {
        what: "settings",
        ok: fix.is_empty(),
        detail: if fix.is_empty() {
            "the site config sets nothing the new version renamed or removed".to_owned()
        } else {
            format!("first {}", fix.join("; "))
        },
    });
    let db = |m: &berth_model::Manifest| {
        m.backup
            .as_ref()
            .and_then(|b| b.database.as_ref())
            .map(|d| d.bin_dir.clone())
    };
    let now = db(&inst.manifest.manifest);
    let then = plan
        .hops
        .last()
        .and_then(|h| targets.get(h.manifest))
        .and_then(|m| db(&m.manifest));
    checks.push(if now == then {
        Check {
            what: "database",
            ok: true,
            detail: match now {
                Some(dir) => format!("the same server before and after ({dir})"),
                None => "the app keeps no database berth manages".to_owned(),
            },
        }
    } else {
        Check {
            what: "database",
            ok: false,
            detail: format!(
                "the database server changes ({} → {}): berth does not move a cluster between server versions; back up, then restore into a new prefix set up with the new version",
                now.as_deref().unwrap_or("none"),
                then.as_deref().unwrap_or("none")
            ),
        }
    });
    checks
}

/// What `berth config migrate` did or would do.
#[derive(Debug, Clone)]
pub struct Migrated {
    /// The site config file.
    pub path: PathBuf,
    /// Its text before.
    pub before: String,
    /// Its text after.
    pub after: String,
    /// The renames applied (old, new).
    pub renames: Vec<(String, String)>,
    /// Where the text before was kept (not on a dry run, nor when nothing changed).
    pub kept: Option<PathBuf>,
}

impl Migrated {
    /// The change as a unified diff of the site config.
    pub fn diff(&self) -> String {
        let name = self.path.display().to_string();
        similar::TextDiff::from_lines(&self.before, &self.after)
            .unified_diff()
            .context_radius(3)
            .header(&name, &name)
            .to_string()
    }
}

/// Rewrite the site config for the renames on the way to `targets`, keeping the
/// administrator's comments and layout; the old text is kept beside it as
/// `<file>.before-migrate` (replaced by a later migrate). With `dry_run`, write nothing.
pub fn migrate_config(
    inst: &Installed,
    targets: &[LoadedManifest],
    dry_run: bool,
) -> Result<Migrated> {
    let plan = plan(inst, targets)?;
    let before = inst.site.clone();
    let (after, renames) = berth_upgrade::migrate_site(&before, &plan.renames())?;
    let mut kept = None;
    if !dry_run && after != before {
        let path = &inst.config_path;
        let keep = keep_path(path);
        berth_host::fsutil::write_atomic(&keep, before.as_bytes(), mode_of(path), None)?;
        berth_host::fsutil::write_atomic(path, after.as_bytes(), mode_of(path), None)?;
        kept = Some(keep);
    }
    Ok(Migrated {
        path: inst.config_path.clone(),
        before,
        after,
        renames,
        kept,
    })
}

fn keep_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".before-migrate");
    path.with_file_name(name)
}

/// The site config's permission bits, to keep them (0640 when unreadable).
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).map_or(0o640, |m| m.permissions().mode() & 0o7777)
}

#[cfg(test)]
mod tests {
    #[test]
    fn site_keys_are_the_settings_a_site_config_sets() {
        let keys = super::site_keys("external_url = \"x\"\n[web]\nworkers = 2\n[db]\nport = 1\n");
        assert_eq!(
            keys.into_iter().collect::<Vec<_>>(),
            ["db.port", "web.workers"]
        );
        assert!(super::site_keys("[web\n").is_empty());
    }
}
