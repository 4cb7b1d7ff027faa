//! The reference app end to end: `berth up` with the NetBox manifest gives a working
//! NetBox behind nginx, with its worker running.
//!
//! This is the slow test of the suite (virtualenvs from PyPI and NetBox's
//! migrations, several minutes on two cores), so everything that needs a running
//! NetBox happens on this one instance. It is set up on NetBox 4.7.0 (the manifest of
//! `examples/netbox` at that version), given objects and uploaded images through the
//! API, then upgraded with `berth upgrade apply` to the 4.7.3 of `examples/netbox`
//! across NetBox's real migrations: every object and file is still there and the
//! admin token still works. At the end it is backed up, destroyed, and restored into a
//! new prefix, where the same objects, the same uploaded files and the original admin
//! token must all be back.
//!
//! Its first `up` is the one an administrator without a terminal makes: `berth
//! console` on the instance before it has a site config, and its first-run setup in
//! headless Chromium (`tests/browser/setup_flow.py`): a refused answer first (nothing
//! written), then the answers, the review, and the `up` followed on its task page
//! until NetBox answers. Without a browser (outside CI only) the same `up` runs from
//! the command line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use berth_tests::browser::{assert_shots, browser_python, drive, fresh_shots};
use berth_tests::{
    Berth, Podman, http_request, prefix_dir, root, run_as_service, shared_images,
    shared_release_bundle, snapshot_tree, wait_for,
};

/// NetBox from `berth k8s render`'s objects under `podman kube play`: a test of its own,
/// beside this one, sharing its bundle and images.
mod k8s_play;

const PORT: u16 = 38180;

const SITE: &str = "external_url = \"http://127.0.0.1:38180/\"\n\
    [postgresql]\nport = 35533\n[redis]\nport = 36480\n[web]\nport = 38101\nworkers = 2\n";

/// The manifest's defaults that become the test's ports (and worker count).
const DEFAULTS: [(&str, &str); 4] = [
    ("default = 5433", "default = 35533"),
    ("default = 6380", "default = 36480"),
    ("default = 8001", "default = 38101"),
    ("derive = \"facts.cpus * 2 + 1\"", "default = 2"),
];
const CONSOLE: &str = "127.0.0.1:38190";
/// What the first-run setup in the browser saves (`setup_flow.py` names them).
const SETUP_SHOTS: &[&str] = &[
    "01-sign-in",
    "02-setup-form",
    "03-setup-refused",
    "04-setup-answered",
    "05-setup-review",
    "06-task-up-started",
    "07-task-up-succeeded",
];

/// The first `up` of `manifest` at `dir` (see the module's comment): its output.
fn first_up(dir: &Path, manifest: &Path, b: &Berth) -> String {
    let Some(python) = browser_python() else {
        b.write_site(SITE);
        let up = b.run(&["up"]).expect(0);
        return format!("{}{}", up.stdout, up.stderr);
    };
    let mut console =
        berth_tests::spawn_console(dir, Some(manifest), CONSOLE, Some(&dir.join("console.log")));
    let shots = fresh_shots(&root().join("target/artefacts/console-browser/netbox"));
    let output = shots.join("up-output.txt");
    drive(
        &python,
        "setup_flow.py",
        &shots,
        Duration::from_mins(35),
        |c| {
            c.arg("--url")
                .arg(format!("http://{CONSOLE}"))
                .arg("--password-file")
                .arg(dir.join("secrets/berth-console-password"))
                .arg("--shots")
                .arg(&shots)
                .arg("--prefix")
                .arg(dir)
                .arg("--site-config")
                .arg(dir.join("site.toml"))
                .arg("--external-url")
                .arg(format!("http://127.0.0.1:{PORT}/"))
                .args(["--services", "postgresql,redis,web,worker,nginx"])
                .args(["--name", "netbox-admin", "--steps", "sign-in,refused,setup"])
                .args(["--up-within", "1800", "--health-path", "/login/"])
                .arg("--task-output")
                .arg(&output)
        },
    );
    let _ = console.kill();
    let _ = console.wait();
    assert_shots(&shots, SETUP_SHOTS);
    // What setup wrote is an ordinary site config with the answers in it.
    let site = std::fs::read_to_string(dir.join("site.toml")).unwrap();
    assert!(
        site.contains(&format!("external_url = \"http://127.0.0.1:{PORT}/\""))
            && site.contains("users = \"shared\""),
        "{site}"
    );
    // The ports and workers were this copy's defaults; the 4.7.3 the test upgrades to
    // is `examples/netbox` itself, whose defaults differ: pin them by hand, as the
    // site config names them (nothing changes now, so no reconfigure is due).
    let pinned = SITE.split_once('\n').unwrap().1;
    std::fs::write(dir.join("site.toml"), format!("{site}{pinned}")).unwrap();
    assert!(
        Berth::installed(dir)
            .run(&["reconfigure", "--dry-run"])
            .expect(0)
            .stdout
            .contains("No file changes."),
        "pinning the defaults changed something"
    );
    std::fs::read_to_string(output).unwrap()
}

