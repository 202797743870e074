"""StepRun statuses for each transition: pure functions, one per kind of change.

Each returns the new ``StepRunStatus``; ``to_patch`` serialises it, once, as the merge patch
the reconciler writes. A patch names exactly the fields set on the model: a transition derived
from the stored status sets every field (cleared ones as None, so the API server removes them),
``given_up`` only those it can know without reading the stored status. Lists (attempts,
conditions) are replaced whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from steprun.api.models import (
    AdmittedSandbox,
    ArtifactStatus,
    AttemptStatus,
    Condition,
    Phase,
    QueueStatus,
    Reason,
    StepRun,
    StepRunStatus,
    is_terminal_phase,
)
from steprun.observe.failure import Site, failure_of, site_of
from steprun.reconcile.decide import Outcome
from steprun.timeutil import format_time, parse_time

if TYPE_CHECKING:
    # Only annotated here: rules builds on these status documents.
    from steprun.reconcile.rules import Ending

CONDITION = "Succeeded"
ConditionStatus = Literal["True", "False", "Unknown"]


def to_patch(status: StepRunStatus) -> dict[str, Any]:
    """The merge patch of the fields set on ``status``."""
    named = set(status.model_fields_set)
    if status.artifacts is None:
        # Only attempt_finished adds uploads and nothing removes them: no patch needs to clear
        # the field, so a step without artifacts keeps it out of its status altogether.
        named.discard("artifacts")
    if status.queue is None:
        # Likewise a step's queue record is only ever set or updated: an unqueued step's
        # patches stay as they were.
        named.discard("queue")
    doc = status.model_dump(by_alias=True, mode="json", include=named)
    # Entries as the API stores them: fields never set are left out, not sent as null.
    if "attempts" in named:
        doc["attempts"] = [a.to_api() for a in status.attempts]
    if "failure" in named and status.failure is not None:
        doc["failure"] = status.failure.to_api()
    if "artifacts" in named and status.artifacts is not None:
        doc["artifacts"] = [a.to_api() for a in status.artifacts]
    return doc


# A transition names every field in its patch, so none is left as an older write had it.
_EVERY_FIELD = tuple(StepRunStatus.model_fields)


def _base(sr: StepRun) -> StepRunStatus:
    current = {name: getattr(sr.status, name) for name in _EVERY_FIELD}
    return sr.status.model_copy(update={**current, "observed_generation": sr.metadata.generation})


def _summarised(status: StepRunStatus, now: datetime) -> StepRunStatus:
    """``status`` with its one condition, of type Succeeded, which summarises it: True or
    False once the phase is terminal, Unknown before, with the status's own reason and
    message; its lastTransitionTime moves to ``now`` only when its status or reason change."""
    state: ConditionStatus = "Unknown"
    if is_terminal_phase(status.phase):
        state = "True" if status.phase == Phase.SUCCEEDED else "False"
    previous = next((c for c in status.conditions if c.type == CONDITION), None)
    since: str | None = format_time(now)
    if previous is not None and previous.status == state and previous.reason == status.reason:
        since = previous.last_transition_time
    summary = Condition(
        type=CONDITION,
        status=state,
        reason=status.reason,
        message=status.message,
        last_transition_time=since,
        observed_generation=status.observed_generation,
    )
    return status.model_copy(update={"conditions": [summary]})


def _attempts(sr: StepRun, entry: AttemptStatus) -> list[AttemptStatus]:
    kept = [a for a in sr.status.attempts if a.attempt != entry.attempt]
    return sorted([*kept, entry], key=lambda a: a.attempt)


def _artifacts(sr: StepRun, outcome: Outcome) -> list[ArtifactStatus]:
    """Every attempt's uploads, oldest first; an attempt re-observed replaces its own entries."""
    new = {(a.name, a.attempt) for a in outcome.artifacts}
    kept = [a for a in sr.status.artifacts or [] if (a.name, a.attempt) not in new]
    return sorted([*kept, *outcome.artifacts], key=lambda a: (a.attempt, a.name))


def _attempt_entry(sr: StepRun, attempt: int) -> AttemptStatus:
    for entry in sr.status.attempts:
        if entry.attempt == attempt:
            return entry
    return AttemptStatus(attempt=attempt, pod_name=sr.status.pod_name or "")


