//! Settings berth itself reads, present in every app's site config: `[backup]`,
//! `[upgrade]`, `[metrics]`, `[diagnose]` and `[console]`.
//!
//! They are ordinary typed settings (same validation, did-you-mean and `config show`
//! as the manifest's own), added to the manifest when it is loaded. A manifest may not
//! declare a group of the same name.

use std::collections::BTreeMap;

use crate::manifest::{Manifest, SettingDecl, SettingType};
use crate::{Facts, SettingValue};

/// The settings group berth reserves for backups.
pub const BACKUP_GROUP: &str = "backup";

/// The settings group berth reserves for upgrades.
pub const UPGRADE_GROUP: &str = "upgrade";

/// The settings group berth reserves for its metrics endpoint.
pub const METRICS_GROUP: &str = "metrics";

/// The settings group berth reserves for error reports.
pub const DIAGNOSE_GROUP: &str = "diagnose";

/// The settings group berth reserves for its web console.
pub const CONSOLE_GROUP: &str = "console";

/// What `console.path` must look like: `/`, or segments between slashes that do not
/// begin with a dot (the value lands in the web server's config as a location).
const CONSOLE_PATH_PATTERN: &str = "/([A-Za-z0-9_~-][A-Za-z0-9._~-]*/)*";

/// Whether `path` is a path the console can be mounted at ([`CONSOLE_PATH_PATTERN`]).
///
/// ```
/// use berth_model::builtin::is_console_path;
/// assert!(is_console_path("/") && is_console_path("/berth/") && is_console_path("/ops/berth/"));
/// assert!(!is_console_path("/berth") && !is_console_path("/../") && !is_console_path("/a b/"));
/// ```
pub fn is_console_path(path: &str) -> bool {
    let Some(inner) = path.strip_prefix('/') else {
        return false;
    };
    if inner.is_empty() {
        return true;
    }
    let Some(inner) = inner.strip_suffix('/') else {
        return false;
    };
    inner.split('/').all(|seg| {
        !seg.is_empty()
            && !seg.starts_with('.')
            && seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._~-".contains(c))
    })
}

fn decl(kind: SettingType, default: Option<toml::Value>, description: &str) -> SettingDecl {
    SettingDecl {
        kind,
        description: description.to_owned(),
        default,
        derive: None,
        min: None,
        max: None,
        choices: None,
        pattern: None,
    }
}

fn int(default: i64, min: i64, max: i64, description: &str) -> SettingDecl {
    SettingDecl {
        min: Some(min),
        max: Some(max),
        ..decl(
            SettingType::Int,
            Some(toml::Value::Integer(default)),
            description,
        )
    }
}

fn string(default: &str, pattern: Option<&str>, description: &str) -> SettingDecl {
    SettingDecl {
        pattern: pattern.map(str::to_owned),
        ..decl(
            SettingType::String,
            Some(toml::Value::String(default.to_owned())),
            description,
        )
    }
}

/// The `[backup]` settings.
pub fn backup_settings() -> BTreeMap<String, SettingDecl> {
    let mut m = BTreeMap::new();
    m.insert(
        "target".to_owned(),
        string(
            "",
            None,
            "Where archives are kept: an absolute directory, or `sftp://user@host[:port]/dir` \
             (empty: `<prefix>/backups`)",
        ),
    );
    m.insert(
        "schedule".to_owned(),
        string(
            "off",
            Some("off|[1-9][0-9]*[mhd]"),
            "How often the supervisor takes a backup and prunes old ones, e.g. `24h`; `off` for never",
        ),
    );
    m.insert(
        "keep_last".to_owned(),
        int(
            7,
            0,
            100_000,
            "`backup prune` keeps this many newest archives",
        ),
    );
    m.insert(
        "keep_daily".to_owned(),
        int(
            7,
            0,
            100_000,
            "`backup prune` keeps the newest archive of each of this many most recent days",
        ),
    );
    m.insert(
        "keep_weekly".to_owned(),
        int(
            4,
            0,
            100_000,
            "`backup prune` keeps the newest archive of each of this many most recent ISO weeks",
        ),
    );
    m.insert(
        "jobs".to_owned(),
        SettingDecl {
            derive: Some("[facts.cpus, 8] | min".to_owned()),
            min: Some(1),
            max: Some(64),
            ..decl(
                SettingType::Int,
                None,
                "Parallel jobs of the database dump and restore; defaults to the CPU count (at most 8)",
            )
        },
    );
    m.insert(
        "compression_level".to_owned(),
        int(3, 1, 19, "zstd compression level of archives"),
    );
    m.insert(
        "recipient".to_owned(),
        string(
            "",
            Some("(age1[0-9a-z]{58})?"),
            "age public key the archive's secrets are encrypted to (empty: the key made by `berth backup key`)",
        ),
    );
    m.insert(
        "ssh_identity".to_owned(),
        string(
            "",
            None,
            "Private key file for an `sftp://` target (empty: ssh's default)",
        ),
    );
    m.insert(
        "ssh_known_hosts".to_owned(),
        string(
            "",
            None,
            "known_hosts file for an `sftp://` target (empty: ssh's default); host keys are always checked",
        ),
    );
    m
}

