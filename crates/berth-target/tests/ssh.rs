//! The SSH target against a real sshd on 127.0.0.1 (needs root and openssh-server;
//! skipped otherwise).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use berth_target::{SshOptions, SshSpec, SshTarget, Target, TargetError, TargetSpec};
use common::{Progress, Sshd, Tmpfs, data, mode, skip};

const NAME: &str = "netbox-4.7.3-20261125T163000Z.berth.tar.zst";

macro_rules! sshd_or_skip {
    () => {
        match Sshd::start() {
            Ok(sshd) => sshd,
            Err(reason) => {
                skip(&reason);
                return;
            }
        }
    };
}

/// A local source file whose path has spaces, quotes and glob characters, which must
/// reach sftp intact.
fn source(dir: &Path, bytes: &[u8]) -> std::path::PathBuf {
    let dir = dir.join("we*ird [dir] \"q\" 'a'\\b");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("archive file?.tar.zst");
    fs::write(&path, bytes).unwrap();
    // A file the glob would also match, so a glob expansion would be noticed.
    fs::write(dir.join("archive fileX.tar.zst"), b"wrong file").unwrap();
    path
}

#[test]
fn put_list_get_round_trip() {
    let sshd = sshd_or_skip!();
    let work = tempfile::tempdir().unwrap();
    // Awkward characters in the remote directory too, some of them glob patterns.
    let remote = work.path().join("remote/ne sted*[x]?/backups");
    fs::create_dir_all(work.path().join("remote/ne sted_x_!")).unwrap();
    let target = sshd.target(&remote);

    let space = target.check(None).expect("check creates the directory");
    assert!(space.free.is_some_and(|free| free > 0), "{space:?}");
    assert_eq!(mode(&remote), 0o700);

    let bytes = data(300_000, 1);
    let local = source(work.path(), &bytes);
    let mut progress = Progress::default();
    target
        .put(&local, NAME, &mut progress.callback())
        .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    assert_eq!((progress.first(), progress.last()), (0, 300_000));
    assert_eq!(fs::read(remote.join(NAME)).unwrap(), bytes);
    assert!(!remote.join(format!("{NAME}.partial")).exists());

    let listed = target.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].name.as_str(), listed[0].size), (NAME, 300_000));
    let modified = listed[0].modified.expect("ls shows a date");
    let age = jiff::Timestamp::now().duration_since(modified);
    assert!(
        age < jiff::SignedDuration::from_mins(5),
        "modified {modified} is not now"
    );

    let back = work.path().join("restored archive.tar.zst");
    let mut progress = Progress::default();
    target.get(NAME, &back, &mut progress.callback()).unwrap();
    assert_eq!(fs::read(&back).unwrap(), bytes);
    assert_eq!(progress.last(), 300_000);
    assert_eq!(mode(&back), 0o600);
    assert!(
        !work
            .path()
            .join("restored archive.tar.zst.partial")
            .exists()
    );

    let again = target.get(NAME, &back, &mut |_| {}).unwrap_err();
    assert!(matches!(again, TargetError::LocalExists { .. }), "{again}");
    let missing = target
        .get("nope.berth.tar.zst", &work.path().join("x"), &mut |_| {})
        .unwrap_err();
    assert!(matches!(missing, TargetError::NotFound { .. }), "{missing}");
    assert_eq!(target.local_path(NAME), None);
}

#[test]
fn open_reaches_the_same_directory_through_a_url() {
    let sshd = sshd_or_skip!();
    let work = tempfile::tempdir().unwrap();
    let text = format!(
        "sftp://root@127.0.0.1:{}{}",
        sshd.port,
        work.path().join("b").display()
    );
    let spec = TargetSpec::parse(&text).unwrap();
    let target = berth_target::open(&spec, &sshd.options());
    assert_eq!(target.describe(), text);
    target.check(None).unwrap();
    assert!(work.path().join("b").is_dir());
}

