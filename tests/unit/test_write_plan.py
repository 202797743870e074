"""The requests one step costs the API server, exactly, from creation to its Pod released.

A table of steps, each with the request sequence a successful run makes under the default
configuration: what the API server sees per step is what bounds throughput, so an extra read or
write anywhere in the path fails here first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from steprun.config import EventPolicy, OperatorConfig
from steprun.reconcile.decide import PENDING_RECORD_AFTER
from steprun.reconcile.reconciler import Reconciler
from steprun.render.names import ANNOTATION_CREATED_AT as CREATED_AT
from steprun.timeutil import format_time
from tests.support.fake_cluster import Killed
from tests.support.fake_kube import FakeKube
from tests.unit.factories import NAMESPACE, container_status, running, terminated

Call = tuple[str, str, str | None]
SECRET_VALUE = "c2VjcmV0"  # base64 of "secret"


def steprun(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "steprun.dev/v1alpha1",
        "kind": "StepRun",
        "metadata": {"name": name, "namespace": NAMESPACE, "generation": 1},
        "spec": {"image": "busybox:1.36", **spec},
    }


def cluster() -> FakeKube:
    kube = FakeKube()
    kube.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    kube.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "gh", "namespace": NAMESPACE},
            "data": {"token": SECRET_VALUE},
        }
    )
    return kube


async def reconcile(kube: FakeKube, rec: Reconciler, name: str) -> None:
    """One reconcile of ``name``, its caches fed first as the watches would."""
    key = (NAMESPACE, name)
    body = kube.find("StepRun", NAMESPACE, name)
    assert body is not None
    rec.stepruns.observe(body)
    for pod in kube.of_kind("Pod"):
        if pod["metadata"]["name"].startswith(f"{name}-"):
            rec.pods.observe(key, pod)
    await rec.reconcile(key)


def set_pod(kube: FakeKube, name: str, phase: str) -> None:
    state = running() if phase == "Running" else terminated(0)

    def change(pod: dict[str, Any]) -> None:
        pod["spec"]["nodeName"] = "node-1"
        pod["status"] = {"phase": phase, "containerStatuses": [container_status(state)]}

    kube.cluster.update("Pod", NAMESPACE, f"{name}-1", change)


async def finish(kube: FakeKube, rec: Reconciler, name: str) -> None:
    """The step's Pod succeeds; the operator records it and releases the Pod."""
    set_pod(kube, name, "Succeeded")
    await reconcile(kube, rec, name)  # the outcome
    await reconcile(kube, rec, name)  # the Pod released
    await reconcile(kube, rec, name)  # nothing left to do
    status = (kube.find("StepRun", NAMESPACE, name) or {}).get("status") or {}
    assert status.get("phase") == "Succeeded"


async def run_to_success(kube: FakeKube, rec: Reconciler, name: str, spec: dict[str, Any]) -> None:
    """Create, start, run and finish one step."""
    rec.stepruns.observe(kube.put(steprun(name, spec)))
    await reconcile(kube, rec, name)
    set_pod(kube, name, "Running")
    await reconcile(kube, rec, name)
    await finish(kube, rec, name)


def plan(name: str, *middle: Call) -> list[Call]:
    return [
        *middle,
        ("create", "Pod", f"{name}-1"),
        # Nothing is written while the Pod starts: it runs by the time it is first seen, and
        # one write records the attempt, its Pod (with the operator's creation time) and
        # that it runs.
        ("patch_status", "StepRun", name),  # Running
        # docs/api.md: the context is deleted at a terminal phase, only if it is the StepRun's: by
        # the uid of the ConfigMap the operator created, so a namesake made since survives.
        ("delete", "ConfigMap", f"{name}-context"),
        ("patch_status", "StepRun", name),  # Succeeded
        ("remove_finalizer", "Pod", f"{name}-1"),
    ]


def context(name: str) -> Call:
    return ("create", "ConfigMap", f"{name}-context")


