//! The local directory target.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use berth_target::{LocalTarget, SshOptions, Target, TargetError, TargetSpec};
use common::{Progress, Tmpfs, data, is_root, mode, skip};

const NAME: &str = "netbox-4.7.3-20261125T163000Z.berth.tar.zst";

#[test]
fn put_list_get_round_trip() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("backups/nested");
    let spec = TargetSpec::parse(dir.to_str().unwrap()).unwrap();
    let target = berth_target::open(&spec, &SshOptions::default());
    assert_eq!(target.describe(), dir.display().to_string());

    let space = target.check(None).unwrap();
    assert!(space.free.is_some_and(|f| f > 0));
    assert_eq!(mode(&dir), 0o700);

    let bytes = data(3_000_000, 1);
    let local = work.path().join("staging");
    fs::write(&local, &bytes).unwrap();
    let partial = dir.join(format!("{NAME}.partial"));
    let mut partial_modes = Vec::new();
    let mut progress = Vec::new();
    target
        .put(&local, NAME, &mut |n| {
            progress.push(n);
            if let Ok(meta) = fs::metadata(&partial) {
                partial_modes.push(meta.permissions().mode() & 0o777);
            }
        })
        .unwrap();
    assert_eq!(progress.first(), Some(&0));
    assert_eq!(progress.last(), Some(&3_000_000));
    assert!(
        progress.len() > 2,
        "a multi-megabyte copy reports as it goes"
    );
    assert!(!partial_modes.is_empty() && partial_modes.iter().all(|m| *m == 0o600));
    assert!(!partial.exists());
    assert_eq!(fs::read(dir.join(NAME)).unwrap(), bytes);
    assert_eq!(mode(&dir.join(NAME)), 0o600);
    assert!(local.exists(), "put copies, it does not move");

    let listed = target.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].name.as_str(), listed[0].size), (NAME, 3_000_000));
    assert!(listed[0].modified.is_some());
    assert_eq!(target.local_path(NAME), Some(dir.join(NAME)));

    let back = work.path().join("restored");
    let mut progress = Progress::default();
    target.get(NAME, &back, &mut progress.callback()).unwrap();
    assert_eq!(fs::read(&back).unwrap(), bytes);
    assert_eq!(progress.last(), 3_000_000);
    assert_eq!(mode(&back), 0o600);

    let err = target.get(NAME, &back, &mut |_| {}).unwrap_err();
    assert!(matches!(err, TargetError::LocalExists { .. }), "{err}");
    let err = target
        .get("nope.berth.tar.zst", &work.path().join("x"), &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, TargetError::NotFound { .. }), "{err}");
}

#[test]
fn an_interrupted_upload_resumes_when_its_partial_is_a_prefix() {
    let work = tempfile::tempdir().unwrap();
    let target = LocalTarget::new(work.path().join("t"));
    target.check(None).unwrap();
    let bytes = data(2_000_000, 2);
    let local = work.path().join("staging");
    fs::write(&local, &bytes).unwrap();

    let partial = target.dir().join(format!("{NAME}.partial"));
    fs::write(&partial, &bytes[..700_000]).unwrap();
    let mut progress = Progress::default();
    target.put(&local, NAME, &mut progress.callback()).unwrap();
    assert_eq!(progress.first(), 700_000, "resumed");
    assert_eq!(fs::read(target.dir().join(NAME)).unwrap(), bytes);

    // Same length, different content: not a prefix, so the copy starts over.
    let other = "other.berth.tar.zst";
    let mut wrong = bytes[..700_000].to_vec();
    wrong[500_000] ^= 0xff;
    fs::write(target.dir().join(format!("{other}.partial")), &wrong).unwrap();
    let mut progress = Progress::default();
    target.put(&local, other, &mut progress.callback()).unwrap();
    assert_eq!(progress.first(), 0, "restarted");
    assert_eq!(fs::read(target.dir().join(other)).unwrap(), bytes);

    // Longer than the file: restarted too.
    let third = "third.berth.tar.zst";
    fs::write(
        target.dir().join(format!("{third}.partial")),
        data(2_500_000, 3),
    )
    .unwrap();
    target.put(&local, third, &mut |_| {}).unwrap();
    assert_eq!(fs::read(target.dir().join(third)).unwrap(), bytes);
}

#[test]
fn list_shows_complete_archives_only() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    fs::write(dir.join("b.berth.tar.zst"), b"bb").unwrap();
    fs::write(dir.join("a.berth.tar.zst"), b"a").unwrap();
    fs::write(dir.join("c.berth.tar.zst.partial"), b"partial").unwrap();
    fs::write(dir.join("notes.txt"), b"n").unwrap();
    fs::create_dir(dir.join("d.berth.tar.zst")).unwrap();
    let target = LocalTarget::new(dir);
    let names: Vec<(String, u64)> = target
        .list()
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.size))
        .collect();
    assert_eq!(
        names,
        [
            ("a.berth.tar.zst".to_owned(), 1),
            ("b.berth.tar.zst".to_owned(), 2)
        ]
    );

    let err = LocalTarget::new(dir.join("missing")).list().unwrap_err();
    assert!(matches!(err, TargetError::MissingDirectory { .. }), "{err}");
}

