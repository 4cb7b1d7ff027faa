//! Where berth keeps its backup archives, and which of them a retention policy keeps.
//!
//! A *target* is a directory, local or remote over SSH/SFTP, holding archives named
//! like `netbox-4.7.3-20261125T163000Z.berth.tar.zst`:
//!
//! - [`TargetSpec::parse`] reads `/srv/backups`, `file:///srv/backups`,
//!   `sftp://user@host:2222/srv/backups` (or `ssh://`) and `user@host:backups`.
//! - [`open`] gives a [`Target`]: a [`LocalTarget`] or an [`SshTarget`], which drives
//!   the system's OpenSSH `sftp` client in batch mode and never prompts.
//! - Uploads go to `NAME.partial` first, are size-checked, then renamed without ever
//!   replacing an existing archive; an interrupted upload resumes from its partial file.
//! - [`retention::decide`] applies a keep-last/daily/weekly [`retention::Policy`].
//!
//! # Example
//!
//! ```no_run
//! # fn demo() -> Result<(), berth_target::TargetError> {
//! use berth_target::{SshOptions, TargetSpec};
//!
//! let spec = TargetSpec::parse("sftp://backup@nas.example/srv/berth")?;
//! let target = berth_target::open(&spec, &SshOptions::default());
//! target.check(Some(1 << 30))?;
//! target.put(
//!     "/tmp/netbox-4.7.3-20261125T163000Z.berth.tar.zst".as_ref(),
//!     "netbox-4.7.3-20261125T163000Z.berth.tar.zst",
//!     &mut |_bytes| {},
//! )?;
//! for entry in target.list()? {
//!     let _ = (entry.name, entry.size);
//! }
//! # Ok(())
//! # }
//! ```

mod error;
mod local;
pub mod retention;
mod spec;
mod ssh;

use std::path::{Path, PathBuf};

pub use error::TargetError;
pub use local::LocalTarget;
pub use spec::{SshSpec, TargetSpec};
pub use ssh::{SshOptions, SshTarget};

/// The file name ending of a complete archive; [`Target::list`] shows only these.
pub const ARCHIVE_SUFFIX: &str = ".berth.tar.zst";

/// Appended to a name while its upload or download is in progress.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// Free space on a target, as far as it can be known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Space {
    /// Bytes this user may still write; `None` when the server cannot tell (an SFTP
    /// server without the `statvfs@openssh.com` extension).
    pub free: Option<u64>,
}

/// One archive on a target.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RemoteEntry {
    /// File name, ending in [`ARCHIVE_SUFFIX`].
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time; over SFTP only to the minute (`ls -l` precision).
    pub modified: Option<jiff::Timestamp>,
}

/// A place that keeps backup archives.
///
/// Names are plain file names (no `/`, no control characters, not starting with `.`
/// or `-`); anything else is [`TargetError::InvalidName`].
pub trait Target: Send + Sync {
    /// The target as the user would write it, for messages.
    fn describe(&self) -> String;

    /// Checks that the target is reachable, that its directory exists (creating it
    /// with mode 0700 if missing) and is writable, and, when `needed` is given, that
    /// at least that many bytes are free.
    fn check(&self, needed: Option<u64>) -> Result<Space, TargetError>;

    /// Complete archives only (names ending in [`ARCHIVE_SUFFIX`]), sorted by name;
    /// never `*.partial` files.
    fn list(&self) -> Result<Vec<RemoteEntry>, TargetError>;

    /// Uploads `local` as `name`: writes `name.partial` (resuming an existing shorter
    /// partial), checks its size, then renames it to `name` without replacing anything.
    /// Refuses if `name` already exists. `progress` gets cumulative bytes, at least at
    /// the start and at the end.
    fn put(
        &self,
        local: &Path,
        name: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), TargetError>;

    /// Like [`Target::put`], but `local` is consumed: a local target renames it into
    /// place when it is on the same filesystem (the usual case for a staging file in
    /// the target directory), otherwise it is copied and then removed.
    fn put_move(
        &self,
        local: &Path,
        name: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), TargetError> {
        self.put(local, name, progress)?;
        std::fs::remove_file(local).map_err(|source| TargetError::Io {
            target: self.describe(),
            context: format!("removing {} after the upload", local.display()),
            source,
        })
    }

    /// Downloads `name` into `local` (through `local.partial`, then a rename). Refuses
    /// if `local` exists.
    fn get(
        &self,
        name: &str,
        local: &Path,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), TargetError>;

    /// Deletes the archive `name`.
    fn delete(&self, name: &str) -> Result<(), TargetError>;

    /// Path of `name` when the target is local (no download needed), else `None`.
    fn local_path(&self, name: &str) -> Option<PathBuf>;
}

/// Opens the target a spec describes. Nothing is contacted until a method is called.
pub fn open(spec: &TargetSpec, ssh: &SshOptions) -> Box<dyn Target> {
    match spec {
        TargetSpec::Local(dir) => Box::new(LocalTarget::new(dir.clone())),
        TargetSpec::Ssh(spec) => Box::new(SshTarget::new(spec.clone(), ssh.clone())),
    }
}

/// Rejects names that are not a single plain file name, so a name can never reach
/// outside the target directory, hide as a dot file, read as an option, or break
/// sftp's line-based batch input.
pub(crate) fn validate_name(name: &str) -> Result<(), TargetError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.contains('/') {
        "it contains '/'"
    } else if name.chars().any(char::is_control) {
        "it contains a control character"
    } else if name.starts_with('.') {
        "it starts with '.'"
    } else if name.starts_with('-') {
        "it starts with '-'"
    } else if name.ends_with(PARTIAL_SUFFIX) {
        "names ending in .partial are reserved for transfers in progress"
    } else {
        return Ok(());
    };
    Err(TargetError::InvalidName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    })
}

/// Bytes in binary units with one decimal, for messages: `512 B`, `1.5 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    #[allow(clippy::cast_precision_loss)] // one decimal is all a message shows
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_file_names() {
        assert!(validate_name("netbox-4.7.3-20261125T163000Z.berth.tar.zst").is_ok());
        for bad in ["", "a/b", "../x", ".hidden", "-rf", "a\nb", "x.partial"] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn bytes_read_as_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(human_bytes(u64::MAX / 2), "8.0 EiB");
    }
}
