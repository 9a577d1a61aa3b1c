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

-- name: transition_tis
-- `transition_ti` for task instances that all make the same change at once (a tick's
-- starts, its ends): their ids as a JSON array.
UPDATE task_instance SET state = :to_state, try_number = :try_number,
    next_attempt_at = :next_attempt_at,
    queued_at = coalesce(queued_at, :queued_at),
    started_at = coalesce(started_at, :started_at),
    ended_at = :ended_at, updated_at = :at
WHERE id IN (SELECT value FROM json_each(:ids)) AND state = :from_state;

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

-- name: finish_attempts
-- `finish_attempt` for attempts that all end alike at once: their ids as a JSON array.
UPDATE attempt SET state = :state, ended_at = :at, error = :error
WHERE id IN (SELECT value FROM json_each(:ids)) AND state = 'running';

-- name: set_attempt_pid
UPDATE attempt SET pid = :pid WHERE id = :id;

-- name: set_attempt_worker
-- The Dask worker an attempt runs on (executor="dask"), told by the worker as it starts.
UPDATE attempt SET worker = :worker WHERE id = :id;

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
       a.log_path, a.worker
FROM attempt a WHERE a.ti_id = :ti_id ORDER BY a.try_number;

-- name: running_attempts
SELECT a.id, a.ti_id, a.try_number, a.state, a.started_at, a.ended_at, a.pid, a.error,
       a.log_path, a.worker
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
       digest, count, last_at
FROM event
WHERE (:dag_id IS NULL OR dag_id = :dag_id) AND id < :before
  AND (:kind IS NULL OR kind = :kind) AND (:outcome IS NULL OR outcome = :outcome)
ORDER BY id DESC LIMIT :limit;

-- name: get_event
SELECT id, kind, source, dag_id, payload, dedup_key, outcome, detail, run_id, created_at,
       digest, count, last_at
FROM event WHERE id = :id;

-- name: find_event
-- The first event of this delivery for this DAG: the one that acted on it.
SELECT id, kind, source, dag_id, payload, dedup_key, outcome, detail, run_id, created_at,
       digest, count, last_at
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
       a.log_path, a.worker
FROM attempt a JOIN task_instance t ON t.id = a.ti_id
WHERE t.run_id = :run_id ORDER BY a.ti_id, a.try_number;

-- ---- reads for the live stream and the metrics ------------------------------------------

-- name: attempts_since
-- Attempts started or ended at or after a time (the live stream catching a client up).
SELECT id, ti_id, try_number, state, started_at, ended_at, pid, error, log_path, worker
FROM attempt WHERE started_at >= :since OR ended_at >= :since ORDER BY id;

-- name: events_since
-- Events recorded at or after a time, oldest first.
SELECT id, kind, source, dag_id, payload, dedup_key, outcome, detail, run_id, created_at,
       digest, count, last_at
FROM event WHERE created_at >= :since ORDER BY id;

-- name: runs_by_ids
-- Several runs at once (a JSON array of run ids).
SELECT id, dag_id, state, run_type, event_id, logical_date, conf, created_at, started_at,
       ended_at
FROM run WHERE id IN (SELECT value FROM json_each(:ids));

-- name: get_attempt
-- One attempt, by id.
SELECT id, ti_id, try_number, state, started_at, ended_at, pid, error, log_path, worker
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

-- ---- the refused deliveries, counted per minute ----------------------------------------

-- name: count_refusal
-- One more refusal on its minute's row with the same detail (found by event_refusal).
UPDATE event SET count = count + 1, last_at = :at, payload = :payload
WHERE minute = :minute AND kind = :kind AND source = :source
  AND coalesce(dag_id, '') = coalesce(:dag_id, '') AND outcome = :outcome
  AND coalesce(run_id, 0) = coalesce(:run_id, 0) AND detail = :detail
RETURNING id;

-- name: refusal_details
-- How many rows (details) a minute's refusals of one source, DAG, outcome and run have.
SELECT count(*) FROM event
WHERE minute = :minute AND kind = :kind AND source = :source
  AND coalesce(dag_id, '') = coalesce(:dag_id, '') AND outcome = :outcome
  AND coalesce(run_id, 0) = coalesce(:run_id, 0);

