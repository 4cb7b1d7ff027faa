//! The whole life of a small real stack (PostgreSQL, Redis, nginx, a Python app in a
//! bundled virtualenv) under one prefix: up, no-op reconfigure, targeted restarts and
//! reloads, crash recovery, secrets. The tests share one instance and take turns.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use berth_tests::{Berth, files_under, fixture, http_get, is_root, prefix_dir, snapshot_tree};

const NGINX_PORT: u16 = 48080;
/// Ports of this test's instance, away from the fixture's defaults (which benchmarks use).
const BASE_SITE: &str = "external_url = \"http://127.0.0.1:48080/\"\n\
    [postgresql]\nport = 45432\n[redis]\nport = 46379\n";

/// The site config: the base ports plus `app` and `nginx` settings.
fn site(app: &str, nginx: &str) -> String {
    format!("{BASE_SITE}[app]\nport = 48001\n{app}[nginx]\n{nginx}")
}
/// Tests in this file; the last one to finish shuts the stack down.
const TESTS: usize = 9;

struct Stack {
    _dir: tempfile::TempDir,
    berth: Berth,
}

static STACK: OnceLock<Mutex<Stack>> = OnceLock::new();
static FINISHED: AtomicUsize = AtomicUsize::new(0);

/// Take the shared stack (bringing it up the first time).
fn stack() -> MutexGuard<'static, Stack> {
    let m = STACK.get_or_init(|| {
        let dir = prefix_dir("stack");
        let berth = Berth::new(dir.path(), &fixture("ministack"));
        berth.write_site(&site("", ""));
        let r = berth.run(&["up"]);
        if r.code != 0 {
            // Leave nothing running behind a failed start.
            berth.run(&["down"]);
        }
        let r = r.expect(0);
        assert!(
            r.stdout
                .contains(&format!("http://127.0.0.1:{NGINX_PORT}/")),
            "{}",
            r.stdout
        );
        // Also when only some of the tests run (a filter), nothing is left behind.
        // SAFETY: registers a plain function; it runs once, at process exit.
        unsafe {
            libc::atexit(stop_at_exit);
        }
        Mutex::new(Stack { _dir: dir, berth })
    });
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Stops the stack (if a last test has not) and removes its prefix, at process exit.
extern "C" fn stop_at_exit() {
    if let Some(m) = STACK.get() {
        let s = m.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if berth_lifecycle::supervisor::is_running(&berth_render::Paths::for_prefix(
            &s.berth.prefix,
            "",
        )) {
            s.berth.run(&["down"]);
        }
        let _ = std::fs::remove_dir_all(&s.berth.prefix);
    }
}

/// Counts finished tests, even failed ones; the last one stops the stack.
struct Finish;

impl Drop for Finish {
    fn drop(&mut self) {
        if FINISHED.fetch_add(1, Ordering::SeqCst) + 1 == TESTS
            && let Some(m) = STACK.get()
        {
            let s = m.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            s.berth.run(&["down"]);
        }
    }
}

fn get(path: &str) -> (u16, String) {
    http_get(NGINX_PORT, path, "127.0.0.1").unwrap()
}

fn wait_for(what: &str, deadline: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn up_serves_the_app_through_nginx() {
    let _f = Finish;
    let s = stack();
    let (code, body) = get("/");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"greeting\""), "{body}");
    let st = s.berth.status();
    for svc in st["services"].as_array().unwrap() {
        assert_eq!(svc["state"], "ready", "{st:#}");
    }
    // The supervisor runs the instance's own copy of berth, not the build's.
    let own = s.berth.prefix.join("bin/berth");
    let sup = st["supervisor_pid"].as_u64().unwrap();
    assert_eq!(
        std::fs::read_link(format!("/proc/{sup}/exe")).unwrap(),
        own,
        "{st:#}"
    );
    // A second `up` is safe and changes nothing.
    let pids = s.berth.pids();
    s.berth.run(&["up"]).expect(0);
    assert_eq!(s.berth.pids(), pids);
    let hist = s.berth.run(&["history", "-n", "1000", "--json"]).expect(0);
    assert!(hist.stdout.contains("\"up\""), "{}", hist.stdout);
    // The first `up` lists the directories it created apart from the files it wrote:
    // no directory among the files.
    let runs: serde_json::Value = serde_json::from_str(&hist.stdout).unwrap();
    let first = runs
        .as_array()
        .unwrap()
        .iter()
        .rfind(|r| r["kind"] == "up")
        .unwrap();
    let list = |key: &str| -> Vec<String> {
        first["outcome"][key]
            .as_array()
            .unwrap_or_else(|| panic!("no {key}: {first:#}"))
            .iter()
            .map(|p| p.as_str().unwrap().to_owned())
            .collect()
    };
    let (files, dirs) = (list("files_changed"), list("dirs_created"));
    let app_data = s.berth.prefix.join("data/app").display().to_string();
    assert!(dirs.contains(&app_data), "{dirs:?}");
    assert!(!files.is_empty(), "{first:#}");
    for f in &files {
        assert!(
            !Path::new(f).is_dir(),
            "directory {f} listed as a changed file"
        );
    }
    let text = s.berth.run(&["history"]).expect(0);
    assert!(text.stdout.contains("dirs created: "), "{}", text.stdout);
}

