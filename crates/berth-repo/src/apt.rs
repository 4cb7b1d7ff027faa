//! An apt repository's indexes, rendered from what it holds (pure): each
//! architecture's `Packages` (plain and gzip), and the `Release` file that lists them
//! with their sizes and hashes. Signing and writing are [`crate::aptrepo`]'s.
//!
//! Layout (as Debian's archive has it):
//!
//! ```text
//! pool/<component>/<initial>/<package>/<package>_<version>_<arch>.deb
//! dists/<suite>/{Release,Release.gpg,InRelease}
//! dists/<suite>/<component>/binary-<arch>/{Packages,Packages.gz}
//! dists/<suite>/<component>/binary-<arch>/by-hash/SHA256/<sha256>
//! ```
//!
//! Clients fetch the indexes by their hash (`Acquire-By-Hash: yes`), so one that reads
//! `InRelease` just before a change still gets the indexes that file lists.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;

use md5::Digest as _;

use crate::RepoError;
use crate::deb822::Paragraph;

/// A package in the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolEntry {
    /// Its control paragraph (without the fields below).
    pub control: Paragraph,
    /// Its path from the repository's root.
    pub filename: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its MD5, hex.
    pub md5: String,
    /// Its SHA-256, hex.
    pub sha256: String,
}

impl PoolEntry {
    /// `Package:`.
    pub fn package(&self) -> &str {
        self.control.get("Package").unwrap_or_default()
    }
    /// `Version:`.
    pub fn version(&self) -> &str {
        self.control.get("Version").unwrap_or_default()
    }
    /// `Architecture:`.
    pub fn architecture(&self) -> &str {
        self.control.get("Architecture").unwrap_or_default()
    }

    /// The entry's stanza in `Packages`: its control fields, then where the file is and
    /// its hashes, the description last (as `dpkg-scanpackages` writes it).
    pub fn stanza(&self) -> Paragraph {
        let mut p = self.control.clone();
        let description = p.remove("Description");
        p.set("Filename", self.filename.clone());
        p.set("Size", self.size.to_string());
        p.set("MD5sum", self.md5.clone());
        p.set("SHA256", self.sha256.clone());
        if let Some(d) = description {
            p.set("Description", d);
        }
        p
    }

    /// Reads an entry back from its stanza in `Packages`.
    pub fn from_stanza(mut p: Paragraph, source: &str) -> Result<Self, RepoError> {
        let mut take = |name: &str| {
            p.remove(name).ok_or_else(|| RepoError::Input {
                what: format!("{source}: a package without `{name}`"),
            })
        };
        let filename = take("Filename")?;
        let size = take("Size")?;
        let md5 = take("MD5sum")?;
        let sha256 = take("SHA256")?;
        let description = p.remove("Description");
        if let Some(d) = description {
            p.set("Description", d);
        }
        let entry = Self {
            control: p,
            size: size.parse().map_err(|_| RepoError::Input {
                what: format!("{source}: `Size: {size}` is not a number"),
            })?,
            filename,
            md5,
            sha256,
        };
        check_identity(&entry.control, source)?;
        Ok(entry)
    }
}

/// What the repository says of itself in `Release`.
#[derive(Debug, Clone)]
pub struct Meta {
    /// `Origin:`: who publishes it.
    pub origin: String,
    /// `Label:`.
    pub label: String,
    /// `Suite:` and `Codename:` (the `dists/` directory).
    pub suite: String,
    /// The one component (`main`).
    pub component: String,
    /// Architectures listed even with no package of their own (`all` packages go in
    /// every architecture's index).
    pub architectures: Vec<String>,
    /// `Date:`, seconds since the epoch.
    pub date: u32,
}

/// An index file under `dists/<suite>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    /// Its path from `dists/<suite>/`.
    pub path: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

impl IndexFile {
    /// Its SHA-256, hex.
    pub fn sha256(&self) -> String {
        hex::encode(sha2::Sha256::digest(&self.bytes))
    }
    /// Its MD5, hex.
    pub fn md5(&self) -> String {
        hex::encode(md5::Md5::digest(&self.bytes))
    }
    /// Where a client fetches it by hash.
    pub fn by_hash_path(&self) -> String {
        let dir = self.path.rsplit_once('/').map_or("", |(d, _)| d);
        format!("{dir}/by-hash/SHA256/{}", self.sha256())
    }
}

