//! Writing, listing, verifying and extracting archives.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use berth_archive::{
    ArchiveError, ArchiveWriter, EntryKind, Meta, SkipReason, WriteOptions, archive_name, extract,
    parse_archive_name, read_index, verify,
};
use common::{assert_same_tree, mode_of, sample_archive};

fn everything(_: &str) -> bool {
    true
}

fn restore_dir(tmp: &Path, name: &str) -> std::path::PathBuf {
    let dest = tmp.join(name);
    fs::create_dir(&dest).unwrap();
    dest
}

#[test]
fn round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let (written, src) = sample_archive(tmp.path());

    // The final name, nothing partial left, private mode.
    let name = written.path.file_name().unwrap().to_str().unwrap();
    assert_eq!(name, "netbox-4.2.1-20250304T050607Z.berth.tar.zst");
    assert_eq!(
        parse_archive_name(name).unwrap().2,
        "2025-03-04T05:06:07Z".parse().unwrap()
    );
    assert_eq!(mode_of(&written.path), 0o600);
    assert_eq!(fs::metadata(&written.path).unwrap().len(), written.size);
    assert!(!tmp.path().join(format!("{name}.partial")).exists());

    // The index, read from the tail, is the manifest returned by finish.
    let index = read_index(&written.path).unwrap().manifest;
    assert_eq!(index, written.manifest);
    assert_eq!(index.format, 3);
    assert_eq!(index.meta.app(), Some("netbox"));
    assert_eq!(index.meta.app_version(), Some("4.2.1"));
    assert_eq!(index.meta.get("hostname").unwrap(), "box1");
    let paths: Vec<&str> = index.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        &paths[..4],
        ["data", "data/empty", "data/empty-dir", "data/media"]
    );
    assert_eq!(
        &paths[paths.len() - 2..],
        ["site/run.sh", "database/netbox/toc.dat"]
    );
    let big = index.entry("data/media/big.bin").unwrap();
    assert_eq!(big.kind, EntryKind::File);
    assert_eq!(big.size, 5_000_000);
    assert_eq!(big.mode, 0o640);
    assert_eq!(
        big.sha256.as_deref(),
        Some(common::sha256_hex(&fs::read(src.join("media/big.bin")).unwrap()).as_str())
    );
    let link = index.entry("data/media/up-link").unwrap();
    assert_eq!(link.kind, EntryKind::Symlink);
    assert_eq!(link.target.as_deref(), Some("../secret.key"));
    assert_eq!(index.entry("data/media/nested").unwrap().mode, 0o750);
    assert_eq!(index.entry("data/empty").unwrap().size, 0);

    // Verify reads everything.
    let mut last = 0;
    let report = verify(&written.path, &common::trusted(), &mut |done| {
        assert!(done >= last);
        last = done;
    })
    .unwrap();
    assert_eq!(last, index.total_size());
    assert_eq!(report.entries, index.entries.len());
    assert_eq!(report.files, index.file_count());
    assert_eq!(report.bytes, index.total_size());
    assert_eq!(report.archive_bytes, written.size);

    // Extract restores content, modes, mtimes and symlinks.
    let dest = restore_dir(tmp.path(), "restore");
    let manifest = extract(
        &written.path,
        &dest,
        &common::trusted(),
        &everything,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(manifest, index);
    assert_same_tree(&src, &dest.join("data"));
    assert_eq!(
        fs::read(dest.join("database/netbox/toc.dat")).unwrap(),
        b"dump"
    );
    assert_eq!(mode_of(&dest.join("database/netbox/toc.dat")), 0o600);
    assert_eq!(mode_of(&dest.join("site/run.sh")), 0o755);
    // The manifest itself is not extracted: it is the return value.
    assert!(!dest.join("berth-backup.json").exists());
}

