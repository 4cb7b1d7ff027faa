//! The image config: how a container of the image runs (entrypoint, user, environment,
//! ports, health check), its labels, and the layers' uncompressed digests.
//!
//! Written as the OCI image config (`application/vnd.oci.image.config.v1+json`), which
//! Docker's image config extends: the same JSON serves the OCI layout and the
//! `docker-archive`. The OCI spec has no health check; Docker's is written where Docker
//! and containers/image read it, `config.Healthcheck`, with Docker's key names and
//! durations in nanoseconds. Podman (containers/common's `libimage`) reads it from
//! images whose manifest is Docker's (a `docker-archive` loaded with `podman load`, or
//! a `--format docker` build), not from an OCI manifest: an OCI image keeps it in its
//! config, but there `podman run` needs `--health-cmd`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use crate::{ImageError, Result};

/// How a container of the image runs, and what the image says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageConfig {
    /// CPU architecture, as Go names it (`amd64`, `arm64`).
    pub architecture: String,
    /// Operating system (`linux`).
    pub os: String,
    /// The program a container runs, with its first arguments.
    pub entrypoint: Vec<String>,
    /// Arguments appended to the entrypoint unless the container is given others.
    pub cmd: Vec<String>,
    /// Environment, as `NAME=value`.
    pub env: Vec<String>,
    /// The directory the entrypoint starts in.
    pub working_dir: Option<String>,
    /// `uid:gid` (or a name the image's `/etc/passwd` knows) the entrypoint runs as.
    pub user: String,
    /// Whether the image may run as root: without it, a `user` that is root (or none)
    /// is refused, since images run as a service user by default.
    pub run_as_root: bool,
    /// Labels, mostly `org.opencontainers.image.*` (version, source, licenses…).
    pub labels: BTreeMap<String, String>,
    /// Ports the service listens on, as `8080/tcp`.
    pub exposed_ports: BTreeSet<String>,
    /// How the runtime checks that the service is healthy.
    pub healthcheck: Option<Healthcheck>,
    /// The build's time (`SOURCE_DATE_EPOCH`): the image's `created` and its history's.
    pub source_date_epoch: u64,
}

impl ImageConfig {
    /// An `amd64`/`linux` image made at `source_date_epoch`, running as `1000:1000`.
    pub fn new(source_date_epoch: u64) -> Self {
        Self {
            architecture: "amd64".to_owned(),
            os: "linux".to_owned(),
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            env: Vec::new(),
            working_dir: None,
            user: "1000:1000".to_owned(),
            run_as_root: false,
            labels: BTreeMap::new(),
            exposed_ports: BTreeSet::new(),
            healthcheck: None,
            source_date_epoch,
        }
    }

    /// Checks what a runtime would reject or what would run as root unasked.
    pub fn validate(&self) -> Result<()> {
        let invalid = |what: String| Err(ImageError::Invalid { what });
        let user = self.user.split(':').next().unwrap_or_default();
        if !self.run_as_root && (user.is_empty() || user == "0" || user == "root") {
            return invalid(format!(
                "The image would run as root (user `{}`): set the user to the service's \
                 `uid:gid` (say `1000:1000`), or allow root explicitly",
                self.user
            ));
        }
        if self.architecture.is_empty() || self.os.is_empty() {
            return invalid("The image needs an architecture (`amd64`) and an os (`linux`)".into());
        }
        for var in &self.env {
            if var.split_once('=').is_none_or(|(name, _)| name.is_empty()) {
                return invalid(format!(
                    "Environment entry `{var}` is not `NAME=value`: write it as such"
                ));
            }
        }
        for port in &self.exposed_ports {
            let ok = port.split_once('/').map_or(port.as_str(), |(p, proto)| {
                if matches!(proto, "tcp" | "udp" | "sctp") {
                    p
                } else {
                    ""
                }
            });
            if ok.parse::<u16>().is_err() {
                return invalid(format!(
                    "Exposed port `{port}` is not `PORT` or `PORT/tcp|udp|sctp`: write it as such"
                ));
            }
        }
        if let Some(check) = &self.healthcheck {
            check.validate()?;
        }
        Ok(())
    }

    /// The config's JSON (canonical: keys sorted) for layers with these uncompressed
    /// digests and these history lines, one per layer.
    pub fn to_json(&self, diff_ids: &[String], created_by: &[String]) -> Vec<u8> {
        let created = crate::rfc3339(self.source_date_epoch);
        let ports = self
            .exposed_ports
            .iter()
            .map(|p| {
                let p = if p.contains('/') {
                    p.clone()
                } else {
                    format!("{p}/tcp")
                };
                (p, Empty {})
            })
            .collect();
        let doc = Document {
            architecture: &self.architecture,
            os: &self.os,
            created: created.clone(),
            config: RunConfig {
                user: &self.user,
                env: &self.env,
                entrypoint: &self.entrypoint,
                cmd: &self.cmd,
                working_dir: self.working_dir.as_deref(),
                labels: &self.labels,
                exposed_ports: ports,
                healthcheck: self.healthcheck.as_ref().map(DockerHealth::from),
            },
            rootfs: RootFs {
                kind: "layers",
                diff_ids,
            },
            history: created_by
                .iter()
                .map(|c| History {
                    created: created.clone(),
                    created_by: c,
                })
                .collect(),
        };
        crate::json::to_vec(&doc)
    }
}