PLANS: list[Any] = [
    pytest.param(
        {"script": "make lint"},
        {},
        lambda n: plan(n, context(n)),
        id="script",
    ),
    pytest.param(
        {
            "command": ["make", "lint"],
            "env": {"LOG": "debug"},
            "context": {"inputs": {"branch": "main"}, "env": {"CI": "true"}},
        },
        {},
        lambda n: plan(n, context(n)),
        id="inputs-and-env",
    ),
    pytest.param(
        {
            "script": "make lint",
            "context": {
                "secrets": [{"name": "TOKEN", "secretKeyRef": {"name": "gh", "key": "token"}}]
            },
        },
        {"require_admission_policy": False},
        lambda n: [
            # One round trip before the Pod: the ConfigMap, the Pod and the source Secret's
            # read go at once (seen here in the order the event loop runs them), the copy of
            # the values follows the read; the kubelet starts no container before it exists.
            context(n),
            ("create", "Pod", f"{n}-1"),
            ("get", "Secret", "gh"),
            ("create", "Secret", f"{n}-context"),
            plan(n)[1],
            # The step's own Secret, deleted by its uid so the copy of the values does not
            # outlive the step. Not read: the Pod reported no text that could hold a value.
            ("delete", "Secret", f"{n}-context"),
            *plan(n)[2:],
        ],
        id="secrets",
    ),
]


@pytest.mark.parametrize(("spec", "settings", "expected"), PLANS)
async def test_a_successful_step_makes_exactly_these_requests(
    spec: dict[str, Any], settings: dict[str, Any], expected: Any
) -> None:
    kube = cluster()
    rec = Reconciler(kube, OperatorConfig(**settings))  # type: ignore[arg-type]
    # The first step of a namespace reads the namespace and the admission state once.
    await run_to_success(kube, rec, "first", spec)
    kube.calls.clear()

    await run_to_success(kube, rec, "second", spec)

    assert kube.calls == expected("second")
    await rec.queue.drain()


async def test_a_step_over_by_the_time_its_pod_is_first_seen_costs_one_status_write() -> None:
    kube = cluster()
    rec = Reconciler(kube, OperatorConfig())
    spec = {"script": "make lint"}
    await run_to_success(kube, rec, "first", spec)
    kube.calls.clear()
    rec.stepruns.observe(kube.put(steprun("second", spec)))
    await reconcile(kube, rec, "second")

    await finish(kube, rec, "second")

    assert kube.calls == [
        ("create", "ConfigMap", "second-context"),
        ("create", "Pod", "second-1"),
        ("delete", "ConfigMap", "second-context"),
        ("patch_status", "StepRun", "second"),  # Succeeded, the attempt recorded with it
        ("remove_finalizer", "Pod", "second-1"),
    ]
    status = (kube.find("StepRun", NAMESPACE, "second") or {})["status"]
    pod = kube.find("Pod", NAMESPACE, "second-1") or {}
    created = pod["metadata"]["annotations"][CREATED_AT]
    assert status["attempts"] == [
        {
            "attempt": 1,
            "podName": "second-1",
            "creationTime": created,
            "startTime": status["attempts"][0]["startTime"],
            "completionTime": status["attempts"][0]["completionTime"],
            "exitCode": 0,
            "reason": "Completed",
            "message": "the step completed",
        }
    ]
    assert status["startTime"] == created
    await rec.queue.drain()


async def a_second_step_started(
    spec: dict[str, Any], config: OperatorConfig | None = None
) -> tuple[FakeKube, Reconciler]:
    """A namespace whose first step has run (its one-time reads are done), and a second step of
    ``spec`` reconciled once: its context and Pod created, nothing recorded yet."""
    kube = cluster()
    rec = Reconciler(kube, config or OperatorConfig())
    await run_to_success(kube, rec, "first", spec)
    rec.stepruns.observe(kube.put(steprun("second", spec)))
    await reconcile(kube, rec, "second")
    return kube, rec


async def test_a_pod_slow_to_start_is_recorded_pending_once() -> None:
    kube, rec = await a_second_step_started({"script": "make lint"})
    await reconcile(kube, rec, "second")
    assert "phase" not in ((kube.find("StepRun", NAMESPACE, "second") or {}).get("status") or {})
    # Not scheduled yet, and by the operator's record created long enough ago to say so.
    created = datetime.now(UTC) - PENDING_RECORD_AFTER - timedelta(seconds=1)
    kube.cluster.update(
        "Pod",
        NAMESPACE,
        "second-1",
        lambda pod: pod["metadata"]["annotations"].update({CREATED_AT: format_time(created)}),
    )
    kube.calls.clear()

    await reconcile(kube, rec, "second")
    await reconcile(kube, rec, "second")

    assert kube.calls == [("patch_status", "StepRun", "second")]
    status = (kube.find("StepRun", NAMESPACE, "second") or {})["status"]
    assert (status["phase"], status["reason"], status["podName"]) == (
        "Pending",
        "PodCreated",
        "second-1",
    )
    assert status["attempts"] == [
        {"attempt": 1, "podName": "second-1", "creationTime": format_time(created)}
    ]
    set_pod(kube, "second", "Running")
    await reconcile(kube, rec, "second")
    assert kube.calls[1:] == [("patch_status", "StepRun", "second")]
    await rec.queue.drain()


