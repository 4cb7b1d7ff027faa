//! The backup and upgrade policies: the site's `[backup]` and `[upgrade]` settings, typed.
//!
//! The values come from the resolved config; a setting missing from it (a config
//! resolved without berth's own settings) takes the default declared in
//! [`berth_model::builtin`], so no default is written twice.

use std::path::PathBuf;
use std::time::Duration;

use berth_model::builtin::{
    BACKUP_GROUP, CONSOLE_GROUP, METRICS_GROUP, UPGRADE_GROUP, backup_default, console_default,
    metrics_default, upgrade_default,
};
use berth_model::{Facts, ResolvedConfig, SettingValue};
use serde::{Deserialize, Serialize};

use crate::{Paths, RenderError};

/// How, where and how often backups are taken and kept (`[backup]` in the site config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupPolicy {
    /// Where archives are kept (`backup.target`).
    pub target: BackupTarget,
    /// How often the supervisor takes one (`backup.schedule`).
    pub schedule: Schedule,
    /// Parallel jobs of the database dump and restore (`backup.jobs`, at least 1).
    pub jobs: u32,
    /// zstd level of archives (`backup.compression_level`).
    pub compression_level: i32,
    /// `backup prune` keeps this many newest archives (`backup.keep_last`).
    pub keep_last: u32,
    /// ... and the newest of each of this many recent days (`backup.keep_daily`).
    pub keep_daily: u32,
    /// ... and the newest of each of this many recent ISO weeks (`backup.keep_weekly`).
    pub keep_weekly: u32,
    /// Private key for an `sftp://` target (`backup.ssh_identity`; `None`: ssh's default).
    pub ssh_identity: Option<PathBuf>,
    /// known_hosts for an `sftp://` target (`backup.ssh_known_hosts`; `None`: ssh's default).
    pub ssh_known_hosts: Option<PathBuf>,
    /// age public key the secrets are encrypted to (`backup.recipient`; `None`: the
    /// instance's backup key).
    pub recipient: Option<String>,
}

/// Where archives are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupTarget {
    /// Nothing configured: this local directory (`<prefix>/backups`).
    Default(PathBuf),
    /// As the administrator wrote it: an absolute directory or `sftp://…`, parsed
    /// (and refused) when a backup command uses it.
    Configured(String),
}

/// How often scheduled backups run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Never (`off`).
    Off,
    /// Every this long (shown like `1day`).
    Every(#[serde(with = "human_duration")] Duration),
}

/// The backup policy of `config`.
pub fn backup_policy(
    config: &ResolvedConfig,
    facts: &Facts,
    paths: &Paths,
) -> Result<BackupPolicy, RenderError> {
    let settings = Settings {
        group: BACKUP_GROUP,
        config,
        facts,
    };
    let text = |key: &str| -> Result<Option<String>, RenderError> {
        Ok(Some(settings.string(key)?).filter(|s| !s.is_empty()))
    };
    let target = match text("target")? {
        Some(t) => BackupTarget::Configured(t),
        None => BackupTarget::Default(paths.default_backups()),
    };
    let schedule = match settings.string("schedule")?.as_str() {
        "" | "off" => Schedule::Off,
        every => Schedule::Every(humantime::parse_duration(every).map_err(|_| {
            RenderError::Duration {
                field: format!("{BACKUP_GROUP}.schedule"),
                value: every.to_owned(),
            }
        })?),
    };
    Ok(BackupPolicy {
        target,
        schedule,
        jobs: settings.number::<u32>("jobs")?.max(1),
        compression_level: settings.number("compression_level")?,
        keep_last: settings.number("keep_last")?,
        keep_daily: settings.number("keep_daily")?,
        keep_weekly: settings.number("keep_weekly")?,
        ssh_identity: text("ssh_identity")?.map(PathBuf::from),
        ssh_known_hosts: text("ssh_known_hosts")?.map(PathBuf::from),
        recipient: text("recipient")?,
    })
}

/// How far automatic upgrades go (`upgrade.auto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoUpgrade {
    /// Never.
    Off,
    /// To the newest release of the running minor series (4.7.x).
    Patch,
    /// To the newest release of the running major series (4.x).
    Minor,
}

/// Automatic upgrades (`[upgrade]` in the site config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradePolicy {
    /// How far (`upgrade.auto`).
    pub auto: AutoUpgrade,
    /// Where new versions are looked for (`upgrade.source`; `None` when empty).
    pub source: Option<PathBuf>,
    /// When an automatic upgrade may begin: minutes after midnight UTC, from and to
    /// (`upgrade.window`; the window passes midnight when `to` < `from`).
    pub window: (u16, u16),
    /// How often the supervisor looks (`upgrade.check_every`).
    #[serde(with = "human_duration")]
    pub check_every: Duration,
    /// Release directories kept (`upgrade.keep_releases`).
    pub keep_releases: u32,
}

