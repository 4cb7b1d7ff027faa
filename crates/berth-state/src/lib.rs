//! The embedded state database of a berth instance: one SQLite file under
//! `<prefix>/state`, private to its owner (mode 0600), in WAL mode.
//!
//! It remembers what berth did, so the next run can do only what changed and can
//! finish or roll back what a crash interrupted:
//!
//! - **Runs** ([`StateDb::begin_run`], [`StateDb::finish_run`], [`StateDb::history`]):
//!   one record per `up`, `reconfigure`, `upgrade`, `restore`, with its outcome.
//!   [`StateDb::unfinished_runs`] finds runs that were begun and never finished.
//! - **Journal** ([`StateDb::begin_step`], [`StateDb::finish_step`], [`StateDb::steps`]):
//!   each step of a run is written *before* it is taken.
//! - **Hooks** ([`StateDb::hook_ran`], [`StateDb::record_hook`]): `once` hooks run once per
//!   instance ([`INSTANCE_SCOPE`]), `release` hooks once per app version.
//! - **Applied state** ([`StateDb::set_applied`], [`StateDb::applied`]): JSON values by key,
//!   such as the per-service spec fingerprints of the last reconfigure.
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
//! assert!(db.unfinished_runs()?.is_empty());
//! assert_eq!(db.history(10)?[0].kind, "reconfigure");
//! # Ok(())
//! # }
//! ```

mod applied;
mod db;
mod error;
mod hooks;
mod journal;
mod runs;
mod schema;

pub use db::StateDb;
pub use error::StateError;
pub use hooks::INSTANCE_SCOPE;
pub use journal::{StepId, StepRecord, StepStatus};
pub use runs::{RunId, RunOutcome, RunRecord, RunStatus};

/// The schema version this build of berth writes.
#[allow(clippy::cast_possible_truncation)] // a handful of migrations, never 2^32
pub const SCHEMA_VERSION: u32 = schema::MIGRATIONS.len() as u32;
