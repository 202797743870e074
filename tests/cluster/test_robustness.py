"""Hostile and unlucky input on the real cluster: nothing stalls the operator, no step runs
twice, cancel leaves no Pod, a full quota is waited out, a name can be reused at once."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.support.operator_process import OperatorProcess
from tests.support.steps import Steps, audit_pod_requests, eventually

AUDIT_LOG = Path(__file__).resolve().parents[2] / ".cluster" / "logs" / "audit.log"
FINALIZER = "steprun.dev/step-tracking"
# The API server's own nesting bound (Go's encoding/json): deeper bodies are refused.
API_SERVER_MAX_DEPTH = 10_000


@pytest.fixture
def steps(api_client: client.ApiClient, namespace: str, operator: OperatorProcess) -> Steps:
    return Steps(api_client, namespace)


@pytest.fixture
def deep_json() -> Iterator[None]:
    """This test process, too, must write and read JSON as deep as the API server stores."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    yield
    sys.setrecursionlimit(before)


def nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {"leaf": True}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


def _pod_phase(steps: Steps, name: str) -> str | None:
    try:
        pod = steps.core.read_namespaced_pod(name, steps.namespace)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return str(pod.status.phase)


# ---------------------------------------------------------------- a step never runs twice


def test_pod_finished_and_deleted_while_the_operator_is_down_is_recorded_not_retried(
    steps: Steps, step_image: str, operator: OperatorProcess
) -> None:
    script = 'sleep 3; echo \'{"answer": 42}\' > "$STEPRUN_OUTPUT_FILE"'
    steps.create(
        "tracked",
        {"image": step_image, "script": script, "retries": {"limit": 2, "backoffSeconds": 1}},
    )
    steps.wait_phase("tracked", "Running", timeout=60)
    pod = steps.core.read_namespaced_pod("tracked-1", steps.namespace)
    assert FINALIZER in (pod.metadata.finalizers or [])
    operator.kill()
    try:
        eventually(
            lambda: _pod_phase(steps, "tracked-1") == "Succeeded" or None, 60, "the Pod ends"
        )
        # PodGC or a janitor: the Pod goes while nobody has recorded its outcome.
        steps.core.delete_namespaced_pod("tracked-1", steps.namespace)
        time.sleep(1)
        assert _pod_phase(steps, "tracked-1") == "Succeeded", "held by the tracking finalizer"
    finally:
        operator.start()

    status = steps.wait_terminal("tracked", timeout=60)

    assert status["phase"] == "Succeeded"
    assert status["outputs"] == {"answer": 42}
    assert [a["podName"] for a in status["attempts"]] == ["tracked-1"]
    assert status["attempts"][0]["creationTime"]
    eventually(lambda: _pod_phase(steps, "tracked-1") is None or None, 30, "the Pod is released")
    if AUDIT_LOG.exists():
        # This test deletes the Pod itself, so deletes are expected; the proof that the step
        # did not run twice is that no second Pod was ever asked for.
        requests = audit_pod_requests(AUDIT_LOG, steps.namespace)
        creates = [(name, code) for verb, name, code in requests if verb == "create"]
        assert [name for name, code in creates if code in (200, 201)] == ["tracked-1"], creates
        assert {name for name, _ in creates} == {"tracked-1"}, creates


# ---------------------------------------------------------------- cancel


def test_cancel_right_after_create_leaves_no_pod_running(steps: Steps, step_image: str) -> None:
    names = [f"quick-cancel-{i}" for i in range(5)]
    for name in names:
        steps.create(name, {"image": step_image, "script": "sleep 300"})
        steps.patch_spec(name, {"cancel": True})

    for name in names:
        assert steps.wait_terminal(name, timeout=60)["phase"] == "Cancelled"
    eventually(
        lambda: all(not steps.pods(name) for name in names) or None,
        60,
        "every Pod of the cancelled steps is gone",
    )


# ---------------------------------------------------------------- nothing stalls the watcher


