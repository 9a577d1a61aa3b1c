-- The first schema: DAGs, import errors, events, runs, task instances, attempts,
-- XCom and the state history. Times are Unix seconds (REAL); JSON is stored as text.

CREATE TABLE dag (
    dag_id      TEXT PRIMARY KEY,
    fileloc     TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    is_paused   INTEGER NOT NULL DEFAULT 0,
    is_active   INTEGER NOT NULL DEFAULT 1,
    spec        TEXT NOT NULL,
    updated_at  REAL NOT NULL
);

CREATE TABLE import_error (
    file       TEXT PRIMARY KEY,
    line       INTEGER,
    message    TEXT NOT NULL,
    traceback  TEXT NOT NULL,
    created_at REAL NOT NULL
);

CREATE TABLE event (
    id         INTEGER PRIMARY KEY,
    kind       TEXT NOT NULL,
    source     TEXT NOT NULL,
    dag_id     TEXT,
    payload    TEXT NOT NULL DEFAULT '{}',
    dedup_key  TEXT,
    outcome    TEXT NOT NULL,
    detail     TEXT,
    run_id     INTEGER,
    created_at REAL NOT NULL
);
CREATE UNIQUE INDEX event_dedup ON event (kind, source, dedup_key) WHERE dedup_key IS NOT NULL;
CREATE INDEX event_dag ON event (dag_id, id);

CREATE TABLE run (
    id           INTEGER PRIMARY KEY,
    dag_id       TEXT NOT NULL,
    state        TEXT NOT NULL,
    run_type     TEXT NOT NULL,
    event_id     INTEGER REFERENCES event (id),
    logical_date TEXT,
    conf         TEXT NOT NULL DEFAULT '{}',
    created_at   REAL NOT NULL,
    started_at   REAL,
    ended_at     REAL
);
CREATE INDEX run_dag ON run (dag_id, id);
CREATE INDEX run_active ON run (state) WHERE state IN ('queued', 'running');

CREATE TABLE task_instance (
    id              INTEGER PRIMARY KEY,
    run_id          INTEGER NOT NULL REFERENCES run (id),
    task_id         TEXT NOT NULL,
    map_index       INTEGER NOT NULL DEFAULT -1,
    state           TEXT NOT NULL,
    try_number      INTEGER NOT NULL DEFAULT 0,
    max_tries       INTEGER NOT NULL,
    next_attempt_at REAL,
    started_at      REAL,
    ended_at        REAL,
    updated_at      REAL NOT NULL,
    UNIQUE (run_id, task_id, map_index)
);

CREATE TABLE attempt (
    id         INTEGER PRIMARY KEY,
    ti_id      INTEGER NOT NULL REFERENCES task_instance (id),
    try_number INTEGER NOT NULL,
    state      TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at   REAL,
    pid        INTEGER,
    error      TEXT,
    log_path   TEXT NOT NULL,
    UNIQUE (ti_id, try_number)
);
CREATE INDEX attempt_running ON attempt (state) WHERE state = 'running';

CREATE TABLE xcom (
    ti_id INTEGER PRIMARY KEY REFERENCES task_instance (id),
    value TEXT NOT NULL
);

CREATE TABLE state_history (
    id         INTEGER PRIMARY KEY,
    run_id     INTEGER NOT NULL,
    ti_id      INTEGER,
    from_state TEXT,
    to_state   TEXT NOT NULL,
    at         REAL NOT NULL,
    reason     TEXT
);
CREATE INDEX state_history_run ON state_history (run_id, ti_id);
