//! Hooks around the services they gate, on a real stack: the ministack fixture plus a
//! `migrate` hook declared before the app, run by `up` and by a `reconfigure` that
//! restarts the app.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_tests::{Berth, fixture, prefix_dir};

const SITE: &str = "external_url = \"http://127.0.0.1:38080/\"\n\
    [postgresql]\nport = 35432\n[redis]\nport = 36379\n[app]\nport = 38001\n";

/// A hook that follows the greeting and must run before the app (re)starts: it
/// appends the start time of its own process (clock ticks since boot, field 22 of
/// `/proc/self/stat`) to `<data>/app/migrate-ticks`.
const MIGRATE: &str = r#"
[hooks.migrate]
component = "app"
description = "Stand-in for a migration the app's new config needs"
command = ["/bin/sh", "-c", "cut -d ' ' -f 22 /proc/self/stat >> \"$MARKS/migrate-ticks\""]
environment = { MARKS = "{{ paths.data }}/app" }
when = "change"
on = ["setting:app.greeting"]
after = ["postgresql"]
before = ["app"]

[[host_files]]
path = "/etc/berth-e2e-hook-order/app.conf"
component = "nginx"
link_to = "{{ paths.etc }}/nginx/nginx.conf"
"#;

/// The directory of the host file (what a package would make), and the file.
const HOST_DIR: &str = "/etc/berth-e2e-hook-order";
const HOST_FILE: &str = "/etc/berth-e2e-hook-order/app.conf";

/// The ministack manifest with [`MIGRATE`] added, in a directory of its own.
fn manifest_with_migrate(dir: &Path) -> PathBuf {
    let from = fixture("ministack");
    let to = dir.join("manifest");
    std::fs::create_dir_all(to.join("templates")).unwrap();
    for entry in std::fs::read_dir(from.join("templates")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join("templates").join(entry.file_name())).unwrap();
    }
    let text = std::fs::read_to_string(from.join("berth.toml")).unwrap();
    std::fs::write(to.join("berth.toml"), text + MIGRATE).unwrap();
    to
}

/// When a process started, in clock ticks since boot (field 22 of its stat line).
fn start_ticks(pid: u64) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    // Field 3 (the state) is the first after the command name.
    after_comm.split(' ').nth(22 - 3).unwrap().parse().unwrap()
}

fn marks(berth: &Berth) -> Vec<u64> {
    std::fs::read_to_string(berth.prefix.join("data/app/migrate-ticks"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

/// Stops the instance however the test ends.
struct Down<'b>(&'b Berth);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        self.0.run(&["down"]);
    }
}

