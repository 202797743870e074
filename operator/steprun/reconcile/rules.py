"""The reconciler's smaller decisions, beside ``decide()``: pure functions of a StepRun, its Pod,
what the API server answered and ``now``.

``decide()`` picks the next action; these settle the details of carrying one out (which lane a
key waits in, the attempt a step starts next, how long a refused Pod create may be retried,
what a mount failure says, whether an outcome is re-applied after a Conflict), so the
reconciler only performs requests and never reasons about phases, reasons or time.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from steprun.api.models import (
    FailureCategory,
    Phase,
    QueueStatus,
    Reason,
    StepRun,
    StepRunStatus,
    is_terminal_phase,
)
from steprun.config import OperatorConfig
from steprun.observe.failure import category, recent_events
from steprun.observe.mounts import mount_failure
from steprun.reconcile import status as statuses
from steprun.reconcile.decide import (
    FinishAttempt,
    Outcome,
    attempt_failed,
    startup_timeout_seconds,
)
from steprun.reconcile.queueing import queued_message
from steprun.render.names import context_name, pod_name
from steprun.render.pod import CONTEXT_VOLUME, SECRETS_VOLUME
from steprun.timeutil import format_time, parse_time

# A timer fires this long after the time it waits for, so the decision it wakes sees that time
# passed (timers may fire a little early).
TIMER_SLACK_SECONDS = 0.05


def seconds_until(until: datetime, now: datetime) -> float:
    """The delay of a timer for ``until``."""
    return (until - now).total_seconds() + TIMER_SLACK_SECONDS


def next_attempt(attempt: int | None, pod_name: object) -> int:
    """The attempt a StepRun that is not following a Pod starts next (as decide reads its
    status: nothing recorded, or a retry of the recorded attempt scheduled)."""
    return 1 if attempt is None or not pod_name else attempt + 1


def needs_pod_created(body: Mapping[str, Any] | None, cached_pods: Collection[str]) -> bool:
    """Whether a StepRun (as served) still needs its next Pod created: such steps wait for each
    other, never for the steps being followed or finished (``cached_pods``: the names of its
    Pods the cache holds; a Pod made but not yet recorded is being followed)."""
    if body is None:
        return False
    status = body.get("status") or {}
    spec = body.get("spec") or {}
    if not isinstance(status, Mapping) or not isinstance(spec, Mapping):
        return False
    if (
        is_terminal_phase(status.get("phase"))
        or spec.get("cancel")
        or (body.get("metadata") or {}).get("deletionTimestamp")
    ):
        return False
    if status.get("podName") and not status.get("nextAttemptTime"):
        return False
    attempt = status.get("attempt")
    number = next_attempt(attempt if isinstance(attempt, int) else None, status.get("podName"))
    name = str((body.get("metadata") or {}).get("name") or "")
    return pod_name(name, number) not in cached_pods


def create_given_up(
    sr: StepRun,
    config: OperatorConfig,
    pod: str,
    blocked_since: datetime,
    now: datetime,
    error: str,
) -> str | None:
    """Why a Pod create refused for now (e.g. a full ResourceQuota) is given up, once it has
    been refused for as long as the step's startup timeout lets a Pod take to start; None while
    it is retried."""
    limit = startup_timeout_seconds(sr, config)
    if now - blocked_since < timedelta(seconds=limit):
        return None
    return f"Pod {pod} could not be created for {limit}s (startupTimeoutSeconds): {error}"


def needs_failure_events(sr: StepRun, outcome: Outcome) -> bool:
    """Whether the attempt's Pod's Warning events are read to explain its outcome: when it
    failed by no fault of the step's own code (the cluster's words then explain it) and its Pod
    was created."""
    if outcome.phase == Phase.SUCCEEDED or not sr.status.pod_name:
        return False
    if category(outcome.reason, outcome.message) in (None, FailureCategory.STEP):
        return False
    return outcome.reason != Reason.CREATE_FAILED


def explained(
    sr: StepRun, decision: FinishAttempt, events: Sequence[Mapping[str, Any]], now: datetime
) -> FinishAttempt:
    """The attempt's end with what the Pod's events say: a Pod deleted for a stuck start gets
    the kubelet's words (and, for another reason, that reason's retry budget); the outcome
    keeps its recent events."""
    if decision.delete_pod:
        explanation = with_mount_failure(sr, decision, events)
        if explanation.outcome.reason != decision.outcome.reason:
            # Another reason may spend another retry budget.
            retried = attempt_failed(sr, explanation.outcome, now)
            explanation = replace(retried, delete_pod=True)
        decision = explanation
    if events:
        outcome = replace(decision.outcome, events=recent_events(events))
        decision = replace(decision, outcome=outcome)
    return decision


def with_mount_failure(
    sr: StepRun, decision: FinishAttempt, events: Iterable[Mapping[str, Any]]
) -> FinishAttempt:
    """A startup timeout explained by the kubelet's words: a workspace that cannot be mounted
    ends the step WorkspaceUnavailable; a context deleted after its check is said so."""
    if decision.outcome.reason != Reason.STARTUP_TIMEOUT or not sr.status.pod_name:
        return decision
    events = list(events)
    context = (CONTEXT_VOLUME, SECRETS_VOLUME)
    failure = mount_failure(events, ignore_volumes=context)
    if failure is None:
        # Its context is checked once while it starts: deleted after that, the kubelet's words
        # say so here.
        if lost := mount_failure(events, only_volumes=context):
            message = (
                f"{decision.outcome.message}; the step's context (its ConfigMap or Secret "
                f"{context_name(sr.name)}) cannot be mounted: {lost[0]}: {lost[1]}"
            )
            return replace(decision, outcome=replace(decision.outcome, message=message))
        return decision
    outcome = replace(
        decision.outcome,
        reason=Reason.WORKSPACE_UNAVAILABLE,
        message=f"{decision.outcome.message}; a workspace cannot be mounted: "
        f"{failure[0]}: {failure[1]}",
    )
    return replace(decision, outcome=outcome)


def reapply_to(sr: StepRun, fresh: StepRun, *, recorded: bool, now: datetime) -> StepRun | None:
    """The StepRun an attempt's known outcome is written to again after a Conflict, or None
    when the fresh object has moved on (another attempt, or ended): the outcome is re-applied
    rather than re-decided from a world that may no longer show it (its Pod may be gone)."""
    if not recorded and sr.status.attempt == next_attempt(
        fresh.status.attempt, fresh.status.pod_name
    ):
        # Still not recorded: recorded by this write, as it would have been.
        entry = next(a for a in sr.status.attempts if a.attempt == sr.status.attempt)
        created = parse_time(entry.creation_time) or now
        fresh = statuses.recording(fresh, entry.attempt, entry.pod_name or "", created)
    if fresh.status.attempt != sr.status.attempt or is_terminal_phase(fresh.status.phase):
        return None
    return fresh


def may_quote_the_pod(outcome: Outcome) -> bool:
    """Whether the outcome carries text the Pod reported (which may hold a secret value): a
    success says only the operator's words unless it has outputs; any other outcome may quote
    the container's last output or the kubelet."""
    return outcome.phase != Phase.SUCCEEDED or bool(outcome.outputs)


