//! What the machine has, for a preflight [`Spec`]: CPUs and memory (the facts), free
//! space where each directory will live, the kernel release, programs, the clock's
//! synchronisation as the kernel reports it, and package versions. Reads only.

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_model::facts::Facts;
use berth_preflight::{DiskFound, Host, PackageFound, Spec};

/// Directories searched for a program named without a path, after `PATH` (root's
/// programs are in the `sbin` ones, which a user's `PATH` may lack).
const EXTRA_PATH: [&str; 4] = ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/local/bin"];

/// Probe the machine for `spec` (ports are berth-lifecycle's to fill: it knows which
/// running services hold theirs).
pub fn probe(spec: &Spec, facts: &Facts) -> Host {
    Host {
        cpus: u64::from(facts.cpus),
        memory_bytes: facts.memory_bytes,
        disks: spec
            .disks
            .iter()
            .map(|d| (d.path.clone(), free_space(&d.path)))
            .collect(),
        kernel: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        os_id: facts.os_id.clone(),
        os_version: facts.os_version.clone(),
        binaries: spec
            .binaries
            .iter()
            .map(|b| (b.clone(), find_program(b)))
            .collect(),
        clock_synced: clock_synced(),
        packages: spec
            .packages
            .keys()
            .map(|p| (p.clone(), package(p)))
            .collect(),
        ports: Vec::new(),
    }
}

/// Free and total bytes of the filesystem `path` is (or will be) on: its nearest
/// existing ancestor's. Space reserved for root does not count as free.
fn free_space(path: &Path) -> Result<DiskFound, String> {
    let measured = path
        .ancestors()
        .find(|a| a.symlink_metadata().is_ok())
        .unwrap_or(Path::new("/"));
    let st =
        nix::sys::statvfs::statvfs(measured).map_err(|e| format!("{}: {e}", measured.display()))?;
    // The block types are 32 bits on some targets (armhf without large files).
    #[allow(clippy::useless_conversion)]
    let (frsize, avail, blocks) = (
        u64::from(st.fragment_size()),
        u64::from(st.blocks_available()),
        u64::from(st.blocks()),
    );
    Ok(DiskFound {
        measured: measured.to_owned(),
        free: avail.saturating_mul(frsize),
        total: blocks.saturating_mul(frsize),
    })
}

/// Where the program `name` is: an absolute path that is an executable file, or the
/// first such file named `name` on `PATH` (then the `sbin` directories).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let executable = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.starts_with('/') {
        let p = PathBuf::from(name);
        return executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_PATH.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| executable(p))
}

/// Whether the kernel's clock discipline says the clock is synchronised (what NTP
/// daemons, timesyncd and chrony set): `ntp_adjtime` without changing anything.
fn clock_synced() -> Option<bool> {
    // SAFETY: `timex` is plain data; all-zero `modes` only reads the kernel's state.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: a valid, exclusively borrowed `timex`.
    let state = unsafe { libc::ntp_adjtime(&raw mut tx) };
    if state < 0 {
        return None;
    }
    Some(state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0)
}

/// A package's installed version, or the one apt would install.
fn package(name: &str) -> PackageFound {
    let names = [name.to_owned()];
    if let Ok(installed) = crate::packages::installed_versions(&names)
        && let Some(v) = installed.get(name)
    {
        return PackageFound::Installed(v.clone());
    }
    let Ok(out) = Command::new("apt-cache").args(["policy", name]).output() else {
        return PackageFound::Unavailable;
    };
    candidate(&String::from_utf8_lossy(&out.stdout))
}

/// The `Candidate:` of `apt-cache policy` output.
fn candidate(policy: &str) -> PackageFound {
    policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(str::trim)
        .filter(|v| !v.is_empty() && *v != "(none)")
        .map_or(PackageFound::Unavailable, |v| {
            PackageFound::Candidate(v.to_owned())
        })
}

#[cfg(test)]
mod tests {
    use berth_preflight::PackageFound;

    use super::{candidate, find_program, free_space};

    #[test]
    fn apt_policy_candidates_are_read() {
        let text = "redis-server:\n  Installed: (none)\n  Candidate: 5:7.0.15-1~deb12u1\n  \
                    Version table:\n     5:7.0.15-1~deb12u1 500\n";
        assert_eq!(
            candidate(text),
            PackageFound::Candidate("5:7.0.15-1~deb12u1".to_owned())
        );
        assert_eq!(
            candidate("x:\n  Installed: (none)\n  Candidate: (none)\n"),
            PackageFound::Unavailable
        );
        assert_eq!(candidate(""), PackageFound::Unavailable);
    }

    /// A directory not made yet is measured where it will be made.
    #[test]
    fn free_space_is_measured_at_the_nearest_existing_parent() {
        let tmp = tempfile::tempdir().unwrap();
        let found = free_space(&tmp.path().join("not/made/yet")).unwrap();
        assert_eq!(found.measured, tmp.path());
        assert!(found.total >= found.free && found.total > 0);
    }

    #[test]
    fn programs_are_found_on_path_or_by_absolute_path() {
        assert!(find_program("sh").is_some());
        assert_eq!(find_program("/bin/sh"), Some("/bin/sh".into()));
        assert_eq!(find_program("/etc/passwd"), None);
        assert_eq!(find_program("no-such-program-berth"), None);
    }
}
