//! The small files berth keeps about what it applied: the config files it wrote last,
//! the supervision plan, and the first site config.

use std::path::{Path, PathBuf};

use berth_render::DesiredState;
use berth_supervisor_protocol::SupervisionPlan;

use crate::error::Result;
use crate::instance::Instance;

/// The config files berth wrote last (none before the first converge).
pub(crate) fn managed_files(inst: &Instance) -> Vec<PathBuf> {
    std::fs::read(inst.paths.managed_files())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Remember the config files of `state`, so that a later converge removes those
/// it no longer has.
pub(crate) fn write_managed_files(inst: &Instance, state: &DesiredState) -> Result<()> {
    let files: Vec<&Path> = state.files.iter().map(|f| f.path.as_path()).collect();
    let bytes = serde_json::to_vec_pretty(&files)?;
    berth_host::fsutil::write_if_changed(&inst.paths.managed_files(), &bytes, 0o644)?;
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

/// The first site config: empty apart from comments saying how to use it.
pub(crate) fn write_site_template(path: &Path) -> Result<()> {
    let text = "# Site config: every setting you change from the defaults goes here.\n\
                # `berth config show` prints every setting with its current value;\n\
                # `berth reconfigure` applies this file.\n";
    berth_host::fsutil::write_atomic(path, text.as_bytes(), 0o644, None)?;
    Ok(())
}
