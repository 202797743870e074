"""In-memory state of the operator: the latest StepRuns and Pods seen, and a per-key work queue.

The caches are fed by kopf's watch streams and by the responses of the operator's own writes,
so a reconcile never acts on a view older than its own last write. Losing them (a restart) is
harmless: the watches list everything again and every decision is re-derived from the cluster.

The queue runs at most one reconcile per StepRun at a time and coalesces bursts of events for
the same StepRun into one more run — the workqueue discipline of Kubernetes' own controllers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from steprun.log import get_logger
from steprun.metrics import QUEUE_ADDS, QUEUE_DEPTH, QUEUE_LATENCY_SECONDS, RECONCILE_ERRORS

Key = tuple[str, str]  # (namespace, name)
_log = get_logger("steprun.queue")
Body = dict[str, Any]


def _rv(body: Mapping[str, Any]) -> int:
    # resourceVersions come from etcd's revision counter on every supported API server; comparing
    # them only decides which of two copies of the same object is fresher, and a wrong call
    # costs nothing worse than a status write refused for its stale precondition.
    try:
        return int(body.get("metadata", {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


@dataclass
class ObjectCache:
    """Latest copy of each object by (namespace, name), never replaced by an older copy."""

    items: dict[Key, Body] = field(default_factory=dict)

    def observe(self, body: Body, *, deleted: bool = False) -> Key:
        meta = body.get("metadata", {})
        key = (str(meta.get("namespace") or ""), str(meta.get("name")))
        current = self.items.get(key)
        same_object = current is not None and current["metadata"].get("uid") == meta.get("uid")
        if deleted:
            if current is not None and (not same_object or _rv(current) <= _rv(body)):
                del self.items[key]
            return key
        if current is None or not same_object or _rv(body) >= _rv(current):
            self.items[key] = body
        return key

    def get(self, key: Key) -> Body | None:
        return self.items.get(key)

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class PodCache:
    """The step Pods, indexed by the StepRun that owns them."""

    by_owner: dict[Key, dict[str, Body]] = field(default_factory=dict)

    def observe(self, owner: Key, body: Body, *, deleted: bool = False) -> None:
        name = str(body["metadata"]["name"])
        pods = self.by_owner.setdefault(owner, {})
        current = pods.get(name)
        if deleted:
            if current is not None and _rv(current) <= _rv(body):
                del pods[name]
            if not pods:
                self.by_owner.pop(owner, None)
            return
        if current is None or _rv(body) >= _rv(current):
            pods[name] = body

    def get(self, owner: Key, name: str) -> Body | None:
        return self.by_owner.get(owner, {}).get(name)

    def forget(self, owner: Key) -> None:
        self.by_owner.pop(owner, None)


class WorkQueue:
    """One reconcile at a time per key; events during a run cause exactly one more run."""

    def __init__(self, work: Callable[[Key], Awaitable[None]], concurrency: int = 64):
        self._work = work
        self._limit = asyncio.Semaphore(concurrency)
        self._running: set[Key] = set()
        self._dirty: set[Key] = set()
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # When each waiting key was added (the queue's depth and latency metrics).
        self._waiting_since: dict[Key, float] = {}

    def add(self, key: Key) -> None:
        QUEUE_ADDS.inc()
        self._waiting_since.setdefault(key, asyncio.get_running_loop().time())
        QUEUE_DEPTH.set(len(self._waiting_since))
        if key in self._running:
            self._dirty.add(key)
            return
        self._running.add(key)
        task = asyncio.get_running_loop().create_task(self._run(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def add_after(self, key: Key, delay: float) -> None:
        """Reconcile again after ``delay`` seconds (the earliest of several requests wins)."""
        loop = asyncio.get_running_loop()
        when = loop.time() + max(0.0, delay)
        existing = self._timers.get(key)
        if existing is not None and not existing.cancelled() and existing.when() <= when:
            return
        if existing is not None:
            existing.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def _run(self, key: Key) -> None:
        try:
            while True:
                async with self._limit:
                    # Cleared only once a slot is held: events while waiting need no extra run.
                    self._dirty.discard(key)
                    self._started(key)
                    try:
                        await self._work(key)
                    except Exception:
                        # The work function handles the errors it expects; anything else is a
                        # bug, logged once per occurrence and retried later rather than lost.
                        _log.exception("reconcile crashed", namespace=key[0], name=key[1])
                        RECONCILE_ERRORS.labels(error="Crash").inc()
                        self.add_after(key, 5.0)
                if key not in self._dirty:
                    return
        finally:
            self._running.discard(key)

    def _started(self, key: Key) -> None:
        since = self._waiting_since.pop(key, None)
        if since is not None:
            QUEUE_LATENCY_SECONDS.observe(asyncio.get_running_loop().time() - since)
        QUEUE_DEPTH.set(len(self._waiting_since))

    @property
    def depth(self) -> int:
        """Keys waiting for their reconcile to start."""
        return len(self._waiting_since)

    async def drain(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
