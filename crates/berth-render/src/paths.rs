//! The instance directory layout.

use std::path::{Path, PathBuf};

use crate::Paths;

impl Paths {
    /// The layout under `prefix` for app `version`.
    ///
    /// ```
    /// let p = berth_render::Paths::for_prefix("/var/opt/berth/app".as_ref(), "1.2.0");
    /// assert_eq!(p.release, std::path::Path::new("/var/opt/berth/app/releases/1.2.0"));
    /// ```
    pub fn for_prefix(prefix: &Path, version: &str) -> Self {
        let p = |s: &str| prefix.join(s);
        Self {
            prefix: prefix.to_path_buf(),
            etc: p("etc"),
            data: p("data"),
            run: p("run"),
            log: p("log"),
            secrets: p("secrets"),
            state: p("state"),
            release: prefix.join("releases").join(version),
        }
    }

    /// The supervisor's control socket.
    pub fn supervisor_socket(&self) -> PathBuf {
        self.run.join("supervisor.sock")
    }

    /// The supervision plan the supervisor loads at start.
    pub fn supervision_plan(&self) -> PathBuf {
        self.state.join("supervision-plan.json")
    }

    /// The state database.
    pub fn state_db(&self) -> PathBuf {
        self.state.join("berth.db")
    }

    /// Where the process groups of lifecycle steps' children are recorded while they run.
    pub fn child_records(&self) -> PathBuf {
        self.state.join("children")
    }
}