#[test]
fn a_second_reconfigure_changes_no_file_and_restarts_nothing() {
    let _f = Finish;
    let s = stack();
    s.berth.run(&["reconfigure"]).expect(0);
    let pids = s.berth.pids();
    let etc = snapshot_tree(&s.berth.prefix.join("etc"));
    let before: Vec<_> = mtimes(&s.berth.prefix.join("etc"));
    let r = s.berth.run(&["reconfigure"]).expect(0);
    assert!(r.stdout.contains("Nothing changed"), "{}", r.stdout);
    assert_eq!(s.berth.pids(), pids);
    assert_eq!(snapshot_tree(&s.berth.prefix.join("etc")), etc);
    assert_eq!(
        mtimes(&s.berth.prefix.join("etc")),
        before,
        "a no-op reconfigure rewrote files"
    );
}

#[test]
fn one_setting_restarts_or_reloads_only_what_it_affects() {
    let _f = Finish;
    let s = stack();
    let before = s.berth.pids();

    // The greeting is in the app's config file only: the app restarts, nothing else.
    s.berth
        .write_site(&site("greeting = \"good morning\"\n", ""));
    let dry = s.berth.run(&["reconfigure", "--dry-run"]).expect(0);
    assert!(dry.stdout.contains("good morning"), "{}", dry.stdout);
    assert_eq!(s.berth.pids(), before, "--dry-run restarted something");
    let r = s.berth.run(&["reconfigure"]).expect(0);
    assert!(r.stdout.contains("restarted: app"), "{}", r.stdout);
    s.berth.wait_all_ready(Duration::from_secs(30));
    let after = s.berth.pids();
    assert_ne!(after["app"], before["app"]);
    for svc in ["postgresql", "redis", "nginx"] {
        assert_eq!(after[svc], before[svc], "{svc} was restarted");
    }
    let (_, body) = get("/");
    assert!(body.contains("good morning"), "{body}");

    // nginx can reload: its pid stays, and so do the others'.
    s.berth.write_site(&site(
        "greeting = \"good morning\"\n",
        "client_max_body_size = \"20m\"\n",
    ));
    let r = s.berth.run(&["reconfigure"]).expect(0);
    assert!(r.stdout.contains("reloaded: nginx"), "{}", r.stdout);
    assert_eq!(s.berth.pids(), after);
    let conf = std::fs::read_to_string(s.berth.prefix.join("etc/nginx/nginx.conf")).unwrap();
    assert!(conf.contains("client_max_body_size 20m;"));
}

#[test]
fn kill_9_of_a_service_is_restarted_and_the_app_recovers() {
    let _f = Finish;
    let s = stack();
    let before = s.berth.pids();
    let pid = before["app"];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("app restarted", Duration::from_secs(30), || {
        s.berth.pids().get("app").is_some_and(|p| *p != pid)
    });
    s.berth.wait_all_ready(Duration::from_secs(30));
    let st = s.berth.status();
    let app = st["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "app")
        .unwrap()
        .clone();
    assert!(app["restarts"].as_u64().unwrap() >= 1, "{app:#}");
    assert!(
        app["last_exit"].as_str().unwrap().contains("SIGKILL"),
        "{app:#}"
    );
    assert_eq!(get("/").0, 200);
    let after = s.berth.pids();
    assert_eq!(after["postgresql"], before["postgresql"]);
}

#[test]
fn secrets_are_0600_and_never_appear_in_output_or_logs() {
    let _f = Finish;
    let s = stack();
    let dir = s.berth.prefix.join("secrets");
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let mut values = Vec::new();
    for name in ["db_password", "redis_password"] {
        let p = dir.join(name);
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600,
            "{name}"
        );
        let v = std::fs::read_to_string(&p).unwrap();
        assert!(v.trim().len() >= 32);
        values.push(v.trim().to_owned());
    }
    // Output of every command that ran, including a dry run with a diff of a file holding secrets.
    s.berth.run(&["config", "show"]).expect(0);
    // A pending change to the file that holds the database password: its diff is masked.
    let saved = std::fs::read_to_string(s.berth.site()).unwrap_or_default();
    s.berth
        .write_site(&site("greeting = \"masked check\"\n", ""));
    let plan = s.berth.run(&["plan"]);
    s.berth.write_site(&saved);
    let plan = plan.expect(0);
    assert!(plan.stdout.contains("masked check"), "{}", plan.stdout);
    assert!(
        plan.stdout.contains("********"),
        "the diff shows no masked secret:\n{}",
        plan.stdout
    );
    s.berth.run(&["history"]).expect(0);
    let mut haystack = s.berth.transcript.lock().unwrap().clone();
    // Logs: the supervisor's, every service's and every hook's.
    for f in files_under(&s.berth.prefix.join("log")) {
        haystack.push_str(&String::from_utf8_lossy(&std::fs::read(&f).unwrap()));
    }
    for v in &values {
        assert!(
            !haystack.contains(v.as_str()),
            "a secret value appears in berth's output or logs"
        );
    }
}

