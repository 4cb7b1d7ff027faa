//! berth's own `.deb`: the binary in `/usr/bin/berth`, for vendors' build machines and
//! administrators who run berth without an app package.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::PackageError;
use crate::deb::{Content, DataFile, Deb};
use crate::debian::BuiltDeb;

/// What berth's package is made from.
#[derive(Debug)]
pub struct SelfInput<'a> {
    /// The berth binary to ship.
    pub berth: &'a Path,
    /// Its version (`Version:`).
    pub version: &'a str,
    /// `Maintainer:` (`Name <address>`).
    pub maintainer: &'a str,
    /// `Architecture:` of the binary.
    pub architecture: &'a str,
    /// Every entry's time.
    pub source_date_epoch: u64,
    /// Where the package is written.
    pub out_dir: &'a Path,
}

/// The files of berth's package: the binary, the copyright file, the changelog and
/// lintian's overrides.
fn files(binary: &Path, input: &SelfInput<'_>, year: i16, date: &str) -> Vec<DataFile> {
    vec![
        DataFile {
            path: "/usr/bin/berth".to_owned(),
            mode: 0o755,
            content: Content::File(binary.to_owned()),
        },
        DataFile {
            path: "/usr/share/doc/berth/copyright".to_owned(),
            mode: 0o644,
            content: Content::Bytes(
                format!(
                    "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
                     Upstream-Name: berth\n\n\
                     Files: *\n\
                     Copyright: {year} the berth authors\n\
                     License: Apache-2.0\n \
                     On Debian systems, the full text of the Apache License, Version 2.0\n \
                     is in /usr/share/common-licenses/Apache-2.0.\n"
                )
                .into_bytes(),
            ),
        },
        DataFile {
            path: "/usr/share/doc/berth/changelog.gz".to_owned(),
            mode: 0o644,
            content: Content::Bytes(crate::deb::gzip(
                format!(
                    "berth ({}) unstable; urgency=medium\n\n  * Release {}.\n\n -- {}  {date}\n",
                    input.version, input.version, input.maintainer
                )
                .as_bytes(),
            )),
        },
        DataFile {
            path: "/usr/share/lintian/overrides/berth".to_owned(),
            mode: 0o644,
            content: Content::Bytes(
                b"# `berth help` and docs/commands.md document every command.\n\
                  berth: no-manual-page [usr/bin/berth]\n\
                  # /var/lib/dpkg is in berth's list of paths an app manifest may never\n\
                  # write to; berth reads the package database through dpkg-query only.\n\
                  berth: uses-dpkg-database-directly [usr/bin/berth]\n"
                    .to_vec(),
            ),
        },
    ]
}

/// Strips `binary` in place as Debian's packaging tools do (`dh_strip`): no symbols,
/// debug information or build notes (a release build keeps line tables for backtraces).
fn strip(binary: &Path) -> Result<(), PackageError> {
    let out = std::process::Command::new("strip")
        .args([
            "--strip-unneeded",
            "--remove-section=.comment",
            "--remove-section=.note",
        ])
        .arg(binary)
        .output()
        .map_err(|e| PackageError::Input {
            what: format!("Failed to run `strip` ({e}): install binutils"),
        })?;
    if !out.status.success() {
        return Err(PackageError::Input {
            what: format!(
                "`strip` failed on the berth binary: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

/// Writes `berth_<version>_<arch>.deb`, with the binary stripped.
pub fn build(input: &SelfInput<'_>) -> Result<BuiltDeb, PackageError> {
    crate::debian::check_plain("version", input.version, true)?;
    crate::debian::check_plain("architecture", input.architecture, false)?;
    crate::debian::check_maintainer(input.maintainer)?;
    // The libraries the binary needs, found as for an app's components: a tree that
    // holds only this binary.
    let tree = tempfile::tempdir().map_err(PackageError::io("create", std::env::temp_dir()))?;
    let binary = tree.path().join("berth");
    berth_host::fsutil::install_copy(input.berth, &binary, 0o755)?;
    strip(&binary)?;
    let depends = crate::shlibs::library_packages(tree.path())?;
    let (year, date) = crate::debian::dates(input.source_date_epoch);
    let control = vec![
        ("Package".to_owned(), "berth".to_owned()),
        ("Version".to_owned(), input.version.to_owned()),
        ("Architecture".to_owned(), input.architecture.to_owned()),
        ("Maintainer".to_owned(), input.maintainer.to_owned()),
        ("Depends".to_owned(), depends.join(", ")),
        ("Section".to_owned(), "admin".to_owned()),
        ("Priority".to_owned(), "optional".to_owned()),
        (
            "Description".to_owned(),
            format!(
                "installs, configures, runs, upgrades and backs up self-managed apps\n{}",
                crate::debian::wrap(
                    "berth takes an app's manifest and a site config and does the rest: \
                     system packages, users, rendered config files, secrets, a supervisor \
                     for the app's services, verified backups and restores, upgrades \
                     through required stops. For the vendor it builds signed release \
                     bundles, packages and signed repositories."
                )
            ),
        ),
    ];
    let files = files(&binary, input, year, &date);
    let deb = Deb {
        control,
        conffiles: Vec::new(),
        scripts: BTreeMap::new(),
        files,
        epoch: input.source_date_epoch,
    };
    let path: PathBuf = input.out_dir.join(format!(
        "berth_{}_{}.deb",
        input.version, input.architecture
    ));
    if path.exists() {
        return Err(PackageError::Input {
            what: format!(
                "`{}` exists already: a package is never overwritten; move it away first",
                path.display()
            ),
        });
    }
    crate::deb::write(&deb, &path)?;
    drop(tree);
    Ok(BuiltDeb {
        bytes: std::fs::metadata(&path)
            .map(|m| m.len())
            .unwrap_or_default(),
        path,
        package: "berth".to_owned(),
        version: input.version.to_owned(),
        depends,
    })
}
