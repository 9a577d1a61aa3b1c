"""SqlTask against a real SQLite file and a real PostgreSQL server started for the session:
bound parameters, one transaction per attempt, rows and row counts to XCom, templates,
limits, and a timeout that stops the query on the server."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from glob import glob
from pathlib import Path
from typing import Any

import pytest

from dagd import DAG, DagDefinitionError, SqlTask
from dagd.config import Settings
from integration.harness import StartEngine, read_text, wait_until

pytestmark = pytest.mark.anyio

WriteDag = Callable[[str, str], Path]
PG_PASSWORD_ENV = "DAGD_TEST_PG_PASSWORD"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"  # an absolute path: sqlite:////tmp/...


def rows(path: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(query).fetchall()


# -- definition errors (no engine) ------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"conn": "postgresql://u:hunter2@db/x"}, "conn", "holds a password"),
        ({"conn": "mysql://db/x"}, "conn", "unsupported database URL scheme"),
        ({"conn": "sqlite://relative.db"}, "conn", "sqlite:///relative/path.db"),
        ({"conn": "{{ conf.db }}"}, "conn", "not a template"),
        ({"fetch": "many"}, "fetch", "fetch must be one of"),
        ({"max_rows": 0}, "max_rows", "positive integer"),
        ({"sql": "missing.sql"}, "sql", "not found"),
        ({"sql": []}, "sql", "sql must be"),
        ({"parameters": "x"}, "parameters", "dict"),
    ],
)
def test_bad_settings_are_refused_when_the_dag_is_defined(
    kwargs: dict[str, Any], field: str, words: str
) -> None:
    settings: dict[str, Any] = {"conn": "sqlite:///x.db", "sql": "SELECT 1", **kwargs}
    with DAG("bad_sql"), pytest.raises(DagDefinitionError) as caught:
        SqlTask(task_id="q", **settings)
    assert caught.value.field == field
    assert caught.value.task_id == "q"
    assert words in caught.value.message


# -- SQLite -------------------------------------------------------------------------------------
BASICS = """
from dagd import DAG, SqlTask, chain

with DAG("basics") as basics:
    create = SqlTask(task_id="create", conn="{url}", sql=[
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL)",
        "INSERT INTO items (name, price) VALUES (:name, :price)",
    ], parameters={"name": "apple", "price": 1.5})
    more = SqlTask(task_id="more", conn="{url}",
                   sql="INSERT INTO items (name, price) VALUES (?, ?), ($3, $4)",
                   parameters=["pear", 2.0, "plum", 0.5])
    pick = SqlTask(task_id="pick", conn="{url}", parameters={"min": 1},
                   sql="SELECT name, price FROM items WHERE price >= :min ORDER BY name")
    count = SqlTask(task_id="count", conn="{url}", fetch="one",
                    sql="SELECT count(*) AS n, 'a;b' AS text FROM items -- a ; in a comment")
    script = SqlTask(task_id="script", conn="{url}", fetch="rowcount", sql='''
        UPDATE items SET price = price * 2 WHERE name = :name;
        DELETE FROM items WHERE name = 'plum';
    ''', parameters={"name": "apple"})
    chain(create, more, pick, count, script)
"""


async def test_sqlite_create_insert_select_with_bound_parameters(
    tmp_path: Path, write_dag: WriteDag, start_engine: StartEngine
) -> None:
    db = tmp_path / "shop.db"
    write_dag("basics.py", BASICS.replace("{url}", sqlite_url(db)))
    async with start_engine() as h:
        run_id, state = await h.run("basics")
        xcoms = {t: await h.xcom(run_id, t) for t in ("create", "more", "pick", "count",
                                                       "script")}
    assert state == "success", xcoms
    assert xcoms == {
        "create": {"rowcount": 1},  # of the last statement
        "more": {"rowcount": 2},
        "pick": [{"name": "apple", "price": 1.5}, {"name": "pear", "price": 2.0}],
        "count": {"n": 3, "text": "a;b"},
        "script": {"rowcount": 1},  # the DELETE
    }
    assert rows(db, "SELECT name, price FROM items ORDER BY id") == [("apple", 3.0),
                                                                    ("pear", 2.0)]


FAILS = """
from dagd import DAG, SqlTask

with DAG("fails") as fails:
    SqlTask(task_id="load", conn="{url}", sql=[
        "INSERT INTO kept (n) VALUES (2)",
        "UPDATE kept SET n = n + 10",
        "INSERT INTO missing_table (n) VALUES (3)",
    ])
