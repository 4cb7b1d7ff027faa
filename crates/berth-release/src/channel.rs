//! A channel: a directory of one app's release bundles with a signed index, which
//! `berth up` and `berth upgrade apply` pick versions from.
//!
//! The index is one file, `channel.json`: a first line `berth-channel-signature:
//! <hex>` (the vendor's ed25519 signature over every byte after that line, made for the
//! purpose "berth release channel v1" only, so it can never pass as an archive's), then
//! the JSON: the app, and per release its version, bundle file, SHA-256 and size, the
//! required stops its manifest declares and the oldest version it upgrades from. One
//! file, replaced in one rename: a reader sees the old index or the new one, never half
//! of each. A bundle once published is never replaced by other bytes.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::Digest as _;

use berth_archive::{PublicKey, SigningKey};
use berth_model::version::compare_versions;

use crate::{ReleaseError, bundle_name};

/// The index file of a channel.
pub const INDEX: &str = "channel.json";

/// The version of the index's layout.
pub const CHANNEL_FORMAT: u32 = 1;

const CONTEXT: &[u8] = b"berth release channel v1\0";
const SIGNATURE_PREFIX: &str = "berth-channel-signature: ";

/// A channel's index.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelIndex {
    /// [`CHANNEL_FORMAT`].
    pub format: u32,
    /// The app every release is of.
    pub app: String,
    /// Oldest version first.
    pub releases: Vec<ChannelRelease>,
}

/// One release in a channel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelRelease {
    /// Its version.
    pub version: String,
    /// Its bundle, a file name in the channel's directory.
    pub file: String,
    /// The bundle's SHA-256, hex.
    pub sha256: String,
    /// The bundle's size in bytes.
    pub bytes: u64,
    /// The series an upgrade to it must pass through (its manifest's `upgrade.stops`).
    pub stops: Vec<String>,
    /// The oldest version (or series) it upgrades from directly (`upgrade.from`).
    pub upgrades_from: Option<String>,
    /// Whether it carries a seed for first installs.
    pub seed: bool,
}

/// What [`publish`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Published {
    /// The channel's directory.
    pub channel: PathBuf,
    /// The release added (or found there already, the same bytes).
    pub release: ChannelRelease,
    /// Whether the bundle was there already.
    pub already: bool,
    /// Every version in the channel now, oldest first.
    pub versions: Vec<String>,
}

/// Adds the bundle at `bundle` to the channel in `dir` (made if missing), signed with
/// `key`: the bundle must be signed by `key` and check out byte for byte, and be of
/// the app the channel holds; a version published before is refused unless it is the
/// same bytes. Older releases stay.
pub fn publish(bundle: &Path, dir: &Path, key: &SigningKey) -> Result<Published, ReleaseError> {
    let public = key.public_key();
    // Reading the manifest out checks every byte of the bundle on the way.
    let (info, manifest) = read_manifest(bundle, &public)?;
    let sha256 = crate::build::sha256_of(bundle)?;
    berth_host::fsutil::ensure_dir(dir, 0o755)?;
    let mut index = if dir.join(INDEX).exists() {
        open_channel(dir, &[public])?
    } else {
        ChannelIndex {
            format: CHANNEL_FORMAT,
            app: info.app.clone(),
            releases: Vec::new(),
        }
    };
    if index.app != info.app {
        return Err(ReleaseError::Input {
            what: format!(
                "the channel `{}` holds {}, and this bundle is of {}",
                dir.display(),
                index.app,
                info.app
            ),
        });
    }
    let file = bundle_name(&info.app, &info.version);
    let release = ChannelRelease {
        version: info.version.clone(),
        file: file.clone(),
        sha256: sha256.clone(),
        bytes: std::fs::metadata(bundle)
            .map(|m| m.len())
            .unwrap_or_default(),
        stops: manifest.upgrade.stops.clone(),
        upgrades_from: manifest.upgrade.from.clone(),
        seed: info.seed.is_some(),
    };
    let dest = dir.join(&file);
    let listed = index.releases.iter().find(|r| r.version == info.version);
    let already = match listed {
        Some(r)
            if r.sha256 == sha256
                && crate::build::sha256_of(&dest).ok() == Some(sha256.clone()) =>
        {
            true
        }
        Some(_) => {
            return Err(ReleaseError::Input {
                what: format!(
                    "{} {} is published in `{}` already, with other bytes: a published \
                     release is never replaced; publish a new version",
                    info.app,
                    info.version,
                    dir.display()
                ),
            });
        }
        None => false,
    };
    if !already {
        // Another file under that name, not in the index (an interrupted publish):
        // replaced, since nothing refers to it.
        berth_host::fsutil::remove_file_if_exists(&dest)?;
        berth_host::fsutil::install_copy(bundle, &dest, 0o644)?;
        index.releases.retain(|r| r.version != info.version);
        index.releases.push(release.clone());
        index
            .releases
            .sort_by(|a, b| compare_versions(&a.version, &b.version));
        write_index(dir, &index, key)?;
    }
    Ok(Published {
        channel: dir.to_owned(),
        release,
        already,
        versions: index.releases.iter().map(|r| r.version.clone()).collect(),
    })
}