#[test]
fn extract_with_filter_writes_only_what_passes_but_checks_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let (written, _) = sample_archive(tmp.path());
    let dest = restore_dir(tmp.path(), "restore");
    let mut done = 0;
    extract(
        &written.path,
        &dest,
        &common::trusted(),
        &|p| p == "database/netbox/toc.dat",
        &mut |d| done = d,
    )
    .unwrap();
    assert_eq!(done, written.manifest.total_size());
    assert_eq!(
        fs::read(dest.join("database/netbox/toc.dat")).unwrap(),
        b"dump"
    );
    let top: Vec<_> = fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(top, ["database"]);

    // A damaged byte in an entry the filter skips still fails the extraction.
    let damaged = tmp.path().join("damaged.berth.tar.zst");
    let mut bytes = fs::read(&written.path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    fs::write(&damaged, bytes).unwrap();
    let dest = restore_dir(tmp.path(), "restore2");
    let err = extract(
        &damaged,
        &dest,
        &common::trusted(),
        &|p| p == "database/netbox/toc.dat",
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, ArchiveError::Corrupt { .. }), "{err}");
}

#[test]
fn standard_tools_read_archives() {
    let have = |tool: &str| Command::new(tool).arg("--version").output().is_ok();
    if !have("zstd") || !have("tar") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (written, src) = sample_archive(tmp.path());

    // zstd checks the frame checksums and skips the index frame.
    let test = Command::new("zstd")
        .arg("-tq")
        .arg(&written.path)
        .status()
        .unwrap();
    assert!(test.success());

    let listing = Command::new("sh")
        .arg("-c")
        .arg("zstd -dc \"$1\" | tar -t")
        .arg("sh")
        .arg(&written.path)
        .output()
        .unwrap();
    assert!(listing.status.success(), "{listing:?}");
    let listed: Vec<String> = String::from_utf8(listing.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim_end_matches('/').to_owned())
        .collect();
    let mut expected: Vec<String> = written
        .manifest
        .entries
        .iter()
        .map(|e| e.path.clone())
        .collect();
    expected.push("berth-backup.json".to_owned());
    assert_eq!(listed, expected);

    // And extract the same tree, long names and links included.
    let dest = restore_dir(tmp.path(), "by-tar");
    let status = Command::new("sh")
        .arg("-c")
        .arg("zstd -dc \"$1\" | tar -x -C \"$2\"")
        .arg("sh")
        .arg(&written.path)
        .arg(&dest)
        .status()
        .unwrap();
    assert!(status.success());
    assert_same_tree(&src, &dest.join("data"));
    assert_eq!(
        fs::read(dest.join("berth-backup.json")).unwrap(),
        serde_json::to_vec_pretty(&written.manifest)
            .unwrap()
            .into_iter()
            .chain([b'\n'])
            .collect::<Vec<_>>()
    );
}

#[test]
fn truncated_archives_are_never_ok() {
    let tmp = tempfile::tempdir().unwrap();
    let (written, _) = sample_archive(tmp.path());
    let bytes = fs::read(&written.path).unwrap();
    let index_len = serde_json::to_vec_pretty(&written.manifest).unwrap().len() + 1 + 24;
    let index_start = bytes.len() - index_len;
    for cut in [
        0,
        3,
        100,
        bytes.len() / 2,
        index_start - 1,
        index_start,
        index_start + 4,
        index_start + 8,
        index_start + 100,
        bytes.len() - 17,
        bytes.len() - 16,
        bytes.len() - 8,
        bytes.len() - 1,
    ] {
        let path = tmp.path().join(format!("cut-{cut}.berth.tar.zst"));
        fs::write(&path, &bytes[..cut]).unwrap();
        let listed = read_index(&path);
        assert!(
            matches!(listed, Err(ArchiveError::Truncated { .. })),
            "read_index, cut at {cut}: {listed:?}"
        );
        let verified = verify(&path, &common::trusted(), &mut |_| {});
        assert!(
            matches!(verified, Err(ArchiveError::Truncated { .. })),
            "verify, cut at {cut}: {verified:?}"
        );
    }
    let path = tmp.path().join("cut-0.berth.tar.zst");
    assert_eq!(
        read_index(&path).unwrap_err().to_string(),
        format!(
            "`{}` is truncated: it is empty (was the copy interrupted?)",
            path.display()
        )
    );
    let path = tmp
        .path()
        .join(format!("cut-{}.berth.tar.zst", bytes.len() / 2));
    assert_eq!(
        read_index(&path).unwrap_err().to_string(),
        format!(
            "`{}` is truncated: it ends before its index (was the copy interrupted?)",
            path.display()
        )
    );
}

