//! The desired state: everything converge must make true on the host, fully rendered.

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_layout::Paths;
use berth_supervisor_protocol::{JobSpec, ServiceSpec};
use serde::{Deserialize, Serialize};

/// Output of [`crate::render`]: a pure value, serialisable for `berth plan` and snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredState {
    /// App name and version.
    pub app: AppId,
    /// The instance's directory layout.
    pub paths: Paths,
    /// System users to create (only when running as root).
    pub users: Vec<UserSpec>,
    /// Directories to create, parents first.
    pub dirs: Vec<DirSpec>,
    /// Rendered config files.
    pub files: Vec<FileSpec>,
    /// Symlinks and files outside the prefix (`[[host_files]]`) of enabled components.
    pub host_files: Vec<HostFileSpec>,
    /// Distribution packages the enabled components need.
    pub packages: Vec<String>,
    /// Programs that must exist after the packages are installed: `component.binary` → path.
    pub binaries: BTreeMap<String, PathBuf>,
    /// Bundled components to build into the release directory.
    pub bundles: Vec<BundleSpec>,
    /// Secrets the instance needs (generated once by converge).
    pub secrets: Vec<SecretSpec>,
    /// Services and jobs for the supervisor.
    pub services: Vec<ServiceSpec>,
    /// Periodic jobs.
    pub jobs: Vec<JobSpec>,
    /// Addresses each service listens on (declared `listen` entries), by service.
    pub listen: BTreeMap<String, Vec<String>>,
    /// One-shot lifecycle steps, in the order they are declared.
    pub hooks: Vec<HookSpec>,
    /// Where the app answers once up (`external_url` + the manifest's `health_path`).
    pub health_url: String,
    /// Rendered `next_steps` lines.
    pub next_steps: Vec<String>,
    /// What a backup holds (the manifest's `[backup]`, rendered), if it declares one.
    pub backup: Option<BackupPlan>,
    /// How, where and how often backups are taken and kept (the site's `[backup]`).
    pub backup_policy: crate::BackupPolicy,
    /// Automatic upgrades and release retention (`[upgrade]` in the site config).
    pub upgrade_policy: crate::UpgradePolicy,
    /// Where the supervisor serves metrics (`metrics.listen`), if anywhere.
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// The services' own metrics endpoints (`metrics` of a service), by service.
    #[serde(default)]
    pub metrics_endpoints: BTreeMap<String, String>,
    /// The web console the supervisor runs (`console.listen`), if any.
    #[serde(default)]
    pub console: Option<ConsoleSpec>,
}

/// The web console as the supervisor runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleSpec {
    /// `127.0.0.1:9470`.
    pub listen: String,
    /// The path the app's web server passes on to it, `/berth/`.
    pub path: String,
}

/// App identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppId {
    /// Manifest `app.name`.
    pub name: String,
    /// Manifest `app.version`.
    pub version: String,
}

/// A system user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSpec {
    /// User (and group) name.
    pub name: String,
    /// Home directory.
    pub home: PathBuf,
}

/// A directory with owner and mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirSpec {
    /// Absolute path.
    pub path: PathBuf,
    /// Owning user; `None` = the user running berth.
    pub owner: Option<String>,
    /// Permission bits, e.g. `0o750` (serialised as `"0750"`).
    #[serde(with = "octal_mode")]
    pub mode: u32,
}

/// A rendered config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSpec {
    /// Absolute path.
    pub path: PathBuf,
    /// Rendered content. May contain secret values: mask before showing.
    pub content: String,
    /// Owning user; `None` = the user running berth.
    pub owner: Option<String>,
    /// Permission bits (serialised as `"0640"`).
    #[serde(with = "octal_mode")]
    pub mode: u32,
    /// Services restarted when this file changes.
    pub restarts: Vec<String>,
    /// Services reloaded when this file changes.
    pub reloads: Vec<String>,
}

/// A symlink or a file outside the prefix, belonging to a component: present while
/// the component is enabled, removed once it is not (or the entry is gone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFileSpec {
    /// Absolute path, outside the prefix (see [`berth_model::check_host_path`]).
    pub path: PathBuf,
    /// The component it belongs to.
    pub component: String,
    /// What is there.
    pub kind: HostFileKind,
}

/// What a host file is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostFileKind {
    /// A symlink to `target`, an absolute path inside the prefix.
    Link {
        /// Where it points.
        target: PathBuf,
    },
    /// A regular file owned by root (by the user running berth without root).
    File {
        /// The content: the rendered `[[files]]` entry it copies. May hold secrets.
        content: String,
        /// Permission bits (serialised as `"0644"`).
        #[serde(with = "octal_mode")]
        mode: u32,
        /// The `[[files]]` path it copies (relative to `<prefix>/etc`).
        copy_of: String,
    },
}

/// A secret to generate once, or to take once from the hook that makes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretSpec {
    /// Name (`secrets.<name>` in templates); stored as `<prefix>/secrets/<name>`.
    pub name: String,
    /// Number of characters berth generates (0 for a secret a hook makes).
    pub length: usize,
    /// Characters to draw from (already expanded from names like `alphanumeric`). For a
    /// secret a hook makes: the characters its value may have, empty for any character
    /// but control characters.
    pub alphabet: String,
    /// Owner of the stored file; `None` = the user running berth.
    pub owner: Option<String>,
    /// The hook that makes it (`from_hook`): berth generates nothing, and takes the value
    /// the hook hands over ([`HookSpec::secrets_out`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_hook: Option<String>,
}

