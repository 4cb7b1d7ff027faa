//! The last applied state: JSON values by key (e.g. per-service spec fingerprints).

use jiff::Timestamp;
use rusqlite::{OptionalExtension, params};

use crate::{StateDb, StateError};

impl StateDb {
    /// Stores `value` under `key`, replacing what was there.
    pub fn set_applied(&self, key: &str, value: &serde_json::Value) -> Result<(), StateError> {
        let text = serde_json::to_string(value).map_err(|source| StateError::Encode {
            key: key.to_owned(),
            source,
        })?;
        self.conn
            .execute(
                "INSERT INTO applied (key, value, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                params![key, text, Timestamp::now().to_string()],
            )
            .map_err(|e| self.query_err(format!("store the applied state `{key}`"), e))?;
        Ok(())
    }

    /// The value last stored under `key`, if any.
    pub fn applied(&self, key: &str) -> Result<Option<serde_json::Value>, StateError> {
        let text: Option<String> = self
            .conn
            .query_row("SELECT value FROM applied WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()
            .map_err(|e| self.query_err(format!("read the applied state `{key}`"), e))?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| self.corrupt(format!("applied state `{key}`"), &e))
        })
        .transpose()
    }

    /// Removes `key`; removing a missing key is not an error.
    pub fn clear_applied(&self, key: &str) -> Result<(), StateError> {
        self.conn
            .execute("DELETE FROM applied WHERE key = ?1", [key])
            .map_err(|e| self.query_err(format!("remove the applied state `{key}`"), e))?;
        Ok(())
    }
}