# ---------------------------------------------------------------- how a step ends without a Pod


@dataclass(frozen=True)
class Ending:
    """A terminal phase, reason and message reached without an attempt's outcome."""

    phase: Phase
    reason: Reason
    message: str


def invalid_spec(message: str) -> Ending:
    """The step cannot run as written."""
    return Ending(Phase.FAILED, Reason.INVALID_SPEC, message)


def rejected(message: str, reason: Reason | None = None) -> Ending:
    """Admission or a tenancy check refused the step (PermissionDenied unless said)."""
    return Ending(Phase.REJECTED, reason or Reason.PERMISSION_DENIED, message)


def workspace_unavailable(message: str) -> Ending:
    return Ending(Phase.FAILED, Reason.WORKSPACE_UNAVAILABLE, message)


def create_refused(message: str) -> Ending:
    """A child of the step exists and is not the operator's to adopt, or cannot be made."""
    return Ending(Phase.FAILED, Reason.CREATE_FAILED, message)


def reconcile_failed(message: str) -> Ending:
    """The operator cannot carry the step forward."""
    return Ending(Phase.FAILED, Reason.RECONCILE_FAILED, message)


def cancel_message(deleted: Iterable[str], pod_name: str | None, grace: int) -> str:
    """What a cancel did: the Pods it deleted, or why it deleted none."""
    if names := sorted(deleted):
        return f"cancelled: Pod {', '.join(names)} deleted with a {grace}s grace period"
    if pod_name:
        return f"cancelled: Pod {pod_name} was already being deleted"
    return "cancelled before a Pod was created"


