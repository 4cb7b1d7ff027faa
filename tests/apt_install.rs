//! The vendor's packages as an administrator gets them: `apt-get install` from a
//! signed apt repository (`berth repo apt`) into a clean Debian 12 root made with
//! `mmdebstrap`, run in a network namespace of its own with `/proc` mounted.
//!
//! - The root gets the package's `Depends` from Debian when it is made (the namespace
//!   has no network); apt then resolves them against what is installed, so a missing
//!   or misnamed dependency fails the install.
//! - The repository is served over HTTP on the namespace's 127.0.0.1 and named with
//!   `signed-by` the keyring `berth repo key` wrote.
//! - `apt-get install ministack` runs the package's postinst, which runs the berth the
//!   package carries (`up --bundle`): the app answers with 1.0.0. The next version
//!   added to the repository is an `apt-get install` away: the postinst runs
//!   `upgrade apply`, the app answers with 1.1.0, and the row written before the
//!   upgrade is still there. A 1.2.0 that must be reached through 1.1 is refused by
//!   its preinst while 1.0.0 is installed, and 1.0.0 goes on serving. `apt-get
//!   remove` stops the instance and keeps its data.
//! - A changed `Packages` file, or a keyring that is not the repository's, makes
//!   `apt-get update` fail.
//! - `berth package tar`'s archive, unpacked over `/` of a root with no instance, and
//!   its `install.sh`: the app answers.
//!
//! The berth in the bundles is this build's, with its debug info stripped (`objcopy`),
//! as a vendor would ship it. Root only (chroot, mounts, namespaces).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use berth_tests::{Berth, Run, berth_bin, is_root, ministack_at};

const EPOCH: &str = "1700000000";
/// The repository's HTTP server, inside the namespace.
const REPO_PORT: u16 = 8080;
/// ministack's default external URL's port (`http://127.0.0.1:18080/`).
const APP_PORT: u16 = 18080;

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `berth …` with no instance.
fn berth(args: &[&str]) -> Run {
    Berth::new(Path::new("/nonexistent-prefix"), Path::new(""))
        .run_env(args, &[("SOURCE_DATE_EPOCH", EPOCH)])
}

/// The namespace, the mounts, the repository's server and the instance in the root:
/// all undone when dropped, however the test ends.
struct Sandbox {
    ns: String,
    root: PathBuf,
    mounts: Vec<PathBuf>,
    server: Option<std::process::Child>,
}

impl Sandbox {
    fn new(root: &Path) -> Self {
        let ns = format!("berth-apt-{}", std::process::id());
        ok(Command::new("ip").args(["netns", "add", &ns]));
        let mut s = Self {
            ns,
            root: root.to_owned(),
            mounts: Vec::new(),
            server: None,
        };
        ok(&mut s.ns_cmd(&["ip", "link", "set", "lo", "up"]));
        for (what, fstype, at) in [("proc", "proc", "proc"), ("tmpfs", "tmpfs", "dev/shm")] {
            let at = root.join(at);
            std::fs::create_dir_all(&at).unwrap();
            ok(Command::new("mount").args(["-t", fstype, what]).arg(&at));
            s.mounts.push(at);
        }
        s
    }

