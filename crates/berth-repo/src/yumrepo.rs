//! Adding `.rpm` files to a yum/dnf repository on disk, signed with the vendor's key.
//!
//! What the repository holds is recorded in `repodata/berth-packages.json`, with a
//! detached signature beside it (`.asc`): a run believes the record only once the
//! signature checks out, so it never reads back metadata someone else could have
//! changed. A run writes the new packages under `Packages/`, then the new metadata
//! files (named by their hash, so the old ones stay valid), the record, and
//! `repomd.xml` with its signature last. One run at a time holds `.berth-repo.lock`.

use std::io::Read;
use std::path::{Path, PathBuf};

use berth_host::beneath::SafeDir;
use sha2::Digest as _;

use crate::RepoError;
use crate::openpgp::{RepoKey, RepoPublicKey};
use crate::yum::{Dep, YumPackage};

/// The signed record of what the repository holds.
pub const RECORD: &str = "repodata/berth-packages.json";
/// The armored public key clients import (`gpgkey=` in their `.repo` file).
pub const KEY_FILE: &str = "RPM-GPG-KEY";

/// What a run added.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Added {
    /// The repository.
    pub repo: PathBuf,
    /// The packages given, and whether each was there already.
    pub added: Vec<AddedRpm>,
    /// Every package the repository holds now, `name-version-release.arch`.
    pub holds: Vec<String>,
    /// The signing key's fingerprint.
    pub fingerprint: String,
}

/// One package given to a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AddedRpm {
    /// `name-version-release.arch`.
    pub nevra: String,
    /// Its path in the repository.
    pub location: String,
    /// It was there already, the same bytes.
    pub already: bool,
}

fn nevra(p: &YumPackage) -> String {
    format!("{}-{}-{}.{}", p.name, p.version, p.release, p.arch)
}

/// Adds `rpms` to the repository in `dir` (made if missing), signed with `key` at
/// `date`. A package already there with the same name, epoch, version, release and
/// architecture is refused unless it is the same bytes; older versions stay.
pub fn add(dir: &Path, rpms: &[PathBuf], key: &RepoKey, date: u32) -> Result<Added, RepoError> {
    berth_host::fsutil::ensure_dir(dir, 0o755)?;
    let root = SafeDir::open_trusted(dir)?;
    let _lock = crate::aptrepo::lock(dir)?;
    let public = key.public();
    let mut packages = read_record(&root, &public)?;
    let mut added = Vec::new();
    let mut new_files = Vec::new();
    for rpm in rpms {
        let package = read_rpm(rpm)?;
        let same = packages.iter().find(|p| {
            (&p.name, p.epoch, &p.version, &p.release, &p.arch)
                == (
                    &package.name,
                    package.epoch,
                    &package.version,
                    &package.release,
                    &package.arch,
                )
        });
        let already = match same {
            Some(p) if p.sha256 == package.sha256 => true,
            Some(_) => {
                return Err(RepoError::Input {
                    what: format!(
                        "{} is in `{}` already, with other bytes: a published package is never \
                         replaced (dnf would refuse it as a checksum mismatch); give it a new \
                         version or release",
                        nevra(&package),
                        dir.display()
                    ),
                });
            }
            None => false,
        };
        added.push(AddedRpm {
            nevra: nevra(&package),
            location: package.location.clone(),
            already,
        });
        if !already {
            new_files.push((rpm.clone(), package.location.clone()));
            packages.push(package);
        }
    }
    for (rpm, location) in &new_files {
        crate::aptrepo::put_pool_file(&root, rpm, location)?;
    }
    let files = crate::yum::metadata(&packages);
    for f in &files {
        let rel = PathBuf::from(f.location());
        if root.stat(&rel)?.is_none() {
            root.create_dir_all(Path::new("repodata"), 0o755, None)?;
            root.write_new(&rel, &f.gz, 0o644, None)?;
        }
    }
    let record = serde_json::to_vec_pretty(&packages).map_err(|e| RepoError::Input {
        what: format!("the record cannot be written: {e}"),
    })?;
    root.write_atomic(Path::new(RECORD), &record, 0o644, None)?;
    root.write_atomic(
        Path::new(&format!("{RECORD}.asc")),
        key.sign_detached(&record, date)?.as_bytes(),
        0o644,
        None,
    )?;
    let repomd = crate::yum::repomd(&files, date);
    root.write_atomic(
        Path::new("repodata/repomd.xml"),
        repomd.as_bytes(),
        0o644,
        None,
    )?;
    root.write_atomic(
        Path::new("repodata/repomd.xml.asc"),
        key.sign_detached(repomd.as_bytes(), date)?.as_bytes(),
        0o644,
        None,
    )?;
    root.write_atomic(
        Path::new(KEY_FILE),
        public.armored()?.as_bytes(),
        0o644,
        None,
    )?;
    let mut holds: Vec<String> = packages.iter().map(nevra).collect();
    holds.sort();
    Ok(Added {
        repo: dir.to_owned(),
        added,
        holds,
        fingerprint: public.fingerprint(),
    })
}

