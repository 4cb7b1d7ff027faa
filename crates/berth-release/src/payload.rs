//! The bundled components a release carries, built once by the vendor.

use std::path::{Path, PathBuf};

use berth_model::manifest::{BundleBuild, ComponentSource, Manifest};

use crate::ReleaseError;

/// Where a component's tree sits in a bundle: `payload/<component>/`.
pub fn payload_dir(component: &str) -> String {
    format!("payload/{component}")
}

/// A component built into a staging directory.
#[derive(Debug)]
pub(crate) struct BuiltComponent {
    /// Its name in the manifest.
    pub name: String,
    /// Its tree.
    pub tree: PathBuf,
    /// The interpreter it was built from.
    pub python: PathBuf,
}

/// Builds every bundled component of `manifest` (optional ones too: enabling one
/// later must not need a build on the target) under `staging`, in name order.
pub(crate) fn build_all(
    manifest: &Manifest,
    staging: &Path,
    epoch: u64,
    say: &dyn Fn(&str),
) -> Result<Vec<BuiltComponent>, ReleaseError> {
    let mut out = Vec::new();
    for (name, component) in &manifest.components {
        if component.source != ComponentSource::Bundled {
            continue;
        }
        let Some(BundleBuild::PythonVenv {
            python,
            requirements,
        }) = &component.build
        else {
            continue;
        };
        let interpreter = berth_host::python::find_interpreter(python)?;
        say(&format!(
            "Building `{name}` with {} ({} requirement(s))",
            interpreter.display(),
            requirements.len()
        ));
        let tree = staging.join(name);
        berth_host::portable::build(&interpreter, requirements, &tree, epoch)?;
        out.push(BuiltComponent {
            name: name.clone(),
            tree,
            python: interpreter,
        });
    }
    Ok(out)
}
