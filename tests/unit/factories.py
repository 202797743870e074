"""Builders of the objects unit tests feed the operator: StepRun bodies and Pods as the API
server returns them (field for field what a real kubelet and scheduler report)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from steprun.api.models import API_VERSION, StepRun
from steprun.timeutil import parse_time

CREATED = "2024-05-01T10:00:00Z"
STARTED = "2024-05-01T10:00:05Z"
FINISHED = "2024-05-01T10:01:00Z"

NAME = "build-42-lint"
NAMESPACE = "ci"
UID = "0d6c3a52-8f5e-4f11-9d3c-5b7a2b4c9e01"
IMAGE = "busybox:1.36"


def at(text: str) -> datetime:
    """An RFC 3339 timestamp as the aware datetime the operator computes with."""
    parsed = parse_time(text)
    assert parsed is not None
    return parsed


def pod_name(attempt: int = 1) -> str:
    return f"{NAME}-{attempt}"


# ---------------------------------------------------------------- StepRuns


def steprun_body(
    *,
    spec: Mapping[str, Any] | None = None,
    status: Mapping[str, Any] | None = None,
    generation: int = 1,
    resource_version: str = "1000",
    deleting: bool = False,
) -> dict[str, Any]:
    """A local StepRun as the API server returns it; ``spec`` entries override the defaults."""
    metadata: dict[str, Any] = {
        "name": NAME,
        "namespace": NAMESPACE,
        "uid": UID,
        "generation": generation,
        "resourceVersion": resource_version,
        "creationTimestamp": CREATED,
        "labels": {"steprun.dev/workflow": "build"},
    }
    if deleting:
        # Held by another controller's finalizer (steprun adds none).
        metadata["deletionTimestamp"] = FINISHED
        metadata["finalizers"] = ["example.com/audit"]
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "StepRun",
        "metadata": metadata,
        "spec": {
            "mode": "local",
            "image": IMAGE,
            "script": "make lint",
            "context": {"workflow": {"name": "build", "runId": "42", "stepId": "lint"}},
            **(spec or {}),
        },
    }
    if status is not None:
        body["status"] = dict(status)
    return body


def steprun(
    *,
    spec: Mapping[str, Any] | None = None,
    status: Mapping[str, Any] | None = None,
    generation: int = 1,
    deleting: bool = False,
) -> StepRun:
    return StepRun.from_body(
        steprun_body(spec=spec, status=status, generation=generation, deleting=deleting)
    )


def attempt_entry(attempt: int = 1, **fields: Any) -> dict[str, Any]:
    """One ``status.attempts`` item (wire form); ``fields`` use the API's camelCase names."""
    return {"attempt": attempt, "podName": pod_name(attempt), **fields}


def condition_entry(
    status: str, reason: str, since: str, message: str = "", generation: int = 1
) -> dict[str, Any]:
    return {
        "type": "Succeeded",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }


def pending_status(attempt: int = 1, **fields: Any) -> dict[str, Any]:
    """The status of a StepRun whose attempt's Pod was created and has not started yet."""
    message = f"Pod {pod_name(attempt)} created for attempt {attempt}; waiting for it to start"
    return {
        "phase": "Pending",
        "reason": "PodCreated",
        "message": message,
        "podName": pod_name(attempt),
        "attempt": attempt,
        "attempts": [attempt_entry(n) for n in range(1, attempt + 1)],
        "startTime": CREATED,
        "observedGeneration": 1,
        "conditions": [condition_entry("Unknown", "PodCreated", CREATED, message)],
    } | fields


def running_status(attempt: int = 1, **fields: Any) -> dict[str, Any]:
    """The status of a StepRun whose attempt's container is running."""
    message = f"attempt {attempt} is running in Pod {pod_name(attempt)}"
    status = pending_status(attempt)
    status.update(
        phase="Running",
        reason="Started",
        message=message,
        attempts=[attempt_entry(n, startTime=STARTED) for n in range(1, attempt + 1)],
        conditions=[condition_entry("Unknown", "Started", STARTED, message)],
    )
    status.update(fields)
    return status