#[test]
fn a_damaged_byte_anywhere_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let (written, _) = sample_archive(tmp.path());
    let bytes = fs::read(&written.path).unwrap();
    let json = {
        let mut j = serde_json::to_vec_pretty(&written.manifest).unwrap();
        j.push(b'\n');
        j
    };
    // Frame header (8), JSON, data length (8), data SHA-256 (32), signature (64), public
    // key (32), length (8), magic (8).
    let index_start = bytes.len() - json.len() - 160;
    let json_start = index_start + 8;
    // A hex digit of the big file's hash in the index.
    let sha = written
        .manifest
        .entry("data/media/big.bin")
        .unwrap()
        .sha256
        .clone()
        .unwrap();
    let sha_at = json_start + json.windows(64).position(|w| w == sha.as_bytes()).unwrap();
    let cases = [
        ("zstd frame magic", 1),
        ("zstd frame header", 4),
        // Bit 0 of the window descriptor changes nothing in the content: only the
        // digest of the stored bytes tells.
        ("zstd window descriptor", 5),
        ("start of the data", 200),
        ("middle of the data", index_start / 2),
        ("end of the compressed stream", index_start - 2),
        ("index frame magic", index_start + 1),
        ("index frame length", index_start + 5),
        ("index JSON syntax", json_start),
        ("index hash", sha_at + 3),
        ("data length", bytes.len() - 152 + 1),
        ("data SHA-256", bytes.len() - 144 + 3),
        ("index length", bytes.len() - 12),
        ("signature", bytes.len() - 112 + 3),
        ("signer's public key", bytes.len() - 48 + 3),
    ];
    for (what, at) in cases {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x01;
        let path = tmp.path().join(format!("flip-{at}.berth.tar.zst"));
        fs::write(&path, &damaged).unwrap();
        let verified = verify(&path, &common::trusted(), &mut |_| {});
        // Inside the index frame, the signature no longer matches: that is found first.
        assert!(
            matches!(
                verified,
                Err(ArchiveError::Corrupt { .. } | ArchiveError::BadSignature { .. })
            ),
            "{what} (byte {at}): {verified:?}"
        );
        let dest = restore_dir(tmp.path(), &format!("restore-{at}"));
        let extracted = extract(&path, &dest, &common::trusted(), &everything, &mut |_| {});
        assert!(extracted.is_err(), "{what} (byte {at}): extract succeeded");
    }

    // A flipped byte in the middle of a stored file names the file.
    let path = tmp.path().join("flip-middle.berth.tar.zst");
    let message = verify(
        &path.with_file_name(format!("flip-{}.berth.tar.zst", index_start / 2)),
        &common::trusted(),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(message.contains("is corrupt: "), "{message}");
}

