"""File drops end to end: real files in a real temp folder, watched by the trigger service
over a real engine on a real SQLite file.

Each test drops files the way users and their tools do (slow writers, write-then-rename,
bursts, symlinks, FIFOs, odd names, a restart in between) and reads the runs and the
event ledger from the store. "Exactly one run" is proved with a barrier: a later file
whose run appears only after every earlier change has been seen by the same watcher.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from dagd.store.rows import RunRow
from dagd.triggers.service import TriggerService
from integration.harness import Harness, StartEngine, wait_until, watching

pytestmark = pytest.mark.anyio

STABLE = 0.2  # seconds: the stability window of most tests (small, to keep them fast)

# An in-loop task: fails for files whose name contains "bad" (for on_failure).
DROP_DAG = """
from dagd import DAG, FileDrop, task

with DAG({dag_id!r}, max_active_runs=1000,
         triggers=[FileDrop({folder!r}, **{options!r})]):
    @task
    async def take(conf):
        if "bad" in str(conf.get("name", "")):
            raise ValueError("refusing " + conf["name"])

    take()
"""

WriteDag = Callable[[str, str], Path]


def drop_dag(write_dag: WriteDag, folder: Path, dag_id: str = "drops", **options: Any) -> None:
    options.setdefault("stable_for", STABLE)
    write_dag(f"{dag_id}.py", DROP_DAG.format(dag_id=dag_id, folder=str(folder),
                                               options=options))


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "incoming"
    folder.mkdir()
    return folder


async def runs_of(h: Harness, dag_id: str = "drops") -> list[RunRow]:
    return sorted(await h.store.list_runs(dag_id, limit=100_000), key=lambda r: r.id)


async def paths_run(h: Harness, dag_id: str = "drops") -> list[str]:
    return [r.conf["path"] for r in await runs_of(h, dag_id)]


async def wait_for_run_of(h: Harness, path: Path, dag_id: str = "drops",
                          deadline: float = 10.0) -> RunRow:
    async def seen() -> bool:
        return str(path) in await paths_run(h, dag_id)

    await wait_until(seen, deadline, f"a run for {path.name!r}")
    return next(r for r in await runs_of(h, dag_id) if r.conf["path"] == str(path))


async def barrier(h: Harness, folder: Path, name: str = "zz-barrier.csv") -> None:
    """Drop one more file and wait for its run: by then the watcher has seen and settled
    every change made before it (a duplicate run would already be there)."""
    path = folder / name
    path.write_text("barrier\n")
    await wait_for_run_of(h, path)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- completeness ----------------------------------------------------------------------


async def test_a_slow_partial_write_starts_one_run_once_the_file_is_complete(
    write_dag: WriteDag, start_engine: StartEngine, inbox: Path
) -> None:
    stable = 0.4
    drop_dag(write_dag, inbox, pattern="*.csv", stable_for=stable)
    chunks = [b"id,value\n", b"1,one\n" * 1000, b"2,two\n" * 1000]
    async with watching(start_engine) as h:
        await barrier(h, inbox, "warm-up.csv")  # the watcher is running
        target = inbox / "slow.csv"
        async with await anyio.open_file(target, "wb") as f:
            for n, chunk in enumerate(chunks):
                if n:
                    # The scenario: a writer pausing for more than half the window.
                    await anyio.sleep(stable * 0.6)
                await f.write(chunk)
                await f.flush()
            assert not any(p.endswith("slow.csv") for p in await paths_run(h)), (
                "a run started while the file was still open and being written"
            )
        full = b"".join(chunks)
        run = await wait_for_run_of(h, target)
        assert run.conf["path"] == str(target)
        assert run.conf["name"] == "slow.csv"
        assert run.conf["size"] == len(full)
        assert run.conf["sha256"] == sha256(full)
        assert run.run_type == "file"
        # A run for a half-written version would have been created before this one.
        assert [p for p in await paths_run(h) if p.endswith("slow.csv")] == [str(target)]
        await barrier(h, inbox)
        assert len(await runs_of(h)) == 3  # warm-up, slow, barrier
        assert await h.wait(run.id) == "success"


async def test_write_then_rename_starts_one_run_under_the_final_name(
    write_dag: WriteDag, start_engine: StartEngine, inbox: Path
) -> None:
    drop_dag(write_dag, inbox, pattern="*.csv")
    async with watching(start_engine) as h:
        await barrier(h, inbox, "warm-up.csv")
        tmp = inbox / "x.csv.tmp"
        data = b"a,b\n" * 5000
        tmp.write_bytes(data)
        os.replace(tmp, inbox / "x.csv")
        run = await wait_for_run_of(h, inbox / "x.csv")
        assert (run.conf["size"], run.conf["sha256"]) == (len(data), sha256(data))
        await barrier(h, inbox)
        assert await paths_run(h) == [str(inbox / n) for n in
                                      ("warm-up.csv", "x.csv", "zz-barrier.csv")]
        events = await h.store.list_events("drops", limit=100)
        assert [e.payload["name"] for e in events] == ["zz-barrier.csv", "x.csv", "warm-up.csv"]


async def test_a_file_half_written_when_the_watcher_starts_is_not_taken_early(
    write_dag: WriteDag, start_engine: StartEngine, inbox: Path
) -> None:
    """The rescan at start must apply the window too: a file whose writer is still
    busy (last write younger than the window) is not yet complete."""
    stable = 1.0
    drop_dag(write_dag, inbox, pattern="*.csv", stable_for=stable)
    target = inbox / "busy.csv"
    async with start_engine() as h:
        async with await anyio.open_file(target, "wb") as f:
            await f.write(b"first half\n" * 100)
            await f.flush()
            async with anyio.create_task_group() as tg:
                # rescans within ~0.2 s
                await tg.start(TriggerService(h.engine.intake, h.engine.changes).run)
                await anyio.sleep(stable * 0.6)  # the writer's pause, inside the window
                await f.write(b"second half\n" * 100)
                await f.aclose()
                run = await wait_for_run_of(h, target)
                assert run.conf["size"] == target.stat().st_size, (
                    "the rescan took the file while it was half-written"
                )
                await barrier(h, inbox)
                assert len(await runs_of(h)) == 2
                tg.cancel_scope.cancel()


# -- bursts and batches ----------------------------------------------------------------


async def test_a_burst_of_500_files_starts_500_runs(
    write_dag: WriteDag, start_engine: StartEngine, inbox: Path
) -> None:
    drop_dag(write_dag, inbox, pattern="*.csv")
    async with watching(start_engine) as h:
        names = [f"part-{n:03d}.csv" for n in range(500)]
        for n, name in enumerate(names):
            (inbox / name).write_text(f"{n}\n")

        async def all_in() -> bool:
            return len(await runs_of(h)) >= 500

        await wait_until(all_in, 30, "500 runs")
        runs = await runs_of(h)
        assert sorted(r.conf["path"] for r in runs) == [str(inbox / n) for n in names]
        for r in runs:
            n = int(r.conf["name"][5:8])
            assert r.conf["sha256"] == sha256(f"{n}\n".encode())
        events = await h.store.list_events("drops", limit=1000)
        assert len(events) == 500
        assert {e.outcome for e in events} == {"run_created"}


async def test_a_burst_of_500_files_in_batch_mode_starts_one_run_with_all_of_them(
    write_dag: WriteDag, start_engine: StartEngine, inbox: Path
) -> None:
    drop_dag(write_dag, inbox, pattern="*.csv", batch=True, quiet_period=0.5)
    async with watching(start_engine) as h:
        names = [f"part-{n:03d}.csv" for n in range(500)]
        for name in names:
            (inbox / name).write_text(f"{name}\n")

        async def one_run() -> bool:
            return len(await runs_of(h)) >= 1

        await wait_until(one_run, 20, "the batch run")
        [run] = await runs_of(h)
        assert run.conf["count"] == 500
        assert run.conf["folder"] == str(inbox)
        files = run.conf["files"]
        assert [f["path"] for f in files] == [str(inbox / n) for n in names]
        assert all(f["sha256"] == sha256(f"{f['name']}\n".encode()) for f in files)
        assert await h.wait(run.id) == "success"
        events = await h.store.list_events("drops", limit=1000)
        outcomes = [e.outcome for e in events]
        assert outcomes.count("run_created") == 1
        assert outcomes.count("in_batch") == 500
        assert {e.run_id for e in events} == {run.id}


async def test_a_batch_counts_what_each_dag_has_seen_on_its_own(
    write_dag: WriteDag, start_engine: StartEngine, inbox: Path
) -> None:
    """Two DAGs on one batch drop: a file the first took before a restart is not taken
    again by it, while the second DAG, new after the restart, gets every file."""
    options = {"pattern": "*.csv", "batch": True, "quiet_period": 0.2}
    drop_dag(write_dag, inbox, **options)
    for name in ("a.csv", "b.csv"):
        (inbox / name).write_text(f"{name}\n")
    async with watching(start_engine) as h:
        await wait_until(lambda: _count(h, "drops", 1), 10, "the first batch")
    drop_dag(write_dag, inbox, dag_id="later", **options)
    (inbox / "c.csv").write_text("c.csv\n")
    async with watching(start_engine) as h:
        await wait_until(lambda: _count(h, "drops", 2), 10, "the second batch of drops")
        await wait_until(lambda: _count(h, "later", 1), 10, "the batch of the new DAG")
        first, second = await runs_of(h)
        [later] = await runs_of(h, "later")
        names = [[f["name"] for f in r.conf["files"]] for r in (first, second, later)]
        assert names == [["a.csv", "b.csv"], ["c.csv"], ["a.csv", "b.csv", "c.csv"]]
        for run in (first, second, later):
            assert await h.wait(run.id) == "success"


async def _count(h: Harness, dag_id: str, n: int) -> bool:
    return len(await runs_of(h, dag_id)) >= n


async def test_a_marker_file_closes_the_batch(
    write_dag: WriteDag, start_engine: StartEngine, inbox: Path
) -> None:
    drop_dag(write_dag, inbox, pattern="*.csv", batch=True, marker="_SUCCESS",
             quiet_period=0.1)
    async with start_engine() as h:
        service = TriggerService(h.engine.intake, h.engine.changes)
        async with anyio.create_task_group() as tg:
            await tg.start(service.run)
            await wait_until(lambda: bool(service._watchers), 10, "the watcher")
            [(_, watcher)] = service._watchers.values()
            for n in range(3):
                (inbox / f"day-{n}.csv").write_text(f"{n}\n")
            # Complete and held: far past the quiet period, still no run without the marker.
            await wait_until(lambda: len(watcher._batch) == 3, 10, "3 complete files held")
            await anyio.sleep(0.3)  # > quiet_period: the period must not close a marker batch
            assert await runs_of(h) == []
            assert await h.store.list_events("drops") == []
            (inbox / "_SUCCESS").write_bytes(b"")

            async def one_run() -> bool:
                return len(await runs_of(h)) == 1

            await wait_until(one_run, 10, "the batch run after the marker")
            tg.cancel_scope.cancel()
        [run] = await runs_of(h)
        assert [f["name"] for f in run.conf["files"]] == ["day-0.csv", "day-1.csv", "day-2.csv"]
        assert await h.wait(run.id) == "success"


# -- what is not a file, and names that are hostile ---------------------------------------


async def test_symlinks_fifos_and_folders_are_ignored_and_hostile_names_run(
    write_dag: WriteDag, start_engine: StartEngine, inbox: Path, tmp_path: Path
) -> None:
    drop_dag(write_dag, inbox, pattern="*")
    outside = tmp_path / "secret.txt"
    outside.write_text("not yours\n")
    hostile = [
        "with space.csv",
        "new\nline.csv",
        "ünïcödé-数据-🙂.csv",
        "-leading-dash.csv",
        "--help",
        "quote'\"$(echo).csv",
        "x" * 251 + ".csv",  # 255 bytes: the longest name most filesystems take
    ]
    async with watching(start_engine) as h:
        await barrier(h, inbox, "warm-up.csv")
        (inbox / "link-out.csv").symlink_to(outside)
        (inbox / "link-dangling.csv").symlink_to(tmp_path / "nowhere")
        (inbox / "link-dir").symlink_to(tmp_path, target_is_directory=True)
        os.mkfifo(inbox / "pipe.csv")
        (inbox / "folder.csv").mkdir()
        (inbox / "folder.csv" / "inner.csv").write_text("not recursive\n")
        for name in hostile:
            (inbox / name).write_bytes(name.encode())
        for name in hostile:
            run = await wait_for_run_of(h, inbox / name)
            assert run.conf["name"] == name
            assert run.conf["sha256"] == sha256(name.encode())
        await barrier(h, inbox)
        expected = {str(inbox / n) for n in [*hostile, "warm-up.csv", "zz-barrier.csv"]}
        assert set(await paths_run(h)) == expected
        assert len(await runs_of(h)) == len(expected)
        for r in await runs_of(h):
            assert await h.wait(r.id) == "success"
        assert (inbox / "pipe.csv").is_fifo()  # left as it was, never opened for writing


async def test_a_name_that_is_not_utf8_is_skipped_without_stalling_the_watcher(
    write_dag: WriteDag, start_engine: StartEngine, inbox: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    drop_dag(write_dag, inbox, pattern="*")
    async with watching(start_engine) as h:
        await barrier(h, inbox, "warm-up.csv")
        # Dropped together: the good files share a batch of changes with the odd name.
        odd = inbox / os.fsdecode(b"latin1-caf\xe9.csv")  # the bytes as the disk has them
        async with await anyio.open_file(odd, "wb") as f:
            await f.write(b"bytes\n")
        neighbours = [inbox / f"neighbour-{n}.csv" for n in range(3)]
        for path in neighbours:
            path.write_text(path.name)
        for path in neighbours:
            await wait_for_run_of(h, path)
        await barrier(h, inbox)
        assert len(await runs_of(h)) == 5
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


# -- restarts -------------------------------------------------------------------------


async def test_a_restart_reruns_nothing_and_finds_what_was_dropped_meanwhile(
    write_dag: WriteDag, start_engine: StartEngine, inbox: Path
) -> None:
    drop_dag(write_dag, inbox, pattern="*.csv")
    before = inbox / "before.csv"
    during = inbox / "while-down.csv"
    async with watching(start_engine) as h:
        before.write_text("processed before the restart\n")
        first = await wait_for_run_of(h, before)
        assert await h.wait(first.id) == "success"

    during.write_text("dropped while the daemon was down\n")

    async with watching(start_engine) as h:
        run = await wait_for_run_of(h, during)
        assert await h.wait(run.id) == "success"
        await barrier(h, inbox)
        assert await paths_run(h) == [str(before), str(during), str(inbox / "zz-barrier.csv")]
        events = await h.store.list_events("drops", limit=100)
        # The rescan saw before.csv again: recognised, not stored or run a second time.
        assert [e.payload["name"] for e in reversed(events)] == [
            "before.csv", "while-down.csv", "zz-barrier.csv"
        ]


async def test_a_changed_file_is_a_new_version_and_runs_again_across_a_restart(
    write_dag: WriteDag, start_engine: StartEngine, inbox: Path
) -> None:
    drop_dag(write_dag, inbox, pattern="*.csv")
    path = inbox / "daily.csv"
    async with watching(start_engine) as h:
        path.write_text("version 1\n")
        await wait_for_run_of(h, path)

    path.write_text("version 2, longer\n")

    async with watching(start_engine) as h:
        async def two() -> bool:
            return len(await runs_of(h)) == 2

        await wait_until(two, 10, "a run for the second version")
        shas = [r.conf["sha256"] for r in await runs_of(h)]
        assert shas == [sha256(b"version 1\n"), sha256(b"version 2, longer\n")]


# -- moves after the run --------------------------------------------------------------


async def test_files_are_moved_to_processed_or_failed_when_their_run_ends(
    write_dag: WriteDag, start_engine: StartEngine, inbox: Path
) -> None:
    drop_dag(write_dag, inbox, pattern="*.csv", on_success="move:processed/",
             on_failure="move:failed/")
    good, bad = inbox / "good.csv", inbox / "bad.csv"
    async with watching(start_engine) as h:
        good.write_text("fine\n")
        bad.write_text("broken\n")
        good_run = await wait_for_run_of(h, good)
        bad_run = await wait_for_run_of(h, bad)
        assert await h.wait(good_run.id) == "success"
        assert await h.wait(bad_run.id) == "failed"
        await wait_until(lambda: (inbox / "processed" / "good.csv").exists(), 10,
                         "good.csv moved to processed/")
        await wait_until(lambda: (inbox / "failed" / "bad.csv").exists(), 10,
                         "bad.csv moved to failed/")
        assert not good.exists() and not bad.exists()
        assert (inbox / "processed" / "good.csv").read_text() == "fine\n"
        assert (inbox / "failed" / "bad.csv").read_text() == "broken\n"
        # The moved files are not new drops.
        await barrier(h, inbox)
        assert len(await runs_of(h)) == 3
