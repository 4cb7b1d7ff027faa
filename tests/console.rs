//! `berth console` over HTTP, as a browser talks to it (curl with a cookie jar of the
//! test's own): sign-in with the generated password and the login form's token, the
//! session cookie's flags, CSRF on sign-out, the lockout after five failures, the
//! status, log and history pages, the security headers, and the password in no page.
//! A second test goes from an instance without a site config through first-run setup
//! to backups, upgrades, a followed log and the supervised console behind nginx. (The
//! same pages in headless Chromium: `tests/console_browser.rs`.)
#![allow(clippy::missing_panics_doc, clippy::print_stderr, missing_docs)] // a skipped test says why

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use berth_tests::{Berth, berth_bin, is_root, ministack_at, prefix_dir, spawn_console, wait_for};

const SITE: &str = "external_url = \"http://127.0.0.1:49080/\"\n\
    [postgresql]\nport = 49032\n[redis]\nport = 49079\n[app]\nport = 49001\n";
const CONSOLE: &str = "127.0.0.1:49090";

struct Stop(Child, Berth);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        self.1.run(&["down"]);
    }
}

/// One answer: status, headers (lower-case names; `set-cookie` may repeat), body.
struct Answer {
    code: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "set-cookie")
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A request to the console of the first test (see [`request_at`]).
fn request(
    jar: &mut BTreeMap<String, String>,
    method: &str,
    path: &str,
    form: &[(&str, &str)],
    extra: &[&str],
) -> Answer {
    request_at(&format!("http://{CONSOLE}"), jar, method, path, form, extra)
}

/// A request to `base` + `path` with the cookies in `jar` (name → value), which it
/// updates.
fn request_at(
    base: &str,
    jar: &mut BTreeMap<String, String>,
    method: &str,
    path: &str,
    form: &[(&str, &str)],
    extra: &[&str],
) -> Answer {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-D", "-", "-X", method]);
    if !jar.is_empty() {
        let c: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
        cmd.args(["-H", &format!("Cookie: {}", c.join("; "))]);
    }
    for h in extra {
        cmd.args(["-H", h]);
    }
    for (k, v) in form {
        cmd.args(["--data-urlencode", &format!("{k}={v}")]);
    }
    cmd.arg(format!("{base}{path}"));
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let code = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let answer = Answer {
        code,
        headers,
        body: body.to_owned(),
    };
    for c in answer.cookies() {
        if let Some((kv, _)) = c.split_once(';')
            && let Some((k, v)) = kv.split_once('=')
        {
            if v.is_empty() {
                jar.remove(k);
            } else {
                jar.insert(k.to_owned(), v.to_owned());
            }
        }
    }
    answer
}

