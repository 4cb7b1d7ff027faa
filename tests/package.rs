//! `berth package deb`: the `.deb` of a release bundle, read back by dpkg's own tools
//! and checked by lintian. Its control fields and files are what docs/packages.md
//! says; every file's MD5 in `md5sums` matches; the maintainer scripts are valid `sh`;
//! lintian reports no error or warning; two builds are the same bytes; a bundle that
//! is not the vendor's gives no package.
//!
//! The bundle is ministack's, carrying a stand-in berth (`/bin/true`). Installing the
//! package into a Debian root is not tested here yet.

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_tests::{Berth, Run, fixture};

const EPOCH: &str = "1700000000";

fn berth(args: &[&str]) -> Run {
    Berth::new(Path::new("/nonexistent-prefix"), Path::new(""))
        .run_env(args, &[("SOURCE_DATE_EPOCH", EPOCH)])
}

/// A vendor key and ministack's bundle under `dir`.
fn bundle(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("vendor.key");
    berth(&["release", "key", "--out", key.to_str().unwrap()]).expect(0);
    let out = dir.join("dist");
    std::fs::create_dir(&out).unwrap();
    Berth::new(Path::new("/nonexistent-prefix"), &fixture("ministack"))
        .run_env(
            &[
                "release",
                "build",
                "--key",
                key.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--berth",
                "/bin/true",
            ],
            &[("SOURCE_DATE_EPOCH", EPOCH)],
        )
        .expect(0);
    (
        out.join("ministack-1.0.0.berth-release.tar.zst"),
        format!("{}.pub", key.display()),
    )
}

fn package(bundle: &Path, key: &str, out: &Path) -> Run {
    std::fs::create_dir_all(out).unwrap();
    berth(&[
        "package",
        "deb",
        bundle.to_str().unwrap(),
        "--public-key",
        key,
        "--maintainer",
        "Vendor <vendor@example.org>",
        "--architecture",
        "amd64",
        "--out",
        out.to_str().unwrap(),
    ])
}

/// Debian's policy checker reports no error and no warning (what a package does on
/// purpose is overridden in it, with the reason).
fn lintian_passes(deb: &Path) {
    let lintian = Command::new("lintian")
        .args(["--fail-on", "error,warning", "--tag-display-limit", "0"])
        .arg(deb)
        .output()
        .expect("lintian (scripts/test.sh installs it)");
    assert!(
        lintian.status.success(),
        "lintian: {}{}",
        String::from_utf8_lossy(&lintian.stdout),
        String::from_utf8_lossy(&lintian.stderr)
    );
}

