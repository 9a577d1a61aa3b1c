"""The `dagd db check|backup|restore|vacuum` commands (cli.py registers them); the work
is in dbtools.py, run in a worker thread (and imported only then: it loads the store,
which `dagd dags check` must not wait for).

`check` exits 1 when integrity_check finds a problem; `backup` works with the daemon
running; `restore` and `vacuum` refuse while one runs, naming it.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console
from rich.markup import escape

from dagd.config import Settings
from dagd.tables import Column, fitted


def add_parsers(sub: Any) -> None:
    db = sub.add_parser("db", help="check, back up, restore or vacuum the database")
    dsub = db.add_subparsers(dest="db_command", required=True)
    dsub.add_parser("check", help="integrity_check, each table's rows and bytes, the logs "
                    "folder's size; exit 1 on a problem")
    backup = dsub.add_parser(
        "backup", help="a consistent copy of the database, daemon running or not",
        description="Copy the database with SQLite's online backup API (the daemon may go "
                    "on running): the copy holds every run committed before it began. "
                    "Written to a temporary file and renamed: a failure leaves nothing. "
                    "Mode 0600.")
    backup.add_argument("file", type=Path, metavar="FILE")
    backup.add_argument("--with-logs", action="store_true",
                        help="also copy the logs folder to FILE.logs/")
    backup.add_argument("--force", action="store_true", help="replace an existing FILE")
    restore = dsub.add_parser(
        "restore", help="replace the database with a backup (daemon stopped)",
        description="Replace the database with FILE, which must be a dagd database that "
                    "passes integrity_check. Only with no daemon running. The current "
                    "database is kept as dagd.db.before-restore-<time>.")
    restore.add_argument("file", type=Path, metavar="FILE")
    dsub.add_parser("vacuum", help="rewrite the database to its smallest size (daemon "
                    "stopped)")


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 100_000 else f"{n:,} bytes"


async def cmd_check(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    from dagd import dbtools

    report = await anyio.to_thread.run_sync(dbtools.check, settings)
    say = functools.partial(console.print, highlight=False, soft_wrap=True)
    say(f"database {escape(str(report.path))}: {_mb(report.file_bytes)}, -wal "
        f"{_mb(report.wal_bytes)}")
    if not report.ok:
        say("[red]integrity_check FAILED[/]:")
        for problem in report.problems:
            say(f"  {escape(problem)}")
        say("fix: restore a backup with `dagd db restore FILE` (daemon stopped)")
        return 1
    say(f"integrity_check: [green]ok[/]; schema version {report.schema_version} (this dagd: "
        f"{dbtools.schema_version()})")
    sized = any(t.bytes is not None for t in report.tables)
    columns = [Column("table", [t.name for t in report.tables]),
               Column("rows", [f"{t.rows:,}" for t in report.tables], justify="right")]
    if sized:
        columns.append(Column("bytes (with indexes)",
                              [f"{t.bytes:,}" for t in report.tables], justify="right"))
    console.print(fitted("tables", columns, console.width))
    if not sized:
        say("(this SQLite has no dbstat table: rows only)")
    say(f"logs {escape(str(settings.logs_dir))}: {report.logs.files:,} files, "
        f"{_mb(report.logs.bytes)}")
    return 0


async def cmd_backup(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    from dagd import dbtools

    done = await anyio.to_thread.run_sync(functools.partial(
        dbtools.backup, settings, args.file, with_logs=args.with_logs, force=args.force))
    console.print(f"backed up {escape(str(settings.db_path))} to {escape(str(done.path))}: "
                  f"{_mb(done.bytes)}, {done.runs:,} runs, schema version "
                  f"{done.schema_version}, integrity ok ({done.seconds:.2f}s)",
                  highlight=False, soft_wrap=True)
    if done.logs is not None:
        console.print(f"logs: {done.log_files:,} files copied to {escape(str(done.logs))}",
                      highlight=False, soft_wrap=True)
    return 0


async def cmd_restore(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    from dagd import dbtools

    done = await anyio.to_thread.run_sync(dbtools.restore, settings, args.file)
    kept = (f"; the database it replaced is kept as {escape(str(done.kept))}"
            if done.kept else "")
    console.print(f"restored {escape(str(args.file))} to {escape(str(done.path))}: "
                  f"{done.runs:,} runs, schema version {done.schema_version}{kept}",
                  highlight=False, soft_wrap=True)
    moved, aside = done.logs_moved
    if moved:
        console.print(f"the logs of {moved} run(s) it does not have moved to "
                      f"{escape(str(aside))}", highlight=False, soft_wrap=True)
    if done.schema_version < dbtools.schema_version():
        console.print(f"`dagd run` migrates it to schema version {dbtools.schema_version()} "
                      "at start", highlight=False)
    return 0


async def cmd_vacuum(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    from dagd import dbtools

    before, after = await anyio.to_thread.run_sync(dbtools.vacuum, settings)
    console.print(f"vacuumed {escape(str(settings.db_path))}: {_mb(before)} -> {_mb(after)}",
                  highlight=False, soft_wrap=True)
    return 0


def commands(console: Console) -> dict[tuple[str, str | None], Any]:
    """cli.py's COMMANDS entries for these commands."""
    table = {("db", "check"): cmd_check, ("db", "backup"): cmd_backup,
             ("db", "restore"): cmd_restore, ("db", "vacuum"): cmd_vacuum}
    return {key: functools.partial(_with_console, fn, console) for key, fn in table.items()}


async def _with_console(fn: Any, console: Console, settings: Settings,
                        args: argparse.Namespace) -> int:
    return int(await fn(settings, args, console))
