//! Runs: one record per `up`, `reconfigure`, `backup`, `restore` …

use jiff::Timestamp;
use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use crate::{StateDb, StateError};

/// The id of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub i64);

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RunStatus {
    /// It changed what it had to and finished.
    Succeeded,
    /// It stopped with an error (already rolled back when it could be).
    Failed {
        /// The error, as shown to the administrator (never holds secrets).
        error: String,
    },
    /// There was nothing to do.
    #[default]
    NoChange,
}

impl RunStatus {
    fn as_str(&self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed { .. } => "failed",
            Self::NoChange => "no_change",
        }
    }

    fn error(&self) -> Option<&str> {
        match self {
            Self::Failed { error } => Some(error),
            Self::Succeeded | Self::NoChange => None,
        }
    }
}

/// What a run did, recorded when it finishes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RunOutcome {
    /// How it ended.
    pub status: RunStatus,
    /// Files created, rewritten, given another mode or owner, or removed (absolute
    /// paths); never a directory.
    pub files_changed: Vec<String>,
    /// Directories created (absolute paths, parents first).
    #[serde(default)]
    pub dirs_created: Vec<String>,
    /// Directories that existed and were given another mode or owner.
    #[serde(default)]
    pub dirs_changed: Vec<String>,
    /// Services restarted.
    pub services_restarted: Vec<String>,
    /// Services reloaded.
    pub services_reloaded: Vec<String>,
    /// Hooks run.
    pub hooks_run: Vec<String>,
    /// Services stopped because they left the plan.
    #[serde(default)]
    pub services_stopped: Vec<String>,
    /// Services started because they are new to the plan.
    #[serde(default)]
    pub services_started: Vec<String>,
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Its id; later runs have larger ids.
    pub id: RunId,
    /// `up`, `reconfigure`, `backup`, `restore` …
    pub kind: String,
    /// Free text, e.g. `4.7.0 -> 4.7.3`.
    pub detail: String,
    /// When it began (UTC).
    pub started_at: Timestamp,
    /// When it finished; `None` while running or when it never finished (a crash).
    pub finished_at: Option<Timestamp>,
    /// Wall time in milliseconds, once finished.
    pub duration_ms: Option<i64>,
    /// Who started it (`root`, `alice via sudo`, `console: …`); `None` for runs
    /// recorded before berth kept it.
    #[serde(default)]
    pub actor: Option<String>,
    /// What it did, once finished.
    pub outcome: Option<RunOutcome>,
}

const RUN_COLUMNS: &str = "id, kind, detail, started_at, finished_at, duration_ms, status, error, \
     files_changed, services_restarted, services_reloaded, hooks_run, services_stopped, \
     services_started, dirs_created, dirs_changed, actor";

/// A row of `runs`, before its text columns are decoded.
struct RawRun {
    id: i64,
    kind: String,
    detail: String,
    started_at: String,
    finished_at: Option<String>,
    duration_ms: Option<i64>,
    status: Option<String>,
    error: Option<String>,
    lists: [Option<String>; 8],
    actor: Option<String>,
}

impl RawRun {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            kind: row.get(1)?,
            detail: row.get(2)?,
            started_at: row.get(3)?,
            finished_at: row.get(4)?,
            duration_ms: row.get(5)?,
            status: row.get(6)?,
            error: row.get(7)?,
            lists: [
                row.get(8)?,
                row.get(9)?,
                row.get(10)?,
                row.get(11)?,
                row.get(12)?,
                row.get(13)?,
                row.get(14)?,
                row.get(15)?,
            ],
            actor: row.get(16)?,
        })
    }
}

impl StateDb {
    /// Records the start of a run and returns its id. Call [`StateDb::finish_run`] when
    /// it ends; a run never finished stays in the history without an outcome.
    pub fn begin_run(&self, kind: &str, detail: &str) -> Result<RunId, StateError> {
        self.begin_run_by(kind, detail, "")
    }

    /// [`StateDb::begin_run`], recording who started it (empty: unknown).
    pub fn begin_run_by(&self, kind: &str, detail: &str, actor: &str) -> Result<RunId, StateError> {
        let now = Timestamp::now();
        let actor = (!actor.is_empty()).then_some(actor);
        self.conn
            .execute(
                "INSERT INTO runs (kind, detail, started_at, actor) VALUES (?1, ?2, ?3, ?4)",
                params![kind, detail, now.to_string(), actor],
            )
            .map_err(|e| self.query_err(format!("record the start of a `{kind}` run"), e))?;
        Ok(RunId(self.conn.last_insert_rowid()))
    }

