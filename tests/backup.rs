//! Backup and restore of the test stack with real PostgreSQL, files and sshd: archives
//! verified, corrupt, truncated, foreign and wrongly keyed ones refused before anything
//! changes, in-place and new-prefix restores, a kill -9 after every restore step
//! followed by `--abort` or `--resume`, SFTP targets, a full target, and retention.
//!
//! Ports 25432 (PostgreSQL), 26379 (Redis), 28001 (app), 28080 (nginx), 42622 (sshd).

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_backup::restore::STEPS;
use berth_lifecycle::fault;
use berth_tests::{Berth, Sshd, Tmpfs, fixture, http_get, is_root, prefix_dir, snapshot_tree};
use sha2::{Digest, Sha256};

const PG: u16 = 25432;
const WEB: u16 = 28080;
const SSHD: u16 = 42622;

fn site() -> String {
    format!(
        "external_url = \"http://127.0.0.1:{WEB}/\"\n[postgresql]\nport = {PG}\n[redis]\nport = 26379\n[app]\nport = 28001\n"
    )
}

/// SQL as the app's role over TCP, with the instance's own password.
fn psql(prefix: &Path, sql: &str) -> String {
    let pw = std::fs::read_to_string(prefix.join("secrets/db_password")).unwrap();
    let out = std::process::Command::new("/usr/lib/postgresql/15/bin/psql")
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
        .args(["-p", &PG.to_string(), "-U", "app", "-d", "app", "-c", sql])
        .env("PGPASSWORD", pw.trim())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql `{sql}`: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Row count and a digest of the table's content.
fn rows(prefix: &Path) -> String {
    psql(
        prefix,
        "SELECT count(*) || ' ' || md5(string_agg(v, ',' ORDER BY id)) FROM t",
    )
}

/// Bytes that do not compress (xorshift).
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[3]
        })
        .collect()
}

fn sha(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

fn json(r: &berth_tests::Run) -> serde_json::Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}\n{}", r.stdout, r.stderr))
}

fn healthy() -> bool {
    http_get(WEB, "/health", "127.0.0.1").is_ok_and(|(code, _)| code == 200)
}

/// Everything a failed restore must leave alone in an instance.
fn state_of(prefix: &Path) -> Vec<(PathBuf, String)> {
    let mut out: Vec<(PathBuf, String)> = snapshot_tree(&prefix.join("data/app"))
        .into_iter()
        .collect();
    for f in ["site.toml", "secrets/db_password", "secrets/redis_password"] {
        out.push((PathBuf::from(f), sha(&prefix.join(f))));
    }
    out
}

/// A copy of the test stack's manifest with one line changed.
fn manifest_variant(dir: &Path, from: &str, to: &str) -> PathBuf {
    let src = fixture("ministack");
    let dest = dir.join(to.replace(['"', ' ', '='], ""));
    std::fs::create_dir_all(dest.join("templates")).unwrap();
    for e in std::fs::read_dir(src.join("templates")).unwrap().flatten() {
        std::fs::copy(e.path(), dest.join("templates").join(e.file_name())).unwrap();
    }
    let text = std::fs::read_to_string(src.join("berth.toml")).unwrap();
    assert!(text.contains(from));
    std::fs::write(dest.join("berth.toml"), text.replacen(from, to, 1)).unwrap();
    dest
}

struct Stack<'a> {
    b: &'a Berth,
}

impl Drop for Stack<'_> {
    fn drop(&mut self) {
        let _ = self.b.run(&["down"]);
    }
}

