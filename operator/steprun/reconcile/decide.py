"""What to do next for a StepRun: a pure function of its spec, its status, its Pod and the time.

Level-triggered like the Job controller's sync: nothing here remembers the previous event. The
status names the attempt in flight and its Pod; the Pod says how that attempt is going; the
result is the single next step. The reconciler performs it and writes the status, which makes the
next call see the world one step further on — so a restart at any point resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from steprun.api.models import (
    ArtifactStatus,
    FailureCategory,
    FailureEvent,
    Phase,
    Reason,
    StepRun,
    is_terminal_phase,
)
from steprun.artifacts.names import artifact_key
from steprun.config import OperatorConfig
from steprun.observe.failure import category
from steprun.observe.pod import (
    IMAGE_PULL_REASONS,
    PodObservation,
    StepReport,
    observe_pod,
    removal,
)
from steprun.reconcile.queueing import InQueue, QueueDecision, preempted_attempts, queue_decision
from steprun.render.names import ANNOTATION_CREATED_AT
from steprun.timeutil import parse_time

# The kubelet's reason for a container whose env ConfigMap or Secret does not exist. A missing
# volume source shows no reason at all (ContainerCreating, with FailedMount events), so a Pod
# that is scheduled but still starting CONTEXT_CHECK_AFTER after its creation has its context
# checked once: a context deleted before the kubelet mounted it is put back early, and a slow
# node costs one read per context object, however long its Pods wait. A context deleted after
# that check leaves the Pod starting until its startup timeout, which then says so.
CONTEXT_MISSING_REASON = "CreateContainerConfigError"
CONTEXT_CHECK_AFTER = timedelta(seconds=5)
SANDBOX_READY = "PodReadyToStartContainers"
# A Pod's attempt is recorded in status when the Pod is first seen running (or ended), in the
# same write that says so; a Pod still starting this long after its creation is recorded as
# Pending on its own, so that a person sees the step wait.
PENDING_RECORD_AFTER = timedelta(seconds=5)


@dataclass(frozen=True)
class Outcome(StepReport):
    """How an attempt ended."""

    phase: Phase
    # A Reason, or the kubelet's own reason for a Pod it failed before the step ran (OutOfcpu).
    reason: str
    message: str
    # What the attempt uploaded (only complete uploads).
    artifacts: tuple[ArtifactStatus, ...] = ()
    # The Pod's Events that explain a failure the step's own code did not cause.
    events: tuple[FailureEvent, ...] = ()


@dataclass(frozen=True)
class Wait:
    """Nothing to do until the world changes, or until ``until`` at the latest."""

    until: datetime | None = None


@dataclass(frozen=True)
class StartAttempt:
    """Create the context and the Pod of attempt ``attempt`` (1 for a new step, the next one
    once a retry's backoff has passed); creating what already exists adopts it."""

    attempt: int


@dataclass(frozen=True)
class MarkRunning:
    """The Pod's container has started: record it once, with the kubelet's ``start_time``."""

    start_time: str | None


@dataclass(frozen=True)
class RecordPending:
    """Write the status that records the attempt and its Pod, still starting."""


@dataclass(frozen=True)
class FinishAttempt:
    outcome: Outcome
    # Set when another attempt follows (the StepRun stays non-terminal until then).
    retry_at: datetime | None = None
    # The Pod is still there but must go (stuck in startup).
    delete_pod: bool = False


@dataclass(frozen=True)
class RepairContext:
    """The Pod is not running yet: make sure its ConfigMap and Secret exist, then look again at
    ``until``."""

    until: datetime


@dataclass(frozen=True)
class Cancel:
    """spec.cancel is set: delete every Pod of the step (``pod_name``, the one status knows, if
    it still exists) and end it Cancelled."""

    pod_name: str | None


@dataclass(frozen=True)
class ExpireTtl:
    """The step finished ttlSecondsAfterFinished ago: delete the StepRun (its children go with
    it by owner reference)."""


@dataclass(frozen=True)
class ReleasePods:
    """Remove the tracking finalizer of these Pods: their attempts' outcomes are in status, so
    nothing is lost when they go."""

    pod_names: tuple[str, ...]


Decision = (
    Wait
    | StartAttempt
    | MarkRunning
    | RecordPending
    | FinishAttempt
    | RepairContext
    | Cancel
    | ExpireTtl
    | ReleasePods
    | QueueDecision
)


def decide(
    sr: StepRun,
    pod: Mapping[str, Any] | None,
    now: datetime,
    config: OperatorConfig,
    held: Collection[str] = (),
    orphans: Collection[str] = (),
    *,
    recorded: bool = True,
    context_checked: datetime | None = None,
    workload: Mapping[str, Any] | None = None,
) -> Decision:
    """``pod``: the Pod of the attempt in flight, if it exists. ``held``: names of this
    StepRun's Pods that still carry the tracking finalizer; ``orphans``: those of an earlier
    StepRun of the same name (deleted, so nothing of theirs is left to record).
    ``recorded=False``: the stored status does not record the attempt yet; ``sr`` is the
    StepRun as if it did (``status.recording``), and ``pod`` exists.
    ``context_checked``: when the step's context was last checked (RepairContext), if ever.
    ``workload``: the Kueue Workload of a queued step, if it exists (see queueing)."""
    status = sr.status
    terminal = is_terminal_phase(status.phase)
    if sr.metadata.deletion_timestamp or terminal:
        # Every outcome is recorded (or will never be): no Pod needs to be kept any more.
        if held or orphans:
            return ReleasePods(tuple(sorted({*held, *orphans})))
        if sr.metadata.deletion_timestamp:
            return Wait()
        return _after_terminal(sr, now, config)
    decision = _in_flight(sr, pod, now, config, context_checked, workload)
    if not recorded and pod is not None:
        decision = _unrecorded(sr, pod, now, decision)
    if isinstance(decision, Wait):
        finished = {a.pod_name for a in status.attempts if a.completion_time}
        done = sorted({*(name for name in held if name in finished), *orphans})
        if done:
            return ReleasePods(tuple(done))
    return decision


def _in_flight(
    sr: StepRun,
    pod: Mapping[str, Any] | None,
    now: datetime,
    config: OperatorConfig,
    context_checked: datetime | None,
    workload: Mapping[str, Any] | None = None,
) -> Decision:
    status = sr.status
    if sr.spec.cancel:
        return Cancel(status.pod_name if pod is not None else None)
    queued = queue_decision(sr, pod, workload, now)
    if isinstance(queued, InQueue):
        return Wait(until=queued.until)
    if queued is not None:
        return queued
    if status.attempt is None or status.pod_name is None:
        return StartAttempt(1)
    if status.next_attempt_time:
        retry_at = parse_time(status.next_attempt_time)
        if retry_at is not None and now < retry_at:
            return Wait(until=retry_at)
        return StartAttempt(status.attempt + 1)
    if pod is None:
        return _finish(
            sr,
            Outcome(
                Phase.FAILED,
                Reason.POD_DELETED,
                f"Pod {status.pod_name} was deleted before it finished (not by steprun); "
                "the step's outcome is unknown",
            ),
            now,
        )
    return _follow_pod(sr, pod, now, config, context_checked)


def _unrecorded(sr: StepRun, pod: Mapping[str, Any], now: datetime, decision: Decision) -> Decision:
    """A Pod that no status records yet is followed as any other, except that waiting for it
    to start is recorded once it is slow to."""
    if not isinstance(decision, (Wait, RepairContext)):
        return decision
    record_at = _created(sr, pod, now) + PENDING_RECORD_AFTER
    if now >= record_at:
        return RecordPending()
    if isinstance(decision, Wait):
        return Wait(until=record_at if decision.until is None else min(decision.until, record_at))
    return decision


def pod_created_at(pod: Mapping[str, Any]) -> datetime | None:
    """When the operator created the Pod, by its own record on the Pod; the API server's
    creationTimestamp for a Pod made before that record existed."""
    meta = pod.get("metadata") or {}
    for stamp in (
        (meta.get("annotations") or {}).get(ANNOTATION_CREATED_AT),
        meta.get("creationTimestamp"),
    ):
        try:
            parsed = parse_time(stamp) if isinstance(stamp, str) else None
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed
    return None


def _after_terminal(sr: StepRun, now: datetime, config: OperatorConfig) -> Decision:
    ttl = sr.spec.ttl_seconds_after_finished
    if ttl is None:
        ttl = config.default_ttl_seconds_after_finished
    finished = parse_time(sr.status.completion_time)
    if ttl is None or finished is None:
        return Wait()
    expires = finished + timedelta(seconds=ttl)
    return ExpireTtl() if now >= expires else Wait(until=expires)


def _follow_pod(
    sr: StepRun,
    pod: Mapping[str, Any],
    now: datetime,
    config: OperatorConfig,
    context_checked: datetime | None,
) -> Decision:
    if pod.get("metadata", {}).get("deletionTimestamp"):
        obs = observe_pod(pod)
        if obs.state != "succeeded":
            # Somebody else is deleting the Pod (steprun deletes Pods only on cancel and on a
            # stuck startup, and has recorded the outcome before doing so).
            reason, message = removal(pod) or (
                Reason.POD_DELETED,
                f"Pod {sr.status.pod_name} was deleted before it finished (not by steprun)",
            )
            return _finish(
                sr,
                Outcome(
                    Phase.FAILED,
                    reason,
                    message,
                    exit_code=obs.exit_code,
                    start_time=obs.start_time,
                    completion_time=obs.completion_time,
                ),
                now,
            )
    obs = observe_pod(pod)
    if obs.state == "pending":
        return _pending(sr, pod, obs, now, config, context_checked)
    if obs.state == "running":
        if sr.status.phase == Phase.RUNNING:
            return Wait()
        return MarkRunning(obs.start_time)
    if obs.state == "succeeded":
        message = "the step completed"
        if obs.output_error:
            message += f"; outputs ignored: {obs.output_error}"
        return FinishAttempt(
            Outcome(
                Phase.SUCCEEDED,
                Reason.COMPLETED,
                message,
                exit_code=0 if obs.exit_code is None else obs.exit_code,
                outputs=obs.outputs,
                start_time=obs.start_time,
                completion_time=obs.completion_time,
                artifacts=_uploads(sr, obs, config),
            )
        )
    if obs.reason == Reason.DEADLINE_EXCEEDED:
        # A timeout spends the step's whole time budget: it is final, never retried.
        return FinishAttempt(
            Outcome(
                Phase.TIMED_OUT,
                obs.reason,
                f"the step ran longer than timeoutSeconds ({_timeout(sr, pod)}s) and was stopped",
                exit_code=obs.exit_code,
                start_time=obs.start_time,
                completion_time=obs.completion_time,
                artifacts=_uploads(sr, obs, config),
            )
        )
    return _finish(
        sr,
        Outcome(
            Phase.FAILED,
            obs.reason,
            obs.message,
            exit_code=obs.exit_code,
            outputs=obs.outputs,
            start_time=obs.start_time,
            completion_time=obs.completion_time,
            artifacts=_uploads(sr, obs, config),
        ),
        now,
    )


def _uploads(
    sr: StepRun, obs: PodObservation, config: OperatorConfig
) -> tuple[ArtifactStatus, ...]:
    attempt = sr.status.attempt or 1
    prefix = config.artifact_repository(sr.namespace).prefix
    declared = {o.name for o in (sr.spec.artifacts.outputs if sr.spec.artifacts else [])}
    return tuple(
        ArtifactStatus(
            name=a["name"],
            attempt=attempt,
            key=artifact_key(prefix, sr.namespace, sr.name, sr.uid, attempt, a["name"]),
            size=a["size"],
            sha256=a["sha256"],
        )
        for a in obs.artifacts
        if a["name"] in declared
    )


def _timeout(sr: StepRun, pod: Mapping[str, Any]) -> Any:
    return pod.get("spec", {}).get("activeDeadlineSeconds", sr.spec.timeout_seconds)


def _pending(
    sr: StepRun,
    pod: Mapping[str, Any],
    obs: PodObservation,
    now: datetime,
    config: OperatorConfig,
    context_checked: datetime | None,
) -> Decision:
    created = _created(sr, pod, now)
    limit = startup_timeout_seconds(sr, config)
    deadline = created + timedelta(seconds=limit)
    if now < deadline:
        # Only a Pod that is on a node and starting without a known failure can be waiting
        # for a missing volume source. Volumes are mounted before the kubelet creates the
        # Pod's sandbox, so a Pod whose sandbox is ready (pulling its image, say) is not: its
        # context is not looked up at all, which keeps thousands of starting Pods from
        # polling the API server.
        starting = (
            bool(pod.get("spec", {}).get("nodeName"))
            and obs.stuck_reason is None
            and not _sandbox_ready(pod)
        )
        if obs.stuck_reason == CONTEXT_MISSING_REASON:
            # The kubelet says so: repaired at once, and again while it keeps saying so.
            if context_checked is None or now >= context_checked + CONTEXT_CHECK_AFTER:
                return RepairContext(until=min(deadline, now + CONTEXT_CHECK_AFTER))
            return Wait(until=min(deadline, context_checked + CONTEXT_CHECK_AFTER))
        check_at = created + CONTEXT_CHECK_AFTER
        # A check made for an earlier attempt's Pod does not count for this one.
        checked = context_checked is not None and context_checked >= created
        if starting and not checked:
            if now >= check_at:
                return RepairContext(until=deadline)
            return Wait(until=min(deadline, check_at))
        return Wait(until=deadline)
    pod_name = sr.status.pod_name
    if obs.stuck_reason in IMAGE_PULL_REASONS:
        reason = Reason.IMAGE_PULL_FAILED
    elif obs.reason == Reason.WORKSPACE_UNAVAILABLE:
        reason = Reason.WORKSPACE_UNAVAILABLE
    else:
        reason = Reason.STARTUP_TIMEOUT
    why = f"{obs.stuck_reason}: {obs.stuck_message}" if obs.stuck_reason else obs.message
    return _finish(
        sr,
        Outcome(
            Phase.FAILED,
            reason,
            f"Pod {pod_name} was not running {limit}s after it was created "
            f"(startupTimeoutSeconds); {why}",
        ),
        now,
        delete_pod=True,
    )


def startup_timeout_seconds(sr: StepRun, config: OperatorConfig) -> int:
    """How long the step's Pod may take to start (and its create be refused for now)."""
    return sr.spec.startup_timeout_seconds or config.default_startup_timeout_seconds


def _sandbox_ready(pod: Mapping[str, Any]) -> bool:
    for condition in pod.get("status", {}).get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == SANDBOX_READY:
            return condition.get("status") == "True"
    return False


def _created(sr: StepRun, pod: Mapping[str, Any], now: datetime) -> datetime:
    """When the attempt's Pod was created, by the operator's own record (its clock is the one
    ``now`` comes from); the API server's creationTimestamp only for statuses written before
    that record existed."""
    attempt = sr.status.attempt
    for entry in sr.status.attempts:
        if entry.attempt == attempt and entry.creation_time:
            recorded = parse_time(entry.creation_time)
            if recorded is not None:
                return recorded
    return parse_time(pod.get("metadata", {}).get("creationTimestamp")) or now


def attempt_failed(sr: StepRun, outcome: Outcome, now: datetime) -> FinishAttempt:
    """How a failed attempt ends: retried after the backoff while ``retries`` allow, else final."""
    decision = _finish(sr, outcome, now)
    assert isinstance(decision, FinishAttempt)
    return decision


def _finish(sr: StepRun, outcome: Outcome, now: datetime, *, delete_pod: bool = False) -> Decision:
    backoff = retry_backoff(sr, outcome)
    if backoff is not None:
        return FinishAttempt(outcome, retry_at=now + backoff, delete_pod=delete_pod)
    return FinishAttempt(outcome, delete_pod=delete_pod)


def retry_backoff(sr: StepRun, outcome: Outcome) -> timedelta | None:
    """How long until the next attempt of a step whose attempt in flight ended with
    ``outcome``; None when none follows. A failure of the platform spends
    retries.platformLimit, any other failure retries.limit: each budget counts only the
    earlier attempts that spent it."""
    if outcome.phase != Phase.FAILED:
        return None
    retries = sr.spec.retries
    attempt = sr.status.attempt or 1
    platform = platform_retries_spent(sr)
    if category(outcome.reason, outcome.message) == FailureCategory.PLATFORM:
        if platform >= retries.platform_retries:
            return None
        seconds = retries.platform_backoff_seconds
        return timedelta(seconds=retries.backoff_seconds if seconds is None else seconds)
    # An attempt Kueue preempted was no failure of the step: it spends neither budget.
    if attempt - 1 - platform - preempted_attempts(sr) >= retries.limit:
        return None
    return timedelta(seconds=retries.backoff_seconds)


def _spent_platform_budget(sr: StepRun, attempt: int) -> bool:
    for entry in sr.status.attempts:
        if entry.attempt == attempt:
            if entry.reason == Reason.PREEMPTED:
                return False
            if entry.failure is not None:
                return entry.failure.category == FailureCategory.PLATFORM
            # Recorded before failures were: its reason says whose it was.
            return bool(entry.reason) and (
                category(entry.reason or "", entry.message) == FailureCategory.PLATFORM
            )
    return False


def platform_retries_spent(sr: StepRun) -> int:
    """How many of the attempts before the one in flight the platform failed (each one
    retried under retries.platformLimit)."""
    attempt = sr.status.attempt or 1
    return sum(_spent_platform_budget(sr, n) for n in range(1, attempt))


def node_to_avoid(sr: StepRun, attempt: int) -> str | None:
    """The node a retry should prefer not to run on: the one the platform failed the
    previous attempt on, if any."""
    for entry in sr.status.attempts:
        failure = entry.failure
        if (
            entry.attempt == attempt - 1
            and failure
            and failure.category == FailureCategory.PLATFORM
        ):
            return failure.node
    return None
