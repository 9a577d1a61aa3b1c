"""The `dagd` command: the daemon (`dagd run`) and the commands that read or change it.

Read-only commands open the database read-only. Commands that change something go
through the running daemon's HTTP API, or, with no daemon running, write directly while
holding the data directory's lock. `dags list/errors/show` with no daemon running, and
`dags check` always, load the DAGs folder themselves. Errors are one line on stderr and
a non-zero exit.

The store and the engine are imported by the commands that use them: `dagd dags check`
runs in pre-commit hooks, and must start fast.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import orjson
from rich.console import Console
from rich.markup import escape
from rich.text import Text
from rich.tree import Tree

from dagd import check, client, testrun
from dagd import cli_auth as auth_commands
from dagd import cli_config as config_commands
from dagd import cli_db as db_commands
from dagd import cli_doctor as doctor_command
from dagd import cli_mail as notify_commands
from dagd import cli_service as service_commands
from dagd.cli_places import executor_of, last_ran_on
from dagd.config import Settings, load_settings
from dagd.errors import DagdError, InvalidInput, NotFound
from dagd.executors.logs import mask, secret_values
from dagd.lock import daemon_running
from dagd.states import TASK_TERMINAL
from dagd.tables import Column, fitted, seconds, state_cell, state_text, ti_table, when

if TYPE_CHECKING:
    from dagd.authoring.dag import DAG
    from dagd.authoring.loader import DagBag
    from dagd.store import Store
    from dagd.store.rows import DagRow

console = Console()
err_console = Console(stderr=True)


def _conf(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"--conf is not valid JSON: {exc}", field="--conf") from None
    if not isinstance(value, dict):
        raise InvalidInput("--conf must be a JSON object, like '{\"key\": 1}'", field="--conf")
    return value


async def _reader(settings: Settings) -> Store:
    from dagd.store import Store

    return await Store.open(settings.db_path, readonly=True)


# -- the DAGs folder, when no daemon has loaded it ------------------------------------
async def _offline(settings: Settings) -> DagBag | None:
    """None while a daemon runs: its database describes the folder it loaded. Otherwise
    the folder, loaded here as the daemon would, and a line on stderr that says so."""
    if daemon_running(settings.lock_path) is not None:
        return None
    bag = await anyio.to_thread.run_sync(check.load_dags, settings)
    err_console.print(f"[dim]no daemon running: loaded {escape(str(settings.dags_folder))} "
                      "directly[/]", highlight=False, soft_wrap=True)
    return bag


async def _stored(settings: Settings) -> dict[str, DagRow]:
    """What a database left by an earlier daemon knows of the DAGs (paused flags, last
    runs), read-only; nothing when there is none."""
    if not await anyio.Path(settings.db_path).exists():
        return {}
    try:
        store = await _reader(settings)
    except DagdError:
        return {}
    try:
        return {d.dag_id: d for d in await store.list_dags()}
    finally:
        await store.close()


def _loaded_rows(dags: dict[str, DAG], stored: dict[str, DagRow]) -> list[DagRow]:
    """The loaded DAGs as the rows a daemon would have written, with what the database
    knows of each."""
    from dagd.store.rows import DagRow

    rows = []
    for dag_id in sorted(dags):
        d, old = dags[dag_id], stored.get(dag_id)
        rows.append(DagRow(
            dag_id=dag_id, fileloc=d.fileloc or "", description=d.description or "",
            is_paused=bool(old and old.is_paused), is_active=True, spec=d.describe(),
            updated_at=time.time(), last_run_state=old.last_run_state if old else None,
            last_run_id=old.last_run_id if old else None,
        ))
    return rows


# -- commands -------------------------------------------------------------------------
def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from dagd import logformat
    from dagd.daemon import Daemon

    # stderr, one line per record ([core] log_format: text or json), secrets masked.
    logformat.configure(settings.log_level, settings.log_format)
    anyio.run(Daemon(settings, exit_holding_lock=True).run)
    return 0


async def cmd_dags_list(settings: Settings, args: argparse.Namespace) -> int:
    bag = await _offline(settings)
    if bag is not None:
        dags = _loaded_rows(bag.dags, await _stored(settings))
        errors: list[Any] = bag.errors
    else:
        store = await _reader(settings)
        try:
            dags = await store.list_dags()
            errors = await store.list_import_errors()
        finally:
            await store.close()
    active = [d for d in dags if d.is_active]
    # Never cut: the DAG, its task count. The description wraps; the file goes first.
    columns = [
        Column("dag", [d.dag_id for d in active]),
        Column("tasks", [str(len(d.spec.get("tasks", []))) for d in active],
               justify="right"),
        Column("paused", ["yes" if d.is_paused else "" for d in active], drop=2),
        Column("last run", [f"{d.last_run_id} {state_text(d.last_run_state or '')}"
                            if d.last_run_id else "" for d in active], drop=3),
        Column("description", [d.description for d in active], wrap=True, drop=1),
        Column("file", [_shown_path(d.fileloc, settings.dags_folder) for d in active],
               drop=4),
    ]
    console.print(fitted(f"DAGs ({settings.dags_folder})", columns, console.width))
    if errors:
        err_console.print(f"[red]{len(errors)} file(s) failed to import: `dagd dags errors`[/]")
    return 0


async def cmd_dags_errors(settings: Settings, args: argparse.Namespace) -> int:
    bag = await _offline(settings)
    if bag is not None:
        errors: list[Any] = bag.errors
    else:
        store = await _reader(settings)
        try:
            errors = await store.list_import_errors()
        finally:
            await store.close()
    if not errors:
        console.print("no import errors")
        return 0
    for e in errors:
        where = f"{e.file}:{e.line}" if e.line else e.file
        console.rule(f"[red]{where}[/]")
        console.print(e.message, markup=False, highlight=False)
        if args.traceback and e.traceback:
            console.print(e.traceback, markup=False, highlight=False)
    return 1


def _graph(spec: dict[str, Any]) -> Tree:
    tasks = {t["task_id"]: t for t in spec.get("tasks", [])}
    down: dict[str, list[str]] = {tid: [] for tid in tasks}
    for t in tasks.values():
        for up in t["upstream"]:
            down[up].append(t["task_id"])
    tree = Tree(f"[bold]{spec['dag_id']}[/]")
    shown: set[str] = set()

    def add(node: Tree, tid: str) -> None:
        t = tasks[tid]
        label = f"{tid} [dim]({t['kind']}, {t['trigger_rule']})[/]"
        if tid in shown:
            node.add(f"{tid} [dim](see above)[/]")
            return
        shown.add(tid)
        branch = node.add(label)
        for child in sorted(down[tid]):
            add(branch, child)

    for tid, t in tasks.items():
        if not t["upstream"]:
            add(tree, tid)
    return tree


async def cmd_dags_show(settings: Settings, args: argparse.Namespace) -> int:
    bag = await _offline(settings)
    if bag is not None:
        row = _loaded_rows({args.dag: check.find(bag, args.dag)}, await _stored(settings))[0]
    else:
        store = await _reader(settings)
        try:
            row = await store.get_dag(args.dag)
        finally:
            await store.close()
    spec = row.spec
    last_run, places = await last_ran_on(settings, row.dag_id)
    console.print(_graph(spec))
    tasks = spec.get("tasks", [])
    title = Text(f"{row.dag_id}: {row.description}" if row.description else row.dag_id)
    table = fitted(title, [
        Column("task", [t["task_id"] for t in tasks]),
        Column("kind", [t["kind"] for t in tasks], drop=1),
        Column("upstream", [", ".join(t["upstream"]) for t in tasks], wrap=True),
        Column("trigger rule", [t["trigger_rule"] for t in tasks], drop=2),
        Column("retries", [str(t["retries"]) for t in tasks], drop=3),
        Column("timeout", [f"{t['execution_timeout']:g}s" if t.get("execution_timeout") else ""
                           for t in tasks], drop=4),
        Column("line", [str(t.get("line") or "") for t in tasks], drop=5),
        Column("executor", [executor_of(t) for t in tasks], drop=6),
        Column(f"ran on (run {last_run})" if last_run else "ran on",
               [places.get(t["task_id"], "") for t in tasks], drop=7),
    ], console.width)
    console.print(table)
    console.print(f"file: {row.fileloc}   paused: {'yes' if row.is_paused else 'no'}")
    return 0


async def cmd_pause(settings: Settings, args: argparse.Namespace) -> int:
    paused = args.dags_command == "pause"
    await client.set_paused(settings, args.dag, paused)
    console.print(f"{args.dag}: {'paused' if paused else 'unpaused'}")
    return 0


async def cmd_trigger(settings: Settings, args: argparse.Namespace) -> int:
    run_id, live = await client.trigger(settings, args.dag, _conf(args.conf))
    if live:
        console.print(f"{args.dag}: run {run_id} queued")
    else:
        console.print(f"{args.dag}: run {run_id} queued; no daemon is running, "
                      "it starts when `dagd run` starts")
    return 0


async def cmd_runs_list(settings: Settings, args: argparse.Namespace) -> int:
    store = await _reader(settings)
    try:
        if args.dag:
            await store.get_dag(args.dag)
        runs = await store.list_runs(args.dag, limit=args.limit)
    finally:
        await store.close()

    def stamps(header: str, values: list[float | None], drop: int) -> Column:
        return Column(header, [when(ts) for ts in values],
                      short=[when(ts, short=True) for ts in values], drop=drop)

    # Never cut: the run, its DAG, its state. Then, dropped last to first: when it
    # started and how long it took, its type, when it ended, when it was queued.
    columns = [
        Column("run", [str(r.id) for r in runs]),
        Column("dag", [r.dag_id for r in runs]),
        Column("state", [state_cell(r.state) for r in runs]),
        Column("type", [r.run_type for r in runs], drop=3),
        stamps("created", [r.created_at for r in runs], 5),
        stamps("started", [r.started_at for r in runs], 1),
        stamps("ended", [r.ended_at for r in runs], 4),
        Column("duration", [seconds(r.started_at, r.ended_at) for r in runs], drop=2,
               justify="right"),
    ]
    title = Text(f"runs of {args.dag}" if args.dag else "runs")
    console.print(fitted(title, columns, console.width))
    return 0


async def cmd_tasks_list(settings: Settings, args: argparse.Namespace) -> int:
    store = await _reader(settings)
    try:
        run = await store.get_run(args.run, args.dag)
        tis = await store.list_tis(run.id)
    finally:
        await store.close()
    console.print(ti_table(Text(f"{run.dag_id} [run {run.id}] {run.state}"), tis,
                           width=console.width, times=True))
    return 0


async def _attempt(store: Store, args: argparse.Namespace) -> Any:
    run = await store.get_run(args.run, args.dag)
    ti = await store.get_ti(run.id, args.task, args.map_index)
    attempts = await store.list_attempts(ti.id)
    if not attempts:
        if not args.follow:
            raise await store.not_run_yet(ti)
        return None
    if args.try_number is None:
        return attempts[-1]
    for attempt in attempts:
        if attempt.try_number == args.try_number:
            return attempt
    raise NotFound(f"no try {args.try_number} (tries so far: {len(attempts)})",
                   dag_id=args.dag, task_id=args.task)


async def cmd_logs(settings: Settings, args: argparse.Namespace) -> int:
    store = await _reader(settings)
    try:
        attempt = await _attempt(store, args)
        holder = daemon_running(settings.lock_path)
        if holder is not None and attempt is not None and not args.follow:
            # The daemon masks the secrets it holds (under systemd, in its environment
            # only): ask it for the log.
            path = (f"/api/v1/runs/{args.run}/tasks/{args.task}/logs"
                    f"?try={attempt.try_number}&map_index={args.map_index}")
            data = await client.api(holder, "GET", path, raw=True)
            sys.stdout.write(data.decode("utf-8", "replace"))
            sys.stdout.flush()
            offset = len(data)
        else:
            secrets = await _secrets(settings, store, args.dag)
            offset = await _print_new(attempt, 0, secrets)
        if args.follow:
            attempt, offset = await _follow(settings, store, args, attempt, offset, secrets)
    finally:
        await store.close()
    if offset == 0:
        # On stderr: stdout stays the log, byte for byte, for a pipe or a file.
        yet = " yet" if attempt.state == "running" else ""
        err_console.print(f"(no output{yet}; try {attempt.try_number} {attempt.state})",
                          highlight=False, soft_wrap=True)
    return 0


async def _follow(
    settings: Settings, store: Store, args: argparse.Namespace, attempt: Any, offset: int,
    secrets: list[str],
) -> tuple[Any, int]:
    """Print the attempt's new output until it is no longer running; return the
    attempt as it ended, and how much of its log was printed.

    The state is read before the output, so whatever the attempt wrote before it ended
    is printed. A change in the data directory wakes the check; the watcher's timeout
    re-checks too, since a change can land between a check and the watch.
    """
    from watchfiles import awatch

    async def step() -> bool:
        nonlocal attempt, offset
        ti = await store.get_ti((await store.get_run(args.run, args.dag)).id, args.task,
                                args.map_index)
        attempts = await store.list_attempts(ti.id)
        if attempt is None:
            attempt = await _attempt(store, args)
            if attempt is None:
                why = await store.not_run_yet(ti)
                if why.field == "map_index":  # a mapped task: its instances have logs
                    raise why
                if ti.state in TASK_TERMINAL:
                    raise NotFound(f"the task ended {ti.state} without running in run "
                                   f"{args.run}", dag_id=args.dag, task_id=args.task)
                return False
        attempt = next((a for a in attempts if a.id == attempt.id), attempt)
        offset = await _print_new(attempt, offset, secrets)
        return bool(attempt.state != "running")

    if await step():
        return attempt, offset
    async for _ in awatch(settings.data_dir, recursive=True, debounce=50, step=20,
                          rust_timeout=1000, yield_on_timeout=True):
        if await step():
            break
    return attempt, offset


async def _print_new(attempt: Any, offset: int, secrets: list[str]) -> int:
    if attempt is None:
        return offset
    path = anyio.Path(attempt.log_path)
    if not await path.exists():
        return offset
    async with await anyio.open_file(path, "rb") as f:
        await f.seek(offset)
        data = await f.read()
    if data:
        # A secret split across two reads of a followed log is not masked: whole files
        # (without --follow) always are.
        sys.stdout.write(mask(data, secrets).decode("utf-8", "replace"))
        sys.stdout.flush()
    return offset + len(data)


async def _secrets(settings: Settings, store: Any, dag_id: str) -> list[str]:
    """The configured secrets' values, as the API's log route masks them."""
    try:
        spec = (await store.get_dag(dag_id)).spec
    except NotFound:
        spec = {}
    return secret_values(
        smtp_password_env=settings.smtp_password_env,
        smtp_password_file=settings.smtp_password_file,
        connections=settings.connections.values(),
        webhook_secret_envs=[t.get("secret_env") for t in spec.get("triggers", [])])


async def cmd_events_list(settings: Settings, args: argparse.Namespace) -> int:
    store = await _reader(settings)
    try:
        events = await store.list_events(args.dag, limit=args.limit)
    finally:
        await store.close()
    # Never cut: the event, its DAG, its outcome and run. The detail wraps; then the
    # source, the kind and the time go.
    columns = [
        Column("event", [str(e.id) for e in events]),
        Column("when", [when(e.created_at) for e in events],
               short=[when(e.created_at, short=True) for e in events], drop=3),
        Column("kind", [e.kind for e in events], drop=2),
        Column("source", [e.source for e in events], drop=4),
        Column("dag", [e.dag_id or "" for e in events]),
        Column("outcome", [e.outcome + (f" x{e.count}" if e.count > 1 else "")  # counted
                           for e in events]),
        Column("run", [str(e.run_id or "") for e in events]),
        Column("detail", [escape(e.detail or "") for e in events], wrap=True, drop=1),
    ]
    console.print(fitted(f"events of {args.dag}" if args.dag else "events", columns,
                         console.width))
    return 0


async def cmd_events_replay(settings: Settings, args: argparse.Namespace) -> int:
    run_id, live = await client.replay(settings, args.event)
    note = "" if live else "; no daemon is running, it starts when `dagd run` starts"
    console.print(f"event {args.event}: replayed as run {run_id}{note}")
    return 0


async def cmd_backfill(settings: Settings, args: argparse.Namespace) -> int:
    done, live = await client.backfill(settings, args.dag, args.start, args.end)
    queued, existing, dates = done["run_ids"], done["existing"], done["logical_dates"]
    if not dates:
        console.print(f"{args.dag}: no logical date of its timer falls in that range")
        return 0
    span = dates[0] if len(dates) == 1 else f"{dates[0]} .. {dates[-1]}"
    if queued:
        note = "" if live else " (no daemon is running: they start when `dagd run` starts)"
        console.print(f"{args.dag}: {len(queued)} run(s) queued for {span}: "
                      f"{', '.join(map(str, queued))}{note}")
    if existing:
        console.print(f"{args.dag}: {'nothing new queued: ' if not queued else ''}"
                      f"{len(existing)} run(s) of that range exist already: "
                      f"{', '.join(map(str, existing))}")
    return 0


async def cmd_test(settings: Settings, args: argparse.Namespace) -> int:
    from dagd.testrun import run_test

    return await run_test(settings, args.dag, _conf(args.conf), console)


def cmd_dags_check(settings: Settings, args: argparse.Namespace) -> int:
    # No event loop: as in the daemon's loader thread, none runs where the files are
    # imported (a DAG file may call asyncio.run at import).
    return check.check(settings, args.paths, console)


# -- parser ---------------------------------------------------------------------------
MAX_ID = 2**63 - 1  # SQLite's largest integer


def whole(low: int, high: int = MAX_ID) -> Callable[[str], int]:
    """An argparse type: a whole number in [low, high], else a one-line usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text) if len(text) <= 40 else None
        except ValueError:
            value = None
        if value is None:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text[:40]!r}")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dagd", description="dagd: an event-driven orchestrator")
    p.add_argument("--config", help="config file (default: ./config/dagd.toml or /etc/dagd)")
    p.add_argument("--dags-folder", help="folder of DAG files (env DAGD_DAGS_FOLDER)")
    p.add_argument("--data-dir", help="folder for the database and logs (env DAGD_DATA_DIR)")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon in the foreground")
    run.add_argument("--host")
    run.add_argument("--port", type=whole(0, 65535))

    dags = sub.add_parser("dags", help="list, show, pause DAGs; import errors")
    dsub = dags.add_subparsers(dest="dags_command", required=True)
    dsub.add_parser("list", help="every DAG and its last run")
    show = dsub.add_parser("show", help="a DAG's graph and tasks")
    show.add_argument("dag")
    errors = dsub.add_parser("errors", help="DAG files that failed to import")
    errors.add_argument("--traceback", action="store_true", help="show full tracebacks")
    check_ = dsub.add_parser(
        "check", help="load the DAG files as the daemon would; exit 1 on any error",
        description="Load the DAGs folder (or only the files and folders given) as the "
                    "daemon would, and list each DAG and each import error. Needs no "
                    "database and no daemon; exit 1 on any error.")
    check_.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                        help="DAG files or folders (default: the DAGs folder)")
    for verb in ("pause", "unpause"):
        v = dsub.add_parser(verb, help=f"{verb} a DAG")
        v.add_argument("dag")

    trig = sub.add_parser("trigger", help="queue a run of a DAG")
    trig.add_argument("dag")
    trig.add_argument("--conf", help="JSON object passed to the run as its conf")

    runs = sub.add_parser("runs", help="list runs")
    rsub = runs.add_subparsers(dest="runs_command", required=True)
    rlist = rsub.add_parser("list", help="recent runs, newest first")
    rlist.add_argument("dag", nargs="?")
    rlist.add_argument("--limit", type=whole(1, 1000), default=30)

    tasks = sub.add_parser("tasks", help="task instances of a run")
    tsub = tasks.add_subparsers(dest="tasks_command", required=True)
    tlist = tsub.add_parser("list", help="the task instances of one run")
    tlist.add_argument("dag")
    tlist.add_argument("run", type=whole(0))
    testrun.add_tasks_test(tsub)

    logs = sub.add_parser("logs", help="an attempt's log")
    logs.add_argument("dag")
    logs.add_argument("run", type=whole(0))
    logs.add_argument("task")
    logs.add_argument("--try", dest="try_number", type=whole(1),
                      help="try number (default: last)")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until it ends")
    logs.add_argument("--map-index", type=whole(-1, 2**31), default=-1,
                      help="which instance of a mapped task (default: the task itself)")

    events = sub.add_parser("events", help="the event ledger: why did (or didn't) it run?")
    esub = events.add_subparsers(dest="events_command", required=True)
    elist = esub.add_parser("list", help="recent events and their outcome, newest first")
    elist.add_argument("--dag")
    elist.add_argument("--limit", type=whole(1, 1000), default=50)
    replay = esub.add_parser("replay", help="start a new run from a stored event")
    replay.add_argument("event", type=whole(0))

    backfill = sub.add_parser("backfill", help="queue runs for a past range of a timer DAG")
    backfill.add_argument("dag")
    backfill.add_argument("--start", required=True,
                          help="first logical date: ISO date or datetime (the timer's "
                               "timezone if it has none)")
    backfill.add_argument("--end", required=True,
                          help="last logical date, inclusive (a date covers its whole day)")

    test = sub.add_parser("test", help="run a DAG once in the foreground, on throw-away state")
    test.add_argument("dag")
    test.add_argument("--conf", help="JSON object passed to the run as its conf")
    notify_commands.add_parsers(sub, whole)
    auth_commands.add_parsers(sub)
    service_commands.add_parsers(sub)
    config_commands.add_parsers(sub)
    db_commands.add_parsers(sub)
    doctor_command.add_parser(sub)
    return p


