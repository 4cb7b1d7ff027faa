//! The app manifest: what the vendor ships (`berth.toml` plus templates).
//!
//! The types mirror the file one to one and reject unknown keys. Semantic checks
//! (dependency cycles, references to undeclared settings, services or components)
//! live in [`crate::validate`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A whole app manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Name, version and description of the app.
    pub app: AppMeta,
    /// Where each part of the app comes from.
    #[serde(default)]
    pub components: BTreeMap<String, Component>,
    /// Settings the administrator may set, grouped: `settings.<group>.<key>`.
    #[serde(default)]
    pub settings: BTreeMap<String, BTreeMap<String, SettingDecl>>,
    /// Named sets of setting values (`profile = "small"` in the site config).
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
    /// Secrets generated once per instance and kept in the secret store.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretDecl>,
    /// Config files rendered from templates.
    #[serde(default)]
    pub files: Vec<FileDecl>,
    /// Files and symlinks outside the prefix (`/etc/nginx/sites-enabled/app.conf`).
    #[serde(default)]
    pub host_files: Vec<HostFileDecl>,
    /// Long-running services.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceDecl>,
    /// Periodic jobs.
    #[serde(default)]
    pub jobs: BTreeMap<String, JobDecl>,
    /// One-shot lifecycle steps (database init, migrations, first admin user).
    #[serde(default)]
    pub hooks: BTreeMap<String, HookDecl>,
    /// What a backup holds and how writers are quiesced while it is taken.
    #[serde(default)]
    pub backup: Option<BackupDecl>,
    /// How an instance gets to this version from older ones: required stops, the
    /// oldest version it upgrades from, which hops are online, settings renamed or
    /// removed.
    #[serde(default)]
    pub upgrade: UpgradeDecl,
    /// A database migrated once, at release-build time, that first installs from a
    /// release bundle load instead of migrating from nothing.
    #[serde(default)]
    pub seed: Option<SeedDecl>,
    /// The licence policy every release of this app must pass: which licences the
    /// components it ships may carry, and the vendor's conclusions where a component's
    /// own declaration is not enough.
    #[serde(default)]
    pub licences: Option<LicencesDecl>,
    /// What the host must have before `up` or `upgrade` changes anything: CPUs,
    /// memory, free disk, kernel, distribution, programs, clock, package versions.
    #[serde(default)]
    pub preflight: PreflightDecl,
    /// What support bundles and error reports take out besides berth's own rules.
    #[serde(default)]
    pub diagnose: DiagnoseDecl,
    /// The kinds of node the app can be spread over (`database`, `web`, ...): what each
    /// runs, what comes up first, how each is made highly available and grows.
    #[serde(default)]
    pub roles: BTreeMap<String, crate::topology::RoleDecl>,
    /// From users to requests per second, and the size of one node carrying it all.
    #[serde(default)]
    pub sizing: crate::topology::SizingDecl,
    /// The text this manifest was parsed from, so [`crate::validate`] can point at lines.
    /// Not a key of `berth.toml`: set by [`crate::LoadedManifest::load`] and
    /// [`crate::LoadedManifest::from_sources`]; empty when built another way (then
    /// diagnostics name the file without a position).
    #[serde(skip)]
    pub source_text: String,
}

/// `[app]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppMeta {
    /// Short machine name, `[a-z][a-z0-9-]*`: used in paths, user names and archive names.
    pub name: String,
    /// The app's version (what the bundled components are pinned to).
    pub version: String,
    /// One line saying what the app is.
    #[serde(default)]
    pub summary: String,
    /// The URL the administrator is sent to by default (`http://127.0.0.1:8080/`).
    #[serde(default)]
    pub default_external_url: Option<String>,
    /// Where the app answers once up, relative to `external_url`, e.g. `/login/`.
    #[serde(default)]
    pub health_path: Option<String>,
    /// Lines printed after `berth up` succeeds (templates, e.g. naming a secret's file).
    #[serde(default)]
    pub next_steps: Vec<String>,
    /// Environment every service, job and hook of the app gets (values are templates).
    /// A component's `environment` wins over it, and a process's own over both.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
}

