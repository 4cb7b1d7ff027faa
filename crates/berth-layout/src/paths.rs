//! The layout of one instance.
//!
//! Each method names the row of `docs/layout.md` it is (`Row …`); the crate's test
//! holds the two against each other.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::logs;

/// The instance's directory layout, all absolute.
///
/// The fields are the directories templates see as `paths.<field>`; everything else is
/// a method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paths {
    /// Root of the instance.
    pub prefix: PathBuf,
    /// Row `etc/`: rendered config files.
    pub etc: PathBuf,
    /// Row `data/`: component data.
    pub data: PathBuf,
    /// Row `run/`: sockets and pid files.
    pub run: PathBuf,
    /// Row `log/`: every log.
    pub log: PathBuf,
    /// Row `secrets/`: the secret store (0700).
    pub secrets: PathBuf,
    /// Row `state/`: the state database and the keys.
    pub state: PathBuf,
    /// Row `releases/<version>/`: the current release (bundled components).
    pub release: PathBuf,
}

impl Paths {
    /// The layout under `prefix` for app `version`.
    ///
    /// ```
    /// let p = berth_layout::Paths::for_prefix("/var/opt/berth/app".as_ref(), "1.2.0");
    /// assert_eq!(p.release, std::path::Path::new("/var/opt/berth/app/releases/1.2.0"));
    /// ```
    pub fn for_prefix(prefix: &Path, version: &str) -> Self {
        let p = |s: &str| prefix.join(s);
        Self {
            prefix: prefix.to_path_buf(),
            etc: p("etc"),
            data: p("data"),
            run: p("run"),
            log: p("log"),
            secrets: p("secrets"),
            state: p("state"),
            release: releases_in(prefix).join(version),
        }
    }

    /// The layout under `prefix` when the app version is not known (finding the
    /// stored manifest; the supervisor starting at boot, which must not depend on a
    /// manifest that loads). Every path is right except [`Paths::release`], which is
    /// the directory of all releases ([`Paths::releases`]) since which one is current
    /// is not known: nothing that uses these paths may read it.
    pub fn unversioned(prefix: &Path) -> Self {
        let mut paths = Self::for_prefix(prefix, "");
        paths.release = releases_in(prefix);
        paths
    }