/// A backup of this test's instance, handed to the Kubernetes test (`k8s_play`), which
/// restores it into its deployment: the archive, the key file, what the API and the
/// uploads held when it was made, the admin's password and API token.
struct HostBackup {
    /// Holds the archive and the key file; removed with this.
    _dir: tempfile::TempDir,
    archive: PathBuf,
    key: PathBuf,
    state: serde_json::Value,
    media: BTreeMap<PathBuf, String>,
    password: String,
    /// The admin's API token there (`Authorization`'s value).
    auth: String,
}

/// The hand-off: empty until this test made its backup (or ended without one).
static HANDED: (Mutex<Option<Result<HostBackup, String>>>, Condvar) =
    (Mutex::new(None), Condvar::new());

fn hand_off(backup: Result<HostBackup, String>) {
    let mut slot = HANDED
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if slot.is_none() {
        *slot = Some(backup);
        HANDED.1.notify_all();
    }
}

/// This test's backup, once made (at most `within`); fails when this test ended
/// without one.
fn host_backup(within: Duration) -> HostBackup {
    let slot = HANDED
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (mut slot, _) = HANDED
        .1
        .wait_timeout_while(slot, within, |s| s.is_none())
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match slot.take() {
        Some(Ok(backup)) => backup,
        Some(Err(why)) => panic!("no backup of the host instance: {why}"),
        None => panic!("no backup of the host instance within {within:?}"),
    }
}

/// Says, when this test ends without having handed its backup, that it never will.
struct HandOffOrSay;

impl Drop for HandOffOrSay {
    fn drop(&mut self) {
        hand_off(Err(
            "the host NetBox test ended before its backup".to_owned()
        ));
    }
}

/// Whether this test ended (its instances gone): the Kubernetes test restores its
/// deployment's backup on this machine only then.
static DONE: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

/// Says, when this test ends however it ends, that it did.
struct SayDone;

impl Drop for SayDone {
    fn drop(&mut self) {
        let mut done = DONE
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *done = true;
        DONE.1.notify_all();
    }
}

/// Waits (at most `within`) until this test ended.
fn host_done(within: Duration) {
    let done = DONE
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (done, _) = DONE
        .1
        .wait_timeout_while(done, within, |d| !*d)
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    assert!(*done, "the host NetBox test still ran after {within:?}");
}

/// What of a [`snapshot_tree`] two machines share: each entry's kind and content,
/// not its owner (each machine's service user) or mode.
fn contents(tree: &BTreeMap<PathBuf, String>) -> BTreeMap<PathBuf, String> {
    tree.iter()
        .map(|(p, d)| {
            let words: Vec<&str> = d.split_whitespace().collect();
            let kept = match words.as_slice() {
                ["file", _, _, hash] => format!("file {hash}"),
                [kind, ..] => (*kind).to_owned(),
                [] => String::new(),
            };
            (p.clone(), kept)
        })
        .collect()
}

