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

pub mod backup;
pub mod build;
pub mod init;
pub mod plan;
mod remote;
pub mod restore;
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

/// A file of berth's in the run directory of the container's component.
fn run_file(prepared: &Prepared, name: &str) -> PathBuf {
    prepared
        .instance
        .paths
        .component_run_dir(&prepared.component)
        .join(name)
}

/// Where a container's service's process id is written for its health check.
fn main_pid_file(prepared: &Prepared) -> PathBuf {
    run_file(prepared, "berth-main.pid")
}

/// Where a container's service says which hooks it still waits for: its readiness
/// probe fails while the file is there.
fn pending_file(prepared: &Prepared) -> PathBuf {
    run_file(prepared, "berth-pending")
}

/// `berth container run <service> [--then <hook>…]`: render, write the service's
/// files, run it in the foreground until it ends, and once it is ready the hooks
/// `then` names, one after the other (each started again after a pause when it
/// fails); the service is not ready before they all succeeded. Returns the
/// container's exit status.
///
/// # Errors
/// As [`start::prepare`] and [`start::write`]; a hook `then` names is not the
/// manifest's; the service cannot be started.
pub fn run_service(
    opts: &Options,
    service: &str,
    then: &[String],
    say: &mut dyn FnMut(&str),
) -> Result<u8> {
    let prepared = start::prepare(opts, What::Service(service))?;
    let hooks = &prepared.instance.manifest.manifest.hooks;
    let followers = then
        .iter()
        .map(|hook| {
            if hooks.contains_key(hook) {
                Ok(follower(opts, hook, service))
            } else {
                Err(ContainerError::Invalid(format!(
                    "--then {hook}: the manifest has no hook `{hook}`"
                )))
            }
        })
        .collect::<Result<Vec<_>>>()?;
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
        followers,
        pending_file: Some(pending_file(&prepared)),
        stop_fails: false,
        what,
    };
    init::run(&main, say)
}

/// This very berth's command line for `args`, with the prefix, manifest and site
/// config this one was given.
fn berth_argv(opts: &Options, args: &[&str]) -> Vec<String> {
    let exe = std::env::current_exe()
        .map_or_else(|_| BERTH_IN_IMAGE.to_owned(), |p| p.display().to_string());
    let mut line = vec![exe];
    let l = &opts.locate;
    for (flag, value) in [
        ("--prefix", &l.prefix),
        ("--manifest", &l.manifest),
        ("--config", &l.config),
    ] {
        if let Some(v) = value {
            line.push(flag.to_owned());
            line.push(v.display().to_string());
        }
    }
    line.extend(args.iter().map(|a| (*a).to_owned()));
    line
}

/// `berth container hook <hook> --when-ready <service>`, as this very berth with this
/// process's environment.
fn follower(opts: &Options, hook: &str, service: &str) -> init::Follower {
    init::Follower {
        what: format!("the {hook} hook"),
        argv: berth_argv(opts, &["container", "hook", hook, "--when-ready", service]),
        env: opts.vars.iter().cloned().collect(),
    }
}

/// `berth container hook <hook> --when-ready <service>`: wait until the service (in
/// this container) answers its readiness probe, at most `within`, then run the hook
/// as [`run_hook`] does. Returns its exit status (1 when the service never became
/// ready).
///
/// # Errors
/// As [`run_hook`].
pub fn run_hook_when_ready(
    opts: &Options,
    hook: &str,
    service: &str,
    within: Duration,
    say: &mut dyn FnMut(&str),
) -> Result<u8> {
    let prepared = start::prepare(opts, What::Service(service))?;
    let end = std::time::Instant::now() + within;
    loop {
        match probe(&prepared, service) {
            Ok(()) => break,
            Err(why) if std::time::Instant::now() >= end => {
                say(&format!(
                    "berth: the {hook} hook did not run: {why} (waited {}s)",
                    within.as_secs()
                ));
                return Ok(1);
            }
            Err(_) => {
                if init::pause(Duration::from_secs(2)) {
                    return Ok(init::STOPPED);
                }
            }
        }
    }
    run_hook(opts, hook, say)
}

/// `berth container wait-hook <hook>`: run the hook's `check` until it exits 0 (the
/// hook has nothing left to do), 15 seconds apart or more ([`check_pause`]), at most
/// the hook's timeout: what a pod that comes after a hook run as a Job waits with.
/// Returns 0 once it did, 1 when the time ran out.
///
/// # Errors
/// The hook has no `check`; as [`start::prepare`].
pub fn wait_hook(opts: &Options, hook: &str, say: &mut dyn FnMut(&str)) -> Result<u8> {
    let prepared = start::prepare(opts, What::Hook(hook))?;
    let h = prepared
        .hook
        .clone()
        .ok_or_else(|| ContainerError::Invalid(format!("no hook `{hook}`")))?;
    let check = h.check.clone().ok_or_else(|| {
        ContainerError::Invalid(format!(
            "the {hook} hook has no `check`: nothing says when it has nothing left to do (give `[hooks.{hook}]` a `check` command)"
        ))
    })?;
    start::write(&prepared)?;
    let started = std::time::Instant::now();
    let mut attempt = 0_u64;
    loop {
        // Its output every few minutes, not every time.
        let loud = attempt.is_multiple_of(12);
        let run = OneShot {
            what: format!("the {hook} hook's check"),
            argv: check.clone(),
            env: h.env.clone(),
            cwd: h.cwd.clone(),
            timeout: Duration::from_mins(5),
        };
        let checked = std::time::Instant::now();
        match run.run(&mut |m| {
            if loud {
                say(m);
            }
        })? {
            0 => {
                say(&format!("berth: the {hook} hook has nothing left to do"));
                return Ok(0);
            }
            init::STOPPED => return Ok(init::STOPPED),
            _ => {}
        }
        if started.elapsed() >= h.timeout {
            say(&format!(
                "berth: the {hook} hook still had something to do after {}s",
                h.timeout.as_secs()
            ));
            return Ok(1);
        }
        if loud {
            say(&format!("berth: waiting for the {hook} hook to be done"));
        }
        // A check starts the app (seconds of CPU, taken from the hook it waits for
        // when they share a machine): not too often.
        if init::pause(check_pause(checked.elapsed())) {
            return Ok(init::STOPPED);
        }
        attempt += 1;
    }
}

