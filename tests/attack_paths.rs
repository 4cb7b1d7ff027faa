//! A service user attacks root through the paths it controls, as in issue 7: it swaps
//! its data directories for symlinks while berth, running as root, reconfigures,
//! backs up and restores. berth must refuse, report the swap, and never touch what
//! the symlinks point to.
//!
//! The stack is the ministack fixture with two nested data directories, so that the
//! app's user owns the directory holding them (`data/app`) and can replace them:
//! `app/cache` and `app/media/photos`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_lifecycle::fault;
use berth_tests::{Berth, fixture, is_root, prefix_dir};

const WEB: u16 = 51080;
const APP_USER: &str = "ministack";

fn site(app_port: u16) -> String {
    format!(
        "external_url = \"http://127.0.0.1:{WEB}/\"\n[postgresql]\nport = 51432\n\
         [redis]\nport = 51379\n[app]\nport = {app_port}\n"
    )
}

/// The ministack manifest, with the app's nested data directories.
fn nested_manifest(dir: &Path) -> PathBuf {
    let src = fixture("ministack");
    let dest = dir.join("manifest");
    std::fs::create_dir_all(dest.join("templates")).unwrap();
    for e in std::fs::read_dir(src.join("templates")).unwrap().flatten() {
        std::fs::copy(e.path(), dest.join("templates").join(e.file_name())).unwrap();
    }
    let text = std::fs::read_to_string(src.join("berth.toml")).unwrap();
    let edits = [
        (
            "user = \"ministack\"\ndata_dirs = [\"app\"]",
            "user = \"ministack\"\ndata_dirs = [\"app\", \"app/cache\", \"app/media/photos\"]",
        ),
        (
            "[backup]\ndata_dirs = [\"app\"]",
            "[backup]\ndata_dirs = [\"app/cache\", \"app/media/photos\"]",
        ),
    ];
    let mut text = text;
    for (from, to) in edits {
        assert!(text.contains(from), "the fixture changed: no `{from}`");
        text = text.replacen(from, to, 1);
    }
    std::fs::write(dest.join("berth.toml"), text).unwrap();
    dest
}

/// A shell command run as the app's user, as the attacker.
fn as_app_user(script: &str) -> Command {
    let mut c = Command::new("/usr/sbin/runuser");
    c.args(["-u", APP_USER, "--", "/bin/sh", "-ec", script])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null());
    c
}

#[track_caller]
fn attack(script: &str) {
    let out = as_app_user(script).output().unwrap();
    assert!(
        out.status.success(),
        "the attacker's `{script}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mode_of(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn owner_of(p: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.uid(), m.gid())
}

fn archives(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Takes the stack down at the end, whatever happened.
struct Down<'a>(&'a Berth);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["down"]);
    }
}

