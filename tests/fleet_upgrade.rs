//! `berth fleet upgrade` across a highly available fleet of the test fixture: three
//! database nodes (PostgreSQL under Patroni, etcd, PgBouncer, Redis with Sentinel), a
//! load balancer (HAProxy) and two web nodes, each a network namespace with its own
//! sshd, while a client asks the app through the load balancer every 50 ms.
//!
//! - An online hop (1.0.0 → 1.1.0, `online_from = "1.0"`): a backup first, the new
//!   release built on both web nodes, then one node at a time, each web node taken out
//!   of HAProxy before it switches and put back once it answers. Not one request
//!   fails; the client sees 1.0.0, then both, then only 1.1.0. The release's migration
//!   runs once, on the first web node, before any node serves 1.1.0; its post-deploy
//!   hook only once both web nodes run it.
//! - The same again changes nothing; a downgrade is refused before any node changes.
//! - An offline hop (1.1.0 → 1.2.0) whose release hook fails on the second web node:
//!   the maintenance page answers (503) while the first switches; the run stops half
//!   way and says which node runs what. Once the cause is gone, the same command goes
//!   on from there and every node runs 1.2.0.
//! - An online hop (1.2.0 → 1.3.0) failing on the second web node: every node goes
//!   back to 1.2.0, each web node out of HAProxy while it does; not one request fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_tests::netns::{Client, Instances, Lab};
use berth_tests::{ministack_at, prefix_dir};

/// The fixture at `version`, with a release hook before the app (a migration) and
/// one after it (post-deploy), each once per fleet on the first web node, recording
/// the version and the time; from 1.2.0 on, a release also runs, on every web node, a
/// check that fails where `refuse-<version>` is in the app's data directory.
fn manifest(dir: &Path, version: &str, extra: &str) -> PathBuf {
    let mut hooks = String::from(
        r#"
[hooks.migrate]
component = "app"
fleet = "once"
description = "Migrations"
command = ["/bin/sh", "-c", "echo \"$VERSION pre $(date +%s.%N)\" >> \"$DATA/migrations\""]
environment = { VERSION = "{{ app.version }}", DATA = "{{ paths.data }}/app" }
when = "release"
before = ["app"]

[hooks.post_migrate]
component = "app"
fleet = "once"
description = "Post-deploy migrations"
command = ["/bin/sh", "-c", "echo \"$VERSION post $(date +%s.%N)\" >> \"$DATA/migrations\""]
environment = { VERSION = "{{ app.version }}", DATA = "{{ paths.data }}/app" }
when = "release"
after = ["app"]
"#,
    );
    if version != "1.0.0" && version != "1.1.0" {
        hooks.push_str(
            r#"
[hooks.check]
component = "app"
description = "Refuses where refuse-<version> exists"
command = ["/bin/sh", "-c", "test ! -e \"$DATA/refuse-$VERSION\""]
environment = { VERSION = "{{ app.version }}", DATA = "{{ paths.data }}/app" }
when = "release"
before = ["app"]
"#,
        );
    }
    ministack_at(dir, version, |text| format!("{text}\n{hooks}\n{extra}"))
}

const NODES: [&str; 6] = ["db-1", "db-2", "db-3", "lb", "web-1", "web-2"];

fn migrations(prefix: &Path) -> Vec<(String, String, f64)> {
    std::fs::read_to_string(prefix.join("data/app/migrations"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let w: Vec<&str> = l.split(' ').collect();
            (w[0].to_owned(), w[1].to_owned(), w[2].parse().unwrap())
        })
        .collect()
}

/// The version each node's stored manifest says.
fn versions(prefixes: &[PathBuf]) -> BTreeMap<&'static str, String> {
    NODES
        .iter()
        .zip(prefixes)
        .map(|(n, p)| {
            let text = std::fs::read_to_string(p.join("manifest/berth.toml")).unwrap();
            let v = text
                .lines()
                .find_map(|l| l.strip_prefix("version = \""))
                .unwrap()
                .trim_end_matches('"')
                .to_owned();
            (*n, v)
        })
        .collect()
}

