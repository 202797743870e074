"""StepRun status documents for each transition: pure functions, one per kind of change.

Each returns the complete new status as a merge patch: cleared fields are sent as None so the
API server removes them, lists (attempts, conditions) are replaced whole.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from steprun.api.models import AttemptStatus, Phase, Reason, StepRun, StepRunStatus
from steprun.reconcile.decide import Outcome
from steprun.timeutil import format_time, parse_time

CONDITION = "Succeeded"


def _base(sr: StepRun) -> dict[str, Any]:
    current = sr.status.model_dump(by_alias=True, mode="json")
    current["observedGeneration"] = sr.metadata.generation
    if current.get("artifacts") is None:
        # Only attempt_finished adds uploads; no document needs to clear them.
        current.pop("artifacts", None)
    return current


def _condition(
    sr: StepRun, status: str, reason: str, message: str, now: datetime
) -> list[dict[str, Any]]:
    previous = next((c for c in sr.status.conditions if c.type == CONDITION), None)
    changed = previous is None or previous.status != status or previous.reason != reason
    since = format_time(now) if changed or previous is None else previous.last_transition_time
    return [
        {
            "type": CONDITION,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": since,
            "observedGeneration": sr.metadata.generation,
        }
    ]


def _attempts(sr: StepRun, entry: AttemptStatus) -> list[dict[str, Any]]:
    kept = [a for a in sr.status.attempts if a.attempt != entry.attempt]
    ordered = sorted([*kept, entry], key=lambda a: a.attempt)
    return [a.to_api() for a in ordered]


def _artifacts(sr: StepRun, outcome: Outcome) -> list[dict[str, Any]]:
    """Every attempt's uploads, oldest first; an attempt re-observed replaces its own entries."""
    new = {(a.name, a.attempt) for a in outcome.artifacts}
    kept = [a for a in sr.status.artifacts or [] if (a.name, a.attempt) not in new]
    ordered = sorted([*kept, *outcome.artifacts], key=lambda a: (a.attempt, a.name))
    return [a.to_api() for a in ordered]


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
    admitted: dict[str, Any] | None = None,
) -> dict[str, Any]:
    status = _base(sr)
    message = f"Pod {pod_name} created for attempt {attempt}; waiting for it to start"
    status.update(
        phase=Phase.PENDING.value,
        reason=Reason.POD_CREATED.value,
        message=message,
        podName=pod_name,
        attempt=attempt,
        nextAttemptTime=None,
        exitCode=None,
        attempts=_attempts(sr, AttemptStatus(attempt=attempt, pod_name=pod_name)),
        conditions=_condition(sr, "Unknown", Reason.POD_CREATED.value, message, now),
    )
    status["startTime"] = status.get("startTime") or format_time(now)
    if admitted is not None:
        status["admitted"] = admitted
    return status


def running(sr: StepRun, start_time: str | None, now: datetime) -> dict[str, Any]:
    status = _base(sr)
    attempt = sr.status.attempt or 1
    started = start_time or format_time(now)
    entry = _attempt_entry(sr, attempt).model_copy(update={"start_time": started})
    message = f"attempt {attempt} is running in Pod {sr.status.pod_name}"
    status.update(
        phase=Phase.RUNNING.value,
        reason=Reason.STARTED.value,
        message=message,
        attempts=_attempts(sr, entry),
        conditions=_condition(sr, "Unknown", Reason.STARTED.value, message, now),
    )
    return status


def attempt_finished(
    sr: StepRun, outcome: Outcome, now: datetime, retry_at: datetime | None
) -> dict[str, Any]:
    status = _base(sr)
    attempt = sr.status.attempt or 1
    finished = outcome.completion_time or format_time(now)
    entry = _attempt_entry(sr, attempt).model_copy(
        update={
            "exit_code": outcome.exit_code,
            "reason": outcome.reason,
            "message": outcome.message,
            "start_time": outcome.start_time or _attempt_entry(sr, attempt).start_time,
            "completion_time": finished,
        }
    )
    status.update(attempts=_attempts(sr, entry), exitCode=outcome.exit_code)
    if outcome.artifacts:
        status["artifacts"] = _artifacts(sr, outcome)
    if retry_at is not None:
        message = (
            f"attempt {attempt} failed ({outcome.reason}: {outcome.message}); "
            f"attempt {attempt + 1} starts at {format_time(retry_at)}"
        )
        status.update(
            phase=Phase.PENDING.value,
            reason=Reason.RETRYING.value,
            message=message,
            nextAttemptTime=format_time(retry_at),
            conditions=_condition(sr, "Unknown", Reason.RETRYING.value, message, now),
        )
        return status
    return _terminal(sr, status, outcome.phase, outcome.reason, outcome.message, now) | {
        "outputs": outcome.outputs,
        "exitCode": outcome.exit_code,
    }


def terminal(sr: StepRun, phase: Phase, reason: str, message: str, now: datetime) -> dict[str, Any]:
    """A terminal status without a (new) attempt outcome: cancelled, rejected, invalid."""
    status = _base(sr)
    attempt = sr.status.attempt
    if attempt is not None and phase == Phase.CANCELLED and sr.status.pod_name:
        entry = _attempt_entry(sr, attempt)
        if entry.completion_time is None:
            entry = entry.model_copy(
                update={"reason": reason, "message": message, "completion_time": format_time(now)}
            )
            status["attempts"] = _attempts(sr, entry)
    return _terminal(sr, status, phase, reason, message, now)


def _terminal(
    sr: StepRun, status: dict[str, Any], phase: Phase, reason: str, message: str, now: datetime
) -> dict[str, Any]:
    completed = format_time(now)
    status.update(
        phase=phase.value,
        reason=reason,
        message=message,
        completionTime=completed,
        nextAttemptTime=None,
        conditions=_condition(
            sr, "True" if phase == Phase.SUCCEEDED else "False", reason, message, now
        ),
    )
    status["startTime"] = status.get("startTime") or completed
    status["duration"] = duration(status["startTime"], completed)
    return status


def parse(raw: dict[str, Any]) -> StepRunStatus:
    return StepRunStatus.model_validate(raw)
