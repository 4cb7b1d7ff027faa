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
//! did-you-mean; every error is reported at once. Parsing is [`crate::parse_site`];
//! merging with the manifest is [`crate::resolve`].

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use toml::Spanned;

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
    /// `instance`, if `site.toml` sets it.
    pub instance: Option<String>,
    /// `users`, if `site.toml` sets it (the default depends on the instance's state).
    pub users: Option<UserNaming>,
    /// `roles`, if `site.toml` sets it: the roles this node of a fleet takes.
    pub roles: Option<Vec<String>>,
    /// `[fleet]`, if `site.toml` has it: this node and every other of its fleet.
    pub fleet: Option<crate::fleet::FleetView>,
    /// On a node of a fleet, `enabled_components` is narrowed to the components this
    /// node runs; this keeps the app's own (what templates see as `enabled`).
    #[serde(default)]
    pub app_components: Option<BTreeSet<String>>,
}

/// One value the administrator set in `site.toml`, already checked against its declaration.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteSetting {
    /// The value as written.
    pub raw: toml::Value,
    /// The typed value (sizes in bytes).
    pub value: SettingValue,
    /// Byte range of the value in the site file.
    pub span: Range<usize>,
}

/// A parsed, checked `site.toml`. An empty file gives [`SiteConfig::default`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SiteConfig {
    /// File name as the administrator named it, for diagnostics.
    pub file: String,
    /// The file's text, so later steps can point into it.
    pub source: String,
    /// `external_url`, checked to be an absolute http(s) URL with a host (not yet
    /// normalised: [`crate::resolve`] adds the trailing `/`).
    pub external_url: Option<Spanned<url::Url>>,
    /// `profile`, checked to name one of the manifest's profiles.
    pub profile: Option<Spanned<String>>,
    /// `group → key → value` for every setting the file sets.
    pub settings: BTreeMap<String, BTreeMap<String, SiteSetting>>,
    /// `[<component>] enabled = …` for optional components.
    pub components: BTreeMap<String, Spanned<bool>>,
    /// `instance`: the instance's name, which per-instance user names start with.
    pub instance: Option<Spanned<String>>,
    /// `users`: one set of OS users per instance, or the manifest's names shared.
    pub users: Option<Spanned<UserNaming>>,
    /// `roles = ["database", ...]`: the roles (`[roles]` of the manifest) this node of a
    /// fleet takes.
    pub roles: Option<Spanned<Vec<String>>>,
    /// `[fleet]`: written by `berth fleet up`.
    pub fleet: Option<Spanned<crate::fleet::FleetView>>,
    /// `[external]`: the host of each role whose services run elsewhere (a managed
    /// PostgreSQL or Redis), by role; the ports are the site's settings.
    pub external: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
}

/// How the OS users of an instance are named (`users` in `site.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UserNaming {
    /// `<instance>-<user>`: no other instance on the host runs as them.
    PerInstance,
    /// The manifest's names as they are, shared by every instance of the app.
    Shared,
}

impl UserNaming {
    /// As written in `site.toml`.
    pub fn name(self) -> &'static str {
        match self {
            Self::PerInstance => "per-instance",
            Self::Shared => "shared",
        }
    }
}
