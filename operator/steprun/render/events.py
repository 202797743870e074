"""Kubernetes Events about a StepRun: pure rendering of a core/v1 Event."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from steprun.api.models import API_VERSION, ObjectMeta, StepRun, StepRunSpec
from steprun.timeutil import format_time

COMPONENT = "steprun-operator"
MAX_MESSAGE = 1024


def event_subject(body: Mapping[str, Any]) -> StepRun:
    """The StepRun ``body`` is, by its identity alone: an Event about a StepRun whose spec the
    operator cannot read still points at it."""
    meta = body.get("metadata") or {}
    identity = ObjectMeta(
        name=str(meta.get("name") or ""),
        namespace=str(meta.get("namespace") or ""),
        uid=str(meta.get("uid") or ""),
        resourceVersion=meta.get("resourceVersion"),
    )
    return StepRun(metadata=identity, spec=StepRunSpec())


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
