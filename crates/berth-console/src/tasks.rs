//! The changes the console makes are carried out by berth itself: the same command an
//! administrator would type (`berth backup create`, `berth up` …), in a process of its
//! own with `BERTH_ACTOR` naming the console session, so the history says who asked.
//!
//! Its output goes to a file (`state/console/<task>.log`, 0600), not a pipe: a console
//! stopped half-way through an upgrade must not take the upgrade with it (a closed pipe
//! would kill it on its next line), and the child has a process group of its own so a
//! Ctrl-C to the console does not reach it. One task at a time: the instance's lock
//! would refuse a second change anyway, with a less helpful message.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};

/// Tasks the console remembers (and log files it keeps).
const KEEP: usize = 50;
/// The most of a task's output a page shows (its end).
const SHOWN: u64 = 1 << 20;

/// One change, running or finished.
#[derive(Debug)]
pub(crate) struct Task {
    pub(crate) id: u64,
    /// What it does, e.g. `Back up now`.
    pub(crate) title: String,
    /// The berth command line it runs, without the instance's options.
    pub(crate) command: String,
    /// Who asked (as the history records it).
    pub(crate) actor: String,
    /// When it began, UTC.
    pub(crate) started: String,
    log: PathBuf,
    end: Mutex<End>,
}

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// Still running.
    Running,
    /// Ended with this exit status.
    Exited(i32),
    /// Killed by a signal (or could not be waited for).
    Killed,
}

impl Task {
    /// Whether it has finished, and how.
    pub(crate) fn end(&self) -> End {
        *self.end.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Its output so far (the last [`SHOWN`] bytes).
    pub(crate) fn output(&self) -> String {
        let Ok(mut f) = File::open(&self.log) else {
            return String::new();
        };
        let len = f.metadata().map_or(0, |m| m.len());
        if len > SHOWN {
            let _ = f.seek(SeekFrom::Start(len - SHOWN));
        }
        let mut bytes = Vec::new();
        let _ = f.take(SHOWN).read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// The console's tasks, newest last.
#[derive(Debug)]
pub(crate) struct Tasks {
    berth: PathBuf,
    global: Vec<String>,
    dir: PathBuf,
    all: Mutex<VecDeque<Arc<Task>>>,
}

impl Tasks {
    /// Tasks run by `berth` with `global` (the instance's options), their output in
    /// `dir`.
    pub(crate) fn new(berth: PathBuf, global: Vec<String>, dir: PathBuf) -> Self {
        Self {
            berth,
            global,
            dir,
            all: Mutex::new(VecDeque::new()),
        }
    }

    /// Start `berth <args>` for `actor`.
    ///
    /// # Errors
    /// Another task is running, or the process cannot be started: the message says so.
    pub(crate) fn start(
        &self,
        title: &str,
        args: &[String],
        actor: &str,
    ) -> Result<Arc<Task>, String> {
        let mut all = self.all.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = all.iter().find(|t| t.end() == End::Running) {
            return Err(format!(
                "“{}” is still running: wait for it to finish.",
                t.title
            ));
        }
        berth_host::fsutil::ensure_dir(&self.dir, 0o700)
            .map_err(|e| format!("The console cannot keep the task's output: {e}"))?;
        let (id, log, file) = self.new_log()?;
        let err = file
            .try_clone()
            .map_err(|e| format!("The console cannot keep the task's output: {e}"))?;
        let mut child = Command::new(&self.berth)
            .args(&self.global)
            .args(args)
            .env("BERTH_ACTOR", actor)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("berth could not be started: {e}"))?;
        let task = Arc::new(Task {
            id,
            title: title.to_owned(),
            command: format!("berth {}", args.join(" ")),
            actor: actor.to_owned(),
            started: jiff::Timestamp::now()
                .strftime("%Y-%m-%d %H:%M:%SZ")
                .to_string(),
            log,
            end: Mutex::new(End::Running),
        });
        let waiting = Arc::clone(&task);
        std::thread::spawn(move || {
            let end = match child.wait().ok().and_then(|s| s.code()) {
                Some(code) => End::Exited(code),
                None => End::Killed,
            };
            *waiting.end.lock().unwrap_or_else(PoisonError::into_inner) = end;
        });
        all.push_back(Arc::clone(&task));
        while all.len() > KEEP {
            all.pop_front();
        }
        drop(all);
        self.prune();
        Ok(task)
    }

    /// A new, empty log file (0600) and its id: milliseconds since the epoch, made
    /// unique by trying the next one.
    fn new_log(&self) -> Result<(u64, PathBuf, File), String> {
        let mut id = u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0);
        loop {
            let path = self.dir.join(format!("{id}.log"));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(&path)
            {
                Ok(f) => return Ok((id, path, f)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => id += 1,
                Err(e) => {
                    return Err(format!(
                        "The console cannot keep the task's output in {}: {e}",
                        path.display()
                    ));
                }
            }
        }
    }

    /// Remove all but the newest [`KEEP`] log files (only files named as ours).
    fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut ids: Vec<u64> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".log")?.parse().ok()
            })
            .collect();
        ids.sort_unstable();
        let old = ids.len().saturating_sub(KEEP);
        for id in &ids[..old] {
            let _ = std::fs::remove_file(self.dir.join(format!("{id}.log")));
        }
    }

    /// Task `id`, if the console still remembers it.
    pub(crate) fn get(&self, id: u64) -> Option<Arc<Task>> {
        self.all
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|t| t.id == id)
            .cloned()
    }

    /// Every remembered task, newest first.
    pub(crate) fn list(&self) -> Vec<Arc<Task>> {
        self.all
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .rev()
            .cloned()
            .collect()
    }

    /// Whether a task is running.
    pub(crate) fn busy(&self) -> bool {
        self.all
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|t| t.end() == End::Running)
    }
}

#[cfg(test)]
mod tests {
    use super::Tasks;

    /// A task runs its command with the actor in its environment, its output lands in
    /// a 0600 file, and a second task is refused while the first runs.
    #[test]
    fn one_task_at_a_time_with_its_output_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let tasks = Tasks::new(
            "/bin/sh".into(),
            vec!["-c".to_owned()],
            dir.path().join("console"),
        );
        let t = tasks
            .start(
                "Say who",
                &["echo \"by $BERTH_ACTOR\"; sleep 0.5".to_owned()],
                "console: alice",
            )
            .unwrap();
        assert!(tasks.busy());
        let refused = tasks
            .start("Again", &["true".to_owned()], "console: bob")
            .unwrap_err();
        assert!(refused.contains("still running"), "{refused}");
        for _ in 0..100 {
            if t.end() != super::End::Running {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(t.end(), super::End::Exited(0));
        assert_eq!(t.output(), "by console: alice\n");
        let mode = std::fs::metadata(dir.path().join(format!("console/{}.log", t.id)))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!tasks.busy());
        assert_eq!(tasks.list().len(), 1);
    }
}