"""


async def test_a_failing_statement_rolls_back_the_whole_transaction(
    tmp_path: Path, write_dag: WriteDag, start_engine: StartEngine
) -> None:
    db = tmp_path / "w.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE kept (n INTEGER)")
        conn.execute("INSERT INTO kept VALUES (1)")
    write_dag("fails.py", FAILS.replace("{url}", sqlite_url(db)))
    async with start_engine() as h:
        run_id, state = await h.run("fails")
        [attempt] = await h.attempts(run_id, "load")
    assert state == "failed"
    assert attempt.error is not None
    assert "task 'load'" in attempt.error
    assert "statement 3 of 3 failed" in attempt.error
    assert "no such table: missing_table" in attempt.error
    assert "rolled back" in await read_text(attempt.log_path)
    assert rows(db, "SELECT n FROM kept") == [(1,)]


TEMPLATES = """
from dagd import DAG, SqlTask

with DAG("templated", params={"table": "people", "n": 2}) as templated:
    echo = SqlTask(
        task_id="echo", conn="{url}", fetch="one",
        sql="SELECT :day AS day, :who AS who, :n + 1 AS n_plus_one, :fixed AS fixed, "
            "(SELECT count(*) FROM {{ params.table }}) AS in_table",
        parameters={"day": "{{ ds }}", "who": "{{ conf.who }}", "n": "{{ params.n }}",
                    "fixed": 7},
    )
    save = SqlTask(task_id="save", conn="{url}",
                   sql="INSERT INTO people (name) VALUES (:name)",
                   parameters={"name": "{{ conf.who }}"})
    echo >> save
"""


async def test_templates_in_parameters_and_an_injection_attempt_via_conf_stays_data(
    tmp_path: Path, write_dag: WriteDag, start_engine: StartEngine
) -> None:
    db = tmp_path / "t.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE people (name TEXT)")
    write_dag("templated.py", TEMPLATES.replace("{url}", sqlite_url(db)))
    attack = "x'); DROP TABLE people; --"
    async with start_engine() as h:
        run_id = await h.engine.trigger("templated", conf={"who": attack, "n": 41},
                                        logical_date=datetime(2024, 5, 17, tzinfo=UTC))
        state = await h.wait(run_id)
        echo = await h.xcom(run_id, "echo")
    assert state == "success"
    # conf overrides a declared param; a rendered template is text, bound as such
    assert echo == {"day": "2024-05-17", "who": attack, "n_plus_one": 42, "fixed": 7,
                    "in_table": 0}
    assert rows(db, "SELECT name FROM people") == [(attack,)]


LIMITS = """
from dagd import DAG, SqlTask

COUNT_TO = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) "

with DAG("limits") as limits:
    SqlTask(task_id="at_limit", conn="{url}", max_rows=5,
            sql=COUNT_TO.format(n=5) + "SELECT x FROM c")
    SqlTask(task_id="over_limit", conn="{url}", max_rows=5, sql=[
        COUNT_TO.format(n=6) + "INSERT INTO loaded SELECT x FROM c",
        "SELECT n FROM loaded",
    ])
    SqlTask(task_id="counted", conn="{url}", fetch="rowcount",
            sql=COUNT_TO.format(n=2500) + "SELECT x FROM c")
"""


async def test_more_rows_than_max_rows_fails_and_commits_nothing(
    tmp_path: Path, write_dag: WriteDag, start_engine: StartEngine
) -> None:
    db = tmp_path / "l.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE loaded (n INTEGER)")
    write_dag("limits.py", LIMITS.replace("{url}", sqlite_url(db)))
    async with start_engine() as h:
        run_id, state = await h.run("limits")
        states = await h.states(run_id)
        at_limit = await h.xcom(run_id, "at_limit")
        counted = await h.xcom(run_id, "counted")
        [over] = await h.attempts(run_id, "over_limit")
    assert state == "failed"
    assert states == {"at_limit": "success", "over_limit": "failed", "counted": "success"}
    assert at_limit == [{"x": n} for n in range(1, 6)]
    assert counted == {"rowcount": 2500}  # counting is not capped
    assert over.error is not None
    assert "more than max_rows=5 rows" in over.error
    assert rows(db, "SELECT count(*) FROM loaded") == [(0,)]


CONNECTED = """
from pathlib import Path
from dagd import DAG, SqlTask

