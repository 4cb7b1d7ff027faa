//! Python for bundled components: find an interpreter matching a version
//! requirement, and build a virtual environment from pinned requirements.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::stderr_tail;
use crate::{HostError, Result, fsutil};

/// A Python version, `(major, minor, patch)`.
pub type PythonVersion = (u32, u32, u32);

/// Finds the newest Python interpreter whose version matches `spec`, a PEP 440 style
/// requirement such as `>=3.12` or `>=3.12,<3.14`.
///
/// Looks at `python3` and `python3.N` on `PATH`, in `/usr/bin` and `/usr/local/bin`,
/// and in pyenv's `versions/*/bin/python3` (under `$PYENV_ROOT`, else `~/.pyenv`), and
/// asks each one its real version. On failure, the error lists what was found and
/// what to install.
pub fn find_interpreter(spec: &str) -> Result<PathBuf> {
    let requirement = VersionSpec::parse(spec)?;
    let mut found: Vec<(PathBuf, PythonVersion)> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for candidate in candidates() {
        let real = std::fs::canonicalize(&candidate).unwrap_or_else(|_| candidate.clone());
        if !seen.insert(real) {
            continue;
        }
        if let Some(version) = interpreter_version(&candidate) {
            found.push((candidate, version));
        }
    }
    let best = found
        .iter()
        .filter(|(_, v)| requirement.matches(*v))
        // max_by keeps the last of equals: reverse so the first found wins a tie.
        .rev()
        .max_by_key(|(_, v)| *v);
    if let Some((path, _)) = best {
        return Ok(path.clone());
    }
    let found_text = if found.is_empty() {
        "no Python 3 interpreter at all".to_owned()
    } else {
        found
            .iter()
            .map(|(p, v)| format!("{} ({})", p.display(), format_version(*v)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(HostError::NoPython {
        spec: spec.to_owned(),
        found: found_text,
        hint: requirement.install_hint(),
    })
}

/// Builds a virtual environment at `dest` with `python`, installing `requirements`.
///
/// The venv is built in `<dest>.partial` (removed first), then moved to `dest` in one
/// rename (swapping with an existing `dest`, which is then removed), so `dest` is
/// always either the old venv or the complete new one. Script paths inside the venv
/// are rewritten to `dest` before the move.
pub fn build_venv(python: &Path, requirements: &[String], dest: &Path) -> Result<()> {
    let partial = sibling(dest, ".partial");
    remove_dir_if_exists(&partial)?;
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|source| HostError::CreateDir {
            path: parent.to_path_buf(),
            source,
        })?;
    }

    run_venv_step(
        dest,
        "create the virtual environment",
        Command::new(python).arg("-m").arg("venv").arg(&partial),
    )?;
    let requirements_file = partial.join("requirements.txt");
    let mut text = requirements.join("\n");
    text.push('\n');
    fsutil::write_atomic(&requirements_file, text.as_bytes(), 0o644, None)?;
    run_venv_step(
        dest,
        "install the requirements with pip",
        Command::new(partial.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "-r",
            ])
            .arg(&requirements_file)
            .env("PIP_NO_COLOR", "1"),
    )?;
    relocate_scripts(&partial, dest)?;
    swap_into_place(&partial, dest)
}

/// Asks `python` for its version; `None` if it does not run or answers oddly.
fn interpreter_version(python: &Path) -> Option<PythonVersion> {
    let out = Command::new(python)
        .args(["-c", "import sys;print(sys.version_info[:3])"])
        .env_remove("PYTHONPATH")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse_version_tuple(&String::from_utf8_lossy(&out.stdout))
}

/// Parses `(3, 12, 1)` as printed by `sys.version_info[:3]`.
fn parse_version_tuple(text: &str) -> Option<PythonVersion> {
    let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
    let mut parts = inner.split(',').map(|p| p.trim().parse::<u32>());
    let version = (
        parts.next()?.ok()?,
        parts.next()?.ok()?,
        parts.next()?.ok()?,
    );
    parts.next().is_none().then_some(version)
}

fn format_version((major, minor, patch): PythonVersion) -> String {
    format!("{major}.{minor}.{patch}")
}

/// Every path that may be a Python 3 interpreter, in order of preference for ties.
fn candidates() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push("/usr/local/bin".into());
    dirs.push("/usr/bin".into());
    let mut paths = Vec::new();
    for dir in dirs {
        // pyenv shims only re-dispatch to the versions listed below.
        if dir.ends_with("shims") {
            continue;
        }
        paths.extend(python_names_in(&dir).into_iter().map(|name| dir.join(name)));
    }
    let pyenv_root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")));
    if let Some(root) = pyenv_root
        && let Ok(entries) = std::fs::read_dir(root.join("versions"))
    {
        let mut versions: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path().join("bin/python3")))
            .filter(|p| p.exists())
            .collect();
        versions.sort();
        paths.extend(versions);
    }
    paths
}

