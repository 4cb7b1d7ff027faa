//! berth as a container's first process: it starts the service in the foreground and
//! stays as its parent, so that the runtime's signals mean what the manifest says.
//! `SIGTERM` and `SIGINT` (the runtime's stop) become the service's own stop signal
//! (PostgreSQL's `SIGINT`, nginx's `SIGQUIT`), followed by `SIGKILL` of its process
//! group after its stop timeout; `SIGHUP` becomes its reload signal; `SIGQUIT`,
//! `SIGUSR1`, `SIGUSR2` and `SIGWINCH` are passed on as they are. As process 1 it also
//! reaps the orphans the service leaves (what `tini` or `--init` would do). The
//! container's exit status is the service's (128 + the signal that ended it), and 0
//! when it stopped because it was asked to.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::{ContainerError, Result};

/// The process to run and how to talk to it.
#[derive(Debug, Clone)]
pub struct Main {
    /// What it is (`the web service`), for messages.
    pub what: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Environment on top of the clean one berth gives every child.
    pub env: std::collections::BTreeMap<String, String>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// What asks it to stop.
    pub stop_signal: Signal,
    /// How long it may take before `SIGKILL`.
    pub stop_timeout: Duration,
    /// What makes it re-read its config, if anything does.
    pub reload_signal: Option<Signal>,
    /// Where its process id is written once it runs (the health check's
    /// `BERTH_MAIN_PID`).
    pub pid_file: Option<PathBuf>,
    /// How long it may run at all (a hook's `timeout`): then it is stopped as if the
    /// runtime had asked, and the exit status says it failed.
    pub run_timeout: Option<Duration>,
    /// Run one after the other beside it (hooks that wait for it to be ready), each
    /// started again after a pause when it fails.
    pub followers: Vec<Follower>,
    /// Exists, naming the followers, until every one of them has succeeded: the
    /// service is not ready before.
    pub pending_file: Option<PathBuf>,
    /// Stopped on request is a failure (a hook, a job's run, a check: it did not
    /// finish), not the 0 a service stopped on request ends with.
    pub stop_fails: bool,
}

/// A process started beside the main one.
#[derive(Debug, Clone)]
pub struct Follower {
    /// What it is, for messages.
    pub what: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Its whole environment.
    pub env: std::collections::BTreeMap<String, String>,
}

/// Where the followers are: the one running, the next to start and when.
struct Followers<'m> {
    list: &'m [Follower],
    next: usize,
    running: Option<Pid>,
    start_at: Instant,
    pause: Duration,
}

impl<'m> Followers<'m> {
    /// The longest pause before a failed follower starts again.
    const MAX_PAUSE: Duration = Duration::from_mins(5);

    /// None has run yet: the pending file says so.
    fn begin(main: &'m Main) -> Result<Self> {
        if let Some(file) = main
            .pending_file
            .as_ref()
            .filter(|_| !main.followers.is_empty())
        {
            let names: Vec<&str> = main.followers.iter().map(|f| f.what.as_str()).collect();
            berth_host::fsutil::write_atomic(
                file,
                format!("{}\n", names.join(", ")).as_bytes(),
                0o644,
                None,
            )?;
        }
        Ok(Self {
            list: &main.followers,
            next: 0,
            running: None,
            start_at: Instant::now(),
            pause: Duration::from_secs(5),
        })
    }

