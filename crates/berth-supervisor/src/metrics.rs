//! Metrics in Prometheus' text exposition format (0.0.4), served at `GET /metrics` on
//! the address the plan names (`metrics.listen`): what `berth status` shows, as
//! numbers, plus the last backup's age and size and the supervisor's own memory.
//!
//! The text is made at each scrape from the supervisor's state (nothing is kept
//! between scrapes, so an idle instance pays nothing), by [`render`], which is pure.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use berth_supervisor_protocol::{JobStatus, LastBackup, MetricsSpec, ServiceStatus};
use tokio::net::TcpListener;

use crate::say::say;
use crate::supervisor::Supervisor;

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value, escaped as the text format asks: `\`, `"` and newlines.
fn label(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// The code a service's last exit is reported as: its exit status, or 128 plus the
/// signal's number when a signal ended it (as shells report it).
fn exit_code(last_exit: &str) -> Option<i64> {
    if let Some(code) = last_exit.strip_prefix("exit ") {
        return code.parse().ok();
    }
    let name = last_exit.strip_prefix("signal ")?;
    let number = name.parse::<i32>().ok().or_else(|| {
        name.parse::<nix::sys::signal::Signal>()
            .ok()
            .map(|s| s as i32)
    })?;
    Some(128 + i64::from(number))
}

/// One metric family: its help and type lines, then one sample per `(labels, value)`.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
            .collect();
        let _ = writeln!(self.out, "{name}{{{}}} {value}", labels.join(","));
    }
}