/// What the repository holds, from its record once the record's signature checks out.
fn read_record(root: &SafeDir, public: &RepoPublicKey) -> Result<Vec<YumPackage>, RepoError> {
    if root.stat(Path::new(RECORD))?.is_none() {
        if root.stat(Path::new("repodata/repomd.xml"))?.is_some() {
            return Err(RepoError::Signature {
                what: format!(
                    "`{}` has repodata and no {RECORD}: not a repository berth made",
                    root.path().display()
                ),
            });
        }
        return Ok(Vec::new());
    }
    let record = root.read(Path::new(RECORD))?;
    let signature = root.read(Path::new(&format!("{RECORD}.asc")))?;
    public
        .verify_detached(&record, &signature)
        .map_err(|e| RepoError::Signature {
            what: format!(
                "`{}`: {e}; is this the repository's key?",
                root.path().join(RECORD).display()
            ),
        })?;
    serde_json::from_slice(&record).map_err(|e| RepoError::Input {
        what: format!("{RECORD} does not parse: {e}"),
    })
}

/// A value that names a file: letters, digits and `._+~^-`, not starting with `.`.
fn plain(value: &str) -> bool {
    !value.is_empty()
        && !value.starts_with('.')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+~^-".contains(c))
}

/// What the metadata says of the `.rpm` at `path`, read from its header, and the
/// file's size and SHA-256.
fn read_rpm(path: &Path) -> Result<YumPackage, RepoError> {
    let bad = |what: String| RepoError::Input {
        what: format!(
            "`{}` is not an RPM package berth can read: {what}",
            path.display()
        ),
    };
    let m = rpm::PackageMetadata::open(path).map_err(|e| bad(e.to_string()))?;
    let text = |r: Result<&str, rpm::Error>| r.map(str::to_owned).unwrap_or_default();
    let name = m.get_name().map_err(|e| bad(e.to_string()))?.to_owned();
    let version = m.get_version().map_err(|e| bad(e.to_string()))?.to_owned();
    let release = m.get_release().map_err(|e| bad(e.to_string()))?.to_owned();
    let arch = m.get_arch().map_err(|e| bad(e.to_string()))?.to_owned();
    for (what, value) in [
        ("name", &name),
        ("version", &version),
        ("release", &release),
        ("arch", &arch),
    ] {
        if !plain(value) {
            return Err(bad(format!(
                "its {what} `{}` cannot name a file in the repository",
                value.escape_debug()
            )));
        }
    }
    let deps = |r: Result<Vec<rpm::Dependency>, rpm::Error>| -> Vec<Dep> {
        r.unwrap_or_default()
            .into_iter()
            .filter(|d| !d.name.starts_with("rpmlib("))
            .map(dep)
            .collect()
    };
    let offsets = m.get_package_segment_offsets();
    let files = m
        .get_file_entries()
        .unwrap_or_default()
        .iter()
        .map(|f| {
            (
                f.path().to_string_lossy().into_owned(),
                f.file_type() == rpm::FileType::Dir,
            )
        })
        .collect();
    let changelog = m
        .get_changelog_entries()
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.name, c.timestamp, c.description))
        .collect();
    let (size, sha256) = size_and_sha256(path)?;
    let initial = name.chars().next().unwrap_or('_').to_ascii_lowercase();
    Ok(YumPackage {
        location: format!("Packages/{initial}/{name}-{version}-{release}.{arch}.rpm"),
        epoch: m.get_epoch().unwrap_or(0),
        summary: text(m.get_summary()),
        description: text(m.get_description()),
        packager: text(m.get_packager()),
        url: text(m.get_url()),
        license: text(m.get_license()),
        vendor: text(m.get_vendor()),
        group: text(m.get_group()),
        buildhost: text(m.get_build_host()),
        sourcerpm: text(m.get_source_rpm()),
        build_time: m.get_build_time().unwrap_or(0),
        installed_size: m.get_installed_size().unwrap_or(0),
        header_range: (offsets.header, offsets.payload),
        provides: deps(m.get_provides()),
        requires: deps(m.get_requires()),
        recommends: deps(m.get_recommends()),
        files,
        changelog,
        size,
        sha256,
        name,
        arch,
        version,
        release,
    })
}

/// A dependency in the metadata's terms.
fn dep(d: rpm::Dependency) -> Dep {
    use rpm::DependencyFlags as F;
    let cmp = d.flags & (F::LESS | F::GREATER | F::EQUAL);
    let flags = match cmp {
        c if c == F::EQUAL => Some("EQ"),
        c if c == F::LESS => Some("LT"),
        c if c == F::GREATER => Some("GT"),
        c if c == F::LESS | F::EQUAL => Some("LE"),
        c if c == F::GREATER | F::EQUAL => Some("GE"),
        _ => None,
    };
    let evr = (flags.is_some() && !d.version.is_empty()).then(|| {
        let (epoch, rest) = match d.version.split_once(':') {
            Some((e, rest)) => (e.to_owned(), rest),
            None => ("0".to_owned(), d.version.as_str()),
        };
        let (ver, rel) = rest.split_once('-').unwrap_or((rest, ""));
        (epoch, ver.to_owned(), rel.to_owned())
    });
    Dep {
        pre: d
            .flags
            .intersects(F::PREREQ | F::SCRIPT_PRE | F::SCRIPT_POST),
        flags: evr.as_ref().and(flags).map(str::to_owned),
        evr,
        name: d.name,
    }
}

fn size_and_sha256(path: &Path) -> Result<(u64, String), RepoError> {
    let mut file = std::fs::File::open(path).map_err(RepoError::io("open", path))?;
    let mut sha = sha2::Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(RepoError::io("read", path))?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(sha.finalize())))
}
