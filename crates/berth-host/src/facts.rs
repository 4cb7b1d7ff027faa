//! The host facts probe: CPUs, memory, identity and platform of this machine.

use std::path::{Path, PathBuf};

use berth_model::facts::Facts;

/// Memory limits at or above this are "no limit" (cgroup v1 writes a page-rounded
/// `i64::MAX`, and some kernels report the physical address space).
const UNLIMITED_MEMORY: u64 = 1 << 60;

/// Probes the host. Never fails: a fact that cannot be read falls back to a safe
/// value (1 CPU, physical memory, `unknown` names).
pub fn probe() -> Facts {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let cgroup_dirs = |controller: &str| cgroup_dirs(&mounts, &cgroups, controller);

    let affinity = affinity_cpus().unwrap_or(1);
    let quota = cgroup_cpu_quota(&cgroup_dirs("cpu"));
    let cpus = effective_cpus(affinity, quota);

    let physical = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| parse_meminfo_total(&m))
        .unwrap_or(0);
    let cgroup_memory_limit = cgroup_memory_limit(&cgroup_dirs("memory"));
    let memory_bytes = match cgroup_memory_limit {
        Some(limit) if physical == 0 || limit < physical => limit,
        _ => physical,
    };

    let os_release = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    let (os_id, os_version) = parse_os_release(&os_release);

    let euid = nix::unistd::geteuid();
    let user = nix::unistd::User::from_uid(euid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| euid.to_string());

    Facts {
        cpus,
        memory_bytes,
        physical_memory_bytes: physical,
        cgroup_memory_limit,
        hostname: nix::unistd::gethostname().ok().map_or_else(
            || "unknown".to_owned(),
            |h| h.to_string_lossy().into_owned(),
        ),
        is_root: euid.is_root(),
        user,
        os_id,
        os_version,
        arch: std::env::consts::ARCH.to_owned(),
        systemd: std::fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() == "systemd"),
        // Filled by `probe_package_versions` for the packages the caller names, once
        // they are installed (see `Facts::package_versions`).
        package_versions: std::collections::BTreeMap::new(),
    }
}

/// Fill `facts.package_versions` with the installed versions of `packages` (those of
/// the enabled components): probe it after packages are installed, and before hooks
/// that follow a package (`on = ["package:…"]`) are judged due.
///
/// # Errors
///
/// When `dpkg-query` fails other than by not knowing a package.
pub fn probe_package_versions(facts: &mut Facts, packages: &[String]) -> crate::Result<()> {
    facts.package_versions = crate::packages::installed_versions(packages)?;
    Ok(())
}

/// The number of CPUs in this process's affinity mask.
fn affinity_cpus() -> Option<u32> {
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok()?;
    let count = (0..nix::sched::CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .count();
    u32::try_from(count).ok().filter(|&n| n > 0)
}

/// CPUs to use: the affinity count, capped by the cgroup quota (rounded up), at least 1.
fn effective_cpus(affinity: u32, quota: Option<f64>) -> u32 {
    let capped = match quota {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // small positive
        Some(q) if q > 0.0 => affinity.min(q.ceil() as u32),
        _ => affinity,
    };
    capped.max(1)
}

/// The smallest CPU quota (in CPUs) set on any of `dirs`, v2 `cpu.max` or v1
/// `cpu.cfs_quota_us` / `cpu.cfs_period_us`.
fn cgroup_cpu_quota(dirs: &[PathBuf]) -> Option<f64> {
    dirs.iter()
        .filter_map(|dir| {
            if let Ok(max) = std::fs::read_to_string(dir.join("cpu.max")) {
                return parse_cpu_max(&max);
            }
            let quota = std::fs::read_to_string(dir.join("cpu.cfs_quota_us")).ok()?;
            let period = std::fs::read_to_string(dir.join("cpu.cfs_period_us")).ok()?;
            parse_cfs_quota(&quota, &period)
        })
        .min_by(f64::total_cmp)
}

/// The smallest memory limit set on any of `dirs`, v2 `memory.max` or v1
/// `memory.limit_in_bytes`.
fn cgroup_memory_limit(dirs: &[PathBuf]) -> Option<u64> {
    dirs.iter()
        .filter_map(|dir| {
            std::fs::read_to_string(dir.join("memory.max"))
                .or_else(|_| std::fs::read_to_string(dir.join("memory.limit_in_bytes")))
                .ok()
                .and_then(|text| parse_memory_limit(&text))
        })
        .min()
}

/// Parses cgroup v2 `cpu.max` (`"max 100000"` or `"150000 100000"`) into CPUs.
fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut parts = text.split_whitespace();
    let quota = parts.next()?;
    let period: f64 = parts.next().map_or(Some(100_000.0), |p| p.parse().ok())?;
    if quota == "max" || period <= 0.0 {
        return None;
    }
    let quota: f64 = quota.parse().ok()?;
    (quota > 0.0).then(|| quota / period)
}

