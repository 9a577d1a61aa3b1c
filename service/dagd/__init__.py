"""dagd: an event-driven workflow orchestrator. This module is the authoring API.

    from dagd import DAG, task, chain

    with DAG("etl") as etl:
        @task
        def extract(): ...
"""

import importlib
from typing import TYPE_CHECKING, Any

from dagd.authoring.context import Context, get_current_context
from dagd.authoring.dag import DAG, dag
from dagd.authoring.groups import TaskGroup
from dagd.authoring.tasks import BaseTask, PythonTask, XComArg, chain, task
from dagd.errors import CycleError, DagDefinitionError, DagdError
from dagd.retry import RetryPolicy

if TYPE_CHECKING:
    from dagd.kinds.email import EmailTask
    from dagd.kinds.http import HttpTask
    from dagd.kinds.shell import ShellTask
    from dagd.kinds.sql import SqlTask
    from dagd.triggers.files import FileDrop
    from dagd.triggers.timers import Cron, Interval
    from dagd.triggers.webhooks import Webhook

from dagd.version import __version__ as __version__

# Imported on first use: a worker process imports `dagd` for every sync task, and
# these pull in aiohttp, croniter and watchfiles, which most DAG files never need.
_LAZY = {
    "EmailTask": "dagd.kinds.email",
    "HttpTask": "dagd.kinds.http",
    "ShellTask": "dagd.kinds.shell",
    "SqlTask": "dagd.kinds.sql",
    "FileDrop": "dagd.triggers.files",
    "Cron": "dagd.triggers.timers",
    "Interval": "dagd.triggers.timers",
    "Webhook": "dagd.triggers.webhooks",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dagd' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "DAG",
    "BaseTask",
    "Context",
    "Cron",
    "CycleError",
    "DagDefinitionError",
    "DagdError",
    "EmailTask",
    "FileDrop",
    "HttpTask",
    "Interval",
    "PythonTask",
    "RetryPolicy",
    "ShellTask",
    "SqlTask",
    "TaskGroup",
    "Webhook",
    "XComArg",
    "chain",
    "dag",
    "get_current_context",
    "task",
]
