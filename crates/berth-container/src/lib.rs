//! An app as container images, one per service of its manifest, and berth as each
//! image's entry point.
//!
//! [`build`] turns a verified release bundle into images: a Debian 12 base root with
//! the Debian packages the service uses (made by mmdebstrap, cached), berth, the
//! bundled components it runs, and the instance's skeleton (the manifest, the service
//! user, its writable directories), each in a layer of its own so that an app upgrade
//! changes only the last layers. [`start`], [`init`] and [`ready`] are what runs in the
//! container: the same instance, settings and render as on a host, the service's
//! files written, the service started in the foreground under berth as process 1, and
//! its readiness probe as the image's health check.

pub mod build;
pub mod init;
pub mod plan;
pub mod settings;
pub mod start;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

pub use build::{BuildInput, BuiltImage, build};
pub use start::{DEFAULT_SECRETS_DIR, Options, Prepared, What};

/// Where berth is in every image.
pub const BERTH_IN_IMAGE: &str = "/usr/local/bin/berth";
/// The user id (and group id) services run as in the images: not root, the same in
/// every image of an app, so a volume one container writes another of the same
/// component can too (Kubernetes' `runAsUser`/`fsGroup`).
pub const SERVICE_UID: u32 = 10001;

/// Something a container's berth or an image build cannot do.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The input is not usable: the message says why and what to do.
    #[error("{0}")]
    Invalid(String),
    /// A file or directory could not be read or written.
    #[error("Failed to {action} `{}`: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Opening or rendering the instance failed.
    #[error(transparent)]
    Lifecycle(#[from] berth_lifecycle::LifecycleError),
    /// A host write failed.
    #[error(transparent)]
    Host(#[from] berth_host::HostError),
    /// Writing an image failed.
    #[error(transparent)]
    Image(#[from] berth_image::ImageError),
    /// The bundle could not be opened.
    #[error(transparent)]
    Release(#[from] berth_release::ReleaseError),
    /// The libraries of a bundled component could not be resolved to packages.
    #[error(transparent)]
    Package(#[from] berth_package::PackageError),
    /// The manifest could not be read.
    #[error(transparent)]
    Manifest(#[from] berth_model::Diagnostics),
}

/// What this crate's functions return.
pub type Result<T, E = ContainerError> = std::result::Result<T, E>;

/// The instance's desired state, as on a host but without asking dpkg for package
/// versions: in an image they only feed `when = "change"` hooks, which the
/// orchestrator runs, and a health check renders every 30 seconds.
fn render(
    instance: &berth_lifecycle::Instance,
    secrets: &std::collections::BTreeMap<String, String>,
) -> Result<berth_render::DesiredState> {
    berth_render::render(&berth_render::RenderInput {
        manifest: &instance.manifest,
        config: &instance.config,
        facts: &instance.facts,
        secrets,
        paths: &instance.paths,
        users: &instance.users,
    })
    .map_err(|e| berth_lifecycle::LifecycleError::from(e).into())
}

fn signal(name: &str, what: &str) -> Result<nix::sys::signal::Signal> {
    nix::sys::signal::Signal::from_str(name)
        .map_err(|_| ContainerError::Invalid(format!("{what}: `{name}` is not a signal")))
}

/// Where a container's service's process id is written for its health check.
fn main_pid_file(prepared: &Prepared) -> PathBuf {
    prepared
        .instance
        .paths
        .component_run_dir(&prepared.component)
        .join("berth-main.pid")
}

/// `berth container run <service>`: render, write the service's files, run it in the
/// foreground until it ends. Returns the container's exit status.
///
/// # Errors
/// As [`start::prepare`] and [`start::write`]; the service cannot be started.
pub fn run_service(opts: &Options, service: &str, say: &mut dyn FnMut(&str)) -> Result<u8> {
    let prepared = start::prepare(opts, What::Service(service))?;
    start::write(&prepared)?;
    let spec = prepared
        .service
        .clone()
        .ok_or_else(|| ContainerError::Invalid(format!("no service `{service}`")))?;
    let what = format!("the {service} service");
    let main = init::Main {
        stop_signal: signal(&spec.stop_signal, &what)?,
        reload_signal: spec
            .reload_signal
            .as_deref()
            .map(|s| signal(s, &what))
            .transpose()?,
        stop_timeout: spec.stop_timeout,
        argv: spec.argv,
        env: spec.env,
        cwd: spec.cwd,
        pid_file: Some(main_pid_file(&prepared)),
        run_timeout: None,
        what,
    };
    init::run(&main, say)
}

/// `berth container hook <hook>`: render, write the hook's component's files, run the
/// hook once in the foreground (killed after its timeout). Returns its exit status.
///
/// # Errors
/// As [`run_service`].
pub fn run_hook(opts: &Options, hook: &str, say: &mut dyn FnMut(&str)) -> Result<u8> {
    run_once(opts, What::Hook(hook), say)
}

/// A hook or one run of a periodic job: rendered, its component's files written, run
/// once in the foreground and killed after its timeout.
fn run_once(opts: &Options, what: What<'_>, say: &mut dyn FnMut(&str)) -> Result<u8> {
    let prepared = start::prepare(opts, what)?;
    start::write(&prepared)?;
    let run = match (prepared.hook, prepared.job, what) {
        (Some(h), _, What::Hook(name)) => OneShot {
            what: format!("the {name} hook"),
            argv: h.argv,
            env: h.env,
            cwd: h.cwd,
            timeout: h.timeout,
        },
        (_, Some(j), What::Job(name)) => OneShot {
            what: format!("the {name} job"),
            argv: j.argv,
            env: j.env,
            cwd: j.cwd,
            timeout: j.timeout,
        },
        (_, _, What::Hook(name)) => {
            return Err(ContainerError::Invalid(format!("no hook `{name}`")));
        }
        (_, _, What::Job(name) | What::Service(name)) => {
            return Err(ContainerError::Invalid(format!("no job `{name}`")));
        }
    };
    run.run(say)
}

/// A process run once in the foreground, killed after its timeout: a hook, or one run
/// of a periodic job.
struct OneShot {
    what: String,
    argv: Vec<String>,
    env: std::collections::BTreeMap<String, String>,
    cwd: Option<std::path::PathBuf>,
    timeout: Duration,
}

impl OneShot {
    fn run(self, say: &mut dyn FnMut(&str)) -> Result<u8> {
        let main = init::Main {
            what: self.what,
            argv: self.argv,
            env: self.env,
            cwd: self.cwd,
            stop_signal: nix::sys::signal::Signal::SIGTERM,
            stop_timeout: Duration::from_secs(10),
            reload_signal: None,
            pid_file: None,
            run_timeout: Some(self.timeout),
        };
        init::run(&main, say)
    }
}

/// `berth container job <job>`: render, write the job's component's files, run the
/// periodic job once in the foreground (killed after its timeout), as a CronJob's pod
/// does. Returns its exit status.
///
/// # Errors
/// As [`run_service`].
pub fn run_job(opts: &Options, job: &str, say: &mut dyn FnMut(&str)) -> Result<u8> {
    run_once(opts, What::Job(job), say)
}

/// `berth container ready <service>`: one attempt of the service's readiness probe,
/// as the image's health check.
///
/// # Errors
/// The probe failed (the message says what it saw), or as [`start::prepare`].
pub fn ready(opts: &Options, service: &str) -> Result<()> {
    let prepared = start::prepare(opts, What::Service(service))?;
    let spec = prepared
        .service
        .as_ref()
        .ok_or_else(|| ContainerError::Invalid(format!("no service `{service}`")))?;
    let pid = std::fs::read_to_string(main_pid_file(&prepared))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    berth_supervisor::probe_service_once(spec, pid, Duration::from_secs(30)).map_err(|why| {
        ContainerError::Invalid(format!("the {service} service is not ready: {why}"))
    })
}
