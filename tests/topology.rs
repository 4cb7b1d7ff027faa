//! `berth plan topology` as an administrator runs it: the reference app's plan with
//! one site config per node, each accepted by `berth config check`; the published
//! catalog; refusals with exit status 2; `--write` that never overwrites; and a node
//! config that takes only some roles, refused before anything changes.

use std::path::Path;

use berth_tests::{Berth, prefix_dir, root, snapshot_tree};

fn netbox() -> std::path::PathBuf {
    root().join("examples/netbox")
}

#[test]
fn a_plan_writes_one_valid_site_config_per_node() {
    let dir = prefix_dir("topology");
    let out = dir.path().join("plan");
    let b = Berth::new(&dir.path().join("prefix"), &netbox());
    let out_s = out.display().to_string();
    let r = b.run(&["plan", "topology", "--rps", "20", "--ha", "--write", &out_s]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("Total: 7 nodes, 18 CPUs, 28.25GiB"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("Wrote 7 site configs"), "{}", r.stdout);
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "database-1.toml",
            "database-2.toml",
            "database-3.toml",
            "load-balancer-1.toml",
            "web-1.toml",
            "web-2.toml",
            "worker-1.toml"
        ]
    );
    for n in &names {
        let config = out.join(n).display().to_string();
        let r = b.run(&["--config", &config, "config", "check"]);
        assert_eq!(r.code, 0, "{n}: {}", r.stderr);
    }
    let text = std::fs::read_to_string(out.join("database-1.toml")).unwrap();
    assert!(
        text.contains("roles = [\"database\", \"cache\", \"consensus\", \"pooler\"]"),
        "{text}"
    );

    // Writing again changes nothing: every file is new or none is written.
    let before = snapshot_tree(&out);
    let r = b.run(&["plan", "topology", "--rps", "40", "--write", &out_s]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr.contains("already exists: nothing was written"),
        "{}",
        r.stderr
    );
    assert_eq!(before, snapshot_tree(&out));

    // JSON for tools.
    let r = b.run(&["plan", "topology", "--users", "2000", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["rps"], 100);
    assert_eq!(v["total"]["nodes"], 7);
}

#[test]
fn the_published_catalog_and_refusals() {
    let dir = prefix_dir("topology");
    let b = Berth::new(&dir.path().join("prefix"), &netbox());
    let catalog = root()
        .join("examples/catalogs/gitlab-reference-architectures.toml")
        .display()
        .to_string();
    let r = b.run(&[
        "plan",
        "topology",
        "--catalog",
        &catalog,
        "--users",
        "10000",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("Sized as: measured size 10K"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("Total: 32 nodes"), "{}", r.stdout);

    for (args, message) in [
        (
            vec!["--catalog", catalog.as_str(), "--users", "60000"],
            "error: 60000 users (1200 RPS) is beyond the largest size `50K` measured",
        ),
        (vec!["--users", "0"], "error: the load is 0"),
        (
            vec!["--catalog", "/nonexistent/catalog.toml", "--rps", "5"],
            "Failed to read the sizing catalog",
        ),
    ] {
        let mut all = vec!["plan", "topology"];
        all.extend(args);
        let r = b.run(&all);
        assert_eq!(r.code, 2, "{all:?}: {}", r.stderr);
        assert!(r.stderr.contains(message), "{all:?}: {}", r.stderr);
    }
    // Both or neither load: clap's usage error.
    let r = b.run(&["plan", "topology", "--users", "5", "--rps", "5"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = b.run(&["plan", "topology"]);
    assert_eq!(r.code, 2, "{}", r.stderr);

    // A catalog with a mistake: positioned, with a did-you-mean.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[catalog]\nname = \"x\"\n\n[roles.app]\nha = \"replicas\"\nnodse = { ha = 2 }\n",
    )
    .unwrap();
    let r = b.run(&[
        "plan",
        "topology",
        "--catalog",
        &bad.display().to_string(),
        "--rps",
        "5",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("unknown key `nodse`"), "{}", r.stderr);
    assert!(r.stderr.contains("bad.toml:6:1"), "{}", r.stderr);
    assert!(r.stderr.contains("did you mean `nodes`?"), "{}", r.stderr);
}

#[test]
fn a_node_with_some_roles_is_refused_before_anything_changes() {
    let dir = prefix_dir("topology");
    let prefix = dir.path().join("prefix");
    std::fs::create_dir(&prefix).unwrap();
    let b = Berth::new(&prefix, &netbox());
    std::fs::write(b.site(), "users = \"shared\"\nroles = [\"web\"]\n").unwrap();
    let before = snapshot_tree(Path::new(&prefix));
    for cmd in [&["plan"][..], &["up"][..]] {
        let r = b.run(cmd);
        assert_ne!(r.code, 0, "{cmd:?}: {}", r.stdout);
        assert!(
            r.stderr
                .contains("this node takes the roles `web` but not `cache`, `database`, `worker`"),
            "{cmd:?}: {}",
            r.stderr
        );
    }
    assert_eq!(before, snapshot_tree(Path::new(&prefix)));
}
