//! Backups and restores killed with SIGKILL at the moment that used to hurt, on the test
//! stack with real PostgreSQL: a backup killed while it has the app paused leaves
//! nothing frozen, the next backup removes what it left and says so, and an in-place
//! restore killed during its safety backup is aborted promptly, its journal kept until
//! the abort has succeeded.
//!
//! Ports 35432 (PostgreSQL), 36379 (Redis), 38001 (app), 38080 (nginx).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_lifecycle::fault;
use berth_tests::{Berth, Run, fixture, http_get, is_root, prefix_dir};

const WEB: u16 = 38080;

fn site() -> String {
    format!(
        "external_url = \"http://127.0.0.1:{WEB}/\"\n[postgresql]\nport = 35432\n[redis]\nport = 36379\n[app]\nport = 38001\n"
    )
}

fn healthy() -> bool {
    http_get(WEB, "/health", "127.0.0.1").is_ok_and(|(code, _)| code == 200)
}

struct Stack<'a>(&'a Berth);

impl Drop for Stack<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["down"]);
    }
}

/// The state letter of a process: `T` when stopped by SIGSTOP.
fn proc_state(pid: u64) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// Whether the supervisor reports `service` ready and its process is not stopped.
fn running(b: &Berth, service: &str) -> bool {
    let status = b.status();
    status["services"].as_array().unwrap().iter().any(|s| {
        s["name"] == service
            && s["state"] == "ready"
            && s["pid"]
                .as_u64()
                .is_some_and(|pid| proc_state(pid).is_some_and(|st| st != 'T'))
    })
}

/// Poll `cond` every 50 ms; fail unless it holds within `limit`.
#[track_caller]
fn within(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let since = Instant::now();
    while !cond() {
        assert!(since.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Names in `dir` starting with `prefix`.
fn names(dir: &Path, prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// A run killed by the fault point `point` (SIGKILL: no exit code).
#[track_caller]
fn killed(r: &Run, point: &str) {
    assert_eq!(
        r.code, -1,
        "not killed at `{point}`:\n{}\n{}",
        r.stdout, r.stderr
    );
}

/// The staging directories and partial archives an interrupted backup left.
fn leftovers(prefix: &Path) -> (Vec<String>, Vec<String>) {
    let tmp = prefix.join("tmp");
    let mut staging = names(&tmp, "backup-");
    staging.extend(names(&tmp, "dump-"));
    let partial = names(&prefix.join("backups"), "")
        .into_iter()
        .filter(|n| n.ends_with(".partial"))
        .collect();
    (staging, partial)
}

#[test]
#[allow(clippy::too_many_lines)] // one instance, one story
#[allow(clippy::print_stderr)] // a skipped test says why
fn killed_backups_and_restores_leave_nothing_frozen_or_behind() {
    if !is_root() {
        eprintln!("skipped: the stack test installs service users and needs root");
        return;
    }
    let scratch = prefix_dir("crash-scratch");
    let dir = prefix_dir("crash");
    let b = Berth::new(dir.path(), &fixture("ministack"));
    b.write_site(&site());
    let _down = Stack(&b);
    b.run(&["up"]).expect(0);
    let key = scratch.path().join("backup.key");
    b.run(&["backup", "key", "--export", key.to_str().unwrap()])
        .expect(0);
    std::fs::create_dir_all(b.prefix.join("data/app/uploads")).unwrap();
    std::fs::write(b.prefix.join("data/app/uploads/notes.txt"), "hello\n").unwrap();

    // (a) A backup killed while it has the app paused: the app runs again at once,
    // nobody resumes it by hand (the supervisor's own deadline is 30 minutes).
    let r = b.run_env(&["backup", "create"], &[(fault::ENV, "backup:paused")]);
    killed(&r, "backup:paused");
    within(
        "the app running again after the kill",
        Duration::from_secs(5),
        || running(&b, "app"),
    );
    assert!(healthy());

    // (b) What it left: its staging directories (one holds the database dump) and
    // the unfinished archive. The next backup removes them and says so.
    let (staging, partial) = leftovers(&b.prefix);
    assert_eq!(staging.len(), 2, "{staging:?}");
    assert_eq!(partial.len(), 1, "{partial:?}");
    let before = names(&b.prefix.join("backups"), "");
    let r = b.run(&["backup", "create"]).expect(0);
    for name in &staging {
        assert!(
            r.stderr
                .contains(&format!("tmp/{name}`, left by an interrupted backup")),
            "{name} not reported:\n{}",
            r.stderr
        );
    }
    assert!(
        r.stderr.contains(&format!(
            "{}`, the unfinished archive of an interrupted backup",
            partial[0]
        )),
        "{}",
        r.stderr
    );
    assert_eq!(leftovers(&b.prefix), (vec![], vec![]));
    let new: Vec<String> = names(&b.prefix.join("backups"), "")
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    let archive: PathBuf = b.prefix.join("backups").join(&new[0]);
    b.run(&["backup", "verify", archive.to_str().unwrap()])
        .expect(0);
    // Nothing more to remove the next time.
    let r = b.run(&["backup", "create"]).expect(0);
    assert!(!r.stderr.contains("Removed"), "{}", r.stderr);

    // (c) An in-place restore killed during its safety backup, with the app paused:
    // `--abort` finishes promptly (it used to wait 180 s for a frozen app, fail, and
    // have deleted the journal already) and the instance is healthy.
    let restore = [
        "restore",
        archive.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];
    let journal = b.prefix.join("tmp/restore.json");
    let r = b.run_env(&restore, &[(fault::ENV, "backup:paused")]);
    killed(&r, "backup:paused (safety backup)");
    assert!(journal.exists());
    within(
        "the app running again after the kill",
        Duration::from_secs(5),
        || running(&b, "app"),
    );
    let asked = Instant::now();
    let r = b.run(&["restore", "--abort"]).expect(0);
    assert!(
        asked.elapsed() < Duration::from_mins(1),
        "abort took {:?}",
        asked.elapsed()
    );
    // It removed what the killed safety backup left, and said so.
    assert!(
        r.stderr.contains("left by an interrupted backup"),
        "{}",
        r.stderr
    );
    assert_eq!(leftovers(&b.prefix), (vec![], vec![]));
    assert!(!journal.exists());
    b.wait_all_ready(Duration::from_mins(1));
    assert!(healthy());

    // An abort that does not finish keeps the journal, and the next one succeeds.
    let r = b.run_env(&restore, &[(fault::ENV, "backup:paused")]);
    killed(&r, "backup:paused (safety backup)");
    let r = b.run_env(
        &["restore", "--abort"],
        &[(fault::ENV, "restore-abort:undone")],
    );
    killed(&r, "restore-abort:undone");
    assert!(
        journal.exists(),
        "the journal went with an unfinished abort"
    );
    // Not resumable now, nor another restore begun: what was undone stays undone.
    for args in [&["restore", "--resume"][..], &restore[..]] {
        let r = b.run(args);
        assert_ne!(r.code, 0);
        assert!(
            r.stderr.contains("run `berth restore --abort` again"),
            "{}",
            r.stderr
        );
    }
    b.run(&["restore", "--abort"]).expect(0);
    assert!(!journal.exists());
    b.wait_all_ready(Duration::from_mins(1));
    assert!(healthy());
    assert_eq!(
        std::fs::read_to_string(b.prefix.join("data/app/uploads/notes.txt")).unwrap(),
        "hello\n"
    );
}
