-- Named SQL for the store. Each query starts with a `-- name: NAME` line and uses
-- :named parameters only. Nothing outside dagd.store runs SQL.

-- name: max_ids
SELECT (SELECT coalesce(max(id), 0) FROM run) AS run,
       (SELECT coalesce(max(id), 0) FROM task_instance) AS ti,
       (SELECT coalesce(max(id), 0) FROM attempt) AS attempt,
       (SELECT coalesce(max(id), 0) FROM event) AS event;

-- name: upsert_dag
INSERT INTO dag (dag_id, fileloc, description, is_active, spec, updated_at)
VALUES (:dag_id, :fileloc, :description, 1, :spec, :at)
ON CONFLICT (dag_id) DO UPDATE SET
    fileloc = excluded.fileloc, description = excluded.description,
    is_active = 1, spec = excluded.spec, updated_at = excluded.updated_at;

-- name: deactivate_dag
UPDATE dag SET is_active = 0, updated_at = :at WHERE dag_id = :dag_id;

-- name: set_paused
UPDATE dag SET is_paused = :paused, updated_at = :at WHERE dag_id = :dag_id;

-- name: clear_import_errors
DELETE FROM import_error;

-- name: insert_import_error
INSERT OR REPLACE INTO import_error (file, line, message, traceback, created_at)
VALUES (:file, :line, :message, :traceback, :at);

-- name: insert_event
INSERT INTO event (id, kind, source, dag_id, payload, dedup_key, digest, outcome, detail,
                   run_id, created_at)
VALUES (:id, :kind, :source, :dag_id, :payload, :dedup_key, :digest, :outcome, :detail,
        :run_id, :at);

-- name: insert_run
INSERT INTO run (id, dag_id, state, run_type, event_id, logical_date, conf, created_at)
VALUES (:id, :dag_id, :state, :run_type, :event_id, :logical_date, :conf, :at);

-- name: transition_run
UPDATE run SET state = :to_state,
    started_at = coalesce(started_at, :started_at),
    ended_at = :ended_at
WHERE id = :id AND state = :from_state;

-- name: insert_ti
INSERT INTO task_instance (id, run_id, task_id, map_index, state, try_number, max_tries,
                           next_attempt_at, queued_at, started_at, ended_at, updated_at)
VALUES (:id, :run_id, :task_id, :map_index, :state, :try_number, :max_tries,
        :next_attempt_at, :queued_at, :started_at, :ended_at, :at);

-- name: transition_ti
UPDATE task_instance SET state = :to_state, try_number = :try_number,
    next_attempt_at = :next_attempt_at,
    queued_at = coalesce(queued_at, :queued_at),
    started_at = coalesce(started_at, :started_at),
    ended_at = :ended_at, updated_at = :at
WHERE id = :id AND state = :from_state;

-- name: insert_history
-- A transition the task instance's row cannot tell alone (see states.writes_history),
-- and every run transition.
INSERT INTO state_history (run_id, ti_id, from_state, to_state, at, reason)
VALUES (:run_id, :ti_id, :from_state, :to_state, :at, :reason);

-- name: insert_attempt
INSERT INTO attempt (id, ti_id, try_number, state, started_at, log_path)
VALUES (:id, :ti_id, :try_number, 'running', :at, :log_path);

-- name: finish_attempt
UPDATE attempt SET state = :state, ended_at = :at, error = :error
WHERE id = :id AND state = 'running';

-- name: set_attempt_pid
UPDATE attempt SET pid = :pid WHERE id = :id;

-- name: put_xcom
INSERT OR REPLACE INTO xcom (ti_id, value) VALUES (:ti_id, :value);

-- A cleared task instance's XCom, gone until it runs again.
-- name: delete_xcom
DELETE FROM xcom WHERE ti_id = :ti_id;

-- A cleared task instance's tries: its own again, counted from its last one.
-- name: set_max_tries
UPDATE task_instance SET max_tries = :max_tries WHERE id = :id;

-- name: list_dags
SELECT d.dag_id, d.fileloc, d.description, d.is_paused, d.is_active, d.spec, d.updated_at,
       (SELECT r.state FROM run r WHERE r.dag_id = d.dag_id ORDER BY r.id DESC LIMIT 1)
           AS last_run_state,
       (SELECT r.id FROM run r WHERE r.dag_id = d.dag_id ORDER BY r.id DESC LIMIT 1)
           AS last_run_id
FROM dag d ORDER BY d.dag_id;

-- name: get_dag
SELECT d.dag_id, d.fileloc, d.description, d.is_paused, d.is_active, d.spec, d.updated_at,
       NULL AS last_run_state, NULL AS last_run_id
FROM dag d WHERE d.dag_id = :dag_id;

-- name: list_import_errors
SELECT file, line, message, traceback, created_at FROM import_error ORDER BY file;

-- name: list_runs
-- Runs of every DAG, newest first, filtered; `before` is the keyset cursor (a run id).
SELECT id, dag_id, state, run_type, event_id, logical_date, conf, created_at, started_at,
       ended_at
