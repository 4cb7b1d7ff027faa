//! `berth release key|build|verify` on the ministack fixture: a bundle built twice from
//! copies of the manifest at other paths and times is the same bytes; it verifies with
//! the vendor's public key and standard tools read it; a flipped byte, a cut-off file,
//! another key, another name, an invalid manifest and a key file in the way are each
//! refused with the reason, leaving nothing behind.
//!
//! The bundles carry a small stand-in for the berth binary (`--berth`): the test
//! build's berth is 180 MB of debug info, which would make every build take a minute
//! and prove nothing more.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_tests::{Berth, Run, fixture};
use sha2::{Digest, Sha256};

/// A copy of the ministack manifest under `dir`, its files given mtime `mtime`.
fn manifest_copy(dir: &Path, mtime: u64) -> PathBuf {
    let from = fixture("ministack");
    let to = dir.join("ministack");
    std::fs::create_dir_all(to.join("templates")).unwrap();
    let mut files = vec![PathBuf::from("berth.toml")];
    for e in std::fs::read_dir(from.join("templates")).unwrap() {
        files.push(Path::new("templates").join(e.unwrap().file_name()));
    }
    for f in files {
        std::fs::copy(from.join(&f), to.join(&f)).unwrap();
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
        std::fs::File::options()
            .write(true)
            .open(to.join(&f))
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    to
}

/// `berth release …` with `manifest` (or none) and extra environment; a build carries
/// `/bin/true` as its berth.
fn release(manifest: Option<&Path>, args: &[&str], env: &[(&str, &str)]) -> Run {
    let b = Berth::new(
        Path::new("/nonexistent-prefix"),
        manifest.unwrap_or(Path::new("")),
    );
    let mut all = vec!["release"];
    all.extend_from_slice(args);
    if args.first() == Some(&"build") {
        all.extend(["--berth", "/bin/true"]);
    }
    b.run_env(&all, env)
}

/// `berth --manifest MANIFEST release build --key KEY --out OUT` at [`EPOCH`], with
/// `extra` arguments.
fn build(manifest: &Path, key: &Path, out: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "build",
        "--key",
        key.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    release(Some(manifest), &args, &[("SOURCE_DATE_EPOCH", EPOCH)])
}

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

const EPOCH: &str = "1700000000";

#[test]
fn a_bundle_is_the_same_bytes_from_another_checkout_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("vendor.key");
    let r = release(
        None,
        &["key", "--out", key.to_str().unwrap(), "--json"],
        &[],
    )
    .expect(0);
    let made: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let public = made["public_key"].as_str().unwrap().to_owned();
    assert!(public.starts_with("ed25519:"), "{public}");
    let key_mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(key_mode, 0o600);
    let key_text = std::fs::read_to_string(&key).unwrap();
    assert!(
        !r.stdout.contains(key_text.lines().last().unwrap()),
        "the secret key was printed"
    );

    // Two checkouts at other paths, with other mtimes, built at other times.
    let mut built = Vec::new();
    for (i, mtime) in [(0, 1_600_000_000), (1, 1_650_000_000)] {
        let dir = tmp.path().join(format!("checkout-{i}/deep/er"));
        let manifest = manifest_copy(&dir, mtime);
        let out = tmp.path().join(format!("out-{i}"));
        std::fs::create_dir(&out).unwrap();
        let r = build(&manifest, &key, &out, &["--json"]).expect(0);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        let path = out.join("ministack-1.0.0.berth-release.tar.zst");
        assert_eq!(v["path"], path.to_str().unwrap());
        assert_eq!(v["sha256"], sha256(&path));
        assert_eq!(v["signer"], public.as_str());
        built.push(path);
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    berth_tests::assert_reproducible(&built[0], &built[1]);
    // Nothing of the build paths inside.
    let bytes = std::fs::read(&built[0]).unwrap();
    assert!(
        !bytes.windows(10).any(|w| w == b"checkout-0"),
        "a build path is in the bundle"
    );

    // Verified with the public key as text or as its file.
    let pub_file = format!("{}.pub", key.display());
    for given in [public.as_str(), pub_file.as_str()] {
        let r = release(
            None,
            &[
                "verify",
                built[0].to_str().unwrap(),
                "--public-key",
                given,
                "--json",
            ],
            &[],
        )
        .expect(0);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(
            (v["app"].as_str(), v["version"].as_str()),
            (Some("ministack"), Some("1.0.0"))
        );
        assert_eq!(v["created"], "2023-11-14T22:13:20Z");
        assert_eq!(v["sha256"], sha256(&built[0]));
    }

    // Standard tools read it: zstd, then tar.
    let listing = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -dc '{}' | tar -tv --numeric-owner",
            built[0].display()
        ))
        .output()
        .unwrap();
    assert!(listing.status.success());
    let listing = String::from_utf8(listing.stdout).unwrap();
    for entry in [
        "manifest/berth.toml",
        "manifest/templates/nginx.conf.j2",
        "bin/berth",
    ] {
        assert!(listing.contains(entry), "{entry} missing:\n{listing}");
    }
    assert!(listing.lines().all(|l| l.contains(" 0/0 ")), "{listing}");
    assert!(listing.contains("-rwxr-xr-x 0/0"), "{listing}");
}

