//! Archives of format 2, as the previous berth wrote them (the fixture in
//! `fixtures/format2`, described by its `made.json`): read, verified and extracted with
//! every check that format allows, never written.
//!
//! A format 2 index frame is: the skippable frame header (8 bytes), the manifest JSON, the
//! signature over the context `berth archive index v2` and the JSON (64), the signer's
//! public key (32), the JSON's length (8) and `BERTHSIG`.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::Digest;

use berth_archive::{
    Archive, ArchiveError, ArchiveWriter, Meta, PublicKey, WriteOptions, extract, read_index,
    read_signed_index, verify,
};

/// The fixture's name, which its signed metadata gives.
const NAME: &str = "demo-1.0-20250601T120000Z.berth.tar.zst";

const FIXTURE: &[u8] = include_bytes!("fixtures/format2/demo-1.0-20250601T120000Z.berth.tar.zst");

/// The bytes after the manifest JSON in a format 2 index frame.
const TRAILER2_LEN: usize = 64 + 32 + 8 + 8;

/// The key that signed the fixture (its secret half was discarded).
fn signer() -> PublicKey {
    PublicKey::parse(include_str!("fixtures/format2/signer.pub")).unwrap()
}

/// The content of `data/sub/blob.bin` in the fixture.
fn blob() -> Vec<u8> {
    (0u32..3000)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0])
        .collect()
}

/// A format 2 archive's parts: the compressed tar stream, the manifest JSON and the
/// signature.
struct Parts {
    data: Vec<u8>,
    json: Vec<u8>,
    signature: Vec<u8>,
}

fn split2(bytes: &[u8]) -> Parts {
    assert_eq!(&bytes[bytes.len() - 8..], b"BERTHSIG");
    let json_len = usize::try_from(u64::from_le_bytes(
        bytes[bytes.len() - 16..bytes.len() - 8].try_into().unwrap(),
    ))
    .unwrap();
    let frame_start = bytes.len() - 8 - TRAILER2_LEN - json_len;
    let json_end = frame_start + 8 + json_len;
    Parts {
        data: bytes[..frame_start].to_vec(),
        json: bytes[frame_start + 8..json_end].to_vec(),
        signature: bytes[json_end..json_end + 64].to_vec(),
    }
}

/// Writes `bytes` as `name` in `dir`.
fn place(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

fn compress(tar: &[u8], level: i32) -> Vec<u8> {
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), level).unwrap();
    encoder.include_checksum(true).unwrap();
    std::io::Write::write_all(&mut encoder, tar).unwrap();
    encoder.finish().unwrap()
}

/// What the manifest and the checks of format 2 cover of each tar entry: path, type,
/// mode, size, content and link target.
type Described = (String, u8, u32, u64, Vec<u8>, Option<Vec<u8>>);

fn described(tar: &[u8]) -> Result<Vec<Described>, std::io::Error> {
    let mut archive = tar::Archive::new(tar);
    let mut out = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let header = entry.header().clone();
        let mut content = Vec::new();
        entry.read_to_end(&mut content)?;
        out.push((
            String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
            header.entry_type().as_byte(),
            header.mode()?,
            header.size()?,
            content,
            entry.link_name_bytes().map(std::borrow::Cow::into_owned),
        ));
    }
    Ok(out)
}

