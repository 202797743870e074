"""Reading a Pod whose step has artifacts: the uploader and the download init container."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from steprun.api.models import StepRun
from steprun.artifacts.names import INIT_CONTAINER, UPLOAD_CONTAINER
from steprun.config import OperatorConfig
from steprun.observe.pod import observe_pod
from steprun.reconcile.decide import FinishAttempt, decide
from steprun.reconcile.status import attempt_finished, to_patch
from tests.unit.factories import at

SHA = "b" * 64
T0, T1 = "2024-05-01T10:00:05Z", "2024-05-01T10:01:00Z"


def terminated(code: int, message: str = "", reason: str = "") -> dict[str, Any]:
    state: dict[str, Any] = {"exitCode": code, "startedAt": T0, "finishedAt": T1}
    if message:
        state["message"] = message
    state["reason"] = reason or ("Completed" if code == 0 else "Error")
    return {"terminated": state}


def report(artifacts: list[dict[str, Any]], error: str = "", lost: bool = False) -> str:
    body: dict[str, Any] = {"artifacts": artifacts}
    if error:
        body["error"] = error
    if lost:
        body["lost"] = True
    return json.dumps(body)


def pod(
    phase: str,
    step: dict[str, Any],
    uploader: dict[str, Any] | None,
    init: dict[str, Any] | None = None,
) -> dict[str, Any]:
    statuses = [{"name": "step", "state": step}]
    containers = [{"name": "step", "image": "busybox"}]
    if uploader is not None:
        statuses.append({"name": UPLOAD_CONTAINER, "state": uploader})
        containers.append({"name": UPLOAD_CONTAINER, "image": "helper"})
    status: dict[str, Any] = {"phase": phase, "containerStatuses": statuses, "startTime": T0}
    if init is not None:
        status["initContainerStatuses"] = [{"name": INIT_CONTAINER, "state": init}]
    return {
        "metadata": {"name": "build-42-1", "creationTimestamp": T0},
        "spec": {"nodeName": "n", "containers": containers, "activeDeadlineSeconds": 60},
        "status": status,
    }


DIST = {"name": "dist", "size": 120, "sha256": SHA}
RUNNING = {"running": {"startedAt": T0}}
WAITING = {"waiting": {"reason": "ContainerCreating"}}


@pytest.mark.parametrize(
    ("body", "state", "reason", "message_part", "uploads"),
    [
        pytest.param(
            pod("Running", terminated(0), RUNNING),
            "running",
            "Started",
            "uploading its outputs",
            0,
            id="step-done-uploader-busy-is-not-finished",
        ),
        pytest.param(
            pod("Running", WAITING, RUNNING),
            "pending",
            "ContainerCreating",
            "",
            0,
            id="uploader-running-step-not-started",
        ),
        pytest.param(
            pod("Succeeded", terminated(0), terminated(0, report([DIST]))),
            "succeeded",
            "Completed",
            "",
            1,
            id="uploaded",
        ),
        pytest.param(
            pod(
                "Failed",
                terminated(0),
                terminated(
                    1, report([], 'ArtifactUploadFailed: output "dist": connection refused')
                ),
            ),
            "failed",
            "ArtifactUploadFailed",
            'output "dist": connection refused',
            0,
            id="upload-failed",
        ),
        pytest.param(
            pod("Running", terminated(0), terminated(1, report([], "ArtifactUploadFailed: x: no"))),
            "failed",
            "ArtifactUploadFailed",
            "x: no",
            0,
            id="upload-failed-before-the-pod-phase-catches-up",
        ),
        pytest.param(
            pod("Failed", terminated(3), terminated(0, report([DIST]))),
            "failed",
            "Error",
            "exited with code 3",
            1,
            id="failed-step-still-uploads",
        ),
        pytest.param(
            pod("Failed", terminated(3), terminated(1, report([], "ArtifactUploadFailed: x: no"))),
            "failed",
            "Error",
            "x: no",
            0,
            id="failed-step-and-failed-upload-keeps-step-reason",
        ),
        pytest.param(
            pod(
                "Failed",
                WAITING,
                RUNNING,
                init=terminated(1, 'ArtifactDownloadFailed: input "dist" (k): NoSuchKey (404)'),
            ),
            "failed",
            "ArtifactDownloadFailed",
            'input "dist" (k): NoSuchKey (404)',
            0,
            id="download-failed",
        ),
        pytest.param(
            pod(
                "Failed", terminated(137, reason="OOMKilled"), terminated(0, report([], lost=True))
            ),
            "failed",
            "OOMKilled",
            "",
            0,
            id="killed-before-packing",
        ),
    ],
)
def test_observe_pod_with_artifacts(
    body: dict[str, Any], state: str, reason: str, message_part: str, uploads: int
) -> None:
    obs = observe_pod(body)
    assert (obs.state, obs.reason) == (state, reason)
    assert message_part in obs.message
    assert len(obs.artifacts) == uploads


CONFIG = OperatorConfig(artifacts_endpoint="http://s:1", artifacts_bucket="b")


def steprun(attempt: int, previous: list[dict[str, Any]], retries: int = 0) -> StepRun:
    return StepRun.from_body(
        {
            "apiVersion": "steprun.dev/v1alpha1",
            "kind": "StepRun",
            "metadata": {"name": "build-42", "namespace": "ci", "uid": "u", "generation": 1},
            "spec": {
                "image": "busybox",
                "command": ["make"],
                "retries": {"limit": retries},
                "artifacts": {"outputs": [{"name": "dist", "path": "/w"}]},
            },
            "status": {
                "phase": "Running",
                "attempt": attempt,
                "podName": f"build-42-{attempt}",
                "attempts": [{"attempt": attempt, "podName": f"build-42-{attempt}"}],
                "artifacts": previous,
            },
        }
    )


def test_a_retrys_uploads_are_listed_beside_the_first_attempts() -> None:
    first = {
        "name": "dist",
        "attempt": 1,
        "key": "ci/build-42/u/1/dist.tgz",
        "size": 5,
        "sha256": SHA,
    }
    sr = steprun(2, [first], retries=2)
    body = pod("Failed", terminated(1), terminated(0, report([{**DIST, "sha256": "c" * 64}])))
    decision = decide(sr, body, at(T1) + timedelta(seconds=1), CONFIG)
    assert isinstance(decision, FinishAttempt)
    doc = to_patch(attempt_finished(sr, decision.outcome, at(T1), decision.retry_at))
    assert [(a["attempt"], a["key"], a["sha256"]) for a in doc["artifacts"]] == [
        (1, "ci/build-42/u/1/dist.tgz", SHA),
        (2, "ci/build-42/u/2/dist.tgz", "c" * 64),
    ]


def test_uploads_the_spec_never_declared_are_ignored() -> None:
    sr = steprun(1, [])
    forged = {"name": "extra", "size": 1, "sha256": SHA}
    body = pod("Succeeded", terminated(0), terminated(0, report([DIST, forged])))
    decision = decide(sr, body, at(T1), CONFIG)
    assert isinstance(decision, FinishAttempt)
    assert [a.name for a in decision.outcome.artifacts] == ["dist"]