/// What a bundle signed by `key` is, and its manifest: read once its index is
/// trusted, every entry checked against it on the way.
fn read_manifest(
    bundle: &Path,
    key: &PublicKey,
) -> Result<(crate::BundleInfo, berth_model::manifest::Manifest), ReleaseError> {
    let tmp = tempfile::tempdir().map_err(|source| berth_host::HostError::CreateDir {
        path: std::env::temp_dir(),
        source,
    })?;
    let (archive, info) = crate::open(bundle, &[*key])?;
    archive.extract(tmp.path(), &|p| p.starts_with("manifest/"), &mut |_| {})?;
    let manifest = berth_model::LoadedManifest::load(&tmp.path().join("manifest"))?.manifest;
    Ok((info, manifest))
}

/// Reads the channel in `dir`: its index must be signed by one of `trusted`, of this
/// format, with no version twice and only plain file names.
pub fn open_channel(dir: &Path, trusted: &[PublicKey]) -> Result<ChannelIndex, ReleaseError> {
    let path = dir.join(INDEX);
    let bytes = std::fs::read(&path).map_err(|source| berth_host::HostError::Read {
        path: path.clone(),
        source,
    })?;
    parse_index(&bytes, &path, trusted)
}

/// A channel index's bytes (read from `path`, for messages), checked as
/// [`open_channel`] says.
fn parse_index(
    bytes: &[u8],
    path: &Path,
    trusted: &[PublicKey],
) -> Result<ChannelIndex, ReleaseError> {
    let bad = |reason: String| ReleaseError::NotABundle {
        path: path.to_path_buf(),
        reason,
    };
    let newline = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| bad("it is not a channel index (no signature line)".to_owned()))?;
    let line = std::str::from_utf8(&bytes[..newline]).unwrap_or_default();
    let document = &bytes[newline + 1..];
    let mut signature = [0u8; 64];
    line.strip_prefix(SIGNATURE_PREFIX)
        .and_then(|hex_text| hex::decode_to_slice(hex_text.trim(), &mut signature).ok())
        .ok_or_else(|| {
            bad(format!(
                "its first line is not `{SIGNATURE_PREFIX}<signature>`"
            ))
        })?;
    if !trusted
        .iter()
        .any(|k| k.verifies_document(CONTEXT, document, &signature))
    {
        return Err(bad(
            "its signature is not by a trusted key (changed, or another vendor's)".to_owned(),
        ));
    }
    let index: ChannelIndex = serde_json::from_slice(document)
        .map_err(|e| bad(format!("its index does not parse: {e}")))?;
    if index.format != CHANNEL_FORMAT {
        return Err(bad(format!(
            "its format is {}; this berth reads format {CHANNEL_FORMAT}",
            index.format
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for r in &index.releases {
        if !seen.insert(r.version.as_str()) {
            return Err(bad(format!("it lists {} twice", r.version)));
        }
        if r.file != bundle_name(&index.app, &r.version) {
            return Err(bad(format!("it names `{}` for {}", r.file, r.version)));
        }
    }
    Ok(index)
}

impl ChannelIndex {
    /// `version`, or the newest.
    pub fn pick(&self, version: Option<&str>) -> Result<&ChannelRelease, ReleaseError> {
        let found = match version {
            Some(v) => self.releases.iter().find(|r| r.version == v),
            None => self.releases.last(),
        };
        found.ok_or_else(|| ReleaseError::Input {
            what: match version {
                Some(v) => format!(
                    "the channel has no {} {v}; it has {}",
                    self.app,
                    self.versions()
                ),
                None => "the channel has no release yet".to_owned(),
            },
        })
    }

    /// The releases an upgrade from `from` to `to` installs, in order: the newest
    /// release of every series `to` requires (`stops`) that `from` has not reached,
    /// then `to` itself.
    pub fn upgrade_path(&self, from: &str, to: &str) -> Result<Vec<&ChannelRelease>, ReleaseError> {
        let target = self.pick(Some(to))?;
        let mut path = Vec::new();
        for stop in &target.stops {
            let in_series = |v: &str| v == stop || v.starts_with(&format!("{stop}."));
            let passed = in_series(from) || compare_versions(from, stop).is_gt();
            if passed || in_series(to) {
                continue;
            }
            let newest = self
                .releases
                .iter()
                .rfind(|r| in_series(&r.version))
                .ok_or_else(|| ReleaseError::Input {
                    what: format!(
                        "{} {to} must be reached through a {stop} release, and the channel \
                         has none; it has {}",
                        self.app,
                        self.versions()
                    ),
                })?;
            path.push(newest);
        }
        path.push(target);
        Ok(path)
    }

    fn versions(&self) -> String {
        let list: Vec<&str> = self.releases.iter().map(|r| r.version.as_str()).collect();
        if list.is_empty() {
            "none".to_owned()
        } else {
            list.join(", ")
        }
    }
}

/// The bundle of `release` in the channel `dir`, once its bytes have the SHA-256 the
/// signed index lists (the bundle's own signature is checked again when it is used).
pub fn bundle_path(dir: &Path, release: &ChannelRelease) -> Result<PathBuf, ReleaseError> {
    let path = dir.join(&release.file);
    let sha = crate::build::sha256_of(&path)?;
    if sha != release.sha256 {
        return Err(ReleaseError::NotABundle {
            path,
            reason: format!(
                "its SHA-256 is {sha}, and the channel's signed index says {}",
                release.sha256
            ),
        });
    }
    Ok(path)
}

/// Where a channel is: a directory, or a static HTTP(S) tree holding the same files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A directory.
    Dir(PathBuf),
    /// The address of the directory, ending in `/`.
    Http(String),
}

/// The most a channel index may be: a bigger answer is not an index.
const INDEX_LIMIT: u64 = 16 << 20;

impl Source {
    /// `http://…` and `https://…` are HTTP; anything else is a directory.
    pub fn parse(given: &str) -> Self {
        if given.starts_with("http://") || given.starts_with("https://") {
            let mut base = given.to_owned();
            if !base.ends_with('/') {
                base.push('/');
            }
            Self::Http(base)
        } else {
            Self::Dir(PathBuf::from(given))
        }
    }

    /// The channel's index, checked as [`open_channel`] says.
    pub fn open(&self, trusted: &[PublicKey]) -> Result<ChannelIndex, ReleaseError> {
        match self {
            Self::Dir(dir) => open_channel(dir, trusted),
            Self::Http(base) => {
                let url = format!("{base}{INDEX}");
                let mut bytes = Vec::new();
                get(&url)?
                    .take(INDEX_LIMIT)
                    .read_to_end(&mut bytes)
                    .map_err(|e| download_error(&url, &e))?;
                parse_index(&bytes, Path::new(&url), trusted)
            }
        }
    }

    /// The bundle of `release`, once its bytes have the SHA-256 the signed index lists:
    /// in the directory, or downloaded into `staging` (a directory berth made).
    pub fn bundle(
        &self,
        release: &ChannelRelease,
        staging: &Path,
    ) -> Result<PathBuf, ReleaseError> {
        match self {
            Self::Dir(dir) => bundle_path(dir, release),
            Self::Http(base) => {
                let url = format!("{base}{}", release.file);
                let dest = staging.join(&release.file);
                let mut body = get(&url)?.take(release.bytes + 1);
                let mut hasher = sha2::Sha256::new();
                let mut copied = 0u64;
                let (dir, name) = berth_host::beneath::in_parent(&dest)?;
                dir.write_new_with(
                    &name,
                    &mut |file| {
                        let mut buf = vec![0u8; 1 << 20];
                        loop {
                            let n = body.read(&mut buf)?;
                            if n == 0 {
                                return Ok(());
                            }
                            hasher.update(&buf[..n]);
                            copied += n as u64;
                            file.write_all(&buf[..n])?;
                        }
                    },
                    0o600,
                    None,
                )
                .map_err(|e| ReleaseError::Input {
                    what: format!("Failed to download `{url}`: {e}"),
                })?;
                let sha = hex::encode(hasher.finalize());
                if sha != release.sha256 || copied != release.bytes {
                    berth_host::fsutil::remove_file_if_exists(&dest)?;
                    return Err(ReleaseError::NotABundle {
                        path: PathBuf::from(url),
                        reason: format!(
                            "its {copied} bytes have the SHA-256 {sha}, and the channel's signed \
                             index says {} bytes with {}",
                            release.bytes, release.sha256
                        ),
                    });
                }
                Ok(dest)
            }
        }
    }
}

/// The body of `GET url`; an answer other than 200 is an error naming it. A server
/// that takes over 30 s to connect, or sends nothing for 60 s, is given up on (a big
/// bundle may take as long as it needs while bytes keep coming).
fn get(url: &str) -> Result<impl Read + use<>, ReleaseError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(std::time::Duration::from_secs(30)))
        .timeout_per_read(Some(std::time::Duration::from_mins(1)))
        .build()
        .into();
    let answer = agent.get(url).call().map_err(|e| download_error(url, &e))?;
    Ok(answer.into_body().into_reader())
}