/// Names `python3` and `python3.N` in `dir`, sorted.
fn python_names_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| is_python_name(name))
        .collect();
    names.sort();
    names
}

/// `python3` or `python3.N` (not `python3-config`, `python3.11-config` …).
fn is_python_name(name: &str) -> bool {
    match name.strip_prefix("python3") {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix('.')
            .is_some_and(|minor| !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit())),
        None => false,
    }
}

/// A version requirement: comma-separated clauses, all of which must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VersionSpec {
    clauses: Vec<(Op, Vec<u32>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
    Ne,
    Compatible,
}

impl VersionSpec {
    fn parse(spec: &str) -> Result<Self> {
        let invalid = |reason: String| HostError::InvalidPythonSpec {
            spec: spec.to_owned(),
            reason,
        };
        let mut clauses = Vec::new();
        for clause in spec.split(',').map(str::trim) {
            if clause.is_empty() {
                return Err(invalid("it has an empty clause".to_owned()));
            }
            let (op, rest) = [
                (">=", Op::Ge),
                ("<=", Op::Le),
                ("==", Op::Eq),
                ("!=", Op::Ne),
                ("~=", Op::Compatible),
                (">", Op::Gt),
                ("<", Op::Lt),
            ]
            .iter()
            .find_map(|(prefix, op)| clause.strip_prefix(prefix).map(|rest| (*op, rest.trim())))
            .ok_or_else(|| {
                invalid(format!(
                    "`{clause}` does not start with >=, >, <=, <, ==, != or ~="
                ))
            })?;
            let rest = rest.strip_suffix(".*").unwrap_or(rest);
            let parts = rest
                .split('.')
                .map(str::parse::<u32>)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|_| invalid(format!("`{rest}` is not a version like 3.12")))?;
            if parts.is_empty() || parts.len() > 3 || (op == Op::Compatible && parts.len() < 2) {
                return Err(invalid(format!("`{rest}` is not a version like 3.12")));
            }
            clauses.push((op, parts));
        }
        Ok(Self { clauses })
    }

    fn matches(&self, version: PythonVersion) -> bool {
        let have = [version.0, version.1, version.2];
        self.clauses.iter().all(|(op, want)| {
            let padded = |v: &[u32]| [0, 1, 2].map(|i| v.get(i).copied().unwrap_or(0));
            let ordering = have.cmp(&padded(want));
            // `==3.12` and `!=3.12` compare only the parts given (as `==3.12.*`).
            let prefix_equal = have[..want.len()] == want[..];
            match op {
                Op::Ge => ordering != Ordering::Less,
                Op::Gt => ordering == Ordering::Greater,
                Op::Le => ordering != Ordering::Greater,
                Op::Lt => ordering == Ordering::Less,
                Op::Eq => prefix_equal,
                Op::Ne => !prefix_equal,
                Op::Compatible => {
                    ordering != Ordering::Less && have[..want.len() - 1] == want[..want.len() - 1]
                }
            }
        })
    }

    /// What to install, naming the lowest minor version the spec accepts.
    fn install_hint(&self) -> String {
        // Try the versions the clauses name (and the next minor of each), lowest first.
        let mut tries: Vec<(u32, u32)> = self
            .clauses
            .iter()
            .flat_map(|(_, v)| {
                let minor = v.get(1).copied().unwrap_or(0);
                [(v[0], minor), (v[0], minor + 1)]
            })
            .collect();
        tries.sort_unstable();
        let lowest = tries
            .into_iter()
            .map(|(major, minor)| (major, minor, 99))
            .find(|&v| self.matches(v) || self.matches((v.0, v.1, 0)));
        match lowest {
            Some((major, minor, _)) => format!(
                "install Python {major}.{minor}, e.g. `pyenv install {major}.{minor}` or your distribution's `python{major}.{minor}` package, then run berth again"
            ),
            None => "install a Python 3 version that satisfies it, then run berth again".to_owned(),
        }
    }
}

