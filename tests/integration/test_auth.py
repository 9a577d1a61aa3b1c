"""Authentication over real HTTP: create_app on 127.0.0.1 port 0 over a running engine,
the users file and the secrets as real files in the test's data directory. Each hole
that systems of this kind have had is its own test."""

from __future__ import annotations

import re
import sqlite3
import stat
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import anyio
import pytest
from aiohttp import web
from yarl import URL

from dagd.accounts import AccountsFile
from dagd.config import Settings
from dagd.store import Store
from dagd.web import sessions
from dagd.web.app import create_app
from dagd.web.auth import AUTH, COOKIE, CSP, first_login_url
from dagd.web.sessions import AuthState, Identity
from integration.harness import StartEngine, cli_headers, wait_until

pytestmark = pytest.mark.anyio

DAGS = """
from dagd import DAG, task

with DAG("greet"):
    @task
    async def hello():
        return "hi"

    hello()
"""

ADA, ADA_PW = "ada", "correct horse battery staple"
VIC, VIC_PW = "vic", "viewer's own password"


@dataclass
class Site:
    base: str
    app: web.Application
    settings: Settings

    @property
    def state(self) -> AuthState:
        return self.app[AUTH]

    def runs(self) -> int:
        with sqlite3.connect(f"file:{self.settings.db_path}?mode=ro", uri=True) as db:
            return int(db.execute("SELECT count(*) FROM run").fetchone()[0])

    def browser(self) -> aiohttp.ClientSession:
        """A client that keeps cookies for 127.0.0.1 and follows no redirect itself."""
        return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                     timeout=aiohttp.ClientTimeout(total=10))

    async def login(self, http: aiohttp.ClientSession, name: str = ADA,
                    password: str = ADA_PW, next_path: str = "/") -> aiohttp.ClientResponse:
        async with http.post(f"{self.base}/login", allow_redirects=False,
                             data={"username": name, "password": password,
                                   "next": next_path}) as resp:
            await resp.read()
            return resp

    async def csrf(self, http: aiohttp.ClientSession) -> str:
        async with http.get(f"{self.base}/login/session") as resp:
            assert resp.status == 200, await resp.text()
            return str((await resp.json())["csrf"])

    def cookie(self, http: aiohttp.ClientSession) -> str:
        found = http.cookie_jar.filter_cookies(URL(self.base)).get(COOKIE)
        assert found is not None, "no session cookie"
        return found.value


@pytest.fixture
def write_users(settings: Settings) -> Callable[[], None]:
    def write() -> None:
        users = AccountsFile(settings.data_dir)
        users.add_user(ADA, ADA_PW, role="operator")
        users.add_user(VIC, VIC_PW, role="viewer")

    return write


@asynccontextmanager
async def serve(start_engine: StartEngine, settings: Settings | None = None
                ) -> AsyncIterator[Site]:
    async with start_engine(settings) as h:
        reader = await Store.open(h.settings.db_path, readonly=True)
        app = create_app(h.engine, reader)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            yield Site(f"http://{host}:{port}", app, h.settings)
        finally:
            await runner.cleanup()
            await reader.close()


@pytest.fixture
async def site(write_dag: Callable[[str, str], Path], write_users: Callable[[], None],
               start_engine: StartEngine) -> AsyncIterator[Site]:
    write_dag("greet.py", DAGS)
    write_users()
    async with serve(start_engine) as s:
        yield s


async def get(http: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, Any, Any]:
    async with http.get(url, allow_redirects=False, **kw) as resp:
        body = await resp.json() if resp.content_type == "application/json" else \
            await resp.text()
        return resp.status, body, resp.headers


# -- no login ------------------------------------------------------------------------------
async def test_the_api_without_a_login_is_401_json(site: Site) -> None:
    async with site.browser() as http:
        for path in ("/api/v1/dags", "/api/v1/health", "/api/v1/runs/1", "/metrics"):
            status, body, headers = await get(http, site.base + path)
            assert status == 401, (path, body)
            assert headers["Content-Type"].startswith("application/json")
            assert body["error"] == "unauthorized"
        async with http.post(f"{site.base}/api/v1/dags/greet/runs", json={}) as resp:
            assert resp.status == 401
    assert site.runs() == 0


