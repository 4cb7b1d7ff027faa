//! The advisory database: advisories read from a snapshot folder, or from the compact
//! index a snapshot was turned into.
//!
//! Reading a snapshot parses some four thousand YAML and Markdown files; the index
//! holds only what a scan needs (zstd-compressed JSON), so `berth audit` opens it in a
//! few milliseconds and the snapshot need not be kept.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::advisory::Advisory;
use crate::{AuditError, Ecosystem};

/// An advisory database a snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Source {
    /// The PyPA advisory database (OSV YAML, PyPI).
    PyPA,
    /// The RustSec advisory database (crates.io).
    RustSec,
}

impl Source {
    /// The database's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PyPA => "PyPA",
            Self::RustSec => "RustSec",
        }
    }
}

/// What was read from one database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// Which database.
    pub source: Source,
    /// Advisory files read, withdrawn ones not counted.
    pub advisories: usize,
    /// Withdrawn advisory files (read, never matched).
    pub withdrawn: usize,
    /// The newest `modified` (PyPA) or `date` (RustSec) seen: how current the data is.
    pub newest: Option<Date>,
    /// PyPA version ranges skipped because a version in them is not PEP 440; the
    /// advisory's explicit version list still applies.
    pub skipped_ranges: usize,
}

/// Advisories, looked up by package.
#[derive(Debug, Clone)]
pub struct AdvisoryDb {
    sources: Vec<SourceInfo>,
    advisories: Vec<Advisory>,
    by_package: HashMap<(Ecosystem, String), Vec<usize>>,
}

/// How many unreadable files an error lists before it says "and N more".
const ERRORS_LISTED: usize = 5;

/// Format tag of the index; a different one is refused (rebuild the index).
const INDEX_FORMAT: &str = "berth-audit-index/1";

#[derive(Serialize, Deserialize)]
struct IndexFile {
    format: String,
    sources: Vec<SourceInfo>,
    advisories: Vec<Advisory>,
}

impl AdvisoryDb {
    /// Reads a snapshot: a folder holding `pypa/` and/or `rustsec/`, or one that is
    /// itself a PyPA tree (it has `vulns/`) or a RustSec tree (it has `crates/`).
    ///
    /// Every advisory file must parse: a damaged snapshot is refused as a whole
    /// ([`AuditError::Damaged`] lists the first few files), since a silently skipped
    /// advisory is a vulnerability silently not reported.
    pub fn load(dir: &Path) -> Result<Self, AuditError> {
        let mut trees = Vec::new();
        let pypa = dir.join("pypa").join("vulns");
        let rustsec = dir.join("rustsec").join("crates");
        if pypa.is_dir() {
            trees.push((Source::PyPA, pypa));
        }
        if rustsec.is_dir() {
            trees.push((Source::RustSec, rustsec));
        }
        if trees.is_empty() {
            if dir.join("vulns").is_dir() {
                trees.push((Source::PyPA, dir.join("vulns")));
            } else if dir.join("crates").is_dir() {
                trees.push((Source::RustSec, dir.join("crates")));
            }
        }
        if trees.is_empty() {
            if !dir.is_dir() {
                return Err(AuditError::Layout {
                    what: format!(
                        "`{}` is not a folder: give the folder of an advisory snapshot",
                        dir.display()
                    ),
                });
            }
            return Err(AuditError::Layout {
                what: format!(
                    "`{}` holds neither `pypa/vulns/` nor `rustsec/crates/` (nor is it a PyPA \
                     tree with `vulns/` or a RustSec tree with `crates/`): give the folder of \
                     an advisory snapshot",
                    dir.display()
                ),
            });
        }

        let mut sources = Vec::new();
        let mut advisories = Vec::new();
        let mut errors = Vec::new();
        for (source, tree) in trees {
            let extensions: &[&str] = match source {
                Source::PyPA => &["yaml", "yml", "json"],
                Source::RustSec => &["md"],
            };
            let files = advisory_files(&tree, extensions)?;
            let mut info = SourceInfo {
                source,
                advisories: 0,
                withdrawn: 0,
                newest: None,
                skipped_ranges: 0,
            };
            for outcome in parse_all(source, &files) {
                match outcome {
                    Ok(parsed) => {
                        info.newest = info.newest.max(parsed.date);
                        info.skipped_ranges += parsed.skipped_ranges;
                        if parsed.withdrawn {
                            info.withdrawn += 1;
                        } else {
                            info.advisories += 1;
                            advisories.extend(parsed.advisories);
                        }
                    }
                    Err(e) => errors.push(e),
                }
            }
            sources.push(info);
        }
        if !errors.is_empty() {
            return Err(AuditError::Damaged {
                total: errors.len(),
                first: errors.into_iter().take(ERRORS_LISTED).collect(),
            });
        }
        Ok(Self::new(sources, advisories))
    }

    fn new(sources: Vec<SourceInfo>, mut advisories: Vec<Advisory>) -> Self {
        advisories.sort_by(|a, b| {
            (a.ecosystem, &a.package, &a.id).cmp(&(b.ecosystem, &b.package, &b.id))
        });
        let mut by_package: HashMap<(Ecosystem, String), Vec<usize>> = HashMap::new();
        for (i, a) in advisories.iter().enumerate() {
            by_package
                .entry((a.ecosystem, a.package.clone()))
                .or_default()
                .push(i);
        }
        Self {
            sources,
            advisories,
            by_package,
        }
    }

