"""Acceptance fixtures: a dagd installation per test whose daemons never outlive it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from acceptance.harness import Dagd


@pytest.fixture
def dagd(tmp_path: Path, dags_folder: Path) -> Iterator[Dagd]:
    """A dagd installation in tmp_path; every daemon it starts is killed at teardown."""
    env = Dagd(
        root=tmp_path,
        dags_folder=dags_folder,
        data_dir=tmp_path / "data",
        config=tmp_path / "dagd.toml",
    )
    env.write_config()
    try:
        yield env
    finally:
        env.close()

