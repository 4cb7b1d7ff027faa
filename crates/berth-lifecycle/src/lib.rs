//! berth's lifecycle orchestration: the imperative shell around the pure core.
//!
//! - [`instance`]: find an instance (prefix, manifest, site config) and resolve it.
//! - [`run`]: a lifecycle operation as the history records it: named, journaled steps.
//! - [`desired`]: secrets, rendering, the supervision plan, masking.
//! - [`up`] and [`reconfigure`]: the two converging commands; [`dry_run`] shows what
//!   they would change; [`down`] stops the instance.
//! - [`interrupted`]: finish what a killed `up` or `reconfigure` left undone.
//! - [`supervisor`]: start the supervisor daemon and talk to it.
//! - [`hooks`]: run one-shot hooks with a timeout and a log file.
//! - [`handover`]: an online upgrade's services started beside themselves, traffic
//!   moved to them and back by reloading the front end.
//! - [`progress`]: how steps are reported without printing.
//! - [`systemd`]: the supervisor as a systemd unit, where systemd is PID 1.
//! - [`fault`]: fault points for the tests of interrupted operations.
//!
//! Backups and restores build on these parts in the `berth-backup` crate.

pub mod change;
pub mod desired;
pub mod down;
pub mod dry_run;
mod error;
pub mod fault;
pub mod handover;
pub mod health;
pub mod hooks;
pub mod http;
pub mod instance;
pub mod interrupted;
pub mod leftovers;
mod preflight;
pub mod progress;
pub mod reconfigure;
pub mod release;
pub mod run;
pub mod state_files;
pub mod supervisor;
pub mod systemd;
#[cfg(test)]
mod testing;
pub mod up;
pub mod upgrade;
pub mod users;

pub use down::{Down, Kept, down, kept, remove_homes, remove_host_files};
pub use dry_run::dry_run;
pub use error::{LifecycleError, Result};
pub use instance::{Instance, Locate, paths};
pub use progress::{Progress, Silent};
pub use reconfigure::reconfigure;
pub use run::{Outcome, Run};
pub use up::{UpReport, preflight_report, up};