    /// A command in the namespace (on the host's file system).
    fn ns_cmd(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).args(argv);
        c
    }

    /// A command in the namespace and the root, with a plain environment.
    fn chroot(&self, argv: &[&str]) -> Command {
        let mut c = self.ns_cmd(&["chroot"]);
        c.arg(&self.root).args(argv);
        c.env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("LANG", "C.UTF-8");
        c
    }

    /// Serves `dir` over HTTP on the namespace's 127.0.0.1.
    fn serve(&mut self, dir: &Path) {
        let child = self
            .ns_cmd(&[
                "python3",
                "-m",
                "http.server",
                &REPO_PORT.to_string(),
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.server = Some(child);
        let start = Instant::now();
        while self.get(REPO_PORT, "/dists/").is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the repository's server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The body of `GET http://127.0.0.1:port/path` inside the namespace, if it answered 200.
    fn get(&self, port: u16, path: &str) -> Option<String> {
        let out = run(&mut self.ns_cmd(&[
            "curl",
            "-sf",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{port}{path}"),
        ]));
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The app's answer on `/`, waited for.
    fn app_version(&self) -> String {
        let start = Instant::now();
        loop {
            if let Some(body) = self.get(APP_PORT, "/") {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                return v["version"].as_str().unwrap().to_owned();
            }
            assert!(
                start.elapsed() < Duration::from_mins(1),
                "the app does not answer"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// `apt-get …` in the root.
    fn apt_get(&self, args: &[&str]) -> Output {
        let mut all = vec!["apt-get", "-q", "-o", "Dpkg::Use-Pty=0"];
        all.extend_from_slice(args);
        run(&mut self.chroot(&all))
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // The instance, if a step failed before the package was removed.
        let berth = self.root.join("opt/ministack/bin/berth");
        if berth.exists() {
            let _ = self
                .chroot(&[
                    "/opt/ministack/bin/berth",
                    "--prefix",
                    "/var/opt/berth/ministack",
                    "down",
                ])
                .output();
        }
        // Whatever still runs with its root in the sandbox.
        let root = std::fs::canonicalize(&self.root).unwrap_or_default();
        for _ in 0..2 {
            for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let pid = e.file_name().to_string_lossy().parse::<i32>();
                if let Ok(pid) = pid
                    && std::fs::read_link(e.path().join("root")).is_ok_and(|r| r == root)
                {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        if let Some(mut s) = self.server.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
        for m in self.mounts.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// Changes every `Packages` index of the repository (and its copies by hash), as a
/// mirror or a man in the middle would: `Version: from` becomes `Version: to`.
fn tamper(repo: &Path, from: &str, to: &str) {
    let dir = repo.join("dists/stable/main/binary-amd64");
    let plain = std::fs::read_to_string(dir.join("Packages")).unwrap();
    assert!(plain.contains(from));
    let changed = plain.replace(from, to);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, changed.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let mut files = vec![dir.join("Packages"), dir.join("Packages.gz")];
    files.extend(
        std::fs::read_dir(dir.join("by-hash/SHA256"))
            .unwrap()
            .map(|e| e.unwrap().path()),
    );
    for f in files {
        let is_gz = std::fs::read(&f).unwrap().starts_with(&[0x1f, 0x8b]);
        std::fs::write(&f, if is_gz { &gz[..] } else { changed.as_bytes() }).unwrap();
    }
}

#[test]
#[allow(clippy::too_many_lines, clippy::print_stderr)] // one install story, start to end
fn apt_get_installs_upgrades_and_removes_the_package_from_a_signed_repository() {
    if !is_root() {
        eprintln!("skipped: a Debian root, mounts and namespaces need root");
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("berth-apt-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let t = tmp.path();

    // The vendor: a release key, a repository key, bundles and packages of 1.0.0 and 1.1.0.
    let vendor_key = t.join("vendor.key");
    berth(&["release", "key", "--out", vendor_key.to_str().unwrap()]).expect(0);
    let repo_key = t.join("repo.key");
    berth(&[
        "repo",
        "key",
        "--out",
        repo_key.to_str().unwrap(),
        "--name",
        "Vendor Archive <archive@example.org>",
    ])
    .expect(0);
    let other_key = t.join("other.key");
    berth(&[
        "repo",
        "key",
        "--out",
        other_key.to_str().unwrap(),
        "--name",
        "Someone <x@example.org>",
    ])
    .expect(0);
    let shipped_berth = t.join("berth");
    ok(Command::new("objcopy")
        .arg("--strip-debug")
        .arg(berth_bin())
        .arg(&shipped_berth));
    let dist = t.join("dist");
    std::fs::create_dir(&dist).unwrap();
    let mut debs = Vec::new();
    // 1.2.0 must be reached through a 1.1 release.
    for version in ["1.0.0", "1.1.0", "1.2.0"] {
        let manifest = ministack_at(&t.join("src"), version, |text| {
            if version == "1.2.0" {
                format!("{text}\n[upgrade]\nstops = [\"1.1\"]\n")
            } else {
                text
            }
        });
        Berth::new(Path::new("/nonexistent-prefix"), &manifest)
            .run_env(
                &[
                    "release",
                    "build",
                    "--key",
                    vendor_key.to_str().unwrap(),
                    "--out",
                    dist.to_str().unwrap(),
                    "--berth",
                    shipped_berth.to_str().unwrap(),
                ],
                &[("SOURCE_DATE_EPOCH", EPOCH)],
            )
            .expect(0);
        let bundle = dist.join(format!("ministack-{version}.berth-release.tar.zst"));
        berth(&[
            "package",
            "deb",
            bundle.to_str().unwrap(),
            "--public-key",
            &format!("{}.pub", vendor_key.display()),
            "--maintainer",
            "Vendor <vendor@example.org>",
            "--architecture",
            "amd64",
            "--out",
            dist.to_str().unwrap(),
        ])
        .expect(0);
        debs.push(dist.join(format!("ministack_{version}_amd64.deb")));
    }
    // The same release as an archive, for machines without dpkg.
    berth(&[
        "package",
        "tar",
        dist.join("ministack-1.1.0.berth-release.tar.zst")
            .to_str()
            .unwrap(),
        "--public-key",
        &format!("{}.pub", vendor_key.display()),
        "--maintainer",
        "Vendor <vendor@example.org>",
        "--architecture",
        "amd64",
        "--out",
        dist.to_str().unwrap(),
    ])
    .expect(0);
    // berth's own package, from the same repository.
    berth(&[
        "package",
        "self",
        "--berth",
        shipped_berth.to_str().unwrap(),
        "--maintainer",
        "Vendor <vendor@example.org>",
        "--architecture",
        "amd64",
        "--out",
        dist.to_str().unwrap(),
    ])
    .expect(0);
    let berth_deb = dist.join(format!("berth_{}_amd64.deb", env!("CARGO_PKG_VERSION")));
    let repo = t.join("repo");
    let added = berth(&[
        "repo",
        "apt",
        repo.to_str().unwrap(),
        debs[0].to_str().unwrap(),
        berth_deb.to_str().unwrap(),
        "--key",
        repo_key.to_str().unwrap(),
        "--origin",
        "Vendor",
    ])
    .expect(0);
    assert!(
        added.stdout.contains("Added ministack 1.0.0 (amd64)"),
        "{}",
        added.stdout
    );

    // A clean Debian 12 root with the package's dependencies, nothing else of ours.
    // Its Recommends too (an optional component's packages), which apt installs with it.
    let depends = ok(Command::new("dpkg-deb")
        .args(["-f"])
        .arg(&debs[0])
        .args(["Depends", "Recommends"]));
    let include: Vec<&str> = depends
        .lines()
        .filter_map(|l| l.split_once(": ").map(|(_, v)| v))
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    assert!(include.contains(&"redis-server"), "{depends}");
    assert!(include.iter().all(|d| !d.contains(['(', '|'])), "{depends}");
    let root = t.join("root");
    let started = Instant::now();
    ok(Command::new("mmdebstrap")
        .args(["--quiet", "--variant=minbase", "--include"])
        .arg(include.join(","))
        .args(["bookworm"])
        .arg(&root));
    eprintln!("mmdebstrap: {:.0?}", started.elapsed());
    // Only our repository from here on (the namespace has no network).
    std::fs::remove_file(root.join("etc/apt/sources.list")).ok();
    std::fs::copy(
        format!("{}.gpg", repo_key.display()),
        root.join("usr/share/keyrings/vendor-archive-keyring.gpg"),
    )
    .unwrap();
    std::fs::copy(
        format!("{}.gpg", other_key.display()),
        root.join("usr/share/keyrings/someone-keyring.gpg"),
    )
    .unwrap();
    let sources = root.join("etc/apt/sources.list.d/vendor.list");
    let line = |keyring: &str| {
        format!(
            "deb [signed-by=/usr/share/keyrings/{keyring}] http://127.0.0.1:{REPO_PORT}/ stable main\n"
        )
    };
    std::fs::write(&sources, line("vendor-archive-keyring.gpg")).unwrap();
    let mut sandbox = Sandbox::new(&root);
    sandbox.serve(&repo);

    // A keyring that is not the repository's: apt refuses the repository.
    std::fs::write(&sources, line("someone-keyring.gpg")).unwrap();
    let refused = sandbox.apt_get(&["update"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains("NO_PUBKEY") && said.contains("not signed"),
        "{said}"
    );
    std::fs::write(&sources, line("vendor-archive-keyring.gpg")).unwrap();

    // Install: apt resolves the dependencies, the postinst brings the instance up.
    let out = sandbox.apt_get(&["update"]);
    assert!(out.status.success(), "{out:?}");
    let started = Instant::now();
    let out = sandbox.apt_get(&["install", "-y", "ministack"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("apt-get install: {:.0?}", started.elapsed());
    assert_eq!(sandbox.app_version(), "1.0.0");
    let status = ok(&mut sandbox.chroot(&["ministack-ctl", "status", "--json"]));
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(status.to_string().contains("postgresql"), "{status}");
    // A row the upgrade must keep.
    // As the database's own user (the owner of its data directory), over its socket,
    // as `app_sql` does on a host.
    let psql = |sql: &str| {
        ok(&mut sandbox.chroot(&[
            "sh",
            "-c",
            "exec runuser -u \"$(stat -c %U /var/opt/berth/ministack/data/postgresql)\" -- \
             /usr/lib/postgresql/15/bin/psql -X -At -v ON_ERROR_STOP=1 \
             -h /var/opt/berth/ministack/run/postgresql -p 15432 -d app -c \"$1\"",
            "psql",
            sql,
        ]))
    };
    psql("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before the upgrade')");

    // 1.2.0 skips the required 1.1 stop: its preinst refuses before dpkg changes
    // anything, and 1.0.0 goes on serving.
    berth(&[
        "repo",
        "apt",
        repo.to_str().unwrap(),
        debs[2].to_str().unwrap(),
        "--key",
        repo_key.to_str().unwrap(),
        "--origin",
        "Vendor",
    ])
    .expect(0);
    assert!(sandbox.apt_get(&["update"]).status.success());
    let refused = sandbox.apt_get(&["install", "-y", "ministack=1.2.0"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains("must be reached through a 1.1 release"),
        "{said}"
    );
    let installed = ok(&mut sandbox.chroot(&[
        "dpkg-query",
        "-W",
        "-f",
        "${Version} ${db:Status-Status}",
        "ministack",
    ]));
    assert_eq!(installed, "1.0.0 installed");
    assert_eq!(sandbox.app_version(), "1.0.0");

    // The next version in the same repository; the older ones stay listed.
    berth(&[
        "repo",
        "apt",
        repo.to_str().unwrap(),
        debs[1].to_str().unwrap(),
        "--key",
        repo_key.to_str().unwrap(),
        "--origin",
        "Vendor",
    ])
    .expect(0);
    let packages =
        std::fs::read_to_string(repo.join("dists/stable/main/binary-amd64/Packages")).unwrap();
    assert!(
        packages.contains("Version: 1.0.0") && packages.contains("Version: 1.1.0"),
        "{packages}"
    );

    // A changed index is refused, and apt keeps what it had.
    let saved = t.join("saved-dists");
    ok(Command::new("cp")
        .arg("-a")
        .arg(repo.join("dists"))
        .arg(&saved));
    tamper(&repo, "Version: 1.1.0", "Version: 1.1.9");
    let refused = sandbox.apt_get(&["update"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains("Hash Sum mismatch") || said.contains("unexpected size"),
        "{said}"
    );
    let policy = ok(&mut sandbox.chroot(&["apt-cache", "policy", "ministack"]));
    assert!(!policy.contains("1.1.9"), "{policy}");
    std::fs::remove_dir_all(repo.join("dists")).unwrap();
    ok(Command::new("cp")
        .arg("-a")
        .arg(&saved)
        .arg(repo.join("dists")));

    // Upgrade: the postinst runs `upgrade apply` with the new bundle.
    let out = sandbox.apt_get(&["update"]);
    assert!(out.status.success(), "{out:?}");
    let out = sandbox.apt_get(&["install", "-y", "ministack=1.1.0"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sandbox.app_version(), "1.1.0");
    assert_eq!(psql("SELECT v FROM kept").trim(), "before the upgrade");
    let history = ok(&mut sandbox.chroot(&["ministack-ctl", "history"]));
    assert!(
        history
            .lines()
            .any(|l| l.contains(" upgrade ") && l.contains("succeeded")),
        "{history}"
    );

    // berth itself, as a package of its own.
    let out = sandbox.apt_get(&["install", "-y", "berth"]);
    assert!(out.status.success(), "{out:?}");
    let version = ok(&mut sandbox.chroot(&["berth", "--version"]));
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");

    // Removal stops the instance; its data stays.
    let out = sandbox.apt_get(&["remove", "-y", "ministack"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        sandbox.get(APP_PORT, "/").is_none(),
        "the app still answers after removal"
    );
    assert!(
        root.join("var/opt/berth/ministack/data/postgresql")
            .is_dir()
    );
    assert!(!root.join("opt/ministack/bin/berth").exists());

    // The archive on a root with no instance: unpacked over `/`, its install script
    // brings the app up (the site config made from the example).
    ok(&mut sandbox.chroot(&["rm", "-rf", "/var/opt/berth/ministack", "/etc/ministack"]));
    ok(Command::new("tar")
        .arg("-xzf")
        .arg(dist.join("ministack-1.1.0-amd64.tar.gz"))
        .arg("-C")
        .arg(&root));
    // Debian 12's `/lib` is a symlink into `/usr`: the archive leaves it one.
    assert!(
        std::fs::symlink_metadata(root.join("lib"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let out = run(&mut sandbox.chroot(&["/opt/ministack/install.sh"]));
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sandbox.app_version(), "1.1.0");
    assert!(root.join("etc/ministack/site.toml").is_file());
    ok(&mut sandbox.chroot(&["ministack-ctl", "down"]));
}
