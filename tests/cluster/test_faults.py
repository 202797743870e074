"""Faults under load: the operator SIGKILLed while many steps are in flight, a node vanishing.

What must hold after each fault: every StepRun ends in the phase its script earns, exactly one
Pod per attempt was ever created (the API server's audit log says so, not only the Pods that are
left), and no step Secret (``<name>-context``) outlives its step, nor a ConfigMap that the garbage
collector would not remove with its StepRun.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.support.operator_process import OperatorProcess
from tests.support.steps import (
    Steps,
    assert_each_pod_created_once,
    eventually,
)

REPO = Path(__file__).resolve().parents[2]
AUDIT_LOG = REPO / ".cluster" / "logs" / "audit.log"
KWOK_UP = REPO / "hack" / "kwok-up.sh"
KWOK_TAINT = "kwok.x-k8s.io/node"

STEPS_IN_FLIGHT = 50
KILLS = 5
# Reported on failure; STEPRUN_FAULT_SEED=<n> replays (or varies) the kill timings.
DEFAULT_SEED = 20261125


@pytest.fixture
def steps(api_client: client.ApiClient, namespace: str, operator: OperatorProcess) -> Steps:
    return Steps(api_client, namespace)


def owned_pods(steps: Steps) -> dict[str, list[str]]:
    """Pod names per owning StepRun, for every Pod now in the namespace."""
    pods: dict[str, list[str]] = {}
    listed: list[Any] = steps.core.list_namespaced_pod(steps.namespace).items
    for pod in listed:
        for ref in pod.metadata.owner_references or []:
            if ref.kind == "StepRun":
                pods.setdefault(ref.name, []).append(pod.metadata.name)
    return {name: sorted(found) for name, found in pods.items()}


def leftover_context(steps: Steps) -> list[str]:
    configmaps: list[Any] = steps.core.list_namespaced_config_map(steps.namespace).items
    secrets: list[Any] = steps.core.list_namespaced_secret(steps.namespace).items
    return [
        f"{kind}/{obj.metadata.name}"
        for kind, objects in (("ConfigMap", configmaps), ("Secret", secrets))
        for obj in objects
        if obj.metadata.name.endswith("-context")
    ]


def assert_one_pod_per_attempt(steps: Steps, names: list[str]) -> None:
    expected = sorted(f"{name}-1" for name in names)
    pods = owned_pods(steps)
    assert sorted(p for found in pods.values() for p in found) == expected, pods
    if AUDIT_LOG.exists():
        assert_each_pod_created_once(AUDIT_LOG, steps.namespace, set(expected))


def assert_context_cleaned_up(steps: Steps) -> None:
    eventually(lambda: not leftover_context(steps), 60, "every step context to be deleted")


def load_step(image: str, index: int) -> dict[str, Any]:
    """A short step; every other one reads a projected Secret, so both kinds of context are
    created and cleaned up across the kills."""
    context: dict[str, Any] = (
        {"secrets": [{"name": "TOKEN", "secretKeyRef": {"name": "source", "key": "token"}}]}
        if index % 2 == 0
        else {"env": {"TOKEN": "t0ken"}}
    )
    return {"image": image, "script": 'sleep 2; test "$TOKEN" = t0ken', "context": context}


def test_operator_sigkilled_repeatedly_with_many_steps_in_flight(
    steps: Steps, step_image: str, operator: OperatorProcess
) -> None:
    seed = int(os.environ.get("STEPRUN_FAULT_SEED", DEFAULT_SEED))
    rng = random.Random(seed)
    source: Any = {"metadata": {"name": "source"}, "stringData": {"token": "t0ken"}}
    steps.core.create_namespaced_secret(steps.namespace, source)
    names = [f"load-{i}" for i in range(STEPS_IN_FLIGHT)]
    # Most steps exist before the first kill; the rest arrive between kills, so kills land
    # while Pods are being created, while they run and while they finish.
    first_wave = STEPS_IN_FLIGHT - 4 * KILLS
    for index, name in enumerate(names[:first_wave]):
        steps.create(name, load_step(step_image, index))
    later = iter(enumerate(names[first_wave:], start=first_wave))
    kills: list[tuple[float, float]] = []
    for _ in range(KILLS):
        for _, (index, name) in zip(range(4), later, strict=False):
            steps.create(name, load_step(step_image, index))
        before, down = rng.uniform(0.0, 2.5), rng.uniform(0.0, 1.0)
        kills.append((round(before, 2), round(down, 2)))
        time.sleep(before)
        operator.kill()
        time.sleep(down)
        operator.start()
    phases = {name: steps.wait_terminal(name, timeout=180)["phase"] for name in names}
    # The seed and the kill timings make a failing interleaving reproducible.
    assert set(phases.values()) == {"Succeeded"}, (seed, kills, phases)
    assert_one_pod_per_attempt(steps, names)
    assert_context_cleaned_up(steps)


# ---------------------------------------------------------------- a node goes away


@pytest.fixture
def fake_node(api_client: client.ApiClient) -> Iterator[str]:
    """A kwok-simulated node of this test's own, so deleting it touches nobody else."""
    if not KWOK_UP.exists():
        pytest.fail(
            f"{KWOK_UP.relative_to(REPO)} is missing: the node-lost test needs kwok fake nodes "
            "(sigs.k8s.io/kwok) to delete a node without harming the real one"
        )
    result = subprocess.run([str(KWOK_UP), "1"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"hack/kwok-up.sh failed:\n{result.stderr[-3000:]}")
    core = client.CoreV1Api(api_client)
    name = f"fz-lost-{uuid.uuid4().hex[:8]}"
    node: Any = {
        "metadata": {
            "name": name,
            "annotations": {KWOK_TAINT: "fake"},
            "labels": {"type": "kwok", "kubernetes.io/hostname": name},
        },
        "spec": {"taints": [{"key": KWOK_TAINT, "value": "fake", "effect": "NoSchedule"}]},
        "status": {
            "capacity": {"cpu": "8", "memory": "16Gi", "pods": "110"},
            "allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"},
        },
    }
    core.create_node(node)

    def ready() -> bool:
        read: Any = core.read_node(name)
        conditions: list[Any] = read.status.conditions or []
        return any(c.type == "Ready" and c.status == "True" for c in conditions)

    try:
        eventually(ready, 60, f"kwok to make node {name} Ready")
        yield name
    finally:
        try:
            core.delete_node(name)
        except client.ApiException as error:
            if error.status != 404:
                raise