async def test_a_page_without_a_login_redirects_to_the_login_form(site: Site) -> None:
    async with site.browser() as http:
        status, _, headers = await get(http, f"{site.base}/dags/greet?tab=graph")
        assert status == 303
        location = URL(headers["Location"])
        assert location.path == "/login" and not location.host
        assert location.query["next"] == "/dags/greet?tab=graph"
        status, page, _ = await get(http, f"{site.base}/login?next=%2Fdags%2Fgreet")
        assert status == 200
        assert 'name="username"' in page and 'name="password"' in page
        assert 'name="next" value="/dags/greet"' in page and "Log in" in page


async def test_the_webhooks_and_the_login_page_need_no_login(site: Site) -> None:
    async with site.browser() as http:
        assert (await get(http, f"{site.base}/login"))[0] == 200
        assert (await get(http, f"{site.base}/login/style.css"))[0] == 200
        async with http.post(f"{site.base}/hooks/nobody", json={}) as resp:
            assert resp.status == 404  # the webhook's own answer, not a 401


# -- passwords -----------------------------------------------------------------------------
async def test_a_wrong_password_is_refused_and_sets_no_cookie(site: Site) -> None:
    async with site.browser() as http:
        resp = await site.login(http, ADA, "not the password")
        assert resp.status == 401
        assert COOKIE not in resp.cookies
        resp = await site.login(http, "nobody", ADA_PW)
        assert resp.status == 401
        assert (await get(http, f"{site.base}/api/v1/dags"))[0] == 401


async def test_the_right_password_logs_in(site: Site) -> None:
    async with site.browser() as http:
        resp = await site.login(http, next_path="/dags/greet")
        assert resp.status == 303 and resp.headers["Location"] == "/dags/greet"
        cookie = resp.cookies[COOKIE]
        assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
        assert not cookie["secure"]  # plain http here; https sets it
        assert int(cookie["max-age"]) == 12 * 3600
        status, body, _ = await get(http, f"{site.base}/api/v1/dags")
        assert status == 200 and [d["dag_id"] for d in body["dags"]] == ["greet"]


async def test_wrong_passwords_again_and_again_wait_a_while(site: Site) -> None:
    async with site.browser() as http:
        statuses = [(await site.login(http, VIC, f"guess {i}")).status for i in range(6)]
        assert statuses == [401] * 5 + [429]
        resp = await site.login(http, VIC, VIC_PW)  # even the right one, for now
        assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
        later = site.state.now() + 120
        site.state.now = lambda: later
        assert (await site.login(http, VIC, VIC_PW)).status == 303


async def test_wrong_passwords_sent_side_by_side_wait_too(site: Site) -> None:
    statuses = [0] * 30
    async with site.browser() as http:
        async def guess(i: int) -> None:
            statuses[i] = (await site.login(http, VIC, f"guess {i}")).status

        async with anyio.create_task_group() as tg:
            for i in range(len(statuses)):
                tg.start_soon(guess, i)
        assert set(statuses) <= {401, 429} and statuses.count(401) <= 5, statuses
        for i in range(5 - statuses.count(401)):  # the five free tries, if some are left
            assert (await site.login(http, VIC, f"again {i}")).status == 401
        assert (await site.login(http, VIC, VIC_PW)).status == 429


async def test_wrong_logins_keep_little_in_memory(site: Site) -> None:
    huge = "x" * 500_000
    async with site.browser() as http:
        for name in (huge, huge + "y", "a b", VIC):
            resp = await site.login(http, name, "not it")
            assert resp.status == 401, name[:10]
    assert len(site.state.tries) == 1  # a name no user can have is not kept
    assert sum(len(name) + len(client) for name, client in site.state.tries) < 100


