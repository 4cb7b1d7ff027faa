//! `berth preflight` on the real host, and `up` refusing, before it changes anything,
//! a host that lacks what the manifest's `[preflight]` asks: more memory and free disk
//! than any machine has, a program and a package nobody has, a port another program
//! holds. Warnings (only a recommendation missed) are said and do not stop `up`.
#![allow(clippy::missing_panics_doc, clippy::print_stderr, missing_docs)] // a skipped test says why

use std::net::TcpListener;

use berth_tests::{Berth, is_root, ministack_at, prefix_dir, snapshot_tree};

const APP_PORT: u16 = 48501;
const SITE: &str = "external_url = \"http://127.0.0.1:48580/\"\n\
    [postgresql]\nport = 48532\n[redis]\nport = 48579\n[app]\nport = 48501\n";

const LACKING: &str = "
[preflight]
cpus = { min = 1 }
memory = { min = \"64TiB\", recommended = \"128TiB\" }
distributions = [\"debian\"]
binaries = [\"sh\", \"berth-no-such-program\"]
packages = { \"dpkg\" = \"1.0\", \"berth-no-such-package\" = \"1.0\" }

[[preflight.disk]]
path = \"data\"
min = \"1000TiB\"
";

const WARNING_ONLY: &str = "
[preflight]
memory = { min = \"1MiB\", recommended = \"128TiB\" }
clock_sync = \"off\"
";

struct Down<'a>(&'a Berth);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        self.0.run(&["down"]);
    }
}

fn line<'a>(out: &'a str, start: &str) -> &'a str {
    out.lines()
        .find(|l| l.trim_start().starts_with(start))
        .unwrap_or_else(|| panic!("no line `{start}` in:\n{out}"))
}