@pytest.mark.usefixtures("deep_json")
def test_inputs_as_deep_as_the_api_server_allows_neither_stall_nor_fail(
    steps: Steps, step_image: str, operator: OperatorProcess
) -> None:
    depth = API_SERVER_MAX_DEPTH - 20
    steps.create(
        "deep-inputs",
        {
            "image": step_image,
            "script": 'test "$(grep -o \'"n"\' "$STEPRUN_CONTEXT_FILE" | wc -l)" -gt 9000',
            "context": {"inputs": nested(depth)},
        },
    )
    steps.create("neighbour", {"image": step_image, "script": "true"})

    assert steps.wait_terminal("neighbour", timeout=60)["phase"] == "Succeeded"
    status = steps.wait_terminal("deep-inputs", timeout=60)
    assert status["phase"] == "Succeeded", status.get("message")

    # A restart lists the deep object again: the new watcher must get past it too.
    operator.kill()
    operator.start()
    steps.create("after-restart", {"image": step_image, "script": "true"})
    assert steps.wait_terminal("after-restart", timeout=60)["phase"] == "Succeeded"
    assert "Traceback" not in operator.log()


@pytest.mark.usefixtures("deep_json")
def test_json_deeper_than_the_api_server_allows_is_refused_there(
    steps: Steps, step_image: str
) -> None:
    with pytest.raises(client.ApiException) as refused:
        steps.create(
            "too-deep",
            {"image": step_image, "context": {"inputs": nested(API_SERVER_MAX_DEPTH + 10)}},
        )
    assert refused.value.status in (400, 422, 500)
    assert "depth" in (refused.value.body or "").lower()


def test_outputs_nested_2040_deep_are_ignored_and_the_step_finishes(
    steps: Steps, step_image: str
) -> None:
    deep = "[" * 2040 + "]" * 2040
    steps.create(
        "deep-outputs",
        {
            "image": step_image,
            "script": f"printf '%s' '{deep}' > \"$STEPRUN_OUTPUT_FILE\"",
        },
    )

    status = steps.wait_terminal("deep-outputs", timeout=60)

    assert status["phase"] == "Succeeded"
    assert "nested more than 64 levels deep" in status["message"]
    assert status.get("outputs") is None
    eventually(lambda: not steps.configmap_exists("deep-outputs") or None, 30, "context gone")


# ---------------------------------------------------------------- transient and permanent


def test_a_full_resource_quota_is_waited_out_not_failed(steps: Steps, step_image: str) -> None:
    steps.core.create_namespaced_resource_quota(
        steps.namespace,
        {"metadata": {"name": "one-pod"}, "spec": {"hard": {"pods": "1"}}},
    )
    # The quota controller computes usage asynchronously; until then every create is refused.
    eventually(
        lambda: (
            steps.core.read_namespaced_resource_quota("one-pod", steps.namespace).status.hard
            or None
        ),
        30,
        "quota status",
    )
    steps.create("first", {"image": step_image, "script": "sleep 6"})
    steps.wait_phase("first", "Running", timeout=60)
    steps.create("second", {"image": step_image, "script": "true", "startupTimeoutSeconds": 120})

    assert steps.wait_terminal("first", timeout=60)["phase"] == "Succeeded"
    status = steps.wait_terminal("second", timeout=120)
    assert status["phase"] == "Succeeded", status.get("message")
    assert [a["podName"] for a in status["attempts"]] == ["second-1"]


def test_recreating_a_steprun_under_the_same_name_just_works(steps: Steps, step_image: str) -> None:
    spec = {"image": step_image, "script": "echo again", "context": {"env": {"K": "v"}}}
    steps.create("again", spec)
    assert steps.wait_terminal("again", timeout=60)["phase"] == "Succeeded"
    for _ in range(2):
        steps.custom.delete_namespaced_custom_object(
            "steprun.dev",
            "v1alpha1",
            steps.namespace,
            "stepruns",
            "again",
            body={"propagationPolicy": "Background"},
        )
        eventually(lambda: not steps.exists("again") or None, 30, "deleted")
        steps.create("again", spec)
        status = steps.wait_terminal("again", timeout=60)
        assert status["phase"] == "Succeeded", status.get("message")


def test_a_step_whose_pod_is_refused_consumes_its_retries(steps: Steps, step_image: str) -> None:
    steps.create(
        "refused",
        {
            "image": step_image,
            "script": "true",
            "serviceAccountName": "does-not-exist",
            "retries": {"limit": 1, "backoffSeconds": 1},
        },
    )

    status = steps.wait_terminal("refused", timeout=60)

    assert (status["phase"], status["reason"]) == ("Failed", "PodCreateFailed")
    assert [a["reason"] for a in status["attempts"]] == ["PodCreateFailed", "PodCreateFailed"]
    assert "does-not-exist" in status["message"]
    assert not steps.pods("refused")