async def test_one_users_many_logins_end_only_their_own_oldest_sessions(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions, "MAX_PER_USER", 3)
    monkeypatch.setattr(sessions, "MAX_SESSIONS", 4)
    async with site.browser() as http:
        await site.login(http)
        ada = site.cookie(http)
    vics = []
    for _ in range(6):
        async with site.browser() as http:
            assert (await site.login(http, VIC, VIC_PW)).status == 303
            vics.append(site.cookie(http))
    async with site.browser() as http:
        for cookie, status in [(ada, 200)] + [(c, 401) for c in vics[:3]] + \
                [(c, 200) for c in vics[3:]]:
            got, _, _ = await get(http, f"{site.base}/login/session", cookies={COOKIE: cookie})
            assert got == status


async def test_a_flood_of_logins_is_refused_at_once_not_queued(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions, "MAX_CHECKS_PER_CLIENT", 2)
    monkeypatch.setattr(sessions, "MAX_CHECKS", 3)
    release = threading.Event()

    def slow_check(password: str, stored: str | None) -> bool:
        release.wait(10)
        return False

    monkeypatch.setattr(sessions, "verify_password", slow_check)

    def client(address: str) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)),
                                     timeout=aiohttp.ClientTimeout(total=10))

    async def try_login(address: str, name: str) -> int:
        async with client(address) as http:
            return (await site.login(http, name, "not it")).status

    async def in_line(count: int) -> None:
        await wait_until(lambda: sum(site.state.checking.values()) >= count, 5,
                         f"{count} logins being checked")

    held: list[int] = []

    async def hold(address: str, name: str) -> None:
        held.append(await try_login(address, name))

    try:
        async with anyio.create_task_group() as tg:
            for name in ("u1", "u2"):
                tg.start_soon(hold, "127.0.0.1", name)
            await in_line(2)
            with anyio.fail_after(3):
                assert await try_login("127.0.0.1", "u3") == 429
            tg.start_soon(hold, "127.0.0.2", "u4")
            await in_line(3)
            with anyio.fail_after(3):
                assert await try_login("127.0.0.3", "u5") == 503
            release.set()
    finally:
        release.set()
    assert held == [401] * 3
    assert site.state.checking == {}


# -- roles ---------------------------------------------------------------------------------
async def test_a_viewer_reads_but_may_not_trigger(site: Site) -> None:
    async with site.browser() as http:
        assert (await site.login(http, VIC, VIC_PW)).status == 303
        csrf = await site.csrf(http)
        assert (await get(http, f"{site.base}/api/v1/dags"))[0] == 200
        for path in ("/api/v1/dags/greet/runs", "/api/v1/dags/greet/pause"):
            async with http.post(site.base + path, json={"conf": {}},
                                 headers={"X-Dagd-CSRF": csrf}) as resp:
                assert resp.status == 403, path
                body = await resp.json()
                assert body["error"] == "forbidden" and "viewer" in body["message"]
    assert site.runs() == 0
    with sqlite3.connect(f"file:{site.settings.db_path}?mode=ro", uri=True) as db:
        assert db.execute("SELECT count(*) FROM dag WHERE is_paused").fetchone()[0] == 0


async def test_a_viewer_token_reads_but_may_not_trigger(site: Site) -> None:
    token = AccountsFile(site.settings.data_dir).create_token("dash", role="viewer")
    auth = {"Authorization": f"Bearer {token}"}
    async with site.browser() as http:
        assert (await get(http, f"{site.base}/api/v1/dags", headers=auth))[0] == 200
        async with http.post(f"{site.base}/api/v1/dags/greet/runs", json={},
                             headers=auth) as resp:
            assert resp.status == 403
    assert site.runs() == 0


