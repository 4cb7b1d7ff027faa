//! What a berth backup archive says about itself: the typed form of the archive's
//! signed metadata (`docs/backup.md` lists every key). Written by `backup create`, read
//! by `verify`, `list` and `restore` only after the signature checked out (`list`
//! shows unauthenticated values and never acts on them).

use berth_archive::Meta;
use berth_model::manifest::DatabaseKind;
use serde::{Deserialize, Serialize};

/// The metadata of a backup archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupMeta {
    /// The app's name.
    pub app: String,
    /// The app's version.
    pub app_version: String,
    /// When the backup was made (RFC 3339, UTC, whole seconds).
    pub created: String,
    /// The berth that made it.
    pub berth_version: String,
    /// The host it was made on.
    pub hostname: String,
    /// The components enabled on the instance.
    pub components: Vec<String>,
    /// The data directories in the archive, relative to `data/`, under `data/<dir>/`.
    #[serde(default)]
    pub data_dirs: Vec<String>,
    /// The database dump, if the app has a database.
    pub database: Option<DatabaseMeta>,
    /// The services paused while the data directories were copied.
    pub quiesce: QuiesceMeta,
    /// The public half of the key that signed the archive (`ed25519:…`).
    pub signed_by: String,
    /// Whether and how the instance's secrets are in the archive.
    pub secrets: SecretsMeta,
}

/// The database dump in an archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabaseMeta {
    /// The engine.
    pub kind: DatabaseKind,
    /// The database's name.
    pub name: String,
    /// The dump's format (`directory`: `pg_dump --format=directory`).
    pub format: String,
    /// Where the dump is in the archive: `database/<name>`.
    pub path: String,
    /// The parallel jobs the dump was made with.
    pub jobs: u32,
    /// The server's version, e.g. `15.10`.
    pub server_version: String,
    /// How long the dump took.
    pub dump_seconds: f64,
}

/// Writers paused while the data directories were copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuiesceMeta {
    /// The services paused.
    pub services: Vec<String>,
    /// For how long.
    pub milliseconds: u64,
}

/// The secrets in an archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretsMeta {
    /// Whether `secrets.age` is in the archive.
    pub included: bool,
    /// How they are encrypted (`age`), when included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<String>,
    /// The key they are encrypted to (an age recipient), when included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// Why leaving them out matters, when not included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

impl BackupMeta {
    /// The archive's metadata map.
    pub fn to_meta(&self) -> Result<Meta, serde_json::Error> {
        match serde_json::to_value(self)? {
            serde_json::Value::Object(map) => Ok(Meta::from(map)),
            _ => unreachable!("a struct serialises to a JSON object"),
        }
    }

    /// The typed metadata of an archive; `Err` says what does not fit berth's format.
    pub fn from_meta(meta: &Meta) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::Object(meta.0.clone())).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BackupMeta {
        BackupMeta {
            app: "demo".into(),
            app_version: "1.0.0".into(),
            created: "2026-12-01T10:00:00Z".into(),
            berth_version: "0.1.0".into(),
            hostname: "box".into(),
            components: vec!["web".into()],
            data_dirs: vec!["app/media".into()],
            database: Some(DatabaseMeta {
                kind: DatabaseKind::Postgresql,
                name: "demo".into(),
                format: "directory".into(),
                path: "database/demo".into(),
                jobs: 2,
                server_version: "15.10".into(),
                dump_seconds: 0.5,
            }),
            quiesce: QuiesceMeta {
                services: vec!["web".into()],
                milliseconds: 12,
            },
            signed_by: "ed25519:abc".into(),
            secrets: SecretsMeta {
                included: false,
                encryption: None,
                recipient: None,
                warning: Some("no key".into()),
            },
        }
    }

    /// The keys of the format as archives made so far carry them: an archive of an
    /// earlier build reads back the same.
    #[test]
    fn metadata_keeps_its_keys_and_reads_back() {
        let meta = sample().to_meta().unwrap();
        let mut keys: Vec<&str> = meta.0.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "app",
                "app_version",
                "berth_version",
                "components",
                "created",
                "data_dirs",
                "database",
                "hostname",
                "quiesce",
                "secrets",
                "signed_by"
            ]
        );
        assert_eq!(meta.app(), Some("demo"));
        assert_eq!(meta.created().unwrap().to_string(), "2026-12-01T10:00:00Z");
        assert_eq!(BackupMeta::from_meta(&meta).unwrap(), sample());
    }

    /// Metadata of the wrong shape (a signed archive made by something else) is named,
    /// not read as empty.
    #[test]
    fn metadata_of_the_wrong_shape_is_an_error() {
        let mut meta = sample().to_meta().unwrap();
        meta.insert("data_dirs", "app/media");
        let err = BackupMeta::from_meta(&meta).unwrap_err();
        assert!(err.contains("invalid type"), "{err}");
    }
}
