//! [`ChildCommand`]: the one way berth prepares a child process.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Account, Credentials, ProcessError, reset_signals_in_child};

/// How the child is set apart from berth's own process group, so that signalling
/// its group reaches it and everything it starts, and nothing of berth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Detach {
    /// A new session (`setsid`): its own process group and no controlling terminal,
    /// so a terminal's Ctrl-C or hang-up never reaches it.
    #[default]
    Session,
    /// Its own process group (`setpgid(0, 0)`) in berth's session.
    Group,
}

/// A child process to start: program and arguments, who it runs as, a clean
/// environment, a working directory, and what it inherits of berth (nothing: every
/// signal at its default and unblocked, its own session or process group).
///
/// [`build`](Self::build) turns it into a [`std::process::Command`] (convert that into
/// a `tokio::process::Command` with `From` for async use); stdio is set on that.
#[derive(Debug, Clone)]
pub struct ChildCommand {
    program: OsString,
    args: Vec<OsString>,
    user: Option<String>,
    path: String,
    env: BTreeMap<OsString, OsString>,
    cwd: Option<PathBuf>,
    detach: Detach,
    die_with_parent: bool,
    umask: Option<libc::mode_t>,
    pipes_to_user: bool,
}

impl ChildCommand {
    /// A command running `program` (an absolute path, or a name looked up in the
    /// child's `PATH`).
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Self {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            user: None,
            path: berth_supervisor_protocol::BASE_PATH.to_owned(),
            env: BTreeMap::new(),
            cwd: None,
            detach: Detach::default(),
            die_with_parent: false,
            umask: None,
            pipes_to_user: false,
        }
    }

    /// A command from a whole command line: `argv[0]` is the program.
    pub fn from_argv<S: AsRef<OsStr>>(command_line: &[S]) -> Result<Self, ProcessError> {
        let (program, args) = command_line
            .split_first()
            .ok_or(ProcessError::EmptyCommand)?;
        let mut cmd = Self::new(program);
        cmd.args(args);
        Ok(cmd)
    }

    /// The program, for messages.
    pub fn program(&self) -> &OsStr {
        &self.program
    }

    /// One more argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// More arguments.
    pub fn args<S: AsRef<OsStr>>(&mut self, args: impl IntoIterator<Item = S>) -> &mut Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Run as `user` when berth is root: its uid, gid and supplementary groups from the
    /// passwd and group databases, and its `HOME`, `USER` and `LOGNAME`. When berth is
    /// not root the child runs as berth's own user (it cannot switch), with that
    /// user's `HOME`, `USER` and `LOGNAME`.
    pub fn user(&mut self, user: Option<&str>) -> &mut Self {
        self.user = user.map(str::to_owned);
        self
    }

    /// The child's `PATH` (default: [`BASE_PATH`](berth_supervisor_protocol::BASE_PATH)).
    pub fn path(&mut self, path: &str) -> &mut Self {
        path.clone_into(&mut self.path);
        self
    }

    /// One variable, on top of the clean environment; it wins over the variables
    /// berth sets itself (`PATH`, `LANG`, `HOME`, `USER`, `LOGNAME`).
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.env
            .insert(key.as_ref().to_owned(), value.as_ref().to_owned());
        self
    }

    /// Several variables, as [`env`](Self::env).
    pub fn envs<K, V>(&mut self, vars: impl IntoIterator<Item = (K, V)>) -> &mut Self
    where
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self.env(k, v);
        }
        self
    }

    /// The working directory, entered after the switch to the child's user, so root
    /// never enters a directory on the child's behalf.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// A new session (the default) or only a process group of its own.
    pub fn detach(&mut self, detach: Detach) -> &mut Self {
        self.detach = detach;
        self
    }

    /// The child is killed (`SIGKILL`) when berth dies, however it dies
    /// (`PR_SET_PDEATHSIG`). Linux ties this to the *thread* that starts the child:
    /// start it from a thread that lives as long as the wait for it. What the child
    /// starts itself does not inherit it; kill its process group for those.
    pub fn die_with_parent(&mut self) -> &mut Self {
        self.die_with_parent = true;
        self
    }

    /// The child's umask (default: berth's).
    pub fn umask(&mut self, mask: u32) -> &mut Self {
        self.umask = Some(mask as libc::mode_t);
        self
    }

    /// Give the stdout and stderr pipes to the child's user, so a program that
    /// reopens `/dev/stdout` (nginx's `access_log`, many 12-factor apps) may do so.
    /// Only pipes are handed over: never `/dev/null` or a file.
    pub fn hand_pipes_to_user(&mut self) -> &mut Self {
        self.pipes_to_user = true;
        self
    }

    /// The `std` command, stdin from `/dev/null`; set stdout and stderr on it.
    ///
    /// # Errors
    /// The user does not exist or its groups cannot be read, or a value holds a NUL byte.
    pub fn build(&self) -> Result<Command, ProcessError> {
        let identity = self.identity()?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .env("PATH", &self.path)
            .env("LANG", "C.UTF-8")
            .env("HOME", &identity.home)
            .env("USER", &identity.name)
            .env("LOGNAME", &identity.name)
            .envs(&self.env)
            .stdin(Stdio::null());
        let cwd = self
            .cwd
            .as_ref()
            .map(|dir| {
                CString::new(dir.as_os_str().as_bytes()).map_err(|_| ProcessError::NulByte {
                    what: format!("working directory `{}`", dir.display()),
                })
            })
            .transpose()?;
        let child = InChild {
            detach: self.detach,
            switch: identity.switch,
            pipes_to_user: self.pipes_to_user,
            umask: self.umask,
            cwd,
            // Read before the fork: after it, a parent that died already shows as a new ppid.
            parent: self.die_with_parent.then(nix::unistd::getpid),
        };
        // SAFETY: `InChild::prepare` only makes async-signal-safe system calls on data
        // prepared before the fork.
        unsafe {
            cmd.pre_exec(move || child.prepare());
        }
        Ok(cmd)
    }

    fn identity(&self) -> Result<Identity, ProcessError> {
        match &self.user {
            Some(name) if nix::unistd::geteuid().is_root() => {
                let account = Account::lookup(name)?;
                Ok(Identity {
                    name: account.name,
                    home: account.home,
                    switch: Some(account.credentials),
                })
            }
            _ => {
                let me = Account::current();
                Ok(Identity {
                    name: me.name,
                    home: me.home,
                    switch: None,
                })
            }
        }
    }
}

