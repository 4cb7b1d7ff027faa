//! `berth upgrade apply`, `resume` and `abort` on the ministack fixture, from 1.0.0
//! through versions made from it that add a real migration (a hook that writes to the
//! app's PostgreSQL database):
//!
//! - an offline hop under a client requesting every 50 ms: only 200s and maintenance
//!   pages (503 with `Retry-After`), never a refused connection, the pages only while
//!   the maintenance page was up; data and uploads kept, both releases listed;
//! - an online hop under the same client: every answer a 200, the new release first
//!   from its process started beside the old one on the spare port, then from the
//!   service restarted on its own port; a taken spare port refused before anything
//!   changes; killed half way through the handover, then resumed or aborted;
//! - a migration that fails after writing, and a release whose app never gets ready:
//!   rolled back by itself, database restored (the half-done write gone), the old
//!   version serving, the history saying why; the next attempt runs the migration again;
//! - berth killed (SIGKILL) after every journaled step, then `abort` (old version) and,
//!   killed there again, `resume` (new version): healthy every time, data intact; while
//!   the upgrade is unfinished every other command that changes the instance refuses.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_lifecycle::fault;
use berth_tests::{Berth, app_sql as sql, fixture, prefix_dir};

/// Ports of one test's instance: nginx, PostgreSQL, Redis, the app.
#[derive(Clone, Copy)]
struct Ports(u16, u16, u16, u16);

impl Ports {
    fn site(self) -> String {
        format!(
            "external_url = \"http://127.0.0.1:{}/\"\n\
             [postgresql]\nport = {}\n[redis]\nport = {}\n[app]\nport = {}\n",
            self.0, self.1, self.2, self.3
        )
    }
}

/// ministack 1.0.0 up under a prefix with the seed data; stopped however the test ends.
struct Stack {
    /// The runner of every later command: the instance's own manifest.
    installed: Berth,
}

impl Stack {
    /// Set up at `prefix` with the ports' site config followed by `extra`.
    fn up(prefix: &Path, ports: Ports, extra: &str) -> Self {
        let berth = Berth::new(prefix, &fixture("ministack"));
        std::fs::create_dir_all(prefix).unwrap();
        berth.write_site(&format!("{}{extra}", ports.site()));
        // The guard exists before `up` runs, so a failed `up` is stopped too.
        let stack = Self {
            installed: Berth::installed(prefix),
        };
        berth.run(&["up"]).expect(0);
        seed(prefix, ports);
        stack
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.installed.run(&["down"]);
    }
}

/// How a made version's migration behaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Migration {
    /// Records the version, waits `secs`, succeeds.
    Good { secs: u32 },
    /// Writes a row, then fails.
    Fails,
}

/// ministack at `version` with a `release` hook that migrates its database, and an
/// app that never gets ready when `never_ready`.
fn version(dir: &Path, version: &str, migration: Migration, never_ready: bool) -> PathBuf {
    let from = fixture("ministack");
    let to = dir.join(format!("ministack-{version}"));
    std::fs::create_dir_all(to.join("templates")).unwrap();
    for entry in std::fs::read_dir(from.join("templates")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join("templates").join(entry.file_name())).unwrap();
    }
    let mut text = std::fs::read_to_string(from.join("berth.toml"))
        .unwrap()
        .replace("version = \"1.0.0\"", &format!("version = \"{version}\""));
    if never_ready {
        let ready = "ready = { http = \"http://127.0.0.1:{{ settings.app.port }}/health\", timeout = \"30s\" }";
        assert!(text.contains(ready));
        text = text.replace(
            ready,
            "ready = { command = [\"/bin/false\"], timeout = \"4s\" }",
        );
    }
    let (sql, tail) = match migration {
        Migration::Good { secs } => (
            "CREATE TABLE IF NOT EXISTS migrations (version text PRIMARY KEY); \
             INSERT INTO migrations VALUES (:'v') ON CONFLICT DO NOTHING;",
            format!("sleep {secs}"),
        ),
        Migration::Fails => (
            "INSERT INTO items VALUES ('poison');",
            "echo 'migration 7 of 9 failed' >&2; exit 1".to_owned(),
        ),
    };
    let _ = write!(
        text,
        r#"
[hooks.migrate]
component = "postgresql"
description = "The release's database migrations"
command = ["/bin/sh", "-c", '''
"$PSQL" -X -q -v ON_ERROR_STOP=1 -v v="$VERSION" -h "$PGHOST" -p "$PGPORT" -d app <<'SQL' || exit 1
{sql}
SQL
{tail}
''']
environment = {{ PSQL = "{{{{ components.postgresql.bin.psql }}}}", PGHOST = "{{{{ paths.run }}}}/postgresql", PGPORT = "{{{{ settings.postgresql.port }}}}", VERSION = "{{{{ app.version }}}}" }}
when = "release"
after = ["postgresql"]
before = ["app"]
"#
    );
    std::fs::write(to.join("berth.toml"), text).unwrap();
    to
}

