"""Which replica is the active one, and whether this replica is ready to reconcile.

kopf pauses every replica but the one of highest priority among the live records of the
peering object, and offers no hook to say so. This module applies kopf's rule to the same
object (read every few seconds), so metrics that must come from one replica only (the phase
gauge) and ``steprun_active_replica`` say what kopf decided. The rule itself is pure
(:func:`is_active`) and tested against kopf's own decision in tests/unit/test_activity.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from steprun.log import get_logger
from steprun.timeutil import parse_time_or_none

POLL_SECONDS = 5.0
# Readiness lapses when the peering object could not be read for this many polls in a row.
STALE_POLLS = 3
_log = get_logger("steprun.activity")


def is_active(
    records: Mapping[str, Mapping[str, Any]], identity: str, priority: int, now: datetime
) -> bool:
    """kopf's rule: paused while another live record has a higher or an equal priority."""
    for peer, record in records.items():
        if peer == identity:
            continue
        seen = parse_time_or_none(record.get("lastseen"))
        lifetime = timedelta(seconds=int(record.get("lifetime") or 60))
        if seen is None or seen + lifetime <= now:
            continue  # dead: kopf ignores it (and cleans it up)
        if int(record.get("priority") or 0) >= priority:
            return False
    return True


class _Lister(Protocol):
    async def list(
        self, kind: str, namespace: str | None, *, field_selector: str | None = None
    ) -> list[dict[str, Any]]: ...


@dataclass
class Activity:
    """This replica's state, for metrics and the readiness endpoint."""

    peering: str  # empty: standalone, always active
    identity: str
    priority: int
    started: bool = False  # kopf is up (its ready flag)
    stopping: bool = False
    active: bool = False
    failed_polls: int = 0
    on_change: list[Callable[[bool], None]] = field(default_factory=list)

    def set_active(self, active: bool) -> None:
        if active != self.active:
            self.active = active
            _log.info("replica " + ("active" if active else "standing by"), peering=self.peering)
            for callback in self.on_change:
                callback(active)

    def ready(self) -> tuple[bool, str]:
        """Ready to reconcile (now, or on taking over): started, not stopping, API reachable."""
        if self.stopping:
            return False, "stopping"
        if not self.started:
            return False, "starting: the watches are not established yet"
        if self.failed_polls >= STALE_POLLS:
            return False, f"the API server did not answer the last {self.failed_polls} polls"
        return True, "active" if self.active else "standing by"

    async def poll_once(self, kube: _Lister, now: datetime) -> None:
        if not self.peering:
            self.set_active(True)
            return
        try:
            found = await kube.list(
                "ClusterKopfPeering", None, field_selector=f"metadata.name={self.peering}"
            )
        except Exception as error:  # any failure: keep the last answer, count the miss
            self.failed_polls += 1
            _log.warning("peering object unreadable", peering=self.peering, error=str(error))
            return
        self.failed_polls = 0
        records = dict((found[0].get("status") or {}) if found else {})
        self.set_active(is_active(records, self.identity, self.priority, now))

    async def run(self, kube: _Lister, interval: float = POLL_SECONDS) -> None:
        while not self.stopping:
            await self.poll_once(kube, datetime.now(UTC))
            with contextlib.suppress(TimeoutError):
                await asyncio.sleep(interval)
