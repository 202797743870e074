"""The one backoff policy for retrying the API server: exponential, capped, with equal jitter
in the operator's work queue (a random delay between half and all of the exponential one).

Jitter spreads the retries of many callers that failed together (an API server restart fails
every in-flight request at once) so they do not come back in one burst. A server's Retry-After
is a floor: nobody retries earlier than the server asked.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


def exponential(failures: int, initial: float, maximum: float) -> float:
    """``initial`` doubled per consecutive failure after the first, capped at ``maximum``."""
    if failures < 1:
        return 0.0
    # The exponent is capped so that a long run of failures cannot overflow the float.
    return float(min(maximum, initial * 2 ** min(failures - 1, 62)))


@dataclass(frozen=True)
class Jittered:
    """Per-key backoff of the operator's work queue (client-go's rate limiter is the model)."""

    initial: float = 0.5
    maximum: float = 60.0

    def delay(
        self, failures: int, *, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        ceiling = exponential(failures, self.initial, self.maximum)
        # "Equal jitter": at least half the exponential delay, so backoff still grows.
        spread = (rng or random).uniform(ceiling / 2, ceiling)
        return max(spread, retry_after or 0.0)


@dataclass(frozen=True)
class Backoff:
    """Retries of one request by a caller that waits for its answer (the engine client, the
    CLI, the benchmark): at most ``retries`` more tries, ``initial`` doubled per failure up to
    ``maximum``, never sooner than the server's Retry-After.

    No jitter: these callers are few and retry one request each, unlike the operator's queue.
    The defaults ride out an API server restart (about 15 s in total) without hiding an
    outage from the caller for long.
    """

    retries: int = 5
    initial: float = 0.5
    maximum: float = 8.0

    def delay(self, failures: int, *, retry_after: float | None = None) -> float | None:
        """The pause after ``failures`` consecutive failures; None once retries are exhausted."""
        if failures > self.retries or failures < 1:
            return None
        return max(exponential(failures, self.initial, self.maximum), retry_after or 0.0)
