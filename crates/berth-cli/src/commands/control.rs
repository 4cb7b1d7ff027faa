//! Commands that talk to the supervisor: status, start, stop, restart, reload, tail, down,
//! and `supervise`, which is the supervisor.

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use berth_lifecycle::{Locate, instance, supervisor};
use berth_render::Paths;
use berth_supervisor_protocol::{Request, Response, ServiceState, Target};
use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

/// The instance's paths, from `--prefix`/`--manifest` or the defaults.
fn paths(loc: &Locate) -> Result<Paths> {
    let facts = berth_host::facts::probe();
    let (prefix, manifest, _) = instance::locate(loc, &facts)?;
    Ok(Paths::for_prefix(&prefix, &manifest.manifest.app.version))
}

fn target(service: Option<String>) -> Target {
    service.map_or(Target::All, Target::One)
}

pub fn status(loc: &Locate, json: bool) -> Result<ExitCode> {
    let paths = paths(loc)?;
    let resp = supervisor::request(&paths, &Request::Status)?;
    let Response::Status {
        supervisor_pid,
        services,
        jobs,
    } = resp
    else {
        bail!("The supervisor sent an unexpected answer to `status`");
    };
    if json {
        let v = serde_json::json!({ "supervisor_pid": supervisor_pid, "services": services, "jobs": jobs });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<14} {:<9} {:>8} {:>10} {:>8}  {:<6} LAST EXIT",
        "SERVICE", "STATE", "PID", "UPTIME", "RESTARTS", "READY"
    );
    let mut unhealthy = false;
    for s in &services {
        let state = format!("{:?}", s.state).to_lowercase();
        unhealthy |= !matches!(s.state, ServiceState::Ready);
        println!(
            "{:<14} {:<9} {:>8} {:>10} {:>8}  {:<6} {}",
            s.name,
            state,
            s.pid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            s.uptime_secs.map_or_else(|| "-".to_owned(), human_secs),
            s.restarts,
            if s.ready { "yes" } else { "no" },
            s.last_exit.as_deref().unwrap_or("-"),
        );
    }
    if !jobs.is_empty() {
        println!();
        println!(
            "{:<14} {:>10} {:>6}  LAST RESULT",
            "JOB", "NEXT RUN", "RUNS"
        );
        for j in &jobs {
            println!(
                "{:<14} {:>10} {:>6}  {}",
                j.name,
                human_secs(j.next_run_in_secs),
                j.runs,
                j.last_result.as_deref().unwrap_or("-")
            );
        }
    }
    println!();
    println!(
        "supervisor pid {supervisor_pid}, {}",
        paths.prefix.display()
    );
    // Exit 3 when something is not ready, so scripts can check health with `berth status`.
    Ok(if unhealthy {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

fn human_secs(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

fn simple(loc: &Locate, req: &Request, verb: &str, service: Option<&str>) -> Result<ExitCode> {
    let paths = paths(loc)?;
    supervisor::request(&paths, req)?;
    println!("{verb} {}", service.unwrap_or("all services"));
    Ok(ExitCode::SUCCESS)
}

pub fn start(loc: &Locate, service: Option<String>) -> Result<ExitCode> {
    let s = service.clone();
    simple(
        loc,
        &Request::Start {
            target: target(service),
        },
        "started",
        s.as_deref(),
    )
}

pub fn stop(loc: &Locate, service: Option<String>) -> Result<ExitCode> {
    let s = service.clone();
    simple(
        loc,
        &Request::Stop {
            target: target(service),
        },
        "stopped",
        s.as_deref(),
    )
}

pub fn restart(loc: &Locate, service: Option<String>) -> Result<ExitCode> {
    let s = service.clone();
    simple(
        loc,
        &Request::Restart {
            target: target(service),
        },
        "restarted",
        s.as_deref(),
    )
}

pub fn reload(loc: &Locate, service: Option<String>) -> Result<ExitCode> {
    let s = service.clone();
    simple(
        loc,
        &Request::Reload {
            target: target(service),
        },
        "reloaded",
        s.as_deref(),
    )
}

pub fn down(loc: &Locate) -> Result<ExitCode> {
    let paths = paths(loc)?;
    if !supervisor::is_running(&paths) {
        println!(
            "Nothing to stop: the supervisor of {} is not running.",
            paths.prefix.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    // Stopped on purpose: a supervisor started at boot leaves the services stopped.
    let _ = std::fs::remove_file(paths.autostart_marker());
    supervisor::request(&paths, &Request::Shutdown)?;
    // Shutdown answers once the services are stopped, before the daemon has removed
    // its socket and pid file: wait for the process itself to be gone.
    if !supervisor::wait_exited(&paths, Duration::from_mins(2)) {
        bail!(
            "The supervisor of {} did not exit within 2 minutes of stopping its services",
            paths.prefix.display()
        );
    }
    println!(
        "Stopped every service and the supervisor of {}.",
        paths.prefix.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn supervise(loc: &Locate, autostart: bool) -> Result<ExitCode> {
    let Some(prefix) = &loc.prefix else {
        bail!("`berth supervise` needs `--prefix`");
    };
    let prefix = &berth_lifecycle::instance::checked_prefix(prefix)?;
    // The daemon needs the socket, plan, pid file, log and autostart marker, none of
    // which depend on the app version. The version is in the stored manifest, but
    // loading and validating that here would let a manifest problem keep the
    // supervisor from starting (at boot too) for a path it never uses.
    let paths = Paths::unversioned(prefix);
    let autostart = autostart && paths.autostart_marker().exists();
    berth_supervisor::run_daemon(berth_lifecycle::supervisor::daemon_config(
        &paths, autostart,
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// Log files to show: one service's `current`, or every service's.
fn log_files(paths: &Paths, service: Option<&str>) -> Result<Vec<(String, PathBuf)>> {
    if let Some(s) = service {
        let f = paths.service_log(s);
        if !f.exists() {
            bail!("No log for `{s}` at `{}`", f.display());
        }
        return Ok(vec![(s.to_owned(), f)]);
    }
    let mut out = Vec::new();
    let entries = std::fs::read_dir(&paths.log)
        .with_context(|| format!("Failed to read `{}`", paths.log.display()))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let f = paths.service_log(&name);
        if f.is_file() {
            out.push((name, f));
        }
    }
    out.sort();
    Ok(out)
}

/// The last `n` lines of `file` (which is read to its end), the bytes after its last
/// newline, and the offset it was read up to.
fn last_lines(file: &mut File, n: usize) -> std::io::Result<(Vec<String>, Vec<u8>, u64)> {
    let len = file.metadata()?.len();
    // Read at most the last 1 MiB: enough for any sensible `-n`.
    let start = len.saturating_sub(1 << 20);
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    let end = start + buf.len() as u64;
    let complete = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let unfinished = buf.split_off(complete);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let skip = lines.len().saturating_sub(n);
    Ok((lines[skip..].to_vec(), unfinished, end))
}

fn write_line(out: &mut impl Write, label: Option<&str>, line: &str) -> std::io::Result<()> {
    match label {
        Some(name) => writeln!(out, "{name:>12} | {line}"),
        None => writeln!(out, "{line}"),
    }
}

pub fn tail(loc: &Locate, service: Option<&str>, n: usize, follow: bool) -> Result<ExitCode> {
    let paths = paths(loc)?;
    let files = log_files(&paths, service)?;
    let mut out = std::io::stdout().lock();
    if follow {
        let mut follower = Follower::new(&files)?;
        follower.print_last(n, &mut out)?;
        follower.run(&mut out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let many = files.len() > 1;
    for (name, path) in &files {
        let mut file =
            File::open(path).with_context(|| format!("Failed to open `{}`", path.display()))?;
        let (mut lines, unfinished, _) = last_lines(&mut file, n)
            .with_context(|| format!("Failed to read `{}`", path.display()))?;
        if !unfinished.is_empty() {
            lines.push(String::from_utf8_lossy(&unfinished).into_owned());
            lines.drain(..lines.len().saturating_sub(n));
        }
        for line in &lines {
            write_line(&mut out, many.then_some(name.as_str()), line)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Events on a followed file: written to, truncated, renamed away, unlinked.
fn file_events() -> AddWatchFlags {
    AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_DELETE_SELF
}

/// Events on a followed file's directory: a new file by that name.
fn dir_events() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_ONLYDIR
}

/// `berth tail -f`: prints what is appended to each log as inotify reports it, and
/// follows the supervisor's rotation (`current` renamed to `current.1`, a new
/// `current` created) or a truncation in place.
struct Follower {
    inotify: Inotify,
    logs: Vec<Followed>,
}

/// One followed log.
struct Followed {
    /// Printed before each line when several logs are followed.
    label: Option<String>,
    /// `<log>/<service>/current`.
    path: PathBuf,
    /// The file `path` named when it was last opened. It stays open after a rotation
    /// until what was written to it before is read. `None` while `path` is missing.
    file: Option<File>,
    /// The watch on `file`.
    watch: Option<WatchDescriptor>,
    /// The watch on the directory, for a new `current`.
    dir_watch: WatchDescriptor,
    /// How far `file` has been read.
    pos: u64,
    /// Read bytes after the last newline: printed once their line is complete.
    unfinished: Vec<u8>,
}

impl Follower {
    fn new(files: &[(String, PathBuf)]) -> Result<Self> {
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC)
            .context("Failed to set up inotify to follow the logs")?;
        let many = files.len() > 1;
        let mut logs = Vec::with_capacity(files.len());
        for (name, path) in files {
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let dir_watch = inotify
                .add_watch(dir, dir_events())
                .with_context(|| format!("Failed to watch `{}`", dir.display()))?;
            let mut log = Followed {
                label: many.then(|| name.clone()),
                path: path.clone(),
                file: None,
                watch: None,
                dir_watch,
                pos: 0,
                unfinished: Vec::new(),
            };
            log.open(&inotify)?;
            logs.push(log);
        }
        Ok(Self { inotify, logs })
    }

    /// Print the last `n` lines of each log; following starts after them.
    fn print_last(&mut self, n: usize, out: &mut impl Write) -> Result<()> {
        for log in &mut self.logs {
            let Some(file) = &mut log.file else {
                continue;
            };
            let (lines, unfinished, end) = last_lines(file, n)
                .with_context(|| format!("Failed to read `{}`", log.path.display()))?;
            for line in &lines {
                write_line(out, log.label.as_deref(), line)?;
            }
            log.pos = end;
            log.unfinished = unfinished;
        }
        out.flush()?;
        Ok(())
    }

    /// Print what the logs get, until writing fails or inotify does.
    fn run(&mut self, out: &mut impl Write) -> Result<()> {
        let Self { inotify, logs } = self;
        loop {
            let events = match inotify.read_events() {
                Ok(events) => events,
                Err(Errno::EINTR) => continue,
                Err(err) => return Err(err).context("Failed to wait for the logs to change"),
            };
            for event in events {
                if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    // Events were lost: look at every log again.
                    for log in logs.iter_mut() {
                        log.reopen(inotify, out)?;
                    }
                    continue;
                }
                for log in logs.iter_mut() {
                    if Some(event.wd) == log.watch {
                        if event.mask.intersects(
                            AddWatchFlags::IN_MOVE_SELF
                                | AddWatchFlags::IN_DELETE_SELF
                                | AddWatchFlags::IN_ATTRIB,
                        ) {
                            log.reopen(inotify, out)?;
                        } else {
                            log.read_new(out)?;
                        }
                    } else if event.wd == log.dir_watch
                        && event.name.as_deref() == log.path.file_name()
                        && event
                            .mask
                            .intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
                    {
                        log.reopen(inotify, out)?;
                    }
                }
            }
            out.flush()?;
        }
    }
}

impl Followed {
    /// Open `path` and watch the file it names, from its start. Leaves `file` `None`
    /// when there is no such file (yet).
    fn open(&mut self, inotify: &Inotify) -> Result<()> {
        let open_err = || format!("Failed to open `{}` to follow it", self.path.display());
        loop {
            let file = match File::open(&self.path) {
                Ok(file) => file,
                Err(err) if err.kind() == ErrorKind::NotFound => return Ok(()),
                Err(err) => return Err(err).with_context(open_err),
            };
            let watch = match inotify.add_watch(&self.path, file_events()) {
                Ok(watch) => watch,
                Err(Errno::ENOENT) => return Ok(()),
                Err(err) => return Err(err).with_context(open_err),
            };
            // The watch is on whatever `path` names now: if a rotation came between
            // the open and the watch, start again with the new file.
            if same_file(&file, &self.path)? {
                self.file = Some(file);
                self.watch = Some(watch);
                self.pos = 0;
                return Ok(());
            }
            let _ = inotify.rm_watch(watch);
        }
    }

    /// Print what was appended since the last read (from the start after a truncation).
    fn read_new(&mut self, out: &mut impl Write) -> Result<()> {
        let Some(file) = &mut self.file else {
            return Ok(());
        };
        let read_err = || format!("Failed to read `{}`", self.path.display());
        let len = file.metadata().with_context(read_err)?.len();
        if len < self.pos {
            // Truncated in place.
            self.pos = 0;
            self.unfinished.clear();
        }
        file.seek(SeekFrom::Start(self.pos))
            .with_context(read_err)?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf).with_context(read_err)?;
        self.pos += buf.len() as u64;
        self.unfinished.extend_from_slice(&buf);
        if let Some(last) = self.unfinished.iter().rposition(|b| *b == b'\n') {
            let rest = self.unfinished.split_off(last + 1);
            let done = std::mem::replace(&mut self.unfinished, rest);
            for line in String::from_utf8_lossy(&done).lines() {
                write_line(out, self.label.as_deref(), line)?;
            }
        }
        Ok(())
    }

    /// `path` may name another file now: finish the old one and follow the new one.
    fn reopen(&mut self, inotify: &Inotify, out: &mut impl Write) -> Result<()> {
        self.read_new(out)?;
        if let Some(file) = &self.file
            && same_file(file, &self.path)?
        {
            return Ok(());
        }
        if let Some(watch) = self.watch.take() {
            // Fails when the kernel already dropped the watch (the file is gone).
            let _ = inotify.rm_watch(watch);
        }
        if self.file.take().is_some() && !self.unfinished.is_empty() {
            // The old file will get no more: its last line is as complete as it gets.
            let line = String::from_utf8_lossy(&self.unfinished).into_owned();
            write_line(out, self.label.as_deref(), &line)?;
            self.unfinished.clear();
        }
        self.open(inotify)?;
        self.read_new(out)
    }
}

/// Whether `path` names the open `file` (false when `path` is missing).
fn same_file(file: &File, path: &Path) -> Result<bool> {
    let now = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(false),
        Err(err) => {
            return Err(err).with_context(|| format!("Failed to look at `{}`", path.display()));
        }
    };
    let held = file
        .metadata()
        .with_context(|| format!("Failed to look at `{}`", path.display()))?;
    Ok(held.dev() == now.dev() && held.ino() == now.ino())
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;
    use std::fs::{self, OpenOptions};
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::Instant;

    use berth_layout::logs;

    use super::*;

    /// Output shared with the follower's thread.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }

        /// Wait (at most 10 s) until the output is exactly `expected`.
        fn wait_for(&self, expected: &str) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.text() != expected {
                assert!(
                    Instant::now() < deadline,
                    "expected {expected:?}, got {:?}",
                    self.text()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    fn append(path: &Path, text: &str) {
        OpenOptions::new()
            .append(true)
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    /// Follow in a thread of its own; it blocks on inotify for good, and ends with the
    /// test process.
    fn follow(files: &[(String, PathBuf)], n: usize) -> Shared {
        let out = Shared::default();
        let mut follower = Follower::new(files).unwrap();
        follower.print_last(n, &mut out.clone()).unwrap();
        let mut thread_out = out.clone();
        std::thread::spawn(move || follower.run(&mut thread_out));
        out
    }

    #[test]
    fn follows_appends_rotation_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let current = logs::current_in(dir.path());
        fs::write(&current, "old 1\nold 2\nhalf").unwrap();
        let out = follow(&[("web".to_owned(), current.clone())], 1);
        let mut expected = String::from("old 2\n");
        out.wait_for(&expected);

        append(&current, " a line\n");
        expected.push_str("half a line\n");
        out.wait_for(&expected);
        append(&current, "new 1\nnew ");
        append(&current, "2\n");
        expected.push_str("new 1\nnew 2\n");
        out.wait_for(&expected);

        // Rotated the supervisor's way, twice: renamed, then a new `current`; the
        // second time with a moment in between when there is no `current`.
        for round in 1..=2 {
            append(&current, &format!("last in old {round}\n"));
            fs::rename(&current, dir.path().join(logs::rotated(round))).unwrap();
            if round == 2 {
                std::thread::sleep(Duration::from_millis(100));
            }
            fs::write(&current, format!("first in new {round}\n")).unwrap();
            append(&current, "and more\n");
            let _ = write!(
                expected,
                "last in old {round}\nfirst in new {round}\nand more\n"
            );
            out.wait_for(&expected);
        }

        // Truncated in place (a log that keeps no rotated files).
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&current)
            .unwrap();
        append(&current, "truncated\n");
        expected.push_str("truncated\n");
        out.wait_for(&expected);
    }

    #[test]
    fn follows_several_logs_with_labels() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for name in ["db", "web"] {
            fs::create_dir(dir.path().join(name)).unwrap();
            let current = logs::current_in(&dir.path().join(name));
            fs::write(&current, format!("{name} started\n")).unwrap();
            files.push((name.to_owned(), current));
        }
        let out = follow(&files, 5);
        let mut expected = String::from("          db | db started\n         web | web started\n");
        out.wait_for(&expected);
        append(&files[1].1, "GET /\n");
        expected.push_str("         web | GET /\n");
        out.wait_for(&expected);
        append(&files[0].1, "checkpoint\n");
        expected.push_str("          db | checkpoint\n");
        out.wait_for(&expected);
    }
}
