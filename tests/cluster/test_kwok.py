"""kwok fake nodes (hack/kwok-up.sh): where scale tests put their Pods, and where nothing else goes.

The fake nodes are tainted kwok.x-k8s.io/node=fake:NoSchedule and labelled type=kwok; kwok
simulates every Pod bound to them with the stages in hack/kwok/ (scheduled -> Running ->
Succeeded after the kwok.steprun.dev/run-duration annotation; deleted -> gone).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.support.steps import eventually

REPO = Path(__file__).resolve().parents[2]
TOLERATION = {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}
RUN_DURATION = "kwok.steprun.dev/run-duration"
# kwok reacts to a Pod within a second once it watches; generous for a busy shared cluster.
TIMEOUT = 120
# kube-controller-manager's --node-monitor-grace-period default.
NODE_GRACE_SECONDS = 50


def _ready_fake_nodes(core: client.CoreV1Api) -> list[str]:
    nodes = core.list_node(label_selector="type=kwok").items
    return [
        n.metadata.name
        for n in nodes
        if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
    ]


@pytest.fixture(scope="module")
def fake_nodes(api_client: client.ApiClient, kubeconfig: str) -> Iterator[list[str]]:
    """Ready fake nodes; when there are none, two are brought up for this module and removed
    after it, so no other test's Pod (one tolerating every taint, say) lands on them later."""
    core = client.CoreV1Api(api_client)
    existing = {n.metadata.name for n in core.list_node(label_selector="type=kwok").items}
    created: set[str] = set()
    if not _ready_fake_nodes(core):
        result = subprocess.run(
            [str(REPO / "hack" / "kwok-up.sh"), "2"],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "KUBECONFIG": kubeconfig},
        )
        assert result.returncode == 0, f"hack/kwok-up.sh 2 failed:\n{result.stderr[-3000:]}"
        created = {n.metadata.name for n in core.list_node(label_selector="type=kwok").items}
        created -= existing
    yield _ready_fake_nodes(core)
    for name in sorted(created):
        core.delete_node(name)


def _pod(name: str, **spec: Any) -> dict[str, Any]:
    annotations = spec.pop("annotations", {})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "step", "image": "steprun.local/step:1", "command": ["sh", "-c", "true"]}
            ],
            **spec,
        },
    }


def _fake(name: str, run_duration: str) -> dict[str, Any]:
    return _pod(
        name,
        nodeSelector={"type": "kwok"},
        tolerations=[TOLERATION],
        annotations={RUN_DURATION: run_duration},
    )


def test_tolerating_pod_lands_on_a_fake_node_runs_and_succeeds(
    api_client: client.ApiClient, namespace: str, fake_nodes: list[str]
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, _fake("fake", "2s"))

    def running() -> client.V1Pod | None:
        pod = core.read_namespaced_pod("fake", namespace)
        return pod if pod.status.phase == "Running" else None

    pod = eventually(running, TIMEOUT, "the fake Pod to run")
    assert pod.spec.node_name in fake_nodes
    assert pod.status.pod_ip and pod.status.host_ip
    assert pod.status.container_statuses[0].state.running is not None

    def succeeded() -> client.V1Pod | None:
        pod = core.read_namespaced_pod("fake", namespace)
        return pod if pod.status.phase == "Succeeded" else None

    done = eventually(succeeded, TIMEOUT, "the fake Pod to succeed")
    (container,) = done.status.container_statuses
    assert container.state.running is None
    assert container.state.terminated.exit_code == 0
    assert container.state.terminated.reason == "Completed"
    # The run-duration annotation is honoured: the container ran at least that long.
    ran = container.state.terminated.finished_at - container.state.terminated.started_at
    assert ran.total_seconds() >= 1  # timestamps have one-second resolution


def test_job_pod_on_a_fake_node_completes_the_job(
    api_client: client.ApiClient, namespace: str, fake_nodes: list[str]
) -> None:
    batch = client.BatchV1Api(api_client)
    template = _fake("unused", "500ms")
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "fake-job"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": template["metadata"]["annotations"]},
                "spec": template["spec"],
            },
        },
    }
    batch.create_namespaced_job(namespace, job)

    def complete() -> bool:
        status = batch.read_namespaced_job("fake-job", namespace).status
        return any(c.type == "Complete" and c.status == "True" for c in status.conditions or [])

    eventually(complete, TIMEOUT, "the Job to complete on a fake node")
    pods = client.CoreV1Api(api_client).list_namespaced_pod(namespace, label_selector="job-name")
    assert [p.spec.node_name in fake_nodes for p in pods.items] == [True]


