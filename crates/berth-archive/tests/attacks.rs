//! Archives written by an attacker: whoever can write to a backup target can put any file
//! there, and whoever owns a directory being backed up can change it while it is read.
//! Each test names the attack it stops.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use berth_archive::{
    ArchiveError, ArchiveWriter, Meta, SigningKey, WriteOptions, extract, read_index,
    read_signed_index, verify,
};
use common::{TRAILER_LEN, sha256_hex, split};

fn small_archive(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("app-1-20250101T000000Z.berth.tar.zst");
    let mut writer = ArchiveWriter::create(&path, WriteOptions::default()).unwrap();
    writer.add_bytes("data/app/a.txt", b"hello", 0o644).unwrap();
    let mut meta = Meta::new("app", "1", jiff::Timestamp::UNIX_EPOCH);
    meta.insert("data_dirs", vec!["app"]);
    writer.finish(meta, common::key()).unwrap();
    path
}

fn is_empty_dir(dir: &Path) -> bool {
    fs::read_dir(dir).unwrap().next().is_none()
}

/// Attack: rewrite the index (here: point a data directory at `../../victim`) and keep the
/// original signature. The signature no longer matches: refused before anything is used.
#[test]
fn a_forged_index_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let path = small_archive(tmp.path());
    let bytes = fs::read(&path).unwrap();
    let (_, json) = split(&bytes);
    let forged_json = String::from_utf8(json.clone())
        .unwrap()
        .replace("      \"app\"\n", "      \"app/../../victim\"\n");
    assert_ne!(forged_json.as_bytes(), json.as_slice());
    // The frame is rebuilt around the original data digest, signature and public key.
    let json_pos = bytes.len() - TRAILER_LEN - json.len();
    let mut forged = bytes[..json_pos - 8].to_vec();
    forged.extend_from_slice(&0x184D_2A5B_u32.to_le_bytes());
    forged.extend_from_slice(
        &u32::try_from(forged_json.len() + TRAILER_LEN)
            .unwrap()
            .to_le_bytes(),
    );
    forged.extend_from_slice(forged_json.as_bytes());
    forged.extend_from_slice(&bytes[bytes.len() - TRAILER_LEN..bytes.len() - 16]);
    forged.extend_from_slice(&(forged_json.len() as u64).to_le_bytes());
    forged.extend_from_slice(berth_archive::INDEX_TRAILER_MAGIC);
    let forged_path = tmp.path().join("forged.berth.tar.zst");
    fs::write(&forged_path, &forged).unwrap();

    // Listing reads it (unauthenticated, and says so), but nothing that acts on it does.
    assert!(read_index(&forged_path).is_ok());
    let trusted = common::trusted();
    for err in [
        verify(&forged_path, &trusted, &mut |_| {}).unwrap_err(),
        read_signed_index(&forged_path, &trusted).unwrap_err(),
    ] {
        assert!(matches!(err, ArchiveError::BadSignature { .. }), "{err:?}");
    }
    let dest = tmp.path().join("dest");
    fs::create_dir(&dest).unwrap();
    let err = extract(&forged_path, &dest, &trusted, &|_| true, &mut |_| {}).unwrap_err();
    assert!(matches!(err, ArchiveError::BadSignature { .. }), "{err:?}");
    assert!(is_empty_dir(&dest));
}

/// Attack: build a whole new archive and sign it with a key of one's own. It is validly
/// signed, but not by a trusted key.
#[test]
fn an_archive_signed_by_another_key_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = small_archive(tmp.path());
    let bytes = fs::read(&path).unwrap();
    let (compressed, json) = split(&bytes);
    let attacker = SigningKey::generate().unwrap();
    let mut resigned = compressed.clone();
    resigned.extend(berth_archive::index_frame(&compressed, &json, &attacker).unwrap());
    let resigned_path = tmp.path().join("resigned.berth.tar.zst");
    fs::write(&resigned_path, &resigned).unwrap();

    let trusted = common::trusted();
    let err = verify(&resigned_path, &trusted, &mut |_| {}).unwrap_err();
    match &err {
        ArchiveError::UntrustedSigner { signer, .. } => {
            assert_eq!(*signer, attacker.public_key().to_string());
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("--key FILE"), "{err}");
    let dest = tmp.path().join("dest");
    fs::create_dir(&dest).unwrap();
    let err = extract(&resigned_path, &dest, &trusted, &|_| true, &mut |_| {}).unwrap_err();
    assert!(
        matches!(err, ArchiveError::UntrustedSigner { .. }),
        "{err:?}"
    );
    assert!(is_empty_dir(&dest));

    // The attacker's key trusted, the same archive is fine: only the key made it fail.
    verify(&resigned_path, &[attacker.public_key()], &mut |_| {}).unwrap();
    // With no trusted key at all, nothing is accepted.
    let err = verify(&path, &[], &mut |_| {}).unwrap_err();
    assert!(matches!(err, ArchiveError::NoTrustedKey { .. }), "{err:?}");
}

