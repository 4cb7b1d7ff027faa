//! `berth k8s render`: the app's Kubernetes objects, written as a kustomize tree.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use berth_lifecycle::Locate;

/// What `berth k8s render` was asked.
pub struct RenderArgs<'a> {
    pub out: &'a Path,
    pub registry: &'a str,
    pub storage_class: Option<&'a str>,
    pub environments: &'a [String],
    pub pod_networks: &'a [String],
    /// `--secrets-from ARCHIVE --key FILE`.
    pub secrets_from: Option<(&'a Path, &'a Path)>,
    /// `--images DIR`: the layout every image named must be in.
    pub images: Option<&'a Path>,
    pub json: bool,
}

/// `berth k8s render --out DIR`: the manifest (`--manifest`, or the built-in one) and
/// the site config (`--config`, or none) rendered; every file written atomically, the
/// secrets each made once under `base/secrets/` (mode 0600, kept when they exist).
/// Nothing is written when the render fails.
pub fn render(loc: &Locate, a: &RenderArgs<'_>) -> Result<ExitCode> {
    let manifest = berth_lifecycle::instance::manifest(loc)?;
    berth_model::validate(&manifest)?;
    let (site_file, site) = match &loc.config {
        Some(path) => (
            path.display().to_string(),
            std::fs::read_to_string(path)
                .with_context(|| format!("Failed to read `{}`", path.display()))?,
        ),
        None => ("site.toml".to_owned(), String::new()),
    };
    let options = berth_k8s::Options {
        registry: a.registry.to_owned(),
        storage_class: a.storage_class.map(str::to_owned),
        environments: if a.environments.is_empty() {
            berth_k8s::Options::default().environments
        } else {
            a.environments.to_vec()
        },
        pod_networks: a.pod_networks.to_vec(),
    };
    let rendered = berth_k8s::render(&manifest, &site_file, &site, &options)?;
    if let Some(dir) = a.images {
        images_built(dir, &manifest.manifest.app.version, &rendered.images)?;
    }
    // Read and checked before anything is written.
    let taken = match a.secrets_from {
        Some((archive, key)) => {
            secrets_from(archive, key, &manifest.manifest.app.name, &rendered.secrets)?
        }
        None => Vec::new(),
    };
    let mut written = Vec::new();
    for (rel, text) in &rendered.files {
        let path = a.out.join(rel);
        if let Some(parent) = path.parent() {
            berth_host::fsutil::ensure_dir(parent, 0o755)?;
        }
        berth_host::fsutil::write_atomic(&path, text.as_bytes(), 0o644, None)?;
        written.push(path);
    }
    let removed = remove_stale(a.out, &rendered.files)?;
    let (made, replaced) = write_secrets(a.out, &rendered, &taken)?;
    let overlays: Vec<PathBuf> = options
        .environments
        .iter()
        .map(|e| a.out.join("overlays").join(e))
        .collect();
    if a.json {
        #[allow(clippy::print_stdout)]
        {
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "out": a.out,
                    "files": written,
                    "secrets_made": made,
                    "secrets_taken": taken.iter().map(|(s, _)| &s.name).collect::<Vec<_>>(),
                    "secrets_replaced": replaced,
                    "removed": removed,
                    "external": rendered.outside.iter().map(|o| serde_json::json!({
                        "role": o.role,
                        "service": o.service,
                        "address": o.address,
                    })).collect::<Vec<_>>(),
                    "skipped_hooks": rendered.skipped_hooks,
                    "overlays": overlays,
                    "workloads": rendered.workloads.iter().map(|w| serde_json::json!({
                        "name": w.name,
                        "role": w.role,
                        "kind": format!("{:?}", w.kind),
                        "services": w.services,
                        "replicas": w.replicas,
                        "init_hooks": w.init_hooks,
                    })).collect::<Vec<_>>(),
                }))?
            );
        }
    } else {
        say_rendered(
            a.out,
            &rendered,
            (&written, &removed, &made),
            (&taken, &replaced),
            &overlays,
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Every image in `images` (reference, service) is in the OCI layout `dir`, tagged
/// `<service>-<version>` as `berth image build --out` tags it.
fn images_built(dir: &Path, version: &str, images: &[(String, String)]) -> Result<()> {
    let root = berth_host::beneath::SafeDir::open_trusted(dir)
        .with_context(|| format!("Failed to open the image layout `{}`", dir.display()))?;
    let index = berth_image::layout::read_index(&root)?.ok_or_else(|| {
        anyhow::anyhow!(
            "`{}` is not an OCI image layout (no index.json): name the directory `berth image build --out` wrote",
            dir.display()
        )
    })?;
    let tags: Vec<String> = index
        .manifests
        .iter()
        .filter(|m| m.artifact_type.is_none())
        .filter_map(|m| m.annotations.get(berth_image::layout::REF_NAME).cloned())
        .collect();
    let missing: Vec<String> = images
        .iter()
        .map(|(reference, service)| {
            (
                reference,
                berth_container::plan::layout_tag(service, version),
            )
        })
        .filter(|(_, tag)| !tags.contains(tag))
        .map(|(reference, tag)| format!("`{reference}` (`{tag}`)"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "the objects name image(s) {} that `{}` does not have (it has {}): build them there with `berth image build … --out {}`, or render for the version whose images it holds",
        missing.join(", "),
        dir.display(),
        if tags.is_empty() {
            "none".to_owned()
        } else {
            tags.join(", ")
        },
        dir.display()
    )
}

/// What a render did, for a person.
#[allow(clippy::print_stdout)]
fn say_rendered(
    out: &Path,
    rendered: &berth_k8s::Rendered,
    (written, removed, made): (&[PathBuf], &[PathBuf], &[String]),
    (taken, replaced): (&[(berth_render::SecretSpec, String)], &[String]),
    overlays: &[PathBuf],
) {
    for w in &rendered.workloads {
        println!("{:<24} {:?} of {}", w.name, w.kind, w.services.join(", "));
    }
    println!(
        "Wrote {} files to {}{}",
        written.len(),
        out.display(),
        if made.is_empty() {
            String::new()
        } else {
            format!("; made secret(s) {}", made.join(", "))
        }
    );
    if !removed.is_empty() {
        println!(
            "Removed {} file(s) an earlier render wrote and this one does not",
            removed.len()
        );
    }
    for o in &rendered.outside {
        println!(
            "{:<24} elsewhere ([external] {}), reached at {}",
            o.service, o.role, o.address
        );
    }
    if !rendered.skipped_hooks.is_empty() {
        println!(
            "Not run (the external server's administrator does what they do): hook(s) {}",
            rendered.skipped_hooks.join(", ")
        );
    }
    if !taken.is_empty() {
        let names: Vec<&str> = taken.iter().map(|(s, _)| s.name.as_str()).collect();
        println!("Took secret(s) {} from the backup", names.join(", "));
    }
    if !replaced.is_empty() {
        println!(
            "Replaced secret(s) {}; the values before are under {}",
            replaced.join(", "),
            out.join("base/secrets-replaced").display()
        );
    }
    if let Some(first) = overlays.first() {
        println!("Apply with: kubectl apply -k {}", first.display());
    }
}

/// The list of the files a render wrote, under its `--out`, so the next one removes
/// those it no longer writes (a workload gone elsewhere, a restore Job that is no
/// more) and nothing else.
const WRITTEN: &str = ".berth-rendered";

/// The files the last render wrote (`out/.berth-rendered`) that this one does not,
/// removed; the list written anew. Only plain relative paths of regular files are
/// removed: the list is the out directory's, not berth's.
fn remove_stale(
    out: &Path,
    files: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<PathBuf>> {
    let list = out.join(WRITTEN);
    let before = match std::fs::read_to_string(&list) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("Failed to read `{}`", list.display())),
    };
    let mut removed = Vec::new();
    for rel in before.lines().filter(|l| !files.contains_key(*l)) {
        let plain = Path::new(rel)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain || rel.starts_with("base/secrets") {
            continue;
        }
        let path = out.join(rel);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file())
            && berth_host::fsutil::remove_file_if_exists(&path)?
        {
            removed.push(path);
        }
    }
    let mut text = String::new();
    for rel in files.keys() {
        text.push_str(rel);
        text.push('\n');
    }
    berth_host::fsutil::write_atomic(&list, text.as_bytes(), 0o644, None)?;
    Ok(removed)
}

/// The secrets under `out/base/secrets/`: those taken from a backup put in (what they
/// replace kept), the others made once, and the backup CronJob's key file made once.
/// The names made and those replaced.
fn write_secrets(
    out: &Path,
    rendered: &berth_k8s::Rendered,
    taken: &[(berth_render::SecretSpec, String)],
) -> Result<(Vec<String>, Vec<String>)> {
    let store = berth_host::secrets::SecretStore::open(out.join("base/secrets"))?;
    let replaced = take_secrets(&store, &out.join("base/secrets-replaced"), taken)?;
    let mut made: Vec<String> = rendered
        .secrets
        .iter()
        .filter(|s| !store.contains(&s.name).unwrap_or(true))
        .map(|s| s.name.clone())
        .collect();
    store.ensure(&rendered.secrets)?;
    if rendered.backup_key {
        // The backup CronJob's key file: made once, like the secrets, never replaced.
        let name = berth_k8s::BACKUP_KEY_FILE;
        if !store.contains(name)? {
            let text = berth_archive::signing::new_key_file_text(jiff::Timestamp::now())?;
            berth_host::fsutil::write_new(&store.dir().join(name), text.as_bytes(), 0o600, None)?;
            made.push(name.to_owned());
        }
    }
    Ok((made, replaced))
}

/// The archive's value of each secret the deployment has, checked against its
/// declaration; berth's own secrets of a host (the console's password) are left out, a
/// name the app does not declare is refused.
fn secrets_from(
    archive: &Path,
    key: &Path,
    app: &str,
    specs: &[berth_render::SecretSpec],
) -> Result<Vec<(berth_render::SecretSpec, String)>> {
    let values = berth_backup::secrets_from::read(archive, key, app)?;
    let own: Vec<String> = berth_render::berth_secret_specs()
        .into_iter()
        .map(|s| s.name)
        .collect();
    let mut taken = Vec::new();
    for (name, value) in values {
        if own.contains(&name) {
            continue;
        }
        let Some(spec) = specs.iter().find(|s| s.name == name) else {
            anyhow::bail!(
                "`{}` holds a secret `{}` the app does not declare: do not take secrets from it",
                archive.display(),
                name.escape_debug()
            );
        };
        spec.check_value(&value).map_err(|why| {
            anyhow::anyhow!(
                "`{}`'s secret `{name}` is not a value it can have ({why}): do not take secrets from it",
                archive.display()
            )
        })?;
        taken.push((spec.clone(), value));
    }
    Ok(taken)
}

/// Each taken secret into `store`; one that held another value is kept first under
/// `replaced/<time>/` (mode 0600). The names replaced.
fn take_secrets(
    store: &berth_host::secrets::SecretStore,
    replaced: &Path,
    taken: &[(berth_render::SecretSpec, String)],
) -> Result<Vec<String>> {
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let mut names = Vec::new();
    for (spec, value) in taken {
        match store.get(&spec.name)? {
            Some(old) if &old == value => {}
            Some(old) => {
                let kept = replaced.join(&stamp);
                berth_host::fsutil::ensure_dir(replaced, 0o700)?;
                berth_host::fsutil::ensure_dir(&kept, 0o700)?;
                berth_host::fsutil::write_new(&kept.join(&spec.name), old.as_bytes(), 0o600, None)?;
                store.put(spec, value)?;
                names.push(spec.name.clone());
            }
            None => store.put(spec, value)?,
        }
    }
    Ok(names)
}
