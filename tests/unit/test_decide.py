"""decide: the single next step for a StepRun, for every state its status and Pod can be in."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from steprun.api.models import TERMINAL_PHASES, Phase, StepRun
from steprun.config import OperatorConfig
from steprun.reconcile.decide import (
    PENDING_RECORD_AFTER,
    Cancel,
    Decision,
    ExpireTtl,
    FinishAttempt,
    MarkRunning,
    Outcome,
    RecordPending,
    ReleasePods,
    RepairContext,
    StartAttempt,
    Wait,
    decide,
    pod_created_at,
)
from tests.unit.factories import (
    CREATED,
    FINISHED,
    STARTED,
    at,
    attempt_entry,
    condition,
    pending_status,
    pod,
    pod_name,
    retrying_status,
    running,
    running_status,
    steprun,
    terminal_status,
    terminated,
    unschedulable,
    waiting,
)

# Explicit values, so STEPRUN_* variables in the environment cannot change the expectations.
CONFIG = OperatorConfig(default_timeout_seconds=3600, default_startup_timeout_seconds=300)
SHORT_STARTUP = OperatorConfig(default_timeout_seconds=3600, default_startup_timeout_seconds=45)

LATER = at(FINISHED) + timedelta(seconds=30)
OUTPUTS = {"digest": "sha256:abc", "count": 3}
PULL_MESSAGE = (
    'failed to pull and unpack image "docker.io/library/busybox:nope": '
    "docker.io/library/busybox:nope: not found"
)
SCHEDULER_MESSAGE = (
    "0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available: "
    "3 No preemption victims found for incoming pod."
)
DELETED_MISSING = (
    f"Pod {pod_name(1)} was deleted before it finished (not by steprun); "
    "the step's outcome is unknown"
)
DELETED_DELETING = f"Pod {pod_name(1)} was deleted before it finished (not by steprun)"


def retries(limit: int, backoff: int = 30, **more: int) -> dict[str, Any]:
    return {"retries": {"limit": limit, "backoffSeconds": backoff, **more}}


# The platform's failures are retried by default (retries.platformLimit 2); cases about how an
# attempt ends turn that off.
NO_PLATFORM_RETRIES = retries(0, platformLimit=0)


def deleted_attempt(attempt: int, *, with_failure: bool = True) -> dict[str, Any]:
    """An earlier attempt whose Pod was deleted; without ``with_failure`` as recorded before
    failures were, its reason alone saying whose it was."""
    failure = {"category": "Platform", "stage": "Running", "reason": "PodDeleted"}
    return attempt_entry(
        attempt,
        reason="PodDeleted",
        message=DELETED_MISSING,
        completionTime=FINISHED,
        **({"failure": failure} if with_failure else {}),
    )


def startup_failure(why: str, limit: int = 300) -> str:
    return (
        f"Pod {pod_name(1)} was not running {limit}s after it was created "
        f"(startupTimeoutSeconds); {why}"
    )


def exit_3(**fields: Any) -> Outcome:
    return Outcome(
        Phase.FAILED,
        "Error",
        "the step exited with code 3",
        exit_code=3,
        start_time=STARTED,
        completion_time=FINISHED,
        **fields,
    )


def case(
    sr: StepRun,
    pod_body: dict[str, Any] | None,
    now: str | datetime,
    expected: Decision,
    *,
    config: OperatorConfig = CONFIG,
    id: str,
) -> Any:
    moment = at(now) if isinstance(now, str) else now
    return pytest.param(sr, pod_body, moment, config, expected, id=id)


CASES = [
    # ---------------------------------------------------------------- start and deletion
    case(steprun(), None, CREATED, StartAttempt(1), id="new"),
    case(steprun(status={}), None, CREATED, StartAttempt(1), id="new-empty-status"),
    case(
        steprun(status={"phase": "Pending", "reason": "Created"}),
        None,
        CREATED,
        StartAttempt(1),
        id="status-without-attempt",
    ),
    case(
        steprun(status=pending_status()),
        pod("Pending", waiting("ContainerCreating")),
        CREATED,
        Wait(until=at(CREATED) + timedelta(seconds=5)),
        id="pod-created-but-unseen-status-is-not-restarted",
    ),
    case(steprun(deleting=True), None, CREATED, Wait(), id="deleting-new"),
    case(
        steprun(status=running_status(), deleting=True),
        pod("Running", running()),
        LATER,
        Wait(),
        id="deleting-running",
    ),
    case(
        steprun(status=running_status(), deleting=True, spec={"cancel": True}),
        pod("Running", running()),
        LATER,
        Wait(),
        id="deleting-with-cancel",
    ),
    case(
        steprun(spec={"ttlSecondsAfterFinished": 0}, status=terminal_status("Failed", "Error")),
        None,
        LATER,
        ExpireTtl(),
        id="ttl-elapsed",
    ),
    case(
        steprun(
            spec={"ttlSecondsAfterFinished": 0},
            status=terminal_status("Failed", "Error"),
            deleting=True,
        ),
        None,
        LATER,
        Wait(),
        id="ttl-elapsed-but-already-deleting",
    ),
    # ---------------------------------------------------------------- TTL
    case(
        steprun(
            spec={"ttlSecondsAfterFinished": 3600},
            status=terminal_status("Succeeded", "Completed"),
        ),
        None,
        LATER,
        Wait(until=at(FINISHED) + timedelta(seconds=3600)),
        id="ttl-not-yet",
    ),
    case(
        steprun(
            spec={"ttlSecondsAfterFinished": 3600},
            status=terminal_status("Succeeded", "Completed"),
        ),
        None,
        at(FINISHED) + timedelta(seconds=3600),
        ExpireTtl(),
        id="ttl-exactly-elapsed",
    ),
    case(
        steprun(
            spec={"ttlSecondsAfterFinished": 60},
            status=terminal_status("Rejected", "PermissionDenied"),
        ),
        None,
        at(FINISHED) + timedelta(days=2),
        ExpireTtl(),
        id="ttl-long-elapsed",
    ),
    case(
        steprun(
            spec={"ttlSecondsAfterFinished": 0},
            status=terminal_status("Cancelled", "Cancelled"),
        ),
        None,
        FINISHED,
        ExpireTtl(),
        id="ttl-zero-expires-at-once",
    ),
    case(
        steprun(
            spec={"ttlSecondsAfterFinished": 0},
            status=terminal_status("Failed", "Error", completionTime=None),
        ),
        None,
        LATER,
        Wait(),
        id="ttl-without-completion-time-waits",
    ),
    case(
        steprun(spec={"ttlSecondsAfterFinished": 0}, status=running_status()),
        pod("Running", running()),
        LATER,
        Wait(),
        id="ttl-ignored-before-terminal",
    ),
    # ---------------------------------------------------------------- cancel
    case(
        steprun(spec={"cancel": True}),
        None,
        CREATED,
        Cancel(None),
        id="cancel-before-any-pod",
    ),
    case(
        steprun(spec={"cancel": True}, status=pending_status()),
        pod("Pending", waiting("ContainerCreating")),
        CREATED,
        Cancel(pod_name(1)),
        id="cancel-pending",
    ),
    case(
        steprun(spec={"cancel": True}, status=running_status()),
        pod("Running", running()),
        LATER,
        Cancel(pod_name(1)),
        id="cancel-running",
    ),
    case(
        steprun(spec={"cancel": True}, status=running_status()),
        None,
        LATER,
        Cancel(None),
        id="cancel-running-pod-gone",
    ),
    case(
        steprun(spec={"cancel": True}, status=running_status()),
        pod("Running", running(), deleting=True),
        LATER,
        Cancel(pod_name(1)),
        id="cancel-running-pod-deleting",
    ),
    case(
        steprun(spec={"cancel": True}, status=running_status()),
        pod("Succeeded", terminated(0)),
        LATER,
        Cancel(pod_name(1)),
        id="cancel-wins-over-finished-pod",
    ),
    case(
        steprun(spec={"cancel": True}, status=retrying_status(1, "2024-05-01T10:05:00Z")),
        None,
        LATER,
        Cancel(None),
        id="cancel-during-retry-backoff",
    ),
    # ---------------------------------------------------------------- retry schedule
    case(
        steprun(spec=retries(2), status=retrying_status(1, "2024-05-01T10:05:00Z")),
        None,
        LATER,
        Wait(until=at("2024-05-01T10:05:00Z")),
        id="retry-scheduled",
    ),
    case(
        steprun(spec=retries(2), status=retrying_status(1, "2024-05-01T10:05:00Z")),
        None,
        "2024-05-01T10:05:00Z",
        StartAttempt(2),
        id="retry-due-now",
    ),
    case(
        steprun(spec=retries(2), status=retrying_status(1, "2024-05-01T10:05:00Z")),
        None,
        "2024-05-01T11:00:00Z",
        StartAttempt(2),
        id="retry-overdue",
    ),
    case(
        steprun(spec=retries(5), status=retrying_status(3, "2024-05-01T10:00:30Z")),
        None,
        LATER,
        StartAttempt(4),
        id="retry-after-third-attempt",
    ),
    case(
        steprun(spec=retries(2), status=retrying_status(1, "2024-05-01T10:05:00Z")),
        pod("Failed", terminated(3)),
        "2024-05-01T10:05:00Z",
        StartAttempt(2),
        id="retry-ignores-previous-pod",
    ),
    # ---------------------------------------------------------------- Pod gone
    case(
        steprun(spec=NO_PLATFORM_RETRIES, status=running_status()),
        None,
        LATER,
        FinishAttempt(Outcome(Phase.FAILED, "PodDeleted", DELETED_MISSING)),
        id="pod-missing-no-retries",
    ),
    case(
        steprun(spec=NO_PLATFORM_RETRIES, status=pending_status()),
        None,
        LATER,
        FinishAttempt(Outcome(Phase.FAILED, "PodDeleted", DELETED_MISSING)),
        id="pod-missing-while-pending",
    ),
    case(
        steprun(status=running_status()),
        None,
        LATER,
        FinishAttempt(
            Outcome(Phase.FAILED, "PodDeleted", DELETED_MISSING),
            retry_at=LATER + timedelta(seconds=10),
        ),
        id="pod-missing-retried-by-default-without-a-step-retry",
    ),
    case(
        steprun(spec=retries(1, backoff=45), status=running_status()),
        None,
        LATER,
        FinishAttempt(
            Outcome(Phase.FAILED, "PodDeleted", DELETED_MISSING),
            retry_at=LATER + timedelta(seconds=45),
        ),
        id="pod-missing-retried",
    ),
    case(
        steprun(spec=retries(2, backoff=0), status=running_status(2)),
        None,
        LATER,
        FinishAttempt(
            Outcome(
                Phase.FAILED,
                "PodDeleted",
                DELETED_MISSING.replace(pod_name(1), pod_name(2)),
            ),
            retry_at=LATER,
        ),
        id="pod-missing-last-retry-left",
    ),
    case(
        steprun(spec=retries(1, platformLimit=0), status=running_status(2)),
        None,
        LATER,
        FinishAttempt(
            Outcome(
                Phase.FAILED,
                "PodDeleted",
                DELETED_MISSING.replace(pod_name(1), pod_name(2)),
            )
        ),
        id="pod-missing-retries-spent",
    ),
    case(
        steprun(
            spec=retries(0, backoff=30, platformLimit=2, platformBackoffSeconds=5),
            status=running_status(2, attempts=[deleted_attempt(1), attempt_entry(2)]),
        ),
        None,
        LATER,
        FinishAttempt(
            Outcome(Phase.FAILED, "PodDeleted", DELETED_MISSING.replace(pod_name(1), pod_name(2))),
            retry_at=LATER + timedelta(seconds=5),
        ),
        id="pod-missing-again-last-platform-retry-with-its-own-backoff",
    ),
    case(
        steprun(
            spec=retries(3, platformLimit=2),
            status=running_status(
                3, attempts=[deleted_attempt(1), deleted_attempt(2, with_failure=False)]
            ),
        ),
        None,
        LATER,
        FinishAttempt(
            Outcome(Phase.FAILED, "PodDeleted", DELETED_MISSING.replace(pod_name(1), pod_name(3)))
        ),
        id="pod-missing-platform-retries-spent-step-retries-left",
    ),
    case(
        steprun(
            spec=retries(1, platformLimit=2),
            status=running_status(3, attempts=[deleted_attempt(1), deleted_attempt(2)]),
        ),
        pod("Failed", terminated(3)),
        LATER,
        FinishAttempt(exit_3(), retry_at=LATER + timedelta(seconds=30)),
        id="step-failure-after-platform-retries-spends-its-own-budget",
    ),
    case(
        steprun(
            spec=retries(1, platformLimit=2),
            status=running_status(
                3,
                attempts=[
                    attempt_entry(1, reason="Error", exitCode=3),
                    deleted_attempt(2),
                    attempt_entry(3),
                ],
            ),
        ),
        pod("Failed", terminated(3)),
        LATER,
        FinishAttempt(exit_3()),
        id="step-retries-spent-whatever-the-platform-retries",
    ),
    # ---------------------------------------------------------------- startup
    case(
        steprun(status=pending_status()),
        pod("Pending", waiting("ContainerCreating"), scheduled=False),
        "2024-05-01T10:00:10Z",
        Wait(until=at(CREATED) + timedelta(seconds=300)),
        id="pending-config-default-deadline",
    ),
    case(
        steprun(status=pending_status()),
        pod("Pending", waiting("ContainerCreating"), scheduled=False),
        "2024-05-01T10:00:10Z",
        Wait(until=at(CREATED) + timedelta(seconds=45)),
        config=SHORT_STARTUP,
        id="pending-other-config-default",
    ),
    case(
        steprun(spec={"startupTimeoutSeconds": 60}, status=pending_status()),
        pod("Pending", waiting("ContainerCreating"), scheduled=False),
        "2024-05-01T10:00:10Z",
        Wait(until=at(CREATED) + timedelta(seconds=60)),
        config=SHORT_STARTUP,
        id="pending-spec-deadline-wins",
    ),
    case(
        steprun(status=pending_status()),
        pod("Pending", waiting("ErrImagePull", PULL_MESSAGE)),
        "2024-05-01T10:04:59Z",
        Wait(until=at(CREATED) + timedelta(seconds=300)),
        id="image-pull-error-before-deadline",
    ),
    case(
        steprun(status=pending_status()),
        pod("Pending", waiting("ContainerCreating"), created=None, scheduled=False),
        LATER,
        Wait(until=LATER + timedelta(seconds=300)),
        id="pending-without-creation-time",
    ),
    # ---------------------------------------------------------------- context repair
    case(
        steprun(status=pending_status()),
        pod("Pending", waiting("ContainerCreating")),
        "2024-05-01T10:00:10Z",
        RepairContext(until=at(CREATED) + timedelta(seconds=300)),
        id="starting-pod-context-checked-after-5s",
    ),
    case(
        steprun(status=pending_status()),
        pod("Pending", waiting("ContainerCreating")),
        "2024-05-01T10:04:58Z",
        RepairContext(until=at(CREATED) + timedelta(seconds=300)),
        id="context-check-never-beyond-startup-deadline",
    ),
    case(
        steprun(status=pending_status()),
        pod("Pending", waiting("CreateContainerConfigError", 'configmap "x" not found')),
        "2024-05-01T10:00:01Z",
        RepairContext(until=at("2024-05-01T10:00:06Z")),
        id="missing-env-source-repaired-at-once",
    ),
    case(
        steprun(status=pending_status()),
        pod("Pending", waiting("ContainerCreating"), scheduled=False),
        "2024-05-01T10:00:10Z",
        Wait(until=at(CREATED) + timedelta(seconds=300)),
        id="unscheduled-pod-context-not-checked",
    ),
    case(
        steprun(status=pending_status()),
        pod("Pending", waiting("ErrImagePull", PULL_MESSAGE)),
        "2024-05-01T10:05:00Z",
        FinishAttempt(
            Outcome(
                Phase.FAILED,
                "ImagePullFailed",
                startup_failure(f"ErrImagePull: {PULL_MESSAGE}"),
            ),
            delete_pod=True,
        ),
        id="err-image-pull-at-deadline",
    ),
    case(
        steprun(spec=retries(1), status=pending_status()),
        pod("Pending", waiting("ImagePullBackOff", 'Back-off pulling image "busybox:nope"')),
        "2024-05-01T10:06:00Z",
        FinishAttempt(
            Outcome(
                Phase.FAILED,
                "ImagePullFailed",
                startup_failure('ImagePullBackOff: Back-off pulling image "busybox:nope"'),
            ),
            retry_at=at("2024-05-01T10:06:30Z"),
            delete_pod=True,
        ),
        id="image-pull-backoff-retried",
    ),
    case(
        steprun(spec={"startupTimeoutSeconds": 60, **NO_PLATFORM_RETRIES}, status=pending_status()),
        unschedulable("Unschedulable", SCHEDULER_MESSAGE),
        "2024-05-01T10:01:00Z",
        FinishAttempt(
            Outcome(
                Phase.FAILED,
                "StartupTimeout",
                startup_failure(f"Unschedulable: {SCHEDULER_MESSAGE}", 60),
            ),
            delete_pod=True,
        ),
        id="unschedulable",
    ),
    case(
        steprun(spec=NO_PLATFORM_RETRIES, status=pending_status()),
        pod(
            "Pending",
            waiting("CreateContainerConfigError", 'secret "build-42-lint-context" not found'),
        ),
        "2024-05-01T10:05:00Z",
        FinishAttempt(
            Outcome(
                Phase.FAILED,
                "StartupTimeout",
                startup_failure(
                    'CreateContainerConfigError: secret "build-42-lint-context" not found',
                ),
            ),
            delete_pod=True,
        ),
        id="container-config-error",
    ),
    case(
        steprun(spec=NO_PLATFORM_RETRIES, status=pending_status()),
        pod("Pending", waiting("ContainerCreating")),
        "2024-05-01T10:00:45Z",
        FinishAttempt(
            Outcome(
                Phase.FAILED,
                "StartupTimeout",
                startup_failure("the step's container is starting (ContainerCreating)", 45),
            ),
            delete_pod=True,
        ),
        config=SHORT_STARTUP,
        id="slow-start-config-deadline",
    ),
    # ---------------------------------------------------------------- running
    case(
        steprun(status=pending_status()),
        pod("Running", running()),
        LATER,
        MarkRunning(STARTED),
        id="started",
    ),
    case(
        steprun(spec=retries(1), status=pending_status(2)),
        pod("Running", running(), name=pod_name(2)),
        LATER,
        MarkRunning(STARTED),
        id="retry-started",
    ),
    case(
        steprun(status=running_status()),
        pod("Running", running()),
        LATER,
        Wait(),
        id="still-running",
    ),
    case(
        steprun(status=running_status()),
        pod("Running", running()),
        "2024-05-02T10:00:00Z",
        Wait(),
        id="running-past-startup-deadline",
    ),
    case(
        steprun(status=pending_status()),
        pod("Unknown", running()),
        LATER,
        MarkRunning(STARTED),
        id="node-unreachable-after-start",
    ),
    # ---------------------------------------------------------------- succeeded
    case(
        steprun(status=running_status()),
        pod("Succeeded", terminated(0, message=json.dumps(OUTPUTS))),
        LATER,
        FinishAttempt(
            Outcome(
                Phase.SUCCEEDED,
                "Completed",
                "the step completed",
                exit_code=0,
                outputs=OUTPUTS,
                start_time=STARTED,
                completion_time=FINISHED,
            )
        ),
        id="succeeded-with-outputs",
    ),
    case(
        steprun(spec=retries(3), status=pending_status()),
        pod("Succeeded", terminated(0)),
        LATER,
        FinishAttempt(
            Outcome(
                Phase.SUCCEEDED,
                "Completed",
                "the step completed",
                exit_code=0,
                start_time=STARTED,
                completion_time=FINISHED,
            )
        ),
        id="succeeded-before-seen-running",
    ),
    case(
        steprun(status=running_status()),
        pod("Succeeded", terminated(0, message='["a.js"]')),
        LATER,
        FinishAttempt(
            Outcome(
                Phase.SUCCEEDED,
                "Completed",
                "the step completed; outputs ignored: output is not a JSON object: it is an array",
                exit_code=0,
                start_time=STARTED,
                completion_time=FINISHED,
            )
        ),
        id="succeeded-invalid-outputs",
    ),
    case(
        steprun(status=running_status()),
        pod("Running", terminated(0, message=json.dumps(OUTPUTS))),
        LATER,
        FinishAttempt(
            Outcome(
                Phase.SUCCEEDED,
                "Completed",
                "the step completed",
                exit_code=0,
                outputs=OUTPUTS,
                start_time=STARTED,
                completion_time=FINISHED,
            )
        ),
        id="succeeded-before-pod-phase-caught-up",
    ),
    case(
        steprun(status=running_status()),
        pod("Succeeded", terminated(0), deleting=True),
        LATER,
        FinishAttempt(
            Outcome(
                Phase.SUCCEEDED,
                "Completed",
                "the step completed",
                exit_code=0,
                start_time=STARTED,
                completion_time=FINISHED,
            )
        ),
        id="succeeded-then-deleted",
    ),
    # ---------------------------------------------------------------- failed
    case(
        steprun(status=running_status()),
        pod("Failed", terminated(3)),
        LATER,
        FinishAttempt(exit_3()),
        id="exit-3",
    ),
    case(
        steprun(spec=retries(2, backoff=10), status=running_status()),
        pod("Failed", terminated(3)),
        LATER,
        FinishAttempt(exit_3(), retry_at=LATER + timedelta(seconds=10)),
        id="exit-3-retried",
    ),
    case(
        steprun(spec=retries(2, backoff=10), status=running_status(2)),
        pod("Failed", terminated(3), name=pod_name(2)),
        LATER,
        FinishAttempt(exit_3(), retry_at=LATER + timedelta(seconds=10)),
        id="exit-3-last-retry-left",
    ),
    case(
        steprun(spec=retries(2, backoff=10), status=running_status(3)),
        pod("Failed", terminated(3), name=pod_name(3)),
        LATER,
        FinishAttempt(exit_3()),
        id="exit-3-retries-spent",
    ),
    case(
        steprun(status=running_status()),
        pod("Failed", terminated(3, message='{"failed": ["a.js"]}')),
        LATER,
        FinishAttempt(exit_3(outputs={"failed": ["a.js"]})),
        id="exit-3-with-outputs",
    ),
    case(
        steprun(status=running_status()),
        pod("Running", terminated(3)),
        LATER,
        FinishAttempt(exit_3()),
        id="exit-3-before-pod-phase-caught-up",
    ),
    case(
        steprun(spec=retries(3), status=running_status()),
        pod(
            "Failed",
            terminated(137),
            reason="DeadlineExceeded",
            message="Pod was active on the node longer than the specified deadline",
        ),
        LATER,
        FinishAttempt(
            Outcome(
                Phase.TIMED_OUT,
                "DeadlineExceeded",
                "the step ran longer than timeoutSeconds (600s) and was stopped",
                exit_code=137,
                start_time=STARTED,
                completion_time=FINISHED,
            )
        ),
        id="deadline-exceeded-never-retried",
    ),
    case(
        steprun(status=pending_status()),
        pod(
            "Failed",
            waiting("ImagePullBackOff", "Back-off pulling image"),
            reason="DeadlineExceeded",
            message="Pod was active on the node longer than the specified deadline",
        ),
        LATER,
        FinishAttempt(
            Outcome(
                Phase.TIMED_OUT,
                "DeadlineExceeded",
                "the step ran longer than timeoutSeconds (600s) and was stopped",
                start_time=CREATED,
            )
        ),
        id="deadline-exceeded-before-start",
    ),
    case(
        steprun(status=running_status()),
        pod("Failed", terminated(137, reason="OOMKilled")),
        LATER,
        FinishAttempt(
            Outcome(
                Phase.FAILED,
                "OOMKilled",
                "the step ran out of memory and was killed (exit code 137); raise "
                "resources.limits.memory above its limit of 256Mi",
                exit_code=137,
                start_time=STARTED,
                completion_time=FINISHED,
            )
        ),
        id="oom-killed",
    ),
    case(
        steprun(spec=retries(1, backoff=5), status=running_status()),
        pod("Failed", terminated(137, reason="OOMKilled")),
        LATER,
        FinishAttempt(
            Outcome(
                Phase.FAILED,
                "OOMKilled",
                "the step ran out of memory and was killed (exit code 137); raise "
                "resources.limits.memory above its limit of 256Mi",
                exit_code=137,
                start_time=STARTED,
                completion_time=FINISHED,
            ),
            retry_at=LATER + timedelta(seconds=5),
        ),
        id="oom-killed-retried",
    ),
    case(
        steprun(spec=retries(1, backoff=5), status=running_status()),
        pod(
            "Failed",
            terminated(137),
            reason="Evicted",
            message="The node was low on resource: memory.",
        ),
        LATER,
        FinishAttempt(
            Outcome(
                Phase.FAILED,
                "Evicted",
                "the Pod was evicted: The node was low on resource: memory.",
                exit_code=137,
                start_time=STARTED,
                completion_time=FINISHED,
            ),
            retry_at=LATER + timedelta(seconds=5),
        ),
        id="evicted-retried",
    ),
    # ---------------------------------------------------------------- Pod deleted by others
    case(
        steprun(spec=NO_PLATFORM_RETRIES, status=running_status()),
        pod("Running", running(), deleting=True),
        LATER,
        FinishAttempt(Outcome(Phase.FAILED, "PodDeleted", DELETED_DELETING, start_time=STARTED)),
        id="deleting-while-running",
    ),
    case(
        steprun(spec=NO_PLATFORM_RETRIES, status=running_status()),
        pod("Running", terminated(143), deleting=True),
        LATER,
        FinishAttempt(Outcome(Phase.FAILED, "PodDeleted", DELETED_DELETING, start_time=STARTED)),
        id="deleting-container-killed",
    ),
    case(
        steprun(spec=NO_PLATFORM_RETRIES, status=running_status()),
        pod("Failed", terminated(143), deleting=True),
        LATER,
        FinishAttempt(
            Outcome(
                Phase.FAILED,
                "PodDeleted",
                DELETED_DELETING,
                exit_code=143,
                start_time=STARTED,
                completion_time=FINISHED,
            )
        ),
        id="deleting-after-kill",
    ),
    case(
        steprun(spec=retries(1, backoff=20), status=pending_status()),
        pod("Pending", waiting("ContainerCreating"), deleting=True),
        LATER,
        FinishAttempt(
            Outcome(Phase.FAILED, "PodDeleted", DELETED_DELETING),
            retry_at=LATER + timedelta(seconds=20),
        ),
        id="deleting-while-pending-retried",
    ),
]


@pytest.mark.parametrize(("sr", "pod_body", "now", "config", "expected"), CASES)
def test_decide(
    sr: StepRun,
    pod_body: dict[str, Any] | None,
    now: datetime,
    config: OperatorConfig,
    expected: Decision,
) -> None:
    assert decide(sr, pod_body, now, config) == expected


POD_VARIANTS = [
    pytest.param(None, id="no-pod"),
    pytest.param(pod("Pending", waiting("ErrImagePull", PULL_MESSAGE)), id="pod-stuck"),
    pytest.param(pod("Running", running()), id="pod-running"),
    pytest.param(pod("Failed", terminated(3)), id="pod-failed"),
    pytest.param(pod("Running", running(), deleting=True), id="pod-deleting"),
]


@pytest.mark.parametrize("phase", sorted(p.value for p in TERMINAL_PHASES))
@pytest.mark.parametrize("cancel", [False, True], ids=["", "cancel"])
@pytest.mark.parametrize("pod_body", POD_VARIANTS)
def test_terminal_phase_never_changes(
    phase: str, cancel: bool, pod_body: dict[str, Any] | None
) -> None:
    sr = steprun(
        spec={"cancel": cancel, **retries(3)},
        status=terminal_status(phase, "Whatever", nextAttemptTime="2024-05-01T10:00:30Z"),
    )
    for now in (at(CREATED), LATER, at("2025-01-01T00:00:00Z")):
        assert decide(sr, pod_body, now, CONFIG) == Wait()


# ---------------------------------------------------------------- the tracking finalizer


def test_held_pods_of_recorded_attempts_are_released_once_nothing_else_is_due() -> None:
    first = attempt_entry(1, exitCode=3, reason="Error", completionTime=FINISHED)
    sr = steprun(status=running_status(2, attempts=[first, {"attempt": 2, "podName": pod_name(2)}]))
    current = pod("Running", running(), name=pod_name(2))
    decision = decide(sr, current, LATER, CONFIG, held=[pod_name(1), pod_name(2)])
    assert decision == ReleasePods((pod_name(1),))


def test_the_pod_in_flight_is_never_released() -> None:
    sr = steprun(status=running_status())
    decision = decide(sr, pod("Running", running()), LATER, CONFIG, held=[pod_name(1)])
    assert decision == Wait()


def test_the_outcome_is_recorded_before_a_held_pod_is_released() -> None:
    sr = steprun(status=running_status())
    done = pod("Succeeded", terminated(0), deleting=True)
    decision = decide(sr, done, LATER, CONFIG, held=[pod_name(1)])
    assert isinstance(decision, FinishAttempt)
    assert decision.outcome.phase == Phase.SUCCEEDED


@pytest.mark.parametrize("phase", sorted(p.value for p in TERMINAL_PHASES))
def test_a_terminal_steprun_releases_every_held_pod(phase: str) -> None:
    sr = steprun(status=terminal_status(phase, "Whatever"))
    decision = decide(sr, None, LATER, CONFIG, held=[pod_name(1)], orphans=[pod_name(2)])
    assert decision == ReleasePods((pod_name(1), pod_name(2)))


def test_pods_of_an_earlier_namesake_are_released() -> None:
    sr = steprun(status=pending_status())
    decision = decide(
        sr, pod("Pending", waiting("ContainerCreating")), at(CREATED), CONFIG, orphans=["old-1"]
    )
    assert decision == ReleasePods(("old-1",))


# ---------------------------------------------------------------- TTL and the startup clock


def test_the_operator_default_ttl_applies_when_the_step_sets_none() -> None:
    sr = steprun(status=terminal_status("Succeeded", "Completed", completionTime=FINISHED))
    config = OperatorConfig(default_ttl_seconds_after_finished=60)
    assert decide(sr, None, at(FINISHED) + timedelta(seconds=30), config) == Wait(
        until=at(FINISHED) + timedelta(seconds=60)
    )
    assert decide(sr, None, at(FINISHED) + timedelta(seconds=61), config) == ExpireTtl()
    own = steprun(
        spec={"ttlSecondsAfterFinished": 600},
        status=terminal_status("Succeeded", "Completed", completionTime=FINISHED),
    )
    assert decide(own, None, at(FINISHED) + timedelta(seconds=61), config) == Wait(
        until=at(FINISHED) + timedelta(seconds=600)
    )


def test_startup_timeout_counts_from_the_operators_own_record() -> None:
    # The API server's clock runs 10 minutes behind the operator's: by its creationTimestamp
    # the Pod would be over its 300 s startup timeout at once.
    recorded = at(CREATED) + timedelta(minutes=10)
    entry = {"attempt": 1, "podName": pod_name(1), "creationTime": recorded.isoformat()}
    sr = steprun(status=pending_status(attempts=[entry]))
    stuck = pod("Pending", waiting("ErrImagePull", PULL_MESSAGE), created=CREATED)
    now = recorded + timedelta(seconds=60)
    assert decide(sr, stuck, now, CONFIG) == Wait(until=recorded + timedelta(seconds=300))
    assert isinstance(decide(sr, stuck, recorded + timedelta(seconds=301), CONFIG), FinishAttempt)


def test_a_pod_whose_sandbox_is_ready_does_not_have_its_context_checked() -> None:
    # Pulling its image: volumes are mounted, so the context exists; no API reads.
    scheduled = condition("PodScheduled", "True")
    ready = condition("PodReadyToStartContainers", "True")
    pulling = pod("Pending", waiting("ContainerCreating"), conditions=[scheduled, ready])
    sr = steprun(status=pending_status())
    later = at(CREATED) + timedelta(seconds=30)
    assert decide(sr, pulling, later, CONFIG) == Wait(until=at(CREATED) + timedelta(seconds=300))
    mounting = pod(
        "Pending",
        waiting("ContainerCreating"),
        conditions=[
            condition("PodScheduled", "True"),
            condition("PodReadyToStartContainers", "False"),
        ],
    )
    assert isinstance(decide(sr, mounting, later, CONFIG), RepairContext)


DEADLINE = at(CREATED) + timedelta(seconds=300)


@pytest.mark.parametrize(
    ("checked", "now", "expected"),
    [
        pytest.param(None, "10:00:04", Wait(until=at("2024-05-01T10:00:05Z")), id="too-early"),
        pytest.param(None, "10:00:05", RepairContext(until=DEADLINE), id="the-one-check"),
        pytest.param("10:00:05", "10:00:09", Wait(until=DEADLINE), id="checked"),
        pytest.param("10:00:05", "10:04:00", Wait(until=DEADLINE), id="checked-long-ago"),
        pytest.param(
            "09:58:00", "10:00:09", RepairContext(until=DEADLINE), id="checked-for-an-earlier-pod"
        ),
    ],
)
def test_a_starting_pods_context_is_checked_once(
    checked: str | None, now: str, expected: Decision
) -> None:
    sr = steprun(status=pending_status())
    starting = pod("Pending", waiting("ContainerCreating"))
    last = at(f"2024-05-01T{checked}Z") if checked else None
    assert decide(sr, starting, at(f"2024-05-01T{now}Z"), CONFIG, context_checked=last) == expected


def _checks(starting: dict[str, Any]) -> list[int]:
    """The seconds after creation at which a Pod reconciled every second is checked."""
    sr = steprun(status=pending_status())
    now, checked, checks = at(CREATED), None, []
    while now < DEADLINE:
        decision = decide(sr, starting, now, CONFIG, context_checked=checked)
        if isinstance(decision, RepairContext):
            checked = now
            checks.append(int((now - at(CREATED)).total_seconds()))
        now += timedelta(seconds=1)  # events, requeues
    return checks


def test_a_pod_that_never_starts_has_its_context_checked_once_not_every_5s() -> None:
    assert _checks(pod("Pending", waiting("ContainerCreating"))) == [5]


def test_a_context_the_kubelet_says_is_missing_is_repaired_while_it_says_so() -> None:
    missing = pod("Pending", waiting("CreateContainerConfigError", 'secret "x" not found'))
    assert _checks(missing) == list(range(0, 300, 5))


# ---------------------------------------------------------------- a Pod not recorded yet

SCHEDULED_READY = [
    condition("PodScheduled", "True"),
    condition("PodReadyToStartContainers", "True"),
]


def test_a_pod_not_recorded_yet_is_recorded_pending_only_once_it_is_slow_to_start() -> None:
    # ``sr`` is the step as its status would read had the attempt been recorded at creation.
    sr = steprun(status=pending_status())
    starting = pod("Pending", waiting("ContainerCreating"), conditions=SCHEDULED_READY)
    soon = at(CREATED) + timedelta(seconds=1)
    record_at = at(CREATED) + PENDING_RECORD_AFTER

    assert decide(sr, starting, soon, CONFIG, recorded=False) == Wait(until=record_at)
    assert decide(sr, starting, record_at, CONFIG, recorded=False) == RecordPending()
    assert decide(sr, starting, record_at, CONFIG) == Wait(
        until=at(CREATED) + timedelta(seconds=300)
    )


@pytest.mark.parametrize(
    "seen",
    [
        pytest.param(pod("Running", running()), id="running"),
        pytest.param(pod("Succeeded", terminated(0)), id="succeeded"),
        pytest.param(pod("Failed", terminated(3)), id="failed"),
        pytest.param(pod("Failed", terminated(3), deleting=True), id="deleted"),
    ],
)
def test_a_pod_not_recorded_yet_that_has_started_is_followed_as_a_recorded_one(
    seen: dict[str, Any],
) -> None:
    sr = steprun(status=pending_status())
    soon = at(CREATED) + timedelta(seconds=1)
    assert decide(sr, seen, soon, CONFIG, recorded=False) == decide(sr, seen, soon, CONFIG)


def test_a_pod_not_recorded_yet_past_its_startup_timeout_fails_it() -> None:
    sr = steprun(spec={"startupTimeoutSeconds": 2}, status=pending_status())
    stuck = pod("Pending", waiting("ErrImagePull", PULL_MESSAGE))
    later = at(CREATED) + timedelta(seconds=3)
    decision = decide(sr, stuck, later, CONFIG, recorded=False)
    assert isinstance(decision, FinishAttempt) and decision.outcome.reason == "ImagePullFailed"


def test_the_operators_creation_stamp_on_the_pod_wins_over_the_api_servers() -> None:
    stamped = pod("Pending", created=CREATED)
    stamped["metadata"]["annotations"] = {"steprun.dev/created-at": STARTED}
    assert pod_created_at(stamped) == at(STARTED)
    assert pod_created_at(pod("Pending", created=CREATED)) == at(CREATED)
    stamped["metadata"]["annotations"] = {"steprun.dev/created-at": "yesterday"}
    assert pod_created_at(stamped) == at(CREATED)