    fn start_due(&mut self, say: &mut dyn FnMut(&str)) {
        if self.running.is_some() || Instant::now() < self.start_at {
            return;
        }
        let Some(f) = self.list.get(self.next) else {
            return;
        };
        let Some((program, args)) = f.argv.split_first() else {
            return;
        };
        let mut cmd = berth_process::ChildCommand::new(program);
        cmd.args(args)
            .envs(&f.env)
            .detach(berth_process::Detach::Group);
        match cmd.build().map(|mut c| c.spawn()) {
            Ok(Ok(child)) => {
                self.running = Some(Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX)));
                // Reaped by `waitpid` with every other child.
                std::mem::forget(child);
            }
            Ok(Err(e)) => self.failed(&format!("could not start: {e}"), say),
            Err(e) => self.failed(&e.to_string(), say),
        }
    }

    fn failed(&mut self, why: &str, say: &mut dyn FnMut(&str)) {
        say(&format!(
            "berth: {} failed ({why}): again in {}s",
            self.list[self.next].what,
            self.pause.as_secs()
        ));
        self.start_at = Instant::now() + self.pause;
        self.pause = (self.pause * 2).min(Self::MAX_PAUSE);
    }

    /// Takes a reaped child's status if it is the running follower's.
    fn ended(&mut self, status: WaitStatus, main: &Main, say: &mut dyn FnMut(&str)) {
        if self.running.is_none() || status.pid() != self.running {
            return;
        }
        self.running = None;
        if matches!(status, WaitStatus::Exited(_, 0)) {
            say(&format!("berth: {} succeeded", self.list[self.next].what));
            self.next += 1;
            self.pause = Duration::from_secs(5);
            if self.next == self.list.len()
                && let Some(file) = &main.pending_file
            {
                let _ = berth_host::fsutil::remove_file_if_exists(file);
            }
        } else {
            self.failed(&format!("{status:?}"), say);
        }
    }

    fn stop(&mut self) {
        if let Some(pid) = self.running.take() {
            let _ = killpg(pid, Signal::SIGTERM);
        }
        // None starts again.
        self.next = self.list.len();
    }
}

/// The exit status of what stopped because it was asked to and did not finish
/// (128 + `SIGTERM`).
pub const STOPPED: u8 = 143;

/// Wait `within`, or less when asked to stop (`SIGTERM`, `SIGINT`): whether it was.
/// As a container's process 1 berth must stop on those itself: no default action
/// ends process 1.
#[must_use]
pub fn pause(within: Duration) -> bool {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    if set.thread_block().is_err() {
        std::thread::sleep(within);
        return false;
    }
    let end = Instant::now() + within;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        if next_signal(&set, left).is_some() {
            return true;
        }
    }
}

/// The signals berth handles itself; blocked, and taken with `sigtimedwait`.
fn handled() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGCHLD,
    ] {
        set.add(s);
    }
    set
}

/// The next of `set`'s signals, waiting at most `within`.
fn next_signal(set: &SigSet, within: Duration) -> Option<Signal> {
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(within.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(within.subsec_nanos().min(999_999_999).cast_signed()),
    };
    // SAFETY: a valid signal set and timespec; no siginfo wanted.
    let sig = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &raw const ts) };
    if sig <= 0 {
        return None;
    }
    Signal::try_from(sig).ok()
}

