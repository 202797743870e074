"""The freed heap is handed back once a listing is over, and only then."""

from __future__ import annotations

import pytest

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


def test_releasing_the_heap_works_in_this_process() -> None:
    release_heap()
