//! Host facts: what the probe in `berth-host` found about the machine.
//!
//! Plain data, so rendering stays a pure function of (manifest, site config, facts,
//! secrets) and tests can pin facts to fixed values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Facts about the host that settings may derive defaults from (`facts.cpus` …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// CPUs this process may use (affinity mask, then cgroup quota), at least 1.
    pub cpus: u32,
    /// Memory available to the instance in bytes: the cgroup limit when one is set, else physical memory.
    pub memory_bytes: u64,
    /// Physical memory in bytes.
    pub physical_memory_bytes: u64,
    /// The cgroup memory limit, when one is set.
    pub cgroup_memory_limit: Option<u64>,
    /// Host name.
    pub hostname: String,
    /// Whether berth runs as root (system install) or as a normal user (per-user prefix).
    pub is_root: bool,
    /// Name of the invoking user.
    pub user: String,
    /// `ID` from `/etc/os-release`, e.g. `debian`.
    pub os_id: String,
    /// `VERSION_ID` from `/etc/os-release`, e.g. `12`.
    pub os_version: String,
    /// CPU architecture as Rust names it, e.g. `x86_64`, `aarch64`.
    pub arch: String,
    /// Whether systemd is PID 1.
    pub systemd: bool,
    /// Installed version of distribution packages, by package name, as the package
    /// manager reports it (e.g. `1:1.39.10-1`). Filled for the packages the enabled
    /// components declare; a package missing here is not installed (or was not asked
    /// about). Only `when = "change"` hooks read it (`on = ["package:…"]`): it is not
    /// in the template context, so a package upgrade never changes a rendered file.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub package_versions: BTreeMap<String, String>,
}

impl Facts {
    /// Fixed facts for tests and snapshot rendering: 4 CPUs, 8 GiB, not root.
    pub fn fixture() -> Self {
        Self {
            cpus: 4,
            memory_bytes: 8 << 30,
            physical_memory_bytes: 8 << 30,
            cgroup_memory_limit: None,
            hostname: "host1".to_owned(),
            is_root: false,
            user: "admin".to_owned(),
            os_id: "debian".to_owned(),
            os_version: "12".to_owned(),
            arch: "x86_64".to_owned(),
            systemd: false,
            package_versions: BTreeMap::new(),
        }
    }
}
