//! Release bundles: what a vendor ships of one version of an app, in one signed,
//! reproducible archive, and the checks an administrator's berth makes before using
//! anything in one.
//!
//! A bundle is a berth archive ([`berth_archive`], format 3: a zstd-compressed tar with
//! a checksummed manifest and an ed25519-signed index) written reproducibly
//! ([`berth_archive::WriteOptions::source_date_epoch`]): the same inputs give the same
//! bytes on any machine and at any path. It is named `<app>-<version>.berth-release.tar.zst`
//! ([`bundle_name`]) and holds:
//!
//! - `manifest/berth.toml` and `manifest/<template>` for every template it uses: the app
//!   manifest, validated before anything is written;
//! - `bin/berth`: the berth that built it, which the bundle's instance runs;
//! - `payload/<component>/`: every bundled component built, relocatable (for Python:
//!   a copy of the interpreter with the requirements installed into it,
//!   [`berth_host::portable`]), which `berth up --bundle` moves into the release
//!   instead of building;
//! - `seed/`: for a manifest with `[seed]`, the app's database dumped right after the
//!   seed hook ran on a throwaway instance at build time, which a first
//!   `berth up --bundle` loads instead of migrating from nothing;
//!
//! and its signed index's `meta` says `kind = "release"`, the app and version, the
//! bundle format ([`BUNDLE_FORMAT`]), the berth version, and the epoch as `created`.
//!
//! A bundle is believed only once [`open`] has checked its signature against the
//! vendor's public key, its meta (a release of the app and version its name says) and
//! every byte ([`verify`]). Keys are berth's archive signing keys
//! ([`berth_archive::SigningKey`]): `berth release key` makes one.

mod build;
pub mod channel;
mod error;
mod open;
mod payload;

pub use build::{BuildInput, Built, LicenceFn, SeedFn, build, bundle_name};
pub use error::ReleaseError;
pub use open::{BundleInfo, Extracted, extract, extract_manifest, open, verify};
pub use payload::payload_dir;

/// The version of the bundle layout (what entries it has and what they mean).
pub const BUNDLE_FORMAT: u64 = 1;

/// The suffix of a bundle's file name.
pub const BUNDLE_SUFFIX: &str = ".berth-release.tar.zst";

/// Where a bundle keeps its seed: a directory holding the database dump (`seed.sql`,
/// `pg_dump --format=plain`).
pub const SEED_DIR: &str = "seed";

/// The `kind` a bundle's meta has (backups have none).
pub const KIND: &str = "release";
