"""kill9: `kill -9` the daemon at random moments while webhooks arrive and files are
dropped, restart it each time, and check that nothing acknowledged was lost or done twice.

Senders retry each delivery with its Idempotency-Key until they get a 202, as a real
sender does; files are written under a temporary name and renamed into the watched
folder. Once every run has ended: runs lost (a 202 whose run is not in the database),
webhooks without a run, files without a run, deliveries or files with two runs, task
instances with two successful attempts, and `PRAGMA integrity_check` after each kill
(before the restart) and at the end.
"""

from __future__ import annotations

import hashlib
import os
import random
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from faults.harness import (
    AUTH,
    Context,
    Install,
    Result,
    Timeout,
    free_port,
    request,
    wait_until,
)

TASKS = """
    import asyncio
    import random

    from dagd import DAG, FileDrop, PythonTask, Webhook


    async def step(conf):
        await asyncio.sleep(random.uniform(0.01, 0.15))


    def steps():
        a, b, c, d = (PythonTask(task_id=t, python_callable=step, retries=5, retry_delay=0.2)
                      for t in "abcd")
        a >> [b, c] >> d
"""

DAGS = TASKS + """

    with DAG("hooked", triggers=[Webhook("orders", secret_env="FAULTS_SECRET")],
             max_active_runs=1000):
        steps()

    with DAG("dropped", triggers=[FileDrop("{inbox}", pattern="*.csv", stable_for=0.2)],
             max_active_runs=1000):
        steps()
"""


@dataclass
class Traffic:
    """What the senders and the dropper did, shared with the thread that kills."""

    port: int
    stop: threading.Event = field(default_factory=threading.Event)
    give_up: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    answers: dict[str, set[int]] = field(default_factory=dict)  # key -> run ids in 202s
    unanswered: set[str] = field(default_factory=set)  # keys still without a 202
    refused: dict[str, int] = field(default_factory=dict)  # key -> a 4xx status
    tries: int = 0
    server_errors: dict[int, int] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256


def send_one(traffic: Traffic, key: str, body: bytes) -> None:
    """POST one delivery until it gets a 202 (or a 4xx, or the scenario gives up)."""
    headers = {**AUTH, "Idempotency-Key": key}
    backoff = 0.05
    with traffic.lock:
        traffic.unanswered.add(key)
    while not traffic.give_up.is_set():
        with traffic.lock:
            traffic.tries += 1
        try:
            reply = request(traffic.port, "POST", "/hooks/orders", body=body,
                            headers=headers, timeout=10)
        except OSError:  # the daemon is down or was killed mid-request: send again
            reply = None
        if reply is not None and reply.status == 202:
            with traffic.lock:
                traffic.answers.setdefault(key, set()).add(int(reply.json()["run_id"]))
                traffic.unanswered.discard(key)
            return
        if reply is not None and 400 <= reply.status < 500:
            with traffic.lock:
                traffic.refused[key] = reply.status
                traffic.unanswered.discard(key)
            return
        if reply is not None:
            with traffic.lock:
                traffic.server_errors[reply.status] = (
                    traffic.server_errors.get(reply.status, 0) + 1)
        time.sleep(backoff)  # a sender's pacing between tries
        backoff = min(backoff * 2, 0.5)


def sender(traffic: Traffic, index: int, seed: int) -> None:
    rng = random.Random(seed)
    n = 0
    while not traffic.stop.is_set():
        n += 1
        key = f"sender{index}-{n}"
        send_one(traffic, key, orjson.dumps({"sender": index, "n": n, "key": key}))
        time.sleep(rng.uniform(0.01, 0.06))


def dropper(traffic: Traffic, inbox: Path, seed: int) -> None:
    rng = random.Random(seed)
    n = 0
    while not traffic.stop.is_set():
        n += 1
        content = f"n,noise\n{n},{rng.random()}\n".encode()
        part = inbox / f".f{n}.part"
        final = inbox / f"f{n}.csv"
        part.write_bytes(content)
        os.replace(part, final)
        with traffic.lock:
            traffic.files[str(final)] = hashlib.sha256(content).hexdigest()
        time.sleep(rng.uniform(0.05, 0.3))


def run(ctx: Context) -> Result:
    result = Result()
    kills = ctx.size(20, 4)
    rng = random.Random(ctx.seed)
    inst = ctx.install("kill9")
    inbox = inst.root / "inbox"
    inbox.mkdir()
    inst.write_dag("kill9.py", DAGS.replace("{inbox}", str(inbox)))
    port = free_port()  # the same address across restarts, as a sender knows it
    daemon = inst.start(port=port)
    traffic = Traffic(port=daemon.port)
    threads = [threading.Thread(target=sender, args=(traffic, i, ctx.seed + i), daemon=True)
               for i in range(4)]
    threads.append(threading.Thread(target=dropper, args=(traffic, inbox, ctx.seed),
                                    daemon=True))
    for t in threads:
        t.start()
    restarts: list[float] = []
    integrity_after_kill: list[str] = []
    starting = 0
    try:
        for _ in range(kills):
            time.sleep(rng.uniform(0.3, 2.5))  # a random moment under load
            daemon.kill9()
            integrity_after_kill.append(inst.integrity())
            if rng.random() < 0.25:  # and again while it starts, recovering from that
                early = inst.spawn(port=port)
                time.sleep(rng.uniform(0.05, 0.5))
                early.kill9()
                starting += 1
                integrity_after_kill.append(inst.integrity())
            t0 = time.monotonic()
            daemon = inst.start(port=port)
            restarts.append(time.monotonic() - t0)
            traffic.port = daemon.port
        traffic.stop.set()
        for t in threads:  # each sender finishes the delivery it is on
            t.join(timeout=60)
        traffic.give_up.set()
        settle(inst, traffic, ctx.size(240, 90))
    finally:
        traffic.stop.set()
        traffic.give_up.set()
    result.figures["kills under load"] = kills
    result.figures["kills while starting (recovering)"] = starting
    result.figures["restart to healthy, median"] = f"{statistics.median(restarts):.2f} s"
    check(inst, traffic, result, integrity_after_kill)
    daemon.stop()
    return result