/// Run `main` to its end, as described in the module's documentation. Returns the
/// exit status the container should end with.
///
/// # Errors
/// It cannot be started (no such program, a bad working directory).
pub fn run(main: &Main, say: &mut dyn FnMut(&str)) -> Result<u8> {
    let set = handled();
    set.thread_block()
        .map_err(|e| ContainerError::Invalid(format!("block signals: {e}")))?;
    let (program, args) = main
        .argv
        .split_first()
        .ok_or_else(|| ContainerError::Invalid(format!("{} has an empty command", main.what)))?;
    let mut followers = Followers::begin(main)?;
    let mut cmd = berth_process::ChildCommand::new(program);
    cmd.args(args)
        .envs(&main.env)
        .detach(berth_process::Detach::Group);
    if let Some(dir) = &main.cwd {
        cmd.current_dir(dir);
    }
    let child = cmd
        .build()
        .map_err(|e| ContainerError::Invalid(format!("{}: {e}", main.what)))?
        .spawn()
        .map_err(|source| ContainerError::Io {
            action: "start",
            path: PathBuf::from(program),
            source,
        })?;
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    // The std handle must not reap it: `waitpid` below does, with every orphan.
    std::mem::forget(child);
    if let Some(file) = &main.pid_file {
        berth_host::fsutil::write_atomic(file, format!("{pid}\n").as_bytes(), 0o644, None)?;
    }
    let mut stop_by: Option<Instant> = None;
    let mut killed = false;
    let mut timed_out = false;
    let ends_by = main.run_timeout.map(|t| Instant::now() + t);
    loop {
        let mut main_status = None;
        for status in reap() {
            if status.pid() == Some(pid) {
                main_status = Some(status);
            } else {
                followers.ended(status, main, say);
            }
        }
        if let Some(status) = main_status {
            // What it started and left behind goes with it, and so do the followers.
            let _ = killpg(pid, Signal::SIGKILL);
            followers.stop();
            if let Some(file) = &main.pid_file {
                let _ = berth_host::fsutil::remove_file_if_exists(file);
            }
            let asked = stop_by.is_some() && !timed_out;
            let code = exit_status(status, main, asked, say);
            return Ok(if asked && main.stop_fails {
                STOPPED
            } else if timed_out {
                code.max(1)
            } else {
                code
            });
        }
        if let Some(end) = ends_by
            && stop_by.is_none()
            && Instant::now() >= end
        {
            say(&format!(
                "berth: {} ran past its timeout of {}s: stopping it ({})",
                main.what,
                main.run_timeout.unwrap_or_default().as_secs(),
                main.stop_signal.as_str()
            ));
            let _ = kill(pid, main.stop_signal);
            stop_by = Some(Instant::now() + main.stop_timeout);
            timed_out = true;
        }
        let wait = match stop_by {
            Some(deadline) => deadline
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(10), Duration::from_secs(1)),
            None => Duration::from_secs(1),
        };
        if stop_by.is_none() {
            followers.start_due(say);
        }
        if let Some(sig) = next_signal(&set, wait) {
            pass_on(sig, main, pid, &mut stop_by, say);
            if stop_by.is_some() {
                followers.stop();
            }
        }
        if let Some(deadline) = stop_by
            && !killed
            && Instant::now() >= deadline
        {
            say(&format!(
                "berth: {} did not stop in time: SIGKILL",
                main.what
            ));
            let _ = killpg(pid, Signal::SIGKILL);
            killed = true;
        }
    }
}

/// What a signal berth received means for the service: its stop (once), its reload,
/// or the signal itself. `SIGCHLD` only wakes the loop up.
fn pass_on(
    sig: Signal,
    main: &Main,
    pid: Pid,
    stop_by: &mut Option<Instant>,
    say: &mut dyn FnMut(&str),
) {
    match sig {
        Signal::SIGTERM | Signal::SIGINT if stop_by.is_none() => {
            say(&format!(
                "berth: stopping {} ({}, then SIGKILL after {}s)",
                main.what,
                main.stop_signal.as_str(),
                main.stop_timeout.as_secs()
            ));
            let _ = kill(pid, main.stop_signal);
            *stop_by = Some(Instant::now() + main.stop_timeout);
        }
        Signal::SIGHUP => match main.reload_signal {
            Some(reload) => {
                say(&format!(
                    "berth: reloading {} ({})",
                    main.what,
                    reload.as_str()
                ));
                let _ = kill(pid, reload);
            }
            None => say(&format!(
                "berth: {} has no reload signal; restart the container to apply a change",
                main.what
            )),
        },
        Signal::SIGQUIT | Signal::SIGUSR1 | Signal::SIGUSR2 | Signal::SIGWINCH => {
            let _ = kill(pid, sig);
        }
        _ => {}
    }
}

/// Reap every child that ended (orphans included), with its status.
fn reap() -> Vec<WaitStatus> {
    let mut found = Vec::new();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return found,
            Ok(status) => found.push(status),
        }
    }
}