/// Parses cgroup v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us` into CPUs; `-1` is no quota.
fn parse_cfs_quota(quota: &str, period: &str) -> Option<f64> {
    let quota: f64 = quota.trim().parse().ok()?;
    let period: f64 = period.trim().parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// Parses a memory limit file (`max`, or bytes); huge values mean no limit.
fn parse_memory_limit(text: &str) -> Option<u64> {
    let text = text.trim();
    if text == "max" {
        return None;
    }
    text.parse::<u64>()
        .ok()
        .filter(|&n| n > 0 && n < UNLIMITED_MEMORY)
}

/// `MemTotal` from `/proc/meminfo`, in bytes.
fn parse_meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut parts = line["MemTotal:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

/// `ID` and `VERSION_ID` from `/etc/os-release` (quotes removed; `unknown` when absent).
fn parse_os_release(text: &str) -> (String, String) {
    let field = |key: &str| {
        text.lines()
            .filter_map(|l| l.trim().split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.trim().trim_matches(['"', '\'']).to_owned())
    };
    (
        field("ID").unwrap_or_else(|| "unknown".to_owned()),
        field("VERSION_ID").unwrap_or_default(),
    )
}

/// The cgroup directories that limit this process for `controller` (`cpu`, `memory`):
/// its own cgroup and every ancestor up to the mount point, for both the v1 hierarchy
/// holding the controller and the v2 hierarchy (a hybrid host has both).
fn cgroup_dirs(mountinfo: &str, proc_cgroup: &str, controller: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split_whitespace().collect();
        let right: Vec<&str> = right.split_whitespace().collect();
        let (Some(&root), Some(&mount_point), Some(&fstype)) =
            (left.get(3), left.get(4), right.first())
        else {
            continue;
        };
        let super_options = right.get(2).copied().unwrap_or("");
        let cgroup_path = match fstype {
            "cgroup2" => proc_cgroup_path(proc_cgroup, |id, _| id == "0"),
            "cgroup" if super_options.split(',').any(|o| o == controller) => {
                proc_cgroup_path(proc_cgroup, |id, controllers| {
                    id != "0" && controllers.split(',').any(|c| c == controller)
                })
            }
            _ => None,
        };
        let Some(cgroup_path) = cgroup_path else {
            continue;
        };
        // The mount shows the hierarchy from `root`; the process's path is relative to
        // the hierarchy's top. (In a container, root is the container's own cgroup.)
        let relative = Path::new(cgroup_path)
            .strip_prefix(root)
            .unwrap_or_else(|_| Path::new(""));
        let mount_point = PathBuf::from(unescape_mount(mount_point));
        let mut dir = if relative.as_os_str().is_empty() {
            mount_point.clone()
        } else {
            mount_point.join(relative)
        };
        loop {
            dirs.push(dir.clone());
            if dir == mount_point || !dir.pop() {
                break;
            }
        }
    }
    dirs
}

/// The path of the cgroup line in `/proc/self/cgroup` that `pick(id, controllers)` selects.
fn proc_cgroup_path(proc_cgroup: &str, pick: impl Fn(&str, &str) -> bool) -> Option<&str> {
    proc_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        pick(id, controllers).then_some(path)
    })
}

