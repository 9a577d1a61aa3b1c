"""The REST API under /api/v1: its routes (`add_routes`), and the handlers of health,
triggering, pausing, backfills, import errors, the event ledger and the outbox. The
DAG reads are in api_dags, runs and task instances in api_runs, logs in api_logs, the
OpenAPI document in openapi. Handlers are thin: each reads through the store's reader
or asks the engine, and a bad parameter is a 422 that names it."""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from dagd.errors import InvalidInput
from dagd.version import __version__
from dagd.web import api_config, api_dags, api_logs, api_runs, drain, openapi
from dagd.web.api_input import body_object, int_param, json_body, limit_param, naming, text_param
from dagd.web.api_secrets import mask_value, secrets
from dagd.web.base import ENGINE, READER, SUPERVISOR, Handler, json_response


async def health(request: web.Request) -> web.Response:
    """"ok", or "degraded" while a side task (a trigger, a file watcher) keeps failing;
    `tasks` lists each with its state, failures in a row and last error. 503
    "unavailable", with the reason, while the database cannot be written; 503
    "draining" while the daemon stops."""
    supervisor = request.app.get(SUPERVISOR)
    tasks = supervisor.describe() if supervisor is not None else []
    failing = any(t["state"] == "backing_off" for t in tasks)
    unhealthy = request.app[ENGINE].unhealthy
    retry = drain.draining(request.app)
    if retry is not None:  # stopping: a load balancer sends new work elsewhere
        response = json_response({"status": "draining", "version": __version__,
                                  "tasks": tasks}, status=503)
        response.headers["Retry-After"] = str(retry)
        return response
    if unhealthy is not None:  # nothing can be recorded: a load balancer should know
        response = json_response({"status": "unavailable", "reason": unhealthy,
                                  "version": __version__, "tasks": tasks}, status=503)
        response.headers["Retry-After"] = "5"
        return response
    return json_response({"status": "degraded" if failing else "ok",
                          "version": __version__, "tasks": tasks})


async def trigger_run(request: web.Request) -> web.Response:
    dag_id = request.match_info["dag_id"]
    body = await body_object(request, ("conf",))
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


async def import_errors(request: web.Request) -> web.Response:
    rows = await request.app[READER].list_import_errors()
    return json_response(mask_value({"import_errors": [asdict(r) for r in rows]},
                                    secrets(request)))


async def list_events(request: web.Request) -> web.Response:
    """The ledger newest first, filtered by `dag`, `kind` and `outcome`; `next` is the
    `before` of the next page (null on the last)."""
    limit = limit_param(request)
    rows = await request.app[READER].list_events(
        text_param(request, "dag"), limit=limit + 1, kind=text_param(request, "kind"),
        outcome=text_param(request, "outcome"),
        before=int_param(request, "before", 0, low=1) or None)
    page = rows[:limit]
    return json_response({"events": [asdict(r) for r in page],
                          "next": page[-1].id if len(rows) > limit else None})


async def replay_event(request: web.Request) -> web.Response:
    with naming("event_id"):
        run_id = await request.app[ENGINE].intake.replay(int_param(request, "event_id", low=1))
    return json_response({"run_id": run_id}, status=201)


async def backfill(request: web.Request) -> web.Response:
    body = await json_body(request)
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
        request.query.get("dag"), limit=limit_param(request), state=state)
    return json_response({"notifications": [asdict(r) for r in rows]})


async def retry_notification(request: web.Request) -> web.Response:
    """A failed notification owed again; the outbox is woken to send it now."""
    engine = request.app[ENGINE]
    notification_id = int_param(request, "notification_id", low=1)
    with naming("notification_id"):
        await engine.store.retry_notification(notification_id)
    for wake_outbox in engine.notification_listeners:
        wake_outbox()
    return json_response({"id": notification_id, "state": "pending"})


def add_routes(app: web.Application) -> None:
    """Every /api/v1 route; openapi.py describes each (a test holds them equal)."""
    app.router.add_get("/api/v1/health", health)
    app.router.add_get("/api/v1/openapi.json", openapi.serve)
    app.router.add_get("/api/v1/config", api_config.get_config)
    app.router.add_get("/api/v1/dags", api_dags.list_dags)
    app.router.add_get("/api/v1/dags/{dag_id}", api_dags.get_dag)
    app.router.add_get("/api/v1/dags/{dag_id}/source", api_dags.dag_source)
    app.router.add_post("/api/v1/dags/{dag_id}/runs", trigger_run)
    app.router.add_get("/api/v1/dags/{dag_id}/runs", api_runs.list_runs)
    app.router.add_post("/api/v1/dags/{dag_id}/pause", _pause(True))
    app.router.add_post("/api/v1/dags/{dag_id}/unpause", _pause(False))
    app.router.add_post("/api/v1/dags/{dag_id}/backfill", backfill)
    app.router.add_get("/api/v1/runs", api_runs.list_runs)
    app.router.add_get("/api/v1/runs/{run_id}", api_runs.get_run)
    app.router.add_post("/api/v1/runs/{run_id}/mark", api_runs.mark_run)
    app.router.add_get("/api/v1/runs/{run_id}/tasks", api_runs.list_tis)
    tasks = "/api/v1/runs/{run_id}/tasks/{task_id}"
    app.router.add_get(tasks, api_runs.get_ti)
    app.router.add_post(f"{tasks}/clear", api_runs.clear_ti)
    app.router.add_post(f"{tasks}/mark", api_runs.mark_ti)
    app.router.add_get(f"{tasks}/logs", api_logs.get_log)
    app.router.add_get(f"{tasks}/xcom", api_runs.get_xcom)
    app.router.add_get("/api/v1/import-errors", import_errors)
    app.router.add_get("/api/v1/events", list_events)
    app.router.add_post("/api/v1/events/{event_id}/replay", replay_event)
    app.router.add_get("/api/v1/notifications", list_notifications)
    app.router.add_post("/api/v1/notifications/{notification_id}/retry", retry_notification)
