//! Reading the logs the supervisor writes: the last lines of each, and following
//! them across its rotation (`berth tail`, `berth tail -f`).
//!
//! The reader knows the writer's scheme, so it lives next to it: `current` is renamed
//! to `current.1` and a new `current` created, or truncated in place when no rotated
//! file is kept.

use std::fs::File;
use std::io::{self, ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use berth_layout::logs::current_in;

use crate::error::SupervisorError;

/// One service's log, as found in an instance's log directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServiceLog {
    /// The service (or job) name: its log directory's name.
    pub service: String,
    /// `<log_root>/<service>/current`.
    pub current: PathBuf,
}

/// The logs under `log_root` (one directory per service or job): `service`'s, or, when
/// `None`, every one that has a `current`, by name.
pub fn service_logs(
    log_root: &Path,
    service: Option<&str>,
) -> Result<Vec<ServiceLog>, SupervisorError> {
    if let Some(service) = service {
        let current = current_in(&log_root.join(service));
        if !current.exists() {
            return Err(SupervisorError::NoLog {
                service: service.to_owned(),
                path: current,
            });
        }
        return Ok(vec![ServiceLog {
            service: service.to_owned(),
            current,
        }]);
    }
    let read_err = |source| SupervisorError::ReadLog {
        path: log_root.to_path_buf(),
        source,
    };
    let mut logs = Vec::new();
    for entry in std::fs::read_dir(log_root).map_err(read_err)?.flatten() {
        let current = current_in(&entry.path());
        if current.is_file() {
            logs.push(ServiceLog {
                service: entry.file_name().to_string_lossy().into_owned(),
                current,
            });
        }
    }
    logs.sort();
    Ok(logs)
}

/// The last `n` lines of `path`, a last line without its newline included.
pub fn last_lines(path: &Path, n: usize) -> Result<Vec<String>, SupervisorError> {
    let read_err = |source| SupervisorError::ReadLog {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let (mut lines, unfinished, _) = tail_of(&mut file, n).map_err(read_err)?;
    if !unfinished.is_empty() {
        lines.push(String::from_utf8_lossy(&unfinished).into_owned());
        lines.drain(..lines.len().saturating_sub(n));
    }
    Ok(lines)
}

/// The last `n` lines of `file` (which is read to its end), the bytes after its last
/// newline, and the offset it was read up to.
fn tail_of(file: &mut File, n: usize) -> io::Result<(Vec<String>, Vec<u8>, u64)> {
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

/// Follows logs as inotify reports changes, across rotation and truncation, and hands
/// each complete line to a sink `(service, line)`; the caller decides how to print it.
///
/// ```no_run
/// use berth_supervisor::{Follower, service_logs};
/// # fn main() -> Result<(), berth_supervisor::SupervisorError> {
/// let logs = service_logs("/var/log/app".as_ref(), None)?;
/// let mut follower = Follower::new(&logs)?;
/// let mut print = |service: &str, line: &str| {
///     eprintln!("{service:>12} | {line}");
///     Ok(())
/// };
/// follower.last(10, &mut print)?;
/// follower.run(&mut print)?; // until the sink or inotify fails
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Follower {
    inotify: Inotify,
    logs: Vec<Followed>,
}

/// One followed log.
#[derive(Debug)]
struct Followed {
    service: String,
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
    /// Read bytes after the last newline: handed on once their line is complete.
    unfinished: Vec<u8>,
}

/// Where complete lines go: `(service, line)`; an error stops the follower.
pub type LineSink<'a> = dyn FnMut(&str, &str) -> io::Result<()> + 'a;

impl Follower {
    /// Watch `logs`; a `current` missing now is followed once it appears.
    pub fn new(logs: &[ServiceLog]) -> Result<Self, SupervisorError> {
        let follow_err = |source| SupervisorError::FollowLogs { source };
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC).map_err(|e| follow_err(e.into()))?;
        let mut followed = Vec::with_capacity(logs.len());
        for log in logs {
            let dir = log
                .current
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let dir_watch =
                inotify
                    .add_watch(dir, dir_events())
                    .map_err(|err| SupervisorError::ReadLog {
                        path: dir.to_path_buf(),
                        source: err.into(),
                    })?;
            let mut one = Followed {
                service: log.service.clone(),
                path: log.current.clone(),
                file: None,
                watch: None,
                dir_watch,
                pos: 0,
                unfinished: Vec::new(),
            };
            one.open(&inotify)?;
            followed.push(one);
        }
        Ok(Self {
            inotify,
            logs: followed,
        })
    }

    /// Hand on the last `n` lines of each log; following starts after them.
    pub fn last(&mut self, n: usize, sink: &mut LineSink<'_>) -> Result<(), SupervisorError> {
        for log in &mut self.logs {
            let Some(file) = &mut log.file else {
                continue;
            };
            let (lines, unfinished, end) =
                tail_of(file, n).map_err(|source| SupervisorError::ReadLog {
                    path: log.path.clone(),
                    source,
                })?;
            for line in &lines {
                emit(sink, &log.service, line)?;
            }
            log.pos = end;
            log.unfinished = unfinished;
        }
        Ok(())
    }

    /// Hand on what the logs get, until the sink or inotify fails.
    pub fn run(&mut self, sink: &mut LineSink<'_>) -> Result<(), SupervisorError> {
        let Self { inotify, logs } = self;
        loop {
            let events = match inotify.read_events() {
                Ok(events) => events,
                Err(Errno::EINTR) => continue,
                Err(err) => return Err(SupervisorError::FollowLogs { source: err.into() }),
            };
            for event in events {
                if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    // Events were lost: look at every log again.
                    for log in logs.iter_mut() {
                        log.reopen(inotify, sink)?;
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
                            log.reopen(inotify, sink)?;
                        } else {
                            log.read_new(sink)?;
                        }
                    } else if event.wd == log.dir_watch
                        && event.name.as_deref() == log.path.file_name()
                        && event
                            .mask
                            .intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
                    {
                        log.reopen(inotify, sink)?;
                    }
                }
            }
        }
    }
}

