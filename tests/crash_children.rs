//! berth killed (SIGKILL) while a hook runs: the hook's whole process group is dead
//! once the next command has run, and that command works, even though the hook left a
//! half-made output that its own check would take for a finished one.
//!
//! The fixture's `initdb` hook is changed so that, once, it makes a half-made cluster
//! (a `PG_VERSION` and nothing else, as initdb leaves one when killed early), starts a
//! child of its own (which, unlike the hook, does not die with berth), says it got
//! there, and waits. The test kills berth at that moment, not after a sleep.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_process::process_alive as alive;
use berth_tests::{Berth, berth_bin, fixture, prefix_dir};

const BASE_SITE: &str = "external_url = \"http://127.0.0.1:47080/\"\n\
    [postgresql]\nport = 47432\n[redis]\nport = 47379\n[app]\nport = 47001\n";

/// The hook's check, as the fixture writes it (a TOML string, escapes and all).
const CHECK: &str = r#"[ -s \"$PGDATA/PG_VERSION\" ] || exec"#;

/// Once (while `$CRASH/once` exists): a half-made cluster, a child of its own, its
/// pids written for the test, then wait.
const CRASH_ONCE: &str = r#"if [ -e \"$CRASH/once\" ]; then rm \"$CRASH/once\"; mkdir -p \"$PGDATA\"; echo 15 > \"$PGDATA/PG_VERSION\"; sleep 1000 & echo $! > \"$CRASH/grandchild.tmp\"; mv \"$CRASH/grandchild.tmp\" \"$CRASH/grandchild\"; echo $$ > \"$CRASH/shell.tmp\"; mv \"$CRASH/shell.tmp\" \"$CRASH/shell\"; wait; fi; "#;

/// The fixture's manifest, its `initdb` hook changed as described above, in `dir`.
fn manifest(dir: &Path, crash: &Path) -> PathBuf {
    let from = fixture("ministack");
    let to = dir.join("ministack");
    std::fs::create_dir_all(to.join("templates")).unwrap();
    for entry in std::fs::read_dir(from.join("templates")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join("templates").join(entry.file_name())).unwrap();
    }
    let text = std::fs::read_to_string(from.join("berth.toml")).unwrap();
    assert_eq!(
        text.matches(CHECK).count(),
        1,
        "the fixture's initdb hook changed"
    );
    let env = "environment = { PGDATA = ";
    assert_eq!(text.matches(env).count(), 1);
    let text = text
        .replace(CHECK, &format!("{CRASH_ONCE}{CHECK}"))
        .replace(
            env,
            &format!(
                "environment = {{ CRASH = \"{}\", PGDATA = ",
                crash.display()
            ),
        );
    std::fs::write(to.join("berth.toml"), text).unwrap();
    to
}

/// Waits (up to 5 minutes: the first `up` builds a virtualenv) until `path` holds a pid.
fn wait_for_pid(path: &Path, berth: &mut std::process::Child) -> u32 {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        if let Some(status) = berth.try_wait().unwrap() {
            let err = path.with_file_name("../first.err");
            let out = std::fs::read_to_string(err).unwrap_or_default();
            panic!("berth ended ({status}) before the hook got going:\n{out}");
        }
        assert!(
            start.elapsed() < Duration::from_mins(5),
            "the hook never got going"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops the instance and what the test started, however the test ends.
struct Cleanup<'a> {
    berth: &'a Berth,
    grandchild: Option<u32>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        self.berth.run(&["down"]);
        if let Some(pid) = self.grandchild
            && alive(pid)
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, Iterator::count)
}

#[test]
fn a_hooks_children_do_not_outlive_a_killed_berth() {
    use std::os::unix::fs::PermissionsExt;
    let prefix = prefix_dir("crash-children");
    let work = tempfile::tempdir().unwrap();
    // The hook (its component's user) writes its pids here.
    let crash = work.path().join("crash");
    std::fs::create_dir(&crash).unwrap();
    std::fs::set_permissions(&crash, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(crash.join("once"), "").unwrap();
    let berth = Berth::new(prefix.path(), &manifest(work.path(), &crash));
    berth.write_site(BASE_SITE);
    let mut cleanup = Cleanup {
        berth: &berth,
        grandchild: None,
    };

    let mut first = Command::new(berth_bin())
        .arg("--prefix")
        .arg(prefix.path())
        .arg("--manifest")
        .arg(&berth.manifest)
        .arg("up")
        .env_remove("BERTH_PREFIX")
        .env_remove("BERTH_MANIFEST")
        .env_remove("BERTH_CONFIG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.path().join("first.err")).unwrap())
        .spawn()
        .unwrap();
    let grandchild = wait_for_pid(&crash.join("grandchild"), &mut first);
    cleanup.grandchild = Some(grandchild);
    let shell = wait_for_pid(&crash.join("shell"), &mut first);
    first.kill().unwrap();
    first.wait().unwrap();

    // The hook itself died with berth; the child it started did not, and is recorded.
    wait_until("the hook dies with berth", || !alive(shell));
    assert!(alive(grandchild));
    let state = prefix.path().join("state");
    assert_eq!(entries(&state.join("children")), 1);
    let cluster = prefix.path().join("data/postgresql/main");
    assert!(cluster.join("PG_VERSION").exists());
    assert!(state.join("unfinished-hooks/initdb").exists());

    // The next command stops the leftover, removes the half-made cluster, runs the
    // hook again for real, and brings the stack up.
    let again = berth.run(&["up"]).expect(0);
    let said = format!("{}{}", again.stdout, again.stderr);
    assert!(
        said.contains("Stopped `hook initdb` (process group")
            && said.contains("left running by an interrupted berth"),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "Removed `{}`, left half-made by hook `initdb`",
            cluster.display()
        )),
        "{said}"
    );
    assert!(!alive(grandchild));
    assert_eq!(entries(&state.join("children")), 0);
    assert!(!state.join("unfinished-hooks/initdb").exists());
    assert!(cluster.join("global/pg_control").exists());
    berth.wait_all_ready(Duration::from_mins(1));
    // And the command after that has nothing left to stop.
    let third = berth.run(&["reconfigure"]).expect(0);
    assert!(!third.stdout.contains("Stopped"), "{}", third.stdout);
    drop(cleanup);
}