fn dpkg_deb(args: &[&str]) -> String {
    let out = Command::new("dpkg-deb").args(args).output().unwrap();
    assert!(out.status.success(), "dpkg-deb {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[allow(clippy::too_many_lines)] // one package, every way dpkg reads it
fn a_deb_dpkg_reads_back_the_same_every_time() {
    let tmp = tempfile::tempdir().unwrap();
    let (bundle, key) = bundle(tmp.path());
    let r = package(&bundle, &key, &tmp.path().join("a")).expect(0);
    // The system components', and the packages of the libraries the bundled Python
    // needs (found as dpkg-shlibdeps would); none of Tk's, which is left out.
    let depends = r.stdout.lines().find(|l| l.contains("depends: ")).unwrap();
    let depends = depends.trim().trim_start_matches("depends: ").to_owned();
    for p in [
        "nginx-light",
        "postgresql-15",
        "libc6",
        "libssl3",
        "libsqlite3-0",
    ] {
        assert!(depends.split(", ").any(|d| d == p), "{p} not in {depends}");
    }
    assert!(!depends.contains("libtk"), "{depends}");
    let deb = tmp.path().join("a/ministack_1.0.0_amd64.deb");
    let d = deb.to_str().unwrap();

    // The control fields dpkg sees.
    let field = |name: &str| dpkg_deb(&["--field", d, name]).trim().to_owned();
    assert_eq!(field("Package"), "ministack");
    assert_eq!(field("Version"), "1.0.0");
    assert_eq!(field("Architecture"), "amd64");
    assert_eq!(field("Depends"), depends);
    // Redis is an optional component: recommended, installed by default, not required.
    assert_eq!(field("Recommends"), "redis-server");
    assert!(!depends.contains("redis"), "{depends}");
    assert_eq!(field("Maintainer"), "Vendor <vendor@example.org>");
    assert!(field("Installed-Size").parse::<u64>().unwrap() > 20_000);
    let info = dpkg_deb(&["--info", d]);
    for script in [
        "preinst",
        "postinst",
        "prerm",
        "postrm",
        "conffiles",
        "md5sums",
    ] {
        assert!(info.contains(script), "{info}");
    }
    for line in info.lines().filter(|l| l.starts_with("  ")) {
        assert!(line.len() <= 81, "a description line too long: {line:?}");
    }

    // The files, root's, with their modes.
    let contents = dpkg_deb(&["--contents", d]);
    for (mode, path) in [
        ("-rwxr-xr-x", "./opt/ministack/bin/berth"),
        (
            "-rw-r--r--",
            "./opt/ministack/releases/ministack-1.0.0.berth-release.tar.zst",
        ),
        ("-rw-r--r--", "./opt/ministack/vendor.pub"),
        ("-rwxr-xr-x", "./usr/bin/ministack-ctl"),
        ("-rw-r--r--", "./etc/ministack/site.toml"),
        ("-rw-r--r--", "./usr/share/doc/ministack/copyright"),
        ("-rw-r--r--", "./usr/share/doc/ministack/changelog.gz"),
        ("-rw-r--r--", "./usr/share/lintian/overrides/ministack"),
        ("-rw-r--r--", "./lib/systemd/system/berth-ministack.service"),
        (
            "-rw-r--r--",
            "./opt/ministack/share/sbom/ministack-1.0.0.cdx.json",
        ),
        (
            "-rw-r--r--",
            "./opt/ministack/share/sbom/ministack-1.0.0.spdx.json",
        ),
    ] {
        assert!(
            contents
                .lines()
                .any(|l| l.starts_with(mode) && l.contains("root/root") && l.ends_with(path)),
            "{path} ({mode}) in\n{contents}"
        );
    }

    // Unpacked: every MD5 matches, the bundle is the one given, the scripts are sh.
    let x = tmp.path().join("x");
    dpkg_deb(&["--extract", d, x.to_str().unwrap()]);
    // The unit runs the instance's own berth on the packaged prefix.
    let unit =
        std::fs::read_to_string(x.join("lib/systemd/system/berth-ministack.service")).unwrap();
    assert!(
        unit.contains(
            "ExecStart=/var/opt/berth/ministack/bin/berth --prefix /var/opt/berth/ministack supervise --autostart\n"
        ),
        "{unit}"
    );
    // The bills of materials it ships describe it and list the interpreter it carries.
    let cdx: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(x.join("opt/ministack/share/sbom/ministack-1.0.0.cdx.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(cdx["metadata"]["component"]["name"], "ministack");
    assert!(
        cdx["components"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "python" && c["properties"][0]["value"] == "app"),
        "{cdx}"
    );
    let ctrl = tmp.path().join("ctrl");
    dpkg_deb(&["--control", d, ctrl.to_str().unwrap()]);
    let check = Command::new("md5sum")
        .arg("--check")
        .arg("--quiet")
        .arg(ctrl.join("md5sums"))
        .current_dir(&x)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    assert_eq!(
        std::fs::read(x.join("opt/ministack/releases/ministack-1.0.0.berth-release.tar.zst"))
            .unwrap(),
        std::fs::read(&bundle).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(ctrl.join("conffiles")).unwrap(),
        "/etc/ministack/site.toml\n"
    );
    for script in ["preinst", "postinst", "prerm", "postrm"] {
        let status = Command::new("sh")
            .arg("-n")
            .arg(ctrl.join(script))
            .status()
            .unwrap();
        assert!(status.success(), "{script}");
    }
    let wrapper = std::fs::read_to_string(x.join("usr/bin/ministack-ctl")).unwrap();
    assert!(
        wrapper.contains(
            "exec /opt/ministack/bin/berth --prefix /var/opt/berth/ministack --config /etc/ministack/site.toml"
        ),
        "{wrapper}"
    );

    // Debian's policy checker: no error and no warning (what the package does on
    // purpose, files under /opt, is overridden in it with the reason).
    lintian_passes(&deb);

    // Reproducible: another build of the same bundle is the same bytes.
    package(&bundle, &key, &tmp.path().join("b")).expect(0);
    berth_tests::assert_reproducible(&deb, &tmp.path().join("b/ministack_1.0.0_amd64.deb"));
    // Never over an existing package.
    let again = package(&bundle, &key, &tmp.path().join("a"));
    assert_eq!(again.code, 1, "{again:?}");
    assert!(again.stderr.contains("exists already"), "{}", again.stderr);
}

/// Another key, a changed byte: no package, nothing written.
#[test]
fn a_bundle_that_is_not_the_vendors_gives_no_package() {
    let tmp = tempfile::tempdir().unwrap();
    let (bundle, _) = bundle(tmp.path());
    let other = tmp.path().join("other.key");
    berth(&["release", "key", "--out", other.to_str().unwrap()]).expect(0);
    let r = package(
        &bundle,
        &format!("{}.pub", other.display()),
        &tmp.path().join("o"),
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("trusted"), "{}", r.stderr);
    assert_eq!(std::fs::read_dir(tmp.path().join("o")).unwrap().count(), 0);

    let mut bytes = std::fs::read(&bundle).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    let bad_dir = tmp.path().join("bad");
    std::fs::create_dir(&bad_dir).unwrap();
    let bad = bad_dir.join("ministack-1.0.0.berth-release.tar.zst");
    std::fs::write(&bad, bytes).unwrap();
    let key = format!("{}.pub", tmp.path().join("vendor.key").display());
    let r = package(&bad, &key, &tmp.path().join("p"));
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(std::fs::read_dir(tmp.path().join("p")).unwrap().count(), 0);
}

/// `berth package self`: berth's own package holds the stripped binary as
/// `/usr/bin/berth`, depends on the libraries it links, passes lintian, and is the same
/// bytes when built again.
#[test]
fn berth_packages_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let build = |out: &Path| {
        std::fs::create_dir_all(out).unwrap();
        berth(&[
            "package",
            "self",
            "--berth",
            berth_tests::berth_bin().to_str().unwrap(),
            "--maintainer",
            "Vendor <vendor@example.org>",
            "--architecture",
            "amd64",
            "--out",
            out.to_str().unwrap(),
        ])
        .expect(0);
        out.join(format!("berth_{}_amd64.deb", env!("CARGO_PKG_VERSION")))
    };
    let deb = build(&tmp.path().join("a"));
    let d = deb.to_str().unwrap();
    let field = |name: &str| dpkg_deb(&["--field", d, name]).trim().to_owned();
    assert_eq!(field("Package"), "berth");
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));
    assert!(
        field("Depends").split(", ").any(|p| p == "libc6"),
        "{}",
        field("Depends")
    );
    let x = tmp.path().join("x");
    dpkg_deb(&["--extract", d, x.to_str().unwrap()]);
    let shipped = x.join("usr/bin/berth");
    let version = Command::new(&shipped).arg("--version").output().unwrap();
    assert!(
        String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")),
        "{version:?}"
    );
    // Stripped: far smaller than the test build it came from.
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert!(size(&shipped) < size(&berth_tests::berth_bin()) / 2);
    lintian_passes(&deb);
    let again = build(&tmp.path().join("b"));
    assert_eq!(std::fs::read(&deb).unwrap(), std::fs::read(&again).unwrap());
}

/// `berth package tar`: the `.deb`'s tree in a `.tar.gz` that unpacks over `/`, root's,
/// with the site config as an example and `install.sh` (valid `sh`) in place of the
/// maintainer scripts; the same bytes when built again.
#[test]
fn a_tarball_carries_the_packages_tree_and_its_install_script() {
    let tmp = tempfile::tempdir().unwrap();
    let (bundle, key) = bundle(tmp.path());
    let build = |out: &Path| {
        std::fs::create_dir_all(out).unwrap();
        berth(&[
            "package",
            "tar",
            bundle.to_str().unwrap(),
            "--public-key",
            &key,
            "--maintainer",
            "Vendor <vendor@example.org>",
            "--architecture",
            "amd64",
            "--out",
            out.to_str().unwrap(),
        ])
        .expect(0);
        out.join("ministack-1.0.0-amd64.tar.gz")
    };
    let tar = build(&tmp.path().join("a"));
    let listing = Command::new("tar").arg("-tvzf").arg(&tar).output().unwrap();
    assert!(listing.status.success(), "{listing:?}");
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    for (mode, path) in [
        ("-rwxr-xr-x", "./opt/ministack/bin/berth"),
        ("-rwxr-xr-x", "./opt/ministack/install.sh"),
        ("-rw-r--r--", "./opt/ministack/share/site.toml.example"),
        ("-rw-r--r--", "./opt/ministack/vendor.pub"),
        ("-rwxr-xr-x", "./usr/bin/ministack-ctl"),
        (
            "-rw-r--r--",
            "./usr/lib/systemd/system/berth-ministack.service",
        ),
    ] {
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with(mode) && l.contains("root/root") && l.ends_with(path)),
            "{path} ({mode}) in\n{listing}"
        );
    }
    // No entry for a system directory: tar would replace a `/lib` symlink (merged
    // `/usr`) with a directory, or reset `/usr`'s mode and time.
    for line in listing.lines().filter(|l| l.starts_with('d')) {
        assert!(line.contains("./opt/ministack"), "{line}");
    }
    // Unpacking over `/` never overwrites the administrator's site config.
    assert!(!listing.contains("./etc/"), "{listing}");
    assert!(!listing.contains("lintian"), "{listing}");
    let x = tmp.path().join("x");
    std::fs::create_dir(&x).unwrap();
    let unpacked = Command::new("tar")
        .arg("-xzf")
        .arg(&tar)
        .arg("-C")
        .arg(&x)
        .status()
        .unwrap();
    assert!(unpacked.success());
    let script = x.join("opt/ministack/install.sh");
    assert!(
        Command::new("sh")
            .arg("-n")
            .arg(&script)
            .status()
            .unwrap()
            .success()
    );
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(
        text.contains("[ ! -e /etc/ministack/site.toml ]")
            && text.contains(
                "up --bundle /opt/ministack/releases/ministack-1.0.0.berth-release.tar.zst"
            ),
        "{text}"
    );
    assert_eq!(
        std::fs::read(x.join("opt/ministack/releases/ministack-1.0.0.berth-release.tar.zst"))
            .unwrap(),
        std::fs::read(&bundle).unwrap()
    );
    let again = build(&tmp.path().join("b"));
    berth_tests::assert_reproducible(&tar, &again);
}

