//! The archive manifest (`berth-backup.json`) and the caller's metadata in it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The archive format this crate writes and reads.
pub const FORMAT: u32 = 3;

/// The name of the last tar entry, which holds the archive manifest.
pub const MANIFEST_ENTRY: &str = "berth-backup.json";

/// The caller's metadata: a free-form JSON object stored in the manifest.
///
/// berth fills it with the app, its version, the berth version, the creation time, the
/// hostname, the components, and what it knows about the database, quiescing and secrets.
/// This crate reads only the typed accessors below; everything else is opaque to it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Meta(pub Map<String, Value>);

impl Meta {
    /// Metadata with the three keys every berth archive has: `app`, `app_version` and
    /// `created` (RFC 3339, UTC, whole seconds).
    pub fn new(app: &str, app_version: &str, created: jiff::Timestamp) -> Self {
        let mut map = Map::new();
        map.insert("app".into(), app.into());
        map.insert("app_version".into(), app_version.into());
        map.insert("created".into(), format_created(created).into());
        Self(map)
    }

    /// Sets `key` to `value`, replacing any earlier value.
    pub fn insert(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        self.0.insert(key.to_owned(), value.into());
        self
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// The app name (`app`), if set and a string.
    pub fn app(&self) -> Option<&str> {
        self.0.get("app").and_then(Value::as_str)
    }

    /// The app version (`app_version`), if set and a string.
    pub fn app_version(&self) -> Option<&str> {
        self.0.get("app_version").and_then(Value::as_str)
    }

    /// The creation time (`created`), if set and a valid RFC 3339 timestamp.
    pub fn created(&self) -> Option<jiff::Timestamp> {
        self.0.get("created")?.as_str()?.parse().ok()
    }
}

impl From<Map<String, Value>> for Meta {
    fn from(map: Map<String, Value>) -> Self {
        Self(map)
    }
}

fn format_created(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The manifest of an archive: its metadata and the list of every entry but itself.
///
/// It is stored twice, byte for byte: as the last tar entry ([`MANIFEST_ENTRY`]) and
/// in the index frame at the end of the file, which is what [`crate::read_index`] reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchiveManifest {
    /// The archive format, [`FORMAT`].
    pub format: u32,
    /// The caller's metadata.
    pub meta: Meta,
    /// Every tar entry before the manifest itself, in archive order.
    pub entries: Vec<Entry>,
}

impl ArchiveManifest {
    /// The entry stored at `path`, if any.
    pub fn entry(&self, path: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.path == path)
    }

    /// The number of regular files.
    pub fn file_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .count()
    }

    /// The total size in bytes of the regular files: what a progress bar over
    /// [`crate::verify`] or [`crate::extract`] counts up to.
    pub fn total_size(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
}

/// One entry of the archive, as listed in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The path inside the archive: relative, `/`-separated, without `.` or `..`.
    pub path: String,
    /// What it is.
    pub kind: EntryKind,
    /// The size in bytes of a file's content; 0 for directories and symlinks.
    pub size: u64,
    /// The SHA-256 of a file's content, lowercase hex; `None` for the other kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The permission bits (including setuid, setgid and sticky), stored as an octal
    /// string such as `"0640"`.
    #[serde(with = "octal_mode")]
    pub mode: u32,
    /// A symlink's target, as stored in the link; `None` for the other kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

mod octal_mode {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    #[allow(clippy::trivially_copy_pass_by_ref)] // the signature serde's `with` requires
    pub fn serialize<S: Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{mode:04o}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let s = String::deserialize(d)?;
        match u32::from_str_radix(&s, 8) {
            Ok(mode) if mode <= 0o7777 && !s.is_empty() => Ok(mode),
            _ => Err(D::Error::custom(format!(
                "`{s}` is not an octal permission mode"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_json_shape() {
        let file = Entry {
            path: "data/a.txt".into(),
            kind: EntryKind::File,
            size: 3,
            sha256: Some("ab".into()),
            mode: 0o640,
            target: None,
        };
        let link = Entry {
            path: "data/l".into(),
            kind: EntryKind::Symlink,
            size: 0,
            sha256: None,
            mode: 0o777,
            target: Some("a.txt".into()),
        };
        let json = serde_json::to_string(&[&file, &link]).unwrap();
        assert_eq!(
            json,
            r#"[{"path":"data/a.txt","kind":"file","size":3,"sha256":"ab","mode":"0640"},{"path":"data/l","kind":"symlink","size":0,"mode":"0777","target":"a.txt"}]"#
        );
        let back: Vec<Entry> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, vec![file, link]);
    }

    #[test]
    fn bad_modes_are_refused() {
        for bad in ["\"\"", "\"0999\"", "\"17777\"", "\"rw\""] {
            let json = format!(r#"{{"path":"a","kind":"dir","size":0,"mode":{bad}}}"#);
            assert!(serde_json::from_str::<Entry>(&json).is_err(), "{bad}");
        }
    }

    #[test]
    fn meta_accessors() {
        let t: jiff::Timestamp = "2025-03-04T05:06:07.5Z".parse().unwrap();
        let mut meta = Meta::new("netbox", "4.2.1", t);
        meta.insert("hostname", "box1");
        assert_eq!(meta.app(), Some("netbox"));
        assert_eq!(meta.app_version(), Some("4.2.1"));
        assert_eq!(meta.get("created").unwrap(), "2025-03-04T05:06:07Z");
        assert_eq!(
            meta.created(),
            Some("2025-03-04T05:06:07Z".parse().unwrap())
        );
        assert_eq!(meta.get("hostname").unwrap(), "box1");
        assert_eq!(Meta::default().app(), None);
    }
}