#[test]
#[allow(clippy::too_many_lines, clippy::print_stderr)] // one fleet through four upgrades in turn; the counts said
fn a_fleet_upgrades_node_by_node_without_a_failed_request() {
    let dir = prefix_dir("fleet-upgrade");
    let lab = Lab::with_sshds(6, dir.path());
    let prefixes = lab.prefixes();
    let _nodes = Instances(prefixes.clone());
    let lb = lab.nodes[3].address.clone();
    let fleet_file = lab.ha_fleet(
        dir.path(),
        "up",
        &[("web-1", "\"web\""), ("web-2", "\"web\"")],
        "",
    );
    let scratch = dir.path().join("manifests");
    let v1 = manifest(&scratch, "1.0.0", "");
    let v11 = manifest(&scratch, "1.1.0", "[upgrade]\nonline_from = \"1.0\"\n");
    let v12 = manifest(&scratch, "1.2.0", "");
    let fleet = |manifest: &Path, args: &[&str]| {
        let mut all = vec![
            "--manifest".to_owned(),
            manifest.display().to_string(),
            "fleet".to_owned(),
        ];
        all.extend(args.iter().map(|s| (*s).to_owned()));
        all.extend(["--fleet".to_owned(), fleet_file.display().to_string()]);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        lab.berth(&refs)
    };
    let r = fleet(&v1, &["up"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let url = format!("http://{lb}:18080/");

    // Online: not one failed request.
    let client = Client::start(Some(&lab.admin), &url, "version", &[], dir.path());
    std::thread::sleep(std::time::Duration::from_secs(2));
    let v11_dir = v11.display().to_string();
    let r = fleet(&v1, &["upgrade", "--to", &v11_dir, "--json"]);
    let answers = client.finish();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(report["online"], true, "{report:#}");
    assert_eq!(report["backup"]["node"], "db-1", "{report:#}");
    let steps: Vec<String> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["action"].as_str().unwrap(),
                s["node"].as_str().unwrap()
            )
        })
        .collect();
    let tail: Vec<&str> = steps[steps.len() - 8..]
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        [
            "drain lb",
            "switch web-1",
            "restore lb",
            "drain lb",
            "switch web-2",
            "restore lb",
            "post-deploy web-1",
            "post-deploy web-2",
        ],
        "{steps:#?}"
    );
    let failed: Vec<&(String, String)> = answers.iter().filter(|(c, _)| c != "200").collect();
    assert!(
        failed.is_empty(),
        "failed requests: {failed:?} of {}",
        answers.len()
    );
    assert!(answers.len() > 40, "{answers:?}");
    eprintln!(
        "online hop: {} requests, 0 failed, {:.1} s",
        answers.len(),
        report["seconds"].as_f64().unwrap()
    );
    let first_new = answers.iter().position(|(_, v)| v == "1.1.0").unwrap();
    let last_old = answers.iter().rposition(|(_, v)| v == "1.0.0").unwrap();
    assert_eq!(answers[0].1, "1.0.0");
    assert_eq!(answers.last().unwrap().1, "1.1.0");
    assert!(
        answers[first_new..=last_old.max(first_new)]
            .iter()
            .all(|(_, v)| v == "1.0.0" || v == "1.1.0")
    );
    // The migration once, on web-1, before web-1 served 1.1.0; post-deploy once, last.
    let m = migrations(&prefixes[4]);
    let kinds: Vec<String> = m.iter().map(|(v, k, _)| format!("{v} {k}")).collect();
    assert_eq!(
        kinds,
        ["1.0.0 pre", "1.0.0 post", "1.1.0 pre", "1.1.0 post"],
        "{m:?}"
    );
    assert!(migrations(&prefixes[5]).is_empty());
    assert!(
        versions(&prefixes).values().all(|v| v == "1.1.0"),
        "{:?}",
        versions(&prefixes)
    );
    let r = fleet(&v11, &["status"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);

    // Again: nothing to do. Backwards: refused, nothing changed.
    let r = fleet(&v11, &["upgrade", "--to", &v11_dir]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("runs ministack 1.1.0 already"),
        "{}",
        r.stdout
    );
    let before: Vec<_> = prefixes
        .iter()
        .map(|p| std::fs::read(p.join("manifest/berth.toml")).unwrap())
        .collect();
    let r = fleet(&v11, &["upgrade", "--to", &v1.display().to_string()]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("1.0.0"), "{}", r.stderr);
    let after: Vec<_> = prefixes
        .iter()
        .map(|p| std::fs::read(p.join("manifest/berth.toml")).unwrap())
        .collect();
    assert_eq!(before, after);

    // Offline, failing on web-2: stopped half way, then finished by the same command.
    let refuse = prefixes[5].join("data/app/refuse-1.2.0");
    std::fs::write(&refuse, "").unwrap();
    let client = Client::start(Some(&lab.admin), &url, "version", &[], dir.path());
    std::thread::sleep(std::time::Duration::from_secs(1));
    let v12_dir = v12.display().to_string();
    let r = fleet(&v11, &["upgrade", "--to", &v12_dir]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("stopped half way") && r.stderr.contains("web-2"),
        "{}",
        r.stderr
    );
    let v = versions(&prefixes);
    assert_eq!(v["web-1"], "1.2.0", "{v:?}");
    assert_eq!(v["web-2"], "1.1.0", "{v:?}");
    std::fs::remove_file(&refuse).unwrap();
    let r = fleet(&v11, &["upgrade", "--to", &v12_dir, "--json"]);
    let answers = client.finish();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(report["online"], false);
    assert!(report["backup"].is_null(), "no second backup on a resume");
    assert!(versions(&prefixes).values().all(|v| v == "1.2.0"));
    // The client saw the maintenance page (503), never a refused connection, and 1.2.0 last.
    assert!(answers.iter().any(|(c, _)| c == "503"), "{answers:?}");
    assert!(
        answers.iter().all(|(c, _)| c == "200" || c == "503"),
        "{answers:?}"
    );
    assert_eq!(answers.last().unwrap().1, "1.2.0");
    eprintln!(
        "offline hop (stopped, then resumed): {} requests, {} answered 503",
        answers.len(),
        answers.iter().filter(|(c, _)| c == "503").count()
    );
    let kinds: Vec<String> = migrations(&prefixes[4])
        .iter()
        .map(|(v, k, _)| format!("{v} {k}"))
        .collect();
    assert_eq!(&kinds[4..], ["1.2.0 pre", "1.2.0 post"], "{kinds:?}");
    let r = fleet(&v12, &["status"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);

    // Online, failing on web-2: the whole fleet back on 1.2.0, no request failed.
    let v13 = manifest(&scratch, "1.3.0", "[upgrade]\nonline_from = \"1.2\"\n");
    let refuse = prefixes[5].join("data/app/refuse-1.3.0");
    std::fs::write(&refuse, "").unwrap();
    let client = Client::start(Some(&lab.admin), &url, "version", &[], dir.path());
    std::thread::sleep(std::time::Duration::from_secs(1));
    let r = fleet(&v12, &["upgrade", "--to", &v13.display().to_string()]);
    let answers = client.finish();
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("failed and was rolled back; every node runs ministack 1.2.0"),
        "{}",
        r.stderr
    );
    assert!(versions(&prefixes).values().all(|v| v == "1.2.0"));
    let failed: Vec<&(String, String)> = answers.iter().filter(|(c, _)| c != "200").collect();
    assert!(
        failed.is_empty(),
        "failed requests: {failed:?} of {}",
        answers.len()
    );
    assert!(
        answers.iter().any(|(_, v)| v == "1.3.0"),
        "web-1 served 1.3.0 for a while"
    );
    eprintln!(
        "online hop rolled back: {} requests, 0 failed",
        answers.len()
    );
    assert_eq!(answers.last().unwrap().1, "1.2.0");
    let r = fleet(&v12, &["status"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
}

/// `fleet node-balancer` talks to HAProxy's admin socket as root, in a directory of
/// the HAProxy user's: a symlink put there in the socket's place (to another socket
/// root can reach) is refused without connecting, and a server name that would add a
/// command to HAProxy's command line is refused before anything is opened.
#[test]
fn the_balancer_socket_is_never_followed_and_names_are_never_commands() {
    use std::os::unix::net::UnixListener;
    let dir = prefix_dir("fleet-balancer");
    let prefix = dir.path().join("instance");
    let haproxy = prefix.join("data/berth-haproxy");
    std::fs::create_dir_all(&haproxy).unwrap();
    let elsewhere = dir.path().join("other.sock");
    let listener = UnixListener::bind(&elsewhere).unwrap();
    listener.set_nonblocking(true).unwrap();
    std::os::unix::fs::symlink(&elsewhere, haproxy.join("admin.sock")).unwrap();
    let berth = berth_tests::Berth::installed(&prefix);
    let r = berth.run(&[
        "fleet",
        "node-balancer",
        "--server",
        "web-1",
        "--state",
        "maint",
    ]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("is not HAProxy's admin socket"),
        "{}",
        r.stderr
    );
    assert!(
        listener.accept().is_err(),
        "berth connected through the symlink"
    );

    // A real socket there, but a name with a `;`: refused before it is reached.
    std::fs::remove_file(haproxy.join("admin.sock")).unwrap();
    let real = UnixListener::bind(haproxy.join("admin.sock")).unwrap();
    real.set_nonblocking(true).unwrap();
    for name in ["web-1;disable frontend web", "web-1\nshutdown", "Web-1", ""] {
        let r = berth.run(&[
            "fleet",
            "node-balancer",
            "--server",
            name,
            "--state",
            "maint",
        ]);
        assert_ne!(r.code, 0, "{name:?}");
        assert!(r.stderr.contains("is not a node name"), "{}", r.stderr);
    }
    assert!(real.accept().is_err(), "berth connected with a bad name");
}
