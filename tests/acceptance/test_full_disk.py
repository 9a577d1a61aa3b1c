"""A data directory on a disk that is really full (a small tmpfs, filled to the last
byte): `dagd run` says so in one line and exits, instead of a SQLite traceback. Needs
root to mount; skipped, saying why, where the machine does not allow it."""

from __future__ import annotations

import errno
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from acceptance.harness import Dagd, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs, unmounted at the end whatever happens."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def full_disk(small_disk: Path) -> Path:
    fill(small_disk)
    return small_disk


def fill(folder: Path) -> None:
    """Write until the file system says it is full (ENOSPC)."""
    with open(folder / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_a_start_on_a_full_disk_says_so_in_one_line(dagd: Dagd, full_disk: Path) -> None:
    daemon = dagd.spawn(data_dir=full_disk / "data")
    code = daemon.wait_exit(timeout=30)
    log = daemon.log()
    assert code == 1, log
    assert "error: cannot write the database" in log, log
    assert "bytes free on" in log, log
    assert "Traceback" not in log, log


def test_a_sighup_on_a_full_disk_keeps_the_daemon_and_its_dags(
    dagd: Dagd, small_disk: Path, write_dag: Callable[[str, str], Path]
) -> None:
    write_dag("one.py", ONE_DAG)
    daemon = dagd.spawn(data_dir=small_disk / "data")
    dagd.data_dir = small_disk / "data"
    daemon.port = wait_until(lambda: _published(dagd, daemon), timeout=20, what="the lock")
    wait_until(daemon.healthy, timeout=20, what="healthy")
    fill(small_disk)
    write_dag("two.py", ONE_DAG.replace('"one"', '"two"'))  # a change to reload
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: "SIGHUP: reloading the DAGs failed" in daemon.log(), timeout=20,
               what="the refused reload")
    assert daemon.proc.poll() is None, daemon.log()
    status, dags = daemon.request("GET", "/api/v1/dags")
    assert status == 200 and [d["dag_id"] for d in dags["dags"]] == ["one"], dags
    (small_disk / "filler").unlink()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(timeout=20) == 0


def _published(dagd: Dagd, daemon: Any) -> int:
    import json

    try:
        holder = json.loads((dagd.data_dir / "dagd.lock").read_bytes())
    except (OSError, ValueError):
        return 0
    return int(holder["port"]) if holder.get("pid") == daemon.pid else 0


ONE_DAG = """
from dagd import DAG, task

@task
async def t():
    return 1

with DAG("one"):
    t()
"""


def test_on_a_disk_short_of_room_the_log_is_not_grown(small_disk: Path) -> None:
    """The daemon grows its write-ahead log as it opens the store (a saving in sync
    time), but not on a disk with little room: those megabytes are left to commits."""
    import anyio

    from dagd.store import Store
    from dagd.store.store import SIZE_WAL_MIN_FREE

    path = small_disk / "dagd.db"
    assert 8 * 1024 * 1024 < SIZE_WAL_MIN_FREE

    async def open_write_close() -> int:
        store = await Store.open(path, sized_wal=True)
        try:
            batch = store.batch()
            run_id = batch.create_run(dag_id="d", run_type="manual", conf={})
            await store.commit(batch)
            size = (await anyio.Path(f"{path}-wal").stat()).st_size
            assert (await store.get_run(run_id)).dag_id == "d"
        finally:
            await store.close()
        return size

    assert anyio.run(open_write_close) < 1024 * 1024
