"""Local steps end to end: the operator running against the real cluster."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.support.operator_process import OperatorProcess
from tests.support.steps import Steps, assert_each_pod_created_once, eventually

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (REPO / "examples").glob("*.yaml"))
AUDIT_LOG = REPO / ".cluster" / "logs" / "audit.log"


@pytest.fixture
def steps(api_client: client.ApiClient, namespace: str, operator: OperatorProcess) -> Steps:
    return Steps(api_client, namespace)


def expectations(path: Path) -> dict[str, str]:
    line = next(line for line in path.read_text().splitlines() if line.startswith("# expect:"))
    return dict(re.findall(r"(\w+)=(\{.*\}|\S+)", line))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_reaches_its_documented_phase(steps: Steps, example: Path) -> None:
    expected = expectations(example)
    (name,) = steps.apply_file(example)
    if expected.get("then") == "cancel":
        steps.wait_phase(name, "Running", timeout=60)
        steps.patch_spec(name, {"cancel": True})
    status = steps.wait_terminal(name, timeout=120)
    assert status["phase"] == expected["phase"], status
    assert status["reason"] == expected["reason"], status
    if "exitCode" in expected:
        assert status.get("exitCode") == int(expected["exitCode"]), status
    if "outputs" in expected:
        assert status.get("outputs") == json.loads(expected["outputs"])
    if "attempts" in expected:
        assert len(status["attempts"]) == int(expected["attempts"])
        assert [p.metadata.name for p in steps.pods(name)] == [f"{name}-1", f"{name}-2"]
    # The context never outlives the step.
    eventually(lambda: not steps.context_outliving(name), 30, "the step's context deleted")


def test_status_records_attempt_times_conditions_and_warning_events(
    steps: Steps, step_image: str
) -> None:
    steps.create("timed", {"image": step_image, "script": "sleep 2"})
    running = steps.wait_phase("timed", "Running", timeout=60)
    assert running["podName"] == "timed-1" and running["attempt"] == 1
    status = steps.wait_terminal("timed")
    assert status["phase"] == "Succeeded"
    assert status["observedGeneration"] == 1
    (attempt,) = status["attempts"]
    assert attempt["podName"] == "timed-1" and attempt["exitCode"] == 0
    assert attempt["startTime"] <= attempt["completionTime"]
    assert status["startTime"] <= status["completionTime"]
    (condition,) = status["conditions"]
    assert condition["type"] == "Succeeded" and condition["status"] == "True"
    # Events are for what a person must look at (STEPRUN_EVENTS=warnings by default): a failure
    # is posted, a success is not.
    steps.create("fails", {"image": step_image, "script": "exit 3"})
    assert steps.wait_terminal("fails")["reason"] == "Error"
    (warning,) = eventually(lambda: steps.events("fails"), 20, "a Warning Event for the failure")
    assert (warning.type, warning.reason) == ("Warning", "Error")
    assert steps.events("timed") == []


def test_pod_carries_labels_owner_and_deadline(steps: Steps, step_image: str) -> None:
    steps.create(
        "labelled",
        {
            "image": step_image,
            "script": "true",
            "timeoutSeconds": 77,
            "context": {"workflow": {"name": "build", "runId": "42", "stepId": "lint"}},
            "podTemplate": {"labels": {"team": "ci", "steprun.dev/name": "hijack"}},
        },
    )
    steps.wait_terminal("labelled")
    (pod,) = steps.pods("labelled")
    labels = pod.metadata.labels
    assert labels["steprun.dev/name"] == "labelled"
    assert labels["steprun.dev/workflow"] == "build"
    assert labels["steprun.dev/run-id"] == "42"
    assert labels["steprun.dev/step-id"] == "lint"
    assert labels["team"] == "ci"
    (owner,) = pod.metadata.owner_references
    assert owner.kind == "StepRun" and owner.controller
    assert pod.spec.active_deadline_seconds == 77


def test_missing_secret_is_a_clear_invalid_spec(steps: Steps, step_image: str) -> None:
    steps.create(
        "nosecret",
        {
            "image": step_image,
            "script": "true",
            "context": {
                "secrets": [{"name": "TOKEN", "secretKeyRef": {"name": "absent", "key": "t"}}]
            },
        },
    )
    status = steps.wait_terminal("nosecret")
    assert status["phase"] == "Failed" and status["reason"] == "InvalidSpec"
    assert 'secret "absent" not found' in status["message"]
    assert steps.pods("nosecret") == []


def test_missing_secret_key_names_the_key(steps: Steps, step_image: str) -> None:
    steps.core.create_namespaced_secret(
        steps.namespace, {"metadata": {"name": "partial"}, "stringData": {"other": "x"}}
    )
    steps.create(
        "nokey",
        {
            "image": step_image,
            "script": "true",
            "context": {
                "secrets": [{"name": "T", "secretKeyRef": {"name": "partial", "key": "tok"}}]
            },
        },
    )
    status = steps.wait_terminal("nokey")
    assert status["reason"] == "InvalidSpec" and '"tok"' in status["message"]


def test_image_pull_failure_ends_after_startup_timeout(steps: Steps) -> None:
    steps.create(
        "nopull",
        {
            "image": "steprun.local/does-not-exist:1",
            "script": "true",
            "startupTimeoutSeconds": 3,
            # One attempt: whether the pull failure is the registry's (retried) or the name's.
            "retries": {"platformLimit": 0},
        },
    )
    status = steps.wait_terminal("nopull", timeout=60)
    assert status["phase"] == "Failed"
    assert status["reason"] == "ImagePullFailed"
    assert "ErrImagePull" in status["message"] or "ImagePullBackOff" in status["message"]
    eventually(lambda: steps.pods("nopull") == [] or None, 30, "the stuck Pod to be deleted")


def test_unschedulable_pod_ends_with_scheduler_reason(steps: Steps, step_image: str) -> None:
    steps.create(
        "nowhere",
        {
            "image": step_image,
            "script": "true",
            "startupTimeoutSeconds": 3,
            "podTemplate": {"nodeSelector": {"steprun.dev/no-such-node": "true"}},
            "retries": {"platformLimit": 0},
        },
    )
    status = steps.wait_terminal("nowhere", timeout=60)
    assert status["phase"] == "Failed" and status["reason"] == "StartupTimeout"
    assert "Unschedulable" in status["message"]


def test_cancel_deletes_pod_with_grace_period(steps: Steps, step_image: str) -> None:
    steps.create(
        "cancelled",
        {"image": step_image, "script": "sleep 600", "terminationGracePeriodSeconds": 2},
    )
    steps.wait_phase("cancelled", "Running", timeout=60)
    steps.patch_spec("cancelled", {"cancel": True})
    status = steps.wait_terminal("cancelled")
    assert status["phase"] == "Cancelled" and status["reason"] == "Cancelled"
    assert "2s grace period" in status["message"]
    eventually(lambda: steps.pods("cancelled") == [] or None, 30, "the Pod to be gone")


def test_cancel_before_start_creates_no_pod(steps: Steps, step_image: str) -> None:
    steps.create("precancelled", {"image": step_image, "script": "true", "cancel": True})
    status = steps.wait_terminal("precancelled")
    assert status["phase"] == "Cancelled"
    assert steps.pods("precancelled") == []


def test_retries_exhausted_keep_every_attempt(steps: Steps, step_image: str) -> None:
    steps.create(
        "flaky",
        {"image": step_image, "script": "exit 7", "retries": {"limit": 1, "backoffSeconds": 1}},
    )
    status = steps.wait_terminal("flaky", timeout=90)
    assert status["phase"] == "Failed" and status["exitCode"] == 7
    assert [a["attempt"] for a in status["attempts"]] == [1, 2]
    assert all(a["exitCode"] == 7 for a in status["attempts"])
    assert [p.metadata.name for p in steps.pods("flaky")] == ["flaky-1", "flaky-2"]


def test_timeout_is_not_retried(steps: Steps, step_image: str) -> None:
    steps.create(
        "slow",
        {
            "image": step_image,
            "script": "sleep 600",
            "timeoutSeconds": 2,
            "terminationGracePeriodSeconds": 1,
            "retries": {"limit": 3, "backoffSeconds": 1},
        },
    )
    status = steps.wait_terminal("slow", timeout=60)
    assert status["phase"] == "TimedOut" and status["reason"] == "DeadlineExceeded"
    assert len(status["attempts"]) == 1


def test_pod_deleted_by_someone_else_fails_the_step(steps: Steps, step_image: str) -> None:
    steps.create(
        "victim",
        {"image": step_image, "script": "sleep 600", "retries": {"platformLimit": 0}},
    )
    steps.wait_phase("victim", "Running", timeout=60)
    steps.core.delete_namespaced_pod("victim-1", steps.namespace, grace_period_seconds=0)
    status = steps.wait_terminal("victim")
    assert status["phase"] == "Failed" and status["reason"] == "PodDeleted"
    assert "victim-1" in status["message"]
    assert status["failure"]["category"] == "Platform", status


def test_deleting_the_steprun_removes_what_it_owns(steps: Steps, step_image: str) -> None:
    steps.create("doomed", {"image": step_image, "script": "sleep 600"})
    steps.wait_phase("doomed", "Running", timeout=60)
    assert steps.configmap_exists("doomed-context")
    steps.custom.delete_namespaced_custom_object(
        "steprun.dev", "v1alpha1", steps.namespace, "stepruns", "doomed"
    )
    eventually(lambda: steps.pods("doomed") == [] or None, 60, "the garbage collector")
    eventually(lambda: not steps.configmap_exists("doomed-context"), 60, "ConfigMap GC")


def test_ttl_deletes_finished_steprun(steps: Steps, step_image: str) -> None:
    steps.create("ephemeral", {"image": step_image, "script": "true", "ttlSecondsAfterFinished": 2})
    steps.wait_terminal("ephemeral")
    eventually(lambda: not steps.exists("ephemeral"), 30, "TTL deletion")


def test_terminal_phase_never_changes(steps: Steps, step_image: str) -> None:
    steps.create("final", {"image": step_image, "script": "true"})
    first = steps.wait_terminal("final")
    steps.patch_spec("final", {"cancel": True})
    time.sleep(2)
    assert steps.status("final")["phase"] == first["phase"] == "Succeeded"
    assert steps.status("final")["completionTime"] == first["completionTime"]


def test_operator_restart_mid_step_finishes_with_one_pod(
    steps: Steps, step_image: str, operator: OperatorProcess
) -> None:
    steps.create("survivor", {"image": step_image, "script": "sleep 4; echo done"})
    steps.wait_phase("survivor", "Running", timeout=60)
    operator.kill()
    time.sleep(1)
    operator.start()
    status = steps.wait_terminal("survivor", timeout=60)
    assert status["phase"] == "Succeeded"
    assert [p.metadata.name for p in steps.pods("survivor")] == ["survivor-1"]
    if AUDIT_LOG.exists():
        assert_each_pod_created_once(AUDIT_LOG, steps.namespace, {"survivor-1"})


def test_operator_killed_repeatedly_during_creation_creates_each_pod_once(
    steps: Steps, step_image: str, operator: OperatorProcess
) -> None:
    names = [f"burst-{i}" for i in range(8)]
    for name in names:
        steps.create(name, {"image": step_image, "script": "sleep 1", "retries": {"limit": 0}})
    for _ in range(3):
        operator.kill()
        operator.start()
    for name in names:
        assert steps.wait_terminal(name, timeout=120)["phase"] == "Succeeded"
        assert [p.metadata.name for p in steps.pods(name)] == [f"{name}-1"]
    if AUDIT_LOG.exists():
        assert_each_pod_created_once(AUDIT_LOG, steps.namespace, {f"{n}-1" for n in names})


def test_secret_canary_never_leaks(
    steps: Steps, step_image: str, operator: OperatorProcess, node_gate: tuple[str, str]
) -> None:
    node, gate = node_gate
    canary = "canary-7f3a9c-do-not-leak"
    digest = hashlib.sha256(canary.encode()).hexdigest()
    steps.core.create_namespaced_secret(
        steps.namespace, {"metadata": {"name": "canary"}, "stringData": {"value": canary}}
    )
    steps.create(
        "canary",
        {
            "image": step_image,
            # The step proves it got the value without the spec containing it.
            "script": f'test "$(printf %s "$CANARY" | sha256sum | cut -d" " -f1)" = {digest}',
            "context": {
                "secrets": [{"name": "CANARY", "secretKeyRef": {"name": "canary", "key": "value"}}],
                "inputs": {"note": "inputs are not secret"},
            },
            # Held unscheduled until the context has been looked at: a quick step may
            # otherwise be over, its context gone, by the first look.
            "podTemplate": {"nodeSelector": {gate: "open"}},
        },
    )
    steps.wait_phase("canary", "Pending", timeout=60)
    configmap = steps.core.read_namespaced_config_map("canary-context", steps.namespace)
    step_secret = steps.core.read_namespaced_secret("canary-context", steps.namespace)
    assert base64.b64decode(step_secret.data["CANARY"]).decode() == canary
    steps.core.patch_node(node, {"metadata": {"labels": {gate: "open"}}})
    status = steps.wait_terminal("canary")
    assert status["phase"] == "Succeeded"
    encoded = base64.b64encode(canary.encode()).decode()
    (pod,) = steps.pods("canary")
    places: dict[str, Any] = {
        "StepRun": steps.get("canary"),
        "ConfigMap": configmap.to_dict(),
        "Pod spec": pod.spec.to_dict(),
        "Events": [e.to_dict() for e in steps.events("canary")],
        "operator log": operator.log(),
    }
    for where, content in places.items():
        text = json.dumps(content, default=str) if not isinstance(content, str) else content
        assert canary not in text and encoded not in text, f"secret value found in {where}"
    assert not steps.secret_exists("canary-context")


def test_oversize_inputs_end_as_invalid_spec_without_a_pod(steps: Steps, step_image: str) -> None:
    steps.create(
        "bulky",
        {"image": step_image, "script": "true", "context": {"inputs": {"blob": "x" * 300_000}}},
    )
    status = steps.wait_terminal("bulky")
    assert status["phase"] == "Failed" and status["reason"] == "InvalidSpec"
    assert "spec.context.inputs" in status["message"]
    assert steps.pods("bulky") == []
