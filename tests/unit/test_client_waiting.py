"""The wait loop's decisions, driven by scripted event sources (no server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from steprun.api.models import StepRun
from steprun.client.backoff import Backoff
from steprun.client.errors import ApiError, ApiUnreachable, StepRunNotFound, WaitTimeout
from steprun.client.waiting import (
    StreamBroken,
    WaitTracker,
    WatchExpired,
    wait_for_terminal,
    watch_seconds,
)

Event = dict[str, Any]


def body(name: str = "s", phase: str | None = None, rv: str = "1") -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv},
        "spec": {"image": "busybox"},
    }
    if phase:
        obj["status"] = {"phase": phase}
    return obj


def steprun(phase: str | None = None, rv: str = "1", name: str = "s") -> StepRun:
    return StepRun.from_body(body(name, phase, rv))


def modified(phase: str | None, rv: str, name: str = "s") -> Event:
    return {"type": "MODIFIED", "object": body(name, phase, rv)}


def error(code: int) -> Event:
    return {"type": "ERROR", "object": {"kind": "Status", "code": code, "message": "m"}}


# A watch "session" is what one watch request yields: events, then the end of the stream, or
# an exception instead of (or after) some events.
Session = Sequence[Event | BaseException]


@dataclass
class ScriptedSource:
    lists: list[tuple[list[StepRun], str]]
    sessions: list[Session]
    watched_from: list[tuple[str, int]] = field(default_factory=list)
    list_calls: int = 0

    def list(self) -> tuple[list[StepRun], str]:
        self.list_calls += 1
        return self.lists.pop(0)

    def watch(self, resource_version: str, timeout_seconds: int) -> Generator[Event, None, None]:
        self.watched_from.append((resource_version, timeout_seconds))
        session = self.sessions.pop(0) if self.sessions else []
        yield from _play(session)


@dataclass
class AsyncScriptedSource:
    inner: ScriptedSource

    async def list(self) -> tuple[list[StepRun], str]:
        return self.inner.list()

    async def watch(
        self, resource_version: str, timeout_seconds: int
    ) -> AsyncGenerator[Event, None]:
        for event in self.inner.watch(resource_version, timeout_seconds):
            yield event


def _play(session: Iterable[Event | BaseException]) -> Generator[Event, None, None]:
    for item in session:
        if isinstance(item, BaseException):
            raise item
        yield item


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)


def drive(source: ScriptedSource, tracker: WaitTracker, **options: Any) -> StepRun:
    """The wait driver over a scripted source, to its end."""
    return asyncio.run(wait_for_terminal(AsyncScriptedSource(source), tracker, **options))


def run_wait(source: ScriptedSource, timeout: float | None = None, retries: int = 3) -> StepRun:
    clock = FakeClock()
    return drive(
        source,
        WaitTracker("s", "ns"),
        timeout=timeout,
        watch_timeout=300,
        backoff=Backoff(retries=retries, initial=1, maximum=4),
        clock=clock,
        sleep=clock.async_sleep,
    )


# ---------------------------------------------------------------------- the tracker


def test_a_terminal_list_result_ends_the_wait_without_watching() -> None:
    source = ScriptedSource(lists=[([steprun("Succeeded")], "10")], sessions=[])
    assert run_wait(source).status.phase == "Succeeded"
    assert source.watched_from == []


def test_an_empty_list_means_not_found() -> None:
    with pytest.raises(StepRunNotFound):
        run_wait(ScriptedSource(lists=[([], "10")], sessions=[]))


def test_watch_starts_at_the_list_version_and_resumes_from_the_last_event() -> None:
    source = ScriptedSource(
        lists=[([steprun("Pending", rv="5")], "10")],
        sessions=[
            [modified("Running", "11"), modified("Running", "12")],  # server closed the watch
            [],  # a quiet watch: no events until it times out
            [modified("Failed", "13")],
        ],
    )
    assert run_wait(source).status.phase == "Failed"
    assert [rv for rv, _ in source.watched_from] == ["10", "12", "12"]
    assert source.list_calls == 1


def test_bookmarks_move_the_resume_version() -> None:
    bookmark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "40"}}}
    source = ScriptedSource(
        lists=[([steprun("Running")], "10")],
        sessions=[[bookmark], [modified("Succeeded", "41")]],
    )
    run_wait(source)
    assert [rv for rv, _ in source.watched_from] == ["10", "40"]


def test_gone_relists_and_watches_from_the_new_list_version() -> None:
    source = ScriptedSource(
        lists=[([steprun("Running")], "10"), ([steprun("Running", rv="90")], "95")],
        sessions=[[modified("Running", "11"), error(410)], [modified("Succeeded", "96")]],
    )
    assert run_wait(source).status.phase == "Succeeded"
    assert [rv for rv, _ in source.watched_from] == ["10", "95"]
    assert source.list_calls == 2


def test_gone_raised_by_the_source_relists_too() -> None:
    source = ScriptedSource(
        lists=[([steprun("Running")], "10"), ([steprun("Cancelled")], "95")],
        sessions=[[WatchExpired("too old")]],
    )
    assert run_wait(source).status.phase == "Cancelled"


def test_a_relist_that_finds_it_finished_returns_without_watching_again() -> None:
    source = ScriptedSource(
        lists=[([steprun("Running")], "10"), ([steprun("TimedOut")], "95")],
        sessions=[[error(410)]],
    )
    assert run_wait(source).status.phase == "TimedOut"
    assert len(source.watched_from) == 1


def test_broken_streams_resume_with_backoff_and_reset_after_events() -> None:
    clock = FakeClock()
    source = ScriptedSource(
        lists=[([steprun("Running")], "10")],
        sessions=[
            [StreamBroken("reset")],
            [StreamBroken("reset")],
            [modified("Running", "11"), StreamBroken("reset")],
            [StreamBroken("reset")],
            [modified("Succeeded", "12")],
        ],
    )
    done = drive(
        source,
        WaitTracker("s", "ns"),
        timeout=None,
        watch_timeout=300,
        backoff=Backoff(retries=3, initial=1, maximum=4),
        clock=clock,
        sleep=clock.async_sleep,
    )
    assert done.status.phase == "Succeeded"
    # 1, 2, then an event reset the count: 1 again.
    assert clock.slept == [1, 2, 1, 2]
    assert [rv for rv, _ in source.watched_from] == ["10", "10", "10", "11", "11"]


def test_a_stream_that_keeps_breaking_raises_api_unreachable() -> None:
    source = ScriptedSource(
        lists=[([steprun("Running")], "10")], sessions=[[StreamBroken("down")]] * 4
    )
    with pytest.raises(ApiUnreachable):
        run_wait(source, retries=3)
    assert len(source.watched_from) == 4


def test_a_retryable_error_event_is_a_broken_stream() -> None:
    source = ScriptedSource(
        lists=[([steprun("Running")], "10")],
        sessions=[[error(500)], [modified("Succeeded", "11")]],
    )
    assert run_wait(source).status.phase == "Succeeded"


def test_other_error_events_raise_typed_errors() -> None:
    source = ScriptedSource(lists=[([steprun("Running")], "10")], sessions=[[error(403)]])
    with pytest.raises(ApiError) as raised:
        run_wait(source)
    assert raised.value.status == 403


def test_deletion_while_waiting_raises_not_found() -> None:
    deleted = {"type": "DELETED", "object": body("s", "Running", "11")}
    source = ScriptedSource(lists=[([steprun("Running")], "10")], sessions=[[deleted]])
    with pytest.raises(StepRunNotFound):
        run_wait(source)


def test_events_of_other_objects_are_ignored() -> None:
    source = ScriptedSource(
        lists=[([steprun("Running")], "10")],
        sessions=[[modified("Succeeded", "11", name="other"), modified("Failed", "12")]],
    )
    assert run_wait(source).status.phase == "Failed"


def test_the_deadline_bounds_the_watch_and_times_out_with_the_last_state() -> None:
    clock = FakeClock()

    class SlowSource(ScriptedSource):
        def watch(
            self, resource_version: str, timeout_seconds: int
        ) -> Generator[Event, None, None]:
            self.watched_from.append((resource_version, timeout_seconds))
            yield modified("Running", "11")
            clock.now += timeout_seconds  # the server held the watch open that long

    source = SlowSource(lists=[([steprun("Pending")], "10")], sessions=[])
    with pytest.raises(WaitTimeout) as raised:
        drive(
            source,
            WaitTracker("s", "ns"),
            timeout=2.5,
            watch_timeout=300,
            backoff=Backoff(),
            clock=clock,
            sleep=clock.async_sleep,
        )
    assert [seconds for _, seconds in source.watched_from] == [3]
    assert raised.value.steprun is not None and raised.value.steprun.status.phase == "Running"


@pytest.mark.parametrize(
    ("deadline", "now", "expected"),
    [(None, 0, 300), (10.0, 0, 10), (10.0, 9.2, 1), (10.0, 9.9, 1), (1000.0, 0, 300), (5, 5, None)],
)
def test_watch_seconds(deadline: float | None, now: float, expected: int | None) -> None:
    assert watch_seconds(deadline, now, 300) == expected


# ---------------------------------------------------------------------- in a running loop


async def test_one_wait_resumes_after_a_break_and_relists_after_410() -> None:
    clock = FakeClock()
    inner = ScriptedSource(
        lists=[([steprun("Running")], "10"), ([steprun("Running")], "50")],
        sessions=[
            [modified("Running", "11"), StreamBroken("reset")],
            [error(410)],
            [modified("Succeeded", "51")],
        ],
    )
    done = await wait_for_terminal(
        AsyncScriptedSource(inner),
        WaitTracker("s", "ns"),
        timeout=None,
        watch_timeout=60,
        backoff=Backoff(retries=2, initial=1),
        clock=clock,
        sleep=clock.async_sleep,
    )
    assert done.status.phase == "Succeeded"
    assert inner.watched_from == [("10", 60), ("11", 60), ("50", 60)]
    assert clock.slept == [1]


async def test_a_zero_timeout_ends_the_wait_at_once() -> None:
    clock = FakeClock()
    inner = ScriptedSource(lists=[([steprun("Running")], "10")], sessions=[])
    with pytest.raises(WaitTimeout):
        await wait_for_terminal(
            AsyncScriptedSource(inner),
            WaitTracker("s", "ns"),
            timeout=0,
            watch_timeout=60,
            backoff=Backoff(),
            clock=clock,
            sleep=clock.async_sleep,
        )
