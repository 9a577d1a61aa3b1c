-- When a task instance was first queued. With started_at and ended_at, the row tells
-- the whole happy path of a first try, which then writes no state_history rows (the
-- history keeps retries, failures, skips, reasons and later tries).

ALTER TABLE task_instance ADD COLUMN queued_at REAL;
