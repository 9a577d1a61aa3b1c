"""The UI's run, task instance, events and notifications pages (the DAGs page and the
DAG page are in `ui`)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from aiohttp import web

from dagd.errors import DagdError, NotFound
from dagd.events import (
    DAG_PAUSED,
    DUPLICATE,
    IN_BATCH,
    NO_MATCHING_DAG,
    REJECTED,
    RUN_CREATED,
    UNAUTHORIZED,
)
from dagd.executors.logs import mask_text
from dagd.store.rows import AttemptRow, RunRow, TaskInstanceRow
from dagd.web import ui_view
from dagd.web.api_secrets import mask_value, secrets
from dagd.web.base import ENGINE, READER
from dagd.web.ui_base import page, path_int, query_int, render
from dagd.web.ui_gantt import gantt
from dagd.web.ui_graph import summary_state

LIST_LIMIT = 200  # rows of the events and notifications pages
ITEM_MAX = 80  # characters of a mapped instance's arguments shown in its row
# What the events page offers to filter by: the ledger's usual kinds and its outcomes.
EVENT_KINDS = ("manual", "cron", "interval", "file", "webhook", "replay", "backfill")
EVENT_OUTCOMES = (RUN_CREATED, DUPLICATE, DAG_PAUSED, NO_MATCHING_DAG, UNAUTHORIZED,
                  REJECTED, IN_BATCH)


@page
async def run_page(request: web.Request) -> web.Response:
    """A run: its state, duration, conf, what triggered it, and a Gantt of every attempt."""
    reader = request.app[READER]
    run = await reader.get_run(path_int(request, "run_id"))
    tis = _in_dag_order(await reader.list_tis(run.id), await _task_order(request, run.dag_id))
    attempts = await reader.run_attempts(run.id)
    history = await reader.run_history(run.id)
    event = None
    if run.event_id is not None:
        try:
            event = await reader.get_event(run.event_id)
        except NotFound:  # the ledger was pruned: the run still shows
            event = None
    now = time.time()
    tries: dict[int, int] = {}
    latest: dict[int, AttemptRow] = {}
    for a in attempts:
        tries[a.ti_id] = tries.get(a.ti_id, 0) + 1
        latest[a.ti_id] = a  # in try order: the last one stays
    expanded = {t.task_id for t in tis if t.map_index >= 0}
    drawn = [t for t in tis if t.map_index >= 0 or t.task_id not in expanded]
    times = {t.id: ui_view.ti_times(t, latest.get(t.id)) for t in tis}
    instances: dict[str, int] = {}
    for t in tis:
        if t.map_index >= 0:
            instances[t.task_id] = instances.get(t.task_id, 0) + 1
    return render(request, "run.html", run=run, tis=tis, tries=tries, event=event,
                  times=times, instances=instances,
                  chart=gantt(run, drawn, attempts, history, now=now), now=now)


async def _task_order(request: web.Request, dag_id: str) -> dict[str, int]:
    try:
        dag = await request.app[READER].get_dag(dag_id)
    except NotFound:  # a DAG gone from the database: its runs still show
        return {}
    return {t["task_id"]: i for i, t in enumerate(dag.spec.get("tasks") or [])}


def _in_dag_order(tis: list[TaskInstanceRow], order: dict[str, int]) -> list[TaskInstanceRow]:
    """The DAG's task order (upstream first), a mapped task's instances by index."""
    return sorted(tis, key=lambda t: (order.get(t.task_id, len(order)), t.map_index, t.id))


def _chosen(attempts: list[AttemptRow], wanted: int | None, task_id: str) -> AttemptRow | None:
    if wanted is None:
        return attempts[-1] if attempts else None
    for attempt in attempts:
        if attempt.try_number == wanted:
            return attempt
    raise NotFound(f"no try {wanted}", task_id=task_id)


@page
async def task_page(request: web.Request) -> web.Response:
    """A task instance: attempts, the chosen try's log (live while it runs), its error,
    XCom, and the clear and mark actions."""
    reader = request.app[READER]
    run = await reader.get_run(path_int(request, "run_id"))
    task_id = request.match_info["task_id"]
    map_index = query_int(request, "map_index", -1, low=-1)
    assert map_index is not None
    ti = await reader.get_ti(run.id, task_id, map_index)
    if map_index < 0:
        every = await reader.list_tis(run.id)
        instances = [t for t in every if t.task_id == task_id and t.map_index >= 0]
        if instances or await _is_mapped(request, run.dag_id, task_id):
            return await _mapped_page(request, run, ti, instances, every)
    attempts = await reader.list_attempts(ti.id)
    wanted = query_int(request, "try", None, low=1)
    chosen = _chosen(attempts, wanted, task_id)
    log, offset, cut = ("", 0, False)
    if chosen is not None:
        log, offset, cut = await ui_view.masked_log(request, chosen.log_path)
    siblings = [t for t in await reader.list_tis(run.id)
                if t.task_id == task_id and t.map_index >= 0] if map_index >= 0 else []
    # The value a task returned, and its errors, as the API shows them: secrets as ***.
    hidden = secrets(request)
    xcom = mask_value(await reader.get_xcom(ti.id), hidden)
    attempts = [replace(a, error=mask_text(a.error, hidden)) if a.error else a
                for a in attempts]
    chosen = next((a for a in attempts if chosen is not None and a.id == chosen.id), None)
    return render(
        request, "task.html", run=run, ti=ti, attempts=attempts, chosen=chosen,
        pinned=wanted is not None, log=log, log_offset=offset, log_cut=cut, xcom=xcom,
        has_xcom=xcom is not None, retries_left=max(0, ti.max_tries - ti.try_number),
        siblings=siblings, times=ui_view.ti_times(ti, attempts[-1] if attempts else None),
        now=time.time())


async def _is_mapped(request: web.Request, dag_id: str, task_id: str) -> bool:
    try:
        dag = await request.app[READER].get_dag(dag_id)
    except NotFound:
        return False
    return any(t.get("task_id") == task_id and t.get("mapped")
               for t in dag.spec.get("tasks") or [])


async def _items(request: web.Request, run: RunRow, task_id: str,
                 every: list[TaskInstanceRow], count: int) -> list[str]:
    """What each instance of a mapped task was given (its expand arguments, short), when
    the loaded DAG can say so from its upstream tasks' stored XComs; else nothing."""
    dag = request.app[ENGINE].dags.get(run.dag_id)
    task = dag.tasks.get(task_id) if dag is not None else None
    if task is None or getattr(task, "mapped", None) is None or not hasattr(
            task, "expand_items"):
        return []
    mapped_ups = {t.task_id for t in every if t.map_index >= 0}
    upstream: dict[str, Any] = {}
    for t in every:
        if t.map_index < 0 and t.task_id in getattr(task, "upstream_ids", ()):
            if t.task_id in mapped_ups:  # its XCom is its instances': not read here
                return []
            upstream[t.task_id] = await request.app[READER].get_xcom(t.id)
    try:
        items = task.expand_items(upstream)
    except (DagdError, LookupError, TypeError, ValueError, AttributeError):
        return []  # the DAG changed since this run, or an XCom is gone
    if len(items) != count:
        return []
    hidden = secrets(request)  # an XCom's secrets show as *** here as on its page
    shown = []
    for item in items:
        text = ", ".join(f"{k}={ui_view.compact_json(mask_value(v, hidden))}"
                         for k, v in item.items())
        shown.append(text if len(text) <= ITEM_MAX else text[:ITEM_MAX - 1] + "…")
    return shown