#[test]
fn a_wrong_hash_in_the_index_names_the_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tar = Vec::new();
    common::raw_file(&mut tar, "a.png", b"picture");
    let wrong = common::sha256_hex(b"other");
    let manifest = serde_json::json!({
        "format": 3,
        "meta": {},
        "entries": [{"path": "a.png", "kind": "file", "size": 7, "sha256": wrong, "mode": "0644"}],
    });
    let json = serde_json::to_vec_pretty(&manifest).unwrap();
    common::raw_file(&mut tar, "berth-backup.json", &json);
    tar.extend([0; 1024]);
    let path = tmp.path().join("x.berth.tar.zst");
    common::craft_archive(&path, &tar, &json);
    let err = verify(&path, &common::trusted(), &mut |_| {}).unwrap_err();
    let actual = common::sha256_hex(b"picture");
    assert_eq!(
        err.to_string(),
        format!(
            "`{}` is corrupt: entry `a.png` has SHA-256 {}… but the archive manifest says {}…",
            path.display(),
            &actual[..12],
            &wrong[..12]
        )
    );

    // The same archive with the right hash is fine: the crafting is sound.
    let manifest = serde_json::json!({
        "format": 3,
        "meta": {},
        "entries": [{"path": "a.png", "kind": "file", "size": 7, "sha256": actual, "mode": "0644"}],
    });
    let json = serde_json::to_vec_pretty(&manifest).unwrap();
    let mut tar = Vec::new();
    common::raw_file(&mut tar, "a.png", b"picture");
    common::raw_file(&mut tar, "berth-backup.json", &json);
    tar.extend([0; 1024]);
    common::craft_archive(&path, &tar, &json);
    verify(&path, &common::trusted(), &mut |_| {}).unwrap();
}

#[test]
fn other_files_are_not_archives() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("notes.txt");
    fs::write(&path, "hello, this is not an archive at all").unwrap();
    let err = read_index(&path).unwrap_err();
    assert!(matches!(err, ArchiveError::NotAnArchive { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "`{}` is not a berth backup archive: it does not start with a zstd frame",
            path.display()
        )
    );
    assert!(matches!(
        verify(&path, &common::trusted(), &mut |_| {}),
        Err(ArchiveError::NotAnArchive { .. })
    ));

    // A plain .tar.zst made by the standard tools has no index.
    let plain = tmp.path().join("plain.tar.zst");
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    std::io::Write::write_all(&mut encoder, &[0; 1024]).unwrap();
    fs::write(&plain, encoder.finish().unwrap()).unwrap();
    assert!(matches!(
        read_index(&plain),
        Err(ArchiveError::Truncated { .. })
    ));

    let missing = tmp.path().join("missing.berth.tar.zst");
    assert!(matches!(read_index(&missing), Err(ArchiveError::Io { .. })));

    // A newer format is refused with its own error.
    let json = br#"{"format": 4, "meta": {}, "entries": [], "new": true}"#;
    let newer = tmp.path().join("newer.berth.tar.zst");
    common::craft_archive(&newer, &[0; 1024], json);
    let err = read_index(&newer).unwrap_err();
    assert!(
        matches!(err, ArchiveError::UnsupportedFormat { format: 4, .. }),
        "{err:?}"
    );
}

#[test]
fn finish_never_replaces_an_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("app-1-20250101T000000Z.berth.tar.zst");
    let partial = tmp
        .path()
        .join("app-1-20250101T000000Z.berth.tar.zst.partial");

    let mut writer = ArchiveWriter::create(&path, WriteOptions::default()).unwrap();
    writer.add_bytes("a", b"new", 0o644).unwrap();
    assert!(partial.exists());
    assert_eq!(mode_of(&partial), 0o600);
    // Another backup got the same name meanwhile.
    fs::write(&path, b"earlier archive").unwrap();
    let err = writer.finish(Meta::default(), common::key()).unwrap_err();
    assert!(matches!(err, ArchiveError::AlreadyExists { .. }), "{err:?}");
    assert_eq!(fs::read(&path).unwrap(), b"earlier archive");
    assert!(!partial.exists());

    // Creating over an existing archive is refused at once.
    let err = ArchiveWriter::create(&path, WriteOptions::default()).unwrap_err();
    assert!(matches!(err, ArchiveError::AlreadyExists { .. }), "{err:?}");
    assert_eq!(fs::read(&path).unwrap(), b"earlier archive");
    assert!(!partial.exists());
}

#[test]
fn an_unfinished_writer_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("app-1-20250101T000000Z.berth.tar.zst");
    let partial = tmp
        .path()
        .join("app-1-20250101T000000Z.berth.tar.zst.partial");
    let mut writer = ArchiveWriter::create(&path, WriteOptions::default()).unwrap();
    writer
        .add_bytes("a", &common::random_bytes(3_000_000, 1), 0o644)
        .unwrap();

    // A second writer to the same name is refused while the first runs.
    let err = ArchiveWriter::create(&path, WriteOptions::default()).unwrap_err();
    assert!(matches!(err, ArchiveError::AlreadyExists { .. }), "{err:?}");
    assert!(partial.exists());

    drop(writer);
    assert!(!partial.exists());
    assert!(!path.exists());
}

