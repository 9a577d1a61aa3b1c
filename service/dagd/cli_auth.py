"""The `dagd users`, `dagd tokens` and `dagd login-url` commands: who may use the web UI
and the API (cli.py registers them).

`users` and `tokens` edit the users file in the data directory (mode 0600), daemon
running or not: a running daemon reads it again at its next request. A password comes
from stdin when stdin is not a terminal (`echo "$PW" | dagd users add ada`), else it is
asked twice. A token is printed once, at creation; only its SHA-256 is kept. Lists show
names, roles and dates, never a hash. `login-url` asks the running daemon (with the CLI
token) for a new one-time login link.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape

from dagd.accounts import ROLES, AccountsFile
from dagd.config import Settings
from dagd.errors import DaemonUnavailable, InvalidInput
from dagd.lock import daemon_running
from dagd.tables import Column, fitted


def add_parsers(sub: Any) -> None:
    users = sub.add_parser("users", help="who may log in to the web UI, and their roles")
    usub = users.add_subparsers(dest="users_command", required=True)
    add = usub.add_parser("add", help="add a user (the password from stdin, or asked)")
    add.add_argument("name")
    add.add_argument("--role", default="viewer",
                     help="viewer (reads) or operator (also triggers, pauses, clears, "
                          "marks); default viewer")
    remove = usub.add_parser("remove", help="remove a user; their sessions end at once")
    remove.add_argument("name")
    usub.add_parser("list", help="users and their roles")
    tokens = sub.add_parser("tokens", help="API tokens, sent as Authorization: Bearer")
    tsub = tokens.add_subparsers(dest="tokens_command", required=True)
    create = tsub.add_parser("create", help="make a token; it is printed once")
    create.add_argument("name")
    create.add_argument("--role", default="viewer",
                        help="viewer or operator; default viewer")
    revoke = tsub.add_parser("revoke", help="revoke a token; refused from its next use")
    revoke.add_argument("name")
    tsub.add_parser("list", help="tokens, their roles and when they were made")
    url = sub.add_parser("login-url", help="a one-time login link from the running daemon")
    url.add_argument("--role", default="operator", help="viewer or operator; default "
                     "operator")


def _password(name: str) -> str:
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    first = getpass.getpass(f"password for {name}: ")
    if getpass.getpass("again: ") != first:
        raise InvalidInput("the two passwords differ; nothing changed", field="password")
    return first


def _role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role[:40]!r}: use {' or '.join(ROLES)}",
                           field="--role")
    return role


async def cmd_users_add(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    role = _role(args.role)
    AccountsFile(settings.data_dir).add_user(args.name, _password(args.name), role=role)
    console.print(f"user {escape(args.name)} added ({role})", highlight=False)
    return 0


async def cmd_users_remove(settings: Settings, args: argparse.Namespace,
                           console: Console) -> int:
    AccountsFile(settings.data_dir).remove_user(args.name)
    console.print(f"user {escape(args.name)} removed; their sessions have ended",
                  highlight=False)
    return 0


async def cmd_users_list(settings: Settings, args: argparse.Namespace,
                         console: Console) -> int:
    users = sorted(AccountsFile(settings.data_dir).current().users.values(),
                   key=lambda u: u.name)
    if not users:
        console.print("no users yet: `dagd users add NAME --role operator`")
        return 0
    columns = [Column("name", [escape(u.name) for u in users]),
               Column("role", [u.role for u in users])]
    console.print(fitted("users", columns, console.width))
    return 0


async def cmd_tokens_create(settings: Settings, args: argparse.Namespace,
                            console: Console) -> int:
    role = _role(args.role)
    token = AccountsFile(settings.data_dir).create_token(args.name, role=role)
    # The token alone on stdout (for `TOKEN=$(dagd tokens create ci)`); the note on stderr.
    print(token)
    Console(stderr=True).print(f"token {escape(args.name)} ({role}): shown once, keep it "
                               "now; send it as `Authorization: Bearer <token>`",
                               highlight=False)
    return 0


async def cmd_tokens_revoke(settings: Settings, args: argparse.Namespace,
                            console: Console) -> int:
    AccountsFile(settings.data_dir).revoke_token(args.name)
    console.print(f"token {escape(args.name)} revoked", highlight=False)
    return 0


async def cmd_tokens_list(settings: Settings, args: argparse.Namespace,
                          console: Console) -> int:
    tokens = sorted(AccountsFile(settings.data_dir).current().tokens.values(),
                    key=lambda t: t.name)
    if not tokens:
        console.print("no tokens yet: `dagd tokens create NAME`")
        return 0
    columns = [Column("name", [escape(t.name) for t in tokens]),
               Column("role", [t.role for t in tokens]),
               Column("created", [t.created for t in tokens])]
    console.print(fitted("tokens", columns, console.width))
    return 0


async def cmd_login_url(settings: Settings, args: argparse.Namespace,
                        console: Console) -> int:
    from dagd.client import api

    role = _role(args.role)
    holder = daemon_running(settings.lock_path)
    if holder is None:
        raise DaemonUnavailable("no daemon is running on this data directory: start "
                                "`dagd run`; it prints a login link while no user exists")
    data = await api(holder, "POST", "/login/url", {"role": role})
    print(data["url"])
    return 0


def commands(console: Console) -> dict[tuple[str, str | None], Any]:
    """cli.py's COMMANDS entries for these commands."""
    table = {
        ("users", "add"): cmd_users_add, ("users", "remove"): cmd_users_remove,
        ("users", "list"): cmd_users_list, ("tokens", "create"): cmd_tokens_create,
        ("tokens", "revoke"): cmd_tokens_revoke, ("tokens", "list"): cmd_tokens_list,
        ("login-url", None): cmd_login_url,
    }
    return {key: functools.partial(_with_console, fn, console) for key, fn in table.items()}


async def _with_console(fn: Any, console: Console, settings: Settings,
                        args: argparse.Namespace) -> int:
    return int(await fn(settings, args, console))
