//! `berth fleet`: acting on every node of a fleet file at once.
//!
//! Every node is reached over SSH ([`berth_remote`]) and runs its own berth: this
//! crate decides what to run where and gathers the answers. [`check`] is what every
//! change starts with: each node reachable, its host key the recorded one, berth
//! there in this version; one node that is not, and nothing changes anywhere.
//! [`status`] gathers `berth status --json` from every node.

pub mod node;
pub mod rolling;
pub mod up;
pub mod upgrade;

use std::time::Duration;

use berth_model::LoadedFleet;
use berth_remote::{RemoteError, Target};
use berth_supervisor_protocol::ServiceStatus;
use serde::Serialize;

/// At most this many nodes are talked to at once.
pub const PARALLEL: usize = 16;

/// How berth reaches each node of `f`, in the file's order of names.
pub fn targets(f: &LoadedFleet) -> Vec<Target> {
    let meta = &f.fleet.fleet;
    let timeout =
        berth_model::parse_duration(&meta.connect_timeout).unwrap_or(Duration::from_secs(5));
    f.fleet
        .nodes
        .iter()
        .map(|(name, n)| Target {
            name: name.clone(),
            user: meta.user.clone(),
            address: n.address.clone(),
            port: n.ssh_port,
            identity: f.path(&meta.identity),
            known_hosts: f.path(&meta.known_hosts),
            connect_timeout: timeout,
        })
        .collect()
}

/// The instance's prefix on node `node`: its own, the fleet's, else berth's default
/// for the app.
pub fn prefix(f: &LoadedFleet, app: &str, node: &str) -> String {
    f.fleet
        .nodes
        .get(node)
        .and_then(|n| n.prefix.clone())
        .or_else(|| f.fleet.fleet.prefix.clone())
        .unwrap_or_else(|| format!("/var/opt/berth/{app}"))
}

/// Why a node is not ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Problem {
    /// SSH failed: unreachable, host key, login.
    Remote {
        /// A few words for a table ([`RemoteError::short`]).
        #[serde(skip)]
        short: &'static str,
        /// What happened.
        message: String,
        /// What to do.
        hint: String,
    },
    /// berth is not where the fleet file says.
    BerthMissing {
        /// Where it was looked for.
        path: String,
    },
    /// berth there is another version.
    BerthVersion {
        /// What the node has.
        found: String,
        /// What this berth is.
        wanted: String,
    },
    /// berth there failed otherwise.
    Failed {
        /// Its exit status.
        code: i32,
        /// Its last line of error output.
        message: String,
    },
}

impl Problem {
    fn remote(e: &RemoteError) -> Self {
        Self::Remote {
            short: e.short(),
            message: e.to_string(),
            hint: e.hint(),
        }
    }

    /// One line for a table.
    pub fn short(&self) -> String {
        match self {
            Self::Remote { short, .. } => (*short).to_owned(),
            Self::BerthMissing { .. } => "berth missing".to_owned(),
            Self::BerthVersion { found, .. } => format!("berth {found}"),
            Self::Failed { code, .. } => format!("berth failed ({code})"),
        }
    }

    /// The whole story, with what to do.
    pub fn explain(&self) -> (String, String) {
        match self {
            Self::Remote { message, hint, .. } => (message.clone(), hint.clone()),
            Self::BerthMissing { path } => (
                format!("berth is not installed at `{path}`"),
                "install berth there (its package, or the binary), or set `berth` in the fleet file's [fleet] to where it is".to_owned(),
            ),
            Self::BerthVersion { found, wanted } => (
                format!("the node has berth {found}, this is berth {wanted}"),
                format!("install berth {wanted} on the node: every node runs the same berth"),
            ),
            Self::Failed { code, message } => (
                format!("berth failed there with status {code}: {message}"),
                "run the same berth command on the node to see the whole error".to_owned(),
            ),
        }
    }
}

/// One node's answer to [`check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeCheck {
    /// The node.
    pub node: String,
    /// `address:port`.
    pub address: String,
    /// Its roles.
    pub roles: Vec<String>,
    /// How long the round trip took, when it worked.
    pub ssh_ms: Option<u64>,
    /// The berth version there, when it answered.
    pub berth: Option<String>,
    /// Why it is not ready, if it is not.
    pub problem: Option<Problem>,
}

