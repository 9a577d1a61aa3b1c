"""A data directory on a disk that is really full (a small tmpfs, filled to the last
byte): `dagd run` says so in one line and exits, instead of a SQLite traceback. Needs
root to mount; skipped, saying why, where the machine does not allow it."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from acceptance.harness import Dagd

pytestmark = pytest.mark.slow


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        with open(mount / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_start_on_a_full_disk_says_so_in_one_line(dagd: Dagd, full_disk: Path) -> None:
    daemon = dagd.spawn(data_dir=full_disk / "data")
    code = daemon.wait_exit(timeout=30)
    log = daemon.log()
    assert code == 1, log
    assert "error: cannot write the database" in log, log
    assert "bytes free on" in log, log
    assert "Traceback" not in log, log
