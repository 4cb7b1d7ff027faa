//! Each test plants what a service user could plant (a symlink at the last component,
//! at a middle one, `..`, a swapped directory) and checks that root acts only beneath
//! the directory it opened. Every test runs twice: with `openat2`, and walking one
//! component at a time as on kernels without it.

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

use super::*;

fn both(test: impl Fn()) {
    test();
    FORCE_WALK.with(|f| f.set(true));
    test();
    FORCE_WALK.with(|f| f.set(false));
}

fn mode_of(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// A base directory holding `data/app` and, outside it, a victim file and directory.
struct Setup {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    victim_file: PathBuf,
    victim_dir: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("prefix");
    std::fs::create_dir_all(base.join("data/app")).unwrap();
    let victim_file = tmp.path().join("victim");
    std::fs::write(&victim_file, "root's\n").unwrap();
    std::fs::set_permissions(&victim_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let victim_dir = tmp.path().join("victim-dir");
    std::fs::create_dir(&victim_dir).unwrap();
    std::fs::write(victim_dir.join("secret"), "x").unwrap();
    Setup {
        _tmp: tmp,
        base,
        victim_file,
        victim_dir,
    }
}

#[test]
fn a_symlink_at_the_last_component_is_refused_for_every_operation() {
    // Stops: a service user swapping its file or directory for a link to root's.
    both(|| {
        let s = setup();
        symlink(&s.victim_file, s.base.join("data/app/conf")).unwrap();
        symlink(&s.victim_dir, s.base.join("data/app/media")).unwrap();
        let dir = SafeDir::open_trusted(&s.base).unwrap();
        let conf = Path::new("data/app/conf");
        let media = Path::new("data/app/media");
        for err in [
            dir.set_mode(conf, 0o4777).unwrap_err(),
            dir.set_owner(conf, (1, 1)).unwrap_err(),
            dir.open_file(conf).unwrap_err(),
            dir.open_dir(media).unwrap_err(),
            dir.chown_tree(media, (1, 1)).unwrap_err(),
            dir.clear_setid_tree(media).unwrap_err(),
        ] {
            assert!(matches!(err, HostError::SymlinkRefused { .. }), "{err}");
            assert!(err.to_string().contains("someone replaced it"), "{err}");
        }
        assert_eq!(mode_of(&s.victim_file), 0o644);
        assert_eq!(
            std::fs::metadata(s.victim_dir.join("secret"))
                .unwrap()
                .uid(),
            0
        );
        // Removal removes the link, never what it points to.
        assert!(dir.remove_tree(media).unwrap());
        assert!(s.victim_dir.join("secret").exists());
        assert!(!s.base.join("data/app/media").exists());
    });
}

#[test]
fn a_symlink_at_a_middle_component_is_refused() {
    both(|| {
        let s = setup();
        std::fs::remove_dir(s.base.join("data/app")).unwrap();
        symlink(&s.victim_dir, s.base.join("data/app")).unwrap();
        let dir = SafeDir::open_trusted(&s.base).unwrap();
        let through = Path::new("data/app/secret");
        for err in [
            dir.set_mode(through, 0o4777).unwrap_err(),
            dir.chown_tree(through, (1, 1)).unwrap_err(),
            dir.remove_tree(through).unwrap_err(),
            dir.write_atomic(through, b"pwned", 0o644, None)
                .unwrap_err(),
            dir.create_dir_all(Path::new("data/app/new"), 0o755, None)
                .unwrap_err(),
        ] {
            assert!(matches!(err, HostError::SymlinkRefused { .. }), "{err}");
        }
        assert_eq!(
            std::fs::read_to_string(s.victim_dir.join("secret")).unwrap(),
            "x"
        );
        assert!(!s.victim_dir.join("new").exists());
    });
}

#[test]
fn dot_dot_and_absolute_paths_are_refused_before_anything_is_opened() {
    // Stops: `app/../../victim` in an archive's metadata reaching outside `data`.
    let s = setup();
    let dir = SafeDir::open_trusted(&s.base.join("data")).unwrap();
    for rel in ["app/../../../victim", "..", "/etc/passwd"] {
        let err = dir.chown_tree(Path::new(rel), (1, 1)).unwrap_err();
        assert!(matches!(err, HostError::NotBeneath { .. }), "{rel}: {err}");
        let err = dir.remove_tree(Path::new(rel)).unwrap_err();
        assert!(matches!(err, HostError::NotBeneath { .. }), "{rel}: {err}");
    }
    assert!(s.victim_file.exists());
}

#[test]
fn a_node_keeps_acting_on_what_was_opened_after_a_swap() {
    // Stops: finding 2, a directory swapped for a symlink after berth opened it.
    both(|| {
        let s = setup();
        let dir = SafeDir::open_trusted(&s.base).unwrap();
        let node = dir.open_node(Path::new("data/app")).unwrap();
        std::fs::rename(s.base.join("data/app"), s.base.join("data/moved")).unwrap();
        symlink(&s.victim_file, s.base.join("data/app")).unwrap();
        node.set_mode(0o700).unwrap();
        assert_eq!(mode_of(&s.victim_file), 0o644);
        assert_eq!(mode_of(&s.base.join("data/moved")), 0o700);
        // And looking again shows the swap.
        let err = dir.open_node(Path::new("data/app")).unwrap_err();
        assert!(matches!(err, HostError::SymlinkRefused { .. }), "{err}");
    });
}

#[test]
fn chown_tree_gives_everything_and_clears_setid_bits_without_following_links() {
    both(|| {
        let s = setup();
        let app = s.base.join("data/app");
        std::fs::create_dir(app.join("sub")).unwrap();
        std::fs::write(app.join("sub/tool"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            app.join("sub/tool"),
            std::fs::Permissions::from_mode(0o6755),
        )
        .unwrap();
        std::fs::set_permissions(app.join("sub"), std::fs::Permissions::from_mode(0o2755)).unwrap();
        symlink(&s.victim_file, app.join("sub/link")).unwrap();
        let dir = SafeDir::open_trusted(&s.base).unwrap();
        dir.chown_tree(Path::new("data/app"), (4242, 4343)).unwrap();
        for p in [
            app.clone(),
            app.join("sub"),
            app.join("sub/tool"),
            app.join("sub/link"),
        ] {
            let m = std::fs::symlink_metadata(&p).unwrap();
            assert_eq!((m.uid(), m.gid()), (4242, 4343), "{}", p.display());
        }
        assert_eq!(mode_of(&app.join("sub/tool")), 0o755);
        assert_eq!(mode_of(&app.join("sub")), 0o755);
        let victim = std::fs::metadata(&s.victim_file).unwrap();
        assert_eq!((victim.uid(), victim.gid()), (0, 0));
    });
}

#[test]
fn clear_setid_tree_keeps_owners() {
    let s = setup();
    let tool = s.base.join("data/app/tool");
    std::fs::write(&tool, "x").unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o4711)).unwrap();
    SafeDir::open_trusted(&s.base)
        .unwrap()
        .clear_setid_tree(Path::new("data"))
        .unwrap();
    assert_eq!(mode_of(&tool), 0o711);
    assert_eq!(std::fs::metadata(&tool).unwrap().uid(), 0);
}

#[test]
fn chown_tree_refuses_a_hard_link_and_a_device() {
    // Stops: a hard link to a root file in a tree handed to a service user.
    let s = setup();
    std::fs::hard_link(&s.victim_file, s.base.join("data/app/linked")).unwrap();
    let dir = SafeDir::open_trusted(&s.base).unwrap();
    let err = dir
        .chown_tree(Path::new("data/app"), (4242, 4242))
        .unwrap_err();
    assert!(matches!(err, HostError::HardLinked { .. }), "{err}");
    assert_eq!(std::fs::metadata(&s.victim_file).unwrap().uid(), 0);
    std::fs::remove_file(s.base.join("data/app/linked")).unwrap();
    nix::sys::stat::mknod(
        &s.base.join("data/app/null"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o600),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    let err = dir
        .chown_tree(Path::new("data/app"), (4242, 4242))
        .unwrap_err();
    assert!(matches!(err, HostError::DeviceRefused { .. }), "{err}");
}

#[test]
fn remove_tree_removes_links_not_targets_and_reports_what_was_there() {
    both(|| {
        let s = setup();
        let app = s.base.join("data/app");
        std::fs::create_dir_all(app.join("a/b/c")).unwrap();
        std::fs::write(app.join("a/b/c/f"), "x").unwrap();
        symlink(&s.victim_dir, app.join("a/b/dir-link")).unwrap();
        symlink(&s.victim_file, app.join("a/file-link")).unwrap();
        let dir = SafeDir::open_trusted(&s.base).unwrap();
        assert!(dir.remove_tree(Path::new("data/app")).unwrap());
        assert!(!app.exists());
        assert!(s.victim_dir.join("secret").exists());
        assert!(s.victim_file.exists());
        assert!(!dir.remove_tree(Path::new("data/app")).unwrap());
        assert!(!remove_tree_at(&s.base.join("missing/x")).unwrap());
    });
}

#[test]
fn remove_tree_refuses_a_mount_point() {
    let s = setup();
    let mnt = s.base.join("data/app/mnt");
    std::fs::create_dir(&mnt).unwrap();
    // A tmpfs on a test directory, unmounted right after.
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    assert!(mounted, "these tests run as root, who can mount a tmpfs");
    std::fs::write(mnt.join("keep"), "x").unwrap();
    let dir = SafeDir::open_trusted(&s.base).unwrap();
    let err = dir.remove_tree(Path::new("data/app")).unwrap_err();
    let _ = std::process::Command::new("umount").arg(&mnt).status();
    assert!(matches!(err, HostError::MountPoint { .. }), "{err}");
}

#[test]
fn write_atomic_replaces_a_symlink_instead_of_writing_through_it() {
    both(|| {
        let s = setup();
        let conf = s.base.join("data/app/app.conf");
        symlink(&s.victim_file, &conf).unwrap();
        let dir = SafeDir::open_trusted(&s.base).unwrap();
        dir.write_atomic(
            Path::new("data/app/app.conf"),
            b"new\n",
            0o640,
            Some((7, 8)),
        )
        .unwrap();
        assert_eq!(std::fs::read_to_string(&s.victim_file).unwrap(), "root's\n");
        let m = std::fs::symlink_metadata(&conf).unwrap();
        assert!(m.is_file());
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o640, 7, 8));
        assert_eq!(
            std::fs::read_dir(s.base.join("data/app")).unwrap().count(),
            1
        );
        // write_new never replaces, not even a dangling link.
        symlink("/nonexistent", s.base.join("data/app/key")).unwrap();
        let err = dir
            .write_new(Path::new("data/app/key"), b"k", 0o600, None)
            .unwrap_err();
        assert!(matches!(err, HostError::AlreadyExists { .. }), "{err}");
        assert_eq!(
            std::fs::read_dir(s.base.join("data/app")).unwrap().count(),
            2
        );
    });
}

