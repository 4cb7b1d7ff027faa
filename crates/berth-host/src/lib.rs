//! The host side of berth: the only crate that changes the machine.
//!
//! Everything else in berth is a pure function of its inputs; this crate probes the
//! host and makes it match a rendered [`berth_render::DesiredState`], changing only
//! what differs:
//!
//! - [`facts::probe`]: CPUs (affinity, cgroup quota), memory (cgroup limit), host name,
//!   user, OS and whether systemd runs, as [`berth_model::facts::Facts`].
//! - [`secrets::SecretStore`]: secrets generated once from the OS random generator,
//!   stored one per file with mode 0600, never regenerated.
//! - [`converge::plan`] and [`converge::apply`]: users, directories and files. The plan
//!   is serialisable and prints as a masked diff (`reconfigure --dry-run`); applying
//!   it is all-or-nothing for directories and files.
//! - [`beneath::SafeDir`]: acting as root beneath a directory someone else owns, by
//!   descriptors, never following a symlink (chown, chmod, remove, rename, write).
//! - [`staging`]: a berth process's working directories under `tmp/`, named after it,
//!   and the sweep that removes those an interrupted process left.
//! - [`fsutil::write_atomic`]: temp file, fsync, mode and owner, rename, fsync the directory.
//! - [`users`]: look up and create system users.
//! - [`packages`]: find missing distribution packages and install them with apt.
//! - [`python`]: find a Python matching a version requirement and build a venv.
//! - [`listeners::held_only_by_group`]: whether a TCP port is listened on by one
//!   process group alone (before traffic is sent to it).
//! - [`children::ChildRecords`]: the process groups of lifecycle steps' children,
//!   recorded while they run, and killed by the next run when a killed berth left them.
//! - [`unfinished::UnfinishedOutput`]: a step's half-made output told apart from a
//!   finished one, and removed before the step runs again.
//!
//! # Example
//!
//! ```no_run
//! # fn demo(state: &berth_render::DesiredState) -> Result<(), berth_host::HostError> {
//! use berth_host::{converge, secrets::SecretStore, users};
//!
//! let store = SecretStore::open(&state.paths.secrets)?;
//! let secrets = store.ensure(&state.secrets)?;
//! let mask: Vec<String> = secrets.values().cloned().collect();
//!
//! let plan = converge::plan(state, &mask, users::is_root())?;
//! if !plan.is_empty() {
//!     let report = converge::apply(&plan, state)?.report;
//!     // restart report.restart, reload report.reload
//! }
//! # Ok(())
//! # }
//! ```

pub mod beneath;
pub mod children;
pub mod converge;
mod error;
pub mod facts;
pub mod fsutil;
pub mod host_files;
pub mod interpreter;
pub mod listeners;
pub mod packages;
pub mod portable;
pub mod preflight;
pub mod python;
pub mod secrets;
pub mod staging;
pub mod unfinished;
pub mod users;

pub use error::{HostError, Result};
