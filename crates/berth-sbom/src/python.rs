//! Python distributions as they are installed: each `*.dist-info` directory in a
//! `site-packages` holds the core metadata (`METADATA`, an email-header document) with
//! the name, version and licence, and the licence files the distribution ships.

use std::path::{Path, PathBuf};

use crate::SbomError;
use crate::licence::{self, Licence, LicenceText};

/// One installed distribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distribution {
    /// `Name:` as the distribution spells it.
    pub name: String,
    /// `Version:`.
    pub version: String,
    /// `Summary:`.
    pub summary: Option<String>,
    /// `Home-page:`, or the first `Project-URL:` named home page or source.
    pub homepage: Option<String>,
    /// `Author:` / `Author-email:` (the first given).
    pub author: Option<String>,
    /// The licence it declares, and the licence texts it ships.
    pub licence: Licence,
    /// The `.dist-info` directory, relative to the `site-packages` it is in.
    pub dist_info: String,
}

/// The core metadata fields of a `METADATA` file: headers until the first empty line,
/// continuation lines (starting with whitespace) folded into the header before them.
pub fn parse_metadata(text: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push('\n');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            fields.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    fields
}

/// The distributions installed in `site_packages`, sorted by normalized name. A
/// `.dist-info` without a readable name and version is an error naming it.
pub fn distributions(site_packages: &Path) -> Result<Vec<Distribution>, SbomError> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(site_packages).map_err(SbomError::io("read", site_packages))?;
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "dist-info")
                && std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
        })
        .collect();
    dirs.sort();
    for dir in dirs {
        let file = dir.join("METADATA");
        let text = std::fs::read(&file).map_err(SbomError::io("read", &file))?;
        let text = String::from_utf8_lossy(&text);
        let fields = parse_metadata(&text);
        let one = |key: &str| {
            fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty() && v != "UNKNOWN")
        };
        let all = |key: &str| -> Vec<String> {
            fields
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.clone())
                .collect()
        };
        let (Some(name), Some(version)) = (one("Name"), one("Version")) else {
            return Err(SbomError::Input {
                what: format!(
                    "`{}` names no distribution (no `Name:` or `Version:`)",
                    file.display()
                ),
            });
        };
        let homepage = one("Home-page").or_else(|| {
            all("Project-URL").into_iter().find_map(|u| {
                let (label, url) = u.split_once(',')?;
                let label = label.trim().to_ascii_lowercase();
                ["homepage", "home", "source", "source code", "repository"]
                    .contains(&label.as_str())
                    .then(|| url.trim().to_owned())
            })
        });
        let mut licence = licence::declared(
            one("License-Expression").as_deref(),
            one("License").as_deref(),
            &all("Classifier"),
        );
        licence.texts = licence_texts(&dir, &all("License-File"))?;
        out.push(Distribution {
            name,
            version,
            summary: one("Summary"),
            homepage,
            author: one("Author").or_else(|| one("Author-email")),
            licence,
            dist_info: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        });
    }
    out.sort_by_key(|d| normalize(&d.name));
    Ok(out)
}

/// The licence files a distribution ships: those `License-File:` names (under
/// `licenses/`, as metadata 2.4 puts them, or beside `METADATA`, as older tools did),
/// else any `LICENSE*`, `LICENCE*`, `COPYING*` or `NOTICE*` there. Never a file
/// outside the `.dist-info` directory, whatever a name says.
fn licence_texts(dir: &Path, named: &[String]) -> Result<Vec<LicenceText>, SbomError> {
    let mut paths: Vec<(String, PathBuf)> = Vec::new();
    for name in named {
        if name.split('/').any(|part| part == ".." || part.is_empty()) || name.starts_with('/') {
            continue;
        }
        for candidate in [dir.join("licenses").join(name), dir.join(name)] {
            if is_plain_file(&candidate) {
                paths.push((name.clone(), candidate));
                break;
            }
        }
    }
    if paths.is_empty() {
        for base in [dir.join("licenses"), dir.to_path_buf()] {
            let Ok(entries) = std::fs::read_dir(&base) else {
                continue;
            };
            let mut found: Vec<(String, PathBuf)> = entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let upper = name.to_ascii_uppercase();
                    (["LICENSE", "LICENCE", "COPYING", "NOTICE"]
                        .iter()
                        .any(|p| upper.starts_with(p))
                        && is_plain_file(&e.path()))
                    .then(|| (name, e.path()))
                })
                .collect();
            found.sort();
            paths.extend(found);
        }
    }
    let mut texts = Vec::new();
    for (name, path) in paths {
        let bytes = std::fs::read(&path).map_err(SbomError::io("read", &path))?;
        texts.push(LicenceText {
            file: name,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        });
    }
    Ok(texts)
}

/// A regular file, not a symlink (which could point anywhere).
fn is_plain_file(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
}

/// A distribution name as PEP 503 compares them (and package URLs spell them):
/// lower case, every run of `-`, `_` and `.` one `-`.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut dash = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            dash = true;
        } else {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The interpreter's version from a Python tree's `include/python3.N/patchlevel.h`
/// (`#define PY_VERSION "3.13.9"`), if the tree has one.
pub fn interpreter_version(tree: &Path) -> Option<String> {
    let include = std::fs::read_dir(tree.join("include")).ok()?;
    let mut dirs: Vec<PathBuf> = include
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("python3"))
        })
        .collect();
    dirs.sort();
    for dir in dirs {
        let Ok(text) = std::fs::read_to_string(dir.join("patchlevel.h")) else {
            continue;
        };
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if words.next() == Some("#define") && words.next() == Some("PY_VERSION") {
                let version = words.next()?.trim_matches('"');
                return Some(version.to_owned());
            }
        }
    }
    None
}

/// The `site-packages` directories of a Python tree (`lib/python3.N/site-packages`).
pub fn site_packages(tree: &Path) -> Vec<PathBuf> {
    let Ok(lib) = std::fs::read_dir(tree.join("lib")) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = lib
        .flatten()
        .map(|e| e.path().join("site-packages"))
        .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()))
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_headers_end_at_the_body_and_fold_continuations() {
        let text = "Metadata-Version: 2.1\nName: Foo_Bar\nVersion: 1.0\n\
                    License: line one\n        line two\nClassifier: A\nClassifier: B\n\n\
                    Name: not-a-header\n";
        let fields = parse_metadata(text);
        assert_eq!(
            fields,
            [
                ("Metadata-Version", "2.1"),
                ("Name", "Foo_Bar"),
                ("Version", "1.0"),
                ("License", "line one\nline two"),
                ("Classifier", "A"),
                ("Classifier", "B"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }

    #[test]
    fn names_normalize_as_pep_503_says() {
        assert_eq!(normalize("Foo_Bar"), "foo-bar");
        assert_eq!(normalize("zope.interface"), "zope-interface");
        assert_eq!(normalize("A--_.b"), "a-b");
        assert_eq!(normalize("Django"), "django");
    }
}
