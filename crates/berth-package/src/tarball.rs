//! The `.tar.gz` of a release bundle, for machines without dpkg or rpm: the same tree
//! as the `.deb`, unpacked over `/`, then `/opt/<app>/install.sh` does what the
//! package's postinst does. The site config ships as an example, which `install.sh`
//! copies to `/etc/<app>/site.toml` only when there is none: unpacking a newer archive
//! never overwrites the administrator's settings. It holds no entries for the system's
//! directories (`/usr`, `/lib`), which tar would otherwise change: a `/lib` that is a
//! symlink to `usr/lib` would become a directory, and the system would stop starting
//! programs. The unit goes to `/usr/lib/systemd/system`, which every systemd reads.

use std::path::PathBuf;

use crate::PackageError;
use crate::deb::{Content, DataFile, Deb};
use crate::debian::{DebInput, Opened, prefix};

/// An archive written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuiltTar {
    /// Where.
    pub path: PathBuf,
    /// The app.
    pub app: String,
    /// Its version.
    pub version: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// Writes `<app>-<version>-<arch>.tar.gz` of `input.bundle`, once the bundle checks
/// out against the key.
pub fn build(input: &DebInput<'_>) -> Result<BuiltTar, PackageError> {
    let Opened {
        tmp,
        manifest,
        version,
        bundle_file,
        sbom,
    } = crate::debian::open(input)?;
    let app = manifest.app.name.clone();
    let mut files: Vec<DataFile> = crate::debian::files(
        &manifest,
        input,
        &tmp.path().join("bin/berth"),
        &bundle_file,
    )
    .into_iter()
    .chain(sbom)
    .filter(|f| !f.path.starts_with("/usr/share/lintian/"))
    .map(|mut f| {
        if f.path == format!("/etc/{app}/site.toml") {
            f.path = format!("/opt/{app}/share/site.toml.example");
        }
        // Where units go on every systemd system, `/lib` merged into `/usr` or not.
        if let Some(unit) = f.path.strip_prefix("/lib/systemd/system/") {
            f.path = format!("/usr/lib/systemd/system/{unit}");
        }
        f
    })
    .collect();
    files.push(DataFile {
        path: format!("/opt/{app}/install.sh"),
        mode: 0o755,
        content: Content::Bytes(install_script(&app, &bundle_file).into_bytes()),
    });
    let deb = Deb {
        control: Vec::new(),
        conffiles: Vec::new(),
        scripts: std::collections::BTreeMap::new(),
        files,
        epoch: input.source_date_epoch,
    };
    let path = input
        .out_dir
        .join(format!("{app}-{version}-{}.tar.gz", input.architecture));
    if path.exists() {
        return Err(PackageError::Input {
            what: format!(
                "`{}` exists already: an archive is never overwritten; move it away first",
                path.display()
            ),
        });
    }
    let (parent, name) = berth_host::beneath::in_parent(&path)?;
    // Directory entries for the app's own tree only: tar makes the others as needed
    // and leaves the system's as they are.
    let opt = format!("/opt/{app}");
    let mut failed = None;
    parent
        .write_new_with(
            &name,
            &mut |file| {
                crate::deb::write_tree(&deb, file, &|dir| dir.starts_with(&opt))
                    .map(drop)
                    .map_err(|e| {
                        let text = e.to_string();
                        failed = Some(e);
                        std::io::Error::other(text)
                    })
            },
            0o644,
            None,
        )
        .map_err(|e| failed.take().unwrap_or(PackageError::Host(e)))?;
    drop(tmp);
    Ok(BuiltTar {
        bytes: std::fs::metadata(&path)
            .map(|m| m.len())
            .unwrap_or_default(),
        path,
        app,
        version,
    })
}

/// `/opt/<app>/install.sh`: the site config from the example when there is none, then
/// `up --bundle` on a first install and `upgrade apply --bundle` after (which refuses a
/// downgrade or a skipped required stop itself). Values are the app's name and the
/// bundle's file name, both checked to be plain.
fn install_script(app: &str, bundle_file: &str) -> String {
    let prefix = prefix(app);
    format!(
        r"#!/bin/sh
# Installs or upgrades the {app} instance from the bundle this archive carries:
#   tar -xzf {app}-<version>-<arch>.tar.gz -C / && /opt/{app}/install.sh
set -e
if [ ! -e /etc/{app}/site.toml ]; then
    mkdir -p /etc/{app}
    cp /opt/{app}/share/site.toml.example /etc/{app}/site.toml
fi
if [ -d {prefix}/state ]; then
    exec /usr/bin/{app}-ctl upgrade apply --bundle /opt/{app}/releases/{bundle_file} --public-key /opt/{app}/vendor.pub
fi
exec /usr/bin/{app}-ctl up --bundle /opt/{app}/releases/{bundle_file} --public-key /opt/{app}/vendor.pub
"
    )
}
