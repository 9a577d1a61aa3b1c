"""What the web UI's pages share: the Jinja2 environment (autoescaped), rendering with
the login's name and CSRF token, the HTML error page, and path and query numbers."""


from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web
from jinja2 import Environment, PackageLoader, StrictUndefined

from dagd.errors import DagdError, NotFound
from dagd.version import __version__
from dagd.web import ui_view
from dagd.web.ui_graph import summary_state

STATIC = Path(str(resources.files("dagd.web").joinpath("static")))

ENV = Environment(
    loader=PackageLoader("dagd.web", "templates"),
    autoescape=True,  # every template, whatever its name: ids, conf, logs are text
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters.update(when=ui_view.when, iso=ui_view.iso, pretty=ui_view.pretty_json,
                   compact=ui_view.compact_json, short_date=ui_view.short_date)
ENV.globals.update(span=ui_view.span, ticking=ui_view.ticking, ti_key=ui_view.ti_key,
                   summary=summary_state, version=__version__)

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
        operator=can_operate(request), path=request.path, clock=f"{time.time():.3f}",
        **context)
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
