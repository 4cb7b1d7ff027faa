//! `berth fleet` across machines that are network namespaces on a private bridge, each
//! with its own sshd; berth runs in an admin namespace and reaches them with the
//! system's ssh, host keys checked against the fleet's own known_hosts.
//!
//! Before anything changes, every node must answer with its recorded host key and run
//! this berth: an unreachable node, a wrong or missing host key, and two nodes with one
//! address are each refused, and no node is touched.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use berth_tests::netns::{Instances, Lab};
use berth_tests::{berth_bin, prefix_dir, root};

fn netbox() -> String {
    root().join("examples/netbox").display().to_string()
}

/// A fleet file for NetBox with nodes `(name, address, roles)`, the lab's key, and
/// `known_hosts` as given.
fn fleet_file(lab: &Lab, dir: &Path, nodes: &[(&str, &str, &str)], known_hosts: &str) -> PathBuf {
    std::fs::write(dir.join("known_hosts"), known_hosts).unwrap();
    let mut text = format!(
        "[fleet]\nname = \"lab\"\nidentity = \"{}\"\nknown_hosts = \"known_hosts\"\n\
         berth = \"{}\"\nprefix = \"{}\"\nconnect_timeout = \"2s\"\n",
        lab.identity().display(),
        berth_bin().display(),
        dir.join("instance").display()
    );
    for (name, address, roles) in nodes {
        let _ = write!(
            text,
            "\n[nodes.{name}]\naddress = \"{address}\"\nroles = [{roles}]\n"
        );
    }
    let path = dir.join("fleet.toml");
    std::fs::write(&path, text).unwrap();
    path
}

const DB: &str = "\"database\", \"cache\"";
const WEB: &str = "\"web\"";
const WORKER: &str = "\"worker\"";

/// A lab of three machines, sshd on the first two (the third refuses connections).
struct Setup {
    dir: tempfile::TempDir,
    lab: Lab,
    /// The three machines' addresses.
    a: [String; 3],
    /// known_hosts lines for the two machines with an sshd.
    hosts: String,
}

fn lab() -> Setup {
    let dir = prefix_dir("fleet");
    let mut lab = Lab::new(3, dir.path());
    lab.start_sshd(1);
    lab.start_sshd(2);
    let a = [0, 1, 2].map(|i| lab.nodes[i].address.clone());
    let hosts = format!("{}{}", lab.known_host(1), lab.known_host(2));
    Setup { dir, lab, a, hosts }
}

fn fleet(lab: &Lab, command: &str, f: &Path, json: bool) -> berth_tests::Run {
    let f = f.display().to_string();
    let mut args = vec![
        "--manifest",
        NETBOX.as_str(),
        "fleet",
        command,
        "--fleet",
        &f,
    ];
    if json {
        args.push("--json");
    }
    lab.berth(&args)
}

static NETBOX: std::sync::LazyLock<String> = std::sync::LazyLock::new(netbox);

/// The web node also takes the worker's role: two machines carry the whole app.
const WEB_AND_WORKER: &str = "\"web\", \"worker\"";

#[test]
fn ready_nodes_pass_and_report_their_status() {
    let Setup {
        dir,
        lab,
        a: [a1, a2, _],
        hosts,
    } = lab();
    let f = fleet_file(
        &lab,
        dir.path(),
        &[("db", &a1, DB), ("web", &a2, WEB_AND_WORKER)],
        &hosts,
    );
    let r = fleet(&lab, "check", &f, false);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("Every node is ready."), "{}", r.stdout);
    assert!(r.stdout.contains(&format!("{a1}:22")), "{}", r.stdout);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        r.stdout.lines().filter(|l| l.ends_with(version)).count(),
        2,
        "both nodes run berth {version}: {}",
        r.stdout
    );
    let r = fleet(&lab, "check", &f, true);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["ready"], true);
    assert_eq!(v["nodes"][0]["berth"], version);

    // Status: every node answers; none is set up yet, so the fleet is not healthy.
    let r = fleet(&lab, "status", &f, true);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["healthy"], false);
    assert_eq!(v["nodes"].as_array().unwrap().len(), 2);
    for n in v["nodes"].as_array().unwrap() {
        assert_eq!(n["set_up"], false, "{n}");
        assert!(n["problem"].is_null(), "{n}");
    }
    let r = fleet(&lab, "status", &f, false);
    assert!(r.stdout.contains("not set up"), "{}", r.stdout);
    assert!(r.stdout.contains("0 of 2 nodes healthy."), "{}", r.stdout);
    assert!(!dir.path().join("instance").exists(), "no node was changed");
}

