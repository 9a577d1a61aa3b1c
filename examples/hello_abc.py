"""The seed's first example: A >> B >> C. Task A must finish before B, B before C."""

import logging

from dagd import DAG, PythonTask

log = logging.getLogger(__name__)


def say(letter: str, run_id: int) -> str:
    log.info("task %s of run %s", letter, run_id)
    return f"{letter} done"


with DAG("hello_abc", description="A >> B >> C, the smallest pipeline", tags=["example"]):
    a = PythonTask(task_id="A", python_callable=say, op_args=["A"])
    b = PythonTask(task_id="B", python_callable=say, op_args=["B"])
    c = PythonTask(task_id="C", python_callable=say, op_args=["C"])
    a >> b >> c
