//! The journal: the steps of a run, each written before it is taken.

use jiff::Timestamp;
use rusqlite::{Row, params};
use serde::{Deserialize, Serialize};

use crate::{RunId, StateDb, StateError};

/// The id of a journal step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StepId(pub i64);

impl std::fmt::Display for StepId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StepStatus {
    /// It was taken.
    Done,
    /// It failed.
    Failed {
        /// The error, as shown to the administrator (never holds secrets).
        error: String,
    },
    /// It was taken, then undone because a later step failed.
    RolledBack,
}

impl StepStatus {
    fn as_str(&self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Failed { .. } => "failed",
            Self::RolledBack => "rolled_back",
        }
    }
}

/// A journal step as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Its id; later steps have larger ids.
    pub id: StepId,
    /// The run it belongs to.
    pub run: RunId,
    /// What it does, e.g. `write /srv/app/etc/nginx.conf` or `migrate database`.
    pub name: String,
    /// When it was journaled, just before it was taken.
    pub started_at: Timestamp,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
    /// How it ended; `None` if it was begun and never finished (the crash point).
    pub status: Option<StepStatus>,
}

struct RawStep {
    id: i64,
    run: i64,
    name: String,
    started_at: String,
    finished_at: Option<String>,
    status: Option<String>,
    error: Option<String>,
}

impl RawStep {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            run: row.get(1)?,
            name: row.get(2)?,
            started_at: row.get(3)?,
            finished_at: row.get(4)?,
            status: row.get(5)?,
            error: row.get(6)?,
        })
    }
}

impl StateDb {
    /// Journals step `name` of `run`, before it is taken.
    pub fn begin_step(&self, run: RunId, name: &str) -> Result<StepId, StateError> {
        let now = Timestamp::now();
        self.conn
            .execute(
                "INSERT INTO steps (run_id, name, started_at) VALUES (?1, ?2, ?3)",
                params![run.0, name, now.to_string()],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(ref err, _)
                    if err.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    StateError::UnknownRun {
                        path: self.path.clone(),
                        id: run.0,
                    }
                }
                e => self.query_err(format!("journal step `{name}` of run {run}"), e),
            })?;
        Ok(StepId(self.conn.last_insert_rowid()))
    }

    /// Records how a step ended. A step may be finished again later, e.g. `Done`
    /// then `RolledBack` when a later step fails.
    pub fn finish_step(&self, step: StepId, status: &StepStatus) -> Result<(), StateError> {
        let error = match status {
            StepStatus::Failed { error } => Some(error.as_str()),
            StepStatus::Done | StepStatus::RolledBack => None,
        };
        let changed = self
            .conn
            .execute(
                "UPDATE steps SET finished_at = ?2, status = ?3, error = ?4 WHERE id = ?1",
                params![step.0, Timestamp::now().to_string(), status.as_str(), error],
            )
            .map_err(|e| self.query_err(format!("record the end of journal step {step}"), e))?;
        if changed == 0 {
            return Err(StateError::UnknownStep {
                path: self.path.clone(),
                id: step.0,
            });
        }
        Ok(())
    }

    /// The steps of `run`, in the order they were journaled.
    pub fn steps(&self, run: RunId) -> Result<Vec<StepRecord>, StateError> {
        let raws = self
            .conn
            .prepare(
                "SELECT id, run_id, name, started_at, finished_at, status, error
                 FROM steps WHERE run_id = ?1 ORDER BY id",
            )
            .and_then(|mut stmt| {
                stmt.query_map([run.0], RawStep::from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(|e| self.query_err(format!("read the journal of run {run}"), e))?;
        raws.into_iter().map(|raw| self.decode_step(raw)).collect()
    }

    fn decode_step(&self, raw: RawStep) -> Result<StepRecord, StateError> {
        let id = raw.id;
        let started_at = self.parse_time(&raw.started_at, || format!("start time of step {id}"))?;
        let finished_at = raw
            .finished_at
            .as_deref()
            .map(|t| self.parse_time(t, || format!("end time of step {id}")))
            .transpose()?;
        let status = match raw.status.as_deref() {
            None => None,
            Some("done") => Some(StepStatus::Done),
            Some("rolled_back") => Some(StepStatus::RolledBack),
            Some("failed") => Some(StepStatus::Failed {
                error: raw.error.unwrap_or_default(),
            }),
            Some(other) => {
                return Err(self.corrupt(
                    format!("status of step {id}"),
                    &format!("unknown status `{other}`"),
                ));
            }
        };
        Ok(StepRecord {
            id: StepId(id),
            run: RunId(raw.run),
            name: raw.name,
            started_at,
            finished_at,
            status,
        })
    }
}
