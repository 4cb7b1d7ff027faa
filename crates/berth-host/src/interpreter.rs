//! Making a Python interpreter usable by service users.
//!
//! An interpreter under a private directory (pyenv's `~/.pyenv` under a 0700 home,
//! say) cannot be run by a service user, and neither can a virtualenv made from it.
//! [`shareable_interpreter`] copies such an interpreter into the release, next to the
//! virtualenv, and points its library search path at the copy (`$ORIGIN/../lib`), so
//! the release carries its own Python the way an omnibus package does.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{HostError, Result};

/// What the copy leaves out: the interpreter's own test suite (about 40 % of its size).
/// Compiled `__pycache__` files are kept: the release is read-only to service users,
/// who could never write them back, and every start would recompile the standard library.
const SKIP_DIRS: &[&str] = &["test", "idlelib"];

/// The interpreter to build a venv from: `python` itself when every user can run it,
/// otherwise a copy under `dest` (made once, reused afterwards).
pub fn shareable_interpreter(python: &Path, dest: &Path) -> Result<PathBuf> {
    let fail = |reason: String| HostError::PrivateInterpreter {
        python: python.to_path_buf(),
        dest: dest.to_path_buf(),
        reason,
    };
    let real = std::fs::canonicalize(python).map_err(|e| fail(e.to_string()))?;
    if world_usable(&real) {
        return Ok(python.to_path_buf());
    }
    let prefix = base_prefix(python).map_err(fail)?;
    let relative = real
        .strip_prefix(&prefix)
        .map_err(|_| {
            fail(format!(
                "it is not under its own prefix `{}`",
                prefix.display()
            ))
        })?
        .to_path_buf();
    let copied = dest.join(&relative);
    if copied.exists() {
        return Ok(copied);
    }
    let partial = berth_layout::bundle::partial(dest);
    let _ = crate::beneath::remove_tree_at(&partial);
    copy_tree(&prefix, &partial, &|rel, is_dir| {
        is_dir
            && rel
                .file_name()
                .is_some_and(|n| SKIP_DIRS.iter().any(|s| n == *s))
    })
    .map_err(|e| fail(format!("copying failed: {e}")))?;
    relocate_runpaths(&partial, &prefix.join("lib")).map_err(fail)?;
    crate::beneath::in_parent(&partial)
        .and_then(|(dir, name)| dir.set_mode(&name, 0o755))
        .map_err(|e| fail(e.to_string()))?;
    std::fs::rename(&partial, dest).map_err(|e| fail(e.to_string()))?;
    Ok(copied)
}

/// Whether every directory above `path` can be traversed, and `path` run, by any user.
pub(crate) fn world_usable(path: &Path) -> bool {
    let runnable = std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o001 != 0);
    runnable
        && path
            .ancestors()
            .skip(1)
            .all(|d| std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

/// `sys.base_prefix` of an interpreter: the directory a copy of it is made from.
/// Refused for a system prefix such as `/usr`, which cannot be copied.
pub fn base_prefix(python: &Path) -> std::result::Result<PathBuf, String> {
    let out = Command::new(python)
        .args(["-I", "-c", "import sys; print(sys.base_prefix)"])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("it could not be run ({})", out.status));
    }
    let prefix = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    // Copying a system prefix such as `/usr` makes no sense: such an interpreter is usable.
    if prefix.components().count() < 3 {
        return Err(format!(
            "its prefix `{}` is a system directory",
            prefix.display()
        ));
    }
    Ok(prefix)
}

/// Copy a directory tree, keeping symlinks as symlinks and file modes, leaving out
/// what `skip` says (given the path relative to `from` and whether it is a directory).
pub fn copy_tree(
    from: &Path,
    to: &Path,
    skip: &dyn Fn(&Path, bool) -> bool,
) -> std::io::Result<()> {
    copy_tree_at(from, to, Path::new(""), skip)
}

