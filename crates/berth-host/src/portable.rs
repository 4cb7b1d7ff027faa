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
//! next to themselves (the distributions' `RECORD`s updated to match), and every module is compiled once, with hashes rather than
//! times, so two builds give the same bytes and a read-only install never recompiles.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

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
    let rewritten = trampoline_scripts(&bin, &[partial, prefix])?;
    // The interpreter `exe` is `bin/pythonX.Y`, its modules are in `lib/pythonX.Y`.
    let site = partial
        .join("lib")
        .join(exe.file_name().unwrap_or_default())
        .join("site-packages");
    rerecord_scripts(&site, &rewritten)?;
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

/// `CFLAGS` and `CXXFLAGS` of the build's steps: no debug information. pip builds a
/// source distribution in a directory of a random name (`pip-install-…/<name>_<uuid>`),
/// which the compiler's debug information records (`DW_AT_comp_dir`, the line table),
/// and the GNU build ID is a hash over all of it, so every build of a C extension gave
/// other bytes; no prefix map can name a random directory. setuptools, meson-python
/// and CMake put these after their own flags, so the last `-g` option wins.
const BUILD_CFLAGS: &str = "-g0";

/// Runs one build step in a clean environment (`HOME` and `TMPDIR` from `dirs`,
/// [`BUILD_CFLAGS`]); a failure carries the end of its standard error.
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
        .env("CFLAGS", BUILD_CFLAGS)
        .env("CXXFLAGS", BUILD_CFLAGS)
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

/// The interpreter a script starts, and where the script's own text begins: its `#!`
/// line's program, or, where the path was too long for a `#!` line (more than 127
/// bytes) or held a space, the program of pip's own `/bin/sh` form of the same
/// trampoline (`'''exec' /path/python "$0" "$@"` between `#!/bin/sh` and `' '''`).
fn script_interpreter(bytes: &[u8]) -> Option<(String, usize)> {
    let line = |from: usize| -> Option<(&str, usize)> {
        let rest = bytes.get(from..)?;
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        Some((std::str::from_utf8(&rest[..end]).ok()?, from + end + 1))
    };
    let (first, next) = line(0)?;
    let first = first.strip_prefix("#!")?;
    if first.trim() == "/bin/sh"
        && let Some((exec, after)) = line(next)
        && let Some(words) = exec.strip_prefix("'''exec' ")
        && let Some((close, body)) = line(after)
        && close == "' '''"
    {
        let program = match words.strip_prefix('"') {
            Some(quoted) => quoted.split('"').next()?,
            None => words.split(' ').next()?,
        };
        return Some((program.to_owned(), body.min(bytes.len())));
    }
    let program = first.split_whitespace().next()?;
    Some((program.to_owned(), next.min(bytes.len())))
}

/// Rewrites the `#!` line of every script in `bin` that names a Python under one of
/// `roots` (the tree being built, the interpreter it was copied from) into a
/// [`trampoline`] to the same interpreter name; the scripts rewritten, each with its
/// new content.
fn trampoline_scripts(bin: &Path, roots: &[&Path]) -> Result<BTreeMap<PathBuf, Vec<u8>>> {
    let mut rewritten = BTreeMap::new();
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
        let Some((program, body)) = script_interpreter(&bytes) else {
            continue;
        };
        let program = Path::new(&program);
        if !roots.iter().any(|r| program.starts_with(r)) {
            continue;
        }
        let Some(name) = program.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let mut text = trampoline(name).into_bytes();
        text.extend_from_slice(&bytes[body..]);
        fsutil::write_atomic(&path, &text, meta.permissions().mode() & 0o7777, None)?;
        rewritten.insert(path, text);
    }
    Ok(rewritten)
}

/// Gives every line of a `RECORD` under `site` (the `site-packages` of the tree) that
/// names one of the `rewritten` scripts the script's new hash and size: pip recorded
/// those of the script it wrote, whose `#!` line named the build directory, so the
/// record would be wrong and differ from build to build.
fn rerecord_scripts(site: &Path, rewritten: &BTreeMap<PathBuf, Vec<u8>>) -> Result<()> {
    if rewritten.is_empty() {
        return Ok(());
    }
    let entries = std::fs::read_dir(site).map_err(|source| HostError::Read {
        path: site.to_path_buf(),
        source,
    })?;
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().ends_with(".dist-info")
            || !entry.file_type().is_ok_and(|t| t.is_dir())
        {
            continue;
        }
        let path = entry.path().join("RECORD");
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
        // The wheel spec makes RECORD UTF-8; anything else pip did not write.
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue;
        };
        if let Some(text) = updated_record(text, site, rewritten) {
            fsutil::write_atomic(
                &path,
                text.as_bytes(),
                meta.permissions().mode() & 0o7777,
                None,
            )?;
        }
    }
    Ok(())
}

