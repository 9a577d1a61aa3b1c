"""`dagd doctor`'s checks of what the DAGs need: the DAGs folder loads, the folders their
FileDrop triggers watch exist and can be read, and the SMTP server answers when email
is configured or a DAG sends any. Each returns a `doctor.Result`; see doctor.py.

Loading the DAGs imports the DAG files (as `dagd dags check` does): no event loop may
run meanwhile, so `check_dags` is called before `check_smtp`'s loop starts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path

import anyio

from dagd.authoring.dag import DAG
from dagd.authoring.loader import DagBag
from dagd.config import Settings
from dagd.doctor import FAIL, OK, WARN, Result

MAX_LISTED = 5  # import errors or folders named in one detail; the rest counted


def _listed(items: list[str]) -> str:
    more = f"; and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return "; ".join(items[:MAX_LISTED]) + more


def check_dags(settings: Settings) -> tuple[Result, DagBag | None]:
    """The DAGs folder loads as the daemon would load it; an import error is a FAIL."""
    from dagd.check import is_warning, load_dags, own_words, shown

    folder = settings.dags_folder
    if not folder.is_dir():
        return Result("dags", WARN, f"{folder} does not exist: no DAGs (`dagd run` creates "
                      "it empty)", "set [core] dags_folder, or --dags-folder"), None
    try:
        bag = load_dags(settings)
    except Exception as exc:  # a plugin folder that breaks the loader itself
        return Result("dags", FAIL, f"loading {folder} failed: {exc!r}",
                      "`dagd dags check` shows where"), None
    errors = [e for e in bag.errors if not is_warning(e)]
    count = f"{len(bag.dags)} DAG(s) from {folder}"
    if errors:
        listed = [f"{shown(e.file)}{f':{e.line}' if e.line else ''}: "
                  f"{(own_words(e).splitlines() or [''])[0]}" for e in errors]
        return Result("dags", FAIL, f"{count}; {len(errors)} import error(s): "
                      f"{_listed(listed)}", "`dagd dags check` shows each, "
                      "`dagd dags errors --traceback` the tracebacks"), bag
    warned = len(bag.errors) - len(errors)
    note = f", {warned} warning(s) (`dagd dags check`)" if warned else ""
    return Result("dags", OK, count + note), bag


def watched_folders(dags: Iterable[DAG]) -> list[tuple[str, Path]]:
    """(DAG id, folder) of every FileDrop trigger, as the daemon resolves the folder."""
    found = []
    for d in dags:
        for trigger in d.triggers:
            if getattr(trigger, "kind", None) == "file":
                found.append((d.dag_id, Path(trigger.folder).resolve()))
    return found


def check_watched(folders: list[tuple[str, Path]]) -> Result:
    if not folders:
        return Result("watched folders", OK, "no FileDrop triggers")
    missing = [f"{p} (DAG {dag_id})" for dag_id, p in folders if not p.is_dir()]
    unreadable = [f"{p} (DAG {dag_id})" for dag_id, p in folders
                  if p.is_dir() and not os.access(p, os.R_OK | os.X_OK)]
    if missing:
        return Result("watched folders", FAIL, f"missing: {_listed(missing)}",
                      "create them (the daemon tries to, but under the hardened unit only "
                      "paths in ReadWritePaths= can be), or fix the DAG's FileDrop folder")
    if unreadable:
        return Result("watched folders", FAIL, f"not readable: {_listed(unreadable)}",
                      "give the daemon's user read and search permission on them")
    return Result("watched folders", OK, f"{len({p for _, p in folders})} folder(s), "
                  "readable")


def _sends_email(d: DAG) -> bool:
    from dagd.notify.email import EmailNotifier

    return bool(d.email) or any(isinstance(n, EmailNotifier) for n in d.notifiers) or any(
        getattr(t, "kind", "") == "email" or getattr(t, "email", ()) for t in d.tasks.values())


def smtp_used(settings: Settings, dags: Iterable[DAG]) -> str | None:
    """Why email matters here ([smtp] set, or which DAG sends email); None if it does not."""
    default = Settings()
    changed = [f.name.removeprefix("smtp_") for f in fields(Settings)
               if f.name.startswith("smtp_")
               and getattr(settings, f.name) != getattr(default, f.name)]
    if changed:
        return f"[smtp] {', '.join(changed)} set"
    senders = sorted(d.dag_id for d in dags if _sends_email(d))
    if senders:
        return f"DAG(s) {', '.join(senders[:MAX_LISTED])} send email"
    return None


async def check_smtp(settings: Settings, why: str | None, *, wait: float = 5.0) -> Result:
    """A connection, its greeting, EHLO (and STARTTLS when configured), each step within
    `wait` seconds; no login and no message (`dagd email test` sends one). The password is only
    looked for, never shown."""
    import aiosmtplib

    from dagd.notify.smtp import SendError, read_password, tls_context

    if why is None:
        return Result("smtp", OK, "not used: no [smtp] settings, no DAG sends email")
    where = f"{settings.smtp_host}:{settings.smtp_port}"
    step = min(wait, settings.smtp_timeout)
    try:
        context = tls_context(settings) if settings.smtp_tls or settings.smtp_starttls else None
        client = aiosmtplib.SMTP(hostname=settings.smtp_host, port=settings.smtp_port,
                                 use_tls=settings.smtp_tls, start_tls=False, timeout=step,
                                 tls_context=context)
        with anyio.fail_after(wait * 2):
            await client.connect()
            try:
                await client.ehlo()
                if settings.smtp_starttls:
                    if not client.supports_extension("starttls"):
                        return Result("smtp", FAIL, f"{where} offers no STARTTLS, and "
                                      "[smtp] starttls = true", "check [smtp] port (587 "
                                      "is usual for STARTTLS, 465 for tls)")
                    await client.starttls(tls_context=context)
            finally:
                client.close()
    except SendError as exc:
        return Result("smtp", FAIL, f"{where}: {exc}", "check [smtp] ca_file")
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        words = str(exc) or type(exc).__name__
        return Result("smtp", FAIL, f"{where} ({why}): {words}", "check [smtp] host and "
                      "port, and that the server takes connections from here; `dagd email "
                      "test ADDRESS` tries a whole send")
    tls = ", STARTTLS ok" if settings.smtp_starttls else ", TLS ok" if settings.smtp_tls else ""
    try:
        has_password = read_password(settings) is not None
    except SendError as exc:
        return Result("smtp", WARN, f"{where} answered EHLO{tls}; but {exc.answer}",
                      "under systemd the service's environment or credentials may hold "
                      "it: check there")
    login = "; login not tried" if has_password else ""
    return Result("smtp", OK, f"{where} answered EHLO{tls} ({why}){login}")
