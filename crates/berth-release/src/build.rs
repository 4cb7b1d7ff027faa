//! `berth release build`: a bundle from a manifest directory and a berth binary.

use std::io::Read;
use std::path::{Path, PathBuf};

use berth_archive::{ArchiveWriter, Meta, SigningKey, WriteOptions};
use berth_model::LoadedManifest;
use sha2::{Digest, Sha256};

use crate::{BUNDLE_FORMAT, BUNDLE_SUFFIX, KIND, ReleaseError};

/// What a bundle is built from.
pub struct BuildInput<'a> {
    /// The app's manifest directory (`berth.toml` and its templates).
    pub manifest_dir: &'a Path,
    /// The berth binary the bundle carries.
    pub berth_exe: &'a Path,
    /// The vendor's signing key.
    pub key: &'a SigningKey,
    /// `SOURCE_DATE_EPOCH`: every entry's mtime and the bundle's `created`.
    pub source_date_epoch: u64,
    /// The directory the bundle is written to (never over an existing file).
    pub out_dir: &'a Path,
    /// Told what is being done, one line at a time (building a component takes minutes).
    pub say: &'a dyn Fn(&str),
    /// Makes the seed of a manifest that declares `[seed]`: given the directory of the
    /// built components (one per component) and a directory to create, it writes the
    /// database dump there.
    pub seed: Option<&'a SeedFn<'a>>,
    /// Leave the declared seed out: a first install from the bundle then runs the
    /// seed's hook itself (slower), as it would from a manifest.
    pub without_seed: bool,
    /// Checks what the bundle would carry against the manifest's licence policy, once
    /// the components are built and before anything else (the seed takes minutes):
    /// given the manifest and the directory of the built components, it refuses with
    /// the components named.
    pub licences: Option<&'a LicenceFn<'a>>,
}

/// See [`BuildInput::licences`].
pub type LicenceFn<'a> = dyn Fn(
        &berth_model::manifest::Manifest,
        &Path,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
    + 'a;

/// See [`BuildInput::seed`].
pub type SeedFn<'a> =
    dyn Fn(&Path, &Path) -> Result<(), Box<dyn std::error::Error + Send + Sync>> + 'a;

/// A bundle written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Built {
    /// Where.
    pub path: PathBuf,
    /// The app.
    pub app: String,
    /// Its version.
    pub version: String,
    /// The bundle's size in bytes.
    pub bytes: u64,
    /// The SHA-256 of the whole file, hex.
    pub sha256: String,
    /// The public key that verifies it (`ed25519:…`).
    pub signer: String,
    /// The bundled components it carries, built (`payload/<component>/`).
    pub components: Vec<String>,
    /// The hook whose work its seed holds, if it carries one.
    pub seed: Option<String>,
}

/// The file name of the bundle of `app` at `version`.
pub fn bundle_name(app: &str, version: &str) -> String {
    format!("{app}-{version}{BUNDLE_SUFFIX}")
}

/// Build the bundle of the manifest in `input.manifest_dir`: validated first (its
/// errors are the manifest's, positioned), then written reproducibly and signed.
/// Nothing is left behind when it fails.
pub fn build(input: &BuildInput<'_>) -> Result<Built, ReleaseError> {
    let dir = input.manifest_dir;
    let file = dir.join("berth.toml");
    let text = berth_model::read_input(
        &file,
        "the manifest",
        "give the app's manifest directory with `--manifest`",
    )
    .map_err(berth_model::InputError::into_diagnostics)?;
    let loaded = LoadedManifest::load(dir)?;
    berth_model::validate(&loaded)?;
    // The bundle carries the text read here; it must be the manifest just validated.
    let again = LoadedManifest::from_sources(&loaded.source_name, &text, loaded.templates.clone())?;
    if again.manifest != loaded.manifest {
        return Err(ReleaseError::Input {
            what: format!(
                "`{}` changed while it was read: build again once it is complete",
                file.display()
            ),
        });
    }
    let app = loaded.manifest.app.name.clone();
    let version = loaded.manifest.app.version.clone();
    let path = input.out_dir.join(bundle_name(&app, &version));
    if path.exists() {
        return Err(ReleaseError::Input {
            what: format!(
                "`{}` exists already: a bundle is never overwritten; move it away first",
                path.display()
            ),
        });
    }
    // Components are built next to where the bundle goes, then archived from there.
    // Absolute: the build's steps run in a directory of their own.
    let staging = std::path::absolute(input.out_dir)
        .map_err(|e| ReleaseError::Input {
            what: format!("`{}` cannot be used: {e}", input.out_dir.display()),
        })?
        .join(format!(".{}.staging", bundle_name(&app, &version)));
    berth_host::beneath::remove_tree_at(&staging)?;
    berth_host::fsutil::ensure_dir(&staging, 0o755)?;
    let result = write_bundle(input, &loaded, &text, &path, &staging);
    berth_host::beneath::remove_tree_at(&staging)?;
    result
}

