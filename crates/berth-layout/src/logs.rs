//! The names of a rotated log, as with runit's `svlogd`: `current` is being written,
//! `current.1` is the most recent rotated file, `current.<keep>` the oldest kept.
//!
//! The supervisor writes by these names (relative to the log directory's descriptor)
//! and `berth tail` follows them, so both take them from here.

use std::path::{Path, PathBuf};

/// The file a service's or job's output is appended to, in its log directory.
pub const CURRENT: &str = "current";

/// The name of the `index`-th rotated file (1 is the most recent): `current.<index>`.
///
/// ```
/// assert_eq!(berth_layout::logs::rotated(3), "current.3");
/// ```
pub fn rotated(index: u32) -> String {
    format!("{CURRENT}.{index}")
}

/// The file being written in the log directory `dir`: `<dir>/current`.
pub fn current_in(dir: &Path) -> PathBuf {
    dir.join(CURRENT)
}