async def test_a_step_that_reports_outputs_reads_its_secret_once_to_mask_them() -> None:
    secret = [{"name": "TOKEN", "secretKeyRef": {"name": "gh", "key": "token"}}]
    spec = {"script": "make lint", "context": {"secrets": secret}}
    kube, rec = await a_second_step_started(spec, OperatorConfig(require_admission_policy=False))
    set_pod(kube, "second", "Running")
    await reconcile(kube, rec, "second")
    kube.calls.clear()
    said = '{"token": "secret"}'
    done = {
        "phase": "Succeeded",
        "containerStatuses": [container_status(terminated(0, message=said))],
    }
    kube.cluster.update("Pod", NAMESPACE, "second-1", lambda pod: pod.update(status=done))

    await reconcile(kube, rec, "second")

    assert kube.calls[:3] == [
        ("get", "Secret", "second-context"),  # the values to mask, and the uid to delete
        ("delete", "Secret", "second-context"),
        ("delete", "ConfigMap", "second-context"),
    ]
    status = (kube.find("StepRun", NAMESPACE, "second") or {})["status"]
    assert status["outputs"] == {"token": "***"}
    await rec.queue.drain()


async def test_after_a_restart_the_context_is_read_before_it_is_deleted() -> None:
    # What the operator created is remembered in memory only: a restarted operator checks
    # that the ConfigMap is still the StepRun's before deleting it.
    kube, rec = await a_second_step_started({"script": "make lint"})
    set_pod(kube, "second", "Running")
    await reconcile(kube, rec, "second")
    await rec.queue.drain()
    restarted = Reconciler(kube, OperatorConfig())
    kube.calls.clear()

    await finish(kube, restarted, "second")

    assert kube.calls == [
        ("get", "ConfigMap", "second-context"),
        ("delete", "ConfigMap", "second-context"),
        ("patch_status", "StepRun", "second"),
        ("remove_finalizer", "Pod", "second-1"),
    ]
    await restarted.queue.drain()


async def test_a_context_replaced_while_the_step_ran_is_read_and_left_alone() -> None:
    kube = cluster()
    rec = Reconciler(kube, OperatorConfig())
    rec.stepruns.observe(kube.put(steprun("step", {"script": "make lint"})))
    await reconcile(kube, rec, "step")
    set_pod(kube, "step", "Running")
    await reconcile(kube, rec, "step")
    # Someone deletes the ConfigMap and makes their own under the same name.
    kube.cluster.remove("ConfigMap", NAMESPACE, "step-context")
    theirs = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"mine": "yes"}}
    kube.put({**theirs, "metadata": {"name": "step-context", "namespace": NAMESPACE}})
    kube.calls.clear()

    await finish(kube, rec, "step")

    assert kube.calls[:3] == [
        ("delete", "ConfigMap", "step-context"),  # refused: not the uid the operator made
        ("get", "ConfigMap", "step-context"),
        ("patch_status", "StepRun", "step"),
    ]
    left = kube.find("ConfigMap", NAMESPACE, "step-context")
    assert left is not None and left["data"] == {"mine": "yes"}
    await rec.queue.drain()


@pytest.mark.parametrize(
    ("policy", "posted"),
    [
        pytest.param(EventPolicy.OFF, [], id="off"),
        pytest.param(EventPolicy.WARNINGS, [], id="warnings"),
        # One per status transition: a Pod running by the first look is never recorded Pending.
        pytest.param(EventPolicy.ALL, ["Started", "Completed"], id="all"),
    ],
)
async def test_events_of_a_successful_step(policy: EventPolicy, posted: list[str]) -> None:
    kube = cluster()
    rec = Reconciler(kube, OperatorConfig(events=policy))  # type: ignore[arg-type]

    await run_to_success(kube, rec, "ok", {"script": "true"})

    assert sorted(e["reason"] for e in kube.of_kind("Event")) == sorted(posted)
    await rec.queue.drain()