struct Down(Berth);

impl Drop for Down {
    fn drop(&mut self) {
        self.0.run(&["down"]);
    }
}

/// `examples/netbox` as it would be at NetBox `version`, in `dir`, with the test's
/// ports as its defaults.
fn netbox_at(dir: &Path, version: &str) -> PathBuf {
    let to = berth_tests::netbox_manifest_at(dir, version);
    let mut text = std::fs::read_to_string(to.join("berth.toml")).unwrap();
    // First-run setup asks no ports: the test's are the defaults (the site config
    // names them too, later).
    for (from, to) in DEFAULTS {
        assert!(text.contains(from), "examples/netbox moved on: no `{from}`");
        text = text.replace(from, to);
    }
    std::fs::write(to.join("berth.toml"), text).unwrap();
    to
}

#[test]
fn netbox_comes_up_behind_nginx_and_serves_its_api() {
    // Dropped last, once every instance of this test is down.
    let _done = SayDone;
    let _handed = HandOffOrSay;
    let dir = prefix_dir("netbox");
    let scratch = prefix_dir("netbox-scratch");
    let old = netbox_at(scratch.path(), "4.7.0");
    let b = Berth::new(dir.path(), &old);
    let _down = Down(Berth::installed(dir.path()));
    let up = first_up(dir.path(), &old, &b);
    assert!(up.contains(&format!("http://127.0.0.1:{PORT}/")), "{up}");

    // The admin password is in a 0600 file whose path `up` printed, never the password.
    let pw_file = dir.path().join("secrets/admin_password");
    assert!(up.contains(&pw_file.display().to_string()), "{up}");
    let password = std::fs::read_to_string(&pw_file).unwrap();
    assert!(!up.contains(password.trim()));

    // The login page answers through nginx, and so does a static file nginx serves itself.
    let (code, body) = http_request("GET", PORT, "/login/", &[], None).unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("NetBox"), "not NetBox's login page");
    let (code, _) = http_request("GET", PORT, "/static/netbox.ico", &[], None).unwrap();
    assert_eq!(code, 200, "static files are not served");

    // An API token for the initial admin creates an object, and reads it back.
    let auth = admin_token(dir.path(), "4.7.0");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
        ("Accept", "application/json"),
    ];
    let (code, body) = http_request(
        "POST",
        PORT,
        "/api/dcim/sites/",
        &headers,
        Some(r#"{"name": "Berth Test Site", "slug": "berth-test-site", "status": "active"}"#),
    )
    .unwrap();
    assert_eq!(code, 201, "{body}");
    let (code, body) = http_request(
        "GET",
        PORT,
        "/api/dcim/sites/?slug=berth-test-site",
        &headers,
        None,
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["count"], 1, "{body}");
    assert_eq!(v["results"][0]["name"], "Berth Test Site");

    // The worker is supervised, and NetBox sees it registered with Redis.
    let status = b.status();
    let worker = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "worker")
        .unwrap()
        .clone();
    assert_eq!(worker["state"], "ready", "{status:#}");
    let start = Instant::now();
    loop {
        let (_, body) = http_request("GET", PORT, "/api/status/", &headers, None).unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if v["rq-workers-running"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_mins(2),
            "no RQ worker registered: {body}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let b = upgrade_keeps_objects_files_and_token(dir.path(), &auth, scratch.path());

    // A second reconfigure changes nothing and restarts nothing.
    let pids = b.pids();
    let r = b.run(&["reconfigure"]).expect(0);
    assert!(r.stdout.contains("Nothing changed"), "{}", r.stdout);
    assert_eq!(b.pids(), pids);

    one_setting_restarts_only_web_and_worker(&b, &headers);
    killed_services_come_back(&b, &headers);
    images_serve_the_same_netbox(&b, &auth);
    b.assert_secrets_private_and_unshown(5, &[&["config", "show"], &["history"]]);
    small_profile_fits_its_budget(&b, &headers);

    backup_destroy_restore(&b, &auth);
}

/// The `small` profile (fewer gunicorn workers and threads, smaller buffers): NetBox
/// still answers and its worker still runs, and the whole stack's memory, as `berth
/// status` adds it up, is within the budget the profile declares.
fn small_profile_fits_its_budget(b: &Berth, headers: &[(&str, &str)]) {
    b.write_site(&format!("profile = \"small\"\n{SITE}"));
    b.run(&["reconfigure"]).expect(0);
    // Every worker has served a request, so each has loaded what it will hold.
    for _ in 0..8 {
        let (code, body) = http_request("GET", PORT, "/api/status/", headers, None).unwrap();
        assert_eq!(code, 200, "{body}");
    }
    assert!(api_status(headers)["rq-workers-running"].as_u64() >= Some(1));
    let status = b.status();
    let small = status["memory_pss_bytes"].as_u64().unwrap();
    assert_eq!(status["memory_budget"]["profile"], "small", "{status:#}");
    assert_eq!(status["memory_budget"]["within"], true, "{status:#}");
    assert!(small > 100 << 20, "NetBox takes more than {small} bytes");
    let r = b.run(&["status"]);
    assert!(
        r.stdout
            .contains("within the `small` profile's memory budget"),
        "{}",
        r.stdout
    );
}

/// Objects and uploaded images made on 4.7.0, then `berth upgrade apply` to the 4.7.3
/// of `examples/netbox` under a client asking every 50 ms: an online hop (NetBox
/// declares hops from 4.7.0 online), no failed request and no maintenance page,
/// NetBox's migrations run, every object and file still there, the admin token still
/// working, both releases listed. Returns the runner for 4.7.3.
#[allow(clippy::print_stderr)] // the request count said
fn upgrade_keeps_objects_files_and_token(prefix: &Path, auth: &str, scratch: &Path) -> Berth {
    let headers = [
        ("Authorization", auth),
        ("Content-Type", "application/json"),
        ("Accept", "application/json"),
    ];
    add_tenant_sites_and_images(&headers, auth, scratch);
    let before_api = api_state(auth);
    let media = prefix.join("data/netbox/media");
    let before_media = snapshot_tree(&media);
    assert_eq!(api_status(&headers)["netbox-version"], "4.7.0");

    let installed = Berth::installed(prefix);
    let target = root().join("examples/netbox");
    let header = format!("Authorization: {auth}");
    let client = berth_tests::netns::Client::start(
        None,
        &format!("http://127.0.0.1:{PORT}/api/status/"),
        "netbox-version",
        &[&header, "Accept: application/json"],
        scratch,
    );
    let r = installed
        .run(&[
            "upgrade",
            "apply",
            "--json",
            "--to",
            target.to_str().unwrap(),
        ])
        .expect(0);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let hop = &report["hops"][0];
    assert_eq!(
        (&hop["from"], &hop["to"]),
        (&"4.7.0".into(), &"4.7.3".into())
    );
    let answers = client.finish();
    assert_eq!(hop["offline"], false);
    assert!(hop["maintenance_seconds"].is_null(), "{report:#}");
    // Every answer a 200: 4.7.0's, then 4.7.3's (the process beside, then the
    // service restarted on its own port). While nginx reloads, a worker of its old
    // configuration may still take a new connection to the old release: a few
    // requests at most, within the second after the first answer of 4.7.3.
    let failed: Vec<_> = answers.iter().filter(|(c, _)| c != "200").collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        answers.len()
    );
    let first_new = answers
        .iter()
        .position(|(_, v)| v == "4.7.3")
        .expect("4.7.3 answered");
    assert!(answers[..first_new].iter().all(|(_, v)| v == "4.7.0"));
    let late_old: Vec<usize> = (first_new..answers.len())
        .filter(|i| answers[*i].1 != "4.7.3")
        .collect();
    assert!(
        late_old.iter().all(|i| *i < first_new + 20),
        "4.7.0 answered well after 4.7.3 did: at {late_old:?} of {}, 4.7.3 first at {first_new}",
        answers.len()
    );
    eprintln!(
        "online upgrade to 4.7.3: {} requests, none failed; {} answered by 4.7.0 after the first of 4.7.3",
        answers.len(),
        late_old.len()
    );
    let hooks = std::fs::read_to_string(prefix.join("log/hooks/migrate.log")).unwrap_or_default();
    assert!(!hooks.is_empty(), "the migrations did not run");

    assert_eq!(api_status(&headers)["netbox-version"], "4.7.3");
    assert_eq!(api_state(auth), before_api);
    assert_eq!(snapshot_tree(&media), before_media);
    let (code, _) = http_request("GET", PORT, "/static/netbox.ico", &[], None).unwrap();
    assert_eq!(code, 200, "static files are not served after the upgrade");
    let r = installed.run(&["releases", "--json"]).expect(0);
    let releases: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let listed: Vec<(&str, bool)> = releases
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["version"].as_str().unwrap(),
                r["current"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, [("4.7.0", false), ("4.7.3", true)]);
    assert!(!prefix.join("run/maintenance.html").exists());
    Berth::new(prefix, &target)
}

