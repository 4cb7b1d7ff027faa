//! Backups and restores of a berth instance, built on the lifecycle's parts (the run
//! context, rendering, hooks, the supervisor, `up`).
//!
//! - [`backup`]: create, list, verify and prune archives; the backup key.
//! - [`restore`]: bring an instance back from an archive, journaled, resumable and
//!   abortable.
//! - [`trust`]: the keys archives are signed with and checked against, and the checks
//!   of what an archive brings before anything of it is used.
//! - [`leftovers`]: staging directories named after their process, and the removal of
//!   what an interrupted backup or restore left.
//! - [`meta`]: what an archive says about itself (its signed metadata, typed).
//! - [`database`]: the app's database as backups see it (PostgreSQL's tools).

pub mod backup;
pub mod database;
mod error;
pub mod leftovers;
pub mod meta;
pub mod offline;
pub mod restore;
pub mod secrets_from;
#[cfg(test)]
mod testing;
pub mod trust;

pub use error::{BackupError, Result};