/// The exposition text for the state given. `now_unix` is the scrape's time, `rss`
/// the supervisor's resident memory in bytes.
#[allow(clippy::too_many_lines)] // one block per family, in exposition order
pub fn render(
    spec: &MetricsSpec,
    services: &[ServiceStatus],
    jobs: &[JobStatus],
    last_backup: Option<&LastBackup>,
    now_unix: u64,
    rss: Option<u64>,
) -> String {
    let mut out = String::new();
    let mut f = Family { out: &mut out };
    let app = spec.app.as_str();
    let per_service = |f: &mut Family<'_>,
                       name: &str,
                       kind: &str,
                       help: &str,
                       value: &dyn Fn(&ServiceStatus) -> Option<String>| {
        f.head(name, kind, help);
        for s in services {
            if let Some(v) = value(s) {
                f.sample(name, &[("app", app), ("service", &s.name)], v);
            }
        }
    };
    per_service(
        &mut f,
        "berth_service_up",
        "gauge",
        "Whether the service's process is running (1) or not (0).",
        &|s| Some(u8::from(s.pid.is_some()).to_string()),
    );
    per_service(
        &mut f,
        "berth_service_ready",
        "gauge",
        "Whether the service's readiness probe last succeeded (1) or not (0).",
        &|s| Some(u8::from(s.ready).to_string()),
    );
    f.head(
        "berth_service_state",
        "gauge",
        "The service's state: 1 for the state it is in.",
    );
    for s in services {
        f.sample(
            "berth_service_state",
            &[
                ("app", app),
                ("service", &s.name),
                ("state", s.state.as_str()),
            ],
            1,
        );
    }
    per_service(
        &mut f,
        "berth_service_restarts_total",
        "counter",
        "Restarts the supervisor made after the service's process exited on its own.",
        &|s| Some(s.restarts.to_string()),
    );
    per_service(
        &mut f,
        "berth_service_uptime_seconds",
        "gauge",
        "Seconds since the service's current process started.",
        &|s| s.uptime_secs.map(|u| u.to_string()),
    );
    per_service(
        &mut f,
        "berth_service_ready_seconds",
        "gauge",
        "Seconds the current process took from its start to ready.",
        &|s| {
            s.ready_after_ms
                .map(|ms| format!("{}.{:03}", ms / 1000, ms % 1000))
        },
    );
    per_service(
        &mut f,
        "berth_service_memory_pss_bytes",
        "gauge",
        "Memory the service's processes take (proportional set size of its whole process group).",
        &|s| s.pss_bytes.map(|b| b.to_string()),
    );
    per_service(
        &mut f,
        "berth_service_last_exit_code",
        "gauge",
        "How the service's last process ended: its exit status, or 128 plus the signal's number.",
        &|s| {
            s.last_exit
                .as_deref()
                .and_then(exit_code)
                .map(|c| c.to_string())
        },
    );

    let per_job = |f: &mut Family<'_>,
                   name: &str,
                   kind: &str,
                   help: &str,
                   value: &dyn Fn(&JobStatus) -> Option<String>| {
        f.head(name, kind, help);
        for j in jobs {
            if let Some(v) = value(j) {
                f.sample(name, &[("app", app), ("job", &j.name)], v);
            }
        }
    };
    per_job(
        &mut f,
        "berth_job_runs_total",
        "counter",
        "Runs of the job since the supervisor started.",
        &|j| Some(j.runs.to_string()),
    );
    per_job(
        &mut f,
        "berth_job_failures_total",
        "counter",
        "Runs of the job that did not end with exit status 0 (timeouts included).",
        &|j| Some(j.failures.to_string()),
    );
    per_job(
        &mut f,
        "berth_job_last_run_timestamp_seconds",
        "gauge",
        "Unix time the job's last run ended.",
        &|j| j.last_run_unix.map(|t| t.to_string()),
    );
    per_job(
        &mut f,
        "berth_job_next_run_seconds",
        "gauge",
        "Seconds until the job's next run.",
        &|j| Some(j.next_run_in_secs.to_string()),
    );

    if let Some(b) = last_backup {
        f.head(
            "berth_backup_last_timestamp_seconds",
            "gauge",
            "Unix time the last backup was finished.",
        );
        f.sample(
            "berth_backup_last_timestamp_seconds",
            &[("app", app)],
            b.finished_unix,
        );
        f.head(
            "berth_backup_age_seconds",
            "gauge",
            "Seconds since the last backup was finished.",
        );
        f.sample(
            "berth_backup_age_seconds",
            &[("app", app)],
            now_unix.saturating_sub(b.finished_unix),
        );
        f.head(
            "berth_backup_last_size_bytes",
            "gauge",
            "Size of the last backup's archive.",
        );
        f.sample("berth_backup_last_size_bytes", &[("app", app)], b.bytes);
    }

    if !spec.app_endpoints.is_empty() {
        f.head(
            "berth_app_metrics_endpoint_info",
            "gauge",
            "The app's own metrics endpoints, by service (from the manifest).",
        );
        for (service, url) in &spec.app_endpoints {
            f.sample(
                "berth_app_metrics_endpoint_info",
                &[("app", app), ("service", service), ("url", url)],
                1,
            );
        }
    }

    if let Some(rss) = rss {
        f.head(
            "berth_supervisor_resident_memory_bytes",
            "gauge",
            "Resident memory of the supervisor process.",
        );
        f.sample(
            "berth_supervisor_resident_memory_bytes",
            &[("app", app)],
            rss,
        );
    }
    out
}

/// This process's resident memory, from `/proc/self/statm`.
fn resident_memory() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()?;
    Some(pages * u64::try_from(page).ok()?)
}