    /// What was read from each database, in the order `pypa`, `rustsec`.
    pub fn sources(&self) -> &[SourceInfo] {
        &self.sources
    }

    /// Every advisory (withdrawn ones are not kept), by ecosystem, package and id.
    pub fn advisories(&self) -> &[Advisory] {
        &self.advisories
    }

    /// The advisories about one package (`name` in any spelling PEP 503 equates).
    pub fn for_package(&self, ecosystem: Ecosystem, name: &str) -> impl Iterator<Item = &Advisory> {
        self.by_package
            .get(&(ecosystem, ecosystem.normalize_name(name)))
            .into_iter()
            .flatten()
            .map(|&i| &self.advisories[i])
    }

    /// The database as an index file's bytes (zstd-compressed JSON).
    pub fn index_bytes(&self) -> Result<Vec<u8>, AuditError> {
        let file = IndexFile {
            format: INDEX_FORMAT.to_owned(),
            sources: self.sources.clone(),
            advisories: self.advisories.clone(),
        };
        let json = serde_json::to_vec(&file).map_err(|e| AuditError::Index {
            path: PathBuf::new(),
            what: format!("could not be encoded: {e}"),
        })?;
        zstd::encode_all(json.as_slice(), 9).map_err(|e| AuditError::Index {
            path: PathBuf::new(),
            what: format!("could not be compressed: {e}"),
        })
    }

    /// Writes the index to `path` atomically (a temporary file in the same folder,
    /// flushed, then renamed over `path`), readable by all (mode 0644): advisory data
    /// is public.
    pub fn write_index(&self, path: &Path) -> Result<(), AuditError> {
        let bytes = self.index_bytes().map_err(|e| e.at(path))?;
        berth_host::fsutil::write_atomic(path, &bytes, 0o644, None)?;
        Ok(())
    }

    /// Opens an index [`AdvisoryDb::write_index`] wrote.
    pub fn open_index(path: &Path) -> Result<Self, AuditError> {
        let bytes = fs::read(path).map_err(AuditError::io("read the advisory index", path))?;
        Self::from_index_bytes(&bytes).map_err(|e| e.at(path))
    }

    /// A database from an index file's bytes.
    pub fn from_index_bytes(bytes: &[u8]) -> Result<Self, AuditError> {
        let bad = |what: String| AuditError::Index {
            path: PathBuf::new(),
            what,
        };
        let json = zstd::decode_all(bytes).map_err(|e| bad(format!("is not zstd data ({e})")))?;
        let file: IndexFile = serde_json::from_slice(&json)
            .map_err(|e| bad(format!("is not an advisory index ({e})")))?;
        if file.format != INDEX_FORMAT {
            return Err(bad(format!(
                "is of format `{}`, not `{INDEX_FORMAT}`",
                file.format
            )));
        }
        Ok(Self::new(file.sources, file.advisories))
    }
}

/// One file's advisories, whether it was withdrawn, and its date.
struct FileAdvisories {
    advisories: Vec<Advisory>,
    skipped_ranges: usize,
    withdrawn: bool,
    date: Option<Date>,
}

/// The advisory files of a tree (`<package>/<file>`), sorted so loading is
/// deterministic. Hidden files (`.id-allocator`) and other extensions are not advisories.
fn advisory_files(tree: &Path, extensions: &[&str]) -> Result<Vec<PathBuf>, AuditError> {
    let mut files = Vec::new();
    let read_dir = |dir: &Path| {
        fs::read_dir(dir)
            .map_err(AuditError::io("list", dir))?
            .map(|e| e.map(|e| e.path()).map_err(AuditError::io("list", dir)))
            .collect::<Result<Vec<_>, _>>()
    };
    let hidden = |p: &Path| {
        p.file_name()
            .and_then(OsStr::to_str)
            .is_none_or(|n| n.starts_with('.'))
    };
    for package in read_dir(tree)? {
        if hidden(&package) || !package.is_dir() {
            continue;
        }
        for file in read_dir(&package)? {
            let ext = file.extension().and_then(OsStr::to_str).unwrap_or_default();
            if !hidden(&file) && extensions.contains(&ext) && file.is_file() {
                files.push(file);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Parses files on all cores (parsing, not reading, is what takes the time), keeping
/// their order.
fn parse_all(source: Source, files: &[PathBuf]) -> Vec<Result<FileAdvisories, AuditError>> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let chunk = files.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|f| parse_file(source, f))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

fn parse_file(source: Source, path: &Path) -> Result<FileAdvisories, AuditError> {
    let text = fs::read_to_string(path).map_err(AuditError::io("read", path))?;
    match source {
        Source::PyPA => crate::osv::parse(path, &text).map(|p| FileAdvisories {
            advisories: p.advisories,
            withdrawn: p.withdrawn,
            date: p.modified,
            skipped_ranges: p.skipped_ranges,
        }),
        Source::RustSec => crate::rustsec::parse(path, &text).map(|p| FileAdvisories {
            withdrawn: p.advisory.is_none(),
            advisories: p.advisory.into_iter().collect(),
            date: p.date,
            skipped_ranges: 0,
        }),
    }
}
