"""XCom as Airflow tasks see it: keys beside the return value, `XComArg` and `.output`.

dagd keeps one XCom per task instance, its return value. An Airflow task that pushed
other keys (`ti.xcom_push(key, value)`) stores them with its return value in one JSON
object, `{"__airflow_xcom__": {"return_value": ..., "key": ...}}`; `unpack` reads a key
back (a dict returned with `multiple_outputs` gives its keys too). Pure.
"""

from __future__ import annotations

from typing import Any

from dagd.authoring.tasks import BaseTask
from dagd.authoring.tasks import XComArg as DagdXComArg
from dagd.compat.airflow.links import Linking, SetupTeardownScope

MARK = "__airflow_xcom__"
RETURN = "return_value"


def pack(value: Any, pushed: dict[str, Any]) -> Any:
    """What an Airflow task's attempt stores: its return value, or that and its keys."""
    extra = {k: v for k, v in pushed.items() if k != RETURN}
    if not extra:
        return pushed.get(RETURN, value) if value is None else value
    if value is not None:
        extra[RETURN] = value
    elif RETURN in pushed:
        extra[RETURN] = pushed[RETURN]
    return {MARK: extra}


def unpack(stored: Any, key: str | None = RETURN) -> Any:
    """One key of what a task stored (None: not there). `key=None` is Airflow's "any
    key": the return value, else the last key pushed."""
    if isinstance(stored, dict) and MARK in stored and len(stored) == 1:
        values = stored[MARK]
        if key is None:
            return values.get(RETURN, next(reversed(values.values()), None))
        return values.get(key)
    key = key or RETURN
    if key == RETURN:
        return stored
    if isinstance(stored, dict):
        return stored.get(key)
    return None


def pull(upstream: dict[str, Any], task: BaseTask | None, task_id: str, key: str | None) -> Any:
    """The value of `key` of the upstream task `task_id` (a mapped one: each instance's)."""
    stored = upstream.get(task_id)
    if task is not None and getattr(task, "mapped", None) is not None and isinstance(
            stored, list):
        return [unpack(v, key) for v in stored]
    return unpack(stored, key)


class XComArg(SetupTeardownScope, Linking, DagdXComArg):
    """A task's future value (its return value, or another key), usable as another
    task's argument: `PythonOperator(op_args=[extract.output])`."""

    def __init__(self, operator: BaseTask, key: str = RETURN,
                 path: tuple[Any, ...] = ()) -> None:
        super().__init__(operator, path)
        self.key = key

    @property
    def operator(self) -> BaseTask:
        return self.task

    def __getitem__(self, key: Any) -> XComArg:
        return XComArg(self.task, self.key, (*self.path, key))

    def resolve(self, upstream: dict[str, Any]) -> Any:
        value = pull(upstream, self.task, self.task.task_id, self.key)
        for step in self.path:
            value = value[step]
        return value

    def map(self, *_: Any) -> Any:
        from dagd.compat.hook import unsupported

        raise unsupported("XComArg.map")

    def zip(self, *_: Any, **__: Any) -> Any:
        from dagd.compat.hook import unsupported

        raise unsupported("XComArg.zip")

    concat = zip

    def as_setup(self) -> Any:
        Linking.as_setup(self)
        return self

    def __str__(self) -> str:
        """As Airflow's: the template that pulls this value, for a templated field
        (`bash_command=f"echo {task.output}"`)."""
        args = [f"task_ids='{self.task.task_id}'"]
        dag = getattr(self.task, "dag", None)
        if dag is not None:
            args.append(f"dag_id='{dag.dag_id}'")
        args.append(f"key='{self.key}'")
        steps = "".join(f"[{step!r}]" for step in self.path)
        pulled = f"task_instance.xcom_pull({', '.join(args)})"
        return "{{ " + (f"({pulled}){steps}" if steps else pulled) + " }}"

    def __repr__(self) -> str:
        return f"XComArg({self.task.task_id}, key={self.key!r})"