#[test]
fn a_format_2_archive_verifies_and_extracts() {
    let tmp = tempfile::tempdir().unwrap();
    let path = place(tmp.path(), NAME, FIXTURE);
    let trusted = [signer()];

    let listed = read_index(&path).unwrap();
    assert_eq!(listed.manifest.format, 2);
    assert_eq!(listed.claimed_signer, signer());
    let manifest = read_signed_index(&path, &trusted).unwrap();
    assert_eq!(manifest, listed.manifest);
    assert_eq!(manifest.meta.app(), Some("demo"));
    assert_eq!(manifest.entries.len(), 7);

    let report = verify(&path, &trusted, &mut |_| {}).unwrap();
    assert_eq!(report.format, 2);
    assert_eq!(
        (report.entries, report.files, report.bytes),
        (7, 4, 48 + 3000 + 21)
    );
    assert_eq!(report.archive_bytes, FIXTURE.len() as u64);
    assert_eq!(report.signer, signer());
    let note = report.format_note.unwrap();
    assert!(!note.contains('\n'), "{note}");
    for said in [
        "format 2",
        "content",
        "not the compressed bytes",
        "`berth backup create`",
    ] {
        assert!(note.contains(said), "{said:?} not in {note:?}");
    }
    let opened = Archive::open(&path, &trusted).unwrap();
    assert_eq!((opened.format(), opened.format_note()), (2, Some(note)));

    let dest = tmp.path().join("restore");
    fs::create_dir(&dest).unwrap();
    let extracted = extract(&path, &dest, &trusted, &|_| true, &mut |_| {}).unwrap();
    assert_eq!(extracted, manifest);
    assert_eq!(
        fs::read(dest.join("data/notes.txt")).unwrap(),
        b"format 2 archive, written by the previous berth\n"
    );
    assert_eq!(fs::read(dest.join("data/sub/blob.bin")).unwrap(), blob());
    assert_eq!(fs::read(dest.join("data/empty")).unwrap(), b"");
    assert_eq!(
        fs::read(dest.join("config/site.toml")).unwrap(),
        b"[site]\nname = \"demo\"\n"
    );
    assert_eq!(
        fs::read_link(dest.join("data/link")).unwrap(),
        Path::new("notes.txt")
    );
    assert_eq!(common::mode_of(&dest.join("data/notes.txt")), 0o640);
    assert_eq!(common::mode_of(&dest.join("data/sub/blob.bin")), 0o600);
    assert_eq!(common::mode_of(&dest.join("data/sub")), 0o750);

    // Signed, but not by a trusted key.
    let err = verify(&path, &common::trusted(), &mut |_| {}).unwrap_err();
    assert!(
        matches!(err, ArchiveError::UntrustedSigner { .. }),
        "{err:?}"
    );
}

/// A new archive is of format 3 and its report carries no note.
#[test]
fn a_new_archive_is_of_format_3() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("new.tar.zst");
    let mut writer = ArchiveWriter::create(&path, WriteOptions::default()).unwrap();
    writer.add_bytes("a", b"a\n", 0o644).unwrap();
    writer.finish(Meta::default(), common::key()).unwrap();
    assert!(fs::read(&path).unwrap().ends_with(b"BERTHSG3"));
    let report = verify(&path, &common::trusted(), &mut |_| {}).unwrap();
    assert_eq!((report.format, report.format_note), (3, None));
    let opened = Archive::open(&path, &common::trusted()).unwrap();
    assert_eq!((opened.format(), opened.format_note()), (3, None));
}

/// Every byte of a format 2 index frame is covered: its signature covers the JSON, and
/// every other field has the one value that goes with it.
#[test]
fn every_flipped_byte_of_a_format_2_index_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let trusted = [signer()];
    let frame_start = split2(FIXTURE).data.len();
    let path = tmp.path().join("flipped.tar.zst");
    let mut kinds = BTreeMap::new();
    for at in frame_start..FIXTURE.len() {
        for mask in [0x01, 0x80] {
            let mut bytes = FIXTURE.to_vec();
            bytes[at] ^= mask;
            fs::write(&path, &bytes).unwrap();
            let err = verify(&path, &trusted, &mut |_| {})
                .map(|_| ())
                .expect_err(&format!("byte {at}^{mask:02x} accepted"));
            let debug = format!("{err:?}");
            *kinds
                .entry(debug[..debug.find([' ', '{']).unwrap_or(debug.len())].to_owned())
                .or_insert(0) += 1;
        }
    }
    assert!(!kinds.contains_key("Io"), "{kinds:?}");
    assert!(kinds.contains_key("BadSignature"), "{kinds:?}");
}

