//! `berth container restore`: a backup of the app, made on a host or in another
//! deployment, restored into this deployment's volumes by a one-off pod (Kubernetes'
//! restore Job) while the pods that use them are stopped. The database service runs
//! inside that pod for the time of the restore; the restore itself is
//! [`berth_backup::offline`]'s.

use std::path::Path;
use std::time::{Duration, Instant};

use berth_backup::BackupError;
use berth_lifecycle::Progress;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::start::{self, Options, Prepared, What};
use crate::{ContainerError, Result};

/// How long the addresses `--not-while` names may take to stop answering (pods
/// that are stopping finish their requests first).
const STOPPING: Duration = Duration::from_mins(5);

/// How long the database service may take to become ready.
const STARTING: Duration = Duration::from_mins(5);

/// `berth container restore ARCHIVE --key FILE [--wait] [--not-while HOST:PORT]…
/// [--database HOST:PORT]`: with `wait`, first until a file `ready` is beside the
/// archive; refused while any address `not_while` names still answers (the pods that
/// use the volumes must be stopped); then the archive restored as
/// [`berth_backup::offline::restore`] does, the dump loaded by the database service
/// of the manifest's `[backup.database]` run here, or with `database`, by the server
/// at that address (elsewhere: `[external]`) as the owning role. Returns the exit
/// status.
///
/// # Errors
/// As [`start::prepare`]; the restore failed (what was there is put back).
pub fn restore(
    opts: &Options,
    (archive, key): (&Path, &Path),
    wait: bool,
    not_while: &[String],
    database: Option<&str>,
    say: &mut dyn FnMut(&str),
) -> Result<u8> {
    if wait && !wait_for_files(archive, key, WAITING, say)? {
        return Ok(crate::init::STOPPED);
    }
    for address in not_while {
        still_answers(address, STOPPING, say)?;
    }
    let said = std::cell::RefCell::new(say);
    let progress = Said(&said);
    let report = match database {
        None => here(opts, (archive, key), &said, &progress)?,
        Some(address) => match elsewhere(opts, (archive, key), address, &said, &progress)? {
            Some(report) => report,
            None => return Ok(crate::init::STOPPED),
        },
    };
    (said.borrow_mut())(&format!(
        "berth: restored {} {} (backup of {}): {}{}",
        report.app,
        report.app_version,
        report.created,
        if report.data_dirs.is_empty() {
            "no data directory".to_owned()
        } else {
            report.data_dirs.join(", ")
        },
        report
            .database
            .map(|d| format!(", database `{d}`"))
            .unwrap_or_default()
    ));
    Ok(0)
}

/// A message callback shared by the restore and its progress.
type Say<'a> = std::cell::RefCell<&'a mut dyn FnMut(&str)>;

/// The restore with the database service run in this container.
fn here(
    opts: &Options,
    (archive, key): (&Path, &Path),
    said: &Say<'_>,
    progress: &Said<'_, '_>,
) -> Result<berth_backup::offline::OfflineReport> {
    let opened = start::open(opts)?;
    let manifest = &opened.manifest.manifest;
    let service = manifest
        .backup
        .as_ref()
        .and_then(|b| b.database.as_ref())
        .map(|d| d.service.clone())
        .or_else(|| manifest.services.keys().next().cloned())
        .ok_or_else(|| ContainerError::Invalid("the manifest has no service".to_owned()))?;
    let prepared = start::prepare(opts, What::Service(&service))?;
    start::write(&prepared)?;
    // The dump goes on the database's own volume, which has room for the database.
    let scratch = prepared
        .instance
        .manifest
        .manifest
        .components
        .get(&prepared.component)
        .and_then(|c| c.data_dirs.first())
        .map_or_else(
            || prepared.instance.paths.tmp(),
            |d| prepared.instance.paths.data_dir(d.path()),
        )
        .join(SCRATCH);
    let declared = manifest_dirs(&prepared.instance);
    for dir in declared.iter().chain([&scratch]) {
        on_a_volume(dir, RESTORE_ON_ROOT)?;
    }
    let mut site = Here {
        opts,
        prepared: &prepared,
        say: said,
    };
    berth_backup::offline::restore(
        &prepared.instance,
        archive,
        key,
        &scratch,
        berth_backup::offline::Server::Here(&mut site),
        progress,
    )
    .map_err(restore_failed)
}

