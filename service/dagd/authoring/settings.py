"""What a DAG file may declare, checked: ids, and each setting of a task. Pure.

Every check raises `DagDefinitionError` naming the field; `where` (dag_id, task_id, ...)
is passed through so the error says which task it is about.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from dagd.config import parse_bytes
from dagd.errors import DagDefinitionError
from dagd.retry import RetryPolicy

TRIGGER_RULES = frozenset(
    {
        "none_failed_min_one_success",
        "all_success",
        "all_failed",
        "all_done",
        "one_success",
        "one_failed",
        "none_failed",
        "none_skipped",
        "all_skipped",
        "all_done_min_one_success",
        "one_done",
        "always",
    }
)
ISOLATIONS = frozenset({"process", "fresh", "thread"})
EXECUTORS = ("local", "dask")
ID_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,249}$")

# Settings a DAG's default_args may give to each of its tasks.
TASK_DEFAULT_KEYS = frozenset(
    {
        "retries",
        "retry_delay",
        "retry_exponential_backoff",
        "max_retry_delay",
        "retry_jitter",
        "retry_on",
        "execution_timeout",
        "trigger_rule",
        "isolation",
        "inherit_env",
        "memory_limit",
        "executor",
        "resources",
        "on_failure_callback",
        "on_success_callback",
        "on_retry_callback",
        "on_execute_callback",
        "email",
        "email_on_failure",
        "email_on_retry",
        "email_on_success",
    }
)
# A task's callbacks (Airflow's names): when each runs, see dagd.scheduler.callbacks.
TASK_CALLBACKS = ("on_execute_callback", "on_success_callback", "on_failure_callback",
                  "on_retry_callback")
# A DAG's callbacks, for its runs.
DAG_CALLBACKS = ("on_success_callback", "on_failure_callback")


def check_id(value: Any, what: str, **where: Any) -> str:
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise DagDefinitionError(
            f"{what} must be 1-250 letters, digits, '_', '.' or '-', got {value!r}", **where
        )
    return value


def with_defaults(defaults: dict[str, Any], **given: Any) -> dict[str, Any]:
    """Each setting as the task gave it, or else (given as None) the DAG's default."""
    return {k: (v if v is not None else defaults.get(k)) for k, v in given.items()}


def build_retry_policy(settings: dict[str, Any], **where: Any) -> RetryPolicy:
    """The task's RetryPolicy; its errors name the task and the field the user wrote."""
    try:
        return RetryPolicy.build(
            retries=settings["retries"] or 0,
            retry_delay=(
                settings["retry_delay"] if settings["retry_delay"] is not None else 300.0
            ),
            retry_exponential_backoff=bool(settings["retry_exponential_backoff"]),
            max_retry_delay=settings["max_retry_delay"],
            jitter=settings["retry_jitter"] or 0.0,
            retry_on=settings["retry_on"],
        )
    except DagDefinitionError as exc:
        # RetryPolicy calls it `jitter`; the user wrote `retry_jitter`.
        if exc.field == "jitter":
            raise DagDefinitionError(
                f"retry_{exc.message}", field="retry_jitter", **where
            ) from None
        raise DagDefinitionError(exc.message, field=exc.field, **where) from None


