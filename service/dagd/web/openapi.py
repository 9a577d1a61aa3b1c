"""The OpenAPI 3.1 document of dagd's HTTP API, as Python data, served at
GET /api/v1/openapi.json. It names every route the app serves under /api/v1 (and
/metrics), each parameter with its type, enum and bounds, each request body and each
answer, errors included; a test walks the app's router and holds the two equal."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dagd.states import RunState, TaskState
from dagd.version import __version__
from dagd.web.api_input import MAX_ID, MAX_MAP_INDEX, MAX_PAGE, MAX_TEXT
from dagd.web.base import json_response

Schema = dict[str, Any]

ERRORS = {
    "400": "The request cannot be read as sent (a body that does not decode)",
    "401": "Not logged in: no session and no valid bearer token",
    "403": "Logged in, but the role may not do this (a viewer asking to change something)",
    "404": "No such DAG, run, task instance, try, event or notification",
    "409": "The state forbids it now (e.g. a notification that has not failed)",
    "415": "The body is not JSON",
    "422": "A parameter or body field has a bad value; `field` names it",
    "503": "The database cannot be written now; try again after Retry-After seconds",
}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str) -> Schema:
    return {"type": [kind, "null"]}


TIME = {"type": ["number", "null"], "description": "Unix seconds"}
ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
TEXT = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}
WHEN = {"type": "string", "description": "Unix seconds, or an ISO 8601 date or date-time "
        "(UTC when it names no zone)", "examples": ["2026-11-01", "1793000000"]}


def path(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": schema,
            "description": description}


def query(name: str, schema: Schema, description: str, **extra: Any) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description, **extra}


DAG_ID = path("dag_id", {"type": "string", "minLength": 1, "maxLength": MAX_TEXT,
                         "pattern": "^[A-Za-z0-9_.-]+$"}, "A DAG's id")
RUN_ID = path("run_id", ID, "A run's id")
TASK_ID = path("task_id", {"type": "string", "minLength": 1, "maxLength": MAX_TEXT,
                           "pattern": "^[A-Za-z0-9_.-]+$"},
               "A task's id (with its groups' prefix, e.g. `prep.clean`)")
EVENT_ID = path("event_id", ID, "An event's id in the ledger")
NOTIFICATION_ID = path("notification_id", ID, "A notification's id in the outbox")
LIMIT = query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 50},
              "Rows per page")
BEFORE = query("before", ID, "Keyset cursor: only rows with a smaller id (the `next` of "
               "the page before)")
MAP_INDEX = query("map_index", {"type": "integer", "minimum": -1, "maximum": MAX_MAP_INDEX,
                                "default": -1},
                  "Which instance of a mapped task (-1: a task that is not mapped)")
RUN_FILTERS = [
    query("state", {"type": "string", "enum": list(RunState)}, "Only runs in this state"),
    query("since", WHEN, "Only runs created at or after this time"),
    query("until", WHEN, "Only runs created before this time"),
    LIMIT, BEFORE,
]


def _error_responses(*codes: str) -> dict[str, Schema]:
    return {code: {"$ref": f"#/components/responses/E{code}"} for code in codes}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def op(summary: str, *, answer: Schema, params: list[Schema] | None = None,
       body: Schema | None = None, status: str = "200", errors: tuple[str, ...] = (),
       tag: str) -> Schema:
    """One operation: its answer, and the errors every route may give besides its own."""
    responses: dict[str, Schema] = {status: answer}
    base = ("401", "403") if body is None else ("400", "401", "403", "415", "422", "503")
    responses.update(_error_responses(*sorted({*base, *errors})))
    data: Schema = {"summary": summary, "tags": [tag], "parameters": params or [],
                    "responses": responses}
    if body is not None:
        data["requestBody"] = {"required": False,
                               "content": {"application/json": {"schema": body}}}
    return data


def _obj(properties: dict[str, Schema], required: list[str] | None = None,
         **extra: Any) -> Schema:
    return {"type": "object", "properties": properties,
            "required": required if required is not None else list(properties), **extra}


SCHEMAS: dict[str, Schema] = {
    "Error": _obj({
        "error": {"type": "string", "description": "A code: not_found, invalid, state, "
                  "bad_request, forbidden, unauthorized, ..."},
        "message": {"type": "string", "description": "What is wrong, naming the field"},
        "field": {"type": "string", "description": "The parameter or body field at fault"},
        "dag_id": {"type": "string"}, "task_id": {"type": "string"},
        "file": {"type": "string"}, "line": {"type": "integer"},
    }, ["error", "message"]),
    "Trigger": {"type": "object", "required": ["kind"], "properties": {
        "kind": {"type": "string", "description": "cron, interval, file, webhook, or a "
                 "plugin's kind"},
        "expression": {"type": "string"}, "timezone": {"type": "string"},
        "period": {"type": "string"}, "folder": {"type": "string"},
        "pattern": {"type": "string"}, "name": {"type": "string"},
        "path": {"type": "string", "description": "A webhook's URL path, /hooks/{name}"},
        "next_fire_at": {"type": "string", "format": "date-time",
                         "description": "A timer's next fire time (ISO 8601, UTC)"},
    }},
    "Param": _obj({"name": {"type": "string"}, "default": {},
                   "type": {"type": "string", "enum": ["boolean", "integer", "number",
                                                       "string", "array", "object", "null"]},
                   "schema": {"type": "object"}}),
    "Dag": {"type": "object", "required": ["dag_id", "is_paused", "tags", "triggers"],
            "properties": {
        "dag_id": {"type": "string"}, "description": {"type": "string"},
        "file": {"type": "string"}, "fileloc": {"type": "string"},
        "is_paused": {"type": "boolean"}, "is_active": {"type": "boolean"},
        "is_loaded": {"type": "boolean"}, "tags": {"type": "array",
                                                   "items": {"type": "string"}},
        "params": {"type": "array", "items": ref("Param")},
        "triggers": {"type": "array", "items": ref("Trigger")},
        "task_count": {"type": "integer"}, "updated_at": {"type": "number"},
        "last_run_state": _nullable("string"), "last_run_id": _nullable("integer"),
        "recent_runs": {"type": "array", "items": _obj({"id": {"type": "integer"},
                                                         "state": {"type": "string"}})},
        "spec": {"type": "object", "description": "The DAG as the loader described it"},
    }},
    "Task": {"type": "object", "properties": {
        "task_id": {"type": "string"}, "kind": {"type": "string"},
        "trigger_rule": {"type": "string"}, "retries": {"type": "integer"},
        "group": _nullable("string"),
        "upstream": {"type": "array", "items": {"type": "string"}},
        "downstream": {"type": "array", "items": {"type": "string"}},
        "mapped": {"type": ["array", "null"], "items": {"type": "string"}},
        "is_mapped": {"type": "boolean"},
    }},
    "DagDetail": {"allOf": [ref("Dag"), {"type": "object", "properties": {
        "tasks": {"type": "array", "items": ref("Task")},
        "edges": {"type": "array", "items": _obj({"from": {"type": "string"},
                                                   "to": {"type": "string"}})},
        "task_groups": {"type": "array", "items": _obj({
            "group_id": {"type": "string"}, "parent": _nullable("string"),
            "tasks": {"type": "array", "items": {"type": "string"}}})},
    }}]},
    "Run": {"type": "object", "properties": {
        "id": {"type": "integer"}, "dag_id": {"type": "string"},
        "state": {"type": "string", "enum": list(RunState)},
        "run_type": {"type": "string"}, "event_id": _nullable("integer"),
        "logical_date": _nullable("string"), "conf": {"type": "object"},
        "created_at": {"type": "number"}, "started_at": TIME, "ended_at": TIME,
        "duration": TIME,
    }},
    "TaskInstance": {"type": "object", "properties": {
        "id": {"type": "integer"}, "run_id": {"type": "integer"},
        "task_id": {"type": "string"}, "map_index": {"type": "integer"},
        "state": {"type": "string", "enum": list(TaskState)},
        "try_number": {"type": "integer"}, "max_tries": {"type": "integer"},
        "retries_left": {"type": "integer"}, "next_attempt_at": TIME,
        "queued_at": TIME, "started_at": TIME, "ended_at": TIME,
        "updated_at": {"type": "number"},
    }},
    "Attempt": {"type": "object", "properties": {
        "id": {"type": "integer"}, "ti_id": {"type": "integer"},
        "try_number": {"type": "integer"},
        "state": {"type": "string", "enum": ["running", "success", "failed"]},
        "started_at": {"type": "number"}, "ended_at": TIME, "pid": _nullable("integer"),
        "where": {"type": "string"}, "error": _nullable("string"),
        "retries_left": {"type": "integer"},
        "log": {"type": "string", "description": "The URL of this try's log"},
    }},
    "Event": {"type": "object", "properties": {
        "id": {"type": "integer"}, "kind": {"type": "string"}, "source": {"type": "string"},
        "dag_id": _nullable("string"), "payload": {}, "dedup_key": _nullable("string"),
        "outcome": {"type": "string"}, "detail": _nullable("string"),
        "run_id": _nullable("integer"), "created_at": {"type": "number"},
        "digest": _nullable("string"),
        "count": {"type": "integer", "description": "How many deliveries the row counts: "
                  "a refusal's row counts those of its minute with the same source, DAG, "
                  "outcome, run and detail; every other event is 1"},
        "last_at": {**_nullable("number"), "description": "A refusal row's last one"},
    }},
    "ImportError": _obj({"file": {"type": "string"}, "line": _nullable("integer"),
                         "message": {"type": "string"}, "traceback": {"type": "string"},
                         "created_at": {"type": "number"}}),
    "Notification": {"type": "object", "properties": {
        "id": {"type": "integer"}, "dag_id": {"type": "string"},
        "run_id": _nullable("integer"), "ti_id": _nullable("integer"),
        "notifier": {"type": "string"}, "event": {"type": "string"},
        "payload": {"type": "object"},
        "state": {"type": "string", "enum": ["pending", "sent", "failed"]},
        "attempts": {"type": "integer"}, "next_attempt_at": {"type": "number"},
        "last_error": _nullable("string"), "created_at": {"type": "number"},
        "sent_at": TIME,
    }},
}


def _list(key: str, item: str, *, paged: bool = False) -> Schema:
    props: dict[str, Schema] = {key: {"type": "array", "items": ref(item)}}
    if paged:
        props["next"] = {"type": ["integer", "null"],
                         "description": "The `before` of the next page; null on the last"}
    return _json(_obj(props), f"A list of {key}")


MARK_BODY = {"type": "object", "additionalProperties": False, "required": ["state"],
             "properties": {"state": {"type": "string", "enum": ["success", "failed"]},
                            "map_index": MAP_INDEX["schema"]}}
RUN_MARK_BODY = {"type": "object", "additionalProperties": False, "required": ["state"],
                 "properties": {"state": {"type": "string", "enum": ["success", "failed"]}}}
TI_REF = _obj({"run_id": {"type": "integer"}, "task_id": {"type": "string"},
               "map_index": {"type": "integer"}, "state": {"type": "string"}})
STREAM_MAX_LOGS = 8  # attempts whose log lines one stream follows, at most (stream.py)
TEXT_ANSWER = {"text/plain": {"schema": {"type": "string"}}}
STREAM_FORMAT = (
    "Server-sent events. Each message has `id:` (a resume cursor: send it back as "
    "Last-Event-ID), `event:` and `data:` (one JSON object). Events: `run` {id, dag_id, "
    "state, at}; `ti` {id, run_id, dag_id, task_id, map_index, state, try_number, at}; "
    "`attempt` {id, run_id, dag_id, ti_id, task_id, try_number, state, at}; `event` {id, "
    "dag_id, kind, source, state, at}; `log` {attempt_id, offset, text} (masked); `reload` "
    "{reason}: the client fell behind and should read again. `: ping` comments keep the "
    "connection alive.")


def _dag_paths() -> dict[str, Schema]:
    dag = [DAG_ID]
    return {
        "/api/v1/dags": {"get": op("DAGs, by id, filtered", tag="dags", params=[
            query("name", TEXT, "Only DAGs whose id holds this text (any case)"),
            query("tag", TEXT, "Only DAGs with this tag"),
            query("paused", {"type": "boolean"}, "Only paused (true) or unpaused DAGs"),
        ], answer=_list("dags", "Dag"), errors=("422",))},
        "/api/v1/dags/{dag_id}": {"get": op(
            "A DAG with its graph, triggers (next fire times), params and tags",
            tag="dags", params=dag, answer=_json(ref("DagDetail"), "The DAG"),
            errors=("404",))},
        "/api/v1/dags/{dag_id}/source": {"get": op(
            "The DAG file's text as the daemon loaded it (secrets masked)", tag="dags",
            params=dag, answer={"description": "The source", "content": TEXT_ANSWER},
            errors=("404",))},
        "/api/v1/dags/{dag_id}/runs": {
            "get": op("A DAG's runs, newest first", tag="runs", params=[*dag, *RUN_FILTERS],
                      answer=_list("runs", "Run", paged=True), errors=("404", "422")),
            "post": op("Trigger a run with conf", tag="runs", params=dag, status="201",
                       body={"type": "object", "properties": {"conf": {"type": "object"}}},
                       answer=_json(_obj({"run_id": {"type": "integer"},
                                          "dag_id": {"type": "string"},
                                          "state": {"type": "string"}}), "The run queued"),
                       errors=("404",)),
        },
        "/api/v1/dags/{dag_id}/pause": {"post": op(
            "Pause a DAG: its new runs wait", tag="dags", params=dag, errors=("404",),
            answer=_json(_obj({"dag_id": {"type": "string"},
                               "is_paused": {"type": "boolean"}}), "Paused"))},
        "/api/v1/dags/{dag_id}/unpause": {"post": op(
            "Unpause a DAG", tag="dags", params=dag, errors=("404",),
            answer=_json(_obj({"dag_id": {"type": "string"},
                               "is_paused": {"type": "boolean"}}), "Unpaused"))},
        "/api/v1/dags/{dag_id}/backfill": {"post": op(
            "A run for each logical date of the DAG's timer in [start, end]", tag="runs",
            params=dag, status="201", errors=("404",),
            body=_obj({"start": WHEN, "end": WHEN}),
            answer=_json(_obj({"run_ids": {"type": "array", "items": {"type": "integer"}},
                               "existing": {"type": "array", "items": {"type": "integer"}},
                               "logical_dates": {"type": "array",
                                                 "items": {"type": "string"}}}),
                         "The runs queued (200 when all existed already)"))},
    }


def _run_paths() -> dict[str, Schema]:
    run, ti = [RUN_ID], [RUN_ID, TASK_ID]
    tasks = "/api/v1/runs/{run_id}/tasks/{task_id}"
    return {
        "/api/v1/runs": {"get": op("Runs of every DAG, newest first", tag="runs", params=[
            query("dag", TEXT, "Only this DAG's runs"), *RUN_FILTERS,
        ], answer=_list("runs", "Run", paged=True), errors=("422",))},
        "/api/v1/runs/{run_id}": {"get": op(
            "A run with its task instances, conf and trigger event", tag="runs", params=run,
            answer=_json({"allOf": [ref("Run"), _obj({
                "task_instances": {"type": "array", "items": ref("TaskInstance")},
                "event": {"oneOf": [ref("Event"), {"type": "null"}]}})]}, "The run"),
            errors=("404", "422"))},
        "/api/v1/runs/{run_id}/mark": {"post": op(
            "Mark a run success or failed: its active task instances end", tag="runs",
            params=run, body=RUN_MARK_BODY, errors=("404", "409"),
            answer=_json(_obj({"run_id": {"type": "integer"},
                               "state": {"type": "string"}}), "Marked"))},
        "/api/v1/runs/{run_id}/tasks": {"get": op(
            "A run's task instances", tag="tasks", params=run, errors=("404", "422"),
            answer=_json(_obj({"run_id": {"type": "integer"}, "task_instances": {
                "type": "array", "items": ref("TaskInstance")}}), "The task instances"))},
        tasks: {"get": op(
            "A task instance with its attempts and task settings", tag="tasks",
            params=[*ti, MAP_INDEX], errors=("404", "422"),
            answer=_json({"allOf": [ref("TaskInstance"), _obj({
                "dag_id": {"type": "string"}, "task": {"type": ["object", "null"]},
                "attempts": {"type": "array", "items": ref("Attempt")}})]},
                "The task instance"))},
        f"{tasks}/clear": {"post": op(
            "Run the task instance (and with downstream, those after it) again",
            tag="tasks", params=ti, errors=("404", "409"),
            body={"type": "object", "additionalProperties": False, "properties": {
                "downstream": {"type": "boolean", "default": False},
                "map_index": MAP_INDEX["schema"]}},
            answer=_json(_obj({"run_id": {"type": "integer"}, "task_id": {"type": "string"},
                               "map_index": {"type": "integer"},
                               "cleared": {"type": "array", "items": {"type": "string"}}}),
                         "The task ids cleared"))},
        f"{tasks}/mark": {"post": op(
            "Mark a task instance success or failed (a running attempt is stopped)",
            tag="tasks", params=ti, body=MARK_BODY, errors=("404", "409"),
            answer=_json(TI_REF, "Marked"))},
        f"{tasks}/logs": {"get": op(
            "A try's log from a byte offset, secrets masked", tag="tasks", params=[
                *ti, MAP_INDEX,
                query("try", {"type": "integer", "minimum": 1, "maximum": MAX_ID},
                      "The try number (default: the latest)"),
                query("offset", {"type": "integer", "minimum": 0, "maximum": MAX_ID,
                                 "default": 0},
                      "Byte offset to read from (the X-Dagd-Log-Offset of the last read); "
                      "one inside a line reads from that line's start"),
            ], errors=("404", "422"), answer={
                "description": "The log's text from the offset",
                "headers": {
                    "X-Dagd-Log-Offset": {"schema": {"type": "integer"},
                                          "description": "Where the next read starts"},
                    "X-Dagd-Log-Complete": {"schema": {"type": "string", "enum": ["true"]},
                                            "description": "Present once the try has "
                                            "ended and this read reached its log's end"},
                    "X-Dagd-Attempt-Id": {"schema": {"type": "integer"}},
                    "X-Dagd-Try-Number": {"schema": {"type": "integer"}}},
                "content": TEXT_ANSWER})},
        f"{tasks}/xcom": {"get": op(
            "The value the task instance returned (null if none), secrets masked",
            tag="tasks", params=[*ti, MAP_INDEX], errors=("404", "422"),
            answer=_json(_obj({"run_id": {"type": "integer"}, "task_id": {"type": "string"},
                               "map_index": {"type": "integer"}, "value": {}}), "XCom"))},
    }


def _other_paths() -> dict[str, Schema]:
    return {
        "/api/v1/health": {"get": op(
            "ok, degraded (a side task keeps failing), unavailable (503) or draining "
            "(503: the daemon is stopping)", tag="daemon",
            errors=("503",), answer=_json(_obj({
                "status": {"type": "string",
                           "enum": ["ok", "degraded", "unavailable", "draining"]},
                "version": {"type": "string"}, "tasks": {"type": "array"},
                "reason": {"type": "string"}}, ["status", "version", "tasks"]), "Health"))},
        "/api/v1/config": {"get": op(
            "The running configuration (operators only): each key's value, where it came "
            "from (file:line, environment variable, option, default) and whether SIGHUP or "
            "only a restart applies a change; a key changed on disk since has on_disk and "
            "note. Secrets as ***", tag="daemon",
            answer=_json(_obj({
                "config_file": {"type": ["string", "null"]},
                "keys": {"type": "array", "items": _obj({
                    "key": {"type": "string"}, "value": {}, "source": {"type": "string"},
                    "applies": {"type": "string", "enum": ["reload", "restart"]},
                    "on_disk": {}, "note": {"type": "string"}},
                    ["key", "value", "source", "applies"])},
                "on_disk_error": {"type": ["string", "null"]}}), "Config"))},
        "/api/v1/openapi.json": {"get": op(
            "This document", tag="daemon",
            answer=_json({"type": "object"}, "OpenAPI 3.1"))},
        "/api/v1/import-errors": {"get": op(
            "DAG files that do not import, with file, line and traceback", tag="dags",
            answer=_list("import_errors", "ImportError"))},
        "/api/v1/events": {"get": op("The event ledger, newest first", tag="events", params=[
            query("dag", TEXT, "Only this DAG's events"),
            query("kind", TEXT, "Only events of this kind (manual, cron, webhook, ...)"),
            query("outcome", TEXT, "Only events with this outcome (run_created, ...)"),
            LIMIT, BEFORE,
        ], answer=_list("events", "Event", paged=True), errors=("422",))},
        "/api/v1/events/{event_id}/replay": {"post": op(
            "Start a new run from a stored event", tag="events", params=[EVENT_ID],
            status="201", errors=("404", "409", "422"),
            answer=_json(_obj({"run_id": {"type": "integer"}}), "The new run"))},
        "/api/v1/notifications": {"get": op("The outbox, newest first", tag="events", params=[
            query("dag", TEXT, "Only this DAG's notifications"),
            query("state", {"type": "string", "enum": ["pending", "sent", "failed"]},
                  "Only notifications in this state"), LIMIT,
        ], answer=_list("notifications", "Notification"), errors=("422",))},
        "/api/v1/notifications/{notification_id}/retry": {"post": op(
            "Send a failed notification again", tag="events", params=[NOTIFICATION_ID],
            errors=("404", "409", "422"),
            answer=_json(_obj({"id": {"type": "integer"},
                               "state": {"type": "string"}}), "Pending again"))},
        "/api/v1/stream": {"get": op(
            "The live stream of committed changes (server-sent events)", tag="daemon",
            params=[
                query("dag", TEXT, "Only this DAG's changes"),
                query("run", {"type": "integer", "minimum": 0, "maximum": 10**18 - 1},
                      "Only this run's changes"),
                query("log", {"type": "array", "maxItems": STREAM_MAX_LOGS,
                              "items": {"type": "integer", "minimum": 0,
                                        "maximum": 10**18 - 1}},
                      "Also this attempt's log lines (repeatable)", explode=True),
                {"name": "Last-Event-ID", "in": "header", "required": False,
                 "schema": {"type": "string", "maxLength": MAX_TEXT},
                 "description": "Resume after this message's id"},
            ], errors=("422",), answer={"description": STREAM_FORMAT, "content": {
                "text/event-stream": {"schema": {"type": "string"}}}})},
        "/metrics": {"get": op(
            "Prometheus metrics (text exposition format)", tag="daemon", answer={
                "description": "Runs and task instances by DAG and state, task durations, "
                "event-to-start lag, queue and outbox depth, import errors, SQLite commit "
                "time", "content": {"text/plain": {"schema": {"type": "string"}}}})},
    }


def document() -> Schema:
    """The whole OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "dagd", "version": __version__,
                 "description": "dagd's REST API. Errors are JSON (see Error) with the "
                 "HTTP status: 422 a bad value (`field` names it), 404 an unknown DAG, "
                 "run or task, 409 a state conflict. List routes page with `limit` and "
                 "the keyset cursor `before` (the `next` of the page before)."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": {**_other_paths(), **_dag_paths(), **_run_paths()},
        "components": {
            "schemas": SCHEMAS,
            "responses": {f"E{code}": _json(ref("Error"), text)
                          for code, text in ERRORS.items()},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "A token from `dagd tokens create`"},
                "session": {"type": "apiKey", "in": "cookie", "name": "dagd_session",
                            "description": "The browser's session after /login; unsafe "
                            "methods also need the X-Dagd-CSRF header"},
            },
        },
    }


_DOCUMENT: Schema | None = None


async def serve(request: web.Request) -> web.Response:
    global _DOCUMENT
    if _DOCUMENT is None:
        _DOCUMENT = document()
    return json_response(_DOCUMENT)
