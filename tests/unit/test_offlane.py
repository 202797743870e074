"""Work outside the reconcile lanes: one task per key, bounded per namespace, never waiting
past what it was given."""

from __future__ import annotations

import asyncio

from steprun.reconcile.offlane import OffLane
from steprun.reconcile.queue import Key


async def test_work_of_one_namespace_takes_turns_and_others_do_not_wait() -> None:
    done: list[Key] = []
    lane = OffLane(per_namespace=2, on_done=done.append)
    release = asyncio.Event()
    holding: list[str] = []
    turns: list[bool] = []

    async def hold(key: Key, within: float) -> None:
        async with lane.slot(key[0], within) as got:
            turns.append(got)
            if got:
                holding.append(key[1])
                await release.wait()

    for name in ("a", "b", "c"):
        lane.start(("busy", name), hold(("busy", name), within=0.2))
    lane.start(("quiet", "d"), hold(("quiet", "d"), within=0.2))
    await asyncio.sleep(0.05)
    # Two of "busy" hold its slots; "quiet" was not kept waiting by them.
    assert sorted(holding) == ["a", "b", "d"]
    assert lane.busy(("busy", "c")) and not lane.busy(("busy", "x"))
    await asyncio.sleep(0.3)
    # The third gave up its turn when its time ran out, and said so to its work.
    assert turns.count(False) == 1 and ("busy", "c") in done
    release.set()
    await lane.wait()
    assert sorted(done) == [("busy", "a"), ("busy", "b"), ("busy", "c"), ("quiet", "d")]
    assert not lane.busy(("busy", "a")) and lane._slots == {}


async def test_one_piece_of_work_per_key_and_a_failure_is_reported_done() -> None:
    done: list[Key] = []
    lane = OffLane(per_namespace=1, on_done=done.append)
    ran: list[str] = []

    async def work(name: str) -> None:
        ran.append(name)
        raise RuntimeError("store down")

    lane.start(("ns", "x"), work("first"))
    lane.start(("ns", "x"), work("second"))
    await lane.wait()
    assert ran == ["first"] and done == [("ns", "x")]


async def test_drain_cancels_without_calling_back() -> None:
    done: list[Key] = []
    lane = OffLane(per_namespace=1, on_done=done.append)
    lane.start(("ns", "x"), asyncio.sleep(60))
    await asyncio.sleep(0)
    await lane.drain()
    assert done == [] and not lane.busy(("ns", "x"))
