//! What the unit tests of the lifecycle share: small desired states, the fixture
//! instance on a prefix of its own, and a supervisor that answers from a script.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_model::manifest::HookWhen;
use berth_render::{AppId, DesiredState, HookSpec, Paths};
use berth_supervisor_protocol::{Request, Response, RestartPolicy, ServiceSpec};

use crate::error::{LifecycleError, Result};
use crate::instance::{Instance, Locate};
use crate::supervisor::Supervisor;

/// Owned names.
pub fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// A service that needs `deps`.
pub fn service(name: &str, deps: &[&str]) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        argv: vec!["/bin/true".into()],
        env: BTreeMap::new(),
        cwd: None,
        user: None,
        depends_on: names(deps),
        readiness: None,
        stop_signal: "SIGTERM".into(),
        stop_timeout: Duration::from_secs(1),
        reload_signal: None,
        restart: RestartPolicy::Always,
        log_dir: PathBuf::from("/l"),
        log_max_bytes: 1,
        log_keep: 1,
    }
}

/// A `once` hook that runs after the services `after` and before `before`.
pub fn hook(name: &str, after: &[&str], before: &[&str]) -> HookSpec {
    HookSpec {
        name: name.into(),
        description: String::new(),
        argv: vec!["/bin/true".into()],
        check: None,
        env: BTreeMap::new(),
        cwd: None,
        user: None,
        when: HookWhen::Once,
        after: names(after),
        before: names(before),
        after_hooks: vec![],
        before_hooks: vec![],
        rerun_key: None,
        rerun_inputs: vec![],
        timeout: Duration::from_secs(10),
        log_file: PathBuf::from("/l/h.log"),
        creates: None,
        secrets_out: Vec::new(),
    }
}

/// A desired state of app `a` 1.0.0 on `prefix`, with nothing but `services` and `hooks`.
pub fn state_on(prefix: &Path, services: Vec<ServiceSpec>, hooks: Vec<HookSpec>) -> DesiredState {
    DesiredState {
        app: AppId {
            name: "a".into(),
            version: "1.0.0".into(),
        },
        paths: Paths::for_prefix(prefix, "1.0.0"),
        users: vec![],
        dirs: vec![],
        files: vec![],
        host_files: vec![],
        packages: vec![],
        binaries: BTreeMap::new(),
        bundles: vec![],
        secrets: vec![],
        services,
        jobs: vec![],
        listen: BTreeMap::new(),
        hooks,
        health_url: String::new(),
        next_steps: vec![],
        backup: None,
        backup_policy: berth_render::BackupPolicy {
            target: berth_render::BackupTarget::Default(prefix.join("backups")),
            schedule: berth_render::Schedule::Off,
            jobs: 1,
            compression_level: 3,
            keep_last: 7,
            keep_daily: 7,
            keep_weekly: 4,
            ssh_identity: None,
            ssh_known_hosts: None,
            recipient: None,
        },
        upgrade_policy: berth_render::UpgradePolicy {
            auto: berth_render::AutoUpgrade::Off,
            source: None,
            window: (180, 300),
            check_every: std::time::Duration::from_hours(1),
            keep_releases: 2,
        },
        metrics_listen: None,
        metrics_endpoints: std::collections::BTreeMap::new(),
        console: None,
    }
}

/// The small fixture app, on a prefix of its own (nothing is installed or started).
pub fn instance(prefix: &Path) -> Instance {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/ministack");
    crate::instance::open(&Locate {
        prefix: Some(prefix.to_path_buf()),
        manifest: Some(manifest),
        ..Locate::default()
    })
    .unwrap()
}

/// A supervisor that records every request and answers from a script: each request
/// takes the next scripted answer (an `Error` answer is a refusal), and with the
/// script used up it answers `Ok`.
#[derive(Default)]
pub struct Scripted {
    /// Whether it answers at all.
    pub running: bool,
    /// The requests it got, in order.
    pub requests: RefCell<Vec<Request>>,
    answers: RefCell<VecDeque<Response>>,
    /// Answers to `Status`, which are not taken from the script.
    pub status: Option<Response>,
    /// A file each request (`Status` left out) is appended to as one line
    /// ([`request_line`]), so a test can tell its order against what hooks write there.
    pub journal: Option<PathBuf>,
}

/// How [`Scripted::journal`] writes a request: `apply restart=a,b reload=c`,
/// `start a,b`, and the request's debug form for the rest.
pub fn request_line(req: &Request) -> String {
    use berth_supervisor_protocol::Target;
    let target = |t: &Target| match t {
        Target::All => "*".to_owned(),
        Target::One(n) => n.clone(),
        Target::Many(n) => n.join(","),
    };
    match req {
        Request::Apply {
            plan,
            restart,
            reload,
        } => {
            let specs: Vec<String> = plan
                .services
                .iter()
                .map(|s| format!("{}:{}", s.name, s.argv.join(" ")))
                .collect();
            format!(
                "apply [{}] restart={} reload={}",
                specs.join(";"),
                restart.join(","),
                reload.join(",")
            )
        }
        Request::Start { target: t } => format!("start {}", target(t)),
        other => format!("{other:?}"),
    }
}

impl Scripted {
    /// A running supervisor that answers `answers`, in order.
    pub fn answering(answers: Vec<Response>) -> Self {
        Self {
            running: true,
            answers: RefCell::new(answers.into()),
            ..Self::default()
        }
    }

    /// The same, appending each request to `journal` (see [`Scripted::journal`]).
    pub fn journaling(mut self, journal: &Path) -> Self {
        self.journal = Some(journal.to_path_buf());
        self
    }

    /// The requests it got, `Status` left out.
    pub fn sent(&self) -> Vec<Request> {
        self.requests
            .borrow()
            .iter()
            .filter(|r| !matches!(r, Request::Status))
            .cloned()
            .collect()
    }
}

impl Supervisor for Scripted {
    fn is_running(&self) -> bool {
        self.running
    }

    fn request(&self, req: &Request) -> Result<Response> {
        assert!(
            self.running,
            "a request to a supervisor that is not running: {req:?}"
        );
        self.requests.borrow_mut().push(req.clone());
        if let Some(journal) = &self.journal
            && !matches!(req, Request::Status)
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(journal)
                .expect("open the request journal");
            writeln!(f, "{}", request_line(req)).expect("write the request journal");
        }
        if matches!(req, Request::Status) {
            return Ok(self.status.clone().unwrap_or(Response::Status {
                supervisor_pid: 1,
                services: Vec::new(),
                jobs: Vec::new(),
            }));
        }
        match self.answers.borrow_mut().pop_front() {
            Some(Response::Error { message }) => Err(LifecycleError::SupervisorRefused(message)),
            Some(answer) => Ok(answer),
            None => Ok(Response::Ok),
        }
    }

    fn wait_exited(&self, _timeout: Duration) -> bool {
        true
    }

    fn with_failed_logs(&self, err: LifecycleError) -> LifecycleError {
        err
    }
}
