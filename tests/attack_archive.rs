//! Crafted archives against a real instance of the test stack, as root: whoever can write
//! to the backup target (or holds a stolen signing key) tries to make `restore` chown or
//! remove a directory outside the instance, to restore a setuid file, or to pass off an
//! archive as the instance's own.
//!
//! Ports 57432 (PostgreSQL), 57379 (Redis), 57001 (app), 57080 (nginx).

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_archive::SigningKey;
use berth_tests::{Berth, fixture, is_root, prefix_dir, snapshot_tree};
use sha2::{Digest, Sha256};

const WEB: u16 = 57080;

fn site() -> String {
    format!(
        "external_url = \"http://127.0.0.1:{WEB}/\"\n[postgresql]\nport = 57432\n[redis]\nport = 57379\n[app]\nport = 57001\n"
    )
}

struct Stack<'a> {
    b: &'a Berth,
}

impl Drop for Stack<'_> {
    fn drop(&mut self) {
        let _ = self.b.run(&["down"]);
    }
}

/// An archive's parts: the decompressed tar stream up to (not including) the manifest
/// entry, and the manifest as JSON.
struct Parts {
    tar: Vec<u8>,
    manifest: serde_json::Value,
}

fn pad(tar: &mut Vec<u8>) {
    tar.resize(tar.len().div_ceil(512) * 512, 0);
}

fn split(bytes: &[u8]) -> Parts {
    let json_len = usize::try_from(u64::from_le_bytes(
        bytes[bytes.len() - 16..bytes.len() - 8].try_into().unwrap(),
    ))
    .unwrap();
    // The frame: 8 bytes, the JSON, then data length, data SHA-256, signature, public
    // key, JSON length and trailer.
    let frame_start = bytes.len() - 8 - json_len - (8 + 32 + 64 + 32 + 8 + 8);
    let json = &bytes[frame_start + 8..frame_start + 8 + json_len];
    let tar = zstd::decode_all(&bytes[..frame_start]).unwrap();
    // The manifest is the last entry: its header, its padded content, two zero blocks.
    let manifest_entry = tar.len() - 1024 - json_len.div_ceil(512) * 512 - 512;
    Parts {
        tar: tar[..manifest_entry].to_vec(),
        manifest: serde_json::from_slice(json).unwrap(),
    }
}

fn header(path: &str, kind: tar::EntryType, size: u64, mode: u32) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_path(path).unwrap();
    h.set_cksum();
    h.as_bytes().to_vec()
}

impl Parts {
    fn add_dir(&mut self, path: &str, mode: u32) {
        self.tar.extend(header(
            &format!("{path}/"),
            tar::EntryType::Directory,
            0,
            mode,
        ));
        self.entries().push(serde_json::json!({
            "path": path, "kind": "dir", "size": 0, "mode": format!("{mode:04o}"),
        }));
    }

    fn add_file(&mut self, path: &str, data: &[u8], mode: u32) {
        self.tar.extend(header(
            path,
            tar::EntryType::Regular,
            data.len() as u64,
            mode,
        ));
        self.tar.extend_from_slice(data);
        pad(&mut self.tar);
        self.entries().push(serde_json::json!({
            "path": path, "kind": "file", "size": data.len(),
            "sha256": hex::encode(Sha256::digest(data)), "mode": format!("{mode:04o}"),
        }));
    }

    fn add_symlink(&mut self, path: &str, target: &str) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_mtime(0);
        h.set_path(path).unwrap();
        h.set_link_name(target).unwrap();
        h.set_cksum();
        self.tar.extend(h.as_bytes());
        self.entries().push(serde_json::json!({
            "path": path, "kind": "symlink", "size": 0, "mode": "0777", "target": target,
        }));
    }

    fn entries(&mut self) -> &mut Vec<serde_json::Value> {
        self.manifest["entries"].as_array_mut().unwrap()
    }

    /// The archive, its index signed by `key`.
    fn build(&self, key: &SigningKey) -> Vec<u8> {
        let mut json = serde_json::to_vec_pretty(&self.manifest).unwrap();
        json.push(b'\n');
        let mut tar = self.tar.clone();
        tar.extend(header(
            "berth-backup.json",
            tar::EntryType::Regular,
            json.len() as u64,
            0o644,
        ));
        tar.extend_from_slice(&json);
        pad(&mut tar);
        tar.extend([0; 1024]);
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        encoder.include_checksum(true).unwrap();
        encoder.write_all(&tar).unwrap();
        let mut out = encoder.finish().unwrap();
        let frame = berth_archive::index_frame(&out, &json, key).unwrap();
        out.extend(frame);
        out
    }
}