#[test]
fn a_file_that_changes_while_read_fails_the_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("app-1-20250101T000000Z.berth.tar.zst");
    let mut writer = ArchiveWriter::create(&path, WriteOptions::default()).unwrap();
    // A procfs file reports size 0 but has content: it "grows" while read.
    let source = Path::new("/proc/self/status");
    let err = writer.add_file("status", source).unwrap_err();
    assert!(
        matches!(&err, ArchiveError::SourceChanged { path, expected: 0, .. } if path == source),
        "{err:?}"
    );
    assert!(err.to_string().contains("/proc/self/status"), "{err}");
    // The writer is abandoned: nothing more can be added, and finishing fails.
    assert!(matches!(
        writer.add_bytes("b", b"b", 0o644),
        Err(ArchiveError::Abandoned { .. })
    ));
    assert!(matches!(
        writer.finish(Meta::default(), common::key()),
        Err(ArchiveError::Abandoned { .. })
    ));
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn add_tree_skips_what_it_cannot_store() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    common::write_file(&src.join("a"), b"a", 0o644);
    let _socket = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("../../outside", src.join("up-link")).unwrap();

    // add_file refuses what is not a regular file (without blocking on a socket or FIFO).
    let other = tmp.path().join("other.berth.tar.zst");
    let mut writer = ArchiveWriter::create(&other, WriteOptions::default()).unwrap();
    for not_a_file in [src.join("sock"), src.clone()] {
        let err = writer.add_file("x", &not_a_file).unwrap_err();
        assert!(matches!(err, ArchiveError::InvalidSource { .. }), "{err:?}");
    }
    drop(writer);

    // The archive is written inside the tree it backs up.
    let path = src.join("app-1-20250101T000000Z.berth.tar.zst");
    let mut writer = ArchiveWriter::create(&path, WriteOptions::default()).unwrap();
    let skipped = writer.add_tree("data", &src).unwrap();
    let reasons: Vec<(&str, &SkipReason)> = skipped
        .iter()
        .map(|s| (s.archive_path.as_str(), &s.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            (
                "data/abs-link",
                &SkipReason::UnsafeSymlink {
                    target: "/etc/passwd".into()
                }
            ),
            (
                "data/app-1-20250101T000000Z.berth.tar.zst.partial",
                &SkipReason::ArchiveItself
            ),
            ("data/sock", &SkipReason::Special),
            (
                "data/up-link",
                &SkipReason::UnsafeSymlink {
                    target: "../../outside".into()
                }
            ),
        ]
    );
    assert_eq!(skipped[2].path, src.join("sock"));
    let written = writer.finish(Meta::default(), common::key()).unwrap();
    let paths: Vec<_> = written
        .manifest
        .entries
        .iter()
        .map(|e| e.path.as_str())
        .collect();
    assert_eq!(paths, ["data", "data/a"]);
    verify(&written.path, &common::trusted(), &mut |_| {}).unwrap();
}

#[test]
fn bad_archive_paths_are_refused_on_write() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("app-1-20250101T000000Z.berth.tar.zst");
    let mut writer = ArchiveWriter::create(&path, WriteOptions::default()).unwrap();
    for bad in [
        "",
        "/etc/passwd",
        "../x",
        "a/../../x",
        "a//b",
        "a/",
        "./a",
        "berth-backup.json",
    ] {
        let err = writer.add_bytes(bad, b"x", 0o644).unwrap_err();
        assert!(
            matches!(err, ArchiveError::InvalidPath { .. }),
            "{bad}: {err:?}"
        );
    }
    writer.add_bytes("a", b"x", 0o644).unwrap();
    let err = writer.add_bytes("a", b"y", 0o644).unwrap_err();
    assert!(matches!(err, ArchiveError::InvalidPath { .. }), "{err:?}");
    // Refused paths do not abandon the archive.
    let written = writer.finish(Meta::default(), common::key()).unwrap();
    assert_eq!(written.manifest.entries.len(), 1);
    verify(&written.path, &common::trusted(), &mut |_| {}).unwrap();
}

