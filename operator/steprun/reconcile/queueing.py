"""What to do next for a StepRun queued by Kueue, before the rest of ``decide`` looks at it.

A pure function of the StepRun, its Workload, its Pod and the time, like ``decide``. Kueue owns
the question "may it run now?"; the operator owns the step. So: no Workload yet -> create it
(nothing else of the step exists before it); not admitted -> wait in the queue (the startup
timeout does not run, ``queueTimeoutSeconds`` may end the wait); admitted -> the ordinary
decisions follow; evicted (preempted) -> the attempt's Pod goes, the attempt is recorded as
Preempted without spending a retry, and the quota is handed back so Kueue queues it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from steprun.api.models import Reason, StepRun
from steprun.observe.workload import WorkloadState, observe_workload
from steprun.render.workload import queue_name
from steprun.timeutil import parse_time

_FINISHED_POD_PHASES = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True)
class CreateWorkload:
    """Create (or adopt) the step's Workload and record that the step waits in its queue."""


@dataclass(frozen=True)
class MarkQueued:
    """Record that the step waits for admission, with Kueue's words on why."""

    message: str


@dataclass(frozen=True)
class MarkAdmitted:
    """Kueue admitted the step: record the end of its wait before its Pod is created."""

    cluster_queue: str | None
    flavors: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Preempt:
    """Kueue evicted the running attempt: delete its Pod and record the attempt Preempted."""

    pod_name: str
    message: str


@dataclass(frozen=True)
class Requeue:
    """The evicted step runs nothing any more: hand its quota back (clear the Workload's
    admission) so that Kueue queues it again."""

    message: str


@dataclass(frozen=True)
class QueueTimedOut:
    """The step waited for admission longer than queueTimeoutSeconds: it ends Failed."""

    message: str


@dataclass(frozen=True)
class InQueue:
    """Nothing to do until Kueue decides, or until ``until`` (the queue timeout)."""

    until: datetime | None = None


QueueDecision = CreateWorkload | MarkQueued | MarkAdmitted | Preempt | Requeue | QueueTimedOut


def queued_message(queue: str, cluster_queue: str | None, state: WorkloadState | None) -> str:
    """What status.message says while the step waits: the queues, and Kueue's reason."""
    where = f"LocalQueue {queue}" + (f", ClusterQueue {cluster_queue}" if cluster_queue else "")
    message = f"waiting for admission by Kueue ({where})"
    if state is not None and state.pending_message:
        message += f": {state.pending_message}"
    return message


def queue_decision(
    sr: StepRun,
    pod: Mapping[str, Any] | None,
    workload: Mapping[str, Any] | None,
    now: datetime,
) -> QueueDecision | InQueue | None:
    """None: the step is not queued by Kueue, or it is admitted and the ordinary decisions
    apply (``pod``: the in-flight attempt's Pod, if any; ``workload``: the step's Workload, if
    it exists)."""
    queue = queue_name(sr)
    if queue is None:
        return None
    status = sr.status
    starting = status.attempt is None or not status.pod_name or bool(status.next_attempt_time)
    running = not starting and pod is not None and not _finished(pod)
    if workload is None:
        if running:
            assert status.pod_name is not None
            return Preempt(status.pod_name, "its Workload was deleted, so its admission is gone")
        return CreateWorkload()
    state = observe_workload(workload)
    if state.evicted or (running and not state.admitted):
        if running:
            assert status.pod_name is not None
            return Preempt(status.pod_name, _eviction(state))
        if state.reserved and starting:
            return Requeue(_eviction(state))
        if not starting:
            # The attempt's Pod ended on its own: its outcome is recorded first.
            return None
    if state.admitted and not state.evicted:
        # Recorded once per admission: what the status last said decides, so that a write
        # that did not stick (an older CRD pruning status.queue) cannot repeat forever.
        if status.reason == Reason.QUEUED or (
            status.queue is None and status.reason != Reason.ADMITTED
        ):
            return MarkAdmitted(state.cluster_queue, dict(state.flavors))
        return None
    if not starting:
        return None
    recorded = status.queue
    cluster_queue = recorded.cluster_queue if recorded else None
    message = queued_message(queue, cluster_queue, state)
    if status.reason != Reason.QUEUED or not _says_queued(status.message or "", queue, state):
        return MarkQueued(message)
    if sr.spec.queue_timeout_seconds is None:
        return InQueue()
    since = parse_time(recorded.queued_time) if recorded and recorded.queued_time else None
    if since is None:
        since = parse_time((workload.get("metadata") or {}).get("creationTimestamp")) or now
    deadline = since + timedelta(seconds=sr.spec.queue_timeout_seconds)
    if now >= deadline:
        return QueueTimedOut(
            f"not admitted by Kueue within queueTimeoutSeconds "
            f"({sr.spec.queue_timeout_seconds}s) in {message.removeprefix('waiting for ')}"
        )
    return InQueue(until=deadline)


def _says_queued(message: str, queue: str, state: WorkloadState) -> bool:
    """Whether status.message already says what queued_message would, the ClusterQueue aside
    (status.queue, where it is kept, may not stick under an older CRD)."""
    head = queued_message(queue, None, None).removesuffix(")")
    tail = f": {state.pending_message}" if state.pending_message else ")"
    return message.startswith(head) and message.endswith(tail)


def _finished(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in _FINISHED_POD_PHASES


def _eviction(state: WorkloadState) -> str:
    reason = state.evicted_reason or "AdmissionLost"
    detail = state.evicted_message or "Kueue withdrew the step's admission"
    return f"evicted by Kueue ({reason}): {detail}"


def preempted_attempts(sr: StepRun) -> int:
    """Attempts that Kueue preempted: they do not count against ``retries``."""
    return sum(1 for a in sr.status.attempts if a.reason == Reason.PREEMPTED)
