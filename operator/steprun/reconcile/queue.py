"""In-memory state of the operator: the latest StepRuns and Pods seen, and a per-key work queue.

The caches are fed by kopf's watch streams and by the responses of the operator's own writes,
so a reconcile never acts on a view older than its own last write. Losing them (a restart) is
harmless: the watches list everything again and every decision is re-derived from the cluster.

Memory stays bounded by the StepRuns in flight: a terminal StepRun is kept only as the few
fields its TTL and the release of its Pods need, and its Pods only while they hold the tracking
finalizer, as their names and finalizers.

The queue runs at most one reconcile per StepRun at a time and coalesces bursts of events for
the same StepRun into one more run — the workqueue discipline of Kubernetes' own controllers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from steprun.api.models import is_terminal_phase
from steprun.kube.backoff import Jittered
from steprun.log import get_logger
from steprun.metrics import QUEUE_ADDS, QUEUE_DEPTH, QUEUE_LATENCY_SECONDS, RECONCILE_ERRORS

Key = tuple[str, str]  # (namespace, name)
_log = get_logger("steprun.queue")
Body = dict[str, Any]

_SLIM_META = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "finalizers",
    "ownerReferences",
)


def is_terminal_body(body: Mapping[str, Any] | None) -> bool:
    status = (body or {}).get("status")
    return isinstance(status, Mapping) and is_terminal_phase(status.get("phase"))


def slim_steprun(body: Mapping[str, Any]) -> Body:
    """What a terminal StepRun is kept as: enough for its TTL, nothing of its spec or history."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    slim_spec = {}
    if isinstance(spec, Mapping) and "ttlSecondsAfterFinished" in spec:
        slim_spec["ttlSecondsAfterFinished"] = spec["ttlSecondsAfterFinished"]
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {k: meta[k] for k in _SLIM_META if k in meta and k != "ownerReferences"},
        "spec": slim_spec,
        "status": {k: status[k] for k in ("phase", "reason", "completionTime") if k in status},
    }


def slim_pod(body: Mapping[str, Any]) -> Body:
    meta = body.get("metadata") or {}
    return {"metadata": {k: meta[k] for k in _SLIM_META if k in meta}}


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
            self.items[key] = slim_steprun(body) if is_terminal_body(body) else body
        return key

    def get(self, key: Key) -> Body | None:
        return self.items.get(key)

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class PodCache:
    """The step Pods, indexed by the StepRun that owns them."""

    by_owner: dict[Key, dict[str, Body]] = field(default_factory=dict)

    finalizer: str = ""

    def observe(self, owner: Key, body: Body, *, deleted: bool = False, slim: bool = False) -> None:
        """``slim``: the owner is terminal, so only a Pod still holding ``finalizer`` is kept,
        and only as its metadata."""
        name = str(body["metadata"]["name"])
        if slim and self.finalizer not in (body["metadata"].get("finalizers") or []):
            deleted = True
        pods = self.by_owner.setdefault(owner, {})
        current = pods.get(name)
        if deleted:
            if current is not None and _rv(current) <= _rv(body):
                del pods[name]
            if not pods:
                self.by_owner.pop(owner, None)
            return
        if current is None or _rv(body) >= _rv(current):
            pods[name] = slim_pod(body) if slim else body

    def slim(self, owner: Key) -> None:
        """The owner became terminal: keep only what releasing its Pods needs."""
        for body in list(self.by_owner.get(owner, {}).values()):
            self.observe(owner, body, slim=True)

    def all(self, owner: Key) -> dict[str, Body]:
        return dict(self.by_owner.get(owner, {}))

    def __len__(self) -> int:
        return sum(len(pods) for pods in self.by_owner.values())

    def get(self, owner: Key, name: str) -> Body | None:
        return self.by_owner.get(owner, {}).get(name)

    def forget(self, owner: Key) -> None:
        self.by_owner.pop(owner, None)


START_LANE = "start"
FOLLOW_LANE = "follow"


class WorkQueue:
    """One reconcile at a time per key; events during a run cause exactly one more run.

    Keys run in lanes, each with its own ``concurrency`` slots: ``lane(key)`` says which, when
    a run is about to take a slot. The reconciler puts steps that still need their Pod
    created in one lane and everything else (following a Pod, finishing, cancelling) in the
    other, so a burst of new steps, whose reconciles are the slow ones (several writes each),
    never delays recording the outcome of steps that are done.

    Per-key exponential backoff lives here, as in client-go's rate-limited queue: a failed
    reconcile calls ``add_rate_limited`` (each call doubles that key's delay, with jitter, never
    earlier than a server's Retry-After), a successful one calls ``forget``. ``failures`` tells
    the work function how often in a row a key has failed, so it can give up on it.
    """

    def __init__(
        self,
        work: Callable[[Key], Awaitable[None]],
        concurrency: int = 64,
        backoff: Jittered | None = None,
        lane: Callable[[Key], str] | None = None,
    ):
        self._work = work
        self._concurrency = concurrency
        self._lane = lane or (lambda _: FOLLOW_LANE)
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._running: set[Key] = set()
        self._dirty: set[Key] = set()
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._failures: dict[Key, int] = {}
        self.backoff = backoff or Jittered()
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

    def add_rate_limited(self, key: Key, *, retry_after: float | None = None) -> float:
        """Reconcile again after this key's next backoff delay; returns the delay chosen.

        Unlike ``add_after``, the delay replaces any earlier timer of the key: a key that keeps
        failing must not be retried sooner because some event asked for a look.
        """
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = self.backoff.delay(failures, retry_after=retry_after)
        existing = self._timers.pop(key, None)
        if existing is not None:
            existing.cancel()
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_at(loop.time() + delay, self._fire, key)
        return delay

    def failures(self, key: Key) -> int:
        """Consecutive failures of ``key`` since it last succeeded (client-go's NumRequeues)."""
        return self._failures.get(key, 0)

    def forget(self, key: Key) -> None:
        """The key succeeded: its next failure starts the backoff from the beginning."""
        self._failures.pop(key, None)

    def discard(self, key: Key) -> None:
        """The object is gone: drop its timer and its failure count."""
        self.forget(key)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def pending_timers(self) -> int:
        return len(self._timers)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def _run(self, key: Key) -> None:
        try:
            while True:
                lane = self._lane(key)
                limit = self._limits.get(lane)
                if limit is None:
                    limit = self._limits[lane] = asyncio.Semaphore(self._concurrency)
                async with limit:
                    # Cleared only once a slot is held: events while waiting need no extra run.
                    self._dirty.discard(key)
                    self._started(key)
                    try:
                        await self._work(key)
                    except Exception:
                        # The work function handles the errors it expects and gives up on a key
                        # after a bounded number of failures; this is the last resort for a bug
                        # in that handling: logged, and retried with the key's backoff.
                        _log.exception("reconcile crashed", namespace=key[0], name=key[1])
                        RECONCILE_ERRORS.labels(error="Crash").inc()
                        self.add_rate_limited(key)
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
