//! The app manifest built into the binary, so `berth up` works with no arguments.
//!
//! berth itself knows nothing about the app: this is just a directory of files
//! (`berth.toml` plus templates) read the same way as `--manifest DIR`.

use std::collections::BTreeMap;

use include_dir::{Dir, include_dir};

static DEFAULT_MANIFEST: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/../../examples/netbox");

/// The embedded manifest's `berth.toml` text and every file beside it, by relative path.
pub fn default_manifest() -> (String, BTreeMap<String, String>) {
    let mut files = BTreeMap::new();
    collect(&DEFAULT_MANIFEST, &mut files);
    let text = files.remove("berth.toml").unwrap_or_default();
    (text, files)
}

fn collect(dir: &Dir<'_>, out: &mut BTreeMap<String, String>) {
    for f in dir.files() {
        if let Some(text) = f.contents_utf8() {
            out.insert(f.path().display().to_string(), text.to_owned());
        }
    }
    for d in dir.dirs() {
        collect(d, out);
    }
}

#[cfg(test)]
mod tests {
    /// The built-in manifest is read as `--manifest examples/netbox` is (its README and
    /// its podman script are no templates), and renders: what `berth up` with no
    /// arguments does first.
    #[test]
    fn the_built_in_manifest_loads_as_its_directory_does_and_renders() {
        let loc = berth_lifecycle::Locate {
            embedded: Some(super::default_manifest()),
            ..berth_lifecycle::Locate::default()
        };
        let built_in = berth_lifecycle::instance::manifest(&loc).unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/netbox");
        let from_dir = berth_model::LoadedManifest::load(&dir).unwrap();
        assert_eq!(built_in.templates, from_dir.templates);
        berth_k8s::render(&built_in, "site.toml", "", &berth_k8s::Options::default()).unwrap();
    }
}
