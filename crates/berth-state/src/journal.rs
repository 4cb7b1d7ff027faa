//! The journal: the steps of a run, each written before it is taken, so a run that
//! never finished shows how far it got. berth only writes it; `berth history` shows
//! the runs, and the benchmarks read the step timestamps with SQL.

use jiff::Timestamp;
use rusqlite::params;
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

    /// The steps of `run` in the order they were journaled, each with how it ended
    /// (`None`: begun and never finished, e.g. the process was killed).
    pub fn steps(&self, run: RunId) -> Result<Vec<(String, Option<StepStatus>)>, StateError> {
        let what = || format!("read the journal of run {run}");
        let mut stmt = self
            .conn
            .prepare("SELECT name, status, error FROM steps WHERE run_id = ?1 ORDER BY id")
            .map_err(|e| self.query_err(what(), e))?;
        let rows = stmt
            .query_map(params![run.0], |row| {
                let name: String = row.get(0)?;
                let status: Option<String> = row.get(1)?;
                let error: Option<String> = row.get(2)?;
                Ok((name, status, error))
            })
            .map_err(|e| self.query_err(what(), e))?;
        let mut out = Vec::new();
        for row in rows {
            let (name, status, error) = row.map_err(|e| self.query_err(what(), e))?;
            let status = match status.as_deref() {
                None => None,
                Some("done") => Some(StepStatus::Done),
                Some("rolled_back") => Some(StepStatus::RolledBack),
                Some(_) => Some(StepStatus::Failed {
                    error: error.unwrap_or_default(),
                }),
            };
            out.push((name, status));
        }
        Ok(out)
    }
}