/// `[components.<name>]`: where a part of the app comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    /// `system` (distribution packages) or `bundled` (built into the app's release).
    pub source: ComponentSource,
    /// Distribution packages that provide it (`system`), e.g. `["postgresql-15"]`.
    #[serde(default)]
    pub packages: Vec<String>,
    /// The same for RPM-based systems (`Requires:` of `berth package rpm`), e.g.
    /// `["postgresql-server"]`.
    #[serde(default)]
    pub rpm_packages: Vec<String>,
    /// Named programs it provides: name → absolute path (checked after install).
    #[serde(default)]
    pub binaries: BTreeMap<String, String>,
    /// How a `bundled` component is built.
    #[serde(default)]
    pub build: Option<BundleBuild>,
    /// System user its services run as, and owner of its data directories.
    /// Only used when berth runs as root; otherwise everything runs as the invoking user.
    #[serde(default)]
    pub user: Option<String>,
    /// Data directories it owns, relative to `<prefix>/data` (kept across upgrades, backed up).
    /// Each is a path (mode 0750) or `{ path = "static", mode = "0755" }`.
    #[serde(default)]
    pub data_dirs: Vec<DataDir>,
    /// Whether the administrator may switch it off (`[<component>] enabled = false`).
    #[serde(default)]
    pub optional: bool,
    /// Environment every service, job and hook of the component gets (templates). Wins
    /// over `[app] environment`; a process's own `environment` wins over it.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
}

/// A data directory a component owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DataDir {
    /// A path relative to `<prefix>/data`, created with mode 0750.
    Path(String),
    /// A path with its own mode, e.g. files another component's user must read.
    WithMode {
        /// Relative to `<prefix>/data`.
        path: String,
        /// Octal mode as a string, e.g. `"0755"`.
        mode: String,
    },
}

impl DataDir {
    /// The default mode of a data directory: owner and group only.
    pub const DEFAULT_MODE: &str = "0750";

    /// The path relative to `<prefix>/data`.
    pub fn path(&self) -> &str {
        match self {
            Self::Path(p) | Self::WithMode { path: p, .. } => p,
        }
    }

    /// The mode as written (default `0750`).
    pub fn mode(&self) -> &str {
        match self {
            Self::Path(_) => Self::DEFAULT_MODE,
            Self::WithMode { mode, .. } => mode,
        }
    }
}

/// Where a component comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentSource {
    /// Installed from the host's package manager.
    System,
    /// Built into the app's release directory by berth.
    Bundled,
}

/// How a bundled component is built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BundleBuild {
    /// A Python virtual environment made from pinned requirements.
    PythonVenv {
        /// Interpreter versions accepted, PEP 440 style: `>=3.12`, `>=3.12,<3.14`.
        python: String,
        /// Pinned requirements, e.g. `["netbox==4.7.3", "gunicorn==23.0.0"]`.
        requirements: Vec<String>,
    },
}

/// `[settings.<group>.<key>]`: one typed setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingDecl {
    /// The value's type.
    #[serde(rename = "type")]
    pub kind: SettingType,
    /// What it does, for `berth config show` and the docs.
    #[serde(default)]
    pub description: String,
    /// A literal default.
    #[serde(default)]
    pub default: Option<toml::Value>,
    /// A default derived from host facts and the instance's directories: a minijinja
    /// *expression* such as `[facts.cpus * 2 + 1, 9] | min` or `paths.data ~ '/media'`
    /// (only `facts.*` and `paths.*`). Used when `default` is absent.
    #[serde(default)]
    pub derive: Option<String>,
    /// Smallest allowed value (`int`, `port`, `size` in bytes, `duration` in seconds).
    #[serde(default)]
    pub min: Option<i64>,
    /// Largest allowed value.
    #[serde(default)]
    pub max: Option<i64>,
    /// Allowed values (`string`).
    #[serde(default, rename = "enum")]
    pub choices: Option<Vec<String>>,
    /// Regular expression the whole value must match (`string`).
    #[serde(default)]
    pub pattern: Option<String>,
}

/// Types a setting can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettingType {
    /// Any string (see `enum` and `pattern`).
    String,
    /// A 64-bit integer (see `min`/`max`).
    Int,
    /// `true` or `false`.
    Bool,
    /// A TCP port, 1–65535.
    Port,
    /// A byte size: an integer or a string such as `"128MB"`, `"1GiB"`.
    Size,
    /// A duration: a string such as `"30s"`, `"5m"`.
    Duration,
    /// An absolute `http://` or `https://` URL.
    Url,
    /// A list of strings.
    StringList,
}

/// `[profiles.<name>]`: preset values for settings, `"<group>.<key>" = value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// What the profile is for.
    #[serde(default)]
    pub description: String,
    /// `"<group>.<key>" = value`.
    #[serde(default)]
    pub values: BTreeMap<String, toml::Value>,
    /// The most memory the whole stack should take with this profile (the sum of every
    /// service's proportional set size): `berth status` reports against it.
    #[serde(default)]
    pub memory_budget: Option<String>,
}