fn api_status(headers: &[(&str, &str)]) -> serde_json::Value {
    let (code, body) = http_request("GET", PORT, "/api/status/", headers, None).unwrap();
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// NetBox's time zone is in `configuration.py`, which only web and worker read.
fn one_setting_restarts_only_web_and_worker(b: &Berth, headers: &[(&str, &str)]) {
    let before = b.pids();
    b.write_site(&format!("{SITE}[netbox]\ntime_zone = \"Europe/Berlin\"\n"));
    let r = b.run(&["reconfigure"]).expect(0);
    assert!(r.stdout.contains("configuration.py"), "{}", r.stdout);
    let after = b.pids();
    for svc in ["web", "worker"] {
        assert_ne!(after[svc], before[svc], "{svc} was not restarted");
    }
    for svc in ["postgresql", "redis", "nginx"] {
        assert_eq!(
            after[svc], before[svc],
            "{svc} was restarted:\n{}\n{}",
            r.stdout, r.stderr
        );
    }
    let conf = std::fs::read_to_string(b.prefix.join("etc/netbox/configuration.py")).unwrap();
    assert!(conf.contains("Europe/Berlin"), "{conf}");
    assert!(api_status(headers)["rq-workers-running"].as_u64() >= Some(1));
}

/// kill -9 of gunicorn's master and of the worker: each comes back, ready, and the app
/// answers. The worker is ready only once the new process registered with Redis (the
/// killed one's registration is still there: its pid is not the new one).
fn killed_services_come_back(b: &Berth, headers: &[(&str, &str)]) {
    for svc in ["web", "worker"] {
        let before = b.pids();
        let old = before[svc];
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(old).unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let start = Instant::now();
        while b.pids().get(svc).is_none_or(|p| *p == old) {
            assert!(
                start.elapsed() < Duration::from_mins(1),
                "{svc} not restarted"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        b.wait_all_ready(Duration::from_mins(4));
        let after = b.pids();
        for (other, pid) in &before {
            if other != svc {
                assert_eq!(after[other], *pid, "{other} was restarted");
            }
        }
        let (code, body) = http_request("GET", PORT, "/login/", &[], None).unwrap();
        assert_eq!(code, 200, "{body}");
        assert!(api_status(headers)["rq-workers-running"].as_u64() >= Some(1));
    }
}

/// The port NetBox's web image listens on (host network).
const IMAGE_WEB_PORT: u16 = 38111;

/// NetBox's web and worker images, built by `berth image build` from a release bundle
/// of `examples/netbox` (4.7.3, without its seed), run under podman against this
/// instance's PostgreSQL and Redis on 127.0.0.1, with its secrets mounted as files and
/// the ports given as `BERTH_SET_*` variables: the migrate hook finds nothing to do,
/// both containers become healthy (the worker only once it registered with Redis),
/// the web image answers the login page and, with the admin token made on the host,
/// the site made there; `podman stop` ends both with status 0.
#[allow(clippy::too_many_lines)] // each consumer in turn
fn images_serve_the_same_netbox(b: &Berth, auth: &str) {
    let work = prefix_dir("netbox-images");
    let w = work.path();
    // The same bundle as `tests/netbox_fleet.rs`'s, built once.
    let (bundle, public) = shared_release_bundle(
        &root().join("examples/netbox"),
        &["--strip-debug"],
        &["--no-seed"],
    );
    // Every service's image, built once for this test and `k8s_play`'s.
    let archives = shared_images(&bundle, &public);

    let podman = Podman::new(&w.join("podman"));
    for service in ["web", "worker"] {
        let file = archives.join(format!("netbox-{service}-4.7.3.docker.tar"));
        podman.ok(&["load", "-i", file.to_str().unwrap()]);
    }
    // The instance's secrets, readable by the images' service user only.
    let secrets = w.join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    for entry in std::fs::read_dir(b.prefix.join("secrets")).unwrap() {
        let entry = entry.unwrap();
        let to = secrets.join(entry.file_name());
        std::fs::copy(entry.path(), &to).unwrap();
        nix::unistd::chown(&to, Some(10001.into()), Some(10001.into())).unwrap();
        std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o400)).unwrap();
    }
    let volume = format!("{}:/run/secrets:ro", secrets.display());
    let web_port = format!("BERTH_SET_WEB_PORT={IMAGE_WEB_PORT}");
    let url = format!("BERTH_SET_EXTERNAL_URL=http://127.0.0.1:{IMAGE_WEB_PORT}/");
    let run = |head: &[&str], tail: &[&str]| {
        let mut args = head.to_vec();
        args.extend_from_slice(&[
            "--network",
            "host",
            "-e",
            "BERTH_SET_POSTGRESQL_PORT=35533",
            "-e",
            "BERTH_SET_REDIS_PORT=36480",
            "-e",
            &web_port,
            "-e",
            "BERTH_SET_WEB_WORKERS=2",
            "-e",
            &url,
            "-v",
            &volume,
        ]);
        args.extend_from_slice(tail);
        let out = podman.run(&args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "podman {args:?}: {text}");
        text
    };
    // The database is 4.7.3's already: the hook, in a one-off container, has nothing to do.
    let migrated = run(
        &["run", "--rm"],
        &["localhost/netbox-web:4.7.3", "hook", "migrate"],
    );
    assert!(migrated.contains("No migrations to apply"), "{migrated}");
    run(
        &["run", "-d", "--name", "web"],
        &["localhost/netbox-web:4.7.3"],
    );
    run(
        &["run", "-d", "--name", "worker"],
        &["localhost/netbox-worker:4.7.3"],
    );
    for (name, within) in [("web", 4), ("worker", 3)] {
        wait_for(
            &format!("{name}'s health check"),
            Duration::from_mins(within),
            || podman.run(&["healthcheck", "run", name]).status.success(),
        );
    }
    let (code, body) = http_request("GET", IMAGE_WEB_PORT, "/login/", &[], None).unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("NetBox"), "not NetBox's login page");
    let headers = [("Authorization", auth), ("Accept", "application/json")];
    let (code, body) = http_request(
        "GET",
        IMAGE_WEB_PORT,
        "/api/dcim/sites/?slug=berth-test-site",
        &headers,
        None,
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["results"][0]["name"], "Berth Test Site", "{body}");
    // Both run as the service user, under berth as process 1.
    for name in ["web", "worker"] {
        let top = podman.ok(&["top", name, "user", "args"]);
        assert!(
            top.contains(&format!("berth container run {name}")),
            "{top}"
        );
        assert!(!top.lines().skip(1).any(|l| l.starts_with("root")), "{top}");
    }
    podman.ok(&["stop", "--time", "90", "worker", "web"]);
    for name in ["web", "worker"] {
        let code = podman.ok(&["inspect", name, "--format", "{{.State.ExitCode}}"]);
        assert_eq!(code.trim(), "0", "{name}");
    }
    // The instance on the host is as it was.
    let (code, body) = http_request("GET", PORT, "/login/", &[], None).unwrap();
    assert_eq!(code, 200, "{body}");
}

