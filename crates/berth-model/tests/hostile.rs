//! Regression tests for hostile or mistaken input: each names the attack it stops.

use std::collections::BTreeMap;
use std::path::Path;

use berth_model::{LoadedManifest, parse_site, validate};

fn demo() -> LoadedManifest {
    let m = LoadedManifest::load(Path::new("tests/fixtures/demo")).expect("demo manifest loads");
    validate(&m).expect("demo manifest is valid");
    m
}

fn site_err(text: &str) -> String {
    match parse_site("site.toml", text, &demo()) {
        Ok(site) => panic!("accepted {text:?}: {site:?}"),
        Err(d) => d.to_string(),
    }
}

fn site_ok(text: &str) {
    if let Err(d) = parse_site("site.toml", text, &demo()) {
        panic!("refused {text:?}:\n{d}");
    }
}

const BASE: &str = r#"[app]
name = "demo"
version = "1.0"

[components.app]
source = "system"
user = "demo"
data_dirs = ["media"]

[secrets.key]
readable_by = "app"

[[files]]
path = "app.conf"
template = "t.j2"
format = "conf"
"#;

fn manifest_err(text: &str) -> String {
    let templates = BTreeMap::from([("t.j2".to_owned(), "x\n".to_owned())]);
    let m = LoadedManifest::from_sources("berth.toml", text, templates)
        .unwrap_or_else(|d| panic!("{d}"));
    match validate(&m) {
        Ok(()) => panic!("accepted:\n{text}"),
        Err(d) => d.to_string(),
    }
}

/// Stops: a newline in a string setting adding a directive to a config file; NUL and
/// terminal escapes reaching the files and the administrator's terminal.
#[test]
fn string_settings_refuse_control_characters() {
    for (value, shown) in [
        ("info\\nerror_log /tmp/x;", "`\\n` at character 5"),
        ("a\\u0000b", "`\\0` at character 2"),
        ("a\\u001b[2J", "`\\x1b` at character 2"),
        ("a\\u007f", "`\\x7f`"),
        ("a\\u2028", "`\\u{2028}`"),
        ("\\t", "`\\t`"),
    ] {
        let e = site_err(&format!("[web]\nlog_level = \"{value}\"\n"));
        assert!(e.contains("has a control character"), "{e}");
        assert!(e.contains(shown), "{e}");
        assert!(
            !e.contains('\0') && !e.contains('\u{1b}'),
            "echoed raw: {e:?}"
        );
        assert!(e.contains("help: remove line breaks"), "{e}");
        let e = site_err(&format!("[web]\nallowed_hosts = [\"ok\", \"{value}\"]\n"));
        assert!(e.contains("has a control character"), "{e}");
    }
    site_ok("[web]\nadmin_email = \"débug@日本.example\"\n");
}

/// Stops: `;{}` in the host or `;` in the path of external_url passing validation
/// and reaching nginx's `server_name` and `location` (a `location /leak { alias /etc/; }`).
#[test]
fn external_url_refuses_what_is_not_a_host_or_path_character() {
    for bad in [
        "http://a;b.example.com/",
        "http://x{y}.com/",
        "http://example.com/a;b",
        "http://example.com/a b",
        "http://example.com/{x}",
        "http://example.com/$host",
        "http://example.com/a'b",
        "http://example.com/\\u000a",
        "http://user:pw@example.com/",
        "http://example.com/?q=1",
        "http://example.com/#top",
        "http://exa_mple.com/",
        "http://-example.com/",
    ] {
        let e = site_err(&format!("external_url = \"{bad}\"\n"));
        assert!(e.contains("is not a valid `external_url`"), "{bad}: {e}");
    }
    for good in [
        "http://example.com/",
        "https://netbox.example.com:8443/app/",
        "http://127.0.0.1:8080/",
        "http://[::1]:8080/",
        "http://xn--bcher-kva.example/",
        "http://example.com/a%20b/~x/",
    ] {
        site_ok(&format!("external_url = \"{good}\"\n"));
    }
}

/// Stops: a number too large for 64 bits being reported as "found a float".
#[test]
fn an_integer_overflow_says_the_number_is_too_large() {
    let e = site_err("[web]\nport = 99999999999999999999\n");
    assert!(
        e.contains("the number `99999999999999999999` for `web.port` is too large"),
        "{e}"
    );
    assert!(!e.contains("float"), "{e}");
}

/// Stops: a 1 MiB bad value flooding the terminal three times (message, help, line).
#[test]
fn a_huge_bad_value_is_shown_cut() {
    let huge = "x".repeat(1 << 20);
    let e = site_err(&format!("external_url = \"http://{huge};/\"\n"));
    assert!(e.len() < 2_000, "{} bytes:\n{}", e.len(), &e[..500]);
    assert!(e.contains("more characters)"), "{e}");
    let e = site_err(&format!("[web]\nlog_level = \"{huge}\\u001b\"\n"));
    assert!(e.len() < 2_000, "{} bytes", e.len());
}

/// Stops: a manifest's template path making root read (and `plan` print) any file.
#[test]
fn template_paths_stay_in_the_manifest_directory() {
    for bad in ["/etc/shadow", "../../etc/shadow", "templates/../../x", ""] {
        let text = BASE.replace("template = \"t.j2\"", &format!("template = \"{bad}\""));
        let e = manifest_err(&text);
        assert!(e.contains("template path"), "{bad}: {e}");
    }
}

