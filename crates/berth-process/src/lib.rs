//! Starting a child process safely: the one place berth forks and execs.
//!
//! Services, jobs, readiness commands, hooks, database tools and Python builds all
//! start through [`ChildCommand`], so every child gets the same treatment:
//!
//! - **Identity** ([`Account`], [`Credentials`]): as root, the passwd entry of the
//!   user it runs as: uid, gid and *all* its supplementary groups (as `initgroups`
//!   would; std's `Command::uid` would drop them), and `HOME`, `USER`, `LOGNAME` from
//!   that entry.
//! - **A clean environment**: a base `PATH`, `LANG=C.UTF-8`, the identity's
//!   variables, then the caller's; nothing of berth's own environment.
//! - **Signals** ([`reset_signals_in_child`]): every signal at its default action and
//!   none blocked, whatever berth inherited (a `nohup` leaves SIGHUP ignored).
//! - **Its own process group** ([`Detach`]): a new session or a new group, so
//!   signalling the group reaches the child and all it started.
//! - **Dying with berth** ([`ChildCommand::die_with_parent`]): `PR_SET_PDEATHSIG`
//!   with `SIGKILL`, armed after the switch of user (which would clear it).
//! - **Finding it again** ([`ProcessGroup`]): the group's id with its leader's start
//!   time and the boot id, so a later berth can kill what a killed one left running
//!   and never a stranger that got a recycled pid.
//!
//! # Example
//!
//! ```no_run
//! use berth_process::{ChildCommand, ProcessGroup};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut cmd = ChildCommand::new("/usr/bin/env");
//! cmd.user(Some("nobody"))
//!     .env("GREETING", "hello")
//!     .current_dir("/")
//!     .die_with_parent();
//! let mut child = cmd.build()?.spawn()?;
//! let group = ProcessGroup::led_by(child.id())?;
//! // ... record `group` somewhere a later berth finds it ...
//! child.wait()?;
//! # let _ = group;
//! # Ok(())
//! # }
//! ```

mod account;
mod command;
mod group;

pub use account::{Account, Credentials};
pub use command::{ChildCommand, Detach};
pub use group::{
    Killed, Member, ProcessGroup, ProcessStamp, current_boot_id, group_alive, group_members,
    process_alive,
};

/// Why a child could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The command line has no program.
    #[error("the command line is empty")]
    EmptyCommand,
    /// The user to run as has no passwd entry.
    #[error("there is no system user `{name}`")]
    NoSuchUser {
        /// The user name.
        name: String,
    },
    /// The passwd or group database could not be read for the user.
    #[error("failed to look up user `{name}`: {source}")]
    UserLookup {
        /// The user name.
        name: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A value handed to the kernel holds a NUL byte.
    #[error("the {what} contains a NUL byte")]
    NulByte {
        /// What it was.
        what: String,
    },
}

impl From<ProcessError> for std::io::Error {
    fn from(err: ProcessError) -> Self {
        let kind = match &err {
            ProcessError::NoSuchUser { .. } => std::io::ErrorKind::NotFound,
            ProcessError::UserLookup { source, .. } => source.kind(),
            ProcessError::EmptyCommand | ProcessError::NulByte { .. } => {
                std::io::ErrorKind::InvalidInput
            }
        };
        std::io::Error::new(kind, err)
    }
}

/// For a forked child, before `exec`: every signal back to its default action and none
/// blocked, whatever the process that started berth had. A `nohup` leaves SIGHUP
/// ignored, and an ignored signal stays ignored across `exec`: a service's reload signal
/// would do nothing, and a shell cannot even trap it.
///
/// Only async-signal-safe calls (`rt_sigaction`, `sigprocmask`), so it may run in
/// `pre_exec`. The system call itself, not libc's `signal`, which refuses the two
/// real-time signals glibc keeps for itself: a parent that ignores one of those
/// would hand that on too.
pub fn reset_signals_in_child() {
    // The kernel's `struct sigaction` all zero: SIG_DFL, no flags, an empty mask.
    let default = [0_u64; 4];
    // The kernel's signal set size: 64 signals.
    let set_size: libc::size_t = 8;
    // SAFETY: plain system calls on a zeroed buffer and a zeroed, then emptied, signal set.
    unsafe {
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    default.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    set_size,
                );
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &raw const none, std::ptr::null_mut());
    }
}
