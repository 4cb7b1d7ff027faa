//! The base root of berth's images: a minimal Debian tree made by `mmdebstrap`, once
//! per suite and package set, kept in a cache.
//!
//! [`ensure_base`] runs
//!
//! ```text
//! mmdebstrap --variant=minbase --mode=root --format=directory
//!            --dpkgopt=path-exclude=/usr/share/{man,info,locale,doc}/*
//!            --dpkgopt=path-include=/usr/share/doc/*/copyright
//!            [--include=PKG,PKG…] SUITE ROOT <the host's apt sources files>
//! ```
//!
//! with `SOURCE_DATE_EPOCH` set, then takes out of the tree what a layer cannot carry
//! or what differs from one host or run to the next: the device nodes in `/dev`
//! (the runtime mounts its own `/dev`), the host's `/etc/resolv.conf` and
//! `/etc/hostname` (the runtime provides both). mmdebstrap itself removes apt's lists
//! and cache, its logs, `/var/cache/ldconfig/aux-cache`, and empties the machine id.
//!
//! The tree is made in `<cache>/<key>.partial-<pid>/root` and renamed to
//! `<cache>/<key>/root` only once complete, so a killed build never leaves an entry
//! that looks finished; the next build removes what it left. [`base_key`] names the
//! entry: the suite, the packages (sorted, without duplicates), the options berth
//! passes and a format version. The archive's state is not in the key: a cached
//! root stays as it was made until its entry is removed.

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use berth_host::beneath::SafeDir;
use sha2::Digest as _;

use crate::{ImageError, Result};

/// The version of what berth makes of mmdebstrap's output (the options below and the
/// clean-up after it). Changing either changes this, so older entries are not reused.
pub const FORMAT_VERSION: &str = "berth-base-1";

/// The options berth passes to mmdebstrap, besides `--include` and the positional
/// arguments.
pub const MMDEBSTRAP_OPTIONS: &[&str] = &[
    "--variant=minbase",
    "--mode=root",
    "--format=directory",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    // The bill of materials reads each package's licence from its copyright file.
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
];

/// Files of the host that mmdebstrap copies into the tree, which the runtime provides
/// and which would make the tree differ from one build machine to the next.
const HOST_FILES: &[&str] = &["etc/resolv.conf", "etc/hostname"];

/// What base root to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseSpec {
    /// The Debian suite (`bookworm`): one the host's apt sources name.
    pub suite: String,
    /// Packages installed on top of `minbase`, with their dependencies.
    pub packages: Vec<String>,
    /// The time the tree is made at (`SOURCE_DATE_EPOCH`). Not part of the key: a
    /// cached root made at an earlier time is reused, and since layers keep times
    /// older than the build's, its layer keeps its digest from one build to the next.
    pub source_date_epoch: u64,
}

impl BaseSpec {
    /// The spec for `suite` with `packages`, made at `source_date_epoch`.
    pub fn new(suite: &str, packages: &[&str], source_date_epoch: u64) -> Self {
        Self {
            suite: suite.to_owned(),
            packages: packages.iter().map(|p| (*p).to_owned()).collect(),
            source_date_epoch,
        }
    }

    /// The packages, sorted, each once.
    pub fn sorted_packages(&self) -> Vec<&str> {
        let mut p: Vec<&str> = self.packages.iter().map(String::as_str).collect();
        p.sort_unstable();
        p.dedup();
        p
    }

    /// Refuses a suite or package name that is not one (it must not pass for an
    /// option of mmdebstrap, nor hold a separator).
    pub fn validate(&self) -> Result<()> {
        if !is_name(&self.suite, false) {
            return Err(ImageError::Invalid {
                what: format!(
                    "`{}` is not a Debian suite name: give one such as `bookworm`",
                    self.suite
                ),
            });
        }
        if let Some(bad) = self.packages.iter().find(|p| !is_name(p, true)) {
            return Err(ImageError::Invalid {
                what: format!(
                    "`{bad}` is not a Debian package name (lower-case letters, digits, \
                     `+`, `-` and `.`, starting with a letter or digit)"
                ),
            });
        }
        Ok(())
    }
}

/// A Debian package name (policy 5.6.1), or a suite name (letters, digits, `-`, `.`).
fn is_name(s: &str, package: bool) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_ascii_lowercase() || first.is_ascii_digit())
        && s.len() >= 2
        && s.len() <= 100
        && chars.all(|c| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || matches!(c, '-' | '.')
                || (package && c == '+')
        })
}

/// The canonical form [`base_key`] hashes: one `field=value` per line.
pub fn canonical_form(spec: &BaseSpec) -> String {
    let mut out = format!("format={FORMAT_VERSION}\nsuite={}\n", spec.suite);
    for o in MMDEBSTRAP_OPTIONS {
        out.push_str("option=");
        out.push_str(o);
        out.push('\n');
    }
    for p in spec.sorted_packages() {
        out.push_str("package=");
        out.push_str(p);
        out.push('\n');
    }
    out
}