async def _mapped_page(request: web.Request, run: RunRow, ti: TaskInstanceRow,
                       instances: list[TaskInstanceRow],
                       every: list[TaskInstanceRow]) -> web.Response:
    """A mapped task as a whole: how many instances it was mapped into, and each one's
    argument, state, try and duration (its own page has its attempts, log and XCom)."""
    latest: dict[int, AttemptRow] = {}
    for a in await request.app[READER].run_attempts(run.id):
        latest[a.ti_id] = a
    instances = sorted(instances, key=lambda t: t.map_index)
    items = await _items(request, run, ti.task_id, every, len(instances))
    return render(
        request, "mapped.html", run=run, ti=ti, instances=instances, items=items,
        state=summary_state(t.state for t in instances) if instances else ti.state,
        times={t.id: ui_view.ti_times(t, latest.get(t.id)) for t in instances},
        now=time.time())


@page
async def events_page(request: web.Request) -> web.Response:
    """The event ledger: what arrived, what it did (a run, a duplicate, a refusal)."""
    dag_id = request.query.get("dag") or None
    kind = request.query.get("kind", "")[:64] or None  # a plugin's trigger has its own
    outcome = request.query.get("outcome") or None
    outcome = outcome if outcome in EVENT_OUTCOMES else None
    events = await request.app[READER].list_events(dag_id, limit=LIST_LIMIT, kind=kind,
                                                   outcome=outcome)
    return render(request, "events.html", events=events, dag_id=dag_id or "",
                  kind=kind or "", outcome=outcome or "",
                  kinds=[*EVENT_KINDS, *([kind] if kind and kind not in EVENT_KINDS else [])],
                  outcomes=EVENT_OUTCOMES)


@page
async def notifications_page(request: web.Request) -> web.Response:
    """The outbox: notifications pending, sent and failed (a failed one can be retried)."""
    state = request.query.get("state") or None
    if state not in (None, "pending", "sent", "failed"):
        state = None
    rows = await request.app[READER].list_notifications(None, limit=LIST_LIMIT, state=state)
    return render(request, "notifications.html", notifications=rows, state=state or "")
