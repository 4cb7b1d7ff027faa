//! The embedded state database of a berth instance: one SQLite file under
//! `<prefix>/state`, private to its owner (mode 0600), in WAL mode.
//!
//! It is a record of what berth did, not something it replays:
//!
//! - **Runs** ([`StateDb::begin_run`], [`StateDb::finish_run`], [`StateDb::history`]):
//!   one record per `up`, `reconfigure`, `backup` and `restore`, with its
//!   outcome; `berth history` shows them. A run berth never finished (it crashed or was
//!   killed) stays without an outcome and is shown as interrupted.
//! - **Journal** ([`StateDb::begin_step`], [`StateDb::finish_step`]): each step of a
//!   run is written *before* it is taken and finished after, so the `steps` table
//!   shows how far each run got and how long each step took. berth does not read it
//!   back to finish or undo an interrupted run; the benchmarks read it with SQL.
//! - **Hooks** ([`StateDb::hook_ran`], [`StateDb::record_hook`]): `once` hooks run once per
//!   instance ([`INSTANCE_SCOPE`]), `release` hooks once per app version;
//!   `change` hooks keep the last fingerprint they ran with and its inputs
//!   ([`StateDb::last_change_hook`], [`StateDb::record_change_hook`]). This is the
//!   part berth reads back to decide what to do.
//! - **Pending services** ([`StateDb::record_pending_services`],
//!   [`StateDb::pending_services`]): what a run will restart, reload, start and stop,
//!   recorded before it writes the files that call for it and cleared once the
//!   services have acted (at the latest when it finishes), so the next run can finish
//!   what a killed one left undone.
//!
//! The schema is migrated on [`StateDb::open`] (`PRAGMA user_version`), each migration in
//! its own transaction.
//!
//! # Example
//!
//! ```
//! use berth_state::{RunOutcome, RunStatus, StateDb, StepStatus};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let db = StateDb::open(dir.path().join("state/berth.db"))?;
//!
//! let run = db.begin_run("reconfigure", "")?;
//! let step = db.begin_step(run, "write etc/nginx.conf")?;
//! // ... take the step ...
//! db.finish_step(step, &StepStatus::Done)?;
//! db.finish_run(run, &RunOutcome {
//!     status: RunStatus::Succeeded,
//!     files_changed: vec!["etc/nginx.conf".into()],
//!     services_reloaded: vec!["nginx".into()],
//!     ..RunOutcome::default()
//! })?;
//!
//! let history = db.history(10)?;
//! assert_eq!(history[0].kind, "reconfigure");
//! assert!(history[0].outcome.is_some());
//! # Ok(())
//! # }
//! ```

mod db;
mod error;
mod hooks;
mod journal;
mod pending;
mod runs;
mod schema;

pub use db::StateDb;
pub use error::StateError;
pub use hooks::{ChangeRecord, INSTANCE_SCOPE};
pub use journal::{StepId, StepStatus};
pub use pending::{PendingServices, Unfinished};
pub use runs::{RunId, RunOutcome, RunRecord, RunStatus};

/// The schema version this build of berth writes.
#[allow(clippy::cast_possible_truncation)] // a handful of migrations, never 2^32
pub const SCHEMA_VERSION: u32 = schema::MIGRATIONS.len() as u32;
