"""containment: tasks that misbehave must not hurt the daemon or outlive their attempt.

- a task printing 1 GiB (quick: 200 MiB): its log stays at the configured cap, and the
  API keeps answering meanwhile (its latency measured while the task runs);
- a sync task that segfaults in its worker process: the attempt fails, the daemon lives;
- a task that forks a child and returns, a shell command that leaves `sleep &` behind,
  and a task whose child calls setsid while the task hangs past its timeout: no
  descendant is alive once the attempt has ended (looked up in /proc);
- a task allocating 2 GB with memory_limit="256MB": it fails, with a message that names
  the limit.
Each DAG is a file of its own, so one that cannot load leaves the others running.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

from faults.harness import (
    Context,
    Daemon,
    Install,
    Result,
    Timeout,
    alive,
    pct,
    wait_until,
)

LOG_CAP = 1024 * 1024  # [logs] max_bytes here

NOISY = """
    import sys

    from dagd import DAG, task

    @task
    def print_a_lot():
        chunk = "0123456789abcde\\n" * 65536  # 1 MiB
        for _ in range({mib}):
            sys.stdout.write(chunk)
        sys.stdout.flush()
        return {mib}

    with DAG("noisy"):
        print_a_lot()
"""

CRASH = """
    from dagd import DAG, task

    @task(isolation="process")
    def segfault():
        import ctypes
        ctypes.string_at(0)

    with DAG("crash"):
        segfault()
"""

FORKER = """
    import os
    import time

    from dagd import DAG, task

    @task
    def fork_and_return():
        pid = os.fork()
        if pid == 0:
            time.sleep(600)
            os._exit(0)
        with open("{pidfile}", "w") as f:
            f.write(str(pid))
        return pid

    with DAG("forker"):
        fork_and_return()
"""

ESCAPER = """
    import os
    import time

    from dagd import DAG, task

    @task(execution_timeout=2)
    def setsid_and_hang():
        pid = os.fork()
        if pid == 0:
            os.setsid()  # a session of its own: out of the worker's process group
            time.sleep(600)
            os._exit(0)
        with open("{pidfile}", "w") as f:
            f.write(str(pid))
        time.sleep(600)

    with DAG("escaper"):
        setsid_and_hang()
"""

SHELL_BG = """
    from dagd import DAG, ShellTask

    with DAG("shell_bg"):
        ShellTask(task_id="leave_a_child", command="sleep 600 & echo $! > {pidfile}")
"""

HOG = """
    from dagd import DAG, task

    @task(memory_limit="256MB")
    def allocate_2gb():
        data = b"x" * (2 * 1024 ** 3)
        return len(data)

    with DAG("hog"):
        allocate_2gb()
"""

LIMIT_NAMED = re.compile(r"memory_limit|256\s?(MB|MiB|M\b)|268435456|268\.4", re.I)


def probe(daemon: Daemon, stop: threading.Event, out: dict[str, Any]) -> None:
    """GET the API every 50 ms; record each answer's latency, and each failure."""
    while not stop.wait(0.05):
        t0 = time.perf_counter()
        try:
            reply = daemon.request("GET", "/api/v1/runs?limit=5", timeout=10)
            ok = reply.status == 200
        except OSError:
            ok = False
        if ok:
            out["latencies"].append((time.perf_counter() - t0) * 1000)
        else:
            out["failures"] += 1


def trigger(daemon: Daemon, dag_id: str) -> int | None:
    reply = daemon.post(f"/api/v1/dags/{dag_id}/runs", {"conf": {}})
    return int(reply.json()["run_id"]) if reply.status == 201 else None


def flood_log(ctx: Context, inst: Install, daemon: Daemon, result: Result) -> None:
    f = result.figures
    mib = ctx.size(1024, 200)
    out: dict[str, Any] = {"latencies": [], "failures": 0}
    stop = threading.Event()
    prober = threading.Thread(target=probe, args=(daemon, stop, out), daemon=True)
    t0 = time.monotonic()
    run_id = trigger(daemon, "noisy")
    prober.start()
    try:
        state = inst.wait_final([run_id], timeout=ctx.size(300, 120))[run_id] if run_id else None
    except Timeout:
        state = inst.run_state(run_id) if run_id else None
    finally:
        stop.set()
        prober.join()
    attempts = inst.attempts("noisy")
    log_path = Path(attempts[-1]["log_path"]) if attempts else None
    size = log_path.stat().st_size if log_path and log_path.exists() else 0
    lat = out["latencies"]
    f["output printed"] = f"{mib} MiB in {time.monotonic() - t0:.1f} s, run {state}"
    f["log size (cap)"] = f"{size:,} bytes ({LOG_CAP:,})"
    f["API while printing: p50 / p99 / max"] = (
        f"{pct(lat, 0.5):.1f} / {pct(lat, 0.99):.1f} / {max(lat, default=0):.1f} ms, "
        f"{len(lat)} answered, {out['failures']} failed")
    result.check(state == "success", f"the printing task ended {state}")
    result.check(size <= LOG_CAP + 4096, f"its log is {size:,} bytes, over the "
                                         f"{LOG_CAP:,}-byte cap")
    result.check(out["failures"] == 0 and max(lat, default=0) < 2000,
                 f"the API did not answer promptly while the task printed: "
                 f"{out['failures']} failed, max {max(lat, default=0):.0f} ms")