#[test]
#[allow(clippy::too_many_lines)] // one instance, one attacker, four attempts
#[allow(clippy::print_stderr)] // a skipped test says why
fn a_service_user_cannot_turn_root_against_paths_it_controls() {
    if !is_root() {
        eprintln!("skipped: the attacks need service users, so root");
        return;
    }
    // Root's own files outside the prefix, which the attacker points its links at.
    let scratch = prefix_dir("attack-scratch");
    let scratch = scratch.path();
    let victim_file = scratch.join("victim-file");
    std::fs::write(&victim_file, "root's\n").unwrap();
    std::fs::set_permissions(&victim_file, std::fs::Permissions::from_mode(0o755)).unwrap();
    let root_only = scratch.join("root-only");
    std::fs::create_dir(&root_only).unwrap();
    std::fs::set_permissions(&root_only, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(
        root_only.join("identity"),
        "AGE-SECRET-KEY-ROOT-ONLY-MARKER\n",
    )
    .unwrap();
    std::fs::create_dir(root_only.join("photos")).unwrap();
    std::fs::write(root_only.join("photos/secret"), "root's\n").unwrap();

    let dir = prefix_dir("attack");
    let b = Berth::new(dir.path(), &nested_manifest(scratch));
    b.write_site(&site(51001));
    let _down = Down(&b);
    b.run(&["up"]).expect(0);
    let data = b.prefix.join("data");
    let cache = data.join("app/cache");
    let photos = data.join("app/media/photos");
    let app_ids = owner_of(&data.join("app"));
    assert_eq!(owner_of(&cache), app_ids);

    // (a) Finding 2: the user gives its directory an odd mode, so reconfigure plans a
    // mode change; once berth has made it, the user swaps the directory for a symlink
    // to a root file; the app's port change fails the health gate and berth rolls back.
    // The rollback used to chmod the link's target as root.
    attack(&format!("chmod 0700 {}", cache.display()));
    let swapper = as_app_user(&format!(
        "c={c}; until [ \"$(stat -c %a $c)\" = 750 ]; do :; done; mv $c $c.real; ln -s {v} $c",
        c = cache.display(),
        v = victim_file.display()
    ))
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // The app's user cannot bind port 81: the restart fails after the files changed.
    b.write_site(&site(81));
    let r = b.run(&["reconfigure"]);
    let swap = swapper.wait_with_output().unwrap();
    assert!(swap.status.success(), "{swap:?}");
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stderr.contains("was replaced after berth changed it"),
        "{}",
        r.stderr
    );
    assert_eq!(mode_of(&victim_file), 0o755, "root's file was chmodded");
    assert_eq!(owner_of(&victim_file), (0, 0));
    assert_eq!(
        mode_of(&cache.with_extension("real")),
        0o700,
        "the old mode is back on the directory berth changed"
    );
    // The administrator puts the directory back; berth applies cleanly again.
    std::fs::remove_file(&cache).unwrap();
    std::fs::rename(cache.with_extension("real"), &cache).unwrap();
    b.write_site(&site(51001));
    b.run(&["reconfigure"]).expect(0);
    assert_eq!(mode_of(&cache), 0o750);
    b.wait_all_ready(Duration::from_mins(1));

    // (b) Finding 4: a data directory replaced with a symlink to a root-only directory
    // before a backup. It used to go into the archive (and back to the user on restore).
    b.run(&["backup", "key"]).expect(0);
    let backups = b.prefix.join("backups");
    let before = archives(&backups);
    attack(&format!(
        "mv {c} {c}.real; ln -s {r} {c}",
        c = cache.display(),
        r = root_only.display()
    ));
    let r = b.run(&["backup", "create"]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(r.stderr.contains("Refusing to back up"), "{}", r.stderr);
    assert!(r.stderr.contains("is a symlink"), "{}", r.stderr);
    assert_eq!(archives(&backups), before, "an archive was written");
    std::fs::remove_file(&cache).unwrap();
    std::fs::rename(cache.with_extension("real"), &cache).unwrap();

    // A real backup, the archive the restores below use.
    attack(&format!("echo photo > {}/pic", photos.display()));
    b.run(&["backup", "create"]).expect(0);
    let archive = archives(&backups)
        .into_iter()
        .find(|n| !before.contains(n))
        .unwrap();
    let archive = backups.join(archive);
    let key = scratch.join("backup.key");
    b.run(&["backup", "key", "--export", key.to_str().unwrap()])
        .expect(0);

    // (c) A restore interrupted after its files went in; the user swaps a directory
    // on the way to a data directory (`app/media`, in its own `app`) for a link to a
    // root-only tree. Resuming used to give that tree to the user as root.
    let r = b.run_env(
        &["restore", archive.to_str().unwrap(), "--no-safety-backup"],
        &[(fault::ENV, "restore:files")],
    );
    assert_eq!(
        r.code, -1,
        "not killed after `files`: {}\n{}",
        r.stdout, r.stderr
    );
    let media = data.join("app/media");
    attack(&format!(
        "mv {m} {m}.real; ln -s {r} {m}",
        m = media.display(),
        r = root_only.display()
    ));
    let r = b.run(&["restore", "--resume"]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(r.stderr.contains("symbolic link"), "{}", r.stderr);
    for p in [
        root_only.clone(),
        root_only.join("photos"),
        root_only.join("photos/secret"),
    ] {
        assert_eq!(owner_of(&p), (0, 0), "{} was given away", p.display());
    }
    assert_eq!(mode_of(&root_only.join("photos")), 0o755);
    // The administrator puts the directory back and aborts: the instance is as before.
    std::fs::remove_file(&media).unwrap();
    std::fs::rename(media.with_extension("real"), &media).unwrap();
    b.run(&["restore", "--abort"]).expect(0);
    b.wait_all_ready(Duration::from_mins(1));
    assert!(!b.prefix.join("tmp/restore.json").exists());

    // (d) `restore --abort` into a prefix that has a `data/` but no instance removes
    // what the restore put there; it used to say "undone" and leave the data behind.
    let fresh = scratch.join("fresh");
    std::fs::create_dir_all(fresh.join("data")).unwrap();
    let f = Berth::new(&fresh, &b.manifest);
    let r = f.run_env(
        &[
            "restore",
            archive.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
        &[(fault::ENV, "restore:files")],
    );
    assert_eq!(
        r.code, -1,
        "not killed after `files`: {}\n{}",
        r.stdout, r.stderr
    );
    assert!(fresh.join("data/app/media/photos/pic").exists());
    // Finding 3: what the archive brought waits where only root can go.
    let staging = std::fs::read_dir(fresh.join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("restore-")
        })
        .unwrap();
    assert_eq!(mode_of(&staging.join("x")), 0o700);
    assert_eq!(owner_of(&staging.join("x")), (0, 0));
    f.run(&["restore", "--abort"]).expect(0);
    assert!(fresh.join("data").is_dir(), "what was there before stays");
    assert_eq!(
        archives(&fresh.join("data")),
        Vec::<String>::new(),
        "the restored data is gone"
    );
    assert!(!fresh.join("tmp").exists());
}

#[test]
fn the_backup_key_stays_private_and_is_never_exported_through_a_link() {
    // From the findings: `backup key` before `up` left `state/` at 0755, and
    // `--export` checked for the file, then renamed over whatever was there by then.
    let scratch = prefix_dir("attack-key");
    let b = Berth::new(&scratch.path().join("prefix"), &fixture("ministack"));
    let planted = scratch.path().join("planted");
    std::os::unix::fs::symlink("/nonexistent/elsewhere", &planted).unwrap();
    let r = b.run(&["backup", "key", "--export", planted.to_str().unwrap()]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);
    assert!(std::fs::symlink_metadata(&planted).unwrap().is_symlink());
    assert_eq!(mode_of(&b.prefix.join("state")), 0o700);
    assert_eq!(mode_of(&b.prefix.join("state/backup-key.txt")), 0o600);
}
