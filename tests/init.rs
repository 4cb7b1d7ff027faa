//! `berth init`: first-run setup on a terminal. Answers piped in are checked one by one
//! with the site-config model's own messages (a wrong answer is asked again), the site
//! config written is a normal one `berth config check` accepts, an existing one is
//! never replaced, bad answers given as options write nothing, and `--yes --up` brings
//! the app up from the answers alone.
#![allow(clippy::missing_panics_doc, clippy::print_stderr, missing_docs)] // a skipped test says why

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};

use berth_tests::{Berth, berth_bin, fixture, is_root, prefix_dir};

struct Down(Berth);

impl Drop for Down {
    fn drop(&mut self) {
        self.0.run(&["down"]);
    }
}

fn init(prefix: &std::path::Path, args: &[&str], input: &str) -> (i32, String, String) {
    let mut child = Command::new(berth_bin())
        .arg("--prefix")
        .arg(prefix)
        .arg("--manifest")
        .arg(fixture("ministack"))
        .arg("init")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn answers_are_checked_by_the_model_and_make_a_normal_site_config() {
    let dir = prefix_dir("init");
    let prefix = dir.path().join("p");
    // A wrong URL, then a right one; a wrong yes/no, then "no"; a backup directory.
    let (code, stdout, stderr) = init(
        &prefix,
        &[],
        "ftp://example.com/\nhttp://127.0.0.1:48980/\nmaybe\nno\n/srv/backups\n",
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("error: `ftp://example.com/` is not a valid `external_url`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: expected `true` or `false` for `redis.enabled`"),
        "{stderr}"
    );
    let site = prefix.join("site.toml");
    let text = std::fs::read_to_string(&site).unwrap();
    assert!(
        text.contains("external_url = \"http://127.0.0.1:48980/\""),
        "{text}"
    );
    assert!(text.contains("[redis]\nenabled = false"), "{text}");
    assert!(
        text.contains("[backup]\ntarget = \"/srv/backups\""),
        "{text}"
    );
    assert_eq!(std::fs::metadata(&site).unwrap().mode() & 0o777, 0o640);
    assert!(stdout.contains("Run `berth up` to apply it."), "{stdout}");
    let check = Berth::new(&prefix, &fixture("ministack")).run(&["config", "check"]);
    assert_eq!(check.code, 0, "{check:?}");

    // Never over an existing site config.
    let (code, _, stderr) = init(&prefix, &["--yes"], "");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("exists already"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&site).unwrap(), text);

    // A bad answer given as an option: exit 2, nothing written, not even the prefix.
    let fresh = dir.path().join("q");
    let (code, _, stderr) = init(&fresh, &["--external-url", "ftp://x/", "--yes"], "");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("is not a valid `external_url`"), "{stderr}");
    let (code, _, stderr) = init(&fresh, &["--enable", "redsi", "--yes"], "");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("optional: `redis`"), "{stderr}");
    // Input that never gets it right gives up.
    let (code, _, stderr) = init(&fresh, &[], &"ftp://x/\n".repeat(6));
    assert_eq!(code, 2, "{stderr}");
    assert!(!fresh.exists());
}

#[test]
fn init_yes_up_brings_the_app_up_from_the_answers() {
    if !is_root() {
        eprintln!("skipped: `up` of ministack makes service users (root only)");
        return;
    }
    let dir = prefix_dir("init-up");
    let prefix = dir.path().join("p");
    let b = Berth::installed(&prefix);
    // ministack's default ports (no other test of this file uses them).
    let (code, stdout, stderr) = init(
        &prefix,
        &[
            "--external-url",
            "http://127.0.0.1:18080/",
            "--disable",
            "redis",
            "--users",
            "shared",
            "--yes",
            "--up",
        ],
        "",
    );
    let _down = Down(Berth::installed(&prefix));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("is up at http://127.0.0.1:18080/"),
        "{stdout}"
    );
    let services: Vec<String> = b.status()["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(!services.contains(&"redis".to_owned()), "{services:?}");
    assert!(services.contains(&"app".to_owned()), "{services:?}");
}
