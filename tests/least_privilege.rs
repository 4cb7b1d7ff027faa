//! Least privilege on a real instance: what root leaves readable, whom the control
//! socket answers, and who builds the virtualenv and runs the hooks.
//!
//! Each check stops an attack a local user could make on the old code: read another
//! service's output (logs were 0644 in 0755 directories), control the supervisor
//! through its socket (no peer check), run code as root through a package build (pip
//! ran as root with root's environment), or pick up root's environment in a hook.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_tests::{Berth, files_under, fixture, is_root, prefix_dir};

const SITE: &str = "external_url = \"http://127.0.0.1:39080/\"\n\
    [postgresql]\nport = 39432\n[redis]\nport = 39379\n[app]\nport = 39001\n";

/// A hook that prints its environment into its log and writes into its `HOME`, and a
/// service that writes into its `HOME` (and is ready once it has).
const HOME_WRITERS: &str = r#"
[hooks.spy]
component = "app"
description = "Print the hook's environment, write into HOME"
command = ["/bin/sh", "-c", 'env && echo hook > "$HOME/from-hook"']
environment = { FROM_MANIFEST = "yes" }
when = "once"

[services.homebody]
component = "app"
description = "Writes into its HOME, then waits"
command = ["/bin/sh", "-c", 'echo service > "$HOME/from-service" && exec sleep 1000000']
ready = { command = ["/bin/sh", "-c", 'test -s "$HOME/from-service"'], timeout = "10s" }

# The fixture declares roles, so every service is in one.
[roles.spying]
services = ["homebody"]
"#;

/// The ministack fixture plus [`HOME_WRITERS`].
fn manifest_with_spy_hook(dir: &Path) -> PathBuf {
    let manifest = dir.join("manifest");
    std::fs::create_dir_all(manifest.join("templates")).unwrap();
    let src = fixture("ministack");
    for entry in std::fs::read_dir(src.join("templates")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(
            entry.path(),
            manifest.join("templates").join(entry.file_name()),
        )
        .unwrap();
    }
    let mut text = std::fs::read_to_string(src.join("berth.toml")).unwrap();
    text.push_str(HOME_WRITERS);
    std::fs::write(manifest.join("berth.toml"), text).unwrap();
    manifest
}

fn meta(path: &Path) -> std::fs::Metadata {
    std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn gid_of(user: &str) -> u32 {
    nix::unistd::User::from_name(user)
        .unwrap()
        .unwrap_or_else(|| panic!("no user `{user}`"))
        .gid
        .as_raw()
}

/// Whether `user` can read `path` (with `cat`, as that user).
fn can_read(user: &str, path: &Path) -> bool {
    Command::new("/usr/sbin/runuser")
        .args(["-u", user, "--", "/bin/cat"])
        .arg(path)
        .env_clear()
        .output()
        .unwrap()
        .status
        .success()
}

/// Send one `Status` request as `nobody` over `socket`; prints the answer line.
fn status_as_nobody(socket: &Path) -> String {
    let script = r"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(b'{\x22request\x22:\x22status\x22}\n')
print(s.makefile().readline().strip())
";
    let out = Command::new("/usr/sbin/runuser")
        .args(["-u", "nobody", "--", "/usr/bin/python3", "-I", "-c", script])
        .arg(socket)
        .env_clear()
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
#[allow(clippy::print_stderr)] // a skipped test says why
fn an_instance_gives_each_user_only_what_it_needs() {
    if !is_root() {
        eprintln!("skipped: service users, log owners and the build user need root");
        return;
    }
    let dir = prefix_dir("leastpriv");
    let prefix = dir.path().join("prefix");
    std::fs::create_dir(&prefix).unwrap();
    std::fs::set_permissions(&prefix, std::fs::Permissions::from_mode(0o755)).unwrap();
    let manifest = manifest_with_spy_hook(dir.path());
    let berth = Berth::new(&prefix, &manifest);
    berth.write_site(SITE);
    let secrets = [
        ("BERTH_TEST_SECRET", "root-secret-1"),
        ("PIP_INDEX_URL", "http://root-secret-2.invalid/simple"),
        ("HOME", "/root-secret-home"),
    ];
    let up = berth.run_env(&["up"], &secrets);
    if up.code != 0 {
        berth.run(&["down"]);
    }
    let result = std::panic::catch_unwind(|| check(&berth, &prefix));
    berth.run(&["down"]).expect(0);
    up.expect(0);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    homes_are_never_followed(&berth, &prefix, dir.path());
}

/// A symlink where a user's home goes is refused, not followed, by `up`; a symlink a
/// service user left inside its home is removed by `down --purge`, with the home,
/// and what it points to is left alone.
fn homes_are_never_followed(berth: &Berth, prefix: &Path, dir: &Path) {
    let home = prefix.join("home/ministack");
    let moved = prefix.join("home/ministack.moved");
    let target = dir.join("target");
    std::fs::create_dir(&target).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&home, &moved).unwrap();
    std::os::unix::fs::symlink(&target, &home).unwrap();
    let r = berth.run(&["up"]);
    if r.code == 0 {
        berth.run(&["down"]);
    }
    assert_ne!(r.code, 0, "up followed a symlink for a home: {r:?}");
    assert!(
        r.stderr
            .contains(&format!("`{}` is a symbolic link", home.display())),
        "{}",
        r.stderr
    );
    let m = meta(&target);
    assert_eq!((m.mode() & 0o7777, m.uid()), (0o755, 0));
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);

    // The service user links its home to a file of root's: purge removes the link.
    std::fs::remove_file(&home).unwrap();
    std::fs::rename(&moved, &home).unwrap();
    let precious = dir.join("precious");
    std::fs::write(&precious, "root's\n").unwrap();
    let out = Command::new("/usr/sbin/runuser")
        .args(["-u", "ministack", "--", "/bin/ln", "-s"])
        .arg(&precious)
        .arg(home.join("escape"))
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let r = berth.run(&["down", "--purge"]).expect(0);
    assert!(
        r.stdout
            .contains(&format!("Removed {}", prefix.join("home").display())),
        "{}",
        r.stdout
    );
    assert!(!prefix.join("home").exists());
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "root's\n");
    assert!(prefix.join("data/app").is_dir(), "purge removed data");
}

