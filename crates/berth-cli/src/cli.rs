//! Command-line arguments. Parsing only: no behaviour lives here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// berth: install, configure, supervise, back up and restore a multi-service app from one manifest.
///
/// `about` shows the package description (Cargo.toml), which this line repeats.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the instance lives and which app it runs.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Root directory of the instance [default: /var/opt/berth/<app> as root, ~/.local/share/berth/<app> otherwise].
    #[arg(long, global = true, env = "BERTH_PREFIX", value_name = "DIR")]
    pub prefix: Option<PathBuf>,
    /// App manifest directory (with berth.toml) [default: the one the instance was set up with, else the built-in one].
    #[arg(long, global = true, env = "BERTH_MANIFEST", value_name = "DIR")]
    pub manifest: Option<PathBuf>,
    /// Site config file [default: <prefix>/site.toml].
    #[arg(long, global = true, env = "BERTH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print less: only errors and the final result.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install what is missing, configure, start everything and wait until the app answers.
    Up {
        /// Install this release bundle (`berth release build`): its manifest, and its
        /// components already built, once its signature and every byte check out.
        #[arg(long, value_name = "BUNDLE", requires = "public_key")]
        bundle: Option<PathBuf>,
        /// The vendor's public key the bundle must be signed with (`ed25519:…`, or a
        /// file holding it).
        #[arg(long, value_name = "KEY|FILE")]
        public_key: Option<String>,
        /// Install from this channel (`berth release publish`) instead: the newest
        /// release, or `--app-version`. A directory, or the `http://` or `https://`
        /// address it is served at.
        #[arg(
            long,
            value_name = "DIR|URL",
            conflicts_with = "bundle",
            requires = "public_key"
        )]
        channel: Option<String>,
        /// The app version to install from `--channel` [default: the newest].
        #[arg(long, value_name = "VERSION", requires = "channel")]
        app_version: Option<String>,
    },
    /// Check the host against what the app and berth need (the manifest's `[preflight]`:
    /// CPUs, memory, free disk, kernel, distribution, programs, clock, package
    /// versions; and the services' ports), each check pass, warn or fail with its fix.
    /// `up` and `upgrade apply` make the same checks first. Exit status 1 when one fails.
    Preflight {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// First-run setup on a terminal: asks for the external URL, the profile, the
    /// optional components and the backup target (each answer checked as `berth config
    /// check` checks it), writes the site config, shows the plan, and with `--up`
    /// brings the app up. Answers given as options are not asked.
    Init {
        /// `external_url`.
        #[arg(long, value_name = "URL")]
        external_url: Option<String>,
        /// `profile` (`none` for none).
        #[arg(long, value_name = "NAME")]
        profile: Option<String>,
        /// Run this optional component.
        #[arg(long, value_name = "COMPONENT")]
        enable: Vec<String>,
        /// Leave this optional component out.
        #[arg(long, value_name = "COMPONENT")]
        disable: Vec<String>,
        /// `backup.target`: an absolute directory or `sftp://user@host/path`.
        #[arg(long, value_name = "DIR|URL")]
        backup_target: Option<String>,
        /// `users`: `per-instance` (the default: OS users of this instance's own) or
        /// `shared` (the manifest's names, shared by every instance of the app).
        #[arg(long, value_name = "per-instance|shared")]
        users: Option<String>,
        /// Ask nothing: what no option gives keeps its default.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Bring the app up once the site config is written.
        #[arg(long)]
        up: bool,
    },
    /// Serve the web console until interrupted: status, logs, history, backups,
    /// upgrades, and first-run setup on an instance without a site config. Sign in
    /// with the console password: generated on first start into the secret store, its
    /// path printed, never its value.
    Console {
        /// Where to listen (put the app's nginx in front to reach it from elsewhere)
        /// [default: `console.listen`, else 127.0.0.1:9470].
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// The path the app's web server passes on to the console, e.g. `/berth/`
        /// [default: `console.path` when the web server is in front, else `/`].
        #[arg(long, value_name = "PATH")]
        base_path: Option<String>,
    },
    /// Write a support bundle: host facts, status, history, the effective config, rendered
    /// files, log tails, the supervisor's plan, package versions and preflight, every
    /// file redacted (secret values, passwords, tokens, keys), with a report of what
    /// was taken out.
    Diagnose {
        /// The archive to write [default: `berth-diagnose-<app>-<time>.tar.zst` here].
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Lines kept from the end of each log.
        #[arg(long, short = 'n', default_value_t = 500)]
        lines: usize,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Apply the site config: rewrite changed files, restart or reload only what they affect.
    Reconfigure {
        /// Show every file diff (secrets masked) and the services that would restart, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check or show the site config; rewrite it for settings a new version renamed.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// List the app's releases installed side by side: version, installed when, size,
    /// which one runs.
    Releases {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Plan an upgrade to a new version: the path through required stops, each hop's
    /// steps and downtime, and the settings to change first.
    #[command(subcommand)]
    Upgrade(UpgradeCommand),
    /// Make a vendor signing key, build a signed release bundle from a manifest, check one.
    #[command(subcommand)]
    Release(ReleaseCommand),
    /// Build an operating-system package of a release bundle.
    #[command(subcommand)]
    Package(PackageCommand),
    /// Make a repository signing key, and add packages to a signed apt or yum/dnf repository.
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Scan a release bundle, a bill of materials or the installed instance for known
    /// vulnerabilities, offline, against an advisory database on disk.
    Audit {
        /// A release bundle (`.berth-release.tar.zst`) or a CycloneDX or SPDX JSON file
        /// [default: the installed instance].
        #[arg(conflicts_with = "update_from")]
        target: Option<PathBuf>,
        /// The vendor's public key, for a bundle (`ed25519:…`, or a file holding it).
        #[arg(long, value_name = "KEY|FILE")]
        public_key: Option<String>,
        /// The advisory data: an OSV snapshot directory (PyPA, RustSec) or an index
        /// file [default: the instance's, installed by `--update-from`].
        #[arg(long, value_name = "DIR|FILE")]
        db: Option<PathBuf>,
        /// The audit policy: `threshold`, `fail_on_unknown`, `fail_on_informational`,
        /// and `[[ignore]]` entries with `id`, `reason`, `expires`.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Install the snapshot in DIR as the instance's advisory database (or as the
        /// index file `--db` names) instead of scanning; nothing else is rebuilt.
        #[arg(long, value_name = "DIR")]
        update_from: Option<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Write the licence page of a release bundle: every component, its version and
    /// licence, and each licence text once (`licences.html` and `licences.json`).
    Licences {
        #[command(flatten)]
        signed: SignedBundle,
        /// The directory to write both files into (made if missing; existing files
        /// are never overwritten).
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
    },
    /// Write the bill of materials of a release bundle (CycloneDX 1.6 or SPDX 2.3 JSON):
    /// berth, the interpreter and every Python distribution it carries, with licences.
    Sbom {
        #[command(flatten)]
        signed: SignedBundle,
        /// The document's format.
        #[arg(long, value_enum, default_value = "cyclonedx")]
        format: SbomFormat,
        /// Write it to this file (never over an existing one) instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Build container images of a release bundle: one per service, without a daemon.
    #[command(subcommand)]
    Image(ImageCommand),
    /// The app on Kubernetes, from the same manifest and site config.
    #[command(subcommand)]
    K8s(K8sCommand),
    /// What runs inside the images: a service in the foreground, a hook, a health check.
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Show every service: state, pid, uptime, restarts, last exit, readiness.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Start a service (and what it depends on), or all of them.
    Start(ServiceArg),
    /// Stop a service (and what depends on it), or all of them.
    Stop(ServiceArg),
    /// Restart a service, or all of them.
    Restart(ServiceArg),
    /// Make a service re-read its config (restart if it cannot reload), or all of them.
    Reload(ServiceArg),
    /// Show a service's log (all services when none is named).
    Tail {
        /// Service name.
        service: Option<String>,
        /// Lines to show from the end of each log.
        #[arg(long, short = 'n', default_value_t = 50)]
        lines: usize,
        /// Keep printing new lines as they are written.
        #[arg(long, short)]
        follow: bool,
    },
    /// Stop every service and the supervisor.
    Down {
        /// Also remove the files berth made outside the prefix (`[[host_files]]`)
        /// that are still as it made them; everything under the prefix is kept.
        #[arg(long)]
        purge: bool,
    },
    /// Show past `up` and `reconfigure` runs: when, what changed, what restarted, how long.
    History {
        /// How many runs to show.
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: usize,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print the desired state rendered from the manifest and site config (secrets
    /// masked); `plan topology` plans a fleet instead.
    Plan {
        /// What else to plan.
        #[command(subcommand)]
        what: Option<PlanCommand>,
    },
    /// Act on every node of a fleet at once, over SSH: check them, show their status.
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// Back up the instance; list, verify and prune archives; make the backup key.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Bring the instance back from an archive (verified first), here or in a new prefix.
    Restore {
        /// The archive: a file, or a name in the target (`berth backup list`).
        #[arg(required_unless_present_any = ["resume", "abort"])]
        archive: Option<String>,
        /// Target to fetch a named archive from [default: `backup.target`].
        #[arg(long, value_name = "TARGET")]
        from: Option<String>,
        /// Key file (from `berth backup key --export`): its signing key vouches for the
        /// archive and its backup key decrypts the secrets [default: this instance's keys].
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Restore an archive that holds no secrets; new ones are generated.
        #[arg(long)]
        without_secrets: bool,
        /// Restoring over a running instance backs it up first; skip that.
        #[arg(long)]
        no_safety_backup: bool,
        /// Finish a restore that was interrupted.
        #[arg(long, conflicts_with_all = ["abort", "archive"])]
        resume: bool,
        /// Undo a restore that was interrupted.
        #[arg(long, conflicts_with = "archive")]
        abort: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Run the supervisor in the foreground (used by `berth up` and by the systemd unit).
    #[command(hide = true)]
    Supervise {
        /// Start every service as soon as the supervisor is up.
        #[arg(long)]
        autostart: bool,
    },
}

/// `berth backup …`.
/// `berth fleet <what>`.
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Check every node before anything changes: the fleet file against the app,
    /// then each node reachable over SSH with its recorded host key and the same berth.
    Check(FleetArgs),
    /// Every node's services, their state and memory, gathered at once.
    Status(FleetArgs),
    /// Check every node, then bring each up with its own berth and site config, in
    /// the order the roles need (independent nodes at once): the manifest, the node's
    /// site config and the fleet's secrets are sent over SSH.
    Up {
        #[command(flatten)]
        args: FleetArgs,
        #[command(flatten)]
        release: FleetBundle,
    },
    /// As `up`, but only the nodes whose manifest or site config changed.
    Reconfigure(FleetArgs),
    /// Take every node to the next version, one hop: a backup first, the new
    /// release built beside the old on every app node, then nodes switched in the
    /// roles' order; on an online hop one at a time, each behind the load balancer
    /// taken out of it first and put back once it answers (no failed request).
    Upgrade {
        #[command(flatten)]
        args: FleetArgs,
        /// The new version's manifest directory.
        #[arg(
            long,
            value_name = "DIR",
            required_unless_present = "bundle",
            conflicts_with = "bundle"
        )]
        to: Option<PathBuf>,
        #[command(flatten)]
        release: FleetBundle,
    },
    /// On a node: read what `fleet up` sends on standard input and bring the node up.
    #[command(hide = true)]
    NodeUp,
    /// On a node: one step of `fleet upgrade`, with what it sends on standard input.
    #[command(hide = true)]
    NodeUpgrade {
        /// The step.
        step: NodeUpgradeStep,
        /// Leave the release's post-deploy hooks for the `post-deploy` step.
        #[arg(long)]
        hold_post_deploy: bool,
    },
    /// On a load-balancer node: take a server out of HAProxy's web backend (`maint`,
    /// then wait until it has no requests) or put it back (`ready`, then wait until
    /// HAProxy's checks find it up).
    #[command(hide = true)]
    NodeBalancer {
        /// The server (a node's name).
        #[arg(long)]
        server: String,
        /// `maint` or `ready`.
        #[arg(long)]
        state: BalancerState,
    },
    /// On a node: store the release bundle read from standard input for `node-up`.
    #[command(hide = true)]
    NodeReceive {
        /// The bundle's file name.
        #[arg(long)]
        name: String,
    },
    /// On a node: print the digests of the manifest and site config it runs.
    #[command(hide = true)]
    NodeDigest,
}

/// A step of `fleet upgrade` on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NodeUpgradeStep {
    /// Build the new release beside the running one.
    Install,
    /// The maintenance page up, the old release's app services stopped.
    Maintenance,
    /// `up` with the new manifest.
    Switch,
    /// `up` again, running the post-deploy hooks held back by the switch.
    PostDeploy,
    /// Back to the manifest sent (the old one): page down, `up`.
    Back,
}

/// What `fleet node-balancer` does with a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BalancerState {
    /// Out of the backend; its requests finish.
    Maint,
    /// Back in the backend.
    Ready,
}

/// Options of `berth fleet` commands.
#[derive(Debug, Args)]
pub struct FleetArgs {
    /// The fleet file.
    #[arg(
        long,
        env = "BERTH_FLEET",
        value_name = "FILE",
        default_value = "fleet.toml"
    )]
    pub fleet: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// `berth plan <what>`.
#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Plan a fleet for a load: nodes per role, CPUs and memory of each, the order they
    /// come up in, one site config per node (from the manifest's `[roles]` and
    /// `[sizing]`, or a catalog's).
    Topology(TopologyArgs),
}

/// `berth plan topology`.
#[derive(Debug, Args)]
pub struct TopologyArgs {
    /// Plan for this many users (turned into requests per second by `sizing.users_per_rps`).
    #[arg(
        long,
        value_name = "N",
        required_unless_present = "rps",
        conflicts_with = "rps"
    )]
    pub users: Option<u64>,
    /// Plan for this many requests per second at peak.
    #[arg(long, value_name = "R")]
    pub rps: Option<u64>,
    /// Make every role that can be highly available so.
    #[arg(long)]
    pub ha: bool,
    /// Plan from this sizing catalog instead of the app's manifest.
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// Write one site config per node into this directory (`<node>.toml`, new files only).
    #[arg(long, value_name = "DIR")]
    pub write: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Take a backup: database dump, data directories, site config, encrypted secrets.
    Create {
        /// Where to keep it: a directory or `sftp://user@host[:port]/dir` [default: `backup.target`].
        #[arg(long, value_name = "TARGET")]
        to: Option<String>,
        /// Then delete the archives the retention policy does not keep.
        #[arg(long)]
        prune: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// List this app's archives in the target, newest first.
    List {
        /// Target [default: `backup.target`].
        #[arg(long, value_name = "TARGET")]
        to: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Check an archive: signature, metadata, checksums, compression, site config,
    /// database dump, and the secrets if a key file is given.
    Verify {
        /// The archive: a file, or a name in the target.
        archive: String,
        /// Target to fetch a named archive from [default: `backup.target`].
        #[arg(long, value_name = "TARGET")]
        from: Option<String>,
        /// Key file (from `berth backup key --export`): trust its signing key, and check
        /// that its backup key opens the archive's secrets.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Delete the archives the retention policy (`backup.keep_*`) does not keep.
    Prune {
        /// Target [default: `backup.target`].
        #[arg(long, value_name = "TARGET")]
        to: Option<String>,
        /// Show what would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Create the backup key and the archive signing key (once) and optionally export
    /// a copy of both.
    Key {
        /// Also write both keys to this new file (mode 0600; never over an existing path).
        #[arg(long, value_name = "FILE")]
        export: Option<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// `berth release …`: the vendor's side.
#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// Make a signing key for release bundles: the secret key file (mode 0600, never over
    /// an existing path) and its public key in `<FILE>.pub`.
    Key {
        /// The secret key file to create.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Build the release bundle of the manifest given with `--manifest`: validated, then
    /// written reproducibly (the same inputs give the same bytes) and signed.
    Build {
        /// The secret key file (`berth release key`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Where to write `<app>-<version>.berth-release.tar.zst`.
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
        /// Every entry's time and the bundle's; without it (or `SOURCE_DATE_EPOCH`) the
        /// current time, and two builds differ.
        #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
        source_date_epoch: Option<u64>,
        /// The berth binary the bundle carries [default: this one]; e.g. a stripped
        /// release build.
        #[arg(long, value_name = "FILE")]
        berth: Option<PathBuf>,
        /// Leave out the database seed the manifest declares (`[seed]`): the build
        /// skips the throwaway instance, and a first install runs the seed's hook.
        #[arg(long)]
        no_seed: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Add a bundle to a channel (a directory of bundles with an index signed by the
    /// vendor's key); the releases published before stay.
    Publish {
        /// The bundle file.
        bundle: PathBuf,
        /// The channel's directory (made if missing).
        #[arg(long, value_name = "DIR")]
        channel: PathBuf,
        /// The secret key file the bundle is signed with; it signs the index too.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Check a bundle: signed by the given key, a release of the app and version its
    /// name says, every byte as signed.
    Verify {
        #[command(flatten)]
        signed: SignedBundle,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// The formats `berth sbom` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SbomFormat {
    /// CycloneDX 1.6 JSON.
    Cyclonedx,
    /// SPDX 2.3 JSON.
    Spdx,
}

/// `berth package …`.
#[derive(Debug, Subcommand)]
pub enum PackageCommand {
    /// A `.deb` that installs the bundle under `/opt/<app>/` and whose maintainer
    /// scripts run `berth up` or `berth upgrade apply` with it.
    Deb(BundlePackageArgs),
    /// A `.tar.gz` of the same tree as the `.deb`, for machines without dpkg: unpack
    /// it over `/`, then run `/opt/<app>/install.sh`.
    Tar(BundlePackageArgs),
    /// An `.rpm` of the same tree, with scriptlets that do what the `.deb`'s
    /// maintainer scripts do, for RPM-based systems (`--architecture` in Debian's or
    /// RPM's names).
    Rpm(RpmPackageArgs),
    /// berth's own `.deb`: this berth (or `--berth FILE`) as `/usr/bin/berth`.
    #[command(name = "self")]
    Itself {
        /// `Maintainer:` of the package, `Name <address>`.
        #[arg(long, value_name = "NAME <ADDRESS>")]
        maintainer: String,
        /// The berth binary to ship [default: the one running].
        #[arg(long, value_name = "FILE")]
        berth: Option<PathBuf>,
        /// Where to write `berth_<version>_<arch>.deb`.
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
        /// `Architecture:` [default: this machine's, as dpkg names it].
        #[arg(long, value_name = "ARCH")]
        architecture: Option<String>,
        /// Every entry's time; without it (or `SOURCE_DATE_EPOCH`) 0.
        #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
        source_date_epoch: Option<u64>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// A release bundle and the vendor's key it must be signed with.
#[derive(Debug, Args)]
pub struct SignedBundle {
    /// The release bundle (`berth release build`).
    pub bundle: PathBuf,
    /// The vendor's public key the bundle must be signed with (`ed25519:…`, or a
    /// file holding it, such as `<key>.pub`).
    #[arg(long, value_name = "KEY|FILE")]
    pub public_key: String,
}

/// The release bundle a fleet installs or upgrades to, if one.
#[derive(Debug, Args)]
pub struct FleetBundle {
    /// Install this release bundle (`berth release build`): its manifest is every
    /// node's, and its built components are sent to the nodes that run them, where
    /// nothing is built; checked against `--public-key` here and on each node.
    #[arg(long, value_name = "BUNDLE", requires = "public_key")]
    pub bundle: Option<PathBuf>,
    /// The vendor's public key the bundle must be signed with (`ed25519:…`, or a
    /// file holding it).
    #[arg(long, value_name = "KEY|FILE", requires = "bundle")]
    pub public_key: Option<String>,
}

/// What `berth package deb` and `berth package tar` take.
#[derive(Debug, Args)]
pub struct BundlePackageArgs {
    /// The bundle, and the key the package ships to check it again.
    #[command(flatten)]
    pub signed: SignedBundle,
    /// `Maintainer:` of the package (and the copyright file's holder), `Name <address>`.
    #[arg(long, value_name = "NAME <ADDRESS>")]
    pub maintainer: String,
    /// Where to write the package.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
    /// The machine the bundle's components were built for [default: this machine's,
    /// as dpkg names it].
    #[arg(long, value_name = "ARCH")]
    pub architecture: Option<String>,
    /// Every entry's time; without it (or `SOURCE_DATE_EPOCH`) the bundle's own.
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
    pub source_date_epoch: Option<u64>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// What `berth package rpm` takes: the common arguments and the package's signing key.
#[derive(Debug, Args)]
pub struct RpmPackageArgs {
    #[command(flatten)]
    pub common: BundlePackageArgs,
    /// Sign the package's header with this OpenPGP key (made by `berth repo key`), so
    /// `rpm -K` and dnf's `gpgcheck=1` check it; without it the package is unsigned.
    #[arg(long, value_name = "FILE")]
    pub sign_with: Option<PathBuf>,
}

/// `berth repo …`.
#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Add `.rpm` packages to the yum/dnf repository in `DIR` (made if missing) and
    /// sign its `repomd.xml`; the versions it holds already stay.
    Yum {
        /// The repository's directory (what clients fetch as `baseurl`).
        dir: PathBuf,
        /// The packages to add.
        #[arg(required = true)]
        rpms: Vec<PathBuf>,
        /// The secret key made by `berth repo key`.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// `revision` and the signatures' time; without it (or `SOURCE_DATE_EPOCH`) now.
        #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
        source_date_epoch: Option<u32>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Make the OpenPGP key a repository is signed with: `OUT` (the secret key, mode
    /// 0600), `OUT.gpg` (the keyring for apt's `signed-by`) and `OUT.asc` (the same,
    /// armored).
    Key {
        /// The secret key file to write (never over an existing file).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The key's user id, `Name <address>`.
        #[arg(long, value_name = "NAME <ADDRESS>")]
        name: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Add `.deb` packages to the apt repository in `DIR` (made if missing) and sign
    /// it; the versions it holds already stay.
    Apt {
        /// The repository's directory (what clients fetch, over HTTP or as a directory).
        dir: PathBuf,
        /// The packages to add.
        #[arg(required = true)]
        debs: Vec<PathBuf>,
        /// The secret key made by `berth repo key`.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The suite: `dists/<SUITE>`, what clients name after the repository's address.
        #[arg(long, default_value = "stable")]
        suite: String,
        /// The component.
        #[arg(long, default_value = "main")]
        component: String,
        /// `Origin:` of the repository (who publishes it).
        #[arg(long, default_value = "berth")]
        origin: String,
        /// `Label:` [default: the origin].
        #[arg(long)]
        label: Option<String>,
        /// Architectures to list besides those of the packages (for `all` packages).
        #[arg(long, value_delimiter = ',', value_name = "ARCH,…")]
        architectures: Vec<String>,
        /// `Date:` and the signatures' time; without it (or `SOURCE_DATE_EPOCH`) now.
        #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
        source_date_epoch: Option<u32>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// `berth config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the manifest and the site config; touches nothing.
    Check,
    /// Print the effective config: every setting with its value and where it came from.
    Show,
    /// Rewrite the site config for the settings the versions up to the target renamed,
    /// keeping comments and layout (the old text is kept as `<file>.before-migrate`).
    Migrate {
        /// The new version's manifest directory (again for each required stop).
        #[arg(long, value_name = "DIR", required = true)]
        to: Vec<PathBuf>,
        /// Print the rewritten file, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `berth upgrade …`.
#[derive(Debug, Subcommand)]
pub enum UpgradeCommand {
    /// Print the upgrade's path, steps, downtime and settings to change; change nothing.
    Plan {
        /// The new version's manifest directory; give one per required stop too.
        #[arg(long, value_name = "DIR", required = true)]
        to: Vec<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Carry out the upgrade, hop by hop: backup, new release beside the old one,
    /// migrations (behind a maintenance page when offline), switch, health gate.
    /// A failing hop is rolled back by itself.
    Apply {
        /// The new version's manifest directory; give one per required stop too.
        #[arg(long, value_name = "DIR", required_unless_present_any = ["bundle", "channel"])]
        to: Vec<PathBuf>,
        /// The new version's release bundle instead (one per required stop too): its
        /// manifest, and its components already built.
        #[arg(
            long,
            value_name = "BUNDLE",
            conflicts_with = "to",
            requires = "public_key"
        )]
        bundle: Vec<PathBuf>,
        /// The vendor's public key the bundles (or the channel) must be signed with
        /// (`ed25519:…`, or a file holding it).
        #[arg(long, value_name = "KEY|FILE")]
        public_key: Option<String>,
        /// Upgrade from this channel instead: to its newest release (or
        /// `--app-version`), through the newest release of every required stop. A
        /// directory, or the `http://` or `https://` address it is served at.
        #[arg(long, value_name = "DIR|URL", conflicts_with_all = ["to", "bundle"], requires = "public_key")]
        channel: Option<String>,
        /// The app version to upgrade to from `--channel` [default: the newest].
        #[arg(long, value_name = "VERSION", requires = "channel")]
        app_version: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Finish an upgrade that was interrupted (berth killed, power lost).
    Resume {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Go back from an interrupted upgrade to the version its current hop began from.
    Abort {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Upgrade to the newest version in `upgrade.source` that `upgrade.auto` allows, if
    /// now is inside `upgrade.window` (what the supervisor's `berth-upgrade` job runs).
    Auto {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// An optional service name.
#[derive(Debug, Args)]
pub struct ServiceArg {
    /// Service name; all services when omitted.
    pub service: Option<String>,
}

#[cfg(test)]
mod tests {
    /// clap's own checks of the command line's definition (names used twice, say).
    #[test]
    fn the_command_line_is_well_formed() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}

/// `berth image …`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build one image per service of a release bundle into an OCI image layout: a
    /// Debian 12 base with the service's packages, berth, the bundled components and
    /// the instance's skeleton, each a layer; reproducible from the bundle alone.
    Build {
        #[command(flatten)]
        signed: SignedBundle,
        /// The OCI image layout to write (made if missing; images already in it stay).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Only this service's image (repeat for more) [default: every service].
        #[arg(long = "service", value_name = "NAME")]
        services: Vec<String>,
        /// Also write the layout as one `oci-archive` file.
        #[arg(long, value_name = "FILE")]
        oci_archive: Option<PathBuf>,
        /// Also write each image as a `docker-archive` (`docker load`, `podman load`)
        /// into this directory, as `<app>-<service>-<version>.docker.tar`.
        #[arg(long, value_name = "DIR")]
        docker_archives: Option<PathBuf>,
        /// Where the Debian base roots are kept between builds.
        #[arg(
            long,
            value_name = "DIR",
            default_value = "/var/cache/berth/image-bases"
        )]
        cache: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// `berth k8s …`.
#[derive(Debug, Subcommand)]
pub enum K8sCommand {
    /// Write the objects a cluster needs (a workload per role, Services, the site
    /// config as a ConfigMap, volume claims, Jobs for the hooks, CronJobs for the
    /// periodic jobs, an Ingress) as a kustomize base with an overlay per environment;
    /// the secrets are made once, as files the base's secret generator reads.
    Render {
        /// The directory to write (`base/`, `overlays/<env>/`).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Where the images are: `<registry>/<app>-<service>:<version>`.
        #[arg(long, value_name = "REGISTRY", default_value = "localhost")]
        registry: String,
        /// The storage class of every volume claim [default: the cluster's].
        #[arg(long, value_name = "CLASS")]
        storage_class: Option<String>,
        /// An environment to write an overlay for (repeat for more) [default: production].
        #[arg(long = "env", value_name = "NAME")]
        environments: Vec<String>,
        /// The cluster's pod network, which the services' access lists let in (repeat
        /// for more) [default: every private range].
        #[arg(long = "pod-network", value_name = "CIDR")]
        pod_networks: Vec<String>,
        /// Take the secrets from this backup (`berth backup create` on a host) rather
        /// than making new ones, so the instance moved in keeps its sessions and tokens;
        /// replaced ones are kept under `base/secrets-replaced/`.
        #[arg(long, value_name = "ARCHIVE", requires = "key")]
        secrets_from: Option<PathBuf>,
        /// The key file of the instance that made the backup (`berth backup key
        /// --export`): its signing key vouches for the archive, its backup key decrypts
        /// the secrets.
        #[arg(long, value_name = "FILE", requires = "secrets_from")]
        key: Option<PathBuf>,
        /// The OCI image layout `berth image build --out` wrote: every image the
        /// objects name must be in it (`<service>-<version>`), or nothing is written.
        #[arg(long, value_name = "DIR")]
        images: Option<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// `berth container …`: the entry point of the images `berth image build` makes.
#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Render the service's config and run it in the foreground, as the container's
    /// first process (the image's default command).
    Run {
        /// The service.
        service: String,
        /// Once the service is ready, run this hook in the container beside it
        /// (repeat for more, run in that order); each is started again after a
        /// pause when it fails, and the service is not ready before all succeeded.
        #[arg(long = "then", value_name = "HOOK")]
        then: Vec<String>,
    },
    /// Run one lifecycle hook (`migrate`, `initdb`…) in the foreground and exit with
    /// its status.
    Hook {
        /// The hook.
        hook: String,
        /// First wait until this service, in this container, is ready (10 minutes
        /// at most).
        #[arg(long = "when-ready", value_name = "SERVICE")]
        when_ready: Option<String>,
    },
    /// Wait until the hook has nothing left to do (its `check` exits 0), at most its
    /// timeout: exit 0 then, 1 past it.
    WaitHook {
        /// The hook.
        hook: String,
    },
    /// Wait until a TCP connection to HOST:PORT succeeds: exit 0 then, 1 past the
    /// timeout.
    WaitFor {
        /// The address.
        #[arg(value_name = "HOST:PORT")]
        address: String,
        /// How long at most.
        #[arg(long, default_value = "10m", value_parser = duration)]
        timeout: std::time::Duration,
    },
    /// Run one periodic job (`[jobs.<name>]`) once in the foreground and exit with its
    /// status (what a Kubernetes CronJob's pod runs).
    Job {
        /// The job.
        job: String,
    },
    /// Restore a backup into this deployment's volumes (a restore Job's pod, while the
    /// pods that use them are stopped): the archive's signature checked with the key
    /// file, each data directory swapped in, the dump loaded by the database service
    /// run here for the time of the restore (or by the server `--database` names);
    /// what was there is put back on failure.
    Restore {
        /// The archive (`berth backup create` on a host, or in another deployment).
        archive: PathBuf,
        /// The key file of the instance that made it (`berth backup key --export`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// First wait (an hour at most) for a file `ready` beside the archive, made
        /// once the archive and the key file are copied in whole.
        #[arg(long)]
        wait: bool,
        /// Refuse while HOST:PORT still answers after 5 minutes (a Service of the pods
        /// that use the volumes); repeat for more.
        #[arg(long = "not-while", value_name = "HOST:PORT")]
        not_while: Vec<String>,
        /// The database is elsewhere (`[external]`), at HOST:PORT: the dump is loaded
        /// there over the network as the owning role (which must be allowed to create
        /// databases), with its password from the app's secrets; waited for up to 5
        /// minutes.
        #[arg(long, value_name = "HOST:PORT")]
        database: Option<String>,
    },
    /// Back up this deployment (the backup CronJob's pod, in the database service's
    /// image): the database dumped over the network, the data directories read from
    /// their volumes, written into DIR as `berth backup create` writes an archive (a
    /// host's `berth restore` takes it), then DIR pruned by the retention policy.
    Backup {
        /// The directory the archive goes to (the CronJob's claim).
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// The key file whose signing key signs the archive and whose backup key its
        /// secrets are encrypted to (`berth backup key --export`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The database's Service (waited for up to 5 minutes).
        #[arg(long, value_name = "HOST:PORT")]
        database: String,
    },
    /// Probe the service's readiness once: exit 0 when ready (the image's health check).
    Ready {
        /// The service.
        service: String,
    },
}

/// A duration as the manifest writes one (`90s`, `10m`).
fn duration(s: &str) -> Result<std::time::Duration, String> {
    berth_model::parse_duration(s)
}