/// A small valid PNG (NetBox checks uploads with Pillow), made with the standard library.
const MAKE_PNG: &str = "\
import struct, sys, zlib
w = h = 48
raw = b''.join(b'\\x00' + bytes((x * 5 + y * 3) % 256 for x in range(w * 3)) for y in range(h))
def chunk(t, d):
    return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
png = b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0))
png += chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b'')
open(sys.argv[1], 'wb').write(png)
";

/// What must survive a backup and restore, read through the API with `auth`.
fn api_state(auth: &str) -> serde_json::Value {
    api_state_at(PORT, auth)
}

/// [`api_state`] of the NetBox that answers on `port`.
fn api_state_at(port: u16, auth: &str) -> serde_json::Value {
    let headers = [("Authorization", auth), ("Accept", "application/json")];
    let mut out = serde_json::Map::new();
    for (what, path) in [
        ("sites", "/api/dcim/sites/?limit=0&ordering=id"),
        ("tenants", "/api/tenancy/tenants/?limit=0&ordering=id"),
        (
            "images",
            "/api/extras/image-attachments/?limit=0&ordering=id",
        ),
    ] {
        let (code, body) = http_request("GET", port, path, &headers, None).unwrap();
        assert_eq!(code, 200, "{path}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let items: Vec<serde_json::Value> = v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                // An upload's address without the external URL it is served at.
                let image = o["image"]
                    .as_str()
                    .map(|u| u.splitn(4, '/').nth(3).unwrap_or(u).to_owned());
                serde_json::json!({
                    "id": o["id"], "name": o["name"], "slug": o["slug"],
                    "image": image, "status": o["status"]["value"],
                    "tenant": o["tenant"]["id"],
                })
            })
            .collect();
        out.insert(what.to_owned(), items.into());
    }
    out.into()
}

