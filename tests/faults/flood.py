"""flood: webhooks as fast as a pool of HTTP clients can send them for T seconds.

Figures: requests/s, the 202s, the runs created (equal to the 202s once settled: each
202 is a committed run, and no run exists without its 202), the 5xx answers (none), the
time for the queue of runs to drain, and the daemon's peak resident memory (VmHWM).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import aiohttp
import orjson

from faults.harness import AUTH, Context, Daemon, Result, Timeout, wait_until

DAG = """
    from dagd import DAG, Webhook, task

    @task
    async def noop():
        return None

    with DAG("flooded", triggers=[Webhook("flood", secret_env="FAULTS_SECRET")],
             max_active_runs=100000, max_active_tasks=100000):
        noop()
"""

CLIENTS = 64  # connections in the pool, each sending its next request on its answer


async def hammer(port: int, seconds: float) -> tuple[Counter[str], int]:
    """Send until `seconds` have passed; answers by status (or error class), and count."""
    statuses: Counter[str] = Counter()
    url = f"http://127.0.0.1:{port}/hooks/flood"
    deadline = time.monotonic() + seconds
    sent = 0
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def client(index: int) -> None:
            nonlocal sent
            n = 0
            while time.monotonic() < deadline:
                n += 1
                sent += 1
                body = orjson.dumps({"client": index, "n": n})
                try:
                    async with session.post(url, data=body, headers=AUTH) as response:
                        await response.read()
                        statuses[str(response.status)] += 1
                except (TimeoutError, aiohttp.ClientError) as exc:
                    statuses[type(exc).__name__] += 1

        await asyncio.gather(*(client(i) for i in range(CLIENTS)))
    return statuses, sent


def sample_rss(daemon: Daemon, stop: threading.Event, peak: list[int]) -> None:
    while not stop.wait(0.2):
        peak[0] = max(peak[0], daemon.status("VmRSS"))


def run(ctx: Context) -> Result:
    result = Result()
    f = result.figures
    seconds = ctx.size(20.0, 5.0)
    inst = ctx.install("flood")
    inst.write_config(log_level="WARNING")
    inst.write_dag("flood.py", DAG)
    daemon = inst.start()
    f["resident memory before"] = f"{daemon.status('VmRSS') / 1024:.1f} MB"
    stop = threading.Event()
    peak = [0]
    sampler = threading.Thread(target=sample_rss, args=(daemon, stop, peak), daemon=True)
    sampler.start()
    t0 = time.monotonic()
    statuses, sent = asyncio.run(hammer(daemon.port, seconds))
    elapsed = time.monotonic() - t0
    accepted = statuses.get("202", 0)
    f["seconds"] = round(elapsed, 1)
    f["clients"] = CLIENTS
    f["requests"] = sent
    f["requests/s"] = round(sent / elapsed)
    f["answers"] = dict(statuses.most_common())
    f["202s"] = accepted
    t1 = time.monotonic()
    try:
        wait_until(lambda: inst.active_runs() == 0, timeout=ctx.size(300, 120),
                   what="the runs to drain", step=0.25)
        f["queue drained after the flood"] = f"{time.monotonic() - t1:.1f} s"
    except Timeout:
        f["queue drained after the flood"] = f"not within {time.monotonic() - t1:.0f} s"
        result.violations.append(f"{inst.active_runs()} run(s) still active "
                                 f"{time.monotonic() - t1:.0f} s after the flood")
    stop.set()
    sampler.join()
    runs = int(inst.scalar("SELECT count(*) FROM run WHERE dag_id = 'flooded'") or 0)
    f["runs created"] = runs
    f["runs by state"] = inst.run_states("flooded")
    server_errors = sum(n for s, n in statuses.items() if s.isdigit() and int(s) >= 500)
    f["5xx"] = server_errors
    hwm = daemon.status("VmHWM")
    f["peak resident memory (VmHWM)"] = f"{max(hwm, peak[0]) / 1024:.1f} MB"
    result.check(runs == accepted, f"{runs} run(s) created for {accepted} 202 answer(s)")
    result.check(server_errors == 0, f"{server_errors} 5xx answer(s): {dict(statuses)}")
    result.check(daemon.alive(), "the daemon died during the flood")
    daemon.stop()
    return result