/// The archive's parts with the content of the file `path` replaced by `data`.
fn replace_file(archive: &[u8], path: &str, data: &[u8]) -> Parts {
    let genuine = split(archive);
    let mut out = Parts {
        tar: Vec::new(),
        manifest: genuine.manifest.clone(),
    };
    out.manifest["entries"] = serde_json::json!([]);
    let mut stream = tar::Archive::new(&genuine.tar[..]);
    let mut found = false;
    for entry in stream.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mode = entry.header().mode().unwrap();
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut content).unwrap();
        match entry.header().entry_type() {
            tar::EntryType::Directory => out.add_dir(name.trim_end_matches('/'), mode),
            tar::EntryType::Regular if name == path => {
                found = true;
                out.add_file(&name, data, mode);
            }
            tar::EntryType::Regular => out.add_file(&name, &content, mode),
            other => panic!("unexpected {other:?} in the genuine archive"),
        }
    }
    assert!(found, "no `{path}` in the genuine archive");
    out
}

fn instance_key(prefix: &Path) -> SigningKey {
    let text = std::fs::read_to_string(prefix.join("state/signing-key.txt")).unwrap();
    berth_archive::signing::parse_key_file(&text)
        .unwrap()
        .signing
        .unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
#[allow(clippy::too_many_lines)] // one instance, one attack after another
#[allow(clippy::print_stderr)] // a skipped test says why
fn crafted_archives_change_nothing() {
    if !is_root() {
        eprintln!("skipped: the stack test installs service users and needs root");
        return;
    }
    let scratch = prefix_dir("attack-archive-scratch");
    let scratch = scratch.path();
    let dir_a = prefix_dir("attack-archive-a");
    let a = Berth::new(dir_a.path(), &fixture("ministack"));
    std::fs::create_dir_all(&a.prefix).unwrap();
    a.write_site(&site());
    let _down = Stack { b: &a };
    a.run(&["up"]).expect(0);
    let uploads = a.prefix.join("data/app/uploads");
    std::fs::create_dir_all(&uploads).unwrap();
    std::fs::write(uploads.join("notes.txt"), "hello\n").unwrap();
    let key_file = scratch.join("keys");
    a.run(&["backup", "key", "--export", key_file.to_str().unwrap()])
        .expect(0);
    let r = a.run(&["backup", "create", "--json"]).expect(0);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let name = report["backup"]["archive"].as_str().unwrap();
    let genuine = std::fs::read(a.prefix.join("backups").join(name)).unwrap();
    let key = instance_key(&a.prefix);
    let key_arg = key_file.to_str().unwrap();
    // The genuine archive passes: the crafting below changes only what each case says.
    let r = a
        .run(&["backup", "verify", name, "--key", key_arg])
        .expect(0);
    // Which backup it is, from the signed metadata, and who signed it.
    assert!(
        r.stdout.contains("(signed metadata), signed by ed25519:"),
        "{}",
        r.stdout
    );

    // The victim: a root-owned directory beside the instance's data, which a restore of
    // `data_dirs = ["app/../../victim"]` would give to the app's user, and an aborted one
    // would remove.
    let victim = a.prefix.join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("precious"), "root's\n").unwrap();
    let victim_state = || {
        let meta = std::fs::metadata(&victim).unwrap();
        (meta.uid(), meta.gid(), snapshot_tree(&victim))
    };
    let victim_before = victim_state();
    let data_before = snapshot_tree(&a.prefix.join("data/app"));
    let pids = a.pids();
    let refused = |path: &Path, words: &[&str]| {
        let p = path.to_str().unwrap();
        for args in [
            vec!["backup", "verify", p, "--key", key_arg],
            vec!["restore", p, "--key", key_arg, "--no-safety-backup"],
        ] {
            let r = a.run(&args);
            assert_ne!(
                r.code,
                0,
                "`{}` accepted {}",
                args.join(" "),
                path.display()
            );
            assert!(
                words.iter().any(|w| r.stderr.contains(w)),
                "`{}`: {}",
                args.join(" "),
                r.stderr
            );
        }
        // Refused before it began: there is nothing to abort, and abort touches nothing.
        let r = a.run(&["restore", "--abort"]);
        assert_ne!(r.code, 0);
        assert!(r.stderr.contains("No interrupted restore"), "{}", r.stderr);
        assert_eq!(victim_state(), victim_before, "{}", path.display());
        assert_eq!(snapshot_tree(&a.prefix.join("data/app")), data_before);
        assert_eq!(a.pids(), pids, "{} touched a service", path.display());
    };

    // 1. Attack: traversal in the metadata, index rewritten without the signing key (the
    //    signature is kept as it was).
    let mut forged = split(&genuine);
    forged.manifest["meta"]["data_dirs"] = serde_json::json!(["app/../../victim"]);
    forged.add_dir("victim", 0o755);
    let honest = forged.build(&key);
    let other = SigningKey::generate().unwrap();
    let mut with_old_signature = honest.clone();
    let sig_at = honest.len() - 112;
    let genuine_sig = &genuine[genuine.len() - 112..genuine.len() - 16];
    with_old_signature[sig_at..sig_at + 96].copy_from_slice(genuine_sig);
    let path = write(scratch, "forged.berth.tar.zst", &with_old_signature);
    refused(&path, &["invalid signature"]);

    // 2. Attack: the same traversal, signed with the instance's own key (a stolen key, or
    //    a bug in the writer): the metadata is checked against the manifest all the same.
    let path = write(scratch, "traversal.berth.tar.zst", &honest);
    refused(&path, &["not a plain relative path"]);
    // A directory the manifest does not back up, without any `..`.
    let mut undeclared = split(&genuine);
    undeclared.manifest["meta"]["data_dirs"] = serde_json::json!(["app", "postgresql"]);
    undeclared.add_dir("data/postgresql", 0o700);
    let path = write(scratch, "undeclared.berth.tar.zst", &undeclared.build(&key));
    refused(&path, &["not one the manifest backs up"]);

    // 3. Attack: the genuine archive re-signed by another key.
    let resigned = split(&genuine).build(&other);
    let path = write(scratch, "resigned.berth.tar.zst", &resigned);
    refused(&path, &["not a trusted key"]);

    // 4. Attack: a site config the host would reject (signed by the instance's key): it
    //    goes through the model's validation before it is used.
    let bad_site = replace_file(&genuine, "config/site.toml", b"external_url = 42\n");
    let path = write(scratch, "bad-site.berth.tar.zst", &bad_site.build(&key));
    refused(&path, &["external_url"]);

    // 5. Attack: secrets that are not the manifest's (signed, and encrypted to the
    //    instance's own backup key): a value with a quote and a newline, which a template
    //    would put into a config file as is, and a secret the manifest does not declare.
    let recipient =
        berth_archive::signing::parse_key_file(&std::fs::read_to_string(&key_file).unwrap())
            .unwrap()
            .identity
            .unwrap()
            .recipient()
            .to_owned();
    for (name, value) in [
        ("db_password", "x'\nlisten 0.0.0.0:80;"),
        ("not_declared", "abc"),
    ] {
        let secrets = scratch.join(format!("secrets-{name}"));
        std::fs::create_dir(&secrets).unwrap();
        std::fs::copy(
            a.prefix.join("secrets/redis_password"),
            secrets.join("redis_password"),
        )
        .unwrap();
        std::fs::write(secrets.join(name), value).unwrap();
        let blob = berth_archive::secrets::encrypt_dir(&secrets, &recipient).unwrap();
        let crafted = replace_file(&genuine, "secrets.age", &blob);
        let path = write(
            scratch,
            &format!("secrets-{name}.berth.tar.zst"),
            &crafted.build(&key),
        );
        refused(&path, &["secrets are not this app's"]);
    }

    // 6. Attack: a genuine but older archive copied over a newer archive's name, so that
    //    "last night's backup" brings back old data: its signed metadata names it.
    let stem = name.strip_suffix(berth_archive::ARCHIVE_SUFFIX).unwrap();
    let (app_version, stamp) = stem.rsplit_once('-').unwrap();
    let next_year = stamp[..4].parse::<u32>().unwrap() + 1;
    let later = format!(
        "{app_version}-{next_year}{}{}",
        &stamp[4..],
        berth_archive::ARCHIVE_SUFFIX
    );
    assert!(
        berth_archive::parse_archive_name(&later).is_some(),
        "{later}"
    );
    let path = write(scratch, &later, &genuine);
    refused(&path, &["not what its name says"]);

    // 7. A setuid file (signed by the instance's key): `verify` refuses it, and a restore
    //    brings the file back without the bit.
    let mut setuid = split(&genuine);
    setuid.add_file("data/app/uploads/suid", b"#!/bin/sh\nid\n", 0o4755);
    setuid.add_file("data/app/uploads/sgid", b"#!/bin/sh\nid\n", 0o2755);
    let path = write(scratch, "setuid.berth.tar.zst", &setuid.build(&key));
    let r = a.run(&["backup", "verify", path.to_str().unwrap(), "--key", key_arg]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("setuid"), "{}", r.stderr);
    a.run(&[
        "restore",
        path.to_str().unwrap(),
        "--key",
        key_arg,
        "--no-safety-backup",
    ])
    .expect(0);
    for file in ["suid", "sgid"] {
        let meta = std::fs::metadata(uploads.join(file)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o755, "{file}");
        assert_ne!(meta.uid(), 0, "{file} is root's");
    }
    assert_eq!(victim_state(), victim_before);

    // 8. The manifest an archive carries decides the app of a restore into a new prefix
    //    without `--manifest`. Signed by the instance's key, it is checked all the same:
    //    validated as one from disk, confined to its directory, capped in size, and of the
    //    app its metadata names. Each is refused and leaves no prefix behind.
    let fresh = scratch.join("fresh");
    let b = Berth::without_manifest(&fresh);
    let refused_new = |path: &Path, words: &[&str]| {
        let r = b.run(&["restore", path.to_str().unwrap(), "--key", key_arg]);
        assert_ne!(r.code, 0, "restored {}", path.display());
        assert!(
            words.iter().any(|w| r.stderr.contains(w)),
            "{}: {}",
            path.display(),
            r.stderr
        );
        assert!(
            !fresh.exists(),
            "a refused restore left {}",
            fresh.display()
        );
        assert_eq!(victim_state(), victim_before);
    };
    let manifest = std::fs::read_to_string(fixture("ministack").join("berth.toml")).unwrap();
    let crafted = |name: &str, text: &str| {
        let parts = replace_file(&genuine, "manifest/berth.toml", text.as_bytes());
        write(scratch, name, &parts.build(&key))
    };
    // A template path out of the manifest's directory, to the archive's site config.
    let escape = manifest.replacen(
        "template = \"templates/postgresql.conf.j2\"",
        "template = \"../config/site.toml\"",
        1,
    );
    assert_ne!(escape, manifest);
    refused_new(&crafted("escape.bin", &escape), &["template path"]);
    // A template that is a symlink (to the site config beside it).
    let mut linked = split(&genuine);
    linked.add_symlink("manifest/templates/linked.j2", "../../config/site.toml");
    let path = write(scratch, "linked.bin", &linked.build(&key));
    refused_new(&path, &["neither a file nor a directory"]);
    // Another app than the signed metadata names.
    let other = manifest.replacen("name = \"ministack\"", "name = \"evilstack\"", 1);
    refused_new(
        &crafted("other-app.bin", &other),
        &["its manifest installs evilstack 1.0.0, but its metadata says"],
    );
    // A manifest that does not validate.
    refused_new(
        &crafted(
            "invalid.bin",
            &format!("{manifest}\n[components.app.nonsense]\n"),
        ),
        &["nonsense"],
    );
    // A huge manifest (it would be read into memory whole).
    let mut huge = split(&genuine);
    huge.add_file("manifest/templates/huge.j2", &vec![b'x'; 17 << 20], 0o644);
    let path = write(scratch, "huge.bin", &huge.build(&key));
    refused_new(&path, &["more than the"]);
}

