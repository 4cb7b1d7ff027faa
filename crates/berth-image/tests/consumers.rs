//! The writer's output as real consumers read it: skopeo (containers/image, what podman
//! uses) and umoci (an independent OCI implementation) must accept the layout and the
//! archives, and unpack exactly the trees that went in. scripts/test.sh installs both;
//! a machine without them fails these tests, saying what to install.

use std::collections::BTreeMap;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use berth_image::{
    Healthcheck, ImageConfig, Layer, LayerOptions, Written, write_docker_archive, write_layout,
    write_oci_archive,
};

const EPOCH: u64 = 1_700_000_000;
const TAG: &str = "web-1.0";

/// Runs a tool the tests need; fails with what to install when it is missing.
fn run(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run `{tool}` ({e}): the image tests need skopeo and umoci; \
             install them with `apt-get install skopeo umoci` (scripts/test.sh does)"
        )
    });
    assert!(
        out.status.success(),
        "`{tool} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Sets the modification time of `path` (a file or directory), not following symlinks'
/// targets (symlinks themselves keep theirs).
fn touch(path: &Path, secs: u64) {
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    std::fs::File::open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

/// The base tree: a file, an executable, a symlink, a nested directory.
fn base_tree(root: &Path, mtime: u64) {
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::create_dir_all(root.join("usr/share/app/deep/er")).unwrap();
    std::fs::write(root.join("etc/hello.txt"), "hello from the base\n").unwrap();
    std::fs::write(root.join("usr/bin/run"), "#!/bin/sh\necho run\n").unwrap();
    std::fs::set_permissions(
        root.join("usr/bin/run"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(
        root.join("etc/hello.txt"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    symlink("run", root.join("usr/bin/start")).unwrap();
    std::fs::write(root.join("usr/share/app/deep/er/note.txt"), "deep\n").unwrap();
    for p in [
        "etc/hello.txt",
        "usr/bin/run",
        "usr/share/app/deep/er/note.txt",
        "usr/share/app/deep/er",
        "usr/share/app/deep",
        "usr/share/app",
        "usr/share",
        "usr/bin",
        "usr",
        "etc",
    ] {
        touch(&root.join(p), mtime);
    }
}

/// The app tree, whose one file says `version`.
fn app_tree(root: &Path, version: &str, mtime: u64) {
    std::fs::create_dir_all(root.join("opt/app")).unwrap();
    std::fs::write(root.join("opt/app/VERSION"), format!("{version}\n")).unwrap();
    touch(&root.join("opt/app/VERSION"), mtime);
}

fn config() -> ImageConfig {
    let mut c = ImageConfig::new(EPOCH);
    c.entrypoint = vec!["/usr/bin/run".into()];
    c.cmd = vec!["serve".into()];
    c.env = vec!["PATH=/usr/bin:/bin".into()];
    c.working_dir = Some("/opt/app".into());
    c.labels = BTreeMap::from([
        ("org.opencontainers.image.title".into(), "app".into()),
        ("org.opencontainers.image.version".into(), "1.0".into()),
    ]);
    c.exposed_ports.insert("8080/tcp".into());
    c.healthcheck = Some(Healthcheck {
        test: vec!["CMD".into(), "/usr/bin/run".into(), "check".into()],
        interval: Duration::from_secs(30),
        timeout: Duration::from_secs(5),
        retries: 3,
        start_period: Duration::from_secs(10),
    });
    c
}

fn layers(base: &Path, app: &Path) -> Vec<Layer> {
    let opts = |what: &str| LayerOptions {
        source_date_epoch: EPOCH,
        created_by: what.into(),
        ..LayerOptions::default()
    };
    vec![
        Layer::from_dir(base, opts("base")),
        Layer::from_dir(app, opts("app")),
    ]
}

/// Builds the image from fresh trees under `work` (files dated `mtime`).
fn build(work: &Path, version: &str, mtime: u64) -> (PathBuf, Written) {
    let (base, app, layout) = (work.join("base"), work.join("app"), work.join("layout"));
    base_tree(&base, mtime);
    app_tree(&app, version, mtime);
    let written = write_layout(&layout, &layers(&base, &app), &config(), TAG).unwrap();
    (layout, written)
}

#[test]
fn skopeo_reads_the_layout_and_the_archives_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let (layout, written) = build(tmp.path(), "1.0", EPOCH + 1000);
    let oci_ref = format!("oci:{}:{TAG}", s(&layout));

    let inspect = json(&run("skopeo", &["inspect", &oci_ref]));
    assert_eq!(inspect["Digest"], written.manifest_digest.as_str());
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Os"], "linux");
    assert_eq!(inspect["Labels"]["org.opencontainers.image.version"], "1.0");
    assert_eq!(inspect["Created"], "2023-11-14T22:13:20Z");

    let cfg = json(&run("skopeo", &["inspect", "--config", &oci_ref]));
    assert_eq!(cfg["config"]["User"], "1000:1000");
    assert_eq!(
        cfg["config"]["Entrypoint"],
        serde_json::json!(["/usr/bin/run"])
    );
    // The OCI config has no health check: skopeo's parsed view drops Docker's key, the
    // raw blob keeps it where Docker and podman read it.
    let raw = json(&run("skopeo", &["inspect", "--config", "--raw", &oci_ref]));
    assert_eq!(raw["config"]["Healthcheck"]["Retries"], 3);
    assert_eq!(raw["config"]["Healthcheck"]["Interval"], 30_000_000_000_u64);
    assert_eq!(cfg["history"].as_array().unwrap().len(), 2);

    // skopeo's own oci-archive of the layout, read back.
    let theirs = tmp.path().join("theirs.tar");
    run(
        "skopeo",
        &[
            "copy",
            &oci_ref,
            &format!("oci-archive:{}:{TAG}", s(&theirs)),
        ],
    );
    let back = json(&run(
        "skopeo",
        &["inspect", &format!("oci-archive:{}:{TAG}", s(&theirs))],
    ));
    assert_eq!(back["Digest"], written.manifest_digest.as_str());

    // Ours, copied by skopeo into another layout: the same image, digest and all.
    let ours = tmp.path().join("ours.tar");
    write_oci_archive(&layout, &ours).unwrap();
    let other = tmp.path().join("other");
    run(
        "skopeo",
        &[
            "copy",
            &format!("oci-archive:{}:{TAG}", s(&ours)),
            &format!("oci:{}:{TAG}", s(&other)),
        ],
    );
    let copied = json(&run(
        "skopeo",
        &["inspect", &format!("oci:{}:{TAG}", s(&other))],
    ));
    assert_eq!(copied["Digest"], written.manifest_digest.as_str());

    // The docker-archive: the same config and layers (docker's manifest differs).
    let docker = tmp.path().join("docker.tar");
    write_docker_archive(&layout, TAG, "localhost/app-web:1.0", &docker).unwrap();
    let d = json(&run(
        "skopeo",
        &["inspect", &format!("docker-archive:{}", s(&docker))],
    ));
    assert_eq!(d["Layers"].as_array().unwrap().len(), 2);
    let dcfg = json(&run(
        "skopeo",
        &[
            "inspect",
            "--config",
            "--raw",
            &format!("docker-archive:{}", s(&docker)),
        ],
    ));
    assert_eq!(dcfg["config"]["Healthcheck"]["Test"][0], "CMD");
    assert_eq!(dcfg["rootfs"], cfg["rootfs"]);
}

#[test]
fn umoci_unpacks_the_trees_that_went_in() {
    let tmp = tempfile::tempdir().unwrap();
    let (layout, _) = build(tmp.path(), "1.0", EPOCH + 1000);
    let bundle = tmp.path().join("bundle");
    run(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:{TAG}", s(&layout)),
            s(&bundle),
        ],
    );
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/hello.txt")).unwrap(),
        "hello from the base\n"
    );
    let mode = |p: &str| {
        std::fs::symlink_metadata(rootfs.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("usr/bin/run"), 0o755);
    assert_eq!(mode("etc/hello.txt"), 0o640);
    assert_eq!(
        std::fs::read_link(rootfs.join("usr/bin/start")).unwrap(),
        Path::new("run")
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("usr/share/app/deep/er/note.txt")).unwrap(),
        "deep\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("opt/app/VERSION")).unwrap(),
        "1.0\n"
    );
    // The runtime config umoci made from the image config: the user and the entrypoint.
    let runtime = json(&std::fs::read_to_string(bundle.join("config.json")).unwrap());
    assert_eq!(
        runtime["process"]["args"],
        serde_json::json!(["/usr/bin/run", "serve"])
    );
    assert_eq!(runtime["process"]["cwd"], "/opt/app");
}

#[test]
fn two_builds_are_the_same_bytes() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Different directories, different file times (all after the build's time).
    let (layout1, w1) = build(one.path(), "1.0", EPOCH + 10);
    let (layout2, w2) = build(&two.path().join("elsewhere"), "1.0", EPOCH + 99_999);
    assert_eq!(w1, w2);
    for (name, write) in [
        (
            "oci.tar",
            (|l: &Path, o: &Path| write_oci_archive(l, o)) as fn(&Path, &Path) -> _,
        ),
        ("docker.tar", |l: &Path, o: &Path| {
            write_docker_archive(l, TAG, "localhost/app-web:1.0", o)
        }),
    ] {
        let (a, b) = (one.path().join(name), two.path().join(name));
        write(&layout1, &a).unwrap();
        write(&layout2, &b).unwrap();
        assert!(
            std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
            "{name} differs between two builds of the same trees"
        );
    }
    // Writing the same image again into the same layout changes nothing either.
    let again = write_layout(
        &layout1,
        &layers(&one.path().join("base"), &one.path().join("app")),
        &config(),
        TAG,
    )
    .unwrap();
    assert_eq!(again, w1);
}

#[test]
fn changing_the_app_keeps_the_base_layer() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_, v1) = build(one.path(), "1.0", EPOCH + 10);
    let (_, v2) = build(two.path(), "2.0", EPOCH + 10);
    assert_eq!(v1.layers[0], v2.layers[0], "the base layer must not change");
    assert_ne!(v1.layers[1].digest, v2.layers[1].digest);
    assert_ne!(v1.manifest_digest, v2.manifest_digest);
}

#[test]
fn a_symlink_out_of_the_tree_is_stored_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(outside.join("dir")).unwrap();
    std::fs::write(outside.join("secret"), "TOP-SECRET-CONTENT").unwrap();
    std::fs::write(outside.join("dir/inner"), "SECRET-IN-A-DIRECTORY").unwrap();
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    symlink(outside.join("secret"), tree.join("to-file")).unwrap();
    symlink(outside.join("dir"), tree.join("to-dir")).unwrap();
    symlink("../../outside/secret", tree.join("relative")).unwrap();

    let layer = Layer::from_dir(
        &tree,
        LayerOptions {
            source_date_epoch: EPOCH,
            ..LayerOptions::default()
        },
    );
    let bytes = layer.write_tar(Vec::new()).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        !text.contains("TOP-SECRET") && !text.contains("SECRET-IN"),
        "a link was followed"
    );
    let mut links = BTreeMap::new();
    for entry in tar::Archive::new(bytes.as_slice()).entries().unwrap() {
        let entry = entry.unwrap();
        assert_eq!(entry.header().entry_type(), tar::EntryType::Symlink);
        links.insert(
            entry.path().unwrap().into_owned(),
            entry.link_name().unwrap().unwrap().into_owned(),
        );
    }
    assert_eq!(links.len(), 3);
    assert_eq!(links[Path::new("to-file")], outside.join("secret"));
    assert_eq!(
        links[Path::new("relative")],
        Path::new("../../outside/secret")
    );

    // And umoci unpacks it as a link too, its target untouched.
    let layout = tmp.path().join("layout");
    write_layout(&layout, &[layer], &ImageConfig::new(EPOCH), "links").unwrap();
    let bundle = tmp.path().join("bundle");
    run(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:links", s(&layout)),
            s(&bundle),
        ],
    );
    let unpacked = bundle.join("rootfs/to-file");
    assert!(
        std::fs::symlink_metadata(&unpacked)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        std::fs::read_link(&unpacked).unwrap(),
        outside.join("secret")
    );
}

#[test]
fn a_fifo_in_the_tree_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let fifo = tree.join("pipe");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    let layer = Layer::from_dir(&tree, LayerOptions::default());
    let err = write_layout(
        &tmp.path().join("layout"),
        &[layer],
        &ImageConfig::new(EPOCH),
        "x",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("pipe") && err.contains("FIFO"), "{err}");
    // Nothing half-written is left among the blobs.
    let left: Vec<_> = std::fs::read_dir(tmp.path().join("layout/blobs/sha256"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
