//! Pure rendering: (manifest, resolved config, facts, secrets, layout) → [`DesiredState`].
//!
//! Nothing here touches the host: the same inputs always give the same desired
//! state, which is what makes `berth plan`, `reconfigure --dry-run` and snapshot
//! tests possible.
//!
//! - [`render`]: the whole desired state (files, services, jobs, hooks, dirs, users).
//! - [`secret_specs`]: the secrets to create before rendering (their values feed templates).
//! - [`Paths`]: the instance directory layout.
//! - [`fingerprint`]: a stable hash of a service's inputs, to restart only what changed.

mod desired;
mod error;
mod paths;
mod render;

pub use desired::{
    AppId, BundleSpec, DesiredState, DirSpec, FileSpec, HookSpec, Paths, SecretSpec, UserSpec,
};
pub use error::RenderError;
pub use render::{RenderInput, render, secret_specs};

use sha2::{Digest, Sha256};

/// A stable SHA-256 (hex) of any serialisable value, e.g. a service spec: when the
/// fingerprint changes, the service's inputs changed.
pub fn fingerprint<T: serde::Serialize>(value: &T) -> String {
    // serde_json writes struct fields in declaration order and BTreeMaps sorted, so
    // the encoding is stable across runs.
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}
