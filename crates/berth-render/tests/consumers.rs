//! Injection strings in every string setting and every secret of the NetBox and
//! MediaWiki manifests, rendered and then read by the real programs that read those
//! files: `nginx -t`, Python's compiler and `ast`, PHP, `postgres -C` and a
//! `redis-server` that loads its file.
//!
//! Site validation refuses control characters, but a secret comes from an archive and a
//! value may get past a check: the escaping is what must hold, so these tests set the
//! values straight into the resolved config, past validation. Each program that is not
//! installed skips its part with a printed reason.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_model::manifest::SettingType;
use berth_model::{Facts, LoadedManifest, SettingValue, parse_site, resolve, validate};
use berth_render::{DesiredState, Paths, RenderInput, render, secret_specs};

const NGINX: &str = "/usr/sbin/nginx";
const POSTGRES: &str = "/usr/lib/postgresql/15/bin/postgres";
const REDIS: &str = "/usr/bin/redis-server";
const PHP: &str = "/usr/bin/php";

/// Values an attacker would try. `{PWNED}` becomes a path that a successful nginx
/// injection makes `nginx -t` create (it opens every `error_log`).
const PAYLOADS: [&str; 11] = [
    // nginx: a directive after the value, no control character needed.
    "127.0.0.1:8080; error_log {PWNED}; listen 127.0.0.1",
    "x\nerror_log {PWNED};\n",
    "x; } server { listen 127.0.0.1:1; error_log {PWNED}; location /leak { alias /etc/; } #",
    // Python and shell: end the string, run code.
    "'; import os; os.system('touch {PWNED}') #",
    "\"\"\"; __import__('os').system('id') #",
    "$(touch {PWNED})`touch {PWNED}`",
    "back\\slash\\' and \\\"",
    "nul\0byte",
    "esc\u{1b}[2Jdel\u{7f}",
    "é 日本 \u{2028}\u{85} \u{1F600}",
    "",
];

fn netbox() -> LoadedManifest {
    example("netbox")
}

fn example(name: &str) -> LoadedManifest {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    let m = LoadedManifest::load(&dir).unwrap_or_else(|d| panic!("{d}"));
    validate(&m).unwrap_or_else(|d| panic!("{d}"));
    m
}

fn installed(program: &str) -> bool {
    if Path::new(program).exists() {
        return true;
    }
    #[allow(clippy::print_stderr)] // a skipped check says why
    {
        eprintln!("skipped: {program} is not installed");
    }
    false
}

struct Rendered {
    state: DesiredState,
}

impl Rendered {
    fn file(&self, suffix: &str) -> &str {
        &self
            .state
            .files
            .iter()
            .find(|f| f.path.ends_with(suffix))
            .unwrap_or_else(|| panic!("no {suffix}"))
            .content
    }
}

/// The app rendered under `prefix` with `settings` (`group.key` → value) and `secret`
/// as the value of every secret. `Err` when the renderer refuses a value.
fn render_app(
    m: &LoadedManifest,
    prefix: &Path,
    settings: &[(&str, &str)],
    secret: &str,
) -> Result<Rendered, String> {
    let facts = Facts {
        is_root: true,
        ..Facts::fixture()
    };
    let site = parse_site("site.toml", "", m).unwrap_or_else(|d| panic!("{d}"));
    let mut config = resolve(m, &site, &facts).unwrap_or_else(|d| panic!("{d}"));
    for (name, value) in settings {
        let (group, key) = name.split_once('.').unwrap();
        config
            .settings
            .get_mut(group)
            .unwrap()
            .get_mut(key)
            .unwrap()
            .value = SettingValue::String((*value).to_owned());
    }
    let secrets: BTreeMap<String, String> =
        secret_specs(m, &facts, &berth_render::UserNames::shared())
            .into_iter()
            .map(|s| (s.name, secret.to_owned()))
            .collect();
    let paths = Paths::for_prefix(prefix, &m.manifest.app.version);
    render(&RenderInput {
        manifest: m,
        config: &config,
        facts: &facts,
        secrets: &secrets,
        paths: &paths,
        users: &berth_render::UserNames::shared(),
    })
    .map(|state| Rendered { state })
    .map_err(|e| format!("{e}: {:?}", std::error::Error::source(&e)))
}