/// Attack: hand over an archive in the old unsigned format, which nothing authenticates.
#[test]
fn unsigned_format_1_archives_are_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tar = Vec::new();
    let manifest = serde_json::json!({"format": 1, "meta": {}, "entries": []});
    let json = serde_json::to_vec_pretty(&manifest).unwrap();
    common::raw_file(&mut tar, "berth-backup.json", &json);
    tar.extend([0; 1024]);
    let path = tmp.path().join("old.berth.tar.zst");
    common::craft_format1_archive(&path, &tar, &json);
    for err in [
        read_index(&path).unwrap_err(),
        verify(&path, &common::trusted(), &mut |_| {}).unwrap_err(),
    ] {
        assert!(matches!(err, ArchiveError::Unsigned { .. }), "{err:?}");
        assert!(err.to_string().contains("format 1"), "{err}");
        assert!(err.to_string().contains("take a new backup"), "{err}");
    }
}

/// Attack: a format 3 archive's signature carried over into a format 2 index frame (which
/// records no digest of the compressed bytes, so these could then be changed at will). The
/// signature does not validate as format 2's, and the manifest names format 3 anyway.
#[test]
fn a_format_3_signature_is_not_valid_in_a_format_2_frame() {
    let tmp = tempfile::tempdir().unwrap();
    let path = small_archive(tmp.path());
    let bytes = fs::read(&path).unwrap();
    let (compressed, json) = split(&bytes);
    // Format 2's index frame: JSON, signature, public key, JSON length, `BERTHSIG`.
    let signature = &bytes[bytes.len() - 112..bytes.len() - 48];
    let mut old = compressed;
    old.extend_from_slice(&0x184D_2A5B_u32.to_le_bytes());
    old.extend_from_slice(&u32::try_from(json.len() + 112).unwrap().to_le_bytes());
    old.extend_from_slice(&json);
    old.extend_from_slice(signature);
    old.extend_from_slice(&common::key().public_key().to_bytes());
    old.extend_from_slice(&(json.len() as u64).to_le_bytes());
    old.extend_from_slice(b"BERTHSIG");
    let old_path = tmp.path().join("old.berth.tar.zst");
    fs::write(&old_path, &old).unwrap();
    let err = verify(&old_path, &common::trusted(), &mut |_| {}).unwrap_err();
    assert!(matches!(err, ArchiveError::BadSignature { .. }), "{err:?}");
    // Unauthenticated, the frame reads as format 2 but its manifest says 3.
    let err = read_index(&old_path).unwrap_err();
    assert!(
        err.to_string()
            .contains("its index says format 3, but its index frame is of format 2"),
        "{err}"
    );
}

/// The genuine archive's tar stream, decompressed.
fn genuine_tar(bytes: &[u8]) -> Vec<u8> {
    zstd::decode_all(&split(bytes).0[..]).unwrap()
}

