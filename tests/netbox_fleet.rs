//! NetBox, the reference app, on a highly available fleet of seven machines (network
//! namespaces, each with its own sshd): three database nodes (PostgreSQL under Patroni
//! with etcd, PgBouncer, Redis with Sentinel), a load balancer (HAProxy), two web nodes
//! and a worker node, brought up by `berth fleet up` from NetBox 4.7.0's signed
//! release bundle (built once here; nothing is built on the nodes).
//!
//! NetBox answers through HAProxy and from each web node, `fleet status` is all
//! green, an object made through one web node is seen through the other, and the RQ
//! worker on its own node runs NetBox's jobs. Then `berth fleet upgrade` takes the
//! fleet to 4.7.3 from its bundle (an online hop: each web node drained from HAProxy
//! while it switches) under a client asking through HAProxy every 50 ms: no request
//! fails, and the objects made before are still there. Then the Redis master's machine dies
//! (every process killed): Sentinel promotes a replica, and the worker carries on (a
//! data source sync it runs afterwards completes). A machine cut off the network
//! instead is not survived by NetBox 4.7's worker: its connection to the master has
//! no socket timeout (`SOCKET_TIMEOUT: None` in NetBox's settings), so it waits on
//! the dead link.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_tests::netns::{Client, Instances, Lab};
use berth_tests::{netbox_manifest_at, prefix_dir, root, run_as_service_in, shared_release_bundle};

/// What NetBox 4.7.0's manifest says of the licences of the packages only it has.
const OLD_LICENCES: &str = r#"
[licences.components.python-dateutil]
concluded = "Apache-2.0 AND BSD-3-Clause"
reason = "LICENSE: Apache 2.0 for contributions since 2017-12-01, the BSD 3-clause text over all of it"

[licences.components.text-unidecode]
accept = true
reason = "LICENSE.txt: GPL-2.0-or-later or the Artistic License, at the user's choice; shipped unmodified under the Artistic License"
"#;

