//! `berth image build`: a verified, extracted release bundle in, one image per service
//! out, written into an OCI image layout.
//!
//! Layers, in order: the Debian base root with the service's packages (made by
//! mmdebstrap, cached by package set, so services with the same packages share it);
//! berth itself; each bundled component the service runs, at the path a host install
//! puts it (`<prefix>/releases/<version>/<component>`); and the instance skeleton: the
//! manifest, `/etc/passwd` with the service user, and the directories it writes. An app
//! upgrade changes the last two kinds of layer only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_image::{Layer, LayerOptions, Owner, Ownership, Written, WrittenLayer};
use berth_layout::Paths;
use berth_lifecycle::Locate;

use crate::plan::RolePlan;
use crate::{BERTH_IN_IMAGE, ContainerError, Result, SERVICE_UID};

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildInput<'a> {
    /// The bundle, extracted and verified (`manifest/`, `bin/berth`, `payload/`).
    pub extracted: &'a Path,
    /// The OCI image layout to write the images into (made if missing).
    pub layout: &'a Path,
    /// Only these services (all when empty).
    pub services: &'a [String],
    /// Where base roots are kept between builds.
    pub cache: &'a Path,
    /// A scratch directory for the layers' trees (emptied by the caller).
    pub work: &'a Path,
    /// The build's time.
    pub source_date_epoch: u64,
    /// The version of the berth the bundle carries.
    pub berth_version: &'a str,
}

/// One image written.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// What went into it.
    pub plan: RolePlan,
    /// Its digests and layers.
    pub written: Written,
}

/// The prefix an app's images put the instance at: the one a root install uses.
#[must_use]
pub fn image_prefix(app: &str) -> PathBuf {
    berth_lifecycle::instance::default_prefix(app, true)
}

/// The plans of the bundle's images: the manifest rendered with the images' prefix,
/// the defaults and placeholder secrets (only which programs and paths each service
/// names matters here).
///
/// # Errors
/// The manifest is invalid, or `only` names an unknown service.
pub fn plans(extracted: &Path, only: &[String], source_date_epoch: u64) -> Result<Vec<RolePlan>> {
    let manifest_dir = extracted.join("manifest");
    let loaded = berth_model::LoadedManifest::load(&manifest_dir)?;
    let prefix = image_prefix(&loaded.manifest.app.name);
    // An empty site config of its own: never one at the prefix on this machine.
    let empty = extracted.join("image-build-site.toml");
    berth_host::fsutil::write_atomic(&empty, b"", 0o644, None)?;
    let instance = berth_lifecycle::instance::open(&Locate {
        prefix: Some(prefix),
        manifest: Some(manifest_dir),
        config: Some(empty),
        ..Locate::default()
    })?;
    let secrets: BTreeMap<String, String> = berth_render::secret_specs_enabled(
        &instance.manifest,
        &instance.facts,
        &instance.users,
        &instance.config.enabled_components,
    )
    .into_iter()
    .map(|s| (s.name, "secret".to_owned()))
    .collect();
    let state = crate::render(&instance, &secrets)?;
    crate::plan::plan(&instance.manifest, &state, only, source_date_epoch)
        .map_err(ContainerError::Invalid)
}