@pytest.mark.parametrize(
    ("policy", "posted"),
    [
        pytest.param(EventPolicy.OFF, [], id="off"),
        pytest.param(EventPolicy.WARNINGS, ["InvalidSpec"], id="warnings"),
        pytest.param(EventPolicy.ALL, ["InvalidSpec"], id="all"),
    ],
)
async def test_a_failure_is_posted_unless_events_are_off(
    policy: EventPolicy, posted: list[str]
) -> None:
    kube = cluster()
    rec = Reconciler(kube, OperatorConfig(events=policy))  # type: ignore[arg-type]
    bad = steprun("bad", {"script": "true", "context": {"inputs": {"x": "y" * 300_000}}})
    rec.stepruns.observe(kube.put(bad))

    await rec.reconcile((NAMESPACE, "bad"))

    assert [(e["type"], e["reason"]) for e in kube.of_kind("Event")] == [
        ("Warning", r) for r in posted
    ]
    await rec.queue.drain()


@pytest.mark.parametrize(
    ("value", "policy"),
    [
        ("true", EventPolicy.ALL),
        ("false", EventPolicy.OFF),
        ("warnings", EventPolicy.WARNINGS),
        ("all", EventPolicy.ALL),
        ("off", EventPolicy.OFF),
    ],
)
def test_steprun_events_reads_the_old_booleans_and_the_policies(
    value: str, policy: EventPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STEPRUN_EVENTS", value)
    assert OperatorConfig().events == policy


def test_events_default_to_warnings_only() -> None:
    assert OperatorConfig().events == EventPolicy.WARNINGS


# ---------------------------------------------------------------- killed at any request

KILL_SPECS = [
    pytest.param({"command": ["make"], "context": {"inputs": {"branch": "main"}}}, {}, id="inputs"),
    pytest.param(
        {
            "script": "make lint",
            "context": {
                "inputs": {"branch": "main"},
                "secrets": [{"name": "TOKEN", "secretKeyRef": {"name": "gh", "key": "token"}}],
            },
        },
        {"require_admission_policy": False},
        id="secrets",
    ),
]


def advance(kube: FakeKube, name: str) -> None:
    """The world moves on between reconciles: the Pod is scheduled and runs, then succeeds."""
    pod = kube.find("Pod", NAMESPACE, f"{name}-1")
    if pod is None:
        return
    phase = (pod.get("status") or {}).get("phase")
    if phase is None:
        set_pod(kube, name, "Running")
    elif phase == "Running":
        set_pod(kube, name, "Succeeded")


async def drive(
    kube: FakeKube, settings: dict[str, Any], name: str, spec: dict[str, Any], kill: int | None
) -> int:
    """One step from creation to rest, the operator killed at request ``kill`` (then restarted
    with nothing in memory, its caches filled again as a relist would). Returns the requests
    made."""
    key = (NAMESPACE, name)
    rec = Reconciler(kube, OperatorConfig(**settings))  # type: ignore[arg-type]
    kube.put(steprun(name, spec))
    start = len(kube.calls)
    if kill is not None:
        kube.cluster.kill_at(kill)
    for _ in range(12):
        try:
            body = kube.find("StepRun", NAMESPACE, name)
            assert body is not None
            rec.stepruns.observe(body)
            for pod in kube.of_kind("Pod"):
                rec.pods.observe(key, pod)
            await rec.reconcile(key)
        except Killed:
            await rec.queue.drain()
            rec = Reconciler(kube, OperatorConfig(**settings))  # type: ignore[arg-type]
            continue
        advance(kube, name)
    await rec.queue.drain()
    return len(kube.calls) - start


@pytest.mark.parametrize(("spec", "settings"), KILL_SPECS)
async def test_killed_before_any_request_the_step_still_runs_once_and_cleans_up(
    spec: dict[str, Any], settings: dict[str, Any]
) -> None:
    requests = await drive(cluster(), settings, "calm", spec, kill=None)

    for kill in range(requests + 1):
        kube = cluster()
        await drive(kube, settings, "step", spec, kill)

        status = (kube.find("StepRun", NAMESPACE, "step") or {})["status"]
        where = f"killed before request {kill}"
        assert (status["phase"], status["reason"]) == ("Succeeded", "Completed"), where
        assert [(a["attempt"], a["reason"]) for a in status["attempts"]] == [(1, "Completed")], (
            where
        )
        assert status["attempts"][0]["creationTime"], where
        assert [p["metadata"]["name"] for p in kube.of_kind("Pod")] == ["step-1"], where
        assert not kube.of_kind("Pod")[0]["metadata"].get("finalizers"), where
        assert kube.find("ConfigMap", NAMESPACE, "step-context") is None, where
        assert kube.find("Secret", NAMESPACE, "step-context") is None, where
