//! End-to-end tests: a real daemon (on a thread of this process), real `/bin/sh`
//! services, and the real client over the control socket.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use berth_layout::Paths;
use berth_layout::logs::current_in;
use berth_supervisor::{
    BackoffConfig, Client, DaemonConfig, SupervisorError, is_running, run_daemon,
};
use berth_supervisor_protocol::{
    JobSpec, JobStatus, Probe, Readiness, Request, Response, RestartPolicy, ServiceSpec,
    ServiceState, ServiceStatus, SupervisionPlan, Target,
};
use tempfile::TempDir;

const DEADLINE: Duration = Duration::from_secs(10);

/// A daemon running `run_daemon` on a background thread, shut down on drop.
struct Daemon {
    dir: TempDir,
    cfg: DaemonConfig,
    thread: Option<JoinHandle<Result<(), SupervisorError>>>,
}

/// The daemon's socket, pid file and log where an instance has them beneath `d`.
fn config_in(d: &Path, autostart: bool, backoff: BackoffConfig) -> DaemonConfig {
    let paths = Paths::unversioned(d);
    DaemonConfig {
        socket: paths.supervisor_socket(),
        plan_path: d.join("plan.json"),
        pid_file: paths.supervisor_pid(),
        log_file: paths.supervisor_log(),
        autostart,
        backoff,
    }
}

fn fast_backoff() -> BackoffConfig {
    BackoffConfig {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(5),
        reset_after: Duration::from_mins(1),
    }
}

impl Daemon {
    fn start(dir: TempDir, plan: &SupervisionPlan) -> Self {
        let cfg = config_in(dir.path(), false, fast_backoff());
        fs::write(&cfg.plan_path, serde_json::to_vec_pretty(plan).unwrap()).unwrap();
        let thread = {
            let cfg = cfg.clone();
            thread::spawn(move || run_daemon(cfg))
        };
        let daemon = Self {
            dir,
            cfg,
            thread: Some(thread),
        };
        wait_for("the control socket to answer", || {
            assert!(
                !daemon.thread.as_ref().unwrap().is_finished(),
                "the daemon thread ended early"
            );
            is_running(&daemon.cfg.socket)
        });
        daemon
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn request(&self, req: &Request) -> Response {
        Client::connect(&self.cfg.socket)
            .unwrap()
            .request(req)
            .unwrap()
    }

    fn ok(&self, req: &Request) {
        assert_eq!(self.request(req), Response::Ok, "request {req:?}");
    }

    /// Send `req` (a pause) and keep its connection open: the pause lasts as long.
    fn hold(&self, req: &Request) -> Client {
        let mut client = Client::connect(&self.cfg.socket).unwrap();
        assert_eq!(
            client.request(req).unwrap(),
            Response::Ok,
            "request {req:?}"
        );
        client
    }

    fn status(&self) -> (Vec<ServiceStatus>, Vec<JobStatus>) {
        match self.request(&Request::Status) {
            Response::Status {
                services,
                jobs,
                supervisor_pid,
            } => {
                assert_eq!(supervisor_pid, std::process::id());
                (services, jobs)
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }

    fn service(&self, name: &str) -> ServiceStatus {
        self.status()
            .0
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no service {name}"))
    }

    fn job(&self, name: &str) -> JobStatus {
        self.status()
            .1
            .into_iter()
            .find(|j| j.name == name)
            .unwrap_or_else(|| panic!("no job {name}"))
    }

    fn pid(&self, name: &str) -> u32 {
        self.service(name)
            .pid
            .unwrap_or_else(|| panic!("{name} has no pid"))
    }

    /// Ask for shutdown and wait for the daemon thread.
    fn shutdown(mut self) -> Result<(), SupervisorError> {
        self.ok(&Request::Shutdown);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            if let Ok(mut client) = Client::connect(&self.cfg.socket) {
                let _ = client.request(&Request::Shutdown);
            }
            let _ = thread.join();
        }
    }
}

/// Poll `cond` (every 20 ms) until it holds, or fail after [`DEADLINE`].
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn service(dir: &Path, name: &str, script: &str) -> ServiceSpec {
    ServiceSpec {
        name: name.to_owned(),
        argv: vec!["/bin/sh".into(), "-c".into(), script.to_owned()],
        env: BTreeMap::new(),
        cwd: Some(dir.to_path_buf()),
        user: None,
        depends_on: vec![],
        readiness: None,
        stop_signal: "SIGTERM".into(),
        stop_timeout: Duration::from_secs(2),
        reload_signal: None,
        restart: RestartPolicy::Always,
        log_dir: Paths::unversioned(dir).service_log_dir(name),
        log_max_bytes: 1 << 20,
        log_keep: 3,
    }
}

fn file_ready(path: &Path) -> Readiness {
    Readiness {
        probe: Probe::Command {
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("test -f {}", path.display()),
            ],
        },
        timeout: Duration::from_secs(5),
    }
}

fn plan(services: Vec<ServiceSpec>) -> SupervisionPlan {
    SupervisionPlan {
        services,
        jobs: vec![],
        metrics: None,
    }
}

/// A live (not zombie) process.
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().next() != Some("Z"))
        })
        .unwrap_or(false)
}

/// Live processes whose process group is `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.first() != Some(&"Z") && fields.get(2) == Some(&pgid.to_string().as_str())
        })
        .collect()
}

