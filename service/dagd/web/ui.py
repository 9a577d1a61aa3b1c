"""The web UI's routes: server-rendered pages (Jinja2, autoescaped) at `/`, its own
scripts and styles under `/static/`, and the page helpers the handlers share.

Handlers are thin: they read through the read-only store and the loaded DAGs, and an
unknown DAG, run or task is an HTML 404 page (never a traceback, never a file). Every
action a page offers is a `fetch` to the REST API from `static/dagd.js`, so the pages
need no inline script and no inline style (the CSP forbids both).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from dagd.errors import DagdError, NotFound
from dagd.version import __version__
from dagd.web import ui_view
from dagd.web.base import ENGINE, READER
from dagd.web.ui_graph import layout, summary_state

PAGE = 25  # runs per page of the DAG page's grid and list
RECENT = 12  # last runs shown as marks on the DAGs page

STATIC = Path(str(resources.files("dagd.web").joinpath("static")))

ENV = Environment(
    loader=PackageLoader("dagd.web", "templates"),
    autoescape=True,  # every template, whatever its name: ids, conf, logs are text
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters.update(when=ui_view.when, iso=ui_view.iso, pretty=ui_view.pretty_json,
                   compact=ui_view.compact_json)
ENV.globals.update(span=ui_view.span, ti_key=ui_view.ti_key, summary=summary_state,
                   version=__version__)

Page = Callable[[web.Request], Awaitable[web.StreamResponse]]


def can_operate(request: web.Request) -> bool:
    """Show the buttons that change something: to an operator, or when no login is in
    front of the UI (the API refuses a viewer's POST anyway)."""
    user = request.get("dagd_user")
    return user is None or getattr(user, "role", "operator") == "operator"


def render(request: web.Request, template: str, *, status: int = 200,
           **context: Any) -> web.Response:
    user = request.get("dagd_user")
    html = ENV.get_template(template).render(
        csrf=request.get("dagd_csrf", ""), user=getattr(user, "name", None),
        operator=can_operate(request), path=request.path, **context)
    response = web.Response(text=html, content_type="text/html", status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def page(handler: Page) -> Page:
    """A page handler whose unknown or malformed ids answer an HTML 404 page (and any
    other refusal an HTML page with its status)."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except DagdError as exc:  # the page names what was wrong, as the API would
            status = exc.status if 400 <= exc.status < 600 else 400
            title = {404: "Not found", 400: "Bad request", 422: "Bad request"}.get(
                status, "Cannot show this page")
            return render(request, "error.html", status=status, title=title,
                          message=str(exc))

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


def path_int(request: web.Request, name: str) -> int:
    """A whole-number path part (a run id): anything else is a 404, as for a run that
    does not exist."""
    raw = request.match_info[name]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise NotFound(f"no {name.replace('_', ' ')} {raw[:60]!r}")
    return int(raw)


def query_int(request: web.Request, name: str, default: int | None, *,
              low: int = 0) -> int | None:
    raw = request.query.get(name, "")
    if not raw:
        return default
    if not raw.lstrip("-").isdigit() or len(raw) > 18 or int(raw) < low:
        raise DagdError(f"{name} must be a whole number of at least {low}, got {raw[:60]!r}",
                        field=name)
    return int(raw)


# -- the DAGs page and the DAG page ---------------------------------------------------------
@page
async def dags_page(request: web.Request) -> web.Response:
    """Every DAG: last runs as marks, triggers, tags, pause, trigger with conf."""
    reader = request.app[READER]
    loaded = request.app[ENGINE].dags
    name = request.query.get("q", "").strip()
    tag = request.query.get("tag", "").strip()
    rows = [r for r in await reader.list_dags() if r.is_active]
    tags = sorted({str(t) for r in rows for t in r.spec.get("tags") or []})
    shown = [r for r in rows
             if name.lower() in r.dag_id.lower()
             and (not tag or tag in (r.spec.get("tags") or []))]
    dags = []
    for row in shown:
        runs = list(reversed(await reader.list_runs(row.dag_id, limit=RECENT)))
        dags.append({
            "row": row, "runs": runs, "tags": [str(t) for t in row.spec.get("tags") or []],
            "triggers": ui_view.describe_triggers(loaded.get(row.dag_id), row.spec,
                                                  paused=row.is_paused),
            "params": ui_view.param_fields(row.spec.get("params") or {}),
        })
    return render(request, "dags.html", dags=dags, total=len(rows), tags=tags, q=name,
                  tag=tag, import_errors=await reader.list_import_errors())


def grid_rows(tasks: list[dict[str, Any]], runs: list[Any],
          tis: dict[tuple[int, str], list[Any]]) -> list[dict[str, Any]]:
    """One row per task, one cell per run (oldest run on the left). A row's cells are
    made here (a page holds hundreds: a template loop costs more than the rest of the
    page): every value from the database goes through `escape`; the task id in the
    link is percent-encoded, which leaves nothing HTML would read."""
    rows = []
    for t in tasks:
        task_id = str(t["task_id"])
        href_task = quote(task_id, safe="")
        cells = []
        for run in runs:
            found = tis.get((run.id, task_id), [])
            state = escape(summary_state(ti.state for ti in found))
            first = min((ti.map_index for ti in found), default=-1)
            query = f"?map_index={int(first)}" if first >= 0 else ""
            mapped = ""
            if t.get("mapped"):
                listed = ",".join(f"{ti.map_index}={ti.state}" for ti in found
                                  if ti.map_index >= 0)
                mapped = f' data-mapped="{escape(listed)}"'
            key = escape(ui_view.ti_key(int(run.id), task_id))
            title = escape(f"{task_id}, run {int(run.id)}: ")
            cells.append(f'<td><a class="cell" href="/runs/{int(run.id)}/tasks/{href_task}'
                         f'{query}" data-ti="{key}" data-state="{state}"{mapped} '
                         f'title="{title}{state}"><span class="sr">{state}</span></a></td>')
        rows.append({"task": t, "cells": Markup("".join(cells))})
    return rows


@page
async def dag_page(request: web.Request) -> web.Response:
    """One DAG: its grid of runs x tasks, its graph, its runs (paginated) and source."""
    reader = request.app[READER]
    row = await reader.get_dag(request.match_info["dag_id"])
    before = query_int(request, "before", None, low=1)
    runs = await reader.runs_page(row.dag_id, before=before, limit=PAGE + 1)
    older = runs[PAGE - 1].id if len(runs) > PAGE else None
    runs = runs[:PAGE]
    tis = ui_view.group_tis(await reader.tis_of_runs(r.id for r in runs))
    tasks: list[dict[str, Any]] = list(row.spec.get("tasks") or [])
    latest = runs[0] if runs else None
    states = {t["task_id"]: [ti.state for ti in tis.get((latest.id, t["task_id"]), [])]
              for t in tasks} if latest else {}
    source, _, cut = await ui_view.masked_log(request, row.fileloc) if row.fileloc else (
        "", 0, False)
    loaded = request.app[ENGINE].dags.get(row.dag_id)
    return render(
        request, "dag.html", dag=row, runs=runs, latest=latest, older=older,
        before=before, graph=layout(tasks, states),
        grid=grid_rows(tasks, list(reversed(runs)), tis), grid_runs=list(reversed(runs)),
        source=source, source_cut=cut,
        tags=[str(t) for t in row.spec.get("tags") or []],
        triggers=ui_view.describe_triggers(loaded, row.spec, paused=row.is_paused),
        params=ui_view.param_fields(row.spec.get("params") or {}), now=time.time())


def add_routes(app: web.Application) -> None:
    from dagd.web import ui_pages  # the run, task, events and notifications pages

    app.router.add_get("/", dags_page)
    app.router.add_get("/dags/{dag_id}", dag_page)
    app.router.add_get("/runs/{run_id}", ui_pages.run_page)
    app.router.add_get("/runs/{run_id}/tasks/{task_id}", ui_pages.task_page)
    app.router.add_get("/events", ui_pages.events_page)
    app.router.add_get("/notifications", ui_pages.notifications_page)
    app.router.add_static("/static/", STATIC, follow_symlinks=False, show_index=False,
                          append_version=False)
