"""make faults: fault and attack scenarios against a real `dagd run`, as a user meets them.

Each scenario starts its own daemon(s) on a temporary folder, does something hostile
(kill -9, a flood, malformed requests, shell injection, runaway tasks, SIGTERM, a full
disk), prints its figures in a table, and lists the violations it found. The results go
to tests/faults/results/latest.json (and the daemon logs of a scenario with a violation
next to it); the exit status is 1 when any scenario found a violation.
Every process the suite starts is killed at the end, whatever happens.

Usage: python tests/faults/run.py [--quick] [--only NAME] [--seed N]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from faults import containment, disk, flood, fuzz, injection, kill9, sigterm
from faults.harness import Context, Reaper, Result

ROOT = Path(__file__).resolve().parent.parent.parent
RESULTS = ROOT / "tests" / "faults" / "results"

SCENARIOS: dict[str, tuple[Callable[[Context], Result], str]] = {
    "kill9": (kill9.run, "kill -9 under webhooks and file drops, restarted each time"),
    "flood": (flood.run, "webhooks as fast as a client pool can send"),
    "fuzz": (fuzz.run, "hostile requests against the API and the webhooks"),
    "injection": (injection.run, "shell metacharacters in a webhook body"),
    "containment": (containment.run, "runaway tasks: output, segfault, children, memory"),
    "sigterm": (sigterm.run, "SIGTERM with long tasks running: the drain, the exit"),
    "disk": (disk.run, "the data directory on a full disk"),
}

# Piped (CI, `make faults | tee`), rich would assume 80 columns: give the values room.
console = Console(width=None if sys.stdout.isatty() else 120)


def fmt(value: Any) -> str:
    """A figure as a table cell: dicts as `key: value` pairs, lists one item a line."""
    if isinstance(value, dict):
        return ", ".join(f"{k}: {fmt(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return "\n".join(fmt(v) for v in value) or "-"
    return str(value)


def show(name: str, result: Result, seconds: float) -> None:
    title = f"{name}: {SCENARIOS[name][1]} ({seconds:.1f} s)"
    table = Table(title=title, title_justify="left", show_header=True)
    table.add_column("figure")
    table.add_column("value", overflow="fold")
    for key, value in result.figures.items():
        table.add_row(key, fmt(value))
    console.print(table)
    if result.skipped:
        console.print(f"[yellow]skipped: {result.skipped}[/]")
    for v in result.violations:
        console.print(f"[red]VIOLATION[/] {name}: {v}")


def run_one(name: str, ctx: Context) -> Result:
    fn = SCENARIOS[name][0]
    try:
        return fn(ctx)
    except Exception as exc:  # a scenario that cannot finish is a finding, not a crash
        result = Result()
        result.figures["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        result.violations.append(f"the scenario could not finish: {type(exc).__name__}: "
                                 f"{str(exc)[:500]}")
        console.print(traceback.format_exc(), markup=False, highlight=False)
        return result
    finally:
        for inst in ctx.installs:
            inst.close()


def keep_logs(name: str, ctx: Context, *, keep: bool) -> list[str]:
    """Copy the daemon logs of a scenario that found a violation into results/NAME/ (and
    remove those an earlier run left there)."""
    out = RESULTS / name
    shutil.rmtree(out, ignore_errors=True)
    kept: list[str] = []
    if not keep:
        return kept
    for inst in ctx.installs:
        for daemon in inst.daemons:
            if daemon.log_path.exists():
                out.mkdir(parents=True, exist_ok=True)
                target = out / f"{inst.root.name}-{daemon.log_path.name}"
                shutil.copyfile(daemon.log_path, target)
                kept.append(str(target.relative_to(ROOT)))
    return kept


def summary(results: dict[str, dict[str, Any]]) -> None:
    table = Table(title="make faults", title_justify="left")
    for col in ("scenario", "outcome", "seconds"):
        table.add_column(col)
    for name, r in results.items():
        if r["skipped"]:
            outcome = f"[yellow]skipped[/]: {r['skipped']}"
        elif r["violations"]:
            outcome = f"[red]{len(r['violations'])} violation(s)[/]"
        else:
            outcome = "[green]ok[/]"
        table.add_row(name, outcome, f"{r['seconds']:.1f}")
    console.print(table)


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that kills everything


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (CI)")
    parser.add_argument("--only", choices=list(SCENARIOS), action="append",
                        help="run this scenario (repeatable)")
    parser.add_argument("--seed", type=int, default=20261201)
    args = parser.parse_args()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminate)
    names = args.only or list(SCENARIOS)
    reaper = Reaper()
    tmp = Path(tempfile.mkdtemp(prefix="dagd-faults-"))
    started = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    try:
        for name in names:
            console.rule(name)
            ctx = Context(quick=args.quick, seed=args.seed, tmp=tmp / name, reaper=reaper)
            t0 = time.monotonic()
            result = run_one(name, ctx)
            seconds = time.monotonic() - t0
            show(name, result, seconds)
            results[name] = {"figures": result.figures, "violations": result.violations,
                             "skipped": result.skipped, "seconds": round(seconds, 1),
                             "logs": keep_logs(name, ctx, keep=bool(result.violations))}
    finally:
        killed = reaper.kill_all()
        shutil.rmtree(tmp, ignore_errors=True)
    if killed:
        console.print(f"killed {killed} process(es) left running at the end")
    total = time.monotonic() - started
    summary(results)
    write(results, args, total)
    bad = [n for n, r in results.items() if r["violations"]]
    verdict = f"[red]violations in {', '.join(bad)}[/]" if bad else "[green]no violation[/]"
    console.print(f"{len(names)} scenario(s) in {total:.0f} s; {verdict}")
    return 1 if bad else 0


def write(results: dict[str, dict[str, Any]], args: argparse.Namespace, total: float) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "sqlite": sqlite3.sqlite_version, "platform": platform.platform(),
                    "host": platform.node()},
        "quick": args.quick, "seed": args.seed, "seconds": round(total, 1),
        "scenarios": results,
    }
    path = RESULTS / "latest.json"
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS,
                                  default=str))
    console.print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