async def test_an_operator_triggers_with_the_csrf_header(site: Site) -> None:
    async with site.browser() as http:
        await site.login(http)
        csrf = await site.csrf(http)
        async with http.post(f"{site.base}/api/v1/dags/greet/runs", json={"conf": {}},
                             headers={"X-Dagd-CSRF": csrf}) as resp:
            assert resp.status == 201, await resp.text()
    assert site.runs() == 1


async def test_a_role_changed_or_a_user_removed_counts_at_once(site: Site) -> None:
    users = AccountsFile(site.settings.data_dir)
    async with site.browser() as http:
        await site.login(http)
        csrf = await site.csrf(http)
        with users.editing() as accounts:  # the role changed in the file, the rest kept
            accounts.users[ADA] = replace(accounts.users[ADA], role="viewer")
        async with http.post(f"{site.base}/api/v1/dags/greet/runs", json={},
                             headers={"X-Dagd-CSRF": csrf}) as resp:
            assert resp.status == 403
        assert (await get(http, f"{site.base}/api/v1/dags"))[0] == 200
        users.remove_user(ADA)
        assert (await get(http, f"{site.base}/api/v1/dags"))[0] == 401
    assert site.runs() == 0


async def test_a_user_removed_and_added_again_is_someone_new(site: Site) -> None:
    users = AccountsFile(site.settings.data_dir)
    async with site.browser() as http:
        await site.login(http, VIC, VIC_PW)
        old = site.cookie(http)
    users.remove_user(VIC)
    users.add_user(VIC, "another password", role="operator")
    async with site.browser() as http:
        for path in ("/login/session", "/api/v1/dags"):
            status, _, _ = await get(http, site.base + path, cookies={COOKIE: old})
            assert status == 401, path
        assert (await site.login(http, VIC, VIC_PW)).status == 401
        assert (await site.login(http, VIC, "another password")).status == 303
        assert (await get(http, f"{site.base}/login/session"))[1]["role"] == "operator"


async def test_a_token_revoked_and_made_again_under_its_name_is_a_new_token(
        site: Site) -> None:
    users = AccountsFile(site.settings.data_dir)
    old = users.create_token("ci", role="viewer")
    users.revoke_token("ci")
    new = users.create_token("ci", role="operator")
    async with site.browser() as http:
        for token, status in ((old, 401), (new, 200)):
            auth = {"Authorization": f"Bearer {token}"}
            assert (await get(http, f"{site.base}/api/v1/dags", headers=auth))[0] == status


# -- cookies -------------------------------------------------------------------------------
async def test_a_forged_cookie_is_refused(site: Site) -> None:
    # Made as dagd makes one, but under another key: the MAC cannot match.
    other = AuthState(site.state.accounts, b"k" * 32, "", 3600.0)
    forged, _ = other.new_session(Identity(ADA, "operator"), kind="user")
    async with site.browser() as http:
        await site.login(http)  # a real session exists: the forgery must not reach it
        sid = site.cookie(http).split(".")[0]
    _, expires, mac = forged.split(".")
    async with site.browser() as http:
        for value in (forged, f"{sid}.{expires}.{mac}", "x", "..", "a.b.c"):
            status, _, _ = await get(http, f"{site.base}/api/v1/dags",
                                     cookies={COOKIE: value})
            assert status == 401, value


async def test_a_tampered_cookie_is_refused(site: Site) -> None:
    async with site.browser() as http:
        await site.login(http, VIC, VIC_PW)
        real = site.cookie(http)
    sid, expires, mac = real.split(".")

    def changed(text: str) -> str:  # its last character, to one it is not
        return text[:-1] + ("B" if text.endswith("A") else "A")

    tampered = [f"{sid}.{int(expires) + 3600}.{mac}", f"{changed(sid)}.{expires}.{mac}",
                f"{sid}.{expires}.{changed(mac)}", f"{sid}.{expires}", sid]
    assert real not in tampered
    async with site.browser() as http:
        assert (await get(http, f"{site.base}/api/v1/dags", cookies={COOKIE: real}))[0] == 200
        for value in tampered:
            status, _, _ = await get(http, f"{site.base}/api/v1/dags", cookies={COOKIE: value})
            assert status == 401, value