/// The last backup's record, when there is one that reads.
fn last_backup(spec: &MetricsSpec) -> Option<LastBackup> {
    let bytes = std::fs::read(&spec.last_backup).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The text of one scrape.
fn scrape(supervisor: &Supervisor, spec: &MetricsSpec) -> String {
    let (services, jobs) = supervisor.statuses();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    render(
        spec,
        &services,
        &jobs,
        last_backup(spec).as_ref(),
        now,
        resident_memory(),
    )
}

/// Serve `GET /metrics` wherever the plan in force says, for as long as the
/// supervisor runs: bound when the plan names an address, moved when an applied plan
/// names another, closed when it names none. An address that cannot be bound is said
/// in the supervisor's log and retried at the next plan.
pub(crate) async fn serve(supervisor: Arc<Supervisor>) {
    let mut specs = supervisor.metrics_spec();
    loop {
        let spec = specs.borrow_and_update().clone();
        let listener = match &spec {
            Some(spec) => match TcpListener::bind(&spec.listen).await {
                Ok(l) => {
                    say!("metrics: serving on http://{}/metrics", spec.listen);
                    Some(l)
                }
                Err(e) => {
                    say!("metrics: cannot listen on {}: {e}", spec.listen);
                    None
                }
            },
            None => None,
        };
        match (listener, spec) {
            (Some(listener), Some(spec)) => {
                let weak = Arc::downgrade(&supervisor);
                let spec = Arc::new(spec);
                let app = axum::Router::new().route(
                    "/metrics",
                    axum::routing::get(move || {
                        let weak = weak.clone();
                        let spec = Arc::clone(&spec);
                        async move {
                            let body = weak
                                .upgrade()
                                .map(|s| scrape(&s, &spec))
                                .unwrap_or_default();
                            ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], body)
                        }
                    }),
                );
                let mut changed = specs.clone();
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = changed.changed().await;
                    })
                    .await;
                if let Err(e) = served {
                    say!("metrics: {e}");
                }
            }
            _ => {
                if specs.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use berth_supervisor_protocol::{
        JobStatus, LastBackup, MetricsSpec, ServiceState, ServiceStatus,
    };

    use super::{exit_code, label, render};

    fn service(name: &str, state: ServiceState) -> ServiceStatus {
        ServiceStatus {
            name: name.to_owned(),
            state,
            pid: None,
            uptime_secs: None,
            restarts: 0,
            last_exit: None,
            ready: false,
            ready_after_ms: None,
            paused_since_unix: None,
            resume_in_ms: None,
            pss_bytes: None,
        }
    }

    #[test]
    fn exits_and_labels_are_written_as_prometheus_reads_them() {
        assert_eq!(exit_code("exit 0"), Some(0));
        assert_eq!(exit_code("exit 3"), Some(3));
        assert_eq!(exit_code("signal SIGKILL"), Some(137));
        assert_eq!(exit_code("signal 15"), Some(143));
        assert_eq!(exit_code("lost track of the process: x"), None);
        assert_eq!(label("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }

    /// Every family, with a service running and ready, one that crashed and one never
    /// started; a job that failed once; a backup two hours old.
    #[test]
    fn the_exposition_text() {
        let spec = MetricsSpec {
            listen: "127.0.0.1:9464".to_owned(),
            app: "netbox".to_owned(),
            last_backup: PathBuf::from("/p/state/last-backup.json"),
            app_endpoints: BTreeMap::from([(
                "web".to_owned(),
                "http://127.0.0.1:8001/metrics".to_owned(),
            )]),
        };
        let mut web = service("web", ServiceState::Ready);
        web.pid = Some(4242);
        web.uptime_secs = Some(3600);
        web.ready = true;
        web.ready_after_ms = Some(2_345);
        web.pss_bytes = Some(52_428_800);
        web.restarts = 2;
        web.last_exit = Some("signal SIGKILL".to_owned());
        let mut worker = service("worker", ServiceState::Backoff);
        worker.restarts = 5;
        worker.last_exit = Some("exit 1".to_owned());
        let idle = service("nginx", ServiceState::Stopped);
        let job = JobStatus {
            name: "berth-backup".to_owned(),
            next_run_in_secs: 600,
            last_run_unix: Some(1_700_000_000),
            last_result: Some("exit 1".to_owned()),
            runs: 3,
            failures: 1,
        };
        let backup = LastBackup {
            finished_unix: 1_700_000_000,
            bytes: 123_456_789,
            name: "netbox-20231114T221320Z.tar.zst".to_owned(),
        };
        insta::assert_snapshot!(render(
            &spec,
            &[web, worker, idle],
            &[job],
            Some(&backup),
            1_700_007_200,
            Some(8 << 20),
        ));
    }
}