/// The restore with the database at `address`, reached over the network as the
/// owning role with its password (the app's secret); `None` when stopped while
/// waiting for it.
fn elsewhere(
    opts: &Options,
    (archive, key): (&Path, &Path),
    address: &str,
    said: &Say<'_>,
    progress: &Said<'_, '_>,
) -> Result<Option<berth_backup::offline::OfflineReport>> {
    let (host, port) = crate::remote::split_address(address)?;
    let inst = start::open(opts)?;
    let Some(secret) = crate::remote::check_manifest(&inst.manifest.manifest)? else {
        return Err(ContainerError::Invalid(format!(
            "--database {address}: the manifest of {} backs up no database",
            inst.manifest.manifest.app.name
        )));
    };
    let Some(password) = crate::remote::password_when_up(
        opts,
        &secret,
        address,
        "nothing was restored",
        *said.borrow_mut(),
    )?
    else {
        return Ok(None);
    };
    // The dump goes beside the archive, on the restore's own volume: no volume of the
    // database is here.
    let scratch = archive
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(SCRATCH);
    for dir in manifest_dirs(&inst).iter().chain([&scratch]) {
        on_a_volume(dir, RESTORE_ON_ROOT)?;
    }
    // The password stays off the volumes, in a file only this user reads.
    let private = crate::remote::Scratch::new(&std::env::temp_dir(), "berth-restore")?;
    let owner = inst
        .manifest
        .manifest
        .backup
        .as_ref()
        .and_then(|b| b.database.as_ref())
        .map(|d| d.owner.clone())
        .unwrap_or_default();
    let passfile = crate::remote::passfile(&private, &owner, &password)?;
    let report = berth_backup::offline::restore(
        &inst,
        archive,
        key,
        &scratch,
        berth_backup::offline::Server::Elsewhere(berth_backup::database::Network {
            host: &host,
            port: &port,
            passfile: &passfile,
        }),
        progress,
    )
    .map_err(restore_failed)?;
    drop(private);
    Ok(Some(report))
}

/// Where the dump is unpacked, on a volume: the same place every attempt, so one
/// after an interruption finds what the last left.
const SCRATCH: &str = ".berth-restore-dump";

#[allow(clippy::needless_pass_by_value)] // taken as `map_err` hands it over
fn restore_failed(e: berth_backup::BackupError) -> ContainerError {
    let hint = e.hint().map(|h| format!(" ({h})")).unwrap_or_default();
    ContainerError::Invalid(format!("the restore failed: {e}{hint}"))
}

/// Where the data directories the manifest backs up are.
fn manifest_dirs(inst: &berth_lifecycle::Instance) -> Vec<std::path::PathBuf> {
    inst.manifest
        .manifest
        .backup
        .iter()
        .flat_map(|b| b.data_dirs.iter())
        .map(|d| inst.paths.data_dir(d))
        .collect()
}

/// Refuses `dir` when it is not on a volume mounted into the container (its closest
/// existing directory is on the container's own root): what a restore put there
/// would be gone with the container, and a backup of it would hold the image's
/// directory. `why` says so, and what to mount.
pub(crate) fn on_a_volume(dir: &Path, why: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let root = std::fs::metadata("/").map_err(|source| ContainerError::Io {
        action: "read",
        path: "/".into(),
        source,
    })?;
    let existing = dir
        .ancestors()
        .find_map(|a| std::fs::metadata(a).ok())
        .ok_or_else(|| ContainerError::Invalid(format!("{} is nowhere", dir.display())))?;
    if existing.dev() == root.dev() {
        return Err(ContainerError::Invalid(format!(
            "{} is not on a volume: {why}",
            dir.display()
        )));
    }
    Ok(())
}

/// Why a restore refuses a directory on the container's own root.
const RESTORE_ON_ROOT: &str = "what a restore put there would be gone with the container; mount its volume (the restore Job `berth k8s render` writes mounts them all)";

/// How long `--wait` waits for the archive.
const WAITING: Duration = Duration::from_hours(1);