/// Undoes the octal escapes (`\040` for a space) of `/proc/self/mountinfo`.
fn unescape_mount(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let code = bytes
            .get(i + 1..i + 4)
            .filter(|_| bytes[i] == b'\\')
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        if let Some(code) = code {
            out.push(code);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_CGROUP: &str = "\
9:name=systemd:/
4:memory:/process_api/abc
2:cpuacct:/
1:cpu:/
0::/
";

    #[test]
    fn cgroup_dirs_on_a_hybrid_host() {
        let memory = cgroup_dirs(HYBRID_MOUNTINFO, HYBRID_CGROUP, "memory");
        let memory: Vec<_> = memory.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            memory,
            [
                "/sys/fs/cgroup/memory/process_api/abc",
                "/sys/fs/cgroup/memory/process_api",
                "/sys/fs/cgroup/memory",
                "/sys/fs/cgroup/unified",
            ]
        );
        let cpu = cgroup_dirs(HYBRID_MOUNTINFO, HYBRID_CGROUP, "cpu");
        let cpu: Vec<_> = cpu.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(cpu, ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/unified"]);
    }

    #[test]
    fn cgroup_dirs_on_a_v2_host_inside_a_container() {
        let mountinfo = "30 25 0:26 /ctr /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw\n";
        let dirs = cgroup_dirs(mountinfo, "0::/ctr/app\n", "cpu");
        assert_eq!(
            dirs,
            [
                PathBuf::from("/sys/fs/cgroup/app"),
                PathBuf::from("/sys/fs/cgroup")
            ]
        );
    }

    #[test]
    fn cpu_max_v2() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("150000 100000\n"), Some(1.5));
        assert_eq!(parse_cpu_max("200000\n"), Some(2.0));
        assert_eq!(parse_cpu_max("garbage"), None);
    }

    #[test]
    fn cfs_quota_v1() {
        assert_eq!(parse_cfs_quota("-1\n", "100000\n"), None);
        assert_eq!(parse_cfs_quota("50000\n", "100000\n"), Some(0.5));
        assert_eq!(parse_cfs_quota("300000", "100000"), Some(3.0));
    }

    #[test]
    fn effective_cpus_rounds_the_quota_up_and_keeps_one() {
        assert_eq!(effective_cpus(8, None), 8);
        assert_eq!(effective_cpus(8, Some(1.5)), 2);
        assert_eq!(effective_cpus(2, Some(4.0)), 2);
        assert_eq!(effective_cpus(4, Some(0.2)), 1);
    }

    #[test]
    fn memory_limits() {
        assert_eq!(parse_memory_limit("max\n"), None);
        assert_eq!(parse_memory_limit("9223372036854771712\n"), None);
        assert_eq!(parse_memory_limit("536870912\n"), Some(512 << 20));
        assert_eq!(parse_memory_limit(""), None);
    }

    #[test]
    fn meminfo_total() {
        let text = "MemTotal:       24684092 kB\nMemFree:         1000 kB\n";
        assert_eq!(parse_meminfo_total(text), Some(24_684_092 * 1024));
        assert_eq!(parse_meminfo_total("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn os_release() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nID=debian\n";
        assert_eq!(
            parse_os_release(text),
            ("debian".to_owned(), "12".to_owned())
        );
        assert_eq!(parse_os_release(""), ("unknown".to_owned(), String::new()));
    }

    #[test]
    fn mount_escapes() {
        assert_eq!(unescape_mount("/mnt/my\\040disk"), "/mnt/my disk");
        assert_eq!(unescape_mount("/plain"), "/plain");
    }

    #[test]
    fn probe_this_machine() {
        let facts = probe();
        assert!(facts.cpus >= 1);
        assert!(facts.physical_memory_bytes > 0);
        assert!(facts.memory_bytes <= facts.physical_memory_bytes);
        assert!(!facts.hostname.is_empty());
        assert_eq!(facts.is_root, nix::unistd::geteuid().is_root());
        assert_eq!(facts.arch, std::env::consts::ARCH);
        assert!(!facts.os_id.is_empty());
    }
}
