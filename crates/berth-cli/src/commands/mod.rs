//! One function per command.

use std::process::ExitCode;

use anyhow::Result;
use berth_lifecycle::Locate;

use crate::cli::{Cli, Command, ConfigCommand, GlobalArgs};
use crate::embedded;

mod config;
mod control;
mod history;
mod up;

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
        Command::Down => control::down(&loc),
        Command::History { limit, json } => history::history(&loc, limit, json),
        Command::Supervise { autostart } => control::supervise(&loc, autostart),
    }
}