fn download_error(url: &str, e: &dyn std::fmt::Display) -> ReleaseError {
    ReleaseError::Input {
        what: format!("Failed to download `{url}`: {e}"),
    }
}

fn write_index(dir: &Path, index: &ChannelIndex, key: &SigningKey) -> Result<(), ReleaseError> {
    let mut document = serde_json::to_vec_pretty(index).map_err(|e| ReleaseError::Input {
        what: format!("the channel index cannot be written: {e}"),
    })?;
    document.push(b'\n');
    let signature = key.sign_document(CONTEXT, &document);
    let mut text = format!("{SIGNATURE_PREFIX}{}\n", hex::encode(signature)).into_bytes();
    text.extend_from_slice(&document);
    berth_host::fsutil::write_atomic(&dir.join(INDEX), &text, 0o644, None)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(version: &str, stops: &[&str]) -> ChannelRelease {
        ChannelRelease {
            version: version.to_owned(),
            file: bundle_name("app", version),
            sha256: String::new(),
            bytes: 0,
            stops: stops.iter().map(|s| (*s).to_owned()).collect(),
            upgrades_from: None,
            seed: false,
        }
    }

    fn channel() -> ChannelIndex {
        ChannelIndex {
            format: 1,
            app: "app".to_owned(),
            releases: vec![
                release("2.10.4", &[]),
                release("2.11.0", &[]),
                release("2.11.3", &[]),
                release("3.6.1", &["2.11"]),
                release("3.7.2", &["2.11"]),
                release("4.0.0", &["2.11", "3.7"]),
                release("4.1.0", &["2.11", "3.7"]),
            ],
        }
    }

    fn path(c: &ChannelIndex, from: &str, to: &str) -> Vec<String> {
        c.upgrade_path(from, to)
            .unwrap()
            .into_iter()
            .map(|r| r.version.clone())
            .collect()
    }

    /// Every required stop not passed yet, each by its newest release, then the target.
    #[test]
    fn an_upgrade_goes_through_the_newest_release_of_each_stop() {
        let c = channel();
        assert_eq!(path(&c, "2.10.4", "4.1.0"), ["2.11.3", "3.7.2", "4.1.0"]);
        assert_eq!(path(&c, "2.11.0", "4.1.0"), ["3.7.2", "4.1.0"]);
        assert_eq!(path(&c, "3.7.2", "4.1.0"), ["4.1.0"]);
        assert_eq!(path(&c, "3.8.0", "4.1.0"), ["4.1.0"]);
        assert_eq!(path(&c, "2.10.4", "3.7.2"), ["2.11.3", "3.7.2"]);
        assert_eq!(c.pick(None).unwrap().version, "4.1.0");
        let no_stop = ChannelIndex {
            releases: vec![release("1.0.0", &[]), release("3.0.0", &["2.0"])],
            ..channel()
        };
        let err = no_stop
            .upgrade_path("1.0.0", "3.0.0")
            .unwrap_err()
            .to_string();
        assert!(err.contains("through a 2.0 release"), "{err}");
        assert!(
            c.pick(Some("9.9.9"))
                .unwrap_err()
                .to_string()
                .contains("it has 2.10.4")
        );
    }

    /// The index verifies with the vendor's key only, and a changed byte fails.
    #[test]
    fn the_index_is_believed_only_with_the_vendors_signature() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        write_index(dir.path(), &channel(), &key).unwrap();
        assert_eq!(
            open_channel(dir.path(), &[key.public_key()]).unwrap(),
            channel()
        );
        let err = open_channel(dir.path(), &[other.public_key()]).unwrap_err();
        assert!(err.to_string().contains("not by a trusted key"), "{err}");
        let path = dir.path().join(INDEX);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("\"3.7.2\"", "\"3.7.9\"")).unwrap();
        let err = open_channel(dir.path(), &[key.public_key()]).unwrap_err();
        assert!(err.to_string().contains("not by a trusted key"), "{err}");
    }
}
