//! `berth`: the command line. Parses arguments, calls the lifecycle crates, prints.
//!
//! Exit codes: 0 success, 1 the operation failed, 2 bad input (config or arguments).

#![allow(clippy::print_stdout, clippy::print_stderr)] // the CLI is where output belongs

mod cli;
mod commands;
mod embedded;
mod output;

use std::process::ExitCode;

use clap::Parser;

/// The operation failed.
const EXIT_FAILURE: u8 = 1;
/// The input (config file, manifest, arguments) is invalid.
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    // `berth config show | head` must end quietly, not panic on a closed pipe.
    // SAFETY: restoring the default disposition before any thread exists.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        );
    }
    let args = cli::Cli::parse();
    match commands::run(args) {
        Ok(code) => code,
        Err(err) => {
            if let Some(d) = err.downcast_ref::<berth_model::Diagnostics>() {
                eprintln!("{d}");
                return ExitCode::from(EXIT_BAD_INPUT);
            }
            // The message, its causes, then hints on their own lines.
            let text = format!("{err:#}");
            let (message, hints): (Vec<&str>, Vec<&str>) =
                text.lines().partition(|l| !l.starts_with("hint:"));
            eprintln!("error: {}", message.join("\n"));
            for h in hints {
                eprintln!("{h}");
            }
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