/// Attack (or damage): bytes that decompress to the same entries, or to entries that
/// differ only in what the manifest does not list (an mtime), under the genuine signed
/// index. Checking the decoded content passes them; the signed digest of the stored bytes
/// does not.
#[test]
fn data_that_decodes_alike_is_not_the_signed_data() {
    let tmp = tempfile::tempdir().unwrap();
    let path = small_archive(tmp.path());
    let bytes = fs::read(&path).unwrap();
    let (compressed, _) = split(&bytes);
    // The genuine index frame, signature and all.
    let frame = &bytes[compressed.len()..];
    let tar = genuine_tar(&bytes);

    // The first entry's mtime changed (and its header checksum made right again).
    let mut retimed = tar.clone();
    let mut header = tar::Header::new_old();
    header.as_mut_bytes().copy_from_slice(&retimed[..512]);
    header.set_mtime(header.mtime().unwrap() + 3600);
    header.set_cksum();
    retimed[..512].copy_from_slice(header.as_bytes());
    for (what, content) in [("recompressed", &tar), ("retimed", &retimed)] {
        // Compressed harder, then padded with a skippable frame (which decoders skip) to
        // the length the signed index gives.
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 19).unwrap();
        encoder.include_checksum(true).unwrap();
        std::io::Write::write_all(&mut encoder, content).unwrap();
        let mut forged = encoder.finish().unwrap();
        let pad = compressed.len() - 8 - forged.len();
        forged.extend_from_slice(&0x184D_2A50_u32.to_le_bytes());
        forged.extend_from_slice(&u32::try_from(pad).unwrap().to_le_bytes());
        forged.resize(compressed.len(), 0);
        assert_ne!(forged, compressed);
        assert_eq!(zstd::decode_all(&forged[..]).unwrap(), *content);
        forged.extend_from_slice(frame);
        let forged_path = tmp.path().join(format!("{what}.berth.tar.zst"));
        fs::write(&forged_path, &forged).unwrap();
        let err = verify(&forged_path, &common::trusted(), &mut |_| {}).unwrap_err();
        assert!(
            err.to_string().contains("not what was signed"),
            "{what}: {err}"
        );
    }
}

/// Attack: a zstd skippable frame (ignored by every zstd decoder) slipped in between the
/// compressed data and the index, to carry anything along with a genuine archive.
#[test]
fn bytes_between_the_data_and_the_index_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = small_archive(tmp.path());
    let bytes = fs::read(&path).unwrap();
    let (compressed, _) = split(&bytes);
    let mut stuffed = compressed.clone();
    stuffed.extend_from_slice(&0x184D_2A50_u32.to_le_bytes());
    stuffed.extend_from_slice(&4u32.to_le_bytes());
    stuffed.extend_from_slice(b"evil");
    stuffed.extend_from_slice(&bytes[compressed.len()..]);
    let stuffed_path = tmp.path().join("stuffed.berth.tar.zst");
    fs::write(&stuffed_path, &stuffed).unwrap();
    assert_eq!(
        zstd::decode_all(&stuffed[..compressed.len() + 12]).unwrap(),
        genuine_tar(&bytes)
    );
    let err = verify(&stuffed_path, &common::trusted(), &mut |_| {}).unwrap_err();
    assert!(
        err.to_string().contains("bytes were inserted or removed"),
        "{err}"
    );
    // Bytes after the index: the file no longer ends with it.
    let mut trailing = bytes.clone();
    trailing.push(0);
    let trailing_path = tmp.path().join("trailing.berth.tar.zst");
    fs::write(&trailing_path, &trailing).unwrap();
    assert!(verify(&trailing_path, &common::trusted(), &mut |_| {}).is_err());
}

/// Attack: an archive (signed by the trusted key, e.g. made from a data directory where a
/// service user planted them) carries setuid/setgid/sticky entries. Restored as root,
/// they would be root-owned setuid files. Extraction drops the bits.
#[test]
fn setuid_setgid_and_sticky_bits_never_come_out_of_an_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tar = Vec::new();
    let exe = b"#!/bin/sh\nid\n";
    tar.extend(common::raw_header(
        "d/",
        tar::EntryType::Directory,
        0,
        0o3777,
        "",
    ));
    tar.extend(common::raw_header(
        "d/suid",
        tar::EntryType::Regular,
        exe.len() as u64,
        0o4755,
        "",
    ));
    tar.extend_from_slice(exe);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    tar.extend(common::raw_header(
        "d/sgid",
        tar::EntryType::Regular,
        exe.len() as u64,
        0o2755,
        "",
    ));
    tar.extend_from_slice(exe);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    let manifest = serde_json::json!({"format": 3, "meta": {}, "entries": [
        {"path": "d", "kind": "dir", "size": 0, "mode": "3777"},
        {"path": "d/suid", "kind": "file", "size": exe.len(), "sha256": sha256_hex(exe), "mode": "4755"},
        {"path": "d/sgid", "kind": "file", "size": exe.len(), "sha256": sha256_hex(exe), "mode": "2755"},
    ]});
    let json = serde_json::to_vec_pretty(&manifest).unwrap();
    common::raw_file(&mut tar, "berth-backup.json", &json);
    tar.extend([0; 1024]);
    let path = tmp.path().join("suid.berth.tar.zst");
    common::craft_archive(&path, &tar, &json);

    let dest = tmp.path().join("dest");
    fs::create_dir(&dest).unwrap();
    extract(&path, &dest, &common::trusted(), &|_| true, &mut |_| {}).unwrap();
    assert_eq!(common::mode_of(&dest.join("d")), 0o777);
    assert_eq!(common::mode_of(&dest.join("d/suid")), 0o755);
    assert_eq!(common::mode_of(&dest.join("d/sgid")), 0o755);
}

