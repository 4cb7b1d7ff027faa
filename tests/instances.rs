//! Two instances of one app on one host, each with OS users of its own: neither runs as
//! the other's users, and neither's users can read the other's secrets, data or home.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use berth_tests::{Berth, fixture, is_root, prefix_dir};

/// The users of the ministack fixture, as the manifest names them.
const USERS: [&str; 4] = [
    "ministack",
    "ministack-pg",
    "ministack-redis",
    "ministack-web",
];

fn site(naming: &str, base: u16) -> String {
    format!(
        "{naming}external_url = \"http://127.0.0.1:{}/\"\n\
         [postgresql]\nport = {}\n[redis]\nport = {}\n[app]\nport = {}\n",
        base + 80,
        base + 32,
        base + 79,
        base + 1
    )
}

/// Removes the users of instances `ua`, `ub`, `ud` (left by an earlier run, or made by this one).
fn remove_users() {
    for instance in ["ua", "ub", "ud"] {
        for user in USERS {
            let _ = Command::new("userdel")
                .arg(format!("{instance}-{user}"))
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// Whether `user` can read `path` (`cat` for a file, `ls` for a directory).
fn can_read(user: &str, path: &Path) -> bool {
    let program = if path.is_dir() { "/bin/ls" } else { "/bin/cat" };
    Command::new("/usr/sbin/runuser")
        .args(["-u", user, "--", program])
        .arg(path)
        .env_clear()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// The real uid a process runs as.
fn uid_of_process(pid: u64) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn uid_of(user: &str) -> u32 {
    nix::unistd::User::from_name(user)
        .unwrap()
        .unwrap_or_else(|| panic!("no user `{user}`"))
        .uid
        .as_raw()
}

/// Stops the instances and removes their users however the test ends.
struct Cleanup<'a>(Vec<&'a Berth>);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for b in &self.0 {
            b.run(&["down"]);
        }
        remove_users();
    }
}

#[test]
#[allow(clippy::print_stderr)] // a skipped test says why
fn two_instances_run_as_users_of_their_own() {
    if !is_root() {
        eprintln!("skipped: service users need root");
        return;
    }
    remove_users();
    let manifest = fixture("ministack");
    let dir_first = prefix_dir("inst-a");
    let dir_second = prefix_dir("inst-b");
    let dir_third = prefix_dir("inst-c");
    // A names itself; B is named after its prefix's last directory, per instance by
    // default (no `users` key).
    let first = Berth::new(&dir_first.path().join("blue"), &manifest);
    let second = Berth::new(&dir_second.path().join("ub"), &manifest);
    let third = Berth::new(&dir_third.path().join("green"), &manifest);
    let _cleanup = Cleanup(vec![&first, &second, &third]);
    for x in [&first, &second, &third] {
        std::fs::create_dir(&x.prefix).unwrap();
    }
    first.write_site(&site(
        "users = \"per-instance\"\ninstance = \"ua\"\n",
        37100,
    ));
    std::fs::write(second.site(), site("", 37200)).unwrap();

    first.run(&["up"]).expect(0);
    second.run(&["up"]).expect(0);
    each_runs_as_its_own_users(&first, &second);
    names_are_kept_and_never_taken_over(&first, &third);
    a_restore_into_a_new_prefix_is_a_new_instance(&second, dir_second.path(), &manifest);
}

/// Each instance runs as its own users and records them; neither instance's users read
/// the other's secrets (the rendered app config holds the database password), database
/// files or home; their own do.
fn each_runs_as_its_own_users(first: &Berth, second: &Berth) {
    for (x, instance) in [(first, "ua"), (second, "ub")] {
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(x.prefix.join("state/users.json")).unwrap())
                .unwrap();
        assert_eq!(record["instance"], instance, "{record}");
        for user in USERS {
            assert_eq!(
                record["names"][user],
                format!("{instance}-{user}"),
                "{record}"
            );
        }
        let pids = x.pids();
        for (service, user) in [
            ("app", "ministack"),
            ("postgresql", "ministack-pg"),
            ("nginx", "ministack-web"),
        ] {
            assert_eq!(
                uid_of_process(pids[service]),
                uid_of(&format!("{instance}-{user}")),
                "{instance}: {service}"
            );
        }
    }

    for (own, theirs) in [(first, "ua"), (second, "ub")] {
        let mine = |u: &str| format!("{theirs}-{u}");
        let app_config = own.prefix.join("etc/app/app.json");
        let pgdata = own.prefix.join("data/postgresql");
        let home = own.prefix.join(format!("home/{}", mine("ministack")));
        assert!(can_read(&mine("ministack"), &app_config));
        assert!(can_read(&mine("ministack-pg"), &pgdata));
        assert!(can_read(&mine("ministack"), &home));
        let stranger = if theirs == "ua" { "ub" } else { "ua" };
        for user in USERS {
            let user = format!("{stranger}-{user}");
            assert!(
                !can_read(&user, &app_config),
                "{user} reads {}",
                app_config.display()
            );
            assert!(
                !can_read(&user, &pgdata),
                "{user} reads {}",
                pgdata.display()
            );
            assert!(!can_read(&user, &home), "{user} reads {}", home.display());
        }
    }
}