fn nanos(text: &str) -> u128 {
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a timestamp: {text:?}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn dependencies_are_ready_before_dependents_spawn() {
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().to_path_buf();
    let port = free_port();
    let mut db = service(
        d,
        "db",
        &format!(
            "exec python3 -c \"import socket,time; time.sleep(0.3); s=socket.socket(); \
             s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1',{port})); \
             f=open('db_listening','w'); f.write(str(time.time_ns())); f.close(); s.listen(); time.sleep(1000)\""
        ),
    );
    db.readiness = Some(Readiness {
        probe: Probe::Tcp {
            address: format!("127.0.0.1:{port}"),
        },
        timeout: Duration::from_secs(5),
    });
    let mut web = service(d, "web", "date +%s%N > web_spawned; exec sleep 1000");
    web.depends_on = vec!["db".into()];
    let mut never = service(d, "never", "exec sleep 1000");
    never.readiness = Some(Readiness {
        probe: Probe::Command {
            argv: vec!["/bin/false".into()],
        },
        timeout: Duration::from_millis(300),
    });
    let mut after_never = service(d, "after-never", "exec sleep 1000");
    after_never.depends_on = vec!["never".into()];
    let daemon = Daemon::start(dir, &plan(vec![web, db, never, after_never]));

    daemon.ok(&Request::Start {
        target: Target::One("web".into()),
    });
    // No probe: `web` is ready once spawned, so its marker may still be on its way.
    wait_for("web's marker", || {
        fs::read_to_string(daemon.path("web_spawned")).is_ok_and(|s| s.ends_with('\n'))
    });
    let listening = nanos(&fs::read_to_string(daemon.path("db_listening")).unwrap());
    let spawned = nanos(&fs::read_to_string(daemon.path("web_spawned")).unwrap());
    assert!(
        spawned > listening,
        "web spawned {spawned} before db listened {listening}"
    );
    assert_eq!(daemon.service("db").state, ServiceState::Ready);
    assert_eq!(daemon.service("web").state, ServiceState::Ready);

    // A dependency that never becomes ready fails the start, and its dependent never spawns.
    let started = Instant::now();
    let Response::Error { message } = daemon.request(&Request::Start {
        target: Target::One("after-never".into()),
    }) else {
        panic!("start should fail")
    };
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        message.contains("`never`") && message.contains("timed out"),
        "{message}"
    );
    assert_eq!(daemon.service("never").state, ServiceState::Failed);
    assert_eq!(daemon.service("after-never").state, ServiceState::Stopped);
    assert_eq!(daemon.service("after-never").pid, None);

    // Unknown names get a suggestion.
    let Response::Error { message } = daemon.request(&Request::Start {
        target: Target::One("wbe".into()),
    }) else {
        panic!("unknown service should fail")
    };
    assert_eq!(message, "Unknown service `wbe`; did you mean `web`?");
}

#[test]
fn crashing_service_backs_off_while_others_stay_up() {
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().to_path_buf();
    let crasher = service(d, "crasher", "date +%s%N >> starts; exit 1");
    let healthy = service(d, "healthy", "exec sleep 1000");
    let daemon = Daemon::start(dir, &plan(vec![crasher, healthy]));
    daemon.ok(&Request::Start {
        target: Target::All,
    });
    let healthy_pid = daemon.pid("healthy");

    wait_for("three restarts", || daemon.service("crasher").restarts >= 3);
    let crasher = daemon.service("crasher");
    assert_eq!(crasher.last_exit.as_deref(), Some("exit 1"));
    assert!(
        matches!(crasher.state, ServiceState::Backoff | ServiceState::Ready),
        "{crasher:?}"
    );

    // Gaps of about 100, 200, 400 ms: each longer than the one before.
    wait_for("four starts on record", || {
        fs::read_to_string(daemon.path("starts"))
            .unwrap_or_default()
            .lines()
            .count()
            >= 4
    });
    let starts: Vec<u128> = fs::read_to_string(daemon.path("starts"))
        .unwrap()
        .lines()
        .map(nanos)
        .collect();
    let gaps: Vec<u128> = starts
        .windows(2)
        .map(|w| (w[1] - w[0]) / 1_000_000)
        .collect();
    assert!(gaps[0] >= 90, "gaps {gaps:?}");
    assert!(gaps[1] > gaps[0] && gaps[2] > gaps[1], "gaps {gaps:?}");

    let healthy = daemon.service("healthy");
    assert_eq!(
        (healthy.state, healthy.pid, healthy.restarts),
        (ServiceState::Ready, Some(healthy_pid), 0)
    );

    // A stopped service stays stopped.
    daemon.ok(&Request::Stop {
        target: Target::One("crasher".into()),
    });
    let restarts = daemon.service("crasher").restarts;
    thread::sleep(Duration::from_millis(300));
    let crasher = daemon.service("crasher");
    assert_eq!(
        (crasher.state, crasher.restarts),
        (ServiceState::Stopped, restarts)
    );
}

#[test]
fn killed_service_is_restarted_with_a_new_pid() {
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().to_path_buf();
    let mut web = service(
        d,
        "web",
        "rm -f ready; sleep 0.1; touch ready; exec sleep 1000",
    );
    web.readiness = Some(file_ready(&d.join("ready")));
    let daemon = Daemon::start(dir, &plan(vec![web]));
    daemon.ok(&Request::Start {
        target: Target::All,
    });
    let old = daemon.pid("web");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old.try_into().unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();

    wait_for("a new ready process", || {
        let web = daemon.service("web");
        web.state == ServiceState::Ready && web.pid.is_some_and(|pid| pid != old)
    });
    let web = daemon.service("web");
    assert_eq!(web.last_exit.as_deref(), Some("signal SIGKILL"));
    assert_eq!(web.restarts, 1);
    assert!(web.ready);
    assert!(!alive(old));
}

#[test]
fn a_restart_that_never_gets_ready_is_retried_with_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().to_path_buf();
    // The second start (the restart after the kill below) never becomes ready; the third does.
    let mut web = service(
        d,
        "web",
        "n=$(cat starts 2>/dev/null || echo 0); n=$((n+1)); echo $n > starts; \
         [ $n -ne 2 ] && touch ready; exec sleep 1000",
    );
    web.readiness = Some(Readiness {
        timeout: Duration::from_millis(500),
        ..file_ready(&d.join("ready"))
    });
    let daemon = Daemon::start(dir, &plan(vec![web]));
    daemon.ok(&Request::Start {
        target: Target::All,
    });
    let first = daemon.pid("web");
    // Gone before the restart, so its probe cannot see the first start's file.
    fs::remove_file(daemon.path("ready")).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.try_into().unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();

    wait_for("the third start to be ready", || {
        fs::read_to_string(daemon.path("starts")).is_ok_and(|n| n.trim() == "3")
            && daemon.service("web").state == ServiceState::Ready
    });
    let web = daemon.service("web");
    assert!(web.ready);
    assert!(web.restarts >= 2, "restarts: {}", web.restarts);
    assert!(!alive(first));
}

#[test]
fn a_readiness_command_knows_the_pid_it_probes() {
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().to_path_buf();
    let mut web = service(d, "web", "echo $$ > main.pid; exec sleep 1000");
    web.readiness = Some(Readiness {
        probe: Probe::Command {
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                "test \"$BERTH_MAIN_PID\" = \"$(cat main.pid)\"".into(),
            ],
        },
        timeout: Duration::from_secs(5),
    });
    let daemon = Daemon::start(dir, &plan(vec![web]));
    daemon.ok(&Request::Start {
        target: Target::All,
    });
    let web = daemon.service("web");
    assert!(web.ready);
    assert_eq!(Some(read_pid(&daemon.path("main.pid"))), web.pid);
}