/// `curl` from the admin's namespace: status code and body.
fn curl(
    lab: &Lab,
    method: &str,
    url: &str,
    headers: &[&str],
    body: Option<&str>,
) -> (String, String) {
    let mut argv = vec![
        "curl",
        "-s",
        "-m",
        "20",
        "-X",
        method,
        "-w",
        "\n%{http_code}",
    ];
    for h in headers {
        argv.extend(["-H", h]);
    }
    if let Some(b) = body {
        argv.extend(["--data", b]);
    }
    argv.push(url);
    let out = lab.exec_in(&lab.admin, &argv);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (code.to_owned(), body.to_owned())
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Asks `f` every half second until it gives a value, at most `limit`.
fn wait<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
#[allow(clippy::too_many_lines, clippy::print_stderr)] // one fleet's story; its times said
fn netbox_runs_on_seven_nodes_upgrades_without_a_failed_request_and_outlives_the_redis_master() {
    let dir = prefix_dir("netbox-fleet");
    let lab = Lab::with_sshds(7, dir.path());
    let prefixes = lab.prefixes();
    let _nodes = Instances(prefixes.clone());
    let addr: Vec<String> = lab.nodes.iter().map(|n| n.address.clone()).collect();
    let lb = &addr[3];
    let fleet_file = lab.ha_fleet(
        dir.path(),
        "netbox",
        &[
            ("web-1", "\"web\""),
            ("web-2", "\"web\""),
            ("worker", "\"worker\""),
        ],
        "[web]\nworkers = 2\n",
    );
    let started = Instant::now();
    // 4.7.0's bundle, and 4.7.3's: the same as `tests/netbox.rs`'s images are built
    // from; each built once.
    let old = netbox_manifest_at(dir.path(), "4.7.0");
    // 4.7.0 pulls in two packages 4.7.3 does not, each under a licence its metadata
    // does not name: the vendor's conclusions, from the licence text each ships.
    let mut text = std::fs::read_to_string(old.join("berth.toml")).unwrap();
    text.push_str(OLD_LICENCES);
    std::fs::write(old.join("berth.toml"), text).unwrap();
    let (old_bundle, old_public) = shared_release_bundle(&old, &["--strip-debug"], &["--no-seed"]);
    let (bundle, public) = shared_release_bundle(
        &root().join("examples/netbox"),
        &["--strip-debug"],
        &["--no-seed"],
    );
    let built = started.elapsed();
    let r = lab.berth(&[
        "fleet",
        "up",
        "--fleet",
        fleet_file.to_str().unwrap(),
        "--bundle",
        old_bundle.to_str().unwrap(),
        "--public-key",
        &old_public,
        "--json",
    ]);
    let logs = || {
        let mut logs = String::new();
        for e in std::fs::read_dir(dir.path().join("fleet-logs"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            let _ = write!(logs, "\n--- {}:\n{text}", e.path().display());
        }
        logs
    };
    assert_eq!(r.code, 0, "{}\n{}{}", r.stdout, r.stderr, logs());
    let up: serde_json::Value = json(&r.stdout);
    eprintln!(
        "bundle ready (built or shared) in {:.0} s; fleet up in {:.0} s ({:.0} s of node time)",
        built.as_secs_f64(),
        up["seconds"].as_f64().unwrap(),
        up["node_seconds"].as_f64().unwrap()
    );

    // Through HAProxy, and from each web node itself.
    for host in [lb, &addr[4], &addr[5]] {
        let (code, body) = curl(
            &lab,
            "GET",
            &format!("http://{host}:18080/login/"),
            &[],
            None,
        );
        assert_eq!(code, "200", "{host}: {body}");
        assert!(body.contains("NetBox"), "{host}: not NetBox's login page");
    }
    let (code, _) = curl(
        &lab,
        "GET",
        &format!("http://{lb}:18080/static/netbox.ico"),
        &[],
        None,
    );
    assert_eq!(code, "200", "static files through HAProxy");
    let fleet = |command: &str| {
        lab.berth(&[
            "fleet",
            command,
            "--fleet",
            fleet_file.to_str().unwrap(),
            "--json",
        ])
    };
    let r = fleet("status");
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(json(&r.stdout)["healthy"], true);

    // An API token for the admin, made on the worker's node with NetBox's own shell.
    let netbox = prefixes[6].join("releases/4.7.0/netbox/bin/netbox");
    let out = run_as_service_in(
        Some(&lab.nodes[6].ns),
        &prefixes[6],
        "worker",
        &[
            netbox.to_str().unwrap(),
            "nbshell",
            "--command",
            berth_tests::NETBOX_CREATE_TOKEN,
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let token = stdout
        .lines()
        .find_map(|l| l.strip_prefix("TOKEN="))
        .unwrap_or_else(|| {
            panic!(
                "no token: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_owned();
    let auth = format!("Authorization: {token}");
    let headers = [
        auth.as_str(),
        "Content-Type: application/json",
        "Accept: application/json",
    ];
    let api = |method: &str, host: &str, path: &str, body: Option<&str>| {
        curl(
            &lab,
            method,
            &format!("http://{host}:18080{path}"),
            &headers,
            body,
        )
    };

    // Made through web-1, seen through web-2: one database behind both.
    let (code, body) = api(
        "POST",
        &addr[4],
        "/api/dcim/sites/",
        Some(r#"{"name": "Fleet Site", "slug": "fleet-site", "status": "active"}"#),
    );
    assert_eq!(code, "201", "{body}");
    let (code, body) = api("GET", &addr[5], "/api/dcim/sites/?slug=fleet-site", None);
    assert_eq!(code, "200", "{body}");
    assert_eq!(json(&body)["count"], 1, "{body}");

    // The worker runs NetBox's jobs: a data source of a local directory, synced.
    let source = tempfile::Builder::new()
        .prefix("berth-nb-source-")
        .tempdir()
        .unwrap();
    std::fs::write(source.path().join("hello.txt"), "from the fleet test\n").unwrap();
    std::fs::set_permissions(
        source.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let (code, body) = api(
        "POST",
        lb,
        "/api/core/data-sources/",
        Some(&format!(
            r#"{{"name": "fleet", "type": "local", "source_url": "file://{}"}}"#,
            source.path().display()
        )),
    );
    assert_eq!(code, "201", "{body}");
    let id = json(&body)["id"].as_u64().unwrap();
    let synced = |since: &str| {
        // Right after a failover a request may meet a connection to the old master
        // and fail once: the next one asks Sentinel again.
        wait(Duration::from_mins(1), "the sync is queued", || {
            let (code, _) = api(
                "POST",
                lb,
                &format!("/api/core/data-sources/{id}/sync/"),
                None,
            );
            (code == "200" || code == "202").then_some(())
        });
        wait(
            Duration::from_mins(1),
            "the worker syncs the data source",
            || {
                let (_, body) = api("GET", lb, &format!("/api/core/data-sources/{id}/"), None);
                let v: serde_json::Value = serde_json::from_str(&body).ok()?;
                let done = v["status"]["value"] == "completed"
                    && v["last_synced"].as_str().is_some_and(|t| t > since);
                done.then(|| v["last_synced"].as_str().unwrap_or_default().to_owned())
            },
        )
    };
    let first = synced("");

    // To 4.7.3, online, under a client asking through HAProxy every 50 ms.
    let client = Client::start(
        Some(&lab.admin),
        &format!("http://{lb}:18080/api/status/"),
        "netbox-version",
        &[&auth, "Accept: application/json"],
        dir.path(),
    );
    std::thread::sleep(Duration::from_secs(2));
    let r = lab.berth(&[
        "--manifest",
        old.to_str().unwrap(),
        "fleet",
        "upgrade",
        "--fleet",
        fleet_file.to_str().unwrap(),
        "--bundle",
        bundle.to_str().unwrap(),
        "--public-key",
        &public,
        "--json",
    ]);
    std::thread::sleep(Duration::from_secs(2));
    let answers = client.finish();
    assert_eq!(r.code, 0, "{}\n{}{}", r.stdout, r.stderr, logs());
    let report = json(&r.stdout);
    assert_eq!(
        (report["online"].as_bool(), report["ok"].as_bool()),
        (Some(true), Some(true))
    );
    let failed: Vec<_> = answers.iter().filter(|(c, _)| c != "200").collect();
    eprintln!(
        "fleet upgrade 4.7.0 → 4.7.3 in {:.0} s: {} requests through HAProxy, {} failed",
        report["seconds"].as_f64().unwrap(),
        answers.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "{failed:?}");
    assert!(
        answers.len() > 100,
        "the client asked too little: {}",
        answers.len()
    );
    assert_eq!(answers.first().map(|a| a.1.as_str()), Some("4.7.0"));
    assert_eq!(answers.last().map(|a| a.1.as_str()), Some("4.7.3"));
    assert_eq!(json(&fleet("status").stdout)["healthy"], true);
    // What was made before is there; the migrations ran once, on one node.
    let (code, body) = api("GET", lb, "/api/dcim/sites/?slug=fleet-site", None);
    assert_eq!(
        (code.as_str(), json(&body)["count"].as_u64()),
        ("200", Some(1)),
        "{body}"
    );
    let migrated: Vec<&PathBuf> = prefixes[4..]
        .iter()
        .filter(|p| {
            std::fs::read_to_string(p.join("log/hooks/migrate.log"))
                .is_ok_and(|t| t.contains("0251_fix_ltree_cascade_triggers"))
        })
        .collect();
    assert_eq!(migrated.len(), 1, "4.7.3's migrations ran on {migrated:?}");

    // The Redis master's machine dies: Sentinel promotes a replica.
    let sentinel_master = |i: usize| -> Option<String> {
        let out = lab.exec_in(
            &lab.admin,
            &[
                "redis-cli",
                "-h",
                &addr[i],
                "-p",
                "26379",
                "--raw",
                "sentinel",
                "get-master-addr-by-name",
                "netbox",
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .next()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
    };
    let master = sentinel_master(0).expect("Sentinel names a master");
    let m = addr.iter().position(|a| *a == master).unwrap();
    let cut = Instant::now();
    assert!(lab.crash(m) > 0);
    let others: Vec<usize> = (0..3).filter(|i| *i != m).collect();
    let promoted = wait(
        Duration::from_secs(30),
        "Sentinel promotes a replica",
        || {
            let views: Vec<Option<String>> = others.iter().map(|i| sentinel_master(*i)).collect();
            let new = views[0].clone()?;
            (new != master && views.iter().all(|v| v.as_deref() == Some(new.as_str())))
                .then_some(new)
        },
    );
    eprintln!(
        "Redis master {master} killed; {promoted} promoted after {:.1} s",
        cut.elapsed().as_secs_f64()
    );
    // The app answers again (the dead node may also have led PostgreSQL), and the
    // worker, told the new master by Sentinel, runs the next sync.
    wait(
        Duration::from_mins(1),
        "NetBox answers after the crash",
        || {
            let (code, _) = api("GET", lb, "/api/dcim/sites/?slug=fleet-site", None);
            (code == "200").then_some(())
        },
    );
    let second = synced(&first);
    eprintln!(
        "the worker synced again {:.1} s after the crash",
        cut.elapsed().as_secs_f64()
    );
    assert!(second > first);
}