#[test]
fn a_tree_bringing_a_path_already_added_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("tree");
    common::write_file(&src.join("a"), b"a", 0o644);
    let path = tmp.path().join("app-1-20250101T000000Z.berth.tar.zst");
    let mut writer = ArchiveWriter::create(&path, WriteOptions::default()).unwrap();
    writer.add_bytes("t/a", b"x", 0o644).unwrap();
    let err = writer.add_tree("t", &src).unwrap_err();
    match &err {
        ArchiveError::InvalidPath { path, .. } => assert_eq!(path, "t/a"),
        other => panic!("expected InvalidPath, got {other:?}"),
    }
    assert!(matches!(
        writer.finish(Meta::default(), common::key()),
        Err(ArchiveError::Abandoned { .. })
    ));
    assert!(!path.exists());
}

#[test]
fn extraction_never_replaces_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (written, _) = sample_archive(tmp.path());
    let dest = restore_dir(tmp.path(), "restore");
    common::write_file(&dest.join("site/run.sh"), b"mine", 0o644);
    let err = extract(
        &written.path,
        &dest,
        &common::trusted(),
        &everything,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, ArchiveError::AlreadyExists { .. }), "{err:?}");
    assert_eq!(fs::read(dest.join("site/run.sh")).unwrap(), b"mine");
}

#[test]
fn single_threaded_and_other_levels_write_the_same_content() {
    let tmp = tempfile::tempdir().unwrap();
    for (i, opts) in [
        WriteOptions {
            level: 1,
            threads: 0,
            source_date_epoch: None,
        },
        WriteOptions {
            level: 19,
            threads: 1,
            source_date_epoch: None,
        },
    ]
    .into_iter()
    .enumerate()
    {
        let path = tmp.path().join(archive_name(
            "app",
            &i.to_string(),
            jiff::Timestamp::UNIX_EPOCH,
        ));
        let mut writer = ArchiveWriter::create(&path, opts).unwrap();
        writer
            .add_bytes("a", &b"abc".repeat(100_000), 0o644)
            .unwrap();
        let written = writer.finish(Meta::default(), common::key()).unwrap();
        assert!(written.size < 10_000, "{}", written.size);
        let report = verify(&written.path, &common::trusted(), &mut |_| {}).unwrap();
        assert_eq!(report.bytes, 300_000);
    }
}

#[test]
fn the_index_format_is_stable() {
    let tmp = tempfile::tempdir().unwrap();
    let created: jiff::Timestamp = "2025-03-04T05:06:07Z".parse().unwrap();
    let path = tmp.path().join(archive_name("netbox", "4.2.1", created));
    let mut writer = ArchiveWriter::create(&path, WriteOptions::default()).unwrap();
    writer
        .add_bytes("site/berth.toml", b"[site]\n", 0o640)
        .unwrap();
    writer.add_bytes("secrets.age", b"", 0o600).unwrap();
    let mut meta = Meta::new("netbox", "4.2.1", created);
    meta.insert("berth_version", "0.1.0");
    let written = writer.finish(meta, common::key()).unwrap();

    let bytes = fs::read(&written.path).unwrap();
    assert_eq!(&bytes[bytes.len() - 8..], b"BERTHSG3");
    let json_len = u64::from_le_bytes(bytes[bytes.len() - 16..bytes.len() - 8].try_into().unwrap());
    let json_len = usize::try_from(json_len).unwrap();
    let frame_start = bytes.len() - 8 - 152 - json_len;
    let frame = &bytes[frame_start..];
    assert_eq!(&frame[..4], &[0x5B, 0x2A, 0x4D, 0x18]);
    assert_eq!(
        u32::from_le_bytes(frame[4..8].try_into().unwrap()) as usize,
        json_len + 152
    );
    let json = std::str::from_utf8(&frame[8..8 + json_len]).unwrap();
    // After the JSON: the length and SHA-256 of the bytes before the frame, the 64-byte
    // signature, the signer's public key.
    let after = &frame[8 + json_len..];
    assert_eq!(
        u64::from_le_bytes(after[..8].try_into().unwrap()),
        frame_start as u64
    );
    assert_eq!(after[8..40], common::sha256_bytes(&bytes[..frame_start]));
    assert_eq!(after[104..136], common::key().public_key().to_bytes());
    insta::assert_snapshot!(json);
}

