//! The daemon's own log lines.
//!
//! The daemon's stderr *is* its log file (whoever starts it redirects it there), so
//! writing a timestamped line to stderr is how the supervisor logs. Never pass
//! environment values here: they may hold secrets.

use std::fmt;
use std::time::SystemTime;

/// Write one timestamped line to the daemon log (stderr).
#[allow(clippy::print_stderr)] // stderr is the daemon's log file, see the module docs
pub(crate) fn line(args: fmt::Arguments<'_>) {
    eprintln!(
        "{} berth-supervisor: {args}",
        humantime::format_rfc3339_seconds(SystemTime::now())
    );
}

/// `say!("service `{}` is ready", name)`: one line in the daemon log.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::say::line(format_args!($($arg)*))
    };
}

pub(crate) use say;