#[test]
fn put_never_overwrites_and_delete_removes() {
    let work = tempfile::tempdir().unwrap();
    let target = LocalTarget::new(work.path().join("t"));
    target.check(None).unwrap();
    let local = work.path().join("staging");
    fs::write(&local, b"first").unwrap();
    target.put(&local, NAME, &mut |_| {}).unwrap();

    fs::write(&local, b"second").unwrap();
    let err = target.put(&local, NAME, &mut |_| {}).unwrap_err();
    assert!(matches!(err, TargetError::AlreadyExists { .. }), "{err}");
    assert_eq!(fs::read(target.dir().join(NAME)).unwrap(), b"first");
    assert!(!target.dir().join(format!("{NAME}.partial")).exists());

    target.delete(NAME).unwrap();
    assert!(target.list().unwrap().is_empty());
    let err = target.delete(NAME).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{NAME} not found on {}", target.describe())
    );
    for bad in ["../x", "", ".hidden", "x.partial"] {
        let err = target.put(&local, bad, &mut |_| {}).unwrap_err();
        assert!(
            matches!(err, TargetError::InvalidName { .. }),
            "{bad}: {err}"
        );
    }
}

#[test]
fn put_move_renames_a_staging_file_into_place() {
    let work = tempfile::tempdir().unwrap();
    let target = LocalTarget::new(work.path());
    let staging = work.path().join(".staging-archive");
    fs::write(&staging, b"archive").unwrap();
    let inode = fs::metadata(&staging).unwrap().ino();
    let mut progress = Progress::default();
    target
        .put_move(&staging, NAME, &mut progress.callback())
        .unwrap();
    assert!(!staging.exists());
    assert_eq!(
        fs::metadata(work.path().join(NAME)).unwrap().ino(),
        inode,
        "renamed, not copied"
    );
    assert_eq!(progress.0, [0, 7]);

    // Never over an existing archive; the staging file stays for the caller.
    fs::write(&staging, b"again").unwrap();
    let err = target.put_move(&staging, NAME, &mut |_| {}).unwrap_err();
    assert!(matches!(err, TargetError::AlreadyExists { .. }), "{err}");
    assert!(staging.exists());
    assert_eq!(fs::read(work.path().join(NAME)).unwrap(), b"archive");
}

#[test]
fn put_move_copies_across_filesystems() {
    let work = tempfile::tempdir().unwrap();
    let Some(other_fs) = Tmpfs::mount(&work.path().join("tmpfs"), "4m") else {
        skip("cannot mount a tmpfs here");
        return;
    };
    let staging = other_fs.path.join("staging");
    let bytes = data(1_000_000, 4);
    fs::write(&staging, &bytes).unwrap();
    let target = LocalTarget::new(work.path().join("t"));
    target.check(None).unwrap();
    target.put_move(&staging, NAME, &mut |_| {}).unwrap();
    assert!(!staging.exists());
    assert_eq!(fs::read(target.dir().join(NAME)).unwrap(), bytes);
}

#[test]
fn a_full_disk_removes_the_partial_file() {
    let work = tempfile::tempdir().unwrap();
    let Some(small) = Tmpfs::mount(&work.path().join("small"), "1m") else {
        // Without a small filesystem a real ENOSPC cannot be made; the free-space
        // check is covered by check_reports_not_enough_space.
        skip("cannot mount a tmpfs here");
        return;
    };
    let target = LocalTarget::new(&small.path);
    let local = work.path().join("big");
    fs::write(&local, data(3 << 20, 5)).unwrap();
    let err = target.put(&local, NAME, &mut |_| {}).unwrap_err();
    assert!(matches!(err, TargetError::Full { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "target is full: {} ran out of space while writing {NAME}",
            small.path.display()
        )
    );
    assert_eq!(fs::read_dir(&small.path).unwrap().count(), 0);
}

#[test]
fn check_reports_not_enough_space() {
    let work = tempfile::tempdir().unwrap();
    let target = LocalTarget::new(work.path());
    let free = target.check(Some(1)).unwrap().free.unwrap();
    let err = target.check(Some(u64::MAX / 2)).unwrap_err();
    let message = err.to_string();
    let TargetError::NotEnoughSpace {
        needed,
        free: reported,
        ..
    } = err
    else {
        panic!("{err:?}");
    };
    assert_eq!(needed, u64::MAX / 2);
    // Others may write meanwhile; the order of magnitude is what matters.
    assert!(reported.abs_diff(free) < 1 << 30, "{reported} vs {free}");
    assert!(
        message.starts_with(&format!(
            "not enough space on {}: 8.0 EiB needed, ",
            work.path().display()
        )),
        "{message}"
    );
}

/// Makes a directory unwritable even for root (`chattr +i`), undone on drop.
struct Immutable<'a>(&'a Path);

impl Drop for Immutable<'_> {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(self.0).status();
    }
}

#[test]
fn an_unwritable_directory_is_reported() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("locked");
    fs::create_dir(&dir).unwrap();
    let _guard;
    if is_root() {
        // Root ignores permission bits, but not the immutable attribute.
        let ok = Command::new("chattr")
            .arg("+i")
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            skip("root, and chattr +i is not supported here");
            return;
        }
        _guard = Immutable(&dir);
    } else {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o500)).unwrap();
    }
    let target = LocalTarget::new(&dir);
    let err = target.check(None).unwrap_err();
    assert!(
        matches!(err, TargetError::PermissionDenied { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with(&format!(
            "permission denied on {}: creating a file",
            dir.display()
        )),
        "{err}"
    );
    let local = work.path().join("staging");
    fs::write(&local, b"x").unwrap();
    let err = target.put(&local, NAME, &mut |_| {}).unwrap_err();
    assert!(
        matches!(err, TargetError::PermissionDenied { .. }),
        "{err:?}"
    );

    let err = LocalTarget::new(dir.join("sub")).check(None).unwrap_err();
    assert!(
        matches!(err, TargetError::PermissionDenied { .. }),
        "{err:?}"
    );
}

#[test]
fn a_file_is_not_a_target_directory() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("file");
    fs::write(&file, b"").unwrap();
    let err = LocalTarget::new(&file).check(None).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{} is not a directory", file.display())
    );
}