/// Build the images of `input`, reporting progress through `say`.
///
/// # Errors
/// The manifest or bundle is not usable, a base root cannot be made (mmdebstrap), a
/// bundled component needs a library no package provides, or writing fails.
#[allow(clippy::too_many_lines)] // one layer after the other, in order
pub fn build(input: &BuildInput<'_>, say: &mut dyn FnMut(&str)) -> Result<Vec<BuiltImage>> {
    let mut plans = plans(input.extracted, input.services, input.source_date_epoch)?;
    let loaded = berth_model::LoadedManifest::load(&input.extracted.join("manifest"))?;
    let app = &loaded.manifest.app;
    let paths = Paths::for_prefix(&image_prefix(&app.name), &app.version);
    let work = input.work;
    mkdir(work)?;

    // berth, once for every image.
    let berth_tree = work.join("berth");
    copy_file(
        &input.extracted.join("bin/berth"),
        &berth_tree.join(relative(Path::new(BERTH_IN_IMAGE))),
        0o755,
    )?;

    let berth_identity = format!(
        "berth {}",
        berth_host::fsutil::sha256_hex(
            &std::fs::read(input.extracted.join("bin/berth"))
                .map_err(io("read", &input.extracted.join("bin/berth")))?
        )
    );

    // Each bundled component once, where a host install puts it; its libraries'
    // packages join the base of each image that runs it.
    let mut payload_trees: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut library_packages: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for plan in &plans {
        for c in &plan.payload {
            if payload_trees.contains_key(c) {
                continue;
            }
            let src = input.extracted.join("payload").join(c);
            let tree = work.join(format!("payload-{c}"));
            let dest = tree.join(relative(&paths.bundle_dir(c)));
            let dest_parent = dest.parent().unwrap_or(&tree);
            mkdir(dest_parent)?;
            // Both directories are this build's own scratch; the move is by descriptors.
            let (from, name) = berth_host::beneath::in_parent(&src)?;
            let to = berth_host::beneath::SafeDir::open_trusted(dest_parent)?;
            from.rename(&name, &to, Path::new(c))?;
            say(&format!(
                "Finding the Debian packages of {c}'s shared libraries"
            ));
            library_packages.insert(c.clone(), berth_package::shlibs::library_packages(&dest)?);
            payload_trees.insert(c.clone(), tree);
        }
    }
    for plan in &mut plans {
        let mut packages: Vec<String> = plan.packages.clone();
        for c in &plan.payload {
            packages.extend(library_packages.get(c).cloned().unwrap_or_default());
        }
        packages.sort();
        packages.dedup();
        plan.packages = packages;
    }

    let mut built = Vec::new();
    let mut payload_written: BTreeMap<String, WrittenLayer> = BTreeMap::new();
    for plan in plans {
        let spec = berth_image::base::BaseSpec {
            suite: "bookworm".to_owned(),
            packages: plan.packages.clone(),
            source_date_epoch: input.source_date_epoch,
        };
        say(&format!(
            "{}: Debian 12 base with {}",
            plan.service,
            if plan.packages.is_empty() {
                "no extra packages".to_owned()
            } else {
                plan.packages.join(", ")
            }
        ));
        let base_root = berth_image::base::ensure_base(&spec, input.cache, &mut |m: &str| say(m))?;
        let skeleton = work.join(format!("instance-{}", plan.service));
        let owners = skeleton_tree(&skeleton, &base_root, &paths, input.extracted, &plan)?;
        // The image's bill of materials: inside it, and beside it as referrers.
        let inventory = image_inventory(input, &loaded, &plan, &payload_trees, &paths, &base_root)?;
        let boms = [
            (
                "application/vnd.cyclonedx+json",
                "cdx.json",
                berth_sbom::cyclonedx::document(&inventory),
            ),
            (
                "application/spdx+json",
                "spdx.json",
                berth_sbom::spdx::document(&inventory),
            ),
        ];
        for (_, ext, text) in &boms {
            let file = skeleton
                .join(relative(Path::new(SBOM_DIR)))
                .join(format!("{}-{}.{ext}", app.name, plan.service));
            mkdir(file.parent().unwrap_or(&skeleton))?;
            berth_host::fsutil::write_atomic(&file, text.as_bytes(), 0o644, None)?;
        }
        let opts = |created_by: String, ownership, owners| LayerOptions {
            source_date_epoch: input.source_date_epoch,
            ownership,
            owners,
            created_by,
        };
        // The base root and berth do not change between builds: their layers, once
        // written, are remembered in the cache and not compressed again.
        let base_memo = memo_path(
            input.cache,
            &berth_image::base::base_key(&spec),
            input.source_date_epoch,
        );
        let berth_memo = memo_path(input.cache, &berth_identity, input.source_date_epoch);
        let mut layers = vec![
            remembered(
                Layer::from_dir(
                    &base_root,
                    opts(
                        format!(
                            "berth: Debian 12 (bookworm) with {}",
                            plan.packages.join(" ")
                        ),
                        Ownership::KeepNumeric,
                        Vec::new(),
                    ),
                ),
                &base_memo,
            ),
            remembered(
                Layer::from_dir(
                    &berth_tree,
                    opts(
                        format!("berth: {BERTH_IN_IMAGE}"),
                        Ownership::Root,
                        Vec::new(),
                    ),
                ),
                &berth_memo,
            ),
        ];
        for c in &plan.payload {
            let layer = Layer::from_dir(
                &payload_trees[c],
                opts(
                    format!("berth: the {c} component of {} {}", app.name, app.version),
                    Ownership::Root,
                    Vec::new(),
                ),
            );
            // Written once per build: the next image that runs it reuses the blob.
            layers.push(match payload_written.get(c) {
                Some(known) => layer.with_known(known.clone()),
                None => layer,
            });
        }
        layers.push(Layer::from_dir(
            &skeleton,
            opts(
                format!(
                    "berth: the {} instance's manifest, user and directories",
                    app.name
                ),
                Ownership::Root,
                owners,
            ),
        ));
        let mut config = plan.config.clone();
        config.source_date_epoch = input.source_date_epoch;
        say(&format!("{}: writing the image {}", plan.service, plan.tag));
        let written = berth_image::write_layout(input.layout, &layers, &config, &plan.tag)?;
        remember(&base_memo, &written.layers[0])?;
        remember(&berth_memo, &written.layers[1])?;
        for (c, layer) in plan.payload.iter().zip(&written.layers[2..]) {
            payload_written.insert(c.clone(), layer.clone());
        }
        let created: BTreeMap<String, String> = [(
            "org.opencontainers.image.created".to_owned(),
            plan.config
                .labels
                .get("org.opencontainers.image.created")
                .cloned()
                .unwrap_or_default(),
        )]
        .into_iter()
        .collect();
        for (media_type, _, text) in &boms {
            berth_image::write_referrer(
                input.layout,
                &written.manifest_digest,
                media_type,
                text.as_bytes(),
                &created,
            )?;
        }
        built.push(BuiltImage { plan, written });
    }
    Ok(built)
}

