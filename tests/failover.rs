//! A highly available fleet, failing: three database nodes (PostgreSQL under Patroni,
//! etcd beside it), a load balancer (HAProxy) and a web node, each a network namespace
//! with its own sshd, brought up by `berth fleet up` with the test fixture's manifest.
//!
//! A client writes rows through the load balancer in a loop, one connection per write,
//! and records every write the database acknowledged. The leader's node is then
//! killed (every process in its namespace, SIGKILL: a machine that dies), and later
//! the next leader's network link is cut: each time a new leader must take writes
//! within 30 s, and afterwards every acknowledged row must be there. Then the Redis
//! master's node is killed: Sentinel must promote a replica that takes writes within
//! 30 s, with what the old master had.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_tests::netns::{Instances, Lab};
use berth_tests::{berth_bin, prefix_dir, root};

const PG_PORT: u16 = 15432;

struct Ha {
    // Dropped first: the instances stop while their namespaces and files exist.
    _nodes: Instances,
    lab: Lab,
    dir: tempfile::TempDir,
    addr: Vec<String>,
    prefixes: Vec<PathBuf>,
    fleet_file: PathBuf,
}

/// `curl` from the admin's namespace: status code and body.
fn curl(lab: &Lab, url: &str) -> (String, String) {
    let out = lab.exec_in(
        &lab.admin,
        &["curl", "-s", "-m", "3", "-w", "\n%{http_code}", url],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (code.to_owned(), body.to_owned())
}

impl Ha {
    fn up() -> Ha {
        let dir = prefix_dir("failover");
        let lab = Lab::with_sshds(5, dir.path());
        let addr: Vec<String> = lab.nodes.iter().map(|n| n.address.clone()).collect();
        let prefixes = lab.prefixes();
        let nodes = Instances(prefixes.clone());
        let fleet_file = lab.ha_fleet(dir.path(), "ha", &[("web", "\"web\"")], "");
        let ha = Ha {
            _nodes: nodes,
            lab,
            dir,
            addr,
            prefixes,
            fleet_file,
        };
        let r = ha.fleet("up");
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        ha
    }

    fn fleet(&self, command: &str) -> berth_tests::Run {
        let ministack = root().join("tests/fixtures/ministack");
        self.lab.berth(&[
            "--manifest",
            &ministack.display().to_string(),
            "fleet",
            command,
            "--fleet",
            &self.fleet_file.display().to_string(),
        ])
    }

    /// Patroni's view of the cluster, asked of database node `i` (0-based).
    fn cluster(&self, i: usize) -> Option<serde_json::Value> {
        let (code, body) = curl(&self.lab, &format!("http://{}:8008/cluster", self.addr[i]));
        (code == "200").then(|| serde_json::from_str(&body).ok())?
    }

    /// The leader's index, and how many members stream from it, asked of any node.
    fn leader(&self, skip: Option<usize>) -> Option<(usize, usize)> {
        // Every node that answers must tell the same: a node that was cut off shows
        // the cluster as it last saw it until it catches up.
        let views: Vec<Option<(usize, usize)>> = (0..3)
            .filter(|i| Some(*i) != skip)
            .filter_map(|i| self.cluster(i))
            .map(|c| self.view(&c))
            .collect();
        let first = *views.first()?;
        // The node left out cannot be the leader: until its key expires the others
        // still name it.
        (views.len() >= 2 && views.iter().all(|v| *v == first))
            .then_some(first)
            .flatten()
            .filter(|(l, _)| Some(*l) != skip)
    }

    /// The leader's index and its replicas that stream from it, in one node's view.
    fn view(&self, c: &serde_json::Value) -> Option<(usize, usize)> {
        let members = c["members"].as_array()?;
        let leader = members.iter().find(|m| m["role"] == "leader")?;
        let host = leader["host"].as_str()?;
        // Replicas on the leader's timeline, close behind it; one of them synchronous.
        let streaming = members
            .iter()
            .filter(|m| {
                m["role"] != "leader"
                    && m["state"] == "running"
                    && m["timeline"] == leader["timeline"]
                    && m["lag"].as_u64().is_some_and(|l| l <= 1 << 20)
            })
            .count();
        if !members.iter().any(|m| m["role"] == "sync_standby") {
            return None;
        }
        self.addr
            .iter()
            .position(|a| a == host)
            .map(|l| (l, streaming))
    }

    /// Waits until a leader has `replicas` replicas streaming from it.
    fn healthy(&self, replicas: usize, skip: Option<usize>) -> usize {
        let deadline = Instant::now() + Duration::from_mins(3);
        loop {
            if let Some((l, n)) = self.leader(skip)
                && n >= replicas
            {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no leader with {replicas} streaming replicas: {:?}",
                self.cluster(0)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The end of service `service`'s log on node `i`, for failure messages.
    fn log(&self, i: usize, service: &str) -> String {
        let text = std::fs::read_to_string(self.prefixes[i].join(format!("log/{service}/current")))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// The end of every database node's Patroni and PostgreSQL log.
    fn logs(&self) -> String {
        (0..3)
            .map(|i| format!("--- db-{}:\n{}", i + 1, self.log(i, "postgresql")))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until the app answers through the load balancer.
    fn answers(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (code, body) = curl(&self.lab, &format!("http://{}:18080/health", self.addr[3]));
            if code == "200" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the app does not answer: {code} {body}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Every process of node `i`'s namespace but its sshd, killed at once.
    fn crash(&self, i: usize) -> usize {
        self.lab.crash(i)
    }

    /// Node `i`'s cable, plugged in or out at the switch.
    fn link(&self, i: usize, up: bool) {
        let out = Command::new("ip")
            .args([
                "-n",
                &format!("{}s", self.lab.tag),
                "link",
                "set",
                &format!("p-n{}", i + 1),
                if up { "up" } else { "down" },
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `psql` through the load balancer as the app, from the admin's namespace.
    fn psql(&self, sql: &str) -> std::process::Output {
        psql(&self.lab.admin, &self.pgpass(), &self.addr[3], sql)
    }

    fn pgpass(&self) -> PathBuf {
        let path = self.dir.path().join("pgpass");
        if !path.exists() {
            let pw = std::fs::read_to_string(self.dir.path().join("secrets/db_password")).unwrap();
            std::fs::write(&path, format!("*:*:app:app:{}\n", pw.trim())).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
        }
        path
    }
}

fn psql(ns: &str, pgpass: &Path, host: &str, sql: &str) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", ns, "env"])
        .arg(format!("PGPASSFILE={}", pgpass.display()))
        .args([
            "PGCONNECT_TIMEOUT=2",
            "/usr/lib/postgresql/15/bin/psql",
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            host,
            "-p",
            &PG_PORT.to_string(),
            "-U",
            "app",
            "-d",
            "app",
            "-c",
            sql,
        ])
        .output()
        .unwrap()
}

/// A client writing rows `1, 2, ...` one connection each, recording what the database
/// acknowledged and when.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(i64, Instant, Instant)>>>,
    failed: Arc<Mutex<Vec<Instant>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(ha: &Ha) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let (ns, pgpass, host) = (ha.lab.admin.clone(), ha.pgpass(), ha.addr[3].clone());
        let thread = {
            let (stop, acked, failed) = (stop.clone(), acked.clone(), failed.clone());
            std::thread::spawn(move || {
                let mut n: i64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let began = Instant::now();
                    let out = psql(
                        &ns,
                        &pgpass,
                        &host,
                        &format!("INSERT INTO acked (v) VALUES ({n}) RETURNING v"),
                    );
                    if out.status.success()
                        && String::from_utf8_lossy(&out.stdout).trim() == n.to_string()
                    {
                        acked.lock().unwrap().push((n, began, Instant::now()));
                    } else {
                        failed.lock().unwrap().push(Instant::now());
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            })
        };
        Writer {
            stop,
            acked,
            failed,
            thread: Some(thread),
        }
    }

    fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// The first acknowledged write begun after `t` (one in flight at `t` may still
    /// have reached the old leader), waiting for it at most `limit`.
    fn first_ack_after(&self, t: Instant, limit: Duration) -> Option<Duration> {
        let deadline = t + limit;
        while Instant::now() < deadline {
            if let Some((_, _, at)) = self
                .acked
                .lock()
                .unwrap()
                .iter()
                .find(|(_, began, _)| *began > t)
            {
                return Some(*at - t);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    fn finish(mut self) -> (BTreeSet<i64>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        let acked = self
            .acked
            .lock()
            .unwrap()
            .iter()
            .map(|(n, _, _)| *n)
            .collect();
        (acked, self.failed.lock().unwrap().len())
    }
}

#[test]
#[allow(clippy::too_many_lines)] // one fleet's life: up, a crash, a rejoin, a partition
#[allow(clippy::print_stderr)] // the failover times, for whoever reads the output
fn a_new_leader_takes_writes_within_30_s_and_no_acknowledged_write_is_lost() {
    let ha = Ha::up();
    // One leader, two replicas streaming from it, one of them synchronous.
    let leader = ha.healthy(2, None);
    let c = ha.cluster(0).unwrap();
    let sync = c["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "sync_standby")
        .count();
    assert_eq!(sync, 1, "{c}");
    // PostgreSQL runs under Patroni, under each node's supervisor.
    let r = ha.lab.berth(&[
        "--prefix",
        &ha.prefixes[leader].display().to_string(),
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
    for s in ["berth-etcd", "berth-pgbouncer", "postgresql"] {
        assert!(names.contains(&s), "{names:?}");
    }
    // The app answers through the load balancer (once its checks find the web node
    // up), and reaches its database through it.
    ha.answers();
    let out = ha.psql("CREATE TABLE acked (v bigint PRIMARY KEY)");
    assert!(
        out.status.success(),
        "{}\nPgBouncers:\n{}\nHAProxy:\n{}\nPostgreSQL:\n{}",
        String::from_utf8_lossy(&out.stderr),
        (0..3)
            .map(|i| ha.log(i, "berth-pgbouncer"))
            .collect::<Vec<_>>()
            .join("\n---\n"),
        ha.log(3, "berth-haproxy"),
        ha.logs(),
    );
    // The app's sessions reach PostgreSQL from the leader's own PgBouncer.
    let out = ha.psql("SELECT host(inet_client_addr())");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "127.0.0.1");
    // PgBouncer never lets a superuser in, even with the right password.
    let pw = std::fs::read_to_string(ha.dir.path().join("secrets/berth_pg_superuser")).unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", &ha.lab.admin, "env"])
        .arg(format!("PGPASSWORD={}", pw.trim()))
        .args([
            "/usr/lib/postgresql/15/bin/psql",
            "-X",
            "-h",
            &ha.addr[3],
            "-p",
        ])
        .arg(PG_PORT.to_string())
        .args(["-U", "ministack-pg", "-d", "postgres", "-c", "SELECT 1"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a superuser got in through PgBouncer"
    );

    let writer = Writer::start(&ha);
    while writer.acked_count() < 20 {
        std::thread::sleep(Duration::from_millis(100));
    }

    // 1. The leader's cable is cut (first, on a settled cluster: a replica that has
    // just followed a new leader may still be checking it against the old one, and
    // connections to a cut-off node time out rather than fail).
    let cut = leader;
    ha.link(cut, false);
    let t = Instant::now();
    let took = writer
        .first_ack_after(t, Duration::from_secs(30))
        .unwrap_or_else(|| {
            panic!(
                "no write was acknowledged within 30 s of the leader's partition:\n{}",
                ha.logs()
            )
        });
    eprintln!("partition: the first write on the new leader {took:?} after the cut");
    let second = ha.healthy(1, Some(cut));
    assert_ne!(second, cut);
    ha.answers();
    ha.link(cut, true);
    // The cut-off node rejoins (rewound if it had gone ahead alone).
    assert_eq!(ha.healthy(2, None), second, "the lead stays where it went");

    // 2. The new leader's machine dies.
    while writer.acked_count() < 40 + 20 {
        std::thread::sleep(Duration::from_millis(100));
    }
    let crashed = second;
    let killed = ha.crash(crashed);
    assert!(killed >= 3, "killed {killed} processes");
    let t = Instant::now();
    let took = writer
        .first_ack_after(t, Duration::from_secs(30))
        .unwrap_or_else(|| {
            panic!(
                "no write was acknowledged within 30 s of the leader's crash:\n{}",
                ha.logs()
            )
        });
    eprintln!("crash: the first write on the new leader {took:?} after the kill");
    let third = ha.healthy(1, Some(crashed));
    assert_ne!(third, crashed);
    ha.answers();

    // The machine comes back: its berth brings it up, and it rejoins as a replica.
    let r = Command::new("ip")
        .args(["netns", "exec", &ha.lab.nodes[crashed].ns])
        .arg(berth_bin())
        .arg("--prefix")
        .arg(&ha.prefixes[crashed])
        .args(["up", "--quiet"])
        .output()
        .unwrap();
    assert!(
        r.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    assert_eq!(ha.healthy(2, None), third, "the lead stays where it went");
    std::thread::sleep(Duration::from_secs(1));
    let (acked, failed) = writer.finish();

    // Every acknowledged row is there, read back from the leader.
    let out = ha.psql("SELECT v FROM acked ORDER BY v");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored: BTreeSet<i64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let lost: Vec<&i64> = acked.difference(&stored).collect();
    eprintln!(
        "{} writes acknowledged, {} refused while there was no leader, {} lost",
        acked.len(),
        failed,
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert!(acked.len() > 60);

    // 3. Redis: the master's machine dies; Sentinel promotes a replica, and a client
    // that asks the Sentinels where the master is carries on writing.
    let master = ha.redis_master(None).expect("the Sentinels name a master");
    assert_eq!(ha.redis(master, &["SET", "before", "1"]), "OK");
    ha.crash(master);
    let t = Instant::now();
    let promoted = loop {
        if let Some(m) = ha.redis_master(Some(master))
            && m != master
            && ha.redis(m, &["SET", "after", "1"]) == "OK"
        {
            break m;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no Redis master took writes within 30 s: {}",
            ha.log((master + 1) % 3, "berth-sentinel")
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!(
        "redis: the new master took a write {:?} after the crash",
        t.elapsed()
    );
    assert_eq!(ha.redis(promoted, &["GET", "before"]), "1");
}

impl Ha {
    /// The node whose Redis the Sentinels name the master, asked of any node but `skip`.
    fn redis_master(&self, skip: Option<usize>) -> Option<usize> {
        for i in (0..3).filter(|i| Some(*i) != skip) {
            let out = self.lab.exec_in(
                &self.lab.admin,
                &[
                    "redis-cli",
                    "-h",
                    &self.addr[i],
                    "-p",
                    "26379",
                    "SENTINEL",
                    "get-master-addr-by-name",
                    "ministack",
                ],
            );
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if let Some(host) = text.lines().next()
                && let Some(n) = self.addr.iter().position(|a| a == host.trim())
            {
                return Some(n);
            }
        }
        None
    }

    /// `redis-cli` against node `i`'s Redis with the app's password: its answer.
    fn redis(&self, i: usize, args: &[&str]) -> String {
        let pw = std::fs::read_to_string(self.dir.path().join("secrets/redis_password")).unwrap();
        let out = Command::new("ip")
            .args(["netns", "exec", &self.lab.admin, "env"])
            .arg(format!("REDISCLI_AUTH={}", pw.trim()))
            .args([
                "redis-cli",
                "--no-auth-warning",
                "-h",
                &self.addr[i],
                "-p",
                "16379",
            ])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}