fn last_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Checks every node of `f` at once: SSH with the recorded host key, and berth
/// `wanted` at the fleet's path.
pub fn check(f: &LoadedFleet, wanted: &str) -> Vec<NodeCheck> {
    let targets = targets(f);
    let berth = f.fleet.fleet.berth.clone();
    berth_remote::each(&targets, PARALLEL, |t| {
        let roles = f.fleet.nodes[&t.name].roles.clone();
        let mut c = NodeCheck {
            node: t.name.clone(),
            address: t.shown_address(),
            roles,
            ssh_ms: None,
            berth: None,
            problem: None,
        };
        match t.run(&[&berth, "--version"], None) {
            Err(e) => c.problem = Some(Problem::remote(&e)),
            Ok(out) => {
                c.ssh_ms = Some(u64::try_from(out.took.as_millis()).unwrap_or(u64::MAX));
                let version = out.stdout.trim().strip_prefix("berth ").map(str::to_owned);
                c.problem = match (out.code, &version) {
                    (0, Some(v)) if v == wanted => None,
                    (0, Some(v)) => Some(Problem::BerthVersion {
                        found: v.clone(),
                        wanted: wanted.to_owned(),
                    }),
                    (126 | 127, _) => Some(Problem::BerthMissing {
                        path: berth.clone(),
                    }),
                    (code, _) => Some(Problem::Failed {
                        code,
                        message: last_line(&out.stderr),
                    }),
                };
                c.berth = version;
            }
        }
        c
    })
}

/// One node's answer to [`status`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeStatus {
    /// The node.
    pub node: String,
    /// `address:port`.
    pub address: String,
    /// Its roles.
    pub roles: Vec<String>,
    /// Whether its instance has been set up (false: `berth fleet up` has not reached it).
    pub set_up: bool,
    /// Whether its supervisor runs.
    pub supervisor_running: bool,
    /// Its services.
    pub services: Vec<ServiceStatus>,
    /// The memory its services take (PSS).
    pub memory_pss_bytes: Option<u64>,
    /// Why there is no status, if there is none.
    pub problem: Option<Problem>,
}

impl NodeStatus {
    /// Set up, supervised, every service ready and nothing wrong.
    pub fn healthy(&self) -> bool {
        self.problem.is_none()
            && self.set_up
            && self.supervisor_running
            && self.services.iter().all(|s| s.ready)
    }
}

/// `berth status --json` of every node at once.
pub fn status(f: &LoadedFleet, app: &str) -> Vec<NodeStatus> {
    let targets = targets(f);
    let berth = f.fleet.fleet.berth.clone();
    berth_remote::each(&targets, PARALLEL, |t| {
        let prefix = prefix(f, app, &t.name);
        let mut s = NodeStatus {
            node: t.name.clone(),
            address: t.shown_address(),
            roles: f.fleet.nodes[&t.name].roles.clone(),
            set_up: false,
            supervisor_running: false,
            services: Vec::new(),
            memory_pss_bytes: None,
            problem: None,
        };
        match t.run(&[&berth, "--prefix", &prefix, "status", "--json"], None) {
            Err(e) => s.problem = Some(Problem::remote(&e)),
            Ok(out) if out.code == 0 => {
                match serde_json::from_str::<serde_json::Value>(&out.stdout) {
                    Ok(v) => {
                        s.set_up = true;
                        s.supervisor_running = v["supervisor_running"].as_bool().unwrap_or(false);
                        s.memory_pss_bytes = v["memory_pss_bytes"].as_u64();
                        s.services =
                            serde_json::from_value(v["services"].clone()).unwrap_or_default();
                    }
                    Err(e) => {
                        s.problem = Some(Problem::Failed {
                            code: 0,
                            message: format!("its status is not JSON: {e}"),
                        });
                    }
                }
            }
            Ok(out) if out.stderr.contains("has not been set up yet") => {}
            Ok(out) if out.code == 126 || out.code == 127 => {
                s.problem = Some(Problem::BerthMissing {
                    path: berth.clone(),
                });
            }
            Ok(out) => {
                s.problem = Some(Problem::Failed {
                    code: out.code,
                    message: last_line(&out.stderr),
                });
            }
        }
        s
    })
}
