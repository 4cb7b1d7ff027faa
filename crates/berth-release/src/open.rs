//! Opening a bundle: nothing in it is believed before its signature, its meta and (for
//! [`verify`]) every byte check out.

use std::path::{Path, PathBuf};

use berth_archive::{Archive, PublicKey};

use crate::{BUNDLE_FORMAT, BUNDLE_SUFFIX, KIND, ReleaseError, bundle_name};

/// What an authenticated bundle says it is.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BundleInfo {
    /// The file.
    pub path: PathBuf,
    /// The app.
    pub app: String,
    /// Its version.
    pub version: String,
    /// The berth that built it.
    pub berth_version: String,
    /// When it says it was built (its `SOURCE_DATE_EPOCH`), RFC 3339.
    pub created: String,
    /// The trusted key that signed it.
    pub signer: String,
    /// The SHA-256 of the whole file, hex (filled by [`verify`]).
    pub sha256: Option<String>,
    /// The number of entries.
    pub entries: usize,
    /// The bundled components it carries built (`payload/<component>/`).
    pub payload: Vec<String>,
    /// The hook whose work its seed holds, if it carries one (`seed/`).
    pub seed: Option<String>,
}

/// A bundle extracted by [`extract`].
#[derive(Debug, Clone)]
pub struct Extracted {
    /// What it is.
    pub info: BundleInfo,
    /// Its manifest directory (`berth.toml` and the templates).
    pub manifest_dir: PathBuf,
    /// The directory holding its built components, one directory each.
    pub payload_dir: PathBuf,
    /// Its seed (a database dump directory), if it carries one.
    pub seed_dir: Option<PathBuf>,
}

/// The entries every bundle has.
const REQUIRED: [&str; 2] = ["manifest/berth.toml", "bin/berth"];

/// Open `path` as a bundle signed by one of `trusted`: the signature over its index,
/// then what the index says (a release bundle of the format this berth reads, of the
/// app and version its file name says, with the entries every bundle has). The content
/// is not read yet: [`verify`] does, and so does extracting it.
pub fn open(path: &Path, trusted: &[PublicKey]) -> Result<(Archive, BundleInfo), ReleaseError> {
    let archive = Archive::open(path, trusted)?;
    let not = |reason: String| ReleaseError::NotABundle {
        path: path.to_owned(),
        reason,
    };
    let manifest = archive.manifest();
    let meta = &manifest.meta;
    let text = |key: &str| meta.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    if text("kind").as_deref() != Some(KIND) {
        return Err(not(
            "its signed index does not say it is a release (a backup archive?)".to_owned(),
        ));
    }
    match meta
        .get("bundle_format")
        .and_then(serde_json::Value::as_u64)
    {
        Some(BUNDLE_FORMAT) => {}
        other => {
            return Err(not(format!(
                "its bundle format is {}; this berth reads format {BUNDLE_FORMAT}: use a \
                 berth at least as new as the one that built it",
                other.map_or_else(|| "missing".to_owned(), |f| f.to_string())
            )));
        }
    }
    let (Some(app), Some(version)) = (
        meta.app().map(str::to_owned),
        meta.app_version().map(str::to_owned),
    ) else {
        return Err(not("its index names no app or version".to_owned()));
    };
    if let Some(name) = path.file_name().and_then(|n| n.to_str())
        && name.ends_with(BUNDLE_SUFFIX)
        && name != bundle_name(&app, &version)
    {
        return Err(not(format!(
            "it is named `{name}` but holds {app} {version} (`{}`)",
            bundle_name(&app, &version)
        )));
    }
    for required in REQUIRED {
        if !manifest.entries.iter().any(|e| e.path == required) {
            return Err(not(format!("it has no `{required}`")));
        }
    }
    let mut payload = Vec::new();
    if let Some(list) = meta.get("payload") {
        let names = list
            .as_array()
            .ok_or_else(|| not("its `payload` is not a list".to_owned()))?;
        for name in names {
            let name = name
                .as_str()
                .filter(|n| is_component_name(n))
                .ok_or_else(|| not(format!("its payload names `{name}`, not a component")))?;
            let dir = crate::payload_dir(name);
            if !manifest.entries.iter().any(|e| e.path == dir) {
                return Err(not(format!(
                    "its payload names `{name}` but it has no `{dir}/`"
                )));
            }
            payload.push(name.to_owned());
        }
    }
    let info = BundleInfo {
        path: path.to_owned(),
        app,
        version,
        berth_version: text("berth_version").unwrap_or_default(),
        created: text("created").unwrap_or_default(),
        signer: archive.signer().to_string(),
        sha256: None,
        entries: manifest.entries.len(),
        payload,
        seed: text("seed"),
    };
    if info.seed.is_some() && !manifest.entries.iter().any(|e| e.path == crate::SEED_DIR) {
        return Err(not(format!(
            "its index names a seed but it has no `{}/`",
            crate::SEED_DIR
        )));
    }
    Ok((archive, info))
}

