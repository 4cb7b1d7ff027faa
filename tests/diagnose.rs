//! `berth diagnose` on a running ministack: canaries planted in a secret (the real
//! database password, in the rendered config and a log), in the site config, in the
//! environment the manifest gives every service (the supervisor's plan) and in a log;
//! none is anywhere in the unpacked bundle, and `redaction.json` counts each removal.
//! A log swapped for a symlink to `/etc/shadow` is named, not followed.
#![allow(clippy::missing_panics_doc, clippy::print_stderr, missing_docs)] // a skipped test says why

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use berth_tests::{Berth, files_under, is_root, ministack_at, prefix_dir};

const SITE: &str = "external_url = \"http://127.0.0.1:48780/\"\n\
    [postgresql]\nport = 48732\n[redis]\nport = 48779\n[app]\nport = 48701\n";

const LOG_TOKEN: &str = "CanaryLogToken0123456789abcdef";
const ENV_TOKEN: &str = "CanaryEnvToken0123456789";
const SITE_PASSWORD: &str = "CanarySitePw0987";
const MANIFEST_CANARY: &str = "LIC-CANARY-4711";

struct Down(Berth);

impl Drop for Down {
    fn drop(&mut self) {
        self.0.run(&["down"]);
    }
}

#[test]
#[allow(clippy::too_many_lines)] // one instance, one bundle, every canary looked for
fn a_support_bundle_carries_no_secret() {
    if !is_root() {
        eprintln!("skipped: `up` of ministack makes service users (root only)");
        return;
    }
    let src = tempfile::tempdir().unwrap();
    let manifest = ministack_at(src.path(), "1.0.0", |t| {
        let t = t.replacen(
            "[app]\n",
            &format!("[app]\nenvironment = {{ API_TOKEN = \"{ENV_TOKEN}\" }}\n"),
            1,
        );
        format!("{t}\n[diagnose]\nredact = [\"LIC-CANARY-[0-9]+\"]\n")
    });
    let dir = prefix_dir("diagnose");
    let b = Berth::new(dir.path(), &manifest);
    b.write_site(&format!(
        "{SITE}# the old database password = {SITE_PASSWORD}, licence {MANIFEST_CANARY}\n"
    ));
    let up = b.run(&["up"]);
    let b = Berth::installed(dir.path());
    let _down = Down(Berth::installed(dir.path()));
    up.expect(0);

    let db_password = std::fs::read_to_string(dir.path().join("secrets/db_password"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(db_password.len() >= 16);
    // The app's log gets the password, a token and the vendor's licence key.
    let log = dir.path().join("log/app/current");
    let mut text = std::fs::read_to_string(&log).unwrap();
    let _ = write!(
        text,
        "connecting with {db_password}\nAuthorization: Bearer {LOG_TOKEN}\nlicence {MANIFEST_CANARY}\n"
    );
    std::fs::write(&log, text).unwrap();
    // A service user's trick: a "log" that is a link to the shadow file.
    std::os::unix::fs::symlink("/etc/shadow", dir.path().join("log/app/evil")).unwrap();

    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("bundle.tar.zst");
    let r = b
        .run(&["diagnose", "--out", out.to_str().unwrap(), "--json"])
        .expect(0);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let meta = std::fs::metadata(&out).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(meta.len(), report["bytes"].as_u64().unwrap());

    let unpacked = work.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let tar = Command::new("tar")
        .args(["-I", "zstd", "-xf"])
        .arg(&out)
        .arg("-C")
        .arg(&unpacked)
        .output()
        .unwrap();
    assert!(tar.status.success(), "{tar:?}");
    let root = unpacked.join("berth-diagnose");
    let shadow = std::fs::read_to_string("/etc/shadow").unwrap();
    let shadow_root = shadow.lines().find(|l| l.starts_with("root:")).unwrap();
    let files = files_under(&root);
    assert!(files.len() > 15, "{files:?}");
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for canary in [
            db_password.as_str(),
            LOG_TOKEN,
            ENV_TOKEN,
            SITE_PASSWORD,
            MANIFEST_CANARY,
            shadow_root,
        ] {
            assert!(!text.contains(canary), "{} holds a canary", f.display());
        }
    }
    // What a support engineer needs is there.
    for name in [
        "README.txt",
        "host/facts.json",
        "status.json",
        "history.json",
        "config/effective.toml",
        "config/site.toml",
        "preflight.json",
        "supervisor/plan.json",
        "logs/app/current",
        "logs/app/evil.symlink.txt",
        "redaction.json",
    ] {
        assert!(root.join(name).is_file(), "no {name}: {files:?}");
    }
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("status.json")).unwrap()).unwrap();
    assert!(
        status["services"].as_array().unwrap().len() >= 3,
        "{status}"
    );
    let app_log = std::fs::read_to_string(root.join("logs/app/current")).unwrap();
    assert!(
        app_log.contains("connecting with [REDACTED secret:db_password]")
            && app_log.contains("Bearer [REDACTED authorization-header]")
            && app_log.contains("licence [REDACTED manifest:0]"),
        "{app_log}"
    );
    let site = std::fs::read_to_string(root.join("config/site.toml")).unwrap();
    assert!(
        site.contains("password = [REDACTED password-assignment]"),
        "{site}"
    );

    // The report counts each removal, file by file.
    let redaction: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("redaction.json")).unwrap()).unwrap();
    let removed_in = |file: &str, rule: &str| {
        redaction["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["file"] == file)
            .and_then(|f| f["removed"][rule].as_u64())
            .unwrap_or(0)
    };
    assert_eq!(
        removed_in("logs/app/current", "secret:db_password"),
        1,
        "{redaction:#}"
    );
    assert_eq!(removed_in("logs/app/current", "authorization-header"), 1);
    assert_eq!(removed_in("logs/app/current", "manifest:0"), 1);
    assert!(
        removed_in("supervisor/plan.json", "password-assignment") >= 1,
        "{redaction:#}"
    );
    assert!(
        removed_in("rendered/app/app.json", "secret:db_password") >= 1,
        "{redaction:#}"
    );
    assert_eq!(removed_in("config/site.toml", "password-assignment"), 1);
    assert_eq!(removed_in("config/site.toml", "manifest:0"), 1);
    assert_eq!(
        redaction["removed"].as_u64(),
        report["removed"].as_u64(),
        "{redaction:#}"
    );

    // Never over an existing file.
    let again = b.run(&["diagnose", "--out", out.to_str().unwrap()]);
    assert_ne!(again.code, 0, "{again:?}");
    assert_eq!(std::fs::metadata(&out).unwrap().len(), meta.len());
}

