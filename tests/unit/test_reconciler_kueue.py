"""A StepRun queued by Kueue through the reconciler, against the in-memory API server playing
Kueue's part (admission, eviction): what exists when, and what status says."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from steprun.config import OperatorConfig
from steprun.reconcile.reconciler import Reconciler
from tests.support.fake_kube import FakeKube
from tests.unit.factories import NAME, NAMESPACE, container_status, running, terminated

KEY = (NAMESPACE, NAME)
CONFIG = OperatorConfig(events=True, max_reconcile_failures=3)
WORKLOAD = f"{NAME}-workload"
QUEUE, CQ, FLAVOR = "team-a", "cq-a", "spot"


@pytest.fixture
def kube() -> FakeKube:
    fake = FakeKube()
    fake.put(
        {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "LocalQueue",
            "metadata": {"name": QUEUE, "namespace": NAMESPACE},
            "spec": {"clusterQueue": CQ},
        }
    )
    fake.put(
        {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "ResourceFlavor",
            "metadata": {"name": FLAVOR},
            "spec": {
                "nodeLabels": {"pool": "spot"},
                "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
            },
        }
    )
    return fake


@pytest.fixture
async def reconciler(kube: FakeKube) -> AsyncIterator[Reconciler]:
    rec = Reconciler(kube, CONFIG)  # type: ignore[arg-type]
    yield rec
    await rec.queue.drain()


def submit(kube: FakeKube, rec: Reconciler, **spec: Any) -> None:
    body = {
        "apiVersion": "steprun.dev/v1alpha1",
        "kind": "StepRun",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "generation": 1,
            "labels": {"kueue.x-k8s.io/queue-name": QUEUE},
        },
        "spec": {
            "image": "busybox:1.36",
            "script": "true",
            "resources": {"requests": {"cpu": "1"}},
            **spec,
        },
    }
    rec.stepruns.observe(kube.put(body))


async def step(kube: FakeKube, rec: Reconciler) -> dict[str, Any]:
    body = kube.find("StepRun", NAMESPACE, NAME)
    assert body is not None
    rec.stepruns.observe(body)
    for pod in kube.of_kind("Pod"):
        rec.pods.observe(KEY, pod)
    workload = kube.find("Workload", NAMESPACE, WORKLOAD)
    if workload is not None:
        rec.workloads.observe(KEY, workload)
    await rec.reconcile(KEY)
    return (kube.find("StepRun", NAMESPACE, NAME) or {}).get("status") or {}


def admit(kube: FakeKube) -> None:
    def admitted(workload: dict[str, Any]) -> None:
        conditions = [
            c
            for c in workload.get("status", {}).get("conditions", [])
            if c["type"] not in ("QuotaReserved", "Admitted", "Evicted")
        ]
        workload["status"] = {
            "admission": {
                "clusterQueue": CQ,
                "podSetAssignments": [{"name": "main", "flavors": {"cpu": FLAVOR}}],
            },
            "conditions": [
                *conditions,
                {"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved"},
                {"type": "Admitted", "status": "True", "reason": "Admitted"},
            ],
        }

    kube.cluster.update("Workload", NAMESPACE, WORKLOAD, admitted)


def evict(kube: FakeKube) -> None:
    kube.cluster.update(
        "Workload",
        NAMESPACE,
        WORKLOAD,
        lambda w: w["status"]["conditions"].append(
            {
                "type": "Evicted",
                "status": "True",
                "reason": "Preempted",
                "message": "Preempted to accommodate a higher priority Workload",
            }
        ),
    )


def set_pod(kube: FakeKube, name: str, phase: str, state: dict[str, Any]) -> None:
    kube.cluster.update(
        "Pod",
        NAMESPACE,
        name,
        lambda pod: pod.update(
            status={"phase": phase, "containerStatuses": [container_status(state)]}
        ),
    )


async def test_a_queued_step_lives_through_admission_preemption_and_a_rerun(
    kube: FakeKube, reconciler: Reconciler
) -> None:
    submit(kube, reconciler, retries={"limit": 0})
    status = await step(kube, reconciler)
    # Only the Workload exists while the step waits.
    assert kube.find("Workload", NAMESPACE, WORKLOAD) is not None
    assert kube.of_kind("Pod") == [] and kube.of_kind("ConfigMap") == []
    assert (status["phase"], status["reason"]) == ("Pending", "Queued")
    assert f"LocalQueue {QUEUE}, ClusterQueue {CQ}" in status["message"]
    assert status["queue"]["queuedTime"]

    admit(kube)
    status = await step(kube, reconciler)
    assert status["reason"] == "Admitted" and kube.of_kind("Pod") == []
    assert status["queue"]["flavors"] == {"cpu": FLAVOR} and "queuedTime" not in status["queue"]
    await step(kube, reconciler)
    pod = kube.find("Pod", NAMESPACE, f"{NAME}-1")
    assert pod is not None, "the Pod follows the admission"
    assert pod["spec"]["nodeSelector"]["pool"] == "spot"
    assert {"key": "spot", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"][
        "tolerations"
    ]
    set_pod(kube, f"{NAME}-1", "Running", running())
    assert (await step(kube, reconciler))["phase"] == "Running"

    evict(kube)
    status = await step(kube, reconciler)
    assert kube.find("Pod", NAMESPACE, f"{NAME}-1") is None or kube.find(
        "Pod", NAMESPACE, f"{NAME}-1"
    )["metadata"].get("deletionTimestamp"), "the preempted attempt's Pod goes"
    assert (status["phase"], status["reason"]) == ("Pending", "Queued")
    assert status["attempts"][0]["reason"] == "Preempted"
    # The quota is handed back once nothing of the attempt runs: Kueue queues it again.
    await step(kube, reconciler)
    workload = kube.find("Workload", NAMESPACE, WORKLOAD)
    assert workload is not None and "admission" not in workload["status"]
    kinds = {c["type"]: c["status"] for c in workload["status"]["conditions"]}
    assert kinds["QuotaReserved"] == "False" and kinds["Requeued"] == "True"
    status = await step(kube, reconciler)
    assert status["reason"] == "Queued" and kube.find("Pod", NAMESPACE, f"{NAME}-2") is None

    admit(kube)
    await step(kube, reconciler)
    await step(kube, reconciler)
    assert kube.find("Pod", NAMESPACE, f"{NAME}-2") is not None, "re-run without a retry"
    set_pod(kube, f"{NAME}-2", "Succeeded", terminated(0))
    status = await step(kube, reconciler)
    assert status["phase"] == "Succeeded", status
    assert [a["reason"] for a in status["attempts"]] == ["Preempted", "Completed"]
    assert kube.find("Workload", NAMESPACE, WORKLOAD) is None, "its quota is given back"


async def test_the_queue_timeout_ends_the_wait_and_releases_the_workload(
    kube: FakeKube, reconciler: Reconciler
) -> None:
    submit(kube, reconciler, queueTimeoutSeconds=1)
    assert (await step(kube, reconciler))["reason"] == "Queued"
    kube.cluster.update(
        "StepRun",
        NAMESPACE,
        NAME,
        lambda sr: sr["status"]["queue"].update(queuedTime="2020-01-01T00:00:00Z"),
    )
    status = await step(kube, reconciler)
    assert (status["phase"], status["reason"]) == ("Failed", "QueueTimeout"), status
    assert kube.find("Workload", NAMESPACE, WORKLOAD) is None
    assert kube.of_kind("Pod") == []


async def test_cancelling_a_queued_step_releases_its_workload(
    kube: FakeKube, reconciler: Reconciler
) -> None:
    submit(kube, reconciler)
    await step(kube, reconciler)
    kube.cluster.update("StepRun", NAMESPACE, NAME, lambda sr: sr["spec"].update(cancel=True))
    status = await step(kube, reconciler)
    assert status["phase"] == "Cancelled"
    assert kube.find("Workload", NAMESPACE, WORKLOAD) is None
    assert kube.of_kind("Pod") == [] and kube.of_kind("ConfigMap") == []


@pytest.mark.parametrize(
    "owner",
    [
        pytest.param(None, id="no-owner"),
        pytest.param({"kind": "Job", "apiVersion": "batch/v1"}, id="another-kinds-controller"),
        pytest.param({"kind": "StepRun", "apiVersion": "example.com/v1"}, id="another-group"),
    ],
)
async def test_a_workload_under_the_steps_name_that_it_does_not_control_is_never_adopted(
    kube: FakeKube, reconciler: Reconciler, owner: dict[str, str] | None
) -> None:
    submit(kube, reconciler)
    uid = (kube.find("StepRun", NAMESPACE, NAME) or {})["metadata"]["uid"]
    refs = [{**owner, "name": NAME, "uid": uid, "controller": True}] if owner else []
    kube.put(
        {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "Workload",
            "metadata": {"name": WORKLOAD, "namespace": NAMESPACE, "ownerReferences": refs},
            "spec": {"queueName": QUEUE, "podSets": []},
        }
    )

    status = await step(kube, reconciler)

    assert status.get("phase") == "Failed" and "is not this StepRun's" in status["message"]
    assert kube.of_kind("Pod") == []
    assert (kube.find("Workload", NAMESPACE, WORKLOAD) or {})["spec"]["podSets"] == []
