"""Prometheus metrics of the operator. Defined once here; served by ``serve`` with /readyz.

Series every replica exports: build info, whether it is the active replica, API requests,
reconciles, work-queue depth and latency, transitions and step durations (written only by the
active replica, so the standby's stay at zero). The phase gauge ``steprun_stepruns`` is
exported by the active replica only, so sums over replicas do not double-count; it is kept
incrementally from the watch events (one StepRun's phase moves from one count to another)
rather than by rescanning every StepRun on each event.
"""

from __future__ import annotations

import platform
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from importlib import metadata
from typing import Any

from prometheus_client import (
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from steprun.api.models import StepRunStatus, is_terminal_phase
from steprun.timeutil import parse_time

# Every counter and histogram would also export a `*_created` timestamp series, which no panel
# or alert reads: 23 series per replica for nothing.
disable_created_metrics()  # type: ignore[no-untyped-call]

PHASES = ("New", "Pending", "Running", "Succeeded", "Failed", "TimedOut", "Cancelled", "Rejected")
Key = tuple[str, str]

BUILD_INFO = Info("steprun_build", "Version of the running operator and of what it runs on")
ACTIVE_REPLICA = Gauge(
    "steprun_active_replica",
    "1 on the replica that reconciles (the peering's active one), 0 on a standby",
)
TRANSITIONS = Counter(
    "steprun_transitions_total", "StepRun phase transitions written", ["phase", "reason"]
)
STEP_DURATION_SECONDS = Histogram(
    "steprun_step_duration_seconds",
    "From a StepRun's creation to its terminal phase, by that phase and reason",
    ["phase", "reason"],
    buckets=(1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400),
)
RECONCILE_ERRORS = Counter(
    "steprun_reconcile_errors_total",
    "Reconciles that failed and are retried later, by error (Transient, Conflict, Crash)",
    ["error"],
)
RECONCILE_SECONDS = Histogram(
    "steprun_reconcile_duration_seconds",
    "Time to reconcile one StepRun once",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
POD_START_SECONDS = Histogram(
    "steprun_pod_start_duration_seconds",
    "From a step Pod's creation to its container running (scheduling, image pull, start)",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
KUEUE_WAIT_SECONDS = Histogram(
    "steprun_kueue_admission_wait_seconds",
    "How long a step queued by Kueue waited for its Workload's admission, by LocalQueue",
    ["queue"],
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600),
)
QUEUE_DEPTH = Gauge(
    "steprun_workqueue_depth", "StepRuns waiting in the work queue for a reconcile to start"
)
QUEUE_ADDS = Counter("steprun_workqueue_adds_total", "StepRuns added to the work queue")
QUEUE_LATENCY_SECONDS = Histogram(
    "steprun_workqueue_queue_duration_seconds",
    "How long a StepRun waits in the work queue before its reconcile starts",
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
API_REQUESTS = Histogram(
    "steprun_api_request_duration_seconds",
    "Kubernetes API requests made by the operator",
    ["verb"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
API_THROTTLED_SECONDS = Histogram(
    "steprun_api_throttle_wait_seconds",
    "How long requests waited for the client-side rate limit or a 429's Retry-After",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
API_ERRORS = Counter(
    "steprun_api_errors_total", "Kubernetes API requests that failed", ["verb", "code"]
)


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


BUILD_INFO.info(
    {
        "version": _version("steprun"),
        "python_version": platform.python_version(),
        "kopf_version": _version("kopf"),
    }
)


class PhaseCounts:
    """StepRuns by phase, kept from the watch events: each event moves one StepRun's count."""

    def __init__(self) -> None:
        self._phase_of: dict[Key, str] = {}
        self._counts: Tally[str] = Tally()

    def observe(self, body: Mapping[str, Any], *, deleted: bool = False) -> None:
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name")))
        before = self._phase_of.pop(key, None)
        if before is not None:
            self._counts[before] -= 1
        if deleted:
            return
        phase = str((body.get("status") or {}).get("phase") or "New")
        self._phase_of[key] = phase
        self._counts[phase] += 1

    def clear(self) -> None:
        """Forget everything (a replica going on standby sees no more events)."""
        self._phase_of.clear()
        self._counts.clear()

    def counts(self) -> dict[str, int]:
        return {phase: self._counts.get(phase, 0) for phase in PHASES} | {
            phase: n for phase, n in self._counts.items() if phase not in PHASES
        }


class _PhaseCollector(Collector):
    """Exports ``steprun_stepruns`` while ``exported()`` says so (the active replica)."""

    def __init__(self, counts: PhaseCounts, exported: Callable[[], bool]) -> None:
        self.counts = counts
        self.exported = exported

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if not self.exported():
            return
        family = GaugeMetricFamily(
            "steprun_stepruns", "StepRuns known to the active operator, by phase", labels=["phase"]
        )
        for phase, count in self.counts.counts().items():
            family.add_metric([phase], count)
        yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Registering must not call collect(): say what is exported without the values.
        yield GaugeMetricFamily("steprun_stepruns", "StepRuns by phase", labels=["phase"])


STEPRUN_PHASES = PhaseCounts()
_active_now = False


def set_active(active: bool) -> None:
    """This replica became the active one (or stopped being it)."""
    global _active_now
    _active_now = active
    ACTIVE_REPLICA.set(1 if active else 0)
    if not active:
        STEPRUN_PHASES.clear()


REGISTRY.register(_PhaseCollector(STEPRUN_PHASES, lambda: _active_now))


def record_transition(created: str | None, status: StepRunStatus) -> None:
    """A status write: count the transition; a terminal one also observes the step's duration."""
    phase, reason = str(status.phase), str(status.reason)
    TRANSITIONS.labels(phase=phase, reason=reason).inc()
    if not is_terminal_phase(phase):
        return
    started, ended = parse_time(created), parse_time(status.completion_time)
    if started is not None and ended is not None:
        STEP_DURATION_SECONDS.labels(phase=phase, reason=reason).observe(
            max(0.0, (ended - started).total_seconds())
        )


def container_started_at(pod: Mapping[str, Any] | None) -> datetime | None:
    """When the Pod's (first) container started, running or since terminated."""
    statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
    for status in statuses:
        state = status.get("state") or {}
        for phase in ("running", "terminated"):
            started = parse_time((state.get(phase) or {}).get("startedAt"))
            if started is not None:
                return started
    return None


def record_pod_start(pod: Mapping[str, Any] | None, running_since: datetime | None) -> None:
    """The step container runs: observe how long its Pod took from creation to get there."""
    created = parse_time(((pod or {}).get("metadata") or {}).get("creationTimestamp"))
    if created is not None and running_since is not None:
        POD_START_SECONDS.observe(max(0.0, (running_since - created).total_seconds()))


async def serve(port: int, ready: Callable[[], tuple[bool, str]]) -> Callable[[], Any]:
    """Serves /metrics and /readyz on ``port`` from the event loop; returns the stopper.

    On the event loop rather than a thread, so a stalled loop shows as unanswered scrapes
    and an unready replica, as it should.
    """
    from aiohttp import web
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    async def metrics_page(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def readyz(_: web.Request) -> web.Response:
        ok, why = ready()
        return web.Response(status=200 if ok else 503, text=why + "\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    return runner.cleanup