const RECEIVER: u16 = 48795;
const SITE2: &str = "external_url = \"http://127.0.0.1:48880/\"\n\
    [postgresql]\nport = 48832\n[redis]\nport = 48879\n[app]\nport = 48801\n";

/// A hook that fails when the greeting becomes `hello there`.
const FAILING_HOOK: &str = r#"
[hooks.check_greeting]
component = "app"
description = "Refuses one greeting, to make a reconfigure fail half-way"
command = ["/bin/sh", "-c", "[ \"$GREETING\" != 'hello there' ] || { echo 'greeting refused' >&2; exit 3; }"]
environment = { GREETING = "{{ settings.app.greeting }}" }
when = "change"
on = ["setting:app.greeting"]
after = ["postgresql"]
before = ["app"]
"#;

/// `site` with the greeting the hook refuses.
fn refused_greeting(site: &str) -> String {
    site.replace(
        "port = 48801\n",
        "port = 48801\ngreeting = \"hello there\"\n",
    )
}

/// A `reconfigure` that fails half-way (a hook fails; berth rolls back) leaves a
/// redacted error report under `state/reports/`, with the error on top, and sends the
/// same bytes to `diagnose.report_url`: the endpoint (a small HTTP server of the
/// test's) gets an archive that holds the error and no secret. A refusal before
/// anything changed (a taken port) leaves none.
#[test]
#[allow(clippy::too_many_lines)] // one instance, one failure, every consumer of its report
fn a_failed_operation_leaves_a_redacted_report_and_sends_it_when_asked() {
    if !is_root() {
        eprintln!("skipped: `up` of ministack makes service users (root only)");
        return;
    }
    let src = tempfile::tempdir().unwrap();
    let manifest = ministack_at(src.path(), "1.0.0", |t| format!("{t}{FAILING_HOOK}"));
    let dir = prefix_dir("report");
    let b = Berth::new(dir.path(), &manifest);
    let with_url =
        format!("{SITE2}[diagnose]\nreport_url = \"http://127.0.0.1:{RECEIVER}/reports\"\n");
    b.write_site(&with_url);
    let up = b.run(&["up"]);
    let b = Berth::installed(dir.path());
    let _down = Down(Berth::installed(dir.path()));
    up.expect(0);
    let db_password = std::fs::read_to_string(dir.path().join("secrets/db_password"))
        .unwrap()
        .trim()
        .to_owned();

    // The endpoint: saves each POST's body and headers.
    let work = tempfile::tempdir().unwrap();
    let received = work.path().join("received");
    std::fs::create_dir(&received).unwrap();
    let server = format!(
        "import http.server, os\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20   def do_POST(self):\n\
         \x20       n = int(self.headers['Content-Length'])\n\
         \x20       body = self.rfile.read(n)\n\
         \x20       d = {received:?}\n\
         \x20       open(os.path.join(d, 'body'), 'wb').write(body)\n\
         \x20       open(os.path.join(d, 'headers'), 'w').write(str(self.headers) + self.path)\n\
         \x20       self.send_response(202); self.end_headers()\n\
         \x20   def log_message(self, *a): pass\n\
         http.server.HTTPServer(('127.0.0.1', {RECEIVER}), H).serve_forever()\n",
        received = received.display().to_string()
    );
    let mut endpoint = Command::new("python3")
        .args(["-c", &server])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));

    // A refusal before anything changed (another program on the port the app is to
    // move to): no report.
    let holder = std::net::TcpListener::bind("127.0.0.1:48802").unwrap();
    b.write_site(&with_url.replace("port = 48801", "port = 48802"));
    let r = b.run(&["reconfigure"]);
    drop(holder);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(!r.stderr.contains("error report"), "{}", r.stderr);
    assert!(!dir.path().join("state/reports").exists());

    // The hook fails half-way through the reconfigure.
    b.write_site(&refused_greeting(&with_url));
    let r = b.run(&["reconfigure"]);
    let _ = endpoint.kill();
    let _ = endpoint.wait();
    assert_eq!(r.code, 1, "{r:?}");
    let error_at = r.stderr.find("error: ").unwrap();
    let note_at = r
        .stderr
        .find("note: a redacted error report is in ")
        .unwrap_or_else(|| panic!("{}", r.stderr));
    assert!(error_at < note_at, "the error comes first: {}", r.stderr);
    assert!(
        r.stderr.contains("note: the report was sent (answer 202)"),
        "{}",
        r.stderr
    );

    let reports: Vec<_> = std::fs::read_dir(dir.path().join("state/reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let report = &reports[0];
    assert!(report.to_string_lossy().ends_with("-reconfigure.tar.zst"));
    assert_eq!(std::fs::metadata(report).unwrap().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::read(received.join("body")).unwrap(),
        std::fs::read(report).unwrap(),
        "the endpoint got other bytes"
    );
    let headers = std::fs::read_to_string(received.join("headers")).unwrap();
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("x-berth-command: reconfigure"),
        "{headers}"
    );
    assert!(headers.ends_with("/reports"), "{headers}");

    let unpacked = work.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let tar = Command::new("tar")
        .args(["-I", "zstd", "-xf"])
        .arg(report)
        .arg("-C")
        .arg(&unpacked)
        .output()
        .unwrap();
    assert!(tar.status.success(), "{tar:?}");
    let error = std::fs::read_to_string(unpacked.join("berth-diagnose/error.txt")).unwrap();
    assert!(error.contains("`reconfigure` failed"), "{error}");
    assert!(error.contains("check_greeting"), "{error}");
    for f in files_under(&unpacked) {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        assert!(
            !text.contains(&db_password),
            "{} holds the password",
            f.display()
        );
    }

    // Without an endpoint: written, not sent.
    b.write_site(&refused_greeting(SITE2));
    let r = b.run(&["reconfigure"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("note: a redacted error report is in "),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("sent"), "{}", r.stderr);
    assert_eq!(
        std::fs::read_dir(dir.path().join("state/reports"))
            .unwrap()
            .count(),
        2
    );
}
