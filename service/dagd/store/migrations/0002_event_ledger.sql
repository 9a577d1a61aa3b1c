-- The event ledger: deduplicate per DAG (one delivery may start runs of several DAGs),
-- keep a digest of what was delivered (the same idempotency key with another body is
-- refused), and find a timer's last fire time quickly.

DROP INDEX event_dedup;
ALTER TABLE event ADD COLUMN digest TEXT;
CREATE UNIQUE INDEX event_dedup ON event (kind, source, coalesce(dag_id, ''), dedup_key)
    WHERE dedup_key IS NOT NULL;
CREATE INDEX event_source ON event (kind, source, dag_id, dedup_key);