fn write_bundle(
    input: &BuildInput<'_>,
    loaded: &LoadedManifest,
    text: &str,
    path: &Path,
    staging: &Path,
) -> Result<Built, ReleaseError> {
    let app = loaded.manifest.app.name.clone();
    let version = loaded.manifest.app.version.clone();
    let epoch = input.source_date_epoch;
    let payload = staging.join("payload");
    berth_host::fsutil::ensure_dir(&payload, 0o755)?;
    let components = crate::payload::build_all(&loaded.manifest, &payload, epoch, input.say)?;
    if let Some(check) = input.licences {
        check(&loaded.manifest, &payload).map_err(|e| ReleaseError::Input {
            what: e.to_string(),
        })?;
    }
    let seed_dir = staging.join("seed");
    let seed = make_seed(input, loaded, &payload, &seed_dir)?;
    (input.say)("Writing the bundle");
    let mut writer = ArchiveWriter::create(
        path,
        WriteOptions {
            level: 9,
            threads: 1,
            source_date_epoch: Some(epoch),
        },
    )?;
    writer.add_bytes("manifest/berth.toml", text.as_bytes(), 0o644)?;
    for (template, source) in &loaded.templates {
        writer.add_bytes(&format!("manifest/{template}"), source.as_bytes(), 0o644)?;
    }
    writer.add_file("bin/berth", input.berth_exe)?;
    if seed.is_some() {
        let skipped = writer.add_tree(crate::SEED_DIR, &seed_dir)?;
        if let Some(s) = skipped.first() {
            return Err(ReleaseError::Input {
                what: format!(
                    "the seed holds `{}`, which a bundle cannot carry",
                    s.path.display()
                ),
            });
        }
    }
    for c in &components {
        let skipped = writer.add_tree(&crate::payload::payload_dir(&c.name), &c.tree)?;
        // A tree the build just made holds nothing to leave out; if it does, the
        // bundle would not run what was built.
        if let Some(s) = skipped.first() {
            return Err(ReleaseError::Input {
                what: format!(
                    "`{}` (built from {}) holds `{}`, which a bundle cannot carry ({:?})",
                    c.name,
                    c.python.display(),
                    s.path.display(),
                    s.reason
                ),
            });
        }
    }
    let created =
        jiff::Timestamp::from_second(i64::try_from(epoch).unwrap_or(i64::MAX)).map_err(|e| {
            ReleaseError::Input {
                what: format!("SOURCE_DATE_EPOCH {epoch} is not a time berth can write: {e}"),
            }
        })?;
    let mut meta = Meta::new(&app, &version, created);
    meta.insert("kind", KIND)
        .insert("bundle_format", BUNDLE_FORMAT)
        .insert("berth_version", env!("CARGO_PKG_VERSION"))
        .insert(
            "payload",
            components
                .iter()
                .map(|c| c.name.clone())
                .collect::<Vec<_>>(),
        );
    if let Some(hook) = &seed {
        meta.insert("seed", hook.as_str());
    }
    let written = writer.finish(meta, input.key)?;
    // A release is published, not kept secret (archives are written 0600 for backups).
    let (dir, name) = berth_host::beneath::in_parent(&written.path)?;
    dir.set_mode(&name, 0o644)?;
    Ok(Built {
        sha256: sha256_of(&written.path)?,
        path: written.path,
        app,
        version,
        bytes: written.size,
        signer: input.key.public_key().to_string(),
        components: components.into_iter().map(|c| c.name).collect(),
        seed,
    })
}

/// The seed of a manifest that declares one, made into `seed_dir` by the build's
/// [`SeedFn`] from the components in `payload`; its hook.
fn make_seed(
    input: &BuildInput<'_>,
    loaded: &LoadedManifest,
    payload: &Path,
    seed_dir: &Path,
) -> Result<Option<String>, ReleaseError> {
    if input.without_seed {
        if let Some(decl) = &loaded.manifest.seed {
            (input.say)(&format!(
                "No seed: a first install runs hook `{}` itself",
                decl.hook
            ));
        }
        return Ok(None);
    }
    Ok(match (&loaded.manifest.seed, input.seed) {
        (Some(decl), Some(capture)) => {
            (input.say)(&format!(
                "Seeding the database: hook `{}` on a throwaway instance",
                decl.hook
            ));
            capture(payload, seed_dir).map_err(|e| ReleaseError::Input {
                what: format!("The seed could not be made: {e}"),
            })?;
            Some(decl.hook.clone())
        }
        (Some(_), None) => {
            return Err(ReleaseError::Input {
                what: "the manifest declares `[seed]`, and this build cannot make one".to_owned(),
            });
        }
        (None, _) => None,
    })
}

/// The SHA-256 of a file, hex.
pub(crate) fn sha256_of(path: &Path) -> Result<String, ReleaseError> {
    let io = |e| berth_host::HostError::Read {
        path: path.to_owned(),
        source: e,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
