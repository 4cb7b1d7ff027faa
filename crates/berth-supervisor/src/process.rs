//! Spawning a service or job process (through [`berth_process::ChildCommand`]: clean
//! environment, own session, the service's user and groups) and signalling its whole group.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::str::FromStr;

use berth_process::ChildCommand;
use berth_supervisor_protocol::{JobSpec, ServiceSpec};
use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tokio::process::Command;

pub(crate) use berth_process::group_alive;

/// What to run and as whom: the part of a service or job spec that makes a process.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub(crate) argv: Vec<String>,
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) user: Option<String>,
}

impl Launch {
    pub(crate) fn service(spec: &ServiceSpec) -> Self {
        Self {
            argv: spec.argv.clone(),
            env: spec.env.clone(),
            cwd: spec.cwd.clone(),
            user: spec.user.clone(),
        }
    }

    pub(crate) fn job(spec: &JobSpec) -> Self {
        Self {
            argv: spec.argv.clone(),
            env: spec.env.clone(),
            cwd: spec.cwd.clone(),
            user: spec.user.clone(),
        }
    }

    /// The same identity and environment, running another program (readiness commands).
    pub(crate) fn with_argv(&self, argv: &[String]) -> Self {
        Self {
            argv: argv.to_vec(),
            ..self.clone()
        }
    }

    /// A command ready to spawn: clean environment, stdin from `/dev/null`, a new
    /// session (so the child leads its own process group), and when running as root
    /// with a `user`, that user's uid, gid and supplementary groups, and the stdout and
    /// stderr pipes handed to that user.
    pub(crate) fn command(&self) -> io::Result<Command> {
        let mut child = ChildCommand::from_argv(&self.argv)?;
        child
            .user(self.user.as_deref())
            .envs(&self.env)
            .hand_pipes_to_user();
        if let Some(cwd) = &self.cwd {
            child.current_dir(cwd);
        }
        Ok(Command::from(child.build()?))
    }
}

/// `exit 1`, `signal SIGKILL`: how a process ended, as status and logs show it.
pub(crate) fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        format!("exit {code}")
    } else if let Some(number) = status.signal() {
        match Signal::try_from(number) {
            Ok(sig) => format!("signal {}", sig.as_str()),
            Err(_) => format!("signal {number}"),
        }
    } else {
        "unknown exit".to_owned()
    }
}

/// Parse `SIGTERM`, `TERM` or `term`.
pub(crate) fn parse_signal(name: &str) -> Result<Signal, String> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&full).map_err(|_| format!("`{name}` is not a signal name"))
}

/// Send `sig` to the process group of a child we have *not reaped yet*, falling back
/// to the child itself in the instant before it called `setsid`.
pub(crate) fn signal_child_group(pid: u32, sig: Signal) {
    let Ok(raw) = i32::try_from(pid) else { return };
    if signal::killpg(Pid::from_raw(raw), sig) == Err(Errno::ESRCH) {
        let _ = signal::kill(Pid::from_raw(raw), sig);
    }
}

/// Send `sig` to what is left of the process group `pgid` after its leader was
/// reaped. Never signals a single pid, which may have been reused by then.
/// A group that is already gone is fine.
pub(crate) fn signal_leftovers(pgid: u32, sig: Signal) {
    let Ok(raw) = i32::try_from(pgid) else { return };
    let _ = signal::killpg(Pid::from_raw(raw), sig);
}

/// Send `sig` to one process.
pub(crate) fn signal_process(pid: u32, sig: Signal) -> Result<(), String> {
    let raw = i32::try_from(pid).map_err(|_| format!("pid {pid} is out of range"))?;
    signal::kill(Pid::from_raw(raw), sig)
        .map_err(|err| format!("failed to send {} to pid {pid}: {err}", sig.as_str()))
}

/// Whether no process of the group `pgid` can run until continued: each one is
/// stopped (`SIGSTOP`) or dead. True when that cannot be known (no `/proc`).
///
/// A process in uninterruptible sleep (`D`) is usually finishing a system call, a
/// write perhaps, and is waited for; but a shell that vforked stays in `D` until its
/// child execs, which a stopped child never does, so that one counts as stopped.
pub(crate) fn group_stopped(pgid: u32) -> bool {
    let stopped = |state: char| matches!(state, 'T' | 't');
    berth_process::group_members(pgid).is_none_or(|members| {
        members.iter().all(|m| {
            stopped(m.state)
                || matches!(m.state, 'Z' | 'X')
                || (m.state == 'D'
                    && members
                        .iter()
                        .any(|c| c.parent == m.pid && stopped(c.state)))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        assert_eq!(parse_signal("SIGTERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("hup"), Ok(Signal::SIGHUP));
        assert!(parse_signal("SIGNOPE").is_err());
    }

    #[test]
    fn exit_descriptions() {
        assert_eq!(describe_exit(ExitStatus::from_raw(1 << 8)), "exit 1");
        assert_eq!(describe_exit(ExitStatus::from_raw(9)), "signal SIGKILL");
    }
}