#[test]
fn a_host_that_lacks_what_the_app_needs_is_refused_before_anything_changes() {
    if !is_root() {
        eprintln!("skipped: `up` of ministack makes service users (root only)");
        return;
    }
    let src = tempfile::tempdir().unwrap();
    let manifest = ministack_at(src.path(), "1.0.0", |t| format!("{t}{LACKING}"));
    let dir = prefix_dir("preflight");
    let b = Berth::new(dir.path(), &manifest);
    b.write_site(SITE);

    // Every check with its verdict; exit status 1.
    let r = b.run(&["preflight"]).expect(1);
    let out = &r.stdout;
    assert!(
        line(out, "fail  memory").contains("(wanted: at least 64 TiB, 128 TiB recommended)"),
        "{out}"
    );
    assert!(
        out.contains("fix: give the machine at least 64 TiB of memory"),
        "{out}"
    );
    assert!(line(out, "fail  disk data").contains("free of"), "{out}");
    assert!(
        out.contains("fix: make 1000 TiB free on the filesystem of"),
        "{out}"
    );
    assert!(
        line(out, "pass  disk berth state").contains("free of"),
        "{out}"
    );
    line(out, "pass  cpus");
    line(out, "pass  distribution");
    assert!(line(out, "pass  binary sh").contains("found at /"), "{out}");
    assert!(
        line(out, "fail  binary berth-no-such-program").contains("not found"),
        "{out}"
    );
    assert!(
        line(out, "pass  package dpkg").contains("installed"),
        "{out}"
    );
    assert!(
        line(out, "fail  package berth-no-such-package").contains("no repository has it"),
        "{out}"
    );
    line(out, &format!("pass  port 127.0.0.1:{APP_PORT}"));
    assert!(out.contains(" failed"), "{out}");

    // The same as JSON.
    let r = b.run(&["preflight", "--json"]).expect(1);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let status = |name: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no check {name}: {v:#}"))["status"]
            .clone()
    };
    assert_eq!(status("memory"), "fail");
    assert_eq!(status("disk data"), "fail");
    assert_eq!(status("package dpkg"), "pass");

    // `up` stops before it changes anything: the prefix is as it was, no user made.
    let before = snapshot_tree(dir.path());
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let r = b.run(&["up"]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(
        r.stderr
            .contains("The host does not meet the app's requirements, nothing was changed"),
        "{}",
        r.stderr
    );
    for failed in [
        "fail  memory",
        "fail  disk data",
        "fail  binary berth-no-such-program",
    ] {
        assert!(r.stderr.contains(failed), "{failed}: {}", r.stderr);
    }
    assert!(
        !r.stderr.contains("pass  "),
        "only what failed: {}",
        r.stderr
    );
    assert!(r.stderr.contains("`berth preflight`"), "{}", r.stderr);
    assert_eq!(snapshot_tree(dir.path()), before);
    assert_eq!(std::fs::read_to_string("/etc/passwd").unwrap(), passwd);
}

#[test]
fn warnings_do_not_stop_up_and_a_taken_port_does() {
    if !is_root() {
        eprintln!("skipped: `up` of ministack makes service users (root only)");
        return;
    }
    let src = tempfile::tempdir().unwrap();
    let manifest = ministack_at(src.path(), "1.0.0", |t| format!("{t}{WARNING_ONLY}"));
    let dir = prefix_dir("preflight-warn");
    let b = Berth::new(dir.path(), &manifest);
    b.write_site(SITE);

    // Another program on the app's port: a failure, named with its fix.
    let holder = TcpListener::bind(("127.0.0.1", APP_PORT)).unwrap();
    let r = b.run(&["preflight"]).expect(1);
    assert!(
        line(&r.stdout, &format!("fail  port 127.0.0.1:{APP_PORT}"))
            .contains("wanted by service `app`"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("give service `app` another port"),
        "{}",
        r.stdout
    );
    assert!(
        line(&r.stdout, "warn  memory").contains("128 TiB recommended"),
        "{}",
        r.stdout
    );
    assert!(
        !r.stdout.contains("clock"),
        "`clock_sync = \"off\"`: {}",
        r.stdout
    );
    let before = snapshot_tree(dir.path());
    let r = b.run(&["up"]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(
        r.stderr
            .contains(&format!("fail  port 127.0.0.1:{APP_PORT}")),
        "{}",
        r.stderr
    );
    assert_eq!(snapshot_tree(dir.path()), before);
    drop(holder);

    // Only a warning left: `up` says it and goes on.
    let r = b.run(&["preflight"]).expect(0);
    assert!(r.stdout.contains("0 failed"), "{}", r.stdout);
    let up = b.run(&["up"]);
    let _down = Down(&Berth::installed(dir.path()));
    let up = up.expect(0);
    assert!(up.stderr.contains("preflight: memory:"), "{}", up.stderr);
    // Running, its own ports are its own: nothing fails.
    let r = Berth::installed(dir.path()).run(&["preflight"]).expect(0);
    line(&r.stdout, &format!("pass  port 127.0.0.1:{APP_PORT}"));
}

/// An upgrade to a version whose `[preflight]` this host does not meet stops in its
/// own preflight step: no backup taken, nothing installed, the old version serving.
#[test]
fn an_upgrade_the_host_cannot_run_is_refused_before_its_backup() {
    if !is_root() {
        eprintln!("skipped: `up` of ministack makes service users (root only)");
        return;
    }
    let src = tempfile::tempdir().unwrap();
    let v1 = ministack_at(src.path(), "1.0.0", |t| t);
    let v2 = ministack_at(src.path(), "1.0.1", |t| {
        format!("{t}\n[preflight]\nmemory = {{ min = \"64TiB\" }}\n")
    });
    let dir = prefix_dir("preflight-upgrade");
    let b = Berth::new(dir.path(), &v1);
    b.write_site(
        "external_url = \"http://127.0.0.1:49180/\"\n\
         [postgresql]\nport = 49132\n[redis]\nport = 49179\n[app]\nport = 49101\n",
    );
    let up = b.run(&["up"]);
    let b = Berth::installed(dir.path());
    let _down = Down(&b);
    up.expect(0);
    let r = b.run(&["upgrade", "apply", "--to", v2.to_str().unwrap()]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(
        r.stderr
            .contains("The host does not meet the app's requirements, nothing was changed"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("fail  memory"), "{}", r.stderr);
    let history = b.run(&["history", "--json"]).expect(0);
    let runs: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    assert!(
        !runs
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "backup"),
        "a backup was taken: {runs:#}"
    );
    assert!(!dir.path().join("releases/1.0.1").exists());
    let releases = b.run(&["releases"]).expect(0);
    assert!(releases.stdout.contains("1.0.0"), "{}", releases.stdout);
    assert!(!releases.stdout.contains("1.0.1"), "{}", releases.stdout);
}