/// Attack: the owner of a directory being backed up replaces a subdirectory with a
/// symlink to a root-only directory while the backup reads the tree. Walking by path
/// would then read the root-only files into the archive (and a restore would give them
/// to that user). Walking by directory descriptors keeps reading the real directory.
#[test]
fn a_directory_swapped_for_a_symlink_while_writing_is_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let secret = tmp.path().join("root-only");
    common::write_file(&secret.join("b"), b"SECRET", 0o600);
    // `a-big` is copied first and takes several progress callbacks; `b` comes after.
    common::write_file(
        &src.join("d/a-big"),
        &common::random_bytes(4 << 20, 3),
        0o644,
    );
    common::write_file(&src.join("d/b"), b"ordinary", 0o644);

    let path = tmp.path().join("app-1-20250101T000000Z.berth.tar.zst");
    let mut writer = ArchiveWriter::create(&path, WriteOptions::default()).unwrap();
    let swapped = Arc::new(AtomicBool::new(false));
    let (flag, d, moved, target) = (
        swapped.clone(),
        src.join("d"),
        src.join("d-moved"),
        secret.clone(),
    );
    writer.on_progress(move |_| {
        if !flag.swap(true, Ordering::SeqCst) {
            fs::rename(&d, &moved).unwrap();
            std::os::unix::fs::symlink(&target, &d).unwrap();
        }
    });
    writer.add_tree("data", &src).unwrap();
    let written = writer.finish(Meta::default(), common::key()).unwrap();
    assert!(swapped.load(Ordering::SeqCst), "the swap happened");

    let dest = tmp.path().join("dest");
    fs::create_dir(&dest).unwrap();
    extract(
        &written.path,
        &dest,
        &common::trusted(),
        &|_| true,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(fs::read(dest.join("data/d/b")).unwrap(), b"ordinary");
}

/// Attack: replace the data directory itself, or a directory above it, with a symlink
/// before the backup starts. The writer refuses rather than follow it.
#[test]
fn symlinked_tree_roots_and_parents_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("root-only");
    common::write_file(&secret.join("shadow"), b"SECRET", 0o600);
    let base = tmp.path().join("data");
    fs::create_dir_all(base.join("app")).unwrap();
    std::os::unix::fs::symlink(&secret, base.join("app/media")).unwrap();
    std::os::unix::fs::symlink(&secret, base.join("linked-app")).unwrap();
    fs::create_dir_all(secret.join("media")).unwrap();
    std::os::unix::fs::symlink(secret.join("shadow"), base.join("app/file-link")).unwrap();

    let path = tmp.path().join("app-1-20250101T000000Z.berth.tar.zst");
    let mut writer = ArchiveWriter::create(&path, WriteOptions::default()).unwrap();
    let err = writer
        .add_tree("data/a", &base.join("app/media"))
        .unwrap_err();
    assert!(err.to_string().contains("symlink"), "{err}");
    drop(writer);
    let mut writer = ArchiveWriter::create(&path, WriteOptions::default()).unwrap();
    // `linked-app/media` exists behind the link, but the link is a component of the path.
    let err = writer
        .add_tree_beneath("data/b", &base, "linked-app/media")
        .unwrap_err();
    assert!(err.to_string().contains("symlink"), "{err}");
    drop(writer);
    let mut writer = ArchiveWriter::create(&path, WriteOptions::default()).unwrap();
    let err = writer
        .add_file("x", &base.join("app/file-link"))
        .unwrap_err();
    assert!(matches!(err, ArchiveError::InvalidSource { .. }), "{err:?}");
    drop(writer);
    // Without links, `add_tree_beneath` adds the tree.
    let mut writer = ArchiveWriter::create(&path, WriteOptions::default()).unwrap();
    common::write_file(&base.join("app/real/f"), b"f", 0o644);
    writer
        .add_tree_beneath("data/c", &base, "app/real")
        .unwrap();
    let written = writer.finish(Meta::default(), common::key()).unwrap();
    assert!(written.manifest.entry("data/c/f").is_some());
}

