//! Where systemd is PID 1, the supervisor runs as a systemd unit instead of a
//! background process, so it comes back after a reboot and systemd's tools see it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_render::Paths;

use crate::error::{LifecycleError, Result};

/// Where unit files written by berth go.
pub(crate) const UNIT_DIR: &str = "/etc/systemd/system";

/// The unit's name for an app: `berth-<app>.service`.
pub fn unit_name(app: &str) -> String {
    format!("berth-{app}.service")
}

/// The unit file text (pure, so it is snapshot-tested).
pub fn unit_text(app: &str, paths: &Paths, berth_exe: &Path) -> String {
    format!(
        "# Written by `berth up`; rewritten on every `berth up`.\n\
         [Unit]\n\
         Description=berth supervisor of {app} ({prefix})\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         ExecStart={exe} --prefix {prefix} supervise --autostart\n\
         # The supervisor stops the services itself, each with its own signal and timeout;\n\
         # systemd only signals the supervisor, then kills what is left.\n\
         KillMode=mixed\n\
         TimeoutStopSec=300\n\
         Restart=on-failure\n\
         RestartSec=2\n\
         LimitNOFILE=65536\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        prefix = paths.prefix.display(),
        exe = berth_exe.display(),
    )
}

/// Where a package puts the unit it ships (`berth package deb`): `up` then enables that
/// one and writes none of its own.
pub const PACKAGED_UNIT_DIRS: [&str; 2] = ["/lib/systemd/system", "/usr/lib/systemd/system"];

/// The first line of a unit `up` writes (and may therefore remove).
const WRITTEN_BY_UP: &str = "# Written by `berth up`";

/// The unit a package ships for the instance at `paths`: the one `up` would write.
pub fn packaged_unit_text(app: &str, paths: &Paths, berth_exe: &Path) -> String {
    let text = unit_text(app, paths, berth_exe);
    let rest = text.split_once('\n').map_or("", |(_, rest)| rest);
    format!("# Shipped by the {app} package; `{app}-ctl up` enables and starts it.\n{rest}")
}

/// The systemd this host has: where unit files go and which `systemctl` drives them.
#[derive(Debug, Clone)]
pub struct Systemd {
    /// Directory for unit files, normally `/etc/systemd/system`.
    pub unit_dir: PathBuf,
    /// The `systemctl` program.
    pub systemctl: PathBuf,
}

impl Default for Systemd {
    fn default() -> Self {
        Self {
            unit_dir: PathBuf::from(UNIT_DIR),
            systemctl: PathBuf::from("systemctl"),
        }
    }
}

impl Systemd {
    /// Write the unit (if it changed), enable it and start it, then wait until the
    /// supervisor answers on its socket.
    pub fn install_and_start(&self, app: &str, paths: &Paths, berth_exe: &Path) -> Result<()> {
        let name = unit_name(app);
        let path = self.unit_dir.join(&name);
        let text = unit_text(app, paths, berth_exe);
        let current = std::fs::read_to_string(&path).ok();
        // A package's unit counts only when it runs this very instance (same prefix,
        // same berth): one for another prefix is left to the `/etc` unit, which wins.
        let body = |t: &str| t.split_once('\n').map(|(_, rest)| rest.to_owned());
        let packaged = PACKAGED_UNIT_DIRS.iter().any(|dir| {
            std::fs::read_to_string(Path::new(dir).join(&name))
                .ok()
                .is_some_and(|t| body(&t) == body(&text))
        });
        if packaged {
            // The package's unit is the one to run; a copy `up` wrote before the package
            // was installed would hide it.
            if current.is_some_and(|t| t.starts_with(WRITTEN_BY_UP)) {
                berth_host::fsutil::remove_file_if_exists(&path)?;
                self.systemctl(&["daemon-reload"])?;
            }
        } else if current.as_deref() != Some(text.as_str()) {
            berth_host::fsutil::write_atomic(&path, text.as_bytes(), 0o644, None)?;
            self.systemctl(&["daemon-reload"])?;
        }
        self.systemctl(&["enable", "--now", &name])?;
        let start = Instant::now();
        while !crate::supervisor::is_running(paths) {
            if start.elapsed() > Duration::from_secs(15) {
                return Err(LifecycleError::UnitSilent(name));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn systemctl(&self, args: &[&str]) -> Result<()> {
        let failed = |status: String, stderr: String| LifecycleError::Systemctl {
            args: args.join(" "),
            status,
            stderr,
        };
        let out = Command::new(&self.systemctl)
            .args(args)
            .output()
            .map_err(|e| failed("not run".to_owned(), e.to_string()))?;
        if !out.status.success() {
            return Err(failed(
                out.status.to_string(),
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_runs_the_supervisor_of_the_prefix() {
        let paths = Paths::for_prefix(Path::new("/var/opt/berth/demo"), "1.0.0");
        let text = unit_text("demo", &paths, Path::new("/usr/bin/berth"));
        assert!(text.contains(
            "ExecStart=/usr/bin/berth --prefix /var/opt/berth/demo supervise --autostart\n"
        ));
        assert!(text.contains("KillMode=mixed\n"));
        assert_eq!(unit_name("demo"), "berth-demo.service");
        let packaged = packaged_unit_text("demo", &paths, Path::new("/usr/bin/berth"));
        assert!(packaged.starts_with("# Shipped by the demo package"));
        assert!(text.starts_with(WRITTEN_BY_UP));
        assert_eq!(
            packaged.split_once('\n').unwrap().1,
            text.split_once('\n').unwrap().1
        );
    }
}