with DAG("connected") as connected:
    SqlTask(task_id="report", conn="warehouse", sql="queries/report.sql",
            parameters={"min": 2})
    SqlTask(task_id="nowhere", conn="no_such_conn", sql="SELECT 1")
    SqlTask(task_id="unopenable", conn="sqlite:////no-such-dir/x.db", sql="SELECT 1")
"""


async def test_a_named_connection_and_a_sql_file_next_to_the_dag(
    tmp_path: Path, dags_folder: Path, settings: Settings, write_dag: WriteDag,
    start_engine: StartEngine,
) -> None:
    db = tmp_path / "warehouse.db"
    (dags_folder / "queries").mkdir()
    (dags_folder / "queries" / "report.sql").write_text(
        "-- the report\nCREATE TEMP TABLE n AS SELECT 1 AS v UNION ALL SELECT 2 UNION ALL "
        "SELECT 3;\nSELECT v FROM n WHERE v >= :min ORDER BY v;\n"
    )
    write_dag("connected.py", CONNECTED)
    # The engine hands the config's [connections.*] to the tasks.
    custom = replace(settings, connections={"warehouse": {"url": sqlite_url(db)}})
    async with start_engine(custom) as h:
        run_id, _ = await h.run("connected")
        report = await h.xcom(run_id, "report")
        [nowhere] = await h.attempts(run_id, "nowhere")
        [unopenable] = await h.attempts(run_id, "unopenable")
    assert report == [{"v": 2}, {"v": 3}]
    assert unopenable.error is not None
    assert "cannot open sqlite:////no-such-dir/x.db" in unopenable.error
    assert nowhere.error is not None
    assert "no connection named 'no_such_conn'" in nowhere.error
    assert "known: warehouse" in nowhere.error


SLOW_SQLITE = """
from dagd import DAG, SqlTask

with DAG("slow_sqlite") as slow_sqlite:
    SqlTask(task_id="count_far", conn="{url}", execution_timeout=1.0, sql='''
        WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000)
        SELECT count(*) AS n FROM c
    ''')
