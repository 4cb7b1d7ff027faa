//! Real children started through `ChildCommand`: who they run as, what they see, what
//! they inherit, and that they die with the process that started them.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_process::{Account, ChildCommand, Detach, Killed, ProcessGroup, process_alive as alive};

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Output of a child, as text.
fn output(cmd: &ChildCommand) -> String {
    let out = cmd
        .build()
        .unwrap()
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// A user with supplementary groups where there is one (Debian's `postgres` is in
/// `ssl-cert`), else `nobody`.
fn other_user() -> Account {
    ["postgres", "nobody"]
        .iter()
        .find_map(|name| Account::lookup(name).ok())
        .expect("neither `postgres` nor `nobody` exists")
}

/// As root, the child runs as the user with exactly that user's groups (none of
/// root's, all of its supplementary ones), and sees only PATH, LANG, HOME, USER and
/// LOGNAME from its passwd entry plus the caller's variables, which win: nothing of
/// this test process's own environment (cargo's variables, root's HOME).
#[test]
fn runs_as_the_user_with_its_groups_and_a_clean_environment() {
    let account = if root() {
        other_user()
    } else {
        Account::current()
    };
    let mut cmd = ChildCommand::new("/bin/sh");
    cmd.args(["-c", "id -u; id -g; id -G; env"])
        .user(Some(&account.name))
        .env("EXTRA", "x y")
        .env("LANG", "en_GB.UTF-8");
    let text = output(&cmd);
    let mut lines = text.lines();
    assert_eq!(lines.next().unwrap(), account.credentials.uid().to_string());
    assert_eq!(lines.next().unwrap(), account.credentials.gid().to_string());
    let mut groups: Vec<u32> = lines
        .next()
        .unwrap()
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .collect();
    groups.sort_unstable();
    let mut expected = account.credentials.groups().to_vec();
    expected.sort_unstable();
    expected.dedup();
    assert_eq!(groups, expected);
    let env: BTreeMap<&str, &str> = lines
        .filter_map(|l| l.split_once('='))
        // The shell adds these itself.
        .filter(|(k, _)| !matches!(*k, "PWD" | "SHLVL" | "_"))
        .collect();
    let home = account.home.to_str().unwrap();
    let expected: BTreeMap<&str, &str> = [
        ("PATH", berth_supervisor_protocol::BASE_PATH),
        ("LANG", "en_GB.UTF-8"),
        ("HOME", home),
        ("USER", account.name.as_str()),
        ("LOGNAME", account.name.as_str()),
        ("EXTRA", "x y"),
    ]
    .into_iter()
    .collect();
    assert_eq!(env, expected);
}

/// The working directory is entered as the child's user, not by root on its behalf:
/// a directory only root may enter is refused.
#[test]
fn the_working_directory_is_entered_as_the_user() {
    use std::os::unix::fs::PermissionsExt;
    if !root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let private = tmp.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut cmd = ChildCommand::new("/bin/true");
    cmd.current_dir(&private);
    assert!(cmd.build().unwrap().status().unwrap().success());
    cmd.user(Some("nobody"));
    let err = cmd.build().unwrap().status().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
}

#[test]
fn an_unknown_user_is_named() {
    if !root() {
        return;
    }
    let mut cmd = ChildCommand::new("/bin/true");
    cmd.user(Some("berth-no-such-user"));
    let err = cmd.build().unwrap_err();
    assert_eq!(
        err.to_string(),
        "there is no system user `berth-no-such-user`"
    );
}

/// A `SigIgn:`/`SigBlk:` mask of `/proc/<pid>/status`.
fn mask(status: &str, field: &str) -> u64 {
    let line = status.lines().find_map(|l| l.strip_prefix(field)).unwrap();
    u64::from_str_radix(line.trim(), 16).unwrap()
}

/// Whatever berth inherited (SIGHUP ignored by `nohup`, SIGUSR1 blocked), the child
/// starts with every signal at its default action and none blocked.
#[test]
fn every_signal_is_reset_and_unblocked() {
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, pthread_sigmask, signal};
    // On a thread of its own: the blocked mask is per thread, and this one ends here.
    std::thread::spawn(|| {
        // SAFETY: SIG_IGN installs no handler.
        let before = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) }.unwrap();
        let mut blocked = SigSet::empty();
        blocked.add(Signal::SIGUSR1);
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&blocked), None).unwrap();
        let parent = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        assert_ne!(mask(&parent, "SigIgn:") & (1 << (libc::SIGPIPE - 1)), 0);
        assert_ne!(mask(&parent, "SigBlk:") & (1 << (libc::SIGUSR1 - 1)), 0);
        let status = output(ChildCommand::new("/bin/cat").arg("/proc/self/status"));
        // SAFETY: restores what was there.
        unsafe { signal(Signal::SIGPIPE, before) }.unwrap();
        assert_eq!(mask(&status, "SigIgn:"), 0, "{status}");
        assert_eq!(mask(&status, "SigBlk:"), 0, "{status}");
    })
    .join()
    .unwrap();
}

