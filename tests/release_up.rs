//! `berth up --bundle`: an instance installed from a signed release bundle runs the
//! components the vendor built, with the interpreter the bundle carries, and builds
//! nothing. A bundle that is not the vendor's, or has a changed byte anywhere, is
//! refused before anything is made.
//!
//! The bundle is of the ministack fixture with one more requirement: a wheel this
//! test writes (`berthtool`, with a console script), so pip runs at build time
//! without a network and the console script's start line is checked where it lands.
//! Its berth binary is a stand-in (`/bin/true`): `up` runs the berth that is called.
//!
//! Ports 558xx are this file's.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_tests::{
    Berth, Run, app_sql as sql, fixture, http_get, is_root, prefix_dir, run_as_service,
};

const EPOCH: &str = "1700000000";
const SITE: &str = "external_url = \"http://127.0.0.1:55880/\"\n\
                    [postgresql]\nport = 55832\n[redis]\nport = 55863\n\
                    [app]\nport = 55801\nspare_port = 55802\n";

/// A wheel of `berthtool` 1.0 with the console script `berthtool`, written by hand (a
/// wheel is a zip with a `.dist-info`).
fn write_wheel(dir: &Path) -> PathBuf {
    let wheel = dir.join("berthtool-1.0-py3-none-any.whl");
    let script = r#"
import sys, zipfile
files = {
    "berthtool/__init__.py": "import sys\ndef main():\n    print('berthtool runs on', sys.prefix)\n",
    "berthtool-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: berthtool\nVersion: 1.0\n",
    "berthtool-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    "berthtool-1.0.dist-info/entry_points.txt": "[console_scripts]\nberthtool = berthtool:main\n",
}
files["berthtool-1.0.dist-info/RECORD"] = "".join(f"{n},,\n" for n in files) + "berthtool-1.0.dist-info/RECORD,,\n"
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for name, text in files.items():
        z.writestr(name, text)
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&wheel)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    wheel
}

/// The ministack manifest at `version` under `dir`, its app also requiring `wheel`.
fn manifest_with(dir: &Path, wheel: &Path, version: &str) -> PathBuf {
    berth_tests::ministack_at(dir, version, |text| {
        let old = "requirements = [] }";
        assert!(text.contains(old));
        let text = text.replace(old, &format!("requirements = [\"{}\"] }}", wheel.display()));
        // 1.2 must be reached through a 1.1 release.
        if version.starts_with("1.2.") {
            format!("{text}\n[upgrade]\nstops = [\"1.1\"]\n")
        } else {
            text
        }
    })
}

/// `berth release …` (no instance).
fn release(manifest: Option<&Path>, args: &[&str]) -> Run {
    let b = Berth::new(
        Path::new("/nonexistent-prefix"),
        manifest.unwrap_or(Path::new("")),
    );
    let mut all = vec!["release"];
    all.extend_from_slice(args);
    b.run_env(&all, &[("SOURCE_DATE_EPOCH", EPOCH)])
}

/// A vendor key and its bundles of ministack.
struct Vendor {
    _dir: tempfile::TempDir,
    /// The secret key file.
    key: PathBuf,
    public: String,
    other_public: String,
    /// One bundle per version asked for, in that order.
    bundles: Vec<PathBuf>,
}

/// The bundles of ministack at `versions`, signed by a new vendor key.
fn vendor(versions: &[&str]) -> Vendor {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("vendor.key");
    let other = dir.path().join("other.key");
    release(None, &["key", "--out", key.to_str().unwrap()]).expect(0);
    release(None, &["key", "--out", other.to_str().unwrap()]).expect(0);
    let wheel = write_wheel(dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let mut bundles = Vec::new();
    for version in versions {
        let manifest = manifest_with(&dir.path().join("src"), &wheel, version);
        let r = release(
            Some(&manifest),
            &[
                "build",
                "--key",
                key.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--berth",
                "/bin/true",
            ],
        )
        .expect(0);
        assert!(r.stderr.contains("Building `app`"), "{}", r.stderr);
        bundles.push(out.join(format!("ministack-{version}.berth-release.tar.zst")));
    }
    Vendor {
        key: key.clone(),
        public: format!("{}.pub", key.display()),
        other_public: format!("{}.pub", other.display()),
        bundles,
        _dir: dir,
    }
}

/// Runs `down` when dropped: the instance stops however the test ends.
struct Down<'a>(&'a Berth);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        self.0.run(&["down"]);
    }
}