FROM run
WHERE id < :before
  AND (:state IS NULL OR state = :state)
  AND created_at >= :since AND created_at < :until
ORDER BY id DESC LIMIT :limit;

-- name: list_dag_runs
-- One DAG's runs, newest first, filtered: walks the run_dag index from the cursor.
SELECT id, dag_id, state, run_type, event_id, logical_date, conf, created_at, started_at,
       ended_at
FROM run
WHERE dag_id = :dag_id AND id < :before
  AND (:state IS NULL OR state = :state)
  AND created_at >= :since AND created_at < :until
ORDER BY id DESC LIMIT :limit;

-- name: get_run
SELECT id, dag_id, state, run_type, event_id, logical_date, conf, created_at, started_at,
       ended_at
FROM run WHERE id = :id;

-- name: active_runs
SELECT id, dag_id, state, run_type, event_id, logical_date, conf, created_at, started_at,
       ended_at
FROM run WHERE state IN ('queued', 'running') ORDER BY id;

-- name: list_tis
SELECT id, run_id, task_id, map_index, state, try_number, max_tries, next_attempt_at,
       queued_at, started_at, ended_at, updated_at
FROM task_instance WHERE run_id = :run_id ORDER BY id;

-- name: active_tis
SELECT t.id, t.run_id, t.task_id, t.map_index, t.state, t.try_number, t.max_tries,
       t.next_attempt_at, t.queued_at, t.started_at, t.ended_at, t.updated_at
FROM task_instance t JOIN run r ON r.id = t.run_id
WHERE r.state = 'running' ORDER BY t.id;

-- name: active_xcoms
SELECT x.ti_id, x.value FROM xcom x
JOIN task_instance t ON t.id = x.ti_id JOIN run r ON r.id = t.run_id
WHERE r.state = 'running';

-- name: get_xcom
SELECT value FROM xcom WHERE ti_id = :ti_id;

-- name: list_attempts
SELECT a.id, a.ti_id, a.try_number, a.state, a.started_at, a.ended_at, a.pid, a.error,
       a.log_path
FROM attempt a WHERE a.ti_id = :ti_id ORDER BY a.try_number;

-- name: running_attempts
SELECT a.id, a.ti_id, a.try_number, a.state, a.started_at, a.ended_at, a.pid, a.error,
       a.log_path
FROM attempt a WHERE a.state = 'running' ORDER BY a.id;

-- name: get_ti
SELECT id, run_id, task_id, map_index, state, try_number, max_tries, next_attempt_at,
       queued_at, started_at, ended_at, updated_at
FROM task_instance WHERE run_id = :run_id AND task_id = :task_id AND map_index = :map_index;

-- name: run_history
SELECT run_id, ti_id, from_state, to_state, at, reason FROM state_history
WHERE run_id = :run_id ORDER BY id;

-- name: history_since
-- Every state change at or after a time, in order (a dropped subscriber catching up).
SELECT run_id, ti_id, from_state, to_state, at, reason FROM state_history
WHERE at >= :since ORDER BY id LIMIT :limit;

-- name: tis_changed_since
-- Task instances changed at or after a time: their rows hold the quiet transitions.
SELECT id, run_id, task_id, map_index, state, try_number, max_tries, next_attempt_at,
       queued_at, started_at, ended_at, updated_at
FROM task_instance WHERE updated_at >= :since ORDER BY id;

-- name: list_events
-- The ledger, newest first, filtered; `before` is the keyset cursor (an event id).
SELECT id, kind, source, dag_id, payload, dedup_key, outcome, detail, run_id, created_at,
       digest
FROM event
WHERE (:dag_id IS NULL OR dag_id = :dag_id) AND id < :before
  AND (:kind IS NULL OR kind = :kind) AND (:outcome IS NULL OR outcome = :outcome)
ORDER BY id DESC LIMIT :limit;

-- name: get_event
SELECT id, kind, source, dag_id, payload, dedup_key, outcome, detail, run_id, created_at,
       digest
FROM event WHERE id = :id;

-- name: find_event
-- The first event of this delivery for this DAG: the one that acted on it.
SELECT id, kind, source, dag_id, payload, dedup_key, outcome, detail, run_id, created_at,
       digest
FROM event
WHERE kind = :kind AND source = :source AND coalesce(dag_id, '') = coalesce(:dag_id, '')
  AND dedup_key = :dedup_key
ORDER BY id LIMIT 1;

-- name: last_dedup_key
-- A timer's last fire time: its dedup keys are UTC ISO timestamps, which sort as text.
SELECT max(dedup_key) FROM event
WHERE kind = :kind AND source = :source AND dag_id = :dag_id;

-- name: insert_notification
INSERT INTO notification (dag_id, run_id, ti_id, notifier, event, payload, next_attempt_at,
                          created_at)
VALUES (:dag_id, :run_id, :ti_id, :notifier, :event, :payload, :at, :at);

