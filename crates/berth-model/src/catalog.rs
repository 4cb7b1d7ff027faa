//! Reading a standalone sizing catalog: parsed like a manifest, checked like its
//! `[roles]` and `[sizing]`.

use std::path::Path;

use crate::Diagnostics;
use crate::load::{deserialize_all, syntax_errors};
use crate::locate::Locator;
use crate::span::Source;
use crate::topology::{Catalog, LoadedCatalog};

impl LoadedCatalog {
    /// Parses a sizing catalog (`[catalog]`, `[roles]`, `[sizing]`) and checks it as
    /// the same sections of a manifest are checked; every problem is reported at once.
    pub fn parse(source_name: &str, text: &str) -> Result<LoadedCatalog, Diagnostics> {
        let source = Source::new(source_name, text);
        syntax_errors(source)?;
        let locator = Locator::new(text);
        let catalog: Catalog = deserialize_all(source, &locator)?;
        let loaded = LoadedCatalog {
            catalog,
            source_name: source_name.to_owned(),
            source_text: text.to_owned(),
        };
        crate::validate::topology::check_catalog(&loaded)?;
        Ok(loaded)
    }

    /// Reads and parses the catalog file at `path`.
    pub fn load(path: &Path) -> Result<LoadedCatalog, Diagnostics> {
        let name = path.display().to_string();
        let text = crate::read_input(
            path,
            "the sizing catalog",
            "give the path of a catalog file, e.g. `examples/catalogs/gitlab.toml`",
        )
        .map_err(crate::InputError::into_diagnostics)?;
        Self::parse(&name, &text)
    }
}