/// The data every step must keep: rows in the database and an upload.
fn seed(prefix: &Path, ports: Ports) {
    sql(
        prefix,
        ports.1,
        "CREATE TABLE items (name text); INSERT INTO items SELECT 'item ' || n FROM generate_series(1, 500) n;",
    );
    std::fs::write(prefix.join("data/app/upload.bin"), upload()).unwrap();
}

fn upload() -> Vec<u8> {
    (0..100_000u32).map(|i| (i % 251) as u8).collect()
}

/// The data is all there, and nothing a failed migration wrote.
fn assert_data(prefix: &Path, ports: Ports) {
    assert_eq!(sql(prefix, ports.1, "SELECT count(*) FROM items"), "500");
    assert_eq!(
        sql(
            prefix,
            ports.1,
            "SELECT count(*) FROM items WHERE name = 'poison'"
        ),
        "0"
    );
    assert_eq!(
        std::fs::read(prefix.join("data/app/upload.bin")).unwrap(),
        upload()
    );
}

/// The versions the migrations recorded (empty when none ran yet).
fn migrated(prefix: &Path, ports: Ports) -> String {
    if sql(
        prefix,
        ports.1,
        "SELECT to_regclass('migrations') IS NOT NULL",
    ) != "t"
    {
        return String::new();
    }
    sql(
        prefix,
        ports.1,
        "SELECT string_agg(version, ',' ORDER BY version) FROM migrations",
    )
}

/// One answer of the front door.
#[derive(Debug, Clone)]
enum Answer {
    /// Status, whether `Retry-After` was there, the body.
    Http(u16, bool, String),
    /// No HTTP answer at all (the error, shown when an assertion fails).
    Refused(#[allow(dead_code)] String),
}

/// GET / through nginx: the status, whether `Retry-After` came, and the body.
fn get(port: u16) -> Answer {
    let attempt = || -> std::io::Result<(u16, bool, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let retry = head
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("retry-after:"));
        Ok((status, retry, body.to_owned()))
    };
    match attempt() {
        Ok((s, r, b)) => Answer::Http(s, r, b),
        Err(e) => Answer::Refused(e.to_string()),
    }
}

/// The version the app answers with.
fn serving(port: u16) -> String {
    match get(port) {
        Answer::Http(200, _, body) => {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            v["version"].as_str().unwrap().to_owned()
        }
        other => panic!("not serving: {other:?}"),
    }
}

