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

/// The crates compiled into this binary, as `build.rs` recorded them (JSON), in a
/// section of its own so a bill of materials can read them from the file
/// (`berth_sbom::crates::of_binary`).
#[used]
#[unsafe(link_section = ".berth-deps")]
static DEPENDENCIES: [u8; include_bytes!(concat!(env!("OUT_DIR"), "/deps.json")).len()] =
    *include_bytes!(concat!(env!("OUT_DIR"), "/deps.json"));

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
    // Lets the test suite check that this build has fault points at all.
    berth_lifecycle::fault::point("cli:start");
    let args = cli::Cli::parse();
    berth_lifecycle::run::set_actor(&commands::actor());
    let after_failure = commands::after_failure(&args);
    match commands::run(args) {
        Ok(code) => code,
        Err(err) => {
            if let Some(d) = invalid_input(&err) {
                eprintln!("{d}");
                return ExitCode::from(EXIT_BAD_INPUT);
            }
            // The message and its causes, then what to do next on a line of its own.
            // Paths and tool output in the message may hold escape sequences.
            eprintln!("error: {}", berth_model::terminal_safe(&format!("{err:#}")));
            let bad_input = matches!(
                lifecycle_error(&err),
                Some(
                    berth_lifecycle::LifecycleError::NoManifest(_)
                        | berth_lifecycle::LifecycleError::NoDefaultManifest
                )
            );
            let hint = err.chain().find_map(|e| {
                e.downcast_ref::<berth_backup::BackupError>()
                    .map(berth_backup::BackupError::hint)
                    .or_else(|| {
                        e.downcast_ref::<berth_lifecycle::LifecycleError>()
                            .map(berth_lifecycle::LifecycleError::hint)
                    })
            });
            if let Some(h) = hint.flatten() {
                eprintln!("hint: {h}");
            }
            if let Some(report) = after_failure {
                report(&err);
            }
            ExitCode::from(if bad_input {
                EXIT_BAD_INPUT
            } else {
                EXIT_FAILURE
            })
        }
    }
}

/// The lifecycle error at the top of `err`, whether a backup operation wrapped it or not.
fn lifecycle_error(err: &anyhow::Error) -> Option<&berth_lifecycle::LifecycleError> {
    err.downcast_ref::<berth_lifecycle::LifecycleError>()
        .or_else(|| match err.downcast_ref::<berth_backup::BackupError>() {
            Some(berth_backup::BackupError::Lifecycle(e)) => Some(e),
            _ => None,
        })
}

/// The diagnostics of bad input (a manifest, a site config, a key file), if that is
/// what `err` is: they are printed whole, with positions, and berth exits with status 2.
fn invalid_input(err: &anyhow::Error) -> Option<&berth_model::Diagnostics> {
    if let Some(d) = err.downcast_ref::<berth_model::Diagnostics>() {
        return Some(d);
    }
    if let Some(berth_backup::BackupError::Invalid(d)) =
        err.downcast_ref::<berth_backup::BackupError>()
    {
        return Some(d);
    }
    if let Some(berth_release::ReleaseError::Manifest(d)) =
        err.downcast_ref::<berth_release::ReleaseError>()
    {
        return Some(d);
    }
    if let Some(berth_k8s::K8sError::Site(d)) = err.downcast_ref::<berth_k8s::K8sError>() {
        return Some(d);
    }
    match lifecycle_error(err) {
        Some(berth_lifecycle::LifecycleError::Invalid(d)) => Some(d),
        _ => None,
    }
}
