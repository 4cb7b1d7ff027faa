//! Helpers for berth's end-to-end tests: run the real `berth` binary against a
//! prefix of its own, read the supervisor's status, snapshot a prefix's files.
#![allow(clippy::missing_panics_doc, missing_docs)] // test support: panicking is the point

pub mod browser;
pub mod netns;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `berth` binary built by `cargo build` next to this test binary.
pub fn berth_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> → target/<profile>/berth
    let bin = exe.parent().unwrap().parent().unwrap().join("berth");
    assert!(
        bin.exists(),
        "`{}` is missing: build it first with `cargo build --workspace` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// Fails the test unless the `berth` binary was built with fault points (cargo feature
/// `berth-cli/fault-injection`, which `scripts/test.sh` turns on): without them a test
/// of an interrupted operation would pass without ever interrupting anything.
pub fn require_fault_points() {
    use std::os::unix::process::ExitStatusExt;
    static CHECKED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    CHECKED.get_or_init(|| {
        let status = Command::new(berth_bin())
            .arg("--version")
            .env("BERTH_FAULT", "cli:start")
            .output()
            .unwrap()
            .status;
        assert_eq!(
            status.signal(),
            Some(9),
            "`{}` has no fault points: build it with `cargo build --workspace --features berth-cli/fault-injection` (scripts/test.sh does)",
            berth_bin().display()
        );
    });
}

/// A fixture manifest directory under `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

/// A copy of the ministack fixture at `version` in `dir/ministack-<version>`, its
/// `berth.toml` passed through `edit` as well; the copy's directory.
pub fn ministack_at(dir: &Path, version: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let from = fixture("ministack");
    let to = dir.join(format!("ministack-{version}"));
    std::fs::create_dir_all(to.join("templates")).unwrap();
    for e in std::fs::read_dir(from.join("templates")).unwrap() {
        let name = e.unwrap().file_name();
        std::fs::copy(
            from.join("templates").join(&name),
            to.join("templates").join(&name),
        )
        .unwrap();
    }
    let text = std::fs::read_to_string(from.join("berth.toml")).unwrap();
    assert!(text.contains("version = \"1.0.0\""));
    let text = text.replace("version = \"1.0.0\"", &format!("version = \"{version}\""));
    std::fs::write(to.join("berth.toml"), edit(text)).unwrap();
    to
}

/// A program from the test tools' virtualenv (`scripts/test.sh` makes it and names
/// its `bin/` in `BERTH_TEST_TOOLS`; `target/test-tools/bin` otherwise).
pub fn test_tool(name: &str) -> PathBuf {
    let bin = std::env::var_os("BERTH_TEST_TOOLS")
        .map_or_else(|| root().join("target/test-tools/bin"), PathBuf::from);
    let tool = bin.join(name);
    assert!(
        tool.exists(),
        "{} is missing: scripts/test.sh installs the test tools",
        tool.display()
    );
    tool
}

/// A wheel of one module, `demo_pkg` at `version` (`License-Expression: MIT`, a
/// licence file), written into `dir` with Python's `zipfile`: a requirement pip
/// installs with no index. Its path.
pub fn demo_wheel(dir: &Path, version: &str) -> PathBuf {
    wheel(dir, "demo_pkg", version)
}

/// The same for a distribution named `name` (`Django`, say: what an advisory scan
/// matches is the name and version the metadata gives).
pub fn wheel(dir: &Path, name: &str, version: &str) -> PathBuf {
    let module = name.to_lowercase().replace('-', "_");
    let path = dir.join(format!("{module}-{version}-py3-none-any.whl"));
    let script = format!(
        r#"
import base64, hashlib, sys, zipfile
v = "{version}"
di = f"{module}-{{v}}.dist-info"
files = {{
    "{module}/__init__.py": "VALUE = 1\n",
    f"{{di}}/METADATA": f"Metadata-Version: 2.4\nName: {name}\nVersion: {{v}}\nSummary: A demo\nLicense-Expression: MIT\nLicense-File: LICENSE\n",
    f"{{di}}/licenses/LICENSE": "MIT License\n\nCopyright (c) demo\n",
    f"{{di}}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}}
record = []
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for n, t in files.items():
        z.writestr(n, t)
        d = base64.urlsafe_b64encode(hashlib.sha256(t.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{{n}},sha256={{d}},{{len(t.encode())}}")
    record.append(f"{{di}}/RECORD,,")
    z.writestr(f"{{di}}/RECORD", "\n".join(record) + "\n")
"#
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    path
}

/// A ministack bundle (1.0.0, built in `dir` with `SOURCE_DATE_EPOCH=1700000000`)
/// whose bundled Python has `wheel` installed, and whose berth is this build's record
/// of its crates alone (the debug binary cut down to its `.berth-deps` section: the
/// crates are listed without 300 MB of code). The bundle and its public key file.
pub fn ministack_bundle_with(dir: &Path, wheel: &Path) -> (PathBuf, String) {
    let manifest = ministack_at(dir, "1.0.0", |text| {
        text.replace(
            "requirements = []",
            &format!("requirements = [\"{}\"]", wheel.display()),
        )
    });
    ministack_bundle_of(dir, &manifest, &["--only-section=.berth-deps"])
}

/// A bundle of the ministack manifest in `manifest`, built in `dir` as
/// [`ministack_bundle_with`] does, its berth this build's cut by `objcopy` with
/// `objcopy_args` (`--strip-debug` for a berth that runs, in images). The bundle and
/// its public key file.
pub fn ministack_bundle_of(
    dir: &Path,
    manifest: &Path,
    objcopy_args: &[&str],
) -> (PathBuf, String) {
    release_bundle_of(dir, manifest, objcopy_args, &[])
}

/// [`release_bundle_of`] built once per set of inputs and shared by the tests that
/// need the same bundle (NetBox's takes minutes to build): kept under
/// `target/test-cache/bundles/<SHA-256 of this berth, the manifest's files and the
/// arguments>/`, made in a directory of its own and renamed into place, so tests
/// running at once never see half a bundle; one test at a time builds it (a lock file
/// beside it), the others wait and take it. Builds are reproducible, so a bundle
/// built by another test is the bundle this one would build.
pub fn shared_release_bundle(
    manifest: &Path,
    objcopy_args: &[&str],
    more: &[&str],
) -> (PathBuf, String) {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(std::fs::read(berth_bin()).unwrap());
    for a in objcopy_args.iter().chain(["--"].iter()).chain(more) {
        h.update(a.as_bytes());
        h.update([0]);
    }
    let mut files = files_under(manifest);
    files.sort();
    for f in files {
        if f.is_file() {
            h.update(
                f.strip_prefix(manifest)
                    .unwrap()
                    .to_string_lossy()
                    .as_bytes(),
            );
            h.update([0]);
            h.update(std::fs::read(&f).unwrap());
        }
    }
    let key = hex::encode(h.finalize());
    let cache = root().join("target/test-cache/bundles");
    let dir = cache.join(&key);
    let found = |dir: &Path| -> Option<(PathBuf, String)> {
        let dist = std::fs::read_dir(dir.join("dist")).ok()?;
        let bundle = dist.map(|e| e.unwrap().path()).next()?;
        Some((bundle, format!("{}.pub", dir.join("vendor.key").display())))
    };
    if let Some(hit) = found(&dir) {
        return hit;
    }
    std::fs::create_dir_all(&cache).unwrap();
    // One build of a bundle at a time, across the test binaries running at once
    // (scripts/test.sh runs some beside the others): whoever waited finds it built.
    let lock = std::fs::File::create(cache.join(format!("{key}.lock"))).unwrap();
    lock.lock().unwrap();
    if let Some(hit) = found(&dir) {
        return hit;
    }
    let work = tempfile::Builder::new()
        .prefix(".building-")
        .tempdir_in(&cache)
        .unwrap();
    release_bundle_of(work.path(), manifest, objcopy_args, more);
    // Another test may have put the same bundle there meanwhile: either is right.
    let _ = std::fs::rename(work.path(), &dir);
    found(&dir).expect("the shared bundle is in place")
}

/// Every service's image of `bundle` (signed by `public`), as docker archives
/// (`<app>-<service>-<version>.docker.tar`) in the directory returned: built once by
/// `berth image build` and kept beside the bundle in the test cache, for every test
/// of the run and the next runs (a test binary's tests build it one at a time).
pub fn shared_images(bundle: &Path, public: &str) -> PathBuf {
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = BUILDING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = bundle
        .parent()
        .and_then(Path::parent)
        .expect("a shared bundle's directory")
        .join("images");
    if dir.is_dir() {
        return dir;
    }
    let work = tempfile::Builder::new()
        .prefix(".images-")
        .tempdir_in(dir.parent().unwrap())
        .unwrap();
    let archives = work.path().join("archives");
    std::fs::create_dir(&archives).unwrap();
    Berth::new(Path::new("/nonexistent-prefix"), Path::new(""))
        .run(&[
            "image",
            "build",
            bundle.to_str().unwrap(),
            "--public-key",
            public,
            "--out",
            work.path().join("layout").to_str().unwrap(),
            "--docker-archives",
            archives.to_str().unwrap(),
            "--cache",
            work.path().join("cache").to_str().unwrap(),
            "--quiet",
        ])
        .expect(0);
    // The layout beside the archives (`berth k8s render --images` checks it), moved
    // first: the archives' directory is what says the images are there.
    let layout = shared_image_layout(&dir);
    let _ = std::fs::remove_dir_all(&layout);
    std::fs::rename(work.path().join("layout"), &layout).unwrap();
    let _ = std::fs::rename(&archives, &dir);
    dir
}

/// The OCI image layout of the images [`shared_images`] built, beside their archives.
pub fn shared_image_layout(images: &Path) -> PathBuf {
    images.parent().expect("the images' directory").join("layout")
}

/// The release bundle of the manifest in `manifest`, built in `dir` (a new vendor key,
/// `SOURCE_DATE_EPOCH=1700000000`, `more` given to `berth release build`), its berth
/// this build's cut by `objcopy` with `objcopy_args`. The bundle and its public key
/// file.
pub fn release_bundle_of(
    dir: &Path,
    manifest: &Path,
    objcopy_args: &[&str],
    more: &[&str],
) -> (PathBuf, String) {
    let key = dir.join("vendor.key");
    Berth::new(Path::new("/nonexistent-prefix"), Path::new(""))
        .run(&["release", "key", "--out", key.to_str().unwrap()])
        .expect(0);
    let dist = dir.join("dist");
    std::fs::create_dir(&dist).unwrap();
    let cut_berth = dir.join("berth-cut");
    let cut = Command::new("objcopy")
        .args(objcopy_args)
        .arg(berth_bin())
        .arg(&cut_berth)
        .output()
        .unwrap();
    assert!(cut.status.success(), "{cut:?}");
    let mut args = vec![
        "release",
        "build",
        "--key",
        key.to_str().unwrap(),
        "--out",
        dist.to_str().unwrap(),
        "--berth",
        cut_berth.to_str().unwrap(),
    ];
    args.extend_from_slice(more);
    Berth::new(Path::new("/nonexistent-prefix"), manifest)
        .run_env(&args, &[("SOURCE_DATE_EPOCH", "1700000000")])
        .expect(0);
    let mut built: Vec<PathBuf> = std::fs::read_dir(&dist)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(built.len(), 1, "{built:?}");
    (built.remove(0), format!("{}.pub", key.display()))
}

/// Checks `cdx` with CycloneDX's own validator (the 1.6 JSON schema, strict) and
/// `spdx` with SPDX's tools, both from the test tools' virtualenv.
pub fn assert_valid_boms(cdx: &Path, spdx: &Path) {
    let check = Command::new(test_tool("python"))
        .arg("-c")
        .arg(
            "import sys\n\
             from cyclonedx.validation.json import JsonStrictValidator\n\
             from cyclonedx.schema import SchemaVersion\n\
             e = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())\n\
             sys.exit(str(e).splitlines()[0] if e else 0)\n",
        )
        .arg(cdx)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}: {check:?}", cdx.display());
    let check = Command::new(test_tool("pyspdxtools"))
        .arg("-i")
        .arg(spdx)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}: {check:?}", spdx.display());
}

/// ministack's `berth.toml` with its system components' RPM names added
/// (`rpm_packages`), for `berth package rpm`.
pub fn with_rpm_names(text: &str) -> String {
    let mut out = text.to_owned();
    for (deb, rpm) in [
        ("postgresql-15", "postgresql-server"),
        ("redis-server", "redis"),
        ("nginx-light", "nginx"),
    ] {
        let line = format!("packages = [\"{deb}\"]");
        assert!(out.contains(&line), "{line}");
        out = out.replace(&line, &format!("{line}\nrpm_packages = [\"{rpm}\"]"));
    }
    out
}

/// Whether the tests run as root (system install: service users are created).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A fresh prefix directory that service users can traverse.
pub fn prefix_dir(tag: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("berth-{tag}-"))
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// The result of one `berth` run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: &Output) -> Self {
        Self {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Panic with both streams unless the exit code is `code`.
    #[track_caller]
    #[allow(clippy::return_self_not_must_use)] // an assertion: most callers drop the run
    pub fn expect(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "berth exited {} (expected {code})\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

/// Runs `berth` with a fixed prefix and manifest, and keeps every output it produced.
pub struct Berth {
    pub prefix: PathBuf,
    pub manifest: PathBuf,
    pub transcript: std::sync::Mutex<String>,
}

impl Berth {
    pub fn new(prefix: &Path, manifest: &Path) -> Self {
        Self {
            prefix: prefix.to_path_buf(),
            manifest: manifest.to_path_buf(),
            transcript: std::sync::Mutex::new(String::new()),
        }
    }

    /// The instance at `prefix` as set up: runs without `--manifest`, so berth uses the
    /// manifest the instance keeps.
    pub fn installed(prefix: &Path) -> Self {
        Self::new(prefix, Path::new(""))
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    /// A runner with no `--manifest`: berth finds the manifest itself (the prefix's stored
    /// copy; for a restore into a new prefix, the archive's).
    pub fn without_manifest(prefix: &Path) -> Self {
        Self::new(prefix, Path::new(""))
    }

    /// [`Berth::run`] with extra environment variables.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        if env.iter().any(|(k, _)| *k == "BERTH_FAULT") {
            require_fault_points();
        }
        let mut cmd = Command::new(berth_bin());
        cmd.envs(env.iter().copied())
            .arg("--prefix")
            .arg(&self.prefix);
        if !self.manifest.as_os_str().is_empty() {
            cmd.arg("--manifest").arg(&self.manifest);
        }
        let out = cmd
            .args(args)
            .env_remove("BERTH_PREFIX")
            .env_remove("BERTH_MANIFEST")
            .env_remove("BERTH_CONFIG")
            .output()
            .unwrap();
        let run = Run::from(&out);
        let _ = write!(
            self.transcript.lock().unwrap(),
            "$ berth {}\n{}{}",
            args.join(" "),
            run.stdout,
            run.stderr
        );
        run
    }

    /// Every secret file is 0600 in a 0700 directory (at least `at_least` of them), and
    /// no value appears in berth's output (every command this `Berth` ran, and
    /// `commands`, run now) or in any log under the prefix.
    pub fn assert_secrets_private_and_unshown(&self, at_least: usize, commands: &[&[&str]]) {
        let dir = self.prefix.join("secrets");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let mut values = Vec::new();
        for f in files_under(&dir) {
            assert_eq!(mode(&f), 0o600, "{}", f.display());
            values.push(std::fs::read_to_string(&f).unwrap().trim().to_owned());
        }
        assert!(values.len() >= at_least, "{values:?}");
        for args in commands {
            self.run(args).expect(0);
        }
        let mut haystack = self.transcript.lock().unwrap().clone();
        for f in files_under(&self.prefix.join("log")) {
            haystack.push_str(&String::from_utf8_lossy(&std::fs::read(&f).unwrap()));
        }
        for (i, v) in values.iter().enumerate() {
            assert!(
                !haystack.contains(v.as_str()),
                "secret #{i} appears in berth's output or a log"
            );
        }
    }

    /// The instance's layout (every path but the release's).
    pub fn paths(&self) -> berth_render::Paths {
        berth_render::Paths::unversioned(&self.prefix)
    }

    /// The site config file.
    pub fn site(&self) -> PathBuf {
        self.paths().site_config()
    }

    /// Write the site config, with `users = "shared"` first unless `text` sets `users`:
    /// the tests run the fixture in many prefixes, at once and run after run, and with
    /// users of each instance's own (the default) the machine would gather a set of
    /// users per test prefix, and prefixes named alike would claim the same names. A
    /// test of per-instance users sets `users` itself; one that checks positions in the
    /// file writes it with [`std::fs::write`].
    pub fn write_site(&self, text: &str) {
        let sets_users = text.lines().any(|l| l.trim_start().starts_with("users ="));
        let text = if sets_users {
            text.to_owned()
        } else {
            format!("users = \"shared\"\n{text}")
        };
        std::fs::write(self.site(), text).unwrap();
    }

    /// `berth status --json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        let r = self.run(&["status", "--json"]);
        serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("status --json: {e}\n{}\n{}", r.stdout, r.stderr))
    }

    /// Service name → pid, for running services.
    pub fn pids(&self) -> BTreeMap<String, u64> {
        self.status()["services"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| Some((s["name"].as_str()?.to_owned(), s["pid"].as_u64()?)))
            .collect()
    }

    /// Wait until every service is ready (or panic with the status after `deadline`).
    pub fn wait_all_ready(&self, deadline: Duration) {
        let start = Instant::now();
        loop {
            let st = self.status();
            let all = st["services"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["state"] == "ready");
            if all {
                return;
            }
            assert!(
                start.elapsed() < deadline,
                "services not ready after {deadline:?}: {st:#}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// GET a path on 127.0.0.1:`port` with HTTP/1.0 and a `Host` header: (status, body).
pub fn http_get(port: u16, path: &str, host: &str) -> std::io::Result<(u16, String)> {
    http_request("GET", port, path, &[("Host", host)], None)
}

/// Two builds are the same bytes, as diffoscope (the reproducible-builds tool) sees
/// them: it exits 0 for identical files and otherwise says, member by member, what
/// differs, which is what the failure shows.
pub fn assert_reproducible(a: &Path, b: &Path) {
    let out = Command::new("diffoscope")
        .arg("--no-progress")
        .arg(a)
        .arg(b)
        .output()
        .expect("diffoscope (scripts/test.sh installs diffoscope-minimal)");
    assert!(
        out.status.success(),
        "{} and {} differ:\n{}{}",
        a.display(),
        b.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
}

/// Every file (and symlink) below `dir`, sorted; directories are descended, links are not.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `dir` itself and every file, directory and symlink under it, each with its owner
/// (uid:gid), mode and content (a file's hash, a symlink's target): two equal
/// snapshots mean nothing under `dir` changed, not even an owner or a permission bit.
/// `dir` itself is the entry with the empty path.
pub fn snapshot_tree(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    if !dir.exists() {
        return out;
    }
    out.insert(PathBuf::new(), describe(dir));
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p.clone());
            }
            out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), describe(&p));
        }
    }
    out
}

/// One [`snapshot_tree`] entry: kind, owner, mode and content of `p` (not followed).
fn describe(p: &Path) -> String {
    let meta = std::fs::symlink_metadata(p).unwrap();
    let mode = meta.permissions().mode();
    let owner = format!("{}:{}", meta.uid(), meta.gid());
    if meta.is_dir() {
        format!("dir {owner} {mode:o}")
    } else if meta.is_file() {
        let bytes = std::fs::read(p).unwrap_or_default();
        format!(
            "file {owner} {mode:o} {}",
            hex::encode(Sha256::digest(&bytes))
        )
    } else if meta.is_symlink() {
        let target = std::fs::read_link(p).unwrap_or_default();
        format!("symlink {owner} {mode:o} -> {}", target.display())
    } else {
        format!("other {owner} {mode:o}")
    }
}

/// One HTTP/1.0 request to 127.0.0.1:`port`: (status, body).
pub fn http_request(
    method: &str,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_mins(1)))?;
    let mut req = format!("{method} {path} HTTP/1.0\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        let _ = write!(req, "Host: 127.0.0.1:{port}\r\n");
    }
    for (k, v) in headers {
        let _ = write!(req, "{k}: {v}\r\n");
    }
    if let Some(b) = body {
        let _ = write!(req, "Content-Length: {}\r\n", b.len());
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    s.write_all(req.as_bytes())?;
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes)?;
    let buf = String::from_utf8_lossy(&bytes);
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Run a command as a service's user, with that service's environment and working
/// directory, as the supervisor would (read from the instance's supervision plan).
pub fn run_as_service(prefix: &Path, service: &str, argv: &[&str]) -> Output {
    run_as_service_in(None, prefix, service, argv)
}

/// [`run_as_service`] inside network namespace `ns` (a fleet node of a lab).
pub fn run_as_service_in(ns: Option<&str>, prefix: &Path, service: &str, argv: &[&str]) -> Output {
    let plan: serde_json::Value = serde_json::from_slice(
        &std::fs::read(berth_render::Paths::unversioned(prefix).supervision_plan()).unwrap(),
    )
    .unwrap();
    let spec = plan["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == service)
        .unwrap_or_else(|| panic!("no service `{service}` in the plan"))
        .clone();
    let mut argv: Vec<&str> = match spec["user"].as_str() {
        Some(user) if is_root() => ["/usr/sbin/runuser", "-u", user, "--"]
            .into_iter()
            .chain(argv.iter().copied())
            .collect(),
        _ => argv.to_vec(),
    };
    if let Some(ns) = ns {
        argv.splice(0..0, ["/usr/sbin/ip", "netns", "exec", ns]);
    }
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]);
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8");
    for (k, v) in spec["env"].as_object().unwrap() {
        cmd.env(k, v.as_str().unwrap());
    }
    if let Some(cwd) = spec["cwd"].as_str() {
        cmd.current_dir(cwd);
    }
    cmd.output().unwrap()
}

