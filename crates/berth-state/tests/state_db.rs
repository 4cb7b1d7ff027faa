//! The state database against real SQLite files in temporary directories.

use std::os::unix::fs::PermissionsExt;

use std::path::Path;

use berth_state::{
    INSTANCE_SCOPE, PendingServices, RunId, RunOutcome, RunStatus, SCHEMA_VERSION, StateDb,
    StateError, StepId, StepStatus,
};

/// The schema version of the file, read the way any SQLite client would.
fn user_version(path: &Path) -> u32 {
    rusqlite::Connection::open(path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

/// The journal of `run` as `(name, status, error, finished)`, read with SQL the way
/// the benchmarks read it.
fn journal(path: &Path, run: RunId) -> Vec<(String, Option<String>, Option<String>, bool)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT name, status, error, finished_at IS NOT NULL, started_at
             FROM steps WHERE run_id = ?1 ORDER BY id",
        )
        .unwrap();
    stmt.query_map([run.0], |r| {
        let started: String = r.get(4)?;
        assert!(started.parse::<jiff::Timestamp>().is_ok(), "{started}");
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })
    .unwrap()
    .collect::<rusqlite::Result<_>>()
    .unwrap()
}

fn schema_has(path: &Path, name: &str) -> bool {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = ?1",
            [name],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
        > 0
}

fn open_temp() -> (tempfile::TempDir, StateDb) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = StateDb::open(dir.path().join("state/berth.db")).expect("open");
    (dir, db)
}

#[test]
fn creates_parent_and_file_with_private_modes() {
    let (dir, db) = open_temp();
    let file_mode = std::fs::metadata(db.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(file_mode, 0o600);
    let dir_mode = std::fs::metadata(dir.path().join("state"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);
    let journal_mode: String = rusqlite::Connection::open(db.path())
        .unwrap()
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(journal_mode, "wal");
}

#[test]
fn tightens_a_readable_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.db");
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    StateDb::open(&path).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn reopening_keeps_data_and_migrates_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.db");
    let run = {
        let db = StateDb::open(&path).unwrap();
        assert_eq!(user_version(&path), SCHEMA_VERSION);
        let run = db.begin_run("up", "first install").unwrap();
        db.finish_run(run, &RunOutcome::default()).unwrap();
        run
    };
    for _ in 0..2 {
        let db = StateDb::open(&path).unwrap();
        assert_eq!(user_version(&path), SCHEMA_VERSION);
        let history = db.history(10).unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].id, run);
    }
    assert!(!schema_has(&path, "applied"));
}

/// Schema version 1 as the first berth releases created it.
const SCHEMA_V1: &str = "
    CREATE TABLE runs (
        id                 INTEGER PRIMARY KEY AUTOINCREMENT,
        kind               TEXT NOT NULL,
        detail             TEXT NOT NULL,
        started_at         TEXT NOT NULL,
        finished_at        TEXT,
        duration_ms        INTEGER,
        status             TEXT,
        error              TEXT,
        files_changed      TEXT,
        services_restarted TEXT,
        services_reloaded  TEXT,
        hooks_run          TEXT
    );
    CREATE INDEX runs_unfinished ON runs (id) WHERE finished_at IS NULL;
    CREATE TABLE steps (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id      INTEGER NOT NULL REFERENCES runs (id),
        name        TEXT NOT NULL,
        started_at  TEXT NOT NULL,
        finished_at TEXT,
        status      TEXT,
        error       TEXT
    );
    CREATE INDEX steps_by_run ON steps (run_id, id);
    CREATE TABLE hooks (
        name    TEXT NOT NULL,
        scope   TEXT NOT NULL,
        run_id  INTEGER REFERENCES runs (id),
        ran_at  TEXT NOT NULL,
        PRIMARY KEY (name, scope)
    );
    CREATE TABLE applied (
        key        TEXT PRIMARY KEY,
        value      TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    PRAGMA user_version = 1;
";

#[test]
fn a_version_1_database_opens_and_loses_its_applied_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(SCHEMA_V1).unwrap();
        conn.execute_batch(
            "INSERT INTO runs (kind, detail, started_at, finished_at, duration_ms, status,
                               files_changed, services_restarted, services_reloaded, hooks_run)
                 VALUES ('up', '4.7.0', '2026-01-02T03:04:05Z', '2026-01-02T03:04:06Z', 1000,
                         'succeeded', '[]', '[]', '[]', '[\"migrate\"]');
             INSERT INTO steps (run_id, name, started_at, finished_at, status)
                 VALUES (1, 'hook migrate', '2026-01-02T03:04:05Z', '2026-01-02T03:04:06Z', 'done');
             INSERT INTO hooks (name, scope, run_id, ran_at)
                 VALUES ('migrate', '4.7.0', 1, '2026-01-02T03:04:06Z');
             INSERT INTO applied (key, value, updated_at)
                 VALUES ('services', '{}', '2026-01-02T03:04:06Z');",
        )
        .unwrap();
    }
    assert_eq!(user_version(&path), 1);
    // Read only (a dry run), the old schema is not migrated and still answers.
    let read_only = StateDb::open_read_only(&path).unwrap().unwrap();
    assert_eq!(read_only.last_change_hook("migrate").unwrap(), None);
    drop(read_only);
    assert_eq!(user_version(&path), 1);

    let db = StateDb::open(&path).unwrap();
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    const { assert!(SCHEMA_VERSION >= 2) };
    assert!(!schema_has(&path, "applied"));
    assert!(!schema_has(&path, "runs_unfinished"));

    // Everything else is kept and still readable and writable.
    let history = db.history(10).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].detail, "4.7.0");
    assert_eq!(history[0].outcome.as_ref().unwrap().hooks_run, ["migrate"]);
    assert_eq!(journal(&path, RunId(1)).len(), 1);
    assert!(db.hook_ran("migrate", "4.7.0").unwrap());
    let run = db.begin_run("reconfigure", "").unwrap();
    assert!(run.0 > 1);
    db.finish_run(run, &RunOutcome::default()).unwrap();
    drop(db);
    StateDb::open(&path).unwrap();
    assert_eq!(user_version(&path), SCHEMA_VERSION);
}