def duration(start: str | None, end: str | None) -> str | None:
    began, ended = parse_time(start), parse_time(end)
    if began is None or ended is None:
        return None
    seconds = max(0, int((ended - began).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def pending(
    sr: StepRun,
    attempt: int,
    pod_name: str,
    now: datetime,
    admitted: AdmittedSandbox | None = None,
) -> StepRunStatus:
    message = f"Pod {pod_name} created for attempt {attempt}; waiting for it to start"
    entry = AttemptStatus(attempt=attempt, pod_name=pod_name, creation_time=format_time(now))
    status = _base(sr).model_copy(
        update={
            "phase": Phase.PENDING,
            "reason": Reason.POD_CREATED,
            "message": message,
            "pod_name": pod_name,
            "attempt": attempt,
            "next_attempt_time": None,
            "exit_code": None,
            "attempts": _attempts(sr, entry),
            "start_time": sr.status.start_time or format_time(now),
            "admitted": admitted if admitted is not None else sr.status.admitted,
        }
    )
    return _summarised(status, now)


def recording(sr: StepRun, attempt: int, pod_name: str, created: datetime) -> StepRun:
    """``sr`` as if its status recorded attempt ``attempt`` in ``pod_name``, created at
    ``created``: how a step whose Pod exists before any status write says so is followed, and
    what the first write about that Pod records."""
    return sr.model_copy(update={"status": pending(sr, attempt, pod_name, created)})


def running(sr: StepRun, start_time: str | None, now: datetime) -> StepRunStatus:
    attempt = sr.status.attempt or 1
    started = start_time or format_time(now)
    entry = _attempt_entry(sr, attempt).model_copy(update={"start_time": started})
    message = f"attempt {attempt} is running in Pod {sr.status.pod_name}"
    status = _base(sr).model_copy(
        update={
            "phase": Phase.RUNNING,
            "reason": Reason.STARTED,
            "message": message,
            "attempts": _attempts(sr, entry),
        }
    )
    return _summarised(status, now)


def attempt_site(sr: StepRun, pod: Mapping[str, Any] | None) -> Site | None:
    """Where the attempt in flight was, by its Pod if it is still there; None when no attempt
    is (the step ends before any Pod)."""
    attempt = sr.status.attempt
    if attempt is None or not sr.status.pod_name:
        return None
    entry = _attempt_entry(sr, attempt)
    return site_of(pod, started=pod is None and entry.start_time is not None)


def attempt_finished(
    sr: StepRun,
    outcome: Outcome,
    now: datetime,
    retry_at: datetime | None,
    pod: Mapping[str, Any] | None = None,
) -> StepRunStatus:
    """``pod``: the attempt's Pod as last seen, which says where the attempt failed."""
    attempt = sr.status.attempt or 1
    finished = outcome.completion_time or format_time(now)
    failure = None
    if outcome.phase != Phase.SUCCEEDED:
        failure = failure_of(
            outcome.reason,
            outcome.message,
            attempt_site(sr, pod) or site_of(None),
            outcome.exit_code,
            outcome.events,
        )
    entry = _attempt_entry(sr, attempt).model_copy(
        update={
            "exit_code": outcome.exit_code,
            "reason": outcome.reason,
            "message": outcome.message,
            "start_time": outcome.start_time or _attempt_entry(sr, attempt).start_time,
            "completion_time": finished,
            "failure": failure,
        }
    )
    status = _base(sr).model_copy(
        update={"attempts": _attempts(sr, entry), "exit_code": outcome.exit_code}
    )
    if outcome.artifacts:
        status = status.model_copy(update={"artifacts": _artifacts(sr, outcome)})
    if retry_at is not None:
        message = (
            f"attempt {attempt} failed ({outcome.reason}: {outcome.message}); "
            f"attempt {attempt + 1} starts at {format_time(retry_at)}"
        )
        retrying = status.model_copy(
            update={
                "phase": Phase.PENDING,
                "reason": Reason.RETRYING,
                "message": message,
                "next_attempt_time": format_time(retry_at),
            }
        )
        return _summarised(retrying, now)
    ended = _terminal(status, outcome.phase, outcome.reason, outcome.message, now)
    return ended.model_copy(
        update={"outputs": outcome.outputs, "exit_code": outcome.exit_code, "failure": failure}
    )


def terminal(sr: StepRun, ending: Ending, now: datetime) -> StepRunStatus:
    """A terminal status without a (new) attempt outcome: cancelled, rejected, invalid. The
    step never got (back) past admission, so a failure is recorded at that stage."""
    phase, reason, message = ending.phase, ending.reason, ending.message
    status = _base(sr)
    attempt = sr.status.attempt
    if attempt is not None and phase == Phase.CANCELLED and sr.status.pod_name:
        entry = _attempt_entry(sr, attempt)
        if entry.completion_time is None:
            entry = entry.model_copy(
                update={"reason": reason, "message": message, "completion_time": format_time(now)}
            )
            status = status.model_copy(update={"attempts": _attempts(sr, entry)})
    ended = _terminal(status, phase, reason, message, now)
    return ended.model_copy(update={"failure": failure_of(reason, message, None)})


def _ended(
    status: StepRunStatus, phase: Phase, reason: str, message: str, now: datetime
) -> StepRunStatus:
    """``status`` ended now in a terminal ``phase``, with no attempt to follow: what every
    terminal status sets, whether or not it was derived from the stored one."""
    ended = status.model_copy(
        update={
            "phase": phase,
            "reason": reason,
            "message": message,
            "completion_time": format_time(now),
            "next_attempt_time": None,
        }
    )
    return _summarised(ended, now)


def _terminal(
    status: StepRunStatus, phase: Phase, reason: str, message: str, now: datetime
) -> StepRunStatus:
    ended = _ended(status, phase, reason, message, now)
    started = ended.start_time or ended.completion_time
    return ended.model_copy(
        update={"start_time": started, "duration": duration(started, ended.completion_time)}
    )


def with_attempt(sr: StepRun, attempt: int, pod_name: str) -> StepRun:
    """``sr`` as if attempt ``attempt`` were in flight in ``pod_name``: for recording the
    outcome of an attempt whose Pod could not even be created."""
    status = sr.status.model_copy(
        update={"attempt": attempt, "pod_name": pod_name, "next_attempt_time": None}
    )
    return sr.model_copy(update={"status": status})


def given_up(
    generation: int | None, ending: Ending, now: datetime, site: Site | None = None
) -> StepRunStatus:
    """A terminal status written without reading the current one: for a StepRun the operator
    cannot read, or whose full status the API server refuses. Only the fields set here are
    patched: outputs are dropped (they may be what made the status too large); attempts
    already recorded are left as they are. ``site``: where its attempt was, if known."""
    status = StepRunStatus(
        outputs=None,
        observed_generation=generation,
        failure=failure_of(ending.reason, ending.message, site),
    )
    return _ended(status, ending.phase, ending.reason, ending.message, now)


def queued(sr: StepRun, queue: QueueStatus, message: str, now: datetime) -> StepRunStatus:
    """The step waits for admission by Kueue: nothing of it exists but its Workload."""
    status = _base(sr).model_copy(
        update={"phase": Phase.PENDING, "reason": Reason.QUEUED, "message": message, "queue": queue}
    )
    return _summarised(status, now)


def queue_admitted(sr: StepRun, queue: QueueStatus, message: str, now: datetime) -> StepRunStatus:
    """Kueue admitted the step; its Pod follows."""
    status = _base(sr).model_copy(
        update={"reason": Reason.ADMITTED, "message": message, "queue": queue}
    )
    return _summarised(status, now)


def preempted(
    sr: StepRun,
    outcome: Outcome,
    queue: QueueStatus,
    message: str,
    now: datetime,
    pod: Mapping[str, Any] | None = None,
) -> StepRunStatus:
    """The attempt was evicted by Kueue: recorded as ended, and the step waits in its queue
    again; its next attempt starts once it is admitted (from ``now`` on)."""
    finished = attempt_finished(sr, outcome, now, now, pod)
    status = finished.model_copy(
        update={"reason": Reason.QUEUED, "message": message, "queue": queue}
    )
    return _summarised(status, now)
