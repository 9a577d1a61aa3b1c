"""dagd: an event-driven workflow orchestrator. This module is the authoring API.

    from dagd import DAG, task, chain

    with DAG("etl") as etl:
        @task
        def extract(): ...
"""

from dagd.authoring.context import Context, get_current_context
from dagd.authoring.dag import DAG, dag
from dagd.authoring.groups import TaskGroup
from dagd.authoring.tasks import BaseTask, PythonTask, XComArg, chain, task
from dagd.errors import CycleError, DagDefinitionError, DagdError
from dagd.kinds.http import HttpTask
from dagd.kinds.shell import ShellTask
from dagd.kinds.sql import SqlTask
from dagd.retry import RetryPolicy
from dagd.triggers.files import FileDrop
from dagd.triggers.timers import Cron, Interval
from dagd.triggers.webhooks import Webhook

__version__ = "0.1.0"

__all__ = [
    "DAG",
    "BaseTask",
    "Context",
    "Cron",
    "CycleError",
    "DagDefinitionError",
    "DagdError",
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
