//! A [`Spec`] judged against a [`Host`]: one [`Check`] per question, in a fixed order
//! (resources, system, programs, packages, ports).

use std::cmp::Ordering;

use berth_model::version::{compare_package_versions, compare_versions};

use crate::{Check, Host, Level, Limits, PackageFound, Report, Spec, Status, human_size};

/// The verdict and what was wanted, for a measured `value` against `limits`.
fn against(value: u64, limits: Limits, show: &dyn Fn(u64) -> String) -> (Status, String) {
    let mut wanted = Vec::new();
    if let Some(min) = limits.min {
        wanted.push(format!("at least {}", show(min)));
    }
    if let Some(rec) = limits.recommended {
        wanted.push(format!("{} recommended", show(rec)));
    }
    let status = if limits.min.is_some_and(|m| value < m) {
        Status::Fail
    } else if limits.recommended.is_some_and(|r| value < r) {
        Status::Warn
    } else {
        Status::Pass
    };
    (status, wanted.join(", "))
}

/// The figure a fix should name: the minimum for a failure, else the recommendation.
fn target(status: Status, limits: Limits) -> u64 {
    match status {
        Status::Fail => limits.min.unwrap_or_default(),
        _ => limits.recommended.or(limits.min).unwrap_or_default(),
    }
}

fn check(name: impl Into<String>, status: Status, found: String, wanted: String) -> Check {
    Check {
        name: name.into(),
        status,
        found,
        wanted,
        fix: None,
    }
}

/// The check's verdict at `level` when what it asks is not met.
fn unmet(level: Level) -> Status {
    match level {
        Level::Fail => Status::Fail,
        Level::Warn | Level::Off => Status::Warn,
    }
}

/// `6.1.0` of `6.1.0-18-amd64`: the numbers and dots a kernel release starts with.
fn kernel_numbers(release: &str) -> &str {
    let end = release
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(release.len());
    release[..end].trim_end_matches('.')
}

/// Whether `/etc/os-release`'s `id` and `version` are `entry` (`debian 12` holds
/// `12` and `12.5`; `debian` any release).
fn distribution_matches(entry: &str, id: &str, version: &str) -> bool {
    match berth_model::parse_distribution(entry) {
        Some((want_id, None)) => want_id == id,
        Some((want_id, Some(want))) => {
            want_id == id
                && (version == want
                    || version
                        .strip_prefix(want)
                        .is_some_and(|rest| rest.starts_with('.')))
        }
        None => false,
    }
}