/// Stops: a template that is a symlink out of the manifest directory (read as root).
#[test]
fn a_template_symlink_out_of_the_manifest_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(outside.path(), "secret from outside\n").unwrap();
    std::fs::write(dir.path().join("berth.toml"), BASE).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("t.j2")).unwrap();
    let e = LoadedManifest::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("outside the manifest's directory"), "{e}");
    assert!(!e.contains("secret from outside"), "{e}");
    // A symlink that stays inside is fine.
    std::fs::remove_file(dir.path().join("t.j2")).unwrap();
    std::fs::write(dir.path().join("real.j2"), "x\n").unwrap();
    std::os::unix::fs::symlink("real.j2", dir.path().join("t.j2")).unwrap();
    let m = LoadedManifest::load(dir.path()).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(m.templates["t.j2"], "x\n");
}

/// Stops: names that become paths or arguments (`..` in the version, a user `-o`, a
/// secret `a/b`, a service `../x`), and modes that hand out setuid or setgid.
#[test]
fn names_paths_and_modes_are_checked() {
    for (from, to, expect) in [
        (
            "version = \"1.0\"",
            "version = \"../../etc\"",
            "is not a valid version",
        ),
        (
            "version = \"1.0\"",
            "version = \"1.0/x\"",
            "is not a valid version",
        ),
        (
            "user = \"demo\"",
            "user = \"-o\"",
            "is not a valid user name",
        ),
        (
            "user = \"demo\"",
            "user = \"a b\"",
            "is not a valid user name",
        ),
        (
            "[secrets.key]",
            "[secrets.\"a/b\"]",
            "cannot be a secret name",
        ),
        (
            "[components.app]",
            "[components.\"../x\"]",
            "cannot be a name in `[components]`",
        ),
        (
            "data_dirs = [\"media\"]",
            "data_dirs = [{ path = \"media\", mode = \"4750\" }]",
            "setuid or setgid",
        ),
        (
            "data_dirs = [\"media\"]",
            "data_dirs = [{ path = \"media\", mode = \"2770\" }]",
            "setuid or setgid",
        ),
        (
            "data_dirs = [\"media\"]",
            "data_dirs = [\"../media\"]",
            "leaves its directory",
        ),
        (
            "data_dirs = [\"media\"]",
            "data_dirs = [\"/media\"]",
            "is absolute",
        ),
        (
            "path = \"app.conf\"",
            "path = \"../app.conf\"",
            "leaves its directory",
        ),
        (
            "format = \"conf\"",
            "format = \"conf\"\nmode = \"4644\"",
            "setuid, setgid or sticky",
        ),
    ] {
        let text = BASE.replacen(from, to, 1);
        assert_ne!(text, BASE, "{from}");
        let e = manifest_err(&text);
        assert!(e.contains(expect), "{to}: {e}");
    }
    // The sticky bit on a data directory is allowed.
    let text = BASE.replace(
        "data_dirs = [\"media\"]",
        "data_dirs = [{ path = \"media\", mode = \"1770\" }]",
    );
    let templates = BTreeMap::from([("t.j2".to_owned(), "x\n".to_owned())]);
    let m = LoadedManifest::from_sources("berth.toml", &text, templates).unwrap();
    validate(&m).unwrap_or_else(|d| panic!("{d}"));
}

/// A file needs a format, and a template is escaped for one format only.
#[test]
fn every_file_has_one_format() {
    let e = manifest_err(&format!(
        "{BASE}\n[[files]]\npath = \"b.conf\"\ntemplate = \"t.j2\"\nformat = \"nginx\"\n"
    ));
    assert!(e.contains("rendered as `nginx` here and as `conf`"), "{e}");
    let text = BASE.replace("format = \"conf\"\n", "");
    let e = LoadedManifest::from_sources("berth.toml", &text, BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing required key `format`"), "{e}");
    let text = BASE.replace("format = \"conf\"", "format = \"toml\"");
    let e = LoadedManifest::from_sources("berth.toml", &text, BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unknown value `toml`") && e.contains("`nginx`"),
        "{e}"
    );
}

/// A vendor's own quotes around a value that berth quotes too are caught when the
/// manifest is checked, not when the service fails to read its file.
#[test]
fn quotes_of_the_template_around_a_value_are_refused() {
    let text = BASE.replace("format = \"conf\"", "format = \"postgresql\"");
    let templates = BTreeMap::from([(
        "t.j2".to_owned(),
        "# ok\nunix_socket_directories = '{{ paths.run }}/pg'\n".to_owned(),
    )]);
    let m = LoadedManifest::from_sources("berth.toml", &text, templates).unwrap();
    let e = validate(&m).unwrap_err().to_string();
    assert!(e.contains("puts a value inside quotes of its own"), "{e}");
    assert!(e.contains("t.j2:2:27"), "{e}");
    // In a `conf` file there is no quoting by berth: quotes are the template's business.
    let templates = BTreeMap::from([("t.j2".to_owned(), "url = \"{{ app.name }}\"\n".to_owned())]);
    let m = LoadedManifest::from_sources("berth.toml", BASE, templates).unwrap();
    validate(&m).unwrap_or_else(|d| panic!("{d}"));
}