/// `[secrets.<name>]`: a value generated once (or handed over once by a hook) and
/// stored mode 0600.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretDecl {
    /// What it protects.
    #[serde(default)]
    pub description: String,
    /// Number of characters berth generates (default [`SecretDecl::DEFAULT_LENGTH`]).
    /// Not with `from_hook`: a hook's value has the length the hook gives it.
    #[serde(default)]
    pub length: Option<usize>,
    /// `alphanumeric`, `hex`, `ascii-printable` (no quotes or backslash), or a literal set
    /// of characters (default [`SecretDecl::DEFAULT_ALPHABET`]). With `from_hook`, the
    /// characters the hook's value may have (default: any but control characters).
    #[serde(default)]
    pub alphabet: Option<String>,
    /// Component whose user may read it (owner of the stored file); none means root/self.
    #[serde(default)]
    pub readable_by: Option<String>,
    /// The hook (`when = "once"`) that makes the value instead of berth: it writes it to
    /// `$BERTH_SECRETS_OUT/<name>`, and berth moves it into the secret store. Templates
    /// cannot use such a secret (it exists only once that hook has run).
    #[serde(default)]
    pub from_hook: Option<String>,
}

impl SecretDecl {
    /// Characters berth generates when `length` is not given.
    pub const DEFAULT_LENGTH: usize = 32;
    /// What berth generates from when `alphabet` is not given.
    pub const DEFAULT_ALPHABET: &'static str = "alphanumeric";

    /// The number of characters berth generates.
    pub fn length(&self) -> usize {
        self.length.unwrap_or(Self::DEFAULT_LENGTH)
    }
}

/// `[[files]]`: a config file rendered from a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDecl {
    /// Destination, relative to `<prefix>/etc`.
    pub path: String,
    /// Template, relative to the manifest's directory.
    pub template: String,
    /// The file's syntax: decides how every value the template prints is escaped.
    pub format: FileFormat,
    /// Component whose user owns the file; none means root/self.
    #[serde(default)]
    pub owner: Option<String>,
    /// Octal mode as a string, e.g. `"0640"`.
    #[serde(default = "default_file_mode")]
    pub mode: String,
    /// Services restarted when the file changes.
    #[serde(default)]
    pub restarts: Vec<String>,
    /// Services reloaded (their reload signal) when the file changes.
    #[serde(default)]
    pub reloads: Vec<String>,
    /// Only rendered when this component is enabled.
    #[serde(default)]
    pub component: Option<String>,
}

/// `[[host_files]]`: a symlink or a file outside the prefix, where another program
/// looks for it (a web server's site directory, `/etc/cron.d`). It belongs to a
/// component: it exists while that component is enabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostFileDecl {
    /// Absolute path outside `<prefix>`, never a system directory (checked by
    /// [`crate::validate`]).
    pub path: String,
    /// The component it belongs to.
    pub component: String,
    /// A symlink to this path (template), which must be inside `<prefix>`.
    #[serde(default)]
    pub link_to: Option<String>,
    /// A regular file with the rendered content of the `[[files]]` entry whose `path`
    /// this is.
    #[serde(default)]
    pub copy_of: Option<String>,
    /// Mode of a `copy_of` file (octal string); default: that entry's mode.
    #[serde(default)]
    pub mode: Option<String>,
}

/// The syntax of a rendered file. Every value a template prints with `{{ ... }}` is
/// escaped for it, so a setting cannot add a directive, a line or code to the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// nginx configuration: a string is written bare when it is a plain word, else in
    /// double quotes; `$` is refused (nginx cannot escape it).
    Nginx,
    /// Python source: every value is a Python literal (`'text'`, `3`, `True`, `None`).
    Python,
    /// PHP source: every value is a PHP literal (`"text"` with `$` escaped, `3`,
    /// `true`, `null`, `[...]` arrays).
    Php,
    /// JSON: every value is a JSON literal.
    Json,
    /// YAML: every value is a JSON literal, which YAML reads as the same value.
    Yaml,
    /// POSIX shell: a string is written bare when it is a plain word, else in single quotes.
    Shell,
    /// `postgresql.conf`: a string is written bare when it is a plain word, else in
    /// single quotes.
    Postgresql,
    /// `redis.conf`: a string is written bare when it is a plain word, else in double
    /// quotes with `\x` escapes.
    Redis,
    /// `haproxy.cfg`: a string is written bare when it is a plain word, else in single
    /// quotes (where HAProxy expands nothing); a single quote or a control character is
    /// refused.
    Haproxy,
    /// Line-based `key = value` text without quoting (`ini`, `pg_hba.conf`): values are
    /// written as they are, but a control character (a line break) is refused.
    #[serde(alias = "ini")]
    Conf,
    /// No escaping at all: the template is responsible for every value (use a filter).
    Plain,
}

