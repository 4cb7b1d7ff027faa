//! The release: bundled components built once per version, and the copy of the
//! manifest the instance runs.

use berth_render::DesiredState;

use crate::error::{LifecycleError, Result};
use crate::instance::{Instance, Locate, stored_manifest_dir};
use crate::progress::Progress;

/// Build bundled components that are not built yet.
pub(crate) fn ensure_bundles(state: &DesiredState, progress: &dyn Progress) -> Result<()> {
    for b in &state.bundles {
        if b.dest.is_dir() {
            continue;
        }
        match &b.build {
            berth_model::manifest::BundleBuild::PythonVenv {
                python,
                requirements,
            } => {
                let found = berth_host::python::find_interpreter(python)?;
                // Service users must be able to run it: copy a private one into the release.
                let interpreter = berth_host::interpreter::shareable_interpreter(
                    &found,
                    &b.dest.with_file_name(format!("{}-python", b.component)),
                )?;
                let what = if requirements.is_empty() {
                    String::new()
                } else {
                    format!("{} ", requirements.join(" "))
                };
                progress.begin(&format!(
                    "Building `{}` ({what}with {})",
                    b.component,
                    interpreter.display()
                ));
                berth_host::python::build_venv(&interpreter, requirements, &b.dest)?;
                progress.end("");
            }
        }
    }
    Ok(())
}

/// Keep a copy of the manifest the instance runs, so later commands need no `--manifest`.
pub(crate) fn store_manifest(inst: &Instance, loc: &Locate) -> Result<()> {
    let dir = stored_manifest_dir(&inst.paths.prefix);
    let files = inst.manifest_files(loc)?;
    let unchanged = files
        .iter()
        .all(|(name, text)| std::fs::read_to_string(dir.join(name)).is_ok_and(|t| &t == text));
    if unchanged && dir.is_dir() {
        return Ok(());
    }
    let tmp = inst.paths.prefix.join(".manifest.new");
    let _ = std::fs::remove_dir_all(&tmp);
    for (name, text) in &files {
        let path = tmp.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(LifecycleError::io("create", parent))?;
        }
        std::fs::write(&path, text).map_err(LifecycleError::io("write", &path))?;
    }
    let old = inst.paths.prefix.join(".manifest.old");
    let _ = std::fs::remove_dir_all(&old);
    if dir.exists() {
        std::fs::rename(&dir, &old).map_err(LifecycleError::io("move aside", &dir))?;
    }
    std::fs::rename(&tmp, &dir).map_err(LifecycleError::io("move into place", &dir))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}
