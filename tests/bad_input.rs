//! Bad input gets a precise error, exit status 2, and changes nothing: every case
//! compares the whole prefix before and after.

use std::net::TcpListener;
use std::path::Path;

use berth_tests::{Berth, fixture, prefix_dir, snapshot_tree};

/// Write `site` into a fresh prefix, run `berth <args>`, and check that it fails with
/// `code`, that stderr holds every `expected` fragment, and that the prefix is unchanged.
fn rejects(manifest: &Path, site: &str, args: &[&str], code: i32, expected: &[&str]) -> String {
    let dir = prefix_dir("bad");
    let b = Berth::new(dir.path(), manifest);
    b.write_site(site);
    let before = snapshot_tree(dir.path());
    let r = b.run(args);
    let after = snapshot_tree(dir.path());
    assert_eq!(
        r.code, code,
        "exit status for {site:?}\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
    for e in expected {
        assert!(r.stderr.contains(e), "stderr lacks {e:?}:\n{}", r.stderr);
    }
    assert_eq!(
        before, after,
        "the prefix changed although berth refused the input"
    );
    r.stderr
}

fn stack() -> std::path::PathBuf {
    fixture("ministack")
}

#[test]
fn toml_syntax_error_names_line_and_column() {
    let err = rejects(
        &stack(),
        "[app\ngreeting = \"hi\"\n",
        &["up"],
        2,
        &["site.toml:1:"],
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn unknown_key_gets_did_you_mean() {
    rejects(
        &stack(),
        "[app]\ngreting = \"hi\"\n",
        &["up"],
        2,
        &["site.toml:2:1", "greting", "did you mean `greeting`"],
    );
}

#[test]
fn unknown_group_gets_did_you_mean() {
    rejects(
        &stack(),
        "[postgres]\nport = 5433\n",
        &["reconfigure"],
        2,
        &["site.toml:1:", "did you mean `postgresql`"],
    );
}

#[test]
fn wrong_type_is_reported_with_the_expected_type() {
    rejects(
        &stack(),
        "[app]\nport = \"eighty\"\n",
        &["config", "check"],
        2,
        &["site.toml:2:8", "app.port"],
    );
}

#[test]
fn out_of_range_port() {
    rejects(
        &stack(),
        "[postgresql]\nport = 70000\n",
        &["up"],
        2,
        &["site.toml:2:8", "70000"],
    );
}

#[test]
fn pattern_mismatch() {
    rejects(
        &stack(),
        "[app]\ngreeting = \"HELLO!\"\n",
        &["up"],
        2,
        &["site.toml:2:", "[a-z ]+"],
    );
}

#[test]
fn invalid_external_url() {
    rejects(
        &stack(),
        "external_url = \"not a url\"\n",
        &["up"],
        2,
        &["site.toml:1:16", "external_url"],
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let site = "[app]\ngreting = \"hi\"\nport = 0\n[nginx]\nlisten = 5\n";
    rejects(
        &stack(),
        site,
        &["up"],
        2,
        &["site.toml:2:1", "site.toml:3:", "site.toml:5:", "3 errors"],
    );
}

/// Copy the fixture manifest into a temp dir, with `edit` applied to one of its files.
fn edited_manifest(file: &str, edit: impl Fn(&str) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = stack();
    std::fs::create_dir_all(dir.path().join("templates")).unwrap();
    for entry in ["berth.toml"].into_iter().map(String::from).chain(
        std::fs::read_dir(src.join("templates"))
            .unwrap()
            .flatten()
            .map(|e| format!("templates/{}", e.file_name().to_string_lossy())),
    ) {
        let text = std::fs::read_to_string(src.join(&entry)).unwrap();
        let text = if entry == file { edit(&text) } else { text };
        std::fs::write(dir.path().join(&entry), text).unwrap();
    }
    dir
}

#[test]
fn template_using_an_undeclared_setting() {
    let m = edited_manifest("templates/app.json.j2", |t| {
        t.replace("settings.app.threads", "settings.app.thrads")
    });
    rejects(
        m.path(),
        "",
        &["up"],
        2,
        &["settings.app.thrads", "templates/app.json.j2"],
    );
}

#[test]
fn dependency_cycle_in_the_manifest() {
    let m = edited_manifest("berth.toml", |t| {
        t.replace(
            "[services.postgresql]\ncomponent = \"postgresql\"\n",
            "[services.postgresql]\ncomponent = \"postgresql\"\ndepends_on = [\"nginx\"]\n",
        )
    });
    rejects(m.path(), "", &["up"], 2, &["cycle", "postgresql"]);
}

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

/// As a normal user berth cannot install packages: it stops with the exact command to
/// run, before changing anything.
#[test]
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