async def test_a_cookie_replayed_after_logout_is_refused(site: Site) -> None:
    async with site.browser() as http:
        await site.login(http)
        cookie = site.cookie(http)
        csrf = await site.csrf(http)
        async with http.post(f"{site.base}/logout", allow_redirects=False,
                             headers={"X-Dagd-CSRF": csrf}) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/login"
    async with site.browser() as http:
        status, _, _ = await get(http, f"{site.base}/api/v1/dags", cookies={COOKIE: cookie})
        assert status == 401


async def test_logout_without_the_csrf_token_is_refused(site: Site) -> None:
    async with site.browser() as http:
        await site.login(http)
        async with http.post(f"{site.base}/logout", allow_redirects=False) as resp:
            assert resp.status == 403
        assert (await get(http, f"{site.base}/api/v1/dags"))[0] == 200
        csrf = await site.csrf(http)
        async with http.post(f"{site.base}/logout", allow_redirects=False,
                             data={"csrf": csrf}) as resp:  # a plain form's field
            assert resp.status == 303
        assert (await get(http, f"{site.base}/api/v1/dags"))[0] == 401


async def test_an_expired_session_is_refused(site: Site) -> None:
    async with site.browser() as http:
        await site.login(http)
        assert (await get(http, f"{site.base}/api/v1/dags"))[0] == 200
        later = site.state.now() + 12 * 3600 + 1
        site.state.now = lambda: later
        assert (await get(http, f"{site.base}/api/v1/dags"))[0] == 401
        assert (await get(http, f"{site.base}/dags/greet"))[0] == 303


# -- CSRF ----------------------------------------------------------------------------------
async def test_a_cross_site_form_post_is_refused_and_writes_nothing(site: Site) -> None:
    async with site.browser() as http:
        await site.login(http)
        before = site.runs()
        # What a form on another site makes the browser send: the cookie, no header.
        async with http.post(f"{site.base}/api/v1/dags/greet/runs", data={"conf": "{}"},
                             headers={"Origin": "https://evil.example"}) as resp:
            assert resp.status == 403
        async with http.post(f"{site.base}/api/v1/dags/greet/runs", json={"conf": {}}) as resp:
            assert resp.status == 403
            assert "X-Dagd-CSRF" in (await resp.json())["message"]
        async with http.post(f"{site.base}/api/v1/dags/greet/pause",
                             headers={"X-Dagd-CSRF": "a guess"}) as resp:
            assert resp.status == 403
        csrf = await site.csrf(http)
        async with http.post(f"{site.base}/api/v1/dags/greet/runs", json={"conf": {}},
                             headers={"X-Dagd-CSRF": csrf,
                                      "Origin": "https://evil.example"}) as resp:
            assert resp.status == 403
    assert site.runs() == before == 0
    with sqlite3.connect(f"file:{site.settings.db_path}?mode=ro", uri=True) as db:
        assert db.execute("SELECT count(*) FROM dag WHERE is_paused").fetchone()[0] == 0


async def test_a_cross_site_login_is_refused(site: Site) -> None:
    async with site.browser() as http, http.post(
            f"{site.base}/login", allow_redirects=False,
            data={"username": ADA, "password": ADA_PW},
            headers={"Origin": "https://evil.example"}) as resp:
        assert resp.status == 403
        assert COOKIE not in resp.cookies


# -- redirects -----------------------------------------------------------------------------
@pytest.mark.parametrize("target", [
    "//evil.com", "https://evil.com", "/\\evil.com", "%2F%2Fevil.com", "/%2F/evil.com",
    "/%2Fevil.com", "/%5Cevil.com", "/%252F%252Fevil.com", "javascript:alert(1)",
    "/\t/evil.com", "http:/evil.com", "\\\\evil.com", "evil.com", "",
])
async def test_no_open_redirect_after_login(site: Site, target: str) -> None:
    async with site.browser() as http:
        resp = await site.login(http, next_path=target)
        assert resp.status == 303
        assert resp.headers["Location"] == "/"