/// The cache entry's name for `spec`: the hex SHA-256 of its [`canonical_form`]. The
/// order of the packages and duplicates do not change it; the suite, the package set,
/// the options and [`FORMAT_VERSION`] do.
pub fn base_key(spec: &BaseSpec) -> String {
    hex::encode(sha2::Sha256::digest(canonical_form(spec).as_bytes()))
}

/// The root tree of `spec`: `<cache_dir>/<key>/root`, made by mmdebstrap the first
/// time and reused afterwards. `progress` gets a line for each thing done (mmdebstrap's
/// own `I:` lines while it runs).
///
/// Must run as root (mmdebstrap's `root` mode gives files their owners). `cache_dir`
/// is made `0700` if missing, and must be root's and writable by no one else, so
/// nothing in it is someone else's. Two builds of one key at the same time take turns
/// (a lock file per key); the second finds the first's entry.
pub fn ensure_base(
    spec: &BaseSpec,
    cache_dir: &Path,
    mut progress: impl FnMut(&str),
) -> Result<PathBuf> {
    spec.validate()?;
    let key = base_key(spec);
    let entry = cache_dir.join(&key);
    let root = entry.join("root");
    if !nix_is_root() {
        return Err(ImageError::NotRoot {
            what: format!(
                "Making the base root (`mmdebstrap --mode=root`) needs root: run the build \
                 as root, or use the cached entry `{}`",
                root.display()
            ),
        });
    }
    let cache = open_cache(cache_dir)?;
    if cache.stat(&Path::new(&key).join("root"))?.is_some() {
        progress(&format!("base root {key} is cached"));
        return Ok(root);
    }

    let lock_path = cache_dir.join(format!("{key}.lock"));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&lock_path)
        .map_err(ImageError::io("open", &lock_path))?;
    lock.lock().map_err(ImageError::io("lock", &lock_path))?;
    // Another build may have made it while this one waited.
    if cache.stat(&Path::new(&key).join("root"))?.is_some() {
        progress(&format!("base root {key} is cached"));
        return Ok(root);
    }

    // What a killed build left (the lock says no build of this key runs now).
    let leftover = format!("{key}.partial-");
    for name in cache.names()? {
        if name.to_str().is_some_and(|n| n.starts_with(&leftover)) {
            progress(&format!(
                "removing the unfinished {}",
                name.to_string_lossy()
            ));
            cache.remove_tree(Path::new(&name))?;
        }
    }
    let sources = host_sources(&spec.suite)?;
    let partial_name = format!("{key}.partial-{}", std::process::id());
    let partial = cache.create_dir(Path::new(&partial_name), 0o700, Some((0, 0)))?;
    progress(&format!(
        "making the base root {key} with mmdebstrap ({} {})",
        spec.suite,
        spec.sorted_packages().join(" ")
    ));
    let made = (|| -> Result<()> {
        let partial_root = cache_dir.join(&partial_name).join("root");
        run_mmdebstrap(spec, &partial_root, &sources, &mut progress)?;
        clean_up(&partial.open_dir(Path::new("root"))?)?;
        partial.write_new(
            Path::new("spec"),
            canonical_form(spec).as_bytes(),
            0o644,
            None,
        )?;
        partial.sync()?;
        cache.rename(Path::new(&partial_name), &cache, Path::new(&key))?;
        Ok(())
    })();
    if let Err(e) = made {
        // Best effort: what cannot be removed now (a mount mmdebstrap left, refused
        // rather than emptied) the next build removes, or names.
        let _ = cache.remove_tree(Path::new(&partial_name));
        return Err(e);
    }
    progress(&format!("base root {key} made"));
    drop(lock);
    Ok(root)
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Opens the cache directory (made `0700` if missing), refusing one that is not root's
/// or that others may write.
fn open_cache(cache_dir: &Path) -> Result<SafeDir> {
    berth_host::fsutil::ensure_dir(cache_dir, 0o700)?;
    let cache = SafeDir::open_trusted(cache_dir)?;
    let st = cache.stat_self()?;
    if st.uid != 0 || st.perm() & 0o022 != 0 {
        return Err(ImageError::Invalid {
            what: format!(
                "The base root cache `{}` must be root's and writable by root only (it is \
                 uid {}, mode {:o}): `chown root: {0}; chmod 700 {0}`, or use another \
                 directory",
                cache_dir.display(),
                st.uid,
                st.perm()
            ),
        });
    }
    Ok(cache)
}

/// The host's apt sources files apt itself reads (`/etc/apt/sources.list` when it
/// names anything, then `/etc/apt/sources.list.d/*.list` and `*.sources` by name),
/// given to mmdebstrap as its mirrors: it copies each into the tree. One of them must
/// name `suite`.
fn host_sources(suite: &str) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let list = Path::new("/etc/apt/sources.list");
    if let Ok(text) = std::fs::read_to_string(list)
        && text
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    {
        files.push(list.to_path_buf());
    }
    let dir = Path::new("/etc/apt/sources.list.d");
    let mut more: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "list" || e == "sources") && p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    more.sort();
    files.extend(more);
    let names_suite = files.iter().any(|f| {
        std::fs::read_to_string(f).is_ok_and(|t| {
            t.lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .any(|l| l.split_whitespace().any(|w| w == suite))
        })
    });
    if !names_suite {
        return Err(ImageError::Invalid {
            what: format!(
                "The host's apt sources (`/etc/apt/sources.list`, `/etc/apt/sources.list.d/`) \
                 name no suite `{suite}`: the base root is made from them; add the suite \
                 there, or build on a host of that suite"
            ),
        });
    }
    Ok(files)
}