/// Who the child runs as.
struct Identity {
    name: String,
    home: PathBuf,
    switch: Option<Credentials>,
}

/// What the forked child does before `exec`, everything prepared in the parent.
struct InChild {
    detach: Detach,
    switch: Option<Credentials>,
    pipes_to_user: bool,
    umask: Option<libc::mode_t>,
    cwd: Option<CString>,
    parent: Option<nix::unistd::Pid>,
}

impl InChild {
    /// Only async-signal-safe system calls.
    fn prepare(&self) -> io::Result<()> {
        reset_signals_in_child();
        // SAFETY: plain system calls on values owned by `self` or on the stack.
        unsafe {
            let detached = match self.detach {
                Detach::Session => libc::setsid(),
                Detach::Group => libc::setpgid(0, 0),
            };
            if detached == -1 {
                return Err(io::Error::last_os_error());
            }
            if let (true, Some(switch)) = (self.pipes_to_user, &self.switch) {
                for fd in [1, 2] {
                    let mut st: libc::stat = std::mem::zeroed();
                    if libc::fstat(fd, &raw mut st) == 0
                        && (st.st_mode & libc::S_IFMT) == libc::S_IFIFO
                    {
                        libc::fchown(fd, switch.uid(), switch.gid());
                    }
                }
            }
            if let Some(mask) = self.umask {
                libc::umask(mask);
            }
        }
        if let Some(switch) = &self.switch {
            switch.switch()?;
        }
        if let Some(dir) = &self.cwd {
            // SAFETY: a NUL-terminated string prepared before the fork.
            if unsafe { libc::chdir(dir.as_ptr()) } == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        if let Some(parent) = self.parent {
            // After the switch: changing credentials clears the parent-death signal.
            // SAFETY: prctl and getppid are async-signal-safe.
            unsafe {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == -1 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died before the signal was armed.
                if libc::getppid() != parent.as_raw() {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the process that started it has ended",
                    ));
                }
            }
        }
        Ok(())
    }
}