impl FileFormat {
    /// Every format, in the order the docs list them.
    pub const ALL: [FileFormat; 11] = [
        FileFormat::Nginx,
        FileFormat::Python,
        FileFormat::Php,
        FileFormat::Json,
        FileFormat::Yaml,
        FileFormat::Shell,
        FileFormat::Postgresql,
        FileFormat::Redis,
        FileFormat::Haproxy,
        FileFormat::Conf,
        FileFormat::Plain,
    ];

    /// The name written in `format = "..."`.
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::Nginx => "nginx",
            FileFormat::Python => "python",
            FileFormat::Php => "php",
            FileFormat::Json => "json",
            FileFormat::Yaml => "yaml",
            FileFormat::Shell => "shell",
            FileFormat::Postgresql => "postgresql",
            FileFormat::Redis => "redis",
            FileFormat::Haproxy => "haproxy",
            FileFormat::Conf => "conf",
            FileFormat::Plain => "plain",
        }
    }

    /// The format named `name` (`ini` is `conf`).
    pub fn from_name(name: &str) -> Option<FileFormat> {
        if name == "ini" {
            return Some(FileFormat::Conf);
        }
        Self::ALL.into_iter().find(|f| f.name() == name)
    }
}

fn default_file_mode() -> String {
    "0644".to_owned()
}

/// `[services.<name>]`: a long-running process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDecl {
    /// The component it belongs to (decides user and whether it runs).
    pub component: String,
    /// What it does.
    #[serde(default)]
    pub description: String,
    /// Program and arguments; each a template.
    pub command: Vec<String>,
    /// The service's own metrics endpoint (a template), e.g.
    /// `http://127.0.0.1:{{ settings.web.port }}/metrics`: listed by berth's metrics
    /// and linked from the console.
    #[serde(default)]
    pub metrics: Option<String>,
    /// Environment; values are templates.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Working directory (template).
    #[serde(default)]
    pub working_dir: Option<String>,
    /// Services that must be ready first.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Readiness probe.
    #[serde(default)]
    pub ready: Option<ReadyDecl>,
    /// Addresses (`host:port`, templates) the service listens on. `berth up` checks they
    /// are free before starting anything; `tcp` and `http` readiness addresses count too.
    #[serde(default)]
    pub listen: Vec<String>,
    /// Stop signal, default `SIGTERM`.
    #[serde(default = "default_stop_signal")]
    pub stop_signal: String,
    /// Wait this long after the stop signal before SIGKILL, default `30s`.
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout: String,
    /// Signal that reloads config; absent means a config change restarts the service.
    #[serde(default)]
    pub reload_signal: Option<String>,
    /// `always` (default), `on-failure` or `never`.
    #[serde(default = "default_restart")]
    pub restart: RestartDecl,
    /// How an online upgrade starts the new release beside the running one, so that
    /// traffic moves without a failed request.
    #[serde(default)]
    pub beside: Option<BesideDecl>,
}

/// `beside = { port = "web.port", spare = "web.spare_port" }` on a service: on an
/// online upgrade hop the new release runs first on the `spare` setting's port, the
/// front end is pointed at it (the files that change with the port rewritten, their
/// services reloaded), then the service restarts on its own port and the front end
/// is pointed back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BesideDecl {
    /// The `port` setting (`group.key`) the service listens on.
    pub port: String,
    /// Another `port` setting, free while no upgrade runs: where the new release
    /// listens while the old one drains.
    pub spare: String,
    /// How long requests already on their way to the old process may take once the
    /// front end was reloaded, before it is stopped (default `2s`).
    #[serde(default = "default_drain")]
    pub drain: String,
}

fn default_drain() -> String {
    "2s".to_owned()
}

/// What the supervisor does when the service exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartDecl {
    /// Restart on any exit.
    Always,
    /// Restart on a non-zero exit or a signal.
    OnFailure,
    /// Never restart.
    Never,
}

fn default_stop_signal() -> String {
    "SIGTERM".to_owned()
}

fn default_stop_timeout() -> String {
    "30s".to_owned()
}

fn default_restart() -> RestartDecl {
    RestartDecl::Always
}