#[test]
fn refuses_a_database_from_a_newer_berth() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.db");
    drop(StateDb::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 5)
        .unwrap();
    let err = StateDb::open(&path).unwrap_err();
    assert!(matches!(err, StateError::TooNew { found, .. } if found == SCHEMA_VERSION + 5));
    assert!(err.to_string().contains("upgrade berth"), "{err}");
}

#[test]
fn history_is_newest_first_and_limited() {
    let (_dir, db) = open_temp();
    let kinds = ["up", "reconfigure", "upgrade", "restore"];
    for kind in kinds {
        let run = db.begin_run(kind, "").unwrap();
        db.finish_run(run, &RunOutcome::default()).unwrap();
    }
    let history = db.history(3).unwrap();
    let got: Vec<&str> = history.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(got, ["restore", "upgrade", "reconfigure"]);
    assert!(history.windows(2).all(|w| w[0].id > w[1].id));
    assert_eq!(db.history(0).unwrap().len(), 0);
}

#[test]
fn finished_run_keeps_its_outcome_and_duration() {
    let (_dir, db) = open_temp();
    let run = db.begin_run("reconfigure", "site.toml changed").unwrap();
    let outcome = RunOutcome {
        status: RunStatus::Failed {
            error: "Failed to write `etc/nginx.conf`".to_owned(),
        },
        files_changed: vec!["etc/nginx.conf".to_owned()],
        services_restarted: vec!["web".to_owned()],
        services_reloaded: vec!["nginx".to_owned()],
        hooks_run: vec!["migrate".to_owned()],
        services_stopped: vec!["redis".to_owned()],
        services_started: vec!["cache".to_owned()],
        dirs_created: vec!["data/cache".to_owned()],
        dirs_changed: vec!["data/app".to_owned()],
    };
    db.finish_run(run, &outcome).unwrap();
    let record = db.history(1).unwrap().remove(0);
    assert_eq!(record.id, run);
    assert_eq!(record.detail, "site.toml changed");
    assert_eq!(record.outcome.as_ref(), Some(&outcome));
    let finished = record.finished_at.unwrap();
    assert!(finished >= record.started_at);
    assert!(record.duration_ms.unwrap() >= 0);

    let again = db.finish_run(run, &RunOutcome::default()).unwrap_err();
    assert!(matches!(again, StateError::RunAlreadyFinished { .. }));
    let unknown = db
        .finish_run(RunId(999), &RunOutcome::default())
        .unwrap_err();
    assert!(matches!(unknown, StateError::UnknownRun { id: 999, .. }));
}

#[test]
fn a_run_never_finished_keeps_its_journal_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.db");
    let crashed = {
        let db = StateDb::open(&path).unwrap();
        let done = db.begin_run("up", "").unwrap();
        db.finish_run(done, &RunOutcome::default()).unwrap();
        let crashed = db.begin_run("restore", "backup-1.tar.zst").unwrap();
        let first = db.begin_step(crashed, "stop services").unwrap();
        db.finish_step(first, &StepStatus::Done).unwrap();
        db.begin_step(crashed, "load database").unwrap();
        // The process dies here: neither the step nor the run is finished.
        crashed
    };
    let db = StateDb::open(&path).unwrap();
    let history = db.history(10).unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].id, crashed);
    assert_eq!(history[0].detail, "backup-1.tar.zst");
    assert_eq!(history[0].outcome, None);
    assert_eq!(history[0].finished_at, None);
    assert!(history[1].outcome.is_some());

    assert_eq!(
        journal(&path, crashed),
        [
            (
                "stop services".to_owned(),
                Some("done".to_owned()),
                None,
                true
            ),
            ("load database".to_owned(), None, None, false),
        ]
    );

    db.finish_run(
        crashed,
        &RunOutcome {
            status: RunStatus::Failed {
                error: "interrupted".to_owned(),
            },
            ..RunOutcome::default()
        },
    )
    .unwrap();
    assert!(db.history(10).unwrap().iter().all(|r| r.outcome.is_some()));
}

