//! The Debian base root, made for real by mmdebstrap from the host's apt sources (it
//! needs root, mmdebstrap and the archive those sources name; scripts/test.sh runs as
//! root and installs mmdebstrap). A machine without mmdebstrap fails, saying what to
//! install.

use std::os::unix::fs::FileTypeExt as _;
use std::path::Path;
use std::process::Command;

use berth_image::base::{BaseSpec, base_key, ensure_base};
use berth_image::{ImageConfig, Layer, LayerOptions, Ownership, write_layout};

const EPOCH: u64 = 1_700_000_000;

/// Every entry of `root` that is a device node, FIFO or socket, never following a
/// symlink.
fn special_files(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                todo.push(e.path());
            } else if t.is_block_device() || t.is_char_device() || t.is_fifo() || t.is_socket() {
                found.push(e.path().display().to_string());
            }
        }
    }
    found
}

#[test]
fn mmdebstrap_makes_a_cached_base_root_a_layer_accepts() {
    assert!(
        Command::new("mmdebstrap").arg("--version").output().is_ok(),
        "cannot run `mmdebstrap`: the base root test needs it; install it with \
         `apt-get install mmdebstrap` (scripts/test.sh does)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let spec = BaseSpec::new("bookworm", &["libpq5"], EPOCH);

    let mut lines = Vec::new();
    let root = ensure_base(&spec, &cache, |l| lines.push(l.to_owned())).unwrap();
    assert_eq!(root, cache.join(base_key(&spec)).join("root"));
    assert!(
        lines.iter().any(|l| l.starts_with("I: ")),
        "mmdebstrap's progress is passed on: {lines:?}"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&cache).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700);
    // No unfinished build is left beside the entry.
    let names: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains(".partial-")), "{names:?}");

    // dpkg's database, read by dpkg itself.
    assert!(root.join("usr/bin/dpkg-query").is_file());
    let admindir = format!("--admindir={}", root.join("var/lib/dpkg").display());
    let q = Command::new("dpkg-query")
        .args([
            admindir.as_str(),
            "-W",
            "-f",
            "${db:Status-Status}",
            "libpq5",
        ])
        .output()
        .unwrap();
    assert!(q.status.success(), "{q:?}");
    assert_eq!(String::from_utf8_lossy(&q.stdout), "installed");

    // Small, and nothing a layer refuses or a host put there.
    assert_eq!(special_files(&root), Vec::<String>::new());
    assert!(root.join("dev").is_dir());
    assert_eq!(std::fs::read_dir(root.join("dev")).unwrap().count(), 0);
    assert!(root.join("usr/share/doc/libpq5/copyright").is_file());
    assert!(
        !root
            .join("usr/share/doc/libpq5/changelog.Debian.gz")
            .exists()
    );
    let man = root.join("usr/share/man");
    assert!(!man.exists() || special_files(&man).is_empty() && walk_files(&man) == 0);
    assert!(!root.join("etc/resolv.conf").exists());
    assert!(!root.join("etc/hostname").exists());
    assert_eq!(
        walk_files(&root.join("var/lib/apt/lists")),
        1,
        "only apt's lock"
    );
    assert_eq!(
        walk_files(&root.join("var/cache/apt")),
        1,
        "only apt's lock: no .deb, no pkgcache.bin"
    );
    let machine_id = std::fs::read(root.join("etc/machine-id")).unwrap_or_default();
    assert!(machine_id.is_empty());
    assert!(!root.join("var/cache/ldconfig/aux-cache").exists());
    assert!(!root.join("var/log/dpkg.log").exists());

    // The second call finds the entry: a marker put in it survives, and mmdebstrap
    // does not run.
    let marker = cache.join(base_key(&spec)).join("marker");
    std::fs::write(&marker, "kept").unwrap();
    let mut again = Vec::new();
    let same = ensure_base(
        &BaseSpec::new("bookworm", &["libpq5", "libpq5"], EPOCH + 50),
        &cache,
        |l| again.push(l.to_owned()),
    )
    .unwrap();
    assert_eq!(same, root);
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "kept");
    assert!(!again.iter().any(|l| l.starts_with("I: ")), "{again:?}");

    // A layer takes the tree as it is, owners and all.
    let layer = Layer::from_dir(
        &root,
        LayerOptions {
            source_date_epoch: EPOCH,
            created_by: "debian base".into(),
            ownership: Ownership::KeepNumeric,
            ..LayerOptions::default()
        },
    );
    let mut config = ImageConfig::new(EPOCH);
    config.user = "65534:65534".into();
    config.entrypoint = vec!["/bin/sh".into()];
    let written = write_layout(&tmp.path().join("layout"), &[layer], &config, "base").unwrap();
    assert_eq!(written.layers.len(), 1);
    assert!(
        written.layers[0].size > 10_000_000,
        "{:?}",
        written.layers[0]
    );
}

#[test]
fn a_leftover_partial_build_is_removed_and_the_cache_must_be_roots_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let spec = BaseSpec::new("bookworm", &[], EPOCH);
    let err = ensure_base(&spec, &cache, |_| {}).unwrap_err().to_string();
    assert!(err.contains("writable by root only"), "{err}");

    // A suite the host's sources do not name is refused before anything is made, but
    // after a killed build's leftovers are gone.
    std::fs::set_permissions(&cache, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let spec = BaseSpec::new("nosuchsuite", &[], EPOCH);
    let key = base_key(&spec);
    let left = cache.join(format!("{key}.partial-1/root/usr"));
    std::fs::create_dir_all(&left).unwrap();
    std::os::unix::fs::symlink("/etc", left.join("etc")).unwrap();
    let err = ensure_base(&spec, &cache, |_| {}).unwrap_err().to_string();
    assert!(err.contains("name no suite `nosuchsuite`"), "{err}");
    assert!(!cache.join(format!("{key}.partial-1")).exists());
    assert!(
        Path::new("/etc/passwd").exists(),
        "the symlink was not followed"
    );
    assert!(!cache.join(&key).exists());
}

/// How many non-directories are under `dir` (0 when it is missing).
fn walk_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}