def test_node_lost_fails_the_step_naming_the_node(
    steps: Steps, step_image: str, fake_node: str
) -> None:
    steps.create(
        "stranded",
        {
            "image": step_image,
            "script": "sleep 3600",
            "podTemplate": {
                "nodeSelector": {"kubernetes.io/hostname": fake_node},
                "tolerations": [{"key": KWOK_TAINT, "operator": "Exists", "effect": "NoSchedule"}],
                # kwok keeps the Pod running this long (hack/kwok/pod-stages.yaml).
                "annotations": {"kwok.steprun.dev/run-duration": "1h"},
            },
            # The node is gone for good: a platform retry would wait for it in vain.
            "retries": {"platformLimit": 0},
        },
    )
    steps.wait_phase("stranded", "Running", timeout=60)
    pods: list[Any] = steps.pods("stranded")
    (pod,) = pods
    assert pod.spec.node_name == fake_node
    steps.core.delete_node(fake_node)
    # The Pod GC removes Pods of deleted nodes after a 40 s quarantine.
    status = steps.wait_terminal("stranded", timeout=180)
    assert status["phase"] == "Failed", status
    assert status["reason"] in {"NodeLost", "PodDeleted"}, status
    assert fake_node in status["message"], status
    assert [a["podName"] for a in status["attempts"]] == ["stranded-1"]
    assert_context_cleaned_up(steps)
