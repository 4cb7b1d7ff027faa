//! A bundled Python component built to be shipped: the interpreter and the pinned
//! requirements in one relocatable directory, the way an omnibus package carries its
//! own Python.
//!
//! A virtualenv cannot be shipped: its `pyvenv.cfg` names the interpreter's absolute
//! path, and the interpreter is not in it. Here the interpreter's prefix is copied
//! (without its test suite, its static library and whatever the build machine added
//! to its `site-packages`), its ELF files are pointed at their own `lib/` by
//! `$ORIGIN`, the requirements are installed into that copy with its own pip (which
//! is then removed), console scripts start through `/bin/sh` and find the interpreter
//! next to themselves, and every module is compiled once, with hashes rather than
//! times, so two builds give the same bytes and a read-only install never recompiles.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::beneath::remove_tree_at;
use crate::error::stderr_tail;
use crate::{HostError, Result, fsutil, interpreter};

/// `PATH` for the build's steps.
const BUILD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The file a built tree keeps of what it was built from.
pub const REQUIREMENTS_FILE: &str = "requirements.txt";

/// The file a built tree keeps of what pip installed into it: each distribution's
/// name, version, artifact file name and SHA-256 (a bill of materials lists them).
pub const INSTALLED_FILE: &str = "installed.json";

/// The pip installation report's name in the build's home.
const REPORT_FILE: &str = "pip-report.json";

/// Builds the component at `dest` (which must not exist) from `python` (an interpreter
/// with a prefix of its own, e.g. pyenv's) and `requirements` (pip requirement lines).
/// `source_date_epoch` is handed to the build steps (wheels built from source use it).
/// On failure nothing is left at `dest`; the work happens in `<dest>.partial`.
pub fn build(
    python: &Path,
    requirements: &[String],
    dest: &Path,
    source_date_epoch: u64,
) -> Result<()> {
    let partial = berth_layout::bundle::partial(dest);
    let home = berth_layout::bundle::build_home(dest);
    remove_tree_at(&partial)?;
    remove_tree_at(&home)?;
    let result = build_in(
        python,
        requirements,
        dest,
        &partial,
        &home,
        source_date_epoch,
    );
    remove_tree_at(&home)?;
    if result.is_err() {
        remove_tree_at(&partial)?;
    }
    result
}

fn build_in(
    python: &Path,
    requirements: &[String],
    dest: &Path,
    partial: &Path,
    home: &Path,
    epoch: u64,
) -> Result<()> {
    let fail = failure(python, dest);
    let prefix = interpreter::base_prefix(python).map_err(fail)?;
    let (major, minor) = python_version(python).map_err(fail)?;
    let stdlib = PathBuf::from(format!("lib/python{major}.{minor}"));
    let site = stdlib.join("site-packages");
    interpreter::copy_tree(&prefix, partial, &|rel, is_dir| {
        let name = rel.file_name().unwrap_or_default();
        // The test suite, the IDE and Tk (a server has no display, and Tk would make
        // a package depend on X11 libraries), compiled files (made again below), the
        // static library, and anything the build machine added to site-packages (its
        // pip, `.pth` files of its own).
        let text = name.to_string_lossy();
        (is_dir
            && (["test", "idlelib", "tkinter", "turtledemo"]
                .iter()
                .any(|d| rel == stdlib.join(d))
                || name == "__pycache__"))
            || (!is_dir
                && (Path::new(name).extension().is_some_and(|e| e == "a")
                    || text.starts_with("_tkinter")
                    || (rel.parent() == Some(Path::new("bin")) && text.starts_with("idle"))))
            || rel.parent() == Some(site.as_path())
    })
    .map_err(|e| fail(format!("copying `{}` failed: {e}", prefix.display())))?;
    std::fs::create_dir_all(partial.join(&site)).map_err(|e| fail(e.to_string()))?;
    interpreter::relocate_runpaths(partial, &prefix.join("lib")).map_err(fail)?;
    let bin = partial.join("bin");
    let exe = bin.join(format!("python{major}.{minor}"));
    for alias in ["python3", "python"] {
        if std::fs::symlink_metadata(bin.join(alias)).is_err() {
            std::os::unix::fs::symlink(exe.file_name().unwrap_or_default(), bin.join(alias))
                .map_err(|e| fail(e.to_string()))?;
        }
    }
    install_and_compile(
        python,
        requirements,
        dest,
        partial,
        home,
        epoch,
        &prefix,
        &exe,
    )
}

