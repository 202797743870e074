"""Waiting for a StepRun to finish: list once, then watch, resuming where the watch stopped.

The decisions (which event ends the wait, when to resume and when to re-list) live in
:class:`WaitTracker`, which only looks at events; the driver below only moves events from a
source to the tracker (the blocking client runs this same driver, see ``steprun.client.sync``).
Tests drive it with fake sources.

Watch semantics relied upon (Kubernetes API concepts, "efficient detection of changes"):
a watch started at the resourceVersion of the last event seen continues without gaps; a server
that no longer has that version answers 410 Gone, and the client must list again to learn the
current state and a fresh version to watch from.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from steprun.api.models import StepRun
from steprun.client.backoff import Backoff
from steprun.client.errors import ApiUnreachable, StepRunNotFound, WaitTimeout, error_for
from steprun.client.objects import parse_steprun
from steprun.client.result import is_terminal
from steprun.kube.errors import classify_response

Event = Mapping[str, Any]
GONE = 410


class WatchExpired(Exception):
    """The watch cannot resume from the version it was given (410 Gone): list again."""


class StreamBroken(Exception):
    """The watch connection failed; resuming from the last version seen loses nothing."""


@dataclass
class WaitTracker:
    """What the wait knows so far: the version to resume from and the StepRun as last seen."""

    name: str
    namespace: str
    resource_version: str = ""
    last: StepRun | None = None

    def on_list(self, items: Sequence[StepRun], resource_version: str) -> StepRun | None:
        """Takes a (field-selected) list result; returns the StepRun once it is terminal."""
        matching = [item for item in items if item.name == self.name]
        if not matching:
            raise StepRunNotFound(self.name, self.namespace)
        steprun = matching[0]
        self.resource_version = resource_version or steprun.metadata.resource_version or ""
        return self._observe(steprun)

    def on_event(self, event: Event) -> StepRun | None:
        """Takes one watch event; returns the StepRun once it is terminal."""
        kind = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, Mapping):
            return None
        if kind == "ERROR":
            code = obj.get("code")
            if code == GONE:
                raise WatchExpired(str(obj.get("message") or "resource version too old"))
            error = classify_response(code if isinstance(code, int) else 0, json.dumps(dict(obj)))
            if error.transient:
                raise StreamBroken(str(obj.get("message") or f"watch error {code}"))
            raise error_for(error, name=self.name, namespace=self.namespace)
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if kind == "BOOKMARK":
            if version:
                self.resource_version = str(version)
            return None
        if (obj.get("metadata") or {}).get("name") != self.name:
            return None
        if kind == "DELETED":
            raise StepRunNotFound(self.name, self.namespace)
        if kind not in ("ADDED", "MODIFIED"):
            return None
        steprun = parse_steprun(obj)
        if version:
            self.resource_version = str(version)
        return self._observe(steprun)

    def _observe(self, steprun: StepRun) -> StepRun | None:
        self.last = steprun
        return steprun if is_terminal(steprun) else None

    def timed_out(self, timeout: float) -> WaitTimeout:
        return WaitTimeout(self.name, self.namespace, timeout, self.last)


def watch_seconds(deadline: float | None, now: float, watch_timeout: int) -> int | None:
    """The timeoutSeconds of the next watch request; None when the deadline has passed.

    The server closes the watch after that many seconds, which both bounds a wait with a
    deadline and recycles long watches before proxies or load balancers cut them.
    """
    if deadline is None:
        return watch_timeout
    remaining = deadline - now
    if remaining <= 0:
        return None
    return max(1, min(watch_timeout, math.ceil(remaining)))


class WaitSource(Protocol):
    """Where a wait reads the StepRun from (the client, or a fake in tests)."""

    async def list(self) -> tuple[list[StepRun], str]: ...

    def watch(self, resource_version: str, timeout_seconds: int) -> AsyncGenerator[Event, None]: ...


async def wait_for_terminal(
    source: WaitSource,
    tracker: WaitTracker,
    *,
    timeout: float | None,  # noqa: ASYNC109 - enforced through the watch's timeoutSeconds
    watch_timeout: int,
    backoff: Backoff,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> StepRun:
    """Returns the tracked StepRun once terminal; raises WaitTimeout after ``timeout``."""
    deadline = None if timeout is None else clock() + timeout
    failures = 0
    must_list = True
    while True:
        if must_list:
            done = tracker.on_list(*(await source.list()))
            if done is not None:
                return done
            must_list = False
        seconds = watch_seconds(deadline, clock(), watch_timeout)
        if seconds is None:
            raise tracker.timed_out(timeout or 0.0)
        stream = source.watch(tracker.resource_version, seconds)
        try:
            async for event in stream:
                failures = 0
                done = tracker.on_event(event)
                if done is not None:
                    return done
            failures = 0
        except WatchExpired:
            must_list = True
        except StreamBroken as exc:
            failures += 1
            delay = backoff.delay(failures)
            if delay is None:
                raise ApiUnreachable(f"watching steprun {tracker.name!r} failed: {exc}") from exc
            await sleep(_bounded(delay, deadline, clock()))
        finally:
            await stream.aclose()


def _bounded(delay: float, deadline: float | None, now: float) -> float:
    """A retry pause that does not outlast the wait's deadline."""
    if deadline is None:
        return delay
    return max(0.0, min(delay, deadline - now))
