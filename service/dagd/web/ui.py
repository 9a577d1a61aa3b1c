"""The web UI's routes: server-rendered pages (Jinja2, autoescaped) at `/` and its own
scripts and styles under `/static/` (the pages: `ui_dags`, `ui_pages`; what they share:
`ui_base`).

Handlers are thin: they read through the read-only store and the loaded DAGs, and an
unknown DAG, run or task is an HTML 404 page (never a traceback, never a file). Every
action a page offers is a `fetch` to the REST API from `static/dagd.js`, so the pages
need no inline script and no inline style (the CSP forbids both).
"""

from __future__ import annotations

from aiohttp import web

from dagd.web import ui_dags, ui_pages
from dagd.web.ui_base import STATIC


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", ui_dags.dags_page)
    app.router.add_get("/dags/{dag_id}", ui_dags.dag_page)
    app.router.add_get("/runs/{run_id}", ui_pages.run_page)
    app.router.add_get("/runs/{run_id}/tasks/{task_id}", ui_pages.task_page)
    app.router.add_get("/events", ui_pages.events_page)
    app.router.add_get("/notifications", ui_pages.notifications_page)
    app.router.add_static("/static/", STATIC, follow_symlinks=False, show_index=False,
                          append_version=False)