#[test]
fn an_interrupted_upload_resumes_from_its_partial_file() {
    let sshd = sshd_or_skip!();
    let work = tempfile::tempdir().unwrap();
    let remote = work.path().join("backups");
    let target = sshd.target(&remote);
    target.check(None).unwrap();
    let bytes = data(1_000_000, 2);
    let local = source(work.path(), &bytes);

    // What an upload cut off after 400 000 bytes leaves behind.
    let partial = remote.join(format!("{NAME}.partial"));
    fs::write(&partial, &bytes[..400_000]).unwrap();
    let mut progress = Progress::default();
    target.put(&local, NAME, &mut progress.callback()).unwrap();
    assert_eq!(progress.first(), 400_000, "resumed, not restarted");
    assert_eq!(progress.last(), 1_000_000);
    assert_eq!(fs::read(remote.join(NAME)).unwrap(), bytes);
    assert!(!partial.exists());

    // A partial longer than the file cannot be a prefix: start over.
    let second = "second.berth.tar.zst";
    fs::write(remote.join(format!("{second}.partial")), data(1_500_000, 3)).unwrap();
    let mut progress = Progress::default();
    target
        .put(&local, second, &mut progress.callback())
        .unwrap();
    assert_eq!(progress.first(), 0);
    assert_eq!(fs::read(remote.join(second)).unwrap(), bytes);

    // A complete partial (cut off just before the rename) is only renamed.
    let third = "third.berth.tar.zst";
    fs::write(remote.join(format!("{third}.partial")), &bytes).unwrap();
    let mut progress = Progress::default();
    target.put(&local, third, &mut progress.callback()).unwrap();
    assert_eq!(progress.0, [1_000_000, 1_000_000]);
    assert_eq!(fs::read(remote.join(third)).unwrap(), bytes);
}

#[test]
fn an_interrupted_download_resumes_from_its_partial_file() {
    let sshd = sshd_or_skip!();
    let work = tempfile::tempdir().unwrap();
    let remote = work.path().join("backups");
    fs::create_dir(&remote).unwrap();
    let bytes = data(500_000, 4);
    fs::write(remote.join(NAME), &bytes).unwrap();
    let target = sshd.target(&remote);

    let local = work.path().join("restore.tar.zst");
    fs::write(
        work.path().join("restore.tar.zst.partial"),
        &bytes[..123_456],
    )
    .unwrap();
    let mut progress = Progress::default();
    target.get(NAME, &local, &mut progress.callback()).unwrap();
    assert_eq!(progress.first(), 123_456);
    assert_eq!(progress.last(), 500_000);
    assert_eq!(fs::read(&local).unwrap(), bytes);
}

#[test]
fn list_shows_complete_archives_only() {
    let sshd = sshd_or_skip!();
    let work = tempfile::tempdir().unwrap();
    let remote = work.path().join("backups");
    fs::create_dir(&remote).unwrap();
    fs::write(remote.join("b.berth.tar.zst"), b"bb").unwrap();
    fs::write(remote.join("a b.berth.tar.zst"), b"a").unwrap();
    fs::write(remote.join("c.berth.tar.zst.partial"), b"partial").unwrap();
    fs::write(remote.join("notes.txt"), b"n").unwrap();
    fs::create_dir(remote.join("d.berth.tar.zst")).unwrap();
    let target = sshd.target(&remote);
    let names: Vec<(String, u64)> = target
        .list()
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.size))
        .collect();
    assert_eq!(
        names,
        [
            ("a b.berth.tar.zst".to_owned(), 1),
            ("b.berth.tar.zst".to_owned(), 2)
        ]
    );

    let missing = sshd.target(&work.path().join("nothing here"));
    let err = missing.list().unwrap_err();
    assert!(matches!(err, TargetError::MissingDirectory { .. }), "{err}");
}

