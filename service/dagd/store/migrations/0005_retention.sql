-- Retention and the counted refusals. A refused delivery (a bad signature, a bad body,
-- an unknown webhook, a duplicate) is counted on one row per minute, source, DAG,
-- outcome, run and detail (a few details apart a minute, the rest on one row): `count`,
-- and the last one's time. `minute` is NULL on every other event. Pruning finds a run's
-- event and a run's notifications through the new indexes.

ALTER TABLE event ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
ALTER TABLE event ADD COLUMN last_at REAL;
ALTER TABLE event ADD COLUMN minute INTEGER;
CREATE UNIQUE INDEX event_refusal ON event (minute, kind, source, coalesce(dag_id, ''),
    outcome, coalesce(run_id, 0), detail) WHERE minute IS NOT NULL;
CREATE INDEX run_event ON run (event_id);
CREATE INDEX notification_run ON notification (run_id);
