//! `berth image build` and `berth container …`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use berth_lifecycle::Locate;

use crate::cli::ContainerCommand;

/// The arguments of `berth image build`.
pub struct BuildArgs<'a> {
    pub bundle: &'a Path,
    pub key: &'a str,
    pub out: &'a Path,
    pub services: &'a [String],
    pub oci_archive: Option<&'a Path>,
    pub docker_archives: Option<&'a Path>,
    pub cache: &'a Path,
    pub json: bool,
}

/// Builds the bundle's images into the layout `args.out`.
#[allow(clippy::too_many_lines)] // the build, then its report in two forms
pub fn build(args: &BuildArgs<'_>) -> Result<ExitCode> {
    let key = super::release::public_key(args.key)?;
    // Trees are assembled beside the layout: the payload moves in by rename.
    let parent = absolute(args.out)?
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    berth_host::fsutil::ensure_dir(&parent, 0o755)?;
    let scratch = tempfile::Builder::new()
        .prefix(".berth-image-")
        .tempdir_in(&parent)
        .context("Failed to make a scratch directory beside the layout")?;
    let extracted = scratch.path().join("bundle");
    berth_host::fsutil::ensure_dir(&extracted, 0o700)?;
    // Every byte is checked against the bundle's signed index as it is extracted.
    let bundle = berth_release::extract(args.bundle, &[key], &extracted)?;
    let epoch = bundle
        .info
        .created
        .parse::<jiff::Timestamp>()
        .ok()
        .and_then(|t| u64::try_from(t.as_second()).ok())
        .unwrap_or(0);
    let quiet = args.json;
    let images = berth_container::build(
        &berth_container::BuildInput {
            extracted: &extracted,
            layout: args.out,
            services: args.services,
            cache: args.cache,
            work: &scratch.path().join("trees"),
            source_date_epoch: epoch,
            berth_version: &bundle.info.berth_version,
        },
        &mut |m: &str| {
            if !quiet {
                eprintln!("{m}");
            }
        },
    )?;
    if let Some(file) = args.oci_archive {
        berth_image::write_oci_archive(args.out, file)?;
    }
    let mut docker = Vec::new();
    if let Some(dir) = args.docker_archives {
        berth_host::fsutil::ensure_dir(dir, 0o755)?;
        for image in &images {
            let name = format!(
                "{}-{}-{}.docker.tar",
                bundle.info.app, image.plan.service, bundle.info.version
            );
            let file = dir.join(name);
            berth_image::write_docker_archive(
                args.out,
                &image.plan.tag,
                &image.plan.repo_tag,
                &file,
            )?;
            docker.push(file);
        }
    }
    if args.json {
        let list: Vec<serde_json::Value> = images
            .iter()
            .map(|i| {
                serde_json::json!({
                    "service": i.plan.service,
                    "tag": i.plan.tag,
                    "name": i.plan.repo_tag,
                    "manifest_digest": i.written.manifest_digest,
                    "config_digest": i.written.config_digest,
                    "packages": i.plan.packages,
                    "components": i.plan.components,
                    "layers": i.written.layers.iter().map(|l| serde_json::json!({
                        "digest": l.digest, "size": l.size, "created_by": l.created_by,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "app": bundle.info.app,
                "version": bundle.info.version,
                "layout": args.out,
                "images": list,
                "oci_archive": args.oci_archive,
                "docker_archives": docker,
            }))?
        );
    } else {
        for i in &images {
            let size: u64 = i.written.layers.iter().map(|l| l.size).sum();
            println!(
                "{}  oci:{}:{}  {}  {} layers, {}.{} MB compressed",
                i.plan.service,
                args.out.display(),
                i.plan.tag,
                i.written.manifest_digest,
                i.written.layers.len(),
                size.div_ceil(100_000) / 10,
                size.div_ceil(100_000) % 10
            );
        }
        if let Some(file) = args.oci_archive {
            println!("oci-archive: {}", file.display());
        }
        for file in &docker {
            println!("docker-archive: {}", file.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}

/// `berth container …`, inside an image.
pub fn container(loc: &Locate, command: ContainerCommand) -> Result<ExitCode> {
    let opts = berth_container::Options {
        locate: loc.clone(),
        vars: std::env::vars().collect(),
        secrets_dir: std::env::var_os("BERTH_SECRETS_DIR").map_or_else(
            || PathBuf::from(berth_container::DEFAULT_SECRETS_DIR),
            PathBuf::from,
        ),
    };
    match command {
        ContainerCommand::Run { service, then } => Ok(ExitCode::from(
            berth_container::run_service(&opts, &service, &then, &mut |m| eprintln!("{m}"))?,
        )),
        ContainerCommand::Hook {
            hook,
            when_ready: None,
        } => Ok(ExitCode::from(berth_container::run_hook(
            &opts,
            &hook,
            &mut |m| eprintln!("{m}"),
        )?)),
        ContainerCommand::Hook {
            hook,
            when_ready: Some(service),
        } => Ok(ExitCode::from(berth_container::run_hook_when_ready(
            &opts,
            &hook,
            &service,
            std::time::Duration::from_mins(10),
            &mut |m| eprintln!("{m}"),
        )?)),
        ContainerCommand::WaitHook { hook } => Ok(ExitCode::from(berth_container::wait_hook(
            &opts,
            &hook,
            &mut |m| eprintln!("{m}"),
        )?)),
        ContainerCommand::WaitFor { address, timeout } => Ok(ExitCode::from(
            berth_container::wait_for(&address, timeout, &mut |m| eprintln!("{m}")),
        )),
        ContainerCommand::Job { job } => Ok(ExitCode::from(berth_container::run_job(
            &opts,
            &job,
            &mut |m| eprintln!("{m}"),
        )?)),
        ContainerCommand::Restore {
            archive,
            key,
            wait,
            not_while,
            database,
        } => Ok(ExitCode::from(berth_container::restore::restore(
            &opts,
            (&archive, &key),
            wait,
            &not_while,
            database.as_deref(),
            &mut |m| eprintln!("{m}"),
        )?)),
        ContainerCommand::Backup { to, key, database } => Ok(ExitCode::from(
            berth_container::backup::backup(&opts, &to, &key, &database, &mut |m| {
                eprintln!("{m}");
            })?,
        )),
        ContainerCommand::Ready { service } => {
            berth_container::ready(&opts, &service)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
