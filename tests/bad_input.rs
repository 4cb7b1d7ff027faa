//! Bad input gets a precise error, exit status 2, and changes nothing: every case
//! compares the whole prefix (contents, modes and owners) before and after.
//!
//! Each case checks the whole message: what is wrong, `file:line:column`, the source
//! line and the `help:` line that says how to fix it.

use std::net::TcpListener;
use std::path::Path;

use berth_tests::{Berth, fixture, prefix_dir, snapshot_tree};

/// Write `site` into a fresh prefix, run `berth <args>`, and check that it fails with
/// `code`, that stderr holds every `expected` fragment, and that the prefix is unchanged.
/// Returns stderr with the prefix and manifest directories written `<prefix>` and
/// `<manifest>`.
fn rejects(manifest: &Path, site: &str, args: &[&str], code: i32, expected: &[&str]) -> String {
    let dir = prefix_dir("bad");
    let b = Berth::new(dir.path(), manifest);
    // Written as it is: the expected errors point at its lines.
    std::fs::write(b.site(), site).unwrap();
    let before = snapshot_tree(dir.path());
    let r = b.run(args);
    let after = snapshot_tree(dir.path());
    assert_eq!(
        r.code, code,
        "exit status for {site:?}\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
    let stderr = r
        .stderr
        .replace(&manifest.display().to_string(), "<manifest>")
        .replace(&dir.path().display().to_string(), "<prefix>");
    for e in expected {
        assert!(stderr.contains(e), "stderr lacks {e:?}:\n{stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        before, after,
        "the prefix changed although berth refused the input"
    );
    stderr
}

/// [`rejects`] with exit status 2 and exactly `lines` on stderr.
fn rejects_with(manifest: &Path, site: &str, args: &[&str], lines: &[&str]) {
    let stderr = rejects(manifest, site, args, 2, &[]);
    assert_eq!(stderr.trim_end(), lines.join("\n"), "\n{stderr}");
}

/// [`rejects`] with exit status 2 and each of `lines`, whole and in this order, on
/// stderr (for files whose line numbers the test does not fix).
fn rejects_with_lines(manifest: &Path, site: &str, args: &[&str], lines: &[&str]) {
    let stderr = rejects(manifest, site, args, 2, &[]);
    let mut rest = stderr.lines();
    for want in lines {
        assert!(
            rest.any(|l| l == *want),
            "stderr lacks the line {want:?} (or has it out of order):\n{stderr}"
        );
    }
}

fn stack() -> std::path::PathBuf {
    fixture("ministack")
}

/// 1-based line and column (in characters) where `needle` first occurs in `text` after
/// the first occurrence of `after`.
fn position(text: &str, after: &str, needle: &str) -> (usize, usize) {
    let from = text.find(after).unwrap_or_else(|| panic!("no {after:?}"));
    let at = from
        + text[from..]
            .find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} after {after:?}"));
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[..at].matches('\n').count() + 1;
    (line, text[line_start..at].chars().count() + 1)
}

// ---- site.toml --------------------------------------------------------------------

#[test]
fn toml_syntax_error_names_line_and_column() {
    rejects_with(
        &stack(),
        "[app\ngreeting = \"hi\"\n",
        &["up"],
        &[
            "error: invalid TOML: unclosed table, expected `]`",
            "  --> <prefix>/site.toml:1:5",
            "  |",
            "1 | [app",
            "  |     ^",
            "  = help: see https://toml.io for the syntax",
            "",
            "1 error found",
        ],
    );
}

#[test]
fn unknown_key_gets_did_you_mean() {
    rejects_with(
        &stack(),
        "[app]\ngreting = \"hi\"\n",
        &["up"],
        &[
            "error: unknown setting `app.greting`",
            "  --> <prefix>/site.toml:2:1",
            "  |",
            "2 | greting = \"hi\"",
            "  | ^^^^^^^",
            "  = help: did you mean `greeting`?",
            "",
            "1 error found",
        ],
    );
}

#[test]
fn unknown_group_gets_did_you_mean() {
    rejects_with(
        &stack(),
        "[postgres]\nport = 5433\n",
        &["reconfigure"],
        &[
            "error: unknown key or group `postgres`",
            "  --> <prefix>/site.toml:1:2",
            "  |",
            "1 | [postgres]",
            "  |  ^^^^^^^^",
            "  = help: did you mean `postgresql`?",
            "",
            "1 error found",
        ],
    );
}

/// A value of the wrong type that is not the right value mistyped still gets a fix.
#[test]
fn wrong_type_is_reported_with_the_expected_type() {
    rejects_with(
        &stack(),
        "[app]\nport = \"eighty\"\n",
        &["config", "check"],
        &[
            "error: expected a port number (an integer from 1 to 65535) for `app.port`, found a string",
            "  --> <prefix>/site.toml:2:8",
            "  |",
            "2 | port = \"eighty\"",
            "  |        ^^^^^^^^",
            "  = help: write a whole number between 1 and 65535, without quotes",
            "",
            "1 error found",
        ],
    );
}

#[test]
fn wrong_type_that_is_the_right_value_quoted() {
    rejects_with(
        &stack(),
        "[app]\nthreads = \"4\"\n",
        &["up"],
        &[
            "error: expected an integer for `app.threads`, found a string",
            "  --> <prefix>/site.toml:2:11",
            "  |",
            "2 | threads = \"4\"",
            "  |           ^^^",
            "  = help: write the number without quotes: 4",
            "",
            "1 error found",
        ],
    );
}

#[test]
fn out_of_range_port() {
    rejects_with(
        &stack(),
        "[postgresql]\nport = 70000\n",
        &["up"],
        &[
            "error: `postgresql.port` = 70000 is not a valid port",
            "  --> <prefix>/site.toml:2:8",
            "  |",
            "2 | port = 70000",
            "  |        ^^^^^",
            "  = help: a port is an integer from 1 to 65535",
            "",
            "1 error found",
        ],
    );
}

#[test]
fn out_of_the_declared_range() {
    rejects_with(
        &stack(),
        "[app]\nthreads = 9\n",
        &["up"],
        &[
            "error: `app.threads` = 9 is out of range (too large)",
            "  --> <prefix>/site.toml:2:11",
            "  |",
            "2 | threads = 9",
            "  |           ^",
            "  = help: `app.threads` must be from 1 to 8",
            "",
            "1 error found",
        ],
    );
}

#[test]
fn pattern_mismatch() {
    rejects_with(
        &stack(),
        "[app]\ngreeting = \"HELLO!\"\n",
        &["up"],
        &[
            "error: `HELLO!` does not have the form `app.greeting` requires",
            "  --> <prefix>/site.toml:2:12",
            "  |",
            "2 | greeting = \"HELLO!\"",
            "  |            ^^^^^^^^",
            "  = help: the whole value must match the regular expression `[a-z ]+`",
            "",
            "1 error found",
        ],
    );
}

#[test]
fn invalid_external_url() {
    rejects_with(
        &stack(),
        "external_url = \"not a url\"\n",
        &["up"],
        &[
            "error: `not a url` is not a valid `external_url`: it has no scheme (it must start with `http://` or `https://`)",
            "  --> <prefix>/site.toml:1:16",
            "  |",
            "1 | external_url = \"not a url\"",
            "  |                ^^^^^^^^^^^",
            "  = help: write the absolute URL people use to reach the app, e.g. \"https://app.example.com/\"",
            "",
            "1 error found",
        ],
    );
}

/// `[external]` is a Kubernetes deployment's: on a host it is refused by position,
/// before anything is done, with the host's way to put a database elsewhere.
#[test]
fn external_roles_are_refused_on_a_host() {
    rejects_with(
        &stack(),
        "[external]\ndatabase = \"pg.example.com\"\n",
        &["up"],
        &[
            "error: `[external]` (`database`) is for a Kubernetes deployment (`berth k8s render`); on a host, berth runs every role itself",
            "  --> <prefix>/site.toml:1:1",
            "  |",
            "1 | [external]",
            "  | ^^^^^^^^^^",
            "  = help: remove `[external]` from this host's site config; to run the database on another machine, make it a node of a fleet (`berth fleet up`, docs/fleet.md)",
            "",
            "1 error found",
        ],
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let site = "[app]\ngreting = \"hi\"\nport = 0\n[nginx]\nlisten = 5\n";
    rejects_with(
        &stack(),
        site,
        &["up"],
        &[
            "error: unknown setting `app.greting`",
            "  --> <prefix>/site.toml:2:1",
            "  |",
            "2 | greting = \"hi\"",
            "  | ^^^^^^^",
            "  = help: did you mean `greeting`?",
            "",
            "error: `app.port` = 0 is not a valid port",
            "  --> <prefix>/site.toml:3:8",
            "  |",
            "3 | port = 0",
            "  |        ^",
            "  = help: a port is an integer from 1 to 65535",
            "",
            "error: expected a string for `nginx.listen`, found an integer",
            "  --> <prefix>/site.toml:5:10",
            "  |",
            "5 | listen = 5",
            "  |          ^",
            "  = help: quote the value: \"5\"",
            "",
            "3 errors found",
        ],
    );
}

// ---- the manifest and its templates -------------------------------------------------

/// Copy the fixture manifest into a temp dir, with `edit` applied to one of its files;
/// also returns the edited file's text.
fn edited_manifest(file: &str, edit: impl Fn(&str) -> String) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let src = stack();
    std::fs::create_dir_all(dir.path().join("templates")).unwrap();
    let mut edited = None;
    for entry in ["berth.toml"].into_iter().map(String::from).chain(
        std::fs::read_dir(src.join("templates"))
            .unwrap()
            .flatten()
            .map(|e| format!("templates/{}", e.file_name().to_string_lossy())),
    ) {
        let text = std::fs::read_to_string(src.join(&entry)).unwrap();
        let text = if entry == file {
            let new = edit(&text);
            assert_ne!(new, text, "the edit of {file} changed nothing");
            edited = Some(new.clone());
            new
        } else {
            text
        };
        std::fs::write(dir.path().join(&entry), text).unwrap();
    }
    (
        dir,
        edited.unwrap_or_else(|| panic!("no {file} in the fixture")),
    )
}

#[test]
fn template_using_an_undeclared_setting() {
    let (m, text) = edited_manifest("templates/app.json.j2", |t| {
        t.replace("settings.app.threads", "settings.app.thrads")
    });
    let (line, col) = position(&text, "", "settings.app.thrads");
    let source = text.lines().nth(line - 1).unwrap();
    rejects_with_lines(
        m.path(),
        "",
        &["up"],
        &[
            "error: template `templates/app.json.j2` uses `settings.app.thrads`, which the manifest does not declare",
            &format!("  --> <manifest>/templates/app.json.j2:{line}:{col}"),
            &format!("{line} | {source}"),
            "  = help: did you mean `settings.app.threads`?",
            "1 error found",
        ],
    );
}

#[test]
fn dependency_cycle_in_the_manifest() {
    let (m, text) = edited_manifest("berth.toml", |t| {
        t.replace(
            "[services.postgresql]\ncomponent = \"postgresql\"\n",
            "[services.postgresql]\ncomponent = \"postgresql\"\ndepends_on = [\"nginx\"]\n",
        )
    });
    // The cycle is reported at its first edge, and the fix names all three.
    let (app, col) = position(&text, "[services.app]", "\"postgresql\"");
    let (pg, _) = position(&text, "[services.postgresql]", "depends_on = [\"nginx\"]");
    let (nginx, _) = position(&text, "[services.nginx]", "depends_on = [\"app\"]");
    rejects_with_lines(
        m.path(),
        "",
        &["up"],
        &[
            "error: dependency cycle: app -> postgresql -> nginx -> app",
            &format!("  --> <manifest>/berth.toml:{app}:{col}"),
            &format!("{app} | depends_on = [\"postgresql\", \"redis\"]"),
            &format!(
                "  = help: nothing in a cycle can ever start; remove one of these entries: \
                 \"postgresql\" in `[services.app] depends_on` (line {app}), \
                 \"nginx\" in `[services.postgresql] depends_on` (line {pg}), \
                 \"app\" in `[services.nginx] depends_on` (line {nginx})"
            ),
            "1 error found",
        ],
    );
}

#[test]
fn manifest_toml_syntax_error() {
    let (m, text) = edited_manifest("berth.toml", |t| t.replacen("[app]\n", "[app\n", 1));
    let (line, _) = position(&text, "", "[app\n");
    rejects_with_lines(
        m.path(),
        "",
        &["up"],
        &[
            "error: invalid TOML: unclosed table, expected `]`",
            &format!("  --> <manifest>/berth.toml:{line}:5"),
            &format!("{line} | [app"),
            "  = help: see https://toml.io for the syntax",
            "1 error found",
        ],
    );
}

/// Every unknown key is reported, not only the first.
#[test]
fn manifest_unknown_keys_get_did_you_mean() {
    let (m, text) = edited_manifest("berth.toml", |t| {
        t.replacen("summary = ", "sumary = ", 1).replacen(
            "data_dirs = [\"nginx\"]",
            "data_dir = [\"nginx\"]",
            1,
        )
    });
    let (summary, _) = position(&text, "", "sumary = ");
    let (data_dir, _) = position(&text, "", "data_dir = ");
    rejects_with_lines(
        m.path(),
        "",
        &["up"],
        &[
            "error: unknown key `sumary`",
            &format!("  --> <manifest>/berth.toml:{summary}:1"),
            "  = help: did you mean `summary`?",
            "error: unknown key `data_dir`",
            &format!("  --> <manifest>/berth.toml:{data_dir}:1"),
            &format!("{data_dir} | data_dir = [\"nginx\"]"),
            "  = help: did you mean `data_dirs`?",
            "2 errors found",
        ],
    );
}

#[test]
fn manifest_wrong_type() {
    let (m, text) = edited_manifest("berth.toml", |t| {
        t.replacen("health_path = \"/health\"", "health_path = 5", 1)
    });
    let (line, col) = position(&text, "health_path = ", "5");
    rejects_with_lines(
        m.path(),
        "",
        &["up"],
        &[
            "error: wrong type for `app.health_path`: expected a string, found integer `5`",
            &format!("  --> <manifest>/berth.toml:{line}:{col}"),
            &format!("{line} | health_path = 5"),
            "  = help: quote the value: \"5\"",
            "1 error found",
        ],
    );
}

// ---- the host ---------------------------------------------------------------------

#[test]
fn a_port_already_taken_is_reported_before_anything_starts() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let site = format!("[postgresql]\nport = {port}\n");
    rejects(
        &stack(),
        &site,
        &["up"],
        1,
        &[&format!("127.0.0.1:{port}"), "postgresql", "already in use"],
    );
}