/// Another vendor's key, a flipped byte (data or index), a cut-off file, another
/// name, an archive of the vendor's that is not a release: refused with the reason.
#[test]
fn bad_bundles_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("vendor.key");
    let other = tmp.path().join("other.key");
    release(None, &["key", "--out", key.to_str().unwrap()], &[]).expect(0);
    release(None, &["key", "--out", other.to_str().unwrap()], &[]).expect(0);

    let manifest = manifest_copy(&tmp.path().join("src"), 1_600_000_000);
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    build(&manifest, &key, &out, &[]).expect(0);
    let good = out.join("ministack-1.0.0.berth-release.tar.zst");
    let pub_key = format!("{}.pub", key.display());
    let other_pub = format!("{}.pub", other.display());
    let verify = |path: &Path, key: &str| {
        release(
            None,
            &["verify", path.to_str().unwrap(), "--public-key", key],
            &[],
        )
    };

    // Another vendor's key.
    let r = verify(&good, &other_pub);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("trusted"), "{}", r.stderr);

    // A flipped byte in the compressed data, in the index, a cut-off file.
    let bytes = std::fs::read(&good).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a flipped byte in the data", {
            let mut b = bytes.clone();
            b[bytes.len() / 2] ^= 0x01;
            b
        }),
        ("a flipped byte in the index", {
            let mut b = bytes.clone();
            let n = b.len();
            b[n - 400] ^= 0x01;
            b
        }),
        ("a cut-off file", bytes[..bytes.len() - 1000].to_vec()),
    ];
    for (what, content) in cases {
        let bad = tmp
            .path()
            .join("bad")
            .join("ministack-1.0.0.berth-release.tar.zst");
        std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
        std::fs::write(&bad, content).unwrap();
        let r = verify(&bad, &pub_key);
        assert_eq!(r.code, 1, "{what}: {r:?}");
        assert!(r.stderr.starts_with("error: "), "{what}: {}", r.stderr);
    }

    // Another name: a bundle of 1.0.0 offered as 2.0.0.
    let renamed = tmp.path().join("ministack-2.0.0.berth-release.tar.zst");
    std::fs::copy(&good, &renamed).unwrap();
    let r = verify(&renamed, &pub_key);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("but holds ministack 1.0.0"),
        "{}",
        r.stderr
    );

    // An archive signed by the vendor's key that is not a release (a backup's meta).
    let signing = berth_archive::signing::parse_key_file(&std::fs::read_to_string(&key).unwrap())
        .unwrap()
        .signing
        .unwrap();
    let backup = tmp
        .path()
        .join("backup")
        .join("ministack-1.0.0.berth-release.tar.zst");
    std::fs::create_dir_all(backup.parent().unwrap()).unwrap();
    let mut w =
        berth_archive::ArchiveWriter::create(&backup, berth_archive::WriteOptions::default())
            .unwrap();
    w.add_bytes("manifest/berth.toml", b"", 0o644).unwrap();
    w.add_bytes("bin/berth", b"", 0o755).unwrap();
    w.finish(
        berth_archive::Meta::new("ministack", "1.0.0", jiff::Timestamp::now()),
        &signing,
    )
    .unwrap();
    let r = verify(&backup, &pub_key);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("does not say it is a release"),
        "{}",
        r.stderr
    );
}

/// A key file in the way, an invalid manifest, a file that is not a key: refused,
/// nothing written.
#[test]
fn bad_keys_and_manifests_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("vendor.key");
    release(None, &["key", "--out", key.to_str().unwrap()], &[]).expect(0);
    let pub_key = format!("{}.pub", key.display());
    // A key file in the way: refused, the file kept.
    let before = std::fs::read(&key).unwrap();
    let r = release(None, &["key", "--out", key.to_str().unwrap()], &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(std::fs::read(&key).unwrap(), before);
    let manifest = manifest_copy(&tmp.path().join("src"), 1_600_000_000);

    // An invalid manifest: its positioned error, exit 2, no bundle left.
    let text = std::fs::read_to_string(manifest.join("berth.toml")).unwrap();
    std::fs::write(
        manifest.join("berth.toml"),
        text.replace("depends_on = [\"app\"]", "depends_on = [\"ap\"]"),
    )
    .unwrap();
    let out2 = tmp.path().join("out2");
    std::fs::create_dir(&out2).unwrap();
    let r = build(&manifest, &key, &out2, &[]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("berth.toml:"), "{}", r.stderr);
    assert!(r.stderr.contains("did you mean `app`?"), "{}", r.stderr);
    assert_eq!(std::fs::read_dir(&out2).unwrap().count(), 0);

    // A file that is not a key file.
    let r = build(
        &fixture("ministack"),
        Path::new(pub_key.as_str()),
        &out2,
        &[],
    );
    assert_ne!(r.code, 0, "{r:?}");
    assert_eq!(std::fs::read_dir(&out2).unwrap().count(), 0);
}