/// The Python steps of [`build_in`], run by the copy `exe` of the interpreter at
/// `prefix`: pip in, the requirements installed, pip out, scripts made relocatable,
/// modules compiled; then `partial` renamed to `dest`.
#[allow(clippy::too_many_arguments)] // one caller, every value a different path
fn install_and_compile(
    python: &Path,
    requirements: &[String],
    dest: &Path,
    partial: &Path,
    home: &Path,
    epoch: u64,
    prefix: &Path,
    exe: &Path,
) -> Result<()> {
    let fail = failure(python, dest);
    let bin = partial.join("bin");
    std::fs::create_dir_all(home).map_err(|e| fail(e.to_string()))?;
    std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| fail(e.to_string()))?;

    step(
        dest,
        "install pip into the copy",
        (home, home),
        epoch,
        exe,
        &["-I", "-B", "-m", "ensurepip", "--default-pip"],
    )?;
    let mut text = requirements.join("\n");
    text.push('\n');
    if !requirements.is_empty() {
        let file = home.join(REQUIREMENTS_FILE);
        fsutil::write_atomic(&file, text.as_bytes(), 0o600, None)?;
        let mut args = vec![
            "-I",
            "-B",
            "-m",
            "pip",
            "install",
            "--no-input",
            "--disable-pip-version-check",
            "--no-cache-dir",
            "--no-color",
            "--no-compile",
            "--no-warn-script-location",
        ];
        if requirements.iter().any(|r| r.contains("--hash")) {
            args.push("--require-hashes");
        }
        let file = file.to_string_lossy().into_owned();
        let report = home.join(REPORT_FILE).to_string_lossy().into_owned();
        args.extend(["--report", &report, "-r", &file]);
        step(
            dest,
            "install the requirements with pip",
            (home, home),
            epoch,
            exe,
            &args,
        )?;
    }
    // pip is a build tool: the shipped tree runs, it is not installed into.
    step(
        dest,
        "remove pip from the copy",
        (home, home),
        epoch,
        exe,
        &[
            "-I",
            "-B",
            "-m",
            "pip",
            "uninstall",
            "--yes",
            "--no-input",
            "pip",
        ],
    )?;
    remove_pycache(partial)?;
    trampoline_scripts(&bin, &[partial, prefix])?;
    fsutil::write_atomic(
        &partial.join(REQUIREMENTS_FILE),
        text.as_bytes(),
        0o644,
        None,
    )?;
    keep_installed(home, partial).map_err(&fail)?;
    // Hash-checked: the same bytes on every build, and a source edited in place is
    // still noticed. The build directory is stripped from the names the files
    // record; `-B` keeps the compiler's own imports from writing theirs first (with
    // that directory), `force` replaces any that did anyway. A file that does not
    // compile (a template that is not Python, say) is left to be compiled, or to
    // fail, when imported, as without the build; anything else is an error. The
    // workers talk over a socket in `TMPDIR`, whose path must be short.
    let partial_text = partial.to_string_lossy().into_owned();
    let lib = partial.join("lib").to_string_lossy().into_owned();
    let short_tmp = tempfile::Builder::new()
        .prefix("berth-compile.")
        .tempdir()
        .map_err(|e| fail(format!("a temporary directory: {e}")))?;
    step(
        dest,
        "compile the modules",
        (home, short_tmp.path()),
        epoch,
        exe,
        &["-I", "-B", "-c", COMPILE, &lib, &partial_text],
    )?;
    crate::beneath::in_parent(partial)
        .and_then(|(dir, name)| dir.set_mode(&name, 0o755))
        .map_err(|e| fail(e.to_string()))?;
    std::fs::rename(partial, dest).map_err(|source| HostError::Write {
        path: dest.to_path_buf(),
        source,
    })?;
    fsutil::sync_dir(fsutil::parent_dir(dest))
}

/// The error of a build of `dest` from `python` that failed for `reason`.
fn failure<'a>(python: &'a Path, dest: &'a Path) -> impl Fn(String) -> HostError + Copy + 'a {
    move |reason| HostError::PrivateInterpreter {
        python: python.to_path_buf(),
        dest: dest.to_path_buf(),
        reason,
    }
}

/// `(major, minor)` of an interpreter.
fn python_version(python: &Path) -> std::result::Result<(u32, u32), String> {
    let out = Command::new(python)
        .args(["-I", "-c", "import sys; print(*sys.version_info[:2])"])
        .output()
        .map_err(|e| format!("it could not be run: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace().map(str::parse::<u32>);
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) if out.status.success() => Ok((major, minor)),
        _ => Err(format!("it did not tell its version ({})", out.status)),
    }
}