async def test_a_local_next_is_kept(site: Site) -> None:
    async with site.browser() as http:
        resp = await site.login(http, next_path="/runs/4/tasks/load?try=2")
        assert resp.headers["Location"] == "/runs/4/tasks/load?try=2"


# -- one-time links and tokens ------------------------------------------------------------
async def test_the_one_time_login_link_works_once(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("greet.py", DAGS)
    async with serve(start_engine) as s:
        port = int(s.base.rsplit(":", 1)[1])
        url = first_login_url(s.app, "127.0.0.1", port)
        assert url is not None and url.startswith(f"http://127.0.0.1:{port}/login?token=")
        async with s.browser() as http:
            status, _, headers = await get(http, url + "&next=%2Fdags%2Fgreet")
            assert status == 303 and headers["Location"] == "/dags/greet"
            assert (await get(http, f"{s.base}/api/v1/dags"))[0] == 200
        async with s.browser() as http:
            status, page, _ = await get(http, url)
            assert status == 401 and "used already" in page
            assert (await get(http, f"{s.base}/api/v1/dags"))[0] == 401
            status, _, _ = await get(http, f"{s.base}/login?token=made-up")
            assert status == 401


@pytest.mark.parametrize("target", ["//evil.com", "https://evil.com", "/%5Cevil.com",
                                    "/\\evil.com", "javascript:alert(1)"])
async def test_the_one_time_login_link_never_redirects_off_the_site(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, target: str
) -> None:
    write_dag("greet.py", DAGS)
    async with serve(start_engine) as s:
        port = int(s.base.rsplit(":", 1)[1])
        url = first_login_url(s.app, "127.0.0.1", port)
        assert url is not None
        async with s.browser() as http:
            status, _, headers = await get(http, f"{url}&next={quote(target, safe='')}")
            assert status == 303 and headers["Location"] == "/"
            assert (await get(http, f"{s.base}/api/v1/dags"))[0] == 200  # logged in


async def test_no_login_link_once_a_user_exists(site: Site) -> None:
    assert first_login_url(site.app, "127.0.0.1", 8080) is None


async def test_a_login_link_from_the_cli_token(site: Site) -> None:
    async with site.browser() as http:
        async with http.post(f"{site.base}/login/url", json={"role": "viewer"},
                             headers=cli_headers(site.settings)) as resp:
            assert resp.status == 200
            url = (await resp.json())["url"]
        assert url.startswith(f"{site.base}/login?token=")
        assert (await get(http, url))[0] == 303
        async with http.post(f"{site.base}/api/v1/dags/greet/pause",
                             headers={"X-Dagd-CSRF": await site.csrf(http)}) as resp:
            assert resp.status == 403  # a viewer's link
        async with http.post(f"{site.base}/login/url", json={}) as resp:
            assert resp.status == 403  # a viewer may not make links (nor a stranger)


@pytest.mark.parametrize("base_url", ["", "https://dagd.example.com/"])
async def test_a_login_link_names_this_server_whatever_the_request_says(
    write_dag: Callable[[str, str], Path], write_users: Callable[[], None],
    start_engine: StartEngine, settings: Settings, base_url: str
) -> None:
    write_dag("greet.py", DAGS)
    write_users()
    everywhere = replace(settings, host="0.0.0.0", base_url=base_url)
    async with serve(start_engine, everywhere) as s, s.browser() as http:
        port = s.base.rsplit(":", 1)[1]
        own = base_url.rstrip("/") or f"http://127.0.0.1:{port}"
        async with http.post(f"{s.base}/login/url", json={},
                             headers={"Host": "evil.com", "X-Forwarded-Host": "evil.com",
                                      "X-Forwarded-Proto": "https",
                                      **cli_headers(s.settings)}) as resp:
            assert resp.status == 200, await resp.text()
            url = (await resp.json())["url"]
        assert url.startswith(f"{own}/login?token="), url


async def test_a_bearer_token_works_and_a_revoked_one_is_refused(site: Site) -> None:
    users = AccountsFile(site.settings.data_dir)
    token = users.create_token("ci", role="operator")
    auth = {"Authorization": f"Bearer {token}"}
    async with site.browser() as http:
        async with http.post(f"{site.base}/api/v1/dags/greet/runs", json={"conf": {}},
                             headers=auth) as resp:
            assert resp.status == 201  # no CSRF header: not a browser session
        users.revoke_token("ci")
        assert (await get(http, f"{site.base}/api/v1/dags", headers=auth))[0] == 401
        wrong = {"Authorization": f"Bearer {token[:-1]}x"}
        assert (await get(http, f"{site.base}/api/v1/dags", headers=wrong))[0] == 401
        basic = {"Authorization": f"Basic {token}"}
        assert (await get(http, f"{site.base}/api/v1/dags", headers=basic))[0] == 401
    assert site.runs() == 1


async def test_the_cli_token_is_new_at_each_start(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings
) -> None:
    write_dag("greet.py", DAGS)
    async with serve(start_engine) as s:
        first = cli_headers(s.settings)
    async with serve(start_engine) as s, s.browser() as http:
        assert (await get(http, f"{s.base}/api/v1/dags", headers=first))[0] == 401
        assert (await get(http, f"{s.base}/api/v1/dags",
                          headers=cli_headers(s.settings)))[0] == 200


# -- files ---------------------------------------------------------------------------------
def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_users_file_and_the_secrets_are_mode_0600(site: Site) -> None:
    data = site.settings.data_dir
    for name in ("users.json", "cli-token", "auth-secret"):
        assert mode(data / name) == 0o600, name
    text = (data / "users.json").read_text()
    assert ADA_PW not in text and VIC_PW not in text
    assert re.search(r'"password": "scrypt\$16384\$8\$1\$', text)
    token = AccountsFile(data).create_token("ci")
    assert token not in (data / "users.json").read_text()
    assert mode(data / "users.json") == 0o600


# -- headers and switches ------------------------------------------------------------------
async def test_every_answer_carries_the_security_headers(site: Site) -> None:
    async with site.browser() as http:
        answers = [await get(http, site.base + p) for p in
                   ("/login", "/api/v1/dags", "/dags/greet", "/login/style.css")]
        answers.append(await get(http, f"{site.base}/api/v1/dags",
                                 headers=cli_headers(site.settings)))
        answers.append(await get(http, f"{site.base}/api/v1/nothing-here",
                                 headers=cli_headers(site.settings)))
    for status, _, headers in answers:
        assert headers["Content-Security-Policy"] == CSP, status
        assert "frame-ancestors 'none'" in CSP and "script-src 'self'" in CSP
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"
    assert [a[0] for a in answers] == [200, 401, 303, 200, 200, 404]


async def test_the_config_may_open_health_and_metrics_only(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings
) -> None:
    write_dag("greet.py", DAGS)
    opened = replace(settings, auth_public_health=True, auth_public_metrics=True)
    async with serve(start_engine, opened) as s, s.browser() as http:
        assert (await get(http, f"{s.base}/api/v1/health"))[0] == 200
        assert (await get(http, f"{s.base}/metrics"))[0] != 401
        assert (await get(http, f"{s.base}/api/v1/dags"))[0] == 401
        assert (await get(http, f"{s.base}/api/v1/health/x"))[0] == 401


async def test_auth_turned_off_lets_everyone_in(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings
) -> None:
    write_dag("greet.py", DAGS)
    off = replace(settings, auth_enabled=False)
    async with serve(start_engine, off) as s, s.browser() as http:
        async with http.post(f"{s.base}/api/v1/dags/greet/runs", json={}) as resp:
            assert resp.status == 201
        status, _, headers = await get(http, f"{s.base}/api/v1/dags")
        assert status == 200 and headers["X-Content-Type-Options"] == "nosniff"
        assert not (s.settings.data_dir / "cli-token").exists()


def paused(site: Site) -> int:
    with sqlite3.connect(f"file:{site.settings.db_path}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT count(*) FROM dag WHERE is_paused").fetchone()[0])


