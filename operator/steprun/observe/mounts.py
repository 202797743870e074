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


def mount_failure(
    events: Iterable[Mapping[str, Any]],
    ignore_volumes: Iterable[str] = (),
    only_volumes: Iterable[str] | None = None,
) -> tuple[str, str] | None:
    """The latest (reason, message) of the mount failures among a Pod's events, if any.

    Failures of the volumes in ``ignore_volumes`` (the kubelet names the Pod volume in its
    message, ``volume "context"``) are left out: they are not the workspaces' doing. With
    ``only_volumes``, only failures naming one of those count.
    """
    ignored = tuple(f'volume "{name}"' for name in ignore_volumes)
    wanted = None if only_volumes is None else tuple(f'volume "{n}"' for n in only_volumes)
    latest: tuple[str, str, str] | None = None
    for event in events:
        reason = str(event.get("reason") or "")
        if reason not in MOUNT_FAILURE_REASONS:
            continue
        message = str(event.get("message") or "")
        if ignored and any(marker in message for marker in ignored):
            continue
        if wanted is not None and not any(marker in message for marker in wanted):
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
