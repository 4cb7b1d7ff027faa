//! `berth repo apt` against what could go wrong around it: a repository it did not
//! sign, indexes changed behind its back, a package republished with other bytes, a
//! crafted package name, a symlink planted in the tree, a run that stopped half-way.
//! Each is refused (or finished) with the repository left as it was; `gpgv` checks
//! the signatures it writes, and the same inputs give the same bytes.
//!
//! The packages are built here with `dpkg-deb` (whose control member is xz).

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_tests::{Berth, Run, snapshot_tree};

const EPOCH: &str = "1700000000";

fn berth(args: &[&str]) -> Run {
    Berth::new(Path::new("/nonexistent-prefix"), Path::new(""))
        .run_env(args, &[("SOURCE_DATE_EPOCH", EPOCH)])
}

/// A package `name` `version` built by dpkg-deb, with `extra` in its description (so
/// two builds of one version can differ).
fn deb(dir: &Path, name: &str, version: &str, extra: &str) -> PathBuf {
    let tree = dir.join(format!("tree-{name}-{version}-{extra}"));
    std::fs::create_dir_all(tree.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(tree.join("usr/share/doc").join(name)).unwrap();
    std::fs::write(
        tree.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: amd64\n\
             Maintainer: Vendor <vendor@example.org>\nDescription: a test package\n {extra}\n"
        ),
    )
    .unwrap();
    std::fs::write(tree.join("usr/share/doc").join(name).join("README"), extra).unwrap();
    let out = dir.join(format!("{name}_{version}_{extra}.deb"));
    let built = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&tree)
        .arg(&out)
        .output()
        .unwrap();
    assert!(built.status.success(), "{built:?}");
    out
}

fn key(dir: &Path, name: &str) -> PathBuf {
    let k = dir.join(name);
    berth(&[
        "repo",
        "key",
        "--out",
        k.to_str().unwrap(),
        "--name",
        "Vendor Archive <archive@example.org>",
    ])
    .expect(0);
    k
}

fn add(repo: &Path, key: &Path, debs: &[&Path]) -> Run {
    let mut args = vec!["repo", "apt", repo.to_str().unwrap()];
    args.extend(debs.iter().map(|d| d.to_str().unwrap()));
    args.extend(["--key", key.to_str().unwrap()]);
    berth(&args)
}

fn gpgv(keyring: &Path, args: &[&Path]) -> bool {
    Command::new("gpgv")
        .arg("--keyring")
        .arg(keyring)
        .args(args)
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn a_repository_grows_signed_and_gpgv_checks_it() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let k = key(t, "repo.key");
    let keyring = t.join("repo.key.gpg");
    let a1 = deb(t, "demo", "1.0", "one");
    let a2 = deb(t, "demo", "1.1", "two");
    let lib = deb(t, "libdemo1", "2.0", "lib");
    let repo = t.join("repo");
    let r = add(&repo, &k, &[&a1]).expect(0);
    assert!(r.stdout.contains("Added demo 1.0 (amd64)"), "{}", r.stdout);
    let r = add(&repo, &k, &[&a2, &lib]).expect(0);
    assert!(
        r.stdout.contains("demo 1.0 amd64") && r.stdout.contains("demo 1.1 amd64"),
        "{}",
        r.stdout
    );
    assert!(
        repo.join("pool/main/libd/libdemo1/libdemo1_2.0_amd64.deb")
            .is_file()
    );
    let dists = repo.join("dists/stable");
    assert!(gpgv(&keyring, &[&dists.join("InRelease")]));
    assert!(gpgv(
        &keyring,
        &[&dists.join("Release.gpg"), &dists.join("Release")]
    ));
    // The same package again: nothing changes. Nor does a run for another component,
    // which would drop this one from `Release`.
    let before = snapshot_tree(&repo);
    let r = berth(&[
        "repo",
        "apt",
        repo.to_str().unwrap(),
        a1.to_str().unwrap(),
        "--key",
        k.to_str().unwrap(),
        "--component",
        "contrib",
    ])
    .expect(1);
    assert!(r.stderr.contains("one component per suite"), "{}", r.stderr);
    assert_eq!(snapshot_tree(&repo), before);
    let r = add(&repo, &k, &[&a1]).expect(0);
    assert!(
        r.stdout.contains("already (the same bytes)"),
        "{}",
        r.stdout
    );
    assert_eq!(snapshot_tree(&repo), before);
    // Another repository from the same packages and time: the same bytes.
    let twin = t.join("twin");
    add(&twin, &k, &[&a1]).expect(0);
    add(&twin, &k, &[&a2, &lib]).expect(0);
    assert_eq!(snapshot_tree(&twin), before);
    // The keyring in the repository is the key's.
    assert_eq!(
        std::fs::read(repo.join("archive-keyring.gpg")).unwrap(),
        std::fs::read(&keyring).unwrap()
    );
}