#[test]
fn a_change_that_breaks_a_service_is_rolled_back_whole() {
    let _f = Finish;
    let s = stack();
    s.berth.write_site(&site("", ""));
    s.berth.run(&["reconfigure"]).expect(0);
    s.berth.wait_all_ready(Duration::from_secs(30));
    if !is_root() {
        // As a normal user the port check below refuses port 81 up front instead.
        return;
    }
    let etc = snapshot_tree(&s.berth.prefix.join("etc"));
    let before = s.berth.pids();

    // Port 81 is free, but the app runs as its own unprivileged user and cannot bind
    // it: the app's restart fails, after its config and nginx's were rewritten.
    s.berth.write_site(&format!(
        "{BASE_SITE}[app]\nport = 81\ngreeting = \"broken\"\n[nginx]\n"
    ));
    let r = s.berth.run(&["reconfigure"]).expect(1);
    assert!(r.stderr.contains("rolled back"), "{}", r.stderr);
    assert!(r.stderr.contains("`app`"), "{}", r.stderr);

    assert_eq!(
        snapshot_tree(&s.berth.prefix.join("etc")),
        etc,
        "the old files are back"
    );
    s.berth.wait_all_ready(Duration::from_secs(30));
    let after = s.berth.pids();
    assert_ne!(
        after["app"], before["app"],
        "the app runs again, with its old config"
    );
    for svc in ["postgresql", "redis", "nginx"] {
        assert_eq!(after[svc], before[svc], "{svc} was restarted");
    }
    let (code, body) = get("/");
    assert_eq!(code, 200, "{body}");
    assert!(!body.contains("broken"), "{body}");
    let hist = s.berth.run(&["history", "--json"]).expect(0);
    assert!(hist.stdout.contains("rolled back"), "{}", hist.stdout);

    // The next reconfigure with a good config applies cleanly.
    s.berth.write_site(&site("", ""));
    let r = s.berth.run(&["reconfigure"]).expect(0);
    assert!(r.stdout.contains("Nothing changed"), "{}", r.stdout);

    // The same broken change through `up` after a `down`: rolled back, and down again.
    s.berth.run(&["down"]).expect(0);
    s.berth.write_site(&format!(
        "{BASE_SITE}[app]\nport = 81\ngreeting = \"broken\"\n[nginx]\n"
    ));
    let r = s.berth.run(&["up"]).expect(1);
    assert!(r.stderr.contains("rolled back"), "{}", r.stderr);
    assert_eq!(snapshot_tree(&s.berth.prefix.join("etc")), etc);
    assert!(
        !s.berth.prefix.join("run/supervisor.sock").exists(),
        "the supervisor `up` started is stopped again"
    );
    s.berth.write_site(&site("", ""));
    s.berth.run(&["up"]).expect(0);
    assert_eq!(get("/").0, 200);
}

#[test]
fn a_port_taken_by_another_program_is_refused_before_any_change() {
    let _f = Finish;
    let s = stack();
    s.berth.write_site(&site("", ""));
    s.berth.run(&["reconfigure"]).expect(0);
    let etc = snapshot_tree(&s.berth.prefix.join("etc"));
    let before = s.berth.pids();
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();

    s.berth
        .write_site(&format!("{BASE_SITE}[app]\nport = {port}\n[nginx]\n"));
    let r = s.berth.run(&["reconfigure"]).expect(1);
    assert!(
        r.stderr.contains(&format!("127.0.0.1:{port}")) && r.stderr.contains("`app`"),
        "{}",
        r.stderr
    );
    assert_eq!(snapshot_tree(&s.berth.prefix.join("etc")), etc);
    assert_eq!(s.berth.pids(), before);
    drop(squatter);
    s.berth.write_site(&site("", ""));
}