fn backup_destroy_restore(b: &Berth, auth: &str) {
    let scratch = prefix_dir("netbox-backup");
    let media = b.prefix.join("data/netbox/media");
    let before_api = api_state(auth);
    let before_media = snapshot_tree(&media);
    assert!(
        before_media
            .keys()
            .any(|p| p.to_string_lossy().ends_with(".png")),
        "no uploaded image in {}: {before_media:?}",
        media.display()
    );
    assert_eq!(before_api["images"].as_array().unwrap().len(), 2);

    // Back up with a key, verify, and keep the archive and the key elsewhere.
    let key = scratch.path().join("backup.key");
    b.run(&["backup", "key", "--export", key.to_str().unwrap()])
        .expect(0);
    let r = b.run(&["backup", "create", "--json"]).expect(0);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let name = report["backup"]["archive"].as_str().unwrap().to_owned();
    assert_eq!(
        report["backup"]["quiesced"],
        serde_json::json!(["web", "worker"])
    );
    let archive = scratch.path().join(&name);
    std::fs::copy(b.prefix.join("backups").join(&name), &archive).unwrap();
    b.run(&[
        "backup",
        "verify",
        archive.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ])
    .expect(0);
    // For the Kubernetes test, to restore into its deployment.
    let handed = prefix_dir("netbox-handed");
    let (to_archive, to_key) = (handed.path().join("archive"), handed.path().join("key"));
    std::fs::copy(&archive, &to_archive).unwrap();
    std::fs::copy(&key, &to_key).unwrap();
    hand_off(Ok(HostBackup {
        _dir: handed,
        archive: to_archive,
        key: to_key,
        state: before_api.clone(),
        media: contents(&before_media),
        password: std::fs::read_to_string(b.prefix.join("secrets/admin_password"))
            .unwrap()
            .trim()
            .to_owned(),
        auth: auth.to_owned(),
    }));

    // The instance is destroyed.
    b.run(&["down"]).expect(0);
    std::fs::remove_dir_all(&b.prefix).unwrap();
    assert!(http_request("GET", PORT, "/login/", &[], None).is_err());

    // Restored into a new prefix, as on a new machine.
    let dir2 = prefix_dir("netbox-restored");
    let b2 = Berth::new(dir2.path(), &root().join("examples/netbox"));
    let _down = Down(Berth::installed(dir2.path()));
    let r = b2
        .run(&[
            "restore",
            archive.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ])
        .expect(0);
    assert!(r.stdout.contains("Restored netbox 4.7.3"), "{}", r.stdout);
    let (code, body) = http_request("GET", PORT, "/login/", &[], None).unwrap();
    assert_eq!(code, 200, "{body}");
    // The original admin token still works: the secrets came back with the data.
    assert_eq!(api_state(auth), before_api);
    assert_eq!(
        snapshot_tree(&dir2.path().join("data/netbox/media")),
        before_media
    );
    let (code, _) = http_request("GET", PORT, "/static/netbox.ico", &[], None).unwrap();
    assert_eq!(code, 200, "static files are not served after the restore");
    b2.wait_all_ready(Duration::from_mins(2));
}

