//! The site config: the one file the administrator writes (`site.toml`).
//!
//! ```toml
//! external_url = "http://netbox.example.com/"
//! profile = "small"
//!
//! [web]
//! workers = 4
//!
//! [redis]
//! enabled = true
//! ```
//!
//! Top-level keys: `external_url`, `profile`. Every table is a settings group from the
//! manifest (or a component name, for `enabled`). Unknown keys are errors with a
//! did-you-mean; every error is reported at once.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A setting's value once parsed and type-checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SettingValue {
    /// `bool`.
    Bool(bool),
    /// `int`, `port`, `size` (bytes).
    Int(i64),
    /// `string`, `url`, `duration` (as written, e.g. `"30s"`).
    String(String),
    /// `string_list`.
    List(Vec<String>),
}

/// Where a resolved value came from (shown by `berth config show`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The manifest's literal default.
    Default,
    /// Derived from host facts by the manifest's `derive` expression.
    Derived,
    /// The selected profile.
    Profile,
    /// The site config.
    Site,
}

/// One resolved setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resolved {
    /// The value.
    pub value: SettingValue,
    /// Where it came from.
    pub origin: Origin,
}

/// The effective configuration: manifest defaults, derived defaults, profile and site
/// values merged (in that order) and validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedConfig {
    /// Where the app is reached, normalised (always ends with `/`).
    pub external_url: url::Url,
    /// The selected profile, if any.
    pub profile: Option<String>,
    /// `group → key → value`, for every setting the manifest declares.
    pub settings: BTreeMap<String, BTreeMap<String, Resolved>>,
    /// Components switched on (all non-optional ones plus enabled optional ones).
    pub enabled_components: BTreeSet<String>,
}
