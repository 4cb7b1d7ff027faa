//! Finding interpreters on this machine and building a real virtual environment.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_host::HostError;
use berth_host::interpreter::shareable_interpreter;
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
    let tmp = build_dir();
    let Some(python) = usable_python(tmp.path()) else {
        return;
    };
    let dest = tmp.path().join("release/app");
    build_venv(&python, &["six==1.16.0".to_owned()], &dest).unwrap();
    assert!(!berth_layout::bundle::partial(&dest).exists());

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
    assert!(!berth_layout::bundle::partial(&dest).exists());

    let err = build_venv(&python, &["berth-no-such-dist-x9==0.0.1".to_owned()], &dest).unwrap_err();
    let HostError::Venv { stderr, .. } = &err else {
        panic!("unexpected error: {err}");
    };
    assert!(stderr.contains("berth-no-such-dist-x9"), "{stderr}");
    // The previous venv is intact.
    assert!(dest.join("bin/python").exists());
}

/// A temporary directory the build user can reach (as in a real prefix, which is 0755).
fn build_dir() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    tmp
}

/// A Python ≥ 3.9 the build user may run: copied under `dir` when private (as `berth
/// up` does with a pyenv interpreter under root's home).
fn usable_python(dir: &Path) -> Option<PathBuf> {
    let found = find_interpreter(">=3.9").ok()?;
    Some(shareable_interpreter(&found, &dir.join("python")).unwrap())
}

/// Writes a source distribution `spy-1.0.tar.gz` into `links`, whose in-tree build
/// backend (what a package from the index brings, run by pip while building) records
/// who it runs as and the environment it sees in `record`.
fn spy_sdist(links: &Path, record: &Path) {
    let src = links.join("spy-1.0");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("pyproject.toml"),
        "[build-system]\nrequires = []\nbuild-backend = \"spy_backend\"\nbackend-path = [\".\"]\n",
    )
    .unwrap();
    std::fs::write(
        src.join("PKG-INFO"),
        "Metadata-Version: 2.1\nName: spy\nVersion: 1.0\n",
    )
    .unwrap();
    let backend = r#"
import base64, hashlib, json, os, zipfile

RECORD = __RECORD__

def get_requires_for_build_wheel(config_settings=None):
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    with open(RECORD, "w") as f:
        json.dump({"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
                   "groups": os.getgroups(), "env": dict(os.environ)}, f)
    files = {
        "spy.py": b"VALUE = 1\n",
        "spy-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: spy\nVersion: 1.0\n",
        "spy-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: spy\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    lines = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines.append(f"{name},sha256={digest},{len(data)}")
    lines.append("spy-1.0.dist-info/RECORD,,")
    files["spy-1.0.dist-info/RECORD"] = ("\n".join(lines) + "\n").encode()
    name = "spy-1.0-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
    return name
"#
    .replace("__RECORD__", &format!("{:?}", record.display().to_string()));
    std::fs::write(src.join("spy_backend.py"), backend).unwrap();
    let status = std::process::Command::new("tar")
        .arg("-czf")
        .arg(links.join("spy-1.0.tar.gz"))
        .arg("-C")
        .arg(links)
        .arg("spy-1.0")
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::remove_dir_all(&src).unwrap();
}

/// pip, and every build backend it runs, never run as root nor see root's environment
/// (they ran as root with all of it: a package from the index ran its build code as
/// root), and the venv ends up root's and read-only to everyone else.
///
/// Runs itself again as a child process with the secrets in its environment from the
/// start, so no environment is changed while other tests run.
#[test]
fn pip_and_build_backends_run_unprivileged_with_a_clean_environment() {
    const SECRET: &str = "BERTH_TEST_SECRET";
    if std::env::var_os(SECRET).is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "pip_and_build_backends_run_unprivileged_with_a_clean_environment",
                "--nocapture",
            ])
            .env(SECRET, "root-secret-1")
            .env("PIP_INDEX_URL", "http://root-secret-2.invalid/simple")
            .env("PYTHONSTARTUP", "/root-secret-3.py")
            .env("HOME", "/root-secret-home")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "{text}");
        return;
    }
    let tmp = build_dir();
    let Some(python) = usable_python(tmp.path()) else {
        return;
    };
    let links = tmp.path().join("links");
    let spy = tmp.path().join("spy");
    std::fs::create_dir_all(&links).unwrap();
    // The backend writes its record here whoever it runs as.
    std::fs::create_dir_all(&spy).unwrap();
    std::fs::set_permissions(&spy, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let record = spy.join("record.json");
    spy_sdist(&links, &record);
    let dest = tmp.path().join("release/app");
    let requirements = [
        "--no-index".to_owned(),
        format!("--find-links {}", links.display()),
        "spy==1.0".to_owned(),
    ];
    build_venv(&python, &requirements, &dest).unwrap();

    let seen: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    let root = nix::unistd::geteuid().is_root();
    if root {
        for key in ["uid", "euid", "gid"] {
            assert_ne!(seen[key], 0, "the build backend ran with {key} 0: {seen}");
        }
        assert!(
            !seen["groups"].as_array().unwrap().contains(&0.into()),
            "{seen}"
        );
    }
    let env = seen["env"].as_object().unwrap();
    for (name, value) in env {
        let value = value.as_str().unwrap_or_default();
        assert!(
            !value.contains("root-secret"),
            "the build backend saw `{name}={value}`"
        );
    }
    assert!(!env.contains_key(SECRET), "{env:?}");

    // The venv works, and belongs to root, read-only to everyone else.
    let out = std::process::Command::new(dest.join("bin/python"))
        .args(["-c", "import spy;print(spy.VALUE)"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    if root {
        for entry in walk(&dest) {
            let meta = std::fs::symlink_metadata(&entry).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (0, 0), "{}", entry.display());
            if !meta.file_type().is_symlink() {
                assert_eq!(meta.mode() & 0o7022, 0, "{}", entry.display());
            }
        }
    }
    // Nothing of the build is left next to it.
    let names: Vec<_> = std::fs::read_dir(tmp.path().join("release"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["app"]);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut all = vec![dir.to_path_buf()];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if std::fs::symlink_metadata(&path).unwrap().is_dir() {
            all.extend(walk(&path));
        } else {
            all.push(path);
        }
    }
    all
}
