"""Outcomes an engine branches on: status.failure, memory kills, and the two retry budgets
(retries.limit for the step's own failures, retries.platformLimit for the platform's)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.cluster.test_kwok import TOLERATION
from tests.support.operator_process import OperatorProcess
from tests.support.steps import Steps, eventually

REPO = Path(__file__).resolve().parents[2]

# Attempt 1 waits to be taken away; any later attempt succeeds at once.
FIRST_ATTEMPT_WAITS = '[ "$STEPRUN_ATTEMPT" -ge 2 ] || sleep 600'


@pytest.fixture
def steps(api_client: client.ApiClient, namespace: str, operator: OperatorProcess) -> Steps:
    return Steps(api_client, namespace)


def test_a_child_process_past_the_memory_limit_ends_oom_killed_naming_the_limit(
    steps: Steps, step_image: str
) -> None:
    # The shell is the container's first process; tail, its child, reads a line that never
    # ends until the kernel kills it. The shell then exits with tail's status.
    steps.create(
        "hog",
        {
            "image": step_image,
            "script": "tail /dev/zero\nexit $?",
            "resources": {"limits": {"memory": "24Mi"}},
            "retries": {"limit": 0, "platformLimit": 0},
        },
    )
    status = steps.wait_terminal("hog", timeout=120)
    assert (status["phase"], status["reason"]) == ("Failed", "OOMKilled"), status
    assert "24Mi" in status["message"], status
    failure = status["failure"]
    assert (failure["category"], failure["stage"], failure["container"]) == (
        "Step",
        "Running",
        "step",
    ), failure
    assert failure["reason"] == "OOMKilled" and failure["node"], failure
    assert status["attempts"][0]["failure"] == failure


def test_a_failing_step_spends_its_own_retries_only(steps: Steps, step_image: str) -> None:
    steps.create(
        "failing-tests",
        {
            "image": step_image,
            "script": "echo 2 tests failed; exit 7",
            "retries": {"limit": 1, "backoffSeconds": 1, "platformLimit": 2},
        },
    )
    status = steps.wait_terminal("failing-tests", timeout=90)
    assert (status["phase"], status["reason"], status["exitCode"]) == ("Failed", "Error", 7)
    assert [a["failure"]["category"] for a in status["attempts"]] == ["Step", "Step"], status
    assert status["failure"]["category"] == "Step" and status["failure"]["exitCode"] == 7
    assert "events" not in status["failure"], "a step's own failure lists no Pod events"


def test_a_deleted_pod_is_retried_without_spending_the_steps_retries(
    steps: Steps, step_image: str
) -> None:
    steps.create(
        "bystander",
        {
            "image": step_image,
            "script": FIRST_ATTEMPT_WAITS,
            "terminationGracePeriodSeconds": 1,
            "retries": {"limit": 0, "platformLimit": 1, "platformBackoffSeconds": 1},
        },
    )
    steps.wait_phase("bystander", "Running", timeout=60)
    steps.core.delete_namespaced_pod("bystander-1", steps.namespace, grace_period_seconds=0)
    status = steps.wait_terminal("bystander", timeout=90)
    assert status["phase"] == "Succeeded", status
    first, second = status["attempts"]
    assert first["reason"] == "PodDeleted", first
    assert (first["failure"]["category"], first["failure"]["stage"]) == ("Platform", "Running")
    assert first["failure"]["node"], first
    assert second["reason"] == "Completed" and "failure" not in second
    assert "failure" not in status


def test_platform_retries_spent_end_the_step_with_the_platforms_failure(
    steps: Steps, step_image: str
) -> None:
    steps.create(
        "unlucky",
        {
            "image": step_image,
            "script": "sleep 600",
            "terminationGracePeriodSeconds": 1,
            "retries": {"limit": 3, "platformLimit": 1, "platformBackoffSeconds": 1},
        },
    )
    for attempt in (1, 2):
        steps.wait_phase("unlucky", "Running", timeout=60)
        eventually(
            lambda n=attempt: steps.status("unlucky").get("attempt") == n or None,  # type: ignore[misc]
            60,
            f"attempt {attempt} to run",
        )
        steps.core.delete_namespaced_pod(
            f"unlucky-{attempt}", steps.namespace, grace_period_seconds=0
        )
    status = steps.wait_terminal("unlucky", timeout=90)
    assert (status["phase"], status["reason"]) == ("Failed", "PodDeleted"), status
    assert [a["failure"]["category"] for a in status["attempts"]] == ["Platform", "Platform"]
    assert status["failure"]["category"] == "Platform"


def _ready_fake_nodes(core: client.CoreV1Api) -> list[str]:
    return sorted(
        n.metadata.name
        for n in core.list_node(label_selector="type=kwok").items
        if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
    )


@pytest.fixture(scope="module")
def two_fake_nodes(api_client: client.ApiClient, kubeconfig: str) -> Iterator[list[str]]:
    """At least two ready kwok nodes (hack/kwok-up.sh); those this module brings up are
    removed after it, so no other test's Pod lands on them later."""
    core = client.CoreV1Api(api_client)
    existing = {n.metadata.name for n in core.list_node(label_selector="type=kwok").items}
    if len(_ready_fake_nodes(core)) < 2:
        result = subprocess.run(
            [str(REPO / "hack" / "kwok-up.sh"), str(max(2, len(existing) + 1))],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "KUBECONFIG": kubeconfig},
        )
        assert result.returncode == 0, f"hack/kwok-up.sh failed:\n{result.stderr[-3000:]}"
    created = {n.metadata.name for n in core.list_node(label_selector="type=kwok").items}
    yield _ready_fake_nodes(core)
    for name in sorted(created - existing):
        core.delete_node(name)