#[test]
fn put_never_overwrites_and_delete_removes() {
    let sshd = sshd_or_skip!();
    let work = tempfile::tempdir().unwrap();
    let remote = work.path().join("backups");
    let target = sshd.target(&remote);
    target.check(None).unwrap();
    let local = source(work.path(), b"first");
    target.put(&local, NAME, &mut |_| {}).unwrap();

    fs::write(&local, b"second version").unwrap();
    let err = target.put(&local, NAME, &mut |_| {}).unwrap_err();
    assert!(matches!(err, TargetError::AlreadyExists { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("{NAME} already exists on {}", target.describe())
    );
    assert_eq!(fs::read(remote.join(NAME)).unwrap(), b"first");

    target.delete(NAME).unwrap();
    assert!(!remote.join(NAME).exists());
    assert!(target.list().unwrap().is_empty());
    let err = target.delete(NAME).unwrap_err();
    assert!(matches!(err, TargetError::NotFound { .. }), "{err}");

    let err = target.delete("../escape").unwrap_err();
    assert!(matches!(err, TargetError::InvalidName { .. }), "{err}");
}

#[test]
fn a_large_upload_polls_its_progress() {
    // Over loopback the upload may finish before the first poll answers; this checks
    // that polling starts and stops cleanly around a real upload.
    let sshd = sshd_or_skip!();
    let work = tempfile::tempdir().unwrap();
    let remote = work.path().join("backups");
    let target = sshd.target(&remote);
    target.check(None).unwrap();
    let bytes = data(24 << 20, 5);
    let local = work.path().join("big");
    fs::write(&local, &bytes).unwrap();
    let mut progress = Progress::default();
    target.put(&local, NAME, &mut progress.callback()).unwrap();
    progress.assert_monotonic();
    assert_eq!((progress.first(), progress.last()), (0, 24 << 20));
    assert_eq!(fs::metadata(remote.join(NAME)).unwrap().len(), 24 << 20);
}

#[test]
fn an_unreachable_host_fails_quickly_and_clearly() {
    // Nothing listens on a port that was just free.
    let port = common::free_port();
    let target = SshTarget::new(
        SshSpec {
            user: Some("root".to_owned()),
            host: "127.0.0.1".to_owned(),
            port: Some(port),
            path: "/srv/backups".to_owned(),
        },
        SshOptions {
            connect_timeout: Duration::from_secs(3),
            ..SshOptions::default()
        },
    );
    let started = Instant::now();
    let err = target.check(None).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(err, TargetError::Connection { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "connection to sftp://root@127.0.0.1:{port}/srv/backups failed: \
             ssh: connect to host 127.0.0.1 port {port}: Connection refused"
        )
    );
}

#[test]
fn an_unknown_host_key_is_refused_without_prompting() {
    let sshd = sshd_or_skip!();
    let work = tempfile::tempdir().unwrap();
    let empty = work.path().join("known_hosts");
    fs::write(&empty, "").unwrap();
    let target = SshTarget::new(
        sshd.spec("root", work.path()),
        SshOptions {
            known_hosts: Some(empty),
            ..sshd.options()
        },
    );
    let err = target.check(None).unwrap_err();
    assert!(matches!(err, TargetError::Connection { .. }), "{err:?}");
    assert!(
        err.to_string().contains("Host key verification failed"),
        "{err}"
    );
}

#[test]
fn a_directory_the_user_cannot_write_is_reported() {
    let sshd = sshd_or_skip!();
    if nix::unistd::User::from_name("nobody")
        .ok()
        .flatten()
        .is_none()
    {
        skip("no user nobody to log in as");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let root_owned = work.path().join("root only");
    fs::create_dir(&root_owned).unwrap();
    fs::set_permissions(&root_owned, fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |path: &Path| SshTarget::new(sshd.spec("nobody", path), sshd.options());

    let err = as_nobody(&root_owned).check(None).unwrap_err();
    assert!(
        matches!(err, TargetError::PermissionDenied { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("permission denied on "),
        "{err}"
    );

    let err = as_nobody(&root_owned.join("sub")).check(None).unwrap_err();
    // Only the mkdir that mattered, not the parents that exist already.
    assert!(
        err.to_string()
            .ends_with("root only/sub\": Permission denied"),
        "{err}"
    );
    assert!(
        matches!(err, TargetError::PermissionDenied { .. }),
        "{err:?}"
    );

    let local = source(work.path(), b"x");
    fs::set_permissions(&local, fs::Permissions::from_mode(0o644)).unwrap();
    let err = as_nobody(&root_owned)
        .put(&local, NAME, &mut |_| {})
        .unwrap_err();
    assert!(
        matches!(err, TargetError::PermissionDenied { .. }),
        "{err:?}"
    );
}

#[test]
fn check_reports_not_enough_space() {
    let sshd = sshd_or_skip!();
    let work = tempfile::tempdir().unwrap();
    let target = sshd.target(work.path());
    let err = target.check(Some(u64::MAX / 2)).unwrap_err();
    let TargetError::NotEnoughSpace { needed, free, .. } = err else {
        panic!("{err:?}");
    };
    assert_eq!(needed, u64::MAX / 2);
    assert!(free > 0);
    let message = target.check(Some(u64::MAX / 2)).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!(
            "not enough space on {}: 8.0 EiB needed, ",
            target.describe()
        )),
        "{message}"
    );
}

#[test]
fn a_full_target_removes_the_partial_upload() {
    let sshd = sshd_or_skip!();
    let work = tempfile::tempdir().unwrap();
    let Some(mount) = Tmpfs::mount(&work.path().join("small"), "1m") else {
        skip("cannot mount a tmpfs here");
        return;
    };
    let target = sshd.target(&mount.path);
    let local = work.path().join("big");
    fs::write(&local, data(3 << 20, 6)).unwrap();
    let err = target.put(&local, NAME, &mut |_| {}).unwrap_err();
    assert!(matches!(err, TargetError::Full { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "target is full: {} ran out of space while writing {NAME}",
            target.describe()
        )
    );
    assert_eq!(fs::read_dir(&mount.path).unwrap().count(), 0);
}
