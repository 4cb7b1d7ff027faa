//! The release: bundled components built once per version, and the copy of the
//! manifest the instance runs.

use std::path::Path;

use berth_host::children::ChildRecords;
use berth_render::DesiredState;

use crate::error::Result;
use crate::instance::{Instance, Locate};
use crate::progress::Progress;

/// Build bundled components that are not built yet, their build steps recorded in
/// `children` while they run. A component found built in `payload` (from a verified
/// release bundle) is moved into place instead.
pub(crate) fn ensure_bundles(
    state: &DesiredState,
    payload: Option<&Path>,
    children: &ChildRecords,
    progress: &dyn Progress,
) -> Result<()> {
    for b in &state.bundles {
        if b.dest.is_dir() {
            continue;
        }
        if let Some(built) = prebuilt(payload, &b.component) {
            progress.begin(&format!(
                "Installing `{}` from the release bundle",
                b.component
            ));
            move_into_place(&built, &b.dest)?;
            progress.end("");
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

/// The built tree of `component` in `payload`, if there is one (a real directory).
pub(crate) fn prebuilt(payload: Option<&Path>, component: &str) -> Option<std::path::PathBuf> {
    let dir = payload?.join(component);
    std::fs::symlink_metadata(&dir)
        .is_ok_and(|m| m.is_dir())
        .then_some(dir)
}

/// Moves a built tree to `dest` (which does not exist) in one rename: `dest` is
/// never half there.
fn move_into_place(built: &Path, dest: &Path) -> Result<()> {
    berth_host::fsutil::ensure_dir(dest.parent().unwrap_or(Path::new("/")), 0o755)?;
    let (from_dir, from) = berth_host::beneath::in_parent(built)?;
    let (to_dir, to) = berth_host::beneath::in_parent(dest)?;
    from_dir.rename(&from, &to_dir, &to)?;
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
    // The switch between versions: one exchange, so the instance has a manifest at
    // every moment (the old one until the exchange, the new one after).
    if prefix.stat(stored)?.is_some() {
        prefix.exchange(tmp, stored)?;
    } else {
        prefix.rename(tmp, &prefix, stored)?;
    }
    prefix.remove_tree(tmp)?;
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

/// One release directory, for `berth releases`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReleaseInfo {
    /// Its version (the directory's name).
    pub version: String,
    /// When it was installed: the directory's modification time, seconds since the epoch.
    pub installed_unix: i64,
    /// Bytes in its regular files (symlinks not followed, hard links counted once).
    pub bytes: u64,
    /// Whether the instance runs it.
    pub current: bool,
}

/// The releases under `releases_dir`, oldest version first; `current` is the version
/// the instance runs. Reads only; a directory that vanishes meanwhile is left out.
pub fn list(releases_dir: &Path, current: &str) -> Result<Vec<ReleaseInfo>> {
    use std::os::unix::fs::MetadataExt;
    let entries = match std::fs::read_dir(releases_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(crate::LifecycleError::io("read the releases", releases_dir)(e));
        }
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        let version = entry.file_name().to_string_lossy().into_owned();
        out.push(ReleaseInfo {
            current: version == current,
            version,
            installed_unix: meta.mtime(),
            bytes: berth_host::fsutil::tree_size(&entry.path()),
        });
    }
    out.sort_by(|a, b| berth_model::version::compare_versions(&a.version, &b.version));
    Ok(out)
}

#[cfg(test)]
mod tests {
    /// Versions in version order, the current one marked, sizes counted without
    /// following symlinks and hard links once; files beside the directories ignored.
    #[test]
    fn releases_are_listed_with_their_sizes() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        for v in ["4.10.0", "4.9.3"] {
            std::fs::create_dir_all(r.join(v).join("app")).unwrap();
        }
        std::fs::write(r.join("4.9.3/app/a"), vec![0u8; 1000]).unwrap();
        std::fs::hard_link(r.join("4.9.3/app/a"), r.join("4.9.3/app/b")).unwrap();
        std::os::unix::fs::symlink("/usr", r.join("4.9.3/app/usr")).unwrap();
        std::fs::write(r.join("4.10.0/app/x"), b"12345").unwrap();
        std::fs::write(r.join("stray-file"), b"x").unwrap();
        let list = super::list(r, "4.10.0").unwrap();
        let got: Vec<(&str, u64, bool)> = list
            .iter()
            .map(|i| (i.version.as_str(), i.bytes, i.current))
            .collect();
        assert_eq!(got, [("4.9.3", 1000, false), ("4.10.0", 5, true)]);
        assert!(super::list(&r.join("none"), "1").unwrap().is_empty());
    }
}
