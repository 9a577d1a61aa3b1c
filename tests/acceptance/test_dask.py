"""executor="dask" against a real cluster: a `dask scheduler` and two `dask worker`
processes on 127.0.0.1 (one offering a GPU resource), and a LocalCluster for
`address = "local"`, with `dagd run` as a subprocess.

Tasks spread over both workers (each attempt records its worker), local and Dask tasks
pass XComs to each other, a timeout on Dask stops the work, GPU tasks go only to the
GPU worker, a worker killed with -9 mid-task costs one attempt and the retry runs on the
other, the scheduler stopped and started again costs nothing, a daemon killed with an
attempt on the cluster settles it at its restart and stops it there, and a task marked
by a person is stopped on its worker.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from acceptance.dask_cluster import Cluster, wait_port_free
from acceptance.harness import Daemon, Dagd, process_gone

if importlib.util.find_spec("distributed") is None:  # found, not imported (see dask_cluster)
    pytest.skip("needs distributed: pip install 'dagd[dask]'", allow_module_level=True)
pytestmark = pytest.mark.slow

RUN_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    found = Cluster(tmp_path_factory.mktemp("dask"))
    try:
        found.start_scheduler()
        found.start_worker("w1")
        found.start_worker("w2", resources="GPU=1")
        found.workers(2)
        yield found
    finally:
        found.close()


def configure(dagd: Dagd, address: str, extra: str = "") -> None:
    with dagd.config.open("a") as config:
        config.write(f'\n[workers]\nsize = 2\n\n[executors.dask]\naddress = "{address}"\n'
                     f"{extra}")


def trigger(dagd: Dagd, dag_id: str) -> int:
    done = dagd.cli("trigger", dag_id)
    assert done.code == 0, done
    match = re.search(r"run (\d+) queued", done.stdout)
    assert match, done
    return int(match[1])


def attempts(dagd: Dagd, run_id: int) -> list[dict[str, Any]]:
    rows = dagd.query(
        "SELECT t.task_id, t.map_index, a.try_number, a.state, a.worker, a.pid, a.error, "
        "a.log_path FROM attempt a JOIN task_instance t ON t.id = a.ti_id "
        "WHERE t.run_id = ? ORDER BY a.id", (run_id,))
    keys = ("task_id", "map_index", "try_number", "state", "worker", "pid", "error", "log")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def read_log(attempt: dict[str, Any]) -> str:
    path = Path(attempt["log"])
    return path.read_text() if path.exists() else ""


def started(dagd: Dagd, run_id: int, task_id: str, try_number: int = 1) -> dict[str, Any]:
    """The attempt, once a Dask worker has said it runs it."""
    def running() -> dict[str, Any] | None:
        for a in attempts(dagd, run_id):
            if (a["task_id"], a["try_number"]) == (task_id, try_number) and a["worker"]:
                return a
        return None

    found: dict[str, Any] = dagd.wait(running, timeout=RUN_TIMEOUT,
                                      what=f"{task_id} #{try_number} on a worker")
    return found


SPREAD = """
    import time
    from dagd import DAG, task

    with DAG("spread", max_active_tasks=8):
        @task
        def numbers():
            return [1, 2, 3, 4]

        @task(executor="dask")
        def square(x):
            time.sleep(1)  # four of them on two one-thread workers: both get some
            print(f"square of {x}")
            return x * x

        @task
        def total(squares):
            return sum(squares)

        @task(executor="dask", resources={"GPU": 1})
        def train(total):
            return {"total": total, "trained": True}

        train(total(square.expand(x=numbers())))
"""


def test_tasks_spread_over_the_workers_with_xcoms_between_local_and_dask(
        cluster: Cluster, dagd: Dagd, write_dag: Any) -> None:
    workers = cluster.workers(2)
    configure(dagd, cluster.address)
    write_dag("spread.py", SPREAD)
    daemon = dagd.start()
    run_id = trigger(dagd, "spread")
    dagd.wait_runs({run_id: "success"}, timeout=RUN_TIMEOUT)
    rows = attempts(dagd, run_id)
    squares = [a for a in rows if a["task_id"] == "square"]
    assert len(squares) == 4 and all(a["state"] == "success" for a in squares)
    assert {a["worker"] for a in squares} == set(workers.values())  # both workers ran some
    local = [a for a in rows if a["task_id"] in ("numbers", "total")]
    assert all(a["worker"] is None and a["pid"] for a in local)
    train = next(a for a in rows if a["task_id"] == "train")
    assert train["worker"] == workers["w2"]  # GPU=1: only the worker that offers one
    assert "square of 3" in read_log(squares[2])
    assert f"ran on the Dask worker {squares[2]['worker']}" in read_log(squares[2])
    status, body = daemon.request("GET", f"/api/v1/runs/{run_id}/tasks/train")
    assert status == 200
    assert body["attempts"][0]["worker"] == workers["w2"]
    assert body["attempts"][0]["where"] == f"Dask worker {workers['w2']}"
    status, xcom = daemon.request("GET", f"/api/v1/runs/{run_id}/tasks/train/xcom")
    assert status == 200 and xcom.get("value") == {"total": 30, "trained": True}, xcom
    doctor = dagd.cli("doctor")
    assert re.search(r"dask .*answers \(for spread\), with 2 worker\(s\)", doctor.stdout), doctor
    shown = dagd.cli("dags", "show", "spread")
    assert shown.code == 0, shown
    assert re.search(r"train .*dask GPU=1 .*" + re.escape(workers["w2"]), shown.stdout)
    assert re.search(r"total .*local .*pid \d+", shown.stdout)


TIMEOUT = """
    import subprocess
    import time
    from pathlib import Path
    from dagd import DAG, ShellTask, task

    with DAG("hangs", default_args={"executor": "dask"}):
        @task(execution_timeout=1.5)
        def hang(out: str):
            child = subprocess.Popen(["sleep", "300"])
            Path(out).write_text(str(child.pid))
            time.sleep(300)

        @task(trigger_rule="all_done")
        def after():
            return "the slot came back"

        @task(memory_limit="100MB")
        def hog():
            return len(bytearray(400_000_000))

        hang(out="{out}") >> after()
        hog()
        ShellTask(task_id="shell", command="echo a shell command on a Dask worker, pid $$")
