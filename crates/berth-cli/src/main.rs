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
            if let Some(d) = err.downcast_ref::<berth_model::Diagnostics>().or_else(|| {
                match err.downcast_ref::<berth_lifecycle::LifecycleError>() {
                    Some(berth_lifecycle::LifecycleError::Invalid(d)) => Some(d),
                    _ => None,
                }
            }) {
                eprintln!("{d}");
                return ExitCode::from(EXIT_BAD_INPUT);
            }
            // The message and its causes, then what to do next on a line of its own.
            // Paths and tool output in the message may hold escape sequences.
            eprintln!("error: {}", berth_model::terminal_safe(&format!("{err:#}")));
            let bad_input = matches!(
                err.downcast_ref::<berth_lifecycle::LifecycleError>(),
                Some(
                    berth_lifecycle::LifecycleError::NoManifest(_)
                        | berth_lifecycle::LifecycleError::NoDefaultManifest
                )
            );
            let hint = err
                .chain()
                .find_map(|e| e.downcast_ref::<berth_lifecycle::LifecycleError>())
                .and_then(berth_lifecycle::LifecycleError::hint);
            if let Some(h) = hint {
                eprintln!("hint: {h}");
            }
            ExitCode::from(if bad_input {
                EXIT_BAD_INPUT
            } else {
                EXIT_FAILURE
            })
        }
    }
}