/// A value that names a file or directory: letters, digits and `+.~-` (and `_` where
/// `underscore`), not starting with `.` or `-`.
pub fn plain(value: &str) -> bool {
    !value.is_empty()
        && !value.starts_with(['.', '-'])
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+.~-".contains(c))
}

/// A package's name, version and architecture must be plain: they make its path in
/// the pool.
pub fn check_identity(control: &Paragraph, source: &str) -> Result<(), RepoError> {
    for field in ["Package", "Version", "Architecture"] {
        let value = control.get(field).unwrap_or_default();
        // A version may carry an epoch (`1:2.0`); the pool's file name leaves it out.
        let checked = if field == "Version" {
            value.split_once(':').map_or(value, |(e, v)| {
                if e.chars().all(|c| c.is_ascii_digit()) {
                    v
                } else {
                    value
                }
            })
        } else {
            value
        };
        if !plain(checked)
            || (field == "Package" && checked.chars().any(|c| c.is_ascii_uppercase()))
        {
            return Err(RepoError::Input {
                what: format!(
                    "{source}: `{field}: {}` cannot name a file in the pool (letters, digits and `+.~-`)",
                    value.escape_debug()
                ),
            });
        }
    }
    Ok(())
}

/// Where a package goes in the pool: `pool/main/d/demo/demo_1.0_amd64.deb` (`lib*`
/// packages under their first four letters, as Debian does).
pub fn pool_path(component: &str, package: &str, version: &str, arch: &str) -> String {
    let initial = if package.starts_with("lib") && package.len() > 3 {
        &package[..4]
    } else {
        &package[..1]
    };
    let version = version.split_once(':').map_or(version, |(_, v)| v);
    format!("pool/{component}/{initial}/{package}/{package}_{version}_{arch}.deb")
}

/// The architectures the repository lists: those of its packages (not `all`) and those
/// `meta` names.
pub fn architectures(entries: &[PoolEntry], meta: &Meta) -> Vec<String> {
    let set: BTreeSet<String> = entries
        .iter()
        .map(|e| e.architecture().to_owned())
        .filter(|a| a != "all")
        .chain(meta.architectures.iter().cloned())
        .collect();
    set.into_iter().collect()
}

/// The index files: `Packages` and `Packages.gz` of every architecture.
pub fn indexes(entries: &[PoolEntry], meta: &Meta) -> Vec<IndexFile> {
    let mut sorted: Vec<&PoolEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| {
        (a.package(), a.architecture(), &a.filename).cmp(&(
            b.package(),
            b.architecture(),
            &b.filename,
        ))
    });
    let mut out = Vec::new();
    for arch in architectures(entries, meta) {
        let text = sorted
            .iter()
            .filter(|e| e.architecture() == arch || e.architecture() == "all")
            .map(|e| e.stanza().render())
            .collect::<Vec<_>>()
            .join("\n");
        let dir = format!("{}/binary-{arch}", meta.component);
        out.push(IndexFile {
            path: format!("{dir}/Packages.gz"),
            bytes: gzip(text.as_bytes()),
        });
        out.push(IndexFile {
            path: format!("{dir}/Packages"),
            bytes: text.into_bytes(),
        });
    }
    out
}

/// gzip with no name and no time in its header (the same bytes every time).
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

/// The `Release` file listing `files` (the index files, by path from `dists/<suite>/`).
pub fn release(meta: &Meta, entries: &[PoolEntry], files: &[IndexFile]) -> String {
    let date = jiff::Timestamp::from_second(i64::from(meta.date))
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .strftime("%a, %d %b %Y %H:%M:%S UTC")
        .to_string();
    let mut p = Paragraph::default();
    p.set("Origin", meta.origin.clone());
    p.set("Label", meta.label.clone());
    p.set("Suite", meta.suite.clone());
    p.set("Codename", meta.suite.clone());
    p.set("Date", date);
    p.set("Architectures", architectures(entries, meta).join(" "));
    p.set("Components", meta.component.clone());
    p.set("Acquire-By-Hash", "yes");
    let mut sorted: Vec<&IndexFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let width = sorted
        .iter()
        .map(|f| f.bytes.len().to_string().len())
        .max()
        .unwrap_or(1);
    let list = |hash: &dyn Fn(&IndexFile) -> String| {
        sorted.iter().fold(String::new(), |mut out, f| {
            let _ = write!(out, "\n {} {:>width$} {}", hash(f), f.bytes.len(), f.path);
            out
        })
    };
    p.set("MD5Sum", list(&IndexFile::md5));
    p.set("SHA256", list(&IndexFile::sha256));
    p.render()
}

