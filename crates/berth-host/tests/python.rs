//! Finding interpreters on this machine and building a real virtual environment.

use berth_host::HostError;
use berth_host::python::{build_venv, find_interpreter};

fn version_of(python: &std::path::Path) -> String {
    let out = std::process::Command::new(python)
        .args(["-c", "import sys;print('%d.%d' % sys.version_info[:2])"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Whether any interpreter of `minor` is on this machine (the finder is checked
/// against what is really installed, not against assumptions).
fn have(minor: &str) -> bool {
    find_interpreter(&format!("=={minor}")).is_ok()
}

#[test]
fn picks_the_newest_matching_interpreter() {
    if !have("3.12") {
        return;
    }
    let python = find_interpreter(">=3.12").unwrap();
    let newest = if have("3.13") { "3.13" } else { "3.12" };
    assert_eq!(version_of(&python), newest, "{}", python.display());

    let python = find_interpreter(">=3.12,<3.13").unwrap();
    assert_eq!(version_of(&python), "3.12");
}

#[test]
fn says_what_was_found_and_what_to_install() {
    let err = find_interpreter(">=3.99").unwrap_err();
    let HostError::NoPython { found, hint, .. } = &err else {
        panic!("unexpected error: {err}");
    };
    assert!(found.contains("python3"), "{found}");
    assert!(hint.contains("pyenv install 3.99"), "{hint}");
    let text = err.to_string();
    assert!(text.contains(">=3.99"), "{text}");

    let err = find_interpreter("3.12").unwrap_err();
    assert!(matches!(err, HostError::InvalidPythonSpec { .. }), "{err}");
}

#[test]
fn builds_a_venv_with_one_small_package() {
    let Ok(python) = find_interpreter(">=3.9") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("release/app");
    build_venv(&python, &["six==1.16.0".to_owned()], &dest).unwrap();
    assert!(!tmp.path().join("release/app.partial").exists());

    let out = std::process::Command::new(dest.join("bin/python"))
        .args(["-c", "import six;print(six.__version__)"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1.16.0");
    // Scripts point at the final location, not the build directory.
    let pip = std::fs::read_to_string(dest.join("bin/pip")).unwrap();
    assert!(
        pip.starts_with(&format!("#!{}", dest.join("bin/python").display())),
        "{pip}"
    );

    // Rebuilding replaces it whole.
    build_venv(&python, &["six==1.17.0".to_owned()], &dest).unwrap();
    let out = std::process::Command::new(dest.join("bin/python"))
        .args(["-c", "import six;print(six.__version__)"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1.17.0");
    assert!(!tmp.path().join("release/app.partial").exists());

    let err = build_venv(&python, &["berth-no-such-dist-x9==0.0.1".to_owned()], &dest).unwrap_err();
    let HostError::Venv { stderr, .. } = &err else {
        panic!("unexpected error: {err}");
    };
    assert!(stderr.contains("berth-no-such-dist-x9"), "{stderr}");
    // The previous venv is intact.
    assert!(dest.join("bin/python").exists());
}