#[test]
fn writers_and_errors_can_cross_threads() {
    fn assert_send<T: Send>() {}
    fn assert_sync<T: Send + Sync>() {}
    assert_send::<ArchiveWriter>();
    assert_sync::<ArchiveError>();
    assert_sync::<berth_archive::ArchiveManifest>();
}

/// With `source_date_epoch`, the same content gives the same bytes: trees at other
/// paths, with other mtimes, owners' umasks (0664 against 0644) and thread counts.
/// Every mtime is the epoch, owners are 0, modes 0644/0755.
#[test]
fn a_reproducible_archive_is_the_same_bytes_from_another_tree() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let key = berth_archive::SigningKey::generate().unwrap();
    let epoch = 1_700_000_000;
    let mut bytes = Vec::new();
    for (i, (file_mode, exe_mode, threads)) in [(0o644, 0o755, 0), (0o664, 0o775, 4)]
        .into_iter()
        .enumerate()
    {
        let src = tmp.path().join(format!("build-{i}/tree"));
        std::fs::create_dir_all(src.join("bin")).unwrap();
        std::fs::write(src.join("a.txt"), b"alpha\n").unwrap();
        std::fs::write(src.join("bin/run"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            src.join("a.txt"),
            std::fs::Permissions::from_mode(file_mode),
        )
        .unwrap();
        std::fs::set_permissions(
            src.join("bin/run"),
            std::fs::Permissions::from_mode(exe_mode),
        )
        .unwrap();
        // The second tree's files are newer than the epoch, the first's older.
        let mtime = if i == 0 { epoch - 1000 } else { epoch + 1000 };
        for f in ["a.txt", "bin/run"] {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
            std::fs::File::options()
                .write(true)
                .open(src.join(f))
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        let path = tmp.path().join(format!("out-{i}.tar.zst"));
        let mut w = ArchiveWriter::create(
            &path,
            WriteOptions {
                level: 3,
                threads,
                source_date_epoch: Some(epoch),
            },
        )
        .unwrap();
        w.add_tree("tree", &src).unwrap();
        w.add_bytes("note", b"n", 0o600).unwrap();
        let created = jiff::Timestamp::from_second(epoch.cast_signed()).unwrap();
        w.finish(Meta::new("app", "1", created), &key).unwrap();
        bytes.push(std::fs::read(&path).unwrap());
    }
    if bytes[0] != bytes[1] {
        let at = bytes[0].iter().zip(&bytes[1]).position(|(a, b)| a != b);
        let keep = tmp.keep();
        panic!(
            "the two archives differ (sizes {} and {}, first at {at:?}; kept in {})",
            bytes[0].len(),
            bytes[1].len(),
            keep.display()
        );
    }
    let index = read_index(&tmp.path().join("out-0.tar.zst")).unwrap();
    let modes: Vec<(String, u32)> = index
        .manifest
        .entries
        .iter()
        .map(|e| (e.path.clone(), e.mode))
        .collect();
    assert_eq!(
        modes,
        [
            ("tree".to_owned(), 0o755),
            ("tree/a.txt".to_owned(), 0o644),
            ("tree/bin".to_owned(), 0o755),
            ("tree/bin/run".to_owned(), 0o755),
            ("note".to_owned(), 0o644),
        ]
    );
}