/// Compiles every module under `argv[1]`, naming files without the prefix `argv[2]`.
const COMPILE: &str = "import compileall, py_compile, sys
compileall.compile_dir(sys.argv[1], quiet=1, force=True, stripdir=sys.argv[2], workers=0,
    invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
";

/// Runs one build step in a clean environment (`HOME` and `TMPDIR` from `dirs`); a
/// failure carries the end of its standard error.
fn step(
    dest: &Path,
    what: &str,
    (home, tmp): (&Path, &Path),
    epoch: u64,
    exe: &Path,
    args: &[&str],
) -> Result<()> {
    let out = Command::new(exe)
        .args(args)
        .env_clear()
        .env("PATH", BUILD_PATH)
        .env("HOME", home)
        .env("TMPDIR", tmp)
        .env("LC_ALL", "C.UTF-8")
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .env("PYTHONHASHSEED", "0")
        .current_dir(home)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| HostError::Spawn {
            program: exe.to_string_lossy().into_owned(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(HostError::Venv {
        dest: dest.to_path_buf(),
        step: what.to_owned(),
        status: out.status,
        stderr: stderr_tail(&out.stderr, 15),
    })
}

/// Removes every `__pycache__` directory under `tree`.
fn remove_pycache(tree: &Path) -> Result<()> {
    let mut stack = vec![tree.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| HostError::Read {
            path: dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if !kind.is_dir() {
                continue;
            }
            if entry.file_name() == "__pycache__" {
                remove_tree_at(&entry.path())?;
            } else {
                stack.push(entry.path());
            }
        }
    }
    Ok(())
}

/// The first lines of a Python script that runs it with the interpreter `name` found
/// next to the script (symlinks to the script resolved), wherever the tree is: `sh`
/// runs the `exec` line, Python reads the three lines as a string and moves on.
pub fn trampoline(name: &str) -> String {
    format!(
        "#!/bin/sh\n'''exec' \"$(dirname -- \"$(realpath -- \"$0\")\")\"/'{name}' \"$0\" \"$@\"\n' '''\n"
    )
}

/// Rewrites the `#!` line of every script in `bin` that names a Python under one of
/// `roots` (the tree being built, the interpreter it was copied from) into a
/// [`trampoline`] to the same interpreter name.
fn trampoline_scripts(bin: &Path, roots: &[&Path]) -> Result<()> {
    let entries = std::fs::read_dir(bin).map_err(|source| HostError::Read {
        path: bin.to_path_buf(),
        source,
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
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
        let Some(rest) = bytes.strip_prefix(b"#!") else {
            continue;
        };
        let line_end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let Ok(line) = std::str::from_utf8(&rest[..line_end]) else {
            continue;
        };
        let Some(program) = line.split_whitespace().next().map(Path::new) else {
            continue;
        };
        if !roots.iter().any(|r| program.starts_with(r)) {
            continue;
        }
        let Some(name) = program.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let mut text = trampoline(name).into_bytes();
        text.extend_from_slice(rest.get(line_end + 1..).unwrap_or_default());
        fsutil::write_atomic(&path, &text, meta.permissions().mode() & 0o7777, None)?;
    }
    Ok(())
}

/// Keeps pip's record of what it installed in the tree ([`INSTALLED_FILE`]); an empty
/// one when there was nothing to install.
fn keep_installed(home: &Path, partial: &Path) -> std::result::Result<(), String> {
    let installed = match std::fs::read(home.join(REPORT_FILE)) {
        Ok(bytes) => installed_record(&bytes)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "[]\n".to_owned(),
        Err(e) => return Err(e.to_string()),
    };
    fsutil::write_atomic(
        &partial.join(INSTALLED_FILE),
        installed.as_bytes(),
        0o644,
        None,
    )
    .map_err(|e| e.to_string())
}

/// What pip's installation report (`--report`) says it installed, as the tree keeps
/// it: name, version, artifact file and SHA-256 (when the index gave one), sorted by
/// name. Nothing of the build machine (pip's environment, the index's address) is
/// kept: two builds give the same bytes.
fn installed_record(report: &[u8]) -> std::result::Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Report {
        install: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        metadata: Meta,
        download_info: Download,
    }
    #[derive(serde::Deserialize)]
    struct Meta {
        name: String,
        version: String,
    }
    #[derive(serde::Deserialize)]
    struct Download {
        url: String,
        #[serde(default)]
        archive_info: Option<Archive>,
    }
    #[derive(serde::Deserialize)]
    struct Archive {
        #[serde(default)]
        hashes: std::collections::BTreeMap<String, String>,
    }
    let report: Report = serde_json::from_slice(report)
        .map_err(|e| format!("pip's installation report is not what pip writes ({e})"))?;
    let mut items: Vec<serde_json::Value> = report
        .install
        .into_iter()
        .map(|i| {
            let file = i
                .download_info
                .url
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .split(['#', '?'])
                .next()
                .unwrap_or_default()
                .to_owned();
            let sha256 = i
                .download_info
                .archive_info
                .and_then(|a| a.hashes.get("sha256").cloned());
            serde_json::json!({
                "name": i.metadata.name,
                "version": i.metadata.version,
                "file": file,
                "sha256": sha256,
            })
        })
        .collect();
    items.sort_by_key(|v| v["name"].as_str().unwrap_or_default().to_ascii_lowercase());
    let mut text = serde_json::to_string_pretty(&items).map_err(|e| e.to_string())?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_installed_record_keeps_names_versions_files_and_hashes_only() {
        let report = br#"{"version": "1", "pip_version": "24.2",
            "install": [
              {"download_info": {"url": "https://files.example/packages/aa/bb/redis-5.0.8-py3-none-any.whl",
                 "archive_info": {"hash": "sha256=ab", "hashes": {"sha256": "ab"}}},
               "is_direct": false, "requested": true,
               "metadata": {"name": "redis", "version": "5.0.8"}},
              {"download_info": {"url": "file:///tmp/build/Local_Pkg-1.0-py3-none-any.whl", "archive_info": {}},
               "is_direct": true, "requested": true,
               "metadata": {"name": "Local_Pkg", "version": "1.0"}}
            ],
            "environment": {"platform_release": "6.1.0-something"}}"#;
        let text = installed_record(report).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                {"name": "Local_Pkg", "version": "1.0", "file": "Local_Pkg-1.0-py3-none-any.whl", "sha256": null},
                {"name": "redis", "version": "5.0.8", "file": "redis-5.0.8-py3-none-any.whl", "sha256": "ab"}
            ])
        );
        assert!(!text.contains("files.example") && !text.contains("platform_release"));
        assert!(installed_record(b"{}").is_err());
    }

    /// The trampoline is valid shell and valid Python: run by `sh` it starts the
    /// interpreter next to the script, which then skips the header as a string.
    #[test]
    fn the_trampoline_runs_the_interpreter_next_to_the_script() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        // A stand-in interpreter that shows what it was given.
        std::fs::write(
            bin.join("py"),
            "#!/bin/sh\necho \"$1|$2\"\nhead -4 \"$1\" | tail -1\n",
        )
        .unwrap();
        std::fs::set_permissions(bin.join("py"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let script = bin.join("tool");
        std::fs::write(&script, format!("#!{}/py\nprint('hi')\n", bin.display())).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        trampoline_scripts(&bin, &[dir.path()]).unwrap();
        let text = std::fs::read_to_string(&script).unwrap();
        assert_eq!(text, format!("{}print('hi')\n", trampoline("py")));
        // Moved elsewhere and run through a symlink, it still finds its interpreter.
        let moved = tempfile::tempdir().unwrap();
        let new_bin = moved.path().join("b");
        std::fs::rename(&bin, &new_bin).unwrap();
        let link = moved.path().join("link");
        std::os::unix::fs::symlink(new_bin.join("tool"), &link).unwrap();
        let out = Command::new(&link).arg("x").output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!("{}|x\nprint('hi')\n", link.display())
        );
    }

    /// Scripts naming another interpreter, and files that are not scripts, are left alone.
    #[test]
    fn only_scripts_of_the_tree_are_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join("sh-tool"), "#!/bin/sh\necho\n").unwrap();
        std::fs::write(bin.join("data"), b"\x7fELF\0\0").unwrap();
        trampoline_scripts(&bin, &[dir.path()]).unwrap();
        assert_eq!(
            std::fs::read_to_string(bin.join("sh-tool")).unwrap(),
            "#!/bin/sh\necho\n"
        );
        assert_eq!(std::fs::read(bin.join("data")).unwrap(), b"\x7fELF\0\0");
    }
}