def retrying_status(attempt: int, next_attempt_time: str, **fields: Any) -> dict[str, Any]:
    """The status of a StepRun whose attempt ``attempt`` failed and waits for the next one."""
    message = f"attempt {attempt} failed (Error: the step exited with code 3)"
    status = pending_status(attempt)
    status.update(
        reason="Retrying",
        message=message,
        exitCode=3,
        nextAttemptTime=next_attempt_time,
        attempts=[
            attempt_entry(
                n,
                exitCode=3,
                reason="Error",
                message="the step exited with code 3",
                startTime=STARTED,
                completionTime=FINISHED,
                failure={
                    "category": "Step",
                    "stage": "Running",
                    "reason": "Error",
                    "container": "step",
                    "exitCode": 3,
                },
            )
            for n in range(1, attempt + 1)
        ],
        conditions=[condition_entry("Unknown", "Retrying", FINISHED, message)],
    )
    status.update(fields)
    return status


def terminal_status(phase: str, reason: str, **fields: Any) -> dict[str, Any]:
    """The status of a StepRun that reached ``phase``; ``fields`` override or add entries."""
    message = f"the step ended: {reason}"
    status = pending_status()
    status.update(
        phase=phase,
        reason=reason,
        message=message,
        completionTime=FINISHED,
        duration="1m0s",
        conditions=[
            condition_entry("True" if phase == "Succeeded" else "False", reason, FINISHED, message)
        ],
    )
    status.update(fields)
    return status


# ---------------------------------------------------------------- Pods


def container_status(state: dict[str, Any], *, name: str = "step") -> dict[str, Any]:
    return {
        "name": name,
        "image": IMAGE,
        "imageID": "docker.io/library/busybox@sha256:0123" if "waiting" not in state else "",
        "containerID": "containerd://4f2a" if "waiting" not in state else None,
        "ready": "running" in state,
        "started": "running" in state,
        "restartCount": 0,
        "lastState": {},
        "state": state,
    }


def terminated(
    exit_code: int, *, reason: str | None = None, message: str | None = None
) -> dict[str, Any]:
    state: dict[str, Any] = {
        "exitCode": exit_code,
        "reason": reason or ("Completed" if exit_code == 0 else "Error"),
        "startedAt": STARTED,
        "finishedAt": FINISHED,
        "containerID": "containerd://4f2a",
    }
    if message is not None:
        state["message"] = message
    return {"terminated": state}


def waiting(reason: str, message: str | None = None) -> dict[str, Any]:
    return {"waiting": {"reason": reason, **({"message": message} if message else {})}}


def running() -> dict[str, Any]:
    return {"running": {"startedAt": STARTED}}


def condition(kind: str, status: str) -> dict[str, Any]:
    return {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": CREATED}


def pod(
    phase: str,
    state: dict[str, Any] | None = None,
    *,
    reason: str | None = None,
    message: str | None = None,
    conditions: list[dict[str, Any]] | None = None,
    init_statuses: list[dict[str, Any]] | None = None,
    deleting: bool = False,
    scheduled: bool = True,
    memory_limit: str | None = "256Mi",
    name: str = pod_name(1),
    created: str | None = CREATED,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": NAMESPACE,
        "uid": "pod-uid",
        "labels": {"steprun.dev/name": NAME},
    }
    if created is not None:
        metadata["creationTimestamp"] = created
    if deleting:
        metadata["deletionTimestamp"] = FINISHED
        metadata["deletionGracePeriodSeconds"] = 30
    resources = {"limits": {"memory": memory_limit}} if memory_limit else {}
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": 600,
        "containers": [
            {
                "name": "step",
                "image": IMAGE,
                "resources": resources,
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }
        ],
    }
    status: dict[str, Any] = {"phase": phase, "qosClass": "Burstable"}
    if scheduled:
        spec["nodeName"] = "kind-worker"
        status["startTime"] = CREATED
        status["hostIP"] = "172.18.0.2"
    status["conditions"] = conditions or ([condition("PodScheduled", "True")] if scheduled else [])
    if state is not None:
        status["containerStatuses"] = [container_status(state)]
    if init_statuses is not None:
        status["initContainerStatuses"] = init_statuses
    if reason is not None:
        status["reason"] = reason
    if message is not None:
        status["message"] = message
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status}


def unschedulable(reason: str, message: str) -> dict[str, Any]:
    cond = condition("PodScheduled", "False")
    cond.update(reason=reason, message=message)
    return pod("Pending", scheduled=False, conditions=[cond])


def disrupted() -> dict[str, Any]:
    cond = condition("DisruptionTarget", "True")
    cond.update(reason="PreemptionByScheduler", message="preempted by ci/high-priority-job")
    return pod("Failed", terminated(137), conditions=[condition("PodScheduled", "True"), cond])