fn emit(sink: &mut LineSink<'_>, service: &str, line: &str) -> Result<(), SupervisorError> {
    sink(service, line).map_err(|source| SupervisorError::PrintLog { source })
}

impl Followed {
    fn read_err(&self, source: io::Error) -> SupervisorError {
        SupervisorError::ReadLog {
            path: self.path.clone(),
            source,
        }
    }

    /// Open `path` and watch the file it names, from its start. Leaves `file` `None`
    /// when there is no such file (yet).
    fn open(&mut self, inotify: &Inotify) -> Result<(), SupervisorError> {
        loop {
            let file = match File::open(&self.path) {
                Ok(file) => file,
                Err(err) if err.kind() == ErrorKind::NotFound => return Ok(()),
                Err(err) => return Err(self.read_err(err)),
            };
            let watch = match inotify.add_watch(&self.path, file_events()) {
                Ok(watch) => watch,
                Err(Errno::ENOENT) => return Ok(()),
                Err(err) => return Err(self.read_err(err.into())),
            };
            // The watch is on whatever `path` names now: if a rotation came between
            // the open and the watch, start again with the new file.
            if same_file(&file, &self.path).map_err(|err| self.read_err(err))? {
                self.file = Some(file);
                self.watch = Some(watch);
                self.pos = 0;
                return Ok(());
            }
            let _ = inotify.rm_watch(watch);
        }
    }

    /// Hand on what was appended since the last read (from the start after a truncation).
    fn read_new(&mut self, sink: &mut LineSink<'_>) -> Result<(), SupervisorError> {
        let Some(file) = &mut self.file else {
            return Ok(());
        };
        let read = |file: &mut File, pos: &mut u64| -> io::Result<Vec<u8>> {
            if file.metadata()?.len() < *pos {
                // Truncated in place.
                *pos = 0;
            }
            file.seek(SeekFrom::Start(*pos))?;
            let mut buf = Vec::new();
            file.read_to_end(&mut buf)?;
            Ok(buf)
        };
        let before = self.pos;
        let buf = match read(file, &mut self.pos) {
            Ok(buf) => buf,
            Err(err) => return Err(self.read_err(err)),
        };
        if self.pos < before {
            self.unfinished.clear();
        }
        self.pos += buf.len() as u64;
        self.unfinished.extend_from_slice(&buf);
        if let Some(last) = self.unfinished.iter().rposition(|b| *b == b'\n') {
            let rest = self.unfinished.split_off(last + 1);
            let done = std::mem::replace(&mut self.unfinished, rest);
            for line in String::from_utf8_lossy(&done).lines() {
                emit(sink, &self.service, line)?;
            }
        }
        Ok(())
    }

    /// `path` may name another file now: finish the old one and follow the new one.
    fn reopen(
        &mut self,
        inotify: &Inotify,
        sink: &mut LineSink<'_>,
    ) -> Result<(), SupervisorError> {
        self.read_new(sink)?;
        if let Some(file) = &self.file
            && same_file(file, &self.path).map_err(|err| self.read_err(err))?
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
            self.unfinished.clear();
            emit(sink, &self.service, &line)?;
        }
        self.open(inotify)?;
        self.read_new(sink)
    }
}