#[test]
fn stop_escalates_to_sigkill_after_the_stop_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().to_path_buf();
    let mut stubborn = service(
        d,
        "stubborn",
        "trap '' TERM; touch ready; while :; do sleep 0.05; done",
    );
    stubborn.readiness = Some(file_ready(&d.join("ready")));
    stubborn.stop_timeout = Duration::from_millis(300);
    let daemon = Daemon::start(dir, &plan(vec![stubborn]));
    daemon.ok(&Request::Start {
        target: Target::All,
    });
    let pid = daemon.pid("stubborn");

    let started = Instant::now();
    daemon.ok(&Request::Stop {
        target: Target::One("stubborn".into()),
    });
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "stop took only {took:?}"
    );
    assert!(took < Duration::from_millis(2300), "stop took {took:?}");
    let status = daemon.service("stubborn");
    assert_eq!((status.state, status.pid), (ServiceState::Stopped, None));
    assert_eq!(status.last_exit.as_deref(), Some("signal SIGKILL"));
    assert!(group_members(pid).is_empty());
}

#[test]
fn stop_reaches_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().to_path_buf();
    let mut forker = service(d, "forker", "sleep 1000 & echo $! > child.pid; wait");
    forker.readiness = Some(file_ready(&d.join("child.pid")));
    let mut orphaner = service(
        d,
        "orphaner",
        "sleep 1000 & echo $! > orphan.pid; sleep 0.3; exit 3",
    );
    orphaner.readiness = Some(file_ready(&d.join("orphan.pid")));
    orphaner.restart = RestartPolicy::Never;
    let daemon = Daemon::start(dir, &plan(vec![forker, orphaner]));
    daemon.ok(&Request::Start {
        target: Target::All,
    });
    let pgid = daemon.pid("forker");
    wait_for("the child pid", || {
        fs::read_to_string(daemon.path("child.pid")).is_ok_and(|s| s.ends_with('\n'))
    });
    let child: u32 = fs::read_to_string(daemon.path("child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(child));
    assert_eq!(group_members(pgid).len(), 2, "sh and its sleep");

    daemon.ok(&Request::Stop {
        target: Target::One("forker".into()),
    });
    assert!(
        group_members(pgid).is_empty(),
        "left behind: {:?}",
        group_members(pgid)
    );
    assert!(!alive(child));

    // A main process that dies on its own takes its leftovers with it.
    let orphaner_pgid = daemon.service("orphaner").pid;
    wait_for("the orphaner to fail", || {
        daemon.service("orphaner").state == ServiceState::Failed
    });
    assert_eq!(
        daemon.service("orphaner").last_exit.as_deref(),
        Some("exit 3")
    );
    let orphan: u32 = fs::read_to_string(daemon.path("orphan.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_for("the orphan to be killed", || !alive(orphan));
    if let Some(pgid) = orphaner_pgid {
        assert!(group_members(pgid).is_empty());
    }
}

#[test]
fn logs_are_rotated_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().to_path_buf();
    let mut chatty = service(
        d,
        "chatty",
        "echo starting >&2; i=0; while [ $i -lt 1500 ]; do echo \"line $i of some chatty output\"; i=$((i+1)); done; \
         exec sleep 1000",
    );
    chatty.log_max_bytes = 4096;
    chatty.log_keep = 3;
    let log_dir = chatty.log_dir.clone();
    let daemon = Daemon::start(dir, &plan(vec![chatty]));
    daemon.ok(&Request::Start {
        target: Target::All,
    });
    wait_for("all output", || {
        fs::read_to_string(current_in(&log_dir))
            .is_ok_and(|s| s.contains("line 1499 of some chatty output\n"))
    });

    let mut names: Vec<String> = fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["current", "current.1", "current.2", "current.3"]);
    for name in &names {
        let len = fs::metadata(log_dir.join(name)).unwrap().len();
        assert!(len <= 4096 + 40, "{name} has {len} bytes");
    }
    let newest = fs::read_to_string(current_in(&log_dir)).unwrap();
    assert!(newest.contains("line 1499 of some chatty output\n"));
    let kept: String = names
        .iter()
        .map(|name| fs::read_to_string(log_dir.join(name)).unwrap())
        .collect();
    assert!(
        !kept.contains("line 0 of"),
        "the oldest output should have been dropped"
    );
    drop(daemon);
}

#[test]
fn apply_restarts_changed_reloads_asked_and_stops_removed() {
    // As under `nohup`: whoever started the supervisor ignores SIGHUP. Services must
    // still get their reload signal (and a shell must be able to trap it).
    // SAFETY: setting a signal's disposition; nothing in this process uses SIGHUP.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().to_path_buf();
    let mut a = service(d, "a", "exec sleep 1000");
    a.env.insert("SETTING".into(), "1".into());
    let b = service(d, "b", "exec sleep 1000");
    let mut c = service(
        d,
        "c",
        "trap 'echo reloaded >> hup_marker' HUP; touch c_ready; while :; do sleep 0.05; done",
    );
    c.readiness = Some(file_ready(&d.join("c_ready")));
    c.reload_signal = Some("SIGHUP".into());
    let gone = service(d, "gone", "exec sleep 1000");
    let daemon = Daemon::start(dir, &plan(vec![a.clone(), b.clone(), c.clone(), gone]));
    daemon.ok(&Request::Start {
        target: Target::All,
    });
    let (pa, pb, pc, pgone) = (
        daemon.pid("a"),
        daemon.pid("b"),
        daemon.pid("c"),
        daemon.pid("gone"),
    );

    a.env.insert("SETTING".into(), "2".into());
    let answer = daemon.request(&Request::Apply {
        plan: plan(vec![a, b, c]),
        restart: vec![],
        reload: vec!["c".into()],
    });
    assert_eq!(
        answer,
        Response::Applied {
            restarted: vec!["a".into()],
            reloaded: vec!["c".into()],
            removed: vec!["gone".into()]
        }
    );
    let (services, _) = daemon.status();
    assert_eq!(
        services.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    assert_ne!(daemon.pid("a"), pa);
    assert_eq!(daemon.service("a").state, ServiceState::Ready);
    assert_eq!(daemon.pid("b"), pb);
    assert_eq!(daemon.pid("c"), pc);
    assert!(!alive(pgone));
    wait_for("the reload marker", || daemon.path("hup_marker").exists());
    let environ = fs::read(format!("/proc/{}/environ", daemon.pid("a"))).unwrap();
    assert!(environ.split(|b| *b == 0).any(|kv| kv == b"SETTING=2"));

    // An explicit restart of an unchanged service.
    let answer = daemon.request(&Request::Apply {
        plan: plan(vec![service(d, "b", "exec sleep 1000")]),
        restart: vec!["b".into()],
        reload: vec![],
    });
    let Response::Applied {
        restarted, removed, ..
    } = answer
    else {
        panic!("{answer:?}")
    };
    assert_eq!(restarted, ["b"]);
    assert_eq!(removed, ["a", "c"]);
    assert_ne!(daemon.pid("b"), pb);
}

#[test]
fn jobs_run_periodically_and_skip_when_a_requirement_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().to_path_buf();
    let down = service(d, "down", "exec sleep 1000");
    let job = |name: &str, script: &str| JobSpec {
        name: name.to_owned(),
        argv: vec!["/bin/sh".into(), "-c".into(), script.to_owned()],
        env: BTreeMap::new(),
        cwd: Some(d.clone()),
        user: None,
        every: Duration::from_millis(200),
        timeout: Duration::from_secs(5),
        requires: vec![],
        log_dir: Paths::unversioned(d).job_log_dir(name),
    };
    let tick = job("tick", "echo tick; echo $$ >> tick_runs");
    let mut needs_down = job("needs-down", "touch should_not_run");
    needs_down.requires = vec!["down".into()];
    let mut slow = job("slow", "echo $$ >> slow_running; sleep 30");
    slow.timeout = Duration::from_millis(200);
    let tick_log = current_in(&tick.log_dir);
    let daemon = Daemon::start(
        dir,
        &SupervisionPlan {
            services: vec![down],
            jobs: vec![tick, needs_down, slow],
            metrics: None,
        },
    );

    wait_for("three runs of `tick`", || daemon.job("tick").runs >= 3);
    let tick = daemon.job("tick");
    assert_eq!(tick.last_result.as_deref(), Some("exit 0"));
    assert!(tick.last_run_unix.is_some());
    assert!(
        fs::read_to_string(&tick_log)
            .unwrap()
            .starts_with("tick\ntick\n")
    );

    let needs_down = daemon.job("needs-down");
    assert_eq!(
        needs_down.last_result.as_deref(),
        Some("skipped: down not ready")
    );
    assert_eq!(needs_down.runs, 0);
    assert!(!daemon.path("should_not_run").exists());

    wait_for("a timed-out run", || {
        daemon.job("slow").last_result.as_deref() == Some("timeout")
    });
    let timed_out: u32 = fs::read_to_string(daemon.path("slow_running"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    wait_for("the first slow run's group to be gone", || {
        group_members(timed_out).is_empty()
    });
}

#[test]
fn socket_is_private_single_and_removed_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().to_path_buf();
    // A stale socket left by a dead supervisor is replaced.
    let stale = Paths::unversioned(d).supervisor_socket();
    fs::create_dir_all(stale.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let web = service(d, "web", "exec sleep 1000");
    let mut worker = service(d, "worker", "exec sleep 1000");
    worker.depends_on = vec!["web".into()];
    let daemon = Daemon::start(dir, &plan(vec![web, worker]));
    let socket = daemon.cfg.socket.clone();
    let pid_file = daemon.cfg.pid_file.clone();
    let mode = fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        fs::read_to_string(&pid_file).unwrap().trim(),
        std::process::id().to_string()
    );

    let second = run_daemon(daemon.cfg.clone()).unwrap_err();
    assert!(
        matches!(second, SupervisorError::AlreadyRunning { .. }),
        "{second:?}"
    );
    assert_eq!(
        second.to_string(),
        format!(
            "Another supervisor is already running on control socket `{}`",
            socket.display()
        )
    );
    assert!(
        is_running(&socket),
        "the refused second daemon must not disturb the first"
    );

    daemon.ok(&Request::Start {
        target: Target::All,
    });
    let pids = [daemon.pid("web"), daemon.pid("worker")];
    daemon.shutdown().unwrap();
    assert!(pids.iter().all(|pid| !alive(*pid)));
    assert!(!socket.exists());
    assert!(!pid_file.exists());
    assert!(!is_running(&socket));
}

#[test]
fn invalid_plans_and_unwritable_pid_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().to_path_buf();
    let mut a = service(d, "a", "exec sleep 1000");
    a.depends_on = vec!["b".into()];
    let mut b = service(d, "b", "exec sleep 1000");
    b.depends_on = vec!["a".into()];
    let plan_path = d.join("plan.json");
    fs::write(&plan_path, serde_json::to_vec(&plan(vec![a, b])).unwrap()).unwrap();
    let cfg = config_in(d, true, BackoffConfig::default());
    let err = run_daemon(cfg.clone()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "Supervision plan `{}` is invalid: services depend on each other in a cycle: a -> b -> a",
            plan_path.display()
        )
    );
    assert!(!cfg.socket.exists());
    assert!(!cfg.pid_file.exists());

    // A pid file that cannot be written: refused, and the socket is not left behind.
    let web = service(d, "web", "exec sleep 1000");
    fs::write(&plan_path, serde_json::to_vec(&plan(vec![web])).unwrap()).unwrap();
    fs::write(d.join("not-a-dir"), "").unwrap();
    let cfg = DaemonConfig {
        pid_file: d.join("not-a-dir/pid"),
        ..cfg
    };
    let err = run_daemon(cfg.clone()).unwrap_err();
    assert!(matches!(err, SupervisorError::PidFile { .. }), "{err:?}");
    assert!(!cfg.socket.exists());
    assert!(!is_running(&cfg.socket));
}

