"""Shared fixtures: the anyio backend, settings on a temp data dir, DAG folders."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from dagd.config import Settings


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def dags_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "dags"
    folder.mkdir()
    return folder


@pytest.fixture
def write_dag(dags_folder: Path) -> Callable[[str, str], Path]:
    """write_dag("name.py", source): write a DAG file (dedented) into the DAGs folder."""

    def write(name: str, source: str) -> Path:
        path = dags_folder / name
        path.write_text(textwrap.dedent(source))
        return path

    return write


@pytest.fixture
def settings(tmp_path: Path, dags_folder: Path) -> Settings:
    return Settings(
        dags_folder=dags_folder,
        data_dir=tmp_path / "data",
        port=0,
        synchronous="normal",
        shutdown_grace_period=2.0,
    )
