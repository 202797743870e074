from __future__ import annotations

import pytest

from bench.pacing import Pacer, interleaved


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


async def test_rate_spaces_callers_on_an_absolute_schedule() -> None:
    time = FakeTime()
    pacer = Pacer(10, clock=time.clock, sleep=time.sleep)
    for _ in range(4):
        await pacer.wait()
    assert time.sleeps == [0.1, 0.1, 0.1]


async def test_a_slow_caller_does_not_push_the_schedule_back() -> None:
    time = FakeTime()
    pacer = Pacer(10, clock=time.clock, sleep=time.sleep)
    await pacer.wait()
    time.now += 0.35  # the work after the first slot took three and a half slots
    await pacer.wait()
    await pacer.wait()
    await pacer.wait()
    await pacer.wait()
    assert time.sleeps == [0.05]


async def test_burst_never_waits() -> None:
    time = FakeTime()
    pacer = Pacer(None, clock=time.clock, sleep=time.sleep)
    for _ in range(100):
        await pacer.wait()
    assert time.sleeps == []


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Pacer(0)


def test_interleaving_alternates_which_side_goes_first() -> None:
    assert list(interleaved(4)) == [
        ("steprun", 0),
        ("job", 0),
        ("pod", 0),
        ("job", 1),
        ("pod", 1),
        ("steprun", 1),
        ("pod", 2),
        ("steprun", 2),
        ("job", 2),
        ("steprun", 3),
        ("job", 3),
        ("pod", 3),
    ]