#[test]
fn autostart_and_restart_requests() {
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().to_path_buf();
    let mut db = service(
        d,
        "db",
        "rm -f db_ready; sleep 0.1; touch db_ready; exec sleep 1000",
    );
    db.readiness = Some(file_ready(&d.join("db_ready")));
    let mut web = service(d, "web", "exec sleep 1000");
    web.depends_on = vec!["db".into()];
    fs::write(
        d.join("plan.json"),
        serde_json::to_vec(&plan(vec![db, web])).unwrap(),
    )
    .unwrap();
    let cfg = config_in(d, true, fast_backoff());
    let thread = {
        let cfg = cfg.clone();
        thread::spawn(move || run_daemon(cfg))
    };
    wait_for("the socket", || is_running(&cfg.socket));
    let mut client = Client::connect(&cfg.socket).unwrap();
    let status = |client: &mut Client| match client.request(&Request::Status).unwrap() {
        Response::Status { services, .. } => services,
        other => panic!("{other:?}"),
    };
    wait_for("autostart", || {
        status(&mut client)
            .iter()
            .all(|s| s.state == ServiceState::Ready)
    });
    let before = status(&mut client);

    // Restarting `db` leaves `web` alone; stopping `db` stops `web` first.
    assert_eq!(
        client
            .request(&Request::Restart {
                target: Target::One("db".into())
            })
            .unwrap(),
        Response::Ok
    );
    let after = status(&mut client);
    assert_ne!(after[0].pid, before[0].pid);
    assert_eq!(
        after[0].restarts, 0,
        "a requested restart is not a crash restart"
    );
    assert_eq!(after[1].pid, before[1].pid);
    assert_eq!(
        client
            .request(&Request::Stop {
                target: Target::One("db".into())
            })
            .unwrap(),
        Response::Ok
    );
    assert!(
        status(&mut client)
            .iter()
            .all(|s| s.state == ServiceState::Stopped && s.pid.is_none())
    );

    // A bad request line gets an error, and the connection keeps working.
    let mut raw = std::os::unix::net::UnixStream::connect(&cfg.socket).unwrap();
    std::io::Write::write_all(&mut raw, b"{\"op\":\"explode\"}\n").unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(&raw), &mut line).unwrap();
    assert!(
        line.contains("\"result\":\"error\"") && line.contains("Failed to parse the request"),
        "{line}"
    );

    assert_eq!(client.request(&Request::Shutdown).unwrap(), Response::Ok);
    thread.join().unwrap().unwrap();
}