fn exit_status(
    status: WaitStatus,
    main: &Main,
    asked_to_stop: bool,
    say: &mut dyn FnMut(&str),
) -> u8 {
    match status {
        WaitStatus::Exited(_, code) => {
            say(&format!("berth: {} exited with status {code}", main.what));
            u8::try_from(code).unwrap_or(1)
        }
        WaitStatus::Signaled(_, sig, _) => {
            say(&format!("berth: {} ended by {}", main.what, sig.as_str()));
            if asked_to_stop && sig == main.stop_signal {
                0
            } else {
                128_u8.saturating_add(u8::try_from(sig as i32).unwrap_or(0))
            }
        }
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn main_of(argv: &[&str], stop: Signal) -> Main {
        Main {
            what: "the test service".to_owned(),
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
            env: std::collections::BTreeMap::new(),
            cwd: None,
            stop_signal: stop,
            stop_timeout: Duration::from_secs(5),
            reload_signal: None,
            pid_file: None,
            run_timeout: None,
            followers: Vec::new(),
            pending_file: None,
            stop_fails: false,
        }
    }

    fn run_quiet(main: &Main) -> Result<u8> {
        run(main, &mut |_| {})
    }

    /// One test: `run` reaps every child of the process (`waitpid(-1)`), so two
    /// running at once in one test binary would take each other's.
    #[test]
    fn exit_statuses() {
        assert_eq!(
            run_quiet(&main_of(&["/bin/sh", "-c", "exit 7"], Signal::SIGTERM)).unwrap(),
            7
        );
        assert_eq!(
            run_quiet(&main_of(&["/bin/true"], Signal::SIGTERM)).unwrap(),
            0
        );
        // Ended by a signal: 128 + its number.
        assert_eq!(
            run_quiet(&main_of(
                &["/bin/sh", "-c", "kill -USR1 $$"],
                Signal::SIGTERM
            ))
            .unwrap(),
            128 + 10
        );
        let err = run_quiet(&main_of(&["/nonexistent/prog"], Signal::SIGTERM)).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/prog"), "{err}");
        // Past its run timeout it is stopped (its stop signal, then SIGKILL of its
        // group), and that is a failure.
        let mut slow = main_of(
            &["/bin/sh", "-c", "trap '' TERM; sleep 30"],
            Signal::SIGTERM,
        );
        slow.run_timeout = Some(Duration::from_millis(300));
        slow.stop_timeout = Duration::from_millis(300);
        let started = Instant::now();
        assert_eq!(run_quiet(&slow).unwrap(), 128 + 9);
        assert!(started.elapsed() < Duration::from_secs(10));
        let mut stops = main_of(&["/bin/sleep", "30"], Signal::SIGTERM);
        stops.run_timeout = Some(Duration::from_millis(300));
        assert_eq!(run_quiet(&stops).unwrap(), 128 + 15);
        followers_run_in_order_until_each_succeeds();
    }

    /// Followers run one after the other beside the main process, a failed one again
    /// after a pause, and the pending file goes once all succeeded: the main process
    /// here waits for that, then ends with the order they ran in.
    fn followers_run_in_order_until_each_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let pending = dir.path().join("pending");
        let mut main = main_of(
            &[
                "/bin/sh",
                "-c",
                &format!(
                    "sleep 0.2; while [ -e {d}/pending ]; do sleep 0.1; done; [ \"$(cat {d}/order)\" = 'first second' ]"
                ),
            ],
            Signal::SIGTERM,
        );
        main.pending_file = Some(pending.clone());
        let follower = |name: &str, script: String| Follower {
            what: format!("the {name} hook"),
            argv: vec!["/bin/sh".into(), "-c".into(), script],
            env: std::collections::BTreeMap::new(),
        };
        main.followers = vec![
            // Fails the first time.
            follower(
                "first",
                format!(
                    "[ -e {d}/tried ] || {{ touch {d}/tried; exit 1; }}; printf first >> {d}/order"
                ),
            ),
            follower("second", format!("printf ' second' >> {d}/order")),
        ];
        let mut said = Vec::new();
        let code = run(&main, &mut |m| said.push(m.to_owned())).unwrap();
        assert_eq!(code, 0, "{said:#?}");
        assert!(!pending.exists());
        assert!(
            said.iter()
                .any(|m| m.contains("the first hook failed") && m.contains("again in 5s")),
            "{said:#?}"
        );
    }
}
