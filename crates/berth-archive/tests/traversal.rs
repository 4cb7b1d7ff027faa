//! Hand-crafted archives that try to write outside the extraction directory.

mod common;

use std::fs;
use std::path::Path;

use berth_archive::{ArchiveError, extract, verify};
use serde_json::json;
use tar::EntryType;

enum Item<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
}

/// Crafts an archive whose tar holds `tar_items` and whose manifest lists `listed_items`
/// (usually the same).
fn craft(path: &Path, tar_items: &[Item<'_>], listed_items: &[Item<'_>]) {
    let entries: Vec<_> = listed_items
        .iter()
        .map(|item| match item {
            Item::File(name, data) => json!({
                "path": name, "kind": "file", "size": data.len(),
                "sha256": common::sha256_hex(data), "mode": "0644",
            }),
            Item::Dir(name) => json!({"path": name, "kind": "dir", "size": 0, "mode": "0755"}),
            Item::Symlink(name, target) => json!({
                "path": name, "kind": "symlink", "size": 0, "mode": "0777", "target": target,
            }),
        })
        .collect();
    let manifest = json!({"format": 3, "meta": {}, "entries": entries});
    let json = serde_json::to_vec_pretty(&manifest).unwrap();
    let mut tar = Vec::new();
    for item in tar_items {
        match item {
            Item::File(name, data) => common::raw_file(&mut tar, name, data),
            Item::Dir(name) => {
                tar.extend(common::raw_header(
                    &format!("{name}/"),
                    EntryType::Directory,
                    0,
                    0o755,
                    "",
                ));
            }
            Item::Symlink(name, target) => {
                tar.extend(common::raw_header(
                    name,
                    EntryType::Symlink,
                    0,
                    0o777,
                    target,
                ));
            }
        }
    }
    common::raw_file(&mut tar, "berth-backup.json", &json);
    tar.extend([0; 1024]);
    common::craft_archive(path, &tar, &json);
}

/// Extracts into `<tmp>/<name>/dest` and checks nothing appeared outside `dest`.
fn extract_refused(
    tmp: &Path,
    name: &str,
    tar_items: &[Item<'_>],
    listed: &[Item<'_>],
) -> ArchiveError {
    let archive = tmp.join(format!("{name}.berth.tar.zst"));
    craft(&archive, tar_items, listed);
    let root = tmp.join(name);
    let dest = root.join("dest");
    fs::create_dir_all(&dest).unwrap();
    let err = extract(&archive, &dest, &common::trusted(), &|_| true, &mut |_| {}).unwrap_err();
    let outside: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside, ["dest"], "{name}: something was written outside");
    assert!(!Path::new("/tmp/berth-archive-escape").exists());
    // verify refuses the same archives.
    assert!(
        verify(&archive, &common::trusted(), &mut |_| {}).is_err(),
        "{name}: verify accepted it"
    );
    err
}

fn assert_unsafe(err: &ArchiveError, entry_wanted: &str) {
    match err {
        ArchiveError::UnsafeEntry { entry, .. } => assert_eq!(entry, entry_wanted),
        other => panic!("expected UnsafeEntry for {entry_wanted}, got {other:?}"),
    }
}

#[test]
fn the_crafting_itself_is_sound() {
    let tmp = tempfile::tempdir().unwrap();
    let items = [
        Item::Dir("d"),
        Item::File("d/f", b"data"),
        Item::Symlink("d/l", "f"),
        Item::Symlink("d/up", "../d/f"),
    ];
    let archive = tmp.path().join("ok.berth.tar.zst");
    craft(&archive, &items, &items);
    let dest = tmp.path().join("dest");
    fs::create_dir(&dest).unwrap();
    extract(&archive, &dest, &common::trusted(), &|_| true, &mut |_| {}).unwrap();
    assert_eq!(fs::read(dest.join("d/up")).unwrap(), b"data");
}

#[test]
fn parent_components_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let items = [Item::File("../escape", b"x")];
    let err = extract_refused(tmp.path(), "dotdot", &items, &items);
    assert_unsafe(&err, "../escape");
    assert!(err.to_string().contains("`..`"), "{err}");

    let items = [Item::Dir("a"), Item::File("a/../../escape", b"x")];
    let err = extract_refused(tmp.path(), "inner-dotdot", &items, &items);
    assert_unsafe(&err, "a/../../escape");
}

#[test]
fn absolute_paths_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let items = [Item::File("/tmp/berth-archive-escape", b"x")];
    let err = extract_refused(tmp.path(), "absolute", &items, &items);
    assert_unsafe(&err, "/tmp/berth-archive-escape");
}

#[test]
fn escaping_symlinks_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, target) in [("up", "../outside"), ("abs", "/etc"), ("sneaky", "a/../..")] {
        let items = [Item::Symlink("l", target)];
        let err = extract_refused(tmp.path(), name, &items, &items);
        assert_unsafe(&err, "l");
    }
    // `l -> .` is harmless alone, but `m -> l/..` would resolve outside.
    let items = [Item::Symlink("l", "."), Item::Symlink("m", "l/..")];
    let err = extract_refused(tmp.path(), "chain", &items, &items);
    assert_unsafe(&err, "m");
}

#[test]
fn writing_through_a_symlink_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // The link itself stays inside, but files are never written through links.
    let items = [
        Item::Dir("sub"),
        Item::Symlink("l", "sub"),
        Item::File("l/f", b"x"),
    ];
    let err = extract_refused(tmp.path(), "through", &items, &items);
    assert_unsafe(&err, "l/f");

    // A symlink already in the destination is not followed either.
    let archive = tmp.path().join("pre.berth.tar.zst");
    let items = [Item::File("d/f", b"x")];
    craft(&archive, &items, &items);
    verify(&archive, &common::trusted(), &mut |_| {}).unwrap();
    let root = tmp.path().join("pre");
    let dest = root.join("dest");
    fs::create_dir_all(&dest).unwrap();
    fs::create_dir(root.join("elsewhere")).unwrap();
    std::os::unix::fs::symlink("../elsewhere", dest.join("d")).unwrap();
    let err = extract(&archive, &dest, &common::trusted(), &|_| true, &mut |_| {}).unwrap_err();
    assert_unsafe(&err, "d/f");
    assert_eq!(fs::read_dir(root.join("elsewhere")).unwrap().count(), 0);
}

#[test]
fn a_tar_entry_that_differs_from_its_manifest_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // The manifest looks harmless, the tar is not.
    let err = extract_refused(
        tmp.path(),
        "mismatch",
        &[Item::File("../escape", b"x")],
        &[Item::File("escape", b"x")],
    );
    assert!(matches!(err, ArchiveError::Corrupt { .. }), "{err:?}");

    let err = extract_refused(
        tmp.path(),
        "mismatch-link",
        &[Item::Symlink("l", "../../etc")],
        &[Item::Symlink("l", "etc")],
    );
    assert!(matches!(err, ArchiveError::Corrupt { .. }), "{err:?}");

    // An entry the manifest does not list at all.
    let err = extract_refused(
        tmp.path(),
        "extra",
        &[Item::File("a", b"x"), Item::File("b", b"y")],
        &[Item::File("a", b"x")],
    );
    assert!(matches!(err, ArchiveError::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("`b` is not in the archive manifest"),
        "{err}"
    );

    // And one it lists that is missing.
    let err = extract_refused(
        tmp.path(),
        "missing",
        &[Item::File("a", b"x")],
        &[Item::File("a", b"x"), Item::File("b", b"y")],
    );
    assert!(matches!(err, ArchiveError::Corrupt { .. }), "{err:?}");
}