/// `berth releases --json`: (version, current) pairs.
fn releases(b: &Berth) -> Vec<(String, bool)> {
    let r = b.run(&["releases", "--json"]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["version"].as_str().unwrap().to_owned(),
                r["current"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn current(b: &Berth) -> String {
    releases(b)
        .into_iter()
        .find(|(_, c)| *c)
        .map(|(v, _)| v)
        .unwrap()
}

/// The newest run of the history, as JSON.
fn last_run(b: &Berth, kind: &str) -> serde_json::Value {
    let r = b.run(&["history", "--json", "--limit", "20"]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == kind)
        .cloned()
        .unwrap_or_else(|| panic!("no `{kind}` run in {v:#}"))
}

/// A client requesting the front door every 50 ms until stopped: every answer with
/// the time it came.
struct Poller {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<(Duration, Answer)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Poller {
    fn start(port: u16) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let (s, a) = (stop.clone(), answers.clone());
        let thread = std::thread::spawn(move || {
            let t0 = Instant::now();
            while !s.load(Ordering::Relaxed) {
                let answer = get(port);
                a.lock().unwrap().push((t0.elapsed(), answer));
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Self {
            stop,
            answers,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<(Duration, Answer)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        self.answers.lock().unwrap().clone()
    }
}

/// The answers seen during an offline hop: never a refused connection or a gateway
/// error; 503s only as the maintenance page (with `Retry-After`), in one window no
/// longer than the page was up, with 200s before and after it.
fn assert_only_pages_while_up(answers: &[(Duration, Answer)], maintenance: f64) {
    // Never a refused connection or a gateway error; 503s only as the page.
    let refused: Vec<_> = answers
        .iter()
        .filter(|(_, a)| !matches!(a, Answer::Http(200 | 503, ..)))
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
    let pages: Vec<Duration> = answers
        .iter()
        .filter_map(|(t, a)| match a {
            Answer::Http(503, retry, body) => {
                assert!(*retry, "503 without Retry-After");
                assert!(body.contains("ministack is being upgraded"), "{body}");
                assert!(body.contains("1.1.0"), "{body}");
                Some(*t)
            }
            _ => None,
        })
        .collect();
    assert!(pages.len() >= 10, "{} maintenance answers", pages.len());
    let window = pages.last().unwrap().checked_sub(pages[0]).unwrap();
    assert!(
        window.as_secs_f64() <= maintenance + 0.2,
        "pages for {window:?}, page up {maintenance} s"
    );
    // 200s before the window and after it, and nothing else in between.
    let first = answers.iter().position(|(t, _)| *t == pages[0]).unwrap();
    let last = answers
        .iter()
        .position(|(t, _)| t == pages.last().unwrap())
        .unwrap();
    assert!(
        answers[first..=last]
            .iter()
            .all(|(_, a)| matches!(a, Answer::Http(503, ..))),
        "an answer other than the page while it was up"
    );
    assert!(first > 0 && last + 1 < answers.len());
}

/// An offline hop under load: 200s, then maintenance pages (503, `Retry-After`, the
/// page) only while the page was up, then 200s from the new version; never a refused
/// connection. The data, the upload and both releases are there afterwards.
#[test]
fn an_offline_hop_answers_with_the_maintenance_page_and_keeps_the_data() {
    let ports = Ports(41080, 41432, 41379, 41001);
    let dir = prefix_dir("upgrade-offline");
    let prefix = dir.path().join("inst");
    let stack = Stack::up(&prefix, ports, "");
    let installed = &stack.installed;
    let v110 = version(dir.path(), "1.1.0", Migration::Good { secs: 2 }, false);

    let poller = Poller::start(ports.0);
    std::thread::sleep(Duration::from_millis(300));
    let r = installed
        .run(&["upgrade", "apply", "--json", "--to", v110.to_str().unwrap()])
        .expect(0);
    std::thread::sleep(Duration::from_millis(300));
    let answers = poller.finish();
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (&report["from"], &report["to"]),
        (&"1.0.0".into(), &"1.1.0".into())
    );
    let hop = &report["hops"][0];
    let steps: Vec<&str> = hop["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[0].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "preflight",
            "backup",
            "install",
            "maintenance",
            "switch",
            "health-gate",
            "record"
        ]
    );
    let maintenance = hop["maintenance_seconds"].as_f64().unwrap();
    assert!(
        maintenance >= 2.0,
        "the migration sleeps 2 s: {maintenance}"
    );

    assert_only_pages_while_up(&answers, maintenance);

    assert_eq!(serving(ports.0), "1.1.0");
    assert_data(&prefix, ports);
    assert_eq!(migrated(&prefix, ports), "1.1.0");
    assert_eq!(
        releases(installed),
        [("1.0.0".to_owned(), false), ("1.1.0".to_owned(), true)]
    );
    assert!(!prefix.join("state/upgrade.json").exists());
    assert!(!prefix.join("run/maintenance.html").exists());
    let run = last_run(installed, "upgrade");
    assert_eq!(run["detail"], "ministack 1.0.0 → 1.1.0");
    assert_eq!(run["outcome"]["status"]["status"], "succeeded", "{run:#}");
    // A second upgrade keeps two releases (upgrade.keep_releases = 2): 1.0.0 goes.
    let v120 = version(dir.path(), "1.2.0", Migration::Good { secs: 0 }, false);
    installed
        .run(&["upgrade", "apply", "--to", v120.to_str().unwrap()])
        .expect(0);
    assert_eq!(
        releases(installed),
        [("1.1.0".to_owned(), false), ("1.2.0".to_owned(), true)]
    );
    assert_eq!(migrated(&prefix, ports), "1.1.0,1.2.0");
}

/// An online hop (`online_from`) under a client requesting every 50 ms: every answer is
/// a 200, the old version's until the first of the new one's and the new one's once
/// the drain after it is over. The new release first answers from its process on the spare port (started
/// beside the old one, traffic moved by an nginx reload), then from the service
/// restarted on its own port; the spare process is gone afterwards and nginx points
/// at the app's own port again.
#[test]
fn an_online_hop_moves_traffic_without_a_failed_request() {
    let ports = Ports(46080, 46432, 46379, 46001);
    let dir = prefix_dir("upgrade-online");
    let prefix = dir.path().join("inst");
    let stack = Stack::up(&prefix, ports, "spare_port = 46002\n");
    let installed = &stack.installed;
    let v101 = online(&version(
        dir.path(),
        "1.0.1",
        Migration::Good { secs: 1 },
        false,
    ));

    // Something else on the spare port: refused before anything changes.
    let squatter = std::net::TcpListener::bind("127.0.0.1:46002").unwrap();
    let r = installed.run(&["upgrade", "apply", "--to", v101.to_str().unwrap()]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("127.0.0.1:46002"), "{}", r.stderr);
    assert!(!prefix.join("state/upgrade.json").exists());
    assert_eq!(current(installed), "1.0.0");
    drop(squatter);

    let poller = Poller::start(ports.0);
    std::thread::sleep(Duration::from_millis(300));
    let r = installed
        .run(&["upgrade", "apply", "--json", "--to", v101.to_str().unwrap()])
        .expect(0);
    std::thread::sleep(Duration::from_millis(500));
    let answers = poller.finish();
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let hop = &report["hops"][0];
    assert_eq!(hop["offline"], false, "{report:#}");
    let steps: Vec<&str> = hop["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[0].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "preflight",
            "backup",
            "install",
            "switch",
            "health-gate",
            "record"
        ]
    );

    assert_handed_over(&answers);

    let status = installed.run(&["status", "--json"]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let names: Vec<&str> = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"app@next"), "{names:?}");
    assert!(prefix.join("log/app@next").is_dir());
    let nginx = std::fs::read_to_string(prefix.join("etc/nginx/nginx.conf")).unwrap();
    assert!(
        nginx.contains("127.0.0.1:46001") && !nginx.contains("46002"),
        "{nginx}"
    );
    assert_eq!(serving(ports.0), "1.0.1");
    assert_data(&prefix, ports);
    assert_eq!(migrated(&prefix, ports), "1.0.1");
    assert_eq!(
        releases(installed),
        [("1.0.0".to_owned(), false), ("1.0.1".to_owned(), true)]
    );
    let run = last_run(installed, "upgrade");
    assert_eq!(run["outcome"]["status"]["status"], "succeeded", "{run:#}");
}

/// The answers seen during an online hop from 1.0.0 to 1.0.1: every one a 200; the
/// old version's until the first of the new one's; the old one's after that only
/// within the drain, with a second's margin (nginx reloads gracefully: for a moment an
/// old worker may still take a request and send it to the old release, which serves
/// until the drain, 1 s in the fixture, is over); two processes of the new release (the one beside, then
/// the service), the last answers all from the service.
fn assert_handed_over(answers: &[(Duration, Answer)]) {
    // Every answer a 200: (version, pid) of the process that gave it.
    let seen: Vec<(String, u64)> = answers
        .iter()
        .map(|(t, a)| match a {
            Answer::Http(200, _, body) => {
                let v: serde_json::Value = serde_json::from_str(body).unwrap();
                (
                    v["version"].as_str().unwrap().to_owned(),
                    v["pid"].as_u64().unwrap(),
                )
            }
            other => panic!("at {t:?}: {other:?} (of {} answers)", answers.len()),
        })
        .collect();
    let first_new = seen
        .iter()
        .position(|(v, _)| v == "1.0.1")
        .expect("never 1.0.1");
    assert!(first_new >= 5, "{first_new} answers from 1.0.0");
    assert!(seen[..first_new].iter().all(|(v, _)| v == "1.0.0"));
    let moved_at = answers[first_new].0;
    let late_old: Vec<Duration> = seen
        .iter()
        .zip(answers)
        .skip(first_new)
        .filter(|((v, _), _)| v == "1.0.0")
        .map(|(_, (t, _))| t.saturating_sub(moved_at))
        .collect();
    assert!(
        late_old.iter().all(|d| *d < Duration::from_secs(2)),
        "1.0.0 answered after the drain: {late_old:?} after the first 1.0.1 ({seen:?})"
    );
    let new_pids: Vec<u64> = seen[first_new..]
        .iter()
        .filter(|(v, _)| v == "1.0.1")
        .map(|(_, p)| *p)
        .collect();
    let last_pid = *new_pids.last().unwrap();
    assert_ne!(new_pids[0], last_pid, "only one process of 1.0.1 answered");
    assert!(new_pids.len() > 10, "{} answers from 1.0.1", new_pids.len());
    assert!(
        seen[seen.len() - 5..]
            .iter()
            .all(|(v, p)| v == "1.0.1" && *p == last_pid),
        "{seen:?}"
    );
}

/// An online hop killed while traffic is on the spare process, or once it is back but
/// the spare process still runs; then resumed or aborted: one version serving on the
/// app's own port, the spare process gone, its port free, the data intact.
#[test]
fn an_online_hop_killed_half_way_is_resumed_or_aborted() {
    let ports = Ports(47080, 47432, 47379, 47001);
    let dir = prefix_dir("upgrade-online-crash");
    let prefix = dir.path().join("inst");
    let stack = Stack::up(&prefix, ports, "spare_port = 47002\n");
    let installed = &stack.installed;
    for (to, point, finish, after) in [
        ("1.0.1", "handover:moved", "resume", "1.0.1"),
        ("1.0.2", "handover:back", "resume", "1.0.2"),
        ("1.0.3", "handover:moved", "abort", "1.0.2"),
    ] {
        let v = online(&version(dir.path(), to, Migration::Good { secs: 0 }, false));
        let apply = ["upgrade", "apply", "--to", v.to_str().unwrap()];
        let killed = installed.run_env(&apply, &[(fault::ENV, point)]);
        assert_eq!(killed.code, -1, "{point}: not killed\n{}", killed.stderr);
        assert_eq!(serving(ports.0), to, "{point}: the new release serves");
        installed.run(&["upgrade", finish]).expect(0);
        assert_eq!(serving(ports.0), after, "{point}, {finish}");
        let status = installed.run(&["status", "--json"]).expect(0);
        assert!(
            !status.stdout.contains("app@next"),
            "{point}, {finish}: {}",
            status.stdout
        );
        let nginx = std::fs::read_to_string(prefix.join("etc/nginx/nginx.conf")).unwrap();
        assert!(!nginx.contains("47002"), "{point}, {finish}: {nginx}");
        std::net::TcpListener::bind("127.0.0.1:47002")
            .unwrap_or_else(|e| panic!("{point}, {finish}: the spare port: {e}"));
        assert_data(&prefix, ports);
    }
}

/// An attack on the handover: something else (another service's user, say) binds the
/// spare port once berth found it free, before the new release listens, and answers
/// every request with 200. The new release cannot listen there and the readiness probe
/// is answered by the squatter; berth sees that the port is not the new release's,
/// moves no traffic and rolls back. The squatter gets nothing but probes, the client
/// never sees its answer, the old version serves again.
#[test]
fn a_squatter_on_the_spare_port_gets_no_traffic() {
    let ports = Ports(49080, 49432, 49379, 49001);
    let dir = prefix_dir("upgrade-squatter");
    let prefix = dir.path().join("inst");
    let stack = Stack::up(&prefix, ports, "spare_port = 49002\n");
    let installed = &stack.installed;
    let v101 = online(&version(
        dir.path(),
        "1.0.1",
        Migration::Good { secs: 0 },
        false,
    ));
    // The new release takes 3 s before it listens: the squatter's moment, once berth
    // found the spare port free and started the process beside.
    let app = v101.join("templates/app.py.j2");
    let text = std::fs::read_to_string(&app).unwrap();
    let serve = "ThreadingHTTPServer((";
    assert!(text.contains(serve));
    std::fs::write(
        &app,
        text.replace(serve, &format!("__import__('time').sleep(3)\n{serve}")),
    )
    .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let squatter = {
        let (stop, seen) = (stop.clone(), seen.clone());
        let beside_log = prefix.join("log/app@next");
        std::thread::spawn(move || {
            let t0 = Instant::now();
            while !beside_log.exists() {
                assert!(
                    t0.elapsed() < Duration::from_mins(2),
                    "never started beside"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            let l = std::net::TcpListener::bind("127.0.0.1:49002").unwrap();
            l.set_nonblocking(true).unwrap();
            while !stop.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                        let mut buf = [0u8; 1024];
                        let n = s.read(&mut buf).unwrap_or(0);
                        let head = String::from_utf8_lossy(&buf[..n]);
                        seen.lock()
                            .unwrap()
                            .push(head.lines().next().unwrap_or("").to_owned());
                        let _ =
                            s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 8\r\n\r\nsquatted");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        })
    };
    let poller = Poller::start(ports.0);
    let r = installed.run(&["upgrade", "apply", "--to", v101.to_str().unwrap()]);
    let answers = poller.finish();
    stop.store(true, Ordering::Relaxed);
    squatter.join().unwrap();
    let seen = seen.lock().unwrap().clone();

    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("`127.0.0.1:49002` of `app@next` is not the new release's alone"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("rolled back"), "{}", r.stderr);
    assert!(!seen.is_empty(), "the squatter was never asked");
    assert!(
        seen.iter().all(|l| l.starts_with("GET /health ")),
        "the squatter got more than probes: {seen:?}"
    );
    assert!(
        !answers
            .iter()
            .any(|(_, a)| matches!(a, Answer::Http(_, _, body) if body.contains("squatted"))),
        "the client saw the squatter"
    );
    assert_eq!(serving(ports.0), "1.0.0");
    assert_eq!(current(installed), "1.0.0");
    let nginx = std::fs::read_to_string(prefix.join("etc/nginx/nginx.conf")).unwrap();
    assert!(!nginx.contains("49002"), "{nginx}");
    assert_data(&prefix, ports);
}

/// `dir`'s manifest with `online_from = "1.0"`: a hop from 1.0.x is online.
fn online(dir: &Path) -> PathBuf {
    let manifest = dir.join("berth.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        format!("{text}\n[upgrade]\nonline_from = \"1.0\"\n"),
    )
    .unwrap();
    dir.to_owned()
}

/// A failing migration and an app that never gets ready: each rolled back by itself,
/// the database restored (the failed migration's row is gone), the old version
/// serving, the reason in the output and the history. The next attempt, with a good
/// release, runs its migration again.
#[test]
fn failures_roll_back_by_themselves() {
    let ports = Ports(42080, 42432, 42379, 42001);
    let dir = prefix_dir("upgrade-rollback");
    let prefix = dir.path().join("inst");
    let stack = Stack::up(&prefix, ports, "");
    let installed = &stack.installed;

    let bad = version(dir.path(), "1.1.0", Migration::Fails, false);
    let r = installed
        .run(&["upgrade", "apply", "--to", bad.to_str().unwrap()])
        .expect(1);
    assert!(
        r.stderr.contains("failed and was rolled back")
            && r.stderr.contains("ministack 1.0.0 is running again")
            && r.stderr.contains("migrate"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("hint: `berth history`"), "{}", r.stderr);
    assert_eq!(serving(ports.0), "1.0.0");
    assert_data(&prefix, ports);
    assert_eq!(releases(installed), [("1.0.0".to_owned(), true)]);
    let run = last_run(installed, "upgrade");
    let error = run["outcome"]["status"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        error.contains("migrate") && error.contains("rolled back to 1.0.0"),
        "{run:#}"
    );
    assert!(!prefix.join("state/upgrade.json").exists());

    let never_ready = version(
        &dir.path().join("stuck"),
        "1.1.0",
        Migration::Good { secs: 0 },
        true,
    );
    let r = installed
        .run(&["upgrade", "apply", "--to", never_ready.to_str().unwrap()])
        .expect(1);
    assert!(
        r.stderr.contains("failed and was rolled back"),
        "{}",
        r.stderr
    );
    assert_eq!(serving(ports.0), "1.0.0");
    assert_data(&prefix, ports);
    assert_eq!(
        migrated(&prefix, ports),
        "",
        "the migration's write was put back"
    );
    assert_eq!(current(installed), "1.0.0");

    // The migration ran during the failed attempt; it runs again now.
    let good = version(
        &dir.path().join("good"),
        "1.1.0",
        Migration::Good { secs: 0 },
        false,
    );
    installed
        .run(&["upgrade", "apply", "--to", good.to_str().unwrap()])
        .expect(0);
    assert_eq!(serving(ports.0), "1.1.0");
    assert_eq!(migrated(&prefix, ports), "1.1.0");
    assert_data(&prefix, ports);
}

/// Killed after every journaled step: every other command that changes the instance
/// refuses, naming `resume` and `abort`; `abort` goes back to the old version and,
/// after the same kill again, `resume` reaches the new one. Data intact every time.
#[test]
fn killed_at_every_step_then_resumed_or_aborted() {
    let ports = Ports(43080, 43432, 43379, 43001);
    let dir = prefix_dir("upgrade-crash");
    let prefix = dir.path().join("inst");
    let stack = Stack::up(&prefix, ports, "");
    let installed = &stack.installed;

    let points = [
        "upgrade:journal",
        "upgrade:preflight",
        "upgrade:backup",
        "upgrade:install",
        "upgrade:maintenance",
        "change:written",
        "upgrade:switch",
        "upgrade:health-gate",
        "upgrade:record",
    ];
    let mut now = (1, 0);
    for point in points {
        let from = format!("{}.{}.0", now.0, now.1);
        let next = (now.0, now.1 + 1);
        let to = format!("{}.{}.0", next.0, next.1);
        let target = version(dir.path(), &to, Migration::Good { secs: 0 }, false);
        let apply = ["upgrade", "apply", "--to", target.to_str().unwrap()];

        let killed = installed.run_env(&apply, &[(fault::ENV, point)]);
        assert_eq!(killed.code, -1, "{point}: not killed\n{}", killed.stderr);
        let r = installed.run(&["status"]).expect(3);
        assert!(
            r.stdout
                .contains(&format!("UPGRADE UNFINISHED: ministack {from} → {to}")),
            "{point}: {}",
            r.stdout
        );
        for refused in [
            &["up"][..],
            &["reconfigure"],
            &["backup", "create"],
            &["stop"],
        ] {
            let r = installed.run(refused).expect(1);
            assert!(
                r.stderr.contains("is unfinished") && r.stderr.contains("berth upgrade resume"),
                "{point}: {refused:?}: {}",
                r.stderr
            );
        }
        let r = installed.run(&["upgrade", "abort"]).expect(0);
        assert!(
            r.stdout.contains(&format!("version {from} runs again")),
            "{point}: {}",
            r.stdout
        );
        assert_eq!(serving(ports.0), from, "{point}: after abort");
        assert_eq!(current(installed), from, "{point}");
        assert!(
            !releases(installed).iter().any(|(v, _)| *v == to),
            "{point}"
        );
        assert_data(&prefix, ports);
        assert!(!prefix.join("state/upgrade.json").exists());

        let killed = installed.run_env(&apply, &[(fault::ENV, point)]);
        assert_eq!(killed.code, -1, "{point}: not killed again");
        installed.run(&["upgrade", "resume"]).expect(0);
        assert_eq!(serving(ports.0), to, "{point}: after resume");
        assert_eq!(current(installed), to, "{point}");
        assert!(migrated(&prefix, ports).ends_with(&to), "{point}");
        assert_data(&prefix, ports);
        assert!(!prefix.join("state/upgrade.json").exists());
        assert!(!prefix.join("run/maintenance.html").exists());
        now = next;
    }

    // A rollback killed half way is finished by `abort`.
    let to = format!("{}.{}.0", now.0, now.1 + 1);
    let from = format!("{}.{}.0", now.0, now.1);
    let target = version(dir.path(), &to, Migration::Good { secs: 0 }, false);
    let apply = ["upgrade", "apply", "--to", target.to_str().unwrap()];
    let killed = installed.run_env(&apply, &[(fault::ENV, "upgrade:switch")]);
    assert_eq!(killed.code, -1);
    let killed = installed.run_env(&["upgrade", "abort"], &[(fault::ENV, "upgrade-abort:back")]);
    assert_eq!(killed.code, -1, "{}", killed.stderr);
    let r = installed.run(&["up"]).expect(1);
    assert!(r.stderr.contains("berth upgrade abort"), "{}", r.stderr);
    installed.run(&["upgrade", "abort"]).expect(0);
    assert_eq!(serving(ports.0), from);
    assert_data(&prefix, ports);
}

/// `HH:MM-HH:MM` (UTC) from `from` to `to` minutes away from now.
fn window(from: i64, to: i64) -> String {
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            % 86_400
            / 60,
    )
    .unwrap();
    let hm = |m: i64| {
        let m = m.rem_euclid(1440);
        format!("{:02}:{:02}", m / 60, m % 60)
    };
    format!("{}-{}", hm(now + from), hm(now + to))
}

/// Automatic upgrades: the supervisor gets the `berth-upgrade` job; `upgrade auto`
/// does nothing outside the window, goes to the newest patch release of the source
/// (not the next minor, not a broken directory), says when it is up to date, and a
/// failing automatic upgrade is rolled back and recorded as automatic and failed.
#[test]
fn automatic_upgrades_follow_the_policy() {
    let ports = Ports(44080, 44432, 44379, 44001);
    let dir = prefix_dir("upgrade-auto");
    let prefix = dir.path().join("inst");
    let source = dir.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    let upgrade = |window: &str| {
        format!(
            "[upgrade]\nauto = \"patch\"\nsource = \"{}\"\nwindow = \"{window}\"\n",
            source.display()
        )
    };
    let stack = Stack::up(&prefix, ports, &upgrade(&window(120, 180)));
    let installed = &stack.installed;
    let jobs = installed.status()["jobs"].clone();
    assert!(
        jobs.as_array()
            .unwrap()
            .iter()
            .any(|j| j["name"] == "berth-upgrade"),
        "{jobs:#}"
    );

    version(&source, "1.0.1", Migration::Good { secs: 0 }, false);
    version(&source, "1.1.0", Migration::Good { secs: 0 }, false);
    std::fs::create_dir_all(source.join("half-copied")).unwrap();
    std::fs::write(source.join("half-copied/berth.toml"), "[app]\nname = ").unwrap();

    let auto = |code: i32| {
        let r = installed.run(&["upgrade", "auto", "--json"]).expect(code);
        if code == 0 {
            serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap()
        } else {
            serde_json::Value::String(r.stderr)
        }
    };
    assert_eq!(auto(0)["outcome"], "outside-window");
    assert_eq!(serving(ports.0), "1.0.0");

    installed.write_site(&format!("{}{}", ports.site(), upgrade(&window(-30, 30))));
    installed.run(&["reconfigure"]).expect(0);
    let done = auto(0);
    assert_eq!(done["outcome"], "upgraded", "{done:#}");
    assert_eq!(done["to"], "1.0.1", "{done:#}");
    assert_eq!(serving(ports.0), "1.0.1");
    assert_eq!(
        last_run(installed, "upgrade")["detail"],
        "ministack 1.0.0 → 1.0.1 (automatic)"
    );
    assert_eq!(auto(0)["outcome"], "up-to-date");

    version(&source, "1.0.2", Migration::Fails, false);
    let err = auto(1);
    assert!(
        err.as_str().unwrap().contains("failed and was rolled back"),
        "{err}"
    );
    assert_eq!(serving(ports.0), "1.0.1");
    assert_data(&prefix, ports);
    let run = last_run(installed, "upgrade");
    assert_eq!(run["detail"], "ministack 1.0.1 → 1.0.2 (automatic)");
    assert_eq!(run["outcome"]["status"]["status"], "failed", "{run:#}");
    // `berth status` says so too.
    let last = installed.status()["upgrade"]["last"].clone();
    assert_eq!(
        last["detail"], "ministack 1.0.1 → 1.0.2 (automatic)",
        "{last:#}"
    );
    let r = installed.run(&["status"]).expect(0);
    assert!(
        r.stdout
            .contains("last upgrade: ministack 1.0.1 → 1.0.2 (automatic) FAILED at"),
        "{}",
        r.stdout
    );
}

/// Not enough disk for the release and the pre-upgrade backup: refused before anything
/// changes (the tree under the prefix is compared), naming the check and the fix; with
/// the space back, the same upgrade goes through.
#[test]
fn not_enough_disk_is_refused_before_anything_changes() {
    let ports = Ports(45080, 45432, 45379, 45001);
    let dir = prefix_dir("upgrade-disk");
    let fs = dir.path().join("fs");
    let Some(_tmpfs) = berth_tests::Tmpfs::mount(&fs, "1200m") else {
        // Only root mounts; the end-to-end tests run as root, where this must work.
        assert!(
            !berth_tests::is_root(),
            "a tmpfs could not be mounted as root"
        );
        return;
    };
    std::fs::set_permissions(&fs, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let prefix = fs.join("inst");
    let stack = Stack::up(&prefix, ports, "");
    let installed = &stack.installed;
    let target = version(dir.path(), "1.1.0", Migration::Good { secs: 0 }, false);

    // Leave about 1 MiB free on the prefix's filesystem.
    let avail = |p: &Path| {
        let out = std::process::Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(p)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    let filler = fs.join("filler");
    let size = avail(&fs).saturating_sub(1 << 20);
    let status = std::process::Command::new("fallocate")
        .args(["-l", &size.to_string()])
        .arg(&filler)
        .status()
        .unwrap();
    assert!(status.success());
    let before = berth_tests::snapshot_tree(&prefix.join("releases"));
    let state_before = std::fs::read_dir(prefix.join("state")).unwrap().count();
    let r = installed
        .run(&["upgrade", "apply", "--to", target.to_str().unwrap()])
        .expect(1);
    assert!(
        r.stderr
            .contains("The upgrade cannot begin; nothing was changed")
            && r.stderr.contains("disk: about")
            && r.stderr.contains("free some space"),
        "{}",
        r.stderr
    );
    assert_eq!(berth_tests::snapshot_tree(&prefix.join("releases")), before);
    assert_eq!(
        std::fs::read_dir(prefix.join("state")).unwrap().count(),
        state_before
    );
    assert!(!prefix.join("state/upgrade.json").exists());
    assert!(std::fs::read_dir(prefix.join("backups")).map_or(true, |mut d| d.next().is_none()));
    assert_eq!(serving(ports.0), "1.0.0");

    std::fs::remove_file(&filler).unwrap();
    installed
        .run(&["upgrade", "apply", "--to", target.to_str().unwrap()])
        .expect(0);
    assert_eq!(serving(ports.0), "1.1.0");
    assert_data(&prefix, ports);
}