/// Where the layer of an unchanging tree (`identity`: a base root's key, berth's hash)
/// written at `epoch` is remembered: in the cache, which is root's alone.
fn memo_path(cache: &Path, identity: &str, epoch: u64) -> PathBuf {
    let key =
        berth_host::fsutil::sha256_hex(format!("{MEMO_FORMAT}\n{identity}\n{epoch}").as_bytes());
    cache.join("layers").join(format!("{key}.json"))
}

/// Changed when what a remembered layer depends on changes (the layer format).
const MEMO_FORMAT: &str = "berth-layer-memo-1";

/// `layer`, with what `memo` remembers of it if anything: the blob is then reused
/// when the layout has it (its digest checked).
fn remembered(layer: Layer, memo: &Path) -> Layer {
    match std::fs::read(memo)
        .ok()
        .and_then(|b| serde_json::from_slice::<WrittenLayer>(&b).ok())
    {
        Some(known) => layer.with_known(known),
        None => layer,
    }
}

fn remember(memo: &Path, written: &WrittenLayer) -> Result<()> {
    if let Some(dir) = memo.parent() {
        berth_host::fsutil::ensure_dir(dir, 0o700)?;
    }
    let json = serde_json::to_vec(written).map_err(|e| ContainerError::Invalid(e.to_string()))?;
    berth_host::fsutil::write_atomic(memo, &json, 0o600, None)?;
    Ok(())
}

/// Where an image carries its bills of materials (`<app>-<service>.cdx.json` and
/// `.spdx.json`).
pub const SBOM_DIR: &str = "/usr/share/doc/berth-image";

/// What one image holds: berth and its crates, the bundled components it carries
/// (interpreter, Python distributions, with the manifest's licence conclusions), and
/// every Debian package of its base root.
fn image_inventory(
    input: &BuildInput<'_>,
    loaded: &berth_model::LoadedManifest,
    plan: &RolePlan,
    payload_trees: &BTreeMap<String, PathBuf>,
    paths: &Paths,
    base_root: &Path,
) -> Result<berth_sbom::Inventory> {
    let app = &loaded.manifest.app;
    let subject = berth_sbom::Subject {
        name: format!("{}-{}", app.name, plan.service),
        version: app.version.clone(),
        summary: plan
            .config
            .labels
            .get("org.opencontainers.image.description")
            .cloned(),
    };
    let berth_version = input.berth_version;
    let sbom = |e: berth_sbom::SbomError| ContainerError::Invalid(e.to_string());
    let mut inventory = berth_sbom::inventory::of_parts(
        &input.extracted.join("bin/berth"),
        Path::new("/nonexistent"),
        subject,
        input.source_date_epoch,
        berth_version,
    )
    .map_err(sbom)?;
    for c in &plan.payload {
        let releases = payload_trees[c].join(relative(&paths.release));
        let part = berth_sbom::inventory::of_parts(
            Path::new("/nonexistent"),
            &releases,
            inventory.subject.clone(),
            input.source_date_epoch,
            berth_version,
        )
        .map_err(sbom)?;
        inventory.components.extend(part.components);
    }
    inventory
        .components
        .extend(berth_sbom::dpkg::debian_components(base_root).map_err(sbom)?);
    if let Some(policy) = &loaded.manifest.licences {
        berth_sbom::policy::apply(&mut inventory, policy);
    }
    Ok(inventory)
}