/// A hook declared `before = ["app"]` runs before the app is started by `up`, and,
/// on a `reconfigure` that changes the app's config (and so restarts it), before the
/// app is restarted: the app's new process started after the hook's. As a
/// `when = "change"` hook it runs again whenever its fingerprint differs from the
/// last one it ran with, going back to an earlier one included, and not otherwise.
#[test]
fn a_hook_before_a_service_runs_before_that_service_restarts_on_reconfigure() {
    let dir = prefix_dir("hook-order");
    let manifest = manifest_with_migrate(dir.path());
    let prefix = dir.path().join("inst");
    let berth = Berth::new(&prefix, &manifest);
    let _down = Down(&berth);
    std::fs::create_dir_all(&prefix).unwrap();
    berth.write_site(SITE);
    let _ = std::fs::remove_dir_all(HOST_DIR);
    std::fs::create_dir(HOST_DIR).unwrap();
    // Something berth did not make at the host file's path: refused before anything
    // changes.
    std::fs::write(HOST_FILE, "the administrator's\n").unwrap();
    let r = berth.run(&["up"]).expect(1);
    assert!(r.stderr.contains("did not make"), "{}", r.stderr);
    assert!(!prefix.join("state").exists(), "up changed something");
    std::fs::remove_file(HOST_FILE).unwrap();

    berth.run(&["up"]).expect(0);
    assert_eq!(
        std::fs::read_link(HOST_FILE).unwrap(),
        prefix.join("etc/nginx/nginx.conf")
    );
    let first = berth.pids();
    let ran = marks(&berth);
    assert_eq!(ran.len(), 1, "{ran:?}");
    assert!(
        start_ticks(first["app"]) >= ran[0],
        "the app started before the hook"
    );

    berth.write_site(&format!("{SITE}greeting = \"good evening\"\n"));
    let r = berth.run(&["reconfigure"]).expect(0);
    assert!(r.stdout.contains("restarted: app"), "{}", r.stdout);
    berth.wait_all_ready(Duration::from_secs(30));
    let second = berth.pids();
    assert_ne!(second["app"], first["app"], "the app was not restarted");
    let ran = marks(&berth);
    assert_eq!(ran.len(), 2, "{ran:?}");
    assert!(
        start_ticks(second["app"]) >= ran[1],
        "the app restarted (tick {}) before the hook ran (tick {})",
        start_ticks(second["app"]),
        ran[1]
    );
    for svc in ["postgresql", "redis", "nginx"] {
        assert_eq!(second[svc], first[svc], "{svc} was restarted");
    }

    // Back to the first greeting: the fingerprint is one the hook ran with before, but
    // not the last one, so it is due again; the dry run says why.
    berth.write_site(SITE);
    let dry = berth.run(&["reconfigure", "--dry-run"]).expect(0);
    assert!(
        dry.stdout
            .contains("  migrate: setting app.greeting \"good evening\" → \"hello\"\n"),
        "{}",
        dry.stdout
    );
    berth.run(&["reconfigure"]).expect(0);
    assert_eq!(marks(&berth).len(), 3);

    // Nothing changed: nothing is due, and nothing runs.
    let dry = berth.run(&["reconfigure", "--dry-run"]).expect(0);
    assert!(!dry.stdout.contains("migrate"), "{}", dry.stdout);
    let r = berth.run(&["reconfigure"]).expect(0);
    assert_eq!(marks(&berth).len(), 3, "{}", r.stdout);

    // Killed after writing the app's new config, before anything ran: the next run
    // finishes it, and still runs the hook before restarting the app.
    berth_tests::require_fault_points();
    let before = berth.pids();
    berth.write_site(&format!("{SITE}greeting = \"good night\"\n"));
    let killed = berth.run_env(
        &["reconfigure"],
        &[(berth_lifecycle::fault::ENV, "change:written")],
    );
    assert_eq!(killed.code, -1, "{killed:?}");
    assert_eq!(
        berth.pids()["app"],
        before["app"],
        "restarted before the kill"
    );
    let r = berth.run(&["reconfigure"]).expect(0);
    let said = format!("{}{}", r.stdout, r.stderr);
    assert!(said.contains("was interrupted"), "{said}");
    berth.wait_all_ready(Duration::from_secs(30));
    let after = berth.pids();
    assert_ne!(after["app"], before["app"], "the app was not restarted");
    let ran = marks(&berth);
    assert_eq!(ran.len(), 4, "{ran:?}");
    assert!(
        start_ticks(after["app"]) >= ran[3],
        "the app restarted (tick {}) before the hook ran (tick {})",
        start_ticks(after["app"]),
        ran[3]
    );

    purge_removes_the_host_file_and_says_what_it_keeps(&berth, &prefix);
}

/// `down --purge` removes the host file berth made, and only that, and says what it keeps.
fn purge_removes_the_host_file_and_says_what_it_keeps(berth: &Berth, prefix: &Path) {
    let r = berth.run(&["down", "--purge"]).expect(0);
    assert!(
        r.stdout.contains(&format!("Removed {HOST_FILE}")),
        "{}",
        r.stdout
    );
    assert!(std::fs::symlink_metadata(HOST_FILE).is_err());
    // And says what it keeps: the prefix, the users, the packages.
    for kept in [
        format!("  {}: site config, secrets, data", prefix.display()),
        "  system users ministack, ministack-pg, ministack-redis, ministack-web:".to_owned(),
        "  packages nginx-light postgresql-15 redis-server".to_owned(),
    ] {
        assert!(r.stdout.contains(&kept), "{kept}: {}", r.stdout);
    }
    assert!(Path::new(HOST_DIR).is_dir());
    assert!(prefix.join("etc/nginx/nginx.conf").exists());
    std::fs::remove_dir(HOST_DIR).unwrap();
}