/// Every check of `spec` on `host`.
#[allow(clippy::too_many_lines)] // one block per kind of check, in report order
pub fn evaluate(spec: &Spec, host: &Host) -> Report {
    let mut checks = Vec::new();
    let count = |n: u64| n.to_string();

    if !spec.cpus.is_empty() {
        let (status, wanted) = against(host.cpus, spec.cpus, &count);
        let mut c = check("cpus", status, format!("{} CPUs", host.cpus), wanted);
        if status != Status::Pass {
            c.fix = Some(format!(
                "give the machine at least {} CPUs (a virtual machine's vCPUs, or the \
                 container's CPU quota and affinity)",
                target(status, spec.cpus)
            ));
        }
        checks.push(c);
    }

    if !spec.memory.is_empty() {
        let (status, wanted) = against(host.memory_bytes, spec.memory, &human_size);
        let mut c = check("memory", status, human_size(host.memory_bytes), wanted);
        if status != Status::Pass {
            c.fix = Some(format!(
                "give the machine at least {} of memory (in a container or a cgroup, \
                 raise its memory limit)",
                human_size(target(status, spec.memory))
            ));
        }
        checks.push(c);
    }

    for d in &spec.disks {
        let name = format!("disk {}", d.name);
        match host.disks.get(&d.path) {
            Some(Ok(found)) => {
                let (status, wanted) = against(found.free, d.limits, &human_size);
                let mut c = check(
                    name,
                    status,
                    format!(
                        "{} free of {} on the filesystem of {}",
                        human_size(found.free),
                        human_size(found.total),
                        found.measured.display()
                    ),
                    wanted,
                );
                if status != Status::Pass {
                    c.fix = Some(format!(
                        "make {} free on the filesystem of {} (`df -h {}` shows it), or put \
                         the instance on a larger one",
                        human_size(target(status, d.limits)),
                        d.path.display(),
                        found.measured.display()
                    ));
                }
                checks.push(c);
            }
            other => {
                let why = match other {
                    Some(Err(e)) => e.clone(),
                    _ => "not measured".to_owned(),
                };
                let mut c = check(name, Status::Warn, why, String::new());
                c.fix = Some(format!(
                    "check that {} (or the directory it will be made in) can be read",
                    d.path.display()
                ));
                checks.push(c);
            }
        }
    }

    if let Some(min) = &spec.kernel {
        let numbers = kernel_numbers(&host.kernel);
        let status = if numbers.is_empty() {
            Status::Warn
        } else if compare_versions(numbers, min) == Ordering::Less {
            Status::Fail
        } else {
            Status::Pass
        };
        let mut c = check(
            "kernel",
            status,
            if host.kernel.is_empty() {
                "unknown".to_owned()
            } else {
                host.kernel.clone()
            },
            format!("{min} or later"),
        );
        if status != Status::Pass {
            c.fix = Some(format!(
                "boot a kernel {min} or later (upgrade the distribution's kernel package, \
                 then reboot)"
            ));
        }
        checks.push(c);
    }

    let other = spec.other_distributions.unwrap_or(Level::Warn);
    if !spec.distributions.is_empty() && other != Level::Off {
        let found = format!("{} {}", host.os_id, host.os_version)
            .trim()
            .to_owned();
        let supported = spec
            .distributions
            .iter()
            .any(|d| distribution_matches(d, &host.os_id, &host.os_version));
        let status = if supported {
            Status::Pass
        } else {
            unmet(other)
        };
        let list = spec.distributions.join(", ");
        let mut c = check(
            "distribution",
            status,
            if found.is_empty() {
                "unknown".to_owned()
            } else {
                found
            },
            format!("one of: {list}"),
        );
        if status != Status::Pass {
            c.fix = Some(format!(
                "install on a supported distribution ({list}); others are not tested"
            ));
        }
        checks.push(c);
    }

    for b in &spec.binaries {
        let found = host.binaries.get(b).cloned().flatten();
        let mut c = check(
            format!("binary {b}"),
            if found.is_some() {
                Status::Pass
            } else {
                Status::Fail
            },
            found.map_or_else(
                || "not found".to_owned(),
                |p| format!("found at {}", p.display()),
            ),
            String::new(),
        );
        if c.status == Status::Fail {
            c.fix = Some(if b.starts_with('/') {
                format!(
                    "install the package that provides {b} (`dpkg -S {b}` on a machine that has it)"
                )
            } else {
                format!(
                    "install the package that provides `{b}` and make sure it is on PATH \
                     (`apt-file search bin/{b}` names it)"
                )
            });
        }
        checks.push(c);
    }

    if let Some(level) = spec.clock_sync
        && level != Level::Off
    {
        let (status, found) = match host.clock_synced {
            Some(true) => (Status::Pass, "synchronised".to_owned()),
            Some(false) => (unmet(level), "not synchronised".to_owned()),
            None => (Status::Warn, "could not be told".to_owned()),
        };
        let mut c = check("clock", status, found, "synchronised by NTP".to_owned());
        if status != Status::Pass {
            c.fix = Some(
                "run a time synchronisation service (systemd-timesyncd or chrony): backups, \
                 TLS and the app's timestamps depend on the clock"
                    .to_owned(),
            );
        }
        checks.push(c);
    }

    for (name, min) in &spec.packages {
        let (status, found, fix) = match host.packages.get(name) {
            Some(PackageFound::Installed(v)) => {
                if compare_package_versions(v, min) == Ordering::Less {
                    (
                        Status::Fail,
                        format!("{v} installed"),
                        Some(format!(
                            "upgrade it: `apt-get install --only-upgrade {name}` (from a \
                             repository that has {min} or later)"
                        )),
                    )
                } else {
                    (Status::Pass, format!("{v} installed"), None)
                }
            }
            Some(PackageFound::Candidate(v)) => {
                if compare_package_versions(v, min) == Ordering::Less {
                    (
                        Status::Fail,
                        format!("{v} would be installed"),
                        Some(format!(
                            "add a repository that has {name} {min} or later (e.g. the \
                             distribution's backports), then run berth again"
                        )),
                    )
                } else {
                    (Status::Pass, format!("{v} would be installed"), None)
                }
            }
            Some(PackageFound::Unavailable) | None => (
                Status::Fail,
                "not installed, and no repository has it".to_owned(),
                Some(format!(
                    "add a repository that has {name} {min} or later, then `apt-get update`"
                )),
            ),
        };
        let mut c = check(
            format!("package {name}"),
            status,
            found,
            format!("{min} or later"),
        );
        c.fix = fix;
        checks.push(c);
    }

    for p in &host.ports {
        let mut c = check(
            format!("port {}", p.address),
            if p.taken.is_some() {
                Status::Fail
            } else {
                Status::Pass
            },
            p.taken.as_ref().map_or_else(
                || format!("free for service `{}`", p.service),
                |why| format!("taken ({why}), wanted by service `{}`", p.service),
            ),
            String::new(),
        );
        if p.taken.is_some() {
            c.fix = Some(format!(
                "stop the program listening there (`ss -ltnp` names it), or give service \
                 `{}` another port in the site config",
                p.service
            ));
        }
        checks.push(c);
    }

    Report { checks }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::{distribution_matches, evaluate, kernel_numbers};
    use crate::{
        DiskFound, DiskSpec, Host, Level, Limits, PackageFound, PortFound, Report, Spec, Status,
    };

    const GIB: u64 = 1 << 30;

    fn host() -> Host {
        Host {
            cpus: 2,
            memory_bytes: 3 * GIB + GIB / 2,
            disks: BTreeMap::from([
                (
                    PathBuf::from("/srv/app/data/postgresql"),
                    Ok(DiskFound {
                        measured: PathBuf::from("/srv/app"),
                        free: 8 * GIB,
                        total: 40 * GIB,
                    }),
                ),
                (
                    PathBuf::from("/srv/app/state"),
                    Ok(DiskFound {
                        measured: PathBuf::from("/srv/app"),
                        free: 8 * GIB,
                        total: 40 * GIB,
                    }),
                ),
            ]),
            kernel: "6.1.0-18-amd64".to_owned(),
            os_id: "debian".to_owned(),
            os_version: "12".to_owned(),
            binaries: BTreeMap::from([
                ("rsync".to_owned(), Some(PathBuf::from("/usr/bin/rsync"))),
                ("/opt/tool/bin/tool".to_owned(), None),
            ]),
            clock_synced: Some(false),
            packages: BTreeMap::from([
                (
                    "postgresql-15".to_owned(),
                    PackageFound::Installed("15.8-0+deb12u1".to_owned()),
                ),
                (
                    "redis-server".to_owned(),
                    PackageFound::Candidate("5:7.0.15-1~deb12u1".to_owned()),
                ),
                ("libfoo9".to_owned(), PackageFound::Unavailable),
            ]),
            ports: vec![
                PortFound {
                    service: "web".to_owned(),
                    address: "127.0.0.1:8080".to_owned(),
                    taken: None,
                },
                PortFound {
                    service: "db".to_owned(),
                    address: "127.0.0.1:5432".to_owned(),
                    taken: Some("Address already in use (os error 98)".to_owned()),
                },
            ],
        }
    }

    fn spec() -> Spec {
        Spec {
            cpus: Limits {
                min: Some(1),
                recommended: Some(4),
            },
            memory: Limits {
                min: Some(2 * GIB),
                recommended: Some(4 * GIB),
            },
            disks: vec![
                DiskSpec {
                    name: "data/postgresql".to_owned(),
                    path: PathBuf::from("/srv/app/data/postgresql"),
                    limits: Limits {
                        min: Some(10 * GIB),
                        recommended: None,
                    },
                },
                DiskSpec {
                    name: "berth state".to_owned(),
                    path: PathBuf::from("/srv/app/state"),
                    limits: Limits {
                        min: Some(crate::BERTH_STATE_MIN),
                        recommended: Some(crate::BERTH_STATE_RECOMMENDED),
                    },
                },
            ],
            kernel: Some("5.10".to_owned()),
            distributions: vec!["debian 12".to_owned(), "ubuntu 24.04".to_owned()],
            other_distributions: None,
            binaries: vec!["rsync".to_owned(), "/opt/tool/bin/tool".to_owned()],
            clock_sync: Some(Level::Warn),
            packages: BTreeMap::from([
                ("postgresql-15".to_owned(), "15.4".to_owned()),
                ("redis-server".to_owned(), "5:7.0".to_owned()),
                ("libfoo9".to_owned(), "1.0".to_owned()),
            ]),
        }
    }

    /// Every kind of check at every verdict, as `berth preflight` prints them.
    #[test]
    fn the_report_names_each_finding_and_its_fix() {
        let report = evaluate(&spec(), &host());
        insta::assert_snapshot!(format!(
            "{}{}",
            Report::lines(&report.checks),
            report.summary()
        ));
        assert_eq!(report.worst(), Status::Fail);
    }

    /// The limits' edges: at the minimum passes; below it fails even with no
    /// recommendation; the recommended figure only warns.
    #[test]
    fn limits_fail_below_min_and_warn_below_recommended() {
        let mut s = Spec::default();
        let mut h = Host {
            cpus: 2,
            ..Host::default()
        };
        for (min, rec, want) in [
            (Some(2), None, Status::Pass),
            (Some(3), None, Status::Fail),
            (None, Some(3), Status::Warn),
            (Some(1), Some(2), Status::Pass),
            (Some(3), Some(4), Status::Fail),
        ] {
            s.cpus = Limits {
                min,
                recommended: rec,
            };
            let r = evaluate(&s, &h);
            assert_eq!(r.checks[0].status, want, "{min:?} {rec:?}");
            assert_eq!(r.checks[0].fix.is_some(), want != Status::Pass);
        }
        // Nothing asked: nothing checked, nothing failed.
        s.cpus = Limits::default();
        h.cpus = 0;
        assert!(evaluate(&s, &h).checks.is_empty());
        assert_eq!(evaluate(&s, &h).worst(), Status::Pass);
    }

    #[test]
    fn distributions_and_kernels_are_read_as_written() {
        assert!(distribution_matches("debian 12", "debian", "12"));
        assert!(distribution_matches("debian 12", "debian", "12.5"));
        assert!(!distribution_matches("debian 12", "debian", "120"));
        assert!(!distribution_matches("debian 12", "ubuntu", "12"));
        assert!(distribution_matches("debian", "debian", "13"));
        assert!(distribution_matches("ubuntu 24.04", "ubuntu", "24.04"));
        assert_eq!(kernel_numbers("6.1.0-18-amd64"), "6.1.0");
        assert_eq!(kernel_numbers("5.15.0.1"), "5.15.0.1");
        assert_eq!(kernel_numbers("6.8.0."), "6.8.0");
        assert_eq!(kernel_numbers("unknown"), "");

        let mut s = Spec {
            distributions: vec!["ubuntu 24.04".to_owned()],
            kernel: Some("6.10".to_owned()),
            ..Spec::default()
        };
        let mut h = host();
        h.ports.clear();
        let r = evaluate(&s, &h);
        assert_eq!(r.checks[0].name, "kernel");
        assert_eq!(r.checks[0].status, Status::Fail);
        assert_eq!(r.checks[1].status, Status::Warn);
        s.other_distributions = Some(Level::Fail);
        assert_eq!(evaluate(&s, &h).checks[1].status, Status::Fail);
        s.other_distributions = Some(Level::Off);
        assert_eq!(evaluate(&s, &h).checks.len(), 1);
    }

    /// A clock the kernel calls unsynchronised fails only where the manifest says so;
    /// one that cannot be read only warns.
    #[test]
    fn the_clock_fails_only_when_asked_to() {
        let mut s = Spec {
            clock_sync: Some(Level::Fail),
            ..Spec::default()
        };
        let mut h = host();
        h.ports.clear();
        assert_eq!(evaluate(&s, &h).checks[0].status, Status::Fail);
        h.clock_synced = None;
        assert_eq!(evaluate(&s, &h).checks[0].status, Status::Warn);
        h.clock_synced = Some(true);
        assert_eq!(evaluate(&s, &h).checks[0].status, Status::Pass);
        s.clock_sync = Some(Level::Off);
        assert!(evaluate(&s, &h).checks.is_empty());
    }
}