def cancelled(message: str) -> Ending:
    return Ending(Phase.CANCELLED, Reason.CANCELLED, message)


def create_failed(message: str) -> Outcome:
    """The outcome of an attempt whose Pod the API server refused: retried like any failure."""
    return Outcome(Phase.FAILED, Reason.CREATE_FAILED, message)


def never_seen_running(sr: StepRun) -> bool:
    """Whether the attempt in flight ends before a status said it ran (a quick step)."""
    return sr.status.phase == Phase.PENDING


_WARNING_PHASES = frozenset({Phase.FAILED, Phase.TIMED_OUT, Phase.REJECTED})


def event_of(status: StepRunStatus) -> tuple[str, str]:
    """The Event (type, reason) a status write posts: a Warning for what a person has to look
    at (a failure, a rejection, a retry), Normal for the rest."""
    warning = status.reason == Reason.RETRYING or status.phase in _WARNING_PHASES
    return ("Warning" if warning else "Normal", str(status.reason or ""))


# ---------------------------------------------------------------- Kueue


def message_with(message: str, note: str | None) -> str:
    """A message with a note on what else happened (e.g. a log not archived)."""
    return f"{message}; {note}" if note else message


def queue_timed_out(message: str) -> Ending:
    return Ending(Phase.FAILED, Reason.QUEUE_TIMEOUT, message)


def queue_base(sr: StepRun, queue: str, workload: str) -> QueueStatus:
    """What the step's queue status keeps from one write to the next."""
    recorded = sr.status.queue
    return QueueStatus(
        name=queue,
        workload=workload,
        cluster_queue=recorded.cluster_queue if recorded else None,
        wait_seconds=recorded.wait_seconds if recorded else None,
        admitted_time=recorded.admitted_time if recorded else None,
    )


def still_queued(
    sr: StepRun, base: QueueStatus, cluster_queue: str | None, now: datetime
) -> QueueStatus:
    """The queue status of a step waiting for admission: its wait counts from when it first
    waited in this round, however often the wait is written."""
    since = (sr.status.queue and sr.status.queue.queued_time) or format_time(now)
    return base.model_copy(
        update={"cluster_queue": base.cluster_queue or cluster_queue, "queued_time": since}
    )


@dataclass(frozen=True)
class Admission:
    queue: QueueStatus
    message: str
    waited_seconds: float


def admission(
    sr: StepRun,
    base: QueueStatus,
    cluster_queue: str | None,
    flavors: Mapping[str, str],
    now: datetime,
) -> Admission:
    """The queue status and message of a step Kueue just admitted, with how long it waited."""
    recorded = sr.status.queue
    since = parse_time(recorded.queued_time) if recorded else None
    waited = max(0.0, (now - since).total_seconds()) if since else 0.0
    cluster_queue = cluster_queue or base.cluster_queue
    queue = base.model_copy(
        update={
            "cluster_queue": cluster_queue,
            "admitted_time": format_time(now),
            "wait_seconds": (base.wait_seconds or 0) + round(waited),
            "flavors": dict(flavors) or None,
        }
    )
    placed = ", ".join(f"{r}: {f}" for r, f in sorted(flavors.items()))
    message = (
        f"admitted by Kueue (ClusterQueue {cluster_queue}"
        f"{f'; flavors {placed}' if placed else ''}) after {round(waited)}s "
        f"in LocalQueue {base.name}"
    )
    return Admission(queue, message, waited)


@dataclass(frozen=True)
class Preemption:
    outcome: Outcome
    queue: QueueStatus
    message: str


def preemption(
    sr: StepRun, base: QueueStatus, why: str, note: str | None, now: datetime
) -> Preemption:
    """How an attempt evicted by Kueue ends, and the step's wait in its queue again."""
    attempt = sr.status.attempt or 1
    outcome = Outcome(Phase.FAILED, Reason.PREEMPTED, message_with(why, note))
    waiting = queued_message(base.name, base.cluster_queue, None)
    return Preemption(
        outcome,
        base.model_copy(update={"queued_time": format_time(now)}),
        f"attempt {attempt} was {why}; {waiting}",
    )