-- name: due_notifications
SELECT id, dag_id, run_id, ti_id, notifier, event, payload, state, attempts,
       next_attempt_at, last_error, created_at, sent_at
FROM notification WHERE state = 'pending' AND next_attempt_at <= :now
ORDER BY next_attempt_at LIMIT :limit;

-- name: next_notification_at
SELECT min(next_attempt_at) FROM notification WHERE state = 'pending';

-- name: notification_sent
-- Sent; `note` keeps what the server refused of it (a recipient), else NULL.
UPDATE notification SET state = 'sent', attempts = attempts + 1, sent_at = :at,
    last_error = :note
WHERE id = :id AND state = 'pending';

-- name: notification_failed
UPDATE notification SET state = :state, attempts = attempts + 1, last_error = :error,
    next_attempt_at = :next_attempt_at
WHERE id = :id AND state = 'pending';

-- name: list_notifications
SELECT id, dag_id, run_id, ti_id, notifier, event, payload, state, attempts,
       next_attempt_at, last_error, created_at, sent_at
FROM notification WHERE (:dag_id IS NULL OR dag_id = :dag_id)
  AND (:state IS NULL OR state = :state)
ORDER BY id DESC LIMIT :limit;

-- name: get_notification
-- One row of the outbox, by id.
SELECT id, dag_id, run_id, ti_id, notifier, event, payload, state, attempts,
       next_attempt_at, last_error, created_at, sent_at
FROM notification WHERE id = :id;

-- name: notification_thread
-- The earlier messages to the same notifier about the same task instance (a thread),
-- found through the DAG's index.
SELECT id, created_at FROM notification
WHERE dag_id = :dag_id AND id < :id AND ti_id = :ti_id AND notifier = :notifier
ORDER BY id;

-- name: retry_notification
-- A failed notification owed again, now, with a fresh count of tries.
UPDATE notification SET state = 'pending', attempts = 0, next_attempt_at = :now
WHERE id = :id AND state = 'failed';


-- ---- reads for the web UI's pages --------------------------------------------------------

-- name: ui_runs_page
-- One page of a DAG's runs, newest first, before a run id (keyset pagination).
SELECT id, dag_id, state, run_type, event_id, logical_date, conf, created_at, started_at,
       ended_at
FROM run WHERE dag_id = :dag_id AND (:before IS NULL OR id < :before)
ORDER BY id DESC LIMIT :limit;

-- name: ui_tis_of_runs
-- The task instances of several runs (a JSON array of run ids), for the grid.
SELECT id, run_id, task_id, map_index, state, try_number, max_tries, next_attempt_at,
       queued_at, started_at, ended_at, updated_at
FROM task_instance WHERE run_id IN (SELECT value FROM json_each(:run_ids)) ORDER BY id;

-- name: ui_run_attempts
-- Every attempt of every task instance of a run, for the Gantt.
SELECT a.id, a.ti_id, a.try_number, a.state, a.started_at, a.ended_at, a.pid, a.error,
       a.log_path
FROM attempt a JOIN task_instance t ON t.id = a.ti_id
WHERE t.run_id = :run_id ORDER BY a.ti_id, a.try_number;

-- ---- reads for the live stream and the metrics ------------------------------------------

-- name: attempts_since
-- Attempts started or ended at or after a time (the live stream catching a client up).
SELECT id, ti_id, try_number, state, started_at, ended_at, pid, error, log_path
FROM attempt WHERE started_at >= :since OR ended_at >= :since ORDER BY id;

-- name: events_since
-- Events recorded at or after a time, oldest first.
SELECT id, kind, source, dag_id, payload, dedup_key, outcome, detail, run_id, created_at,
       digest
FROM event WHERE created_at >= :since ORDER BY id;

-- name: runs_by_ids
-- Several runs at once (a JSON array of run ids).
SELECT id, dag_id, state, run_type, event_id, logical_date, conf, created_at, started_at,
       ended_at
FROM run WHERE id IN (SELECT value FROM json_each(:ids));

-- name: get_attempt
-- One attempt, by id.
SELECT id, ti_id, try_number, state, started_at, ended_at, pid, error, log_path
FROM attempt WHERE id = :id;

-- name: runs_by_state
-- How many runs each DAG has in each state (the metrics).
SELECT dag_id, state, count(*) AS n FROM run GROUP BY dag_id, state;

-- name: tis_by_state
-- How many task instances each DAG has in each state (the metrics): counted by run
-- first, along the (run_id, ...) index, then by DAG (a third of the time of a join).
SELECT r.dag_id, t.state, sum(t.n) AS n
FROM (SELECT run_id, state, count(*) AS n FROM task_instance GROUP BY run_id, state) t
JOIN run r ON r.id = t.run_id GROUP BY r.dag_id, t.state;

-- name: pending_notifications
-- The outbox's depth: notifications not yet sent nor given up.
SELECT count(*) AS n FROM notification WHERE state = 'pending';

-- name: import_error_count
-- DAG files that did not import.
SELECT count(*) AS n FROM import_error;