/// Runs one step of building a venv; a failure carries the end of its stderr.
fn run_venv_step(dest: &Path, step: &str, command: &mut Command) -> Result<()> {
    let out = command.output().map_err(|source| HostError::Spawn {
        program: command.get_program().to_string_lossy().into_owned(),
        source,
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(HostError::Venv {
        dest: dest.to_path_buf(),
        step: step.to_owned(),
        status: out.status,
        stderr: stderr_tail(&out.stderr, 15),
    })
}

/// Rewrites the build path to the final path in the venv's scripts and config
/// (console-script shebangs, `activate*`, `pyvenv.cfg`).
fn relocate_scripts(partial: &Path, dest: &Path) -> Result<()> {
    let from = partial.to_string_lossy().into_owned();
    let to = dest.to_string_lossy().into_owned();
    let bin = partial.join("bin");
    let entries = std::fs::read_dir(&bin).map_err(|source| HostError::Read {
        path: bin.clone(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.push(partial.join("pyvenv.cfg"));
    for path in files {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|source| HostError::Read {
            path: path.clone(),
            source,
        })?;
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        if text.contains(&from) {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o7777;
            fsutil::write_atomic(&path, text.replace(&from, &to).as_bytes(), mode, None)?;
        }
    }
    Ok(())
}

/// Moves `partial` to `dest` in one step, swapping with an existing `dest`.
fn swap_into_place(partial: &Path, dest: &Path) -> Result<()> {
    let rename_err = |source: std::io::Error| HostError::Write {
        path: dest.to_path_buf(),
        source,
    };
    if dest.exists() {
        nix::fcntl::renameat2(
            nix::fcntl::AT_FDCWD,
            partial,
            nix::fcntl::AT_FDCWD,
            dest,
            nix::fcntl::RenameFlags::RENAME_EXCHANGE,
        )
        .map_err(|e| rename_err(std::io::Error::from(e)))?;
        // `partial` now holds the old venv.
        remove_dir_if_exists(partial)?;
    } else {
        std::fs::rename(partial, dest).map_err(rename_err)?;
    }
    fsutil::sync_dir(fsutil::parent_dir(dest))
}

/// `<path><suffix>`, next to `path`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Removes a venv tree by descriptors (what an installer left there, symlinks
/// included, is removed, never followed).
fn remove_dir_if_exists(path: &Path) -> Result<()> {
    crate::beneath::remove_tree_at(path).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_tuple() {
        assert_eq!(parse_version_tuple("(3, 12, 1)\n"), Some((3, 12, 1)));
        assert_eq!(parse_version_tuple("3.12.1"), None);
        assert_eq!(parse_version_tuple("(3, 12)"), None);
    }

    #[test]
    fn python_names() {
        assert!(is_python_name("python3"));
        assert!(is_python_name("python3.12"));
        assert!(!is_python_name("python3.11-config"));
        assert!(!is_python_name("python3-config"));
        assert!(!is_python_name("python3."));
        assert!(!is_python_name("python2.7"));
    }

    #[test]
    fn version_specs() {
        let spec = VersionSpec::parse(">=3.12").unwrap();
        assert!(spec.matches((3, 12, 0)));
        assert!(spec.matches((3, 13, 1)));
        assert!(!spec.matches((3, 11, 9)));

        let spec = VersionSpec::parse(">=3.12, <3.14").unwrap();
        assert!(spec.matches((3, 13, 9)));
        assert!(!spec.matches((3, 14, 0)));

        let spec = VersionSpec::parse("==3.12").unwrap();
        assert!(spec.matches((3, 12, 7)));
        assert!(!spec.matches((3, 13, 0)));

        let spec = VersionSpec::parse("~=3.12").unwrap();
        assert!(spec.matches((3, 13, 0)));
        assert!(!spec.matches((4, 0, 0)));

        assert!(!VersionSpec::parse("!=3.11").unwrap().matches((3, 11, 2)));
        assert!(VersionSpec::parse(">3.12").unwrap().matches((3, 12, 1)));
    }

    #[test]
    fn bad_specs_are_refused() {
        for bad in ["3.12", ">=", ">=3.x", ">=3.12,", "~=3"] {
            assert!(
                matches!(
                    VersionSpec::parse(bad),
                    Err(HostError::InvalidPythonSpec { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn hint_names_the_lowest_acceptable_version() {
        let hint = VersionSpec::parse(">=3.12,<3.14").unwrap().install_hint();
        assert!(hint.contains("pyenv install 3.12"), "{hint}");
        assert!(hint.contains("`python3.12`"), "{hint}");
    }

    #[test]
    fn sibling_appends_to_the_name() {
        assert_eq!(
            sibling(Path::new("/r/netbox"), ".partial"),
            Path::new("/r/netbox.partial")
        );
    }
}
