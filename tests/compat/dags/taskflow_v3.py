"""Airflow 3's TaskFlow idiom through airflow.sdk: @dag, @task with multiple_outputs,
.override, .partial/.expand, @task.branch, @task.short_circuit, @task_group,
setup/teardown, Label, chain, get_current_context, @task.bash, XComArg."""

import pendulum
from airflow.sdk import Label, chain, dag, get_current_context, setup, task, task_group, teardown


@setup
def make_room():
    return "room"


@task(multiple_outputs=True)
def extract():
    return {"a": 1, "b": 2, "items": [1, 2, 3]}


@task
def scale(x: int, factor: int) -> int:
    return x * factor


@task
def total(values) -> int:
    return sum(values)


@task.branch
def choose(n: int) -> str:
    return "big" if n > 50 else "small"


@task
def big():
    return "big"


@task
def small():
    return "small"


@task.short_circuit
def gate() -> bool:
    return False


@task
def after_gate():
    return "never"


@task
def describe(n):
    ctx = get_current_context()
    return f"{ctx['ti'].task_id}:{n}"


@task.bash
def shout(text: str) -> str:
    return f"echo shout-{text}"


@task_group
def report(n):
    return shout(describe(n))


@teardown
def clean_room():
    return "clean"


@dag(
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["taskflow"],
)
def taskflow_v3(factor: int = 10):
    """### Taskflow
    Extract, transform, load."""
    room = make_room()
    parts = extract()
    scaled = scale.partial(factor=factor).expand(x=parts["items"])
    summed = total(scaled)
    label = scale.override(task_id="label_a")(parts["a"], 100)
    pick = choose(summed)
    pick >> Label("more than 50") >> big()
    pick >> Label("otherwise") >> small()
    chain(gate(), after_gate())
    rep = report(summed)
    room >> parts
    [rep, label] >> clean_room()


taskflow_v3()
