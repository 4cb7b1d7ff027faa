//! What a run means to do to the services, recorded before it writes the files that
//! call for it.
//!
//! A run killed after writing a file but before restarting the service that reads it
//! leaves that service on the old value, and the next run sees no file to change. So
//! the run records the restarts, reloads, starts and stops first
//! ([`StateDb::record_pending_services`]); once the services have acted on the new
//! files ([`StateDb::clear_pending_services`]), or at the latest when the run finishes
//! ([`StateDb::finish_run`]), the record is cleared. A record whose run never finished is what the next mutating
//! command finishes first ([`StateDb::pending_services`]).

use jiff::Timestamp;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::{RunId, StateDb, StateError};

/// The services a run means to act on once its files are written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingServices {
    /// To restart.
    pub restart: Vec<String>,
    /// To reload.
    pub reload: Vec<String>,
    /// To start (new to the plan).
    pub start: Vec<String>,
    /// To stop (they left the plan).
    pub stop: Vec<String>,
}

impl PendingServices {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.restart.is_empty()
            && self.reload.is_empty()
            && self.start.is_empty()
            && self.stop.is_empty()
    }
}

/// A record left by a run that never finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unfinished {
    /// The run that recorded it.
    pub run: RunId,
    /// `up`, `reconfigure` …
    pub kind: String,
    /// When it was recorded.
    pub recorded_at: Timestamp,
    /// What it meant to do.
    pub services: PendingServices,
}

impl StateDb {
    /// Records what run `run` will do to the services, replacing what it recorded
    /// before. Call it before writing anything that calls for it.
    pub fn record_pending_services(
        &self,
        run: RunId,
        services: &PendingServices,
    ) -> Result<(), StateError> {
        let text = serde_json::to_string(services).unwrap_or_else(|_| "{}".to_owned());
        self.conn
            .execute(
                "INSERT INTO pending_services (run_id, services, recorded_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (run_id) DO UPDATE SET services = ?2, recorded_at = ?3",
                params![run.0, text, Timestamp::now().to_string()],
            )
            .map_err(|e| self.query_err(format!("record the pending services of run {run}"), e))?;
        Ok(())
    }

    /// Forgets what run `run` recorded (it did it, or another run did it for it).
    pub fn clear_pending_services(&self, run: RunId) -> Result<(), StateError> {
        self.conn
            .execute("DELETE FROM pending_services WHERE run_id = ?1", [run.0])
            .map_err(|e| self.query_err(format!("clear the pending services of run {run}"), e))?;
        Ok(())
    }

    /// What runs that never finished meant to do to the services, oldest first, not
    /// counting run `except` (the caller's own). Empty for a database from a berth
    /// that did not record them (opened read-only, so not migrated).
    pub fn pending_services(&self, except: Option<RunId>) -> Result<Vec<Unfinished>, StateError> {
        let action = "read the pending services of unfinished runs";
        let has_table = self
            .conn
            .query_row(
                "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'pending_services'",
                [],
                |_| Ok(()),
            )
            .optional()
            .map_err(|e| self.query_err(action, e))?
            .is_some();
        if !has_table {
            return Ok(Vec::new());
        }
        let rows = self
            .conn
            .prepare(
                "SELECT p.run_id, r.kind, p.recorded_at, p.services
                 FROM pending_services p JOIN runs r ON r.id = p.run_id
                 WHERE r.finished_at IS NULL AND p.run_id IS NOT ?1
                 ORDER BY p.run_id",
            )
            .and_then(|mut stmt| {
                stmt.query_map([except.map(|r| r.0)], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, String>(3)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(|e| self.query_err(action, e))?;
        rows.into_iter()
            .map(|(id, kind, at, text)| {
                Ok(Unfinished {
                    run: RunId(id),
                    kind,
                    recorded_at: self
                        .parse_time(&at, || format!("pending services of run {id}"))?,
                    services: serde_json::from_str(&text)
                        .map_err(|e| self.corrupt(format!("pending services of run {id}"), &e))?,
                })
            })
            .collect()
    }
}
