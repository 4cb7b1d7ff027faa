//! Why a lifecycle operation failed. Every variant names what it is about; [`LifecycleError::hint`]
//! names the command to run next, so the CLI can print it on a line of its own.

use std::path::PathBuf;

/// Result of lifecycle operations.
pub type Result<T, E = LifecycleError> = std::result::Result<T, E>;

/// A failed lifecycle operation.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// The manifest or the site config is invalid (nothing was changed).
    #[error(transparent)]
    Invalid(#[from] berth_model::Diagnostics),
    /// A setting given through the environment (a container's `BERTH_SET_…`) is not
    /// one the manifest declares, or cannot be used: the message names it and the fix.
    #[error("{0}")]
    Environment(String),
    /// Rendering failed.
    #[error(transparent)]
    Render(#[from] berth_render::RenderError),
    /// A change to the host failed.
    #[error(transparent)]
    Host(#[from] berth_host::HostError),
    /// The state database failed.
    #[error(transparent)]
    State(#[from] berth_state::StateError),
    /// Talking to the supervisor failed.
    #[error(transparent)]
    Supervisor(#[from] berth_supervisor::SupervisorError),
    /// The supervision plan could not be encoded.
    #[error("Failed to encode the supervision plan")]
    Encode(#[from] serde_json::Error),
    /// A file operation failed.
    #[error("Failed to {action} `{path}`")]
    Io {
        /// What berth was doing, e.g. `read the site config`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `--manifest DIR` has no `berth.toml`.
    #[error("No app manifest at `{0}`: the directory must contain `berth.toml`")]
    NoManifest(PathBuf),
    /// No manifest given and none built in.
    #[error("No app manifest given: pass `--manifest DIR` (a directory with `berth.toml`)")]
    NoDefaultManifest,
    /// The instance's user names cannot be what the site config asks.
    #[error("{why}; hint: {hint}")]
    Users {
        /// What is wrong with the instance's user names.
        why: String,
        /// How to fix it.
        hint: String,
    },
    /// `reconfigure` before the first `up`.
    #[error("`{0}` has not been set up yet")]
    NotSetUp(PathBuf),
    /// An upgrade of an instance that was never set up, or with `--manifest`.
    #[error(
        "no instance to upgrade at `{}`: upgrades start from the manifest an instance was set up with (leave out `--manifest`; name the new version with `--to DIR`)",
        prefix.display()
    )]
    UpgradeNeedsInstance {
        /// The prefix.
        prefix: PathBuf,
    },
    /// The upgrade is refused before anything changes.
    #[error(transparent)]
    UpgradeRefused(#[from] berth_upgrade::Refused),
    /// The site config cannot be rewritten for renamed settings.
    #[error(transparent)]
    Migrate(#[from] berth_upgrade::MigrateError),
    /// The supervisor is not running.
    #[error("The supervisor of `{prefix}` is not running")]
    SupervisorDown {
        /// The instance.
        prefix: PathBuf,
        /// Why connecting failed.
        #[source]
        source: berth_supervisor::SupervisorError,
    },
    /// The supervisor stopped its services but its process did not exit.
    #[error("The supervisor of `{prefix}` did not exit within 2 minutes of stopping its services")]
    SupervisorLingers {
        /// The instance.
        prefix: PathBuf,
    },
    /// The supervisor answered with an error (its message is a sentence).
    #[error("{0}")]
    SupervisorRefused(String),
    /// The supervisor answered something else than the request calls for.
    #[error("The supervisor sent an unexpected answer to `{0}`")]
    UnexpectedAnswer(&'static str),
    /// The supervisor process exited right after being started.
    #[error("The supervisor exited at start ({status}); last lines of `{log}`:\n{tail}")]
    SupervisorExited {
        /// How it exited.
        status: std::process::ExitStatus,
        /// Its log file.
        log: PathBuf,
        /// The log's last lines.
        tail: String,
    },
    /// The supervisor did not answer on its socket in time.
    #[error("The supervisor did not answer on `{socket}` within 10 s; see `{log}`")]
    SupervisorSilent {
        /// The control socket.
        socket: PathBuf,
        /// Its log file.
        log: PathBuf,
    },
    /// A service started beside itself answers its probe, but its port is not (only)
    /// its own: traffic is not moved there.
    #[error(
        "`{addr}` of `{service}` is not the new release's alone ({detail}): traffic was not moved to it"
    )]
    NotTheService {
        /// The process started beside its service (`web@next`).
        service: String,
        /// The address its probe asked.
        addr: String,
        /// What holds it.
        detail: String,
    },
    /// The host does not have what the app or berth needs (`[preflight]`).
    #[error("The host does not meet the app's requirements, nothing was changed:\n{}", .0.trim_end())]
    Preflight(String),
    /// A port a service listens on is taken by another program.
    #[error("Ports needed by the app are already in use, nothing was started:\n{}", .0.join("\n"))]
    PortsInUse(Vec<String>),
    /// A service user cannot search a directory on the way to a path it uses.
    #[error("Service users cannot reach the paths they use, nothing was changed:\n{}", .blocked.join("\n"))]
    Unreachable {
        /// Each directory, its mode and owner, the users it stops and a path beyond it.
        blocked: Vec<String>,
        /// What to do about it.
        fix: String,
    },
    /// Distribution packages are missing and berth may not install them.
    #[error("These packages are needed and not installed: {}", .missing.join(", "))]
    PackagesMissing {
        /// Package names.
        missing: Vec<String>,
        /// The exact command to run.
        install: String,
    },
    /// Programs the manifest names do not exist after installing its packages.
    #[error("Programs the manifest names are missing after installing its packages: {}", .0.join(", "))]
    BinariesMissing(Vec<String>),
    /// A hook could not run or failed.
    #[error("Hook `{name}` {why}; last lines of `{log}`:\n{tail}")]
    Hook {
        /// Hook name.
        name: String,
        /// What happened, e.g. `failed (exit status: 1)`.
        why: String,
        /// Its log file.
        log: PathBuf,
        /// The log's last lines.
        tail: String,
    },
    /// A service a hook needs did not start.
    #[error("Failed to start `{service}`, which hook `{hook}` needs")]
    HookNeeds {
        /// The hook.
        hook: String,
        /// The service.
        service: String,
        /// Why it did not start.
        #[source]
        source: Box<LifecycleError>,
    },
    /// Services did not start; `logs` holds the last lines of each one that is not ready.
    #[error("{cause}{logs}")]
    ServicesFailed {
        /// What the supervisor said (part of the message, so not a `source`).
        cause: Box<LifecycleError>,
        /// Log excerpts, each introduced by its file name.
        logs: String,
    },
    /// The app did not answer at its health URL.
    #[error("The app did not answer at `{url}` within {secs} s (last: {last})")]
    Health {
        /// The health URL.
        url: String,
        /// How long berth waited.
        secs: u64,
        /// The last status or error seen.
        last: String,
    },
    /// The rendered health URL is not a URL.
    #[error("The health URL `{0}` is not a URL")]
    HealthUrl(String),
    /// A `systemctl` command failed.
    #[error("`systemctl {args}` failed ({status}): {stderr}")]
    Systemctl {
        /// Its arguments.
        args: String,
        /// How it exited.
        status: String,
        /// What it said.
        stderr: String,
    },
    /// A change failed part-way and was put back whole: files, plan and services are
    /// as they were before it.
    #[error(
        "{cause}\nThe change was rolled back: the previous configuration is back in place ({files} file(s) restored) and its services run as before"
    )]
    RolledBack {
        /// Why the change failed (part of the message, so not a `source`).
        cause: Box<LifecycleError>,
        /// How many files were put back.
        files: usize,
    },
    /// A change failed part-way, and putting it back failed too.
    #[error("{cause}\nPutting the previous configuration back failed too: {undo}")]
    RollbackFailed {
        /// Why the change failed.
        cause: Box<LifecycleError>,
        /// Why putting it back failed.
        undo: Box<LifecycleError>,
    },
    /// The systemd unit started but its supervisor does not answer.
    #[error("`{0}` started but the supervisor does not answer")]
    UnitSilent(String),
}

impl LifecycleError {
    /// Whether this error refused the operation before it changed anything (bad
    /// input, a host that does not meet the app's needs, a taken port): its message
    /// is all there is to say, so no error report is written for it.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::Invalid(_)
                | Self::Environment(_)
                | Self::NoManifest(_)
                | Self::NoDefaultManifest
                | Self::Users { .. }
                | Self::NotSetUp(_)
                | Self::UpgradeNeedsInstance { .. }
                | Self::UpgradeRefused(_)
                | Self::Preflight(_)
                | Self::PortsInUse(_)
                | Self::Unreachable { .. }
                | Self::PackagesMissing { .. }
                | Self::BinariesMissing(_)
        )
    }

    /// What to do next, as a command line or a short instruction.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::NotSetUp(_) | Self::SupervisorDown { .. } => {
                Some("run `berth up` first".to_owned())
            }
            Self::Preflight(_) => Some(
                "fix each check that failed (`berth preflight` shows them all), then run the \
                 command again"
                    .to_owned(),
            ),
            Self::PortsInUse(_) => Some(
                "stop the program using them, or change the port in the site config, then run the command again"
                    .to_owned(),
            ),
            Self::Unreachable { fix, .. } => Some(fix.clone()),
            Self::PackagesMissing { install, .. } => {
                Some(format!("run `{install}`, then `berth up` again"))
            }
            Self::Hook { .. } | Self::ServicesFailed { .. } => Some(
                "fix the cause, then run `berth up` again; it resumes where it stopped".to_owned(),
            ),
            Self::HookNeeds { source, .. } => source.hint(),
            Self::RolledBack { .. } => Some(
                "nothing changed: fix the cause (`berth reconfigure --dry-run` shows the change), then run the command again"
                    .to_owned(),
            ),
            Self::RollbackFailed { .. } => Some(
                "`berth status` shows what runs; `berth reconfigure` writes the configuration of the site config again"
                    .to_owned(),
            ),
            Self::Health { .. } => Some(
                "`berth status` shows which service is unhealthy, `berth tail SERVICE` shows its log"
                    .to_owned(),
            ),
            Self::UnitSilent(unit) => Some(format!(
                "`systemctl status {unit}` and `journalctl -u {unit}` show why"
            )),
            _ => None,
        }
    }

    /// Wrap an I/O error with what was being done and to which path.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LifecycleError;

    fn refused(message: &str) -> LifecycleError {
        LifecycleError::SupervisorRefused(message.to_owned())
    }

    /// What a person reads after a failed change: the cause first, then whether the
    /// previous configuration is back, then what to do.
    #[test]
    fn a_rolled_back_change_says_what_is_back_and_what_to_do() {
        let rolled = LifecycleError::RolledBack {
            cause: Box::new(refused("service `web` did not become ready within 30s")),
            files: 2,
        };
        let failed = LifecycleError::RollbackFailed {
            cause: Box::new(refused("service `web` did not become ready within 30s")),
            undo: Box::new(refused("no such service `web`")),
        };
        insta::assert_snapshot!(format!(
            "{rolled}\nhint: {}\n---\n{failed}\nhint: {}",
            rolled.hint().unwrap(),
            failed.hint().unwrap()
        ));
    }

    /// A hook whose service could not start gives the hint of why it could not: a
    /// supervisor that is down says to run `berth up`.
    #[test]
    fn a_hook_that_needs_a_service_gives_the_hint_of_its_cause() {
        let down = LifecycleError::HookNeeds {
            hook: "createdb".into(),
            service: "db".into(),
            source: Box::new(LifecycleError::NotSetUp("/p".into())),
        };
        assert_eq!(down.hint().as_deref(), Some("run `berth up` first"));
        let other = LifecycleError::HookNeeds {
            hook: "createdb".into(),
            service: "db".into(),
            source: Box::new(refused("no")),
        };
        assert_eq!(other.hint(), None);
    }
}