/// A readiness probe: exactly one of `tcp`, `http`, `command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadyDecl {
    /// `host:port` to connect to (template).
    #[serde(default)]
    pub tcp: Option<String>,
    /// URL to GET (template); ready on a status below 500.
    #[serde(default)]
    pub http: Option<String>,
    /// Command that exits 0 when ready (templates).
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Give up after this long, default `60s`.
    #[serde(default = "default_ready_timeout")]
    pub timeout: String,
}

fn default_ready_timeout() -> String {
    "60s".to_owned()
}

/// `[jobs.<name>]`: a periodic job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobDecl {
    /// The component it belongs to.
    pub component: String,
    /// In a fleet: on every node that has its component (`every`), or on one only
    /// (`once`: housekeeping of shared data).
    #[serde(default)]
    pub fleet: crate::topology::Placement,
    /// What it does.
    #[serde(default)]
    pub description: String,
    /// Program and arguments (templates).
    pub command: Vec<String>,
    /// Environment (templates).
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Working directory (template).
    #[serde(default)]
    pub working_dir: Option<String>,
    /// Interval, e.g. `"1h"`; a template, so a setting can drive it.
    pub every: String,
    /// Kill a run after this long, default `1h`.
    #[serde(default = "default_job_timeout")]
    pub timeout: String,
    /// Services that must be ready for a run.
    #[serde(default)]
    pub requires: Vec<String>,
}

fn default_job_timeout() -> String {
    "1h".to_owned()
}

/// `[hooks.<name>]`: a one-shot step, run when due by `berth up` and by a
/// `berth reconfigure` that changed something (there is no `upgrade` command: `up`
/// installs a new app `version` and runs its `release` hooks); `berth restore` runs the
/// ones `[backup.database] restore_after` names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookDecl {
    /// The component it belongs to (user, enabled).
    pub component: String,
    /// In a fleet: on every node that has its component (`every`), or on one only
    /// (`once`: a migration, a first user).
    #[serde(default)]
    pub fleet: crate::topology::Placement,
    /// What it does, shown in progress and history.
    #[serde(default)]
    pub description: String,
    /// Program and arguments (templates).
    pub command: Vec<String>,
    /// A command (templates) that exits 0 when the hook has nothing left to do (e.g.
    /// no migration left to apply), run with the hook's environment and working
    /// directory. Where the hook runs apart from the services it comes before (a
    /// Kubernetes Job), their pods wait until it does.
    #[serde(default)]
    pub check: Option<Vec<String>>,
    /// Environment (templates).
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Working directory (template).
    #[serde(default)]
    pub working_dir: Option<String>,
    /// `once` (per instance), `release` (once per app version), `change` (when what
    /// `on` names changes), or `always`.
    pub when: HookWhen,
    /// What a `when = "change"` hook follows: `package:<name>`, `file:<path>`,
    /// `setting:<group>.<key>`, `app:version` (see [`RerunSource`]).
    #[serde(default)]
    pub on: Vec<String>,
    /// Services that must be ready before the hook runs, and hooks (`hook:<name>`) that
    /// run before it (see [`WaitRef`]).
    #[serde(default)]
    pub after: Vec<String>,
    /// Services that must not start until the hook has succeeded, and hooks
    /// (`hook:<name>`) that run after it.
    #[serde(default)]
    pub before: Vec<String>,
    /// Kill the hook after this long, default `30m`.
    #[serde(default = "default_hook_timeout")]
    pub timeout: String,
    /// What the hook makes (template), a path inside `{{ paths.data }}`, e.g. a
    /// database cluster's directory. When berth started the hook with nothing there
    /// and the hook did not finish (berth was killed, the hook failed or timed out),
    /// what is there is partial: berth removes it before the hook runs again, so a
    /// hook that skips when its output exists never skips on a half-made one.
    #[serde(default)]
    pub creates: Option<String>,
}

fn default_hook_timeout() -> String {
    "30m".to_owned()
}

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookWhen {
    /// Once in the life of an instance (e.g. `initdb`, first admin user).
    Once,
    /// Once per app version (e.g. migrations, collecting static files).
    Release,
    /// Once per value of a fingerprint of what `on` names: a package's installed
    /// version, a rendered file, a setting (e.g. migrations of an app installed from
    /// a distribution package).
    Change,
    /// On every `up` and every `reconfigure` that changes something.
    Always,
}

