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
    let mut written = Vec::new();
    for (rel, text) in &rendered.files {
        let path = a.out.join(rel);
        if let Some(parent) = path.parent() {
            berth_host::fsutil::ensure_dir(parent, 0o755)?;
        }
        berth_host::fsutil::write_atomic(&path, text.as_bytes(), 0o644, None)?;
        written.push(path);
    }
    let store = berth_host::secrets::SecretStore::open(a.out.join("base/secrets"))?;
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
        #[allow(clippy::print_stdout)]
        {
            for w in &rendered.workloads {
                println!("{:<24} {:?} of {}", w.name, w.kind, w.services.join(", "));
            }
            println!(
                "Wrote {} files to {}{}",
                written.len(),
                a.out.display(),
                if made.is_empty() {
                    String::new()
                } else {
                    format!("; made secret(s) {}", made.join(", "))
                }
            );
            if let Some(first) = overlays.first() {
                println!("Apply with: kubectl apply -k {}", first.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