-- name: insert_refusal
-- The first refusal of its minute with this detail.
INSERT INTO event (id, kind, source, dag_id, payload, outcome, detail, run_id, created_at,
                   last_at, minute)
VALUES (:id, :kind, :source, :dag_id, :payload, :outcome, :detail, :run_id, :at, :at,
        :minute);

-- ---- retention: what is pruned, and pruning it -----------------------------------------
-- A candidate run comes with `rows`: itself and every row that goes with it.
-- A run holding the newest run, task instance or attempt id is never a candidate: the
-- ids carry on from the largest in each table, so they are never handed out twice.

-- name: retention_old_runs
-- Finished runs that ended before the cutoff, oldest first, after a run id; none that
-- still owes a notification.
SELECT r.id, r.dag_id, r.state, coalesce(r.ended_at, r.created_at) AS ended_at,
       1 + (SELECT count(*) FROM task_instance t WHERE t.run_id = r.id)
         + (SELECT count(*) FROM attempt a JOIN task_instance t ON t.id = a.ti_id
            WHERE t.run_id = r.id)
         + (SELECT count(*) FROM xcom x JOIN task_instance t ON t.id = x.ti_id
            WHERE t.run_id = r.id)
         + (SELECT count(*) FROM state_history h WHERE h.run_id = r.id) AS rows
FROM run r
WHERE r.id > :after AND coalesce(r.ended_at, r.created_at) < :cutoff
  AND r.state IN (SELECT value FROM json_each(:terminal))
  AND NOT EXISTS (SELECT 1 FROM notification n WHERE n.run_id = r.id AND n.state = 'pending')
  AND r.id NOT IN (
      SELECT max(id) FROM run
      UNION ALL SELECT run_id FROM task_instance
          WHERE id = (SELECT max(id) FROM task_instance)
      UNION ALL SELECT t.run_id FROM attempt a JOIN task_instance t ON t.id = a.ti_id
          WHERE a.id = (SELECT max(id) FROM attempt))
ORDER BY r.id LIMIT :limit;

-- name: retention_crowded_dags
-- DAGs with more runs than are kept of each.
SELECT dag_id FROM run GROUP BY dag_id HAVING count(*) > :keep ORDER BY dag_id;

-- name: retention_extra_runs
-- A DAG's finished runs older than its newest `keep` runs, oldest first, after a run id;
-- none that still owes a notification.
SELECT r.id, r.dag_id, r.state, coalesce(r.ended_at, r.created_at) AS ended_at,
       1 + (SELECT count(*) FROM task_instance t WHERE t.run_id = r.id)
         + (SELECT count(*) FROM attempt a JOIN task_instance t ON t.id = a.ti_id
            WHERE t.run_id = r.id)
         + (SELECT count(*) FROM xcom x JOIN task_instance t ON t.id = x.ti_id
            WHERE t.run_id = r.id)
         + (SELECT count(*) FROM state_history h WHERE h.run_id = r.id) AS rows
FROM run r
WHERE r.dag_id = :dag_id AND r.id > :after
  AND r.id <= coalesce((SELECT id FROM run WHERE dag_id = :dag_id
                        ORDER BY id DESC LIMIT 1 OFFSET :keep), -1)
  AND r.state IN (SELECT value FROM json_each(:terminal))
  AND NOT EXISTS (SELECT 1 FROM notification n WHERE n.run_id = r.id AND n.state = 'pending')
  AND r.id NOT IN (
      SELECT max(id) FROM run
      UNION ALL SELECT run_id FROM task_instance
          WHERE id = (SELECT max(id) FROM task_instance)
      UNION ALL SELECT t.run_id FROM attempt a JOIN task_instance t ON t.id = a.ti_id
          WHERE a.id = (SELECT max(id) FROM attempt))
ORDER BY r.id LIMIT :limit;

-- name: retention_still_prunable
-- Of the runs chosen (a JSON array of ids), those still finished and owing nothing, read
-- again inside the pruning transaction.
SELECT r.id, r.dag_id FROM run r
WHERE r.id IN (SELECT value FROM json_each(:ids))
  AND r.state IN (SELECT value FROM json_each(:terminal))
  AND NOT EXISTS (SELECT 1 FROM notification n WHERE n.run_id = r.id AND n.state = 'pending');