/// `--wait`: until `ready` is beside the archive (once the archive and the key file
/// were copied in whole), at most [`WAITING`]; says once how to put them there. False
/// when stopped meanwhile.
fn wait_for_files(
    archive: &Path,
    key: &Path,
    within: Duration,
    say: &mut dyn FnMut(&str),
) -> Result<bool> {
    let ready = archive.with_file_name("ready");
    let started = Instant::now();
    let mut said = false;
    while !ready.exists() {
        if started.elapsed() >= within {
            return Err(ContainerError::Invalid(format!(
                "no {} after {}s: nothing was restored",
                ready.display(),
                within.as_secs()
            )));
        }
        if !said {
            let pod = std::env::var("HOSTNAME").unwrap_or_else(|_| "POD".to_owned());
            say(&format!(
                "berth: waiting for the archive: kubectl cp ARCHIVE {pod}:{} -c restore; \
                 kubectl cp KEY-FILE {pod}:{} -c restore; kubectl exec {pod} -c restore -- touch {}",
                archive.display(),
                key.display(),
                ready.display()
            ));
            said = true;
        }
        if crate::init::pause(Duration::from_secs(2)) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Waits until `address` no longer takes a connection, at most `within`; refused past
/// it.
fn still_answers(address: &str, within: Duration, say: &mut dyn FnMut(&str)) -> Result<()> {
    use std::net::ToSocketAddrs as _;
    let started = Instant::now();
    let mut said = false;
    loop {
        let answers = address.to_socket_addrs().is_ok_and(|mut addrs| {
            // A connection to itself is no answer: with nothing listening on a port
            // of the ephemeral range, TCP may give it as the local port and connect
            // the socket to itself.
            addrs.any(|a| {
                std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2))
                    .is_ok_and(|s| s.local_addr().ok() != Some(a))
            })
        });
        if !answers {
            return Ok(());
        }
        if started.elapsed() >= within {
            return Err(ContainerError::Invalid(format!(
                "{address} still answers after {}s: the pods that use the volumes run; stop them first (scale their workloads to 0), then restore",
                within.as_secs()
            )));
        }
        if !said {
            say(&format!("berth: waiting for {address} to stop answering"));
            said = true;
        }
        if crate::init::pause(Duration::from_secs(2)) {
            return Err(ContainerError::Invalid(
                "stopped before the restore began".to_owned(),
            ));
        }
    }
}

/// The restore's progress, as lines on standard error.
struct Said<'a, 'b>(&'a Say<'b>);

impl Progress for Said<'_, '_> {
    fn begin(&self, step: &str) {
        (self.0.borrow_mut())(&format!("berth: {step}"));
    }
    fn end(&self, detail: &str) {
        if !detail.is_empty() {
            (self.0.borrow_mut())(&format!("berth: {detail}"));
        }
    }
    fn note(&self, line: &str) {
        (self.0.borrow_mut())(&format!("berth: {line}"));
    }
}

/// This container, for the restore: its database service, its hooks.
struct Here<'a, 'b, 'c> {
    opts: &'a Options,
    prepared: &'a Prepared,
    say: &'b Say<'c>,
}

fn cannot(what: String) -> BackupError {
    BackupError::Cannot {
        what,
        hint: "the pod's log says why; nothing of the restore was kept".to_owned(),
    }
}

