"""Kubernetes Events about a StepRun: pure rendering of a core/v1 Event."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from steprun.api.models import API_VERSION, StepRun
from steprun.timeutil import format_time

COMPONENT = "steprun-operator"
MAX_MESSAGE = 1024


def render_event(
    sr: StepRun, event_type: str, reason: str, message: str, now: datetime
) -> dict[str, Any]:
    stamp = format_time(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{sr.name}.{uuid.uuid4().hex[:16]}",
            "namespace": sr.namespace,
        },
        "involvedObject": {
            "apiVersion": API_VERSION,
            "kind": "StepRun",
            "name": sr.name,
            "namespace": sr.namespace,
            "uid": sr.uid,
            "resourceVersion": sr.metadata.resource_version,
        },
        "type": event_type,
        # A Reason member is a str; the Event carries the plain string.
        "reason": str(reason),
        "message": message[:MAX_MESSAGE],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