/// The hidden input `name` of a page.
fn hidden(body: &str, name: &str) -> String {
    let at = body
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no {name} in {body}"));
    let rest = &body[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_owned()
}

fn sign_in(jar: &mut BTreeMap<String, String>, password: &str) -> Answer {
    let page = request(jar, "GET", "/login", &[], &[]);
    let csrf = hidden(&page.body, "csrf");
    request(
        jar,
        "POST",
        "/login",
        &[("password", password), ("csrf", &csrf)],
        &[],
    )
}

#[test]
#[allow(clippy::too_many_lines)] // one console, every rule it keeps
fn the_console_signs_in_keeps_its_rules_and_shows_the_instance() {
    if !is_root() {
        eprintln!("skipped: `up` of ministack makes service users (root only)");
        return;
    }
    let src = tempfile::tempdir().unwrap();
    let manifest = ministack_at(src.path(), "1.0.0", |t| t);
    let dir = prefix_dir("console");
    let b = Berth::new(dir.path(), &manifest);
    b.write_site(SITE);
    b.run(&["up"]).expect(0);
    let child = spawn_console(dir.path(), None, CONSOLE, None);
    let _stop = Stop(child, Berth::installed(dir.path()));
    let password_file = dir.path().join("secrets/berth-console-password");
    let password = std::fs::read_to_string(&password_file).unwrap();
    let password = password.trim();
    assert_eq!(password.len(), 24);
    assert_eq!(
        std::os::unix::fs::MetadataExt::mode(&std::fs::metadata(&password_file).unwrap()) & 0o777,
        0o600
    );

    // Not signed in: pages send to the sign-in page, the API says 401.
    let mut jar = BTreeMap::new();
    let r = request(&mut jar, "GET", "/", &[], &[]);
    assert_eq!((r.code, r.header("location")), (303, Some("/login")));
    assert_eq!(request(&mut jar, "GET", "/api/status", &[], &[]).code, 401);

    // The sign-in page: headers, and where the password is (never what).
    let page = request(&mut jar, "GET", "/login", &[], &[]);
    assert_eq!(page.code, 200);
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert!(
        page.body.contains("berth-console-password</code>"),
        "{}",
        page.body
    );

    // A sign-in without the form's token is refused, however right the password.
    let r = request(&mut jar, "POST", "/login", &[("password", password)], &[]);
    assert_eq!(r.code, 403, "{}", r.body);
    assert!(!jar.contains_key("berth_session"));

    // Wrong, then right.
    let r = sign_in(&mut jar, "not-the-password");
    assert_eq!(r.code, 401);
    assert!(r.body.contains("Wrong password."), "{}", r.body);
    let r = sign_in(&mut jar, password);
    assert_eq!((r.code, r.header("location")), (303, Some("/")));
    let session = r
        .cookies()
        .into_iter()
        .find(|c| c.starts_with("berth_session="))
        .unwrap()
        .to_owned();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session.contains(flag), "{session}");
    }
    assert!(!session.contains("Secure"), "plain HTTP: {session}");
    let token = jar["berth_session"].clone();
    assert_eq!(token.len(), 64);

    // The pages.
    let status = request(&mut jar, "GET", "/", &[], &[]);
    assert_eq!(status.code, 200);
    for service in ["app", "postgresql", "redis", "nginx"] {
        assert!(
            status.body.contains(&format!("data-service=\"{service}\"")),
            "{service}: {}",
            status.body
        );
    }
    let api = request(&mut jar, "GET", "/api/status", &[], &[]);
    let v: serde_json::Value = serde_json::from_str(&api.body).unwrap();
    assert!(
        v["services"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == "ready"),
        "{v}"
    );
    let log = request(&mut jar, "GET", "/logs/app", &[], &[]);
    assert_eq!(log.code, 200);
    assert!(log.body.contains("<pre id=\"log\">"), "{}", log.body);
    assert_eq!(
        request(&mut jar, "GET", "/logs/..%2F..%2Fetc", &[], &[]).code,
        404
    );
    assert_eq!(request(&mut jar, "GET", "/logs/nosuch", &[], &[]).code, 404);
    let history = request(&mut jar, "GET", "/history", &[], &[]);
    assert!(
        history.body.contains("<td class=\"kind\">up</td>"),
        "{}",
        history.body
    );
    for page in [&status, &log, &history, &api] {
        assert!(!page.body.contains(password), "a page shows the password");
    }

    // Over HTTPS (a proxy in front says so), the cookie is Secure.
    let mut other = BTreeMap::new();
    let page = request(
        &mut other,
        "GET",
        "/login",
        &[],
        &["X-Forwarded-Proto: https"],
    );
    let csrf = hidden(&page.body, "csrf");
    let r = request(
        &mut other,
        "POST",
        "/login",
        &[("password", password), ("csrf", &csrf)],
        &["X-Forwarded-Proto: https"],
    );
    assert!(
        r.cookies()
            .iter()
            .any(|c| c.starts_with("berth_session=") && c.contains("Secure"))
    );

    // Sign-out needs the session's token: without it nothing changes.
    let r = request(&mut jar, "POST", "/logout", &[("csrf", "forged")], &[]);
    assert_eq!(r.code, 403);
    assert_eq!(request(&mut jar, "GET", "/", &[], &[]).code, 200);
    let csrf = hidden(&status.body, "csrf");
    let r = request(&mut jar, "POST", "/logout", &[("csrf", &csrf)], &[]);
    assert_eq!((r.code, r.header("location")), (303, Some("/login")));
    let mut stale = BTreeMap::from([("berth_session".to_owned(), token)]);
    assert_eq!(request(&mut stale, "GET", "/", &[], &[]).code, 303);

    // Five failures lock sign-in, the right password included.
    let mut jar = BTreeMap::new();
    for _ in 0..5 {
        assert_eq!(sign_in(&mut jar, "guess").code, 401);
    }
    let r = sign_in(&mut jar, password);
    assert_eq!(r.code, 429, "{}", r.body);
    assert!(r.body.contains("locked"), "{}", r.body);
    assert!(!jar.contains_key("berth_session"));
}

