//! Every byte of an archive is authenticated as stored: changing any one of them, wherever
//! it is (compressed data, including encodings zstd decodes to the same content; tar
//! header fields berth does not compare; padding; the index frame), makes verification
//! fail.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use berth_archive::{Archive, ArchiveError, ArchiveWriter, Meta, WriteOptions, verify};

/// The bits flipped in every byte: the lowest and the highest.
const MASKS: [u8; 2] = [0x01, 0x80];

/// The name of the archive in each worker's directory (not an archive name: the name
/// check is not what is tested here).
const NAME: &str = "flipped.tar.zst";

/// A small archive with one entry of each kind: a directory, an empty file, a symlink and
/// a compressible text file (a compressed block with Huffman-coded literals and
/// sequences).
fn small_archive(dir: &Path) -> Vec<u8> {
    let src = dir.join("src");
    common::write_file(&src.join("e"), b"", 0o644);
    let mut text = String::new();
    let mut x: u64 = 12345;
    while text.len() < 1500 {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        writeln!(text, "row {} value {}", x >> 58, (x >> 20) % 100).unwrap();
    }
    common::write_file(&src.join("t"), text.as_bytes(), 0o640);
    std::os::unix::fs::symlink("t", src.join("l")).unwrap();
    let path = dir.join(NAME);
    let mut writer = ArchiveWriter::create(&path, WriteOptions::default()).unwrap();
    writer.add_tree("d", &src).unwrap();
    let written = writer.finish(Meta::default(), common::key()).unwrap();
    let kinds: Vec<_> = written.manifest.entries.iter().map(|e| e.kind).collect();
    assert_eq!(kinds.len(), 4, "{kinds:?}");
    fs::read(&path).unwrap()
}

/// How verification ended, by error variant.
type Outcome = Result<(), String>;

fn outcome<T>(result: Result<T, ArchiveError>) -> Outcome {
    result.map(|_| ()).map_err(|e| {
        let debug = format!("{e:?}");
        debug[..debug.find([' ', '{']).unwrap_or(debug.len())].to_owned()
    })
}

/// Flips every byte of `offsets` with each of [`MASKS`], in a copy of the archive in
/// `dir`, and verifies the copy after each flip.
///
/// In the data before the index frame (`data`), verification goes on through an
/// [`Archive`] opened on the intact copy: opening reads only the index frame, which
/// those flips leave alone, so this is exactly what [`verify`] does after opening, and
/// spares an ed25519 check per flip. A few of them are checked with [`verify`] itself
/// too, and one in 16 is also extracted. The other flips go through [`verify`].
fn flip_all(
    dir: &Path,
    bytes: &[u8],
    data: &Range<usize>,
    offsets: &[usize],
) -> Vec<(usize, u8, Outcome)> {
    let path = dir.join(NAME);
    fs::write(&path, bytes).unwrap();
    let trusted = common::trusted();
    let opened = Archive::open(&path, &trusted).unwrap();
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    let mut results = Vec::new();
    for &at in offsets {
        for mask in MASKS {
            file.write_at(&[bytes[at] ^ mask], at as u64).unwrap();
            let result = if data.contains(&at) {
                let result = outcome(opened.verify(&mut |_| {}));
                if at % 61 == 0 {
                    assert_eq!(outcome(verify(&path, &trusted, &mut |_| {})), result);
                }
                if at % 8 == 0 && mask == MASKS[1] {
                    // Restoring reads the same way and fails the same way.
                    let dest = dir.join(format!("restore-{at}-{mask:02x}"));
                    fs::create_dir(&dest).unwrap();
                    let extracted = outcome(opened.extract(&dest, &|_| true, &mut |_| {}));
                    assert!(extracted.is_err(), "extracted with byte {at}^{mask:02x}");
                    fs::remove_dir_all(&dest).unwrap();
                }
                result
            } else {
                outcome(verify(&path, &trusted, &mut |_| {}))
            };
            results.push((at, mask, result));
        }
        file.write_at(&[bytes[at]], at as u64).unwrap();
    }
    // The copy is whole again.
    opened.verify(&mut |_| {}).unwrap();
    results
}

#[test]
#[allow(clippy::print_stderr)] // the figures say what the test covered
fn every_flipped_byte_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = small_archive(tmp.path());
    // Small enough to flip every byte in a few seconds, even in a debug build.
    assert!(bytes.len() < 2048, "{} bytes", bytes.len());
    let json_len = usize::try_from(u64::from_le_bytes(
        bytes[bytes.len() - 16..bytes.len() - 8].try_into().unwrap(),
    ))
    .unwrap();
    let data = 0..bytes.len() - 8 - common::TRAILER_LEN - json_len;

    let started = Instant::now();
    // Every worker gets some of the data and some of the index frame, which costs more.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|i| {
                let dir = tmp.path().join(format!("worker-{i}"));
                fs::create_dir(&dir).unwrap();
                let offsets: Vec<usize> = (i..bytes.len()).step_by(workers).collect();
                let (bytes, data) = (&bytes, &data);
                scope.spawn(move || flip_all(&dir, bytes, data, &offsets))
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(results.len(), bytes.len() * MASKS.len());

    let accepted: Vec<_> = results
        .iter()
        .filter(|(_, _, r)| r.is_ok())
        .map(|(at, mask, _)| format!("{at}^{mask:02x}"))
        .collect();
    assert!(
        accepted.is_empty(),
        "{} of {} flips accepted: {}",
        accepted.len(),
        results.len(),
        accepted.join(" ")
    );
    // Refused as damaged, never as a failure to read the file.
    let mut kinds = BTreeMap::new();
    for (_, _, r) in &results {
        *kinds.entry(r.clone().unwrap_err()).or_insert(0) += 1;
    }
    assert!(!kinds.contains_key("Io"), "{kinds:?}");
    eprintln!(
        "{} bytes ({} before the index frame): {} flips refused in {:?}: {kinds:?}",
        bytes.len(),
        data.len(),
        results.len(),
        started.elapsed()
    );
}
