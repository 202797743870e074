"""The requests one step costs the API server, exactly, from creation to its Pod released.

A table of steps, each with the request sequence a successful run makes under the default
configuration: what the API server sees per step is what bounds throughput, so an extra read or
write anywhere in the path fails here first.
"""

from __future__ import annotations

from typing import Any

import pytest

from steprun.config import EventPolicy, OperatorConfig
from steprun.reconcile.reconciler import Reconciler
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


async def run_to_success(kube: FakeKube, rec: Reconciler, name: str, spec: dict[str, Any]) -> None:
    """Create, start, run and finish one step, feeding the caches as the watches would."""
    key = (NAMESPACE, name)

    async def reconcile() -> None:
        body = kube.find("StepRun", NAMESPACE, name)
        assert body is not None
        rec.stepruns.observe(body)
        for pod in kube.of_kind("Pod"):
            if pod["metadata"]["name"].startswith(f"{name}-"):
                rec.pods.observe(key, pod)
        await rec.reconcile(key)

    rec.stepruns.observe(kube.put(steprun(name, spec)))
    await reconcile()
    pod = f"{name}-1"

    def scheduled_and_running(body: dict[str, Any]) -> None:
        body["spec"]["nodeName"] = "node-1"
        body["status"] = {"phase": "Running", "containerStatuses": [container_status(running())]}

    kube.cluster.update("Pod", NAMESPACE, pod, scheduled_and_running)
    await reconcile()
    succeeded = {"phase": "Succeeded", "containerStatuses": [container_status(terminated(0))]}
    kube.cluster.update("Pod", NAMESPACE, pod, lambda body: body.update(status=succeeded))
    await reconcile()  # the outcome
    await reconcile()  # the Pod released
    await reconcile()  # nothing left to do
    status = (kube.find("StepRun", NAMESPACE, name) or {}).get("status") or {}
    assert status.get("phase") == "Succeeded"


def plan(name: str, *middle: Call) -> list[Call]:
    return [
        *middle,
        ("create", "Pod", f"{name}-1"),
        ("patch_status", "StepRun", name),  # Pending: the attempt and its Pod recorded
        ("patch_status", "StepRun", name),  # Running
        # API.md: the context is deleted at a terminal phase, only if it is the StepRun's.
        ("get", "ConfigMap", f"{name}-context"),
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
            ("get", "Secret", "gh"),
            ("create", "Secret", f"{n}-context"),
            context(n),
            *plan(n)[:3],
            # The step's own Secret: read once for the values to mask in what the Pod said,
            # deleted (by its uid) so the copy of the values does not outlive the step.
            ("get", "Secret", f"{n}-context"),
            ("delete", "Secret", f"{n}-context"),
            *plan(n)[3:],
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


@pytest.mark.parametrize(
    ("policy", "posted"),
    [
        pytest.param(EventPolicy.OFF, [], id="off"),
        pytest.param(EventPolicy.WARNINGS, [], id="warnings"),
        pytest.param(EventPolicy.ALL, ["PodCreated", "Started", "Completed"], id="all"),
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
