//! Which `once`, `release` and `change` hooks have run.

use jiff::Timestamp;
use rusqlite::{OptionalExtension, params};

use crate::{RunId, StateDb, StateError};

/// The scope of a `once` hook: it runs once in the life of the instance.
/// (`release` hooks use the app version as their scope.)
pub const INSTANCE_SCOPE: &str = "instance";

/// How the scope of a `when = "change"` hook starts: `change <key>`.
const CHANGE_PREFIX: &str = "change ";

/// The last successful run of a `when = "change"` hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRecord {
    /// The fingerprint it ran with (`sha256:…`).
    pub key: String,
    /// What the fingerprint was made of, as the lifecycle wrote it (JSON); `None` in
    /// records made before they were kept.
    pub inputs: Option<String>,
}

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

    /// The last successful run of `when = "change"` hook `name`, if any. Of records
    /// made before [`StateDb::record_change_hook`] kept only one, the newest.
    pub fn last_change_hook(&self, name: &str) -> Result<Option<ChangeRecord>, StateError> {
        // A database opened read only is not migrated: before migration 5 there is no
        // `inputs` column to read.
        let version = crate::db::read_user_version(&self.conn)
            .map_err(|e| self.query_err("read the schema version", e))?;
        let inputs = if version >= 5 { "inputs" } else { "NULL" };
        self.conn
            .query_row(
                &format!(
                    "SELECT scope, {inputs} FROM hooks WHERE name = ?1 AND scope LIKE 'change %' \
                     ORDER BY rowid DESC LIMIT 1"
                ),
                params![name],
                |row| {
                    let scope: String = row.get(0)?;
                    Ok(ChangeRecord {
                        key: scope
                            .strip_prefix(CHANGE_PREFIX)
                            .unwrap_or(&scope)
                            .to_owned(),
                        inputs: row.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.query_err(format!("look up change hook `{name}`"), e))
    }

    /// Records that `when = "change"` hook `name` ran successfully with fingerprint
    /// `key` (made of `inputs`) during `run`, replacing its earlier records: only the
    /// last key counts, so going back to an earlier one runs the hook again.
    pub fn record_change_hook(
        &self,
        name: &str,
        key: &str,
        inputs: &str,
        run: RunId,
    ) -> Result<(), StateError> {
        let err = |e| self.query_err(format!("record change hook `{name}` of run {run}"), e);
        let tx = self.conn.unchecked_transaction().map_err(err)?;
        tx.execute(
            "DELETE FROM hooks WHERE name = ?1 AND scope LIKE 'change %'",
            params![name],
        )
        .map_err(err)?;
        tx.execute(
            "INSERT INTO hooks (name, scope, run_id, ran_at, inputs) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                name,
                format!("{CHANGE_PREFIX}{key}"),
                run.0,
                Timestamp::now().to_string(),
                inputs
            ],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Forgets every hook record made by run `run` or a later one: after the data
    /// those hooks changed was put back from a backup taken before `run` (an upgrade
    /// rolled back), they must run again when their turn comes. Returns how many
    /// records were forgotten.
    pub fn forget_hooks_since(&self, run: RunId) -> Result<usize, StateError> {
        self.conn
            .execute("DELETE FROM hooks WHERE run_id >= ?1", params![run.0])
            .map_err(|e| self.query_err(format!("forget the hooks of run {run} and later"), e))
    }
}
