"""The event ledger through the CLI: `dagd events list` answers "why didn't it trigger?",
and `dagd events replay` starts a new run from a stored event.

A real `dagd run` receives webhook deliveries over HTTP (good, repeated, unauthorized,
for a paused DAG, for no DAG) and file drops in a real folder; the CLI reads the ledger.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from acceptance.harness import CliResult, Daemon, Dagd, table_rows

pytestmark = pytest.mark.slow

TOKEN = "ledger-token-for-tests"
TOKEN_ENV = "LEDGER_TEST_TOKEN"  # not DAGD_*: the harness passes it on to the daemon

LEDGER_DAG = """
    from dagd import DAG, FileDrop, Webhook, task

    with DAG("ledger", triggers=[
        Webhook("ledger-hook", secret_env={token_env!r}),
        FileDrop({inbox!r}, pattern="*.csv", stable_for=0.2),
    ]):
        @task
        async def take(conf):
            print("took", conf)

        take()
"""

COLUMNS = ("event", "when", "kind", "source", "dag", "outcome", "run", "detail")


def post_hook(daemon: Daemon, name: str, body: dict[str, Any], *, token: str | None = TOKEN,
              key: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if key is not None:
        headers["Idempotency-Key"] = key
    req = urllib.request.Request(daemon.url(f"/hooks/{name}"), data=json.dumps(body).encode(),
                                 method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            assert exc.headers.get_content_type() == "application/json"
            return exc.code, json.loads(exc.read())


def ledger(result: CliResult) -> list[dict[str, str]]:
    """The rows of `dagd events list`, oldest first."""
    assert result.code == 0, result
    rows = [dict(zip(COLUMNS, row, strict=True)) for row in table_rows(result.stdout)]
    return sorted(rows, key=lambda r: int(r["event"]))


def api_events(daemon: Daemon, dag_id: str) -> list[dict[str, Any]]:
    status, body = daemon.request("GET", f"/api/v1/events?dag={dag_id}")
    assert status == 200, body
    return sorted(body["events"], key=lambda e: e["id"])


def events_list(dagd: Dagd, *args: str) -> list[dict[str, str]]:
    """`dagd events list ...` on a terminal wide enough that no cell wraps (temp paths)."""
    return ledger(dagd.cli("events", "list", *args, env={**dagd.env(), "COLUMNS": "500"}))


def replayed_run(result: CliResult, event_id: str) -> int:
    assert result.code == 0, result
    found = re.search(rf"event {event_id}: replayed as run (\d+)", result.stdout)
    assert found, result
    return int(found.group(1))


def test_the_ledger_explains_every_delivery_and_replays_them(
    dagd: Dagd, write_dag: Callable[..., Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_dag("ledger.py", LEDGER_DAG.format(token_env=TOKEN_ENV, inbox=str(inbox)))
    daemon = dagd.start()

    status, first = post_hook(daemon, "ledger-hook", {"n": 1}, key="k-1")
    assert (status, first["duplicate"]) == (202, False), first
    status, again = post_hook(daemon, "ledger-hook", {"n": 1}, key="k-1")
    assert (status, again["run_id"], again["duplicate"]) == (202, first["run_id"], True)
    status, body = post_hook(daemon, "ledger-hook", {"n": 1}, token="wrong")
    assert status == 403, body
    status, body = post_hook(daemon, "nobody-listens", {"n": 1})
    assert status == 404, body
    (inbox / "one.csv").write_text("a,b\n1,2\n")
    # 4 of the DAG's: the webhook, its duplicate, the refused one and the file (the
    # 404 concerns no DAG).
    dagd.wait(lambda: len(api_events(daemon, "ledger")) == 4, timeout=10,
              what="the file drop's event")

    paused = dagd.cli("dags", "pause", "ledger")
    assert paused.code == 0, paused
    status, held = post_hook(daemon, "ledger-hook", {"n": 2}, key="k-2")
    assert (status, held["run_id"]) == (202, None), held
    assert [r["outcome"] for r in held["runs"]] == ["dag_paused"]
    (inbox / "two.csv").write_text("a,b\n3,4\n")
    dagd.wait(lambda: len(api_events(daemon, "ledger")) == 6, timeout=10,
              what="the paused file drop's event")

    rows = events_list(dagd, "--dag", "ledger")
    assert [(r["kind"], r["outcome"]) for r in rows] == [
        ("webhook", "run_created"),
        ("webhook", "duplicate"),  # the repeat, pointing at the first delivery's run
        ("webhook", "unauthorized"),
        ("file", "run_created"),
        ("webhook", "dag_paused"),
        ("file", "dag_paused"),
    ]
    assert {r["dag"] for r in rows} == {"ledger"}
    assert rows[0]["run"] == rows[1]["run"] == str(first["run_id"])
    assert "duplicate of event" in rows[1]["detail"]
    assert rows[2]["run"] == "" and "bearer token mismatch" in rows[2]["detail"]
    assert rows[3]["source"] == f"file:{inbox}"
    assert rows[4]["run"] == rows[5]["run"] == ""
    runs_before = dagd.run_states()
    assert len(runs_before) == 2  # the first delivery and the first file

    unpaused = dagd.cli("dags", "unpause", "ledger")
    assert unpaused.code == 0, unpaused
    # Replaying a run's event: a new run with the same conf.
    replay = replayed_run(dagd.cli("events", "replay", rows[0]["event"]), rows[0]["event"])
    # Replaying what was held while paused: its delivery, run now.
    held_replay = replayed_run(dagd.cli("events", "replay", rows[4]["event"]),
                               rows[4]["event"])
    assert replay not in runs_before and held_replay not in runs_before
    dagd.wait_runs({replay: "success", held_replay: "success"}, timeout=20)
    for run_id, conf in ((replay, {"n": 1}), (held_replay, {"n": 2})):
        status, run = daemon.request("GET", f"/api/v1/runs/{run_id}")
        assert status == 200, run
        assert (run["conf"], run["run_type"]) == (conf, "replay")

    everything = events_list(dagd)
    assert [(r["source"], r["dag"], r["outcome"]) for r in everything
            if r["source"] == "webhook:nobody-listens"] == [
        ("webhook:nobody-listens", "", "no_matching_dag")
    ]
    replays = [r for r in everything if r["kind"] == "replay"]
    assert [(r["source"], r["outcome"], r["run"]) for r in replays] == [
        (f"event {rows[0]['event']}", "run_created", str(replay)),
        (f"event {rows[4]['event']}", "run_created", str(held_replay)),
    ]
