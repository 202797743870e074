"""How long to wait between retries of a failing API call."""

from __future__ import annotations

from dataclasses import dataclass

from steprun.kube.backoff import exponential


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: ``initial``, doubled after each failure, capped at ``maximum``.

    The defaults ride out an API server restart (about 15 s in total) without hiding an outage
    from the caller for long.
    """

    retries: int = 5
    initial: float = 0.5
    maximum: float = 8.0

    def delay(self, failures: int) -> float | None:
        """The pause after ``failures`` consecutive failures; None once retries are exhausted."""
        if failures > self.retries or failures < 1:
            return None
        return exponential(failures, self.initial, self.maximum)