/// The state letter of a process (`S`, `R`, `T` for stopped, ...).
fn proc_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// Stopped by `SIGSTOP`: state `T`, or `D` for a shell the stop caught between
/// vfork and exec, which waits on its stopped child until continued.
fn frozen(pid: u32) -> bool {
    match proc_state(pid) {
        Some('T') => true,
        Some('D') => fs::read_dir("/proc").unwrap().flatten().any(|entry| {
            let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
                return false;
            };
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.first() == Some(&"T") && fields.get(1) == Some(&pid.to_string().as_str())
        }),
        _ => false,
    }
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}

fn read_pid(path: &Path) -> u32 {
    fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

fn pause(target: Target, timeout_ms: u64) -> Request {
    Request::Pause { target, timeout_ms }
}

fn one(name: &str) -> Target {
    Target::One(name.to_owned())
}

/// A parent shell and a child shell in one process group, each appending a counter
/// to `counter` every 50 ms.
fn writer(dir: &Path) -> ServiceSpec {
    let mut writer = service(
        dir,
        "writer",
        "tick() { i=0; while :; do i=$((i+1)); echo \"$1 $i\" >> counter; sleep 0.05; done; }; \
         tick child & echo $! > child.pid; tick parent",
    );
    writer.readiness = Some(file_ready(&dir.join("child.pid")));
    writer
}

/// Start `writer` and return the pids of its parent and child once both have written.
fn start_writer(daemon: &Daemon) -> (u32, u32) {
    daemon.ok(&Request::Start {
        target: one("writer"),
    });
    wait_for("the child pid", || {
        fs::read_to_string(daemon.path("child.pid")).is_ok_and(|s| s.ends_with('\n'))
    });
    wait_for("both to write", || {
        let text = fs::read_to_string(daemon.path("counter")).unwrap_or_default();
        text.contains("parent 2\n") && text.contains("child 2\n")
    });
    (daemon.pid("writer"), read_pid(&daemon.path("child.pid")))
}

#[test]
fn pause_freezes_the_whole_process_group_until_resume() {
    let dir = tempfile::tempdir().unwrap();
    let w = writer(dir.path());
    let daemon = Daemon::start(dir, &plan(vec![w]));
    let (parent, child) = start_writer(&daemon);
    let counter = daemon.path("counter");

    // One name in a list: the shape a backup uses for its writers.
    let _first = daemon.hold(&pause(Target::Many(vec!["writer".into()]), 10_000));
    // The answer comes once the group is seen stopped.
    assert!(
        frozen(parent) && frozen(child),
        "states {:?} {:?}",
        proc_state(parent),
        proc_state(child)
    );
    let status = daemon.service("writer");
    assert_eq!(
        (status.state, status.pid, status.ready),
        (ServiceState::Paused, Some(parent), true)
    );
    assert!(status.paused_since_unix.is_some());
    assert!(
        status
            .resume_in_ms
            .is_some_and(|ms| (5_000..=10_000).contains(&ms)),
        "{status:?}"
    );
    let length = file_len(&counter);
    thread::sleep(Duration::from_millis(200));
    assert_eq!(file_len(&counter), length, "a paused service wrote");

    // Pausing again moves the deadline later.
    let _second = daemon.hold(&pause(one("writer"), 60_000));
    assert!(
        daemon
            .service("writer")
            .resume_in_ms
            .is_some_and(|ms| ms > 10_000)
    );

    daemon.ok(&Request::Resume {
        target: one("writer"),
    });
    wait_for("the counter to grow again", || file_len(&counter) > length);
    assert!(!frozen(parent) && !frozen(child));
    // Neither crashed nor restarted: the same processes carry on.
    let status = daemon.service("writer");
    assert_eq!(
        (
            status.state,
            status.pid,
            status.restarts,
            status.last_exit,
            status.paused_since_unix,
            status.resume_in_ms
        ),
        (ServiceState::Ready, Some(parent), 0, None, None, None)
    );
    assert!(alive(child));
    // Resuming what is not paused is fine (a backup's cleanup resumes everything).
    daemon.ok(&Request::Resume {
        target: Target::All,
    });
    assert_eq!(daemon.service("writer").state, ServiceState::Ready);
}

#[test]
fn a_paused_service_resumes_by_itself_after_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let w = writer(dir.path());
    let daemon = Daemon::start(dir, &plan(vec![w]));
    let (parent, child) = start_writer(&daemon);
    let counter = daemon.path("counter");

    let asked = Instant::now();
    // The connection stays open: only the deadline can end this pause.
    let _held = daemon.hold(&pause(one("writer"), 300));
    let (state, child_frozen) = (daemon.service("writer").state, frozen(child));
    let length = file_len(&counter);
    // Read before the deadline (timed after reading, so a stalled machine cannot fool it).
    if asked.elapsed() < Duration::from_millis(300) {
        assert_eq!((state, child_frozen), (ServiceState::Paused, true));
    }

    // Nobody resumes it: the supervisor does.
    wait_for("the automatic resume", || {
        daemon.service("writer").state == ServiceState::Ready
    });
    let took = asked.elapsed();
    assert!(took >= Duration::from_millis(300), "resumed after {took:?}");
    assert!(took < Duration::from_secs(2), "resumed after {took:?}");
    wait_for("the counter to grow again", || file_len(&counter) > length);
    assert!(!frozen(parent) && !frozen(child));
    assert_eq!(daemon.service("writer").pid, Some(parent));
}

