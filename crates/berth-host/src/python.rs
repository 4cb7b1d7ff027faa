//! Python for bundled components: find an interpreter matching a version
//! requirement, and build a virtual environment from pinned requirements.

use std::cmp::Ordering;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::beneath::{in_parent, remove_tree_at};
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

/// The unprivileged system user that creates virtual environments and runs pip (and
/// so every build backend a package brings) when berth runs as root. Created on first
/// use; it owns nothing once a build is over.
pub const BUILD_USER: &str = "berth-build";

/// Where builds as root take turns: the build user's leftover processes are killed
/// after each build, which must not hit another instance's build.
const BUILD_LOCK: &str = "/run/berth-build.lock";

/// The only `PATH` pip and build backends get: system directories (compilers such as
/// `gcc` for C extensions live there), nothing from berth's own environment.
const BUILD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Builds a virtual environment at `dest` with `python`, installing `requirements`
/// (lines of a pip requirements file).
///
/// Neither the venv creation nor pip runs as root: as root, both run as [`BUILD_USER`]
/// in a staging directory it owns, with a clean environment (a base `PATH`, `LANG`,
/// and `HOME`/`TMPDIR` in a private directory removed afterwards; nothing of berth's
/// environment, no `PIP_*` or `PYTHON*`; Python in isolated mode), so code from the
/// package index never runs as root. pip runs with `--no-input`,
/// `--disable-pip-version-check` and `--no-cache-dir`, and with `--require-hashes`
/// when any requirement pins a `--hash`. pip still reads the administrator's
/// `/etc/pip.conf` (an index mirror, a proxy).
///
/// Then root kills whatever the build user left running and takes the tree over by
/// descriptor, never following a symlink: every entry must belong to the build user,
/// and becomes root's, mode 0755 (directories and executables) or 0644, no
/// setuid/setgid bits. Script paths are rewritten to `dest`, and the tree is moved to
/// `dest` in one rename (swapping with an existing `dest`, which is then removed), so
/// `dest` is always the old venv or the complete new one. Not as root, everything runs
/// as the calling user with the same clean environment.
///
/// `python` must be runnable by the build user (see
/// [`shareable_interpreter`](crate::interpreter::shareable_interpreter)).
pub fn build_venv(python: &Path, requirements: &[String], dest: &Path) -> Result<()> {
    let partial = berth_layout::bundle::partial(dest);
    let home = berth_layout::bundle::build_home(dest);
    let parent = fsutil::parent_dir(dest);
    std::fs::create_dir_all(parent).map_err(|source| HostError::CreateDir {
        path: parent.to_path_buf(),
        source,
    })?;
    let builder = Builder::for_this_process(python, dest)?;
    let _turn = builder.as_ref().map(|_| take_turn(dest)).transpose()?;
    if let Some(b) = &builder {
        b.kill_leftovers(dest)?;
    }
    remove_tree_at(&partial)?;
    remove_tree_at(&home)?;
    let result = build_in(
        builder.as_ref(),
        python,
        requirements,
        dest,
        &partial,
        &home,
    );
    if let Some(b) = &builder {
        b.kill_leftovers(dest)?;
    }
    remove_tree_at(&home)?;
    if result.is_err() {
        remove_tree_at(&partial)?;
    }
    result
}

fn build_in(
    builder: Option<&Builder>,
    python: &Path,
    requirements: &[String],
    dest: &Path,
    partial: &Path,
    home: &Path,
) -> Result<()> {
    // The requirements go into the build user's home before it is handed over: root
    // never writes into a directory the build user owns.
    private_dir(home, None)?;
    let requirements_file = home.join("requirements.txt");
    let mut text = requirements.join("\n");
    text.push('\n');
    fsutil::write_atomic(&requirements_file, text.as_bytes(), 0o644, None)?;
    private_dir(partial, builder)?;
    if let Some(b) = builder {
        give_dir(home, b)?;
    }

    run_venv_step(
        dest,
        "create the virtual environment",
        build_command(python, builder, home)
            .args(["-I", "-m", "venv"])
            .arg(partial),
    )?;
    run_venv_step(
        dest,
        "install the requirements with pip",
        build_command(&partial.join("bin/python"), builder, home)
            .args(["-I", "-m", "pip"])
            .args(pip_install_args(requirements))
            .arg(&requirements_file),
    )?;
    if let Some(b) = builder {
        // Nothing of the build user may run on while its tree becomes root's.
        b.kill_leftovers(dest)?;
        take_over(partial, b.uid)?;
    }
    // Kept with the venv: what it was built from.
    fsutil::write_atomic(
        &partial.join("requirements.txt"),
        text.as_bytes(),
        0o644,
        None,
    )?;
    relocate_scripts(partial, dest)?;
    set_dir_mode(partial, 0o755)?;
    swap_into_place(partial, dest)
}

