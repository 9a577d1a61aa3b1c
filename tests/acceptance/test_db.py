"""`dagd db backup|restore|vacuum|check` beside a real `dagd run`: a backup taken while
runs are being written holds every run committed before it began; a restore is refused
while the daemon runs, and round-trips once it is stopped."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import pytest

from acceptance.harness import Daemon, Dagd

pytestmark = pytest.mark.slow

PING_DAG = """
    from dagd import DAG, PythonTask


    async def ping(run_id):
        print(f"ping from run {run_id}")


    with DAG("ping"):
        PythonTask(task_id="ping", python_callable=ping)
"""


def run_ids(db: Path) -> set[int]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return {row[0] for row in conn.execute("SELECT id FROM run")}


def trigger(daemon: Daemon, n: int) -> list[int]:
    ids = []
    for _ in range(n):
        status, body = daemon.request("POST", "/api/v1/dags/ping/runs", {"conf": {"n": 1}})
        assert status == 201, body
        ids.append(body["run_id"])
    return ids


def test_a_backup_while_runs_are_written_holds_every_run_committed_before_it(
        dagd: Dagd, write_dag: Callable[[str, str], Path], tmp_path: Path) -> None:
    write_dag("ping.py", PING_DAG)
    daemon = dagd.start()
    stop = threading.Event()
    answered: list[int] = []  # runs the API said 201 for: committed

    def keep_triggering() -> None:
        while not stop.is_set():
            answered.extend(trigger(daemon, 1))

    target = tmp_path / "backup" / "dagd.db"
    target.parent.mkdir()
    with ThreadPoolExecutor(2) as pool:
        writers = [pool.submit(keep_triggering) for _ in range(2)]
        try:
            dagd.wait(lambda: len(answered) >= 300, timeout=120, what="300 runs triggered")
            before = set(answered)
            started = time.monotonic()
            result = dagd.cli("db", "backup", str(target), "--with-logs")
            took = time.monotonic() - started
            during = len(answered) - len(before)
        finally:
            stop.set()
        for writer in writers:
            writer.result()
    assert result.code == 0, result
    assert "integrity ok" in result.stdout
    assert during > 0, "no run was triggered while the backup ran"
    copied = run_ids(target)
    assert before <= copied, f"missing from the backup: {sorted(before - copied)[:10]}"
    print(f"backup of {len(copied)} runs while {during} more were triggered: {took:.2f}s "
          f"for the whole command")
    assert (target.stat().st_mode & 0o777) == 0o600
    assert target.with_name("dagd.db.logs").is_dir()


def test_restore_is_refused_while_the_daemon_runs_and_round_trips_once_stopped(
        dagd: Dagd, write_dag: Callable[[str, str], Path], tmp_path: Path) -> None:
    write_dag("ping.py", PING_DAG)
    daemon = dagd.start()
    first = trigger(daemon, 5)
    dagd.wait_runs(dict.fromkeys(first, "success"), timeout=60)
    backup = tmp_path / "dagd-backup.db"
    assert dagd.cli("db", "backup", str(backup)).code == 0
    later = trigger(daemon, 3)
    dagd.wait_runs(dict.fromkeys(later, "success"), timeout=60)

    refused = dagd.cli("db", "restore", str(backup))
    assert refused.code == 1, refused
    assert f"pid {daemon.pid}" in refused.stderr and "stop it first" in refused.stderr
    assert "Traceback" not in refused.output
    vacuum = dagd.cli("db", "vacuum")
    assert vacuum.code == 1 and f"pid {daemon.pid}" in vacuum.stderr, vacuum
    assert set(dagd.run_states()) == set(first + later)  # nothing changed

    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(30) == 0
    restored = dagd.cli("db", "restore", str(backup))
    assert restored.code == 0, restored
    assert "dagd.db.before-restore-" in restored.stdout
    assert "the logs of 3 run(s) it does not have moved to" in restored.stdout
    assert list(dagd.data_dir.glob("dagd.db.before-restore-*")), "the old database is kept"

    again = dagd.start()
    assert dagd.run_states() == dict.fromkeys(first, "success")
    status, body = again.request("GET", "/api/v1/runs")
    assert status == 200
    assert sorted(r["id"] for r in body["runs"]) == sorted(first)
    # Run ids after the backup's are handed out again, with logs of their own.
    [rerun] = trigger(again, 1)
    assert rerun == max(first) + 1
    dagd.wait_runs({rerun: "success"}, timeout=60)
    log = dagd.cli("logs", "ping", str(rerun), "ping")
    assert log.stdout.count("ping from run") == 1, log
    assert dagd.cli("db", "check").code == 0
    assert dagd.cli("db", "vacuum").code == 1  # the daemon runs again


def test_vacuum_and_check_with_the_daemon_stopped(
        dagd: Dagd, write_dag: Callable[[str, str], Path]) -> None:
    write_dag("ping.py", PING_DAG)
    daemon = dagd.start()
    ids = trigger(daemon, 3)
    dagd.wait_runs(dict.fromkeys(ids, "success"), timeout=60)
    checked = dagd.cli("db", "check")
    assert checked.code == 0, checked
    assert "integrity_check: ok" in checked.stdout
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(30) == 0
    done = dagd.cli("db", "vacuum")
    assert done.code == 0, done
    assert "vacuumed" in done.stdout
    assert dagd.run_states() == dict.fromkeys(ids, "success")
