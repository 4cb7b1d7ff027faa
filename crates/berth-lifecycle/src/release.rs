//! The release: bundled components built once per version, and the copy of the
//! manifest the instance runs.

use std::path::Path;

use berth_host::children::ChildRecords;
use berth_render::DesiredState;

use crate::error::Result;
use crate::instance::{Instance, Locate};
use crate::progress::Progress;

/// Build bundled components that are not built yet, their build steps recorded in
/// `children` while they run.
pub(crate) fn ensure_bundles(
    state: &DesiredState,
    children: &ChildRecords,
    progress: &dyn Progress,
) -> Result<()> {
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
                    &berth_layout::bundle::interpreter_copy(&b.dest),
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
                berth_host::python::build_venv(&interpreter, requirements, &b.dest, children)?;
                progress.end("");
            }
        }
    }
    Ok(())
}

/// Keep a copy of the manifest the instance runs, so later commands need no `--manifest`.
pub fn store_manifest(inst: &Instance, loc: &Locate) -> Result<()> {
    let dir = inst.paths.manifest_dir();
    let files = inst.manifest_files(loc)?;
    let unchanged = files
        .iter()
        .all(|(name, text)| std::fs::read_to_string(dir.join(name)).is_ok_and(|t| &t == text));
    if unchanged && dir.is_dir() {
        return Ok(());
    }
    // All beneath the prefix, by descriptors: no name on the way is followed.
    let prefix = berth_host::beneath::SafeDir::open_trusted(&inst.paths.prefix)?;
    let tmp = Path::new(".manifest.new");
    let old = Path::new(".manifest.old");
    let stored = inst.paths.beneath(&dir);
    prefix.remove_tree(tmp)?;
    prefix.create_dir(tmp, 0o755, None)?;
    for (name, text) in &files {
        let rel = tmp.join(name);
        if let Some(parent) = rel.parent() {
            prefix.create_dir_all(parent, 0o755, None)?;
        }
        prefix.write_atomic(&rel, text.as_bytes(), 0o644, None)?;
    }
    prefix.remove_tree(old)?;
    if prefix.stat(stored)?.is_some() {
        prefix.rename(stored, &prefix, old)?;
    }
    prefix.rename(tmp, &prefix, stored)?;
    prefix.remove_tree(old)?;
    Ok(())
}

/// Copy `berth_exe` to the instance's own copy of berth
/// ([`installed_berth`](berth_render::Paths::installed_berth)): the supervisor, the
/// systemd unit and the scheduled backup run it, so they do not depend on wherever
/// `berth up` was run from (a build directory, a download). Nothing is copied when
/// `berth_exe` is that file, or a copy of the same size and modification time is there
/// already; returns the installed path.
pub(crate) fn install_berth(
    paths: &berth_render::Paths,
    berth_exe: &std::path::Path,
) -> Result<std::path::PathBuf> {
    let dest = paths.installed_berth();
    berth_host::fsutil::install_copy(berth_exe, &dest, 0o755)?;
    Ok(dest)
}
