//! Distribution packages (Debian family): which are missing, and installing them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::error::stderr_tail;
use crate::{HostError, Result, users};

/// The packages of `packages` that are not installed, in the given order.
///
/// Asks `dpkg-query -W -f='${db:Status-Status}' NAME`: a package is installed when
/// that prints `installed`. A package dpkg has never heard of is missing.
pub fn missing(packages: &[String]) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for package in packages {
        let out = Command::new("dpkg-query")
            .args(["-W", "-f=${db:Status-Status}", package])
            .output()
            .map_err(|source| HostError::Spawn {
                program: "dpkg-query".to_owned(),
                source,
            })?;
        let installed = out.status.success() && is_installed_status(&out.stdout);
        if !installed {
            // Exit status 1 with "no packages found" is the normal "not installed".
            let unknown = String::from_utf8_lossy(&out.stderr).contains("no packages found");
            if !out.status.success() && !unknown && out.status.code() != Some(1) {
                return Err(HostError::PackageQuery {
                    package: package.clone(),
                    status: out.status,
                    stderr: stderr_tail(&out.stderr, 5),
                });
            }
            missing.push(package.clone());
        }
    }
    Ok(missing)
}

/// The installed version of each package of `packages` that is installed, as the
/// package manager reports it (`1:1.39.10-1`); a package that is not installed (never,
/// or removed with only its config files left) is absent. No `dpkg-query` on the host
/// (not a Debian system) means nothing is known installed: an empty map.
///
/// Asks `dpkg-query -W -f='${db:Status-Status} ${Version}' NAME` for each package.
pub fn installed_versions(
    packages: &[String],
) -> Result<std::collections::BTreeMap<String, String>> {
    let mut versions = std::collections::BTreeMap::new();
    for package in packages {
        let out = match Command::new("dpkg-query")
            .args(["-W", "-f=${db:Status-Status} ${Version}", package])
            .output()
        {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(versions),
            Err(source) => {
                return Err(HostError::Spawn {
                    program: "dpkg-query".to_owned(),
                    source,
                });
            }
        };
        if !out.status.success() {
            // Exit status 1 is dpkg-query's "no packages found": not installed.
            if out.status.code() == Some(1) {
                continue;
            }
            return Err(HostError::PackageQuery {
                package: package.clone(),
                status: out.status,
                stderr: stderr_tail(&out.stderr, 5),
            });
        }
        if let Some(version) = installed_version(&out.stdout) {
            versions.insert(package.clone(), version);
        }
    }
    Ok(versions)
}

/// The version in `dpkg-query`'s `${db:Status-Status} ${Version}` output, when the
/// status says installed.
fn installed_version(stdout: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stdout);
    let (status, version) = text.trim().split_once(' ')?;
    (status == "installed" && !version.is_empty()).then(|| version.to_owned())
}

/// What [`install`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The distribution's own service units of the new packages, disabled (and
    /// stopped) because berth supervises these programs itself.
    pub units_disabled: Vec<String>,
}

/// Installs `packages` with `apt-get install -y --no-install-recommends`, without
/// questions. When apt does not know a package, it updates its lists and tries once
/// more. Needs root.
///
/// The packages' own daemons are not started (a `policy-rc.d` that denies every
/// start is in place during the install, as Debian's policy provides for), and where
/// systemd runs, the service units they bring are disabled: otherwise the
/// distribution's nginx or PostgreSQL would take the ports of the app's own at the
/// next boot.
pub fn install(packages: &[String]) -> Result<Installed> {
    if packages.is_empty() {
        return Ok(Installed::default());
    }
    // A maintainer script (a package's postinst running `up`): apt-get would wait for
    // the lock its own dpkg holds, then fail. Say what to do instead.
    refuse_during_dpkg(packages, std::env::var_os("DPKG_MAINTSCRIPT_PACKAGE"))?;
    if !users::is_root() {
        return Err(HostError::PackagesNeedRoot {
            packages: packages.join(" "),
            hint: install_hint(packages),
        });
    }
    {
        let _guard = NoAutostart::engage(Path::new(POLICY_RC_D))?;
        apt_install(packages)?;
    }
    let mut units = Vec::new();
    for package in packages {
        units.extend(service_units(package)?);
    }
    if !units.is_empty() && Path::new("/run/systemd/system").is_dir() {
        let out = Command::new("systemctl")
            .args(["disable", "--now", "--quiet"])
            .args(&units)
            .output()
            .map_err(|source| HostError::Spawn {
                program: "systemctl".to_owned(),
                source,
            })?;
        if !out.status.success() {
            return Err(HostError::PackageInstall {
                packages: format!("(disabling {})", units.join(" ")),
                status: out.status,
                stderr: stderr_tail(&out.stderr, 10),
            });
        }
        return Ok(Installed {
            units_disabled: units,
        });
    }
    Ok(Installed::default())
}

