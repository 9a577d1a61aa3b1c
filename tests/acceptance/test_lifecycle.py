"""The daemon's life: killed mid-run, stopped by SIGTERM (once, twice), started twice."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from acceptance.harness import Daemon, Dagd, process_gone, table_rows, wait_until

pytestmark = pytest.mark.slow

# A sync task in a worker process and an async task in the loop, both of which block on
# their first try (the test kills or stops the daemon meanwhile) and finish at once later.
CRASH_DAG = """
    import time

    import anyio

    from dagd import DAG, PythonTask


    def work(run_id, try_number):
        print(f"work run {run_id} try {try_number} starting", flush=True)
        time.sleep(60 if try_number == 1 else 1.0)
        print(f"work run {run_id} try {try_number} done", flush=True)


    async def watch(run_id, try_number):
        print(f"watch run {run_id} try {try_number} starting")
        if try_number == 1:
            await anyio.sleep(60)
        print(f"watch run {run_id} try {try_number} done")


    async def report(run_id):
        print(f"report run {run_id}")


    with DAG("crash", default_args={"retries": 1, "retry_delay": 0}):
        w = PythonTask(task_id="work", python_callable=work)
        a = PythonTask(task_id="watch", python_callable=watch)
        r = PythonTask(task_id="report", python_callable=report)
        [w, a] >> r
"""

# `long` outlives any grace period on its first try; `short` ends when told to; `flaky`
# fails its first try and waits `retry_delay` for its second.
GRACE_DAG = """
    import time
    from pathlib import Path

    from dagd import DAG, PythonTask

    RELEASE = Path({release!r})


    def long(try_number):
        print(f"long try {{try_number}} starting", flush=True)
        if try_number == 1:
            time.sleep(60)
        print(f"long try {{try_number}} done", flush=True)


    def short():
        print("short starting", flush=True)
        deadline = time.monotonic() + 30
        while not RELEASE.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        print("short done", flush=True)


    def flaky(try_number):
        if try_number == 1:
            raise RuntimeError("flaky fails its first try")
        print("flaky try 2 done")


    with DAG("grace", default_args={{"retries": 1, "retry_delay": 0}}):
        PythonTask(task_id="long", python_callable=long)
        PythonTask(task_id="short", python_callable=short)
        PythonTask(task_id="flaky", python_callable=flaky, retry_delay={flaky_delay})
"""

QUICK_DAG = """
    from dagd import DAG, PythonTask


    async def hello(run_id):
        print(f"hello from run {run_id}")


    with DAG("quick"):
        PythonTask(task_id="hello", python_callable=hello)