Command = Callable[[Settings, argparse.Namespace], Awaitable[int]]

COMMANDS: dict[tuple[str, str | None], Command] = {
    ("dags", "list"): cmd_dags_list,
    ("dags", "show"): cmd_dags_show,
    ("dags", "errors"): cmd_dags_errors,
    ("dags", "pause"): cmd_pause,
    ("dags", "unpause"): cmd_pause,
    ("trigger", None): cmd_trigger,
    ("runs", "list"): cmd_runs_list,
    ("tasks", "list"): cmd_tasks_list,
    ("tasks", "test"): lambda s, a: testrun.cmd_tasks_test(s, a, console),
    ("logs", None): cmd_logs,
    ("test", None): cmd_test,
    ("events", "list"): cmd_events_list,
    ("events", "replay"): cmd_events_replay,
    ("backfill", None): cmd_backfill,
    ("notifications", "list"): lambda s, a: notify_commands.cmd_list(s, a, console),
    ("notifications", "retry"): lambda s, a: notify_commands.cmd_retry(s, a, console),
    ("email", "test"): lambda s, a: notify_commands.cmd_email_test(s, a, console),
    **auth_commands.commands(console),
    **service_commands.commands(console),
    **config_commands.commands(console),
    **db_commands.commands(console),
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        overrides = {
            "dags_folder": args.dags_folder,
            "data_dir": args.data_dir,
            "host": getattr(args, "host", None),
            "port": getattr(args, "port", None),
        }
        if args.command == "doctor":  # a config it cannot load is one of its checks
            return doctor_command.run(args, overrides, console)
        settings = load_settings(args.config, overrides=overrides)
        # DAG files may import plugins (`from dagd.plugins import ...`): say where they are.
        os.environ.setdefault("DAGD_PLUGINS_FOLDER", str(settings.plugins_folder.resolve()))
        if args.command == "run":
            return cmd_run(settings, args)
        sub = getattr(args, f"{args.command}_command", None)
        if (args.command, sub) == ("dags", "check"):
            return cmd_dags_check(settings, args)
        command = COMMANDS[(args.command, sub)]
        return anyio.run(command, settings, args)
    except DagdError as exc:
        # soft_wrap: one line whatever the terminal width, for scripts and journald
        err_console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())


def _shown_path(file: str, folder: Path) -> str:
    """A DAG file's path relative to the DAGs folder, when it is inside it."""
    try:
        return str(Path(file).relative_to(Path(folder).resolve()))
    except ValueError:
        return file
