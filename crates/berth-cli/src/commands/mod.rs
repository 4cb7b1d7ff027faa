//! One function per command.

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use berth_lifecycle::Locate;

use crate::cli::{
    BackupCommand, Cli, Command, ConfigCommand, FleetCommand, GlobalArgs, ImageCommand, K8sCommand,
    PackageCommand, PlanCommand, ReleaseCommand, RepoCommand, UpgradeCommand,
};
use crate::embedded;

mod audit;
mod backup;
mod config;
mod control;
mod fleet;
mod fleet_upgrade;
mod history;
mod image;
mod init;
mod k8s;
mod release;
mod repo;
mod sbom;
mod topology;
mod up;
mod upgrade;

/// How commands find the instance.
fn locate(g: &GlobalArgs) -> Locate {
    Locate {
        prefix: g.prefix.clone(),
        manifest: g.manifest.clone(),
        config: g.config.clone(),
        embedded: Some(embedded::default_manifest()),
        payload: None,
    }
}

/// The name of `command` when it changes the instance: refused while an upgrade is
/// unfinished (the upgrade's own `resume` and `abort` excepted).
fn changes_instance(command: &Command) -> Option<&'static str> {
    Some(match command {
        Command::Up { .. } => "up",
        Command::Fleet(FleetCommand::NodeUp) => "fleet node-up",
        Command::Fleet(FleetCommand::NodeUpgrade { .. }) => "fleet node-upgrade",
        Command::Reconfigure { dry_run: false } => "reconfigure",
        Command::Down { .. } => "down",
        Command::Start(_) => "start",
        Command::Stop(_) => "stop",
        Command::Restart(_) => "restart",
        Command::Reload(_) => "reload",
        Command::Restore { .. } => "restore",
        Command::Backup(BackupCommand::Create { .. }) => "backup create",
        Command::Backup(BackupCommand::Prune { dry_run: false, .. }) => "backup prune",
        Command::Config(ConfigCommand::Migrate { dry_run: false, .. }) => "config migrate",
        Command::Upgrade(UpgradeCommand::Apply { .. }) => "upgrade apply",
        Command::Upgrade(UpgradeCommand::Auto { .. }) => "upgrade auto",
        _ => return None,
    })
}

/// `up --bundle` with `--manifest` (a global option: clap cannot see the conflict
/// itself) is a usage error.
fn refuse_manifest_with_bundle(cli: &Cli) {
    if matches!(
        cli.command,
        Command::Up {
            bundle: Some(_),
            ..
        } | Command::Up {
            channel: Some(_),
            ..
        }
    ) && cli.global.manifest.is_some()
    {
        <Cli as clap::CommandFactory>::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "`up --bundle` installs the manifest the bundle carries: give `--manifest` or \
                 `--bundle`, not both",
            )
            .exit();
    }
}

/// The name an error report of `command` goes by, for the commands that get one when
/// they fail.
fn reported_as(command: &Command) -> Option<&'static str> {
    Some(match command {
        Command::Up { .. } => "up",
        Command::Reconfigure { dry_run: false } => "reconfigure",
        Command::Restore { .. } => "restore",
        Command::Upgrade(
            UpgradeCommand::Apply { .. }
            | UpgradeCommand::Auto { .. }
            | UpgradeCommand::Resume { .. },
        ) => "upgrade",
        _ => return None,
    })
}

/// `berth console`: the address and path from the options, else from the site config
/// (`console.listen`, and `console.path` when the app's web server is in front).
fn console(
    loc: &Locate,
    listen: Option<std::net::SocketAddr>,
    base_path: Option<String>,
) -> Result<ExitCode> {
    let paths = berth_lifecycle::paths(loc)?;
    let inst = berth_lifecycle::instance::open(loc)?;
    let (set_listen, set_path) = berth_lifecycle::desired::console_settings(&inst)?;
    let listen = match (listen, set_listen) {
        (Some(l), _) => l,
        (None, Some(l)) => l.parse().context("`console.listen` is not an address")?,
        (None, None) => std::net::SocketAddr::from(([127, 0, 0, 1], 9470)),
    };
    let base_path = base_path.unwrap_or(set_path);
    if !berth_model::builtin::is_console_path(&base_path) {
        anyhow::bail!(
            "`--base-path {base_path}` is not a path the console can be mounted at: give `/`, or \
             segments of letters, digits, `.`, `_`, `~` and `-` between slashes, e.g. `/berth/`"
        );
    }
    // The children that carry out changes name the same instance (the console adds
    // `--manifest` while the instance keeps no manifest of its own).
    let mut global_args = vec!["--prefix".to_owned(), paths.prefix.display().to_string()];
    let mut loc = loc.clone();
    if let Some(m) = &loc.manifest {
        loc.manifest = Some(std::path::absolute(m)?);
    }
    if let Some(c) = &loc.config {
        global_args.push("--config".to_owned());
        global_args.push(std::path::absolute(c)?.display().to_string());
    }
    let config = berth_console::Config {
        listen,
        paths,
        app: inst.manifest.manifest.app.name.clone(),
        loc,
        base_path: base_path.clone(),
        berth: std::env::current_exe().context("Failed to find the berth executable")?,
        global_args,
    };
    println!(
        "Console of {} on http://{listen}{base_path} (sign in with the password in {}; Ctrl-C stops it)",
        config.app,
        berth_console::password_file(&config.paths).display()
    );
    berth_console::serve(&config)?;
    Ok(ExitCode::SUCCESS)
}

