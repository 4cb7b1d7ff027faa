//! The distribution packages a built tree's shared libraries come from, the way
//! `dpkg-shlibdeps` finds them: every ELF file's `DT_NEEDED` names that the tree does
//! not hold itself, found with `ldconfig -p` and owned by a package per `dpkg -S`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use object::Endianness;
use object::elf::{DT_NEEDED, FileHeader32, FileHeader64};
use object::read::elf::FileHeader;

use crate::PackageError;

/// The packages providing the libraries the ELF files under `tree` need, sorted.
/// A library no package provides is an error naming it and the file that needs it.
pub fn library_packages(tree: &Path) -> Result<Vec<String>, PackageError> {
    let known = ldconfig()?;
    let mut packages = BTreeSet::new();
    for (name, (user, _)) in &needed_from_outside(tree)? {
        let package = known
            .get(name)
            .and_then(|path| owner(path))
            .ok_or_else(|| PackageError::Input {
                what: format!(
                    "`{}` needs the shared library `{name}`, which no installed package \
                     provides here: install it on the building machine",
                    user.display()
                ),
            })?;
        packages.insert(package);
    }
    Ok(packages.into_iter().collect())
}

/// The shared libraries the ELF files under `tree` need and the tree does not hold:
/// name → (a file that needs it, whether that file is 64-bit).
pub fn needed_from_outside(tree: &Path) -> Result<BTreeMap<String, (PathBuf, bool)>, PackageError> {
    let mut held = BTreeSet::new();
    let mut needed: BTreeMap<String, (PathBuf, bool)> = BTreeMap::new();
    let mut stack = vec![tree.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(PackageError::io("read", &dir))?;
        for entry in entries {
            let entry = entry.map_err(PackageError::io("read", &dir))?;
            let kind = entry
                .file_type()
                .map_err(PackageError::io("read", entry.path()))?;
            held.insert(entry.file_name().to_string_lossy().into_owned());
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                let (names, wide) = needed_by(&entry.path())?;
                for name in names {
                    needed.entry(name).or_insert_with(|| (entry.path(), wide));
                }
            }
        }
    }
    needed.retain(|name, _| !held.contains(name));
    Ok(needed)
}

/// The `DT_NEEDED` names of `path` if it is an ELF file (none otherwise), and whether
/// it is 64-bit.
fn needed_by(path: &Path) -> Result<(Vec<String>, bool), PackageError> {
    let mut magic = [0u8; 5];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(PackageError::io("read", path))?;
        if f.read_exact(&mut magic).is_err() || &magic[..4] != b"\x7fELF" {
            return Ok((Vec::new(), false));
        }
    }
    let data = std::fs::read(path).map_err(PackageError::io("read", path))?;
    let bad = |e: object::read::Error| PackageError::Input {
        what: format!(
            "`{}` is not an ELF file berth can read: {e}",
            path.display()
        ),
    };
    match magic[4] {
        2 => Ok((
            needed_in::<FileHeader64<Endianness>>(&data).map_err(bad)?,
            true,
        )),
        1 => Ok((
            needed_in::<FileHeader32<Endianness>>(&data).map_err(bad)?,
            false,
        )),
        _ => Ok((Vec::new(), false)),
    }
}

fn needed_in<Elf: FileHeader<Endian = Endianness>>(
    data: &[u8],
) -> object::read::Result<Vec<String>> {
    let header = Elf::parse(data)?;
    let endian = header.endian()?;
    let sections = header.sections(endian, data)?;
    let table = sections.dynamic_table(endian, data)?;
    let mut out = Vec::new();
    for d in &table {
        if d.tag == DT_NEEDED {
            out.push(String::from_utf8_lossy(table.string(d)?).into_owned());
        }
    }
    Ok(out)
}

/// Library name → path, from the dynamic linker's cache (`ldconfig -p`); the first
/// entry of a name wins, as it does for the linker.
fn ldconfig() -> Result<BTreeMap<String, PathBuf>, PackageError> {
    let out = Command::new("ldconfig")
        .arg("-p")
        .output()
        .or_else(|_| Command::new("/sbin/ldconfig").arg("-p").output())
        .map_err(PackageError::io("run", "ldconfig"))?;
    let mut map = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
        // "\tlibssl.so.3 (libc6,x86-64) => /lib/x86_64-linux-gnu/libssl.so.3"
        let Some((left, path)) = line.split_once(" => ") else {
            continue;
        };
        let name = left
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        map.entry(name)
            .or_insert_with(|| PathBuf::from(path.trim()));
    }
    Ok(map)
}

/// The package that owns `path` (by `dpkg -S`, trying the path the package lists it
/// under where `/lib` is a link to `/usr/lib`), without its architecture.
fn owner(path: &Path) -> Option<String> {
    let mut candidates = vec![path.to_path_buf()];
    if let Ok(real) = std::fs::canonicalize(path) {
        candidates.push(real);
    }
    let text = path.to_string_lossy();
    if let Some(rest) = text.strip_prefix("/usr") {
        candidates.push(PathBuf::from(rest));
    } else {
        candidates.push(PathBuf::from(format!("/usr{text}")));
    }
    for candidate in candidates {
        let out = Command::new("dpkg")
            .arg("-S")
            .arg(&candidate)
            .output()
            .ok()?;
        if !out.status.success() {
            continue;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let first = text.lines().next()?;
        let package = first.split(':').next()?.trim();
        if !package.is_empty() && !package.contains(',') {
            return Some(package.to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    /// This test binary needs libc, which `libc6` provides; a library the tree holds
    /// itself is not looked up.
    #[test]
    fn the_packages_of_a_trees_libraries_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        std::fs::copy(&exe, dir.path().join("prog")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not ELF").unwrap();
        let packages = super::library_packages(dir.path()).unwrap();
        assert!(packages.iter().any(|p| p == "libc6"), "{packages:?}");
        assert_eq!(
            super::needed_by(&dir.path().join("notes.txt")).unwrap(),
            (Vec::<String>::new(), false)
        );
        // `prog` needs libc.so.6; a file of that name in the tree is taken as provided.
        std::fs::write(dir.path().join("libc.so.6"), "").unwrap();
        std::fs::write(dir.path().join("libgcc_s.so.1"), "").unwrap();
        std::fs::write(dir.path().join("libm.so.6"), "").unwrap();
        let (needed, wide) = super::needed_by(&dir.path().join("prog")).unwrap();
        assert!(
            wide && needed.iter().any(|n| n == "libc.so.6"),
            "{needed:?}"
        );
        // As RPM names what the tree needs from outside: by soname, 64-bit.
        let outside = super::needed_from_outside(dir.path()).unwrap();
        assert!(!outside.contains_key("libc.so.6"), "{outside:?}");
    }
}
