//! Spawning a service or job process: clean environment, own process group,
//! optional privilege drop, and signalling the whole group.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::str::FromStr;

use berth_supervisor_protocol::{JobSpec, ServiceSpec};
use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::{Gid, Pid, Uid, User};
use tokio::process::Command;

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

    /// A command ready to spawn: stdin from `/dev/null`, a new session (so the child
    /// leads its own process group), and when running as root with a `user`, that
    /// user's uid, gid and supplementary groups.
    pub(crate) fn command(&self) -> io::Result<Command> {
        let Some((program, args)) = self.argv.split_first() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the command line is empty",
            ));
        };
        let identity = Identity::resolve(self.user.as_deref())?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .env("PATH", berth_supervisor_protocol::BASE_PATH)
            .env("LANG", "C.UTF-8")
            .env("HOME", &identity.home)
            .env("USER", &identity.name)
            .env("LOGNAME", &identity.name)
            .envs(&self.env)
            .stdin(Stdio::null());
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        let switch = identity.switch;
        // SAFETY: the closure only makes async-signal-safe system calls (signal,
        // sigprocmask, setsid, fstat, fchown, setgroups, setgid, setuid) on data
        // prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                crate::reset_signals_in_child();
                if libc::setsid() == -1 {
                    return Err(io::Error::last_os_error());
                }
                if let Some(switch) = &switch {
                    // Hand the stdout/stderr pipes to the service user, so a program
                    // that reopens `/dev/stdout` (nginx's access_log, many 12-factor
                    // apps) may do so. Only pipes: never chown /dev/null or a file.
                    for fd in [1, 2] {
                        let mut st: libc::stat = std::mem::zeroed();
                        if libc::fstat(fd, &raw mut st) == 0
                            && (st.st_mode & libc::S_IFMT) == libc::S_IFIFO
                        {
                            libc::fchown(fd, switch.uid, switch.gid);
                        }
                    }
                }
                if let Some(switch) = &switch {
                    switch.switch()?;
                }
                Ok(())
            });
        }
        Ok(cmd)
    }
}

/// Who the child runs as.
struct Identity {
    name: String,
    home: PathBuf,
    switch: Option<Credentials>,
}

/// A user's uid, gid and supplementary groups, to switch to in a forked child (only
/// possible as root). Services and hooks both run through it, so both get the user's
/// groups (std's `Command::uid` would drop every supplementary group).
pub struct Credentials {
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
}

impl Credentials {
    /// The credentials of `user`, its supplementary groups looked up now (before a fork).
    ///
    /// # Errors
    /// The name holds a NUL byte, or the group database cannot be read.
    pub fn of(user: &User) -> io::Result<Self> {
        let cname = CString::new(user.name.as_str()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the user name contains a NUL byte",
            )
        })?;
        let groups = nix::unistd::getgrouplist(&cname, user.gid)
            .map_err(io::Error::from)?
            .into_iter()
            .map(Gid::as_raw)
            .collect();
        Ok(Self {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            groups,
        })
    }

    /// Switch the calling process to these credentials: groups, then gid, then uid.
    /// Only async-signal-safe calls, so it may run in `pre_exec`.
    ///
    /// # Errors
    /// The system call's error (e.g. not running as root).
    pub fn switch(&self) -> io::Result<()> {
        // SAFETY: plain system calls on memory owned by `self`.
        let failed = unsafe {
            libc::setgroups(self.groups.len(), self.groups.as_ptr()) == -1
                || libc::setgid(self.gid) == -1
                || libc::setuid(self.uid) == -1
        };
        if failed {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

impl Identity {
    fn resolve(user: Option<&str>) -> io::Result<Self> {
        let running_as_root = Uid::effective().is_root();
        if let Some(name) = user
            && running_as_root
        {
            let entry = User::from_name(name)
                .map_err(io::Error::from)?
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("there is no system user `{name}`"),
                    )
                })?;
            let switch = Credentials::of(&entry)?;
            return Ok(Self {
                name: entry.name,
                home: entry.dir,
                switch: Some(switch),
            });
        }
        // Not root (or no user asked for): run as ourselves.
        let me = User::from_uid(Uid::effective()).ok().flatten();
        let name = me
            .as_ref()
            .map_or_else(|| Uid::effective().to_string(), |u| u.name.clone());
        let home = me.map_or_else(|| PathBuf::from("/"), |u| u.dir);
        Ok(Self {
            name,
            home,
            switch: None,
        })
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

/// Whether any live (non-zombie) process remains in the group `pgid`.
pub(crate) fn group_alive(pgid: u32) -> bool {
    let Ok(raw) = i32::try_from(pgid) else {
        return false;
    };
    if signal::killpg(Pid::from_raw(raw), None).is_err() {
        return false;
    }
    // `kill(-pgid, 0)` also succeeds for zombies nobody has reaped yet; on Linux,
    // look closer so an orphaned zombie does not hold up a stop.
    group_members(pgid).is_none_or(|members| members.iter().any(|m| m.state != 'Z'))
}

/// Whether no process of the group `pgid` can run until continued: each one is
/// stopped (`SIGSTOP`) or dead. True when that cannot be known (no `/proc`).
///
/// A process in uninterruptible sleep (`D`) is usually finishing a system call, a
/// write perhaps, and is waited for; but a shell that vforked stays in `D` until its
/// child execs, which a stopped child never does, so that one counts as stopped.
pub(crate) fn group_stopped(pgid: u32) -> bool {
    let stopped = |state: char| matches!(state, 'T' | 't');
    group_members(pgid).is_none_or(|members| {
        members.iter().all(|m| {
            stopped(m.state)
                || matches!(m.state, 'Z' | 'X')
                || (m.state == 'D' && members.iter().any(|c| c.parent == m.id && stopped(c.state)))
        })
    })
}

/// One process as `/proc/<pid>/stat` shows it.
struct Member {
    id: u32,
    parent: u32,
    /// `R`, `S`, `D`, `T`, `Z`, ...
    state: char,
}

/// The processes of the group `group`, read from `/proc`; `None` without a readable `/proc`.
fn group_members(group: u32) -> Option<Vec<Member>> {
    let entries = std::fs::read_dir("/proc").ok()?;
    let members = entries
        .flatten()
        .filter_map(|entry| {
            let id: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // Fields after the `(comm)`: state ppid pgrp ...
            let (_, rest) = stat.rsplit_once(')')?;
            let mut fields = rest.split_whitespace();
            let state = fields.next()?.chars().next()?;
            let parent = fields.next()?.parse().ok()?;
            let pgrp: u32 = fields.next()?.parse().ok()?;
            (pgrp == group).then_some(Member { id, parent, state })
        })
        .collect();
    Some(members)
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
