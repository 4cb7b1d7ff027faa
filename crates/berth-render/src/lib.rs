//! Pure rendering: (manifest, resolved config, facts, secrets, layout) → [`DesiredState`].
//!
//! Nothing here touches the host: the same inputs always give the same desired
//! state, which is what makes `berth plan`, `reconfigure --dry-run` and snapshot
//! tests possible.
//!
//! - [`render`]: the whole desired state (files, services, jobs, hooks, dirs, users).
//! - [`secret_specs`]: the secrets to create before rendering (their values feed templates).
//! - [`Paths`]: the instance directory layout (from `berth-layout`, re-exported so
//!   a render input and its users name one type).
//! - [`escape`]: every value a template prints is escaped for its file's format
//!   (`[[files]] format`); [`secret_encodings`] lists what a secret can look like once
//!   escaped, so output shown to people can mask it.

mod desired;
mod error;
mod escape;
mod render;

pub use berth_layout::Paths;
pub use desired::{
    AppId, BackupPlan, BundleSpec, DatabasePlan, DesiredState, DirSpec, FileSpec, HookSpec,
    SecretSpec, UserSpec,
};
pub use error::RenderError;
pub use escape::{escape, secret_encodings};
pub use render::{RenderInput, render, secret_specs};
