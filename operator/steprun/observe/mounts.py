"""Why the kubelet could not mount a Pod's volumes, read from the Pod's events (pure).

A mount failure leaves no trace in the Pod's status (its container just stays
ContainerCreating); the kubelet and the attach-detach controller report it only as Warning
events, so those are where the step's failure reason comes from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

MOUNT_FAILURE_REASONS = frozenset({"FailedMount", "FailedAttachVolume", "FailedMapVolume"})
MOUNT_EVENT_FIELDS = "involvedObject.kind=Pod,involvedObject.name={pod},type=Warning"


def mount_failure(events: Iterable[Mapping[str, Any]]) -> tuple[str, str] | None:
    """The latest (reason, message) of the mount failures among a Pod's events, if any."""
    latest: tuple[str, str, str] | None = None
    for event in events:
        reason = str(event.get("reason") or "")
        if reason not in MOUNT_FAILURE_REASONS:
            continue
        when = str(
            event.get("lastTimestamp")
            or event.get("eventTime")
            or (event.get("metadata") or {}).get("creationTimestamp")
            or ""
        )
        if latest is None or when >= latest[0]:
            latest = (when, reason, str(event.get("message") or reason))
    return (latest[1], latest[2]) if latest is not None else None