def settle(inst: Install, traffic: Traffic, timeout: float) -> None:
    """Wait until every dropped file has a run and no run is queued or running."""
    def files_seen() -> int:
        return len({orjson.loads(c).get("path") for (c,) in inst.query(
            "SELECT conf FROM run WHERE dag_id = 'dropped'")})

    try:
        wait_until(lambda: files_seen() >= len(traffic.files) and inst.active_runs() == 0,
                   timeout=timeout, what="every file to have a run and every run to end",
                   step=0.25)
    except Timeout:
        pass  # the checks say what is missing


def check(inst: Install, traffic: Traffic, result: Result, after_kill: list[str]) -> None:
    f = result.figures
    acked = {r for runs in traffic.answers.values() for r in runs}
    in_db = {r for (r,) in inst.query("SELECT id FROM run")}
    ledger = dict(inst.query(
        "SELECT e.dedup_key, e.run_id FROM event e JOIN run r ON r.id = e.run_id "
        "WHERE e.kind = 'webhook' AND e.outcome = 'run_created'"))
    file_runs: dict[tuple[str, str], int] = {}
    for (conf,) in inst.query("SELECT conf FROM run WHERE dag_id = 'dropped'"):
        c = orjson.loads(conf)
        k = (c.get("path"), c.get("sha256"))
        file_runs[k] = file_runs.get(k, 0) + 1
    f["webhook deliveries (keys)"] = len(traffic.answers) + len(traffic.unanswered)
    f["webhook requests (with retries)"] = traffic.tries
    f["5xx answers"] = dict(sorted(traffic.server_errors.items())) or 0
    f["files dropped"] = len(traffic.files)
    f["runs"] = inst.run_states()
    lost = acked - in_db
    f["runs lost (202 without its run)"] = len(lost)
    result.check(not lost, f"{len(lost)} run(s) answered 202 are not in the database: "
                           f"{sorted(lost)[:10]}")
    two_ids = [k for k, runs in traffic.answers.items() if len(runs) > 1]
    f["keys answered with two run ids"] = len(two_ids)
    result.check(not two_ids, f"{len(two_ids)} key(s) got 202s with different run ids")
    missing = [k for k in traffic.answers if k not in ledger]
    missing += sorted(traffic.unanswered) + sorted(traffic.refused)
    f["webhooks without a run"] = len(missing)
    result.check(not missing, f"{len(missing)} webhook(s) without a run: {missing[:10]} "
                              f"(refused: {dict(list(traffic.refused.items())[:5])})")
    no_run = [p for p, sha in traffic.files.items() if (p, sha) not in file_runs]
    f["files without a run"] = len(no_run)
    result.check(not no_run, f"{len(no_run)} file(s) without a run: {no_run[:10]}")
    twice = sum(1 for n in file_runs.values() if n > 1)
    twice += inst.scalar("SELECT count(*) FROM (SELECT event_id FROM run WHERE event_id IS "
                         "NOT NULL GROUP BY event_id HAVING count(*) > 1)") or 0
    f["events or files with two runs"] = twice
    result.check(twice == 0, f"{twice} event(s) or file(s) started two runs")
    rerun = inst.scalar("SELECT count(*) FROM (SELECT ti_id FROM attempt WHERE state = "
                        "'success' GROUP BY ti_id HAVING count(*) > 1)") or 0
    f["completed tasks re-run"] = rerun
    result.check(rerun == 0, f"{rerun} task instance(s) with two successful attempts")
    f["interrupted attempts (daemon restarted)"] = inst.scalar(
        "SELECT count(*) FROM attempt WHERE error LIKE '%restarted%'") or 0
    active = inst.active_runs()
    f["runs not final at the end"] = active
    result.check(active == 0, f"{active} run(s) still queued or running at the end")
    bad = [i for i, r in enumerate(after_kill, 1) if r != "ok"]  # numbered in kill order
    f["integrity_check after each kill"] = "ok" if not bad else f"not ok after kill {bad}"
    result.check(not bad, f"PRAGMA integrity_check failed after kill(s) {bad}: "
                          f"{[after_kill[i - 1] for i in bad][:2]}")
    final = inst.integrity()
    f["integrity_check at the end"] = final
    result.check(final == "ok", f"PRAGMA integrity_check at the end: {final}")
