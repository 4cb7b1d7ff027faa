//! `berth release key|build|verify`: the vendor's side.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use berth_archive::PublicKey;
use berth_archive::signing::{SigningKey, parse_key_file, signing_key_file_text};

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Make a signing key: `out` (0600) and `out.pub`, neither over an existing path.
pub fn key(out: &Path, json: bool) -> Result<ExitCode> {
    let key = SigningKey::generate()?;
    let public = key.public_key().to_string();
    let mut pub_path = out.as_os_str().to_owned();
    pub_path.push(".pub");
    let pub_path = std::path::PathBuf::from(pub_path);
    if std::fs::symlink_metadata(&pub_path).is_ok() {
        bail!(
            "`{}` already exists: choose another name for the key",
            pub_path.display()
        );
    }
    let text = signing_key_file_text(&key, jiff::Timestamp::now());
    berth_host::fsutil::write_new(out, text.as_bytes(), 0o600, None)?;
    berth_host::fsutil::write_new(&pub_path, format!("{public}\n").as_bytes(), 0o644, None)?;
    if json {
        print_json(&serde_json::json!({
            "key": out,
            "public_key_file": pub_path,
            "public_key": public,
        }))?;
    } else {
        println!(
            "Created the release signing key {} (mode 0600)",
            out.display()
        );
        println!("  public key: {public}");
        println!(
            "  (also in {}: give it to administrators)",
            pub_path.display()
        );
        println!(
            "Keep the secret key off machines that do not build releases: whoever holds it \
             can sign a release every administrator who trusts this public key installs."
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Build the bundle of `manifest` into `out`.
pub fn build(
    manifest: Option<&Path>,
    key_file: &Path,
    out: &Path,
    source_date_epoch: Option<u64>,
    berth: Option<&Path>,
    no_seed: bool,
    json: bool,
) -> Result<ExitCode> {
    let Some(manifest) = manifest else {
        bail!("give the app's manifest directory: `berth --manifest DIR release build …`");
    };
    let key = signing_key(key_file)?;
    let epoch = if let Some(e) = source_date_epoch {
        e
    } else {
        if !json {
            eprintln!(
                "note: SOURCE_DATE_EPOCH is not set: the bundle carries the current time, \
                 and another build of the same inputs will differ"
            );
        }
        u64::try_from(jiff::Timestamp::now().as_second()).unwrap_or(0)
    };
    let exe = match berth {
        Some(b) => b.to_owned(),
        None => std::env::current_exe().context("Failed to find the running berth binary")?,
    };
    let built = berth_release::build(&berth_release::BuildInput {
        manifest_dir: manifest,
        berth_exe: &exe,
        key: &key,
        source_date_epoch: epoch,
        out_dir: out,
        say: &|line| {
            if !json {
                eprintln!("{line}");
            }
        },
        licences: Some(
            &|manifest: &berth_model::manifest::Manifest, payload: &Path| {
                check_licences(manifest, &exe, payload, epoch, json).map_err(Into::into)
            },
        ),
        seed: Some(&|payload: &Path, dest: &Path| {
            let running = std::env::current_exe()?;
            let progress = crate::output::Terminal::new(json);
            berth_seed::capture(manifest, payload, dest, &running, epoch, &progress)
                .map_err(Into::into)
        }),
        without_seed: no_seed,
    })?;
    if json {
        print_json(&built)?;
    } else {
        println!(
            "Built {} {}: {} ({} bytes)",
            built.app,
            built.version,
            built.path.display(),
            built.bytes
        );
        println!("  sha256: {}", built.sha256);
        println!("  signed by: {}", built.signer);
        if !built.components.is_empty() {
            println!("  built components: {}", built.components.join(", "));
        }
        if let Some(hook) = &built.seed {
            println!("  seed: hook `{hook}`");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The manifest's licence policy applied to what the bundle would carry: berth and
/// its crates, each built component's interpreter and Python distributions. Refused
/// components fail the build, named; reviews that match nothing are warned about.
fn check_licences(
    manifest: &berth_model::manifest::Manifest,
    berth: &Path,
    payload: &Path,
    epoch: u64,
    json: bool,
) -> Result<()> {
    let Some(policy) = &manifest.licences else {
        return Ok(());
    };
    let mut inventory = berth_sbom::inventory::of_parts(
        berth,
        payload,
        berth_sbom::Subject {
            name: manifest.app.name.clone(),
            version: manifest.app.version.clone(),
            summary: None,
        },
        epoch,
        env!("CARGO_PKG_VERSION"),
    )?;
    let verdict = berth_sbom::policy::apply(&mut inventory, policy);
    if !json {
        for name in &verdict.unused {
            eprintln!(
                "warning: `[licences.components.{name}]` reviews a component this release does not carry"
            );
        }
    }
    if !verdict.refused.is_empty() {
        anyhow::bail!("{}", verdict.message());
    }
    if !json {
        eprintln!(
            "Licences: {} components checked against the policy ({} accepted by review)",
            inventory.components.len(),
            verdict.accepted.len()
        );
    }
    Ok(())
}

/// What `berth package` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A `.deb`.
    Deb,
    /// A `.tar.gz`.
    Tar,
    /// An `.rpm`.
    Rpm,
}

/// `berth package deb`, `berth package tar` and `berth package rpm`.
pub fn package_bundle(
    a: &crate::cli::BundlePackageArgs,
    format: Format,
    sign_with: Option<&std::path::Path>,
) -> Result<ExitCode> {
    let key = public_key(&a.signed.public_key)?;
    // The signing key is read before anything is built: a wrong file fails fast.
    let signer = sign_with.map(super::repo::repo_key).transpose()?;
    let architecture = architecture(a.architecture.as_deref())?;
    let epoch = if let Some(e) = a.source_date_epoch {
        e
    } else {
        // The bundle's own time: the package of one bundle is then always the same.
        let (_, info) = berth_release::open(&a.signed.bundle, &[key])?;
        info.created
            .parse::<jiff::Timestamp>()
            .ok()
            .and_then(|t| u64::try_from(t.as_second()).ok())
            .unwrap_or(0)
    };
    let input = berth_package::debian::DebInput {
        bundle: &a.signed.bundle,
        key: &key,
        maintainer: &a.maintainer,
        architecture: &architecture,
        source_date_epoch: epoch,
        out_dir: &a.out,
    };
    if format == Format::Rpm {
        let built = berth_package::rpm::build(&input, signer.as_ref())?;
        if a.json {
            print_json(&built)?;
        } else {
            println!(
                "Built {} {}: {} ({} bytes)",
                built.name,
                built.version,
                built.path.display(),
                built.bytes
            );
            match &built.signed_by {
                Some(fingerprint) => println!("  signed by: {fingerprint}"),
                None => println!("  not signed (give --sign-with to sign it)"),
            }
            println!("  requires: {}", built.requires.join(", "));
            if !built.recommends.is_empty() {
                println!("  recommends: {}", built.recommends.join(", "));
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if format == Format::Tar {
        let built = berth_package::tarball::build(&input)?;
        if a.json {
            print_json(&built)?;
        } else {
            println!(
                "Built {} {}: {} ({} bytes)",
                built.app,
                built.version,
                built.path.display(),
                built.bytes
            );
            println!(
                "  install: tar -xzf {} -C / && /opt/{}/install.sh",
                built.path.display(),
                built.app
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let built = berth_package::debian::build(&input)?;
    if a.json {
        print_json(&built)?;
    } else {
        println!(
            "Built {} {}: {} ({} bytes)",
            built.package,
            built.version,
            built.path.display(),
            built.bytes
        );
        println!("  depends: {}", built.depends.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

/// The architecture given, else this machine's as dpkg names it.
fn architecture(given: Option<&str>) -> Result<String> {
    if let Some(arch) = given {
        return Ok(arch.to_owned());
    }
    let out = std::process::Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .context("Failed to run `dpkg --print-architecture`: give `--architecture`")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `berth package self`.
pub fn package_self(
    maintainer: &str,
    berth: Option<&Path>,
    out: &Path,
    arch: Option<&str>,
    source_date_epoch: Option<u64>,
    json: bool,
) -> Result<ExitCode> {
    let exe = match berth {
        Some(b) => b.to_owned(),
        None => std::env::current_exe().context("Failed to find the running berth")?,
    };
    let built = berth_package::selfpkg::build(&berth_package::selfpkg::SelfInput {
        berth: &exe,
        version: env!("CARGO_PKG_VERSION"),
        maintainer,
        architecture: &architecture(arch)?,
        source_date_epoch: source_date_epoch.unwrap_or(0),
        out_dir: out,
    })?;
    if json {
        print_json(&built)?;
    } else {
        println!(
            "Built berth {}: {} ({} bytes)",
            built.version,
            built.path.display(),
            built.bytes
        );
        println!("  depends: {}", built.depends.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

/// `berth release publish`.
pub fn publish(bundle: &Path, channel: &Path, key_file: &Path, json: bool) -> Result<ExitCode> {
    let key = signing_key(key_file)?;
    let published = berth_release::channel::publish(bundle, channel, &key)?;
    if json {
        print_json(&published)?;
    } else {
        let r = &published.release;
        if published.already {
            println!(
                "{} is in {} already (the same bytes)",
                r.version,
                channel.display()
            );
        } else {
            println!(
                "Published {} in {}: {}",
                r.version,
                channel.display(),
                r.file
            );
        }
        println!("  sha256: {}", r.sha256);
        println!("  versions: {}", published.versions.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

/// The signing key in a key file made by `berth release key`.
fn signing_key(key_file: &Path) -> Result<berth_archive::SigningKey> {
    let text = std::fs::read_to_string(key_file)
        .with_context(|| format!("Failed to read the key file `{}`", key_file.display()))?;
    let Some(key) = parse_key_file(&text)?.signing else {
        bail!(
            "`{}` holds no signing key: make one with `berth release key --out FILE`",
            key_file.display()
        );
    };
    Ok(key)
}

/// The public key given as text or as a file holding it.
pub(crate) fn public_key(given: &str) -> Result<PublicKey> {
    if given.starts_with(berth_archive::signing::PUBLIC_KEY_PREFIX) {
        return Ok(PublicKey::parse(given)?);
    }
    let text = std::fs::read_to_string(given)
        .with_context(|| format!("Failed to read the public key file `{given}`"))?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or_default();
    Ok(PublicKey::parse(line)?)
}

/// Verify `bundle` against `key`.
pub fn verify(bundle: &Path, key: &str, json: bool) -> Result<ExitCode> {
    let trusted = [public_key(key)?];
    let info = berth_release::verify(bundle, &trusted)?;
    if json {
        print_json(&info)?;
    } else {
        println!(
            "{} {}: a good release bundle ({} entries, built by berth {}, {})",
            info.app, info.version, info.entries, info.berth_version, info.created
        );
        println!("  signed by: {}", info.signer);
        if !info.payload.is_empty() {
            println!("  built components: {}", info.payload.join(", "));
        }
        if let Some(hook) = &info.seed {
            println!("  seed: hook `{hook}`");
        }
        if let Some(sha) = &info.sha256 {
            println!("  sha256: {sha}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