#[test]
fn steps_can_be_rolled_back_and_failed() {
    let (_dir, db) = open_temp();
    let run = db.begin_run("reconfigure", "").unwrap();
    let a = db.begin_step(run, "write a").unwrap();
    db.finish_step(a, &StepStatus::Done).unwrap();
    let b = db.begin_step(run, "write b").unwrap();
    db.finish_step(
        b,
        &StepStatus::Failed {
            error: "disk full".to_owned(),
        },
    )
    .unwrap();
    db.finish_step(a, &StepStatus::RolledBack).unwrap();
    assert_eq!(
        journal(db.path(), run),
        [
            (
                "write a".to_owned(),
                Some("rolled_back".to_owned()),
                None,
                true
            ),
            (
                "write b".to_owned(),
                Some("failed".to_owned()),
                Some("disk full".to_owned()),
                true
            ),
        ]
    );

    assert!(matches!(
        db.finish_step(StepId(4242), &StepStatus::Done).unwrap_err(),
        StateError::UnknownStep { id: 4242, .. }
    ));
    assert!(matches!(
        db.begin_step(RunId(4242), "x").unwrap_err(),
        StateError::UnknownRun { id: 4242, .. }
    ));
    let other = db.begin_run("up", "").unwrap();
    assert!(journal(db.path(), other).is_empty());
}

#[test]
fn hooks_run_once_per_scope() {
    let (_dir, db) = open_temp();
    let run = db.begin_run("up", "").unwrap();
    assert!(!db.hook_ran("createsuperuser", INSTANCE_SCOPE).unwrap());
    db.record_hook("createsuperuser", INSTANCE_SCOPE, run)
        .unwrap();
    db.record_hook("createsuperuser", INSTANCE_SCOPE, run)
        .unwrap();
    assert!(db.hook_ran("createsuperuser", INSTANCE_SCOPE).unwrap());

    db.record_hook("migrate", "4.7.0", run).unwrap();
    assert!(db.hook_ran("migrate", "4.7.0").unwrap());
    assert!(!db.hook_ran("migrate", "4.7.3").unwrap());
    assert!(!db.hook_ran("migrate", INSTANCE_SCOPE).unwrap());
}

/// A change hook keeps only its last fingerprint (so going back to an earlier one is
/// a change again), with its inputs; a record made before inputs were kept (two
/// `change <key>` scopes through `record_hook`) still reads, newest first.
#[test]
fn a_change_hook_keeps_its_last_key_and_inputs() {
    let (_dir, db) = open_temp();
    let run = db.begin_run("up", "").unwrap();
    assert_eq!(db.last_change_hook("migrate").unwrap(), None);
    db.record_hook("migrate", "change sha256:aa", run).unwrap();
    db.record_hook("migrate", "change sha256:bb", run).unwrap();
    db.record_hook("migrate", "1.0", run).unwrap();
    let old = db.last_change_hook("migrate").unwrap().unwrap();
    assert_eq!((old.key.as_str(), old.inputs), ("sha256:bb", None));

    db.record_change_hook("migrate", "sha256:aa", "[1]", run)
        .unwrap();
    let last = db.last_change_hook("migrate").unwrap().unwrap();
    assert_eq!(
        (last.key.as_str(), last.inputs.as_deref()),
        ("sha256:aa", Some("[1]"))
    );
    assert!(
        !db.hook_ran("migrate", "change sha256:bb").unwrap(),
        "replaced"
    );
    assert!(db.hook_ran("migrate", "1.0").unwrap(), "other scopes stay");
    assert_eq!(db.last_change_hook("other").unwrap(), None);
}

#[test]
fn records_serialise_for_json_output() {
    let (_dir, db) = open_temp();
    let run = db.begin_run("up", "").unwrap();
    db.finish_run(
        run,
        &RunOutcome {
            status: RunStatus::Succeeded,
            ..RunOutcome::default()
        },
    )
    .unwrap();
    let json = serde_json::to_value(&db.history(1).unwrap()[0]).unwrap();
    assert_eq!(json["kind"], "up");
    assert_eq!(json["outcome"]["status"]["status"], "succeeded");
    assert!(json["started_at"].as_str().unwrap().ends_with('Z'));
}

