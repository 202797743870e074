"""Client-side rate limiting of the operator's API requests, and the server's own brake.

Two things decide when a request may go:

- a token bucket (client-go's ``--kube-api-qps``/``--kube-api-burst``): ``qps`` requests per
  second on average, up to ``burst`` at once; ``qps`` 0 means no client-side limit, the API
  server's Priority and Fairness being the only brake;
- the server's word: a 429 with Retry-After (what API Priority and Fairness answers when this
  client's priority level is saturated) holds *every* request of the client until then, since
  the next requests of the same flow would be refused too.

Time is asked of ``clock`` and waited for with ``sleep``, so tests drive it without waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

# A 429 without Retry-After (a proxy's, say) still slows the client down this long.
DEFAULT_HOLD_SECONDS = 1.0


class Throttle:
    def __init__(
        self,
        qps: float = 0.0,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self.qps = qps
        self.burst = max(1, burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(self.burst)
        self._refilled_at = clock()
        self._held_until = 0.0

    def hold(self, seconds: float | None) -> None:
        """The API server asked every request to wait ``seconds`` (the longest ask wins)."""
        wait = DEFAULT_HOLD_SECONDS if seconds is None else max(0.0, seconds)
        self._held_until = max(self._held_until, self._clock() + wait)

    async def acquire(self) -> float:
        """Wait until a request may be sent; returns how long that was."""
        now = self._clock()
        wait = max(0.0, self._held_until - now)
        if self.qps > 0:
            self._tokens = min(self.burst, self._tokens + (now - self._refilled_at) * self.qps)
            self._refilled_at = now
            # Reserve the token now, even if it is not there yet: concurrent callers then queue
            # up one interval apart instead of all waking at once.
            self._tokens -= 1
            if self._tokens < 0:
                wait = max(wait, -self._tokens / self.qps)
        if wait > 0:
            await self._sleep(wait)
        return wait


__all__ = ["DEFAULT_HOLD_SECONDS", "Throttle"]