#[test]
fn unreachable_nodes_are_refused() {
    let Setup {
        dir,
        lab,
        a: [a1, a2, a3],
        hosts,
    } = lab();
    // Nothing at one address; a machine without sshd at the other.
    let f = fleet_file(
        &lab,
        dir.path(),
        &[
            ("db", &a1, DB),
            ("web", &a2, WEB),
            ("worker", &lab.nobody(), WORKER),
            ("worker-2", &a3, WORKER),
        ],
        &hosts,
    );
    let r = fleet(&lab, "check", &f, false);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("2 of 4 nodes are not ready; nothing was changed on any node"),
        "{}",
        r.stderr
    );
    let nobody = lab.nobody();
    assert!(
        r.stderr.contains(&format!(
            "worker: node `worker` ({nobody}:22) cannot be reached"
        )),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!(
            "worker-2: node `worker-2` ({a3}:22) cannot be reached"
        )),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("Connection refused"), "{}", r.stderr);
    assert!(r.stdout.contains("unreachable"), "{}", r.stdout);
    assert!(!dir.path().join("instance").exists(), "no node was changed");
}

#[test]
fn host_keys_are_checked_never_learnt() {
    let Setup {
        dir,
        lab,
        a: [a1, a2, _],
        ..
    } = lab();
    // A key that is not the node's: refused, with what to find out first.
    let other = dir.path().join("other_key");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(out.status.success());
    let other_key = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let other_key: Vec<&str> = other_key.split_whitespace().take(2).collect();
    let wrong = format!("{}{a2} {}\n", lab.known_host(1), other_key.join(" "));
    let f = fleet_file(
        &lab,
        dir.path(),
        &[("db", &a1, DB), ("web", &a2, WEB_AND_WORKER)],
        &wrong,
    );
    let r = fleet(&lab, "check", &f, false);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("HOST KEY CHANGED"), "{}", r.stdout);
    assert!(
        r.stderr.contains(&format!(
            "web: node `web` ({a2}:22) answered with a different host key than the fleet's known hosts file records"
        )),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("someone may be in the middle"),
        "{}",
        r.stderr
    );

    // A node whose key is not recorded at all: refused, and the key is not added.
    let only_first = lab.known_host(1);
    let f = fleet_file(
        &lab,
        dir.path(),
        &[("db", &a1, DB), ("web", &a2, WEB_AND_WORKER)],
        &only_first,
    );
    let r = fleet(&lab, "check", &f, false);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("host key unknown"), "{}", r.stdout);
    assert!(
        r.stderr
            .contains("has no host key in the fleet's known hosts file"),
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("known_hosts")).unwrap(),
        only_first,
        "ssh must not add the key it was shown"
    );
    assert!(!dir.path().join("instance").exists(), "no node was changed");
}

#[test]
fn two_nodes_with_one_address_are_refused_before_any_ssh() {
    let Setup {
        dir,
        lab,
        a: [a1, a2, _],
        hosts,
    } = lab();
    let f = fleet_file(
        &lab,
        dir.path(),
        &[("db", &a1, DB), ("web", &a2, WEB), ("worker", &a2, WORKER)],
        &hosts,
    );
    let r = fleet(&lab, "check", &f, false);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "nodes `web` and `worker` have the same address `{a2}`"
        )),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("fleet.toml:"), "{}", r.stderr);
    assert!(r.stdout.is_empty(), "no node was contacted: {}", r.stdout);
}

