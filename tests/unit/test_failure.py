"""status.failure: every reason the operator can end a step with, taken through the same
functions as the operator (decide, then the status document), carries a failure consistent
with it; the table below is written out by hand, so a change of the classification shows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from steprun.api.models import (
    TERMINAL_PHASES,
    Failure,
    FailureCategory,
    FailureStage,
    Phase,
    Reason,
    StepRun,
    StepRunStatus,
)
from steprun.artifacts.names import INIT_CONTAINER, UPLOAD_CONTAINER
from steprun.config import OperatorConfig
from steprun.observe.failure import (
    CLASSIFICATION,
    NOT_FAILURES,
    Site,
    failure_of,
    recent_events,
    signal_of,
    site_of,
)
from steprun.reconcile import status as statuses
from steprun.reconcile.decide import FinishAttempt, Outcome, decide, node_to_avoid
from steprun.reconcile.rules import Ending
from tests.unit.factories import (
    FINISHED,
    at,
    attempt_entry,
    condition,
    container_status,
    pending_status,
    pod,
    running_status,
    steprun,
    terminated,
    unschedulable,
    waiting,
)

CONFIG = OperatorConfig(default_timeout_seconds=3600, default_startup_timeout_seconds=300)
NOW = at(FINISHED) + timedelta(minutes=10)
NODE = "kind-worker"
# No retries of either kind: every failure below is the step's last.
FINAL = {"retries": {"limit": 0, "platformLimit": 0}}

STEP, PLATFORM, CONFIG_ = FailureCategory.STEP, FailureCategory.PLATFORM, FailureCategory.CONFIG
ADMISSION, SCHEDULING = FailureStage.ADMISSION, FailureStage.SCHEDULING
IMAGE_PULL, INIT = FailureStage.IMAGE_PULL, FailureStage.INIT
RUNNING, FINISHING = FailureStage.RUNNING, FailureStage.FINISHING


def _with_init(name: str, state: dict[str, Any]) -> dict[str, Any]:
    return pod(
        "Pending", waiting("PodInitializing"), init_statuses=[container_status(state, name=name)]
    )


def _uploader_failed() -> dict[str, Any]:
    body = pod("Failed", terminated(0))
    body["spec"]["containers"].append({"name": UPLOAD_CONTAINER, "image": "helper"})
    body["status"]["containerStatuses"].append(
        container_status(
            terminated(1, message='{"error": "ArtifactUploadFailed: store said 503"}'),
            name=UPLOAD_CONTAINER,
        )
    )
    return body


def _failed_download() -> dict[str, Any]:
    init = container_status(terminated(1, message="digest mismatch"), name=INIT_CONTAINER)
    return pod("Failed", waiting("PodInitializing"), init_statuses=[init])


def _node_gone() -> dict[str, Any]:
    target = condition("DisruptionTarget", "True")
    target.update(reason="DeletionByPodGC", message="PodGC: node no longer exists")
    body = pod("Running", {"running": {"startedAt": FINISHED}}, deleting=True)
    body["status"]["conditions"].append(target)
    return body


def _after(sr: StepRun, pod_body: dict[str, Any] | None) -> StepRunStatus:
    """The status the operator writes when decide() ends the attempt in flight."""
    decision = decide(sr, pod_body, NOW, CONFIG)
    assert isinstance(decision, FinishAttempt), decision
    assert decision.retry_at is None
    return statuses.attempt_finished(sr, decision.outcome, NOW, None, pod_body)


def _expected(
    category: FailureCategory,
    stage: FailureStage,
    container: str | None = None,
    exit_code: int | None = None,
    node: str | None = NODE,
) -> dict[str, Any]:
    return {
        "category": category,
        "stage": stage,
        "container": container,
        "exit_code": exit_code,
        "signal": signal_of(exit_code),
        "node": node,
    }


# reason -> how the operator reaches it -> the failure it must carry.
ATTEMPT_ENDINGS = [
    pytest.param(
        Reason.ERROR,
        running_status(),
        pod("Failed", terminated(3)),
        _expected(STEP, RUNNING, "step", 3),
        id="Error",
    ),
    pytest.param(
        Reason.ERROR,
        pending_status(),
        pod("Failed", None, init_statuses=[container_status(terminated(2), name="setup")]),
        _expected(STEP, INIT, "setup"),
        id="Error-in-an-init-container",
    ),
    pytest.param(
        Reason.OOM_KILLED,
        running_status(),
        pod("Failed", terminated(137, reason="OOMKilled")),
        _expected(STEP, RUNNING, "step", 137),
        id="OOMKilled",
    ),
    pytest.param(
        Reason.KILLED,
        running_status(),
        pod("Failed", terminated(137)),
        _expected(STEP, RUNNING, "step", 137),
        id="Killed",
    ),
    pytest.param(
        Reason.DEADLINE_EXCEEDED,
        running_status(),
        pod("Failed", terminated(137), reason="DeadlineExceeded"),
        _expected(STEP, RUNNING, "step", 137),
        id="DeadlineExceeded",
    ),
    pytest.param(
        Reason.STARTUP_TIMEOUT,
        pending_status(),
        unschedulable("Unschedulable", "0/1 nodes are available: 1 Insufficient cpu."),
        _expected(PLATFORM, SCHEDULING, node=None),
        id="StartupTimeout-unschedulable",
    ),
    pytest.param(
        Reason.STARTUP_TIMEOUT,
        pending_status(),
        pod("Pending", waiting("ContainerCreating")),
        _expected(PLATFORM, INIT, "step"),
        id="StartupTimeout-container-creating",
    ),
    pytest.param(
        Reason.IMAGE_PULL_FAILED,
        pending_status(),
        pod("Pending", waiting("ImagePullBackOff", "dial tcp 10.0.0.9:443: i/o timeout")),
        _expected(PLATFORM, IMAGE_PULL, "step"),
        id="ImagePullFailed-registry-unreachable",
    ),
    pytest.param(
        Reason.IMAGE_PULL_FAILED,
        pending_status(),
        pod("Pending", waiting("ErrImagePull", "busybox:nope: not found")),
        _expected(CONFIG_, IMAGE_PULL, "step"),
        id="ImagePullFailed-no-such-image",
    ),
    pytest.param(
        Reason.IMAGE_PULL_FAILED,
        pending_status(),
        pod("Pending", waiting("InvalidImageName", "couldn't parse image name")),
        _expected(CONFIG_, IMAGE_PULL, "step"),
        id="ImagePullFailed-invalid-name",
    ),
    pytest.param(
        Reason.WORKSPACE_UNAVAILABLE,
        pending_status(),
        unschedulable("Unschedulable", 'persistentvolumeclaim "src" not found'),
        _expected(CONFIG_, SCHEDULING, node=None),
        id="WorkspaceUnavailable-claim-missing",
    ),
    pytest.param(
        Reason.POD_DELETED,
        running_status(),
        None,
        _expected(PLATFORM, RUNNING, "step", node=None),
        id="PodDeleted-gone",
    ),
    pytest.param(
        Reason.POD_DELETED,
        running_status(),
        pod("Running", {"running": {"startedAt": FINISHED}}, deleting=True),
        _expected(PLATFORM, RUNNING, "step"),
        id="PodDeleted-deleting",
    ),
    pytest.param(
        Reason.POD_DELETED,
        pending_status(),
        None,
        _expected(PLATFORM, SCHEDULING, node=None),
        id="PodDeleted-before-it-started",
    ),
    pytest.param(
        Reason.POD_EVICTED,
        running_status(),
        pod("Failed", terminated(137), reason="Evicted", message="low on memory"),
        _expected(PLATFORM, RUNNING, "step", 137),
        id="Evicted",
    ),
    pytest.param(
        Reason.NODE_LOST,
        running_status(),
        _node_gone(),
        _expected(PLATFORM, RUNNING, "step"),
        id="NodeLost",
    ),
    pytest.param(
        Reason.ARTIFACT_UPLOAD_FAILED,
        running_status(),
        _uploader_failed(),
        _expected(PLATFORM, FINISHING, UPLOAD_CONTAINER, 0),
        id="ArtifactUploadFailed",
    ),
    pytest.param(
        Reason.ARTIFACT_DOWNLOAD_FAILED,
        pending_status(),
        _failed_download(),
        _expected(PLATFORM, INIT, INIT_CONTAINER),
        id="ArtifactDownloadFailed",
    ),
]


@pytest.mark.parametrize(("reason", "status", "pod_body", "expected"), ATTEMPT_ENDINGS)
def test_an_attempt_that_ends_the_step_records_its_failure_on_both(
    reason: Reason,
    status: dict[str, Any],
    pod_body: dict[str, Any] | None,
    expected: dict[str, Any],
) -> None:
    sr = steprun(spec=FINAL, status=status)
    if reason == Reason.ARTIFACT_UPLOAD_FAILED:
        sr = steprun(
            spec={**FINAL, "artifacts": {"outputs": [{"name": "d", "path": "/d"}]}}, status=status
        )

    ended = _after(sr, pod_body)

    assert ended.reason == reason
    assert ended.phase in TERMINAL_PHASES
    assert ended.failure is not None
    assert ended.failure.reason == ended.reason
    got = ended.failure.model_dump(include=set(expected))
    assert got == expected
    assert ended.attempts[-1].failure == ended.failure


@pytest.mark.parametrize(
    ("phase", "reason", "category"),
    [
        (Phase.REJECTED, Reason.PERMISSION_DENIED, CONFIG_),
        (Phase.REJECTED, Reason.POLICY_NOT_FOUND, CONFIG_),
        (Phase.FAILED, Reason.INVALID_SPEC, CONFIG_),
        (Phase.FAILED, Reason.WORKSPACE_UNAVAILABLE, CONFIG_),
        (Phase.FAILED, Reason.CREATE_FAILED, CONFIG_),
    ],
)
def test_a_step_ended_before_any_pod_failed_at_admission(
    phase: Phase, reason: Reason, category: FailureCategory
) -> None:
    ended = statuses.terminal(steprun(), Ending(phase, reason, "why"), NOW)

    assert ended.failure == Failure(category=category, stage=ADMISSION, reason=reason)


def test_a_refused_pod_is_an_attempt_that_failed_at_admission() -> None:
    sr = statuses.with_attempt(steprun(spec=FINAL), 1, "build-42-lint-1")
    outcome = Outcome(Phase.FAILED, Reason.CREATE_FAILED, "the API server refused Pod x")

    ended = statuses.attempt_finished(sr, outcome, NOW, None, None)

    expected = Failure(category=CONFIG_, stage=ADMISSION, reason=Reason.CREATE_FAILED)
    assert ended.failure == expected
    assert ended.attempts[-1].failure == expected


@pytest.mark.parametrize(
    ("status", "stage"),
    [
        pytest.param(None, ADMISSION, id="unreadable-step"),
        pytest.param(running_status(), RUNNING, id="while-running"),
    ],
)
def test_a_step_the_operator_gives_up_on_is_the_platforms_failure(
    status: dict[str, Any] | None, stage: FailureStage
) -> None:
    site = statuses.attempt_site(steprun(status=status), None) if status else None

    ended = statuses.given_up(
        1, Ending(Phase.FAILED, Reason.RECONCILE_FAILED, "refused"), NOW, site
    )

    assert ended.failure is not None
    assert (ended.failure.category, ended.failure.stage) == (PLATFORM, stage)


def test_cancelled_and_succeeded_steps_carry_no_failure() -> None:
    sr = steprun(status=running_status())
    cancelled = statuses.terminal(sr, Ending(Phase.CANCELLED, Reason.CANCELLED, "cancelled"), NOW)
    done = statuses.attempt_finished(
        sr, Outcome(Phase.SUCCEEDED, Reason.COMPLETED, "ok", exit_code=0), NOW, None, None
    )

    assert cancelled.failure is None and done.failure is None
    assert done.attempts[-1].failure is None


def test_every_reason_is_either_a_failure_of_the_table_or_none() -> None:
    covered = {r.value for r in Reason} - set(NOT_FAILURES)
    assert covered <= set(CLASSIFICATION), covered - set(CLASSIFICATION)
    tested = {p.values[0] for p in ATTEMPT_ENDINGS} | {
        Reason.PERMISSION_DENIED,
        Reason.POLICY_NOT_FOUND,
        Reason.INVALID_SPEC,
        Reason.CREATE_FAILED,
        Reason.RECONCILE_FAILED,
        # Kueue's, through reconcile.queueing: test_kueue_endings_are_the_platforms.
        Reason.PREEMPTED,
        Reason.QUEUE_TIMEOUT,
    }
    assert covered == {str(r) for r in tested}


def test_kueue_endings_are_the_platforms() -> None:
    preempted = failure_of(Reason.PREEMPTED, "evicted by Kueue", site_of(pod("Running")))
    assert preempted is not None and preempted.category == PLATFORM
    timed_out = failure_of(Reason.QUEUE_TIMEOUT, "not admitted", None)
    assert timed_out is not None
    assert (timed_out.category, timed_out.stage) == (PLATFORM, FailureStage.ADMISSION)


@pytest.mark.parametrize("reason", sorted(NOT_FAILURES))
def test_reasons_that_are_no_failure_record_none(reason: str) -> None:
    assert failure_of(reason, "", Site(RUNNING, "step", NODE)) is None


def test_an_unknown_reason_is_the_kubelets_refusal_of_the_pod() -> None:
    failure = failure_of("OutOfcpu", "Node didn't have enough resource", site_of(pod("Failed")))

    assert failure is not None
    assert (failure.category, failure.stage, failure.node) == (PLATFORM, INIT, NODE)


@pytest.mark.parametrize(
    ("exit_code", "signal"),
    [(None, None), (0, None), (1, None), (128, None), (130, 2), (137, 9), (143, 15), (255, None)],
)
def test_signal_of(exit_code: int | None, signal: int | None) -> None:
    assert signal_of(exit_code) == signal


def test_recent_events_keep_the_last_five_oldest_first() -> None:
    events = [
        {
            "reason": f"R{n}",
            "message": f"m{n}",
            "type": "Warning",
            "count": n,
            "lastTimestamp": f"2024-05-01T10:00:0{n}Z",
        }
        for n in (7, 1, 5, 3, 2, 6, 4)
    ]

    kept = recent_events(events)

    assert [e.reason for e in kept] == ["R3", "R4", "R5", "R6", "R7"]
    assert kept[-1].count == 7 and kept[-1].last_time == "2024-05-01T10:00:07Z"


def test_a_platform_retry_avoids_the_node_the_platform_failed_it_on() -> None:
    failure = {"category": "Platform", "stage": "Running", "reason": "Evicted", "node": "n1"}
    own = {"category": "Step", "stage": "Running", "reason": "Error", "node": "n2"}
    sr = steprun(
        status=pending_status(
            3,
            attempts=[
                attempt_entry(1, reason="Error", failure=own),
                attempt_entry(2, reason="Evicted", failure=failure),
                attempt_entry(3),
            ],
        )
    )

    assert node_to_avoid(sr, 3) == "n1"
    assert node_to_avoid(sr, 2) is None
    assert node_to_avoid(sr, 4) is None