/// How the runtime checks the service: Docker's `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    /// `["CMD", program, args…]`, `["CMD-SHELL", command]` or `["NONE"]`.
    pub test: Vec<String>,
    /// Between two checks.
    pub interval: Duration,
    /// How long a check may take before it counts as failed.
    pub timeout: Duration,
    /// Consecutive failures that make the container unhealthy.
    pub retries: u32,
    /// Failures during this time after the start do not count.
    pub start_period: Duration,
}

impl Healthcheck {
    fn validate(&self) -> Result<()> {
        let ok = match self.test.first().map(String::as_str) {
            Some("CMD") => self.test.len() >= 2,
            Some("CMD-SHELL") => self.test.len() == 2,
            Some("NONE") => self.test.len() == 1,
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(ImageError::Invalid {
                what: format!(
                    "Health check {:?} is not `[\"CMD\", program, args…]`, \
                     `[\"CMD-SHELL\", command]` or `[\"NONE\"]`: write it as one of these",
                    self.test
                ),
            })
        }
    }
}

#[derive(Serialize)]
struct Document<'a> {
    architecture: &'a str,
    os: &'a str,
    created: String,
    config: RunConfig<'a>,
    rootfs: RootFs<'a>,
    history: Vec<History<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RunConfig<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    user: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    env: &'a [String],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    entrypoint: &'a [String],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    cmd: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    working_dir: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: &'a BTreeMap<String, String>,
    // Docker's and OCI's form: each port maps to an empty object.
    #[allow(clippy::zero_sized_map_values)]
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    exposed_ports: BTreeMap<String, Empty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    healthcheck: Option<DockerHealth<'a>>,
}

#[derive(Serialize)]
struct Empty {}

/// Docker's `HealthConfig` as containers/image's `Schema2HealthConfig` reads it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerHealth<'a> {
    test: &'a [String],
    interval: u64,
    timeout: u64,
    start_period: u64,
    retries: u32,
}

impl<'a> From<&'a Healthcheck> for DockerHealth<'a> {
    fn from(h: &'a Healthcheck) -> Self {
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Self {
            test: &h.test,
            interval: ns(h.interval),
            timeout: ns(h.timeout),
            start_period: ns(h.start_period),
            retries: h.retries,
        }
    }
}

#[derive(Serialize)]
struct RootFs<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: &'a [String],
}

#[derive(Serialize)]
struct History<'a> {
    created: String,
    created_by: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ImageConfig {
        let mut c = ImageConfig::new(1_700_000_000);
        c.entrypoint = vec!["/opt/app/bin/app".into()];
        c.cmd = vec!["serve".into()];
        c.env = vec!["PATH=/usr/bin:/bin".into(), "LANG=C.UTF-8".into()];
        c.working_dir = Some("/opt/app".into());
        c.labels
            .insert("org.opencontainers.image.version".into(), "1.2.3".into());
        c.labels
            .insert("org.opencontainers.image.title".into(), "app".into());
        c.exposed_ports.insert("8080".into());
        c.healthcheck = Some(Healthcheck {
            test: vec!["CMD".into(), "/opt/app/bin/app".into(), "check".into()],
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            retries: 3,
            start_period: Duration::from_secs(10),
        });
        c
    }

    #[test]
    fn config_json_is_canonical() {
        let json = sample().to_json(
            &["sha256:aa".into(), "sha256:bb".into()],
            &["base".into(), "app".into()],
        );
        let text = String::from_utf8(json).unwrap();
        insta::assert_snapshot!(text);
    }

    #[test]
    fn root_is_refused_unless_allowed() {
        let mut c = sample();
        c.validate().unwrap();
        for user in ["", "0", "root", "0:0", "root:1000"] {
            c.user = user.into();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("run as root"), "{e}");
        }
        c.run_as_root = true;
        c.validate().unwrap();
    }

    #[test]
    fn bad_ports_env_and_checks_are_refused() {
        let mut c = sample();
        c.exposed_ports.insert("http".into());
        assert!(c.validate().is_err());
        let mut c = sample();
        c.env.push("NOVALUE".into());
        assert!(c.validate().is_err());
        let mut c = sample();
        c.healthcheck.as_mut().unwrap().test = vec!["curl".into()];
        assert!(c.validate().is_err());
    }
}
