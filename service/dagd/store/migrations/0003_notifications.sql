-- The outbox: notifications owed to someone (a chat channel, an email), written in the
-- same transaction as the state change they report, and kept until they are sent.

CREATE TABLE notification (
    id              INTEGER PRIMARY KEY,
    dag_id          TEXT NOT NULL,
    run_id          INTEGER,
    ti_id           INTEGER,
    notifier        TEXT NOT NULL,
    event           TEXT NOT NULL,
    payload         TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error      TEXT,
    created_at      REAL NOT NULL,
    sent_at         REAL
);
CREATE INDEX notification_due ON notification (next_attempt_at) WHERE state = 'pending';
CREATE INDEX notification_dag ON notification (dag_id, id);