fn string_settings(m: &LoadedManifest) -> Vec<String> {
    let mut out = Vec::new();
    for (group, keys) in &m.manifest.settings {
        for (key, decl) in keys {
            if decl.kind == SettingType::String {
                out.push(format!("{group}.{key}"));
            }
        }
    }
    assert!(
        out.len() >= 5,
        "{}'s string settings: {out:?}",
        m.manifest.app.name
    );
    out
}

fn tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    // postgres runs as `nobody` and must read the files in it.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    dir
}

/// `nginx -t` on the rendered nginx.conf, with its prefix in `dir`. Whether it passed,
/// and its output.
fn nginx_test(dir: &Path, conf: &str) -> (bool, String) {
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let out = Command::new(NGINX)
        .arg("-t")
        .arg("-q")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&path)
        .arg("-e")
        .arg(dir.join("error.log"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A payload with `{PWNED}` pointing into `dir`.
fn payload(p: &str, dir: &Path) -> String {
    p.replace("{PWNED}", &dir.join("pwned").display().to_string())
}

/// Creates what nginx -t needs under the instance prefix (temp paths' parents, the pid
/// file's directory).
fn nginx_dirs(prefix: &Path) {
    let paths = Paths::unversioned(prefix);
    std::fs::create_dir_all(paths.data_dir("nginx")).unwrap();
    std::fs::create_dir_all(paths.component_run_dir("nginx")).unwrap();
}

/// Stops: a newline or `;` in `nginx.listen` (or any string setting, or the prefix)
/// adding an `error_log` or a `location /leak { alias /etc/; }` to nginx.conf.
#[test]
fn nginx_reads_every_injected_value_as_one_word() {
    if !installed(NGINX) {
        return;
    }
    let m = netbox();
    let dir = tempdir();
    let prefix = dir.path().join("prefix");
    nginx_dirs(&prefix);
    // The defaults give a configuration nginx accepts.
    let r = render_app(&m, &prefix, &[], "s3cret").unwrap();
    let (ok, out) = nginx_test(dir.path(), r.file("nginx/nginx.conf"));
    assert!(ok, "{out}\n{}", r.file("nginx/nginx.conf"));
    for name in string_settings(&m) {
        for p in PAYLOADS {
            let value = payload(p, dir.path());
            let Ok(r) = render_app(&m, &prefix, &[(name.as_str(), value.as_str())], "s") else {
                continue; // refused by the escape: nothing written
            };
            let conf = r.file("nginx/nginx.conf");
            let (_, out) = nginx_test(dir.path(), conf);
            assert!(
                !dir.path().join("pwned").exists(),
                "`{name}` = {value:?} injected a directive:\n{conf}\n{out}"
            );
            assert!(!conf.contains("\nerror_log /"), "{conf}");
        }
    }
}

/// A prefix with spaces and quotes is quoted in nginx.conf and still accepted.
#[test]
fn nginx_accepts_a_prefix_that_needs_quotes() {
    if !installed(NGINX) {
        return;
    }
    let m = netbox();
    let dir = tempdir();
    let prefix = dir.path().join("it's a \"prefix\"");
    nginx_dirs(&prefix);
    let r = render_app(&m, &prefix, &[("nginx.listen", "127.0.0.1")], "s").unwrap();
    let conf = r.file("nginx/nginx.conf");
    let (ok, out) = nginx_test(dir.path(), conf);
    assert!(ok, "{out}\n{conf}");
}

/// Runs `code` with python3, the cases (files and expected values) as JSON on stdin;
/// whether it succeeded and what it printed.
fn python(code: &str, cases: &serde_json::Value) -> (bool, String) {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(code)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(cases.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Compiles the file, then checks with `ast` (nothing is executed) that each named
/// top-level assignment is a literal equal to the expected value.
const PY_CHECK: &str = r#"
import ast, json, sys
for case in json.load(sys.stdin):
    src = open(case["file"], encoding="utf-8").read()
    compile(src, case["file"], "exec")
    tree = ast.parse(src)
    values = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            values[node.targets[0].id] = node.value
    calls = [n for n in ast.walk(tree) if isinstance(n, (ast.Call, ast.Import, ast.ImportFrom))]
    assert not calls, "%s: code in the configuration: %r" % (case["file"], [ast.dump(c) for c in calls])
    for name, want in case["expected"].items():
        path = name.split("/")
        got = ast.literal_eval(values[path[0]])
        for key in path[1:]:
            got = got[int(key) if key.isdigit() else key]
        assert got == want, "%s: %s: %r != %r" % (case["file"], name, got, want)
"#;

/// Stops: a quote in `netbox.time_zone` or in a secret (from a crafted archive) ending
/// the Python string in configuration.py and running code as NetBox.
#[test]
fn python_reads_every_injected_value_back_unchanged() {
    if !installed("/usr/bin/python3") {
        return;
    }
    let m = netbox();
    let dir = tempdir();
    let prefix = Path::new("/var/opt/berth/it's \"netbox\"");
    let mut checks = Vec::new();
    for p in PAYLOADS {
        let value = payload(p, dir.path());
        // Each setting alone, then every secret: another file (nginx, the shell script)
        // may refuse a value, configuration.py never does.
        let mut cases: Vec<(Vec<(String, String)>, String)> = string_settings(&m)
            .into_iter()
            .map(|n| (vec![(n, value.clone())], "s3cret".to_owned()))
            .collect();
        cases.push((Vec::new(), value.clone()));
        for (settings, secret) in cases {
            let pairs: Vec<(&str, &str)> = settings
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let r = match render_app(&m, prefix, &pairs, &secret) {
                Ok(r) => r,
                Err(e) => {
                    assert!(!e.contains("configuration.py"), "{e}");
                    continue;
                }
            };
            let file = dir
                .path()
                .join(format!("configuration-{}.py", checks.len()));
            std::fs::write(&file, r.file("netbox/configuration.py")).unwrap();
            let time_zone = settings
                .iter()
                .find(|(n, _)| n == "netbox.time_zone")
                .map_or("UTC", |(_, v)| v.as_str());
            let expected = serde_json::json!({
                "TIME_ZONE": time_zone,
                "SECRET_KEY": secret,
                "DATABASES/default/PASSWORD": secret,
                "REDIS/tasks/PASSWORD": secret,
                "API_TOKEN_PEPPERS/1": secret,
                "MEDIA_ROOT": format!("{}/data/netbox/media", prefix.display()),
            });
            checks.push(serde_json::json!({ "file": file, "expected": expected }));
        }
    }
    // One interpreter for every case: starting Python per case takes most of the time.
    let (ok, out) = python(PY_CHECK, &serde_json::Value::from(checks));
    assert!(ok, "{out}");
}

/// Stops: a path or value breaking out of its quotes in postgresql.conf. `postgres -C`
/// (run as `nobody`: PostgreSQL refuses root) must read back each path exactly.
#[test]
fn postgres_reads_quoted_paths_back_unchanged() {
    if !installed(POSTGRES) {
        return;
    }
    let m = netbox();
    let dir = tempdir();
    for prefix in [
        "/var/opt/berth/netbox",
        "/srv/it's a \\ \"strange\" prefix",
        "/srv/é日本/x\ny",
    ] {
        let r = render_app(&m, Path::new(prefix), &[], "s").unwrap();
        let conf = dir.path().join("postgresql.conf");
        std::fs::write(&conf, r.file("postgresql/postgresql.conf")).unwrap();
        std::fs::set_permissions(&conf, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        for (param, want) in [
            (
                "unix_socket_directories",
                format!("{prefix}/run/postgresql"),
            ),
            ("hba_file", format!("{prefix}/etc/postgresql/pg_hba.conf")),
            ("port", "5433".to_owned()),
        ] {
            let out = Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(POSTGRES)
                .arg("-C")
                .arg(param)
                .arg(format!("--config-file={}", conf.display()))
                .arg("-D")
                .arg(dir.path())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{prefix:?} {param}: {stderr}");
            let got = String::from_utf8_lossy(&out.stdout);
            assert_eq!(got.trim_end_matches('\n'), want, "{prefix:?} {param}");
        }
    }
}

/// One RESP command on `stream`; the raw reply (read until it is complete or 5 s pass).
fn resp(stream: &mut std::os::unix::net::UnixStream, args: &[&[u8]], want: &[u8]) -> Vec<u8> {
    let mut req = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        req.extend_from_slice(a);
        req.extend_from_slice(b"\r\n");
    }
    stream.write_all(&req).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while got.len() < want.len() && Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
            Err(e) => panic!("{e}"),
        }
    }
    got
}

fn bulk(b: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", b.len()).into_bytes();
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
    out
}

/// Stops: a newline in the Redis password (a crafted archive's secret) adding a
/// directive to redis.conf. A real redis-server loads the file (TCP off, a socket in
/// a temporary directory) and must hold exactly the secret as its password.
#[test]
fn redis_loads_every_injected_password_unchanged() {
    if !installed(REDIS) {
        return;
    }
    let m = netbox();
    let dir = tempdir();
    let prefix: PathBuf = dir.path().join("it's \"redis\"");
    let redis_dir = Paths::unversioned(&prefix).data_dir("redis");
    std::fs::create_dir_all(&redis_dir).unwrap();
    for p in PAYLOADS.iter().filter(|p| !p.is_empty()) {
        let secret = payload(p, dir.path());
        let Ok(r) = render_app(&m, &prefix, &[], &secret) else {
            // The shell script cannot hold a NUL; redis.conf could.
            assert!(secret.contains('\0'), "{secret:?}");
            continue;
        };
        let conf = dir.path().join("redis.conf");
        let socket = dir.path().join("redis.sock");
        let _ = std::fs::remove_file(&socket);
        std::fs::write(&conf, r.file("redis/redis.conf")).unwrap();
        let mut child = Command::new(REDIS)
            .arg(&conf)
            .args(["--port", "0", "--save", "", "--unixsocket"])
            .arg(&socket)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() && Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                let mut out = String::new();
                child
                    .stdout
                    .take()
                    .unwrap()
                    .read_to_string(&mut out)
                    .unwrap();
                panic!(
                    "redis-server refused {secret:?} ({status}):\n{out}\n{}",
                    r.file("redis/redis.conf")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The socket file exists from bind(); connecting works once redis listens.
        let mut s = loop {
            match std::os::unix::net::UnixStream::connect(&socket) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("redis-server does not answer on its socket: {e}"),
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let auth = resp(&mut s, &[b"AUTH", secret.as_bytes()], b"+OK\r\n");
        let mut want = b"*2\r\n".to_vec();
        want.extend(bulk(b"requirepass"));
        want.extend(bulk(secret.as_bytes()));
        let got = resp(&mut s, &[b"CONFIG", b"GET", b"requirepass"], &want);
        let mut want_dir = b"*2\r\n".to_vec();
        want_dir.extend(bulk(b"dir"));
        want_dir.extend(bulk(redis_dir.display().to_string().as_bytes()));
        let got_dir = resp(&mut s, &[b"CONFIG", b"GET", b"dir"], &want_dir);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(
            String::from_utf8_lossy(&auth),
            "+OK\r\n",
            "{secret:?}:\n{}",
            r.file("redis/redis.conf")
        );
        assert_eq!(got, want, "{secret:?}");
        assert_eq!(got_dir, want_dir);
    }
}

/// Stops: a quote in the Redis password running code in the worker's readiness script.
/// `sh` evaluates the script's assignments and must hold exactly the secret.
#[test]
fn shell_reads_every_injected_password_unchanged() {
    if !installed("/bin/sh") {
        return;
    }
    let m = netbox();
    let dir = tempdir();
    for p in PAYLOADS {
        let secret = payload(p, dir.path());
        let Ok(r) = render_app(&m, Path::new("/var/opt/berth/netbox"), &[], &secret) else {
            assert!(secret.contains('\0'), "only NUL is refused: {secret:?}");
            continue;
        };
        let script = r.file("netbox/worker-ready.sh");
        let assignments: String = script
            .lines()
            .take_while(|l| !l.starts_with("for "))
            .collect::<Vec<_>>()
            .join("\n");
        let file = dir.path().join("ready.sh");
        std::fs::write(
            &file,
            format!("{assignments}\nprintf %s \"$REDISCLI_AUTH\"\n"),
        )
        .unwrap();
        let out = Command::new("/bin/sh").arg(&file).output().unwrap();
        assert!(
            out.status.success(),
            "{secret:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), secret, "{script}");
        assert!(!dir.path().join("pwned").exists(), "{script}");
    }
}

/// Loads each case's file the way MediaWiki does (`include` with `MEDIAWIKI` defined),
/// after checking with PHP's own tokenizer that the file calls nothing but what the
/// template calls and runs no shell; then compares the variables it set.
const PHP_CHECK: &str = r#"<?php
define('MEDIAWIKI', true);
define('CACHE_DB', 1);
function wfLoadSkin($name) {}
function load($file) { include $file; return get_defined_vars(); }
$allowed = ['defined', 'wfLoadSkin'];
foreach (json_decode(stream_get_contents(STDIN), true) as $case) {
    $tokens = token_get_all(file_get_contents($case['file']));
    foreach ($tokens as $i => $t) {
        if ($t === '`') {
            fwrite(STDERR, "{$case['file']}: a shell command\n");
            exit(1);
        }
        if (!is_array($t)) continue;
        if (in_array($t[0], [T_EVAL, T_INCLUDE, T_INCLUDE_ONCE, T_REQUIRE, T_REQUIRE_ONCE])) {
            fwrite(STDERR, "{$case['file']}: {$t[1]}\n");
            exit(1);
        }
        if ($t[0] === T_STRING) {
            $j = $i + 1;
            while (isset($tokens[$j]) && is_array($tokens[$j]) && $tokens[$j][0] === T_WHITESPACE) $j++;
            if (($tokens[$j] ?? null) === '(' && !in_array($t[1], $allowed)) {
                fwrite(STDERR, "{$case['file']}: calls {$t[1]}()\n");
                exit(1);
            }
        }
    }
    $vars = load($case['file']);
    foreach ($case['expected'] as $name => $want) {
        $got = $vars[$name] ?? null;
        if ($got !== $want) {
            fwrite(STDERR, "{$case['file']}: \$$name: " . var_export($got, true) . ' !== ' . var_export($want, true) . "\n");
            exit(1);
        }
    }
}
"#;

/// Stops: a quote, `$` or `{$…}` in a MediaWiki setting or secret ending the PHP string
/// in LocalSettings.php or interpolating a variable, and running code as the wiki.
#[test]
fn php_reads_every_injected_value_back_unchanged() {
    if !installed(PHP) {
        return;
    }
    let m = example("mediawiki");
    let dir = tempdir();
    let prefix = Path::new("/var/opt/berth/it's \"wiki\" {x}");
    let mut checks = Vec::new();
    let mut payloads: Vec<&str> = PAYLOADS.to_vec();
    payloads.extend([
        "${wgDBpassword}",
        "{$wgSecretKey}",
        "\\$wgDBpassword \\\\\"",
        "?><?php system('id');",
    ]);
    for p in payloads {
        let value = payload(p, dir.path());
        let mut cases: Vec<(Vec<(String, String)>, String)> = string_settings(&m)
            .into_iter()
            .map(|n| (vec![(n, value.clone())], "s3cret".to_owned()))
            .collect();
        cases.push((Vec::new(), value.clone()));
        for (settings, secret) in cases {
            let pairs: Vec<(&str, &str)> = settings
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let r = match render_app(&m, prefix, &pairs, &secret) {
                Ok(r) => r,
                Err(e) => {
                    assert!(!e.contains("LocalSettings.php"), "{e}");
                    continue;
                }
            };
            let file = dir
                .path()
                .join(format!("LocalSettings-{}.php", checks.len()));
            std::fs::write(&file, r.file("mediawiki/LocalSettings.php")).unwrap();
            let setting = |name: &str, default: &str| {
                settings
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(default.to_owned(), |(_, v)| v.clone())
            };
            let mut expected = serde_json::json!({
                "wgSitename": setting("wiki.name", "Berth Wiki"),
                "wgLanguageCode": setting("wiki.language", "en"),
                "wgDBpassword": secret,
                "wgSecretKey": secret,
                "wgUpgradeKey": secret,
                "wgUploadDirectory": format!("{}/data/mediawiki/images", prefix.display()),
            });
            let read_only = setting("wiki.read_only", "");
            if !read_only.is_empty() {
                expected["wgReadOnly"] = read_only.into();
            }
            checks.push(serde_json::json!({ "file": file, "expected": expected }));
        }
    }
    assert!(checks.len() > 40, "{} cases", checks.len());
    // The script and the cases in files: one PHP process checks every case.
    let cases = dir.path().join("cases.json");
    std::fs::write(&cases, serde_json::Value::from(checks).to_string()).unwrap();
    let script = dir.path().join("check.php");
    std::fs::write(&script, PHP_CHECK).unwrap();
    let out = Command::new(PHP)
        .arg(&script)
        .stdin(std::fs::File::open(&cases).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !dir.path().join("pwned").exists(),
        "an injected command ran"
    );
}