/// `backup key` on a prefix that was never brought up made `state/` with the default
/// mode (0755): the keys' directory must be 0700 whoever makes it, and a key file another
/// user could read or replace is refused.
#[test]
#[allow(clippy::print_stderr)] // a skipped test says why
fn keys_are_private_from_the_start() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = prefix_dir("attack-archive-keys");
    let b = Berth::new(dir.path(), &fixture("ministack"));
    b.run(&["backup", "key"]).expect(0);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&dir.path().join("state")), 0o700);
    for key in ["backup-key.txt", "signing-key.txt"] {
        let path = dir.path().join("state").join(key);
        assert_eq!(mode(&path), 0o600, "{key}");
        // Readable by others: refused, not used.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let r = b.run(&["backup", "key"]);
        assert_ne!(r.code, 0, "{key} readable by others was used");
        assert!(r.stderr.contains("is not private"), "{}", r.stderr);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // A state directory someone opened up is closed again.
    std::fs::set_permissions(
        dir.path().join("state"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    b.run(&["backup", "key"]).expect(0);
    assert_eq!(mode(&dir.path().join("state")), 0o700);
}

/// A `--key` that is not a regular file: a FIFO hung `verify` and `restore` forever,
/// `/dev/zero` filled memory, a directory exited 1. All are bad input (exit 2), refused
/// at once, naming the file.
#[test]
#[allow(clippy::print_stderr)] // a skipped test says why
fn key_files_that_are_not_regular_files_are_bad_input() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = prefix_dir("attack-archive-keyfile");
    let scratch = prefix_dir("attack-archive-keyfile-scratch");
    let b = Berth::new(dir.path(), &fixture("ministack"));
    let fifo = scratch.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let archive = write(scratch.path(), "a.berth.tar.zst", b"not an archive");
    let archive = archive.to_str().unwrap();
    for key in [
        fifo.to_str().unwrap(),
        "/dev/zero",
        scratch.path().to_str().unwrap(),
    ] {
        for args in [
            vec!["backup", "verify", archive, "--key", key],
            vec!["restore", archive, "--key", key],
        ] {
            let r = b.run(&args);
            assert_eq!(r.code, 2, "`{}`: {}", args.join(" "), r.stderr);
            assert!(
                r.stderr.contains(key) && r.stderr.contains("not a regular file"),
                "{}",
                r.stderr
            );
        }
    }
}