#[test]
fn create_and_rename_beneath() {
    both(|| {
        let s = setup();
        let dir = SafeDir::open_trusted(&s.base).unwrap();
        let made = dir
            .create_dir_all(Path::new("tmp/stage/x"), 0o700, Some((5, 6)))
            .unwrap();
        assert_eq!(made.stat_self().unwrap().perm(), 0o700);
        let m = std::fs::metadata(s.base.join("tmp/stage")).unwrap();
        assert_eq!((m.mode() & 0o7777, m.uid()), (0o700, 5));
        dir.rename(Path::new("data/app"), &dir, Path::new("tmp/stage/x/app"))
            .unwrap();
        assert!(s.base.join("tmp/stage/x/app").is_dir());
        // Never over something.
        std::fs::create_dir(s.base.join("data/app")).unwrap();
        let err = dir
            .rename(Path::new("data/app"), &dir, Path::new("tmp/stage/x/app"))
            .unwrap_err();
        assert!(matches!(err, HostError::Rename { .. }), "{err}");
        // Into a symlinked directory: refused.
        symlink(&s.victim_dir, s.base.join("tmp/evil")).unwrap();
        let err = dir
            .rename(Path::new("data/app"), &dir, Path::new("tmp/evil/app"))
            .unwrap_err();
        assert!(matches!(err, HostError::SymlinkRefused { .. }), "{err}");
        assert!(!s.victim_dir.join("app").exists());
    });
}

