"""Authentication and authorisation of the web side, on by default.

`setup(app)` adds the middleware (after `errors`), the security headers of every answer,
and the routes /login (the form, and `?token=` one-time links), /logout and /login/url
(a new one-time link, for `dagd login-url`). Who is asking, in order: a bearer token
(`Authorization: Bearer`: the CLI's token or an API token from the users file), else the
session cookie. The request then carries `request["dagd_user"]` (an `Identity`) and, for
a browser session, `request["dagd_csrf"]`. GET, HEAD and OPTIONS need a viewer; any other
method an operator, and from a browser session the `X-Dagd-CSRF` header too.

Whether auth is on or off, a request that changes something must not come from another
site's page (`Origin`, else `Referer`, names this site or is absent), and a server bound
to a loopback address answers only to its own names in `Host` (127.0.0.1, localhost,
[::1], the host of `[server] base_url`): a page elsewhere whose name an attacker points
at 127.0.0.1 (DNS rebinding) gets nothing. Webhooks are left to their own auth.

Sessions live in the daemon's memory (sessions.py): a restart logs everyone out. Open
without login: /login, /logout, /static/*, /hooks/* (webhooks have their own auth), and
/api/v1/health and /metrics when `[auth]` opens them.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from aiohttp import web

from dagd.accounts import check_role
from dagd.config import Settings
from dagd.errors import Forbidden, InvalidInput, Unauthorized
from dagd.web.base import SETTINGS, Handler, json_response
from dagd.web.sessions import SAFE, AuthState, Identity, Session, local_next

log = logging.getLogger(__name__)

__all__ = ["AUTH", "SAFE", "AuthState", "Identity", "first_login_url", "setup",
           "still_allowed"]

AUTH = web.AppKey("auth", AuthState)
COOKIE = "dagd_session"
CSRF_HEADER = "X-Dagd-CSRF"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "same-origin"}
ANONYMOUS = Identity("anonymous", "operator")  # every request, when auth is off

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True, undefined=jinja2.StrictUndefined)


def setup(app: web.Application) -> None:
    settings = app[SETTINGS]
    state = AuthState.create(settings) if settings.auth_enabled else None
    if state is not None:
        app[AUTH] = state
    app.middlewares.append(middleware)
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_post("/login/url", login_url)
    app.router.add_get("/login/style.css", style)
    app.router.add_get("/login/session", whoami)


def first_login_url(app: web.Application, host: str, port: int) -> str | None:
    """A one-time login URL for the daemon to print at start when no user exists yet."""
    state = app.get(AUTH)
    if state is None or state.accounts.current().users:
        return None
    return f"{_address(host, port)}/login?token={state.mint_link()}"


def _address(host: str, port: int) -> str:
    """The server's address from the host it listens on (an address of this machine for
    "every address") and its port."""
    shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port}"


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)


OPEN = frozenset({"/login", "/logout", "/login/style.css", "/hooks/{name}"})
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def _is_hook(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    if resource is None:
        return request.path.startswith("/hooks/")
    return resource.canonical == "/hooks/{name}"


@functools.cache
def _own_names(host: str, base_url: str) -> frozenset[str] | None:
    """The names a request's Host may carry, or None (any) when the server listens
    beyond the loopback address, where its names are not known."""
    try:
        loopback = host in LOOPBACK_NAMES or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return None
    named = urlsplit(base_url).hostname if base_url else None
    return LOOPBACK_NAMES | {host.lower()} | ({named} if named else set())


def _own_host(request: web.Request, settings: Settings) -> None:
    names = _own_names(settings.host, settings.base_url)
    if names is None:
        return
    try:
        name = urlsplit(f"//{request.host}").hostname
    except ValueError:
        name = None
    if name not in names:
        raise Forbidden(f"this server does not answer to the name {request.host[:100]!r}: "
                        "use 127.0.0.1 or localhost, or set [server] base_url to the "
                        "address it is reached at")


def _is_open(request: web.Request, settings: Settings) -> bool:
    """Decided by the route that answers, not by the path's text: a path that only
    looks open ("/hooks/../api/v1/dags", "/static/%2e%2e/...") gets no pass."""
    resource = request.match_info.route.resource
    if resource is None:  # no route: a 404 or 405 follows, with nothing to protect
        return request.path.startswith(("/hooks/", "/static/"))
    route = resource.canonical
    if route in OPEN or route == "/static" or route.startswith("/static/"):
        return True
    return ((route == "/api/v1/health" and settings.auth_public_health)
            or (route == "/metrics" and settings.auth_public_metrics))


def _wants_page(request: web.Request) -> bool:
    path = request.path
    return (request.method in ("GET", "HEAD") and path not in ("/metrics", "/login/session")
            and not path.startswith("/api/") and path != "/api")


def _client(request: web.Request) -> str:
    return request.remote or "?"


def _keep(request: web.Request, key: str, value: object) -> None:
    """The contract's plain string keys (the UI reads `request.get("dagd_csrf")`), without
    aiohttp's advice to use RequestKey objects, which it gives once per key."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        request[key] = value


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not _is_hook(request):
        _own_host(request, request.app[SETTINGS])
        if request.method not in SAFE:
            _same_origin(request)
    state = request.app.get(AUTH)
    if state is None:
        _keep(request, "dagd_user", ANONYMOUS)
        _keep(request, "dagd_csrf", "")
        return await handler(request)
    if _is_open(request, request.app[SETTINGS]):
        return await handler(request)
    identity, session = _identify(request, state)
    if identity is None:
        if _wants_page(request):
            target = request.rel_url.raw_path_qs
            raise web.HTTPSeeOther("/login?next=" + quote(local_next(target), safe=""))
        raise Unauthorized("log in first, or send Authorization: Bearer <token> (see "
                           "`dagd tokens create`)")
    unsafe = request.method not in SAFE
    if unsafe and identity.role != "operator":
        raise Forbidden(f"{identity.name} is a {identity.role}: only an operator may "
                        f"{request.method} {request.path}")
    if unsafe and session is not None:
        _check_csrf(request, session)
    _keep(request, "dagd_user", identity)
    if session is not None:
        _keep(request, "dagd_csrf", session.csrf)
    return await handler(request)


