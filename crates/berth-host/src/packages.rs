//! Distribution packages (Debian family): which are missing, and installing them.

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

/// Installs `packages` with `apt-get install -y --no-install-recommends`, without
/// questions. When apt does not know a package, it updates its lists and tries once
/// more. Needs root.
pub fn install(packages: &[String]) -> Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    if !users::is_root() {
        return Err(HostError::PackagesNeedRoot {
            packages: packages.join(" "),
            hint: install_hint(packages),
        });
    }
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

fn apt_get(args: &[&str], packages: &[String]) -> Result<Output> {
    Command::new("apt-get")
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
    fn installing_nothing_does_nothing() {
        install(&[]).unwrap();
    }
}
