//! Opening the database: file creation, pragmas, migrations.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::StateError;
use crate::schema::MIGRATIONS;

/// How long a writer waits for another berth process holding the database.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The instance's state database: run history, the step journal and hook runs. One
/// SQLite file in WAL mode, readable by its owner only.
#[derive(Debug)]
pub struct StateDb {
    pub(crate) conn: Connection,
    pub(crate) path: PathBuf,
}

impl StateDb {
    /// Opens the database at `path`, creating it (mode 0600) and its parent directory
    /// (mode 0700) when missing, and brings the schema up to date.
    ///
    /// Opening is idempotent: an up-to-date database is left as it is.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StateError> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|source| StateError::CreateDir {
                    path: parent.to_path_buf(),
                    source,
                })?;
        }
        create_private_file(&path)?;

        let open_err = |source| StateError::Open {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "wal")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "normal")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(open_err)?;

        let mut db = Self { conn, path };
        db.migrate()?;
        Ok(db)
    }

    /// Opens an existing database to read only: nothing is created, tightened or
    /// migrated (a dry run changes nothing). `None` when there is no database yet.
    ///
    /// A database whose last writer closed it cleanly has everything in its main file
    /// and is read as immutable, which creates no `-wal` or `-shm` file beside it. One a
    /// writer still has open, or was killed with, is read through the `-wal` and `-shm`
    /// files already there.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Option<Self>, StateError> {
        let path = path.as_ref().to_path_buf();
        if !path.exists() {
            return Ok(None);
        }
        let open_err = |source| StateError::Open {
            path: path.clone(),
            source,
        };
        let beside = |suffix: &str| {
            let mut name = path.clone().into_os_string();
            name.push(suffix);
            PathBuf::from(name).exists()
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = if beside("-wal") && beside("-shm") {
            Connection::open_with_flags(&path, flags)
        } else {
            Connection::open_with_flags(immutable_uri(&path), flags | OpenFlags::SQLITE_OPEN_URI)
        }
        .map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        Ok(Some(Self { conn, path }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies every migration the database has not seen, each in its own transaction.
    fn migrate(&mut self) -> Result<(), StateError> {
        let known = crate::SCHEMA_VERSION;
        loop {
            // IMMEDIATE takes the write lock first, so two berth processes opening a
            // fresh database at once cannot both apply the same migration.
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|source| StateError::Open {
                    path: self.path.clone(),
                    source,
                })?;
            let current = read_user_version(&tx).map_err(|source| StateError::Open {
                path: self.path.clone(),
                source,
            })?;
            if current > known {
                return Err(StateError::TooNew {
                    path: self.path.clone(),
                    found: current,
                    known,
                });
            }
            let Some(sql) = MIGRATIONS.get(current as usize) else {
                return Ok(());
            };
            let version = current + 1;
            let migrate_err = |source| StateError::Migrate {
                path: self.path.clone(),
                version,
                source,
            };
            tx.execute_batch(sql).map_err(migrate_err)?;
            tx.pragma_update(None, "user_version", version)
                .map_err(migrate_err)?;
            tx.commit().map_err(migrate_err)?;
        }
    }

    pub(crate) fn query_err(
        &self,
        action: impl Into<String>,
        source: rusqlite::Error,
    ) -> StateError {
        StateError::Query {
            path: self.path.clone(),
            action: action.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        &self,
        what: impl Into<String>,
        detail: &dyn std::fmt::Display,
    ) -> StateError {
        StateError::Corrupt {
            path: self.path.clone(),
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}

/// `file:<path>?immutable=1`, with the characters a URI gives a meaning escaped.
fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3F"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    uri
}

pub(crate) fn read_user_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.pragma_query_value(None, "user_version", |row| row.get::<_, u32>(0))
}

/// Creates `path` with mode 0600 if missing, and tightens it to 0600 if it exists.
fn create_private_file(path: &Path) -> Result<(), StateError> {
    let err = |source| StateError::CreateFile {
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    let mode = file.metadata().map_err(err)?.permissions().mode();
    if mode & 0o077 != 0 {
        file.set_permissions(Permissions::from_mode(0o600))
            .map_err(err)?;
    }
    Ok(())
}