def still_allowed(request: web.Request) -> bool:
    """Is the login this request came with still good (not logged out, its user not
    removed, its token not revoked, its session not expired)? For a long answer, such
    as the live stream, to ask as it goes."""
    state = request.app.get(AUTH)
    if state is None or _is_open(request, request.app[SETTINGS]):
        return True
    return _identify(request, state)[0] is not None


def _identify(request: web.Request, state: AuthState) -> tuple[Identity | None, Session | None]:
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, None
        return state.by_token(token.strip()), None
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return None, None
    found = state.by_cookie(cookie)
    return (found[0], found[1]) if found is not None else (None, None)


def _same_origin(request: web.Request) -> None:
    """A browser names the page that sends a POST in `Origin` (else, at times, in
    `Referer`): it must be this site (its host and port; the scheme may differ behind a
    proxy that ends TLS). "null", a sandboxed or privacy-hidden origin, is another site."""
    origin = request.headers.get("Origin", request.headers.get("Referer"))
    if origin is not None and urlsplit(origin).netloc != request.host:
        raise Forbidden(f"cross-site request from {origin[:100]!r} refused")


def _check_csrf(request: web.Request, session: Session, form: str | None = None) -> None:
    """The session's token in the header (or, for /logout, the form), and no other site
    as the Origin: a page elsewhere can make a browser send the cookie, not these."""
    _same_origin(request)
    sent = request.headers.get(CSRF_HEADER, form or "")
    if not session.csrf_matches(sent):
        raise Forbidden(f"missing or wrong {CSRF_HEADER} header: a browser session's "
                        "changes need the page's CSRF token")