"""


def sqlite_threads() -> int:
    return sum("_connection_worker_thread" in t.name for t in threading.enumerate())


async def test_a_slow_sqlite_query_is_interrupted_at_the_timeout(
    tmp_path: Path, write_dag: WriteDag, start_engine: StartEngine
) -> None:
    db = tmp_path / "slow.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (n INTEGER)")
    write_dag("slow_sqlite.py", SLOW_SQLITE.replace("{url}", sqlite_url(db)))
    async with start_engine() as h:
        baseline = sqlite_threads()  # the store's own connection
        run_id, state = await h.run("slow_sqlite")
        [attempt] = await h.attempts(run_id, "count_far")
        # The task's connection thread ends with the attempt: its query stopped.
        await wait_until(lambda: sqlite_threads() == baseline, deadline=5.0,
                         what="the SQL task's SQLite thread to end")
    assert state == "failed"
    assert attempt.error is not None and "execution_timeout of 1s exceeded" in attempt.error
    assert attempt.ended_at is not None and attempt.ended_at - attempt.started_at < 4.0
    # No statement holds the file: a writer gets the lock at once.
    with sqlite3.connect(db, timeout=0) as conn:
        conn.execute("INSERT INTO t VALUES (1)")


# -- PostgreSQL ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    user: str
    password: str
    database: str

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    async def connect(self) -> Any:
        import asyncpg

        return await asyncpg.connect(host=self.host, port=self.port, user=self.user,
                                     password=self.password, database=self.database)


def _pg_bindir() -> str | None:
    found = sorted(glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return os.path.dirname(found[-1])
    on_path = shutil.which("postgres")
    return os.path.dirname(on_path) if on_path else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL cluster of its own: initdb in a temp dir, `postgres` on a free port of
    127.0.0.1 (password auth) and a private socket dir (trust), stopped at session end."""
    bindir = _pg_bindir()
    missing = "PostgreSQL binaries not found (apt-get install postgresql)"
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        bindir, missing = None, "asyncpg is not installed (pip install 'dagd[postgres]')"
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}; CI must run the PostgreSQL tests")
        pytest.skip(f"{missing}; CI runs these")
    # postgres refuses to run as root: as root, run it as the `postgres` user.
    run_as: dict[str, Any] = {}
    root = tempfile.mkdtemp(prefix="dagd-pg-")
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        os.chown(root, account.pw_uid, account.pw_gid)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
    server = PgServer("127.0.0.1", _free_port(), "dagd", "pg-test-secret", "dagd_test")
    pwfile = Path(root, "pwfile")
    pwfile.write_text(server.password + "\n")
    if run_as:
        os.chown(pwfile, run_as["user"], run_as["group"])
    data = f"{root}/data"

    def run(*cmd: str) -> None:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60,
                              check=False, **run_as)
        assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}"

    run(f"{bindir}/initdb", "-D", data, "-U", server.user, f"--pwfile={pwfile}",
        "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync")
    log = open(f"{root}/server.log", "w")  # closed at the end
    process = subprocess.Popen(
        [f"{bindir}/postgres", "-D", data, "-k", root, "-p", str(server.port),
         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
        stdout=log, stderr=subprocess.STDOUT, env=env, **run_as,
    )
    try:
        deadline = time.monotonic() + 30.0
        while True:  # no notification of readiness: poll within the deadline
            assert process.poll() is None, Path(root, "server.log").read_text()
            ready = subprocess.run([f"{bindir}/pg_isready", "-q", "-h", root, "-p",
                                    str(server.port)], env=env, check=False)
            if ready.returncode == 0:
                break
            assert time.monotonic() < deadline, "PostgreSQL did not start within 30 s"
            time.sleep(0.05)
        run(f"{bindir}/createdb", "-h", root, "-p", str(server.port), "-U", server.user,
            server.database)
        yield server
    finally:
        try:
            run(f"{bindir}/pg_ctl", "stop", "-D", data, "-m", "fast", "-w", "-t", "20")
            process.wait(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
            log.close()
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_settings(pg_server: PgServer, settings: Settings,
                monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings with `[connections.pg]`: the server's URL, its password in the environment."""
    monkeypatch.setenv(PG_PASSWORD_ENV, pg_server.password)
    monkeypatch.setenv(PG_PASSWORD_ENV + "_WRONG", "not-the-password")
    return replace(settings, connections={
        "pg": {"url": pg_server.url, "password_env": PG_PASSWORD_ENV},
        "pg_wrong": {"url": pg_server.url, "password_env": PG_PASSWORD_ENV + "_WRONG"},
    })


PG_LOAD = """
from dagd import DAG, SqlTask

with DAG("pg_load", params={"qty": 1}) as pg_load:
    load = SqlTask(task_id="load", conn="pg", sql=[
        "DROP TABLE IF EXISTS sales",
        "CREATE TABLE sales (id serial PRIMARY KEY, day date NOT NULL, item text, qty int, "
        "price numeric(8, 2))",
        "INSERT INTO sales (day, item, qty, price) VALUES "
        "(:day, :item, :qty, :price), (:day, 'pear', 1, 0.5)",
    ], parameters={"day": "{{ ds }}", "item": "{{ conf.item }}", "qty": "{{ params.qty }}",
                   "price": "2.25"})
    report = SqlTask(task_id="report", conn="pg", parameters=["{{ ds }}", 1],
                     sql="SELECT item, qty, price::text AS price_text, day FROM sales "
                         "WHERE day = $1 AND qty >= $2 ORDER BY qty DESC")
    load >> report
"""


async def test_postgres_insert_and_select_with_bound_parameters(
    pg_server: PgServer, pg_settings: Settings, write_dag: WriteDag, start_engine: StartEngine
) -> None:
    write_dag("pg_load.py", PG_LOAD)
    attack = "pear'); DROP TABLE sales; --"
    async with start_engine(pg_settings) as h:
        run_id = await h.engine.trigger("pg_load", conf={"item": attack, "qty": 3},
                                        logical_date=datetime(2024, 5, 17, tzinfo=UTC))
        state = await h.wait(run_id)
        load = await h.xcom(run_id, "load")
        report = await h.xcom(run_id, "report")
    assert state == "success", await h.attempts(run_id, "load")
    assert load == {"rowcount": 2}
    assert report == [
        {"item": attack, "qty": 3, "price_text": "2.25", "day": "2024-05-17"},
        {"item": "pear", "qty": 1, "price_text": "0.50", "day": "2024-05-17"},
    ]


PG_TYPES = """
from dagd import DAG, SqlTask

with DAG("pg_types") as pg_types:
    SqlTask(task_id="types", conn="pg", fetch="one", sql=(
        "SELECT 12.50::numeric AS price, TIMESTAMPTZ '2024-05-01 12:30:00+00' AS at, "
        "DATE '2024-05-01' AS day, TIME '08:15:00' AS clock, "
        "'6b9f5c8e-2f1d-4c0a-9a57-2b7c1c1f6f00'::uuid AS id, decode('0102ff', 'hex') AS raw, "
        "'{\\"a\\": [1, 2.5]}'::jsonb AS doc, INTERVAL '90 minutes' AS span, "
        "ARRAY[1, 2, 3] AS nums, NULL::text AS nothing, true AS flag, "
        "'NaN'::float8 AS nan, 123456789012345678901234567890::numeric AS big, "
        "'10.0.0.1'::inet AS addr"
    ))
"""


async def test_postgres_values_become_json(
    pg_server: PgServer, pg_settings: Settings, write_dag: WriteDag, start_engine: StartEngine
) -> None:
    write_dag("pg_types.py", PG_TYPES)
    async with start_engine(pg_settings) as h:
        run_id, state = await h.run("pg_types")
        value = await h.xcom(run_id, "types")
    assert state == "success"
    assert value == {
        "price": "12.50",  # Decimal: a string, exact
        "at": "2024-05-01T12:30:00+00:00",
        "day": "2024-05-01",
        "clock": "08:15:00",
        "id": "6b9f5c8e-2f1d-4c0a-9a57-2b7c1c1f6f00",
        "raw": "AQL/",  # base64
        "doc": {"a": [1, 2.5]},
        "span": 5400.0,  # seconds
        "nums": [1, 2, 3],
        "nothing": None,
        "flag": True,
        "nan": "nan",
        "big": "123456789012345678901234567890",
        "addr": "10.0.0.1",
    }


PG_FAILS = """
from dagd import DAG, SqlTask

with DAG("pg_fails") as pg_fails:
    SqlTask(task_id="divide", conn="pg", sql=[
        "CREATE TABLE IF NOT EXISTS pg_kept (n int)",
        "INSERT INTO pg_kept VALUES (1)",
        "SELECT n / 0 FROM pg_kept",
    ])
    SqlTask(task_id="locked_out", conn="pg_wrong", sql="SELECT 1")
"""


async def test_postgres_failing_statement_is_named_and_rolled_back(
    pg_server: PgServer, pg_settings: Settings, write_dag: WriteDag, start_engine: StartEngine
) -> None:
    write_dag("pg_fails.py", PG_FAILS)
    async with start_engine(pg_settings) as h:
        run_id, state = await h.run("pg_fails")
        [attempt] = await h.attempts(run_id, "divide")
        [locked_out] = await h.attempts(run_id, "locked_out")
    assert locked_out.error is not None
    assert f"cannot connect to {pg_server.url}: InvalidPasswordError" in locked_out.error
    assert state == "failed"
    assert attempt.error is not None
    assert "task 'divide'" in attempt.error
    assert "statement 3 of 3 failed: DivisionByZeroError: division by zero" in attempt.error
    conn = await pg_server.connect()
    try:  # the CREATE TABLE was rolled back too
        assert await conn.fetchval("SELECT to_regclass('pg_kept')") is None
    finally:
        await conn.close()


PG_SLOW = """
from dagd import DAG, SqlTask

with DAG("pg_slow") as pg_slow:
    SqlTask(task_id="sleepy", conn="pg", execution_timeout=1.5, sql="SELECT pg_sleep(60)")
"""


async def test_postgres_timeout_cancels_the_query_on_the_server(
    pg_server: PgServer, pg_settings: Settings, write_dag: WriteDag, start_engine: StartEngine
) -> None:
    write_dag("pg_slow.py", PG_SLOW)
    conn = await pg_server.connect()
    query = ("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' "
             "AND state = 'active' AND pid <> pg_backend_pid()")

    async def started() -> bool:
        return bool(await conn.fetchval(query) == 1)

    async def gone() -> bool:
        return bool(await conn.fetchval(query) == 0)

    try:
        async with start_engine(pg_settings) as h:
            run_id = await h.trigger("pg_slow")
            await wait_until(started, deadline=10.0, what="pg_sleep(60) to run on the server")
            state = await h.wait(run_id)
            [attempt] = await h.attempts(run_id, "sleepy")
        assert state == "failed"
        assert attempt.error is not None and "execution_timeout" in attempt.error
        assert attempt.ended_at is not None and attempt.ended_at - attempt.started_at < 5.0
        await wait_until(gone, deadline=5.0,
                         what="pg_sleep(60) to be gone from pg_stat_activity")
    finally:
        await conn.close()
