//! `berth repo key|apt`: the vendor's package repositories.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use berth_repo::openpgp::RepoKey;

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Seconds since the epoch, now.
pub fn now() -> u32 {
    u32::try_from(jiff::Timestamp::now().as_second()).unwrap_or(u32::MAX)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Make a repository key: `out` (0600), `out.gpg` and `out.asc`, none over an existing path.
pub fn key(out: &Path, name: &str, json: bool) -> Result<ExitCode> {
    let keyring = with_suffix(out, ".gpg");
    let armored = with_suffix(out, ".asc");
    for p in [out, &keyring, &armored] {
        if std::fs::symlink_metadata(p).is_ok() {
            bail!(
                "`{}` already exists: choose another name for the key",
                p.display()
            );
        }
    }
    let key = RepoKey::generate(name, now())?;
    let public = key.public();
    berth_host::fsutil::write_new(out, key.to_armored()?.as_bytes(), 0o600, None)?;
    berth_host::fsutil::write_new(&keyring, &public.keyring()?, 0o644, None)?;
    berth_host::fsutil::write_new(&armored, public.armored()?.as_bytes(), 0o644, None)?;
    if json {
        print_json(&serde_json::json!({
            "key": out,
            "keyring": keyring,
            "armored": armored,
            "fingerprint": public.fingerprint(),
        }))?;
    } else {
        println!(
            "Created the repository signing key {} (mode 0600)",
            out.display()
        );
        println!("  fingerprint: {}", public.fingerprint());
        println!(
            "  keyring for apt's signed-by: {} (armored: {})",
            keyring.display(),
            armored.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The repository key in `key_file`.
pub(crate) fn repo_key(key_file: &Path) -> Result<RepoKey> {
    let text = std::fs::read_to_string(key_file)
        .with_context(|| format!("Failed to read the key file `{}`", key_file.display()))?;
    RepoKey::from_armored(&text)
        .with_context(|| format!("`{}` is not a repository key", key_file.display()))
}

/// Add `rpms` to the yum repository in `dir`.
pub fn yum(
    dir: &Path,
    rpms: &[PathBuf],
    key_file: &Path,
    date: u32,
    json: bool,
) -> Result<ExitCode> {
    let key = repo_key(key_file)?;
    let added = berth_repo::yumrepo::add(dir, rpms, &key, date)?;
    if json {
        print_json(&added)?;
        return Ok(ExitCode::SUCCESS);
    }
    for p in &added.added {
        if p.already {
            println!("{} is in the repository already (the same bytes)", p.nevra);
        } else {
            println!("Added {}: {}", p.nevra, p.location);
        }
    }
    println!("{} (signed by {}) holds:", dir.display(), added.fingerprint);
    for h in &added.holds {
        println!("  {h}");
    }
    println!(
        "Clients: a file in /etc/yum.repos.d/ with
  baseurl=<the repository's address>
  \
         repo_gpgcheck=1
  gpgkey=<the repository's address>/{}",
        berth_repo::yumrepo::KEY_FILE
    );
    Ok(ExitCode::SUCCESS)
}

/// Add `debs` to the apt repository in `dir`.
pub fn apt(
    dir: &Path,
    debs: &[PathBuf],
    key_file: &Path,
    meta: &berth_repo::apt::Meta,
    json: bool,
) -> Result<ExitCode> {
    let key = repo_key(key_file)?;
    let added = berth_repo::aptrepo::add(dir, debs, &key, meta)?;
    if json {
        print_json(&added)?;
        return Ok(ExitCode::SUCCESS);
    }
    for p in &added.added {
        if p.already {
            println!(
                "{} {} ({}) is in the repository already (the same bytes)",
                p.package, p.version, p.architecture
            );
        } else {
            println!(
                "Added {} {} ({}): {}",
                p.package, p.version, p.architecture, p.filename
            );
        }
    }
    println!(
        "{} (suite {}, signed by {}) holds:",
        dir.display(),
        added.suite,
        added.fingerprint
    );
    for h in &added.holds {
        println!("  {h}");
    }
    println!(
        "Clients: put {}/{} in /usr/share/keyrings/, then in /etc/apt/sources.list.d/:\n  \
         deb [signed-by=/usr/share/keyrings/{}] <the repository's address> {} {}",
        dir.display(),
        berth_repo::aptrepo::KEYRING,
        berth_repo::aptrepo::KEYRING,
        added.suite,
        added.component
    );
    Ok(ExitCode::SUCCESS)
}