/// An entry of a hook's `after` or `before`: a service (`"postgresql"`) or another hook
/// (`"hook:createdb"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WaitRef<'a> {
    /// A service, written as its name.
    Service(&'a str),
    /// A hook, written `hook:<name>`.
    Hook(&'a str),
}

impl<'a> WaitRef<'a> {
    /// The prefix that makes an entry name a hook.
    pub const HOOK_PREFIX: &'static str = "hook:";

    /// Reads one entry as written in the manifest.
    pub fn parse(entry: &'a str) -> Self {
        match entry.strip_prefix(Self::HOOK_PREFIX) {
            Some(hook) => WaitRef::Hook(hook),
            None => WaitRef::Service(entry),
        }
    }
}

impl HookDecl {
    /// The services of `after` (entries without `hook:`).
    pub fn after_services(&self) -> impl Iterator<Item = &str> {
        services_of(&self.after)
    }

    /// The hooks of `after` (`hook:<name>`, without the prefix).
    pub fn after_hooks(&self) -> impl Iterator<Item = &str> {
        hooks_of(&self.after)
    }

    /// The services of `before`.
    pub fn before_services(&self) -> impl Iterator<Item = &str> {
        services_of(&self.before)
    }

    /// The hooks of `before` (without the prefix).
    pub fn before_hooks(&self) -> impl Iterator<Item = &str> {
        hooks_of(&self.before)
    }
}

fn services_of(list: &[String]) -> impl Iterator<Item = &str> {
    list.iter().filter_map(|e| match WaitRef::parse(e) {
        WaitRef::Service(s) => Some(s),
        WaitRef::Hook(_) => None,
    })
}

fn hooks_of(list: &[String]) -> impl Iterator<Item = &str> {
    list.iter().filter_map(|e| match WaitRef::parse(e) {
        WaitRef::Hook(h) => Some(h),
        WaitRef::Service(_) => None,
    })
}

/// One entry of a `when = "change"` hook's `on`: something whose value goes into the
/// hook's fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum RerunSource {
    /// `package:<name>`: the installed version of a distribution package a component
    /// declares in `packages`.
    Package(String),
    /// `file:<path>`: the rendered content of the `[[files]]` entry with that `path`.
    File(String),
    /// `setting:<group>.<key>`: the resolved value of a setting.
    Setting {
        /// The settings group.
        group: String,
        /// The key in the group.
        key: String,
    },
    /// `app:version`: the manifest's `[app] version`.
    AppVersion,
}

impl RerunSource {
    /// The kinds an `on` entry may have, as written before the `:`.
    pub const KINDS: [&'static str; 4] = ["package", "file", "setting", "app"];

    /// Reads one `on` entry; the error completes "`on[0]` is `…`, …".
    pub fn parse(entry: &str) -> Result<Self, String> {
        let Some((kind, name)) = entry.split_once(':') else {
            return Err("which has no kind".to_owned());
        };
        if !Self::KINDS.contains(&kind) {
            return Err(format!("whose kind `{kind}` is unknown"));
        }
        if name.is_empty() {
            return Err(format!("which names no {kind}"));
        }
        match kind {
            "package" => Ok(RerunSource::Package(name.to_owned())),
            "file" => Ok(RerunSource::File(name.to_owned())),
            "setting" => match name.split_once('.') {
                Some((group, key)) if !group.is_empty() && !key.is_empty() => {
                    Ok(RerunSource::Setting {
                        group: group.to_owned(),
                        key: key.to_owned(),
                    })
                }
                _ => Err("which names no setting (`setting:<group>.<key>`)".to_owned()),
            },
            _ if name == "version" => Ok(RerunSource::AppVersion),
            _ => Err("but only `app:version` may be followed".to_owned()),
        }
    }
}

impl std::fmt::Display for RerunSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RerunSource::Package(p) => write!(f, "package:{p}"),
            RerunSource::File(p) => write!(f, "file:{p}"),
            RerunSource::Setting { group, key } => write!(f, "setting:{group}.{key}"),
            RerunSource::AppVersion => write!(f, "app:version"),
        }
    }
}

/// `[seed]`: the database a release bundle carries already migrated. `berth release
/// build` runs `hook` (and the hooks it needs, and `backup.database.restore_after`) on
/// a throwaway instance and ships a dump of `[backup.database]` taken right after it; a
/// first `berth up --bundle` loads that dump where the database is created, then runs
/// `hook` as usual, which then has nothing left to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedDecl {
    /// The hook whose work the dump holds (the migrations).
    pub hook: String,
    /// Columns (`table.column` or `schema.table.column`) whose values are the time
    /// the seed was made (when each migration ran, say): set to the build's
    /// `SOURCE_DATE_EPOCH` before the dump, so two builds give the same seed.
    #[serde(default)]
    pub build_time_columns: Vec<String>,
}