/// A throwaway sshd on 127.0.0.1:`port` with its own host and client keys, for SFTP
/// backup targets; killed on drop. `None` when not root or sshd is not installed.
pub struct Sshd {
    child: std::process::Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub identity: PathBuf,
    pub known_hosts: PathBuf,
}

impl Sshd {
    pub fn start(port: u16) -> Option<Self> {
        let sshd = Path::new("/usr/sbin/sshd");
        if !is_root() || !sshd.exists() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path();
        std::fs::set_permissions(keys, std::fs::Permissions::from_mode(0o755)).unwrap();
        let host_key = keys.join("host_ed25519");
        let identity = keys.join("client_ed25519");
        for key in [&host_key, &identity] {
            let ok = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(key)
                .stdin(std::process::Stdio::null())
                .status()
                .unwrap()
                .success();
            assert!(ok, "ssh-keygen failed");
        }
        let authorized = keys.join("authorized_keys");
        std::fs::copy(identity.with_extension("pub"), &authorized).unwrap();
        let host_pub = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
        let host_pub: Vec<&str> = host_pub.split_whitespace().take(2).collect();
        let known_hosts = keys.join("known_hosts");
        std::fs::write(
            &known_hosts,
            format!("[127.0.0.1]:{port} {}\n", host_pub.join(" ")),
        )
        .unwrap();
        let config = keys.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nAuthorizedKeysFile {}\n\
                 StrictModes no\nPidFile none\nUsePAM no\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 Subsystem sftp internal-sftp\n",
                host_key.display(),
                authorized.display()
            ),
        )
        .unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(keys.join("sshd.log")).unwrap())
            .spawn()
            .unwrap();
        let server = Self {
            child,
            port,
            dir,
            identity,
            known_hosts,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not start on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small tmpfs mounted at `path` (root only), unmounted on drop; `None` where
/// mounting is not allowed.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn mount(path: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(path).ok()?;
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?
            .success();
        ok.then(|| Self(path.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// One SQL statement against the database `app` of a ministack instance at `prefix`
/// (PostgreSQL on `port`), as the database's user; its output, trimmed.
pub fn app_sql(prefix: &Path, port: u16, statement: &str) -> String {
    let host = prefix.join("run/postgresql");
    let port = port.to_string();
    let out = run_as_service(
        prefix,
        "postgresql",
        &[
            "/usr/lib/postgresql/15/bin/psql",
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            host.to_str().unwrap(),
            "-p",
            &port,
            "-d",
            "app",
            "-c",
            statement,
        ],
    );
    assert!(
        out.status.success(),
        "{statement}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Debian's podman with a storage and a config of the test's own: `runc` (crun fails
/// on this kernel's rlimits) and explicit limits. The host's images and containers are
/// never touched; everything is removed when dropped.
pub struct Podman {
    dir: PathBuf,
    /// The process holding the network and mount namespaces every command runs in.
    holder: Option<std::process::Child>,
}

impl Podman {
    /// Run in network namespace `ns`, with `hosts` as `/etc/hosts`, bound in a mount
    /// namespace of this instance's own (the machine's stays as it is). Every command
    /// runs in that one mount namespace: the mounts podman makes for a container (its
    /// root) are seen by the commands after the one that made them, as they are when
    /// podman runs on a machine.
    pub fn in_netns(dir: &Path, ns: &str, hosts: &Path) -> Self {
        let mut podman = Self::new(dir);
        let holder = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .args(["unshare", "-m", "--propagation", "private", "sh", "-c"])
            .arg("mount --bind \"$0\" /etc/hosts && exec sleep infinity")
            .arg(hosts)
            .spawn()
            .expect("util-linux is installed by scripts/test.sh");
        let pid = holder.id().to_string();
        podman.holder = Some(holder);
        let wanted = std::fs::read(hosts).unwrap();
        wait_for("the podman namespaces", Duration::from_secs(10), || {
            Command::new("nsenter")
                .args(["-t", &pid, "-m", "cat", "/etc/hosts"])
                .output()
                .is_ok_and(|o| o.status.success() && o.stdout == wanted)
        });
        podman
    }

    pub fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir.join("root")).unwrap();
        std::fs::create_dir_all(dir.join("runroot")).unwrap();
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        std::fs::write(
            dir.join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=4096:4096\"]\n\
             [engine]\nruntime = \"runc\"\n",
        )
        .unwrap();
        Self {
            dir: dir.to_owned(),
            holder: None,
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = match &self.holder {
            None => Command::new("podman"),
            Some(holder) => {
                let mut c = Command::new("nsenter");
                c.args(["-t", &holder.id().to_string(), "-m", "-n", "podman"]);
                c
            }
        };
        // Its own libpod state directory too: the default (/run/libpod) is every
        // podman's, and a `system reset` of another instance (a test beside this one)
        // removes it, after which podman takes the machine for rebooted and forgets
        // the containers that run (then left running, their exit codes lost).
        cmd.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args(args)
            .output()
            .expect("podman is installed by scripts/test.sh")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["pod", "rm", "--all", "--force", "--time", "5"]);
        let _ = self.run(&["rm", "--force", "--all", "--time", "5"]);
        let _ = self.run(&["system", "reset", "--force"]);
        if let Some(mut holder) = self.holder.take() {
            let _ = holder.kill();
            let _ = holder.wait();
        }
    }
}

/// Waits until `ok` holds, polling; panics naming `what` past `within`.
pub fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{what}: not within {within:?}");
}

/// `berth --prefix PREFIX [--manifest M] console --listen LISTEN`, started and listening
/// (30 s at most), its output into `log` (or nowhere). The caller stops it.
pub fn spawn_console(
    prefix: &Path,
    manifest: Option<&Path>,
    listen: &str,
    log: Option<&Path>,
) -> std::process::Child {
    let mut cmd = Command::new(berth_bin());
    cmd.arg("--prefix").arg(prefix);
    if let Some(m) = manifest {
        cmd.arg("--manifest").arg(m);
    }
    cmd.args(["console", "--listen", listen])
        .stdin(std::process::Stdio::null());
    match log {
        Some(path) => {
            let file = std::fs::File::create(path).unwrap();
            cmd.stdout(file.try_clone().unwrap()).stderr(file);
        }
        None => {
            cmd.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
        }
    }
    let child = cmd.spawn().unwrap();
    wait_for("the console listening", Duration::from_secs(30), || {
        TcpStream::connect(listen).is_ok()
    });
    child
}

/// `examples/netbox` as it would be at NetBox `version` (its version and its pin of
/// NetBox's package changed), in `dir/netbox-<version>`.
pub fn netbox_manifest_at(dir: &Path, version: &str) -> PathBuf {
    let from = root().join("examples/netbox");
    let to = dir.join(format!("netbox-{version}"));
    std::fs::create_dir_all(to.join("templates")).unwrap();
    for entry in std::fs::read_dir(from.join("templates")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join("templates").join(entry.file_name())).unwrap();
    }
    let text = std::fs::read_to_string(from.join("berth.toml")).unwrap();
    let (current, pin) = ("version = \"4.7.3\"", "netbox==4.7.3");
    assert!(
        text.contains(current) && text.contains(pin),
        "examples/netbox moved on"
    );
    let text = text
        .replace(current, &format!("version = \"{version}\""))
        .replace(pin, &format!("netbox=={version}"));
    std::fs::write(to.join("berth.toml"), text).unwrap();
    to
}

/// Creates an API token for the initial admin through NetBox's own shell.
pub const NETBOX_CREATE_TOKEN: &str = "\
from users.models import Token, User
u = User.objects.get(username='admin')
t = Token(user=u, description='berth end-to-end test', write_enabled=True)
t.full_clean()
t.save()
print('TOKEN=' + t.get_auth_header_prefix() + t.token)
";