-- name: retention_newest_change
-- The newest time any row of these runs records (a live stream's catch-up from before it
-- cannot be rebuilt once they are gone).
SELECT max(coalesce((SELECT max(ended_at) FROM run WHERE id IN (SELECT value FROM json_each(:ids))), 0),
           coalesce((SELECT max(t.updated_at) FROM task_instance t
                     WHERE t.run_id IN (SELECT value FROM json_each(:ids))), 0),
           coalesce((SELECT max(coalesce(a.ended_at, a.started_at)) FROM attempt a
                     JOIN task_instance t ON t.id = a.ti_id
                     WHERE t.run_id IN (SELECT value FROM json_each(:ids))), 0),
           coalesce((SELECT max(h.at) FROM state_history h
                     WHERE h.run_id IN (SELECT value FROM json_each(:ids))), 0));

-- name: retention_log_paths
-- The log files of these runs' attempts (deleted once their rows are).
SELECT a.log_path FROM attempt a JOIN task_instance t ON t.id = a.ti_id
WHERE t.run_id IN (SELECT value FROM json_each(:ids));

-- name: retention_delete_xcoms
-- These runs' XComs.
DELETE FROM xcom WHERE ti_id IN (
    SELECT id FROM task_instance WHERE run_id IN (SELECT value FROM json_each(:ids)));

-- name: retention_delete_attempts
-- These runs' attempts.
DELETE FROM attempt WHERE ti_id IN (
    SELECT id FROM task_instance WHERE run_id IN (SELECT value FROM json_each(:ids)));

-- name: retention_delete_history
-- These runs' state history.
DELETE FROM state_history WHERE run_id IN (SELECT value FROM json_each(:ids));

-- name: retention_delete_run_notifications
-- These runs' notifications, sent or given up (a run that owes one is not pruned).
DELETE FROM notification
WHERE run_id IN (SELECT value FROM json_each(:ids)) AND state != 'pending';

-- name: retention_delete_tis
-- These runs' task instances.
DELETE FROM task_instance WHERE run_id IN (SELECT value FROM json_each(:ids));

-- name: retention_delete_runs
-- The runs themselves, last (their children refer to them).
DELETE FROM run WHERE id IN (SELECT value FROM json_each(:ids));

-- name: retention_old_events
-- Ledger rows older than the cutoff (by their last time), after an event id, that no run
-- kept refers to, whose run is gone, and whose dedup key nothing may ask about again:
-- none, or one of a kind in :forgettable that is not its trigger's newest (a timer
-- resumes from that). The newest event is kept (ids carry on from it).
SELECT e.id, coalesce(e.last_at, e.created_at) AS at FROM event e
WHERE e.id > :after AND coalesce(e.last_at, e.created_at) < :cutoff
  AND e.id < (SELECT max(id) FROM event)
  AND NOT EXISTS (SELECT 1 FROM run r WHERE r.event_id = e.id)
  AND (e.run_id IS NULL OR NOT EXISTS (SELECT 1 FROM run r WHERE r.id = e.run_id))
  AND (e.dedup_key IS NULL
       OR (e.kind IN (SELECT value FROM json_each(:forgettable))
           AND e.dedup_key < (SELECT max(l.dedup_key) FROM event l
                              WHERE l.kind = e.kind AND l.source = e.source
                                AND l.dag_id = e.dag_id)))
ORDER BY e.id LIMIT :limit;

-- name: retention_delete_events
-- Of the events chosen (a JSON array of ids), those no run refers to (read again in the
-- pruning transaction).
DELETE FROM event
WHERE id IN (SELECT value FROM json_each(:ids))
  AND NOT EXISTS (SELECT 1 FROM run r WHERE r.event_id = event.id)
  AND (run_id IS NULL OR NOT EXISTS (SELECT 1 FROM run r WHERE r.id = event.run_id));

-- name: retention_old_notifications
-- Sent notifications older than the cutoff, after a notification id.
SELECT id FROM notification
WHERE id > :after AND state = 'sent' AND sent_at < :cutoff ORDER BY id LIMIT :limit;

-- name: retention_delete_notifications
-- Of the notifications chosen (a JSON array of ids), those sent.
DELETE FROM notification WHERE id IN (SELECT value FROM json_each(:ids)) AND state = 'sent';
