"""The cluster itself: what steprun relies on Kubernetes to enforce really is enforced."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from kubernetes import client


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def pod(name: str, image: str, script: str, **spec: object) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            restart_policy="Never",
            containers=[client.V1Container(name="main", image=image, command=["sh", "-c", script])],
            **spec,
        ),
    )


def pod_phase(core: client.CoreV1Api, namespace: str, name: str) -> client.V1Pod | None:
    current = core.read_namespaced_pod(name, namespace)
    return current if current.status.phase in ("Succeeded", "Failed") else None


def test_node_is_ready_at_pinned_version(api_client: client.ApiClient) -> None:
    nodes = client.CoreV1Api(api_client).list_node().items
    real = [n for n in nodes if n.metadata.annotations.get("kwok.x-k8s.io/node") != "fake"]
    assert len(real) == 1
    ready = {c.type: c.status for c in real[0].status.conditions}["Ready"]
    assert ready == "True"
    assert real[0].status.node_info.kubelet_version.startswith("v1.34.")


def test_pod_runs_echo_and_log_is_readable(
    api_client: client.ApiClient, namespace: str, step_image: str
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, pod("echo", step_image, "echo hello-from-the-node"))
    done = wait_until(lambda: pod_phase(core, namespace, "echo"), 90, "the echo Pod to finish")
    assert done.status.phase == "Succeeded"  # type: ignore[attr-defined]
    assert core.read_namespaced_pod_log("echo", namespace).strip() == "hello-from-the-node"


def test_active_deadline_fails_pod_with_deadline_exceeded(
    api_client: client.ApiClient, namespace: str, step_image: str
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(
        namespace,
        pod(
            "sleeper",
            step_image,
            "sleep 60",
            active_deadline_seconds=2,
            termination_grace_period_seconds=1,
        ),
    )
    done = wait_until(lambda: pod_phase(core, namespace, "sleeper"), 60, "the deadline to hit")
    assert done.status.phase == "Failed"  # type: ignore[attr-defined]
    assert done.status.reason == "DeadlineExceeded"  # type: ignore[attr-defined]


def test_restricted_namespace_rejects_privileged_pod(
    api_client: client.ApiClient, namespace: str, step_image: str
) -> None:
    core = client.CoreV1Api(api_client)
    core.patch_namespace(
        namespace,
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
    )
    privileged = pod("priv", step_image, "true")
    privileged.spec.containers[0].security_context = client.V1SecurityContext(privileged=True)
    with pytest.raises(client.ApiException) as refused:
        core.create_namespaced_pod(namespace, privileged)
    assert refused.value.status == 403
    assert "violates PodSecurity" in refused.value.body


def test_garbage_collector_deletes_owned_configmap(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name="owned",
                owner_references=[
                    client.V1OwnerReference(
                        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
                    )
                ],
            )
        ),
    )
    core.delete_namespaced_config_map("owner", namespace)

    def owned_gone() -> bool:
        try:
            core.read_namespaced_config_map("owned", namespace)
            return False
        except client.ApiException as error:
            return error.status == 404

    wait_until(owned_gone, 60, "the garbage collector to delete the owned ConfigMap")