/// Where Debian's `invoke-rc.d` looks for the local start policy.
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// A `policy-rc.d` denying every daemon start (exit 101) while it lives. An existing
/// one is left alone: the administrator's policy applies then.
struct NoAutostart {
    path: PathBuf,
    created: bool,
}

impl NoAutostart {
    fn engage(path: &Path) -> Result<Self> {
        if path.exists() {
            return Ok(Self {
                path: path.to_path_buf(),
                created: false,
            });
        }
        crate::fsutil::write_atomic(
            path,
            b"#!/bin/sh\n# Written by berth while it installs packages: start no daemon.\nexit 101\n",
            0o755,
            None,
        )?;
        Ok(Self {
            path: path.to_path_buf(),
            created: true,
        })
    }
}

impl Drop for NoAutostart {
    fn drop(&mut self) {
        if self.created {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The systemd service units (not templates) a package installed.
fn service_units(package: &str) -> Result<Vec<String>> {
    let out = Command::new("dpkg-query")
        .args(["-L", package])
        .output()
        .map_err(|source| HostError::Spawn {
            program: "dpkg-query".to_owned(),
            source,
        })?;
    Ok(units_in_file_list(&String::from_utf8_lossy(&out.stdout)))
}

fn units_in_file_list(list: &str) -> Vec<String> {
    let mut units: Vec<String> = list
        .lines()
        .filter_map(|l| {
            l.strip_prefix("/lib/systemd/system/")
                .or_else(|| l.strip_prefix("/usr/lib/systemd/system/"))
        })
        .filter(|name| name.ends_with(".service") && !name.contains('/') && !name.contains('@'))
        .map(str::to_owned)
        .collect();
    units.sort();
    units.dedup();
    units
}

fn apt_install(packages: &[String]) -> Result<()> {
    let out = apt_get(&["install", "-y", "--no-install-recommends"], packages)?;
    if out.status.success() {
        return Ok(());
    }
    let out = if needs_update(&out.stderr) {
        let update = apt_get(&["update"], &[])?;
        if !update.status.success() {
            return Err(install_error(packages, &update));
        }
        apt_get(&["install", "-y", "--no-install-recommends"], packages)?
    } else {
        out
    };
    if out.status.success() {
        Ok(())
    } else {
        Err(install_error(packages, &out))
    }
}

/// The exact command a non-root administrator runs to install `packages`, e.g.
/// `sudo apt-get install -y postgresql-15 redis-server`.
pub fn install_hint(packages: &[String]) -> String {
    format!("sudo apt-get install -y {}", packages.join(" "))
}

/// How long apt-get waits for dpkg's lock another package manager holds (an
/// unattended upgrade, another berth) before it gives up, rather than failing at once.
const LOCK_WAIT: &str = "DPkg::Lock::Timeout=600";

fn apt_get(args: &[&str], packages: &[String]) -> Result<Output> {
    Command::new("apt-get")
        .args(["-o", LOCK_WAIT])
        .args(args)
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .map_err(|source| HostError::Spawn {
            program: "apt-get".to_owned(),
            source,
        })
}

fn install_error(packages: &[String], out: &Output) -> HostError {
    HostError::PackageInstall {
        packages: packages.join(" "),
        status: out.status,
        stderr: stderr_tail(&out.stderr, 10),
    }
}

/// Refuses to run apt-get from a maintainer script (`during`: the package dpkg
/// exports as `DPKG_MAINTSCRIPT_PACKAGE`).
fn refuse_during_dpkg(packages: &[String], during: Option<std::ffi::OsString>) -> Result<()> {
    match during {
        Some(during) => Err(HostError::PackagesDuringDpkg {
            packages: packages.join(" "),
            during: during.to_string_lossy().into_owned(),
            hint: install_hint(packages),
        }),
        None => Ok(()),
    }
}

/// Whether `dpkg-query`'s `${db:Status-Status}` output says installed.
fn is_installed_status(stdout: &[u8]) -> bool {
    String::from_utf8_lossy(stdout).trim() == "installed"
}

/// Whether apt failed because its package lists are missing or stale.
fn needs_update(stderr: &[u8]) -> bool {
    let text = String::from_utf8_lossy(stderr);
    text.contains("Unable to locate package") || text.contains("has no installation candidate")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only an installed package has a version; a removed one (its config files
    /// left) and odd output have none.
    #[test]
    fn a_version_is_read_only_from_an_installed_package() {
        assert_eq!(
            super::installed_version(b"installed 1:1.39.10-1").as_deref(),
            Some("1:1.39.10-1")
        );
        assert_eq!(super::installed_version(b"config-files 1:1.39.10-1"), None);
        assert_eq!(super::installed_version(b"not-installed "), None);
        assert_eq!(super::installed_version(b""), None);
    }

    /// On this host (Debian): a package that is there has the version dpkg says, one
    /// that does not exist is absent.
    #[test]
    fn installed_versions_asks_dpkg() {
        if !Path::new("/usr/bin/dpkg-query").exists() {
            return;
        }
        let names = ["dpkg".to_owned(), "no-such-package-berth".to_owned()];
        let versions = super::installed_versions(&names).unwrap();
        let out = Command::new("dpkg-query")
            .args(["-W", "-f=${Version}", "dpkg"])
            .output()
            .unwrap();
        assert_eq!(
            versions.get("dpkg").map(String::as_bytes),
            Some(out.stdout.as_slice())
        );
        assert!(!versions.contains_key("no-such-package-berth"));
    }

    #[test]
    fn hint_is_the_exact_command() {
        let packages = ["postgresql-15".to_owned(), "redis-server".to_owned()];
        assert_eq!(
            install_hint(&packages),
            "sudo apt-get install -y postgresql-15 redis-server"
        );
    }

    #[test]
    fn status_parsing() {
        assert!(is_installed_status(b"installed"));
        assert!(!is_installed_status(b"config-files"));
        assert!(!is_installed_status(b"not-installed"));
        assert!(needs_update(b"E: Unable to locate package foo\n"));
        assert!(!needs_update(b"E: Could not get lock\n"));
    }

    #[test]
    fn missing_asks_dpkg() {
        let packages = [
            "dpkg".to_owned(),
            "berth-no-such-package-x9".to_owned(),
            "coreutils".to_owned(),
        ];
        assert_eq!(missing(&packages).unwrap(), ["berth-no-such-package-x9"]);
        assert!(missing(&[]).unwrap().is_empty());
    }

    #[test]
    fn inside_a_maintainer_script_apt_get_is_not_run_and_the_fix_is_named() {
        let packages = vec!["redis-server".to_owned()];
        assert!(refuse_during_dpkg(&packages, None).is_ok());
        let e = refuse_during_dpkg(&packages, Some("ministack".into()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ministack package's maintainer script")
                && e.contains("apt-get install -y redis-server")
                && e.contains("dpkg --configure -a"),
            "{e}"
        );
    }

    #[test]
    fn installing_nothing_does_nothing() {
        assert_eq!(install(&[]).unwrap(), Installed::default());
    }

    #[test]
    fn service_units_are_found_in_a_file_list() {
        let list = "/.\n/lib/systemd/system\n/lib/systemd/system/nginx.service\n\
                    /lib/systemd/system/postgresql@.service\n/usr/lib/systemd/system/redis-server.service\n\
                    /lib/systemd/system/redis-server.service\n/lib/systemd/system/x.socket\n\
                    /etc/init.d/nginx\n/lib/systemd/system/nginx.service.d/override.conf\n";
        assert_eq!(
            units_in_file_list(list),
            ["nginx.service", "redis-server.service"]
        );
    }

    #[test]
    fn no_autostart_policy_denies_and_goes_away_but_keeps_an_existing_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy-rc.d");
        {
            let _guard = NoAutostart::engage(&path).unwrap();
            // Another test thread forking while the script was being written holds its
            // write descriptor until that child execs: "text file busy" for a moment.
            let out = (0..100)
                .find_map(|_| match Command::new(&path).status() {
                    Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                        None
                    }
                    other => Some(other.unwrap()),
                })
                .expect("the policy script stayed busy for a second");
            assert_eq!(out.code(), Some(101), "denies every start");
        }
        assert!(!path.exists());
        std::fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
        drop(NoAutostart::engage(&path).unwrap());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "#!/bin/sh\nexit 0\n"
        );
    }
}