impl UpgradePolicy {
    /// Whether `minute` (after midnight UTC) is inside the window.
    pub fn in_window(&self, minute: u16) -> bool {
        let (from, to) = self.window;
        if from <= to {
            (from..to).contains(&minute)
        } else {
            minute >= from || minute < to
        }
    }
}

/// The upgrade policy of `config`.
pub fn upgrade_policy(
    config: &ResolvedConfig,
    facts: &Facts,
) -> Result<UpgradePolicy, RenderError> {
    let settings = Settings {
        group: UPGRADE_GROUP,
        config,
        facts,
    };
    let auto = match settings.string("auto")?.as_str() {
        "patch" => AutoUpgrade::Patch,
        "minor" => AutoUpgrade::Minor,
        _ => AutoUpgrade::Off,
    };
    let window_text = settings.string("window")?;
    let minute = |hhmm: &str| -> Option<u16> {
        let (h, m) = hhmm.split_once(':')?;
        Some(h.parse::<u16>().ok()? * 60 + m.parse::<u16>().ok()?)
    };
    let window = window_text
        .split_once('-')
        .and_then(|(a, b)| Some((minute(a)?, minute(b)?)))
        .ok_or_else(|| settings.unusable("window", "`HH:MM-HH:MM`"))?;
    let every = settings.string("check_every")?;
    let check_every = humantime::parse_duration(&every).map_err(|_| RenderError::Duration {
        field: format!("{UPGRADE_GROUP}.check_every"),
        value: every.clone(),
    })?;
    Ok(UpgradePolicy {
        auto,
        source: Some(settings.string("source")?)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from),
        window,
        check_every,
        keep_releases: settings.number("keep_releases")?,
    })
}

/// Where the supervisor serves metrics (`metrics.listen`), if anywhere.
pub fn metrics_listen(
    config: &ResolvedConfig,
    facts: &Facts,
) -> Result<Option<String>, RenderError> {
    let settings = Settings {
        group: METRICS_GROUP,
        config,
        facts,
    };
    Ok(Some(settings.string("listen")?).filter(|s| !s.is_empty()))
}

/// Where the supervisor runs the web console (`console.listen`) and the path the
/// app's web server passes on to it (`console.path`), if it runs at all.
pub fn console(
    config: &ResolvedConfig,
    facts: &Facts,
) -> Result<Option<crate::ConsoleSpec>, RenderError> {
    let settings = Settings {
        group: CONSOLE_GROUP,
        config,
        facts,
    };
    let listen = settings.string("listen")?;
    if listen.is_empty() {
        return Ok(None);
    }
    Ok(Some(crate::ConsoleSpec {
        listen,
        path: settings.string("path")?,
    }))
}

/// The values of one of berth's own settings groups in a resolved config, with the
/// built-in defaults behind them.
struct Settings<'a> {
    group: &'static str,
    config: &'a ResolvedConfig,
    facts: &'a Facts,
}

impl Settings<'_> {
    fn value(&self, key: &str) -> Option<SettingValue> {
        self.config
            .settings
            .get(self.group)
            .and_then(|group| group.get(key))
            .map(|r| r.value.clone())
            .or_else(|| {
                if self.group == UPGRADE_GROUP {
                    upgrade_default(key, self.facts)
                } else if self.group == METRICS_GROUP {
                    metrics_default(key, self.facts)
                } else if self.group == CONSOLE_GROUP {
                    console_default(key, self.facts)
                } else {
                    backup_default(key, self.facts)
                }
            })
    }

    fn string(&self, key: &str) -> Result<String, RenderError> {
        match self.value(key) {
            Some(SettingValue::String(s)) => Ok(s),
            _ => Err(self.unusable(key, "a string")),
        }
    }

    fn number<T: TryFrom<i64>>(&self, key: &str) -> Result<T, RenderError> {
        match self.value(key) {
            Some(SettingValue::Int(n)) => T::try_from(n).map_err(|_| self.unusable(key, NUMBER)),
            _ => Err(self.unusable(key, NUMBER)),
        }
    }

    fn unusable(&self, key: &str, expected: &str) -> RenderError {
        RenderError::Setting {
            name: format!("{}.{key}", self.group),
            expected: expected.to_owned(),
        }
    }
}

const NUMBER: &str = "a whole number in its declared range";

/// Durations read as `1day` or `30m` in plans and snapshots.
mod human_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    // serde's `serialize_with` passes the field by reference.
    #[allow(clippy::trivially_copy_pass_by_ref)]
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}