/// Runs mmdebstrap into `target` (which must not exist), passing its `I:` lines to
/// `progress`; on failure the error has the command and the end of its output.
fn run_mmdebstrap(
    spec: &BaseSpec,
    target: &Path,
    sources: &[PathBuf],
    progress: &mut impl FnMut(&str),
) -> Result<()> {
    let mut args: Vec<String> = MMDEBSTRAP_OPTIONS.iter().map(|&o| o.to_owned()).collect();
    let packages = spec.sorted_packages();
    if !packages.is_empty() {
        args.push(format!("--include={}", packages.join(",")));
    }
    args.push(spec.suite.clone());
    args.push(target.display().to_string());
    args.extend(sources.iter().map(|s| s.display().to_string()));
    let shown = format!("mmdebstrap {}", args.join(" "));

    let mut cmd = berth_process::ChildCommand::new("mmdebstrap");
    cmd.args(&args)
        .env("SOURCE_DATE_EPOCH", spec.source_date_epoch.to_string())
        .die_with_parent();
    let mut cmd = cmd.build().map_err(|e| ImageError::Tool {
        command: shown.clone(),
        status: e.to_string(),
        output: String::new(),
    })?;
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ImageError::Tool {
            command: shown.clone(),
            status: if e.kind() == std::io::ErrorKind::NotFound {
                "not found: install it with `apt-get install mmdebstrap`".to_owned()
            } else {
                e.to_string()
            },
            output: String::new(),
        })?;
    let mut tail: VecDeque<String> = VecDeque::new();
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            let line = line.trim_end();
            if line.starts_with("I: ") {
                progress(line);
            }
            if tail.len() == 40 {
                tail.pop_front();
            }
            tail.push_back(line.to_owned());
        }
    }
    let status = child
        .wait()
        .map_err(ImageError::io("wait for mmdebstrap making", target))?;
    if !status.success() {
        return Err(ImageError::Tool {
            command: shown,
            status: status.to_string(),
            output: Vec::from(tail).join("\n"),
        });
    }
    Ok(())
}

/// Takes out of the fresh tree what a layer cannot carry (the device nodes mmdebstrap
/// makes in `/dev`; the whole of `/dev` but the directory itself, which the runtime
/// mounts over) and the host's files it copied.
fn clean_up(tree: &SafeDir) -> Result<()> {
    let dev = tree.open_dir(Path::new("dev"))?;
    for name in dev.names()? {
        dev.remove_tree(Path::new(&name))?;
    }
    for f in HOST_FILES {
        if tree.stat(Path::new(f))?.is_some() {
            tree.remove_file(Path::new(f))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_ignores_package_order_and_duplicates() {
        let a = BaseSpec::new("bookworm", &["libpq5", "ca-certificates"], 1);
        let b = BaseSpec::new("bookworm", &["ca-certificates", "libpq5", "libpq5"], 2);
        assert_eq!(base_key(&a), base_key(&b));
        assert_eq!(base_key(&a).len(), 64);
        assert!(base_key(&a).bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn the_key_changes_with_the_suite_and_the_packages() {
        let a = BaseSpec::new("bookworm", &["libpq5"], 1);
        let keys = [
            base_key(&a),
            base_key(&BaseSpec::new("trixie", &["libpq5"], 1)),
            base_key(&BaseSpec::new("bookworm", &["libpq5", "curl"], 1)),
            base_key(&BaseSpec::new("bookworm", &[], 1)),
        ];
        let mut unique = keys.to_vec();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), keys.len(), "{keys:?}");
        // The form hashed holds the options and the format version.
        let form = canonical_form(&a);
        assert!(
            form.starts_with(&format!("format={FORMAT_VERSION}\n")),
            "{form}"
        );
        assert!(form.contains("option=--variant=minbase\n"), "{form}");
        assert!(form.ends_with("package=libpq5\n"), "{form}");
    }

    #[test]
    fn names_that_could_pass_for_options_are_refused() {
        for bad in ["-v", "a,b", "Libpq5", "x", "a b", "pkg/sid", "", "a=1"] {
            let spec = BaseSpec::new("bookworm", &[bad], 1);
            assert!(spec.validate().is_err(), "{bad}");
        }
        assert!(BaseSpec::new("--x", &[], 1).validate().is_err());
        assert!(
            BaseSpec::new("bookworm", &["libstdc++6", "python3.11"], 1)
                .validate()
                .is_ok()
        );
    }
}
