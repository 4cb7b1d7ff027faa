//! Pure rendering: (manifest, resolved config, facts, secrets, layout) → [`DesiredState`].
//!
//! Nothing here touches the host: the same inputs always give the same desired
//! state, which is what makes `berth plan` and snapshot tests possible.

mod desired;

pub use desired::{
    AppId, BundleSpec, DesiredState, DirSpec, FileSpec, HookSpec, Paths, SecretSpec, UserSpec,
};
