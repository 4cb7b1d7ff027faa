//! Adding packages to an apt repository on disk, signed with the vendor's key.
//!
//! What the repository held is read back from its signed `InRelease` (checked against
//! the key) and the `Packages` files it lists by hash: nothing unsigned is believed.
//! A run writes in the order that keeps every moment consistent for a client: the new
//! pool files, the new indexes under `by-hash/`, their plain names, then `Release`,
//! `Release.gpg` and `InRelease` last. A run that stops half-way leaves the last
//! signed state in force, and running it again finishes it. One run at a time holds
//! the lock `.berth-repo.lock`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use berth_host::beneath::SafeDir;
use md5::Digest as _;

use crate::RepoError;
use crate::apt::{self, IndexFile, Meta, PoolEntry};
use crate::openpgp::{RepoKey, RepoPublicKey};

/// The keyring the repository publishes at its root, for `signed-by`.
pub const KEYRING: &str = "archive-keyring.gpg";

/// What a run added.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Added {
    /// The repository.
    pub repo: PathBuf,
    /// The suite (`dists/<suite>`).
    pub suite: String,
    /// The component.
    pub component: String,
    /// The packages given: `package version arch`, and whether each was there already.
    pub added: Vec<AddedPackage>,
    /// Every package the repository holds now, `package version arch`.
    pub holds: Vec<String>,
    /// The signing key's fingerprint.
    pub fingerprint: String,
}

/// One package given to a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AddedPackage {
    /// `Package:`.
    pub package: String,
    /// `Version:`.
    pub version: String,
    /// `Architecture:`.
    pub architecture: String,
    /// Its path in the repository.
    pub filename: String,
    /// It was there already, the same bytes.
    pub already: bool,
}

/// Adds `debs` to the repository in `dir` (made if missing) and signs it with `key`.
/// A package already there under the same name, version and architecture is refused
/// unless it is the same bytes; older versions stay.
pub fn add(dir: &Path, debs: &[PathBuf], key: &RepoKey, meta: &Meta) -> Result<Added, RepoError> {
    check_meta(meta)?;
    berth_host::fsutil::ensure_dir(dir, 0o755)?;
    let root = SafeDir::open_trusted(dir)?;
    let _lock = lock(dir)?;
    let public = key.public();
    let (mut entries, listed_archs) = read_signed(&root, meta, &public)?;
    let mut meta = meta.clone();
    meta.architectures.extend(listed_archs);

    // The new packages: checked and hashed before anything is written.
    let mut added = Vec::new();
    let mut new_files: Vec<(PathBuf, String)> = Vec::new();
    for deb in debs {
        let control = crate::debfile::control(deb)?;
        let source = deb.display().to_string();
        apt::check_identity(&control, &source)?;
        let (size, md5, sha256) = hashes(deb)?;
        let entry = PoolEntry {
            filename: apt::pool_path(
                &meta.component,
                control.get("Package").unwrap_or_default(),
                control.get("Version").unwrap_or_default(),
                control.get("Architecture").unwrap_or_default(),
            ),
            control,
            size,
            md5,
            sha256,
        };
        let same = entries.iter().find(|e| {
            (e.package(), e.version(), e.architecture())
                == (entry.package(), entry.version(), entry.architecture())
        });
        let already = match same {
            Some(e) if e.sha256 == entry.sha256 && e.filename == entry.filename => true,
            Some(_) => {
                return Err(RepoError::Input {
                    what: format!(
                        "{} {} ({}) is in `{}` already, with other bytes: a published package \
                         is never replaced (apt would refuse it as a hash mismatch); \
                         give it a new version",
                        entry.package(),
                        entry.version(),
                        entry.architecture(),
                        dir.display()
                    ),
                });
            }
            None => false,
        };
        added.push(AddedPackage {
            package: entry.package().to_owned(),
            version: entry.version().to_owned(),
            architecture: entry.architecture().to_owned(),
            filename: entry.filename.clone(),
            already,
        });
        if !already {
            new_files.push((deb.clone(), entry.filename.clone()));
            entries.push(entry);
        }
    }
    if apt::architectures(&entries, &meta).is_empty() {
        return Err(RepoError::Input {
            what: "the repository holds only `Architecture: all` packages: name the \
                   architectures its clients have with `--architectures`"
                .to_owned(),
        });
    }

    for (deb, filename) in &new_files {
        put_pool_file(&root, deb, filename)?;
    }
    publish(&root, &meta, &entries, key)?;
    let mut holds: Vec<String> = entries
        .iter()
        .map(|e| format!("{} {} {}", e.package(), e.version(), e.architecture()))
        .collect();
    holds.sort();
    Ok(Added {
        repo: dir.to_owned(),
        suite: meta.suite.clone(),
        component: meta.component.clone(),
        added,
        holds,
        fingerprint: public.fingerprint(),
    })
}