/// `curl` from the admin's namespace.
fn curl(lab: &Lab, url: &str) -> (String, String) {
    let out = lab.exec_in(
        &lab.admin,
        &["curl", "-s", "-m", "10", "-w", "\n%{http_code}", url],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (code.to_owned(), body.to_owned())
}

#[test]
#[allow(clippy::too_many_lines)] // one fleet's life: up, status, secrets, two reconfigures
fn fleet_up_brings_the_app_up_node_by_node_and_reconfigure_reaches_only_changed_nodes() {
    let dir = prefix_dir("fleet");
    let mut lab = Lab::new(2, dir.path());
    lab.start_sshd(1);
    lab.start_sshd(2);
    let (a1, a2) = (lab.nodes[0].address.clone(), lab.nodes[1].address.clone());
    let (p1, p2) = (
        lab.nodes[0].dir.join("instance"),
        lab.nodes[1].dir.join("instance"),
    );
    let _nodes = Instances(vec![p1.clone(), p2.clone()]);
    std::fs::write(
        dir.path().join("site.toml"),
        format!("users = \"shared\"\nexternal_url = \"http://{a2}:18080/\"\n"),
    )
    .unwrap();
    let fleet_text = |web_settings: &str| {
        format!(
            "[fleet]\nname = \"lab\"\nidentity = \"{}\"\nknown_hosts = \"known_hosts\"\nsite = \"site.toml\"\n\
             berth = \"{}\"\nconnect_timeout = \"2s\"\n\n\
             [nodes.db]\naddress = \"{a1}\"\nroles = [\"database\", \"cache\"]\nprefix = \"{}\"\n\n\
             [nodes.web]\naddress = \"{a2}\"\nroles = [\"web\"]\nprefix = \"{}\"\n{web_settings}",
            lab.identity().display(),
            berth_bin().display(),
            p1.display(),
            p2.display()
        )
    };
    std::fs::write(
        dir.path().join("known_hosts"),
        format!("{}{}", lab.known_host(1), lab.known_host(2)),
    )
    .unwrap();
    let fleet_file = dir.path().join("fleet.toml");
    std::fs::write(&fleet_file, fleet_text("")).unwrap();
    let ministack = root()
        .join("tests/fixtures/ministack")
        .display()
        .to_string();
    let run = |command: &str, json: bool| {
        let f = fleet_file.display().to_string();
        let mut args = vec![
            "--manifest",
            ministack.as_str(),
            "fleet",
            command,
            "--fleet",
            f.as_str(),
        ];
        if json {
            args.push("--json");
        }
        lab.berth(&args)
    };

    let logs = |dir: &Path| -> String {
        let mut out = String::new();
        for e in std::fs::read_dir(dir.join("fleet-logs"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = write!(
                out,
                "\n--- {}:\n{}",
                e.path().display(),
                std::fs::read_to_string(e.path()).unwrap_or_default()
            );
        }
        out
    };
    let r = run("up", true);
    assert_eq!(r.code, 0, "{}\n{}{}", r.stdout, r.stderr, logs(dir.path()));
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    // The database node first, then the web node that needs it.
    let order: Vec<(&str, u64)> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["node"].as_str().unwrap(), n["wave"].as_u64().unwrap()))
        .collect();
    assert_eq!(order, [("db", 1), ("web", 2)], "{}", r.stdout);

    // The app on the web node answers from the admin's machine, through nginx, and
    // reaches PostgreSQL on the database node.
    let (code, body) = curl(&lab, &format!("http://{a2}:18080/health"));
    assert_eq!((code.as_str(), body.as_str()), ("200", "{\"ok\": true}"));

    // Each node runs its roles' services only.
    let r = run("status", true);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["healthy"], true, "{}", r.stdout);
    let services = |i: usize| -> Vec<String> {
        v["nodes"][i]["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(services(0), ["postgresql", "redis"]);
    assert_eq!(services(1), ["app", "nginx"]);
    let site = std::fs::read_to_string(p2.join("site.toml")).unwrap();
    assert!(site.contains("roles = [\"web\"]"), "{site}");
    assert!(
        site.contains(&format!("[fleet.nodes.db]\naddress = \"{a1}\"")),
        "{site}"
    );

    // One set of secrets: the fleet's, on both nodes, never readable by others.
    let fleet_secret = std::fs::read_to_string(dir.path().join("secrets/db_password")).unwrap();
    for p in [&p1, &p2] {
        assert_eq!(
            std::fs::read_to_string(p.join("secrets/db_password")).unwrap(),
            fleet_secret
        );
    }
    let mode = std::fs::metadata(dir.path().join("secrets/db_password"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(!r.stdout.contains(&fleet_secret) && !r.stderr.contains(&fleet_secret));

    // Nothing changed: no node is touched.
    let r = run("reconfigure", false);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("0 node(s) brought up") && r.stdout.contains("2 unchanged"),
        "{}",
        r.stdout
    );

    // A setting of the web node only: only the web node is reconfigured.
    std::fs::write(
        &fleet_file,
        fleet_text("[nodes.web.settings.app]\ngreeting = \"hello fleet\"\n"),
    )
    .unwrap();
    let r = run("reconfigure", true);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let results: Vec<(&str, &str)> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["node"].as_str().unwrap(), n["result"].as_str().unwrap()))
        .collect();
    assert_eq!(
        results,
        [("db", "unchanged"), ("web", "up")],
        "{}",
        r.stdout
    );
    let (code, body) = curl(&lab, &format!("http://{a2}:18080/"));
    assert_eq!(code, "200");
    assert!(body.contains("\"greeting\": \"hello fleet\""), "{body}");
}

