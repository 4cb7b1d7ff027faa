//! `berth down`: stop every service and the supervisor, and keep them stopped at boot.

use std::time::Duration;

use berth_render::Paths;
use berth_supervisor_protocol::Request;

use crate::error::{LifecycleError, Result};
use crate::supervisor;

/// How long the supervisor may take to exit once its services are stopped.
const EXIT_WAIT: Duration = Duration::from_mins(2);

/// What [`down`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Down {
    /// The supervisor was not running: nothing was done.
    NotRunning,
    /// Every service was stopped, in reverse dependency order, and the supervisor has
    /// exited.
    Stopped,
}

/// Stop the instance at `paths`: remove the autostart marker (stopped on purpose, a
/// supervisor started at boot leaves the services stopped), ask the supervisor to
/// stop every service and exit, and wait until its process is gone.
pub fn down(paths: &Paths) -> Result<Down> {
    if !supervisor::is_running(paths) {
        return Ok(Down::NotRunning);
    }
    berth_host::fsutil::remove_file_if_exists(&paths.autostart_marker())?;
    supervisor::request(paths, &Request::Shutdown)?;
    // Shutdown answers once the services are stopped, before the daemon has removed
    // its socket and pid file: wait for the process itself to be gone.
    if !supervisor::wait_exited(paths, EXIT_WAIT) {
        return Err(LifecycleError::SupervisorLingers {
            prefix: paths.prefix.clone(),
        });
    }
    Ok(Down::Stopped)
}

/// `berth down --purge`: remove the host files (`[[host_files]]`) berth made that are
/// still as it made them; one changed since is left and listed. Nothing under the
/// prefix is touched beyond the record of host files.
pub fn remove_host_files(paths: &Paths) -> Result<berth_host::host_files::Report> {
    Ok(berth_host::host_files::HostFiles::new(paths.host_files_record()).remove_all()?)
}

/// What `berth down --purge` leaves, for it to say so: berth removes nothing it cannot
/// tell is only the instance's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// The prefix: site config, secrets, data, backups, logs.
    pub prefix: std::path::PathBuf,
    /// The system users the services ran as (from the last plan applied).
    pub users: Vec<String>,
    /// The distribution packages the manifest's components came from.
    pub packages: Vec<String>,
    /// The systemd unit that starts the supervisor at boot, when there is one.
    pub unit: Option<std::path::PathBuf>,
}

/// What [`remove_host_files`] leaves behind for the instance at `paths` of `manifest`.
pub fn kept(paths: &Paths, manifest: &berth_model::Manifest) -> Kept {
    let mut users: Vec<String> = crate::state_files::applied_plan(&paths.supervision_plan())
        .map(|plan| plan.services.into_iter().filter_map(|s| s.user).collect())
        .unwrap_or_default();
    users.retain(|u| u != "root");
    users.sort();
    users.dedup();
    let mut packages: Vec<String> = manifest
        .components
        .values()
        .flat_map(|c| c.packages.iter().cloned())
        .collect();
    packages.sort();
    packages.dedup();
    let unit = std::path::Path::new(crate::systemd::UNIT_DIR)
        .join(crate::systemd::unit_name(&manifest.app.name));
    Kept {
        prefix: paths.prefix.clone(),
        users,
        packages,
        unit: unit.exists().then_some(unit),
    }
}

/// `berth down --purge`: remove the users' homes (`home/`, what their processes wrote
/// in `HOME`: caches, dotfiles), by descriptors, never following a symlink a service
/// user left in one. Whether there was one. The next `berth up` makes them again.
pub fn remove_homes(paths: &Paths) -> Result<bool> {
    let prefix = match berth_host::beneath::SafeDir::open_trusted(&paths.prefix) {
        Ok(prefix) => prefix,
        Err(berth_host::HostError::Read { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Ok(false);
        }
        Err(e) => return Err(e.into()),
    };
    let rel = paths.beneath(&paths.homes()).to_path_buf();
    Ok(prefix.remove_tree(&rel)?)
}
