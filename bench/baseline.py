"""The physical limit the engine is measured against: the same fan-out, no engine.

What a minimal correct orchestrator must write for a fan-out of no-op async tasks, on
bare asyncio + aiosqlite: one run row and a task-instance row per task, each task marked
`running` (committed) before it is started and `success` (committed) once it returned,
the run marked `success` at the end. WAL, `synchronous` as given, every transaction
`BEGIN IMMEDIATE`, and the engine's batching shape: a tick commits the ends of the
tasks that returned since the last one together with the starts of up to
min(parallelism, 500) more, then starts them. No attempt rows, no history, no XCom, no
logs, no DAG objects: the figure is the floor, not a competitor.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import deque
from pathlib import Path
from typing import Any

import aiosqlite

from dagd.store.store import size_wal

# The engine's DISPATCH_PER_TICK: attempts started per tick at most.
PER_TICK = 500

SCHEMA = """
CREATE TABLE IF NOT EXISTS run (
    id INTEGER PRIMARY KEY, dag_id TEXT NOT NULL, state TEXT NOT NULL,
    created_at REAL NOT NULL, started_at REAL, ended_at REAL
);
CREATE TABLE IF NOT EXISTS task_instance (
    id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES run (id),
    task_id TEXT NOT NULL, state TEXT NOT NULL, try_number INTEGER NOT NULL DEFAULT 0,
    started_at REAL, ended_at REAL, updated_at REAL NOT NULL,
    UNIQUE (run_id, task_id)
);
"""
START = ("UPDATE task_instance SET state = 'running', try_number = 1, started_at = ?, "
         "updated_at = ? WHERE id = ? AND state = 'queued'")
END = ("UPDATE task_instance SET state = 'success', ended_at = ?, updated_at = ? "
       "WHERE id = ? AND state = 'running'")


async def noop() -> None:
    return None


async def fan_out(path: Path, tasks: int, *, parallelism: int, synchronous: str) -> float:
    """Seconds to record and run a root task and then `tasks` tasks downstream of it."""
    # The engine's store grows the write-ahead log to its working size as it opens
    # (`size_wal`): the same here, on a connection that stays open until this one
    # is, as SQLite deletes the log when the last connection closes.
    sizer = sqlite3.connect(path, isolation_level=None)
    sizer.execute("PRAGMA journal_mode = WAL")
    size_wal(sizer, path, synchronous)
    db = await aiosqlite.connect(path, isolation_level=None)
    sizer.close()
    try:
        await db.execute("PRAGMA journal_mode = WAL")
        await db.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        await db.execute("PRAGMA foreign_keys = ON")
        await db.executescript(SCHEMA)
        run_id = 1 + (await (await db.execute("SELECT count(*) FROM run")).fetchone())[0]
        first = 1 + (await (await db.execute("SELECT count(*) FROM task_instance"))
                     .fetchone())[0]
        start = time.perf_counter()
        await _run(db, run_id, first, tasks, parallelism)
        return time.perf_counter() - start
    finally:
        await db.close()


async def _run(db: aiosqlite.Connection, run_id: int, first: int, tasks: int,
               parallelism: int) -> None:
    now = time.time()
    root, children = first, range(first + 1, first + 1 + tasks)
    await _tx(db, [
        ("INSERT INTO run (id, dag_id, state, created_at, started_at) "
         "VALUES (?, 'fan_out', 'running', ?, ?)", [(run_id, now, now)]),
        ("INSERT INTO task_instance (id, run_id, task_id, state, updated_at) "
         "VALUES (?, ?, ?, 'queued', ?)", [(root, run_id, "root", now)]),
        ("INSERT INTO task_instance (id, run_id, task_id, state, updated_at) "
         "VALUES (?, ?, ?, 'scheduled', ?)",
         [(i, run_id, f"t{i - first - 1}", now) for i in children]),
    ])
    loop = asyncio.get_running_loop()
    ready: deque[int] = deque([root])
    returned: list[int] = []
    wake = asyncio.Event()
    running = 0
    tasks_alive: set[asyncio.Task[None]] = set()

    def done(task_id: int) -> None:
        returned.append(task_id)
        wake.set()

    while ready or running or returned:
        ended, returned = returned, []
        running -= len(ended)
        statements: Statements = []
        now = time.time()
        if ended:
            statements.append((END, [(now, now, i) for i in ended]))
            if root in ended:  # the fan-out's tasks become ready
                statements.append(("UPDATE task_instance SET state = 'queued', updated_at = ? "
                                   "WHERE run_id = ? AND state = 'scheduled'",
                                   [(now, run_id)]))
                ready.extend(children)
        starts = [ready.popleft()
                  for _ in range(min(parallelism - running, PER_TICK, len(ready)))]
        if starts:
            statements.append((START, [(now, now, i) for i in starts]))
        if not ready and not running and not starts:
            statements.append(("UPDATE run SET state = 'success', ended_at = ? WHERE id = ?",
                               [(now, run_id)]))
        await _tx(db, statements)
        for task_id in starts:  # only once their `running` is committed
            task = loop.create_task(noop())
            tasks_alive.add(task)
            task.add_done_callback(lambda t, i=task_id: (tasks_alive.discard(t), done(i)))
        running += len(starts)
        wake.clear()
        if not returned and running and (not ready or running >= parallelism):
            await wake.wait()


Statements = list[tuple[str, list[tuple[Any, ...]]]]


async def _tx(db: aiosqlite.Connection, statements: Statements) -> None:
    await db.execute("BEGIN IMMEDIATE")
    for sql, rows in statements:
        cur = await db.executemany(sql, rows)
        if sql in (START, END) and cur.rowcount != len(rows):
            raise RuntimeError(f"{cur.rowcount} of {len(rows)} rows matched")
    await db.execute("COMMIT")