    /// `path` relative to the prefix, for the descriptor-based API that opens
    /// everything from the prefix and refuses absolute paths. A path not beneath the
    /// prefix is returned as it is, so that API refuses it instead of acting elsewhere.
    ///
    /// ```
    /// use std::path::Path;
    /// let p = berth_layout::Paths::for_prefix(Path::new("/srv/app"), "1");
    /// assert_eq!(p.beneath(&p.manifest_dir()), Path::new("manifest"));
    /// assert_eq!(p.beneath(Path::new("/etc/passwd")), Path::new("/etc/passwd"));
    /// ```
    pub fn beneath<'a>(&self, path: &'a Path) -> &'a Path {
        path.strip_prefix(&self.prefix).unwrap_or(path)
    }

    /// Row `site.toml`: the administrator's site config.
    pub fn site_config(&self) -> PathBuf {
        self.prefix.join("site.toml")
    }

    /// Row `manifest/`: the copy of the manifest the instance was set up with.
    pub fn manifest_dir(&self) -> PathBuf {
        self.prefix.join("manifest")
    }

    /// Row `bin/`: the directory of the instance's own berth.
    pub fn bin_dir(&self) -> PathBuf {
        self.prefix.join("bin")
    }

    /// Row `bin/berth`: the instance's own copy of berth, which the supervisor, the
    /// systemd unit and the scheduled backup run.
    pub fn installed_berth(&self) -> PathBuf {
        self.bin_dir().join("berth")
    }

    /// Row `data/<dir>/`: a data directory a component declares (`dir` is relative,
    /// e.g. `app/media`).
    pub fn data_dir(&self, dir: impl AsRef<Path>) -> PathBuf {
        self.data.join(dir)
    }

    /// Row `home/`: the home directories of the users berth creates.
    pub fn homes(&self) -> PathBuf {
        self.prefix.join("home")
    }

    /// Row `home/<user>/`: the private, writable `HOME` of a user berth creates.
    pub fn user_home(&self, user: &str) -> PathBuf {
        self.homes().join(user)
    }

    /// Row `run/<component>/`: a component's sockets and pid files.
    pub fn component_run_dir(&self, component: &str) -> PathBuf {
        self.run.join(component)
    }

    /// Row `run/supervisor.sock`: the supervisor's control socket.
    pub fn supervisor_socket(&self) -> PathBuf {
        self.run.join("supervisor.sock")
    }

    /// Row `run/supervisor.pid`: the supervisor's pid, removed last on its way out.
    pub fn supervisor_pid(&self) -> PathBuf {
        self.run.join("supervisor.pid")
    }

    /// Row `log/<service>/`: a service's log directory.
    pub fn service_log_dir(&self, service: &str) -> PathBuf {
        self.log.join(service)
    }

    /// Row `log/<service>/current`: a service's output (rotated names in [`logs`]).
    pub fn service_log(&self, service: &str) -> PathBuf {
        logs::current_in(&self.service_log_dir(service))
    }

    /// Row `log/jobs/`: the log directories of periodic jobs.
    pub fn jobs_log_dir(&self) -> PathBuf {
        self.log.join("jobs")
    }

    /// Row `log/jobs/<job>/`: a periodic job's log directory.
    pub fn job_log_dir(&self, job: &str) -> PathBuf {
        self.jobs_log_dir().join(job)
    }

    /// Row `log/jobs/<job>/current`: a periodic job's output.
    pub fn job_log(&self, job: &str) -> PathBuf {
        logs::current_in(&self.job_log_dir(job))
    }

    /// Row `log/hooks/`: the hooks' logs.
    pub fn hooks_log_dir(&self) -> PathBuf {
        self.log.join("hooks")
    }

    /// Row `log/hooks/<hook>.log`: a hook's output.
    pub fn hook_log(&self, hook: &str) -> PathBuf {
        self.hooks_log_dir().join(format!("{hook}.log"))
    }

    /// Row `log/supervisor.log`: the supervisor's own log.
    pub fn supervisor_log(&self) -> PathBuf {
        self.log.join("supervisor.log")
    }

    /// Row `secrets/<secret>`: one secret's value.
    pub fn secret(&self, name: &str) -> PathBuf {
        self.secrets.join(name)
    }

    /// Row `state/berth.db`: the state database.
    pub fn state_db(&self) -> PathBuf {
        self.state.join("berth.db")
    }

    /// Row `state/supervision-plan.json`: what the supervisor runs.
    pub fn supervision_plan(&self) -> PathBuf {
        self.state.join("supervision-plan.json")
    }

    /// Row `state/host-files.json`: the host files (`[[host_files]]`) berth made.
    pub fn host_files_record(&self) -> PathBuf {
        self.state.join("host-files.json")
    }

    /// Row `state/users.json`: what the manifest's users are called on this host.
    pub fn users_record(&self) -> PathBuf {
        self.state.join("users.json")
    }

    /// Row `state/managed-files.json`: the config files berth wrote last.
    pub fn managed_files(&self) -> PathBuf {
        self.state.join("managed-files.json")
    }

    /// Row `state/reports/`: the redacted error reports of failed operations (the
    /// newest ten kept).
    pub fn error_reports(&self) -> PathBuf {
        self.state.join("reports")
    }

    /// Row `state/console/`: the output of each change the console started, one file
    /// per task.
    pub fn console_tasks(&self) -> PathBuf {
        self.state.join("console")
    }

    /// Row `state/last-backup.json`: when the last backup was written, its size and
    /// name (the supervisor's metrics read it).
    pub fn last_backup_record(&self) -> PathBuf {
        self.state.join("last-backup.json")
    }

    /// Row `state/ports.json`: the addresses the services listened on after the last
    /// successful `up` or `reconfigure`.
    pub fn ports_file(&self) -> PathBuf {
        self.state.join("ports.json")
    }

    /// Row `state/advisories.idx`: the advisory database `berth audit` scans against,
    /// as `berth audit --update-from` installed it.
    pub fn advisories_index(&self) -> PathBuf {
        self.state.join("advisories.idx")
    }

    /// Row `state/autostart`: present while the services are to start at boot.
    pub fn autostart_marker(&self) -> PathBuf {
        self.state.join("autostart")
    }

    /// Row `state/children/`: the process groups of lifecycle steps' children, recorded
    /// while they run.
    pub fn child_records(&self) -> PathBuf {
        self.state.join("children")
    }

    /// Row `state/unfinished-hooks/<hook>`: present while a hook that declares what it
    /// creates runs from nothing.
    pub fn unfinished_hook(&self, hook: &str) -> PathBuf {
        self.state.join("unfinished-hooks").join(hook)
    }

    /// Row `state/backup-key.txt`: the backup key (age identity).
    pub fn backup_key(&self) -> PathBuf {
        self.state.join("backup-key.txt")
    }

    /// Row `state/signing-key.txt`: the archive signing key (ed25519).
    pub fn signing_key(&self) -> PathBuf {
        self.state.join("signing-key.txt")
    }

    /// Row `releases/`: every release of the app.
    pub fn releases(&self) -> PathBuf {
        releases_in(&self.prefix)
    }

    /// Row `releases/<version>/<component>/`: a bundled component of the current
    /// release (what is next to it while it is built: [`crate::bundle`]).
    pub fn bundle_dir(&self, component: &str) -> PathBuf {
        self.release.join(component)
    }

    /// Row `backups/`: backup archives, when the target is the default one.
    pub fn default_backups(&self) -> PathBuf {
        self.prefix.join("backups")
    }

    /// Row `tmp/`: staging of backups and restores, on the prefix's filesystem.
    pub fn tmp(&self) -> PathBuf {
        self.prefix.join("tmp")
    }

    /// Row `tmp/release-<version>/`: a release bundle being installed, extracted
    /// (every byte checked) before `up` moves its built components into the release.
    pub fn release_staging(&self, version: &str) -> PathBuf {
        self.tmp().join(format!("release-{version}"))
    }

    /// Row `tmp/hook-secrets/`: the parent of the hooks' hand-over directories.
    pub fn hook_secrets_dir(&self) -> PathBuf {
        self.tmp().join("hook-secrets")
    }

    /// Row `tmp/hook-secrets/<hook>/`: where a hook that makes secrets (`from_hook`)
    /// writes them (`BERTH_SECRETS_OUT`), while it runs.
    pub fn hook_secrets_out(&self, hook: &str) -> PathBuf {
        self.hook_secrets_dir().join(hook)
    }

    /// Row `tmp/restore.json`: the journal of an unfinished restore.
    pub fn restore_journal(&self) -> PathBuf {
        self.tmp().join("restore.json")
    }

    /// Row `state/upgrade.json`: the journal of an unfinished upgrade. While it is
    /// there, every other command that changes the instance refuses.
    pub fn upgrade_journal(&self) -> PathBuf {
        self.state.join("upgrade.json")
    }

    /// Row `state/upgrade/`: the manifests an unfinished upgrade goes from and to
    /// (`<version>/`), copied when it began so `resume` and `abort` need nothing else.
    pub fn upgrade_manifests(&self) -> PathBuf {
        self.state.join("upgrade")
    }

    /// Row `run/maintenance.html`: the page a front end serves (HTTP 503) while it
    /// exists, which is while an offline migration runs.
    pub fn maintenance_page(&self) -> PathBuf {
        self.run.join("maintenance.html")
    }
}

fn releases_in(prefix: &Path) -> PathBuf {
    prefix.join("releases")
}