/// Every file below `dir` (symlinks not followed) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    berth_tests::files_under(dir)
        .into_iter()
        .filter(|f| {
            std::fs::symlink_metadata(f).is_ok_and(|m| m.is_file())
                && std::fs::read(f)
                    .unwrap()
                    .windows(needle.len())
                    .any(|w| w == needle)
        })
        .collect()
}

/// Installed from the bundle: nothing built, the app answers, runs the bundle's
/// interpreter as its service user, the console script runs from where it landed, the
/// tree is root's and unwritable by others, and the unpacked bundle is gone. Then
/// upgraded from the next version's bundle, again without building.
#[test]
#[allow(clippy::print_stderr)] // a skipped test says why
fn an_instance_installs_from_a_bundle_without_building() {
    if !is_root() {
        eprintln!("skipped: installing from a bundle makes service users (root only)");
        return;
    }
    let v = vendor(&["1.0.0", "1.1.0"]);
    let dir = prefix_dir("bundle-up");
    let prefix = dir.path();
    let berth = Berth::without_manifest(prefix);
    berth.write_site(SITE);
    let bundle = v.bundles[0].to_str().unwrap();
    let r = berth.run(&["up", "--bundle", bundle, "--public-key", &v.public]);
    // Stopped however the test ends.
    let _down = Down(&berth);
    let r = r.expect(0);
    assert!(
        r.stderr
            .contains("Installing `app` from the release bundle"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("Building"), "{}", r.stderr);
    let (code, body) = http_get(55880, "/health", "127.0.0.1").unwrap();
    assert_eq!(code, 200, "{body}");

    let app = prefix.join("releases/1.0.0/app");
    // The service runs the bundled interpreter.
    let pids = berth.pids();
    let exe = std::fs::read_link(format!("/proc/{}/exe", pids["app"])).unwrap();
    assert!(exe.starts_with(&app), "{}", exe.display());
    // Relocated and complete: the standard library's C modules load from the copy, and
    // the console script finds the interpreter next to it.
    let python = app.join("bin/python");
    let out = run_as_service(
        prefix,
        "app",
        &[
            python.to_str().unwrap(),
            "-c",
            "import sys, ssl, sqlite3, ctypes, json; print(sys.prefix)",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        app.to_str().unwrap()
    );
    let tool = app.join("bin/berthtool");
    let head = std::fs::read_to_string(&tool).unwrap();
    assert!(head.starts_with("#!/bin/sh\n"), "{head}");
    let out = run_as_service(prefix, "app", &[tool.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("berthtool runs on {}", app.display())
    );
    // Nothing of the build machine's paths: no staging directory, no pip.
    assert!(files_containing(&app, b".staging/").is_empty());
    assert!(!app.join("bin/pip").exists() && !app.join("bin/pip3").exists());
    // Root's, nothing writable by anyone else, no setuid bit.
    for f in berth_tests::files_under(&app) {
        let m = std::fs::symlink_metadata(&f).unwrap();
        if m.file_type().is_symlink() {
            continue;
        }
        assert_eq!((m.uid(), m.mode() & 0o7022), (0, 0), "{}", f.display());
    }
    // Compiled once, at build time: the modules it imports have their compiled files.
    let compiled = |module: &str| {
        berth_tests::files_under(&app.join("lib")).iter().any(|f| {
            let f = f.to_string_lossy();
            f.contains(&format!("/__pycache__/{module}.cpython-3")) && f.ends_with(".pyc")
        })
    };
    assert!(compiled("os") && compiled("__init__"));
    // The unpacked bundle is gone; the manifest is the instance's own now.
    assert!(!prefix.join("tmp/release-1.0.0").exists());
    let kept = std::fs::read_to_string(prefix.join("manifest/berth.toml")).unwrap();
    assert!(kept.contains("berthtool-1.0-py3-none-any.whl"), "{kept}");
    berth.run(&["status"]).expect(0);

    // The next version, from its bundle: the hop installs the release from it (nothing
    // built), the app runs its interpreter, and the unpacked bundle is gone after.
    let r = berth
        .run(&[
            "upgrade",
            "apply",
            "--bundle",
            v.bundles[1].to_str().unwrap(),
            "--public-key",
            &v.public,
        ])
        .expect(0);
    assert!(
        r.stderr
            .contains("Installing `app` from the release bundle"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("Building"), "{}", r.stderr);
    let next = prefix.join("releases/1.1.0/app");
    let exe = std::fs::read_link(format!("/proc/{}/exe", berth.pids()["app"])).unwrap();
    assert!(exe.starts_with(&next), "{}", exe.display());
    let (code, body) = http_get(55880, "/health", "127.0.0.1").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(!prefix.join("tmp/release-1.1.0").exists());
    assert!(!prefix.join("state/upgrade.json").exists());
    let kept = std::fs::read_to_string(prefix.join("manifest/berth.toml")).unwrap();
    assert!(kept.contains("version = \"1.1.0\""), "{kept}");
}

/// Another vendor's key, a byte changed in the data (in a built component) and in the
/// index: refused with the reason, and the prefix that was to be made does not exist.
#[test]
fn a_bundle_that_is_not_the_vendors_changes_nothing() {
    let v = vendor(&["1.0.0"]);
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&v.bundles[0]).unwrap();
    let mut data = bytes.clone();
    data[bytes.len() / 3] ^= 0x01;
    let mut index = bytes.clone();
    let n = index.len();
    index[n - 400] ^= 0x01;
    let cases: [(&str, Vec<u8>, &str, &str); 3] = [
        (
            "another vendor's key",
            bytes.clone(),
            &v.other_public,
            "trusted",
        ),
        ("a byte changed in the data", data, &v.public, ""),
        ("a byte changed in the index", index, &v.public, ""),
    ];
    for (i, (what, content, key, expect)) in cases.into_iter().enumerate() {
        let dir = tmp.path().join(i.to_string());
        std::fs::create_dir(&dir).unwrap();
        let bundle = dir.join("ministack-1.0.0.berth-release.tar.zst");
        std::fs::write(&bundle, content).unwrap();
        let prefix = tmp.path().join(format!("prefix-{i}"));
        let r = Berth::without_manifest(&prefix).run(&[
            "up",
            "--bundle",
            bundle.to_str().unwrap(),
            "--public-key",
            key,
        ]);
        assert_eq!(r.code, 1, "{what}: {r:?}");
        assert!(r.stderr.contains(expect), "{what}: {}", r.stderr);
        assert!(!prefix.exists(), "{what}: the prefix was made");
    }
    // `--bundle` takes the manifest from the bundle: giving another is refused.
    let r = Berth::new(&tmp.path().join("p"), &fixture("ministack")).run(&[
        "up",
        "--bundle",
        v.bundles[0].to_str().unwrap(),
        "--public-key",
        &v.public,
    ]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--manifest"), "{}", r.stderr);
}

/// ministack at 1.0.0 with a `migrate` hook that records when it ran and a `[seed]`
/// naming it, whose build-time column is that time.
fn seeded_manifest(dir: &Path) -> PathBuf {
    let from = fixture("ministack");
    let to = dir.join("ministack-seeded");
    std::fs::create_dir_all(to.join("templates")).unwrap();
    for e in std::fs::read_dir(from.join("templates")).unwrap() {
        let name = e.unwrap().file_name();
        std::fs::copy(
            from.join("templates").join(&name),
            to.join("templates").join(&name),
        )
        .unwrap();
    }
    let mut text = std::fs::read_to_string(from.join("berth.toml")).unwrap();
    text.push_str(
        r#"
[hooks.migrate]
component = "postgresql"
description = "The release's database migrations"
command = ["/bin/sh", "-c", '''
if [ -d "$OID_SHIFT" ]; then
  "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -d app \
    -c 'CREATE TABLE oid_shift (a int); DROP TABLE oid_shift' || exit 1
  : > "$OID_SHIFT/shifted" || exit 1
fi
exec "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -d app <<'SQL'
CREATE TABLE IF NOT EXISTS migrations (name text PRIMARY KEY, ran_at timestamptz NOT NULL DEFAULT now());
INSERT INTO migrations (name) VALUES ('0001') ON CONFLICT DO NOTHING;
SQL
''']
environment = { PSQL = "{{ components.postgresql.bin.psql }}", PGHOST = "{{ paths.run }}/postgresql", PGPORT = "{{ settings.postgresql.port }}", OID_SHIFT = "__OID_SHIFT__" }
when = "release"
after = ["postgresql"]
before = ["app"]

[seed]
hook = "migrate"
build_time_columns = ["migrations.ran_at"]
"#,
    );
    let text = text.replace(
        "__OID_SHIFT__",
        &oid_shift_marker(dir).display().to_string(),
    );
    std::fs::write(to.join("berth.toml"), text).unwrap();
    to
}

/// While this directory exists, the seeded manifest's `migrate` first makes and drops a
/// table, so the objects it then makes get other catalog OIDs. Outside the test's
/// private directory: the hook runs as the database's user (and leaves `shifted` in
/// it, to show it did).
fn oid_shift_marker(dir: &Path) -> PathBuf {
    let tag = dir.file_name().unwrap().to_string_lossy().into_owned();
    std::env::temp_dir().join(format!("berth-oid-shift-{tag}"))
}

/// A bundle with a seed: made at build time on a throwaway instance; a first install
/// loads it where the database is created, and its own `migrate` then finds the work
/// done (the one row is the build's: it ran at `SOURCE_DATE_EPOCH`, where a local run
/// would have written the time of the install). Two builds are the same bytes. The
/// throwaway instance leaves nothing running, even when a build was killed.
#[test]
#[allow(clippy::print_stderr)] // a skipped test says why
#[allow(clippy::too_many_lines)] // a killed build, a build, then the install it makes
fn a_first_install_loads_the_seed_and_migrates_nothing() {
    if !is_root() {
        eprintln!("skipped: installing from a bundle makes service users (root only)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("vendor.key");
    release(None, &["key", "--out", key.to_str().unwrap()]).expect(0);
    let manifest = seeded_manifest(dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let build_with = |out: &Path, env: &[(&str, &str)], more: &[&str]| {
        let b = Berth::new(Path::new("/nonexistent-prefix"), &manifest);
        let mut all = vec![("SOURCE_DATE_EPOCH", EPOCH)];
        all.extend_from_slice(env);
        let mut args = vec![
            "release",
            "build",
            "--key",
            key.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--berth",
            "/bin/true",
        ];
        args.extend_from_slice(more);
        b.run_env(&args, &all)
    };
    let build_into = |out: &Path, env: &[(&str, &str)]| build_with(out, env, &[]);
    let build = |env: &[(&str, &str)]| build_into(&out, env);
    let listing_of = |bundle: &Path| {
        let listing = Command::new("sh")
            .arg("-c")
            .arg(format!("zstd -dc {} | tar -t", bundle.display()))
            .output()
            .unwrap();
        String::from_utf8_lossy(&listing.stdout).into_owned()
    };
    // `--no-seed`: no throwaway instance, a bundle without `seed/`.
    let unseeded = dir.path().join("unseeded");
    std::fs::create_dir(&unseeded).unwrap();
    let r = build_with(&unseeded, &[], &["--no-seed"]).expect(0);
    assert!(
        r.stderr
            .contains("No seed: a first install runs hook `migrate` itself")
            && !r.stderr.contains("Seeding the database")
            && !r.stdout.contains("seed:"),
        "{r:?}"
    );
    let listing = listing_of(&unseeded.join("ministack-1.0.0.berth-release.tar.zst"));
    assert!(!listing.contains("seed/"), "{listing}");
    let throwaways = || {
        let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
        String::from_utf8_lossy(&ps.stdout)
            .lines()
            .filter(|l| l.contains("/berth-seed."))
            .count()
    };
    // A build killed while its throwaway instance runs leaves it running (and its
    // users); the next build stops and removes both before making its own.
    berth_tests::require_fault_points();
    let killed = build(&[("BERTH_FAULT", "seed:dumped")]);
    assert_ne!(killed.code, 0, "{killed:?}");
    assert!(throwaways() > 0, "the killed build left nothing running");
    let r = build(&[]).expect(0);
    assert!(
        r.stderr
            .contains("Removing a throwaway instance a killed build left"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("Seeding the database"), "{}", r.stderr);
    assert!(r.stdout.contains("seed: hook `migrate`"), "{}", r.stdout);
    // Nothing of the throwaway instances runs on, and their users are gone.
    assert_eq!(throwaways(), 0);
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    assert!(!passwd.contains("berth-seed-"), "{passwd}");
    let bundle = out.join("ministack-1.0.0.berth-release.tar.zst");
    let listing = listing_of(&bundle);
    assert!(listing.lines().any(|l| l == "seed/seed.sql"), "{listing}");
    // Built again (another throwaway instance, another time, and its objects with
    // other catalog OIDs): the same bytes, seed included.
    let again = dir.path().join("again");
    std::fs::create_dir(&again).unwrap();
    let marker = oid_shift_marker(dir.path());
    std::fs::create_dir(&marker).unwrap();
    std::fs::set_permissions(&marker, std::fs::Permissions::from_mode(0o777)).unwrap();
    let r = build_into(&again, &[]);
    let shifted = marker.join("shifted").exists();
    std::fs::remove_dir_all(&marker).unwrap();
    r.expect(0);
    assert!(shifted, "the second build's migrate did not shift the OIDs");
    berth_tests::assert_reproducible(
        &bundle,
        &again.join("ministack-1.0.0.berth-release.tar.zst"),
    );

    let pdir = prefix_dir("bundle-seed");
    let prefix = pdir.path();
    let berth = Berth::without_manifest(prefix);
    berth.write_site(
        "external_url = \"http://127.0.0.1:55980/\"\n\
         [postgresql]\nport = 55932\n[redis]\nport = 55963\n\
         [app]\nport = 55901\nspare_port = 55902\n",
    );
    let r = berth.run(&[
        "up",
        "--bundle",
        bundle.to_str().unwrap(),
        "--public-key",
        &format!("{}.pub", key.display()),
    ]);
    let _down = Down(&berth);
    let r = r.expect(0);
    assert!(
        r.stderr.contains("Loading the seed into database `app`"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("Running hook `migrate`"), "{}", r.stderr);
    let rows = sql(
        prefix,
        55932,
        "SELECT name || ' ' || extract(epoch FROM ran_at)::bigint FROM migrations",
    );
    assert_eq!(rows, format!("0001 {EPOCH}"));
    // The database is the app's, as a migrated one would be.
    let owner = sql(
        prefix,
        55932,
        "SELECT tableowner FROM pg_tables WHERE tablename = 'migrations'",
    );
    assert_eq!(owner, "app");
    let (code, body) = http_get(55980, "/health", "127.0.0.1").unwrap();
    assert_eq!(code, 200, "{body}");
    // Only the new instance's database is there (no leftover of the load).
    let dbs = sql(
        prefix,
        55932,
        "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database WHERE NOT datistemplate",
    );
    assert_eq!(dbs, "app,postgres");
}

/// The port this file's HTTP server listens on.
const HTTP_PORT: u16 = 55790;

/// `python3 -m http.server` serving a directory on 127.0.0.1, stopped when dropped.
struct Server(std::process::Child);

impl Server {
    fn start(dir: &Path, port: u16) -> Self {
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let server = Self(child);
        let start = std::time::Instant::now();
        while http_get(port, "/", "127.0.0.1").is_err() {
            assert!(
                start.elapsed().as_secs() < 20,
                "the HTTP server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A channel: three bundles published under one signed index. `up --channel
/// --version` installs the version asked for; `upgrade apply --channel` goes to the
/// newest through the required stop (1.2.0 is reached through 1.1.0), downloading the
/// bundles from the channel served over HTTP. A changed index, a changed bundle and
/// another vendor's key are refused before anything is made, from a directory and over
/// HTTP, and so is an address with no channel.
#[test]
#[allow(clippy::print_stderr)] // a skipped test says why
#[allow(clippy::too_many_lines)] // one channel, its refusals, then an install and an upgrade
fn a_channel_installs_and_upgrades_through_the_required_stop() {
    if !is_root() {
        eprintln!("skipped: installing from a bundle makes service users (root only)");
        return;
    }
    let v = vendor(&["1.0.0", "1.1.0", "1.2.0"]);
    let tmp = tempfile::tempdir().unwrap();
    let channel = tmp.path().join("channel");
    let key = v.key.to_str().unwrap();
    for b in &v.bundles {
        let r = release(
            None,
            &[
                "publish",
                b.to_str().unwrap(),
                "--channel",
                channel.to_str().unwrap(),
                "--key",
                key,
            ],
        )
        .expect(0);
        assert!(r.stdout.contains("Published"), "{}", r.stdout);
    }
    // Again: the same bytes, nothing changes.
    let again = release(
        None,
        &[
            "publish",
            v.bundles[0].to_str().unwrap(),
            "--channel",
            channel.to_str().unwrap(),
            "--key",
            key,
        ],
    )
    .expect(0);
    assert!(again.stdout.contains("already"), "{}", again.stdout);
    assert!(
        again.stdout.contains("versions: 1.0.0, 1.1.0, 1.2.0"),
        "{}",
        again.stdout
    );

    // Refused before anything is made: a changed index, a changed bundle, another key.
    let copy = |name: &str| {
        let to = tmp.path().join(name);
        std::fs::create_dir(&to).unwrap();
        for e in std::fs::read_dir(&channel).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
        to
    };
    let changed_index = copy("changed-index");
    let index = changed_index.join("channel.json");
    let text = std::fs::read_to_string(&index).unwrap();
    std::fs::write(&index, text.replacen("\"1.1\"", "\"1.0\"", 1)).unwrap();
    let changed_bundle = copy("changed-bundle");
    let bundle = changed_bundle.join("ministack-1.0.0.berth-release.tar.zst");
    let mut bytes = std::fs::read(&bundle).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    std::fs::write(&bundle, bytes).unwrap();
    // The same trees served over HTTP (a static server, as a vendor's would be).
    let _server = Server::start(tmp.path(), HTTP_PORT);
    let url = |dir: &str| format!("http://127.0.0.1:{HTTP_PORT}/{dir}/");
    for (what, dir, public, expect) in [
        (
            "a changed index",
            changed_index.to_str().unwrap().to_owned(),
            &v.public,
            "not by a trusted key",
        ),
        (
            "a changed bundle",
            changed_bundle.to_str().unwrap().to_owned(),
            &v.public,
            "SHA-256",
        ),
        (
            "another vendor's key",
            channel.to_str().unwrap().to_owned(),
            &v.other_public,
            "not by a trusted key",
        ),
        (
            "a changed index over HTTP",
            url("changed-index"),
            &v.public,
            "not by a trusted key",
        ),
        (
            "a changed bundle over HTTP",
            url("changed-bundle"),
            &v.public,
            "SHA-256",
        ),
        (
            "an address with no channel",
            url("nowhere"),
            &v.public,
            "404",
        ),
    ] {
        let prefix = tmp.path().join(format!("never-{}", what.len()));
        let r = Berth::without_manifest(&prefix).run(&[
            "up",
            "--channel",
            &dir,
            "--app-version",
            "1.0.0",
            "--public-key",
            public,
        ]);
        assert_eq!(r.code, 1, "{what}: {r:?}");
        assert!(r.stderr.contains(expect), "{what}: {}", r.stderr);
        assert!(!prefix.exists(), "{what}: the prefix was made");
    }

    let pdir = prefix_dir("bundle-channel");
    let prefix = pdir.path();
    let berth = Berth::without_manifest(prefix);
    berth.write_site(
        "external_url = \"http://127.0.0.1:55780/\"\n\
         [postgresql]\nport = 55732\n[redis]\nport = 55763\n\
         [app]\nport = 55701\nspare_port = 55702\n",
    );
    let r = berth.run(&[
        "up",
        "--channel",
        channel.to_str().unwrap(),
        "--app-version",
        "1.0.0",
        "--public-key",
        &v.public,
    ]);
    let _down = Down(&berth);
    r.expect(0);
    // The upgrade downloads both bundles of the path from the served channel.
    let r = berth
        .run(&[
            "upgrade",
            "apply",
            "--channel",
            &url("channel"),
            "--public-key",
            &v.public,
            "--json",
        ])
        .expect(0);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let hops: Vec<(String, String)> = report["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["from"].as_str().unwrap().to_owned(),
                h["to"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        hops,
        [
            ("1.0.0".to_owned(), "1.1.0".to_owned()),
            ("1.1.0".to_owned(), "1.2.0".to_owned())
        ]
    );
    assert!(!r.stderr.contains("Building"), "{}", r.stderr);
    let exe = std::fs::read_link(format!("/proc/{}/exe", berth.pids()["app"])).unwrap();
    assert!(
        exe.starts_with(prefix.join("releases/1.2.0/app")),
        "{}",
        exe.display()
    );
    let (code, body) = http_get(55780, "/health", "127.0.0.1").unwrap();
    assert_eq!(code, 200, "{body}");
}
