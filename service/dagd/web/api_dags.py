"""The REST API's DAG reads: the list with its filters, one DAG with its graph (tasks,
edges, task groups, mapped tasks), its triggers with the next fire time, its params,
and the DAG file's source as the daemon loaded it."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from dagd.authoring.dag import DAG, describe_trigger
from dagd.errors import NotFound
from dagd.executors.logs import mask
from dagd.store.rows import DagRow
from dagd.triggers.timers import timers_of
from dagd.web.api_input import bool_param, text_param
from dagd.web.api_secrets import secrets
from dagd.web.base import ENGINE, READER, json_response

RECENT_RUNS = 10  # the marks of a DAG's last runs in the list

_JSON_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
    (list, "array"), (dict, "object"),
)


def param_type(value: Any) -> str:
    """The JSON Schema type of a param's default: what the trigger form checks."""
    for kind, name in _JSON_TYPES:
        if isinstance(value, kind):
            return name
    return "null"


def describe_params(params: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": name, "default": value, "type": param_type(value),
             "schema": {"type": param_type(value)}}
            for name, value in params.items()]


def describe_triggers(dag: DAG | None, stored: list[dict[str, Any]],
                      now: datetime) -> list[dict[str, Any]]:
    """Each trigger as its `describe()` says, with the next fire time of a timer and
    the path of a webhook; from the loaded DAG when there is one (the stored spec of a
    DAG whose file is gone has no timer to ask)."""
    if dag is None:
        return [_with_path(t) for t in stored]
    timers = {id(t) for t in timers_of(dag.triggers)}
    out = []
    for trigger in dag.triggers:
        data = _with_path(describe_trigger(trigger))
        if id(trigger) in timers:
            data["next_fire_at"] = trigger.next_fire(now).isoformat()
        out.append(data)
    return out


def _with_path(data: dict[str, Any]) -> dict[str, Any]:
    data = dict(data)
    if data.get("kind") == "webhook" and data.get("name"):
        data["path"] = f"/hooks/{data['name']}"
    return data


def graph(spec: dict[str, Any]) -> dict[str, Any]:
    """Tasks (in topological order), edges and task groups of a stored DAG spec."""
    tasks = spec.get("tasks") or []
    downstream: dict[str, list[str]] = {t["task_id"]: [] for t in tasks}
    edges = []
    for t in tasks:
        for up in t.get("upstream") or []:
            edges.append({"from": up, "to": t["task_id"]})
            downstream.setdefault(up, []).append(t["task_id"])
    groups: dict[str, dict[str, Any]] = {}
    for t in tasks:
        group = t.get("group")
        while group:
            parent = group.rpartition(".")[0] or None
            entry = groups.setdefault(group, {"group_id": group, "parent": parent,
                                              "tasks": []})
            entry["tasks"].append(t["task_id"])
            group = parent
    described = [{
        "task_id": t["task_id"], "kind": t.get("kind"),
        "trigger_rule": t.get("trigger_rule"), "retries": t.get("retries"),
        "group": t.get("group"), "upstream": t.get("upstream") or [],
        "downstream": sorted(downstream.get(t["task_id"], [])),
        "mapped": t.get("mapped"), "is_mapped": bool(t.get("mapped")),
        "execution_timeout": t.get("execution_timeout"), "isolation": t.get("isolation"),
        "doc": t.get("doc"), "line": t.get("line"),
    } for t in tasks]
    return {"tasks": described, "edges": edges,
            "task_groups": sorted(groups.values(), key=lambda g: g["group_id"])}


def summary(row: DagRow, dag: DAG | None, *, paused: bool, now: datetime) -> dict[str, Any]:
    """What a DAG's entry in the list and its detail share."""
    spec = row.spec
    return {
        **asdict(row),
        "is_paused": paused,
        "file": row.fileloc,
        "tags": spec.get("tags") or [],
        "params": describe_params(spec.get("params") or {}),
        "triggers": describe_triggers(dag, spec.get("triggers") or [], now),
        "task_count": len(spec.get("tasks") or []),
        "is_loaded": dag is not None,
    }


def _keep(row: DagRow, *, name: str | None, tag: str | None, paused: bool | None) -> bool:
    if name is not None and name.lower() not in row.dag_id.lower():
        return False
    if tag is not None and tag not in (row.spec.get("tags") or []):
        return False
    return paused is None or row.is_paused == paused


async def list_dags(request: web.Request) -> web.Response:
    """Every DAG the database knows, by id; `name` (a part of the id, any case), `tag`
    and `paused` filter; each with its last runs' states, newest first."""
    name, tag = text_param(request, "name"), text_param(request, "tag")
    paused = bool_param(request, "paused")
    reader = request.app[READER]
    loaded = request.app[ENGINE].dags
    now = datetime.now(UTC)
    out = []
    for row in await reader.list_dags():
        if not _keep(row, name=name, tag=tag, paused=paused):
            continue
        recent = await reader.list_runs(row.dag_id, limit=RECENT_RUNS)
        out.append({**summary(row, loaded.get(row.dag_id), paused=row.is_paused, now=now),
                    "recent_runs": [{"id": r.id, "state": r.state} for r in recent]})
    return json_response({"dags": out})


async def get_dag(request: web.Request) -> web.Response:
    """One DAG: its row, triggers, params, tags, and the graph."""
    dag_id = request.match_info["dag_id"]
    row = await request.app[READER].get_dag(dag_id)
    dag = request.app[ENGINE].dags.get(dag_id)
    data = summary(row, dag, paused=row.is_paused, now=datetime.now(UTC))
    return json_response({**data, **graph(row.spec)})


async def dag_source(request: web.Request) -> web.Response:
    """The text of the DAG's file as the daemon loaded it (what its workers run), with
    configured secrets shown as `***`."""
    dag_id = request.match_info["dag_id"]
    await request.app[READER].get_dag(dag_id)  # 404 for a DAG never seen
    dag = request.app[ENGINE].dags.get(dag_id)
    if dag is None or dag.source is None:
        raise NotFound("the DAG is not loaded now (its file is gone or does not import): "
                       "no source to show", dag_id=dag_id)
    text = mask(dag.source.encode(), secrets(request))
    return web.Response(body=text, content_type="text/plain", charset="utf-8")