#[test]
fn a_component_switched_off_stops_and_on_starts_and_stopped_services_stay_stopped() {
    let _f = Finish;
    let s = stack();
    s.berth.write_site(&site("", ""));
    s.berth.run(&["reconfigure"]).expect(0);
    s.berth.wait_all_ready(Duration::from_secs(30));

    let off = site("", "").replace("[redis]\n", "[redis]\nenabled = false\n");
    s.berth.write_site(&off);
    let dry = s.berth.run(&["reconfigure", "--dry-run"]).expect(0);
    assert!(
        dry.stdout.contains("leaving the plan (stop): redis"),
        "{}",
        dry.stdout
    );
    let redis_conf = s.berth.prefix.join("etc/redis/redis.conf");
    assert!(
        dry.stdout
            .contains(&format!("- remove {}", redis_conf.display())),
        "{}",
        dry.stdout
    );
    assert!(redis_conf.exists(), "--dry-run removed a file");
    assert!(
        s.berth.pids().contains_key("redis"),
        "--dry-run stopped redis"
    );
    let r = s.berth.run(&["reconfigure"]).expect(0);
    assert!(r.stdout.contains("stopped: redis"), "{}", r.stdout);
    assert!(!s.berth.pids().contains_key("redis"));
    assert!(
        !redis_conf.exists(),
        "the config of a switched-off component stays"
    );
    assert!(
        s.berth.prefix.join("data/redis").is_dir(),
        "its data must stay"
    );
    let hist = s.berth.run(&["history", "-n", "1"]).expect(0);
    assert!(hist.stdout.contains("stopped: redis"), "{}", hist.stdout);

    // An administrator stops nginx; a reconfigure that changes the app leaves it stopped.
    s.berth.run(&["stop", "nginx"]).expect(0);
    s.berth.write_site(&site("", ""));
    let r = s.berth.run(&["reconfigure"]).expect(0);
    assert!(r.stdout.contains("started: redis"), "{}", r.stdout);
    assert!(redis_conf.exists());
    let st = s.berth.status();
    let nginx = st["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "nginx")
        .unwrap()
        .clone();
    assert_eq!(nginx["state"], "stopped", "{st:#}");
    s.berth.run(&["start", "nginx"]).expect(0);
    s.berth.wait_all_ready(Duration::from_secs(30));
    assert_eq!(get("/").0, 200);
}

#[test]
fn bad_input_and_dry_runs_leave_a_running_instance_untouched() {
    let _f = Finish;
    let s = stack();
    s.berth.write_site(&site("", ""));
    s.berth.run(&["reconfigure"]).expect(0);
    let snapshot = || {
        let mut all = snapshot_tree(&s.berth.prefix.join("etc"));
        all.extend(snapshot_tree(&s.berth.prefix.join("secrets")));
        all.extend(snapshot_tree(&s.berth.prefix.join("state")));
        all.extend(snapshot_tree(&s.berth.prefix.join("manifest")));
        all
    };
    let before = snapshot();
    let pids = s.berth.pids();

    let cases = [
        // Line 7: `write_site` puts its `users` line first.
        ("syntax", format!("{BASE_SITE}[app\n"), "site.toml:7:5"),
        (
            "unknown key",
            format!("{BASE_SITE}[app]\ngreting = \"x\"\n"),
            "greeting",
        ),
        (
            "range",
            format!("{BASE_SITE}[app]\nthreads = 99\n"),
            "threads",
        ),
        (
            "url",
            "external_url = \"ftp://x\"\n".to_owned(),
            "external_url",
        ),
    ];
    for (what, text, expect) in cases {
        s.berth.write_site(&text);
        for cmd in [&["reconfigure"][..], &["up"], &["reconfigure", "--dry-run"]] {
            let r = s.berth.run(cmd).expect(2);
            assert!(r.stderr.contains(expect), "{what} {cmd:?}: {}", r.stderr);
        }
        assert_eq!(snapshot(), before, "{what} changed the instance");
        assert_eq!(s.berth.pids(), pids, "{what} restarted something");
    }

    // A dry run of a real change writes nothing, not even a mode.
    s.berth.write_site(&site("greeting = \"dry run\"\n", ""));
    let dry = s.berth.run(&["reconfigure", "--dry-run"]).expect(0);
    assert!(dry.stdout.contains("dry run"), "{}", dry.stdout);
    assert_eq!(snapshot(), before);
    assert_eq!(s.berth.pids(), pids);
    s.berth.write_site(&site("", ""));
}

/// Each file under `dir` with its modification time.
fn mtimes(dir: &std::path::Path) -> Vec<(std::path::PathBuf, std::time::SystemTime)> {
    files_under(dir)
        .into_iter()
        .map(|p| {
            let t = std::fs::metadata(&p).unwrap().modified().unwrap();
            (p, t)
        })
        .collect()
}
