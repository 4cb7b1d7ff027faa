//! berth's lifecycle orchestration: the imperative shell around the pure core.
//!
//! - [`instance`]: find an instance (prefix, manifest, site config) and resolve it.
//! - [`converge`]: `up`, `reconfigure` and their dry run, each step journaled in the state database.
//! - [`supervisor`]: start the supervisor daemon and talk to it.
//! - [`hooks`]: run one-shot hooks with a timeout and a log file.
//! - [`progress`]: how steps are reported without printing.
//! - [`systemd`]: the supervisor as a systemd unit, where systemd is PID 1.

pub mod converge;
pub mod hooks;
pub mod http;
pub mod instance;
pub mod progress;
pub mod supervisor;
pub mod systemd;

pub use converge::{Outcome, UpReport};
pub use instance::{Instance, Locate};
pub use progress::{Progress, Silent};
