"""`dagd config show [--json]`: the effective configuration, each key with its value,
where it came from and what applies a change (cli.py registers it).

With a daemon running on the data directory, its running configuration (asked through
its API), and any key changed on disk since, with what applies it (SIGHUP or only a
restart). With none, the configuration `dagd run` would start with here. Secrets as `***`.
"""

from __future__ import annotations

import argparse
import functools
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from dagd import client
from dagd.config import Settings
from dagd.config_view import rows
from dagd.lock import daemon_running


def add_parsers(sub: Any) -> None:
    config = sub.add_parser("config", help="the effective configuration")
    csub = config.add_subparsers(dest="config_command", required=True)
    show = csub.add_parser(
        "show", help="every key, its value and where it came from (secrets as ***)",
        description="Every configuration key with its value, where it came from (file and "
                    "line, environment variable, command-line option, or default) and "
                    "whether SIGHUP or only a restart applies a change. With a daemon "
                    "running: its running configuration, and keys changed on disk since.")
    show.add_argument("--json", action="store_true", help="one JSON object")


async def cmd_show(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    holder = daemon_running(settings.lock_path)
    if holder is not None:
        answer = await client.api(holder, "GET", "/api/v1/config")
        origin = f"the running daemon (pid {holder.pid})"
    else:
        answer = {"config_file": str(settings.config_file) if settings.config_file else None,
                  "keys": rows(settings), "on_disk_error": None}
        origin = "no daemon running: what `dagd run` would start with here"
    if args.json:
        print(orjson.dumps({**answer, "from": origin}, option=orjson.OPT_INDENT_2).decode())
        return 0
    file = answer.get("config_file") or "none (defaults and the environment)"
    console.print(f"[dim]{escape(origin)}; config file: {escape(str(file))}[/]",
                  highlight=False, soft_wrap=True)
    # TOML-like lines, whole whatever the width: `key = value  # source · applies`.
    shown = [(row, f"{row['key']} = {_shown(row['value'])}") for row in answer["keys"]]
    pad = max((len(text) for _, text in shown), default=0) + 2
    for row, text in shown:
        line = Text(text.ljust(pad))
        line.append(f"# {row['source']} · {row['applies']}",
                    "dim" if row["source"] == "default" else "cyan")
        if "on_disk" in row:
            line.append(f"\n    # on disk: {_shown(row['on_disk'])} ({row['note']})", "yellow")
        console.print(line, highlight=False, soft_wrap=True)
    if answer.get("on_disk_error"):
        console.print(f"[red]the configuration on disk is refused (the running one stays):[/] "
                      f"{escape(answer['on_disk_error'])}", highlight=False, soft_wrap=True)
    return 0


def _shown(value: Any) -> str:
    """A value as TOML would write it; none for an unset one."""
    if value is None:
        return "none"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_shown(k)} = {_shown(v)}" for k, v in value.items()) + " }"
    return orjson.dumps(value).decode()


def commands(console: Console) -> dict[tuple[str, str | None], Any]:
    """cli.py's COMMANDS entries for these commands."""
    return {("config", "show"): functools.partial(cmd_show, console=console)}
