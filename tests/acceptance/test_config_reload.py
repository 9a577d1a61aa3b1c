"""SIGHUP reloads the configuration of a running `dagd run`: a limit changes at once, a
key only a restart applies is named in the log and by `dagd config show`, and a bad edit
keeps the running configuration with the error, file and line."""

from __future__ import annotations

import itertools
import json
import signal
import textwrap
import urllib.error
import urllib.request

import pytest

from acceptance.harness import Daemon, Dagd, wait_until

pytestmark = pytest.mark.slow

PARALLEL = """
    import anyio
    from dagd import DAG, task

    with DAG("parallel"):
        @task
        async def nap(n: int) -> int:
            await anyio.sleep(0.3)
            return n

        for i in range(3):
            nap.override(task_id=f"nap_{i}")(i)
"""

CONFIG = """\
[core]
shutdown_grace_period = 2.0
parallelism = {parallelism}

[database]
synchronous = "{synchronous}"

[connections.crm]
base_url = "https://crm.example.com"
headers = {{ "X-Api-Key" = "k-12345-secret" }}
"""


def configure(dagd: Dagd, *, parallelism: object = 8, synchronous: str = "normal") -> None:
    dagd.config.write_text(CONFIG.format(parallelism=parallelism, synchronous=synchronous))


def shown(dagd: Dagd) -> dict[str, dict[str, object]]:
    result = dagd.cli("config", "show", "--json")
    assert result.code == 0, result
    assert "k-12345-secret" not in result.stdout
    return {row["key"]: row for row in json.loads(result.stdout)["keys"]}


def overlapping(daemon: Daemon) -> int:
    """How many pairs of the last run's attempts ran at the same time."""
    _, runs = daemon.request("GET", "/api/v1/dags/parallel/runs")
    run = runs["runs"][0]
    _, detail = daemon.request("GET", f"/api/v1/runs/{run['id']}")
    spans = sorted((t["started_at"], t["ended_at"]) for t in detail["task_instances"])
    return sum(1 for a, b in itertools.pairwise(spans) if b[0] < a[1])


def run_once(dagd: Dagd, daemon: Daemon) -> None:
    before = len(daemon.request("GET", "/api/v1/dags/parallel/runs")[1]["runs"])
    status, body = daemon.request("POST", "/api/v1/dags/parallel/runs", {})
    assert status in (200, 201, 202), body

    def done() -> bool:
        runs = daemon.request("GET", "/api/v1/dags/parallel/runs")[1]["runs"]
        return len(runs) > before and runs[0]["state"] == "success"

    dagd.wait(done, timeout=30, what="the parallel run")


def test_sighup_applies_limits_names_restart_keys_and_keeps_a_bad_edit(dagd: Dagd) -> None:
    (dagd.dags_folder / "parallel.py").write_text(textwrap.dedent(PARALLEL))
    configure(dagd)
    daemon = dagd.start()
    rows = shown(dagd)
    assert rows["core.parallelism"]["value"] == 8
    assert rows["core.parallelism"]["source"] == f"{dagd.config}:3"
    assert rows["connections.crm.headers"]["value"] == {"X-Api-Key": "***"}
    assert rows["core.data_dir"]["source"] == "--data-dir"
    run_once(dagd, daemon)
    assert overlapping(daemon) >= 1  # three at once

    configure(dagd, parallelism=1, synchronous="full")
    daemon.signal(signal.SIGHUP)
    dagd.wait(lambda: "changed core.parallelism (8 -> 1)" in daemon.log(), timeout=20,
              what="the reload")
    assert ("database.synchronous is full in the configuration, but a running daemon "
            "cannot change it: it stays normal until a restart") in daemon.log()
    rows = shown(dagd)
    assert rows["core.parallelism"]["value"] == 1
    assert "on_disk" not in rows["core.parallelism"]
    assert rows["database.synchronous"]["value"] == "normal"
    assert rows["database.synchronous"]["on_disk"] == "full"
    assert "only a restart" in str(rows["database.synchronous"]["note"])
    run_once(dagd, daemon)
    assert overlapping(daemon) == 0  # one at a time now

    configure(dagd, parallelism='"many"')
    daemon.signal(signal.SIGHUP)
    dagd.wait(lambda: "the configuration is refused, the running one stays" in daemon.log(),
              timeout=20, what="the refused reload")
    assert f"{dagd.config}:3, field 'core.parallelism'" in daemon.log()
    result = dagd.cli("config", "show")  # the CLI reads the same file: it says what is wrong
    assert result.code == 1, result
    assert f"{dagd.config}:3, field 'core.parallelism'" in result.stderr
    status, answer = daemon.request("GET", "/api/v1/config")
    assert status == 200, answer
    assert "must be a whole number, got 'many'" in answer["on_disk_error"]
    assert {r["key"]: r["value"] for r in answer["keys"]}["core.parallelism"] == 1
    assert "k-12345-secret" not in daemon.log()
    run_once(dagd, daemon)


def test_only_an_operator_reads_the_configuration(dagd: Dagd) -> None:
    daemon = dagd.start()
    made = dagd.cli("tokens", "create", "watcher", "--role", "viewer")
    assert made.code == 0, made
    token = next(word for word in made.stdout.split() if len(word) > 30)
    request = urllib.request.Request(daemon.url("/api/v1/config"),
                                     headers={"Authorization": f"Bearer {token}"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    with caught.value:
        assert caught.value.code == 403
    assert wait_until(lambda: daemon.request("GET", "/api/v1/config")[0] == 200, timeout=5,
                      what="the operator's answer")
