"""SqlTask: run SQL statements in one transaction against SQLite (built in, aiosqlite) or
PostgreSQL (the optional extra `dagd[postgres]`, asyncpg), in the daemon's loop.

Owns: running the statements (committed at the end, rolled back on any error), what goes
to XCom (rows as dicts, at most `max_rows`, or the row count) and stopping a query when
the attempt is cancelled: SQLite's `interrupt()`; for PostgreSQL, asyncpg sends the server
a cancel request and the connection is closed. The pure parts (statements, placeholders,
URLs, values) live in `dagd.kinds.sqltext`. Parameters are always bound by the driver; a
value rendered into the SQL text itself must be a name, a number or an ISO date
(`render_sql`).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiosqlite
import anyio
import orjson

from dagd.authoring.context import Context
from dagd.authoring.tasks import BaseTask
from dagd.errors import DagDefinitionError, DagdError
from dagd.executors.logs import current_log
from dagd.kinds.connections import ConnectionNotFound
from dagd.kinds.sqltext import (
    Statement,
    Target,
    bind,
    check_url,
    pg_args,
    resolve_target,
    split_statements,
    status_count,
    to_json_value,
)
from dagd.templating import render, render_sql

FETCH_MODES = ("all", "one", "none", "rowcount")
SQLITE_BUSY_TIMEOUT = 5.0  # seconds to wait for another writer's lock
CLEANUP_DEADLINE = 10.0  # seconds for rollback and close after an error or a cancel
CHUNK = 1000  # rows fetched at a time when only counting
PROGRESS_OPS = 1000  # SQLite VM steps between checks of the stop flag


class SqlError(DagdError):
    """A statement failed, a parameter is missing, or the result breaks a limit."""

    code = "sql"


# -- the task --------------------------------------------------------------------------------
class SqlTask(BaseTask):
    """Run `sql` (one string, a list of statements, or a `.sql` file next to the DAG file)
    on `conn` in one transaction: committed at the end, rolled back on any error."""

    kind = "sql"

    def __init__(
        self,
        *,
        task_id: str,
        conn: str,
        sql: str | Path | Sequence[str],
        parameters: Mapping[str, Any] | Sequence[Any] | None = None,
        fetch: str | None = None,
        max_rows: int = 1000,
        **kwargs: Any,
    ) -> None:
        super().__init__(task_id=task_id, **kwargs)
        where: dict[str, Any] = {"dag_id": self.dag.dag_id, "task_id": self.task_id,
                                 "file": self.fileloc, "line": self.lineno}
        self.conn = self._check_conn(conn, where)
        self.sql: str | list[str] | None = None
        self.sql_file: Path | None = None
        self._check_sql(sql, where)
        if parameters is not None and not isinstance(parameters, Mapping | list | tuple):
            raise DagDefinitionError(f"parameters must be a dict (for :name) or a list (for "
                                     f"$1, $2, ...), got {type(parameters).__name__}",
                                     field="parameters", **where)
        self.parameters = parameters
        if fetch is not None and fetch not in FETCH_MODES:
            raise DagDefinitionError(f"fetch must be one of {', '.join(FETCH_MODES)} (or "
                                     f"None: rows for a query, else the row count), "
                                     f"got {fetch!r}", field="fetch", **where)
        self.fetch = fetch
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
            raise DagDefinitionError(f"max_rows must be a positive integer, got {max_rows!r}",
                                     field="max_rows", **where)
        self.max_rows = max_rows

    @staticmethod
    def _check_conn(conn: Any, where: dict[str, Any]) -> str:
        if not isinstance(conn, str) or not conn.strip():
            raise DagDefinitionError(f"conn must be a connection's name or a database URL, "
                                     f"got {conn!r}", field="conn", **where)
        if "{{" in conn or "{%" in conn:
            raise DagDefinitionError("conn is not a template: name a connection from the "
                                     "config instead", field="conn", **where)
        if "://" in conn:
            try:
                check_url(conn)
            except ValueError as exc:
                raise DagDefinitionError(str(exc), field="conn", **where) from None
        return conn

    def _check_sql(self, sql: Any, where: dict[str, Any]) -> None:
        if isinstance(sql, Path) or (
            isinstance(sql, str) and sql.strip().endswith(".sql") and not any(
                c.isspace() for c in sql.strip())
        ):
            base = Path(self.dag.fileloc or self.fileloc or ".").parent
            path = base / Path(str(sql).strip())
            if not path.is_file():
                raise DagDefinitionError(f"SQL file {str(path)!r} not found (a .sql path is "
                                         "relative to the DAG file)", field="sql", **where)
            self.sql_file = path
        elif isinstance(sql, str) and sql.strip():
            self.sql = sql
        elif (isinstance(sql, list | tuple) and sql
              and all(isinstance(s, str) and s.strip() for s in sql)):
            self.sql = list(sql)
        else:
            raise DagDefinitionError(f"sql must be SQL text, a list of statements or a .sql "
                                     f"file's path, got {sql!r}", field="sql", **where)

    def describe(self) -> dict[str, Any]:
        data = super().describe()
        data.update(
            conn=self.conn,
            sql=str(self.sql_file) if self.sql_file else self.sql,
            parameters=(sorted(self.parameters) if isinstance(self.parameters, Mapping)
                        else None if self.parameters is None else len(self.parameters)),
            fetch=self.fetch,
            max_rows=self.max_rows,
        )
        return data

    def fail(self, message: str) -> SqlError:
        return SqlError(message, dag_id=self.dag.dag_id, task_id=self.task_id, field="sql")

    # -- running -------------------------------------------------------------------------
    async def execute(self, context: Context) -> Any:
        try:
            target = resolve_target(self.conn, os.environ)
        except (ValueError, ConnectionNotFound) as exc:
            message = exc.message if isinstance(exc, ConnectionNotFound) else str(exc)
            raise SqlError(message, dag_id=self.dag.dag_id, task_id=self.task_id,
                           field="conn") from None
        statements = await self._statements(context, target.dialect)
        parameters = render(self.parameters, context, field="parameters")
        bound: list[tuple[Statement, str, Any]] = []
        for number, stmt in enumerate(statements, 1):
            try:
                text, args = bind(stmt, parameters, target.dialect)
            except ValueError as exc:
                raise self.fail(f"statement {number} of {len(statements)} {exc}: "
                                f"{stmt.brief}") from None
            bound.append((stmt, text, args))
        self._log(f"{len(bound)} statement(s) on {_display(target.url)}, one transaction")
        if target.dialect == "sqlite":
            return await self._run_sqlite(target, bound)
        return await self._run_postgres(target, bound)

    async def _statements(self, context: Context, dialect: str) -> list[Statement]:
        if self.sql_file is not None:
            texts: list[str] = [await anyio.Path(self.sql_file).read_text(encoding="utf-8")]
        else:
            texts = [self.sql] if isinstance(self.sql, str) else list(self.sql or [])
        rendered = [render_sql(text, context, field="sql") for text in texts]
        statements = [s for text in rendered for s in split_statements(text, dialect)]
        if not statements:
            raise self.fail("no SQL statement to run (only whitespace or comments)")
        return statements

    def _log(self, line: str) -> None:
        log = current_log()
        if log is not None:
            log.write(f"[sql] {line}\n")

    def _statement_error(self, number: int, total: int, stmt: Statement,
                         exc: BaseException) -> SqlError:
        detail = str(exc).strip() or "(no message)"
        return self.fail(f"statement {number} of {total} failed: {type(exc).__name__}: "
                         f"{detail} [{stmt.brief}]")

    async def _collect(self, columns: list[str] | None,
                       fetch_many: Callable[[int], Awaitable[Iterable[Any]]],
                       rowcount: int) -> Any:
        """The last statement's result, as `fetch` asks."""
        mode = self.fetch or ("all" if columns is not None else "rowcount")
        if mode == "none":
            return None
        if columns is None:
            return {"rowcount": max(rowcount, 0)} if mode == "rowcount" else (
                [] if mode == "all" else None)
        if len(set(columns)) < len(columns):
            twice = next(c for c in columns if columns.count(c) > 1)
            raise self.fail(f"the result has two columns named {twice!r}: give each "
                            "column its own name (AS ...)")
        if mode == "rowcount":
            count = 0
            while chunk := list(await fetch_many(CHUNK)):
                count += len(chunk)
            return {"rowcount": count}
        rows = list(await fetch_many(1 if mode == "one" else self.max_rows + 1))
        if len(rows) > self.max_rows:
            raise self.fail(f"the query returned more than max_rows={self.max_rows} rows: "
                            "add a LIMIT, raise max_rows, or keep large results in a table "
                            "(nothing was committed)")
        dicts = [{c: to_json_value(v) for c, v in zip(columns, row, strict=True)}
                 for row in rows]
        if mode == "one":
            return dicts[0] if dicts else None
        return dicts

    # -- SQLite ----------------------------------------------------------------------------
    async def _run_sqlite(self, target: Target, bound: list[tuple[Statement, str, Any]]) -> Any:
        try:
            db = await aiosqlite.connect(target.sqlite_path, isolation_level=None,
                                         timeout=SQLITE_BUSY_TIMEOUT)
        except sqlite3.Error as exc:
            raise self.fail(f"cannot open {target.url}: {exc}") from exc
        # interrupt() stops only a statement already running; this flag, checked every
        # PROGRESS_OPS steps, also stops one that starts after the cancel.
        stop = threading.Event()
        done = False
        try:
            await db.set_progress_handler(lambda: int(stop.is_set()), PROGRESS_OPS)
            await db.execute("BEGIN")
            result: Any = None
            for number, (stmt, text, args) in enumerate(bound, 1):
                try:
                    cursor = await db.execute(text, args)
                    if number == len(bound):
                        columns = ([d[0] for d in cursor.description]
                                   if cursor.description else None)
                        result = await self._collect(columns, cursor.fetchmany,
                                                     cursor.rowcount)
                    else:
                        self._log(f"statement {number}: {stmt.brief} -> "
                                  f"{max(cursor.rowcount, 0)} row(s)")
                    await cursor.close()
                except sqlite3.Error as exc:
                    raise self._statement_error(number, len(bound), stmt, exc) from exc
            await db.execute("COMMIT")
            done = True
            self._log(f"statement {len(bound)}: {bound[-1][0].brief}; committed")
            return result
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_DEADLINE):
                if not done:
                    stop.set()
                    await db.interrupt()
                    # Queued behind the interrupted statement: runs once it has stopped.
                    await db.set_progress_handler(lambda: 0, PROGRESS_OPS)
                    try:
                        await db.execute("ROLLBACK")
                        self._log("rolled back")
                    except sqlite3.Error:
                        pass  # no transaction open (BEGIN never ran or COMMIT did)
                await db.close()

    # -- PostgreSQL ------------------------------------------------------------------------
    async def _run_postgres(self, target: Target,
                            bound: list[tuple[Statement, str, Any]]) -> Any:
        try:
            import asyncpg
        except ImportError:
            raise self.fail("PostgreSQL needs the optional extra: pip install "
                            "'dagd[postgres]'") from None
        try:
            conn = await asyncpg.connect(target.url, password=target.password)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise self.fail(f"cannot connect to {_display(target.url)}: "
                            f"{type(exc).__name__}: {exc}") from exc
        transaction = None
        done = False
        try:
            for name in ("json", "jsonb"):
                await conn.set_type_codec(name, schema="pg_catalog", decoder=orjson.loads,
                                          encoder=lambda v: orjson.dumps(v).decode())
            transaction = conn.transaction()
            await transaction.start()
            result: Any = None
            for number, (stmt, text, args) in enumerate(bound, 1):
                try:
                    result = await self._pg_statement(conn, number, len(bound), stmt,
                                                      text, args)
                except (asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
                    raise self._statement_error(number, len(bound), stmt, exc) from exc
            await transaction.commit()
            done = True
            self._log(f"statement {len(bound)}: {bound[-1][0].brief}; committed")
            return result
        finally:
            # On a cancel, asyncpg has already sent the server a cancel request; rollback
            # and close wait for the query to be gone.
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_DEADLINE) as scope:
                if transaction is not None and not done:
                    try:
                        await transaction.rollback()
                        self._log("rolled back")
                    except Exception:
                        pass  # the connection is gone: the server rolls back on its own
                await conn.close()
            if scope.cancelled_caught:
                conn.terminate()

    async def _pg_statement(self, conn: Any, number: int, total: int, stmt: Statement,
                            text: str, args: list[Any]) -> Any:
        prepared = await conn.prepare(text)
        args = pg_args(args, prepared.get_parameters())
        columns = [a.name for a in prepared.get_attributes()] or None
        if number < total:
            if columns is None:
                await prepared.fetch(*args)
                count = status_count(prepared.get_statusmsg())
            else:
                cursor = await prepared.cursor(*args)
                count = 0
                while chunk := await cursor.fetch(CHUNK):
                    count += len(chunk)
            self._log(f"statement {number}: {stmt.brief} -> {count} row(s)")
            return None
        if columns is None:
            await prepared.fetch(*args)
            return await self._collect(None, _no_rows, status_count(prepared.get_statusmsg()))
        cursor = await prepared.cursor(*args)
        return await self._collect(columns, cursor.fetch, -1)


async def _no_rows(_: int) -> list[Any]:
    return []


def _display(url: str) -> str:
    return url.split("?", 1)[0]