/// `[licences]`: the licence policy. A release build fails, naming the component,
/// when a component's licence cannot be satisfied with the `allow`ed licences
/// alone (when `allow` is given) without a `deny`ed one, or is not known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicencesDecl {
    /// SPDX licence identifiers a component may be used under; empty: any not denied.
    #[serde(default)]
    pub allow: Vec<String>,
    /// SPDX licence identifiers no component may be used under.
    #[serde(default)]
    pub deny: Vec<String>,
    /// The vendor's word on single components, by name (a Python distribution's
    /// normalized name, a crate's name).
    #[serde(default)]
    pub components: BTreeMap<String, LicenceException>,
}

/// `[licences.components.<name>]`: a reviewed component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenceException {
    /// The licence the vendor concluded from the component's licence text (an SPDX
    /// expression), where what it declares is ambiguous (`BSD License`) or missing.
    #[serde(default)]
    pub concluded: Option<String>,
    /// Ship it whatever the policy says of its licence.
    #[serde(default)]
    pub accept: bool,
    /// Why: a review a later reader can check. Required.
    pub reason: String,
}

/// `[upgrade]`: the upgrade rules of this version, as data. They are the vendor's
/// knowledge of the app's history, so the newest manifest carries them all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeDecl {
    /// Series every upgrade must pass through (`"3.7"`: some 3.7.x release must have
    /// run before anything newer), oldest first.
    #[serde(default)]
    pub stops: Vec<String>,
    /// The oldest version (or series) this one upgrades from directly.
    #[serde(default)]
    pub from: Option<String>,
    /// Upgrading to this version from this version (or series) or newer only runs
    /// online migrations: the old release keeps serving on the new schema. Older ones,
    /// and every hop when this is unset, are offline.
    #[serde(default)]
    pub online_from: Option<String>,
    /// Settings renamed or removed, each in the version that did it.
    #[serde(default)]
    pub settings: Vec<SettingChangeDecl>,
}

/// One `[[upgrade.settings]]` entry: a setting renamed or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingChangeDecl {
    /// The old setting, `group.key`.
    pub key: String,
    /// The version that renamed or removed it.
    pub since: String,
    /// Its new name, `group.key`, when it was renamed (the value carries over).
    #[serde(default)]
    pub renamed_to: Option<String>,
    /// What the administrator should know or do.
    #[serde(default)]
    pub message: String,
}

/// `[backup]`: what `berth backup create` puts in an archive besides the site config
/// and the secrets, and how it keeps the copy consistent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupDecl {
    /// Data directories (relative to `<prefix>/data`, each a declared data directory or
    /// inside one) copied into the archive, e.g. uploaded media. Directories that can be
    /// rebuilt (static files, caches) or that the database dump covers stay out.
    #[serde(default)]
    pub data_dirs: Vec<String>,
    /// Services paused while the data directories are copied, so no file is caught
    /// half-written; they are resumed as soon as the copy is done.
    #[serde(default)]
    pub quiesce: Vec<String>,
    /// The database, dumped as one consistent snapshot.
    #[serde(default)]
    pub database: Option<DatabaseBackupDecl>,
}

/// `[backup.database]`: how to reach the app's database for dump and restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseBackupDecl {
    /// The database engine.
    pub kind: DatabaseKind,
    /// The service that serves it; dump and restore run as its component's user
    /// (the cluster's superuser through the local socket).
    pub service: String,
    /// Host or socket directory (template), e.g. `{{ paths.run }}/postgresql`.
    pub host: String,
    /// Port (template), e.g. `{{ settings.postgresql.port }}`.
    pub port: String,
    /// Name of the app's database.
    pub name: String,
    /// Role that owns the database (created by a hook before the restore runs).
    pub owner: String,
    /// Directory holding `pg_dump`, `pg_restore` and `psql` of the server's version.
    pub bin_dir: String,
    /// Hooks that must have run before a dump is restored into a new instance (e.g.
    /// the one creating the owner role); hooks and services after them wait for it.
    #[serde(default)]
    pub restore_after: Vec<String>,
    /// The secret holding `owner`'s password, for a dump over the network where no
    /// local socket reaches the server (the backup CronJob of `berth k8s render`).
    #[serde(default)]
    pub password: Option<String>,
}

/// Database engines berth can dump and restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseKind {
    /// PostgreSQL: `pg_dump --format=directory` (parallel), `pg_restore --jobs`.
    Postgresql,
}

/// One value of a profile, however it was written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProfileEntry<'a> {
    /// The settings group.
    pub group: &'a str,
    /// The key in the group (empty when the entry names no key).
    pub key: &'a str,
    /// The value.
    pub value: &'a toml::Value,
    /// Whether it was written as one quoted key (`"web.workers" = 4`) rather than as a
    /// dotted key or a table (`web.workers = 4`, `[profiles.small.values.web]`).
    pub quoted: bool,
}

