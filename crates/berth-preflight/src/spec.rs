//! The [`Spec`] of an instance: the manifest's `[preflight]` with its sizes read and its
//! directories placed, and berth's own needs.

use berth_layout::Paths;
use berth_model::manifest::{PreflightDecl, PreflightLevel, SizeLimits};

use crate::{DiskSpec, Level, Limits, Spec};

/// Free space berth itself needs where its state lives (the state database, the
/// journal, atomic writes' temporary files): below it, `up` stops.
pub const BERTH_STATE_MIN: u64 = 64 << 20;
/// Below it, a warning: backups staged and releases built beside the running one
/// need more.
pub const BERTH_STATE_RECOMMENDED: u64 = 1 << 30;

fn level(l: Option<PreflightLevel>) -> Option<Level> {
    l.map(|l| match l {
        PreflightLevel::Fail => Level::Fail,
        PreflightLevel::Warn => Level::Warn,
        PreflightLevel::Off => Level::Off,
    })
}

/// Sizes of a validated manifest (one that does not validate has none).
fn sizes(l: &SizeLimits) -> Limits {
    let read = |v: &Option<toml::Value>| v.as_ref().and_then(|v| berth_model::size_value(v).ok());
    Limits {
        min: read(&l.min),
        recommended: read(&l.recommended),
    }
}

/// Where `[[preflight.disk]] path` is in this instance's layout.
fn disk_path(paths: &Paths, name: &str) -> std::path::PathBuf {
    match name {
        "prefix" => paths.prefix.clone(),
        "data" => paths.data.clone(),
        "log" => paths.log.clone(),
        "state" => paths.state.clone(),
        "releases" => paths.releases(),
        other => paths.data_dir(other.strip_prefix("data/").unwrap_or(other)),
    }
}

/// The checks for an instance at `paths` of a manifest whose `[preflight]` is `decl`
/// (validated): its own, then berth's (free space for its state; the clock warns
/// unless the manifest says otherwise).
pub fn spec(decl: &PreflightDecl, paths: &Paths) -> Spec {
    let mut disks: Vec<DiskSpec> = decl
        .disk
        .iter()
        .map(|d| DiskSpec {
            name: d.path.clone(),
            path: disk_path(paths, &d.path),
            limits: sizes(&SizeLimits {
                min: d.min.clone(),
                recommended: d.recommended.clone(),
            }),
        })
        .collect();
    disks.push(DiskSpec {
        name: "berth state".to_owned(),
        path: paths.state.clone(),
        limits: Limits {
            min: Some(BERTH_STATE_MIN),
            recommended: Some(BERTH_STATE_RECOMMENDED),
        },
    });
    Spec {
        cpus: decl.cpus.as_ref().map_or_else(Limits::default, |c| Limits {
            min: c.min.map(u64::from),
            recommended: c.recommended.map(u64::from),
        }),
        memory: decl.memory.as_ref().map_or_else(Limits::default, sizes),
        disks,
        kernel: decl.kernel.clone(),
        distributions: decl.distributions.clone(),
        other_distributions: level(decl.other_distributions),
        binaries: decl.binaries.clone(),
        clock_sync: Some(level(decl.clock_sync).unwrap_or(Level::Warn)),
        packages: decl.packages.clone(),
    }
}
