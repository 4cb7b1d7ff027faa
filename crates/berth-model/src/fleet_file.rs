//! Reading a fleet file: parsed like a manifest, checked against the app's roles, its
//! key files and shared site config read and checked too.

use std::path::Path;

use crate::fleet::{FleetFile, LoadedFleet};
use crate::load::{deserialize_all, syntax_errors};
use crate::locate::Locator;
use crate::span::Source;
use crate::{Diagnostics, LoadedManifest};

impl LoadedFleet {
    /// Reads the fleet file at `path` and checks it against `manifest`: every problem
    /// of the file, its key files and its shared site config reported at once.
    pub fn load(path: &Path, manifest: &LoadedManifest) -> Result<LoadedFleet, Diagnostics> {
        let name = path.display().to_string();
        let text = crate::read_input(
            path,
            "the fleet file",
            "give the path of a fleet file (docs/fleet.md), e.g. `--fleet fleet.toml`",
        )
        .map_err(crate::InputError::into_diagnostics)?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        Self::parse(&name, &text, &dir, manifest)
    }

    /// As [`LoadedFleet::load`], for text already read; relative paths in it are taken
    /// against `dir`.
    pub fn parse(
        name: &str,
        text: &str,
        dir: &Path,
        manifest: &LoadedManifest,
    ) -> Result<LoadedFleet, Diagnostics> {
        let source = Source::new(name, text);
        syntax_errors(source)?;
        let locator = Locator::new(text);
        let fleet: FleetFile = deserialize_all(source, &locator)?;
        let mut loaded = LoadedFleet {
            fleet,
            source_name: name.to_owned(),
            source_text: text.to_owned(),
            dir: dir.to_path_buf(),
            site_text: String::new(),
        };
        loaded.site_text = crate::validate::fleet::check(&loaded, manifest)?;
        Ok(loaded)
    }
}