/// A flipped byte of the compressed data is refused, unless it leaves every entry as the
/// signed manifest describes it (a zstd field that changes nothing once decompressed):
/// format 2 checks the content, not the bytes as stored.
#[test]
#[allow(clippy::print_stderr)] // the figures say what the test covered
fn a_flipped_byte_of_a_format_2_archive_s_data_never_changes_what_is_restored() {
    let tmp = tempfile::tempdir().unwrap();
    let trusted = [signer()];
    let genuine = split2(FIXTURE).data;
    let expected = described(&zstd::decode_all(&genuine[..]).unwrap()).unwrap();
    let path = tmp.path().join("flipped.tar.zst");
    let (mut refused, mut accepted) = (0, Vec::new());
    for at in 0..genuine.len() {
        for mask in [0x01, 0x80] {
            let mut bytes = FIXTURE.to_vec();
            bytes[at] ^= mask;
            fs::write(&path, &bytes).unwrap();
            if verify(&path, &trusted, &mut |_| {}).is_err() {
                refused += 1;
                continue;
            }
            let tar = zstd::decode_all(&bytes[..genuine.len()]).unwrap();
            assert_eq!(
                described(&tar).unwrap(),
                expected,
                "byte {at}^{mask:02x} accepted"
            );
            accepted.push(format!("{at}^{mask:02x}"));
        }
    }
    assert!(refused > genuine.len(), "{refused} refused");
    assert!(accepted.len() < 8, "accepted: {}", accepted.join(" "));
    eprintln!(
        "{} bytes of data: {refused} flips refused, {} accepted as decoding alike: {}",
        genuine.len(),
        accepted.len(),
        accepted.join(" ")
    );
}

/// A changed entry in the data, recompressed with valid checksums under the genuine
/// signed index, is refused: the manifest's per-entry SHA-256 and modes are signed.
#[test]
fn changed_content_in_a_format_2_archive_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let trusted = [signer()];
    let parts = split2(FIXTURE);
    let frame = &FIXTURE[parts.data.len()..];
    let tar = zstd::decode_all(&parts.data[..]).unwrap();
    let at = tar
        .windows(8)
        .position(|w| w == b"format 2")
        .expect("the content of notes.txt");

    let mut content = tar.clone();
    content[at] ^= 0x20;
    let mut mode = tar.clone();
    let header_at = (at / 512 - 1) * 512;
    let mut header = tar::Header::new_old();
    header
        .as_mut_bytes()
        .copy_from_slice(&mode[header_at..header_at + 512]);
    assert!(header.path_bytes().ends_with(b"notes.txt"));
    header.set_mode(0o644);
    header.set_cksum();
    mode[header_at..header_at + 512].copy_from_slice(header.as_bytes());

    for (what, tar, says) in [
        ("content", content, "SHA-256"),
        ("mode", mode, "has mode 0644"),
    ] {
        let mut forged = compress(&tar, 3);
        forged.extend_from_slice(frame);
        let path = place(tmp.path(), &format!("{what}.tar.zst"), &forged);
        let err = verify(&path, &trusted, &mut |_| {}).unwrap_err();
        assert!(
            matches!(err, ArchiveError::Corrupt { .. }),
            "{what}: {err:?}"
        );
        assert!(err.to_string().contains(says), "{what}: {err}");
        let dest = tmp.path().join(format!("restore-{what}"));
        fs::create_dir(&dest).unwrap();
        assert!(extract(&path, &dest, &trusted, &|_| true, &mut |_| {}).is_err());
    }
}

/// What the note of a format 2 archive says it cannot tell: the same content compressed
/// otherwise, under the genuine signed index, passes. The same in a format 3 archive is
/// refused (`attacks::data_that_decodes_alike_is_not_the_signed_data`).
#[test]
fn a_re_encoded_format_2_archive_passes_as_its_note_says() {
    let tmp = tempfile::tempdir().unwrap();
    let parts = split2(FIXTURE);
    let tar = zstd::decode_all(&parts.data[..]).unwrap();
    let mut recompressed = compress(&tar, 19);
    assert_ne!(recompressed, parts.data);
    recompressed.extend_from_slice(&FIXTURE[parts.data.len()..]);
    let path = place(tmp.path(), "recompressed.tar.zst", &recompressed);
    let report = verify(&path, &[signer()], &mut |_| {}).unwrap();
    assert!(
        report
            .format_note
            .unwrap()
            .contains("a re-encoding of the same content")
    );
}

