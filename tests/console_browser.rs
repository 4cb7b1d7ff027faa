//! `berth console` in a real browser: headless Chromium, driven by Selenium from the
//! test tools' virtualenv (`tests/browser/console_flow.py`), signs in, watches the
//! status page follow a kill -9 live, opens the history and a log, has a sign-out
//! without its CSRF token refused, signs out, and runs into the lockout. Every page it
//! reaches is saved as a PNG under `target/artefacts/console-browser/`.
//!
//! A second run (`tests/browser/setup_flow.py`) starts on an instance without a site
//! config: first-run setup in the browser (a refused answer first, nothing written;
//! then the review and `berth up` followed live on its task page), a backup and its
//! verification as tasks, the history naming the session, nginx's log followed, the
//! upgrades and tasks pages; its screenshots go to a directory of their own,
//! `target/artefacts/console-browser/setup/`.
//!
//! Skipped (saying why) when not root, or when Chromium, its driver or Selenium are
//! missing; under `CI=true` a missing tool fails instead, since `scripts/test.sh`
//! installs them all.
#![allow(clippy::missing_panics_doc, clippy::print_stderr, missing_docs)] // a skipped test says why

use std::process::Child;
use std::time::Duration;

use berth_tests::browser::{assert_shots, browser_python, drive, fresh_shots};
use berth_tests::{Berth, ministack_at, prefix_dir, root, spawn_console};

const SITE: &str = "external_url = \"http://127.0.0.1:49280/\"\n\
    [postgresql]\nport = 49232\n[redis]\nport = 49279\n[app]\nport = 49201\nspare_port = 49202\n";
const CONSOLE: &str = "127.0.0.1:49290";
/// The fixture's services, and the one the driver kills.
const SERVICES: &str = "app,postgresql,redis,nginx";
const KILL: &str = "app";
/// The screenshots the driver takes, in order (`console_flow.py` names them).
const SHOTS: &[&str] = &[
    "01-sign-in",
    "02-wrong-password",
    "03-status",
    "04-status-after-restart",
    "05-history",
    "06-log-app",
    "07-csrf-refused",
    "08-status-after-refusal",
    "09-signed-out",
    "10-status-sends-to-sign-in",
    "11-wrong-password-1",
    "12-wrong-password-2",
    "13-wrong-password-3",
    "14-wrong-password-4",
    "15-wrong-password-5",
    "16-locked",
];
/// The whole browser run, at most (it takes well under a minute).
const DRIVER_WITHIN: Duration = Duration::from_mins(5);

/// The setup run's ports, a block of their own: setup asks no ports, so the copy of the
/// manifest has these as its defaults.
const SETUP_PORTS: [(&str, &str); 5] = [
    ("default = 15432", "default = 49342"),
    ("default = 16379", "default = 49349"),
    ("default = 18001", "default = 49341"),
    ("default = 18002", "default = 49343"),
    ("127.0.0.1:18080", "127.0.0.1:49348"),
];
const SETUP_EXTERNAL_URL: &str = "http://127.0.0.1:49348/";
const SETUP_CONSOLE: &str = "127.0.0.1:49346";
/// The name the setup run signs in with, which the history records.
const SETUP_NAME: &str = "browser-admin";
/// The setup run's screenshots, in order (`setup_flow.py` names them).
const SETUP_SHOTS: &[&str] = &[
    "01-sign-in",
    "02-setup-form",
    "03-setup-refused",
    "04-setup-answered",
    "05-setup-review",
    "06-task-up-started",
    "07-task-up-succeeded",
    "08-status",
    "09-backups-empty",
    "10-task-backup-succeeded",
    "11-backups-one",
    "12-task-verify-succeeded",
    "13-history",
    "14-log-nginx-followed",
    "15-upgrades",
    "16-tasks",
];
/// The setup run at most: `berth up` from nothing (10 minutes at most on its page), a
/// backup and its verification (5 minutes each at most), the rest in seconds.
const SETUP_DRIVER_WITHIN: Duration = Duration::from_mins(25);

struct Stop(Child, Berth);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        self.1.run(&["down"]);
    }
}

#[test]
fn the_console_in_a_browser_signs_in_follows_a_restart_and_keeps_its_rules() {
    let Some(python) = browser_python() else {
        return;
    };
    // Only this run's pictures: the last run's go.
    let shots = fresh_shots(&root().join("target/artefacts/console-browser"));

    let src = tempfile::tempdir().unwrap();
    let manifest = ministack_at(src.path(), "1.0.0", |t| t);
    let dir = prefix_dir("console-browser");
    let b = Berth::new(dir.path(), &manifest);
    b.write_site(SITE);
    b.run(&["up"]).expect(0);
    let child = spawn_console(dir.path(), None, CONSOLE, Some(&shots.join("console.log")));
    let _stop = Stop(child, Berth::installed(dir.path()));

    drive(&python, "console_flow.py", &shots, DRIVER_WITHIN, |c| {
        c.args(["--url", &format!("http://{CONSOLE}")])
            .arg("--password-file")
            .arg(dir.path().join("secrets/berth-console-password"))
            .arg("--shots")
            .arg(&shots)
            .args(["--services", SERVICES, "--kill", KILL])
    });
    assert_shots(&shots, SHOTS);
}

/// From an instance without a site config to a running app, backed up, through the
/// console's pages in the browser (`setup_flow.py` says what each step checks).
#[test]
fn the_console_in_a_browser_sets_up_backs_up_and_follows() {
    let Some(python) = browser_python() else {
        return;
    };
    let shots = fresh_shots(&root().join("target/artefacts/console-browser/setup"));

    let src = tempfile::tempdir().unwrap();
    let manifest = ministack_at(src.path(), "1.0.0", |t| {
        SETUP_PORTS.iter().fold(t, |t, (from, to)| {
            assert!(t.contains(from), "the fixture has no {from}");
            t.replace(from, to)
        })
    });
    let dir = prefix_dir("console-browser-setup");
    let b = Berth::new(dir.path(), &manifest);
    assert!(!b.site().exists());
    // Before any `up`: the manifest is named, as for `berth init`.
    let child = spawn_console(
        dir.path(),
        Some(&manifest),
        SETUP_CONSOLE,
        Some(&shots.join("console.log")),
    );
    let _stop = Stop(child, Berth::installed(dir.path()));

    let site = b.site();
    drive(&python, "setup_flow.py", &shots, SETUP_DRIVER_WITHIN, |c| {
        c.args(["--url", &format!("http://{SETUP_CONSOLE}")])
            .arg("--password-file")
            .arg(dir.path().join("secrets/berth-console-password"))
            .arg("--shots")
            .arg(&shots)
            .arg("--prefix")
            .arg(dir.path())
            .arg("--site-config")
            .arg(&site)
            .args(["--external-url", SETUP_EXTERNAL_URL])
            .args(["--services", SERVICES, "--name", SETUP_NAME])
    });
    assert_shots(&shots, SETUP_SHOTS);

    // What the browser wrote is a site config like any other: shared users (none of
    // this prefix's own left on the machine), the URL it was given.
    let text = std::fs::read_to_string(&site).unwrap();
    assert!(text.contains("users = \"shared\""), "{text}");
    assert!(
        text.contains(&format!("external_url = \"{SETUP_EXTERNAL_URL}\"")),
        "{text}"
    );
    b.run(&["config", "check"]).expect(0);
}