def test_pods_without_the_toleration_never_land_on_fake_nodes(
    api_client: client.ApiClient, namespace: str, fake_nodes: list[str]
) -> None:
    core = client.CoreV1Api(api_client)
    # Asking for a fake node without tolerating its taint: unschedulable, because of the taint.
    core.create_namespaced_pod(namespace, _pod("wants-fake", nodeSelector={"type": "kwok"}))
    # An ordinary Pod goes to the real node, however roomy the fake ones look.
    core.create_namespaced_pod(namespace, _pod("ordinary"))

    def unschedulable() -> str | None:
        pod = core.read_namespaced_pod("wants-fake", namespace)
        for condition in pod.status.conditions or []:
            if condition.type == "PodScheduled" and condition.reason == "Unschedulable":
                return str(condition.message)
        return None

    message = eventually(unschedulable, TIMEOUT, "the scheduler to refuse the Pod")
    # Every fake node is refused for its taint; no node is short of anything else.
    fake = len(fake_nodes)
    assert f"{fake} node(s) had untolerated taint" in message, message
    ordinary = eventually(
        lambda: core.read_namespaced_pod("ordinary", namespace).spec.node_name,
        TIMEOUT,
        "the ordinary Pod to be scheduled",
    )
    assert ordinary not in fake_nodes
    assert core.read_namespaced_pod("wants-fake", namespace).spec.node_name is None


def test_deleted_pod_on_a_fake_node_is_removed(
    api_client: client.ApiClient, namespace: str, fake_nodes: list[str]
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, _fake("long", "1h"))
    eventually(
        lambda: core.read_namespaced_pod("long", namespace).status.phase == "Running",
        TIMEOUT,
        "the fake Pod to run",
    )
    # Graceful delete: only the node's agent (kwok here) may finish it.
    core.delete_namespaced_pod("long", namespace, grace_period_seconds=30)

    def gone() -> bool:
        try:
            core.read_namespaced_pod("long", namespace)
        except client.ApiException as error:
            return error.status == 404
        return False

    eventually(gone, TIMEOUT, "kwok to remove the deleted Pod")


def _last_signal(core: client.CoreV1Api, name: str) -> datetime:
    """The node's latest sign of life: its Lease renewal or its Ready heartbeat."""
    times = []
    node = core.read_node(name)
    for condition in node.status.conditions or []:
        if condition.type == "Ready" and condition.last_heartbeat_time:
            times.append(condition.last_heartbeat_time)
    try:
        lease = client.CoordinationV1Api(core.api_client).read_namespaced_lease(
            name, "kube-node-lease"
        )
        times.append(lease.spec.renew_time)
    except client.ApiException as error:
        if error.status != 404:
            raise
    return max(times)


def test_the_node_lifecycle_controller_keeps_fake_nodes_healthy(
    api_client: client.ApiClient, fake_nodes: list[str]
) -> None:
    core = client.CoreV1Api(api_client)
    assert fake_nodes
    # Past the controller's grace period (50s) a node without heartbeats would be NotReady
    # and tainted unreachable: give young nodes that long before judging.
    youngest = max(core.read_node(n).metadata.creation_timestamp for n in fake_nodes)
    wait = NODE_GRACE_SECONDS + 10 - (datetime.now(UTC) - youngest).total_seconds()
    if wait > 0:
        time.sleep(wait)
    for name in fake_nodes:
        node = core.read_node(name)
        ready = [c for c in node.status.conditions or [] if c.type == "Ready"]
        assert [c.status for c in ready] == ["True"], (name, ready)
        taints = {t.key for t in node.spec.taints or []}
        assert taints == {"kwok.x-k8s.io/node"}, (name, taints)
        silence = (datetime.now(UTC) - _last_signal(core, name)).total_seconds()
        assert silence < NODE_GRACE_SECONDS, (name, silence)
    # The real kubelet's node is none of kwok's business.
    real = [n for n in core.list_node().items if n.metadata.name not in fake_nodes]
    assert real
    for node in real:
        assert (node.metadata.annotations or {}).get("kwok.x-k8s.io/node") is None
        assert node.status.node_info.kubelet_version.startswith("v")
