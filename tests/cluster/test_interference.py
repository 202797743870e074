"""Outside interference with a step's children: handled with a clear outcome, never a hang."""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.support.operator_process import OperatorProcess
from tests.support.steps import Steps, eventually


@pytest.fixture
def steps(api_client: client.ApiClient, namespace: str, operator: OperatorProcess) -> Steps:
    return Steps(api_client, namespace)


def test_context_deleted_while_pending_is_recreated(
    steps: Steps, step_image: str, node_gate: tuple[str, str]
) -> None:
    node, gate = node_gate
    steps.core.create_namespaced_secret(
        steps.namespace, {"metadata": {"name": "src"}, "stringData": {"k": "value"}}
    )
    steps.create(
        "repaired",
        {
            "image": step_image,
            "script": 'test "$K" = value && grep -q main "$STEPRUN_CONTEXT_FILE"',
            "startupTimeoutSeconds": 60,
            "context": {
                "inputs": {"branch": "main"},
                "secrets": [{"name": "K", "secretKeyRef": {"name": "src", "key": "k"}}],
            },
            "podTemplate": {"nodeSelector": {gate: "open"}},
        },
    )
    steps.wait_phase("repaired", "Pending", timeout=30)
    steps.core.delete_namespaced_config_map("repaired-context", steps.namespace)
    steps.core.delete_namespaced_secret("repaired-context", steps.namespace)
    steps.core.patch_node(node, {"metadata": {"labels": {gate: "open"}}})
    status = steps.wait_terminal("repaired", timeout=90)
    assert status["phase"] == "Succeeded", status
    assert [p.metadata.name for p in steps.pods("repaired")] == ["repaired-1"]


def test_context_deleted_while_running_does_not_stall_the_step(
    steps: Steps, step_image: str
) -> None:
    steps.core.create_namespaced_secret(
        steps.namespace, {"metadata": {"name": "src"}, "stringData": {"k": "value"}}
    )
    steps.create(
        "midrun",
        {
            "image": step_image,
            "script": "sleep 3",
            "context": {"secrets": [{"name": "K", "secretKeyRef": {"name": "src", "key": "k"}}]},
        },
    )
    steps.wait_phase("midrun", "Running", timeout=60)
    steps.core.delete_namespaced_config_map("midrun-context", steps.namespace)
    steps.core.delete_namespaced_secret("midrun-context", steps.namespace)
    assert steps.wait_terminal("midrun", timeout=60)["phase"] == "Succeeded"


def test_source_secret_deleted_before_start_is_invalid_spec(steps: Steps, step_image: str) -> None:
    steps.core.create_namespaced_secret(
        steps.namespace, {"metadata": {"name": "gone"}, "stringData": {"k": "v"}}
    )
    steps.core.delete_namespaced_secret("gone", steps.namespace)
    steps.create(
        "orphan",
        {
            "image": step_image,
            "script": "true",
            "context": {"secrets": [{"name": "K", "secretKeyRef": {"name": "gone", "key": "k"}}]},
        },
    )
    status = steps.wait_terminal("orphan")
    assert status["reason"] == "InvalidSpec" and "gone" in status["message"]


def test_evicted_pod_is_reported_as_evicted_and_retried(steps: Steps, step_image: str) -> None:
    steps.create(
        "evictee",
        {
            "image": step_image,
            "script": '[ "$STEPRUN_ATTEMPT" -ge 2 ] || sleep 600',
            "terminationGracePeriodSeconds": 1,
            "retries": {"limit": 1, "backoffSeconds": 1},
        },
    )
    steps.wait_phase("evictee", "Running", timeout=60)
    steps.core.create_namespaced_pod_eviction(
        "evictee-1",
        steps.namespace,
        {"metadata": {"name": "evictee-1", "namespace": steps.namespace}},
    )
    status = steps.wait_terminal("evictee", timeout=90)
    assert status["phase"] == "Succeeded"
    first = status["attempts"][0]
    assert first["reason"] == "Evicted", first
    assert first["failure"]["category"] == "Platform", first
    eventually(lambda: len(steps.pods("evictee")) >= 1 or None, 10, "pods listed")