"""


def trigger_api(daemon: Daemon, dag_id: str) -> int:
    status, body = daemon.request("POST", f"/api/v1/dags/{dag_id}/runs", {"conf": {}})
    assert status == 201, body
    return int(body["run_id"])


def log_has(path: str | None, text: str) -> bool:
    return bool(path) and Path(str(path)).exists() and text in Path(str(path)).read_text()


def running_with_output(dagd: Dagd, dag_id: str, task_id: str, runs: list[int]) -> Callable[
    [], bool
]:
    """All `runs` have try 1 of the task running, with its pid (if a worker) and output."""

    def check() -> bool:
        by_run = {a["run_id"]: a for a in dagd.attempts(dag_id, task_id)}
        return all(
            run in by_run
            and by_run[run]["state"] == "running"
            and (task_id != "work" or by_run[run]["pid"] is not None)
            and log_has(by_run[run]["log_path"], "starting")
            for run in runs
        )

    return check


def test_sigkill_mid_run_recovers_every_run(dagd: Dagd, write_dag: Callable[..., Path]) -> None:
    write_dag("crash.py", CRASH_DAG)
    first = dagd.start()
    runs = [trigger_api(first, "crash") for _ in range(3)]
    for task_id in ("work", "watch"):
        dagd.wait(running_with_output(dagd, "crash", task_id, runs), timeout=20,
                  what=f"try 1 of {task_id} running in runs {runs}")
    workers = [a["pid"] for a in dagd.attempts("crash", "work")]
    assert len(workers) == 3 and not any(process_gone(pid) for pid in workers)

    first.signal(signal.SIGKILL)
    assert first.wait_exit(10) == -signal.SIGKILL
    wait_until(lambda: all(process_gone(pid) for pid in workers), timeout=10,
               what=f"worker processes {workers} to die with the daemon")
    assert set(dagd.run_states().values()) == {"running"}

    dagd.start()
    dagd.wait_runs({run: "success" for run in runs}, timeout=30)

    for task_id in ("work", "watch"):
        attempts = dagd.attempts("crash", task_id)
        assert [(a["run_id"], a["try_number"], a["state"], a["error"]) for a in attempts] == [
            row
            for run in runs
            for row in ((run, 1, "failed", "daemon restarted"), (run, 2, "success", None))
        ]
    assert [a["state"] for a in dagd.attempts("crash", "report")] == ["success"] * 3

    run = runs[1]
    one = dagd.cli("logs", "crash", str(run), "work", "--try", "1")
    assert one.code == 0, one
    assert f"work run {run} try 1 starting" in one.stdout
    assert "done" not in one.stdout
    two = dagd.cli("logs", "crash", str(run), "work", "--try", "2")
    assert two.code == 0, two
    assert f"work run {run} try 2 starting" in two.stdout
    assert f"work run {run} try 2 done" in two.stdout
    tasks = dagd.cli("tasks", "list", "crash", str(run))
    assert tasks.code == 0, tasks
    assert [row[:3] for row in table_rows(tasks.stdout) if row[0] == "work"] == [
        ["work", "success", "2/2"]
    ]


def test_sigterm_gives_running_attempts_the_grace_then_interrupts_them(
    dagd: Dagd, write_dag: Callable[..., Path], tmp_path: Path
) -> None:
    release = tmp_path / "release-short"
    write_dag("grace.py", GRACE_DAG.format(release=str(release), flaky_delay=5.0))
    daemon = dagd.start()
    run = trigger_api(daemon, "grace")
    dagd.wait(lambda: dagd.ti_state(run, "flaky") == "up_for_retry", timeout=20,
              what="flaky up for retry")
    for task_id in ("long", "short"):
        dagd.wait(
            lambda t=task_id: any(
                a["state"] == "running" and a["pid"] and log_has(a["log_path"], "starting")
                for a in dagd.attempts("grace", t)
            ),
            timeout=20, what=f"{task_id} running",
        )
    long_pid = dagd.attempts("grace", "long")[0]["pid"]

    sent = time.monotonic()
    daemon.signal(signal.SIGTERM)
    dagd.wait(lambda: "stopping:" in daemon.log(), timeout=5, what="the daemon to start stopping")
    release.touch()  # `short` ends inside the grace period
    assert daemon.wait_exit(2.0 + 2.5) == 0
    took = time.monotonic() - sent
    assert took >= 2.0 - 0.1, f"stopped after {took:.2f}s, before the 2s grace period ended"
    assert process_gone(long_pid)

    assert dagd.run_states() == {run: "running"}
    [long_try] = dagd.attempts("grace", "long")
    assert (long_try["state"], long_try["error"]) == ("failed", "interrupted: the daemon stopped")
    assert dagd.ti_state(run, "long") in ("up_for_retry", "queued")
    assert [a["state"] for a in dagd.attempts("grace", "short")] == ["success"]
    assert dagd.ti_state(run, "short") == "success"
    assert (dagd.data_dir / "dagd.lock").read_bytes() == b""
    [(due,)] = dagd.query(
        "SELECT next_attempt_at FROM task_instance WHERE run_id = ? AND task_id = 'flaky' "
        "AND state = 'up_for_retry'", (run,)
    )

    dagd.start()
    dagd.wait_runs({run: "success"}, timeout=20)
    # The retry delay outlives the restart: flaky's second try waited for its due time.
    [(second_try_started,)] = dagd.query(
        "SELECT a.started_at FROM attempt a JOIN task_instance t ON t.id = a.ti_id "
        "WHERE t.run_id = ? AND t.task_id = 'flaky' AND a.try_number = 2", (run,)
    )
    assert second_try_started >= due
    assert [(a["try_number"], a["state"]) for a in dagd.attempts("grace", "long")] == [
        (1, "failed"), (2, "success")
    ]
    assert [a["try_number"] for a in dagd.attempts("grace", "short")] == [1]
    logs = dagd.cli("logs", "grace", str(run), "long", "--try", "1")
    assert logs.code == 0, logs
    assert "long try 1 starting" in logs.stdout


def test_second_sigterm_forces_the_stop(
    dagd: Dagd, write_dag: Callable[..., Path], tmp_path: Path
) -> None:
    dagd.write_config(grace=60.0)
    write_dag("grace.py", GRACE_DAG.format(release=str(tmp_path / "never"), flaky_delay=0))
    daemon = dagd.start()
    run = trigger_api(daemon, "grace")
    dagd.wait(
        lambda: all(
            [a["state"] for a in dagd.attempts("grace", t) if a["pid"]] == ["running"]
            for t in ("long", "short")
        ),
        timeout=20, what="long and short running",
    )
    daemon.signal(signal.SIGTERM)
    dagd.wait(lambda: "stopping:" in daemon.log(), timeout=5, what="the daemon to start stopping")
    daemon.signal(signal.SIGTERM)
    # Far less than the 60 s grace: the second signal cancels the running attempts, and
    # nothing else (a file watcher's thread, say) holds the exit up.
    assert daemon.wait_exit(3.0) == 0
    assert "forcing stop" in daemon.log()
    assert dagd.run_states() == {run: "running"}
    for task_id in ("long", "short"):
        [attempt] = dagd.attempts("grace", task_id)
        assert (attempt["state"], attempt["error"]) == (
            "failed", "interrupted: the daemon stopped"
        )
        assert process_gone(attempt["pid"])


def test_second_daemon_on_the_same_data_dir_refuses_to_start(
    dagd: Dagd, write_dag: Callable[..., Path]
) -> None:
    write_dag("quick.py", QUICK_DAG)
    first = dagd.start()
    db_files = [dagd.data_dir / "dagd.db", dagd.data_dir / "dagd.db-wal"]  # not -shm: an index
    before = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in db_files}
    lock_before = (dagd.data_dir / "dagd.lock").read_bytes()

    second = dagd.spawn()
    code = second.wait_exit(20)
    assert code != 0
    lines = second.log().strip().splitlines()
    assert len(lines) == 1, lines
    [line] = lines
    assert line.startswith("error: ")
    assert str(dagd.data_dir) in line
    assert f"pid {first.pid}" in line
    assert "Traceback" not in line

    after = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in db_files}
    assert after == before
    assert (dagd.data_dir / "dagd.lock").read_bytes() == lock_before
    assert first.healthy()
    trig = dagd.cli("trigger", "quick")
    assert trig.code == 0, trig
    assert "no daemon" not in trig.stdout
    dagd.wait_runs({1: "success"}, timeout=20)


def test_a_busy_port_is_a_clear_refusal(dagd: Dagd, write_dag: Callable[..., Path]) -> None:
    write_dag("quick.py", QUICK_DAG)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = dagd.cli("run", "--host", "127.0.0.1", "--port", str(port))
    assert result.code == 1, result
    assert "Traceback" not in result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result
    assert f"{port}" in last and "address already in use" in last
    assert (dagd.data_dir / "dagd.lock").read_bytes() == b""