#[test]
#[allow(clippy::too_many_lines)] // one instance, one story
#[allow(clippy::print_stderr)] // a skipped test or part says why
fn backup_and_restore_the_stack() {
    if !is_root() {
        eprintln!("skipped: the stack test installs service users and needs root");
        return;
    }
    let scratch = prefix_dir("backup-scratch");
    let scratch = scratch.path();
    let dir_a = prefix_dir("backup-a");
    let a = Berth::new(dir_a.path(), &fixture("ministack"));
    std::fs::create_dir_all(&a.prefix).unwrap();
    a.write_site(&site());
    let _down_a = Stack { b: &a };
    a.run(&["up"]).expect(0);

    // D0: rows in the database, files in the data directory.
    psql(
        &a.prefix,
        "CREATE TABLE t (id int PRIMARY KEY, v text); \
         INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g",
    );
    let uploads = a.prefix.join("data/app/uploads");
    std::fs::create_dir_all(uploads.join("2026/11")).unwrap();
    let blob: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0])
        .collect();
    std::fs::write(uploads.join("2026/11/photo.bin"), &blob).unwrap();
    std::fs::write(uploads.join("notes.txt"), "hello\n").unwrap();
    // The app's files are the app's, as if it had written them (a restore gives them
    // back to the directory's owner, and the comparison includes owners).
    same_owner_as(&a.prefix.join("data/app"), &uploads);
    let d0_rows = rows(&a.prefix);
    let d0_files = snapshot_tree(&a.prefix.join("data/app"));
    let d0_secret = sha(&a.prefix.join("secrets/db_password"));

    // Without a backup key: the backup runs, says loudly that the secrets are not in it,
    // and a restore of it refuses unless told to go without them.
    let r = a.run(&["backup", "create", "--json"]).expect(0);
    assert!(
        r.stderr.contains("does NOT contain the instance's secrets"),
        "{}",
        r.stderr
    );
    let no_key = json(&r)["backup"]["archive"].as_str().unwrap().to_owned();
    assert_eq!(json(&r)["backup"]["secrets_included"], false);
    let no_key_path = a.prefix.join("backups").join(&no_key);
    // Signed all the same: the signing key was made by that first backup.
    assert!(a.prefix.join("state/signing-key.txt").is_file());
    // A new prefix, restored without `--manifest`: the archive's manifest is the one
    // used (the binary's built-in one is another app's), and only once the archive is
    // authenticated, so every refusal below comes first.
    let dir_c = scratch.join("c");
    let c = Berth::without_manifest(&dir_c);
    // A new prefix trusts no archive without a key file.
    let r = c.run(&["restore", no_key_path.to_str().unwrap()]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("--key FILE"), "{}", r.stderr);
    assert!(
        !dir_c.exists(),
        "a refused restore left {}",
        dir_c.display()
    );

    // The keys: created once, exported together 0600, never printed, never over a file.
    let key = scratch.join("backup.key");
    let r = a
        .run(&["backup", "key", "--export", key.to_str().unwrap()])
        .expect(0);
    let key_text = std::fs::read_to_string(&key).unwrap();
    assert!(key_text.contains("AGE-SECRET-KEY-1"));
    assert!(key_text.contains("BERTH-SIGNING-KEY-1"));
    for secret in ["AGE-SECRET-KEY", "BERTH-SIGNING-KEY"] {
        assert!(!r.stdout.contains(secret) && !r.stderr.contains(secret));
    }
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions())
            & 0o777,
        0o600
    );
    for (file, mode) in [
        ("state", 0o700),
        ("state/backup-key.txt", 0o600),
        ("state/signing-key.txt", 0o600),
    ] {
        let meta = std::fs::metadata(a.prefix.join(file)).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777,
            mode,
            "{file}"
        );
    }
    // The export never replaces a file, nor writes through a symlink.
    let planted = scratch.join("planted.key");
    std::os::unix::fs::symlink(scratch.join("elsewhere"), &planted).unwrap();
    for dest in [&key, &planted] {
        let r = a.run(&["backup", "key", "--export", dest.to_str().unwrap()]);
        assert_ne!(r.code, 0, "exported over {}", dest.display());
    }
    assert_eq!(std::fs::read_to_string(&key).unwrap(), key_text);
    assert!(!scratch.join("elsewhere").exists());

    // The archive without secrets: with the key file, it authenticates, and a restore
    // refuses unless told to go without them.
    let r = c.run(&[
        "restore",
        no_key_path.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("--without-secrets"), "{}", r.stderr);
    assert!(
        !dir_c.exists(),
        "a refused restore left {}",
        dir_c.display()
    );
    std::fs::remove_file(&no_key_path).unwrap();

    let r = a.run(&["backup", "create", "--json"]).expect(0);
    let report = json(&r)["backup"].clone();
    assert_eq!(report["secrets_included"], true);
    assert_eq!(report["quiesced"], serde_json::json!(["app"]));
    let name = report["archive"].as_str().unwrap().to_owned();
    let archive = scratch.join(&name);
    // Two backups in a row (names have whole seconds) never collide.
    let one = json(&a.run(&["backup", "create", "--json"]).expect(0))["backup"]["archive"].clone();
    let two = json(&a.run(&["backup", "create", "--json"]).expect(0))["backup"]["archive"].clone();
    assert_ne!(one, two);
    for created in [&one, &two] {
        std::fs::remove_file(a.prefix.join("backups").join(created.as_str().unwrap())).unwrap();
    }
    std::fs::copy(a.prefix.join("backups").join(&name), &archive).unwrap();
    for secret in ["db_password", "redis_password"] {
        let value = std::fs::read_to_string(a.prefix.join("secrets").join(secret)).unwrap();
        assert!(!r.stdout.contains(value.trim()) && !r.stderr.contains(value.trim()));
    }

    let r = a
        .run(&[
            "backup",
            "verify",
            &name,
            "--key",
            key.to_str().unwrap(),
            "--json",
        ])
        .expect(0);
    let verified = json(&r);
    assert_eq!(verified["key_opens_secrets"], true);
    assert!(
        verified["dump_toc_entries"].as_u64().unwrap() >= 3,
        "{verified}"
    );
    let listed = json(&a.run(&["backup", "list", "--json"]).expect(0));
    assert_eq!(listed["archives"][0]["name"], name.as_str());
    assert_eq!(listed["archives"][0]["secrets_included"], true);

    // Bad archives are refused by verify and by restore, and nothing changes.
    let bytes = std::fs::read(&archive).unwrap();
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 3] ^= 0x20;
    // Bit 0 of the zstd window descriptor: the content decompresses the same, only the
    // signed digest of the stored bytes tells.
    let mut flipped_header = bytes.clone();
    flipped_header[5] ^= 0x01;
    let bad = [
        (
            "truncated-half",
            bytes[..bytes.len() / 2].to_vec(),
            "truncated",
        ),
        ("truncated-end", bytes[..bytes.len() - 10].to_vec(), ""),
        ("flipped", flipped, "is corrupt"),
        ("flipped-header", flipped_header, "is corrupt"),
    ];
    let before = state_of(&a.prefix);
    let pids = a.pids();
    for (tag, content, word) in &bad {
        let path = scratch.join(format!("{tag}.berth.tar.zst"));
        std::fs::write(&path, content).unwrap();
        let bad_path = path.to_str().unwrap();
        let r = a.run(&["backup", "verify", bad_path]);
        assert_ne!(r.code, 0, "verify accepted {tag}");
        assert!(r.stderr.contains(word), "{tag}: {}", r.stderr);
        let r = c.run(&["restore", bad_path, "--key", key.to_str().unwrap()]);
        assert_ne!(r.code, 0, "restore accepted {tag}");
        assert!(
            !dir_c.exists(),
            "{tag}: a refused restore left {}",
            dir_c.display()
        );
        let r = a.run(&["restore", bad_path, "--key", key.to_str().unwrap()]);
        assert_ne!(r.code, 0, "in-place restore accepted {tag}");
        assert_eq!(state_of(&a.prefix), before, "{tag} changed the instance");
        assert_eq!(a.pids(), pids, "{tag} touched a service");
    }
    // Another instance's keys: its signing key does not vouch for this archive.
    let other_key = scratch.join("other.key");
    Berth::new(&scratch.join("z"), &fixture("ministack"))
        .run(&["backup", "key", "--export", other_key.to_str().unwrap()])
        .expect(0);
    let r = c.run(&[
        "restore",
        archive.to_str().unwrap(),
        "--key",
        other_key.to_str().unwrap(),
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("not a trusted key"), "{}", r.stderr);
    assert!(!dir_c.exists());
    // This instance's signing key with another backup key: the secrets do not open.
    let mixed_key = scratch.join("mixed.key");
    let other_text = std::fs::read_to_string(&other_key).unwrap();
    // The one line of each kind: the age identity of the other instance, and this
    // instance's signing key.
    let line = |text: &str, prefix: &str| -> String {
        let l = text.lines().find(|l| l.starts_with(prefix)).unwrap();
        format!("{l}\n")
    };
    std::fs::write(
        &mixed_key,
        line(&other_text, "AGE-SECRET-KEY-1") + &line(&key_text, "BERTH-SIGNING-KEY-1"),
    )
    .unwrap();
    let r = c.run(&[
        "restore",
        archive.to_str().unwrap(),
        "--key",
        mixed_key.to_str().unwrap(),
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("different backup key"), "{}", r.stderr);
    assert!(!dir_c.exists());
    // `verify` with that key: the archive is intact, the key does not open its secrets,
    // and it says so (it used to claim nothing either way), exiting non-zero.
    let r = a.run(&[
        "backup",
        "verify",
        archive.to_str().unwrap(),
        "--key",
        mixed_key.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(json(&r)["key_opens_secrets"], false, "{}", r.stdout);
    let r = a.run(&[
        "backup",
        "verify",
        archive.to_str().unwrap(),
        "--key",
        mixed_key.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("does NOT open them"), "{}", r.stdout);
    // Another app's archive, and another version of this one.
    let other_app = manifest_variant(scratch, "name = \"ministack\"", "name = \"otherstack\"");
    let r = Berth::new(&dir_c, &other_app).run(&[
        "restore",
        archive.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains(&format!(
            "is a backup of `ministack`, but the manifest given with `--manifest {}` is of `otherstack`",
            other_app.display()
        )),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("leave out `--manifest`"), "{}", r.stderr);
    assert!(!dir_c.exists());
    let newer = manifest_variant(scratch, "version = \"1.0.0\"", "version = \"2.0.0\"");
    let r = Berth::new(&dir_c, &newer).run(&[
        "restore",
        archive.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("manifest of ministack 1.0.0 is used"),
        "{}",
        r.stderr
    );
    assert!(!dir_c.exists());
    // Unreachable and full targets: clear errors, earlier archives untouched.
    let kept = snapshot_tree(&a.prefix.join("backups"));
    let r = a.run(&[
        "backup",
        "create",
        "--to",
        "sftp://root@127.0.0.1:1/backups",
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("127.0.0.1"), "{}", r.stderr);
    if let Some(tiny) = Tmpfs::mount(&scratch.join("tiny"), "256k") {
        let r = a.run(&["backup", "create", "--to", tiny.0.to_str().unwrap()]);
        assert_ne!(r.code, 0, "a backup to a full target succeeded");
        assert!(
            r.stderr.contains("space") || r.stderr.contains("full"),
            "{}",
            r.stderr
        );
        assert!(
            std::fs::read_dir(&tiny.0).unwrap().next().is_none(),
            "left a file behind"
        );
    } else {
        eprintln!("skipped the full-target case: tmpfs cannot be mounted here");
    }
    // 16 MiB that do not compress: the archive outgrows an 11 MiB target that passes
    // the up-front check (a third of the raw size), so the disk fills while writing.
    let big = uploads.join("big.bin");
    std::fs::write(&big, noise(16 << 20)).unwrap();
    if let Some(small) = Tmpfs::mount(&scratch.join("small"), "11m") {
        let r = a.run(&["backup", "create", "--to", small.0.to_str().unwrap()]);
        assert_ne!(r.code, 0, "a backup bigger than its target succeeded");
        assert!(
            r.stderr.contains("full") || r.stderr.contains("space"),
            "{}",
            r.stderr
        );
        assert!(
            std::fs::read_dir(&small.0).unwrap().next().is_none(),
            "left a partial archive"
        );
    }
    std::fs::remove_file(&big).unwrap();
    assert_eq!(snapshot_tree(&a.prefix.join("backups")), kept);
    assert_eq!(a.pids(), pids);

    // D1: the instance moves on.
    psql(
        &a.prefix,
        "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1001, 1100) g",
    );
    std::fs::write(uploads.join("later.txt"), "after the backup\n").unwrap();
    same_owner_as(&a.prefix.join("data/app"), &uploads);
    let d1_rows = rows(&a.prefix);
    let d1_files = snapshot_tree(&a.prefix.join("data/app"));

    // In place: kill -9 after each step, then --abort: D1 is back and healthy.
    let key_arg = key.to_str().unwrap();
    for step in &STEPS[..STEPS.len() - 1] {
        let r = a.run_env(
            &["restore", archive.to_str().unwrap(), "--key", key_arg],
            &[(fault::ENV, &format!("restore:{step}"))],
        );
        assert_eq!(
            r.code, -1,
            "restore was not killed at `{step}`: {}\n{}",
            r.stdout, r.stderr
        );
        let r = a.run(&["restore", archive.to_str().unwrap(), "--key", key_arg]);
        assert_ne!(
            r.code, 0,
            "a second restore started over an interrupted one"
        );
        assert!(r.stderr.contains("--resume"), "{}", r.stderr);
        a.run(&["restore", "--abort"]).expect(0);
        a.wait_all_ready(Duration::from_mins(1));
        assert_eq!(rows(&a.prefix), d1_rows, "abort after `{step}` lost rows");
        assert_eq!(
            snapshot_tree(&a.prefix.join("data/app")),
            d1_files,
            "abort after `{step}`"
        );
        assert!(healthy(), "unhealthy after aborting at `{step}`");
        assert!(!a.prefix.join("tmp/restore.json").exists());
    }
    // In place, to the end: D0 again.
    a.run(&["restore", archive.to_str().unwrap(), "--key", key_arg])
        .expect(0);
    assert_eq!(rows(&a.prefix), d0_rows);
    assert_eq!(snapshot_tree(&a.prefix.join("data/app")), d0_files);
    assert!(healthy());
    // The history shows it as a restore that succeeded and what it put back (it used to
    // record "no change").
    // (The safety backup it took is a run of its own, begun after it.)
    let hist = json(&a.run(&["history", "--json", "-n", "3"]).expect(0));
    let last = hist
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "restore")
        .unwrap_or_else(|| panic!("no restore in the history: {hist}"));
    assert!(
        last["outcome"]["status"].to_string().contains("succeeded"),
        "{hist}"
    );
    let restored = last["outcome"]["files_changed"].to_string();
    assert!(
        restored.contains("site.toml") && restored.contains("data/app"),
        "{hist}"
    );

    // The schedule: the supervisor's job takes a backup by itself.
    let archives = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".berth.tar.zst"))
            .collect()
    };
    let before = archives(&a.prefix.join("backups"));
    a.write_site(&format!(
        "{}[backup]\nschedule = \"1m\"\nkeep_last = 100\n",
        site()
    ));
    a.run(&["reconfigure"]).expect(0);
    let deadline = std::time::Instant::now() + Duration::from_mins(3);
    let scheduled = loop {
        let now = archives(&a.prefix.join("backups"));
        if let Some(n) = now.into_iter().find(|n| !before.contains(n)) {
            break n;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled backup after 3 minutes"
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    // Written whole (never a partial under the final name): it verifies.
    let path = a.prefix.join("backups").join(&scheduled);
    a.run(&["backup", "verify", path.to_str().unwrap()])
        .expect(0);
    let log = std::fs::read_to_string(a.prefix.join("log/jobs/berth-backup/current")).unwrap();
    assert!(log.contains("written to"), "{log}");
    a.write_site(&site());
    a.run(&["reconfigure"]).expect(0);

    // SFTP: back up to a real sshd, list it there.
    let sshd = Sshd::start(SSHD);
    let remote = scratch.join("remote");
    let sftp_site = sshd.as_ref().map(|s| {
        format!(
            "{}[backup]\nssh_identity = \"{}\"\nssh_known_hosts = \"{}\"\n",
            site(),
            s.identity.display(),
            s.known_hosts.display()
        )
    });
    let sftp_url = format!("sftp://root@127.0.0.1:{SSHD}{}", remote.display());
    let mut sftp_name = None;
    if let Some(text) = &sftp_site {
        a.write_site(text);
        let r = a
            .run(&["backup", "create", "--to", &sftp_url, "--json"])
            .expect(0);
        let sftp_archive = json(&r)["backup"]["archive"].as_str().unwrap().to_owned();
        assert!(remote.join(&sftp_archive).is_file());
        assert!(
            std::fs::read_dir(&remote)
                .unwrap()
                .flatten()
                .all(|e| !e.file_name().to_string_lossy().ends_with(".partial"))
        );
        let listed = json(
            &a.run(&["backup", "list", "--to", &sftp_url, "--json"])
                .expect(0),
        );
        assert_eq!(listed["archives"][0]["name"], sftp_archive.as_str());
        sftp_name = Some(sftp_archive);
    } else {
        eprintln!("skipped the SFTP part: needs root and /usr/sbin/sshd");
    }
    a.run(&["down"]).expect(0);
    // After `down`, `status` lists the services as stopped (exit 3: not ready) and says
    // the supervisor is not running, instead of failing on the socket.
    let down = a.run(&["status"]).expect(3);
    assert!(
        down.stdout.contains("supervisor not running"),
        "{}",
        down.stdout
    );
    assert!(
        down.stdout
            .lines()
            .any(|l| l.starts_with("postgresql") && l.contains("stopped")),
        "{}",
        down.stdout
    );
    let json: serde_json::Value =
        serde_json::from_str(&a.run(&["status", "--json"]).expect(0).stdout).unwrap();
    assert_eq!(json["supervisor_running"], false);

    // A new prefix (another machine) without `--manifest`: the instance it makes runs
    // the archive's app, from the manifest the archive carries, kept as its own.
    let dir_b = scratch.join("b-plain");
    let b = Berth::without_manifest(&dir_b);
    let _down_b = Stack { b: &b };
    let r = b
        .run(&["restore", archive.to_str().unwrap(), "--key", key_arg])
        .expect(0);
    assert!(
        r.stderr
            .contains("Using the manifest the archive carries: ministack 1.0.0"),
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read_to_string(dir_b.join("manifest/berth.toml")).unwrap(),
        std::fs::read_to_string(fixture("ministack").join("berth.toml")).unwrap()
    );
    let services: std::collections::BTreeSet<String> = b.status()["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        services,
        ["app", "nginx", "postgresql", "redis"]
            .map(str::to_owned)
            .into(),
        "{services:?}"
    );
    assert_eq!(rows(&dir_b), d0_rows);
    assert_eq!(snapshot_tree(&dir_b.join("data/app")), d0_files);
    assert!(healthy());
    b.run(&["down"]).expect(0);

    // kill -9 after each step, then --resume, all without `--manifest`.
    for step in STEPS {
        let dir_b = scratch.join(format!("b-{step}"));
        let b = Berth::without_manifest(&dir_b);
        let r = b.run_env(
            &["restore", archive.to_str().unwrap(), "--key", key_arg],
            &[(fault::ENV, &format!("restore:{step}"))],
        );
        assert_eq!(
            r.code, -1,
            "restore was not killed at `{step}`: {}\n{}",
            r.stdout, r.stderr
        );
        let _down_b = Stack { b: &b };
        b.run(&["restore", "--resume"]).expect(0);
        assert_eq!(rows(&dir_b), d0_rows, "resumed after `{step}`");
        assert_eq!(
            snapshot_tree(&dir_b.join("data/app")),
            d0_files,
            "resumed after `{step}`"
        );
        assert_eq!(sha(&dir_b.join("secrets/db_password")), d0_secret);
        assert!(healthy(), "unhealthy after resuming at `{step}`");
        assert!(!dir_b.join("tmp/restore.json").exists());
        b.run(&["down"]).expect(0);
    }
    // A new prefix from the SFTP target, whose site config only says how to reach it.
    if let (Some(n), Some(text)) = (&sftp_name, &sftp_site) {
        let dir_b = scratch.join("b-sftp");
        std::fs::create_dir_all(&dir_b).unwrap();
        let b = Berth::without_manifest(&dir_b);
        b.write_site(text);
        let _down_b = Stack { b: &b };
        b.run(&["restore", n, "--from", &sftp_url, "--key", key_arg])
            .expect(0);
        assert_eq!(rows(&dir_b), d0_rows);
        assert_eq!(snapshot_tree(&dir_b.join("data/app")), d0_files);
        assert!(healthy());
    }
    // A new prefix, aborted after the database was loaded: nothing is left.
    let dir_b = scratch.join("b-abort");
    let b = Berth::without_manifest(&dir_b);
    let r = b.run_env(
        &["restore", archive.to_str().unwrap(), "--key", key_arg],
        &[(fault::ENV, "restore:swap-database")],
    );
    // Killed at the fault point (-1); any other end shows what berth said.
    let _ = r.expect(-1);
    b.run(&["restore", "--abort"]).expect(0);
    assert!(!dir_b.exists(), "abort left {}", dir_b.display());
    assert!(!healthy());
}

#[test]
fn the_schedule_becomes_a_supervisor_job() {
    let dir = prefix_dir("backup-schedule");
    let b = Berth::new(dir.path(), &fixture("ministack"));
    b.write_site("[backup]\nschedule = \"12h\"\n");
    let plan = b.run(&["plan"]).expect(0);
    assert!(
        plan.stdout.contains("berth-backup every 12h"),
        "{}",
        plan.stdout
    );
    b.write_site("[backup]\nschedule = \"daily\"\n");
    let r = b.run(&["config", "check"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("backup.schedule"), "{}", r.stderr);
}

#[test]
fn retention_keeps_exactly_what_the_policy_says() {
    let dir = prefix_dir("backup-retention");
    let b = Berth::new(dir.path(), &fixture("ministack"));
    b.write_site("[backup]\nkeep_last = 2\nkeep_daily = 3\nkeep_weekly = 2\n");
    let target = dir.path().join("archives");
    std::fs::create_dir(&target).unwrap();
    // Two a day for ten days, 2026-11-01 (a Sunday) to 2026-11-10, plus another app's.
    let mut all = Vec::new();
    for day in 1..=10 {
        for hour in [3, 15] {
            let n = format!("ministack-1.0.0-202611{day:02}T{hour:02}0000Z.berth.tar.zst");
            std::fs::write(target.join(&n), b"x").unwrap();
            all.push(n);
        }
    }
    std::fs::write(
        target.join("otherstack-1.0.0-20261101T030000Z.berth.tar.zst"),
        b"x",
    )
    .unwrap();
    let t = target.to_str().unwrap();
    let dry = b
        .run(&["backup", "prune", "--to", t, "--dry-run", "--json"])
        .expect(0);
    assert_eq!(
        std::fs::read_dir(&target).unwrap().count(),
        21,
        "a dry run deleted something"
    );
    let decisions = json(&dry)["decisions"].as_array().unwrap().len();
    assert_eq!(decisions, 20);
    b.run(&["backup", "prune", "--to", t]).expect(0);
    let mut left: Vec<String> = std::fs::read_dir(&target)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    // last 2: 10th 15:00 and 03:00; daily 3: the 10th, 9th, 8th (newest of each);
    // weekly 2 (ISO weeks): week 46 (9th–10th) → 10th 15:00, week 45 (2nd–8th) → 8th 15:00.
    assert_eq!(
        left,
        [
            "ministack-1.0.0-20261108T150000Z.berth.tar.zst",
            "ministack-1.0.0-20261109T150000Z.berth.tar.zst",
            "ministack-1.0.0-20261110T030000Z.berth.tar.zst",
            "ministack-1.0.0-20261110T150000Z.berth.tar.zst",
            "otherstack-1.0.0-20261101T030000Z.berth.tar.zst",
        ]
    );
}

/// Give `tree` (recursively) the owner of `dir`.
fn same_owner_as(dir: &std::path::Path, tree: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).unwrap();
    let (uid, gid) = (Some(meta.uid()), Some(meta.gid()));
    let mut stack = vec![tree.to_path_buf()];
    while let Some(p) = stack.pop() {
        std::os::unix::fs::lchown(&p, uid, gid).unwrap();
        if p.is_dir() && !p.is_symlink() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
}
