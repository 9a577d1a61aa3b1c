"""make bench, the anchors: the same 200-task fan-out of no-op plain-Python tasks
(a root and 200 downstream of it) that dagd's `def` figure runs, on Luigi, Prefect and
Dagster, each in its own venv (bench/venvs.py), in the same `make bench`.

Owns: the fan-out written the way each one's documentation writes a job, run with its
defaults for a single machine (Luigi's local scheduler and one worker, Prefect's flow
with `.submit()` on its default thread-pool task runner and its own local server on
127.0.0.1, Dagster's `execute_in_process` on an ephemeral instance), and the timings:
a first run, then the median of the runs after it, each from the call that starts the
run to its return with every task done, measured inside the process. A tool that cannot
be installed or fails says why and its figure is skipped: the bench never fails on it.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import venvs

RUN_TIMEOUT = 900.0
TASKS = 201  # the root and its 200

# Each script takes the number of timed runs after the first, and prints one JSON line.
LUIGI = '''
import json, sys, time, luigi

class Root(luigi.Task):
    rep = luigi.IntParameter()
    done = set()
    def run(self): Root.done.add(self.task_id)
    def complete(self): return self.task_id in Root.done

class Noop(luigi.Task):
    rep = luigi.IntParameter()
    i = luigi.IntParameter()
    done = set()
    def requires(self): return Root(rep=self.rep)
    def run(self): Noop.done.add(self.task_id)
    def complete(self): return self.task_id in Noop.done

times = []
for rep in range(1 + int(sys.argv[1])):
    start = time.perf_counter()
    ok = luigi.build([Noop(rep=rep, i=i) for i in range(200)], local_scheduler=True,
                     workers=1, log_level="WARNING")
    times.append(time.perf_counter() - start)
    assert ok and len(Noop.done) == 200 * (rep + 1), "luigi: not every task ran"
print(json.dumps({"version": luigi.__version__, "times": times}))
'''

PREFECT = '''
import json, sys, time
from prefect import flow, task, __version__

@task
def noop():
    return None

@flow
def fan_out():
    root = noop.submit()
    futures = [noop.submit(wait_for=[root]) for _ in range(200)]
    return [f.result() for f in futures]

times = []
for _ in range(1 + int(sys.argv[1])):
    start = time.perf_counter()
    assert len(fan_out()) == 200
    times.append(time.perf_counter() - start)
print(json.dumps({"version": __version__, "times": times}))
'''

DAGSTER = '''
import json, sys, time
from dagster import DagsterInstance, In, Nothing, job, op, __version__

@op
def root():
    return None

@op(ins={"after": In(Nothing)})
def noop():
    return None

@job
def fan_out():
    first = root()
    for i in range(200):
        noop.alias(f"t{i}")(after=first)

times = []
with DagsterInstance.ephemeral() as instance:
    for _ in range(1 + int(sys.argv[1])):
        start = time.perf_counter()
        result = fan_out.execute_in_process(instance=instance)
        times.append(time.perf_counter() - start)
        assert result.success
print(json.dumps({"version": __version__, "times": times}))
'''

ANCHORS: dict[str, tuple[str, str, str]] = {
    # name: (requirement, how it is run, script)
    "Luigi": ("luigi==3.8.1", "local scheduler, 1 worker", LUIGI),
    "Prefect": ("prefect==3.9.1", "flow of `.submit()`ed tasks, default task runner",
                PREFECT),
    "Dagster": ("dagster==1.13.29", "`execute_in_process`, ephemeral instance", DAGSTER),
}


def anchor_figures(quick: bool) -> dict[str, Any]:
    """Each anchor's figure; {"skipped": why} for one that cannot run."""
    return {name: _one(name, *spec, 2 if quick else 5) for name, spec in ANCHORS.items()}


def _one(name: str, requirement: str, how: str, script: str, repeats: int) -> dict[str, Any]:
    python, why = venvs.ensure(f"{name.lower()}-venv", [requirement], "python")
    if python is None:
        return {"skipped": why}
    with tempfile.TemporaryDirectory(prefix=f"dagd-bench-{name.lower()}-") as tmp:
        home = Path(tmp)
        (home / "fan_out.py").write_text(script)
        env = venvs.env(python.parent.parent, ("DAGD_", "PREFECT_", "DAGSTER_", "LUIGI_"),
                        HOME=str(home), PREFECT_HOME=str(home / "prefect"),
                        DAGSTER_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                        DO_NOT_TRACK="1", DAGSTER_DISABLE_TELEMETRY="1")
        try:
            done = subprocess.run([str(python), "fan_out.py", str(repeats)], cwd=home,
                                  env=env, capture_output=True, text=True, check=False,
                                  timeout=RUN_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return {"skipped": f"{name}: {exc}"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"skipped": f"{name} failed: {venvs.tail(done.stderr or done.stdout)}"}
    found = json.loads(lines[-1])
    after = found["times"][1:]
    median = statistics.median(after)
    return {"version": found["version"], "how": how, "first_s": found["times"][0],
            "median_s": median, "tasks_per_s": TASKS / median, "repeats": len(after)}


def anchors_markdown(anchors: dict[str, Any], dagd_s: float | None) -> list[str]:
    """A table row each, with dagd's own 201-task `def` fan-out beside it."""
    lines = ["| the same 200-task fan-out of no-op Python tasks (median, after a first run) "
             "| run | tasks/s | dagd, times faster |", "| --- | --- | --- | --- |"]
    if dagd_s:
        lines.append(f"| dagd, `def` tasks on the warm worker pool | {dagd_s * 1000:,.0f} ms | "
                     f"{TASKS / dagd_s:,.0f} | |")
    for name, a in anchors.items():
        if "skipped" in a:
            lines.append(f"| {name} | not measured: {a['skipped'][:120]} | | |")
            continue
        times = f"**{a['median_s'] / dagd_s:,.0f}x**" if dagd_s else ""
        lines.append(f"| {name} {a['version']} ({a['how']}) | {a['median_s'] * 1000:,.0f} ms "
                     f"(first run {a['first_s'] * 1000:,.0f} ms) | {a['tasks_per_s']:,.0f} | "
                     f"{times} |")
    return [*lines, ""]