/// Poll `cond` every 10 ms; fail unless it holds within `limit`.
fn wait_within(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let since = Instant::now();
    while !cond() {
        assert!(since.elapsed() < limit, "{what} took longer than {limit:?}");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_pause_ends_when_the_connection_that_asked_for_it_closes() {
    let dir = tempfile::tempdir().unwrap();
    let w = writer(dir.path());
    let daemon = Daemon::start(dir, &plan(vec![w]));
    let (parent, child) = start_writer(&daemon);

    // A deadline far away, as a backup sets it: only the connection can end the pause.
    let paused = Client::connect(&daemon.cfg.socket)
        .unwrap()
        .pause(one("writer"), Duration::from_mins(30))
        .unwrap();
    assert_eq!(paused.target(), &one("writer"));
    assert!(frozen(parent) && frozen(child));
    assert_eq!(daemon.service("writer").state, ServiceState::Paused);

    // The caller goes away without a word (as when it is killed).
    drop(paused);
    wait_within(
        "the resume after the connection closed",
        Duration::from_secs(1),
        || !frozen(parent) && !frozen(child),
    );
    let status = daemon.service("writer");
    assert_eq!(
        (
            status.state,
            status.pid,
            status.paused_since_unix,
            status.restarts
        ),
        (ServiceState::Ready, Some(parent), None, 0)
    );
}

#[test]
fn a_pause_held_by_two_connections_lasts_until_both_close() {
    let dir = tempfile::tempdir().unwrap();
    let w = writer(dir.path());
    let daemon = Daemon::start(dir, &plan(vec![w]));
    let (parent, child) = start_writer(&daemon);

    let first = daemon.hold(&pause(one("writer"), 60_000));
    let second = daemon.hold(&pause(Target::All, 60_000));
    drop(first);
    // Nothing to wait for but time: the second connection still holds the pause.
    thread::sleep(Duration::from_millis(300));
    assert!(frozen(parent) && frozen(child));
    assert_eq!(daemon.service("writer").state, ServiceState::Paused);

    drop(second);
    wait_within(
        "the resume after the last holder closed",
        Duration::from_secs(1),
        || !frozen(parent) && !frozen(child),
    );
    assert_eq!(daemon.service("writer").state, ServiceState::Ready);

    // A pause resumed on its own connection answers, and the next pause starts afresh.
    let paused = Client::connect(&daemon.cfg.socket)
        .unwrap()
        .pause(one("writer"), Duration::from_mins(1))
        .unwrap();
    assert!(frozen(parent));
    paused.resume().unwrap();
    assert!(!frozen(parent) && !frozen(child));
    assert_eq!(daemon.service("writer").state, ServiceState::Ready);

    // A refused pause is an error naming the supervisor's reason.
    let err = Client::connect(&daemon.cfg.socket)
        .unwrap()
        .pause(one("nope"), Duration::from_mins(1))
        .unwrap_err();
    assert!(
        matches!(&err, SupervisorError::Refused { message, .. } if message == "Unknown service `nope`"),
        "{err:?}"
    );
}

#[test]
fn stop_restart_and_shutdown_of_a_paused_service_use_its_stop_signal() {
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().to_path_buf();
    let mut graceful = service(
        d,
        "graceful",
        "trap 'echo $$ >> got_term; exit 0' TERM; touch ready; while :; do sleep 0.05; done",
    );
    graceful.readiness = Some(file_ready(&d.join("ready")));
    // Long enough that an escalation to SIGKILL would show in the timings.
    graceful.stop_timeout = Duration::from_secs(5);
    let daemon = Daemon::start(dir, &plan(vec![graceful]));
    let terms = || fs::read_to_string(daemon.path("got_term")).unwrap_or_default();
    let quick = Duration::from_secs(1);

    daemon.ok(&Request::Start {
        target: Target::All,
    });
    let first = daemon.pid("graceful");
    // The next process is ready only once its trap is set.
    let unready = || fs::remove_file(daemon.path("ready")).unwrap();
    unready();
    let _held = daemon.hold(&pause(Target::All, 10_000));
    let asked = Instant::now();
    daemon.ok(&Request::Restart {
        target: one("graceful"),
    });
    assert!(
        asked.elapsed() < quick,
        "restart took {:?}",
        asked.elapsed()
    );
    assert_eq!(terms(), format!("{first}\n"));
    let status = daemon.service("graceful");
    assert_eq!(
        (status.state, status.last_exit.as_deref(), status.restarts),
        (ServiceState::Ready, Some("exit 0"), 0)
    );
    let second = status.pid.unwrap();
    assert_ne!(second, first);

    let _held = daemon.hold(&pause(Target::All, 10_000));
    let asked = Instant::now();
    daemon.ok(&Request::Stop {
        target: one("graceful"),
    });
    assert!(asked.elapsed() < quick, "stop took {:?}", asked.elapsed());
    assert_eq!(terms(), format!("{first}\n{second}\n"));
    let status = daemon.service("graceful");
    assert_eq!(
        (status.state, status.pid, status.last_exit.as_deref()),
        (ServiceState::Stopped, None, Some("exit 0"))
    );
    assert!(group_members(second).is_empty());

    unready();
    daemon.ok(&Request::Start {
        target: Target::All,
    });
    let third = daemon.pid("graceful");
    let _held = daemon.hold(&pause(Target::All, 10_000));
    let asked = Instant::now();
    // `Shutdown` answers once every service is stopped.
    daemon.ok(&Request::Shutdown);
    assert!(
        asked.elapsed() < quick,
        "shutdown took {:?}",
        asked.elapsed()
    );
    assert_eq!(terms(), format!("{first}\n{second}\n{third}\n"));
    assert!(!alive(third));
}

#[test]
fn pausing_an_unknown_or_stopped_service_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().to_path_buf();
    let up = service(d, "up", "exec sleep 1000");
    let down = service(d, "down", "exec sleep 1000");
    let daemon = Daemon::start(dir, &plan(vec![up, down]));
    daemon.ok(&Request::Start { target: one("up") });
    let pid = daemon.pid("up");
    let error = |req: Request| match daemon.request(&req) {
        Response::Error { message } => message,
        other => panic!("{req:?} answered {other:?}"),
    };

    assert_eq!(
        error(pause(one("upp"), 1_000)),
        "Unknown service `upp`; did you mean `up`?"
    );
    assert_eq!(
        error(pause(one("down"), 1_000)),
        "Failed to pause service `down`: it is not running (state `stopped`)"
    );
    assert_eq!(
        error(pause(Target::Many(vec!["up".into(), "nope".into()]), 1_000)),
        "Unknown service `nope`"
    );
    assert!(
        error(pause(one("up"), 0)).contains("`timeout_ms` must be at least 1"),
        "a pause without a deadline is refused"
    );
    assert_eq!(daemon.service("up").state, ServiceState::Ready);

    // All or nothing: `up` was paused by the request, and is resumed when `down` fails.
    assert_eq!(
        error(pause(
            Target::Many(vec!["up".into(), "down".into()]),
            10_000
        )),
        "Failed to pause service `down`: it is not running (state `stopped`); \
         resumed the services this request had paused (up)"
    );
    let status = daemon.service("up");
    assert_eq!(
        (status.state, status.paused_since_unix),
        (ServiceState::Ready, None)
    );
    assert_ne!(proc_state(pid), Some('T'));

    // `all` pauses what runs and skips what is stopped.
    let _held = daemon.hold(&pause(Target::All, 10_000));
    assert_eq!(daemon.service("up").state, ServiceState::Paused);
    assert_eq!(proc_state(pid), Some('T'));
    assert_eq!(daemon.service("down").state, ServiceState::Stopped);
    assert_eq!(
        error(Request::Resume {
            target: one("nope")
        }),
        "Unknown service `nope`"
    );
    daemon.ok(&Request::Resume {
        target: Target::Many(vec!["down".into(), "up".into()]),
    });
    assert_eq!(daemon.service("up").state, ServiceState::Ready);
    assert_ne!(proc_state(pid), Some('T'));
}

#[test]
fn a_service_paused_while_starting_is_not_probed_until_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().to_path_buf();
    let mut slow = service(d, "slow", "exec sleep 1000");
    slow.readiness = Some(Readiness {
        probe: Probe::Command {
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo probe >> probes; test -f ready".into(),
            ],
        },
        timeout: Duration::from_secs(5),
    });
    let daemon = Daemon::start(dir, &plan(vec![slow]));
    let socket = daemon.cfg.socket.clone();
    let start = thread::spawn(move || {
        Client::connect(&socket).unwrap().request(&Request::Start {
            target: one("slow"),
        })
    });
    let probes = || {
        fs::read_to_string(daemon.path("probes"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    wait_for("a first probe", || probes() >= 1);

    let _held = daemon.hold(&pause(one("slow"), 10_000));
    assert_eq!(daemon.service("slow").state, ServiceState::Paused);
    // Let a probe that was under way finish dying, then watch: probes run every
    // 50 to 200 ms while starting, and none should now.
    thread::sleep(Duration::from_millis(50));
    let seen = probes();
    thread::sleep(Duration::from_millis(300));
    assert_eq!(probes(), seen, "a paused service was probed");
    assert!(!start.is_finished(), "start answered before readiness");

    fs::write(daemon.path("ready"), "").unwrap();
    daemon.ok(&Request::Resume {
        target: one("slow"),
    });
    assert_eq!(start.join().unwrap().unwrap(), Response::Ok);
    let status = daemon.service("slow");
    assert_eq!((status.state, status.ready), (ServiceState::Ready, true));
    assert!(probes() > seen);
}

/// Run a tiny control client as `nobody` (only possible as root): it connects to
/// `socket`, sends one `Status` request and prints the connect error or the answer line.
/// `None` when not root or when there is no `nobody` or `python3` to do it with.
#[allow(clippy::print_stderr)] // a skipped test says why
fn as_nobody_request(socket: &Path) -> Option<String> {
    use std::os::unix::process::CommandExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: switching to `nobody` needs root");
        return None;
    }
    let Some(nobody) = nix::unistd::User::from_name("nobody").ok().flatten() else {
        eprintln!("skipped: there is no user `nobody`");
        return None;
    };
    let python = Path::new("/usr/bin/python3");
    if !python.exists() {
        eprintln!("skipped: no /usr/bin/python3 to act as the other user's client");
        return None;
    }
    let request = serde_json::to_string(&Request::Status).unwrap();
    let script = r"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print('connect failed: errno', e.errno)
    sys.exit(0)
s.sendall(sys.argv[2].encode() + b'\n')
print('answer:', s.makefile().readline().strip())
";
    let out = std::process::Command::new(python)
        .args(["-I", "-c", script])
        .arg(socket)
        .arg(request)
        .uid(nobody.uid.as_raw())
        .gid(nobody.gid.as_raw())
        .env_clear()
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

/// The control socket is bound 0600 (it used to be bound with the default mode, then
/// chmodded: in between any local user could connect and stop every service).
#[test]
fn the_control_socket_is_never_open_to_other_users() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let web = service(&d, "web", "exec sleep 1000");
    let daemon = Daemon::start(dir, &plan(vec![web]));
    let mode = fs::symlink_metadata(&daemon.cfg.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // No staging directory is left next to it.
    let names: Vec<String> = fs::read_dir(daemon.path("run"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with(".supervisor-bind")),
        "{names:?}"
    );
    // Let `nobody` reach the socket's directory: the socket's own mode keeps it out.
    for p in [daemon.path(""), daemon.path("run")] {
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    if let Some(out) = as_nobody_request(&daemon.cfg.socket) {
        assert!(out.starts_with("connect failed: errno 13"), "{out}");
    }
}

/// Every connection's peer credentials are checked: with the socket opened to everyone
/// (by mistake, or by someone who could change its mode), a user other than root and
/// the supervisor's own is still refused (there was no check at all).
#[test]
fn a_peer_that_is_not_root_or_the_supervisor_user_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let web = service(&d, "web", "exec sleep 1000");
    let daemon = Daemon::start(dir, &plan(vec![web]));
    for p in [daemon.path(""), daemon.path("run")] {
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::set_permissions(&daemon.cfg.socket, fs::Permissions::from_mode(0o666)).unwrap();
    if let Some(out) = as_nobody_request(&daemon.cfg.socket) {
        assert!(out.starts_with("answer: "), "{out}");
        assert!(out.contains("Permission denied"), "{out}");
        assert!(!out.contains("\"status\""), "{out}");
    }
    // Root still gets its answers.
    assert!(matches!(
        daemon.request(&Request::Status),
        Response::Status { .. }
    ));
}

/// A daemon in a process of its own (this test binary again, running only
/// [`daemon_in_this_process`]), its stderr — the supervisor's log — in a file, as
/// `berth supervise` has it. Shut down on drop.
struct ChildDaemon {
    dir: TempDir,
    socket: PathBuf,
    child: std::process::Child,
}

impl ChildDaemon {
    fn start(dir: TempDir, plan: &SupervisionPlan, backoff: BackoffConfig) -> Self {
        let cfg = config_in(dir.path(), false, backoff);
        fs::write(&cfg.plan_path, serde_json::to_vec_pretty(plan).unwrap()).unwrap();
        let log = fs::File::create(dir.path().join("daemon.log")).unwrap();
        let ms = |d: Duration| d.as_millis().to_string();
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "daemon_in_this_process",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env("BERTH_TEST_DAEMON_DIR", dir.path())
            .env("BERTH_TEST_BACKOFF_MS", {
                let b = backoff;
                format!("{},{},{}", ms(b.initial), ms(b.max), ms(b.reset_after))
            })
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let daemon = Self {
            dir,
            socket: cfg.socket,
            child,
        };
        wait_for("the control socket to answer", || {
            is_running(&daemon.socket)
        });
        daemon
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn request(&self, req: &Request) -> Response {
        Client::connect(&self.socket).unwrap().request(req).unwrap()
    }

    fn service(&self, name: &str) -> ServiceStatus {
        match self.request(&Request::Status) {
            Response::Status { services, .. } => services
                .into_iter()
                .find(|s| s.name == name)
                .unwrap_or_else(|| panic!("no service {name}")),
            other => panic!("unexpected answer {other:?}"),
        }
    }

    /// The supervisor's log lines about service `name`, without their timestamps.
    fn log_of(&self, name: &str) -> Vec<String> {
        let marker = format!("service `{name}`: ");
        fs::read_to_string(self.path("daemon.log"))
            .unwrap()
            .lines()
            .filter_map(|line| line.split_once(&marker).map(|(_, rest)| rest.to_owned()))
            .collect()
    }

    /// The delays the supervisor logged before restarting service `name`.
    fn restart_delays(&self, name: &str) -> Vec<String> {
        self.log_of(name)
            .iter()
            .filter_map(|line| line.strip_prefix("restarting in "))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for ChildDaemon {
    fn drop(&mut self) {
        if let Ok(mut client) = Client::connect(&self.socket) {
            let _ = client.request(&Request::Shutdown);
        } else {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The daemon of a [`ChildDaemon`]; does nothing when run on its own.
#[test]
#[ignore = "run by ChildDaemon in a process of its own"]
fn daemon_in_this_process() {
    let Some(dir) = std::env::var_os("BERTH_TEST_DAEMON_DIR") else {
        return;
    };
    let ms: Vec<Duration> = std::env::var("BERTH_TEST_BACKOFF_MS")
        .unwrap()
        .split(',')
        .map(|n| Duration::from_millis(n.parse().unwrap()))
        .collect();
    let backoff = BackoffConfig {
        initial: ms[0],
        max: ms[1],
        reset_after: ms[2],
    };
    run_daemon(config_in(Path::new(&dir), false, backoff)).unwrap();
}

fn sigkill(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid.try_into().unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn a_service_up_for_the_reset_window_is_restarted_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().to_path_buf();
    let web = service(d, "web", "date +%s%N >> starts; exec sleep 1000");
    // A first delay long enough that a restart within it cannot be the backoff's.
    let backoff = BackoffConfig {
        initial: Duration::from_secs(5),
        max: Duration::from_secs(10),
        reset_after: Duration::from_secs(1),
    };
    let daemon = ChildDaemon::start(dir, &plan(vec![web]), backoff);
    daemon.request(&Request::Start {
        target: Target::All,
    });
    let first = daemon.service("web").pid.expect("web runs");
    // Up for longer than the reset window, then killed.
    thread::sleep(backoff.reset_after + Duration::from_millis(200));
    let killed_at = now_nanos();
    sigkill(first);
    wait_for("a new process that has written its start", || {
        let web = daemon.service("web");
        web.state == ServiceState::Ready
            && web.pid.is_some_and(|pid| pid != first)
            && fs::read_to_string(daemon.path("starts")).is_ok_and(|s| s.lines().count() == 2)
    });
    let web = daemon.service("web");
    assert_eq!(web.restarts, 1);
    assert_eq!(web.last_exit.as_deref(), Some("signal SIGKILL"));
    assert_eq!(
        daemon.restart_delays("web"),
        ["0s"],
        "{:?}",
        daemon.log_of("web")
    );
    let starts: Vec<u128> = fs::read_to_string(daemon.path("starts"))
        .unwrap()
        .lines()
        .map(nanos)
        .collect();
    assert_eq!(starts.len(), 2, "{starts:?}");
    let restart_ms = (starts[1] - killed_at) / 1_000_000;
    assert!(
        restart_ms < 5000,
        "restarted {restart_ms} ms after the kill: that is the backoff"
    );

    // Killed again at once, before the reset window: this one backs off.
    let second = web.pid.unwrap();
    sigkill(second);
    wait_for("the backoff", || {
        daemon.service("web").state == ServiceState::Backoff
            && daemon.restart_delays("web").len() == 2
    });
    assert_eq!(daemon.restart_delays("web"), ["0s", "5s"]);
    assert_eq!(daemon.service("web").restarts, 1);
}

#[test]
fn a_service_crashing_quickly_in_a_loop_backs_off_1s_then_2s() {
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().to_path_buf();
    let crasher = service(d, "crasher", "date +%s%N >> starts; exit 1");
    let daemon = ChildDaemon::start(dir, &plan(vec![crasher]), BackoffConfig::default());
    daemon.request(&Request::Start {
        target: Target::All,
    });
    wait_for("the third start", || {
        fs::read_to_string(daemon.path("starts"))
            .unwrap_or_default()
            .lines()
            .count()
            >= 3
    });
    let delays = daemon.restart_delays("crasher");
    assert_eq!(delays[..2], ["1s", "2s"], "{:?}", daemon.log_of("crasher"));
    let starts: Vec<u128> = fs::read_to_string(daemon.path("starts"))
        .unwrap()
        .lines()
        .map(nanos)
        .collect();
    let gaps: Vec<u128> = starts
        .windows(2)
        .map(|w| (w[1] - w[0]) / 1_000_000)
        .collect();
    assert!(gaps[0] >= 1000 && gaps[1] >= 2000, "gaps {gaps:?}");
    assert!(daemon.service("crasher").restarts >= 2);
}

/// `stop` takes the services depending on the one stopped with it; `stop_only` leaves
/// them running, same pid (a proxy keeps answering while its backend is stopped for
/// an offline migration), and a later start brings the backend alone back.
#[test]
fn stop_only_leaves_dependents_running() {
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().to_path_buf();
    let back = service(d, "back", "exec sleep 1000");
    let mut front = service(d, "front", "exec sleep 1000");
    front.depends_on = vec!["back".into()];
    let daemon = Daemon::start(dir, &plan(vec![back, front]));
    daemon.ok(&Request::Start {
        target: Target::All,
    });
    let front_pid = daemon.pid("front");
    daemon.ok(&Request::StopOnly {
        target: Target::One("back".into()),
    });
    assert_eq!(daemon.service("back").state, ServiceState::Stopped);
    let front = daemon.service("front");
    assert_eq!(
        (front.state, front.pid),
        (ServiceState::Ready, Some(front_pid))
    );
    daemon.ok(&Request::Start {
        target: Target::All,
    });
    assert_eq!(daemon.service("back").state, ServiceState::Ready);
    assert_eq!(daemon.pid("front"), front_pid);
    // The plain stop takes the dependent with it.
    daemon.ok(&Request::Stop {
        target: Target::One("back".into()),
    });
    assert_eq!(daemon.service("front").state, ServiceState::Stopped);
}
