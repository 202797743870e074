"""The freed heap is handed back once a listing is over, and only then."""

from __future__ import annotations

import gc
import platform
import weakref

import pytest

from steprun.handlers import heap
from steprun.handlers.heap import ListingRelease, release_after_listings, release_heap


def test_the_release_is_due_only_once_listing_events_have_stopped() -> None:
    tracker = ListingRelease(quiet_seconds=2)
    assert not tracker.due(now=100)
    tracker.noted(None, now=100)
    tracker.noted(None, now=101)
    assert not tracker.due(now=102.5)
    assert tracker.due(now=103)
    tracker.released()
    assert not tracker.due(now=200)


def test_watch_events_neither_start_nor_delay_a_release() -> None:
    tracker = ListingRelease(quiet_seconds=2)
    for event_type in ("ADDED", "MODIFIED", "DELETED"):
        tracker.noted(event_type, now=10)
    assert not tracker.due(now=20)
    tracker.noted(None, now=20)
    tracker.noted("MODIFIED", now=21.5)
    assert tracker.due(now=22)


class Stop(Exception):
    pass


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def test_the_release_runs_once_after_each_listing() -> None:
    tracker = ListingRelease(quiet_seconds=2)
    clock = Clock()
    released_at: list[float] = []
    # A listing of three objects at start, watch events, then a relist when the stream ends.
    events: dict[float, str | None] = {
        1.0: None,
        2.0: None,
        3.0: None,
        6.0: "MODIFIED",
        20.0: None,
        21.0: None,
    }

    async def sleep(seconds: float) -> None:
        await clock.sleep(seconds)
        if clock.now in events:
            tracker.noted(events[clock.now], clock.now)
        if clock.now >= 30:
            raise Stop

    def release() -> None:
        released_at.append(clock.now)

    with pytest.raises(Stop):
        await release_after_listings(tracker, clock=lambda: clock.now, sleep=sleep, release=release)
    assert released_at == [5.0, 23.0]


def test_releasing_the_heap_frees_cycles_then_trims_the_c_heap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trimmed: list[int] = []
    monkeypatch.setattr(heap, "_malloc_trim", lambda: trimmed.append)

    class Node:
        pass

    gc.disable()
    try:
        node = Node()
        node.next = node  # type: ignore[attr-defined]
        alive = weakref.ref(node)
        del node
        assert alive() is not None, "only a collection frees a cycle"
        release_heap()
    finally:
        gc.enable()

    assert alive() is None
    assert trimmed == [0]


def test_malloc_trim_is_found_where_the_c_library_has_it() -> None:
    # glibc has it; musl does not, and there the release is the collection alone.
    assert (heap._malloc_trim() is not None) == (platform.libc_ver()[0] == "glibc")
