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
//! - [`service_changes`]: which services restart, reload, start and stop when a new
//!   supervision plan and changed files replace the old ones.
//! - [`supervision_plan`]: what the supervisor runs, with the scheduled backup job.
//! - [`hook_order`]: the order the hooks of a desired state run in;
//!   [`hook_prerequisites`]: the hooks some hooks need to have run first.
//! - [`BackupPolicy`]: the site's `[backup]` settings, typed ([`DesiredState::backup_policy`]).
//! - [`beside_config`], [`handover`]: a service started beside itself on a spare port
//!   for an online upgrade, and the front end's files that move traffic to it.
//! - [`escape`]: every value a template prints is escaped for its file's format
//!   (`[[files]] format`); [`secret_encodings`] lists what a secret can look like once
//!   escaped, so output shown to people can mask it.

mod beside;
mod changes;
mod desired;
mod error;
mod escape;
mod order;
mod policy;
mod render;
mod supervision;
mod users;

pub use berth_layout::Paths;
pub use beside::{BesideService, Handover, beside_config, beside_name, handover};
pub use changes::{ServiceChanges, service_changes};
pub use desired::{
    AppId, BackupPlan, BundleSpec, ConsoleSpec, DatabasePlan, DesiredState, DirSpec, FileSpec,
    HookSpec, HostFileKind, HostFileSpec, RerunInput, SecretSpec, UserSpec,
};
pub use error::RenderError;
pub use escape::{escape, secret_encodings};
pub use order::{hook_order, hook_prerequisites};
pub use policy::{
    AutoUpgrade, BackupPolicy, BackupTarget, Schedule, UpgradePolicy, backup_policy, console,
    upgrade_policy,
};
pub use render::{
    CONSOLE_PASSWORD_SECRET, HOOK_SECRETS_OUT, RenderInput, berth_secret_specs, derive_paths,
    render, secret_specs, secret_specs_enabled,
};
pub use supervision::{
    CONSOLE_SERVICE, SCHEDULED_BACKUP_JOB, SCHEDULED_UPGRADE_JOB, console_service,
    scheduled_backup_job, scheduled_upgrade_job, supervision_plan,
};
pub use users::{MAX_USER_NAME, UserNames};