/// The suite and component name directories; the origin and label are one line.
fn check_meta(meta: &Meta) -> Result<(), RepoError> {
    for (what, value) in [("suite", &meta.suite), ("component", &meta.component)] {
        if !apt::plain(value) {
            return Err(RepoError::Input {
                what: format!(
                    "the {what} `{}` cannot name a directory (letters, digits and `+.~-`)",
                    value.escape_debug()
                ),
            });
        }
    }
    for value in [&meta.origin, &meta.label] {
        if value.contains(['\n', '\r']) || value.trim().is_empty() {
            return Err(RepoError::Input {
                what: format!(
                    "`{}` is not a one-line Origin or Label",
                    value.escape_debug()
                ),
            });
        }
    }
    Ok(())
}

/// Writes the indexes of `entries` and the signed `Release` over them, in the order
/// that keeps the repository consistent for a client at every moment.
fn publish(
    root: &SafeDir,
    meta: &Meta,
    entries: &[PoolEntry],
    key: &RepoKey,
) -> Result<(), RepoError> {
    let files = apt::indexes(entries, meta);
    let release = apt::release(meta, entries, &files);
    let dists = PathBuf::from("dists").join(&meta.suite);
    for file in &files {
        let by_hash = dists.join(file.by_hash_path());
        if root.stat(&by_hash)?.is_none() {
            ensure_parent(root, &by_hash)?;
            root.write_new(&by_hash, &file.bytes, 0o644, None)?;
        }
    }
    for file in &files {
        let path = dists.join(&file.path);
        ensure_parent(root, &path)?;
        root.write_atomic(&path, &file.bytes, 0o644, None)?;
    }
    root.write_atomic(&dists.join("Release"), release.as_bytes(), 0o644, None)?;
    root.write_atomic(
        &dists.join("Release.gpg"),
        key.sign_detached(release.as_bytes(), meta.date)?.as_bytes(),
        0o644,
        None,
    )?;
    root.write_atomic(
        &dists.join("InRelease"),
        key.clearsign(&release, meta.date)?.as_bytes(),
        0o644,
        None,
    )?;
    root.write_atomic(Path::new(KEYRING), &key.public().keyring()?, 0o644, None)?;
    Ok(())
}