/// A prefix inside a directory the service users cannot enter (a private 0700
/// temporary directory, as `mktemp -d` makes) is refused before anything is created:
/// the error names the directory, its mode and owner, the users it stops and the fix.
/// It used to fail deep in a hook (`initdb: could not access directory …: Permission
/// denied`), with users, secrets and files made.
#[test]
#[allow(clippy::print_stderr)] // a skipped test says why
fn a_prefix_the_service_users_cannot_reach_is_refused_up_front() {
    use std::os::unix::fs::PermissionsExt;
    if !berth_tests::is_root() {
        eprintln!("skipped: service users are only berth's business as root");
        return;
    }
    let private = tempfile::Builder::new()
        .prefix("berth-private-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let prefix = private.path().join("inst");
    let b = Berth::new(&prefix, &stack());
    let r = b.run(&["up"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let dir = private.path().display().to_string();
    for expected in [
        "Service users cannot reach the paths they use, nothing was changed",
        &format!("{dir} (mode 0700, owner root:root): "),
        // Per-instance names (`<instance>-ministack-pg`): this site config sets no `users`.
        "-ministack-pg`",
        "-ministack-web`",
        "cannot enter it, on the way to ",
        &format!("hint: let them through with `chmod o+x {dir}`"),
        "or choose a prefix outside it (`--prefix DIR`)",
    ] {
        assert!(
            r.stderr.contains(expected),
            "lacks {expected:?}:\n{}",
            r.stderr
        );
    }
    assert!(!prefix.exists(), "a refused `up` made {}", prefix.display());
    assert_eq!(std::fs::read_dir(private.path()).unwrap().count(), 0);
    // Let through (search only), the check passes: `up` gets as far as the ports.
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::fs::create_dir(&prefix).unwrap();
    b.write_site(&format!("[postgresql]\nport = {port}\n"));
    let r = b.run(&["up"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("already in use"), "{}", r.stderr);
    assert!(!r.stderr.contains("cannot reach"), "{}", r.stderr);
}

/// As a normal user berth cannot install packages: it stops with the exact command to
/// run, before changing anything.
#[test]
#[allow(clippy::print_stderr)] // a skipped test says why
fn missing_packages_as_a_normal_user_name_the_apt_get_line() {
    use std::os::unix::fs::PermissionsExt;
    if !berth_tests::is_root() {
        eprintln!("skipped: needs root to run berth as another user");
        return;
    }
    // Everything the unprivileged user runs or reads is copied where it can reach it.
    let dir = prefix_dir("user");
    let bin = dir.path().join("berth");
    std::fs::copy(berth_tests::berth_bin(), &bin).unwrap();
    let manifest = dir.path().join("manifest");
    std::fs::create_dir(&manifest).unwrap();
    std::fs::write(
        manifest.join("berth.toml"),
        "[app]\nname = \"needs\"\nversion = \"1.0.0\"\n\n\
         [components.tool]\nsource = \"system\"\npackages = [\"berth-test-absent-package\"]\n",
    )
    .unwrap();
    let prefix = dir.path().join("prefix");
    std::fs::create_dir(&prefix).unwrap();
    for p in [dir.path(), &manifest, &prefix] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let before = snapshot_tree(&prefix);
    let out = std::process::Command::new("/usr/sbin/runuser")
        .args(["-u", "nobody", "--"])
        .arg(&bin)
        .arg("--prefix")
        .arg(&prefix)
        .arg("--manifest")
        .arg(&manifest)
        .arg("up")
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("sudo apt-get install -y berth-test-absent-package"),
        "{stderr}"
    );
    assert_eq!(snapshot_tree(&prefix), before, "the prefix changed");
}

// ---- unreadable inputs (exit 2, the path named, never "all defaults") ---------------

/// Runs `berth config check` on the fixture with `--config config`, failing the test
/// if berth does not exit within 20 s (a FIFO once made it wait forever).
fn check_with_config(prefix: &Path, config: &Path) -> (i32, String) {
    let mut child = std::process::Command::new(berth_tests::berth_bin())
        .arg("--prefix")
        .arg(prefix)
        .arg("--manifest")
        .arg(stack())
        .arg("--config")
        .arg(config)
        .args(["config", "check"])
        .env_remove("BERTH_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("berth hung on --config {}", config.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Stops: a typo in `reconfigure --config …` silently meaning "all defaults" and
/// resetting a live instance; a FIFO hanging berth; `/dev/zero` filling memory; and
/// unreadable inputs exiting 1 (the operation failed) instead of 2 (bad input).
#[test]
fn an_explicit_config_that_is_not_a_readable_file_is_bad_input() {
    let dir = prefix_dir("config");
    let d = dir.path();
    let fifo = d.join("fifo.toml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    std::os::unix::fs::symlink(d.join("nowhere.toml"), d.join("dangling.toml")).unwrap();
    std::os::unix::fs::symlink(d.join("loop.toml"), d.join("loop.toml")).unwrap();
    std::fs::write(d.join("latin1.toml"), b"[app]\ngreeting = \"caf\xe9\"\n").unwrap();
    std::fs::create_dir(d.join("dir.toml")).unwrap();
    let before = snapshot_tree(d);
    for (config, why) in [
        (d.join("typo.toml"), "no such file"),
        (
            d.join("dangling.toml"),
            "it is a symlink to `<dir>/nowhere.toml` that points at nothing (a dangling symlink)",
        ),
        (d.join("loop.toml"), "it is a symlink loop"),
        (d.join("dir.toml"), "it is a directory, not a regular file"),
        (
            fifo.clone(),
            "it is a FIFO (named pipe), not a regular file",
        ),
        (
            Path::new("/dev/zero").to_path_buf(),
            "it is a character device",
        ),
        (
            d.join("latin1.toml"),
            "it is not UTF-8 text (invalid byte 0xe9 at line 2, column 16)",
        ),
    ] {
        let (code, stderr) = check_with_config(&d.join("prefix"), &config);
        let stderr = stderr.replace(&d.display().to_string(), "<dir>");
        let config = Path::new("<dir>").join(config.strip_prefix(d).unwrap_or(&config));
        assert_eq!(code, 2, "--config {}:\n{stderr}", config.display());
        assert!(
            stderr.contains(&format!("Failed to read the site config: {why}")),
            "{stderr}"
        );
        assert!(stderr.contains(&config.display().to_string()), "{stderr}");
        let help = if why.contains("UTF-8") {
            "help: save the file as UTF-8"
        } else {
            "help: check the path given to `--config`"
        };
        assert!(stderr.contains(help), "{stderr}");
    }
    assert_eq!(before, snapshot_tree(d), "bad input changed files");
}

/// Stops: a manifest directory without `berth.toml` exiting 1 like a failed operation.
#[test]
fn a_manifest_directory_without_berth_toml_is_bad_input() {
    let empty = tempfile::tempdir().unwrap();
    let stderr = rejects(
        empty.path(),
        "",
        &["config", "check"],
        2,
        &[
            "No app manifest at `",
            "the directory must contain `berth.toml`",
        ],
    );
    assert!(stderr.contains("berth.toml"), "{stderr}");
}

/// Stops: a number too large for 64 bits reported as "found a float".
#[test]
fn an_integer_overflow_is_reported_as_too_large() {
    let stderr = rejects(
        &stack(),
        "[app]\nport = 99999999999999999999\n",
        &["config", "check"],
        2,
        &[
            "error: the number `99999999999999999999` for `app.port` is too large",
            "  --> <prefix>/site.toml:2:8",
        ],
    );
    assert!(!stderr.contains("float"), "{stderr}");
}

/// Stops: NUL and terminal escape sequences echoed raw, and a 1 MiB value echoed in
/// full three times (message, help, source line).
#[test]
fn hostile_values_are_escaped_and_cut_in_errors() {
    let huge = "x".repeat(1 << 20);
    let stderr = rejects(
        &stack(),
        &format!("[nginx]\nlisten = \"{huge}\\u001b[2J\\u0000\"\n"),
        &["config", "check"],
        2,
        &["has a control character", "help: remove line breaks"],
    );
    assert!(stderr.len() < 2_000, "{} bytes of error", stderr.len());
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains('\0'),
        "{stderr:?}"
    );
}

/// Stops: an escape sequence in a path (here the `--manifest` directory's name)
/// reaching the terminal through an error message.
#[test]
fn escape_sequences_in_paths_are_shown_escaped() {
    let parent = tempfile::tempdir().unwrap();
    let manifest = parent.path().join("app\u{1b}]0;owned\u{7}");
    std::fs::create_dir(&manifest).unwrap();
    let stderr = rejects(
        &manifest,
        "",
        &["config", "check"],
        2,
        &["No app manifest at `", "app\\x1b]0;owned\\x07"],
    );
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains('\u{7}'),
        "{stderr:?}"
    );
}

/// Stops: a `--prefix` with a space breaking the hooks that pasted its paths into
/// `sh -c` scripts, and one with `$(…)` running code (as the postgresql user) when
/// they ran; `..` and `/` naming some other directory than the one read. Refused with
/// exit status 2 before anything is read or written, naming the value and the fix.
#[test]
fn a_prefix_that_is_not_a_plain_absolute_path_is_bad_input() {
    let dir = prefix_dir("prefix");
    let d = dir.path();
    let marker = d.join("pwned");
    let before = snapshot_tree(d);
    let cases = [
        (
            format!("{}/$(touch {})", d.display(), marker.display()),
            "has `$`",
        ),
        (format!("{}/my app", d.display()), "has a space"),
        (format!("{}/a'b", d.display()), "has `'`"),
        (format!("{}/a\u{1b}[2Jb", d.display()), "`\\x1b`"),
        (format!("{}/x/../etc", d.display()), "has a `..` component"),
        ("/".to_owned(), "is the root directory"),
    ];
    for (prefix, why) in &cases {
        // Not `up`: should this check ever regress, the test must not install into `/`.
        for args in [&["config", "check"][..], &["plan"]] {
            let out = std::process::Command::new(berth_tests::berth_bin())
                .arg("--prefix")
                .arg(prefix)
                .arg("--manifest")
                .arg(stack())
                .args(args)
                .env_remove("BERTH_PREFIX")
                .env_remove("BERTH_CONFIG")
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{prefix:?} {args:?}:\n{stderr}");
            assert!(stderr.contains("error: The prefix `"), "{stderr}");
            assert!(stderr.contains(why), "{prefix:?}: {stderr}");
            assert!(
                stderr.contains(
                    "help: pass `--prefix DIR` (or `BERTH_PREFIX`) with an absolute directory"
                ),
                "{stderr}"
            );
            assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
        }
    }
    // The same through the environment variable.
    let out = std::process::Command::new(berth_tests::berth_bin())
        .arg("--manifest")
        .arg(stack())
        .args(["config", "check"])
        .env("BERTH_PREFIX", &cases[1].0)
        .env_remove("BERTH_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!marker.exists(), "the prefix's `$(…)` ran");
    assert_eq!(before, snapshot_tree(d), "a refused prefix changed files");
}