/// `(pid, pgrp, session)` of the child, from its own `/proc/self/stat`.
fn ids(detach: Detach) -> (u32, u32, u32) {
    let stat = output(
        ChildCommand::new("/bin/cat")
            .arg("/proc/self/stat")
            .detach(detach),
    );
    let pid = stat.split_whitespace().next().unwrap().parse().unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    let fields: Vec<u32> = rest
        .split_whitespace()
        .skip(2)
        .take(2)
        .map(|f| f.parse().unwrap())
        .collect();
    (pid, fields[0], fields[1])
}

#[test]
fn a_new_session_or_only_a_group_of_its_own() {
    let (pid, pgrp, session) = ids(Detach::Session);
    assert_eq!((pgrp, session), (pid, pid));
    let (pid, pgrp, session) = ids(Detach::Group);
    let ours = u32::try_from(nix::unistd::getsid(None).unwrap().as_raw()).unwrap();
    assert_eq!((pgrp, session), (pid, ours));
}

/// Polls `done` until it holds or 10 s pass.
fn eventually(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

const HELPER_OUT: &str = "BERTH_PROCESS_HELPER_OUT";
const HELPER_DIES: &str = "BERTH_PROCESS_HELPER_DIES";

/// Run by [`a_child_dies_with_the_process_that_started_it`] in a process of its own:
/// start `sleep` (dying with this process or not), write its pid, and wait to be killed.
#[test]
#[ignore = "helper, started by a_child_dies_with_the_process_that_started_it"]
fn helper_parent() {
    let Ok(out) = std::env::var(HELPER_OUT) else {
        return;
    };
    let mut cmd = ChildCommand::new("/bin/sleep");
    cmd.arg("1000");
    if std::env::var_os(HELPER_DIES).is_some() {
        cmd.die_with_parent();
    }
    let mut child = cmd.build().unwrap().spawn().unwrap();
    std::fs::write(format!("{out}.tmp"), child.id().to_string()).unwrap();
    std::fs::rename(format!("{out}.tmp"), &out).unwrap();
    // Killed long before this returns.
    std::thread::sleep(Duration::from_secs(1000));
    child.wait().unwrap();
}

/// Starts [`helper_parent`], kills it with SIGKILL once its child runs, and returns
/// that child's pid.
fn orphan(dies: bool) -> u32 {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("pid");
    let mut helper = Command::new(std::env::current_exe().unwrap());
    helper
        .args(["--exact", "helper_parent", "--ignored", "--nocapture"])
        .env(HELPER_OUT, &out)
        .stdout(Stdio::null());
    if dies {
        helper.env(HELPER_DIES, "1");
    }
    let mut helper = helper.spawn().unwrap();
    eventually("the helper's child starts", || Path::new(&out).exists());
    let pid: u32 = std::fs::read_to_string(&out).unwrap().parse().unwrap();
    assert!(alive(pid));
    helper.kill().unwrap();
    helper.wait().unwrap();
    pid
}

#[test]
fn a_child_dies_with_the_process_that_started_it() {
    let pid = orphan(true);
    eventually("the orphan dies", || !alive(pid));
    // Without it, the orphan lives on: what the test above sees is the parent-death signal.
    let pid = orphan(false);
    std::thread::sleep(Duration::from_millis(200));
    assert!(alive(pid));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

/// A recorded group is killed with everything its leader started, even the
/// children that did not inherit the parent-death signal.
#[test]
fn a_recorded_group_is_killed_whole() {
    let mut cmd = ChildCommand::new("/bin/sh");
    cmd.args(["-c", "sleep 1000 & sleep 1000 & echo started; wait"]);
    let mut child = cmd.build().unwrap().stdout(Stdio::piped()).spawn().unwrap();
    let group = ProcessGroup::led_by(child.id()).unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let members = berth_process::group_members(group.pgid).unwrap();
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(group.is_alive());
    assert_eq!(group.kill(Duration::from_secs(5)).unwrap(), Killed::Killed);
    assert!(!group.is_alive());
    assert!(members.iter().all(|m| !alive(m.pid)));
    child.wait().unwrap();
    assert_eq!(
        group.kill(Duration::from_secs(5)).unwrap(),
        Killed::AlreadyGone
    );
}

/// A record whose leader's start time or boot does not match names another group,
/// which is left alone.
#[test]
fn a_reused_group_number_is_left_alone() {
    let mut child = ChildCommand::new("/bin/sleep")
        .arg("1000")
        .build()
        .unwrap()
        .spawn()
        .unwrap();
    let group = ProcessGroup::led_by(child.id()).unwrap();
    let stranger = ProcessGroup {
        start_time: group.start_time + 1,
        ..group.clone()
    };
    let earlier_boot = ProcessGroup {
        boot_id: "00000000-0000-0000-0000-000000000000".to_owned(),
        ..group.clone()
    };
    for other in [stranger, earlier_boot] {
        assert!(!other.is_alive());
        assert_eq!(
            other.kill(Duration::from_secs(1)).unwrap(),
            Killed::AlreadyGone
        );
    }
    assert!(alive(child.id()));
    assert!(group.is_alive());
    child.kill().unwrap();
    child.wait().unwrap();
}