#[test]
#[allow(clippy::too_many_lines)] // three machines, one cluster, asked from outside
fn the_consensus_role_runs_a_three_member_etcd_cluster() {
    let dir = prefix_dir("fleet");
    let mut lab = Lab::new(3, dir.path());
    for i in 1..=3 {
        lab.start_sshd(i);
    }
    let addr: Vec<String> = lab.nodes.iter().map(|n| n.address.clone()).collect();
    let prefixes: Vec<PathBuf> = lab.nodes.iter().map(|n| n.dir.join("instance")).collect();
    let _nodes = Instances(prefixes.clone());
    std::fs::write(
        dir.path().join("site.toml"),
        format!(
            "users = \"shared\"\nexternal_url = \"http://{}:18080/\"\n",
            addr[0]
        ),
    )
    .unwrap();
    let roles = [
        "\"database\", \"consensus\", \"cache\", \"web\"",
        "\"database\", \"consensus\"",
        "\"database\", \"consensus\"",
    ];
    let mut text = format!(
        "[fleet]\nname = \"lab\"\nidentity = \"{}\"\nknown_hosts = \"known_hosts\"\nsite = \"site.toml\"\n\
         berth = \"{}\"\nconnect_timeout = \"2s\"\n",
        lab.identity().display(),
        berth_bin().display()
    );
    for i in 0..3 {
        let _ = write!(
            text,
            "\n[nodes.db-{}]\naddress = \"{}\"\nroles = [{}]\nprefix = \"{}\"\n",
            i + 1,
            addr[i],
            roles[i],
            prefixes[i].display()
        );
    }
    let fleet_file = dir.path().join("fleet.toml");
    std::fs::write(&fleet_file, text).unwrap();
    std::fs::write(
        dir.path().join("known_hosts"),
        (1..=3).map(|i| lab.known_host(i)).collect::<String>(),
    )
    .unwrap();
    let ministack = root()
        .join("tests/fixtures/ministack")
        .display()
        .to_string();
    let r = lab.berth(&[
        "--manifest",
        &ministack,
        "fleet",
        "up",
        "--fleet",
        &fleet_file.display().to_string(),
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);

    // One cluster of three, every member healthy, asked from the admin's machine.
    let endpoints: Vec<String> = addr.iter().map(|a| format!("http://{a}:2379")).collect();
    let etcdctl = |args: &[&str]| {
        let endpoints = endpoints.join(",");
        let mut argv = vec![
            "env",
            "ETCDCTL_API=3",
            "etcdctl",
            "--endpoints",
            endpoints.as_str(),
        ];
        argv.extend(args);
        let out = lab.exec_in(&lab.admin, &argv);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let health = etcdctl(&["endpoint", "health"]);
    assert_eq!(health.matches("is healthy").count(), 3, "{health}");
    let members = etcdctl(&["member", "list"]);
    for i in 1..=3 {
        assert!(members.contains(&format!(", db-{i}, http://")), "{members}");
    }
    // It runs under each node's supervisor, as its own user, with its data private.
    let r = lab.berth(&[
        "--prefix",
        &prefixes[1].display().to_string(),
        "status",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let names: Vec<&str> = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["berth-etcd", "postgresql"]);
    let data = prefixes[1].join("data/berth-etcd");
    let meta = std::fs::metadata(&data).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    assert_eq!(
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(
            std::os::unix::fs::MetadataExt::uid(&meta)
        ))
        .unwrap()
        .unwrap()
        .name,
        "ministack-etcd"
    );
}

/// `fleet up --bundle`: the vendor's bundle is checked against the key before any node
/// is touched (another vendor's key: refused, nothing anywhere); then the web node,
/// which runs the app's own code, is sent the bundle over SSH and installs the
/// interpreter and app the bundle carries, building nothing, and the database node
/// gets the bundle's manifest alone. The received bundle is gone afterwards. Then
/// `fleet upgrade --bundle` takes both nodes to the next version the same way.
#[test]
#[allow(clippy::too_many_lines)] // one fleet from a bundle, then to the next from its own
fn fleet_up_from_a_bundle_builds_nothing_on_the_nodes() {
    let dir = prefix_dir("fleet-bundle");
    let lab = Lab::with_sshds(2, dir.path());
    let prefixes = lab.prefixes();
    let _nodes = Instances(prefixes.clone());
    let web = lab.nodes[1].address.clone();
    std::fs::write(
        dir.path().join("site.toml"),
        format!("users = \"shared\"\nexternal_url = \"http://{web}:18080/\"\n"),
    )
    .unwrap();
    let fleet_file = lab.fleet_file(
        dir.path(),
        "bundle",
        &[("db", "\"database\", \"cache\""), ("web", "\"web\"")],
    );
    let vendor = dir.path().join("vendor");
    std::fs::create_dir(&vendor).unwrap();
    let (bundle, public) = berth_tests::release_bundle_of(
        &vendor,
        &root().join("tests/fixtures/ministack"),
        &["--strip-debug"],
        &[],
    );
    let other = dir.path().join("other.key");
    lab.berth(&["release", "key", "--out", other.to_str().unwrap()]);
    let up = |key: &str| {
        lab.berth(&[
            "fleet",
            "up",
            "--fleet",
            fleet_file.to_str().unwrap(),
            "--bundle",
            bundle.to_str().unwrap(),
            "--public-key",
            key,
        ])
    };
    let r = up(&format!("{}.pub", other.display()));
    assert_ne!(r.code, 0);
    assert!(r.stderr.to_lowercase().contains("sign"), "{}", r.stderr);
    assert!(prefixes.iter().all(|p| !p.exists()), "a node was touched");

    let r = up(&public);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let (code, body) = curl(&lab, &format!("http://{web}:18080/health"));
    assert_eq!((code.as_str(), body.as_str()), ("200", "{\"ok\": true}"));
    // The app runs the bundle's relocated interpreter, not a virtualenv built here.
    let app = prefixes[1].join("releases/1.0.0/app");
    assert!(app.join("bin/python3").exists(), "{}", app.display());
    assert!(
        !app.join("pyvenv.cfg").exists(),
        "a virtualenv was built on the node"
    );
    assert!(!prefixes[0].join("releases/1.0.0/app").exists());
    // Received, installed, removed; the database node never got it.
    let received = prefixes[1].join("tmp/fleet");
    assert_eq!(std::fs::read_dir(&received).unwrap().count(), 0);
    assert!(!prefixes[0].join("tmp/fleet").exists());
    let stored = std::fs::read_to_string(prefixes[0].join("manifest/berth.toml")).unwrap();
    assert!(stored.contains("name = \"ministack\""));

    // Upgraded from the next version's bundle: another vendor's refused before a node
    // changes; the vendor's sent to the web node alone, unpacked there, installed.
    let next = berth_tests::ministack_at(dir.path(), "1.1.0", |t| t);
    let next_vendor = dir.path().join("vendor-1.1.0");
    std::fs::create_dir(&next_vendor).unwrap();
    let (next_bundle, next_public) =
        berth_tests::release_bundle_of(&next_vendor, &next, &["--strip-debug"], &[]);
    let upgrade = |key: &str| {
        lab.berth(&[
            "--manifest",
            root().join("tests/fixtures/ministack").to_str().unwrap(),
            "fleet",
            "upgrade",
            "--fleet",
            fleet_file.to_str().unwrap(),
            "--bundle",
            next_bundle.to_str().unwrap(),
            "--public-key",
            key,
        ])
    };
    let before: Vec<_> = prefixes
        .iter()
        .map(|p| berth_tests::snapshot_tree(&p.join("manifest")))
        .collect();
    let r = upgrade(&public);
    assert_ne!(r.code, 0, "a bundle of another key was taken");
    assert!(r.stderr.to_lowercase().contains("sign"), "{}", r.stderr);
    let after: Vec<_> = prefixes
        .iter()
        .map(|p| berth_tests::snapshot_tree(&p.join("manifest")))
        .collect();
    assert_eq!(before, after, "a node changed");
    let r = upgrade(&next_public);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let app = prefixes[1].join("releases/1.1.0/app");
    assert!(app.join("bin/python3").exists(), "{}", app.display());
    assert!(
        !app.join("pyvenv.cfg").exists(),
        "a virtualenv was built on the node"
    );
    assert!(!prefixes[0].join("releases/1.1.0/app").exists());
    assert_eq!(std::fs::read_dir(&received).unwrap().count(), 0);
    assert!(!prefixes[1].join("tmp/release-1.1.0").exists());
    for p in &prefixes {
        let stored = std::fs::read_to_string(p.join("manifest/berth.toml")).unwrap();
        assert!(stored.contains("version = \"1.1.0\""), "{}", p.display());
    }
    let (code, _) = curl(&lab, &format!("http://{web}:18080/health"));
    assert_eq!(code, "200");
}