/// `berth package rpm`, read back by rpm's own tools: name, version, `Requires:` (the
/// components' RPM names and the libraries by soname), `Recommends:` (the optional
/// component), the site config `%config(noreplace)`, the scriptlets valid `sh`, the
/// header signed with the repository key (`rpm -K` says so once that key is imported,
/// and refuses it before, with another key, or after a changed byte), rpmlint with no
/// error once the purposeful ones are filtered (each with its reason), installed into
/// an empty root by rpm, which checks the signature, and verified there (`rpm -V`), and
/// the same bytes when built again. A manifest with no RPM names for a component gives
/// no package.
#[test]
#[allow(clippy::too_many_lines)] // one package, every way rpm reads it
fn an_rpm_reads_back_with_rpms_own_tools() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("vendor.key");
    berth(&["release", "key", "--out", key.to_str().unwrap()]).expect(0);
    let public = format!("{}.pub", key.display());
    let dist = tmp.path().join("dist");
    std::fs::create_dir(&dist).unwrap();
    let build_bundle = |version: &str, rpm_names: bool| {
        let manifest = berth_tests::ministack_at(&tmp.path().join("src"), version, |text| {
            if rpm_names {
                berth_tests::with_rpm_names(&text)
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
                    key.to_str().unwrap(),
                    "--out",
                    dist.to_str().unwrap(),
                    "--berth",
                    "/bin/true",
                ],
                &[("SOURCE_DATE_EPOCH", EPOCH)],
            )
            .expect(0);
        dist.join(format!("ministack-{version}.berth-release.tar.zst"))
    };
    let repo_key = |name: &str| {
        let file = tmp.path().join(name);
        berth(&[
            "repo",
            "key",
            "--out",
            file.to_str().unwrap(),
            "--name",
            "Vendor <repo@example.org>",
        ])
        .expect(0);
        file
    };
    let signing = repo_key("repo.key");
    let rpm_of = |bundle: &Path, out: &Path, sign_with: Option<&Path>| {
        std::fs::create_dir_all(out).unwrap();
        let mut args = vec![
            "package",
            "rpm",
            bundle.to_str().unwrap(),
            "--public-key",
            &public,
            "--maintainer",
            "Vendor <vendor@example.org>",
            "--architecture",
            "amd64",
            "--out",
            out.to_str().unwrap(),
        ];
        if let Some(key) = sign_with {
            args.extend(["--sign-with", key.to_str().unwrap()]);
        }
        berth(&args)
    };

    // No RPM names for the components: refused, nothing written.
    let plain = build_bundle("1.0.0", false);
    let r = rpm_of(&plain, &tmp.path().join("none"), Some(&signing)).expect(1);
    assert!(
        r.stderr.contains("component `nginx`") && r.stderr.contains("rpm_packages"),
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read_dir(tmp.path().join("none")).unwrap().count(),
        0
    );
    std::fs::remove_file(&plain).unwrap();

    let bundle = build_bundle("1.0.0", true);
    // A signing key that is not one: refused before anything is written.
    let r = rpm_of(
        &bundle,
        &tmp.path().join("badkey"),
        Some(Path::new(&public)),
    )
    .expect(1);
    assert!(r.stderr.contains("is not a repository key"), "{}", r.stderr);
    assert_eq!(
        std::fs::read_dir(tmp.path().join("badkey"))
            .unwrap()
            .count(),
        0
    );
    let made = rpm_of(&bundle, &tmp.path().join("a"), Some(&signing)).expect(0);
    assert!(made.stdout.contains("signed by: "), "{}", made.stdout);
    let pkg = tmp.path().join("a/ministack-1.0.0-1.x86_64.rpm");
    let rpm = |args: &[&str]| {
        let out = Command::new("rpm").args(args).arg(&pkg).output().unwrap();
        assert!(out.status.success(), "rpm {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        rpm(&["-qp", "--qf", "%{NAME} %{VERSION} %{RELEASE} %{ARCH}"]),
        "ministack 1.0.0 1 x86_64"
    );
    let requires = rpm(&["-qp", "--requires"]);
    for r in [
        "postgresql-server",
        "nginx",
        "libssl.so.3()(64bit)",
        "libc.so.6()(64bit)",
    ] {
        assert!(
            requires.lines().any(|l| l.trim() == r),
            "{r} not in {requires}"
        );
    }
    assert!(!requires.contains("redis"), "{requires}");
    assert_eq!(rpm(&["-qp", "--recommends"]).trim(), "redis");
    assert_eq!(
        rpm(&["-qp", "--configfiles"]).trim(),
        "/etc/ministack/site.toml"
    );
    let flags = rpm(&["-qp", "--qf", "[%{FILEFLAGS:fflags} %{FILENAMES}\n]"]);
    assert!(
        flags.lines().any(|l| l == "cn /etc/ministack/site.toml"),
        "{flags}"
    );
    let listing = rpm(&["-qlvp"]);
    for (mode, path) in [
        ("-rwxr-xr-x", "/opt/ministack/bin/berth"),
        ("-rwxr-xr-x", "/usr/bin/ministack-ctl"),
        (
            "-rw-r--r--",
            "/usr/lib/systemd/system/berth-ministack.service",
        ),
        (
            "-rw-r--r--",
            "/opt/ministack/releases/ministack-1.0.0.berth-release.tar.zst",
        ),
    ] {
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with(mode) && l.contains("root") && l.ends_with(path)),
            "{path} ({mode}) in\n{listing}"
        );
    }
    for tag in ["PREIN", "POSTIN", "PREUN"] {
        let script = rpm(&["-qp", "--qf", &format!("%{{{tag}}}")]);
        let check = Command::new("sh")
            .args(["-n", "-c", &script])
            .status()
            .unwrap();
        assert!(check.success(), "{tag}: {script}");
    }
    assert!(rpm(&["-qp", "--qf", "%{POSTIN}"]).contains("up --bundle"));

    // The signature: rpm's keyring for these checks is an empty root's, so the host's
    // is never touched. Before the key is imported rpm cannot vouch for the package.
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let rpm_root = |args: &[&str]| {
        Command::new("rpm")
            .arg("--root")
            .arg(&root)
            .args(args)
            .output()
            .unwrap()
    };
    let checked = |package: &Path| {
        let out = rpm_root(&["-K", package.to_str().unwrap()]);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert!(rpm_root(&["--initdb"]).status.success());
    let (ok, said) = checked(&pkg);
    assert!(!ok && said.contains("SIGNATURES NOT OK"), "{said}");
    let imported = rpm_root(&["--import", &format!("{}.asc", signing.display())]);
    assert!(imported.status.success(), "{imported:?}");
    let (ok, said) = checked(&pkg);
    assert!(ok && said.contains("digests signatures OK"), "{said}");
    // Signed by another key: refused, though the digests are good.
    let stranger = repo_key("stranger.key");
    let other = tmp.path().join("other");
    rpm_of(&bundle, &other, Some(&stranger)).expect(0);
    let (ok, said) = checked(&other.join("ministack-1.0.0-1.x86_64.rpm"));
    assert!(!ok && said.contains("SIGNATURES NOT OK"), "{said}");
    // One byte of the header changed (a letter of the summary): refused.
    let bytes = std::fs::read(&pkg).unwrap();
    let at = bytes
        .windows(b"ministack".len())
        .rposition(|w| w == b"ministack")
        .unwrap();
    let mut tampered = bytes.clone();
    tampered[at] = b'M';
    let tampered_pkg = tmp.path().join("tampered.rpm");
    std::fs::write(&tampered_pkg, tampered).unwrap();
    let (ok, said) = checked(&tampered_pkg);
    assert!(!ok, "{said}");

    // rpmlint: no error once what the package does on purpose is filtered.
    let filters = tmp.path().join("rpmlintrc");
    std::fs::write(
        &filters,
        "# An add-on package from the app's vendor, self-contained under /opt (the FHS).\n\
         addFilter(\"dir-or-file-in-opt\")\n\
         # Signed with the vendor's key, which this machine's rpm keyring does not hold:\n\
         # the signature is checked above against a keyring that has it imported.\n\
         addFilter(\"unknown-key\")\n",
    )
    .unwrap();
    let lint = Command::new("rpmlint")
        .arg("-r")
        .arg(&filters)
        .arg(&pkg)
        .output()
        .expect("rpmlint (scripts/test.sh installs it)");
    let said = String::from_utf8_lossy(&lint.stdout);
    assert!(
        lint.status.success() && said.contains(" 0 errors"),
        "{said}"
    );

    // Installed by rpm into that root (no scriptlets, no dependencies there; the
    // signature is checked against its keyring), and every file verifies.
    let installed = Command::new("rpm")
        .arg("--root")
        .arg(&root)
        .args(["-i", "--nodeps", "--noscripts"])
        .arg(&pkg)
        .output()
        .unwrap();
    assert!(installed.status.success(), "{installed:?}");
    assert!(root.join("opt/ministack/bin/berth").is_file());
    let verified = rpm_root(&["-V", "--nodeps", "ministack"]);
    assert!(verified.status.success(), "{verified:?}");

    let again = tmp.path().join("b");
    rpm_of(&bundle, &again, Some(&signing)).expect(0);
    berth_tests::assert_reproducible(&pkg, &again.join("ministack-1.0.0-1.x86_64.rpm"));
}