fn pending(restart: &[&str], start: &[&str]) -> PendingServices {
    PendingServices {
        restart: restart.iter().map(|s| (*s).to_owned()).collect(),
        start: start.iter().map(|s| (*s).to_owned()).collect(),
        ..PendingServices::default()
    }
}

#[test]
fn pending_services_of_a_killed_run_outlive_it_until_cleared() {
    let (_dir, db) = open_temp();
    let path = db.path().to_path_buf();
    let done = db.begin_run("reconfigure", "").unwrap();
    db.record_pending_services(done, &pending(&["web"], &[]))
        .unwrap();
    db.finish_run(done, &RunOutcome::default()).unwrap();
    assert!(
        !db.pending_services(None)
            .unwrap()
            .iter()
            .any(|u| u.run == done)
    );

    let killed = db.begin_run("reconfigure", "").unwrap();
    db.record_pending_services(killed, &pending(&["db"], &[]))
        .unwrap();
    // Recording again replaces: the run's latest intent counts.
    db.record_pending_services(killed, &pending(&["web"], &["worker"]))
        .unwrap();
    drop(db); // the kill

    let db = StateDb::open(&path).unwrap();
    let next = db.begin_run("reconfigure", "").unwrap();
    db.record_pending_services(next, &pending(&["nginx"], &[]))
        .unwrap();
    let found = db.pending_services(Some(next)).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].run, killed);
    assert_eq!(found[0].kind, "reconfigure");
    assert_eq!(found[0].services, pending(&["web"], &["worker"]));
    // Without `except`, the caller's own record shows as well (it is not finished).
    assert_eq!(db.pending_services(None).unwrap().len(), 2);

    db.clear_pending_services(killed).unwrap();
    assert!(db.pending_services(Some(next)).unwrap().is_empty());
    db.finish_run(next, &RunOutcome::default()).unwrap();
    assert!(db.pending_services(None).unwrap().is_empty());
}

#[test]
fn read_only_opening_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/berth.db");
    assert!(StateDb::open_read_only(&path).unwrap().is_none());
    assert!(!dir.path().join("state").exists());

    // A database from before pending services were recorded: read, not migrated.
    std::fs::create_dir(dir.path().join("state")).unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(SCHEMA_V1)
        .unwrap();
    let db = StateDb::open_read_only(&path).unwrap().unwrap();
    assert!(db.pending_services(None).unwrap().is_empty());
    assert_eq!(user_version(&path), 1);
    assert!(db.begin_run("up", "").is_err(), "read-only");
    drop(db);

    let db = StateDb::open(&path).unwrap();
    let run = db.begin_run("up", "").unwrap();
    db.record_pending_services(run, &pending(&[], &["web"]))
        .unwrap();
    // Read while the writer has it open (as after a kill: `-wal` and `-shm` are there).
    let reader = StateDb::open_read_only(&path).unwrap().unwrap();
    assert_eq!(reader.pending_services(None).unwrap()[0].run, run);
    drop((reader, db));

    // Closed cleanly: read as it is, with no `-wal` or `-shm` made beside it.
    let wal = dir.path().join("state/berth.db-wal");
    let shm = dir.path().join("state/berth.db-shm");
    assert!(!wal.exists() && !shm.exists());
    let reader = StateDb::open_read_only(&path).unwrap().unwrap();
    assert_eq!(reader.pending_services(None).unwrap()[0].run, run);
    drop(reader);
    assert!(
        !wal.exists() && !shm.exists(),
        "a read-only open made files"
    );
}

/// After a rollback the hooks of the rolled-back runs are forgotten (they run again),
/// those of earlier runs are kept.
#[test]
fn hooks_since_a_run_are_forgotten() {
    let (_dir, db) = open_temp();
    let first = db.begin_run("up", "").unwrap();
    db.record_hook("initdb", INSTANCE_SCOPE, first).unwrap();
    db.record_hook("migrate", "release 1.0.0", first).unwrap();
    let upgrade = db.begin_run("upgrade", "1.0.0 → 1.1.0").unwrap();
    db.record_hook("migrate", "release 1.1.0", upgrade).unwrap();
    db.record_hook("seed", INSTANCE_SCOPE, upgrade).unwrap();
    let later = db.begin_run("restore", "").unwrap();
    db.record_change_hook("update", "sha256:1", "{}", later)
        .unwrap();
    assert_eq!(db.forget_hooks_since(upgrade).unwrap(), 3);
    assert!(db.hook_ran("initdb", INSTANCE_SCOPE).unwrap());
    assert!(db.hook_ran("migrate", "release 1.0.0").unwrap());
    assert!(!db.hook_ran("migrate", "release 1.1.0").unwrap());
    assert!(!db.hook_ran("seed", INSTANCE_SCOPE).unwrap());
    assert_eq!(db.last_change_hook("update").unwrap(), None);
}
