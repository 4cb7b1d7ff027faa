//! The homes of the users berth creates: private, the user's, never reached through a
//! symlink.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use berth_host::HostError;
use berth_host::beneath::SafeDir;
use berth_host::users::{UsersReport, ensure_home, ensure_users, is_root, lookup, passwd_home};
use berth_layout::Paths;

/// Someone else when root (nobody), else the test's own user (the only owner it may give).
fn owner() -> (u32, u32) {
    if is_root() {
        (65534, 65534)
    } else {
        (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    }
}

fn mode_and_owner(path: &Path) -> (u32, (u32, u32)) {
    let meta = fs::symlink_metadata(path).unwrap();
    (meta.permissions().mode() & 0o7777, (meta.uid(), meta.gid()))
}

fn home_rel(paths: &Paths, user: &str) -> std::path::PathBuf {
    paths.beneath(&paths.user_home(user)).to_path_buf()
}

#[test]
fn a_home_is_made_private_and_the_users() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::unversioned(dir.path());
    let prefix = SafeDir::open_trusted(dir.path()).unwrap();
    ensure_home(&prefix, &home_rel(&paths, "web"), owner()).unwrap();

    let me = (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    assert_eq!(mode_and_owner(&paths.homes()), (0o755, me));
    assert_eq!(mode_and_owner(&paths.user_home("web")), (0o700, owner()));
    // Again: nothing to do, nothing fails.
    ensure_home(&prefix, &home_rel(&paths, "web"), owner()).unwrap();
    assert_eq!(mode_and_owner(&paths.user_home("web")), (0o700, owner()));
}

#[test]
fn an_existing_home_gets_its_owner_and_mode_back_and_keeps_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::unversioned(dir.path());
    let home = paths.user_home("web");
    fs::create_dir_all(&home).unwrap();
    fs::write(home.join(".profile"), "kept").unwrap();
    fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).unwrap();

    let prefix = SafeDir::open_trusted(dir.path()).unwrap();
    ensure_home(&prefix, &home_rel(&paths, "web"), owner()).unwrap();
    assert_eq!(mode_and_owner(&home), (0o700, owner()));
    assert_eq!(fs::read_to_string(home.join(".profile")).unwrap(), "kept");
}

#[test]
fn a_symlink_for_a_home_is_refused_and_its_target_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::unversioned(dir.path());
    let target = dir.path().join("elsewhere");
    fs::create_dir(&target).unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).unwrap();
    let before = mode_and_owner(&target);
    let prefix = SafeDir::open_trusted(dir.path()).unwrap();

    // The home itself is a symlink.
    fs::create_dir(paths.homes()).unwrap();
    symlink(&target, paths.user_home("web")).unwrap();
    let err = ensure_home(&prefix, &home_rel(&paths, "web"), owner()).unwrap_err();
    assert!(matches!(err, HostError::SymlinkRefused { .. }), "{err:?}");
    assert_eq!(mode_and_owner(&target), before);

    // `home/` is a symlink: nothing is made in what it points to.
    fs::remove_file(paths.user_home("web")).unwrap();
    fs::remove_dir(paths.homes()).unwrap();
    symlink(&target, paths.homes()).unwrap();
    let err = ensure_home(&prefix, &home_rel(&paths, "web"), owner()).unwrap_err();
    assert!(matches!(err, HostError::SymlinkRefused { .. }), "{err:?}");
    assert!(!target.join("web").exists());
    assert_eq!(mode_and_owner(&target), before);
}

/// A user made for this test (removed on drop), with `home` in its passwd entry.
struct TestUser(String);

impl TestUser {
    fn new(tag: &str, home: &Path) -> Self {
        let name = format!("berth-{tag}{}", std::process::id());
        let _ = std::process::Command::new("userdel")
            .arg(&name)
            .stderr(std::process::Stdio::null())
            .status();
        let ok = std::process::Command::new("useradd")
            .args(["--system", "--user-group", "--no-create-home", "--home-dir"])
            .arg(home)
            .arg(&name)
            .status()
            .unwrap()
            .success();
        assert!(ok, "useradd {name}");
        Self(name)
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("userdel").arg(&self.0).status();
    }
}

fn spec(paths: &Paths, name: &str) -> berth_render::UserSpec {
    berth_render::UserSpec {
        name: name.to_owned(),
        home: paths.user_home(name),
    }
}

/// A user an older berth made for this instance (its home `<prefix>/data`) gets its
/// home under `home/` in its passwd entry; one with any other home keeps it; both get
/// the directory.
#[test]
fn a_user_berth_gave_the_data_directory_as_home_gets_its_own() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::unversioned(dir.path());
    let old = TestUser::new("old", &paths.data);
    let other = TestUser::new("oth", Path::new("/nonexistent/elsewhere"));
    let users = [spec(&paths, &old.0), spec(&paths, &other.0)];

    // Without `rehome` (converge), passwd entries are left alone.
    let report = ensure_users(&paths, &users, false).unwrap();
    assert_eq!(report, UsersReport::default());
    assert_eq!(passwd_home(&old.0).unwrap(), paths.data);

    let report = ensure_users(&paths, &users, true).unwrap();
    assert_eq!(report.rehomed, vec![old.0.clone()]);
    assert_eq!(passwd_home(&old.0).unwrap(), paths.user_home(&old.0));
    assert_eq!(
        passwd_home(&other.0).unwrap(),
        Path::new("/nonexistent/elsewhere")
    );
    for user in [&old.0, &other.0] {
        let (mode, owner) = mode_and_owner(&paths.user_home(user));
        assert_eq!((mode, Some(owner)), (0o700, lookup(user)));
    }
}

/// `usermod` refuses a user with processes running: the entry is changed later, and
/// that is said, not an error.
#[test]
fn a_busy_user_keeps_its_old_home_until_its_processes_are_gone() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::unversioned(dir.path());
    let old = TestUser::new("busy", &paths.data);
    let mut sleeper = std::process::Command::new("/usr/sbin/runuser")
        .args(["-u", &old.0, "--", "/bin/sleep", "60"])
        .spawn()
        .unwrap();
    // runuser has switched once the sleep runs as the user.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::process::Command::new("pgrep")
        .args(["-u", &old.0])
        .output()
        .unwrap()
        .status
        .success()
    {
        assert!(std::time::Instant::now() < deadline, "the sleep never ran");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let report = ensure_users(&paths, &[spec(&paths, &old.0)], true);
    let _ = std::process::Command::new("pkill")
        .args(["-KILL", "-u", &old.0])
        .status();
    let _ = sleeper.wait();
    let report = report.unwrap();
    assert_eq!(report.rehome_later, vec![old.0.clone()]);
    assert_eq!(passwd_home(&old.0).unwrap(), paths.data);
    assert!(paths.user_home(&old.0).is_dir());
}