fn copy_tree_at(
    from: &Path,
    to: &Path,
    rel: &Path,
    skip: &dyn Fn(&Path, bool) -> bool,
) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755))?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let src = entry.path();
        let dst = to.join(&name);
        let rel = rel.join(&name);
        let kind = entry.file_type()?;
        if skip(&rel, kind.is_dir()) {
            continue;
        }
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if kind.is_dir() {
            copy_tree_at(&src, &dst, &rel, skip)?;
        } else if kind.is_file() {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// Points every ELF file of `tree` whose library search path is `old_libdir` (the
/// copied interpreter's `<prefix>/lib`) at `tree/lib` relative to itself
/// (`$ORIGIN/../lib` from `bin/`, `$ORIGIN/../..` from `lib/python3.N/lib-dynload/`):
/// the copy then runs wherever it is moved, and keeps no path of the machine it came
/// from (a search path naming a directory that does not exist on the target is a
/// place someone could put a library).
pub fn relocate_runpaths(tree: &Path, old_libdir: &Path) -> Result<(), String> {
    let old = old_libdir.to_string_lossy().into_owned();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel_dir) = stack.pop() {
        let dir = tree.join(&rel_dir);
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("`{}`: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("`{}`: {e}", dir.display()))?;
            let kind = entry.file_type().map_err(|e| e.to_string())?;
            let rel = rel_dir.join(entry.file_name());
            if kind.is_dir() {
                stack.push(rel);
            } else if kind.is_file() {
                let new = origin_path(&rel_dir, Path::new("lib"));
                rewrite_runpath(&tree.join(&rel), &old, &new)
                    .map_err(|e| format!("`{}`: {e}", tree.join(&rel).display()))?;
            }
        }
    }
    Ok(())
}

/// `$ORIGIN`-relative path from the directory `from` to `to`, both relative to the
/// same root: `bin` → `lib` is `$ORIGIN/../lib`, `lib` → `lib` is `$ORIGIN`.
fn origin_path(from: &Path, to: &Path) -> String {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = "$ORIGIN".to_owned();
    for _ in common..from.len() {
        out.push_str("/..");
    }
    for c in &to[common..] {
        out.push('/');
        out.push_str(&c.as_os_str().to_string_lossy());
    }
    out
}

/// Replace the NUL-terminated string `old` (an ELF `DT_RUNPATH`) with `new` in place,
/// padding with NULs. Files that do not contain `old` are left alone.
fn rewrite_runpath(path: &Path, old: &str, new: &str) -> std::io::Result<()> {
    let mut bytes = std::fs::read(path)?;
    if !bytes.starts_with(b"\x7fELF") {
        return Ok(());
    }
    if new.len() > old.len() {
        return Err(std::io::Error::other(
            "the new library path is longer than the old one",
        ));
    }
    let mut needle = Vec::with_capacity(old.len() + 2);
    needle.push(0);
    needle.extend_from_slice(old.as_bytes());
    needle.push(0);
    let mut changed = false;
    let mut i = 0;
    while let Some(pos) = find(&bytes[i..], &needle).map(|p| p + i) {
        let start = pos + 1;
        let mut replacement = new.as_bytes().to_vec();
        replacement.resize(old.len(), 0);
        bytes[start..start + old.len()].copy_from_slice(&replacement);
        changed = true;
        i = start + old.len();
    }
    if changed {
        let mode = std::fs::symlink_metadata(path)?.permissions().mode();
        crate::fsutil::write_atomic(path, &bytes, mode & 0o7777, None)
            .map_err(std::io::Error::other)?;
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runpath_is_rewritten_in_place_and_padded() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("python3");
        let mut bytes = b"\x7fELF....\0/opt/py/3.12/lib\0other\0".to_vec();
        bytes.extend_from_slice(b"/opt/py/3.12/lib/python3.12\0");
        std::fs::write(&f, &bytes).unwrap();
        rewrite_runpath(&f, "/opt/py/3.12/lib", "$ORIGIN/../lib").unwrap();
        let out = std::fs::read(&f).unwrap();
        assert_eq!(out.len(), bytes.len());
        assert!(find(&out, b"\0$ORIGIN/../lib\0\0\0other\0").is_some());
        // A longer string that merely starts with the old path is not touched.
        assert!(find(&out, b"/opt/py/3.12/lib/python3.12\0").is_some());
    }

    #[test]
    fn origin_paths_lead_to_the_library_directory() {
        let lib = Path::new("lib");
        assert_eq!(origin_path(Path::new("bin"), lib), "$ORIGIN/../lib");
        assert_eq!(origin_path(lib, lib), "$ORIGIN");
        assert_eq!(
            origin_path(Path::new("lib/python3.12/lib-dynload"), lib),
            "$ORIGIN/../.."
        );
        assert_eq!(origin_path(Path::new(""), lib), "$ORIGIN/lib");
    }

    #[test]
    fn non_elf_files_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("script");
        std::fs::write(&f, b"#!/bin/sh\n\0/opt/py/lib\0").unwrap();
        rewrite_runpath(&f, "/opt/py/lib", "$ORIGIN/../lib").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"#!/bin/sh\n\0/opt/py/lib\0");
    }
}