def _on_fake_nodes(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        **spec,
        "podTemplate": {
            "nodeSelector": {"type": "kwok"},
            "tolerations": [TOLERATION],
            # kwok keeps the Pod running this long (hack/kwok/pod-stages.yaml).
            "annotations": {"kwok.steprun.dev/run-duration": "1h"},
        },
    }


def test_an_evicted_attempt_is_retried_on_another_node(
    steps: Steps,
    step_image: str,
    two_fake_nodes: list[str],
) -> None:
    fake_nodes = two_fake_nodes
    assert len(fake_nodes) >= 2, fake_nodes
    steps.create(
        "drained",
        _on_fake_nodes(
            {
                "image": step_image,
                "script": "sleep 3600",
                "retries": {"limit": 0, "platformLimit": 1, "platformBackoffSeconds": 1},
            }
        ),
    )
    steps.wait_phase("drained", "Running", timeout=120)
    (first,) = steps.pods("drained")
    node = first.spec.node_name
    assert node in fake_nodes
    steps.core.create_namespaced_pod_eviction(
        "drained-1",
        steps.namespace,
        {"metadata": {"name": "drained-1", "namespace": steps.namespace}},
    )

    def retried() -> client.V1Pod | None:
        pods = [p for p in steps.pods("drained") if p.metadata.name == "drained-2"]
        return pods[0] if pods and pods[0].spec.node_name else None

    second = eventually(retried, 120, "the retry to be scheduled")
    assert second.spec.node_name != node, (node, second.spec.node_name)
    preferred = (
        second.spec.affinity.node_affinity.preferred_during_scheduling_ignored_during_execution
    )
    assert preferred[0].preference.match_fields[0].values == [node]
    status = steps.status("drained")
    failure = status["attempts"][0]["failure"]
    assert (status["attempts"][0]["reason"], failure["category"], failure["node"]) == (
        "Evicted",
        "Platform",
        node,
    ), status
    steps.patch_spec("drained", {"cancel": True})
    steps.wait_terminal("drained", timeout=60)