"""


def test_a_timeout_and_a_memory_limit_on_dask_stop_the_work_and_shell_runs_there(
        cluster: Cluster, dagd: Dagd, write_dag: Any) -> None:
    cluster.workers(2)
    configure(dagd, cluster.address)
    out = dagd.root / "child.pid"
    write_dag("hangs.py", TIMEOUT.replace("{out}", str(out)))
    dagd.start()
    run_id = trigger(dagd, "hangs")
    dagd.wait_runs({run_id: "failed"}, timeout=RUN_TIMEOUT)
    hang, after, hog, shell = (next(a for a in attempts(dagd, run_id) if a["task_id"] == t)
                               for t in ("hang", "after", "hog", "shell"))
    assert hang["state"] == "failed"
    assert "execution_timeout of 1.5s exceeded" in hang["error"]
    assert "process killed" in read_log(hang)
    assert after["state"] == "success"
    assert hog["state"] == "failed"
    assert hog["error"] == "MemoryError: memory limit of 100 MB exceeded"
    assert shell["state"] == "success" and shell["worker"]
    assert "a shell command on a Dask worker" in read_log(shell)
    child = int(out.read_text())
    dagd.wait(lambda: process_gone(child), timeout=10, what="the task's child gone")


KILLED = """
    import time
    from dagd import DAG, task

    with DAG("killed", default_args={"executor": "dask", "retries": 1,
                                      "retry_delay": 0.1}):
        @task
        def work(context=None):
            if context.try_number == 1:
                print("first try: running until the worker is killed", flush=True)
                time.sleep(300)
            return f"try {context.try_number}"

        work()
"""


def test_a_worker_killed_mid_task_costs_one_attempt_and_the_retry_runs_on_the_other(
        cluster: Cluster, dagd: Dagd, write_dag: Any) -> None:
    workers = cluster.workers(2)
    configure(dagd, cluster.address)
    write_dag("killed.py", KILLED)
    dagd.start()
    run_id = trigger(dagd, "killed")
    first = started(dagd, run_id, "work")
    victim = next(name for name, address in workers.items() if address == first["worker"])
    cluster.kill(victim)
    try:
        dagd.wait_runs({run_id: "success"}, timeout=RUN_TIMEOUT)
        rows = attempts(dagd, run_id)
        assert [a["state"] for a in rows] == ["failed", "success"]  # no third run
        assert "crashed" in rows[0]["error"] and first["worker"] in rows[0]["error"]
        assert rows[1]["worker"] != first["worker"]
        assert rows[1]["worker"] in workers.values()
        assert f"ran on the Dask worker {rows[1]['worker']}" in read_log(rows[1])
    finally:  # the cluster as the next tests expect it
        cluster.start_worker(victim, resources="GPU=1" if victim == "w2" else "")
        cluster.workers(2)


RESTART = """
    import time
    from dagd import DAG, task

    with DAG("restart", max_active_runs=2):
        @task
        def local_first():
            return 20

        @task(executor="dask")
        def remote(x):
            print("remote running", flush=True)
            time.sleep(2)
            return x + 1

        @task
        def local_after(y):
            return y * 2

        local_after(remote(local_first()))
