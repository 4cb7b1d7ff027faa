//! The reference app end to end: `berth up` with the NetBox manifest from
//! `examples/netbox` gives a working NetBox behind nginx, with its worker running.
//!
//! This is the slow test of the suite (a virtualenv from PyPI and NetBox's first
//! migration, several minutes on two cores), so everything that needs a running
//! NetBox happens on this one instance.

use std::time::{Duration, Instant};

use berth_tests::{Berth, http_request, prefix_dir, root, run_as_service};

const PORT: u16 = 38080;

/// Creates an API token for the initial admin through NetBox's own shell.
const CREATE_TOKEN: &str = "\
from users.models import Token, User
u = User.objects.get(username='admin')
t = Token(user=u, description='berth end-to-end test', write_enabled=True)
t.full_clean()
t.save()
print('TOKEN=' + t.get_auth_header_prefix() + t.token)
";

struct Down<'a>(&'a Berth);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        self.0.run(&["down"]);
    }
}

#[test]
fn netbox_comes_up_behind_nginx_and_serves_its_api() {
    let dir = prefix_dir("netbox");
    let b = Berth::new(dir.path(), &root().join("examples/netbox"));
    b.write_site(&format!(
        "external_url = \"http://127.0.0.1:{PORT}/\"\n\
         [postgresql]\nport = 35433\n[redis]\nport = 36380\n[web]\nport = 38001\nworkers = 2\n"
    ));
    let _down = Down(&b);
    let up = b.run(&["up"]).expect(0);
    assert!(
        up.stdout.contains(&format!("http://127.0.0.1:{PORT}/")),
        "{}",
        up.stdout
    );

    // The admin password is in a 0600 file whose path `up` printed, never the password.
    let pw_file = dir.path().join("secrets/admin_password");
    assert!(
        up.stdout.contains(&pw_file.display().to_string()),
        "{}",
        up.stdout
    );
    let password = std::fs::read_to_string(&pw_file).unwrap();
    assert!(!up.stdout.contains(password.trim()) && !up.stderr.contains(password.trim()));

    // The login page answers through nginx, and so does a static file nginx serves itself.
    let (code, body) = http_request("GET", PORT, "/login/", &[], None).unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("NetBox"), "not NetBox's login page");
    let (code, _) = http_request("GET", PORT, "/static/netbox.ico", &[], None).unwrap();
    assert_eq!(code, 200, "static files are not served");

    // An API token for the initial admin creates an object, and reads it back.
    let netbox = dir.path().join("releases/4.7.3/netbox/bin/netbox");
    let out = run_as_service(
        dir.path(),
        "worker",
        &[
            netbox.to_str().unwrap(),
            "nbshell",
            "--command",
            CREATE_TOKEN,
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let auth = stdout
        .lines()
        .find_map(|l| l.strip_prefix("TOKEN="))
        .unwrap_or_else(|| {
            panic!(
                "no token: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_owned();
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

    // A second reconfigure changes nothing and restarts nothing.
    let pids = b.pids();
    let r = b.run(&["reconfigure"]).expect(0);
    assert!(r.stdout.contains("Nothing changed"), "{}", r.stdout);
    assert_eq!(b.pids(), pids);
}
