"""The status documents written for each transition, compared whole: a merge patch must name
every field it clears, so a missing key is as wrong as a wrong value."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from steprun.api.models import AdmittedSandbox, Phase, Reason, StepRun, StepRunStatus
from steprun.reconcile import status as statuses
from steprun.reconcile.decide import Outcome
from steprun.reconcile.rules import Ending
from tests.unit.factories import (
    CREATED,
    FINISHED,
    STARTED,
    at,
    attempt_entry,
    condition_entry,
    pending_status,
    pod_name,
    retrying_status,
    running_status,
    steprun,
)


class _Wire:
    """The transitions as the merge patches the reconciler writes (each serialised once)."""

    def __getattr__(self, name: str) -> Callable[..., dict[str, Any]]:
        transition = getattr(statuses, name)

        def written(*args: Any, **kwargs: Any) -> dict[str, Any]:
            status = transition(*args, **kwargs)
            assert isinstance(status, StepRunStatus)
            return statuses.to_patch(status)

        return written


wire = _Wire()
NOW = "2024-05-01T10:01:05Z"  # 65s after CREATED
OUTPUTS = {"digest": "sha256:abc"}
EXIT_3 = "the step exited with code 3"

# Every field of the status; a document sends each one, None meaning "remove".
BLANK: dict[str, Any] = {
    "phase": None,
    "reason": None,
    "message": None,
    "exitCode": None,
    "outputs": None,
    "podName": None,
    "attempt": None,
    "attempts": [],
    "startTime": None,
    "completionTime": None,
    "duration": None,
    "observedGeneration": None,
    "conditions": [],
    "nextAttemptTime": None,
    "admitted": None,
    "failure": None,
}


# Where a step that exits 3 failed: its own code, while running, in its container.
EXIT_3_FAILURE = {
    "category": "Step",
    "stage": "Running",
    "reason": "Error",
    "container": "step",
    "exitCode": 3,
}


def finished_attempt(attempt: int = 1) -> dict[str, Any]:
    return attempt_entry(
        attempt,
        exitCode=3,
        reason="Error",
        message=EXIT_3,
        startTime=STARTED,
        completionTime=FINISHED,
        failure=EXIT_3_FAILURE,
    )


def failed_exit_3(**fields: Any) -> Outcome:
    values: dict[str, Any] = {
        "exit_code": 3,
        "start_time": STARTED,
        "completion_time": FINISHED,
    } | fields
    return Outcome(Phase.FAILED, "Error", EXIT_3, **values)


# ---------------------------------------------------------------- pending


def test_pending_first_attempt() -> None:
    doc = wire.pending(steprun(generation=3), 1, pod_name(1), at(NOW))

    message = "Pod build-42-lint-1 created for attempt 1; waiting for it to start"
    assert doc == BLANK | {
        "phase": "Pending",
        "reason": "PodCreated",
        "message": message,
        "podName": pod_name(1),
        "attempt": 1,
        "attempts": [{"attempt": 1, "podName": pod_name(1), "creationTime": NOW}],
        "startTime": NOW,
        "observedGeneration": 3,
        "conditions": [condition_entry("Unknown", "PodCreated", NOW, message, generation=3)],
    }


def test_pending_next_attempt_clears_the_retry_and_keeps_history() -> None:
    sr = steprun(status=retrying_status(1, "2024-05-01T10:01:30Z"))

    doc = wire.pending(sr, 2, pod_name(2), at("2024-05-01T10:01:30Z"))

    message = "Pod build-42-lint-2 created for attempt 2; waiting for it to start"
    assert doc == BLANK | {
        "phase": "Pending",
        "reason": "PodCreated",
        "message": message,
        "podName": pod_name(2),
        "attempt": 2,
        "attempts": [
            finished_attempt(1),
            {"attempt": 2, "podName": pod_name(2), "creationTime": "2024-05-01T10:01:30Z"},
        ],
        "startTime": CREATED,
        "observedGeneration": 1,
        "conditions": [condition_entry("Unknown", "PodCreated", "2024-05-01T10:01:30Z", message)],
    }


def test_pending_records_the_admission_once() -> None:
    admitted = AdmittedSandbox(
        policy="default",
        uses="plugin:eslint/fix",
        plugin="eslint",
        handler="fix",
        image="registry.example/eslint:9",
        granted=["network.egress"],
        timeout_seconds=600,
    )
    stored = {
        "policy": "default",
        "uses": "plugin:eslint/fix",
        "plugin": "eslint",
        "handler": "fix",
        "image": "registry.example/eslint:9",
        "granted": ["network.egress"],
        "timeoutSeconds": 600,
        "egress": [],
    }

    def sent(doc: dict[str, Any]) -> dict[str, Any]:
        # Unset fields travel as nulls, which a merge patch leaves absent.
        return {k: v for k, v in doc["admitted"].items() if v is not None}

    assert sent(wire.pending(steprun(), 1, pod_name(1), at(NOW), admitted)) == stored

    sr = steprun(status=retrying_status(1, NOW, admitted=stored))
    assert sent(wire.pending(sr, 2, pod_name(2), at(NOW))) == stored


def test_attempts_stay_ordered() -> None:
    sr = steprun(
        status=retrying_status(
            2, NOW, attempts=[finished_attempt(2), finished_attempt(1)], podName=pod_name(2)
        )
    )

    doc = wire.pending(sr, 3, pod_name(3), at(NOW))

    assert doc["attempts"] == [
        finished_attempt(1),
        finished_attempt(2),
        {"attempt": 3, "podName": pod_name(3), "creationTime": NOW},
    ]


# ---------------------------------------------------------------- running


def test_running() -> None:
    doc = wire.running(steprun(status=pending_status()), STARTED, at(NOW))

    message = "attempt 1 is running in Pod build-42-lint-1"
    assert doc == BLANK | pending_status() | {
        "phase": "Running",
        "reason": "Started",
        "message": message,
        "attempts": [{"attempt": 1, "podName": pod_name(1), "startTime": STARTED}],
        "conditions": [condition_entry("Unknown", "Started", NOW, message)],
    }


def test_running_without_a_container_start_time_uses_now() -> None:
    doc = wire.running(steprun(status=pending_status()), None, at(NOW))

    assert doc["attempts"] == [{"attempt": 1, "podName": pod_name(1), "startTime": NOW}]
    assert doc["startTime"] == CREATED


def test_running_second_attempt_updates_it_in_place() -> None:
    status = pending_status(2, attempts=[finished_attempt(1), attempt_entry(2)])

    doc = wire.running(steprun(status=status), STARTED, at(NOW))

    assert doc["attempts"] == [finished_attempt(1), attempt_entry(2, startTime=STARTED)]
    assert doc["message"] == "attempt 2 is running in Pod build-42-lint-2"


# ---------------------------------------------------------------- attempt finished


def test_attempt_failed_with_a_retry() -> None:
    sr = steprun(status=running_status())
    retry_at = at(NOW) + timedelta(seconds=30)

    doc = wire.attempt_finished(sr, failed_exit_3(outputs=OUTPUTS), at(NOW), retry_at)

    message = (
        "attempt 1 failed (Error: the step exited with code 3); "
        "attempt 2 starts at 2024-05-01T10:01:35Z"
    )
    assert doc == BLANK | {
        "phase": "Pending",
        "reason": "Retrying",
        "message": message,
        "exitCode": 3,
        "podName": pod_name(1),
        "attempt": 1,
        "attempts": [finished_attempt(1)],
        "startTime": CREATED,
        "observedGeneration": 1,
        "conditions": [condition_entry("Unknown", "Retrying", NOW, message)],
        "nextAttemptTime": "2024-05-01T10:01:35Z",
    }


def test_attempt_succeeded() -> None:
    outcome = Outcome(
        Phase.SUCCEEDED,
        "Completed",
        "the step completed",
        exit_code=0,
        outputs=OUTPUTS,
        start_time=STARTED,
        completion_time=FINISHED,
    )

    doc = wire.attempt_finished(steprun(status=running_status()), outcome, at(NOW), None)

    assert doc == BLANK | {
        "phase": "Succeeded",
        "reason": "Completed",
        "message": "the step completed",
        "exitCode": 0,
        "outputs": OUTPUTS,
        "podName": pod_name(1),
        "attempt": 1,
        "attempts": [
            attempt_entry(
                1,
                exitCode=0,
                reason="Completed",
                message="the step completed",
                startTime=STARTED,
                completionTime=FINISHED,
            )
        ],
        "startTime": CREATED,
        "completionTime": NOW,
        "duration": "1m5s",
        "observedGeneration": 1,
        "conditions": [condition_entry("True", "Completed", NOW, "the step completed")],
    }


def test_last_attempt_failed() -> None:
    status = running_status(
        2,
        attempts=[finished_attempt(1), attempt_entry(2, startTime=STARTED)],
        exitCode=3,
    )

    doc = wire.attempt_finished(steprun(status=status), failed_exit_3(), at(NOW), None)

    assert doc == BLANK | {
        "phase": "Failed",
        "reason": "Error",
        "message": EXIT_3,
        "exitCode": 3,
        "podName": pod_name(2),
        "attempt": 2,
        "attempts": [finished_attempt(1), finished_attempt(2)],
        "startTime": CREATED,
        "completionTime": NOW,
        "duration": "1m5s",
        "observedGeneration": 1,
        "conditions": [condition_entry("False", "Error", NOW, EXIT_3)],
        "failure": EXIT_3_FAILURE,
    }


def test_attempt_failed_keeps_its_outputs_on_the_terminal_status() -> None:
    outcome = failed_exit_3(outputs={"failed": ["a.js"]})

    doc = wire.attempt_finished(steprun(status=running_status()), outcome, at(NOW), None)

    assert doc["outputs"] == {"failed": ["a.js"]}


def test_attempt_lost_without_times_keeps_the_known_start() -> None:
    outcome = Outcome(Phase.FAILED, "PodDeleted", "Pod build-42-lint-1 was deleted")

    doc = wire.attempt_finished(steprun(status=running_status()), outcome, at(NOW), None)

    assert doc["attempts"] == [
        attempt_entry(
            1,
            reason="PodDeleted",
            message="Pod build-42-lint-1 was deleted",
            startTime=STARTED,
            completionTime=NOW,
            failure={
                "category": "Platform",
                "stage": "Running",
                "reason": "PodDeleted",
                "container": "step",
            },
        )
    ]
    assert doc["exitCode"] is None
    assert doc["phase"] == "Failed"


def test_timed_out_is_a_failure_condition() -> None:
    outcome = Outcome(Phase.TIMED_OUT, "DeadlineExceeded", "too slow", exit_code=137)

    doc = wire.attempt_finished(steprun(status=running_status()), outcome, at(NOW), None)

    assert (doc["phase"], doc["reason"], doc["exitCode"]) == ("TimedOut", "DeadlineExceeded", 137)
    assert doc["conditions"] == [condition_entry("False", "DeadlineExceeded", NOW, "too slow")]


# ---------------------------------------------------------------- terminal without an outcome


def test_cancelled_while_running_closes_the_attempt() -> None:
    message = "cancelled: Pod build-42-lint-1 deleted with a 30s grace period"
    sr = steprun(spec={"cancel": True}, status=running_status(), generation=2)

    doc = wire.terminal(sr, Ending(Phase.CANCELLED, Reason.CANCELLED, message), at(NOW))

    assert doc == BLANK | {
        "phase": "Cancelled",
        "reason": "Cancelled",
        "message": message,
        "podName": pod_name(1),
        "attempt": 1,
        "attempts": [
            attempt_entry(
                1, reason="Cancelled", message=message, startTime=STARTED, completionTime=NOW
            )
        ],
        "startTime": CREATED,
        "completionTime": NOW,
        "duration": "1m5s",
        "observedGeneration": 2,
        "conditions": [condition_entry("False", "Cancelled", NOW, message, generation=2)],
    }


def test_cancelled_during_backoff_keeps_the_finished_attempt() -> None:
    sr = steprun(spec={"cancel": True}, status=retrying_status(1, "2024-05-01T10:05:00Z"))

    doc = wire.terminal(sr, Ending(Phase.CANCELLED, Reason.CANCELLED, "cancelled"), at(NOW))

    assert doc["attempts"] == [finished_attempt(1)]
    assert doc["nextAttemptTime"] is None
    assert (doc["phase"], doc["completionTime"], doc["duration"]) == ("Cancelled", NOW, "1m5s")


def test_rejected_before_any_pod() -> None:
    message = 'policy "default" does not grant network.egress'
    sr = steprun(generation=2)

    doc = wire.terminal(sr, Ending(Phase.REJECTED, Reason.PERMISSION_DENIED, message), at(NOW))

    assert doc == BLANK | {
        "phase": "Rejected",
        "reason": "PermissionDenied",
        "message": message,
        "startTime": NOW,
        "completionTime": NOW,
        "duration": "0s",
        "observedGeneration": 2,
        "conditions": [condition_entry("False", "PermissionDenied", NOW, message, generation=2)],
        "failure": {"category": "Config", "stage": "Admission", "reason": "PermissionDenied"},
    }


def test_invalid_spec_on_a_retry_leaves_the_attempts_alone() -> None:
    sr = steprun(status=retrying_status(1, NOW))

    doc = wire.terminal(sr, Ending(Phase.FAILED, Reason.INVALID_SPEC, "secret gh is gone"), at(NOW))

    assert StepRunStatus.model_validate(doc).attempts == sr.status.attempts
    assert (doc["phase"], doc["nextAttemptTime"]) == ("Failed", None)


# ---------------------------------------------------------------- conditions


def _pending(sr: StepRun) -> dict[str, Any]:
    return wire.pending(sr, 1, pod_name(1), at(NOW))


def _running(sr: StepRun) -> dict[str, Any]:
    return wire.running(sr, STARTED, at(NOW))


def _retry(sr: StepRun) -> dict[str, Any]:
    return wire.attempt_finished(sr, failed_exit_3(), at(NOW), at(NOW) + timedelta(seconds=9))


def _failed(sr: StepRun) -> dict[str, Any]:
    return wire.attempt_finished(sr, failed_exit_3(), at(NOW), None)


@pytest.mark.parametrize(
    ("status", "transition", "since"),
    [
        pytest.param(None, _pending, NOW, id="first"),
        pytest.param(pending_status(), _pending, CREATED, id="same-status-same-reason"),
        pytest.param(pending_status(), _running, NOW, id="same-status-new-reason"),
        pytest.param(running_status(), _running, STARTED, id="running-again"),
        pytest.param(retrying_status(1, NOW), _retry, FINISHED, id="retrying-again"),
        pytest.param(running_status(), _failed, NOW, id="new-status"),
    ],
)
def test_condition_transition_time(
    status: dict[str, Any] | None,
    transition: Callable[[StepRun], dict[str, Any]],
    since: str,
) -> None:
    doc = transition(steprun(status=status))

    [condition] = doc["conditions"]
    assert condition["lastTransitionTime"] == since


# ---------------------------------------------------------------- every document


def _documents(sr: StepRun) -> list[dict[str, Any]]:
    return [
        _pending(sr),
        _running(sr),
        _retry(sr),
        _failed(sr),
        wire.terminal(sr, Ending(Phase.CANCELLED, Reason.CANCELLED, "cancelled"), at(NOW)),
    ]


@pytest.mark.parametrize(
    "status",
    [None, pending_status(), running_status(), retrying_status(1, NOW)],
    ids=["new", "pending", "running", "retrying"],
)
def test_every_document_is_a_valid_status_of_this_generation(status: dict[str, Any] | None) -> None:
    sr = steprun(status=status, generation=7)
    for doc in _documents(sr):
        assert set(doc) == set(BLANK)
        assert doc["observedGeneration"] == 7
        assert [c["observedGeneration"] for c in doc["conditions"]] == [7]
        assert isinstance(StepRunStatus.model_validate(doc), StepRunStatus)
        terminal = Phase(doc["phase"]).terminal
        assert (doc["completionTime"] is not None) is terminal
        assert (doc["duration"] is not None) is terminal
        if not terminal:
            assert doc["outputs"] is None


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (CREATED, CREATED, "0s"),
        (CREATED, "2024-05-01T10:00:59Z", "59s"),
        (CREATED, "2024-05-01T10:01:00Z", "1m0s"),
        (CREATED, NOW, "1m5s"),
        (CREATED, "2024-05-01T11:00:00Z", "1h0m0s"),
        (CREATED, "2024-05-01T12:03:04Z", "2h3m4s"),
        (CREATED, "2024-05-03T10:00:00Z", "48h0m0s"),
        (NOW, CREATED, "0s"),
        (None, NOW, None),
        (CREATED, None, None),
    ],
)
def test_duration(start: str | None, end: str | None, expected: str | None) -> None:
    assert statuses.duration(start, end) == expected


# ---------------------------------------------------------------- given up


def test_given_up_names_only_what_it_knows() -> None:
    """Written without reading the current status: the attempts, the Pod and the admission
    already recorded stay as they are; outputs (maybe what made the status too large) and a
    pending retry are cleared."""
    message = "the API server refused a request this step needs: too large"

    doc = wire.given_up(4, Ending(Phase.FAILED, Reason.RECONCILE_FAILED, message), at(NOW))

    assert doc == {
        "phase": "Failed",
        "reason": "ReconcileFailed",
        "message": message,
        "completionTime": NOW,
        "nextAttemptTime": None,
        "outputs": None,
        "observedGeneration": 4,
        "conditions": [condition_entry("False", "ReconcileFailed", NOW, message, generation=4)],
        "failure": {"category": "Platform", "stage": "Admission", "reason": "ReconcileFailed"},
    }


def test_given_up_without_a_generation_still_names_the_field() -> None:
    doc = wire.given_up(None, Ending(Phase.FAILED, Reason.INVALID_SPEC, "unreadable"), at(NOW))

    assert doc["observedGeneration"] is None
    assert doc["conditions"][0]["observedGeneration"] is None
