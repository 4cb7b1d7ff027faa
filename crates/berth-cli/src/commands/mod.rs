//! One function per command.

use std::process::ExitCode;

use anyhow::Result;
use berth_lifecycle::Locate;

use crate::cli::{BackupCommand, Cli, Command, ConfigCommand, GlobalArgs, UpgradeCommand};
use crate::embedded;

mod backup;
mod config;
mod control;
mod history;
mod up;
mod upgrade;

/// How commands find the instance.
fn locate(g: &GlobalArgs) -> Locate {
    Locate {
        prefix: g.prefix.clone(),
        manifest: g.manifest.clone(),
        config: g.config.clone(),
        embedded: Some(embedded::default_manifest()),
    }
}

/// Run the parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let loc = locate(&cli.global);
    let quiet = cli.global.quiet;
    match cli.command {
        Command::Up => up::up(&loc, quiet),
        Command::Reconfigure { dry_run } => up::reconfigure(&loc, dry_run, quiet),
        Command::Plan => up::plan(&loc),
        Command::Config(ConfigCommand::Check) => config::check(&loc),
        Command::Config(ConfigCommand::Show) => config::show(&loc),
        Command::Config(ConfigCommand::Migrate { to, dry_run }) => {
            upgrade::migrate(&loc, &to, dry_run)
        }
        Command::Upgrade(UpgradeCommand::Plan { to, json }) => upgrade::plan(&loc, &to, json),
        Command::Releases { json } => upgrade::releases(&loc, json),
        Command::Status { json } => control::status(&loc, json),
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
