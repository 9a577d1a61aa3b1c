"""The web UI's DAGs page (every DAG, its last runs, triggers, pause and trigger) and
DAG page (grid, graph, runs, source)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from aiohttp import web
from markupsafe import Markup, escape

from dagd.executors.logs import mask_text
from dagd.web import ui_view
from dagd.web.api_secrets import secrets
from dagd.web.base import ENGINE, READER
from dagd.web.ui_base import page, query_int, render
from dagd.web.ui_graph import layout, summary_state

PAGE = 25  # runs per page of the DAG page's grid and list
RECENT = 12  # last runs shown as marks on the DAGs page


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
    hidden = secrets(request)  # an import error's message or traceback may show one
    errors = [replace(e, message=mask_text(e.message, hidden),
                      traceback=mask_text(e.traceback, hidden) if e.traceback else e.traceback)
              for e in await reader.list_import_errors()]
    return render(request, "dags.html", dags=dags, total=len(rows), tags=tags, q=name,
                  tag=tag, import_errors=errors)


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
    source, _, cut = (await ui_view.masked_log(request, row.fileloc, log=False)
                      if row.fileloc else ("", 0, False))
    loaded = request.app[ENGINE].dags.get(row.dag_id)
    return render(
        request, "dag.html", dag=row, runs=runs, latest=latest, older=older,
        before=before, graph=layout(tasks, states),
        grid=grid_rows(tasks, list(reversed(runs)), tis), grid_runs=list(reversed(runs)),
        source=source, source_cut=cut,
        doc=str(row.spec.get("doc_md") or row.spec.get("doc") or ""),
        tags=[str(t) for t in row.spec.get("tags") or []],
        triggers=ui_view.describe_triggers(loaded, row.spec, paused=row.is_paused),
        params=ui_view.param_fields(row.spec.get("params") or {}), now=time.time())