fn check(berth: &Berth, prefix: &Path) {
    let log = prefix.join("log");
    // Service logs: 0750 directories and 0640 files, root's and the service's group's.
    for (service, user) in [
        ("app", "ministack"),
        ("postgresql", "ministack-pg"),
        ("nginx", "ministack-web"),
    ] {
        let d = log.join(service);
        let m = meta(&d);
        assert_eq!(
            (m.mode() & 0o7777, m.uid(), m.gid()),
            (0o750, 0, gid_of(user)),
            "{}",
            d.display()
        );
        let f = d.join("current");
        let m = meta(&f);
        assert_eq!(
            (m.mode() & 0o7777, m.uid(), m.gid()),
            (0o640, 0, gid_of(user)),
            "{}",
            f.display()
        );
    }
    // The service reads its own log; another service's user cannot.
    assert!(can_read("ministack", &log.join("app/current")));
    assert!(!can_read("ministack-web", &log.join("app/current")));
    assert!(!can_read("nobody", &log.join("postgresql/current")));

    // Hook logs and the supervisor's own log.
    let initdb = log.join("hooks/initdb.log");
    let m = meta(&initdb);
    assert_eq!(
        (m.mode() & 0o7777, m.uid(), m.gid()),
        (0o640, 0, gid_of("ministack-pg"))
    );
    assert!(!can_read("nobody", &initdb));
    let sup = log.join("supervisor.log");
    let m = meta(&sup);
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o640, 0, 0));

    // `berth tail` still shows logs to root.
    let tail = berth.run(&["tail", "app", "-n", "5"]).expect(0);
    assert!(!tail.stdout.is_empty(), "{tail:?}");

    // The hook saw the manifest's variables and its user's home under the prefix,
    // nothing of berth's environment.
    let spy = std::fs::read_to_string(log.join("hooks/spy.log")).unwrap();
    assert!(!spy.contains("root-secret"), "{spy}");
    assert!(spy.contains("FROM_MANIFEST=yes"), "{spy}");
    let home = prefix.join("home/ministack");
    assert!(spy.contains(&format!("HOME={}\n", home.display())), "{spy}");

    // That home is the user's own and private; the hook and a service wrote into it.
    let m = meta(&prefix.join("home"));
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o755, 0, 0));
    let m = meta(&home);
    let uid = nix::unistd::User::from_name("ministack")
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    assert_eq!(
        (m.mode() & 0o7777, m.uid(), m.gid()),
        (0o700, uid, gid_of("ministack"))
    );
    for (file, text) in [("from-hook", "hook\n"), ("from-service", "service\n")] {
        let path = home.join(file);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        assert_eq!(meta(&path).uid(), uid, "{}", path.display());
    }
    assert!(!can_read("ministack-web", &home.join("from-hook")));
    // A user berth creates has that home in its passwd entry too.
    for user in ["ministack", "ministack-pg", "ministack-web"] {
        let passwd = nix::unistd::User::from_name(user).unwrap().unwrap().dir;
        if passwd.starts_with(prefix) {
            assert_eq!(passwd, prefix.join("home").join(user));
        }
    }

    // The control socket: 0600, and a user let in by a wrong mode is still refused.
    let socket = prefix.join("run/supervisor.sock");
    let m = meta(&socket);
    assert_eq!((m.mode() & 0o777, m.uid()), (0o600, 0));
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let answer = status_as_nobody(&socket);
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(answer.contains("Permission denied"), "{answer}");
    let sup_log = std::fs::read_to_string(&sup).unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap().uid;
    assert!(
        sup_log.contains(&format!("refused a control connection from uid {nobody}")),
        "{sup_log}"
    );

    // The virtualenv was built by the build user and handed to root: nothing in the
    // release belongs to the build user or can be changed by anyone but root.
    let build_uid = nix::unistd::User::from_name(berth_host_build_user())
        .unwrap()
        .expect("the build user exists after a build")
        .uid
        .as_raw();
    assert_ne!(build_uid, 0);
    let venv_root = prefix.join("releases");
    for file in files_under(&venv_root) {
        let m = meta(&file);
        assert_eq!(m.uid(), 0, "{}", file.display());
        if !m.file_type().is_symlink() {
            assert_eq!(m.mode() & 0o7022, 0, "{}", file.display());
        }
    }
    let owned_by_builder: Vec<PathBuf> = files_under(prefix)
        .into_iter()
        .filter(|f| meta(f).uid() == build_uid)
        .collect();
    assert!(owned_by_builder.is_empty(), "{owned_by_builder:?}");
}

/// The name `berth-host` gives its build user (kept here, as the tests do not link
/// that crate).
fn berth_host_build_user() -> &'static str {
    "berth-build"
}