/// The file being written is never opened through a symlink planted at its name.
#[test]
fn the_partial_file_is_never_a_planted_symlink() {
    let tmp = tempfile::tempdir().unwrap();
    let victim = tmp.path().join("victim");
    fs::write(&victim, b"keep").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
    let path = tmp.path().join("app-1-20250101T000000Z.berth.tar.zst");
    std::os::unix::fs::symlink(
        &victim,
        tmp.path()
            .join("app-1-20250101T000000Z.berth.tar.zst.partial"),
    )
    .unwrap();
    let err = ArchiveWriter::create(&path, WriteOptions::default()).unwrap_err();
    assert!(matches!(err, ArchiveError::AlreadyExists { .. }), "{err:?}");
    assert_eq!(fs::read(&victim).unwrap(), b"keep");
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn valid_archive() -> &'static [u8] {
        static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        BYTES.get_or_init(|| {
            let tmp = tempfile::tempdir().unwrap();
            let path = small_archive(tmp.path());
            fs::read(path).unwrap()
        })
    }

    /// Runs every reader on `bytes`; none may panic, whatever they return.
    fn read_all_ways(bytes: &[u8]) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.berth.tar.zst");
        fs::write(&path, bytes).unwrap();
        let trusted = common::trusted();
        let _ = read_index(&path);
        let _ = read_signed_index(&path, &trusted);
        let _ = verify(&path, &trusted, &mut |_| {});
        let dest = tmp.path().join("dest");
        fs::create_dir(&dest).unwrap();
        let _ = extract(&path, &dest, &trusted, &|_| true, &mut |_| {});
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        /// Damaged archives: bytes flipped, cut or inserted anywhere.
        #[test]
        fn mutated_archives_never_panic(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
            cut in proptest::option::of(any::<prop::sample::Index>()),
            insert in proptest::option::of((any::<prop::sample::Index>(), proptest::collection::vec(any::<u8>(), 1..64))),
        ) {
            let mut bytes = valid_archive().to_vec();
            for (at, value) in flips {
                let i = at.index(bytes.len());
                bytes[i] ^= value;
            }
            if let Some((at, data)) = insert {
                let i = at.index(bytes.len());
                bytes.splice(i..i, data);
            }
            if let Some(at) = cut {
                bytes.truncate(at.index(bytes.len()));
            }
            read_all_ways(&bytes);
        }

        /// Random bytes, with and without a well-formed trailer.
        #[test]
        fn random_files_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096), trailer in any::<bool>()) {
            let mut bytes = data;
            if trailer {
                bytes.extend_from_slice(&(bytes.len() as u64 / 2).to_le_bytes());
                bytes.extend_from_slice(berth_archive::INDEX_TRAILER_MAGIC);
            }
            read_all_ways(&bytes);
        }

        /// Indexes the trusted key signed, but with any JSON in them: the checks after the
        /// signature must hold too (a signer's bug must not become a panic).
        #[test]
        fn signed_garbage_indexes_never_panic(json in "\\PC{0,200}", entries in proptest::collection::vec(("[a-z./]{0,12}", "(file|dir|symlink|x)", 0u64..10, "[0-7]{1,5}", proptest::option::of("[a-z./]{0,8}")), 0..5)) {
            let (compressed, _) = split(valid_archive());
            for body in [json.into_bytes(), serde_json::to_vec(&serde_json::json!({
                "format": 3,
                "meta": {},
                "entries": entries.iter().map(|(p, k, s, m, t)| serde_json::json!({
                    "path": p, "kind": k, "size": s, "mode": m, "target": t,
                    "sha256": "00".repeat(32),
                })).collect::<Vec<_>>(),
            })).unwrap()] {
                let mut bytes = compressed.clone();
                bytes.extend(berth_archive::index_frame(&compressed, &body, common::key()).unwrap());
                read_all_ways(&bytes);
            }
        }
    }
}

