"""The `dagd doctor` command: every check of doctor.py and doctor_dags.py, in order, one
line each as it completes (status, check, what it found) and the fix under a failure or
a warning; exit 1 when any check failed (warnings alone exit 0).

It runs before (and instead of) cli.py's loading of the settings: a config file that
load_settings refuses is the first failed check, and the other checks go on with what
can still be read.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Mapping
from typing import Any

import anyio
from rich.console import Console
from rich.markup import escape

from dagd import doctor, doctor_dags, doctor_dask
from dagd.config import Settings
from dagd.errors import DagdError
from dagd.lock import Holder, daemon_running

STYLE = {doctor.OK: "green", doctor.WARN: "yellow", doctor.FAIL: "bold red"}
WIDTH = 16  # the check's column


def add_parser(sub: Any) -> None:
    sub.add_parser(
        "doctor", help="check the set-up and say what to fix; exit 1 on any failure",
        description="Check the config, the data directory (writable, free space, a local "
                    "file system), the database, the DAGs folder, watched folders and the "
                    "inotify limit, the port, SMTP (when email is used), the service unit, "
                    "and the Python and SQLite versions. Each failure or warning comes with "
                    "what to do. Exit 1 on any failure; warnings alone exit 0.")


def show(result: doctor.Result, console: Console) -> None:
    status = f"[{STYLE[result.status]}]{result.status:<5}[/]"
    console.print(f"{status} {result.check:<{WIDTH}} {escape(result.detail)}",
                  highlight=False, soft_wrap=True)
    if result.fix and result.status != doctor.OK:
        console.print(f"{'':<5} {'':<{WIDTH}} [dim]fix:[/] {escape(result.fix)}",
                      highlight=False, soft_wrap=True)


def _holder(settings: Settings) -> tuple[Holder | None, doctor.Result | None]:
    try:
        return daemon_running(settings.lock_path, patience=5.0), None
    except (DagdError, OSError) as exc:
        return None, doctor.Result("daemon", doctor.WARN, f"cannot tell whether a daemon "
                                   f"runs: {exc}")


def checks(config: str | None, overrides: Mapping[str, Any], console: Console,
           ) -> list[doctor.Result]:
    """Run every check, printing each as it completes; the results."""
    from dagd.dbtools import schema_version

    results: list[doctor.Result] = []

    def add(*found: doctor.Result | None) -> None:
        for result in found:
            if result is not None:
                results.append(result)
                show(result, console)

    first, settings = doctor.check_config(config, overrides)
    add(first)
    os.environ.setdefault("DAGD_PLUGINS_FOLDER", str(settings.plugins_folder.resolve()))
    add(doctor.check_data_dir(settings.data_dir), doctor.check_space(settings.data_dir),
        doctor.check_filesystem(settings.data_dir))
    add(*doctor.check_database(settings.db_path, expected=schema_version()))
    dags, bag = doctor_dags.check_dags(settings)
    loaded = list(bag.dags.values()) if bag is not None else []
    folders = doctor_dags.watched_folders(loaded)
    add(dags, doctor_dags.check_watched(folders),
        doctor.check_inotify([settings.dags_folder, *(p for _, p in folders)]))
    holder, unknown = _holder(settings)
    add(unknown, doctor.check_port(settings.host, settings.port, holder))
    add(anyio.run(doctor_dags.check_smtp, settings, doctor_dags.smtp_used(settings, loaded)))
    add(anyio.run(doctor_dask.check_dask, settings, loaded))
    add(doctor.check_service(), doctor.check_python(tuple(sys.version_info[:3])),
        doctor.check_sqlite(sqlite3.sqlite_version_info))
    return results


def run(args: argparse.Namespace, overrides: Mapping[str, Any], console: Console) -> int:
    """`dagd doctor`: 1 if any check failed, else 0."""
    results = checks(args.config, overrides, console)
    failed = sum(r.status == doctor.FAIL for r in results)
    warned = sum(r.status == doctor.WARN for r in results)
    summary = f"{len(results)} checks: {len(results) - failed - warned} ok"
    if warned:
        summary += f", [yellow]{warned} warning(s)[/]"
    if failed:
        summary += f", [bold red]{failed} failed[/]"
    console.print(summary, highlight=False)
    return 1 if failed else 0
