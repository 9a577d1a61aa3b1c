"""sigterm: SIGTERM while long tasks run, with shutdown_grace_period = 2 s, twice: with a
shell command, a sync task in its warm worker, one in a fresh worker and an async task
in the loop; then with a sync task in a thread of the daemon as well (a thread cannot
be stopped: the daemon takes another way out).

Measured: the time from the signal to the exit, and, watched every 5 ms, whether the
data directory's lock was free while the process still lived (a second daemon could
then start on the same data while the first still runs); a webhook sent during the
drain. Violations: an exit later than the grace period + 2 s, the lock free while the
process lives, or the webhook not answered 503 with a Retry-After (a sender must be
told to send it again, not find the port closed). Also shown: the exit code, the
attempts recorded as interrupted, and task processes left alive.
"""

from __future__ import annotations

import signal
import time

from faults.harness import (
    Context,
    Daemon,
    Install,
    Reply,
    Result,
    Timeout,
    alive,
    lock_free,
    processes_under,
    wait_until,
)

GRACE = 2.0
LIMIT = GRACE + 2

DAG = """
    import asyncio
    import time

    from dagd import DAG, PythonTask, ShellTask, Webhook

    def sync_sleep():
        time.sleep(120)

    async def async_sleep():
        await asyncio.sleep(120)

    with DAG("long", triggers=[Webhook("long", auth="none")]):
        ShellTask(task_id="shell", command="sleep 120")
        PythonTask(task_id="sync", python_callable=sync_sleep)
        PythonTask(task_id="fresh", python_callable=sync_sleep, isolation="fresh")
        PythonTask(task_id="in_loop", python_callable=async_sleep)
"""
THREAD = """
        PythonTask(task_id="thread", python_callable=sync_sleep, isolation="thread")
"""


def hook_while_draining(daemon: Daemon, result: Result, label: str) -> None:
    """A webhook once the drain has begun: 503 with Retry-After, not a closed port."""
    try:
        wait_until(lambda: "stopping:" in daemon.log(), timeout=GRACE, what="the drain")
        reply: Reply | None = daemon.post("/hooks/long", {"during": "the drain"})
    except (Timeout, OSError) as exc:
        reply = None
        result.figures[f"{label}: webhook during the drain"] = f"no answer: {exc}"
    if reply is not None:
        result.figures[f"{label}: webhook during the drain"] = (
            f"{reply.status}, Retry-After {reply.headers.get('retry-after')}")
    result.check(reply is not None and reply.status == 503
                 and "retry-after" in reply.headers,
                 f"{label}: a webhook during the drain was not answered 503 with Retry-After")


def stop_once(inst: Install, tasks: int, result: Result, label: str) -> None:
    f = result.figures
    daemon = inst.start()
    run_id = int(daemon.post("/api/v1/dags/long/runs", {"conf": {}}).json()["run_id"])

    def all_running() -> bool:
        return len([a for a in inst.attempts("long") if a["state"] == "running"]) == tasks

    try:
        wait_until(all_running, timeout=30, what=f"the {tasks} long attempts to run")
    except Timeout as exc:
        result.violations.append(f"{label}: {exc}")
    lock = inst.data / "dagd.lock"
    t0 = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    hook_while_draining(daemon, result, label)
    free_at: float | None = None
    while alive(daemon.pid) and time.monotonic() - t0 < LIMIT + 10:
        if free_at is None and lock_free(lock) and alive(daemon.pid):
            free_at = time.monotonic()
        time.sleep(0.005)
    gone_at = time.monotonic()
    exited = not alive(daemon.pid)
    left = processes_under(inst.root)  # before `stop`, which kills what is in its group
    code = daemon.stop(timeout=1)
    took = gone_at - t0
    f[f"{label}: exit after SIGTERM"] = (f"{took:.2f} s, code {code}" if exited
                                         else f"still running after {took:.0f} s: killed")
    result.check(exited and took <= LIMIT,
                 f"{label}: the daemon took {took:.2f} s to exit (limit: grace {GRACE:g} s "
                 "+ 2 s)")
    if free_at is None:
        f[f"{label}: lock free while the process lived"] = "never"
    else:
        f[f"{label}: lock free while the process lived"] = (
            f"for its last {(gone_at - free_at) * 1000:.0f} ms")
        result.violations.append(
            f"{label}: the data directory's lock was free {(gone_at - free_at) * 1000:.0f} "
            "ms before the process exited")
    f[f"{label}: attempts"] = {a["task_id"]: f"{a['state']}: {a['error']}"
                               for a in inst.attempts("long") if a["run_id"] == run_id}
    f[f"{label}: task processes alive after the exit"] = len(left)


def run(ctx: Context) -> Result:
    result = Result()
    result.figures["shutdown_grace_period"] = f"{GRACE:g} s"
    plain = ctx.install("sigterm")
    plain.write_config(grace=GRACE)
    plain.write_dag("long.py", DAG)
    stop_once(plain, 4, result, "shell, worker, fresh worker, async")
    threaded = ctx.install("sigterm-thread")
    threaded.write_config(grace=GRACE)
    threaded.write_dag("long.py", DAG + THREAD)
    stop_once(threaded, 5, result, "and a thread task")
    return result