def descendant_gone(pidfile: Path, ctx: Context, what: str, result: Result) -> str:
    """Wait (5 s at most) for the process named in `pidfile` to be gone."""
    try:
        pid = int(pidfile.read_text())
    except (OSError, ValueError):
        return "never started (no pid file)"
    ctx.reaper.adopt(pid)
    try:
        wait_until(lambda: not alive(pid), timeout=5, what=f"{what} (pid {pid}) to be gone")
        return f"gone (pid {pid})"
    except Timeout:
        result.violations.append(f"{what} (pid {pid}) is alive 5 s after its attempt ended")
        return f"ALIVE (pid {pid}) 5 s after its attempt ended"


def one_attempt(inst: Install, dag_id: str) -> dict[str, Any]:
    attempts = inst.attempts(dag_id)
    return attempts[-1] if attempts else {"state": None, "error": None}


def misbehaving(ctx: Context, inst: Install, daemon: Daemon, result: Result) -> None:
    f = result.figures
    runs = {d: trigger(daemon, d) for d in ("crash", "forker", "escaper", "shell_bg", "hog")}
    started = [r for r in runs.values() if r is not None]
    try:
        inst.wait_final(started, timeout=90)
    except Timeout as exc:
        result.violations.append(str(exc))
    seg = one_attempt(inst, "crash")
    f["segfault: attempt"] = f"{seg['state']}: {seg['error']}"
    f["segfault: daemon"] = "alive" if daemon.alive() else "DEAD"
    result.check(seg["state"] == "failed", f"the segfaulting attempt ended {seg['state']}")
    result.check(daemon.alive(), "the daemon died with the segfaulting task")
    fork = one_attempt(inst, "forker")
    f["fork and return: attempt"] = str(fork["state"])
    f["fork and return: the child"] = descendant_gone(
        ctx.tmp / "forker.pid", ctx, "the forked child of a finished task", result)
    bg = one_attempt(inst, "shell_bg")
    f["shell `sleep &`: attempt"] = str(bg["state"])
    f["shell `sleep &`: the child"] = descendant_gone(
        ctx.tmp / "shell_bg.pid", ctx, "the background child of a shell task", result)
    esc = one_attempt(inst, "escaper")
    f["setsid and hang: attempt"] = f"{esc['state']}: {esc['error']}"
    f["setsid and hang: the child"] = descendant_gone(
        ctx.tmp / "escaper.pid", ctx, "the setsid child of a timed-out task", result)
    result.check(esc["state"] == "failed", f"the hanging task ended {esc['state']}")
    memory_limit(inst, runs["hog"], result)


def memory_limit(inst: Install, run_id: int | None, result: Result) -> None:
    f = result.figures
    if run_id is None:
        errors = inst.query("SELECT message FROM import_error WHERE file LIKE '%hog.py'")
        why = errors[0][0] if errors else "no import error recorded"
        f["memory_limit=256MB, 2 GB allocated"] = f"the DAG did not load: {why}"
        result.violations.append(f"memory_limit: the DAG did not load: {why}")
        return
    hog = one_attempt(inst, "hog")
    f["memory_limit=256MB, 2 GB allocated"] = f"{hog['state']}: {hog['error']}"
    named = bool(LIMIT_NAMED.search(str(hog["error"] or "")))
    result.check(hog["state"] == "failed" and named,
                 f"memory_limit: the attempt ended {hog['state']} "
                 f"({hog['error'] or 'no error'}), not failed naming the limit")


def run(ctx: Context) -> Result:
    result = Result()
    inst = ctx.install("containment")
    inst.write_config(f"[logs]\nmax_bytes = {LOG_CAP}\n")
    inst.write_dag("noisy.py", NOISY.replace("{mib}", str(ctx.size(1024, 200))))
    inst.write_dag("crash.py", CRASH)
    for name, source in (("forker", FORKER), ("escaper", ESCAPER), ("shell_bg", SHELL_BG)):
        inst.write_dag(f"{name}.py", source.replace("{pidfile}", str(ctx.tmp / f"{name}.pid")))
    inst.write_dag("hog.py", HOG)
    daemon = inst.start()
    flood_log(ctx, inst, daemon, result)
    misbehaving(ctx, inst, daemon, result)
    health = daemon.health()
    result.figures["daemon at the end"] = (
        f"alive, health {health.status}" if daemon.alive() and health else "DEAD")
    result.check(daemon.alive() and health is not None and health.status == 200,
                 "the daemon is not healthy at the end")
    daemon.stop()
    return result