impl berth_backup::offline::Site for Here<'_, '_, '_> {
    fn start_database(&mut self, service: &str) -> berth_backup::Result<Box<dyn std::any::Any>> {
        let spec = self
            .prepared
            .service
            .clone()
            .filter(|s| s.name == service)
            .ok_or_else(|| cannot(format!("no service `{service}` in this container")))?;
        let (program, args) = spec
            .argv
            .split_first()
            .ok_or_else(|| cannot(format!("the {service} service has an empty command")))?;
        let mut cmd = berth_process::ChildCommand::new(program);
        cmd.args(args)
            .envs(&spec.env)
            .detach(berth_process::Detach::Group)
            .die_with_parent();
        if let Some(dir) = &spec.cwd {
            cmd.current_dir(dir);
        }
        let child = cmd
            .build()
            .map_err(|e| cannot(format!("the {service} service: {e}")))?
            .spawn()
            .map_err(|e| cannot(format!("the {service} service could not start: {e}")))?;
        let running = Running {
            child,
            signal: spec.stop_signal.parse().unwrap_or(Signal::SIGTERM),
            timeout: spec.stop_timeout,
        };
        berth_host::fsutil::write_atomic(
            &crate::main_pid_file(self.prepared),
            format!("{}\n", running.child.id()).as_bytes(),
            0o644,
            None,
        )?;
        (self.say.borrow_mut())(&format!(
            "berth: started the {service} service for the restore"
        ));
        let end = Instant::now() + STARTING;
        let mut running = running;
        loop {
            if let Ok(Some(status)) = running.child.try_wait() {
                return Err(cannot(format!(
                    "the {service} service ended before it was ready ({status})"
                )));
            }
            match crate::probe(self.prepared, service) {
                Ok(()) => return Ok(Box::new(running)),
                Err(e) if Instant::now() >= end => {
                    return Err(cannot(format!("{e} after {}s", STARTING.as_secs())));
                }
                Err(_) => std::thread::sleep(Duration::from_secs(1)),
            }
        }
    }

    fn run_hook(&mut self, hook: &str) -> berth_backup::Result<()> {
        let line = crate::berth_argv(self.opts, &["container", "hook", hook]);
        let (program, args) = line.split_first().expect("berth's path comes first");
        let status = std::process::Command::new(program)
            .args(args)
            .env_clear()
            .envs(self.opts.vars.iter().cloned())
            .status()
            .map_err(|e| cannot(format!("the {hook} hook could not start: {e}")))?;
        if status.success() {
            Ok(())
        } else {
            Err(cannot(format!("the {hook} hook failed ({status})")))
        }
    }
}

/// The database service started for the restore: stopped (its stop signal, then
/// SIGKILL past its stop timeout) when dropped.
struct Running {
    child: std::process::Child,
    signal: Signal,
    timeout: Duration,
}

impl Drop for Running {
    fn drop(&mut self) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX));
        let _ = kill(pid, self.signal);
        let end = Instant::now() + self.timeout;
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, bind, getsockname, socket,
    };

    /// A Service that still answers refuses the restore, naming it; one that does not
    /// lets it begin.
    #[test]
    fn a_running_pod_refuses_the_restore() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap().to_string();
        let mut said = Vec::new();
        let e = still_answers(&open, Duration::ZERO, &mut |m| said.push(m.to_owned()))
            .unwrap_err()
            .to_string();
        assert!(e.contains(&open) && e.contains("still answers"), "{e}");
        // A port bound and not listening: closed, and no other test can take it.
        let closed = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        bind(
            std::os::fd::AsRawFd::as_raw_fd(&closed),
            &SockaddrIn::new(127, 0, 0, 1, 0),
        )
        .unwrap();
        let at: SockaddrIn = getsockname(std::os::fd::AsRawFd::as_raw_fd(&closed)).unwrap();
        drop(listener);
        still_answers(&at.to_string(), Duration::ZERO, &mut |_| {}).unwrap();
    }

    /// `--wait` waits for `ready` beside the archive and says how to put it there;
    /// past its time, nothing is restored.
    #[test]
    fn the_restore_waits_for_ready() {
        let dir = tempfile::tempdir().unwrap();
        let (archive, key) = (dir.path().join("archive"), dir.path().join("key"));
        let mut said = Vec::new();
        let e = wait_for_files(&archive, &key, Duration::ZERO, &mut |m| {
            said.push(m.to_owned());
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("ready") && e.contains("nothing was restored"),
            "{e}"
        );
        std::fs::write(dir.path().join("ready"), "").unwrap();
        assert!(wait_for_files(&archive, &key, Duration::ZERO, &mut |_| {}).unwrap());
    }

    /// A directory on the container's own root is refused (a restore there would go
    /// with the container); one on another file system is taken.
    #[test]
    fn only_a_mounted_volume_takes_a_restore() {
        use std::os::unix::fs::MetadataExt as _;
        let root = std::fs::metadata("/").unwrap().dev();
        let on_root = ["/usr/lib", "/etc", "/var"]
            .into_iter()
            .find(|p| std::fs::metadata(p).is_ok_and(|m| m.dev() == root))
            .expect("a directory on the root file system");
        let e = on_a_volume(&Path::new(on_root).join("no-such-dir/x"), RESTORE_ON_ROOT)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not on a volume"), "{e}");
        // /proc is a file system of its own everywhere.
        on_a_volume(Path::new("/proc/self"), RESTORE_ON_ROOT).unwrap();
    }
}