#[test]
fn stat_does_not_follow_and_locate_splits_at_the_trusted_base() {
    let s = setup();
    symlink(&s.victim_dir, s.base.join("data/app/link")).unwrap();
    let dir = SafeDir::open_trusted(&s.base).unwrap();
    assert!(
        dir.stat(Path::new("data/app/link"))
            .unwrap()
            .unwrap()
            .is_symlink()
    );
    assert!(dir.stat(Path::new("data/app/none")).unwrap().is_none());
    assert!(dir.stat(Path::new("data/none/x")).unwrap().is_none());
    let (d, rel) = locate(&s.base, &s.base.join("data/app/link")).unwrap();
    assert_eq!(
        (d.path(), rel.as_path()),
        (s.base.as_path(), Path::new("data/app/link"))
    );
    let (d, rel) = locate(&s.base.join("data"), &s.victim_file).unwrap();
    assert_eq!(rel, Path::new("victim"));
    assert_eq!(d.path(), s.victim_file.parent().unwrap());
}

/// Root takes over what an unprivileged user made (a virtualenv build) by descriptor:
/// setuid bits and write access for others go, a symlink becomes root's itself (its
/// target untouched), and an entry the maker does not own (a hard link to a root file)
/// or a FIFO is refused with that file left as it was.
#[test]
fn take_over_tree_gives_the_makers_tree_to_root_and_follows_nothing() {
    const MAKER: u32 = 4242;
    both(|| {
        let s = setup();
        let chown = |p: &Path| std::os::unix::fs::lchown(p, Some(MAKER), Some(MAKER)).unwrap();
        let tree = s.base.join("data/app");
        std::fs::create_dir(tree.join("bin")).unwrap();
        std::fs::write(tree.join("bin/tool"), "#!/bin/sh\n").unwrap();
        std::fs::write(tree.join("bin/data"), "x").unwrap();
        std::fs::set_permissions(
            tree.join("bin/tool"),
            std::fs::Permissions::from_mode(0o6777),
        )
        .unwrap();
        std::fs::set_permissions(
            tree.join("bin/data"),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        std::fs::set_permissions(tree.join("bin"), std::fs::Permissions::from_mode(0o777)).unwrap();
        symlink(&s.victim_file, tree.join("bin/link")).unwrap();
        let all = [
            tree.clone(),
            tree.join("bin"),
            tree.join("bin/tool"),
            tree.join("bin/data"),
            tree.join("bin/link"),
        ];
        for p in &all {
            chown(p);
        }
        let dir = SafeDir::open_trusted(&s.base).unwrap();
        dir.take_over_tree(Path::new("data/app"), MAKER).unwrap();
        for p in &all {
            let m = std::fs::symlink_metadata(p).unwrap();
            assert_eq!((m.uid(), m.gid()), (0, 0), "{}", p.display());
        }
        assert_eq!(mode_of(&tree), 0o700);
        assert_eq!(mode_of(&tree.join("bin")), 0o755);
        assert_eq!(mode_of(&tree.join("bin/tool")), 0o755);
        assert_eq!(mode_of(&tree.join("bin/data")), 0o644);
        assert_eq!(mode_of(&s.victim_file), 0o644);

        // Not the maker's any more: a second take-over is refused at the top.
        let err = dir
            .take_over_tree(Path::new("data/app"), MAKER)
            .unwrap_err();
        assert!(
            matches!(err, HostError::ForeignOwner { uid: 0, .. }),
            "{err}"
        );

        std::fs::create_dir(s.base.join("data/two")).unwrap();
        chown(&s.base.join("data/two"));
        std::fs::hard_link(&s.victim_file, s.base.join("data/two/shadow")).unwrap();
        let err = dir
            .take_over_tree(Path::new("data/two"), MAKER)
            .unwrap_err();
        assert!(err.to_string().contains("not to uid 4242"), "{err}");
        assert_eq!(mode_of(&s.victim_file), 0o644);
        assert_eq!(std::fs::metadata(&s.victim_file).unwrap().uid(), 0);
        std::fs::remove_file(s.base.join("data/two/shadow")).unwrap();
        nix::unistd::mkfifo(
            &s.base.join("data/two/fifo"),
            Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        chown(&s.base.join("data/two/fifo"));
        chown(&s.base.join("data/two"));
        let err = dir
            .take_over_tree(Path::new("data/two"), MAKER)
            .unwrap_err();
        assert!(matches!(err, HostError::NotAFile { .. }), "{err}");

        // A symlink at the top is refused, not followed.
        symlink(&s.victim_dir, s.base.join("data/three")).unwrap();
        let err = dir
            .take_over_tree(Path::new("data/three"), MAKER)
            .unwrap_err();
        assert!(matches!(err, HostError::SymlinkRefused { .. }), "{err}");
    });
}

/// `exchange` swaps two directories in one step; a missing side, or a symlink on the
/// way to one, is refused and nothing moves.
#[test]
fn exchange_swaps_two_entries_and_refuses_a_link_on_the_way() {
    both(|| {
        let s = setup();
        std::fs::create_dir_all(s.base.join("a")).unwrap();
        std::fs::write(s.base.join("a/which"), "a").unwrap();
        std::fs::create_dir_all(s.base.join("b")).unwrap();
        std::fs::write(s.base.join("b/which"), "b").unwrap();
        let dir = SafeDir::open_trusted(&s.base).unwrap();
        dir.exchange(Path::new("a"), Path::new("b")).unwrap();
        assert_eq!(
            std::fs::read_to_string(s.base.join("a/which")).unwrap(),
            "b"
        );
        assert_eq!(
            std::fs::read_to_string(s.base.join("b/which")).unwrap(),
            "a"
        );
        assert!(dir.exchange(Path::new("a"), Path::new("none")).is_err());
        symlink(&s.victim_dir, s.base.join("link")).unwrap();
        assert!(
            dir.exchange(Path::new("a"), Path::new("link/secret"))
                .is_err()
        );
        assert_eq!(
            std::fs::read_to_string(s.victim_dir.join("secret")).unwrap(),
            "x"
        );
        assert_eq!(
            std::fs::read_to_string(s.base.join("a/which")).unwrap(),
            "b"
        );
    });
}
