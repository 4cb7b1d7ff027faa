//! Operating-system packages of a release bundle.
//!
//! `berth package deb` turns a verified bundle into a `.deb` ([`debian::build`]) that
//! installs:
//!
//! - `/opt/<app>/bin/berth`: the berth the bundle carries;
//! - `/opt/<app>/releases/<bundle>`: the bundle itself, and `/opt/<app>/vendor.pub`,
//!   the key it is checked with again when the maintainer scripts install it;
//! - `/usr/bin/<app>-ctl`: berth bound to this app's instance
//!   (`--prefix /var/opt/berth/<app> --config /etc/<app>/site.toml`);
//! - `/lib/systemd/system/berth-<app>.service`: the supervisor's unit, which `up`
//!   enables and starts where systemd runs;
//! - `/etc/<app>/site.toml`: the site config, a conffile (dpkg keeps the
//!   administrator's edits across upgrades);
//! - the copyright file, changelog and lintian overrides Debian's policy asks for;
//!
//! with maintainer scripts that run berth's own entry points: `preinst` refuses a
//! downgrade or a skipped required stop before dpkg changes anything; `postinst` runs
//! `up --bundle` on a first install and `upgrade apply --bundle` on an upgrade (unless
//! `/etc/<app>/skip-auto-reconfigure` exists); `prerm` stops the instance on removal.
//! Data is never removed by the package.
//!
//! The same tree also goes into an `.rpm` ([`rpm::build`], scriptlets doing what the
//! maintainer scripts do) and a `.tar.gz` with an install script ([`tarball::build`]);
//! [`selfpkg::build`] packages berth itself.

pub mod deb;
pub mod debian;
pub mod rpm;
pub mod selfpkg;
pub mod shlibs;
pub mod tarball;

use std::path::PathBuf;

/// A package could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// The bundle is not to be believed, or not a bundle.
    #[error(transparent)]
    Release(#[from] berth_release::ReleaseError),
    /// The archive layer failed.
    #[error(transparent)]
    Archive(#[from] berth_archive::ArchiveError),
    /// A file could not be written safely.
    #[error(transparent)]
    Host(#[from] berth_host::HostError),
    /// The bundle's manifest is invalid.
    #[error(transparent)]
    Manifest(#[from] berth_model::Diagnostics),
    /// A file could not be read or written.
    #[error("Failed to {action} `{}`: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An input is unusable.
    #[error("{what}")]
    Input {
        /// What is wrong and what to do.
        what: String,
    },
}

impl PackageError {
    /// An I/O error on `path` while doing `action`.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}
