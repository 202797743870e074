"""Steps queued by a real Kueue (hack/kueue-up.sh): quota, priorities and preemption.

ResourceFlavors, ClusterQueues and WorkloadPriorityClasses are cluster-scoped and the cluster is
shared with other test sessions: each test makes its own, under unique names, and deletes them
at the end.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes import client

from tests.support.operator_process import OperatorProcess
from tests.support.steps import Steps, eventually

KUEUE = ("kueue.x-k8s.io", "v1beta2")
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"


@pytest.fixture
def steps(api_client: client.ApiClient, namespace: str, operator: OperatorProcess) -> Steps:
    return Steps(api_client, namespace)


@dataclass
class Queues:
    """The Kueue objects of one test: a flavour, ClusterQueues, LocalQueues, priority classes."""

    api: client.ApiClient
    namespace: str
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    made: list[tuple[str, str | None, str]] = field(default_factory=list)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def _create(self, plural: str, body: dict[str, Any], namespaced: bool = False) -> str:
        name = body["metadata"]["name"]
        body = {"apiVersion": "/".join(KUEUE), **body}
        if namespaced:
            self.custom.create_namespaced_custom_object(*KUEUE, self.namespace, plural, body)
            self.made.append((plural, self.namespace, name))
        else:
            self.custom.create_cluster_custom_object(*KUEUE, plural, body)
            self.made.append((plural, None, name))
        return str(name)

    def local_queue(self, cpu: str = "1", preemption: str = "Never", hold: bool = False) -> str:
        """A LocalQueue in the test's namespace, behind a ClusterQueue of ``cpu`` CPUs (which
        admits nothing until ``release``d, with ``hold``)."""
        flavor = self._create(
            "resourceflavors",
            {"kind": "ResourceFlavor", "metadata": {"name": f"e2e-{self.suffix}"}},
        )
        cluster_queue = self._create(
            "clusterqueues",
            {
                "kind": "ClusterQueue",
                "metadata": {"name": f"e2e-{self.suffix}-{len(self.made)}"},
                "spec": {
                    "namespaceSelector": {},
                    "stopPolicy": "Hold" if hold else "None",
                    "preemption": {"withinClusterQueue": preemption},
                    "resourceGroups": [
                        {
                            "coveredResources": ["cpu", "memory"],
                            "flavors": [
                                {
                                    "name": flavor,
                                    "resources": [
                                        {"name": "cpu", "nominalQuota": cpu},
                                        {"name": "memory", "nominalQuota": "4Gi"},
                                    ],
                                }
                            ],
                        }
                    ],
                },
            },
        )
        return self._create(
            "localqueues",
            {
                "kind": "LocalQueue",
                "metadata": {"name": f"lq-{len(self.made)}", "namespace": self.namespace},
                "spec": {"clusterQueue": cluster_queue},
            },
            namespaced=True,
        )

    def cluster_queue_of(self, local_queue: str) -> str:
        body = self.custom.get_namespaced_custom_object(
            *KUEUE, self.namespace, "localqueues", local_queue
        )
        return str(body["spec"]["clusterQueue"])

    def release(self, cluster_queue: str) -> None:
        self.custom.patch_cluster_custom_object(
            *KUEUE, "clusterqueues", cluster_queue, {"spec": {"stopPolicy": "None"}}
        )

    def priority(self, value: int) -> str:
        return self._create(
            "workloadpriorityclasses",
            {
                "kind": "WorkloadPriorityClass",
                "metadata": {"name": f"e2e-{self.suffix}-{value}"},
                "value": value,
            },
        )

    def workloads(self) -> list[dict[str, Any]]:
        listed = self.custom.list_namespaced_custom_object(*KUEUE, self.namespace, "workloads")
        return list(listed["items"])

    def delete_all(self) -> None:
        for plural, namespace, name in reversed(self.made):
            try:
                if namespace:
                    self.custom.delete_namespaced_custom_object(*KUEUE, namespace, plural, name)
                else:
                    self.custom.delete_cluster_custom_object(*KUEUE, plural, name)
            except client.ApiException as error:
                if error.status != 404:
                    raise


@pytest.fixture
def queues(api_client: client.ApiClient, namespace: str) -> Iterator[Queues]:
    made = Queues(api_client, namespace)
    yield made
    made.delete_all()


def step(image: str, script: str, cpu: str = "1", **spec: Any) -> dict[str, Any]:
    return {
        "image": image,
        "script": script,
        "resources": {"requests": {"cpu": cpu, "memory": "32Mi"}},
        **spec,
    }


def _step_ended(pod: client.V1Pod) -> bool:
    """The kubelet records the step container's end a moment before the Pod's phase: the step
    is over (and its quota given back) from then on."""
    for status in pod.status.container_statuses or []:
        if status.name == "step" and status.state and status.state.terminated:
            return True
    return False


class PodWatch:
    """Counts the step Pods of the namespace whose step runs (or is about to) at once, by
    polling."""

    def __init__(self, steps: Steps, names: set[str]):
        self.steps, self.names = steps, names
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pods = self.steps.core.list_namespaced_pod(self.steps.namespace).items
            live = [
                p
                for p in pods
                if (p.metadata.labels or {}).get("steprun.dev/name") in self.names
                and p.status.phase not in ("Succeeded", "Failed")
                and not _step_ended(p)
            ]
            self.most = max(self.most, len(live))
            time.sleep(0.1)

    def __enter__(self) -> PodWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def nothing_of(steps: Steps, queues: Queues, name: str, *, pods: bool = True) -> list[str]:
    """What of StepRun ``name`` exists besides itself: Pods (a finished step keeps its Pods
    until it is deleted), context, Workload."""
    left = [f"Pod/{p.metadata.name}" for p in steps.pods(name)] if pods else []
    left += steps.context_outliving(name)
    left += [
        f"Workload/{w['metadata']['name']}"
        for w in queues.workloads()
        if w["metadata"]["name"] == f"{name}-workload"
    ]
    return left


def test_three_steps_share_one_cpu_one_at_a_time(
    steps: Steps, queues: Queues, step_image: str
) -> None:
    # The ClusterQueue holds admission until all three wait: each is seen Queued.
    queue = queues.local_queue(cpu="1", hold=True)
    cluster_queue = queues.cluster_queue_of(queue)
    names = {"first", "second", "third"}
    with PodWatch(steps, names) as watch:
        for name in sorted(names):
            steps.create(name, step(step_image, "sleep 2"), labels={QUEUE_LABEL: queue})
        for name in sorted(names):
            status = eventually(
                lambda n=name: (s := steps.status(n)).get("reason") == "Queued" and s,
                60,
                f"{name} queued",
            )
            assert f"LocalQueue {queue}, ClusterQueue {cluster_queue}" in status["message"]
            assert steps.pods(name) == [] and steps.context_outliving(name) == []
        queues.release(cluster_queue)
        ended = {name: steps.wait_terminal(name, timeout=180) for name in names}
    assert {s["phase"] for s in ended.values()} == {"Succeeded"}, ended
    assert watch.most == 1, f"{watch.most} step Pods existed at once under a one-CPU quota"
    for name, status in ended.items():
        assert status["queue"]["name"] == queue
        assert status["queue"]["clusterQueue"] == cluster_queue
        assert status["queue"]["workload"] == f"{name}-workload"
        assert [a["reason"] for a in status["attempts"]] == ["Completed"]
    # The last admitted waited for two whole steps (two seconds each) at least.
    waits = sorted(s["queue"]["waitSeconds"] for s in ended.values())
    assert waits[2] >= 4, waits
    for name in names:
        eventually(
            lambda n=name: not nothing_of(steps, queues, n, pods=False), 30, f"{name} cleaned up"
        )


def test_a_queued_step_says_where_it_waits_and_has_nothing_else(
    steps: Steps, queues: Queues, step_image: str
) -> None:
    queue = queues.local_queue(cpu="1")
    steps.create("blocker", step(step_image, "sleep 300"), labels={QUEUE_LABEL: queue})
    steps.wait_phase("blocker", "Running", timeout=90)
    secret = {
        "context": {"secrets": [{"name": "TOKEN", "secretKeyRef": {"name": "s", "key": "k"}}]}
    }
    steps.core.create_namespaced_secret(
        steps.namespace, {"metadata": {"name": "s"}, "stringData": {"k": "v"}}
    )
    for name in ("cancelled", "deleted"):
        steps.create(name, step(step_image, "true", **secret), labels={QUEUE_LABEL: queue})
    cluster_queue = queues.cluster_queue_of(queue)
    for name in ("cancelled", "deleted"):
        status = eventually(
            lambda n=name: (s := steps.status(n)).get("reason") == "Queued" and s,
            60,
            f"{name} queued",
        )
        assert status["phase"] == "Pending"
        assert f"LocalQueue {queue}" in status["message"], status
        assert f"ClusterQueue {cluster_queue}" in status["message"], status
        assert steps.pods(name) == [] and steps.context_outliving(name) == []
        assert [
            w["metadata"]["name"]
            for w in queues.workloads()
            if w["metadata"]["name"] == f"{name}-workload"
        ]
    steps.patch_spec("cancelled", {"cancel": True})
    assert steps.wait_terminal("cancelled", timeout=60)["phase"] == "Cancelled"
    steps.custom.delete_namespaced_custom_object(
        "steprun.dev", "v1alpha1", steps.namespace, "stepruns", "deleted"
    )
    for name in ("cancelled", "deleted"):
        eventually(lambda n=name: not nothing_of(steps, queues, n), 60, f"nothing of {name} left")
    steps.patch_spec("blocker", {"cancel": True})
    steps.wait_terminal("blocker", timeout=90)


def test_a_higher_priority_step_preempts_a_running_one_which_runs_again(
    steps: Steps, queues: Queues, step_image: str
) -> None:
    queue = queues.local_queue(cpu="1", preemption="LowerPriority")
    low, high = queues.priority(10), queues.priority(1000)
    steps.create(
        "low",
        step(step_image, "sleep 8", retries={"limit": 0}),
        labels={QUEUE_LABEL: queue, PRIORITY_LABEL: low},
    )
    steps.wait_phase("low", "Running", timeout=90)
    steps.create(
        "high", step(step_image, "sleep 2"), labels={QUEUE_LABEL: queue, PRIORITY_LABEL: high}
    )
    assert steps.wait_terminal("high", timeout=120)["phase"] == "Succeeded"
    status = steps.wait_terminal("low", timeout=180)
    assert status["phase"] == "Succeeded", status
    reasons = [a["reason"] for a in status["attempts"]]
    assert reasons == ["Preempted", "Completed"], status["attempts"]
    assert "Preempted" in status["attempts"][0]["message"]
    # The preempted attempt's Pod was gone before the higher one's ran: "high" had its CPU.
    assert [p.metadata.name for p in steps.pods("low")] in (["low-2"], [])


def test_a_step_without_the_queue_label_is_untouched_by_kueue(
    steps: Steps, queues: Queues, step_image: str
) -> None:
    queues.local_queue(cpu="0")
    steps.create("free", step(step_image, "true", cpu="100m"))
    status = steps.wait_terminal("free", timeout=90)
    assert status["phase"] == "Succeeded" and "queue" not in status, status
    assert queues.workloads() == []


def test_queue_timeout_ends_a_step_that_cannot_be_admitted(
    steps: Steps, queues: Queues, step_image: str
) -> None:
    queue = queues.local_queue(cpu="0")
    steps.create(
        "starved", step(step_image, "true", queueTimeoutSeconds=5), labels={QUEUE_LABEL: queue}
    )
    status = steps.wait_terminal("starved", timeout=60)
    assert (status["phase"], status["reason"]) == ("Failed", "QueueTimeout"), status
    assert "queueTimeoutSeconds (5s)" in status["message"]
    assert status.get("attempts", []) == []
    eventually(lambda: not nothing_of(steps, queues, "starved"), 30, "nothing of it left")