/// `&amp;` and friends back to text (minijinja escapes for HTML).
fn unescape(html: &str) -> String {
    html.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#96;", "`")
        .replace("&amp;", "&")
}

/// Poll task `location` (`/tasks/<id>`) until it ends: its JSON.
fn wait_task(
    base: &str,
    jar: &mut BTreeMap<String, String>,
    location: &str,
    within: Duration,
) -> serde_json::Value {
    let id = location.rsplit('/').next().unwrap();
    let mut last = serde_json::Value::Null;
    wait_for(&format!("task {location}"), within, || {
        let r = request_at(base, jar, "GET", &format!("/api/tasks/{id}"), &[], &[]);
        last = serde_json::from_str(&r.body).unwrap_or_default();
        last["running"] == false
    });
    last
}

const SETUP_CONSOLE: &str = "127.0.0.1:49146";
const SUPERVISED_CONSOLE: &str = "127.0.0.1:49147";

/// From an instance without a site config to a running app through the console's
/// first-run setup (a refused answer first: the model's message, nothing written),
/// then the changes the console makes: a backup taken and verified as tasks, recorded
/// in the history with the session's name; a log followed as events; then the console
/// run by the supervisor (`console.listen`) and reached through the app's nginx under
/// `console.path`.
#[test]
#[allow(clippy::too_many_lines)] // one instance, from setup to the proxied console
fn first_run_setup_backups_and_the_console_behind_nginx() {
    if !is_root() {
        eprintln!("skipped: `up` of ministack makes service users (root only)");
        return;
    }
    let src = tempfile::tempdir().unwrap();
    // Ports of its own: setup asks no ports, the manifest's defaults are used.
    let manifest = ministack_at(src.path(), "1.0.0", |t| {
        t.replace("default = 15432", "default = 49142")
            .replace("default = 16379", "default = 49149")
            .replace("default = 18001", "default = 49141")
            .replace("127.0.0.1:18080", "127.0.0.1:49148")
    });
    let dir = prefix_dir("console-setup");
    let b = Berth::new(dir.path(), &manifest);
    let console = spawn_console(dir.path(), Some(&manifest), SETUP_CONSOLE, None);
    let _stop = Stop(console, Berth::installed(dir.path()));
    let base = format!("http://{SETUP_CONSOLE}");
    let password = std::fs::read_to_string(dir.path().join("secrets/berth-console-password"))
        .unwrap()
        .trim()
        .to_owned();
    let mut jar = BTreeMap::new();
    let page = request_at(&base, &mut jar, "GET", "/login", &[], &[]);
    let csrf = hidden(&page.body, "csrf");
    let r = request_at(
        &base,
        &mut jar,
        "POST",
        "/login",
        &[("password", &password), ("csrf", &csrf), ("name", "tester")],
        &[],
    );
    assert_eq!(r.code, 303);

    // No site config: the console offers setup.
    let r = request_at(&base, &mut jar, "GET", "/", &[], &[]);
    assert_eq!((r.code, r.header("location")), (303, Some("/setup")));
    let form = request_at(&base, &mut jar, "GET", "/setup", &[], &[]);
    assert_eq!(form.code, 200, "{}", form.body);
    for field in [
        "f.external_url",
        "f.component.redis",
        "f.backup.target",
        "f.users",
    ] {
        assert!(
            form.body.contains(&format!("name=\"{field}\"")),
            "{field}: {}",
            form.body
        );
    }
    let csrf = hidden(&form.body, "csrf");

    // A refused answer: the model's own message next to the field, nothing written.
    let before = berth_tests::snapshot_tree(dir.path());
    let bad = request_at(
        &base,
        &mut jar,
        "POST",
        "/setup",
        &[
            ("csrf", &csrf),
            ("f.external_url", "ftp://127.0.0.1/"),
            ("f.users", "shared"),
        ],
        &[],
    );
    assert_eq!(bad.code, 422, "{}", bad.body);
    let text = unescape(&bad.body);
    let at = text
        .find("id=\"error-external_url\">")
        .expect("no message at the field");
    let shown = &text[at + "id=\"error-external_url\">".len()..];
    let shown = &shown[..shown.find('<').unwrap()];
    // The same message `berth config check` gives for that value.
    let check_dir = tempfile::tempdir().unwrap();
    let check_site = check_dir.path().join("site.toml");
    std::fs::write(&check_site, "external_url = \"ftp://127.0.0.1/\"\n").unwrap();
    let check = Command::new(berth_bin())
        .arg("--prefix")
        .arg(dir.path())
        .arg("--manifest")
        .arg(&manifest)
        .arg("--config")
        .arg(&check_site)
        .args(["config", "check"])
        .output()
        .unwrap();
    let check = String::from_utf8_lossy(&check.stderr);
    assert!(
        check.contains(shown.trim()),
        "the console says {shown:?}; config check says {check}"
    );
    assert!(!dir.path().join("site.toml").exists());
    assert_eq!(berth_tests::snapshot_tree(dir.path()), before);
    // Without the token nothing is even checked.
    let r = request_at(
        &base,
        &mut jar,
        "POST",
        "/setup/apply",
        &[("f.users", "shared")],
        &[],
    );
    assert_eq!(r.code, 403);

    // Valid answers: the review shows the file and the plan, and writes nothing yet.
    let answers = [
        ("csrf", csrf.as_str()),
        ("f.external_url", "http://127.0.0.1:49148/"),
        ("f.component.redis", "yes"),
        ("f.backup.target", ""),
        ("f.users", "shared"),
    ];
    let review = request_at(&base, &mut jar, "POST", "/setup", &answers, &[]);
    assert_eq!(review.code, 200, "{}", review.body);
    let text = unescape(&review.body);
    assert!(
        text.contains("external_url = \"http://127.0.0.1:49148/\""),
        "{text}"
    );
    assert!(text.contains("<pre id=\"plan\">"), "{text}");
    assert!(!dir.path().join("site.toml").exists());

    // Confirmed: the site config is written and `berth up` runs as a task.
    let r = request_at(&base, &mut jar, "POST", "/setup/apply", &answers, &[]);
    assert_eq!(r.code, 303, "{}", r.body);
    let task = r.header("location").unwrap().to_owned();
    assert!(task.starts_with("/tasks/"), "{task}");
    let done = wait_task(&base, &mut jar, &task, Duration::from_mins(10));
    assert_eq!(done["exit"], 0, "{}", done["output"]);
    let site = std::fs::read_to_string(dir.path().join("site.toml")).unwrap();
    assert!(site.contains("users = \"shared\""), "{site}");
    let (code, _) = berth_tests::http_get(49148, "/health", "127.0.0.1").unwrap();
    assert_eq!(code, 200);

    // A backup, asked for without the token: refused, no task.
    let backups = request_at(&base, &mut jar, "GET", "/backups", &[], &[]);
    assert_eq!(backups.code, 200, "{}", backups.body);
    assert!(
        backups.body.contains("No archives yet."),
        "{}",
        backups.body
    );
    let r = request_at(
        &base,
        &mut jar,
        "POST",
        "/backups/create",
        &[("csrf", "x")],
        &[],
    );
    assert_eq!(r.code, 403);
    let csrf = hidden(&backups.body, "csrf");
    let r = request_at(
        &base,
        &mut jar,
        "POST",
        "/backups/create",
        &[("csrf", &csrf)],
        &[],
    );
    assert_eq!(r.code, 303, "{}", r.body);
    let done = wait_task(
        &base,
        &mut jar,
        r.header("location").unwrap(),
        Duration::from_mins(5),
    );
    assert_eq!(done["exit"], 0, "{}", done["output"]);
    let backups = request_at(&base, &mut jar, "GET", "/backups", &[], &[]);
    let name = hidden(&backups.body, "archive");
    assert!(name.starts_with("ministack-1.0.0-"), "{name}");
    // Only an archive the page listed is verified: a path is not an archive name.
    let r = request_at(
        &base,
        &mut jar,
        "POST",
        "/backups/verify",
        &[("csrf", &csrf), ("archive", "../../../etc/passwd")],
        &[],
    );
    assert_eq!(r.code, 404);
    let r = request_at(
        &base,
        &mut jar,
        "POST",
        "/backups/verify",
        &[("csrf", &csrf), ("archive", &name)],
        &[],
    );
    let done = wait_task(
        &base,
        &mut jar,
        r.header("location").unwrap(),
        Duration::from_mins(5),
    );
    assert_eq!(done["exit"], 0, "{}", done["output"]);

    // The history says who: the name given at sign-in, the session, where from.
    let history = b.run(&["history", "--json"]);
    let runs: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    let by: Vec<(&str, &str)> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap(),
                r["actor"].as_str().unwrap_or(""),
            )
        })
        .collect();
    for kind in ["up", "backup"] {
        let (_, actor) = by
            .iter()
            .find(|(k, _)| *k == kind)
            .unwrap_or_else(|| panic!("{kind}: {by:?}"));
        assert!(
            actor.starts_with("console: tester (session ") && actor.ends_with("from 127.0.0.1)"),
            "{kind}: {actor}"
        );
    }
    let page = request_at(&base, &mut jar, "GET", "/history", &[], &[]);
    assert!(
        unescape(&page.body).contains("console: tester (session "),
        "{}",
        page.body
    );

    // A log followed as server-sent events: a request to the app shows up in nginx's.
    let follow = Command::new("curl")
        .args(["-sN", "-m", "6", "-H"])
        .arg(format!("Cookie: berth_session={}", jar["berth_session"]))
        .arg(format!("{base}/logs/nginx/follow"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let _ = berth_tests::http_get(49148, "/health?follow-canary", "127.0.0.1");
    let out = follow.wait_with_output().unwrap();
    let events = String::from_utf8_lossy(&out.stdout);
    assert!(
        events
            .lines()
            .any(|l| l.starts_with("data:") && l.contains("follow-canary")),
        "{events}"
    );
    assert_eq!(
        request_at(&base, &mut jar, "GET", "/logs/nosuch/follow", &[], &[]).code,
        404
    );
    let upgrades = request_at(&base, &mut jar, "GET", "/upgrades", &[], &[]);
    assert!(
        upgrades.body.contains("id=\"no-source\""),
        "{}",
        upgrades.body
    );

    // Upgrades: the versions in `upgrade.source`, a plan, then the upgrade itself.
    let source = tempfile::tempdir().unwrap();
    ministack_at(source.path(), "1.0.1", |t| {
        t.replace("default = 15432", "default = 49142")
            .replace("default = 16379", "default = 49149")
            .replace("default = 18001", "default = 49141")
            .replace("127.0.0.1:18080", "127.0.0.1:49148")
    });
    let site = format!(
        "{site}\n[upgrade]\nsource = \"{}\"\n",
        source.path().display()
    );
    std::fs::write(dir.path().join("site.toml"), &site).unwrap();
    b.run(&["reconfigure"]).expect(0);
    let upgrades = request_at(&base, &mut jar, "GET", "/upgrades", &[], &[]);
    assert!(
        upgrades.body.contains("data-version=\"1.0.1\""),
        "{}",
        upgrades.body
    );
    let csrf = hidden(&upgrades.body, "csrf");
    let r = request_at(
        &base,
        &mut jar,
        "POST",
        "/upgrades/plan",
        &[("csrf", &csrf), ("version", "9.9.9")],
        &[],
    );
    assert_eq!(r.code, 404, "only a version the page listed");
    let r = request_at(
        &base,
        &mut jar,
        "POST",
        "/upgrades/plan",
        &[("csrf", &csrf), ("version", "1.0.1")],
        &[],
    );
    let plan = wait_task(
        &base,
        &mut jar,
        r.header("location").unwrap(),
        Duration::from_mins(2),
    );
    assert_eq!(plan["exit"], 0, "{}", plan["output"]);
    assert!(
        plan["output"].as_str().unwrap().contains("1.0.1"),
        "{}",
        plan["output"]
    );
    let r = request_at(
        &base,
        &mut jar,
        "POST",
        "/upgrades/apply",
        &[("csrf", &csrf), ("version", "1.0.1")],
        &[],
    );
    let applied = wait_task(
        &base,
        &mut jar,
        r.header("location").unwrap(),
        Duration::from_mins(10),
    );
    assert_eq!(applied["exit"], 0, "{}", applied["output"]);
    let upgrades = request_at(&base, &mut jar, "GET", "/upgrades", &[], &[]);
    assert!(
        upgrades.body.contains("id=\"current\">1.0.1<"),
        "{}",
        upgrades.body
    );
    let runs: serde_json::Value =
        serde_json::from_str(&b.run(&["history", "--json"]).stdout).unwrap();
    assert!(
        runs.as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"].as_str().unwrap().starts_with("upgrade")
                && r["actor"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("console: tester (session ")),
        "{runs}"
    );

    // Run by the supervisor, behind the app's nginx under /berth/.
    std::fs::write(
        dir.path().join("site.toml"),
        format!("{site}\n[console]\nlisten = \"{SUPERVISED_CONSOLE}\"\n"),
    )
    .unwrap();
    b.run(&["reconfigure"]).expect(0);
    wait_for("the supervised console", Duration::from_secs(30), || {
        std::net::TcpStream::connect(SUPERVISED_CONSOLE).is_ok()
    });
    let status = b.status();
    assert!(
        status["services"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "berth-console" && s["state"] == "ready"),
        "{status}"
    );
    let proxied = "http://127.0.0.1:49148/berth";
    let mut jar = BTreeMap::new();
    let r = request_at(proxied, &mut jar, "GET", "/", &[], &[]);
    assert_eq!((r.code, r.header("location")), (303, Some("/berth/login")));
    let page = request_at(proxied, &mut jar, "GET", "/login", &[], &[]);
    assert_eq!(page.code, 200, "{}", page.body);
    assert!(
        unescape(&page.body).contains("action=\"/berth/login\""),
        "{}",
        page.body
    );
    let csrf = hidden(&page.body, "csrf");
    let r = request_at(
        proxied,
        &mut jar,
        "POST",
        "/login",
        &[
            ("password", &password),
            ("csrf", &csrf),
            ("name", "proxied"),
        ],
        &[],
    );
    assert_eq!((r.code, r.header("location")), (303, Some("/berth/")));
    assert!(
        r.cookies()
            .iter()
            .any(|c| c.starts_with("berth_session=") && c.contains("Path=/berth/")),
        "{:?}",
        r.cookies()
    );
    let api = request_at(proxied, &mut jar, "GET", "/api/status", &[], &[]);
    assert_eq!(api.code, 200, "{}", api.body);
    let backups = request_at(proxied, &mut jar, "GET", "/backups", &[], &[]);
    let csrf = hidden(&backups.body, "csrf");
    let r = request_at(
        proxied,
        &mut jar,
        "POST",
        "/backups/create",
        &[("csrf", &csrf)],
        &[],
    );
    assert_eq!(r.code, 303, "{}", r.body);
    let location = r.header("location").unwrap().to_owned();
    assert!(location.starts_with("/berth/tasks/"), "{location}");
    let done = wait_task(
        proxied,
        &mut jar,
        location.trim_start_matches("/berth"),
        Duration::from_mins(5),
    );
    assert_eq!(done["exit"], 0, "{}", done["output"]);
    let runs: serde_json::Value =
        serde_json::from_str(&b.run(&["history", "--json"]).stdout).unwrap();
    let latest = &runs[0];
    assert_eq!(latest["kind"], "backup");
    let actor = latest["actor"].as_str().unwrap();
    assert!(
        actor.starts_with("console: proxied (session ")
            && actor.ends_with("from 127.0.0.1 via the web server)"),
        "{actor}"
    );
}
