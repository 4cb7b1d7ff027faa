//! berth's model: the app manifest (vendor) and the site config (administrator).
//!
//! - [`manifest`]: the manifest types, one to one with `berth.toml`.
//! - [`site`]: the site config and the effective, resolved configuration.
//! - [`facts`]: host facts that settings may derive their defaults from.
//!
//! Parsing and validation are pure: they take text and return types or
//! [`Diagnostics`] that name file, line and column.

pub mod facts;
pub mod manifest;
pub mod site;

use std::collections::BTreeMap;
use std::fmt;

pub use facts::Facts;
pub use manifest::Manifest;
pub use site::{Origin, Resolved, ResolvedConfig, SettingValue};

/// A manifest together with the template sources it refers to, so rendering never reads files.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedManifest {
    /// The parsed manifest.
    pub manifest: Manifest,
    /// Display name of the manifest file, for diagnostics (e.g. `examples/netbox/berth.toml`).
    pub source_name: String,
    /// Template path (as written in `[[files]]`) → template source.
    pub templates: BTreeMap<String, String>,
}

/// One problem found in a config file, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// File as the user named it.
    pub file: String,
    /// 1-based line, 0 when the problem has no position.
    pub line: usize,
    /// 1-based column, 0 when the problem has no position.
    pub column: usize,
    /// What is wrong, as a sentence without a final period.
    pub message: String,
    /// The offending source line, when known.
    pub source_line: Option<String>,
    /// Number of characters to underline from `column`.
    pub width: usize,
    /// How to fix it, e.g. "did you mean `workers`?".
    pub help: Option<String>,
}

/// Every problem found in one pass: validation never stops at the first error.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            writeln!(f, "error: {}", self.message)?;
            writeln!(f, "  --> {}:{}:{}", self.file, self.line, self.column)?;
            if let Some(src) = &self.source_line {
                let gutter = self.line.to_string().len();
                writeln!(f, "{:gutter$} |", "")?;
                writeln!(f, "{} | {}", self.line, src)?;
                let pad = self.column.saturating_sub(1);
                writeln!(f, "{:gutter$} | {:pad$}{}", "", "", "^".repeat(self.width.max(1)))?;
            }
        } else {
            writeln!(f, "error: {}", self.message)?;
            writeln!(f, "  --> {}", self.file)?;
        }
        if let Some(help) = &self.help {
            writeln!(f, "  = help: {help}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        let n = self.0.len();
        write!(f, "\n{n} error{} found", if n == 1 { "" } else { "s" })
    }
}

impl std::error::Error for Diagnostics {}