    /// Records how run `id` ended, with its end time and duration, and clears what it
    /// had recorded as pending ([`StateDb::record_pending_services`]).
    pub fn finish_run(&self, id: RunId, outcome: &RunOutcome) -> Result<(), StateError> {
        let run = self.run(id)?.ok_or_else(|| StateError::UnknownRun {
            path: self.path.clone(),
            id: id.0,
        })?;
        if run.finished_at.is_some() {
            return Err(StateError::RunAlreadyFinished {
                path: self.path.clone(),
                id: id.0,
            });
        }
        let now = Timestamp::now();
        let duration_ms = now.duration_since(run.started_at).as_millis();
        let duration_ms = i64::try_from(duration_ms.max(0)).unwrap_or(i64::MAX);
        let lists = [
            &outcome.files_changed,
            &outcome.services_restarted,
            &outcome.services_reloaded,
            &outcome.hooks_run,
            &outcome.services_stopped,
            &outcome.services_started,
            &outcome.dirs_created,
            &outcome.dirs_changed,
        ]
        .map(|list| serde_json::to_string(list).unwrap_or_else(|_| "[]".to_owned()));
        self.conn
            .execute(
                "UPDATE runs SET finished_at = ?2, duration_ms = ?3, status = ?4, error = ?5,
                     files_changed = ?6, services_restarted = ?7, services_reloaded = ?8,
                     hooks_run = ?9, services_stopped = ?10, services_started = ?11,
                     dirs_created = ?12, dirs_changed = ?13
                 WHERE id = ?1 AND finished_at IS NULL",
                params![
                    id.0,
                    now.to_string(),
                    duration_ms,
                    outcome.status.as_str(),
                    outcome.status.error(),
                    lists[0],
                    lists[1],
                    lists[2],
                    lists[3],
                    lists[4],
                    lists[5],
                    lists[6],
                    lists[7],
                ],
            )
            .map_err(|e| self.query_err(format!("record the end of run {id}"), e))?;
        // Finished, it has nothing pending any more (and `pending_services` ignores
        // finished runs, so a crash right here loses nothing).
        self.clear_pending_services(id)
    }

    /// One run, if it exists.
    fn run(&self, id: RunId) -> Result<Option<RunRecord>, StateError> {
        let raw = self
            .conn
            .query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
                [id.0],
                RawRun::from_row,
            )
            .optional()
            .map_err(|e| self.query_err(format!("read run {id}"), e))?;
        raw.map(|raw| self.decode_run(raw)).transpose()
    }

    /// The latest `limit` runs, newest first.
    pub fn history(&self, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.select_runs(
            &format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY id DESC LIMIT ?1"),
            [limit],
            "read the run history",
        )
    }

    fn select_runs<P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        action: &str,
    ) -> Result<Vec<RunRecord>, StateError> {
        let raws = self
            .conn
            .prepare(sql)
            .and_then(|mut stmt| {
                stmt.query_map(params, RawRun::from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(|e| self.query_err(action, e))?;
        raws.into_iter().map(|raw| self.decode_run(raw)).collect()
    }

    fn decode_run(&self, raw: RawRun) -> Result<RunRecord, StateError> {
        let id = raw.id;
        let started_at = self.parse_time(&raw.started_at, || format!("start time of run {id}"))?;
        let finished_at = raw
            .finished_at
            .as_deref()
            .map(|t| self.parse_time(t, || format!("end time of run {id}")))
            .transpose()?;
        let outcome = match raw.status.as_deref() {
            None => None,
            Some(status) => {
                let status = match status {
                    "succeeded" => RunStatus::Succeeded,
                    "no_change" => RunStatus::NoChange,
                    "failed" => RunStatus::Failed {
                        error: raw.error.unwrap_or_default(),
                    },
                    other => {
                        return Err(self.corrupt(
                            format!("status of run {id}"),
                            &format!("unknown status `{other}`"),
                        ));
                    }
                };
                let [
                    files,
                    restarted,
                    reloaded,
                    hooks,
                    stopped,
                    started,
                    dirs_created,
                    dirs_changed,
                ] = raw.lists;
                let list = |text: Option<String>, what: &str| -> Result<Vec<String>, StateError> {
                    text.map_or(Ok(Vec::new()), |t| {
                        serde_json::from_str(&t)
                            .map_err(|e| self.corrupt(format!("{what} of run {id}"), &e))
                    })
                };
                Some(RunOutcome {
                    status,
                    files_changed: list(files, "changed files")?,
                    services_restarted: list(restarted, "restarted services")?,
                    services_reloaded: list(reloaded, "reloaded services")?,
                    hooks_run: list(hooks, "hooks run")?,
                    services_stopped: list(stopped, "stopped services")?,
                    services_started: list(started, "started services")?,
                    dirs_created: list(dirs_created, "created directories")?,
                    dirs_changed: list(dirs_changed, "changed directories")?,
                })
            }
        };
        Ok(RunRecord {
            id: RunId(id),
            kind: raw.kind,
            detail: raw.detail,
            started_at,
            finished_at,
            duration_ms: raw.duration_ms,
            actor: raw.actor,
            outcome,
        })
    }

    pub(crate) fn parse_time(
        &self,
        text: &str,
        what: impl FnOnce() -> String,
    ) -> Result<Timestamp, StateError> {
        text.parse::<Timestamp>()
            .map_err(|e| self.corrupt(what(), &e))
    }
}
