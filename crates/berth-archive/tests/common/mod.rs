//! Helpers shared by the integration tests.

#![allow(dead_code)] // each test file uses a different subset

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use berth_archive::{
    ArchiveWriter, Meta, PublicKey, SigningKey, WriteOptions, Written, archive_name,
};

/// The key the tests sign with (one per test process).
pub fn key() -> &'static SigningKey {
    static KEY: std::sync::OnceLock<SigningKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate().unwrap())
}

/// The keys the tests trust: [`key`]'s public half.
pub fn trusted() -> Vec<PublicKey> {
    vec![key().public_key()]
}

/// Deterministic pseudo-random bytes (xorshift), incompressible enough for the tests.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn write_file(path: &Path, data: &[u8], mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

pub fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

/// A source tree with nested directories, an empty file, a 5 MB random file, symlinks
/// and various modes.
pub fn sample_tree(root: &Path) {
    fs::create_dir_all(root.join("media/nested/deeper")).unwrap();
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    write_file(&root.join("empty"), b"", 0o644);
    write_file(&root.join("secret.key"), b"not really a secret\n", 0o600);
    write_file(&root.join("run.sh"), b"#!/bin/sh\necho hi\n", 0o755);
    write_file(
        &root.join("media/big.bin"),
        &random_bytes(5_000_000, 7),
        0o640,
    );
    write_file(
        &root.join("media/nested/deeper/text.txt"),
        &b"compressible text\n".repeat(10_000),
        0o644,
    );
    let long_name = format!("media/nested/{}", "long-name-".repeat(15));
    write_file(&root.join(long_name), b"long", 0o644);
    std::os::unix::fs::symlink("big.bin", root.join("media/link-to-big")).unwrap();
    std::os::unix::fs::symlink("../secret.key", root.join("media/up-link")).unwrap();
    std::os::unix::fs::symlink(
        format!("nested/{}", "x".repeat(150)),
        root.join("media/long-target"),
    )
    .unwrap();
    fs::set_permissions(root.join("media/nested"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::set_permissions(root.join("empty-dir"), fs::Permissions::from_mode(0o700)).unwrap();
}

/// Writes an archive of `sample_tree` (as `data`) plus a file and some bytes.
pub fn sample_archive(dir: &Path) -> (Written, PathBuf) {
    let src = dir.join("src");
    sample_tree(&src);
    let created: jiff::Timestamp = "2025-03-04T05:06:07Z".parse().unwrap();
    let path = dir.join(archive_name("netbox", "4.2.1", created));
    let mut writer = ArchiveWriter::create(&path, WriteOptions::default()).unwrap();
    let skipped = writer.add_tree("data", &src).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    writer.add_file("site/run.sh", &src.join("run.sh")).unwrap();
    writer
        .add_bytes("database/netbox/toc.dat", b"dump", 0o600)
        .unwrap();
    let mut meta = Meta::new("netbox", "4.2.1", created);
    meta.insert("hostname", "box1");
    (writer.finish(meta, key()).unwrap(), src)
}

/// Compares every file, directory and symlink under `a` and `b`: content, mode, mtime of
/// files and symlink targets.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let mut names_a: Vec<_> = fs::read_dir(a)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let mut names_b: Vec<_> = fs::read_dir(b)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names_a.sort();
    names_b.sort();
    assert_eq!(names_a, names_b, "entries of {}", a.display());
    for name in names_a {
        let (pa, pb) = (a.join(&name), b.join(&name));
        let (ma, mb) = (
            fs::symlink_metadata(&pa).unwrap(),
            fs::symlink_metadata(&pb).unwrap(),
        );
        assert_eq!(ma.file_type(), mb.file_type(), "{}", pa.display());
        if ma.file_type().is_symlink() {
            assert_eq!(fs::read_link(&pa).unwrap(), fs::read_link(&pb).unwrap());
            continue;
        }
        assert_eq!(mode_of(&pa), mode_of(&pb), "mode of {}", pa.display());
        let secs = |m: &fs::Metadata| {
            m.modified()
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        };
        assert_eq!(secs(&ma), secs(&mb), "mtime of {}", pa.display());
        if ma.is_dir() {
            assert_same_tree(&pa, &pb);
        } else {
            assert!(
                fs::read(&pa).unwrap() == fs::read(&pb).unwrap(),
                "content of {}",
                pa.display()
            );
        }
    }
}

/// Builds an archive by hand: `tar` compressed with a checksum, then an index frame
/// holding `manifest_json` and the digest of the compressed bytes, signed with the tests'
/// [`key`].
pub fn craft_archive(path: &Path, tar: &[u8], manifest_json: &[u8]) {
    craft_archive_signed_by(path, tar, manifest_json, key());
}

/// As [`craft_archive`], signed by `signer`.
pub fn craft_archive_signed_by(path: &Path, tar: &[u8], manifest_json: &[u8], signer: &SigningKey) {
    let mut out = compress(tar);
    let frame = berth_archive::index_frame(&out, manifest_json, signer).unwrap();
    out.extend_from_slice(&frame);
    fs::write(path, out).unwrap();
}

/// An archive in the old, unsigned format 1.
pub fn craft_format1_archive(path: &Path, tar: &[u8], manifest_json: &[u8]) {
    let mut out = compress(tar);
    out.extend_from_slice(&0x184D_2A5B_u32.to_le_bytes());
    out.extend_from_slice(
        &u32::try_from(manifest_json.len() + 16)
            .unwrap()
            .to_le_bytes(),
    );
    out.extend_from_slice(manifest_json);
    out.extend_from_slice(&(manifest_json.len() as u64).to_le_bytes());
    out.extend_from_slice(b"BERTHIDX");
    fs::write(path, out).unwrap();
}

/// The bytes after the manifest JSON in a (format 3) index frame.
pub const TRAILER_LEN: usize = 8 + 32 + 64 + 32 + 8 + 8;

/// Splits an archive into its compressed tar stream and its index JSON.
pub fn split(bytes: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let json_len = usize::try_from(u64::from_le_bytes(
        bytes[bytes.len() - 16..bytes.len() - 8].try_into().unwrap(),
    ))
    .unwrap();
    let frame_start = bytes.len() - 8 - TRAILER_LEN - json_len;
    (
        bytes[..frame_start].to_vec(),
        bytes[frame_start + 8..frame_start + 8 + json_len].to_vec(),
    )
}

pub fn compress(tar: &[u8]) -> Vec<u8> {
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    encoder.include_checksum(true).unwrap();
    encoder.write_all(tar).unwrap();
    encoder.finish().unwrap()
}

/// A raw tar header block, with the name and link name written as given (no checks).
pub fn raw_header(name: &str, kind: tar::EntryType, size: u64, mode: u32, link: &str) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(0);
    let old = header.as_old_mut();
    old.name[..name.len()].copy_from_slice(name.as_bytes());
    old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    header.set_cksum();
    header.as_bytes().to_vec()
}

/// Appends one file entry (header, data, padding) to a raw tar.
pub fn raw_file(tar: &mut Vec<u8>, name: &str, data: &[u8]) {
    tar.extend(raw_header(
        name,
        tar::EntryType::Regular,
        data.len() as u64,
        0o644,
        "",
    ));
    tar.extend_from_slice(data);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

pub fn sha256_bytes(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}
