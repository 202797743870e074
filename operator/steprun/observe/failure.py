"""Why an attempt failed, in fields an engine can branch on (pure).

One table says, for every reason the operator writes, whose failure it is and, where the
reason alone says it, how far the attempt got; the Pod says the rest (its node, the container
that failed, the stage it was stuck in). A reason the table does not know is the kubelet's own
(OutOfcpu, NodeAffinity: the node refused the Pod), so it is the platform's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from steprun.api.models import (
    MAX_FAILURE_EVENTS,
    Failure,
    FailureCategory,
    FailureEvent,
    FailureStage,
    Reason,
)
from steprun.artifacts.names import INIT_CONTAINER, UPLOAD_CONTAINER
from steprun.observe.pod import IMAGE_PULL_REASONS, STARTUP_FAILURE_REASONS, STEP_CONTAINER

STEP = FailureCategory.STEP
PLATFORM = FailureCategory.PLATFORM
CONFIG = FailureCategory.CONFIG

# Reasons of a step that did not fail: no failure is recorded with them.
NOT_FAILURES = frozenset(
    {
        Reason.CREATED,
        Reason.POD_CREATED,
        Reason.STARTED,
        Reason.RETRYING,
        Reason.COMPLETED,
        Reason.CANCELLED,
        Reason.QUEUED,
        Reason.ADMITTED,
    }
)

# reason -> (category, stage); a stage of None is read from the Pod (or the attempt): the
# reason can happen at any point of an attempt.
CLASSIFICATION: Mapping[str, tuple[FailureCategory, FailureStage | None]] = {
    # The step's own code.
    Reason.ERROR: (STEP, None),
    Reason.OOM_KILLED: (STEP, FailureStage.RUNNING),
    Reason.KILLED: (STEP, FailureStage.RUNNING),
    Reason.DEADLINE_EXCEEDED: (STEP, None),
    # The cluster took the Pod away, or never delivered what it needs to start.
    Reason.POD_DELETED: (PLATFORM, None),
    Reason.POD_EVICTED: (PLATFORM, None),
    Reason.NODE_LOST: (PLATFORM, None),
    Reason.PREEMPTED: (PLATFORM, None),
    Reason.STARTUP_TIMEOUT: (PLATFORM, None),
    Reason.IMAGE_PULL_FAILED: (PLATFORM, FailureStage.IMAGE_PULL),
    Reason.RECONCILE_FAILED: (PLATFORM, None),
    Reason.ARTIFACT_DOWNLOAD_FAILED: (PLATFORM, FailureStage.INIT),
    Reason.ARTIFACT_UPLOAD_FAILED: (PLATFORM, FailureStage.FINISHING),
    Reason.QUEUE_TIMEOUT: (PLATFORM, FailureStage.ADMISSION),
    # The step as written, or the rules it meets.
    Reason.INVALID_SPEC: (CONFIG, FailureStage.ADMISSION),
    # The API server's admission (a webhook, Pod Security, a quota) refused the Pod.
    Reason.CREATE_FAILED: (CONFIG, FailureStage.ADMISSION),
    Reason.PERMISSION_DENIED: (CONFIG, FailureStage.ADMISSION),
    Reason.POLICY_NOT_FOUND: (CONFIG, FailureStage.ADMISSION),
    Reason.WORKSPACE_UNAVAILABLE: (CONFIG, None),
}

# An image that cannot be pulled as named, or is not there, or not for these credentials: no
# retry will find it, so the step's configuration is at fault, not the registry. The kubelet's
# reason, or the registry's answer as the kubelet quotes it (lowercase).
_IMAGE_NAME_REASONS = ("InvalidImageName:", "ErrImageNeverPull:")
_IMAGE_ABSENT = ("not found", "manifest unknown", "unauthorized", "denied", "forbidden")

# Exit codes above this are 128 plus the number of the signal that ended the process.
_SIGNAL_BASE = 128
_MAX_SIGNAL = 64


def category(reason: str, message: str | None = None) -> FailureCategory | None:
    """Whose failure ``reason`` is; None for a reason that is no failure."""
    if reason in NOT_FAILURES:
        return None
    found, _ = CLASSIFICATION.get(reason, (PLATFORM, None))
    if reason == Reason.IMAGE_PULL_FAILED and _image_absent(message or ""):
        return CONFIG
    return found


def _image_absent(message: str) -> bool:
    text = message.lower()
    return any(r in message for r in _IMAGE_NAME_REASONS) or any(w in text for w in _IMAGE_ABSENT)


def signal_of(exit_code: int | None) -> int | None:
    """The signal an exit code says ended the process (137: 9, SIGKILL)."""
    if exit_code is None or not _SIGNAL_BASE < exit_code <= _SIGNAL_BASE + _MAX_SIGNAL:
        return None
    return exit_code - _SIGNAL_BASE


@dataclass(frozen=True)
class Site:
    """Where in its Pod an attempt was when it failed."""

    stage: FailureStage
    container: str | None = None
    node: str | None = None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _state(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(entry.get("state"))


def _entries(status: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    items = status.get(key)
    return [_mapping(i) for i in items] if isinstance(items, list) else []


def site_of(pod: Mapping[str, Any] | None, *, started: bool = False) -> Site:
    """How far the Pod got. Without a Pod, only whether the step ``started`` is known."""
    if pod is None:
        if started:
            return Site(FailureStage.RUNNING, STEP_CONTAINER)
        return Site(FailureStage.SCHEDULING)
    node = _mapping(pod.get("spec")).get("nodeName") or None
    status = _mapping(pod.get("status"))
    containers = _entries(status, "containerStatuses")
    for entry in _entries(status, "initContainerStatuses") + containers:
        waiting = _mapping(_state(entry).get("waiting"))
        if waiting.get("reason") in IMAGE_PULL_REASONS:
            return Site(FailureStage.IMAGE_PULL, entry.get("name"), node)
    for init in _entries(status, "initContainerStatuses"):
        terminated = _mapping(_state(init).get("terminated"))
        waiting = _mapping(_state(init).get("waiting"))
        if terminated.get("exitCode") or waiting.get("reason") in STARTUP_FAILURE_REASONS:
            return Site(FailureStage.INIT, init.get("name"), node)
    step = next((c for c in containers if c.get("name") == STEP_CONTAINER), {})
    state = _state(step)
    if state.get("running") or state.get("terminated") or started:
        uploader = next((c for c in containers if c.get("name") == UPLOAD_CONTAINER), {})
        upload_end = _mapping(_state(uploader).get("terminated"))
        step_end = _mapping(state.get("terminated"))
        if step_end.get("exitCode") == 0 and upload_end.get("exitCode"):
            return Site(FailureStage.FINISHING, UPLOAD_CONTAINER, node)
        return Site(FailureStage.RUNNING, STEP_CONTAINER, node)
    if not node:
        return Site(FailureStage.SCHEDULING)
    waiting = _mapping(state.get("waiting"))
    return Site(FailureStage.INIT, STEP_CONTAINER if waiting.get("reason") else None, node)


# The container a reason's own stage names, when the Pod was elsewhere (or is gone).
_STAGE_CONTAINERS = {
    FailureStage.FINISHING: UPLOAD_CONTAINER,
    FailureStage.RUNNING: STEP_CONTAINER,
}


def failure_of(
    reason: str,
    message: str | None,
    site: Site | None,
    exit_code: int | None = None,
    events: Iterable[FailureEvent] = (),
) -> Failure | None:
    """The failure an outcome with ``reason`` records; None when it is no failure. ``site``:
    where the attempt's Pod was (None: no Pod was made, the step never got past admission)."""
    found = category(reason, message)
    if found is None:
        return None
    _, stage = CLASSIFICATION.get(reason, (PLATFORM, None))
    where = site or Site(FailureStage.ADMISSION)
    container = where.container
    if stage is None:
        stage = where.stage
    elif stage != where.stage:
        container = INIT_CONTAINER if reason == Reason.ARTIFACT_DOWNLOAD_FAILED else None
        container = _STAGE_CONTAINERS.get(stage, container)
    if stage in (FailureStage.ADMISSION, FailureStage.SCHEDULING):
        container = None
    kept = list(events)[-MAX_FAILURE_EVENTS:]
    return Failure(
        category=found,
        stage=stage,
        reason=reason,
        container=container,
        exit_code=exit_code,
        signal=signal_of(exit_code),
        node=where.node,
        events=kept or None,
    )


def recent_events(events: Iterable[Mapping[str, Any]]) -> tuple[FailureEvent, ...]:
    """The last few of a Pod's events, oldest first, as a failure records them."""
    dated = []
    for event in events:
        when = str(
            event.get("lastTimestamp")
            or event.get("eventTime")
            or _mapping(event.get("metadata")).get("creationTimestamp")
            or ""
        )
        count = event.get("count")
        dated.append(
            (
                when,
                FailureEvent(
                    reason=str(event.get("reason") or ""),
                    message=str(event.get("message") or "") or None,
                    type=str(event.get("type") or "") or None,
                    count=count if isinstance(count, int) and not isinstance(count, bool) else None,
                    last_time=when or None,
                ),
            )
        )
    dated.sort(key=lambda pair: pair[0])
    return tuple(e for _, e in dated[-MAX_FAILURE_EVENTS:])