/// The `[upgrade]` settings.
pub fn upgrade_settings() -> BTreeMap<String, SettingDecl> {
    let mut m = BTreeMap::new();
    m.insert(
        "keep_releases".to_owned(),
        int(
            2,
            1,
            100,
            "Release directories kept after an upgrade, the current one included (1: only the current one; 2: also the one before, to go back to)",
        ),
    );
    m.insert(
        "auto".to_owned(),
        SettingDecl {
            choices: Some(vec!["off".to_owned(), "patch".to_owned(), "minor".to_owned()]),
            ..string(
                "off",
                None,
                "Automatic upgrades: `off`; `patch` to the newest release of the running minor series (4.7.x); `minor` to the newest of the running major series (4.x)",
            )
        },
    );
    m.insert(
        "source".to_owned(),
        string(
            "",
            None,
            "Where automatic upgrades look for new versions: an absolute directory holding one manifest directory per version",
        ),
    );
    m.insert(
        "window".to_owned(),
        string(
            "03:00-05:00",
            Some("([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]"),
            "When automatic upgrades may begin, `HH:MM-HH:MM` in UTC (a window may pass midnight: `23:00-01:00`)",
        ),
    );
    m.insert(
        "check_every".to_owned(),
        string(
            "1h",
            Some("[1-9][0-9]*[mhd]"),
            "How often the supervisor looks for a new version when `auto` is on",
        ),
    );
    m
}

/// The `[metrics]` settings.
pub fn metrics_settings() -> BTreeMap<String, SettingDecl> {
    let mut m = BTreeMap::new();
    m.insert(
        "listen".to_owned(),
        string(
            "",
            Some(r"((\[[0-9a-fA-F:.]+\]|[0-9]{1,3}(\.[0-9]{1,3}){3}):[0-9]{1,5})?"),
            "Where the supervisor serves metrics in Prometheus' text format (`GET /metrics`), e.g. `127.0.0.1:9464`; empty: not served",
        ),
    );
    m
}

/// The `[console]` settings.
pub fn console_settings() -> BTreeMap<String, SettingDecl> {
    let mut m = BTreeMap::new();
    m.insert(
        "listen".to_owned(),
        string(
            "",
            Some(r"((\[[0-9a-fA-F:.]+\]|[0-9]{1,3}(\.[0-9]{1,3}){3}):[0-9]{1,5})?"),
            "Where the supervisor runs `berth console`, e.g. `127.0.0.1:9470` (keep it on the loopback and let the app's web server pass `console.path` on to it); empty: the console is not run",
        ),
    );
    m.insert(
        "path".to_owned(),
        string(
            "/berth/",
            Some(CONSOLE_PATH_PATTERN),
            "The path under the app's address the app's web server passes on to the console, e.g. `/berth/` (templates read it as `settings.console.path`)",
        ),
    );
    m
}

/// The `[diagnose]` settings.
pub fn diagnose_settings() -> BTreeMap<String, SettingDecl> {
    let mut m = BTreeMap::new();
    m.insert(
        "report_url".to_owned(),
        string(
            "",
            Some("(https?://[^ ]+)?"),
            "Where berth sends the redacted error report of a failed `up`, `reconfigure`, `upgrade` or `restore` (an HTTP POST of the archive); empty: reports are only written under `state/reports/`",
        ),
    );
    m
}

/// The value `console.<key>` has when nobody set it; `None` for a key that is not a
/// console setting.
pub fn console_default(key: &str, facts: &Facts) -> Option<SettingValue> {
    let decl = console_settings().remove(key)?;
    crate::declared_default(&format!("{CONSOLE_GROUP}.{key}"), &decl, facts)
}

/// The value `metrics.<key>` has when nobody set it; `None` for a key that is not a
/// metrics setting.
pub fn metrics_default(key: &str, facts: &Facts) -> Option<SettingValue> {
    let decl = metrics_settings().remove(key)?;
    crate::declared_default(&format!("{METRICS_GROUP}.{key}"), &decl, facts)
}

/// The value `upgrade.<key>` has when nobody set it; `None` for a key that is not an
/// upgrade setting.
pub fn upgrade_default(key: &str, facts: &Facts) -> Option<SettingValue> {
    let decl = upgrade_settings().remove(key)?;
    crate::declared_default(&format!("{UPGRADE_GROUP}.{key}"), &decl, facts)
}

/// The value `backup.<key>` has when nobody set it (its declared default, or derived
/// from `facts`); `None` for a key that is not a backup setting.
///
/// ```
/// use berth_model::{Facts, SettingValue, builtin::backup_default};
/// assert_eq!(backup_default("keep_weekly", &Facts::fixture()), Some(SettingValue::Int(4)));
/// ```
pub fn backup_default(key: &str, facts: &Facts) -> Option<SettingValue> {
    let decl = backup_settings().remove(key)?;
    crate::declared_default(&format!("{BACKUP_GROUP}.{key}"), &decl, facts)
}

/// Adds berth's own settings groups to `m`. Returns the name of a group the manifest
/// declared itself that clashes with one of them.
pub(crate) fn add_builtin_settings(m: &mut Manifest) -> Result<(), &'static str> {
    for group in [
        BACKUP_GROUP,
        UPGRADE_GROUP,
        METRICS_GROUP,
        DIAGNOSE_GROUP,
        CONSOLE_GROUP,
    ] {
        if m.settings.contains_key(group) {
            return Err(group);
        }
    }
    m.settings
        .insert(BACKUP_GROUP.to_owned(), backup_settings());
    m.settings
        .insert(UPGRADE_GROUP.to_owned(), upgrade_settings());
    m.settings
        .insert(METRICS_GROUP.to_owned(), metrics_settings());
    m.settings
        .insert(DIAGNOSE_GROUP.to_owned(), diagnose_settings());
    m.settings
        .insert(CONSOLE_GROUP.to_owned(), console_settings());
    Ok(())
}
