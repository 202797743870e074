"""Kueue: a queued StepRun's Workload (render), what Kueue says of it (observe) and the next step
(queueing, through decide)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest

from steprun.api.models import Phase, Reason, StepRun
from steprun.config import OperatorConfig
from steprun.observe.workload import observe_workload
from steprun.reconcile.decide import FinishAttempt, Outcome, StartAttempt, Wait, decide
from steprun.reconcile.queueing import (
    CreateWorkload,
    MarkAdmitted,
    MarkQueued,
    Preempt,
    QueueTimedOut,
    Requeue,
    queued_message,
)
from steprun.render.pod import render_pod
from steprun.render.workload import QUEUE_LABEL, render_workload, with_admission
from tests.unit.factories import (
    CREATED,
    NAME,
    NAMESPACE,
    UID,
    at,
    pod,
    retrying_status,
    running,
    running_status,
    steprun_body,
    terminated,
)

CONFIG = OperatorConfig(default_timeout_seconds=3600, default_startup_timeout_seconds=300)
QUEUE = "team-a"
CQ = "cq-a"
NOW = at(CREATED) + timedelta(seconds=60)


def queued_sr(
    status: Mapping[str, Any] | None = None,
    spec: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
) -> StepRun:
    body = steprun_body(spec=spec, status=status)
    body["metadata"]["labels"].update(labels if labels is not None else {QUEUE_LABEL: QUEUE})
    return StepRun.from_body(body)


def workload(
    *,
    admitted: bool = False,
    evicted: str | None = None,
    pending: str = "",
    flavors: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    conditions: list[dict[str, Any]] = []
    status: dict[str, Any] = {"conditions": conditions}
    if admitted or evicted:
        status["admission"] = {
            "clusterQueue": CQ,
            "podSetAssignments": [{"name": "main", "flavors": dict(flavors or {"cpu": "f1"})}],
        }
        conditions.append({"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved"})
        conditions.append({"type": "Admitted", "status": "True", "reason": "Admitted"})
    elif pending:
        conditions.append(
            {"type": "QuotaReserved", "status": "False", "reason": "Pending", "message": pending}
        )
    if evicted:
        conditions.append(
            {"type": "Evicted", "status": "True", "reason": evicted, "message": "by a higher one"}
        )
    return {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "Workload",
        "metadata": {"name": f"{NAME}-workload", "namespace": NAMESPACE, "resourceVersion": "7"},
        "spec": {"queueName": QUEUE},
        "status": status,
    }


def queue_status(**fields: Any) -> dict[str, Any]:
    return {"name": QUEUE, "clusterQueue": CQ, "workload": f"{NAME}-workload"} | fields


def waiting_status(**queue: Any) -> dict[str, Any]:
    message = queued_message(QUEUE, CQ, observe_workload(workload(pending="no quota")))
    return {
        "phase": "Pending",
        "reason": "Queued",
        "message": message,
        "queue": queue_status(queuedTime=CREATED, **queue),
    }


# ---------------------------------------------------------------- render


def test_the_workload_asks_for_exactly_what_the_pod_requests_and_is_owned_by_the_step() -> None:
    sr = queued_sr(
        spec={
            "resources": {"requests": {"cpu": "1"}, "limits": {"memory": "256Mi"}},
            "podTemplate": {"nodeSelector": {"disk": "ssd"}},
        },
        labels={QUEUE_LABEL: QUEUE, "kueue.x-k8s.io/priority-class": "high"},
    )
    config = OperatorConfig(node_selector_keys=["disk"])
    body = render_workload(sr, render_pod(sr, 1, config, None), ("high", 1000))
    assert body["metadata"]["name"] == f"{NAME}-workload"
    assert body["metadata"]["ownerReferences"][0]["uid"] == UID
    assert body["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "high"
    spec = body["spec"]
    assert spec["queueName"] == QUEUE
    assert spec["priority"] == 1000
    assert spec["priorityClassRef"] == {
        "group": "kueue.x-k8s.io",
        "kind": "WorkloadPriorityClass",
        "name": "high",
    }
    (pod_set,) = spec["podSets"]
    assert pod_set["count"] == 1
    template = pod_set["template"]["spec"]
    assert template["nodeSelector"] == {"disk": "ssd"}
    (container,) = template["containers"]
    assert container["resources"] == {"requests": {"cpu": "1"}, "limits": {"memory": "256Mi"}}
    # Nothing of the step's script, env or context reaches Kueue.
    assert set(container) <= {"name", "image", "resources"}


def test_a_step_without_the_queue_label_has_no_workload() -> None:
    sr = queued_sr(labels={})
    with pytest.raises(ValueError, match="queue-name"):
        render_workload(sr, render_pod(sr, 1, CONFIG, None))


def test_the_admitted_flavors_place_the_pod() -> None:
    placed = with_admission(
        {"spec": {"nodeSelector": {"disk": "ssd"}, "tolerations": [{"key": "a"}]}},
        [
            {
                "spec": {
                    "nodeLabels": {"pool": "spot", "disk": "hdd"},
                    "tolerations": [{"key": "spot", "effect": "NoSchedule"}, {"key": "a"}],
                }
            }
        ],
    )
    assert placed["spec"]["nodeSelector"] == {"disk": "ssd", "pool": "spot"}
    assert placed["spec"]["tolerations"] == [{"key": "a"}, {"key": "spot", "effect": "NoSchedule"}]


# ---------------------------------------------------------------- observe


def test_observe_reads_admission_eviction_and_the_pending_reason() -> None:
    admitted = observe_workload(workload(admitted=True, flavors={"cpu": "f1", "memory": "f2"}))
    assert admitted.admitted and admitted.reserved and not admitted.evicted
    assert admitted.cluster_queue == CQ
    assert admitted.flavors == {"cpu": "f1", "memory": "f2"}
    evicted = observe_workload(workload(evicted="Preempted"))
    assert evicted.evicted_reason == "Preempted" and evicted.reserved
    waiting = observe_workload(workload(pending="insufficient quota"))
    assert not waiting.admitted and waiting.pending_message == "insufficient quota"


# ---------------------------------------------------------------- decide


def test_an_unlabelled_step_is_untouched_by_kueue() -> None:
    assert decide(queued_sr(labels={}), None, NOW, CONFIG) == StartAttempt(1)


def test_nothing_of_a_queued_step_exists_before_its_workload() -> None:
    assert decide(queued_sr(), None, NOW, CONFIG) == CreateWorkload()


def test_a_waiting_step_records_why_it_waits_then_waits() -> None:
    wl = workload(pending="no quota")
    first = decide(queued_sr(), None, NOW, CONFIG, workload=wl)
    assert isinstance(first, MarkQueued)
    assert decide(queued_sr(waiting_status()), None, NOW, CONFIG, workload=wl) == Wait()


def test_kueue_changing_its_reason_is_recorded() -> None:
    wl = workload(pending="now for another reason")
    assert isinstance(
        decide(queued_sr(waiting_status()), None, NOW, CONFIG, workload=wl), MarkQueued
    )


def test_the_queue_timeout_bounds_the_wait() -> None:
    sr = queued_sr(waiting_status(), spec={"queueTimeoutSeconds": 120})
    wl = workload(pending="no quota")
    assert decide(sr, None, NOW, CONFIG, workload=wl) == Wait(
        until=at(CREATED) + timedelta(seconds=120)
    )
    ended = decide(sr, None, at(CREATED) + timedelta(seconds=120), CONFIG, workload=wl)
    assert isinstance(ended, QueueTimedOut)
    assert "queueTimeoutSeconds (120s)" in ended.message
    assert f"LocalQueue {QUEUE}, ClusterQueue {CQ}" in ended.message


def test_no_startup_timeout_runs_while_queued() -> None:
    # Queued far longer than any startup timeout: still only waiting.
    later = at(CREATED) + timedelta(hours=5)
    wl = workload(pending="no quota")
    assert decide(queued_sr(waiting_status()), None, later, CONFIG, workload=wl) == Wait()


def test_admission_is_recorded_before_the_pod_is_created() -> None:
    wl = workload(admitted=True)
    decision = decide(queued_sr(waiting_status()), None, NOW, CONFIG, workload=wl)
    assert decision == MarkAdmitted(CQ, {"cpu": "f1"})
    admitted = waiting_status() | {
        "reason": "Admitted",
        "queue": queue_status(admittedTime=CREATED),
    }
    assert decide(queued_sr(admitted), None, NOW, CONFIG, workload=wl) == StartAttempt(1)


def test_an_evicted_running_attempt_is_preempted() -> None:
    sr = queued_sr(running_status(1, queue=queue_status(admittedTime=CREATED)))
    decision = decide(
        sr, pod("Running", running()), NOW, CONFIG, workload=workload(evicted="Preempted")
    )
    assert isinstance(decision, Preempt)
    assert decision.pod_name == sr.status.pod_name
    assert "Preempted" in decision.message


def test_a_running_attempt_whose_admission_was_withdrawn_is_preempted() -> None:
    sr = queued_sr(running_status(1, queue=queue_status(admittedTime=CREATED)))
    decision = decide(sr, pod("Running", running()), NOW, CONFIG, workload=None)
    assert isinstance(decision, Preempt)


def test_an_evicted_step_with_nothing_running_hands_its_quota_back() -> None:
    status = retrying_status(1, CREATED, reason="Queued", queue=queue_status(queuedTime=CREATED))
    decision = decide(queued_sr(status), None, NOW, CONFIG, workload=workload(evicted="Preempted"))
    assert isinstance(decision, Requeue)


def test_a_pod_that_ended_before_the_eviction_is_recorded_first() -> None:
    sr = queued_sr(running_status(1, queue=queue_status(admittedTime=CREATED)))
    ended = pod("Succeeded", terminated(0))
    decision = decide(sr, ended, NOW, CONFIG, workload=workload(evicted="Preempted"))
    assert isinstance(decision, FinishAttempt)
    assert decision.outcome.phase == Phase.SUCCEEDED


def test_a_preempted_attempt_spends_no_retry() -> None:
    status = running_status(2, queue=queue_status(admittedTime=CREATED))
    status["attempts"][0].update(reason="Preempted", completionTime=CREATED)
    sr = queued_sr(status, spec={"retries": {"limit": 1, "backoffSeconds": 5}})
    failed = pod("Failed", terminated(3), name=status["podName"])
    decision = decide(sr, failed, NOW, CONFIG, workload=workload(admitted=True))
    assert isinstance(decision, FinishAttempt)
    assert decision.retry_at is not None, "attempt 2 is the first real one: one retry is left"
    # Without the preemption, attempt 2 would have been the last one allowed.
    status["attempts"][0]["reason"] = "Error"
    sr = queued_sr(status, spec={"retries": {"limit": 1, "backoffSeconds": 5}})
    assert decide(sr, failed, NOW, CONFIG, workload=workload(admitted=True)).retry_at is None  # type: ignore[union-attr]


def test_reasons_are_the_api_names() -> None:
    assert (Reason.QUEUED, Reason.QUEUE_TIMEOUT, Reason.PREEMPTED) == (
        "Queued",
        "QueueTimeout",
        "Preempted",
    )
    assert Outcome(Phase.FAILED, Reason.PREEMPTED, "x").reason == "Preempted"


def test_describe_shows_where_a_queued_step_waits_and_for_how_long() -> None:
    from steprun.cli.describe import describe

    body = steprun_body(status=waiting_status(waitSeconds=7, flavors={"cpu": "f1"}))
    text = describe(body, [], [], NOW)
    lines = {
        line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
        for line in text.splitlines()
        if ":" in line
    }
    assert lines["LocalQueue"] == QUEUE
    assert lines["ClusterQueue"] == CQ
    assert lines["Waiting"] == "60s"
    assert lines["Waited"] == "7s"
    assert lines["Flavors"] == "cpu=f1"


def test_an_admission_is_recorded_once_even_where_status_queue_does_not_stick() -> None:
    # An older CRD prunes status.queue: the recorded reason still says the admission is known.
    admitted = {"phase": "Pending", "reason": "Admitted", "message": "admitted by Kueue"}
    decision = decide(queued_sr(admitted), None, NOW, CONFIG, workload=workload(admitted=True))
    assert decision == StartAttempt(1)
    pruned = waiting_status()
    pruned.pop("queue")
    wl = workload(pending="no quota")
    assert decide(queued_sr(pruned), None, NOW, CONFIG, workload=wl) == Wait()
