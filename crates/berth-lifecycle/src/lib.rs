//! berth's lifecycle orchestration: the imperative shell around the pure core.
//!
//! - [`instance`]: find an instance (prefix, manifest, site config) and resolve it.
//! - [`up`] and [`reconfigure`]: the two converging commands, each step journaled in the state database.
//! - [`converge`]: what they share (rendering, the file converge, the dry run, masking).
//! - [`supervisor`]: start the supervisor daemon and talk to it.
//! - [`hooks`]: run one-shot hooks with a timeout and a log file.
//! - [`progress`]: how steps are reported without printing.
//! - [`systemd`]: the supervisor as a systemd unit, where systemd is PID 1.

pub mod backup;
mod change;
pub mod converge;
mod database;
mod error;
pub mod hooks;
pub mod http;
pub mod instance;
mod preflight;
pub mod progress;
pub mod reconfigure;
mod release;
pub mod restore;
pub mod supervisor;
pub mod systemd;
pub mod trust;
pub mod up;

pub use converge::{Outcome, autostart_marker, dry_run};
pub use error::{LifecycleError, Result};
pub use instance::{Instance, Locate};
pub use progress::{Progress, Silent};
pub use reconfigure::reconfigure;
pub use up::{UpReport, up};
