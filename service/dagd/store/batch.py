"""Batch: the writes of one scheduler tick (or one request), committed as one transaction.

Domain verbs (`create_run`, `transition_run`, `transition_ti`, `start_attempt`,
`finish_attempt`, `put_xcom`, `record_event`) check the transitions table and queue
rows; `Store.commit` writes them all with `BEGIN IMMEDIATE` and compare-and-set updates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson

from dagd.changes import ATTEMPT, EVENT, RUN, TI, Change
from dagd.states import (
    ALLOWED_TASK,
    QUIET_TASK_TRANSITIONS,
    RUN_TERMINAL,
    TASK_TRY_ENDED,
    RunState,
    TaskState,
    check_run,
    check_task,
    check_user_run,
    check_user_task,
)

# The order in which the queued rows are written: parents before children.
ORDER = (
    "insert_event",
    "insert_run",
    "transition_run",
    "insert_ti",
    "transition_ti",
    "set_max_tries",
    "insert_attempt",
    "set_attempt_pid",
    "set_attempt_worker",
    "finish_attempt",
    "delete_xcom",
    "put_xcom",
    "insert_history",
    "insert_notification",
)
# The members the hot path compares by identity, looked up once (an enum's class
# attribute costs a lookup through its metaclass each time).
_SCHEDULED, _QUEUED, _RUNNING = TaskState.SCHEDULED, TaskState.QUEUED, TaskState.RUNNING
# Compare-and-set statements: every row must match exactly one row in the table.
CAS = frozenset({"transition_run", "transition_ti", "finish_attempt"})


class IdCounter:
    """Ids handed out in memory: the store is the only writer, so max(id)+1 is safe."""

    def __init__(self, start: dict[str, int]) -> None:
        self.last = dict(start)

    def next(self, kind: str) -> int:
        self.last[kind] += 1
        return self.last[kind]


@dataclass
class Batch:
    ids: IdCounter
    now: float = field(default_factory=time.time)
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {k: [] for k in ORDER})
    # task instance id -> (its pending insert or update row, the key holding its state)
    _ti_rows: dict[int, tuple[dict[str, Any], str]] = field(default_factory=dict)
    # Every run and task-instance transition, in order, for `changes()`:
    # (run_id, ti_id or None for the run, to_state, reason, dag_id, detail, try_number).
    # A task instance's quiet transitions (see `states.writes_history`) have no history
    # row.
    transitions: list[tuple[int, int | None, str, str | None, str | None,
                            Mapping[str, Any] | None, int]] = field(default_factory=list)

    # Set only while a person's action (clear, mark) is written: see `user_ti_change`.
    _by_user: bool = field(default=False, init=False, repr=False)

    def __bool__(self) -> bool:
        return any(self.rows.values())

    def _history(
        self, run_id: int, ti_id: int | None, frm: str | None, to: str, reason: str | None
    ) -> None:
        self.rows["insert_history"].append(
            {
                "run_id": run_id,
                "ti_id": ti_id,
                "from_state": frm,
                "to_state": to,
                "at": self.now,
                "reason": reason,
            }
        )

    def _run_history(self, run_id: int, frm: str | None, to: str, reason: str | None,
                      dag_id: str | None, detail: Mapping[str, Any] | None) -> None:
        # dag_id and detail are not columns: they ride along for `changes()`.
        self._history(run_id, None, frm, to, reason)
        self.transitions.append((run_id, None, to, reason, dag_id, detail, 0))

    def record_event(
        self,
        *,
        kind: str,
        source: str,
        dag_id: str | None,
        payload: Any,
        outcome: str,
        dedup_key: str | None = None,
        digest: str | None = None,
        detail: str | None = None,
        run_id: int | None = None,
    ) -> int:
        event_id = self.ids.next("event")
        self.rows["insert_event"].append(
            {
                "id": event_id,
                "kind": kind,
                "source": source,
                "dag_id": dag_id,
                "payload": orjson.dumps(payload).decode(),
                "dedup_key": dedup_key,
                "digest": digest,
                "outcome": outcome,
                "detail": detail,
                "run_id": run_id,
                "at": self.now,
            }
        )
        return event_id

    def create_run(
        self,
        *,
        dag_id: str,
        run_type: str,
        conf: dict[str, Any],
        event_id: int | None = None,
        logical_date: str | None = None,
    ) -> int:
        run_id = self.ids.next("run")
        self.rows["insert_run"].append(
            {
                "id": run_id,
                "dag_id": dag_id,
                "state": RunState.QUEUED.value,
                "run_type": run_type,
                "event_id": event_id,
                "logical_date": logical_date,
                "conf": orjson.dumps(conf).decode(),
                "at": self.now,
            }
        )
        if event_id is not None:
            for event in reversed(self.rows["insert_event"]):
                if event["id"] == event_id:
                    event["run_id"] = run_id
                    break
        self._run_history(run_id, None, "queued", f"{run_type} run created", dag_id, None)
        return run_id

    def transition_run(
        self, run_id: int, frm: RunState, to: RunState, reason: str | None = None, *,
        dag_id: str | None = None, run_type: str | None = None,
        conf: Mapping[str, Any] | None = None, by_user: bool = False,
    ) -> None:
        """A run's state change. dag_id, and for a final state the run's type and conf,
        go to the changes published after the commit (the file mover needs them).
        `by_user`: a person's action, checked against `states.USER_RUN` as well."""
        (check_user_run if by_user else check_run)(frm, to)
        self.rows["transition_run"].append(
            {
                "id": run_id,
                "from_state": frm.value,
                "to_state": to.value,
                "started_at": self.now if to == RunState.RUNNING else None,
                "ended_at": self.now if to in RUN_TERMINAL else None,
            }
        )
        detail = ({"run_type": run_type, "conf": conf}
                  if to in RUN_TERMINAL and run_type is not None else None)
        self._run_history(run_id, frm.value, to.value, reason, dag_id, detail)

    def create_ti(self, *, run_id: int, task_id: str, max_tries: int, map_index: int = -1) -> int:
        ti_id = self.ids.next("ti")
        row = {
            "id": ti_id,
            "run_id": run_id,
            "task_id": task_id,
            "map_index": map_index,
            "state": "scheduled",
            "try_number": 0,
            "max_tries": max_tries,
            "next_attempt_at": None,
            "queued_at": None,
            "started_at": None,
            "ended_at": None,
            "at": self.now,
        }
        self.rows["insert_ti"].append(row)
        self._ti_rows[ti_id] = (row, "state")
        # No history row: the task instance's own row records its creation.
        return ti_id

    def transition_ti(
        self,
        *,
        run_id: int,
        ti_id: int,
        frm: TaskState,
        to: TaskState,
        try_number: int,
        next_attempt_at: float | None = None,
        reason: str | None = None,
    ) -> None:
        """A task instance's state change. The row keeps the time it was first queued,
        first started and last ended; `writes_history` says which changes also get a
        history row (the happy path of a first try is told by those times alone)."""
        self.ti_change(run_id, ti_id, frm, to, try_number, next_attempt_at, reason)

    def ti_change(self, run_id: int, ti_id: int, frm: TaskState, to: TaskState,
                  try_number: int, next_attempt_at: float | None, reason: str | None) -> None:
        """`transition_ti` with its arguments in order: the scheduler's hot path."""
        pair = (frm, to)
        if pair not in ALLOWED_TASK:
            (check_user_task if self._by_user else check_task)(frm, to)  # raises if not
        now = self.now
        value = to._value_
        pending = self._ti_rows.get(ti_id)
        if pending is not None:
            # Already written in this batch: fold this change into that row.
            row, state_key = pending
            row[state_key] = value
            row["try_number"] = try_number
            row["next_attempt_at"] = next_attempt_at
            if to is _QUEUED:
                row["queued_at"] = row["queued_at"] or now
            elif to is _RUNNING:
                row["started_at"] = row["started_at"] or now
            row["ended_at"] = now if to in TASK_TRY_ENDED else None
        else:
            row = {
                "id": ti_id,
                "from_state": frm._value_,
                "to_state": value,
                "try_number": try_number,
                "next_attempt_at": next_attempt_at,
                "queued_at": now if to is _QUEUED else None,
                "started_at": now if to is _RUNNING else None,
                "ended_at": now if to in TASK_TRY_ENDED else None,
                "at": now,
            }
            self.rows["transition_ti"].append(row)
            self._ti_rows[ti_id] = (row, "to_state")
        # (A cleared instance queued again has tried before: its row's first queued
        # time is not this one, so a history row tells it.)
        if (reason is not None or try_number > 1 or pair not in QUIET_TASK_TRANSITIONS
                or (try_number and frm is _SCHEDULED)):
            self._history(run_id, ti_id, frm._value_, value, reason)
        self.transitions.append((run_id, ti_id, value, reason, None, None, try_number))

    @contextmanager
    def by_user(self) -> Iterator[None]:
        """Within: task-instance changes are a person's (`states.USER_TASK` allows them
        too), for the scheduler's own verbs to do a person's bidding."""
        self._by_user = True
        try:
            yield
        finally:
            self._by_user = False

    def user_ti_change(self, run_id: int, ti_id: int, frm: TaskState, to: TaskState, *,
                       try_number: int, reason: str, max_tries: int | None = None,
                       names: tuple[str, str, int] | None = None) -> None:
        """A person's action on a task instance (clear, mark), checked against
        `states.USER_TASK`; a cleared one may get more tries (`max_tries`), and loses
        its XCom. `names`: its (dag_id, task_id, map_index), for the changes port (the
        scheduler cannot name an instance of a run that has ended)."""
        check_user_task(frm, to)
        with self.by_user():
            self.ti_change(run_id, ti_id, frm, to, try_number, None, reason)
        if names is not None:
            dag_id, task_id, map_index = names
            self.transitions[-1] = (run_id, ti_id, to._value_, reason, dag_id,
                                    {"task_id": task_id, "map_index": map_index}, try_number)
        if max_tries is not None:
            self.rows["set_max_tries"].append({"id": ti_id, "max_tries": max_tries})
        if to is TaskState.SCHEDULED:
            self.rows["delete_xcom"].append({"ti_id": ti_id})

    def start_attempt(self, *, ti_id: int, try_number: int, log_path: str) -> int:
        attempt_id = self.ids.next("attempt")
        self.rows["insert_attempt"].append(
            {
                "id": attempt_id,
                "ti_id": ti_id,
                "try_number": try_number,
                "log_path": log_path,
                "at": self.now,
            }
        )
        return attempt_id

    def finish_attempt(self, attempt_id: int, *, success: bool, error: str | None,
                       ti_id: int | None = None, run_id: int | None = None,
                       try_number: int | None = None) -> None:
        """An attempt's end. ti_id, run_id and try_number are not written (the row has
        them): they ride along for `changes()`."""
        self.rows["finish_attempt"].append(
            {
                "id": attempt_id,
                "state": "success" if success else "failed",
                "at": self.now,
                "error": error,
                "ti_id": ti_id,
                "run_id": run_id,
                "try_number": try_number,
            }
        )

    def set_attempt_pid(self, attempt_id: int, pid: int) -> None:
        self.rows["set_attempt_pid"].append({"id": attempt_id, "pid": pid})

    def set_attempt_worker(self, attempt_id: int, worker: str) -> None:
        """Where the attempt runs off this machine (a Dask worker's address)."""
        self.rows["set_attempt_worker"].append({"id": attempt_id, "worker": worker})

    def queue_notification(
        self, *, dag_id: str, run_id: int | None, ti_id: int | None, notifier: str,
        event: str, payload: dict[str, Any],
    ) -> None:
        """A message owed to someone, sent by the outbox once this batch is committed."""
        self.rows["insert_notification"].append(
            {"dag_id": dag_id, "run_id": run_id, "ti_id": ti_id, "notifier": notifier,
             "event": event, "payload": orjson.dumps(payload).decode(), "at": self.now}
        )

    def put_xcom(self, ti_id: int, value_json: str) -> None:
        self.rows["put_xcom"].append({"ti_id": ti_id, "value": value_json})

    def changes(
        self, kinds: Container[str], *,
        name_ti: Callable[[int, int], tuple[str | None, str | None, int]] | None = None,
    ) -> list[Change]:
        """What this batch changed, once committed, for the changes port: only `kinds`.

        `name_ti(run_id, ti_id)` gives a task instance's (dag_id, task_id, map_index):
        its transitions do not carry them, to keep the scheduler's hot path lean. A task
        instance's detail has task_id, map_index, try_number and (for a transition)
        reason, an attempt's ti_id, task_id, map_index and try_number.
        """
        rows = self.rows
        out: list[Change] = []
        name = name_ti or (lambda _run_id, _ti_id: (None, None, -1))
        if EVENT in kinds:
            out.extend(Change(EVENT, r["id"], r["run_id"], r["dag_id"], r["outcome"], r["at"],
                              {"kind": r["kind"], "source": r["source"]})
                       for r in rows["insert_event"])
        if TI in kinds:
            out.extend(Change(TI, r["id"], r["run_id"], name(r["run_id"], r["id"])[0],
                              "scheduled", r["at"],
                              {"task_id": r["task_id"], "map_index": r["map_index"],
                               "try_number": 0, "created": True})
                       for r in rows["insert_ti"])
        want_runs, want_tis = RUN in kinds, TI in kinds
        run_of: dict[int, int] = {}  # task instance id -> run id, for the attempts
        if want_runs or want_tis or ATTEMPT in kinds:
            now = self.now
            for run_id, ti_id, to, reason, dag_id, detail, tries in self.transitions:
                if ti_id is None:
                    if want_runs:
                        out.append(Change(RUN, run_id, run_id, dag_id, to, now, detail))
                    continue
                run_of[ti_id] = run_id
                if want_tis:
                    if dag_id is not None and detail is not None:  # named when written
                        task_id, map_index = detail["task_id"], detail["map_index"]
                    else:
                        dag_id, task_id, map_index = name(run_id, ti_id)
                    out.append(Change(TI, ti_id, run_id, dag_id, to, now,
                                      {"task_id": task_id, "reason": reason,
                                       "map_index": map_index, "try_number": tries}))
        if ATTEMPT in kinds:
            out.extend(self._attempt_changes(name, run_of))
        return out

    def _attempt_changes(self, name: Callable[[int, int], tuple[str | None, str | None, int]],
                         run_of: dict[int, int]) -> list[Change]:
        out: list[Change] = []
        for r in self.rows["insert_attempt"]:
            run_id = run_of.get(r["ti_id"])
            dag_id, task_id, map_index = (name(run_id, r["ti_id"]) if run_id is not None
                                          else (None, None, -1))
            out.append(Change(ATTEMPT, r["id"], run_id, dag_id, "running", r["at"],
                              {"ti_id": r["ti_id"], "try_number": r["try_number"],
                               "task_id": task_id, "map_index": map_index}))
        for r in self.rows["finish_attempt"]:
            run_id, ti_id = r["run_id"], r["ti_id"]
            dag_id, task_id, map_index = (name(run_id, ti_id)
                                          if run_id is not None and ti_id is not None
                                          else (None, None, -1))
            out.append(Change(ATTEMPT, r["id"], run_id, dag_id, r["state"], r["at"],
                              {"error": r["error"], "ti_id": ti_id,
                               "try_number": r["try_number"], "task_id": task_id,
                               "map_index": map_index}))
        return out