/// `record` (a `RECORD` of a distribution installed in `site`) with the hash and size
/// of every line naming one of `files` (absolute paths, with their content) made
/// those of the content; every other line, the order and the line ends kept. `None`
/// when no line names one of them.
fn updated_record(record: &str, site: &Path, files: &BTreeMap<PathBuf, Vec<u8>>) -> Option<String> {
    let mut out = String::with_capacity(record.len());
    let mut changed = false;
    for line in record.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let end = &line[body.len()..];
        let content = record_path(body)
            .map(|(raw, path)| (raw, lexical_join(site, Path::new(&path))))
            .and_then(|(raw, path)| files.get(&path).map(|c| (raw, c)));
        let Some((raw, content)) = content else {
            out.push_str(line);
            continue;
        };
        changed = true;
        let digest = urlsafe_base64(&Sha256::digest(content));
        let _ = write!(out, "{raw},sha256={digest},{}{end}", content.len());
    }
    changed.then_some(out)
}

/// The path field of a `RECORD` line (a CSV row: quoted when it holds a comma or a
/// quote, a quote doubled inside), as written and as meant; `None` for a line that is
/// not a row with more fields.
fn record_path(line: &str) -> Option<(&str, String)> {
    let Some(quoted) = line.strip_prefix('"') else {
        let (raw, _) = line.split_once(',')?;
        return Some((raw, raw.to_owned()));
    };
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '"' {
            value.push(c);
            continue;
        }
        if quoted[i + 1..].starts_with('"') {
            value.push('"');
            chars.next();
            continue;
        }
        // `i + 1` in `quoted` is `i + 2` in `line`: the closing quote ends the field.
        return line[i + 2..]
            .starts_with(',')
            .then(|| (&line[..i + 2], value));
    }
    None
}

/// `base` joined with `rel` with `..` and `.` resolved by name (RECORD names scripts
/// as `../../../bin/<name>` from `site-packages`); `rel` itself when absolute.
fn lexical_join(base: &Path, rel: &Path) -> PathBuf {
    let mut path = base.to_path_buf();
    for part in rel.components() {
        match part {
            std::path::Component::ParentDir => {
                path.pop();
            }
            std::path::Component::CurDir => {}
            other => path.push(other),
        }
    }
    path
}

