//! Which `once` and `release` hooks have run.

use jiff::Timestamp;
use rusqlite::{OptionalExtension, params};

use crate::{RunId, StateDb, StateError};

/// The scope of a `once` hook: it runs once in the life of the instance.
/// (`release` hooks use the app version as their scope.)
pub const INSTANCE_SCOPE: &str = "instance";

impl StateDb {
    /// Whether hook `name` already ran in `scope` ([`INSTANCE_SCOPE`] or an app version).
    pub fn hook_ran(&self, name: &str, scope: &str) -> Result<bool, StateError> {
        self.conn
            .query_row(
                "SELECT 1 FROM hooks WHERE name = ?1 AND scope = ?2",
                params![name, scope],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(|e| self.query_err(format!("look up hook `{name}` ({scope})"), e))
    }

    /// Records that hook `name` ran successfully in `scope` during `run`.
    /// Recording it again keeps the first record.
    pub fn record_hook(&self, name: &str, scope: &str, run: RunId) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO hooks (name, scope, run_id, ran_at) VALUES (?1, ?2, ?3, ?4)",
                params![name, scope, run.0, Timestamp::now().to_string()],
            )
            .map_err(|e| {
                self.query_err(format!("record hook `{name}` ({scope}) of run {run}"), e)
            })?;
        Ok(())
    }
}