fn archive_at(dir: &Path, created: &str, content: &[u8]) -> std::path::PathBuf {
    let created: jiff::Timestamp = created.parse().unwrap();
    let path = dir.join(berth_archive::archive_name("app", "1", created));
    let mut writer = ArchiveWriter::create(&path, WriteOptions::default()).unwrap();
    writer.add_bytes("data/app/a.txt", content, 0o644).unwrap();
    writer
        .finish(Meta::new("app", "1", created), common::key())
        .unwrap();
    path
}

/// Attack: whoever can write to the backup target swaps the archive file after its
/// signature was checked and before it is extracted. The opened archive is read through
/// its descriptor only, so what is extracted is what was authenticated.
#[test]
fn the_authenticated_file_is_the_one_extracted() {
    let tmp = tempfile::tempdir().unwrap();
    let checked = archive_at(tmp.path(), "2025-01-02T00:00:00Z", b"checked");
    let other_dir = tmp.path().join("other");
    fs::create_dir(&other_dir).unwrap();
    let swapped = archive_at(&other_dir, "2025-01-02T00:00:00Z", b"swapped in");
    let archive = berth_archive::Archive::open(&checked, &common::trusted()).unwrap();
    fs::rename(&swapped, &checked).unwrap();
    let dest = tmp.path().join("dest");
    fs::create_dir(&dest).unwrap();
    archive.extract(&dest, &|_| true, &mut |_| {}).unwrap();
    assert_eq!(fs::read(dest.join("data/app/a.txt")).unwrap(), b"checked");
    archive.verify(&mut |_| {}).unwrap();
}