/// An instance's users are never renamed: another name in its site config is refused.
/// A third instance naming itself like the first does not take over its users.
fn names_are_kept_and_never_taken_over(first: &Berth, third: &Berth) {
    first.write_site(&site(
        "users = \"per-instance\"\ninstance = \"uc\"\n",
        37100,
    ));
    let out = first.run(&["config", "check"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("never renamed"), "{}", out.stderr);
    first.write_site(&site(
        "users = \"per-instance\"\ninstance = \"ua\"\n",
        37100,
    ));
    first.run(&["config", "check"]).expect(0);

    third.write_site(&site(
        "users = \"per-instance\"\ninstance = \"ua\"\n",
        37300,
    ));
    let out = third.run(&["up"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("exists already"), "{}", out.stderr);
    assert!(out.stderr.contains("instance = "), "{}", out.stderr);
    assert!(!third.prefix.join("run/supervisor.sock").exists());
    assert!(!third.prefix.join("state/users.json").exists());
    assert_eq!(
        nix::unistd::User::from_name("ua-ministack")
            .unwrap()
            .unwrap()
            .dir,
        first.prefix.join("home/ua-ministack")
    );
}

/// The second instance restored into a new prefix is a new instance, with users of its
/// own (named after its prefix: the site config says nothing): the restored data
/// belongs to them, and the app runs as them.
fn a_restore_into_a_new_prefix_is_a_new_instance(second: &Berth, dir: &Path, manifest: &Path) {
    let key = dir.join("backup.key");
    second
        .run(&["backup", "key", "--export", key.to_str().unwrap()])
        .expect(0);
    let out = second.run(&["backup", "create", "--json"]).expect(0);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let archive = second
        .prefix
        .join("backups")
        .join(report["backup"]["archive"].as_str().unwrap());
    second.run(&["down"]).expect(0); // D takes B's ports
    let dir_restored = prefix_dir("inst-d");
    let restored = Berth::new(&dir_restored.path().join("ud"), manifest);
    let _cleanup = Cleanup(vec![&restored]);
    restored
        .run(&[
            "restore",
            archive.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ])
        .expect(0);
    let app_data = restored.prefix.join("data/app");
    assert_eq!(
        std::fs::metadata(&app_data).unwrap().uid(),
        uid_of("ud-ministack")
    );
    assert_eq!(
        uid_of_process(restored.pids()["app"]),
        uid_of("ud-ministack")
    );
    assert!(!can_read(
        "ub-ministack",
        &restored.prefix.join("etc/app/app.json")
    ));
}