impl SecretSpec {
    /// The most bytes a hook may hand over for one secret.
    pub const MAX_HOOK_VALUE: usize = 4096;

    /// Whether `value` is one this secret can have, else why not (never quoting the
    /// value): a generated one is non-empty and only has characters of its alphabet; a
    /// hook's is one line of at most [`SecretSpec::MAX_HOOK_VALUE`] bytes, non-empty,
    /// without control characters (no newline, tab, NUL, escape), and only characters
    /// of its alphabet when it declares one.
    pub fn check_value(&self, value: &str) -> Result<(), String> {
        if value.is_empty() {
            return Err("it is empty".to_owned());
        }
        if self.from_hook.is_some() {
            if value.len() > Self::MAX_HOOK_VALUE {
                return Err(format!("it is longer than {} bytes", Self::MAX_HOOK_VALUE));
            }
            if value.chars().any(char::is_control) {
                return Err(
                    "it has a control character (a line break, a tab, NUL, an escape): \
                     a secret is one line of text"
                        .to_owned(),
                );
            }
        }
        if (self.from_hook.is_none() || !self.alphabet.is_empty())
            && !value.chars().all(|c| self.alphabet.contains(c))
        {
            return Err("it has characters outside its alphabet".to_owned());
        }
        Ok(())
    }
}

/// A bundled component to build into the release directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleSpec {
    /// Component name.
    pub component: String,
    /// Where it is built: `<release>/<component>`.
    pub dest: PathBuf,
    /// What to build.
    pub build: berth_model::manifest::BundleBuild,
}

/// A rendered one-shot lifecycle step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookSpec {
    /// Name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// What exits 0 when it has nothing left to do, with the same environment and
    /// working directory.
    pub check: Option<Vec<String>>,
    /// Environment (may hold secrets).
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// User to run as.
    pub user: Option<String>,
    /// When it runs.
    pub when: berth_model::manifest::HookWhen,
    /// Services that must be ready first (of enabled components).
    pub after: Vec<String>,
    /// Services that wait for it (of enabled components).
    pub before: Vec<String>,
    /// Hooks that run before it (`after = ["hook:…"]`), among the hooks of this state:
    /// one of a disabled component is dropped. See [`crate::hook_order`].
    pub after_hooks: Vec<String>,
    /// Hooks that run after it (`before = ["hook:…"]`), among the hooks of this state.
    pub before_hooks: Vec<String>,
    /// For a `when = "change"` hook, the fingerprint of what it follows:
    /// `sha256:<hex>` of [`HookSpec::rerun_inputs`]. The hook is due when this differs
    /// from the key it last ran with. `None` for every other `when`.
    pub rerun_key: Option<String>,
    /// What [`HookSpec::rerun_key`] is made of, one entry per distinct `on` entry,
    /// sorted (empty unless `when = "change"`): shows *what* changed.
    pub rerun_inputs: Vec<RerunInput>,
    /// Kill after this long.
    pub timeout: std::time::Duration,
    /// Output goes to `<log>/hooks/<name>.log`.
    pub log_file: PathBuf,
    /// What the hook makes, inside `<prefix>/data`: partial when the hook did not finish.
    pub creates: Option<PathBuf>,
    /// The secrets it makes (`from_hook`), by name: it writes each to
    /// `$BERTH_SECRETS_OUT/<name>` ([`Paths::hook_secrets_out`]), and berth moves them
    /// into the secret store once it succeeded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets_out: Vec<String>,
}

/// One input of a hook's fingerprint: an `on` entry and the value it has now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RerunInput {
    /// The `on` entry as written, e.g. `package:mediawiki`, `setting:db.name`.
    pub source: String,
    /// Its value: a package's installed version, `sha256:<hex>` of a rendered file's
    /// content, a setting's value as JSON, the app version. `None` when there is none:
    /// a package that is not installed, a file that is not rendered (its component is
    /// off).
    pub value: Option<String>,
}

/// The manifest's `[backup]`, rendered against the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupPlan {
    /// Data directories copied into the archive: (path relative to `<prefix>/data`,
    /// absolute path).
    pub data_dirs: Vec<(String, PathBuf)>,
    /// Services paused while the data directories are copied (enabled ones only).
    pub quiesce: Vec<String>,
    /// The database, if the app has one.
    pub database: Option<DatabasePlan>,
}

/// How to reach the app's database for dump and restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabasePlan {
    /// Engine.
    pub kind: berth_model::manifest::DatabaseKind,
    /// The service that serves it.
    pub service: String,
    /// Host or socket directory.
    pub host: String,
    /// Port.
    pub port: String,
    /// Database name.
    pub name: String,
    /// Owning role.
    pub owner: String,
    /// Directory of `pg_dump`, `pg_restore`, `psql`.
    pub bin_dir: PathBuf,
    /// User the tools run as (the service's component user; `None`: berth's own).
    pub user: Option<String>,
    /// The `HOME` the tools get: that user's home under the prefix (`None`: the
    /// passwd entry's).
    #[serde(default)]
    pub home: Option<PathBuf>,
    /// Hooks that must have run before a dump is restored.
    pub restore_after: Vec<String>,
}

/// Modes read as `"0750"` in plans and snapshots, not as decimal 488.
mod octal_mode {
    use serde::{Deserialize, Deserializer, Serializer};

    // serde's `serialize_with` passes the field by reference.
    #[allow(clippy::trivially_copy_pass_by_ref)]
    pub fn serialize<S: Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{mode:04o}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let text = String::deserialize(d)?;
        u32::from_str_radix(&text, 8).map_err(serde::de::Error::custom)
    }
}