impl Manifest {
    /// The roles that run services and are not in `roles`: what a node taking `roles`
    /// leaves to other nodes (none: it runs the whole app).
    pub fn roles_left_out<'a>(&'a self, roles: &[String]) -> Vec<&'a str> {
        self.roles
            .iter()
            .filter(|(name, r)| !r.services.is_empty() && !roles.contains(name))
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

impl Profile {
    /// Every value as (group, key, value). Accepts `"web.workers" = 4`, `web.workers = 4`
    /// and `[profiles.<name>.values.web]` tables alike.
    pub fn entries(&self) -> Vec<ProfileEntry<'_>> {
        let mut out = Vec::new();
        for (name, value) in &self.values {
            match (name.split_once('.'), value) {
                (Some((group, key)), _) => out.push(ProfileEntry {
                    group,
                    key,
                    value,
                    quoted: true,
                }),
                (None, toml::Value::Table(table)) => {
                    for (key, value) in table {
                        out.push(ProfileEntry {
                            group: name,
                            key,
                            value,
                            quoted: false,
                        });
                    }
                }
                (None, _) => out.push(ProfileEntry {
                    group: name,
                    key: "",
                    value,
                    quoted: true,
                }),
            }
        }
        out
    }
}

/// `[preflight]`: what the host must have before `up` or `upgrade` changes anything.
/// Below a `min` the check fails; below a `recommended` it warns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreflightDecl {
    /// CPUs berth may use (its affinity, then the cgroup's quota).
    #[serde(default)]
    pub cpus: Option<CountLimits>,
    /// Memory the instance has (the cgroup's limit when one is set): sizes.
    #[serde(default)]
    pub memory: Option<SizeLimits>,
    /// Free space where each named directory of the instance lives.
    #[serde(default)]
    pub disk: Vec<DiskDecl>,
    /// The oldest kernel release the app runs on, e.g. `"5.10"`.
    #[serde(default)]
    pub kernel: Option<String>,
    /// Where the app is supported: `"debian 12"`, `"ubuntu 24.04"`, or `"debian"` for
    /// any release (`ID` and `VERSION_ID` of `/etc/os-release`). Empty: anywhere.
    #[serde(default)]
    pub distributions: Vec<String>,
    /// What any other distribution gets: `warn` (the default) or `fail`.
    #[serde(default)]
    pub other_distributions: Option<PreflightLevel>,
    /// Programs the app needs that no component provides: a name looked up on `PATH`,
    /// or an absolute path.
    #[serde(default)]
    pub binaries: Vec<String>,
    /// A clock not synchronised by NTP: `warn` (the default), `fail` or `off`.
    #[serde(default)]
    pub clock_sync: Option<PreflightLevel>,
    /// Distribution packages and the oldest version of each the app works with (the
    /// installed version, or the one the package manager would install).
    #[serde(default)]
    pub packages: BTreeMap<String, String>,
}

/// `{ min = 2, recommended = 4 }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountLimits {
    /// Below it the check fails.
    #[serde(default)]
    pub min: Option<u32>,
    /// Below it the check warns.
    #[serde(default)]
    pub recommended: Option<u32>,
}

/// `{ min = "2GiB", recommended = "4GiB" }`: sizes, a number of bytes or a string.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeLimits {
    /// Below it the check fails.
    #[serde(default)]
    pub min: Option<toml::Value>,
    /// Below it the check warns.
    #[serde(default)]
    pub recommended: Option<toml::Value>,
}

/// `[[preflight.disk]]`: free space where a directory of the instance lives.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskDecl {
    /// Which directory: `prefix`, `data`, `data/<dir>` (one of the app's data
    /// directories), `log`, `state` or `releases`.
    pub path: String,
    /// Below it the check fails.
    #[serde(default)]
    pub min: Option<toml::Value>,
    /// Below it the check warns.
    #[serde(default)]
    pub recommended: Option<toml::Value>,
}

/// What a check that does not pass does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreflightLevel {
    /// Stop `up` and `upgrade`.
    Fail,
    /// Say so, and go on.
    Warn,
    /// Do not check.
    Off,
}

/// `[diagnose]`: the app's part in support bundles and error reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiagnoseDecl {
    /// Regular expressions of what else is secret in the app's files and logs (a
    /// licence key's format, a token prefix): every match is taken out.
    #[serde(default)]
    pub redact: Vec<String>,
}