/// `pip install` arguments before the requirements file.
fn pip_install_args(requirements: &[String]) -> Vec<&'static str> {
    let mut args = vec![
        "install",
        "--no-input",
        "--disable-pip-version-check",
        "--no-cache-dir",
        "--no-color",
    ];
    // pinned hashes: every requirement must then carry one, and every download match it.
    if requirements.iter().any(|r| r.contains("--hash")) {
        args.push("--require-hashes");
    }
    args.push("-r");
    args
}

/// A command for a build step: clean environment, its own session, running as the
/// build user when there is one.
fn build_command(program: &Path, builder: Option<&Builder>, home: &Path) -> Command {
    let mut cmd = Command::new(program);
    let name = builder.map_or_else(current_user_name, |_| BUILD_USER.to_owned());
    cmd.env_clear()
        .env("PATH", BUILD_PATH)
        .env("LANG", "C.UTF-8")
        .env("HOME", home)
        .env("TMPDIR", home)
        .env("USER", &name)
        .env("LOGNAME", &name)
        .current_dir(home)
        .stdin(std::process::Stdio::null());
    let ids = builder.map(|b| (b.uid, b.gid));
    // SAFETY: only async-signal-safe system calls (setsid, umask, setgroups, setgid,
    // setuid) on values copied before the fork.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            libc::umask(0o022);
            if let Some((uid, gid)) = ids
                && (libc::setgroups(1, &raw const gid) == -1
                    || libc::setgid(gid) == -1
                    || libc::setuid(uid) == -1)
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

fn current_user_name() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map_or_else(|| nix::unistd::geteuid().to_string(), |u| u.name)
}

/// The build user, when berth runs as root.
struct Builder {
    uid: libc::uid_t,
    gid: libc::gid_t,
}

impl Builder {
    /// As root: [`BUILD_USER`] (created if missing), after checking it can run
    /// `python`. Otherwise `None`: the build runs as the calling user.
    fn for_this_process(python: &Path, dest: &Path) -> Result<Option<Self>> {
        if !crate::users::is_root() {
            return Ok(None);
        }
        crate::users::ensure_user(&berth_render::UserSpec {
            name: BUILD_USER.to_owned(),
            home: PathBuf::from("/nonexistent"),
        })?;
        let (uid, gid) = crate::users::lookup(BUILD_USER).ok_or_else(|| HostError::VenvBuild {
            dest: dest.to_path_buf(),
            reason: format!("the build user `{BUILD_USER}` was created but cannot be found"),
        })?;
        if uid == 0 {
            return Err(HostError::VenvBuild {
                dest: dest.to_path_buf(),
                reason: format!(
                    "the build user `{BUILD_USER}` has uid 0; give it an unprivileged uid (`usermod`)"
                ),
            });
        }
        let real = std::fs::canonicalize(python).unwrap_or_else(|_| python.to_path_buf());
        if !crate::interpreter::world_usable(&real) {
            return Err(HostError::VenvBuild {
                dest: dest.to_path_buf(),
                reason: format!(
                    "the build user `{BUILD_USER}` cannot run `{}` (it, or a directory above it, is private); \
                     copy it into the release first (`interpreter::shareable_interpreter`) or install a system-wide Python",
                    python.display()
                ),
            });
        }
        Ok(Some(Self { uid, gid }))
    }