/// Whether `path` names the open `file` (false when `path` is missing).
fn same_file(file: &File, path: &Path) -> io::Result<bool> {
    let now = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(err),
    };
    let held = file.metadata()?;
    Ok(held.dev() == now.dev() && held.ino() == now.ino())
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;
    use std::fs::{self, OpenOptions};
    use std::io::Write;
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::{Duration, Instant};

    use super::*;

    /// Output shared with the follower's thread: `service | line` per line.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<String>>);

    impl Shared {
        fn push(&self, service: &str, line: &str) {
            let mut text = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = writeln!(text, "{service} | {line}");
        }

        fn text(&self) -> String {
            self.0.lock().unwrap().clone()
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
    fn follow(logs: &[ServiceLog], n: usize) -> Shared {
        let out = Shared::default();
        let mut follower = Follower::new(logs).unwrap();
        let first = out.clone();
        follower
            .last(n, &mut |s, l| {
                first.push(s, l);
                Ok(())
            })
            .unwrap();
        let later = out.clone();
        std::thread::spawn(move || {
            follower.run(&mut |s, l| {
                later.push(s, l);
                Ok(())
            })
        });
        out
    }

    fn log(service: &str, current: PathBuf) -> ServiceLog {
        ServiceLog {
            service: service.to_owned(),
            current,
        }
    }

    #[test]
    fn follows_appends_rotation_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join("current");
        fs::write(&current, "old 1\nold 2\nhalf").unwrap();
        let out = follow(&[log("web", current.clone())], 1);
        let mut expected = String::from("web | old 2\n");
        out.wait_for(&expected);

        append(&current, " a line\n");
        expected.push_str("web | half a line\n");
        out.wait_for(&expected);
        append(&current, "new 1\nnew ");
        append(&current, "2\n");
        expected.push_str("web | new 1\nweb | new 2\n");
        out.wait_for(&expected);

        // Rotated the supervisor's way, twice: renamed, then a new `current`; the
        // second time with a moment in between when there is no `current`.
        for round in 1..=2 {
            append(&current, &format!("last in old {round}\n"));
            fs::rename(&current, dir.path().join(format!("current.{round}"))).unwrap();
            if round == 2 {
                std::thread::sleep(Duration::from_millis(100));
            }
            fs::write(&current, format!("first in new {round}\n")).unwrap();
            append(&current, "and more\n");
            let _ = write!(
                expected,
                "web | last in old {round}\nweb | first in new {round}\nweb | and more\n"
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
        expected.push_str("web | truncated\n");
        out.wait_for(&expected);
    }

    #[test]
    fn follows_the_rotation_of_the_supervisors_own_writer() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer =
            super::super::RotatingLog::open(&dir.path().join("worker"), 16, 2, None).unwrap();
        writer.write(b"before\n").unwrap();
        let logs = service_logs(dir.path(), None).unwrap();
        assert_eq!(logs, [log("worker", dir.path().join("worker/current"))]);
        let out = follow(&logs, 5);
        let mut expected = String::from("worker | before\n");
        out.wait_for(&expected);
        // Each line pushes `current` past 16 bytes: a rotation every time.
        for i in 0..5 {
            writer
                .write(format!("line number {i}\n").as_bytes())
                .unwrap();
            let _ = writeln!(expected, "worker | line number {i}");
            out.wait_for(&expected);
        }
    }

    #[test]
    fn several_logs_by_name_and_the_last_lines_of_one() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["web", "db"] {
            fs::create_dir(dir.path().join(name)).unwrap();
            let current = current_in(&dir.path().join(name));
            fs::write(&current, format!("{name} started\n")).unwrap();
        }
        // A directory without `current` is not a log.
        fs::create_dir(dir.path().join("empty")).unwrap();
        let logs = service_logs(dir.path(), None).unwrap();
        let names: Vec<&str> = logs.iter().map(|l| l.service.as_str()).collect();
        assert_eq!(names, ["db", "web"]);

        let out = follow(&logs, 5);
        let mut expected = String::from("db | db started\nweb | web started\n");
        out.wait_for(&expected);
        append(&logs[1].current, "GET /\n");
        expected.push_str("web | GET /\n");
        out.wait_for(&expected);
        append(&logs[0].current, "checkpoint\n");
        expected.push_str("db | checkpoint\n");
        out.wait_for(&expected);

        append(&logs[1].current, "a\nb\nunfinished");
        assert_eq!(
            last_lines(&logs[1].current, 2).unwrap(),
            ["b", "unfinished"]
        );
        assert_eq!(
            service_logs(dir.path(), Some("web")).unwrap(),
            [logs[1].clone()]
        );
        let err = service_logs(dir.path(), Some("nope")).unwrap_err();
        assert!(
            err.to_string().starts_with("No log for `nope` at `"),
            "{err}"
        );
    }
}
