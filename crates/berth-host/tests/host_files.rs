//! Host files on a private directory: made, kept, replaced and removed only while they
//! are berth's own.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use berth_host::host_files::{HostFiles, Report};
use berth_render::{HostFileKind, HostFileSpec};

fn link(path: &Path, target: &str) -> HostFileSpec {
    HostFileSpec {
        path: path.to_path_buf(),
        component: "nginx".into(),
        kind: HostFileKind::Link {
            target: PathBuf::from(target),
        },
    }
}

fn copy(path: &Path, content: &str) -> HostFileSpec {
    HostFileSpec {
        path: path.to_path_buf(),
        component: "app".into(),
        kind: HostFileKind::File {
            content: content.into(),
            mode: 0o644,
            copy_of: "cron/app".into(),
        },
    }
}

/// A private directory (no symlink on its path) and the record of host files.
fn setup() -> (tempfile::TempDir, PathBuf, HostFiles) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    std::fs::create_dir(root.join("sites")).unwrap();
    std::fs::create_dir(root.join("state")).unwrap();
    let files = HostFiles::new(root.join("state/host-files.json"));
    (tmp, root, files)
}

#[test]
fn host_files_are_made_kept_replaced_and_removed() {
    let (_tmp, root, files) = setup();
    let conf = root.join("sites/app.conf");
    let cron = root.join("sites/app-cron");
    let wanted = [
        link(&conf, "/srv/app/etc/nginx.conf"),
        copy(&cron, "0 * * * * root true\n"),
    ];
    let r = files.converge(&wanted).unwrap();
    assert_eq!(r.created, [conf.clone(), cron.clone()]);
    assert_eq!(
        std::fs::read_link(&conf).unwrap(),
        Path::new("/srv/app/etc/nginx.conf")
    );
    assert_eq!(
        std::fs::read_to_string(&cron).unwrap(),
        "0 * * * * root true\n"
    );
    assert_eq!(
        std::fs::metadata(&cron).unwrap().permissions().mode() & 0o7777,
        0o644
    );

    // Again: nothing to do.
    assert_eq!(files.converge(&wanted).unwrap(), Report::default());

    // A new target and content replace berth's own.
    let changed = [
        link(&conf, "/srv/app/etc/other.conf"),
        copy(&cron, "5 * * * * root true\n"),
    ];
    let r = files.converge(&changed).unwrap();
    assert_eq!(r.updated, [conf.clone(), cron.clone()]);
    assert_eq!(
        std::fs::read_link(&conf).unwrap(),
        Path::new("/srv/app/etc/other.conf")
    );

    // No longer wanted (a component switched off): removed.
    let r = files.converge(&changed[..1]).unwrap();
    assert_eq!(r.removed, std::slice::from_ref(&cron));
    assert!(!cron.exists());
    let r = files.remove_all().unwrap();
    assert_eq!(r.removed, std::slice::from_ref(&conf));
    assert!(std::fs::symlink_metadata(&conf).is_err());
    assert!(files.recorded().unwrap().is_empty());
}

/// What berth did not make is never replaced, not even by what berth would put there,
/// and the refusal changes nothing.
#[test]
fn what_is_not_berths_is_refused_and_left_alone() {
    let (_tmp, root, files) = setup();
    let conf = root.join("sites/app.conf");
    let other = root.join("sites/other");
    std::fs::write(&conf, "the administrator's\n").unwrap();
    std::os::unix::fs::symlink("/srv/app/etc/nginx.conf", &other).unwrap();
    for wanted in [
        vec![link(&other, "/srv/app/etc/nginx.conf")],
        vec![
            copy(&root.join("sites/new"), "x"),
            link(&conf, "/srv/app/etc/nginx.conf"),
        ],
    ] {
        let err = files.converge(&wanted).unwrap_err();
        assert!(err.to_string().contains("did not make"), "{err}");
    }
    assert_eq!(
        std::fs::read_to_string(&conf).unwrap(),
        "the administrator's\n"
    );
    assert!(
        !root.join("sites/new").exists(),
        "checked before anything is made"
    );
    assert!(files.recorded().unwrap().is_empty());
}

/// A directory on the way that is a symlink is refused: the file would land wherever
/// it points.
#[test]
fn a_symlink_on_the_way_is_refused() {
    let (_tmp, root, files) = setup();
    std::os::unix::fs::symlink(root.join("sites"), root.join("via")).unwrap();
    let err = files
        .converge(&[link(&root.join("via/app.conf"), "/srv/app/etc/nginx.conf")])
        .unwrap_err();
    assert!(err.to_string().contains("no symlink on the way"), "{err}");
    assert!(
        std::fs::read_dir(root.join("sites"))
            .unwrap()
            .next()
            .is_none()
    );
}

/// A host file edited after berth made it is berth's no longer: removing leaves it,
/// and says so.
#[test]
fn an_edited_host_file_is_left_when_removing() {
    let (_tmp, root, files) = setup();
    let cron = root.join("sites/app-cron");
    files
        .converge(&[copy(&cron, "0 * * * * root true\n")])
        .unwrap();
    std::fs::write(&cron, "edited\n").unwrap();
    let r = files.remove_all().unwrap();
    assert_eq!((r.removed.len(), r.left), (0, vec![cron.clone()]));
    assert_eq!(std::fs::read_to_string(&cron).unwrap(), "edited\n");
}

/// A run killed while it replaced a host file, before or after the new one was put
/// in place: the record holds the old and the new, whichever is on disk is berth's,
/// and the next run finishes the job (or `down --purge` removes it) without refusing.
#[test]
fn a_replacement_cut_short_is_finished_by_the_next_run() {
    let (_tmp, root, files) = setup();
    let cron = root.join("sites/app-cron");
    let record = root.join("state/host-files.json");
    let old = copy(&cron, "0 * * * * root true\n");
    let new = copy(&cron, "5 * * * * root true\n");
    files.converge(std::slice::from_ref(&old)).unwrap();
    let only_old = std::fs::read(&record).unwrap();

    // What a run replacing old with new records before it writes.
    let mut both: serde_json::Value = serde_json::from_slice(&only_old).unwrap();
    let mut new_entry = both[0].clone();
    new_entry["made"]["file"] = hex_sha256("5 * * * * root true\n").into();
    both.as_array_mut().unwrap().push(new_entry);
    let both = serde_json::to_vec(&both).unwrap();

    // Killed before the write: the old file is on disk.
    std::fs::write(&record, &both).unwrap();
    let r = files.converge(std::slice::from_ref(&new)).unwrap();
    assert_eq!(r.updated, std::slice::from_ref(&cron));
    assert_eq!(
        std::fs::read_to_string(&cron).unwrap(),
        "5 * * * * root true\n"
    );
    assert_eq!(files.recorded().unwrap().len(), 1);

    // Killed after the write: the new file is on disk, the old still recorded.
    std::fs::write(&record, &both).unwrap();
    assert_eq!(
        files.converge(std::slice::from_ref(&new)).unwrap(),
        Report::default()
    );
    assert_eq!(files.recorded().unwrap().len(), 1);

    // And purged from either state: removed once, never reported as left.
    for disk in ["0 * * * * root true\n", "5 * * * * root true\n"] {
        std::fs::write(&cron, disk).unwrap();
        std::fs::write(&record, &both).unwrap();
        let r = files.remove_all().unwrap();
        assert_eq!((r.removed, r.left), (vec![cron.clone()], vec![]));
        assert!(!cron.exists());
    }
}

fn hex_sha256(s: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}
