//! berth's model: the app manifest (vendor) and the site config (administrator),
//! parsed, validated and resolved into one effective configuration.
//!
//! Everything here is pure: text in, types or [`Diagnostics`] out. Every diagnostic
//! names the file, line and column, shows the source line, and says how to fix it
//! (with a did-you-mean for misspelt names). Nothing stops at the first error.
//!
//! # Capabilities
//!
//! - **Load a manifest**: [`LoadedManifest::load`] (from a directory) or
//!   [`LoadedManifest::from_sources`] (embedded text), types in [`manifest`].
//! - **Check it**: [`validate`] finds dangling references, dependency cycles, bad
//!   signals, durations, modes, setting declarations and templates that use names the
//!   render context does not have.
//! - **Read the administrator's `site.toml`**: [`parse_site`] into a [`SiteConfig`].
//! - **Resolve**: [`resolve`] merges default < derived from [`Facts`] < profile < site
//!   into a [`ResolvedConfig`]; [`resolve_at`] also gives `derive` expressions the
//!   instance's directories ([`DerivePaths`]).
//! - **Show it**: [`render_effective`] prints the effective config as a `site.toml`.
//! - **Read input files safely**: [`read_input`] refuses what is not a regular UTF-8 file
//!   of sane size (a FIFO, a device, a dangling symlink) without blocking.
//! - **Echo input safely**: [`shown`] and [`terminal_safe`] escape control characters
//!   (and cut long values) before anything typed or planted reaches a terminal;
//!   [`is_unsafe_char`] is the set of characters string settings refuse.
//! - **Order versions**: [`version::compare_versions`] (Debian's order) and
//!   [`version::in_series`], for upgrade rules.
//! - **Check the prefix**: [`check_prefix`] accepts an absolute, normalised path of
//!   letters, digits and `._/+-` only, since every path berth derives starts with it.
//! - **Check a path outside the prefix**: [`check_host_path`] accepts where a
//!   `[[host_files]]` entry may be (absolute, plain, deep enough, outside the system's
//!   trees).
//!
//! # Example
//!
//! ```
//! use std::collections::BTreeMap;
//! use berth_model::{Facts, LoadedManifest, Origin, SettingValue, parse_site, resolve, validate};
//!
//! let manifest = r#"
//! [app]
//! name = "demo"
//! version = "1.0"
//!
//! [settings.web.workers]
//! type = "int"
//! description = "Worker processes"
//! derive = "facts.cpus * 2 + 1"
//! min = 1
//! max = 16
//! "#;
//! let m = LoadedManifest::from_sources("berth.toml", manifest, BTreeMap::new())?;
//! validate(&m)?;
//!
//! let site = parse_site("site.toml", "[web]\nworkers = 3\n", &m)?;
//! let r = resolve(&m, &site, &Facts::fixture())?;
//! assert_eq!(r.settings["web"]["workers"].value, SettingValue::Int(3));
//! assert_eq!(r.settings["web"]["workers"].origin, Origin::Site);
//!
//! let err = parse_site("site.toml", "[web]\nwrokers = 3\n", &m).unwrap_err();
//! assert!(err.to_string().contains("did you mean `workers`?"));
//! # Ok::<(), berth_model::Diagnostics>(())
//! ```

pub mod builtin;
mod catalog;
mod effective;
pub mod facts;
pub mod fleet;
mod fleet_file;
mod host_path;
mod load;
mod locate;
pub mod manifest;
mod prefix;
mod quote;
mod read;
mod resolve;
pub mod site;
mod site_parse;
mod span;
pub mod suggest;
mod templates;
pub mod topology;
mod validate;
mod value;
pub mod version;

use std::collections::BTreeMap;
use std::fmt;

pub use effective::render_effective;
pub use facts::Facts;
pub use fleet::LoadedFleet;
pub use host_path::{REFUSED_TREES, check_host_path};
pub use manifest::{FileFormat, Manifest};
pub use prefix::check_prefix;
pub use quote::{is_unsafe_char, shown, terminal_safe};
pub use read::{InputError, MAX_INPUT_BYTES, read_input};
pub use resolve::{DerivePaths, declared_default, resolve, resolve_at};
pub use site::{
    Origin, Resolved, ResolvedConfig, SettingValue, SiteConfig, SiteSetting, UserNaming,
};
pub use site_parse::{is_instance_name, parse_site};
pub use topology::LoadedCatalog;
pub use validate::preflight::{DISK_PATHS, is_dotted_version, parse_distribution};
pub use validate::validate;
pub use value::{SIZE_HELP, format_size, parse_duration, parse_size, size_value};

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

impl Diagnostic {
    /// A diagnostic pointing at the byte range `span` of `text` (the contents of `file`).
    pub fn at(
        file: impl Into<String>,
        text: &str,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
    ) -> Self {
        let (line, column, source_line, width) = span::locate(text, &span);
        Self {
            file: file.into(),
            line,
            column,
            message: message.into(),
            source_line: Some(source_line),
            width,
            help: None,
        }
    }

    /// A diagnostic about a whole file (e.g. it could not be read).
    pub fn without_position(file: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            line: 0,
            column: 0,
            message: message.into(),
            source_line: None,
            width: 0,
            help: None,
        }
    }

    /// The same diagnostic with a `help:` line.
    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// The same diagnostic with an optional `help:` line.
    #[must_use]
    pub fn with_help_opt(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }
}

impl Diagnostics {
    /// Adds one diagnostic.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of diagnostics.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The diagnostics in reading order (file, line, column).
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    /// `Ok(value)` when empty, else the diagnostics sorted by file and position,
    /// without duplicates.
    pub fn into_result<T>(self, value: T) -> Result<T, Diagnostics> {
        if self.0.is_empty() {
            return Ok(value);
        }
        Err(self.sorted())
    }

    /// The diagnostics sorted by file and position, without duplicates.
    #[must_use]
    pub fn sorted(mut self) -> Self {
        self.0.sort_by(|a, b| {
            (&a.file, a.line, a.column, &a.message).cmp(&(&b.file, b.line, b.column, &b.message))
        });
        self.0.dedup();
        self
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Self(vec![d])
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Everything shown is escaped: a message or a source line may hold input
        // with terminal escape sequences, and a source line may be very long.
        let file = quote::escaped(&self.file);
        writeln!(f, "error: {}", quote::escaped(&self.message))?;
        if self.line > 0 {
            writeln!(f, "  --> {file}:{}:{}", self.line, self.column)?;
            if let Some(src) = &self.source_line {
                let (text, pad, width) = quote::source_window(src, self.column, self.width);
                let gutter = self.line.to_string().len();
                writeln!(f, "{:gutter$} |", "")?;
                writeln!(f, "{} | {text}", self.line)?;
                writeln!(f, "{:gutter$} | {:pad$}{}", "", "", "^".repeat(width))?;
            }
        } else {
            writeln!(f, "  --> {file}")?;
        }
        if let Some(help) = &self.help {
            writeln!(f, "  = help: {}", quote::escaped(help))?;
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