/// The pause after a check that took `took`: 15 seconds, or three times as long as
/// the check ran when that is longer (at most 5 minutes), so that checks keep at most
/// a quarter of a core busy however slow the machine is.
fn check_pause(took: Duration) -> Duration {
    (took * 3).clamp(Duration::from_secs(15), Duration::from_mins(5))
}

/// `berth container wait-for <host:port>`: until a TCP connection to it succeeds, at
/// most `within` (in Kubernetes, a Service's address answers once one of its pods is
/// ready). Returns 0 once it did, 1 when the time ran out.
#[must_use]
pub fn wait_for(address: &str, within: Duration, say: &mut dyn FnMut(&str)) -> u8 {
    use std::net::ToSocketAddrs as _;
    let started = std::time::Instant::now();
    let mut said = false;
    loop {
        let why = match address.to_socket_addrs() {
            Ok(addrs) => {
                let mut why = String::from("no address");
                for a in addrs {
                    match std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)) {
                        Ok(_) => {
                            say(&format!("berth: {address} answers"));
                            return 0;
                        }
                        Err(e) => why = format!("{a}: {e}"),
                    }
                }
                why
            }
            Err(e) => e.to_string(),
        };
        if started.elapsed() >= within {
            say(&format!(
                "berth: {address} did not answer within {}s ({why})",
                within.as_secs()
            ));
            return 1;
        }
        if !said {
            say(&format!("berth: waiting for {address} ({why})"));
            said = true;
        }
        if init::pause(Duration::from_secs(2)) {
            return init::STOPPED;
        }
    }
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
            followers: Vec::new(),
            pending_file: None,
            stop_fails: true,
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
/// as the image's health check; not ready while hooks it was started with (`--then`)
/// have not all succeeded.
///
/// # Errors
/// The probe failed (the message says what it saw), or as [`start::prepare`].
pub fn ready(opts: &Options, service: &str) -> Result<()> {
    let prepared = start::prepare(opts, What::Service(service))?;
    if let Ok(waiting) = std::fs::read_to_string(pending_file(&prepared)) {
        return Err(ContainerError::Invalid(format!(
            "the {service} service is not ready: {} not done yet",
            waiting.trim()
        )));
    }
    probe(&prepared, service)
}

/// One attempt of the service's own readiness probe.
fn probe(prepared: &Prepared, service: &str) -> Result<()> {
    let spec = prepared
        .service
        .as_ref()
        .ok_or_else(|| ContainerError::Invalid(format!("no service `{service}`")))?;
    let pid = std::fs::read_to_string(main_pid_file(prepared))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    berth_supervisor::probe_service_once(spec, pid, Duration::from_secs(30)).map_err(|why| {
        ContainerError::Invalid(format!("the {service} service is not ready: {why}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `wait-for` returns 0 once the address takes a connection, 1 when it did not
    /// within the time given, naming why.
    #[test]
    fn wait_for_answers_when_something_listens() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap().to_string();
        assert_eq!(wait_for(&open, Duration::from_secs(5), &mut |_| {}), 0);
        drop(listener);
        let mut said = Vec::new();
        assert_eq!(
            wait_for(&open, Duration::ZERO, &mut |m| said.push(m.to_owned())),
            1
        );
        assert!(said[0].contains("did not answer within 0s"), "{said:?}");
        let mut said = Vec::new();
        assert_eq!(
            wait_for("no-such-host.invalid:80", Duration::ZERO, &mut |m| said
                .push(m.to_owned())),
            1
        );
        assert!(said[0].contains("no-such-host.invalid:80"), "{said:?}");
    }

    /// A quick check is repeated every 15 s; a slow one (a loaded machine) waits three
    /// times as long as it ran, never more than 5 minutes.
    #[test]
    fn slow_checks_are_run_less_often() {
        assert_eq!(check_pause(Duration::from_secs(2)), Duration::from_secs(15));
        assert_eq!(check_pause(Duration::from_secs(5)), Duration::from_secs(15));
        assert_eq!(
            check_pause(Duration::from_secs(12)),
            Duration::from_secs(36)
        );
        assert_eq!(check_pause(Duration::from_mins(4)), Duration::from_mins(5));
    }
}
