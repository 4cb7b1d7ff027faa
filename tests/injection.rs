//! Injection through the command line: hostile site values never reach a config file
//! as structure, and `berth plan` never prints a secret, in any encoding a template
//! gives it. Runs `berth config check` and `berth plan` (nothing is started).

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use berth_tests::{Berth, prefix_dir, root, snapshot_tree};

fn netbox() -> PathBuf {
    root().join("examples/netbox")
}

/// Every `type = "string"` setting of the NetBox manifest, as `(group, key)`.
fn netbox_string_settings() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(netbox().join("berth.toml")).unwrap();
    let mut out = Vec::new();
    let mut current = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("[settings.") {
            current = rest
                .trim_end_matches(']')
                .split_once('.')
                .map(|(g, k)| (g.to_owned(), k.to_owned()));
        } else if line.trim() == "type = \"string\""
            && let Some(c) = current.take()
        {
            out.push(c);
        }
    }
    assert!(out.len() >= 5, "{out:?}");
    out
}

/// A TOML basic string holding `s`.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

const PAYLOADS: [&str; 7] = [
    "127.0.0.1:8080; location /leak { alias /etc/; } listen 127.0.0.1",
    "x\nlocation /leak { alias /etc/; }",
    "x';import os;os.system('id');'",
    "x\"; } server { location /leak { alias /etc/; } #",
    "$(id)`id`",
    "nul\0byte",
    "esc\u{1b}[2J",
];

/// Stops: a newline or `;{}` in a string setting adding `location /leak { alias /etc/; }`
/// to nginx.conf (or code to configuration.py). Each value is refused by `config check`
/// (exit 2, nothing changed) or, when it is a valid string, written escaped: no line of
/// the plan starts a directive of its own.
#[test]
fn every_string_setting_of_netbox_is_refused_or_escaped() {
    let dir = prefix_dir("inject");
    let b = Berth::new(dir.path(), &netbox());
    for (group, key) in netbox_string_settings() {
        for p in PAYLOADS {
            b.write_site(&format!("[{group}]\n{key} = {}\n", toml_string(p)));
            let before = snapshot_tree(dir.path());
            let check = b.run(&["config", "check"]);
            if check.code != 0 {
                assert_eq!(check.code, 2, "{group}.{key} = {p:?}: {}", check.stderr);
                assert!(!check.stderr.contains('\0') && !check.stderr.contains('\u{1b}'));
                assert_eq!(before, snapshot_tree(dir.path()));
                continue;
            }
            let plan = b.run(&["plan"]);
            assert!(
                plan.code == 0 || plan.code == 1,
                "{group}.{key} = {p:?}: {}",
                plan.stderr
            );
            for line in plan.stdout.lines() {
                let added = line.trim_start_matches('+').trim_start();
                assert!(
                    !added.starts_with("location /leak") && !added.starts_with("import os"),
                    "{group}.{key} = {p:?} injected:\n{}",
                    plan.stdout
                );
                // On the value's own line, the payload sits inside quotes.
                if let Some(i) = added.find("location /leak") {
                    assert!(
                        added[..i].contains(['"', '\'']),
                        "{group}.{key} = {p:?} injected:\n{line}"
                    );
                }
            }
            assert_eq!(before, snapshot_tree(dir.path()), "plan changed files");
        }
    }
}

/// Stops: `;{}` in the external_url host and `;` in its path passing validation
/// (`config check` said ok and `plan` showed `location /leak { alias /etc/; }`).
#[test]
fn external_url_with_config_syntax_is_refused() {
    let dir = prefix_dir("inject-url");
    let b = Berth::new(dir.path(), &netbox());
    for url in [
        "http://x;location/",
        "http://a{b}.example.com/",
        "http://example.com/x;location /leak { alias /etc/; }",
        "http://example.com/a b/",
    ] {
        b.write_site(&format!("external_url = {}\n", toml_string(url)));
        let r = b.run(&["config", "check"]);
        assert_eq!(r.code, 2, "{url}: {}", r.stderr);
        assert!(
            r.stderr.contains("is not a valid `external_url`"),
            "{}",
            r.stderr
        );
        assert_eq!(b.run(&["plan"]).code, 2);
    }
}

/// A secret value full of characters escaping changes, the forms a template can give
/// it, and the parts of them that must never show in a plan.
const SECRET: &str = "Zq<e>y&'\"\\é$!";
const LEAKS: [&str; 6] = [
    "Zq<e>y",
    "Zq\\u003ce",
    "Zq&lt;e",
    "Zq<e>y&\\'",
    "\\xe9$!",
    "\\u00e9$!",
];

fn write_secret(dir: &Path, name: &str, value: &str) {
    let path = dir.join(name);
    std::fs::write(&path, value).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Stops: `plan` printing NetBox's SECRET_KEY, which the literal mask missed once
/// `tojson` (or now the Python escape) had rewritten `<>&'"\`.
#[test]
fn plan_masks_secrets_in_every_escaped_form() {
    let dir = prefix_dir("inject-mask");
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o700)).unwrap();
    for name in [
        "db_password",
        "redis_password",
        "secret_key",
        "api_token_pepper",
        "admin_password",
    ] {
        write_secret(&secrets, name, SECRET);
    }
    let b = Berth::new(dir.path(), &netbox());
    let plan = b.run(&["plan"]).expect(0);
    assert!(
        plan.stdout.contains("SECRET_KEY = '********'"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("requirepass \"********\""),
        "{}",
        plan.stdout
    );
    for leak in LEAKS {
        assert!(
            !plan.stdout.contains(leak) && !plan.stderr.contains(leak),
            "`{leak}` shown:\n{}",
            plan.stdout
        );
    }
}