/// `bytes` in URL-safe base64 without padding, as a wheel's RECORD gives hashes.
fn urlsafe_base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
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

    #[test]
    fn hashes_are_urlsafe_base64_without_padding() {
        assert_eq!(urlsafe_base64(b""), "");
        assert_eq!(urlsafe_base64(b"f"), "Zg");
        assert_eq!(urlsafe_base64(b"fo"), "Zm8");
        assert_eq!(urlsafe_base64(b"foo"), "Zm9v");
        assert_eq!(urlsafe_base64(b"foob"), "Zm9vYg");
        assert_eq!(urlsafe_base64(&[0xfb, 0xff]), "-_8");
        // What pip writes for an empty file.
        assert_eq!(
            urlsafe_base64(&Sha256::digest(b"")),
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
        );
    }

    /// Only the lines naming a rewritten script change (quoted or not, CRLF as pip
    /// writes them); everything else, the order and the line ends are kept.
    #[test]
    fn the_record_gives_rewritten_scripts_their_new_hash_and_size() {
        let site = Path::new("/b/app.partial/lib/python3.13/site-packages");
        let mut files = BTreeMap::new();
        files.insert(
            PathBuf::from("/b/app.partial/bin/django-admin"),
            b"".to_vec(),
        );
        files.insert(
            PathBuf::from("/b/app.partial/bin/odd,name"),
            b"foo".to_vec(),
        );
        let record = "../../../bin/django-admin,sha256=Q3VAold,343\r\n\
            \"../../../bin/odd,name\",sha256=old,12\r\n\
            ../../../bin/other,sha256=keep,7\r\n\
            django/__init__.py,sha256=keep,4\r\n\
            Django-5.1.dist-info/RECORD,,\r\n\
            \"unterminated,\r\n\
            ./../../../bin/django-admin,sha256=old,1";
        let new = updated_record(record, site, &files).unwrap();
        let digest = Sha256::digest(b"foo");
        assert_eq!(
            new,
            format!(
                "../../../bin/django-admin,sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU,0\r\n\
                \"../../../bin/odd,name\",sha256={},3\r\n\
                ../../../bin/other,sha256=keep,7\r\n\
                django/__init__.py,sha256=keep,4\r\n\
                Django-5.1.dist-info/RECORD,,\r\n\
                \"unterminated,\r\n\
                ./../../../bin/django-admin,sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU,0",
                urlsafe_base64(&digest)
            )
        );
        assert_eq!(updated_record("a.py,sha256=x,1\n", site, &files), None);
        assert_eq!(
            record_path("\"a\"\"b,c\",x"),
            Some(("\"a\"\"b,c\"", "a\"b,c".to_owned()))
        );
        assert_eq!(record_path("\"a\"b,x"), None);
        assert_eq!(record_path("no-fields"), None);
    }

    /// After the scripts are rewritten, the RECORD naming them matches their bytes.
    #[test]
    fn rewritten_scripts_are_recorded_with_their_new_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        let info = dir
            .path()
            .join("lib/python3.13/site-packages/tool-1.0.dist-info");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&info).unwrap();
        let old = format!("#!{}/python3.13\nprint('hi')\n", bin.display());
        std::fs::write(bin.join("tool"), &old).unwrap();
        let record = format!(
            "../../../bin/tool,sha256={},{}\r\ntool.py,sha256=x,1\r\n",
            urlsafe_base64(&Sha256::digest(old.as_bytes())),
            old.len()
        );
        std::fs::write(info.join("RECORD"), &record).unwrap();
        std::fs::set_permissions(info.join("RECORD"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let rewritten = trampoline_scripts(&bin, &[dir.path()]).unwrap();
        rerecord_scripts(info.parent().unwrap(), &rewritten).unwrap();
        let new = std::fs::read(bin.join("tool")).unwrap();
        assert_eq!(
            std::fs::read_to_string(info.join("RECORD")).unwrap(),
            format!(
                "../../../bin/tool,sha256={},{}\r\ntool.py,sha256=x,1\r\n",
                urlsafe_base64(&Sha256::digest(&new)),
                new.len()
            )
        );
        let mode = std::fs::metadata(info.join("RECORD"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
    }

    /// A step sees only the build's environment: C extensions are compiled without
    /// debug information, which would record pip's random build directory.
    #[test]
    fn steps_compile_without_debug_information() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env");
        let script = format!("env > '{}'", out.display());
        step(
            dir.path(),
            "show the environment",
            (dir.path(), dir.path()),
            1_700_000_000,
            Path::new("/bin/sh"),
            &["-c", &script],
        )
        .unwrap();
        let env = std::fs::read_to_string(&out).unwrap();
        let mut lines: Vec<&str> = env
            .lines()
            .filter(|l| l.contains("FLAGS=") || l.starts_with("SOURCE_DATE_EPOCH="))
            .collect();
        lines.sort_unstable();
        assert_eq!(
            lines,
            ["CFLAGS=-g0", "CXXFLAGS=-g0", "SOURCE_DATE_EPOCH=1700000000"]
        );
    }

    /// pip writes a script whose interpreter's path is too long for a `#!` line (more
    /// than 127 bytes: a deep build directory) in a `/bin/sh` form naming that path;
    /// it becomes the same trampoline, or the tree would run only where it was built.
    #[test]
    fn the_long_path_form_of_pip_is_made_a_trampoline_too() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let long = format!("{}/{}/bin/python3.13", dir.path().display(), "x".repeat(120));
        for (file, program) in [("plain", long.clone()), ("quoted", format!("\"{long}\""))] {
            std::fs::write(
                bin.join(file),
                format!("#!/bin/sh\n'''exec' {program} \"$0\" \"$@\"\n' '''\n# -*- coding: utf-8 -*-\nimport sys\n"),
            )
            .unwrap();
        }
        let rewritten = trampoline_scripts(&bin, &[dir.path()]).unwrap();
        assert_eq!(rewritten.len(), 2);
        for file in ["plain", "quoted"] {
            assert_eq!(
                std::fs::read_to_string(bin.join(file)).unwrap(),
                format!("{}# -*- coding: utf-8 -*-\nimport sys\n", trampoline("python3.13"))
            );
        }
        // A trampoline already is one: nothing to do.
        assert!(trampoline_scripts(&bin, &[dir.path()]).unwrap().is_empty());
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