/// Attack: a genuine but older archive is copied over last night's name, so a restore of
/// "the latest backup" silently brings back old data. The signed metadata says when it
/// was made: a name that disagrees is refused everywhere an archive is trusted.
#[test]
fn an_older_archive_under_a_newer_name_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let old = archive_at(tmp.path(), "2025-01-01T00:00:00Z", b"old");
    let newer_name = tmp.path().join(berth_archive::archive_name(
        "app",
        "1",
        "2025-01-02T00:00:00Z".parse().unwrap(),
    ));
    fs::copy(&old, &newer_name).unwrap();
    let trusted = common::trusted();
    let dest = tmp.path().join("dest");
    fs::create_dir(&dest).unwrap();
    for err in [
        verify(&newer_name, &trusted, &mut |_| {}).unwrap_err(),
        extract(&newer_name, &dest, &trusted, &|_| true, &mut |_| {}).unwrap_err(),
        read_signed_index(&newer_name, &trusted).unwrap_err(),
    ] {
        match &err {
            ArchiveError::NameMismatch { signed, .. } => {
                assert_eq!(signed, "app-1-20250101T000000Z.berth.tar.zst");
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(is_empty_dir(&dest));
    // Another app or version in the name is refused the same way.
    let other_app = tmp.path().join("other-1-20250101T000000Z.berth.tar.zst");
    fs::copy(&old, &other_app).unwrap();
    assert!(matches!(
        verify(&other_app, &trusted, &mut |_| {}),
        Err(ArchiveError::NameMismatch { .. })
    ));
    // Its own name, or a name that is no archive name (and so claims nothing), is fine.
    verify(&old, &trusted, &mut |_| {}).unwrap();
    let plain = tmp.path().join("copy.tar.zst");
    fs::copy(&old, &plain).unwrap();
    verify(&plain, &trusted, &mut |_| {}).unwrap();
}

/// Attack: an index whose JSON is not even valid, signed by another key. Nothing in it is
/// parsed before the signature checks out, so the refusal is about the signer, not about
/// a parse error a bug in the JSON parser could have turned into something worse.
#[test]
fn the_index_is_authenticated_before_it_is_parsed() {
    let tmp = tempfile::tempdir().unwrap();
    let path = small_archive(tmp.path());
    let (compressed, _) = split(&fs::read(&path).unwrap());
    let attacker = SigningKey::generate().unwrap();
    for json in [&b"{\"format\": 99}"[..], b"not json at all \xff"] {
        let mut crafted = compressed.clone();
        crafted.extend(berth_archive::index_frame(&compressed, json, &attacker).unwrap());
        let crafted_path = tmp.path().join("crafted.berth.tar.zst");
        fs::write(&crafted_path, &crafted).unwrap();
        let err = verify(&crafted_path, &common::trusted(), &mut |_| {}).unwrap_err();
        assert!(
            matches!(err, ArchiveError::UntrustedSigner { .. }),
            "{err:?}"
        );
    }
}

/// Attack: an index that claims to be 70 MiB long (up to 4 GiB fit in its length field),
/// so that listing or verifying allocates and reads it all. Refused from its length alone.
#[test]
fn an_oversized_index_is_refused_before_it_is_read() {
    use std::os::unix::fs::FileExt;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("huge.berth.tar.zst");
    let json_len: u64 = 70 * 1024 * 1024;
    let trailer_len = TRAILER_LEN as u64;
    let file_len = json_len + 8 + trailer_len + 1024;
    let file = fs::File::create(&path).unwrap();
    file.set_len(file_len).unwrap();
    file.write_all_at(&[0x28, 0xB5, 0x2F, 0xFD], 0).unwrap();
    let frame_start = file_len - json_len - 8 - trailer_len;
    let mut header = 0x184D_2A5B_u32.to_le_bytes().to_vec();
    header.extend(u32::try_from(json_len + trailer_len).unwrap().to_le_bytes());
    file.write_all_at(&header, frame_start).unwrap();
    let mut trailer = frame_start.to_le_bytes().to_vec();
    trailer.extend([0; 32 + 64]);
    trailer.extend(common::key().public_key().to_bytes());
    trailer.extend(json_len.to_le_bytes());
    trailer.extend(berth_archive::INDEX_TRAILER_MAGIC);
    file.write_all_at(&trailer, file_len - trailer_len).unwrap();
    drop(file);
    for err in [
        read_index(&path).unwrap_err(),
        verify(&path, &common::trusted(), &mut |_| {}).unwrap_err(),
    ] {
        let text = err.to_string();
        assert!(
            text.contains(&format!("more than the {}", berth_archive::MAX_INDEX_BYTES)),
            "{text}"
        );
    }
}

/// Attack: a service user hard-links a file it cannot read (`ln /etc/shadow
/// data/app/media/x`, possible where `fs.protected_hardlinks=0`); root's backup would
/// store the content and a restore would hand the copy to that user. A hard-linked file
/// not owned by the owner of the tree is refused, and nothing is kept of the archive.
#[test]
#[allow(clippy::print_stderr)] // a skipped test says why
fn a_hard_link_to_another_owners_file_is_refused() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: making files of another owner needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("shadow");
    fs::write(&secret, "root:secret\n").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let tree = tmp.path().join("media");
    fs::create_dir(&tree).unwrap();
    let user = (54_321, 54_321);
    std::os::unix::fs::chown(&tree, Some(user.0), Some(user.1)).unwrap();
    // The user's own hard links are fine.
    fs::write(tree.join("mine"), "mine\n").unwrap();
    std::os::unix::fs::chown(tree.join("mine"), Some(user.0), Some(user.1)).unwrap();
    fs::hard_link(tree.join("mine"), tree.join("mine-too")).unwrap();
    let ok = tmp.path().join(berth_archive::archive_name(
        "app",
        "1",
        jiff::Timestamp::UNIX_EPOCH,
    ));
    let mut writer = ArchiveWriter::create(&ok, WriteOptions::default()).unwrap();
    writer.add_tree("data/media", &tree).unwrap();
    writer
        .finish(
            Meta::new("app", "1", jiff::Timestamp::UNIX_EPOCH),
            common::key(),
        )
        .unwrap();

    fs::hard_link(&secret, tree.join("x")).unwrap();
    let path = tmp.path().join("app-1-20250101T000000Z.berth.tar.zst");
    let mut writer = ArchiveWriter::create(&path, WriteOptions::default()).unwrap();
    let err = writer.add_tree("data/media", &tree).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("hard link") && text.contains("/media/x"),
        "{text}"
    );
    drop(writer);
    assert!(!path.exists());
    let mut partial = path.into_os_string();
    partial.push(".partial");
    assert!(!Path::new(&partial).exists());
}
