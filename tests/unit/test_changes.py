"""The changes port: subscribers get the kinds they asked for, publishing never waits,
and a subscriber that falls behind is dropped and told so."""

from __future__ import annotations

import anyio
import pytest

from dagd.changes import ATTEMPT, EVENT, RUN, TI, Change, Changes, Dropped

pytestmark = pytest.mark.anyio


def change(kind: str, n: int, state: str = "running") -> Change:
    return Change(kind, n, n, "etl", state, 0.0)


async def test_a_subscriber_gets_only_the_kinds_it_asked_for_in_order() -> None:
    hub = Changes()
    with hub.subscribe([RUN]) as runs, hub.subscribe() as everything:
        assert hub.wanted == {RUN, TI, ATTEMPT, EVENT}
        hub.publish([change(RUN, 1), change(TI, 7), change(RUN, 2, "success")])
        assert [(c.kind, c.id) for c in await runs.next()] == [(RUN, 1), (RUN, 2)]
        assert [c.kind for c in await everything.next()] == [RUN, TI, RUN]
    assert hub.wanted == frozenset()  # closed: nothing is built for nobody


async def test_next_waits_for_the_next_publish() -> None:
    hub = Changes()
    got: list[Change] = []
    with hub.subscribe([RUN]) as sub:
        async with anyio.create_task_group() as tg:
            async def read() -> None:
                got.extend(await sub.next())

            tg.start_soon(read)
            await anyio.wait_all_tasks_blocked()
            assert got == []
            hub.publish([change(TI, 1)])  # not a kind it wants: still waiting
            await anyio.wait_all_tasks_blocked()
            assert got == []
            hub.publish([change(RUN, 3)])
    assert [c.id for c in got] == [3]


async def test_a_slow_subscriber_is_dropped_and_told_to_re_read() -> None:
    hub = Changes()
    slow = hub.subscribe([RUN], limit=3)
    with hub.subscribe([RUN]) as fast:
        hub.publish([change(RUN, n) for n in range(2)])
        hub.publish([change(RUN, n) for n in range(2, 5)])  # 5 > 3: slow is dropped
        assert slow.dropped
        with pytest.raises(Dropped, match="more than 3 changes behind"):
            await slow.next()
        assert [c.id for c in await fast.next()] == [0, 1, 2, 3, 4]  # the others lose nothing
        hub.publish([change(RUN, 5)])
        assert [c.id for c in await fast.next()] == [5]


def test_an_unknown_kind_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"unknown change kind\(s\) \['runs'\]"):
        Changes().subscribe(["runs"])
