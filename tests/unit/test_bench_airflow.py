"""make bench's Airflow baseline and anchors, without installing them: the run's time
read from the log of `airflow dags test`, and a venv that cannot be built skips the
figure instead of failing the bench."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import airflow_baseline
import anchors
import venvs

LOG = """\
[2026-12-02T04:31:43.450+0000] {plugins.py:37} INFO - setup plugin alembic
[2026-12-02T04:31:43.731+0000] {dag.py:4451} INFO - created dagrun <DagRun fan_out>
[2026-12-02T04:31:44.062+0000] {dag.py:4410} INFO - [DAG TEST] end task task_id=root
[2026-12-02T04:31:50.694+0000] {dagrun.py:905} INFO - DagRun Finished: state=success
"""


def test_the_run_is_timed_from_its_creation_to_its_end_in_airflows_log() -> None:
    assert airflow_baseline.run_seconds(LOG) == pytest.approx(6.963)
    assert airflow_baseline.run_seconds("no timestamps here") is None


@pytest.fixture
def no_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty venv cache, and pip refused as with no network."""

    def refuse(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 1, "", "noise\nERROR: no network\n")

    monkeypatch.setattr(venvs, "CACHE", tmp_path)
    monkeypatch.setattr(venvs.subprocess, "run", refuse)


@pytest.mark.usefixtures("no_pip")
def test_a_venv_that_cannot_be_built_skips_the_figure() -> None:
    found = airflow_baseline.airflow_figures(quick=True)
    assert list(found) == ["skipped"]
    assert "failed: ERROR: no network" in found["skipped"]


@pytest.mark.usefixtures("no_pip")
def test_an_anchor_that_cannot_be_installed_is_skipped_saying_why() -> None:
    found = anchors.anchor_figures(quick=True)
    assert sorted(found) == ["Dagster", "Luigi", "Prefect"]
    assert all("failed: ERROR: no network" in f["skipped"] for f in found.values())
    table = anchors.anchors_markdown(found, 0.05)
    assert "| dagd, `def` tasks on the warm worker pool | 50 ms | 4,020 | |" in table
    assert sum("not measured: " in line for line in table) == 3