# -- the routes ----------------------------------------------------------------------------
def _page(name: str, status: int = 200, **values: Any) -> web.Response:
    body = _templates.get_template(name).render(**values)
    response = web.Response(text=body, status=status, content_type="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


def _form(next_path: str, state: AuthState, *, error: str = "",
          status: int = 200) -> web.Response:
    return _page("login.html", status, next=next_path, error=error,
                 no_user=not state.accounts.current().users)


def _logged_in(request: web.Request, state: AuthState, *, target: str,
               user: Identity, kind: str, stamp: str = "") -> web.HTTPSeeOther:
    cookie, _ = state.new_session(user, kind=kind, stamp=stamp)
    response = web.HTTPSeeOther(target)
    response.set_cookie(COOKIE, cookie, httponly=True, samesite="Lax", path="/",
                        secure=request.secure, max_age=int(state.session_seconds))
    return response


async def style(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(Path(__file__).with_name("templates") / "login.css")


async def login_page(request: web.Request) -> web.StreamResponse:
    state = request.app.get(AUTH)
    target = local_next(request.query.get("next", "/"))
    if state is None:
        raise web.HTTPSeeOther(target)
    token = request.query.get("token")
    if token is None:
        return _form(target, state)
    link = state.use_link(token)
    if link is None:
        log.warning("login link refused from %s: used already, expired or unknown",
                    _client(request))
        return _form(target, state, status=401, error="This login link was used already or "
                     "has expired. Log in, or ask for a new link with `dagd login-url`.")
    log.info("%s logged in with a one-time link from %s", link.name, _client(request))
    raise _logged_in(request, state, target=target, user=link, kind="link")


async def login(request: web.Request) -> web.StreamResponse:
    state = request.app.get(AUTH)
    form = await request.post()
    target = local_next(str(form.get("next", "/")))
    if state is None:
        raise web.HTTPSeeOther(target)
    _same_origin(request)
    name, password = str(form.get("username", "")), str(form.get("password", ""))
    busy = state.busy(_client(request))
    if busy:
        response = _form(target, state, status=busy, error="Too many logins at once: "
                         "try again in a moment.")
        response.headers["Retry-After"] = "1"
        return response
    wait = state.attempt(name, _client(request))
    if wait > 0:
        response = _form(target, state, status=429, error="Too many wrong passwords: wait "
                         f"{wait:.0f} s and try again.")
        response.headers["Retry-After"] = str(max(1, round(wait)))
        return response
    found = await state.check_password(name, password, client=_client(request))
    if found is None:
        log.warning("login refused for %r from %s: wrong username or password", name[:64],
                    _client(request))
        return _form(target, state, status=401, error="Wrong username or password.")
    user, stamp = found
    state.succeeded(name, _client(request))
    log.info("%s (%s) logged in from %s", user.name, user.role, _client(request))
    raise _logged_in(request, state, target=target, user=user, kind="user", stamp=stamp)


async def logout(request: web.Request) -> web.StreamResponse:
    state = request.app.get(AUTH)
    response = web.HTTPSeeOther("/login")
    if state is None:
        raise response
    found = state.by_cookie(request.cookies.get(COOKIE, ""))
    if found is not None:
        form = await request.post()
        _check_csrf(request, found[1], str(form.get("csrf", "")) or None)
        state.revoke(found[1])
        log.info("%s logged out", found[0].name)
    response.del_cookie(COOKIE, path="/")
    raise response


async def whoami(request: web.Request) -> web.StreamResponse:
    """Who this is, and the CSRF token of a browser session (null with a bearer token):
    for scripts in the page. Only this site's pages can read it (no CORS)."""
    user = request["dagd_user"]
    response = json_response({"name": user.name, "role": user.role,
                              "csrf": request.get("dagd_csrf")})
    response.headers["Cache-Control"] = "no-store"
    return response


async def login_url(request: web.Request) -> web.StreamResponse:
    """A new one-time login link (operator only, like every POST): `dagd login-url`."""
    state = request.app.get(AUTH)
    if state is None:
        raise InvalidInput("authentication is off ([auth] enabled = false): no login needed")
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object such as {\"role\": \"viewer\"}")
    role = check_role(str(body.get("role", "operator")))
    settings = request.app[SETTINGS]
    # Never from the request's Host or forwarding headers: whoever sends them could point
    # the link at a site of theirs. The port is the one this request came in on.
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    port = sockname[1] if isinstance(sockname, tuple) else settings.port
    base = settings.base_url.rstrip("/") or _address(settings.host, port)
    token = state.mint_link(role=role, seconds=state.link_seconds)
    log.info("%s made a one-time login link (%s)", request["dagd_user"].name, role)
    return json_response({"url": f"{base}/login?token={token}", "role": role,
                          "expires": time.time() + state.link_seconds})
