"""`dagd doctor` as a user runs it: exit 0 on a good set-up with the daemon running (its
port is held by this daemon, not something else), exit 1 with the fixes on a bad one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from acceptance.harness import Dagd

pytestmark = pytest.mark.slow

GOOD_DAG = """
    from dagd import DAG, FileDrop, PythonTask


    async def seen(conf):
        print(conf)


    with DAG("drops", triggers=[FileDrop({inbox!r}, pattern="*.csv")]):
        PythonTask(task_id="seen", python_callable=seen)
"""


def statuses(output: str) -> dict[str, str]:
    """check -> ok/warn/FAIL, from doctor's lines."""
    found = {}
    for line in output.splitlines():
        status, _, rest = line.partition(" ")
        if status in ("ok", "warn", "FAIL"):
            found[rest.strip().split("  ")[0]] = status
    return found


def test_doctor_passes_a_good_set_up_with_the_daemon_running(
        dagd: Dagd, write_dag: Callable[[str, str], Path], tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_dag("drops.py", GOOD_DAG.format(inbox=str(inbox)))
    daemon = dagd.start()
    # The port the daemon took, in the config doctor reads (the daemon keeps its own).
    dagd.config.write_text(dagd.config.read_text() + f"\n[server]\nport = {daemon.port}\n")
    result = dagd.cli("doctor")
    assert result.code == 0, result
    found = statuses(result.stdout)
    assert found["config"] == "ok" and found["database"] == "ok" and found["port"] == "ok"
    assert f"held by this data directory's daemon (pid {daemon.pid})" in result.stdout
    assert "1 DAG(s)" in result.stdout
    assert "FAIL" not in result.stdout
    assert {"data dir", "free space", "file system", "schema", "wal", "dags",
            "watched folders", "inotify", "smtp", "service", "python",
            "sqlite"} <= set(found)


def test_doctor_fails_a_bad_set_up_and_says_what_to_fix(
        dagd: Dagd, write_dag: Callable[[str, str], Path], tmp_path: Path) -> None:
    write_dag("drops.py", GOOD_DAG.format(inbox=str(tmp_path / "no-inbox")))
    write_dag("broken.py", "import no_such_module_anywhere\n")
    dagd.config.write_text(dagd.config.read_text() + "\n[server]\nprot = 8080\n")
    (tmp_path / "a-file").write_text("")
    result = dagd.cli("doctor", data_dir=tmp_path / "a-file" / "data")
    assert result.code == 1, result
    assert "Traceback" not in result.output
    found = statuses(result.stdout)
    for check in ("config", "data dir", "dags", "watched folders"):
        assert found[check] == "FAIL", result
    assert "server.prot" in result.stdout
    assert "no_such_module_anywhere" in result.stdout
    assert result.stdout.count("fix:") >= 4
    assert "failed" in result.stdout.splitlines()[-1]