    /// SIGKILL every process of the build user (a build backend that daemonized, a
    /// compiler still running), from a child that becomes the build user: `kill(-1)`
    /// reaches exactly the processes of its own uid.
    fn kill_leftovers(&self, dest: &Path) -> Result<()> {
        let (uid, gid) = (self.uid, self.gid);
        let mut cmd = Command::new("/bin/true");
        cmd.env_clear().current_dir("/");
        // SAFETY: async-signal-safe system calls only.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setgroups(1, &raw const gid) == -1
                    || libc::setgid(gid) == -1
                    || libc::setuid(uid) == -1
                {
                    return Err(std::io::Error::last_os_error());
                }
                libc::kill(-1, libc::SIGKILL);
                Ok(())
            });
        }
        let status = cmd.status().map_err(|e| HostError::VenvBuild {
            dest: dest.to_path_buf(),
            reason: format!("cannot stop what the build user `{BUILD_USER}` left running: {e}"),
        })?;
        if status.success() {
            Ok(())
        } else {
            Err(HostError::VenvBuild {
                dest: dest.to_path_buf(),
                reason: format!("stopping the build user's processes failed ({status})"),
            })
        }
    }
}

/// Wait for other builds as root to finish (the lock is held until dropped).
fn take_turn(dest: &Path) -> Result<nix::fcntl::Flock<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |reason: String| HostError::VenvBuild {
        dest: dest.to_path_buf(),
        reason,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(BUILD_LOCK)
        .map_err(|e| fail(format!("cannot open the build lock `{BUILD_LOCK}`: {e}")))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| fail(format!("cannot lock `{BUILD_LOCK}`: {e}")))
}

/// Create `path` (it must not exist) as a private directory: mode 0700, root's, or the
/// build user's when `builder` is given (set on its descriptor, never by name).
fn private_dir(path: &Path, builder: Option<&Builder>) -> Result<()> {
    let (parent, name) = in_parent(path)?;
    parent.create_dir(&name, 0o700, builder.map(|b| (b.uid, b.gid)))?;
    Ok(())
}

/// Give the directory root just made to the build user, on its descriptor.
fn give_dir(path: &Path, b: &Builder) -> Result<()> {
    dir_node(path)?.set_owner((b.uid, b.gid))
}

fn set_dir_mode(path: &Path, mode: u32) -> Result<()> {
    dir_node(path)?.set_mode(mode)
}

/// The directory `path`, opened without following a symlink at its last component.
fn dir_node(path: &Path) -> Result<crate::beneath::Node> {
    let (parent, name) = in_parent(path)?;
    let node = parent.open_node(&name)?;
    if !node.stat().is_dir() {
        return Err(HostError::NotADirectory {
            path: path.to_path_buf(),
        });
    }
    Ok(node)
}

/// Make the tree the build user made at `partial` root's
/// ([`SafeDir::take_over_tree`](crate::beneath::SafeDir::take_over_tree)): by
/// descriptor, following no symlink, refusing anything the build user does not own.
fn take_over(partial: &Path, uid: libc::uid_t) -> Result<()> {
    let (parent, name) = in_parent(partial)?;
    parent.take_over_tree(&name, uid)
}

/// Asks `python` for its version; `None` if it does not run or answers oddly.
fn interpreter_version(python: &Path) -> Option<PythonVersion> {
    let out = Command::new(python)
        .args(["-I", "-c", "import sys;print(sys.version_info[:3])"])
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
        remove_tree_at(partial)?;
    } else {
        std::fs::rename(partial, dest).map_err(rename_err)?;
    }
    fsutil::sync_dir(fsutil::parent_dir(dest))
}

/// `<path><suffix>`, next to `path`.
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
    fn pip_gets_require_hashes_only_with_pinned_hashes() {
        let plain = pip_install_args(&["six==1.16.0".to_owned()]);
        assert!(!plain.contains(&"--require-hashes"));
        assert!(plain.contains(&"--no-input"));
        assert!(plain.contains(&"--disable-pip-version-check"));
        assert_eq!(plain.last(), Some(&"-r"));
        let pinned = pip_install_args(&["six==1.16.0 --hash=sha256:1e61c3".to_owned()]);
        assert!(pinned.contains(&"--require-hashes"));
    }
}
