//! The small files berth keeps about what it applied: the config files it wrote last,
//! the supervision plan, the autostart marker, and the first site config.

use std::path::{Path, PathBuf};

use berth_render::DesiredState;
use berth_supervisor_protocol::SupervisionPlan;

use crate::error::Result;
use crate::instance::Instance;

/// Where the list of config files berth wrote last is kept.
pub(crate) fn managed_files_path(inst: &Instance) -> PathBuf {
    inst.paths.state.join("managed-files.json")
}

/// The config files berth wrote last (none before the first converge).
pub(crate) fn managed_files(inst: &Instance) -> Vec<PathBuf> {
    std::fs::read(managed_files_path(inst))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Remember the config files of `state`, so that a later converge removes those
/// it no longer has.
pub(crate) fn write_managed_files(inst: &Instance, state: &DesiredState) -> Result<()> {
    let files: Vec<&Path> = state.files.iter().map(|f| f.path.as_path()).collect();
    let bytes = serde_json::to_vec_pretty(&files)?;
    berth_host::fsutil::write_if_changed(&managed_files_path(inst), &bytes, 0o644)?;
    Ok(())
}

/// The currently applied supervision plan, if any.
pub(crate) fn applied_plan(path: &Path) -> Option<SupervisionPlan> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Write the supervision plan (mode 0600: service environments hold secrets).
pub(crate) fn write_plan(inst: &Instance, plan: &SupervisionPlan) -> Result<bool> {
    let bytes = serde_json::to_vec_pretty(plan)?;
    Ok(berth_host::fsutil::write_if_changed(
        &inst.paths.supervision_plan(),
        &bytes,
        0o600,
    )?)
}

/// Present once `up` has succeeded and until `down`: a supervisor started with
/// `--autostart` (at boot) starts the services only then, never before the first
/// `up` has run its hooks.
pub fn autostart_marker(paths: &berth_render::Paths) -> PathBuf {
    paths.state.join("autostart")
}

/// The first site config: empty apart from comments saying how to use it.
pub(crate) fn write_site_template(path: &Path) -> Result<()> {
    let text = "# Site config: every setting you change from the defaults goes here.\n\
                # `berth config show` prints every setting with its current value;\n\
                # `berth reconfigure` applies this file.\n";
    berth_host::fsutil::write_atomic(path, text.as_bytes(), 0o644, None)?;
    Ok(())
}