"""


def test_the_scheduler_stopped_and_started_again_loses_no_run(
        cluster: Cluster, dagd: Dagd, write_dag: Any) -> None:
    cluster.workers(2)
    configure(dagd, cluster.address)
    write_dag("restart.py", RESTART)
    daemon = dagd.start()
    first = trigger(dagd, "restart")
    started(dagd, first, "remote")  # in flight as the scheduler stops
    # A scheduler's clean stop closes its workers too (a supervisor would start them
    # again, as here once it is back).
    cluster.stop("scheduler")
    cluster.exited("w1", timeout=15)
    cluster.exited("w2", timeout=15)
    wait_port_free(cluster.port, timeout=15)
    second = trigger(dagd, "restart")
    # The local task runs; the Dask one waits queued, and the daemon says why.
    dagd.wait(lambda: dagd.ti_state(second, "local_first") == "success",
              timeout=RUN_TIMEOUT, what="the local task done")
    dagd.wait(lambda: "wait queued" in daemon.log(), timeout=RUN_TIMEOUT,
              what="the daemon saying Dask tasks wait")
    assert dagd.ti_state(second, "remote") == "queued"
    doctor = dagd.cli("doctor")
    assert re.search(r"dask .*cannot be reached", doctor.stdout), doctor
    cluster.start_scheduler()
    cluster.start_worker("w1")
    cluster.start_worker("w2", resources="GPU=1")
    dagd.wait_runs({first: "success", second: "success"}, timeout=60)
    for run_id in (first, second):
        rows = attempts(dagd, run_id)
        assert [a["task_id"] for a in rows] == ["local_first", "remote", "local_after"]
        assert rows[1]["worker"]
        status, xcom = daemon.request("GET",
                                      f"/api/v1/runs/{run_id}/tasks/local_after/xcom")
        assert status == 200 and xcom.get("value") == 42, xcom
    resent = attempts(dagd, first)[1]
    assert "connection to the Dask scheduler was lost; sent again" in read_log(resent)
    cluster.workers(2)


LEFT = """
    import os
    import time
    from pathlib import Path
    from dagd import DAG, task

    with DAG("left", default_args={"executor": "dask", "retries": 1, "retry_delay": 0.1}):
        @task
        def work(out: str, context=None):
            if context.try_number == 1:
                Path(out).write_text(str(os.getpid()))
                time.sleep(300)
            return "again"

        work(out="{out}")
"""


def test_a_daemon_killed_with_an_attempt_on_dask_settles_and_stops_it_at_restart(
        cluster: Cluster, dagd: Dagd, write_dag: Any) -> None:
    cluster.workers(2)
    configure(dagd, cluster.address)
    out = dagd.root / "work.pid"
    write_dag("left.py", LEFT.replace("{out}", str(out)))
    daemon: Daemon = dagd.start()
    run_id = trigger(dagd, "left")
    started(dagd, run_id, "work")
    dagd.wait(out.exists, timeout=RUN_TIMEOUT, what="the first try running")
    daemon.kill()
    again = dagd.start()
    dagd.wait_runs({run_id: "success"}, timeout=RUN_TIMEOUT)
    rows = attempts(dagd, run_id)
    assert [a["state"] for a in rows] == ["failed", "success"]
    assert rows[0]["error"] == "daemon restarted"
    # The first try's process on the worker is stopped, and its key released.
    first = int(out.read_text())
    dagd.wait(lambda: process_gone(first), timeout=15, what="the stale attempt stopped")
    dagd.wait(lambda: "released 1 attempt key(s)" in again.log(), timeout=15,
              what="the stale key released")


def test_a_task_marked_by_a_person_is_stopped_on_its_worker(
        cluster: Cluster, dagd: Dagd, write_dag: Any) -> None:
    cluster.workers(2)
    configure(dagd, cluster.address)
    out = dagd.root / "work.pid"
    write_dag("left.py", LEFT.replace("{out}", str(out)))
    daemon = dagd.start()
    run_id = trigger(dagd, "left")
    started(dagd, run_id, "work")
    dagd.wait(out.exists, timeout=RUN_TIMEOUT, what="the attempt running")
    status, body = daemon.request("POST", f"/api/v1/runs/{run_id}/tasks/work/mark",
                                  {"state": "failed"})
    assert status == 200, body
    dagd.wait_runs({run_id: "failed"}, timeout=RUN_TIMEOUT)
    pid = int(out.read_text())
    dagd.wait(lambda: process_gone(pid), timeout=15, what="the marked attempt stopped")


LOCAL = """
    import os
    from dagd import DAG, task

    with DAG("local_cluster", default_args={"executor": "dask"}):
        @task
        def where(x):
            return x

        @task(executor="local")
        def gather(xs):
            return sorted(xs)

        gather(where.expand(x=[1, 2, 3]))
"""


def test_address_local_starts_a_local_cluster(dagd: Dagd, write_dag: Any) -> None:
    configure(dagd, "local", "n_workers = 2\nthreads_per_worker = 1\n")
    write_dag("local_cluster.py", LOCAL)
    daemon = dagd.start()
    run_id = trigger(dagd, "local_cluster")
    dagd.wait_runs({run_id: "success"}, timeout=60)
    rows = [a for a in attempts(dagd, run_id) if a["task_id"] == "where"]
    assert len(rows) == 3 and all(str(a["worker"]).startswith("tcp://127.0.0.1:") for a in rows)
    status, xcom = daemon.request("GET", f"/api/v1/runs/{run_id}/tasks/gather/xcom")
    assert status == 200 and xcom.get("value") == [1, 2, 3], xcom
