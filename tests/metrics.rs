//! The supervisor's metrics endpoint, read by Prometheus' own text-format parser
//! (prometheus-client from PyPI, in the test tools' virtualenv): every service up and
//! ready, the restart counter moving after a kill -9, the last backup's size and age
//! after `berth backup create`, the endpoint moved and closed by a reconfigure.
#![allow(clippy::missing_panics_doc, clippy::print_stderr, missing_docs)] // a skipped test says why

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_tests::{Berth, is_root, ministack_at, prefix_dir, test_tool, wait_for};

const SITE: &str = "external_url = \"http://127.0.0.1:48680/\"\n\
    [postgresql]\nport = 48632\n[redis]\nport = 48679\n[app]\nport = 48601\n";
const METRICS: u16 = 48690;
const MOVED: u16 = 48691;

/// Strict parse of the exposition text: `(name, labels) → value` of every sample.
const PARSE: &str = "
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([s.name, s.labels, s.value, family.type])
print(json.dumps(out))
";

struct Down(Berth);

impl Drop for Down {
    fn drop(&mut self) {
        self.0.run(&["down"]);
    }
}

type Samples = BTreeMap<(String, BTreeMap<String, String>), (f64, String)>;

/// `GET /metrics` on `port` (status, content type, body); `None` when nothing answers.
fn get(port: u16, path: &str) -> Option<(u16, String, String)> {
    let out = Command::new("curl")
        .args(["-s", "-m", "5", "-D", "-"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    Some((code, ctype, body.to_owned()))
}

fn scrape(port: u16) -> Samples {
    let (code, ctype, body) = get(port, "/metrics").expect("the metrics endpoint answers");
    assert_eq!(code, 200, "{body}");
    assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
    let mut child = Command::new(test_tool("python"))
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parser refused it: {}\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Vec<(String, BTreeMap<String, String>, f64, String)> =
        serde_json::from_slice(&out.stdout).unwrap();
    parsed
        .into_iter()
        .map(|(n, l, v, t)| ((n, l), (v, t)))
        .collect()
}

fn value(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    samples.get(&(name.to_owned(), labels)).map(|(v, _)| *v)
}

/// `app` and `service` labels.
fn app(service: &str) -> Vec<(&str, &str)> {
    vec![("app", "ministack"), ("service", service)]
}

#[test]
#[allow(clippy::too_many_lines)] // one instance, read at each step
fn metrics_parse_and_follow_the_instance() {
    if !is_root() {
        eprintln!("skipped: `up` of ministack makes service users (root only)");
        return;
    }
    let src = tempfile::tempdir().unwrap();
    let manifest = ministack_at(src.path(), "1.0.0", |t| t);
    let dir = prefix_dir("metrics");
    let b = Berth::new(dir.path(), &manifest);
    let site = format!("{SITE}[metrics]\nlisten = \"127.0.0.1:{METRICS}\"\n");
    b.write_site(&site);
    let up = b.run(&["up"]);
    let b = Berth::installed(dir.path());
    let _down = Down(Berth::installed(dir.path()));
    up.expect(0);

    let m = scrape(METRICS);
    for service in ["app", "postgresql", "redis"] {
        assert_eq!(
            value(&m, "berth_service_up", &app(service)),
            Some(1.0),
            "{service}"
        );
        assert_eq!(
            value(&m, "berth_service_ready", &app(service)),
            Some(1.0),
            "{service}"
        );
        let mut l = app(service);
        l.push(("state", "ready"));
        assert_eq!(value(&m, "berth_service_state", &l), Some(1.0), "{service}");
        assert!(value(&m, "berth_service_ready_seconds", &app(service)).is_some());
        // Each service's memory, its whole process group: PostgreSQL's backends too.
        let pss = value(&m, "berth_service_memory_pss_bytes", &app(service)).unwrap_or(0.0);
        assert!(pss > 1_000_000.0, "{service}: {pss}");
    }
    // `berth status` adds them up.
    let status = b.status();
    let total = status["memory_pss_bytes"].as_u64().unwrap();
    let sum: u64 = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["pss_bytes"].as_u64())
        .sum();
    assert_eq!(total, sum, "{status}");
    assert!(
        b.run(&["status"]).stdout.contains(" in all"),
        "the text has no total"
    );
    // Counters end in `_total` and parse as counters.
    let (v, kind) = &m[&(
        "berth_service_restarts_total".to_owned(),
        app("app")
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )];
    assert_eq!((*v, kind.as_str()), (0.0, "counter"));
    let rss = value(
        &m,
        "berth_supervisor_resident_memory_bytes",
        &[("app", "ministack")],
    )
    .unwrap();
    assert!(rss > 1e6 && rss < 200e6, "{rss}");
    assert!(value(&m, "berth_backup_last_size_bytes", &[("app", "ministack")]).is_none());
    let (code, _, _) = get(METRICS, "/").unwrap();
    assert_eq!(code, 404);

    // kill -9: the restart counter moves, and the service is ready again.
    let pid = b.pids()["app"];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for(
        "the restart counted and app ready",
        Duration::from_mins(1),
        || {
            let m = scrape(METRICS);
            value(&m, "berth_service_restarts_total", &app("app")) == Some(1.0)
                && value(&m, "berth_service_ready", &app("app")) == Some(1.0)
        },
    );
    let m = scrape(METRICS);
    assert_eq!(
        value(&m, "berth_service_last_exit_code", &app("app")),
        Some(137.0)
    );
    assert_eq!(
        value(&m, "berth_service_restarts_total", &app("postgresql")),
        Some(0.0)
    );

    // A backup: its size and age.
    let r = b.run(&["backup", "create", "--json"]).expect(0);
    let created: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let m = scrape(METRICS);
    assert_eq!(
        value(&m, "berth_backup_last_size_bytes", &[("app", "ministack")]),
        created["backup"]["bytes"].as_f64()
    );
    let age = value(&m, "berth_backup_age_seconds", &[("app", "ministack")]).unwrap();
    assert!((0.0..120.0).contains(&age), "{age}");

    // Moved by a reconfigure, then closed.
    b.write_site(&format!(
        "{SITE}[metrics]\nlisten = \"127.0.0.1:{MOVED}\"\n"
    ));
    b.run(&["reconfigure"]).expect(0);
    wait_for("the endpoint moved", Duration::from_secs(20), || {
        get(METRICS, "/metrics").is_none() && get(MOVED, "/metrics").is_some()
    });
    assert_eq!(
        value(&scrape(MOVED), "berth_service_up", &app("app")),
        Some(1.0)
    );
    b.write_site(SITE);
    b.run(&["reconfigure"]).expect(0);
    wait_for("the endpoint closed", Duration::from_secs(20), || {
        get(MOVED, "/metrics").is_none()
    });
}