/// One file `Release` lists: its path, size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Path from `dists/<suite>/`.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// The files a `Release` text lists in its `SHA256` field, and its `Components`.
pub fn read_release(text: &str) -> Result<(Paragraph, Vec<Listed>), RepoError> {
    let mut ps = crate::deb822::parse(text, "Release")?;
    if ps.len() != 1 {
        return Err(RepoError::Input {
            what: "Release is not one paragraph".to_owned(),
        });
    }
    let p = ps.remove(0);
    let mut listed = Vec::new();
    for line in p.get("SHA256").unwrap_or_default().lines().skip(1) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [sha256, size, path] = parts[..] else {
            return Err(RepoError::Input {
                what: format!("Release: `{line}` is not `<sha256> <size> <path>`"),
            });
        };
        listed.push(Listed {
            path: path.to_owned(),
            size: size.parse().map_err(|_| RepoError::Input {
                what: format!("Release: `{size}` is not a size"),
            })?,
            sha256: sha256.to_owned(),
        });
    }
    Ok((p, listed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(package: &str, version: &str, arch: &str) -> PoolEntry {
        let mut control = Paragraph::default();
        control.set("Package", package);
        control.set("Version", version);
        control.set("Architecture", arch);
        control.set("Maintainer", "Vendor <vendor@example.org>");
        control.set("Description", "a demo\n Long text.");
        PoolEntry {
            filename: pool_path("main", package, version, arch),
            control,
            size: 1234,
            md5: "0".repeat(32),
            sha256: "1".repeat(64),
        }
    }

    fn meta() -> Meta {
        Meta {
            origin: "Vendor".into(),
            label: "Vendor".into(),
            suite: "stable".into(),
            component: "main".into(),
            architectures: vec![],
            date: 1_700_000_000,
        }
    }

    #[test]
    fn the_indexes_and_release_of_a_small_repository() {
        let entries = vec![
            entry("demo", "1.1.0", "amd64"),
            entry("demo", "1.0.0", "amd64"),
            entry("demo-doc", "1.0.0", "all"),
            entry("libdemo1", "1:2.0", "arm64"),
        ];
        let files = indexes(&entries, &meta());
        let packages: Vec<String> = files
            .iter()
            .filter(|f| f.path.ends_with("/Packages"))
            .map(|f| format!("== {}\n{}", f.path, String::from_utf8_lossy(&f.bytes)))
            .collect();
        insta::assert_snapshot!(packages.join("\n"));
        insta::assert_snapshot!(release(&meta(), &entries, &files));
        let (_, listed) = read_release(&release(&meta(), &entries, &files)).unwrap();
        assert_eq!(listed.len(), 4);
        assert!(listed.iter().all(|l| {
            files
                .iter()
                .any(|f| f.path == l.path && f.sha256() == l.sha256)
        }));
        // The stanza reads back into the same entry.
        let back = PoolEntry::from_stanza(entries[0].stanza(), "Packages").unwrap();
        assert_eq!(back, entries[0]);
    }

    #[test]
    fn names_that_would_leave_the_pool_are_refused() {
        for (package, version, arch) in [
            ("../evil", "1", "amd64"),
            ("demo", "1/../../x", "amd64"),
            ("demo", "1", "amd64/.."),
            ("Demo", "1", "amd64"),
            ("demo", "", "amd64"),
            ("demo", "1 2", "amd64"),
        ] {
            let e = entry(package, version, arch);
            assert!(
                check_identity(&e.control, "x").is_err(),
                "{package} {version} {arch}"
            );
        }
        assert!(check_identity(&entry("libdemo1", "1:2.0~rc1+b1", "amd64").control, "x").is_ok());
        assert_eq!(
            pool_path("main", "libdemo1", "1:2.0", "arm64"),
            "pool/main/libd/libdemo1/libdemo1_2.0_arm64.deb"
        );
    }
}