/// [`open`], then every byte of the bundle checked against its signed index.
pub fn verify(path: &Path, trusted: &[PublicKey]) -> Result<BundleInfo, ReleaseError> {
    let (archive, mut info) = open(path, trusted)?;
    archive.verify(&mut |_| {})?;
    info.sha256 = Some(crate::build::sha256_of(path)?);
    Ok(info)
}

/// [`open`], then everything in the bundle extracted into `dest` (an empty directory
/// the caller made and no one else can write), every byte checked against the signed
/// index on the way ([`berth_archive::extract`]: nothing outside `dest` is written, no
/// symlink followed, no setuid bit kept). The manifest inside must be of the app and
/// version the index says, and every component it carries built a bundled component of
/// that manifest. On error `dest` may hold part of the bundle: the caller removes it.
pub fn extract(path: &Path, trusted: &[PublicKey], dest: &Path) -> Result<Extracted, ReleaseError> {
    let (archive, info) = open(path, trusted)?;
    archive.extract(dest, &|_| true, &mut |_| {})?;
    let not = |reason: String| ReleaseError::NotABundle {
        path: path.to_owned(),
        reason,
    };
    let manifest_dir = dest.join("manifest");
    let loaded = berth_model::LoadedManifest::load(&manifest_dir)?;
    let app = &loaded.manifest.app;
    if app.name != info.app || app.version != info.version {
        return Err(not(format!(
            "its index says {} {} but its manifest is of {} {}",
            info.app, info.version, app.name, app.version
        )));
    }
    for name in &info.payload {
        let bundled = loaded.manifest.components.get(name).is_some_and(|c| {
            c.source == berth_model::manifest::ComponentSource::Bundled && c.build.is_some()
        });
        if !bundled {
            return Err(not(format!(
                "it carries `{name}` built, which its manifest does not build"
            )));
        }
    }
    if info.seed.is_some() && loaded.manifest.seed.as_ref().map(|s| &s.hook) != info.seed.as_ref() {
        return Err(not(
            "it carries a seed its manifest does not declare".to_owned()
        ));
    }
    Ok(Extracted {
        seed_dir: info.seed.is_some().then(|| dest.join(crate::SEED_DIR)),
        info,
        manifest_dir,
        payload_dir: dest.join("payload"),
    })
}

/// [`open`], then only the bundle's manifest (`manifest/`) extracted into `dest` (an
/// empty directory only the caller can write), its bytes checked against the signed
/// index: what a fleet plans with before it sends the bundle to its nodes, each of
/// which checks the whole bundle again. The manifest must be of the app and version
/// the index says.
pub fn extract_manifest(
    path: &Path,
    trusted: &[PublicKey],
    dest: &Path,
) -> Result<(BundleInfo, PathBuf), ReleaseError> {
    let (archive, info) = open(path, trusted)?;
    archive.extract(dest, &|p| p == "manifest" || p.starts_with("manifest/"), &mut |_| {})?;
    let manifest_dir = dest.join("manifest");
    let loaded = berth_model::LoadedManifest::load(&manifest_dir)?;
    let app = &loaded.manifest.app;
    if app.name != info.app || app.version != info.version {
        return Err(ReleaseError::NotABundle {
            path: path.to_owned(),
            reason: format!(
                "its index says {} {} but its manifest is of {} {}",
                info.app, info.version, app.name, app.version
            ),
        });
    }
    Ok((info, manifest_dir))
}

/// A name that is one plain path component: what component names are.
fn is_component_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}