#[test]
fn what_the_repository_does_not_vouch_for_is_refused_and_nothing_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let k = key(t, "repo.key");
    let other = key(t, "other.key");
    let a1 = deb(t, "demo", "1.0", "one");
    let a1_again = deb(t, "demo", "1.0", "rebuilt");
    let a2 = deb(t, "demo", "1.1", "two");
    let repo = t.join("repo");
    add(&repo, &k, &[&a1]).expect(0);
    let before = snapshot_tree(&repo);

    // Signed by another key.
    let r = add(&repo, &other, &[&a2]).expect(1);
    assert!(
        r.stderr.contains("is this the repository's key?"),
        "{}",
        r.stderr
    );
    assert_eq!(snapshot_tree(&repo), before);

    // The same version with other bytes.
    let r = add(&repo, &k, &[&a1_again]).expect(1);
    assert!(r.stderr.contains("never replaced"), "{}", r.stderr);
    assert_eq!(snapshot_tree(&repo), before);

    // An index changed behind berth's back (plain name and by hash).
    let index = repo.join("dists/stable/main/binary-amd64");
    let by_hash: Vec<PathBuf> = std::fs::read_dir(index.join("by-hash/SHA256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let changed = std::fs::read_to_string(index.join("Packages"))
        .unwrap()
        .replace("Version: 1.0", "Version: 1.0+evil");
    for f in by_hash.iter().chain([&index.join("Packages")]) {
        if !std::fs::read(f).unwrap().starts_with(&[0x1f, 0x8b]) {
            std::fs::write(f, &changed).unwrap();
        }
    }
    let tampered = snapshot_tree(&repo);
    let r = add(&repo, &k, &[&a2]).expect(1);
    assert!(
        r.stderr.contains("is not the file InRelease signed"),
        "{}",
        r.stderr
    );
    assert_eq!(snapshot_tree(&repo), tampered);
}

#[test]
fn crafted_names_and_planted_symlinks_write_nothing_outside() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let k = key(t, "repo.key");
    // A package whose name climbs out of the pool.
    let evil = deb(t, "demo", "1.0", "x");
    let tree = t.join("tree-demo-1.0-x");
    let control = std::fs::read_to_string(tree.join("DEBIAN/control")).unwrap();
    std::fs::write(
        tree.join("DEBIAN/control"),
        control.replace("Version: 1.0", "Version: 1.0/../../../../escaped"),
    )
    .unwrap();
    std::fs::remove_file(&evil).unwrap();
    // dpkg-deb refuses such a version itself: write the control member by hand.
    let built = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--nocheck", "--build"])
        .arg(&tree)
        .arg(&evil)
        .output()
        .unwrap();
    assert!(built.status.success(), "{built:?}");
    let repo = t.join("repo");
    let r = add(&repo, &k, &[&evil]).expect(1);
    assert!(
        r.stderr.contains("cannot name a file in the pool"),
        "{}",
        r.stderr
    );
    assert!(!t.join("escaped").exists());

    // A symlink planted where the pool goes: berth does not follow it.
    let good = deb(t, "demo", "1.0", "good");
    let outside = t.join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::create_dir_all(&repo).unwrap();
    std::os::unix::fs::symlink(&outside, repo.join("pool")).unwrap();
    let r = add(&repo, &k, &[&good]).expect(1);
    assert!(r.stderr.contains("symbolic link"), "{}", r.stderr);
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    assert!(!repo.join("dists").exists());
}

