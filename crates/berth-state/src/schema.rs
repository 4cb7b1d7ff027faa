//! Schema migrations, applied in order; `PRAGMA user_version` counts how many ran.
//!
//! Never edit a migration that has shipped: append a new one.

/// Each entry moves the schema from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: runs, their journal, hook runs, applied state.
    "
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
    ",
    // 2: no applied state and no index of unfinished runs: nothing reads them.
    "
    DROP TABLE IF EXISTS applied;
    DROP INDEX IF EXISTS runs_unfinished;
    ",
    // 3: services a run stopped (they left the plan) and started (new to it).
    "
    ALTER TABLE runs ADD COLUMN services_stopped TEXT;
    ALTER TABLE runs ADD COLUMN services_started TEXT;
    ",
    // 4: what a run means to do to the services, recorded before it writes the files
    // that call for it and removed when it finishes.
    "
    CREATE TABLE pending_services (
        run_id      INTEGER PRIMARY KEY REFERENCES runs (id),
        services    TEXT NOT NULL,
        recorded_at TEXT NOT NULL
    );
    ",
    // 5: what a `when = "change"` hook's fingerprint was made of when it last ran (its
    // key is in the scope, `change <key>`); older records have none.
    "
    ALTER TABLE hooks ADD COLUMN inputs TEXT;
    ",
    // 6: directories a run created, and those whose mode or owner it changed (they were
    // listed among the changed files before).
    "
    ALTER TABLE runs ADD COLUMN dirs_created TEXT;
    ALTER TABLE runs ADD COLUMN dirs_changed TEXT;
    ",
    // 7: who started a run: the user at a terminal, or the console session.
    "
    ALTER TABLE runs ADD COLUMN actor TEXT;
    ",
];