async def test_auth_turned_off_still_refuses_a_cross_site_post(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings
) -> None:
    write_dag("greet.py", DAGS)
    off = replace(settings, auth_enabled=False)
    evil = "http://evil.example"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    async with serve(start_engine, off) as s, s.browser() as http:
        for headers in ({"Origin": evil, **form}, {"Referer": f"{evil}/x", **form},
                        {"Origin": "null", **form}):
            async with http.post(f"{s.base}/api/v1/dags/greet/pause", data="x=1",
                                 headers=headers) as resp:
                assert resp.status == 403, headers
            async with http.post(f"{s.base}/api/v1/dags/greet/runs",
                                 headers={k: v for k, v in headers.items()
                                          if k != "Content-Type"}) as resp:
                assert resp.status == 403, headers
        assert s.runs() == 0 and paused(s) == 0
        async with http.post(f"{s.base}/hooks/nobody", json={},
                             headers={"Origin": evil}) as resp:
            assert resp.status == 404  # the webhook's own answer
        async with http.post(f"{s.base}/api/v1/dags/greet/runs", json={},
                             headers={"Origin": s.base}) as resp:
            assert resp.status == 201  # this site's own page
        assert s.runs() == 1


@pytest.mark.parametrize("auth_on", [False, True])
async def test_a_loopback_server_answers_only_to_its_own_names(
    write_dag: Callable[[str, str], Path], write_users: Callable[[], None],
    start_engine: StartEngine, settings: Settings, auth_on: bool
) -> None:
    write_dag("greet.py", DAGS)
    write_users()
    config = replace(settings, auth_enabled=auth_on, base_url="https://dagd.example.com/")
    async with serve(start_engine, config) as s, s.browser() as http:
        port = s.base.rsplit(":", 1)[1]
        auth = cli_headers(s.settings) if auth_on else {}
        for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.evil.example:{port}",
                     "localhost.", "", "[::2]"):
            status, body, _ = await get(http, f"{s.base}/api/v1/dags",
                                        headers={"Host": host, **auth})
            assert status == 403 and "base_url" in body["message"], host
            async with http.post(f"{s.base}/api/v1/dags/greet/runs", json={},
                                 headers={"Host": host, **auth}) as resp:
                assert resp.status == 403, host
        for host in ("127.0.0.1", f"127.0.0.1:{port}", "localhost", f"LOCALHOST:{port}",
                     "[::1]", f"[::1]:{port}", "dagd.example.com"):
            status, _, _ = await get(http, f"{s.base}/api/v1/dags",
                                     headers={"Host": host, **auth})
            assert status == 200, host
    assert s.runs() == 0


@pytest.mark.parametrize("path", [
    "/hooks/../api/v1/dags", "/hooks/%2e%2e/api/v1/dags", "/hooks/x/..%2f..%2fapi/v1/dags",
    "/static/../api/v1/dags", "/static/%2e%2e/api/v1/dags", "/login/../api/v1/dags",
    "/login/%2e%2e/api/v1/dags", "//api/v1/dags", "/api/v1/dags/", "/API/v1/dags",
])
async def test_a_path_that_only_looks_open_gets_no_pass(site: Site, path: str) -> None:
    """Sent as written (a raw request line: no client normalises it)."""
    host, port = site.base.removeprefix("http://").split(":")
    stream = await anyio.connect_tcp(host, int(port))
    async with stream:
        await stream.send(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                          .encode())
        answer = b""
        with anyio.fail_after(10):
            async for chunk in stream:
                answer += chunk
    status = int(answer.split(b" ", 2)[1])
    assert status in (401, 404, 303), (path, answer[:300])
    assert b'"dags"' not in answer
