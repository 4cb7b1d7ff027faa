//! The state database against real SQLite files in temporary directories.

use std::os::unix::fs::PermissionsExt;

use berth_state::{
    INSTANCE_SCOPE, RunId, RunOutcome, RunStatus, SCHEMA_VERSION, StateDb, StateError, StepId,
    StepStatus,
};

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
        assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
        let run = db.begin_run("up", "first install").unwrap();
        db.finish_run(run, &RunOutcome::default()).unwrap();
        db.set_applied("fingerprints", &serde_json::json!({"web": "abc"}))
            .unwrap();
        run
    };
    for _ in 0..2 {
        let db = StateDb::open(&path).unwrap();
        assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
        let history = db.history(10).unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].id, run);
        assert_eq!(
            db.applied("fingerprints").unwrap(),
            Some(serde_json::json!({"web": "abc"}))
        );
    }
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
    };
    db.finish_run(run, &outcome).unwrap();
    let record = db.run(run).unwrap().unwrap();
    assert_eq!(record.detail, "site.toml changed");
    assert_eq!(record.outcome.as_ref(), Some(&outcome));
    let finished = record.finished_at.unwrap();
    assert!(finished >= record.started_at);
    assert!(record.duration_ms.unwrap() >= 0);
    assert!(!record.is_unfinished());

    let again = db.finish_run(run, &RunOutcome::default()).unwrap_err();
    assert!(matches!(again, StateError::RunAlreadyFinished { .. }));
    let unknown = db
        .finish_run(RunId(999), &RunOutcome::default())
        .unwrap_err();
    assert!(matches!(unknown, StateError::UnknownRun { id: 999, .. }));
    assert!(db.run(RunId(999)).unwrap().is_none());
}

#[test]
fn a_run_never_finished_is_found_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.db");
    let (crashed, step) = {
        let db = StateDb::open(&path).unwrap();
        let done = db.begin_run("up", "").unwrap();
        db.finish_run(done, &RunOutcome::default()).unwrap();
        let crashed = db.begin_run("upgrade", "4.7.0 -> 4.7.3").unwrap();
        let first = db.begin_step(crashed, "backup").unwrap();
        db.finish_step(first, &StepStatus::Done).unwrap();
        let step = db.begin_step(crashed, "switch release").unwrap();
        // The process dies here: neither the step nor the run is finished.
        (crashed, step)
    };
    let db = StateDb::open(&path).unwrap();
    let unfinished = db.unfinished_runs().unwrap();
    assert_eq!(unfinished.len(), 1);
    assert_eq!(unfinished[0].id, crashed);
    assert_eq!(unfinished[0].detail, "4.7.0 -> 4.7.3");
    assert!(unfinished[0].is_unfinished());

    let steps = db.steps(crashed).unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["backup", "switch release"]);
    assert_eq!(steps[0].status, Some(StepStatus::Done));
    assert_eq!(steps[1].id, step);
    assert_eq!(steps[1].status, None);
    assert_eq!(steps[1].finished_at, None);

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
    assert!(db.unfinished_runs().unwrap().is_empty());
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
    let steps = db.steps(run).unwrap();
    assert_eq!(steps[0].status, Some(StepStatus::RolledBack));
    assert_eq!(
        steps[1].status,
        Some(StepStatus::Failed {
            error: "disk full".to_owned()
        })
    );
    assert!(steps.iter().all(|s| s.run == run));

    assert!(matches!(
        db.finish_step(StepId(4242), &StepStatus::Done).unwrap_err(),
        StateError::UnknownStep { id: 4242, .. }
    ));
    assert!(matches!(
        db.begin_step(RunId(4242), "x").unwrap_err(),
        StateError::UnknownRun { id: 4242, .. }
    ));
    let other = db.begin_run("up", "").unwrap();
    assert!(db.steps(other).unwrap().is_empty());
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

#[test]
fn applied_state_round_trips_and_replaces() {
    let (_dir, db) = open_temp();
    assert_eq!(db.applied("services").unwrap(), None);
    db.set_applied("services", &serde_json::json!({"web": "1", "worker": "2"}))
        .unwrap();
    db.set_applied("services", &serde_json::json!({"web": "3"}))
        .unwrap();
    assert_eq!(
        db.applied("services").unwrap(),
        Some(serde_json::json!({"web": "3"}))
    );
    db.clear_applied("services").unwrap();
    db.clear_applied("services").unwrap();
    assert_eq!(db.applied("services").unwrap(), None);
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
