"""Who the built-in email goes to for an event: a task's `email=` and its switches
(Airflow's names and defaults), or a DAG's `email=` and `notify_on=` for its run
summary. Pure: the scheduler asks when it queues a notification; its rows name the
notifier `BUILTIN_EMAIL`.
"""

from __future__ import annotations

from typing import Any

BUILTIN_EMAIL = "dagd.email"
# The notifiers' events (see dagd.notify.base), a task's success, and the success of a
# task that had alerted (a retry email sent earlier in its thread).
EMAIL_EVENTS = ("run_success", "run_failed", "task_failed", "task_retry", "task_success",
                "task_resolved")


def emailed(dag: Any, task: Any, event: str, try_number: int) -> tuple[str, tuple[str, ...]]:
    """(the event as emailed, its recipients; none: no email) for a task's or a run's
    event, from the task's email settings or the DAG's `email=`/`notify_on=`."""
    if task is None:
        wanted = {"run_failed": "failure", "run_success": "success"}.get(event)
        to: tuple[str, ...] = getattr(dag, "email", ())
        return event, (to if wanted in getattr(dag, "notify_on", ()) else ())
    to = getattr(task, "email", ())
    if not to:
        return event, ()
    if event == "task_failed":
        return event, (to if task.email_on_failure else ())
    if event == "task_retry":
        return event, (to if task.email_on_retry else ())
    if event == "task_success":
        if try_number > 1 and task.email_on_retry:
            return "task_resolved", to  # its retry alerted: close the thread
        return event, (to if task.email_on_success else ())
    return event, ()