def check_timeout(value: Any, field: str = "execution_timeout", **where: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise DagDefinitionError(
            f"{field} must be a positive number of seconds or a timedelta, got {value!r}",
            field=field,
            **where,
        )
    return float(value)


def check_trigger_rule(value: Any, **where: Any) -> str:
    rule = value or "all_success"
    if rule not in TRIGGER_RULES:
        raise DagDefinitionError(
            f"unknown trigger rule {rule!r}; use one of {', '.join(sorted(TRIGGER_RULES))}",
            field="trigger_rule",
            **where,
        )
    return rule


def check_isolation(value: Any, **where: Any) -> str | None:
    if value is not None and value not in ISOLATIONS:
        raise DagDefinitionError(
            f"isolation must be 'process', 'fresh' or 'thread', got {value!r}",
            field="isolation",
            **where,
        )
    return value


def check_inherit_env(value: Any, **where: Any) -> bool:
    if value is not None and not isinstance(value, bool):
        raise DagDefinitionError(
            f"inherit_env must be True or False, got {value!r}", field="inherit_env", **where
        )
    return bool(value)


def check_memory_limit(value: Any, **where: Any) -> int | None:
    """Bytes, from an int or a string such as "512MB" or "2GiB"; None: no limit."""
    if value is None:
        return None
    try:
        return parse_bytes(value)
    except ValueError as exc:
        raise DagDefinitionError(f"memory_limit {exc}", field="memory_limit", **where) from None


def check_executor(value: Any, **where: Any) -> str:
    """Where the task runs: "local" (this machine, the default) or "dask" (a cluster)."""
    executor = "local" if value is None else value
    if executor not in EXECUTORS:
        raise DagDefinitionError(f"executor must be 'local' or 'dask', got {value!r}",
                                 field="executor", **where)
    return str(executor)


def check_resources(value: Any, **where: Any) -> dict[str, float]:
    """Dask worker resources a task needs, `{"GPU": 1, "memory": "8GB"}`: each a number
    more than 0, or a size in bytes as a string (a worker started with
    `--resources "memory=8e9"` offers that many)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DagDefinitionError(f"resources must be a dict such as {{'GPU': 1}}, got "
                                 f"{value!r}", field="resources", **where)
    found: dict[str, float] = {}
    for name, amount in value.items():
        if not isinstance(name, str) or not name or "=" in name or "," in name:
            raise DagDefinitionError(f"resources: {name!r} is not a resource name",
                                     field="resources", **where)
        try:
            number = float(parse_bytes(amount)) if isinstance(amount, str) else amount
        except ValueError as exc:
            raise DagDefinitionError(f"resources[{name!r}] {exc}", field="resources",
                                     **where) from None
        if isinstance(number, bool) or not isinstance(number, int | float) or not number > 0:
            raise DagDefinitionError(f"resources[{name!r}] must be a number more than 0, "
                                     f"got {amount!r}", field="resources", **where)
        found[name] = float(number)
    return found


def check_on_dask(task: Any, executor: Any, resources: dict[str, float], *,
                  isolation: Any = None, **where: Any) -> tuple[str, dict[str, float]]:
    """A task's executor and resources, checked together: only a kind that needs
    nothing of the daemon's but the DAG file's text runs on Dask, not when the task
    itself asks for a thread (`isolation`, as the task gave it: a DAG's default of
    "thread" means a process there), and only with `distributed` installed."""
    executor = check_executor(executor, **where)
    if executor == "local":
        if resources:
            raise DagDefinitionError("resources= are Dask worker resources: set "
                                     "executor=\"dask\" too", field="resources", **where)
        return executor, resources
    if not type(task).runs_on_dask:
        raise DagDefinitionError(
            f"executor=\"dask\" runs Python functions and shell commands; a {task.kind} task "
            "runs in the daemon (it uses the daemon's connections and their secrets)",
            field="executor", **where)
    if isolation == "thread":
        raise DagDefinitionError(
            "executor=\"dask\" runs the task in a process on a Dask worker: drop "
            "isolation=\"thread\"", field="isolation", **where)
    import importlib.util

    if importlib.util.find_spec("distributed") is None:
        raise DagDefinitionError(
            "executor=\"dask\" needs Dask's distributed package, which is not installed: "
            "pip install 'dagd[dask]'", field="executor", **where)
    return executor, resources


def check_callbacks(value: Any, field: str, **where: Any) -> tuple[Callable[..., Any], ...]:
    """A callback setting: None, one callable or a list of them (as Airflow accepts)."""
    if value is None:
        return ()
    items = list(value) if isinstance(value, list | tuple) else [value]
    for item in items:
        if not callable(item):
            raise DagDefinitionError(
                f"{field} must be a function (or a list of functions) taking the context, "
                f"got {item!r}", field=field, **where)
        if not _takes_one_argument(item):
            raise DagDefinitionError(
                f"{field}: {getattr(item, '__name__', item)!r} must take one argument, the "
                "context (def callback(context): ...)", field=field, **where)
    return tuple(items)


def _takes_one_argument(fn: Callable[..., Any]) -> bool:
    """True if `fn(context)` binds (or its signature cannot be read: a builtin)."""
    try:
        inspect.signature(fn).bind(None)
    except TypeError:
        return False
    except ValueError:
        return True
    return True


# One address, as people write it in a DAG file: local@domain, nothing else (no display
# name, no second address, no CR/LF: it goes into a header and an SMTP envelope).
_ADDRESS = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def check_address(value: Any) -> bool:
    # fullmatch: `$` alone would let a final newline through.
    return isinstance(value, str) and _ADDRESS.fullmatch(value) is not None


def check_email(value: Any, field: str = "email", **where: Any) -> tuple[str, ...]:
    """`email=`: an address, a list of them, or a string of them separated by commas or
    semicolons (as Airflow accepts); each checked. None: nobody."""
    if value is None:
        return ()
    items = re.split(r"[,;]", value) if isinstance(value, str) else value
    if not isinstance(items, list | tuple | set | frozenset):
        raise DagDefinitionError(
            f"{field} must be an email address or a list of them, got {value!r}",
            field=field, **where)
    addresses = tuple(a.strip() if isinstance(a, str) else a for a in items)
    for address in addresses:
        if not check_address(address):
            raise DagDefinitionError(
                f"{field}: {address!r} is not an email address (one address each, "
                "like name@example.com)", field=field, **where)
    return tuple(dict.fromkeys(addresses))


def check_flag(value: Any, field: str, default: bool, **where: Any) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise DagDefinitionError(f"{field} must be True or False, got {value!r}",
                                 field=field, **where)
    return value
