//! The error type of the state database.

use std::path::PathBuf;

/// Everything that can go wrong while reading or writing the state database.
///
/// Every variant names the database file (or the record) it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The directory that holds the database could not be created.
    #[error("Failed to create the state directory `{path}`")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The database file could not be created or given mode 0600.
    #[error("Failed to create the state database `{path}` with mode 0600")]
    CreateFile {
        /// The database file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// SQLite refused to open the file or to set it up (WAL mode, busy timeout).
    #[error("Failed to open the state database `{path}`")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// A schema migration failed; the database was left at the previous version.
    #[error("Failed to migrate the state database `{path}` to schema version {version}")]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// The version the migration would have reached.
        version: u32,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer berth.
    #[error(
        "The state database `{path}` has schema version {found}, but this berth only knows up to version {known}; upgrade berth before using this instance"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// The version found in the file.
        found: u32,
        /// The newest version this build knows.
        known: u32,
    },
    /// A read or write failed.
    #[error("Failed to {action} in the state database `{path}`")]
    Query {
        /// The database file.
        path: PathBuf,
        /// What was being done, e.g. `record the start of run 3`.
        action: String,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored value could not be decoded.
    #[error("The state database `{path}` holds an unreadable {what}: {detail}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What was being read, e.g. `start time of run 3`.
        what: String,
        /// Why it could not be read.
        detail: String,
    },
    /// A run id that is not in the database.
    #[error("Run {id} is not in the state database `{path}`")]
    UnknownRun {
        /// The database file.
        path: PathBuf,
        /// The run id.
        id: i64,
    },
    /// A run was finished twice.
    #[error("Run {id} in the state database `{path}` is already finished")]
    RunAlreadyFinished {
        /// The database file.
        path: PathBuf,
        /// The run id.
        id: i64,
    },
    /// A step id that is not in the database.
    #[error("Journal step {id} is not in the state database `{path}`")]
    UnknownStep {
        /// The database file.
        path: PathBuf,
        /// The step id.
        id: i64,
    },
}