/// Who the history says ran this command: `BERTH_ACTOR` when berth's own console or
/// supervisor started it, else the user (and, under sudo, the one behind it). Control
/// characters are dropped and the text is kept short: it is printed and shown in pages.
pub fn actor() -> String {
    fn clean(s: &str) -> String {
        s.chars().filter(|c| !c.is_control()).take(160).collect()
    }
    if let Ok(a) = std::env::var("BERTH_ACTOR") {
        let a = clean(&a);
        if !a.trim().is_empty() {
            return a;
        }
    }
    let uid = nix::unistd::getuid();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {uid}"), |u| u.name);
    match std::env::var("SUDO_USER") {
        Ok(s) if !s.is_empty() && s != name => format!("{} via sudo", clean(&s)),
        _ => name,
    }
}

/// What to do once a command failed and its error is printed: a failed `up`,
/// `reconfigure`, `upgrade` or `restore` leaves a redacted error report
/// ([`berth_diagnose::error_report`]).
pub fn after_failure(cli: &Cli) -> Option<impl FnOnce(&anyhow::Error) + use<>> {
    let command = reported_as(&cli.command)?;
    let loc = locate(&cli.global);
    Some(move |err: &anyhow::Error| up::report_failure(&loc, command, err))
}

/// Run the parsed command line.
#[allow(clippy::too_many_lines)] // one arm per command
pub fn run(cli: Cli) -> Result<ExitCode> {
    refuse_manifest_with_bundle(&cli);
    let loc = locate(&cli.global);
    let quiet = cli.global.quiet;
    if let Some(name) = changes_instance(&cli.command) {
        // An instance that cannot be found is the command's own error to report.
        if let Ok(paths) = berth_lifecycle::paths(&loc) {
            berth_upgrade_apply::refuse_if_unfinished(&paths.prefix, name)?;
        }
    }
    match cli.command {
        Command::Up {
            bundle: Some(bundle),
            public_key: Some(key),
            ..
        } => up::up_from_bundle(&loc, &bundle, &key, quiet),
        Command::Up {
            channel: Some(channel),
            public_key: Some(key),
            app_version,
            ..
        } => up::up_from_channel(&loc, &channel, app_version.as_deref(), &key, quiet),
        Command::Up { .. } => up::up(&loc, quiet),
        Command::Reconfigure { dry_run } => up::reconfigure(&loc, dry_run, quiet),
        Command::Plan { what: None } => up::plan(&loc),
        Command::Plan {
            what: Some(PlanCommand::Topology(args)),
        } => topology::plan(&loc, &args),
        Command::Fleet(FleetCommand::Check(args)) => fleet::check(&loc, &args),
        Command::Fleet(FleetCommand::Status(args)) => fleet::status(&loc, &args),
        Command::Fleet(FleetCommand::Up { args, release }) => {
            let bundle = release.bundle.as_deref().zip(release.public_key.as_deref());
            fleet::up(&loc, &args, false, quiet, bundle)
        }
        Command::Fleet(FleetCommand::Reconfigure(args)) => {
            fleet::up(&loc, &args, true, quiet, None)
        }
        Command::Fleet(FleetCommand::NodeReceive { name }) => fleet::node_receive(&loc, &name),
        Command::Fleet(FleetCommand::NodeUp) => fleet::node_up(&loc, quiet),
        Command::Fleet(FleetCommand::Upgrade { args, to, release }) => {
            let to = match (to, release.bundle.zip(release.public_key)) {
                (Some(dir), _) => fleet_upgrade::To::Dir(dir),
                (None, Some((bundle, key))) => fleet_upgrade::To::Bundle(bundle, key),
                (None, None) => anyhow::bail!("`fleet upgrade` needs `--to DIR` or `--bundle B`"),
            };
            fleet_upgrade::upgrade(&loc, &args, &to, quiet)
        }
        Command::Fleet(FleetCommand::NodeUpgrade {
            step,
            hold_post_deploy,
        }) => fleet_upgrade::node_upgrade(&loc, step, hold_post_deploy, quiet),
        Command::Fleet(FleetCommand::NodeBalancer { server, state }) => {
            fleet_upgrade::node_balancer(&loc, &server, state)
        }
        Command::Fleet(FleetCommand::NodeDigest) => fleet::node_digest(&loc),
        Command::Config(ConfigCommand::Check) => config::check(&loc),
        Command::Config(ConfigCommand::Show) => config::show(&loc),
        Command::Config(ConfigCommand::Migrate { to, dry_run }) => {
            upgrade::migrate(&loc, &to, dry_run)
        }
        Command::Upgrade(UpgradeCommand::Plan { to, json }) => upgrade::plan(&loc, &to, json),
        Command::Upgrade(UpgradeCommand::Apply {
            to,
            bundle,
            public_key,
            channel,
            app_version,
            json,
        }) => match (public_key, channel) {
            (Some(key), Some(channel)) => {
                upgrade::apply_channel(&loc, &channel, app_version.as_deref(), &key, json, quiet)
            }
            (Some(key), None) if !bundle.is_empty() => {
                upgrade::apply_bundles(&loc, &bundle, &key, json, quiet)
            }
            _ => upgrade::apply(&loc, &to, json, quiet),
        },
        Command::Upgrade(UpgradeCommand::Resume { json }) => upgrade::resume(&loc, json, quiet),
        Command::Upgrade(UpgradeCommand::Abort { json }) => upgrade::abort(&loc, json, quiet),
        Command::Upgrade(UpgradeCommand::Auto { json }) => upgrade::auto(&loc, json, quiet),
        Command::Releases { json } => upgrade::releases(&loc, json),
        Command::Package(PackageCommand::Deb(args)) => {
            release::package_bundle(&args, release::Format::Deb, None)
        }
        Command::Package(PackageCommand::Tar(args)) => {
            release::package_bundle(&args, release::Format::Tar, None)
        }
        Command::Package(PackageCommand::Rpm(args)) => release::package_bundle(
            &args.common,
            release::Format::Rpm,
            args.sign_with.as_deref(),
        ),
        Command::Release(ReleaseCommand::Key { out, json }) => release::key(&out, json),
        Command::Package(PackageCommand::Itself {
            maintainer,
            berth,
            out,
            architecture,
            source_date_epoch,
            json,
        }) => release::package_self(
            &maintainer,
            berth.as_deref(),
            &out,
            architecture.as_deref(),
            source_date_epoch,
            json,
        ),
        Command::Repo(RepoCommand::Key { out, name, json }) => repo::key(&out, &name, json),
        Command::Audit {
            target,
            public_key,
            db,
            policy,
            update_from,
            json,
        } => match update_from {
            Some(from) => audit::update(&loc, &from, db.as_deref(), json),
            None => audit::run(
                &loc,
                &audit::Request {
                    target: target.as_deref(),
                    public_key: public_key.as_deref(),
                    db: db.as_deref(),
                    policy: policy.as_deref(),
                    json,
                },
            ),
        },
        Command::K8s(K8sCommand::Render {
            out,
            registry,
            storage_class,
            environments,
            pod_networks,
            secrets_from,
            key,
            images,
            json,
        }) => k8s::render(
            &loc,
            &k8s::RenderArgs {
                out: &out,
                registry: &registry,
                storage_class: storage_class.as_deref(),
                environments: &environments,
                pod_networks: &pod_networks,
                secrets_from: secrets_from.as_deref().zip(key.as_deref()),
                images: images.as_deref(),
                json,
            },
        ),
        Command::Image(ImageCommand::Build {
            signed,
            out,
            services,
            oci_archive,
            docker_archives,
            cache,
            json,
        }) => image::build(&image::BuildArgs {
            bundle: &signed.bundle,
            key: &signed.public_key,
            out: &out,
            services: &services,
            oci_archive: oci_archive.as_deref(),
            docker_archives: docker_archives.as_deref(),
            cache: &cache,
            json,
        }),
        Command::Licences { signed, out } => {
            sbom::licences(&signed.bundle, &signed.public_key, &out)
        }
        Command::Sbom {
            signed,
            format,
            out,
        } => sbom::write(&signed.bundle, &signed.public_key, format, out.as_deref()),
        Command::Repo(RepoCommand::Yum {
            dir,
            rpms,
            key,
            source_date_epoch,
            json,
        }) => repo::yum(
            &dir,
            &rpms,
            &key,
            source_date_epoch.unwrap_or_else(repo::now),
            json,
        ),
        Command::Repo(RepoCommand::Apt {
            dir,
            debs,
            key,
            suite,
            component,
            origin,
            label,
            architectures,
            source_date_epoch,
            json,
        }) => repo::apt(
            &dir,
            &debs,
            &key,
            &berth_repo::apt::Meta {
                label: label.unwrap_or_else(|| origin.clone()),
                origin,
                suite,
                component,
                architectures,
                date: source_date_epoch.unwrap_or_else(repo::now),
            },
            json,
        ),
        Command::Release(ReleaseCommand::Publish {
            bundle,
            channel,
            key,
            json,
        }) => release::publish(&bundle, &channel, &key, json),
        Command::Release(ReleaseCommand::Build {
            key,
            out,
            source_date_epoch,
            berth,
            no_seed,
            json,
        }) => release::build(
            cli.global.manifest.as_deref(),
            &key,
            &out,
            source_date_epoch,
            berth.as_deref(),
            no_seed,
            json,
        ),
        Command::Release(ReleaseCommand::Verify { signed, json }) => {
            release::verify(&signed.bundle, &signed.public_key, json)
        }
        Command::Status { json } => control::status(&loc, json),
        Command::Preflight { json } => up::preflight(&loc, json),
        Command::Console { listen, base_path } => console(&loc, listen, base_path),
        Command::Init {
            external_url,
            profile,
            enable,
            disable,
            backup_target,
            users,
            yes,
            up: then_up,
        } => {
            let mut given = berth_setup::Answers::new();
            if let Some(u) = external_url {
                given.insert(berth_setup::Field::ExternalUrl, u);
            }
            if let Some(p) = profile {
                given.insert(berth_setup::Field::Profile, p);
            }
            for c in enable {
                given.insert(berth_setup::Field::Component(c), "yes".to_owned());
            }
            for c in disable {
                given.insert(berth_setup::Field::Component(c), "no".to_owned());
            }
            if let Some(t) = backup_target {
                given.insert(berth_setup::Field::BackupTarget, t);
            }
            if let Some(u) = users {
                given.insert(berth_setup::Field::Users, u);
            }
            init::init(&loc, &given, yes, then_up, quiet)
        }
        Command::Diagnose { out, lines, json } => up::diagnose(&loc, out, lines, json),
        Command::Start(s) => control::start(&loc, s.service),
        Command::Stop(s) => control::stop(&loc, s.service),
        Command::Restart(s) => control::restart(&loc, s.service),
        Command::Reload(s) => control::reload(&loc, s.service),
        Command::Tail {
            service,
            lines,
            follow,
        } => control::tail(&loc, service.as_deref(), lines, follow),
        Command::Down { purge } => control::down(&loc, purge),
        Command::History { limit, json } => history::history(&loc, limit, json),
        Command::Supervise { autostart } => control::supervise(&loc, autostart),
        Command::Container(c) => image::container(&loc, c),
        Command::Backup(BackupCommand::Create { to, prune, json }) => {
            backup::create(&loc, to, prune, json, quiet)
        }
        Command::Backup(BackupCommand::List { to, json }) => {
            backup::list(&loc, to.as_deref(), json)
        }
        Command::Backup(BackupCommand::Verify {
            archive,
            from,
            key,
            json,
        }) => backup::verify(&loc, &archive, from.as_deref(), key.as_deref(), json, quiet),
        Command::Backup(BackupCommand::Prune { to, dry_run, json }) => {
            backup::prune(&loc, to.as_deref(), dry_run, json)
        }
        Command::Backup(BackupCommand::Key { export, json }) => {
            backup::key(&loc, export.as_deref(), json)
        }
        Command::Restore {
            archive,
            from,
            key,
            without_secrets,
            no_safety_backup,
            resume,
            abort,
            json,
        } => backup::restore(
            &loc,
            &berth_backup::restore::RestoreOptions {
                archive,
                from,
                key,
                without_secrets,
                resume,
                no_safety_backup,
            },
            abort,
            json,
            quiet,
        ),
    }
}
