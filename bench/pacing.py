"""The shared rate limiter that interleaves the arms' submissions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator

from bench.workload import SIDES, Side


class Pacer:
    """Lets callers through at a fixed rate on an absolute schedule (no drift from slow calls);
    with no rate, everyone passes at once (a burst)."""

    def __init__(
        self,
        per_second: float | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        if per_second is not None and per_second <= 0:
            raise ValueError("a rate must be positive")
        self._interval = 1.0 / per_second if per_second else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next: float | None = None

    async def wait(self) -> None:
        if not self._interval:
            return
        now = self._clock()
        if self._next is None:
            self._next = now
        delay = self._next - now
        self._next += self._interval
        if delay > 0:
            await self._sleep(delay)


def interleaved(count: int) -> Iterator[tuple[Side, int]]:
    """Every arm's submissions, one after the other, rotating which arm goes first so none is
    systematically ahead by part of a tick."""
    for index in range(count):
        first = index % len(SIDES)
        for side in SIDES[first:] + SIDES[:first]:
            yield side, index