#[test]
fn a_run_that_stopped_after_the_pool_is_finished_by_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let k = key(t, "repo.key");
    let a1 = deb(t, "demo", "1.0", "one");
    let a2 = deb(t, "demo", "1.1", "two");
    let repo = t.join("repo");
    add(&repo, &k, &[&a1]).expect(0);
    // What a run that stopped after copying into the pool leaves: a file no index lists
    // (here a partial copy).
    let pool = repo.join("pool/main/d/demo/demo_1.1_amd64.deb");
    std::fs::write(&pool, &std::fs::read(&a2).unwrap()[..100]).unwrap();
    add(&repo, &k, &[&a2]).expect(0);
    assert_eq!(std::fs::read(&pool).unwrap(), std::fs::read(&a2).unwrap());
    let packages =
        std::fs::read_to_string(repo.join("dists/stable/main/binary-amd64/Packages")).unwrap();
    assert!(packages.contains("Version: 1.1"), "{packages}");
}

/// `berth repo yum`, read by dnf itself (`--installroot`, the repository named on the
/// command line, `repo_gpgcheck=1` and `gpgcheck=1` with the key berth wrote; the
/// package is signed with it too, which `rpm -K` checks in tests/package.rs; dnf
/// would check it on download, after resolving): the package is listed
/// with its fields, its `Requires` are what dnf resolves (nothing in an empty root
/// provides them), a changed `repomd.xml` is refused as a bad signature, and berth
/// refuses a republished version with other bytes and a record it did not sign.
#[test]
#[allow(clippy::too_many_lines)] // one repository, every way it is read
fn a_yum_repository_that_dnf_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let k = key(t, "repo.key");
    let vendor = t.join("vendor.key");
    berth(&["release", "key", "--out", vendor.to_str().unwrap()]).expect(0);
    let manifest = berth_tests::ministack_at(&t.join("src"), "1.0.0", |text| {
        berth_tests::with_rpm_names(&text)
    });
    let dist = t.join("dist");
    std::fs::create_dir(&dist).unwrap();
    Berth::new(Path::new("/nonexistent-prefix"), &manifest)
        .run_env(
            &[
                "release",
                "build",
                "--key",
                vendor.to_str().unwrap(),
                "--out",
                dist.to_str().unwrap(),
                "--berth",
                "/bin/true",
            ],
            &[("SOURCE_DATE_EPOCH", EPOCH)],
        )
        .expect(0);
    let bundle = dist.join("ministack-1.0.0.berth-release.tar.zst");
    let rpm_at = |out: &Path, epoch: &str| {
        std::fs::create_dir_all(out).unwrap();
        Berth::new(Path::new("/nonexistent-prefix"), Path::new(""))
            .run_env(
                &[
                    "package",
                    "rpm",
                    bundle.to_str().unwrap(),
                    "--public-key",
                    &format!("{}.pub", vendor.display()),
                    "--maintainer",
                    "Vendor <vendor@example.org>",
                    "--architecture",
                    "amd64",
                    "--out",
                    out.to_str().unwrap(),
                    "--sign-with",
                    k.to_str().unwrap(),
                ],
                &[("SOURCE_DATE_EPOCH", epoch)],
            )
            .expect(0);
        out.join("ministack-1.0.0-1.x86_64.rpm")
    };
    let rpm = rpm_at(&t.join("a"), EPOCH);
    // The same version built at another time: other bytes.
    let rebuilt = rpm_at(&t.join("b"), "1700000999");

    let repo = t.join("yum");
    let yum = |rpms: &[&Path], key: &Path| {
        let mut args = vec!["repo", "yum", repo.to_str().unwrap()];
        args.extend(rpms.iter().map(|r| r.to_str().unwrap()));
        args.extend(["--key", key.to_str().unwrap()]);
        berth(&args)
    };
    let r = yum(&[&rpm], &k).expect(0);
    assert!(
        r.stdout.contains("Added ministack-1.0.0-1.x86_64"),
        "{}",
        r.stdout
    );
    assert!(
        repo.join("Packages/m/ministack-1.0.0-1.x86_64.rpm")
            .is_file()
    );
    let before = snapshot_tree(&repo);
    let r = yum(&[&rpm], &k).expect(0);
    assert!(
        r.stdout.contains("already (the same bytes)"),
        "{}",
        r.stdout
    );
    assert_eq!(snapshot_tree(&repo), before);
    let r = yum(&[&rebuilt], &k).expect(1);
    assert!(r.stderr.contains("never replaced"), "{}", r.stderr);
    let other = key(t, "other.key");
    let r = yum(&[&rebuilt], &other).expect(1);
    assert!(
        r.stderr.contains("is this the repository's key?"),
        "{}",
        r.stderr
    );
    assert_eq!(snapshot_tree(&repo), before);

    let dnf = |args: &[&str]| {
        let root = tempfile::tempdir().unwrap();
        let out = Command::new("dnf")
            .arg("--installroot")
            .arg(root.path())
            .args([
                "--releasever",
                "12",
                "--setopt=reposdir=/dev/null",
                "-y",
                &format!("--repofrompath=vendor,file://{}", repo.display()),
                "--setopt=vendor.gpgcheck=1",
                "--setopt=vendor.repo_gpgcheck=1",
                "--setopt=vendor.skip_if_unavailable=False",
                &format!(
                    "--setopt=vendor.gpgkey=file://{}/RPM-GPG-KEY",
                    repo.display()
                ),
            ])
            .args(args)
            .output()
            .expect("dnf (scripts/test.sh installs it)");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), said)
    };
    let (ok, said) = dnf(&["repoquery", "--info", "ministack"]);
    assert!(ok, "{said}");
    for field in [
        "Name         : ministack",
        "Version      : 1.0.0",
        "Architecture : x86_64",
    ] {
        assert!(said.contains(field), "{field} in {said}");
    }
    let (ok, said) = dnf(&["repoquery", "--requires", "ministack"]);
    assert!(
        ok && said.contains("postgresql-server") && said.contains("libssl.so.3()(64bit)"),
        "{said}"
    );
    // An empty root provides none of it: dnf resolves the Requires and says so.
    let (ok, said) = dnf(&["install", "ministack"]);
    assert!(
        !ok && said.contains("nothing provides postgresql-server"),
        "{said}"
    );

    // A changed repomd.xml: dnf refuses the repository.
    let repomd = repo.join("repodata/repomd.xml");
    let good = std::fs::read_to_string(&repomd).unwrap();
    std::fs::write(&repomd, good.replace("<revision>", "<revision>1")).unwrap();
    let (ok, said) = dnf(&["repoquery", "ministack"]);
    assert!(!ok && said.contains("Bad GPG signature"), "{said}");
    std::fs::write(&repomd, good).unwrap();

    // A record berth did not sign: refused, nothing changes.
    let record = repo.join("repodata/berth-packages.json");
    let text = std::fs::read_to_string(&record).unwrap();
    std::fs::write(&record, text.replace("\"nginx\"", "\"nginx-evil\"")).unwrap();
    let changed = snapshot_tree(&repo);
    let r = yum(&[&rebuilt], &k).expect(1);
    assert!(r.stderr.contains("not signed by the key"), "{}", r.stderr);
    assert_eq!(snapshot_tree(&repo), changed);
}
