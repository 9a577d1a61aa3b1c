"""disk: the data directory on a small tmpfs (8 MiB) that is then filled to the last byte.

While it is full: webhooks must get 503 with Retry-After (not 202, and not silence), and
GET /api/v1/health must answer 503 with a reason. Once the space is freed: health is 200
again within 30 s, and a new webhook gets a 202 and its run succeeds. Needs root (to
mount); skipped, saying why, where mounting is not allowed. Unmounted at the end,
whatever happens.
"""

from __future__ import annotations

import contextlib
import errno
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from faults.harness import Context, Daemon, Install, Result, Timeout, wait_until

DAG = """
    from dagd import DAG, Webhook, task

    @task
    async def noop():
        return None

    with DAG("stored", triggers=[Webhook("disk", secret_env="FAULTS_SECRET")]):
        noop()
"""

WHILE_FULL = 5  # webhooks sent while the disk is full
ANSWER_WITHIN = 10.0  # seconds within which a webhook must be answered
ANSWER_LIMIT = 60.0  # how long the senders wait at most (to see what a held one gets)


@contextlib.contextmanager
def small_disk(mount: Path) -> Iterator[str | None]:
    """A mounted 8 MiB tmpfs at `mount`; yields None, or why it could not be mounted."""
    mount.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
                              capture_output=True, text=True, check=False)
    except OSError as exc:  # no mount(8) at all
        yield f"cannot mount a tmpfs here: {exc}"
        return
    if done.returncode != 0:
        yield f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}"
        return
    try:
        yield None
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


def fill(path: Path) -> int:
    """Write `path` until the disk has no byte left; the bytes written."""
    written = 0
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 20, 65536, 4096, 512, 1):
            block = b"\0" * size
            while True:
                try:
                    written += f.write(block) or 0
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    return written


@dataclass
class Answer:
    """What one webhook sent while the disk was full got, and when."""

    sent: float
    status: str = "no answer"
    retry_after: str | None = None
    run_id: int | None = None
    answered: float | None = None

    def describe(self, freed: float) -> str:
        if self.answered is None:
            return f"no answer in {ANSWER_LIMIT:g} s"
        text = f"{self.status} after {self.answered - self.sent:.1f} s"
        if self.retry_after:
            text += f" (Retry-After {self.retry_after})"
        if self.answered >= freed:
            text += ", once the space was freed"
        return text


def send(daemon: Daemon, key: str, *, timeout: float = ANSWER_WITHIN) -> Answer:
    answer = Answer(sent=time.monotonic())
    try:
        reply = daemon.post("/hooks/disk", {"key": key}, headers={"Idempotency-Key": key},
                            timeout=timeout)
    except OSError:  # TimeoutError included: nothing came back in time
        return answer
    answer.answered = time.monotonic()
    answer.status = str(reply.status)
    answer.retry_after = reply.headers.get("retry-after")
    answer.run_id = reply.json().get("run_id") if reply.status == 202 else None
    return answer


def run(ctx: Context) -> Result:
    result = Result()
    mount = ctx.tmp / "small"
    with small_disk(mount) as refused:
        if refused is not None:
            result.skipped = refused
            return result
        inst = ctx.install("disk", data=mount / "data")
        inst.write_dag("stored.py", DAG)
        try:
            scenario(inst, mount, result)
        finally:
            inst.close()  # before the unmount: the daemon holds files on it
    return result


def scenario(inst: Install, mount: Path, result: Result) -> None:
    f = result.figures
    daemon = inst.start()
    first = send(daemon, "before")
    f["webhook before filling"] = first.status
    result.check(first.status == "202", f"a webhook before filling the disk got {first.status}")
    filler = mount / "filler"
    f["bytes written to fill the disk"] = f"{fill(filler):,}"
    # Each sender waits in its own thread, as senders do: one held waiting for a commit
    # must not hide what the next ones get.
    answers = [Answer(sent=0.0) for _ in range(WHILE_FULL)]
    senders = []
    for i in range(WHILE_FULL):
        def one(i: int = i) -> None:
            answers[i] = send(daemon, f"full-{i}", timeout=ANSWER_LIMIT)
        t = threading.Thread(target=one, daemon=True)
        t.start()
        senders.append(t)
        time.sleep(0.3)  # one after the other, as deliveries arrive
    deadline = time.monotonic() + ANSWER_WITHIN
    for t in senders:
        t.join(max(0.0, deadline - time.monotonic()))
    health = daemon.health()
    reason = health.json().get("reason") if health is not None else None
    f["health while full"] = (f"{health.status}: {reason}" if health is not None
                              else "no answer")
    result.check(health is not None and health.status == 503 and bool(reason),
                 f"health while full: {f['health while full']}, not 503 with a reason")
    filler.unlink()
    freed = time.monotonic()
    try:
        wait_until(lambda: (h := daemon.health(timeout=5)) is not None and h.status == 200,
                   timeout=30, what="health 200 after freeing the space", step=0.1)
        f["health back to 200 after freeing"] = f"{time.monotonic() - freed:.2f} s"
    except Timeout:
        f["health back to 200 after freeing"] = "not within 30 s"
        result.violations.append("health was not 200 within 30 s of freeing the space")
    for t in senders:
        t.join(ANSWER_LIMIT)
    f["webhooks while full"] = [a.describe(freed) for a in answers]
    bad = [a.describe(freed) for a in answers
           if a.status != "503" or not a.retry_after or a.answered is None
           or a.answered - a.sent > ANSWER_WITHIN]
    result.check(not bad, f"{len(bad)} of {WHILE_FULL} webhooks sent while the disk was "
                          f"full did not get 503 with Retry-After within "
                          f"{ANSWER_WITHIN:g} s: {bad}")
    after = send(daemon, "after")
    state = inst.wait_final([after.run_id], timeout=30)[after.run_id] if after.run_id else None
    f["webhook after freeing"] = f"{after.status}, run {state}"
    result.check(after.status == "202" and state == "success",
                 f"a webhook after freeing the space got {after.status}, its run {state}")
    accepted = [a.run_id for a in answers if a.run_id is not None]
    if accepted:
        states = inst.wait_final(accepted, timeout=30)
        f["runs of the webhooks answered 202"] = states
    f["daemon"] = "alive" if daemon.alive() else "exited"
    result.check(daemon.alive(), "the daemon exited")
