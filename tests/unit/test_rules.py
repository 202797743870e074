"""The reconciler's smaller decisions (reconcile/rules.py), as tables."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from steprun.api.models import Phase, Reason
from steprun.config import OperatorConfig
from steprun.reconcile.decide import FinishAttempt, Outcome
from steprun.reconcile.rules import (
    Ending,
    cancel_message,
    cancelled,
    create_given_up,
    create_refused,
    event_of,
    explained,
    invalid_spec,
    may_quote_the_pod,
    needs_failure_events,
    needs_pod_created,
    never_seen_running,
    next_attempt,
    reapply_to,
    reconcile_failed,
    rejected,
    seconds_until,
    with_mount_failure,
    workspace_unavailable,
)
from tests.unit.factories import (
    at,
    attempt_entry,
    pending_status,
    pod_name,
    retrying_status,
    running_status,
    steprun,
    steprun_body,
    terminal_status,
)

NOW = at("2025-01-01T00:10:00Z")
RETRY_AT = "2025-01-01T00:11:00Z"


@pytest.mark.parametrize(
    ("attempt", "pod", "expected"),
    [
        pytest.param(None, None, 1, id="nothing-recorded"),
        pytest.param(None, "x-1", 1, id="no-attempt-number"),
        pytest.param(2, None, 1, id="no-pod-recorded"),
        pytest.param(2, "x-2", 3, id="retry-of-the-recorded-attempt"),
    ],
)
def test_next_attempt(attempt: int | None, pod: str | None, expected: int) -> None:
    assert next_attempt(attempt, pod) == expected


@pytest.mark.parametrize(
    ("body", "cached", "expected"),
    [
        pytest.param(None, [], False, id="gone"),
        pytest.param(steprun_body(), [], True, id="new"),
        pytest.param(steprun_body(), [pod_name(1)], False, id="new-pod-made-not-recorded"),
        pytest.param(steprun_body(status=pending_status()), [], False, id="following-its-pod"),
        pytest.param(steprun_body(status=retrying_status(1, RETRY_AT)), [], True, id="retry-due"),
        pytest.param(
            steprun_body(status=retrying_status(1, RETRY_AT)),
            [pod_name(1), pod_name(2)],
            False,
            id="retry-pod-made",
        ),
        pytest.param(
            steprun_body(status=retrying_status(1, RETRY_AT)),
            [pod_name(1)],
            True,
            id="retry-only-the-old-pod",
        ),
        pytest.param(
            steprun_body(status=terminal_status("Failed", "Error", podName=None)),
            [],
            False,
            id="terminal",
        ),
        pytest.param(steprun_body(spec={"cancel": True}), [], False, id="cancelled"),
        pytest.param(steprun_body(deleting=True), [], False, id="being-deleted"),
        pytest.param({**steprun_body(), "status": "garbage"}, [], False, id="unreadable"),
    ],
)
def test_needs_pod_created(body: dict[str, Any] | None, cached: list[str], expected: bool) -> None:
    assert needs_pod_created(body, cached) is expected


@pytest.mark.parametrize(
    ("startup", "blocked_for", "expected"),
    [
        pytest.param(None, 0, None, id="just-refused"),
        pytest.param(None, 299, None, id="within-the-default-300s"),
        pytest.param(None, 300, 300, id="default-spent"),
        pytest.param(30, 29, None, id="within-its-own-30s"),
        pytest.param(30, 31, 30, id="its-own-spent"),
    ],
)
def test_a_refused_pod_create_is_retried_for_the_startup_timeout(
    startup: int | None, blocked_for: int, expected: int | None
) -> None:
    sr = steprun(spec={"startupTimeoutSeconds": startup} if startup else {})
    since = NOW - timedelta(seconds=blocked_for)

    given_up = create_given_up(sr, OperatorConfig(), "p-1", since, NOW, "quota exceeded")

    if expected is None:
        assert given_up is None
    else:
        assert given_up == (
            f"Pod p-1 could not be created for {expected}s (startupTimeoutSeconds): quota exceeded"
        )


def startup_timeout(reason: str = Reason.STARTUP_TIMEOUT, delete: bool = True) -> FinishAttempt:
    return FinishAttempt(Outcome(Phase.FAILED, reason, "not running after 300s"), delete_pod=delete)


def mount_event(volume: str, message: str = "not found") -> dict[str, Any]:
    return {
        "reason": "FailedMount",
        "message": f'MountVolume.SetUp failed for volume "{volume}" : {message}',
        "lastTimestamp": "2025-01-01T00:05:00Z",
    }


@pytest.mark.parametrize(
    ("reason", "status", "expected"),
    [
        pytest.param(Reason.STARTUP_TIMEOUT, pending_status(), True, id="startup-timeout"),
        pytest.param("Evicted", running_status(), True, id="evicted"),
        pytest.param(Reason.ERROR, running_status(), False, id="the-steps-own-failure"),
        pytest.param(Reason.CREATE_FAILED, pending_status(), False, id="pod-never-created"),
        pytest.param(Reason.STARTUP_TIMEOUT, None, False, id="no-pod-recorded"),
    ],
)
def test_which_failures_the_pods_events_explain(
    reason: str, status: dict[str, Any] | None, expected: bool
) -> None:
    outcome = Outcome(Phase.FAILED, reason, "x")
    assert needs_failure_events(steprun(status=status), outcome) is expected


def test_a_success_reads_no_events() -> None:
    outcome = Outcome(Phase.SUCCEEDED, Reason.COMPLETED, "done")
    assert not needs_failure_events(steprun(status=running_status()), outcome)


def test_a_workspace_explanation_is_a_new_reason_with_its_own_retry_and_the_events_kept() -> None:
    sr = steprun(spec={"retries": {"limit": 1}}, status=pending_status())

    ended = explained(sr, startup_timeout(), [mount_event("workspace-0")], NOW)

    assert ended.outcome.reason == Reason.WORKSPACE_UNAVAILABLE
    assert ended.delete_pod and ended.retry_at is not None
    assert [e.reason for e in ended.outcome.events] == ["FailedMount"]


def test_without_events_the_end_is_unchanged() -> None:
    decision = startup_timeout()
    assert explained(steprun(status=pending_status()), decision, [], NOW) == decision


@pytest.mark.parametrize(
    ("events", "reason", "said"),
    [
        pytest.param([], Reason.STARTUP_TIMEOUT, None, id="no-events"),
        pytest.param(
            [mount_event("workspace-0")],
            Reason.WORKSPACE_UNAVAILABLE,
            "; a workspace cannot be mounted: FailedMount: ",
            id="workspace",
        ),
        pytest.param(
            [mount_event("context")],
            Reason.STARTUP_TIMEOUT,
            "; the step's context (its ConfigMap or Secret build-42-lint-context) cannot be "
            "mounted: FailedMount: ",
            id="context-deleted",
        ),
        pytest.param(
            [mount_event("context"), mount_event("workspace-0")],
            Reason.WORKSPACE_UNAVAILABLE,
            "; a workspace cannot be mounted",
            id="workspace-first",
        ),
    ],
)
def test_a_mount_failure_explains_a_startup_timeout(
    events: list[dict[str, Any]], reason: str, said: str | None
) -> None:
    decision = startup_timeout()

    explained = with_mount_failure(steprun(status=pending_status()), decision, events)

    assert explained.outcome.reason == reason
    if said is None:
        assert explained == decision
    else:
        assert explained.outcome.message.startswith("not running after 300s" + said)
        assert explained.delete_pod


@pytest.mark.parametrize(
    ("recorded", "fresh_status", "expected_attempt"),
    [
        pytest.param(True, running_status(), 1, id="same-attempt"),
        pytest.param(True, terminal_status("Cancelled", "Cancelled"), None, id="ended-meanwhile"),
        pytest.param(True, retrying_status(1, RETRY_AT), 1, id="same-attempt-retrying"),
        pytest.param(True, running_status(2), None, id="next-attempt-meanwhile"),
        pytest.param(False, None, 1, id="unrecorded-still-unrecorded"),
        pytest.param(False, running_status(), 1, id="unrecorded-now-recorded"),
    ],
)
def test_an_outcome_is_reapplied_to_the_fresh_object_only_for_its_attempt(
    recorded: bool, fresh_status: dict[str, Any] | None, expected_attempt: int | None
) -> None:
    created = "2025-01-01T00:00:01Z"
    sr = steprun(status=pending_status(attempts=[attempt_entry(1, creationTime=created)]))
    fresh = steprun(status=fresh_status)

    again = reapply_to(sr, fresh, recorded=recorded, now=NOW)

    if expected_attempt is None:
        assert again is None
        return
    assert again is not None and again.status.attempt == expected_attempt
    if fresh_status is None:
        # Recorded by the re-applied write, with the Pod's creation time.
        assert again.status.pod_name == pod_name(1)
        assert [a.creation_time for a in again.status.attempts] == [created]


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        pytest.param(Outcome(Phase.SUCCEEDED, Reason.COMPLETED, "done"), False, id="success"),
        pytest.param(
            Outcome(Phase.SUCCEEDED, Reason.COMPLETED, "done", outputs={"k": "v"}),
            True,
            id="success-with-outputs",
        ),
        pytest.param(Outcome(Phase.FAILED, Reason.ERROR, "exit 3"), True, id="failure"),
    ],
)
def test_which_outcomes_may_quote_the_pod(outcome: Outcome, expected: bool) -> None:
    assert may_quote_the_pod(outcome) is expected


def test_a_timer_fires_just_after_the_time_it_waits_for() -> None:
    assert seconds_until(NOW + timedelta(seconds=2), NOW) == pytest.approx(2.05)


@pytest.mark.parametrize(
    ("ending", "phase", "reason"),
    [
        pytest.param(invalid_spec("x"), Phase.FAILED, Reason.INVALID_SPEC, id="invalid-spec"),
        pytest.param(rejected("x"), Phase.REJECTED, Reason.PERMISSION_DENIED, id="rejected"),
        pytest.param(
            rejected("x", Reason.POLICY_NOT_FOUND),
            Phase.REJECTED,
            Reason.POLICY_NOT_FOUND,
            id="rejected-for-its-reason",
        ),
        pytest.param(
            workspace_unavailable("x"),
            Phase.FAILED,
            Reason.WORKSPACE_UNAVAILABLE,
            id="workspace-unavailable",
        ),
        pytest.param(create_refused("x"), Phase.FAILED, Reason.CREATE_FAILED, id="create-refused"),
        pytest.param(
            reconcile_failed("x"), Phase.FAILED, Reason.RECONCILE_FAILED, id="reconcile-failed"
        ),
        pytest.param(cancelled("x"), Phase.CANCELLED, Reason.CANCELLED, id="cancelled"),
    ],
)
def test_how_a_step_ends_without_a_pod(ending: Ending, phase: Phase, reason: Reason) -> None:
    assert (ending.phase, ending.reason, ending.message) == (phase, reason, "x")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param(pending_status(), ("Normal", "PodCreated"), id="pod-created"),
        pytest.param(running_status(), ("Normal", "Started"), id="started"),
        pytest.param(retrying_status(1, RETRY_AT), ("Warning", "Retrying"), id="retrying"),
        pytest.param(
            terminal_status("Succeeded", "Completed"), ("Normal", "Completed"), id="succeeded"
        ),
        pytest.param(
            terminal_status("Cancelled", "Cancelled"), ("Normal", "Cancelled"), id="cancelled"
        ),
        pytest.param(terminal_status("Failed", "OOMKilled"), ("Warning", "OOMKilled"), id="failed"),
        pytest.param(
            terminal_status("TimedOut", "DeadlineExceeded"),
            ("Warning", "DeadlineExceeded"),
            id="timed-out",
        ),
        pytest.param(
            terminal_status("Rejected", "PermissionDenied"),
            ("Warning", "PermissionDenied"),
            id="rejected",
        ),
    ],
)
def test_the_event_a_status_write_posts(status: dict[str, Any], expected: tuple[str, str]) -> None:
    assert event_of(steprun(status=status).status) == expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param(None, False, id="nothing-recorded"),
        pytest.param(pending_status(), True, id="pending"),
        pytest.param(running_status(), False, id="running"),
    ],
)
def test_an_attempt_never_seen_running(status: dict[str, Any] | None, expected: bool) -> None:
    assert never_seen_running(steprun(status=status)) is expected


@pytest.mark.parametrize(
    ("deleted", "pod", "said"),
    [
        pytest.param(
            ["x-2", "x-1"],
            "x-2",
            "cancelled: Pod x-1, x-2 deleted with a 30s grace period",
            id="deleted",
        ),
        pytest.param([], "x-1", "cancelled: Pod x-1 was already being deleted", id="already-going"),
        pytest.param([], None, "cancelled before a Pod was created", id="no-pod"),
    ],
)
def test_what_a_cancel_says(deleted: list[str], pod: str | None, said: str) -> None:
    assert cancel_message(deleted, pod, 30) == said