/// A tenant and 5 sites through the REST API, and an image uploaded to 2 of them.
fn add_tenant_sites_and_images(headers: &[(&str, &str)], auth: &str, scratch: &std::path::Path) {
    // Data: objects through the REST API, and uploaded images.
    let (code, body) = http_request(
        "POST",
        PORT,
        "/api/tenancy/tenants/",
        headers,
        Some(r#"{"name": "Berth Tenant", "slug": "berth-tenant"}"#),
    )
    .unwrap();
    assert_eq!(code, 201, "{body}");
    let tenant: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut site_ids = Vec::new();
    for i in 0..5 {
        let (code, body) = http_request(
            "POST",
            PORT,
            "/api/dcim/sites/",
            headers,
            Some(&format!(
                r#"{{"name": "Backup Site {i}", "slug": "backup-site-{i}", "status": "planned", "tenant": {}}}"#,
                tenant["id"]
            )),
        )
        .unwrap();
        assert_eq!(code, 201, "{body}");
        let site: serde_json::Value = serde_json::from_str(&body).unwrap();
        site_ids.push(site["id"].as_u64().unwrap());
    }
    let png = scratch.join("floorplan.png");
    let made = std::process::Command::new("python3")
        .args(["-c", MAKE_PNG])
        .arg(&png)
        .status()
        .unwrap();
    assert!(made.success());
    for (i, id) in site_ids.iter().take(2).enumerate() {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-H"])
            .arg(format!("Authorization: {auth}"))
            .args(["-F", "object_type=dcim.site", "-F"])
            .arg(format!("object_id={id}"))
            .args(["-F"])
            .arg(format!("name=floor plan {i}"))
            .args(["-F"])
            .arg(format!("image=@{};type=image/png", png.display()))
            .arg(format!(
                "http://127.0.0.1:{PORT}/api/extras/image-attachments/"
            ))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.trim_end().ends_with("201"), "image upload: {text}");
    }
}

/// A new API token of the initial admin, made through NetBox's own shell.
fn admin_token(prefix: &std::path::Path, version: &str) -> String {
    let netbox = prefix.join(format!("releases/{version}/netbox/bin/netbox"));
    let out = run_as_service(
        prefix,
        "worker",
        &[
            netbox.to_str().unwrap(),
            "nbshell",
            "--command",
            berth_tests::NETBOX_CREATE_TOKEN,
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("TOKEN="))
        .unwrap_or_else(|| {
            panic!(
                "no token: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_owned()
}
