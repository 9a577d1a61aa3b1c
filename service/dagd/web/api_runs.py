"""The REST API's runs and task instances: the runs list with its filters and keyset
pagination, a run with its task instances, trigger event and conf, a task instance
with its attempts and XCom, and the operator's actions (mark a run, clear or mark a
task instance), each asked of the engine."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aiohttp import web

from dagd.errors import NotFound
from dagd.states import RunState, TaskState
from dagd.store.rows import AttemptRow, RunRow, TaskInstanceRow
from dagd.web.api_input import (
    MAX_MAP_INDEX,
    body_bool,
    body_choice,
    body_int,
    body_object,
    choice_param,
    int_param,
    limit_param,
    map_index_param,
    naming,
    text_param,
    time_param,
)
from dagd.web.api_secrets import mask_value, secrets
from dagd.web.base import ENGINE, READER, json_response

RUN_STATES = tuple(RunState)
TASK_STATES = tuple(TaskState)
MARKS = ("success", "failed")


def run_id_param(request: web.Request) -> int:
    return int_param(request, "run_id", low=1)


async def find_run(request: web.Request) -> RunRow:
    """The run the path names; a 404 naming `run_id` if there is none."""
    with naming("run_id"):
        return await request.app[READER].get_run(run_id_param(request))


def describe_run(run: RunRow) -> dict[str, Any]:
    ended = run.ended_at
    started = run.started_at
    return {**asdict(run),
            "duration": ended - started if ended is not None and started is not None else None}


def describe_ti(ti: TaskInstanceRow) -> dict[str, Any]:
    return {**asdict(ti), "retries_left": max(ti.max_tries - max(ti.try_number, 1), 0)}


def describe_attempt(attempt: AttemptRow, ti: TaskInstanceRow) -> dict[str, Any]:
    """An attempt without its log's file path: the log is served by try number."""
    data = asdict(attempt)
    del data["log_path"]
    data["retries_left"] = max(ti.max_tries - attempt.try_number, 0)
    data["where"] = (f"Dask worker {attempt.worker}" if attempt.worker else
                     f"pid {attempt.pid}" if attempt.pid else "in the daemon")
    data["log"] = (f"/api/v1/runs/{ti.run_id}/tasks/{ti.task_id}/logs"
                   f"?try={attempt.try_number}&map_index={ti.map_index}")
    return data


async def list_runs(request: web.Request) -> web.Response:
    """Runs newest first; `next` is the `before` of the next page (null on the last)."""
    dag_id = request.match_info.get("dag_id") or text_param(request, "dag")
    reader = request.app[READER]
    if "dag_id" in request.match_info:
        await reader.get_dag(dag_id or "")  # a DAG never seen is a 404, not an empty page
    limit = limit_param(request)
    since, until = time_param(request, "since"), time_param(request, "until")
    rows = await reader.list_runs(
        dag_id, limit=limit + 1, state=choice_param(request, "state", RUN_STATES),
        since=since, until=until,
        before=int_param(request, "before", 0, low=1) or None)
    page = rows[:limit]
    return json_response({"runs": [describe_run(r) for r in page],
                          "next": page[-1].id if len(rows) > limit else None})


async def get_run(request: web.Request) -> web.Response:
    """A run with its task instances, the event that started it and its conf."""
    reader = request.app[READER]
    run = await find_run(request)
    tis = await reader.list_tis(run.id)
    event = await reader.get_event(run.event_id) if run.event_id is not None else None
    return json_response({**describe_run(run),
                          "task_instances": [describe_ti(t) for t in tis],
                          "event": asdict(event) if event is not None else None})


async def mark_run(request: web.Request) -> web.Response:
    run_id = run_id_param(request)
    body = await body_object(request, ("state",))
    state = body_choice(body, "state", MARKS)
    await find_run(request)
    await request.app[ENGINE].mark_run(run_id, state)
    return json_response({"run_id": run_id, "state": state})


async def list_tis(request: web.Request) -> web.Response:
    reader = request.app[READER]
    run = await find_run(request)
    return json_response({"run_id": run.id,
                          "task_instances": [describe_ti(t) for t in
                                             await reader.list_tis(run.id)]})


async def task_instance(request: web.Request, map_index: int | None = None) -> TaskInstanceRow:
    """The task instance the path names; the run is checked first, so an unknown run
    is a 404 about the run."""
    reader = request.app[READER]
    run = await find_run(request)
    index = map_index_param(request) if map_index is None else map_index
    return await reader.get_ti(run.id, request.match_info["task_id"], index)


async def get_ti(request: web.Request) -> web.Response:
    """A task instance with its attempts (try number, state, times, error, pid) and its
    task's settings from the DAG."""
    reader = request.app[READER]
    ti = await task_instance(request)
    run = await reader.get_run(ti.run_id)
    attempts = await reader.list_attempts(ti.id)
    task = None
    try:
        spec = (await reader.get_dag(run.dag_id)).spec
        task = next((t for t in spec.get("tasks") or [] if t["task_id"] == ti.task_id), None)
    except NotFound:
        pass  # the DAG's row is gone: the instance is still shown
    return json_response(mask_value(
        {**describe_ti(ti), "dag_id": run.dag_id, "task": task,
         "attempts": [describe_attempt(a, ti) for a in attempts]}, secrets(request)))


async def clear_ti(request: web.Request) -> web.Response:
    """The task instance (with `downstream`, those after it too) runs again."""
    body = await body_object(request, ("downstream", "map_index"))
    downstream = body_bool(body, "downstream", False)
    map_index = body_int(body, "map_index", -1, low=-1, high=MAX_MAP_INDEX)
    ti = await task_instance(request, map_index)
    cleared = await request.app[ENGINE].clear(ti.run_id, ti.task_id, map_index=map_index,
                                              downstream=downstream)
    return json_response({"run_id": ti.run_id, "task_id": ti.task_id,
                          "map_index": map_index, "cleared": cleared})


async def mark_ti(request: web.Request) -> web.Response:
    body = await body_object(request, ("state", "map_index"))
    state = body_choice(body, "state", MARKS)
    map_index = body_int(body, "map_index", -1, low=-1, high=MAX_MAP_INDEX)
    ti = await task_instance(request, map_index)
    await request.app[ENGINE].mark_task(ti.run_id, ti.task_id, state, map_index=map_index)
    return json_response({"run_id": ti.run_id, "task_id": ti.task_id,
                          "map_index": map_index, "state": state})


async def get_xcom(request: web.Request) -> web.Response:
    """The value the task instance returned (null if none yet), secrets masked."""
    ti = await task_instance(request)
    value = await request.app[READER].get_xcom(ti.id)
    return json_response({"run_id": ti.run_id, "task_id": ti.task_id,
                          "map_index": ti.map_index,
                          "value": mask_value(value, secrets(request))})