/// Bytes after the index: the file no longer ends with it, as the previous berth refused.
#[test]
fn a_format_2_archive_with_bytes_appended_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let trusted = [signer()];
    for (what, extra) in [
        ("zero", &b"\0"[..]),
        ("newline", b"\n"),
        ("magic again", b"BERTHSIG"),
        ("length and magic again", &FIXTURE[FIXTURE.len() - 16..]),
    ] {
        let mut bytes = FIXTURE.to_vec();
        bytes.extend_from_slice(extra);
        let path = place(tmp.path(), NAME, &bytes);
        assert!(read_index(&path).is_err(), "{what}");
        assert!(read_signed_index(&path, &trusted).is_err(), "{what}");
        assert!(verify(&path, &trusted, &mut |_| {}).is_err(), "{what}");
        let dest = tmp.path().join("restore");
        fs::create_dir(&dest).unwrap();
        assert!(
            extract(&path, &dest, &trusted, &|_| true, &mut |_| {}).is_err(),
            "{what}"
        );
        fs::remove_dir(&dest).unwrap();
    }
}

/// A format 2 signature does not validate as format 3's: neither with the trailer magic
/// swapped, nor with the frame laid out as format 3 (the data's length and SHA-256
/// inserted) around the genuine signature.
#[test]
fn a_format_2_signature_is_not_valid_as_format_3() {
    let tmp = tempfile::tempdir().unwrap();
    let trusted = [signer()];

    let mut swapped = FIXTURE.to_vec();
    let len = swapped.len();
    swapped[len - 8..].copy_from_slice(b"BERTHSG3");
    let path = place(tmp.path(), "swapped.tar.zst", &swapped);
    assert!(read_index(&path).is_err());
    assert!(verify(&path, &trusted, &mut |_| {}).is_err());

    let parts = split2(FIXTURE);
    let mut relaid = parts.data.clone();
    relaid.extend_from_slice(&0x184D_2A5B_u32.to_le_bytes());
    relaid.extend_from_slice(
        &u32::try_from(parts.json.len() + common::TRAILER_LEN)
            .unwrap()
            .to_le_bytes(),
    );
    relaid.extend_from_slice(&parts.json);
    relaid.extend_from_slice(&(parts.data.len() as u64).to_le_bytes());
    relaid.extend_from_slice(&sha2::Sha256::digest(&parts.data));
    relaid.extend_from_slice(&parts.signature);
    relaid.extend_from_slice(&signer().to_bytes());
    relaid.extend_from_slice(&(parts.json.len() as u64).to_le_bytes());
    relaid.extend_from_slice(b"BERTHSG3");
    let path = place(tmp.path(), "relaid.tar.zst", &relaid);
    let err = verify(&path, &trusted, &mut |_| {}).unwrap_err();
    assert!(matches!(err, ArchiveError::BadSignature { .. }), "{err:?}");
    // The frame is a well-formed format 3 one: unauthenticated, it parses up to its
    // manifest, which says format 2.
    let err = read_index(&path).unwrap_err();
    assert!(
        err.to_string()
            .contains("its index says format 2, but its index frame is of format 3"),
        "{err}"
    );
}

/// A format 3 archive with its trailer magic swapped for format 2's is refused.
#[test]
fn a_format_3_archive_does_not_read_as_format_2() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("new.tar.zst");
    let mut writer = ArchiveWriter::create(&path, WriteOptions::default()).unwrap();
    writer.add_bytes("a", b"a\n", 0o644).unwrap();
    writer.finish(Meta::default(), common::key()).unwrap();
    let mut bytes = fs::read(&path).unwrap();
    verify(&path, &common::trusted(), &mut |_| {}).unwrap();
    let len = bytes.len();
    bytes[len - 8..].copy_from_slice(b"BERTHSIG");
    let path = place(tmp.path(), "swapped.tar.zst", &bytes);
    assert!(read_index(&path).is_err());
    assert!(verify(&path, &common::trusted(), &mut |_| {}).is_err());
}