/// The instance skeleton of one image in `tree`: the manifest at `<prefix>/manifest`,
/// `/etc/passwd` and `/etc/group` (the base's, plus the service user), and the
/// directories the service writes. Returns the owners to give those directories.
fn skeleton_tree(
    tree: &Path,
    base_root: &Path,
    paths: &Paths,
    extracted: &Path,
    plan: &RolePlan,
) -> Result<Vec<(PathBuf, Owner)>> {
    let service = Owner {
        uid: SERVICE_UID,
        gid: SERVICE_UID,
    };
    mkdir(tree)?;
    copy_dir(
        &extracted.join("manifest"),
        &tree.join(relative(&paths.manifest_dir())),
    )?;
    let home = paths.user_home(&plan.user);
    for (file, line) in [
        (
            "etc/passwd",
            format!(
                "{}:x:{SERVICE_UID}:{SERVICE_UID}:{} service:{}:/usr/sbin/nologin\n",
                plan.user,
                plan.service,
                home.display()
            ),
        ),
        ("etc/group", format!("{}:x:{SERVICE_UID}:\n", plan.user)),
    ] {
        let base = std::fs::read_to_string(base_root.join(file))
            .map_err(io("read", &base_root.join(file)))?;
        if base.lines().any(|l| {
            l.split(':').next() == Some(plan.user.as_str())
                || l.split(':').nth(2) == Some(&SERVICE_UID.to_string())
        }) {
            return Err(ContainerError::Invalid(format!(
                "the base root's {file} has a `{}` or an id {SERVICE_UID} already: the \
                 service user would clash with it; give the component another user",
                plan.user
            )));
        }
        let dest = tree.join(file);
        mkdir(dest.parent().unwrap_or(tree))?;
        berth_host::fsutil::write_atomic(&dest, format!("{base}{line}").as_bytes(), 0o644, None)?;
    }
    let mut writable: Vec<PathBuf> = vec![
        paths.etc.clone(),
        paths.run.clone(),
        paths.log.clone(),
        paths.tmp(),
        paths.secrets.clone(),
        paths.state.clone(),
        home,
    ];
    for d in &plan.data_dirs {
        writable.push(paths.data_dir(d));
    }
    mkdir(&tree.join(relative(&paths.data)))?;
    let mut owners = Vec::new();
    for dir in writable {
        let rel = relative(&dir).to_path_buf();
        mkdir(&tree.join(&rel))?;
        owners.push((rel, service));
    }
    Ok(owners)
}

fn relative(p: &Path) -> &Path {
    p.strip_prefix("/").unwrap_or(p)
}

fn io(action: &'static str, path: &Path) -> impl Fn(std::io::Error) -> ContainerError + use<> {
    let path = path.to_owned();
    move |source| ContainerError::Io {
        action,
        path: path.clone(),
        source,
    }
}

fn mkdir(dir: &Path) -> Result<()> {
    Ok(berth_host::fsutil::ensure_dir(dir, 0o755)?)
}

fn copy_file(src: &Path, dest: &Path, mode: u32) -> Result<()> {
    let bytes = std::fs::read(src).map_err(io("read", src))?;
    mkdir(dest.parent().unwrap_or(dest))?;
    berth_host::fsutil::write_atomic(dest, &bytes, mode, None)?;
    Ok(())
}

/// A copy of the manifest directory (regular files and directories only: it came out
/// of a verified bundle, which holds nothing else).
fn copy_dir(src: &Path, dest: &Path) -> Result<()> {
    mkdir(dest)?;
    for entry in std::fs::read_dir(src).map_err(io("read", src))? {
        let entry = entry.map_err(io("read", src))?;
        let kind = entry.file_type().map_err(io("read", &entry.path()))?;
        let to = dest.join(entry.file_name());
        if kind.is_dir() {
            copy_dir(&entry.path(), &to)?;
        } else if kind.is_file() {
            copy_file(&entry.path(), &to, 0o644)?;
        }
    }
    Ok(())
}
