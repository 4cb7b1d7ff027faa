//! The homes of the users berth creates: private, the user's, never reached through a
//! symlink.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use berth_host::HostError;
use berth_host::beneath::SafeDir;
use berth_host::users::{ensure_home, is_root};
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
