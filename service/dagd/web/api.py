"""The REST API's handlers under /api/v1: thin, each reads through the store's reader or
asks the engine, and a bad parameter is a 422 that names it."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import anyio
import orjson
from aiohttp import web

from dagd.errors import BadRequest, DagdError, InvalidInput, NotFound
from dagd.executors.logs import mask, secret_values
from dagd.kinds.connections import connection_names, get_connection
from dagd.version import __version__
from dagd.web.base import ENGINE, READER, SETTINGS, SUPERVISOR, Handler, json_response

MAX_PAGE = 1000  # rows per answer of a list route, at most
MAX_ID = 2**63 - 1  # SQLite's largest integer


def _int(request: web.Request, name: str, default: int | None = None, *, low: int = 0,
         high: int = MAX_ID) -> int:
    """A whole-number path or query parameter in [low, high]; a bad one is a 422 that
    names it, never a 500."""
    raw = request.match_info.get(name) or request.query.get(name, "")
    if not raw and default is not None:
        return default
    shown = raw if len(raw) <= 40 else f"{raw[:40]}... ({len(raw)} characters)"
    try:
        value = int(raw) if len(raw) <= 40 else None
    except ValueError:
        value = None
    if value is None:
        raise InvalidInput(f"{name} must be a whole number, got {shown!r}", field=name)
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}, got {shown}",
                           field=name)
    return value


def _limit(request: web.Request) -> int:
    return _int(request, "limit", 50, low=1, high=MAX_PAGE)


async def _json_body(request: web.Request) -> Any:
    try:
        raw = await request.read()
    except web.RequestPayloadError:  # e.g. Content-Encoding: gzip, and not gzip
        raise BadRequest("the body cannot be read as sent: it does not decode as its "
                         "Content-Encoding says", field="body") from None
    if not raw.strip():
        return {}
    if request.content_type not in ("application/json", "application/octet-stream", ""):
        raise DagdError(f"expected a JSON body, got {request.content_type}", field="body")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"body is not valid JSON: {exc}", field="body") from None


async def health(request: web.Request) -> web.Response:
    """"ok", or "degraded" while a side task (a trigger, a file watcher) keeps failing;
    `tasks` lists each with its state, failures in a row and last error. 503
    "unavailable", with the reason, while the database cannot be written."""
    supervisor = request.app.get(SUPERVISOR)
    tasks = supervisor.describe() if supervisor is not None else []
    failing = any(t["state"] == "backing_off" for t in tasks)
    unhealthy = request.app[ENGINE].unhealthy
    if unhealthy is not None:  # nothing can be recorded: a load balancer should know
        response = json_response({"status": "unavailable", "reason": unhealthy,
                                  "version": __version__, "tasks": tasks}, status=503)
        response.headers["Retry-After"] = "5"
        return response
    return json_response({"status": "degraded" if failing else "ok",
                          "version": __version__, "tasks": tasks})


async def list_dags(request: web.Request) -> web.Response:
    rows = await request.app[READER].list_dags()
    return json_response({"dags": [asdict(r) for r in rows]})


async def get_dag(request: web.Request) -> web.Response:
    row = await request.app[READER].get_dag(request.match_info["dag_id"])
    return json_response(asdict(row))


async def trigger_run(request: web.Request) -> web.Response:
    dag_id = request.match_info["dag_id"]
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise InvalidInput("body must be a JSON object like {\"conf\": {...}}", field="body")
    run_id = await request.app[ENGINE].trigger(
        dag_id, conf=body.get("conf"), source=request.headers.get("X-Dagd-Source", "api")
    )
    return json_response({"run_id": run_id, "dag_id": dag_id, "state": "queued"}, status=201)


def _pause(paused: bool) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        dag_id = request.match_info["dag_id"]
        await request.app[ENGINE].set_paused(dag_id, paused)
        return json_response({"dag_id": dag_id, "is_paused": paused})

    return handler


async def list_runs(request: web.Request) -> web.Response:
    dag_id = request.match_info.get("dag_id")
    rows = await request.app[READER].list_runs(dag_id, limit=_limit(request))
    return json_response({"runs": [asdict(r) for r in rows]})


async def get_run(request: web.Request) -> web.Response:
    reader = request.app[READER]
    run = await reader.get_run(_int(request, "run_id"))
    tis = await reader.list_tis(run.id)
    return json_response({**asdict(run), "task_instances": [asdict(t) for t in tis]})


async def get_log(request: web.Request) -> web.Response:
    """An attempt's log, with the values of configured secrets shown as `***`: those of
    the environment variables that connections, SMTP and the DAGs' webhooks name, read
    now (a task may print one anyway)."""

    def secrets() -> list[str]:
        settings = request.app[SETTINGS]
        return secret_values(
            smtp_password_env=settings.smtp_password_env,
            smtp_password_file=settings.smtp_password_file,
            # The config's connections, and those a SIGHUP loaded since.
            connections=[*settings.connections.values(),
                         *map(get_connection, connection_names())],
            webhook_secret_envs=[getattr(trigger, "secret_env", None)
                                 for dag in request.app[ENGINE].dags.values()
                                 for trigger in dag.triggers])

    reader = request.app[READER]
    run_id = _int(request, "run_id")
    map_index = _int(request, "map_index", -1, low=-1, high=2**31)
    ti = await reader.get_ti(run_id, request.match_info["task_id"], map_index)
    attempts = await reader.list_attempts(ti.id)
    if not attempts:
        raise NotFound("the task has not run yet", task_id=ti.task_id)
    wanted = _int(request, "try", attempts[-1].try_number, low=1)
    for attempt in attempts:
        if attempt.try_number == wanted:
            try:
                body = await anyio.Path(attempt.log_path).read_bytes()
            except FileNotFoundError:
                body = b""
            return web.Response(body=mask(body, secrets()), content_type="text/plain")
    raise NotFound(f"no try {wanted}", task_id=ti.task_id)


async def import_errors(request: web.Request) -> web.Response:
    rows = await request.app[READER].list_import_errors()
    return json_response({"import_errors": [asdict(r) for r in rows]})


async def list_events(request: web.Request) -> web.Response:
    dag_id = request.query.get("dag")
    rows = await request.app[READER].list_events(dag_id, limit=_limit(request))
    return json_response({"events": [asdict(r) for r in rows]})


async def replay_event(request: web.Request) -> web.Response:
    run_id = await request.app[ENGINE].intake.replay(_int(request, "event_id"))
    return json_response({"run_id": run_id}, status=201)


async def backfill(request: web.Request) -> web.Response:
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise InvalidInput('body must be {"start": ISO date, "end": ISO date}', field="body")
    done = await request.app[ENGINE].intake.backfill(
        request.match_info["dag_id"], start=body.get("start"), end=body.get("end")
    )
    return json_response(done.describe(), status=201 if done.queued else 200)


async def list_notifications(request: web.Request) -> web.Response:
    state = request.query.get("state")
    if state is not None and state not in ("pending", "sent", "failed"):
        raise InvalidInput("state must be pending, sent or failed", field="state")
    rows = await request.app[READER].list_notifications(
        request.query.get("dag"), limit=_limit(request), state=state)
    return json_response({"notifications": [asdict(r) for r in rows]})


async def retry_notification(request: web.Request) -> web.Response:
    """A failed notification owed again; the outbox is woken to send it now."""
    engine = request.app[ENGINE]
    notification_id = _int(request, "notification_id")
    await engine.store.retry_notification(notification_id)
    for wake_outbox in engine.notification_listeners:
        wake_outbox()
    return json_response({"id": notification_id, "state": "pending"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/health", health)
    app.router.add_get("/api/v1/dags", list_dags)
    app.router.add_get("/api/v1/dags/{dag_id}", get_dag)
    app.router.add_post("/api/v1/dags/{dag_id}/runs", trigger_run)
    app.router.add_get("/api/v1/dags/{dag_id}/runs", list_runs)
    app.router.add_post("/api/v1/dags/{dag_id}/pause", _pause(True))
    app.router.add_post("/api/v1/dags/{dag_id}/unpause", _pause(False))
    app.router.add_get("/api/v1/runs", list_runs)
    app.router.add_get("/api/v1/runs/{run_id}", get_run)
    app.router.add_get("/api/v1/runs/{run_id}/tasks/{task_id}/logs", get_log)
    app.router.add_get("/api/v1/import-errors", import_errors)
    app.router.add_get("/api/v1/events", list_events)
    app.router.add_post("/api/v1/events/{event_id}/replay", replay_event)
    app.router.add_post("/api/v1/dags/{dag_id}/backfill", backfill)
    app.router.add_get("/api/v1/notifications", list_notifications)
    app.router.add_post("/api/v1/notifications/{notification_id}/retry", retry_notification)