/// Reads what the repository holds from its signed `InRelease`: the packages of the
/// `Packages` files it lists (each checked against the size and SHA-256 signed
/// there), and the architectures it lists. A repository with no `InRelease` yet holds
/// nothing; one with other files but no signature is not berth's and is refused.
fn read_signed(
    root: &SafeDir,
    meta: &Meta,
    public: &RepoPublicKey,
) -> Result<(Vec<PoolEntry>, Vec<String>), RepoError> {
    let dists = PathBuf::from("dists").join(&meta.suite);
    let in_release = dists.join("InRelease");
    if root.stat(&in_release)?.is_none() {
        if root.stat(&dists.join("Release"))?.is_some() {
            return Err(RepoError::Signature {
                what: format!(
                    "`{}` has a Release file and no InRelease: not a repository berth signed",
                    root.path().join(&dists).display()
                ),
            });
        }
        return Ok((Vec::new(), Vec::new()));
    }
    let signed = String::from_utf8(root.read(&in_release)?).map_err(|_| RepoError::Signature {
        what: "InRelease is not text".to_owned(),
    })?;
    let text = public
        .verify_clearsigned(&signed)
        .map_err(|e| RepoError::Signature {
            what: format!(
                "`{}`: {e}; is this the repository's key?",
                root.path().join(&in_release).display()
            ),
        })?;
    let (release, listed) = apt::read_release(&text)?;
    // One component per suite: a run for another would drop the first from `Release`.
    let components = release.get("Components").unwrap_or_default().trim();
    if !components.is_empty() && components != meta.component {
        return Err(RepoError::Input {
            what: format!(
                "suite `{}` of `{}` holds the component `{components}`: berth keeps one \
                 component per suite; give `--component {components}`, or another `--suite`",
                meta.suite,
                root.path().display()
            ),
        });
    }
    let archs: Vec<String> = release
        .get("Architectures")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let mut by_file: BTreeMap<String, PoolEntry> = BTreeMap::new();
    let prefix = format!("{}/binary-", meta.component);
    for l in listed
        .iter()
        .filter(|l| l.path.starts_with(&prefix) && l.path.ends_with("/Packages"))
    {
        let file = IndexFile {
            path: l.path.clone(),
            bytes: Vec::new(),
        };
        // The copy under by-hash is the one this InRelease signed, even when a run that
        // stopped half-way rewrote the plain name already.
        let by_hash = dists.join(format!(
            "{}/by-hash/SHA256/{}",
            file.path.rsplit_once('/').map_or("", |(d, _)| d),
            l.sha256
        ));
        let path = if root.stat(&by_hash)?.is_some() {
            by_hash
        } else {
            dists.join(&l.path)
        };
        let bytes = root.read(&path)?;
        let sha256 = hex::encode(sha2::Sha256::digest(&bytes));
        if sha256 != l.sha256 || bytes.len() as u64 != l.size {
            return Err(RepoError::Signature {
                what: format!(
                    "`{}` is not the file InRelease signed (its size or SHA-256 differs): \
                     the repository was changed by something else",
                    root.path().join(&path).display()
                ),
            });
        }
        let text = String::from_utf8(bytes).map_err(|_| RepoError::Input {
            what: format!("`{}` is not text", path.display()),
        })?;
        for p in crate::deb822::parse(&text, &l.path)? {
            let entry = PoolEntry::from_stanza(p, &l.path)?;
            by_file.entry(entry.filename.clone()).or_insert(entry);
        }
    }
    Ok((by_file.into_values().collect(), archs))
}

/// Size, MD5 and SHA-256 of a file, in one read.
fn hashes(path: &Path) -> Result<(u64, String, String), RepoError> {
    let mut file = std::fs::File::open(path).map_err(RepoError::io("open", path))?;
    let mut md5 = md5::Md5::new();
    let mut sha = sha2::Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(RepoError::io("read", path))?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
        sha.update(&buf[..n]);
        size += n as u64;
    }
    Ok((
        size,
        hex::encode(md5.finalize()),
        hex::encode(sha.finalize()),
    ))
}

fn ensure_parent(root: &SafeDir, rel: &Path) -> Result<(), RepoError> {
    if let Some(parent) = rel.parent() {
        root.create_dir_all(parent, 0o755, None)?;
    }
    Ok(())
}

/// Copies `deb` to `filename` in the pool. A file already there that no signed index
/// lists (left by a run that stopped) is replaced: no client was ever told of it.
pub(crate) fn put_pool_file(root: &SafeDir, deb: &Path, filename: &str) -> Result<(), RepoError> {
    let rel = Path::new(filename);
    ensure_parent(root, rel)?;
    if root.stat(rel)?.is_some() {
        root.remove_file(rel)?;
    }
    let mut from = std::fs::File::open(deb).map_err(RepoError::io("open", deb))?;
    root.write_new_with(
        rel,
        &mut |to| std::io::copy(&mut from, to).map(drop),
        0o644,
        None,
    )?;
    Ok(())
}

/// The repository's lock, held while the returned value lives.
pub(crate) fn lock(dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, RepoError> {
    let path = dir.join(".berth-repo.lock");
    berth_host::fsutil::try_lock(&path)?.ok_or_else(|| RepoError::Input {
        what: format!(
            "another `berth repo` is changing `{}` (it holds `{}`); wait for it to finish",
            dir.display(),
            path.display()
        ),
    })
}
