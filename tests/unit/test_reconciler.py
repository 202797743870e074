"""The reconciler against an in-memory API server: write order, conflicts, adoption, the error
taxonomy, the tracking finalizer, cancel, and giving up on what can never succeed."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from steprun.api.models import StepRun
from steprun.config import OperatorConfig
from steprun.handlers.main import allow_api_server_depth
from steprun.kube.errors import QuotaExceeded, Refused, TooLarge, Transient
from steprun.reconcile.artifacts import ARCHIVE_MARGIN_SECONDS
from steprun.reconcile.reconciler import Reconciler
from steprun.render.names import ANNOTATION_CREATED_AT, TRACKING_FINALIZER
from steprun.timeutil import format_time, parse_time, utcnow
from tests.support.fake_kube import FakeKube
from tests.unit.factories import (
    NAME,
    NAMESPACE,
    container_status,
    running,
    terminated,
    waiting,
)

KEY = (NAMESPACE, NAME)
CONFIG = OperatorConfig(events=True, max_reconcile_failures=3)


def steprun(spec: dict[str, Any] | None = None, name: str = NAME) -> dict[str, Any]:
    return {
        "apiVersion": "steprun.dev/v1alpha1",
        "kind": "StepRun",
        "metadata": {"name": name, "namespace": NAMESPACE, "generation": 1},
        "spec": {"image": "busybox:1.36", "script": "true", **(spec or {})},
    }


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
async def reconciler(kube: FakeKube) -> AsyncIterator[Reconciler]:
    rec = Reconciler(kube, CONFIG)  # type: ignore[arg-type]
    yield rec
    await rec.queue.drain()


def submit(kube: FakeKube, rec: Reconciler, spec: dict[str, Any] | None = None) -> None:
    rec.stepruns.observe(kube.put(steprun(spec)))


def sync_watch(kube: FakeKube, rec: Reconciler) -> None:
    """What the watches would deliver: the current StepRun and its Pods."""
    body = kube.find("StepRun", NAMESPACE, NAME)
    if body is None:
        rec.stepruns.observe({"metadata": {"name": NAME, "namespace": NAMESPACE}}, deleted=True)
    else:
        rec.stepruns.observe(body)
    for pod in kube.of_kind("Pod"):
        rec.pods.observe(KEY, pod)


async def step(kube: FakeKube, rec: Reconciler, times: int = 1) -> dict[str, Any]:
    for _ in range(times):
        sync_watch(kube, rec)
        await rec.reconcile(KEY)
    return (kube.find("StepRun", NAMESPACE, NAME) or {}).get("status") or {}


def start_pod(kube: FakeKube, name: str) -> None:
    kube.cluster.update(
        "Pod",
        NAMESPACE,
        name,
        lambda pod: pod.update(
            status={"phase": "Running", "containerStatuses": [container_status(running())]}
        ),
    )


def finish_pod(kube: FakeKube, name: str, exit_code: int = 0) -> None:
    kube.cluster.update(
        "Pod",
        NAMESPACE,
        name,
        lambda pod: pod.update(
            status={
                "phase": "Succeeded" if exit_code == 0 else "Failed",
                "containerStatuses": [container_status(terminated(exit_code))],
            }
        ),
    )


# ---------------------------------------------------------------- the happy path


async def test_a_startup_timeout_quotes_the_kubelet_when_the_context_cannot_be_mounted(
    kube: FakeKube, reconciler: Reconciler
) -> None:
    # Checked once while the Pod started, the context was deleted after that check.
    submit(kube, reconciler, {"startupTimeoutSeconds": 30, "retries": {"platformLimit": 0}})
    await step(kube, reconciler)
    long_ago = format_time(utcnow() - timedelta(minutes=5))

    def stuck(pod: dict[str, Any]) -> None:
        pod["metadata"]["annotations"][ANNOTATION_CREATED_AT] = long_ago
        pod["spec"]["nodeName"] = "node-1"
        pod["status"] = {
            "phase": "Pending",
            "containerStatuses": [container_status(waiting("ContainerCreating"))],
        }

    kube.cluster.update("Pod", NAMESPACE, f"{NAME}-1", stuck)
    lost = f'MountVolume.SetUp failed for volume "context" : configmap "{NAME}-context" gone'
    kube.put(
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "e1", "namespace": NAMESPACE},
            "involvedObject": {"kind": "Pod", "name": f"{NAME}-1"},
            "type": "Warning",
            "reason": "FailedMount",
            "message": lost,
        }
    )
    status = await step(kube, reconciler)
    assert status["phase"] == "Failed" and status["reason"] == "StartupTimeout", status
    assert (
        f"the step's context (its ConfigMap or Secret {NAME}-context) cannot be mounted"
        in (status["message"])
    )
    assert lost in status["message"]
    # The kubelet's words are the failure's events too, read once with the mount failures.
    assert status["failure"] == {
        "category": "Platform",
        "stage": "Init",
        "reason": "StartupTimeout",
        "container": "step",
        "node": "node-1",
        "events": [
            {
                "reason": "FailedMount",
                "message": lost,
                "type": "Warning",
                "lastTime": status["failure"]["events"][0]["lastTime"],
            }
        ],
    }
    assert len([c for c in kube.calls if c[:2] == ("list", "Event")]) == 1


async def test_the_pod_is_created_with_its_context_and_the_source_secret_read(
    kube: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Secrets are refused unless the admission policy protects them, or this says otherwise.
    reconciler = Reconciler(kube, OperatorConfig(require_admission_policy=False))  # type: ignore[arg-type]
    kube.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "gh", "namespace": NAMESPACE},
            "data": {"token": "c2VjcmV0"},
        }
    )
    # The source Secret's read and the ConfigMap's create are answered only once the Pod's
    # create is sent: a start that waits for its context before its Pod never gets there.
    pod_sent = asyncio.Event()
    get_or_none, create = kube.get_or_none, kube.create

    async def slow_get(kind: str, namespace: str | None, name: str) -> Any:
        if kind == "Secret" and name == "gh":
            await pod_sent.wait()
        return await get_or_none(kind, namespace, name)

    async def slow_create(body: Any) -> Any:
        if body["kind"] == "Pod":
            pod_sent.set()
        elif body["kind"] == "ConfigMap":
            await pod_sent.wait()
        return await create(body)

    monkeypatch.setattr(kube, "get_or_none", slow_get)
    monkeypatch.setattr(kube, "create", slow_create)
    secrets = [{"name": "TOKEN", "secretKeyRef": {"name": "gh", "key": "token"}}]
    submit(kube, reconciler, {"context": {"secrets": secrets}})
    status = await asyncio.wait_for(step(kube, reconciler), timeout=10)
    pod = kube.find("Pod", NAMESPACE, f"{NAME}-1")
    assert pod is not None, status
    # The Pod names only the operator's own copy of the values, never the user's Secret.
    refs = [
        e["valueFrom"]["secretKeyRef"]["name"]
        for c in pod["spec"]["containers"]
        for e in c.get("env") or []
        if "secretKeyRef" in (e.get("valueFrom") or {})
    ]
    assert refs == [f"{NAME}-context"]
    assert kube.find("Secret", NAMESPACE, f"{NAME}-context") is not None
    await reconciler.queue.drain()


@pytest.mark.parametrize("key", ["token", "absent"], ids=["secret-missing", "key-missing"])
async def test_a_missing_source_secret_ends_invalid_spec_and_its_pod_is_removed(
    kube: FakeKube, key: str
) -> None:
    reconciler = Reconciler(kube, OperatorConfig(require_admission_policy=False))  # type: ignore[arg-type]
    if key == "absent":
        kube.put(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "gh", "namespace": NAMESPACE},
                "data": {"token": "c2VjcmV0"},
            }
        )
    secrets = [{"name": "TOKEN", "secretKeyRef": {"name": "gh", "key": key}}]
    submit(kube, reconciler, {"context": {"secrets": secrets}})

    status = await step(kube, reconciler)

    assert (status["phase"], status["reason"]) == ("Failed", "InvalidSpec"), status
    # Created with the read, the Pod could never start: it mounts the operator's copy of the
    # values, which was never made.
    assert kube.count("create", "Secret") == 0
    assert kube.count("create", "Pod") == 1
    assert kube.find("Pod", NAMESPACE, f"{NAME}-1") is None, "deleted, its finalizer released"
    assert kube.find("ConfigMap", NAMESPACE, f"{NAME}-context") is None
    await reconciler.queue.drain()


async def test_first_reconcile_creates_context_then_pod_stamped_with_the_operators_time(
    kube: FakeKube, reconciler: Reconciler
) -> None:
    submit(kube, reconciler)
    before = utcnow().replace(microsecond=0)
    status = await step(kube, reconciler)

    creates = [(k, n) for v, k, n in kube.calls if v == "create" and k != "Event"]
    assert creates == [("ConfigMap", f"{NAME}-context"), ("Pod", f"{NAME}-1")]
    assert status == {}, "recorded once the Pod is seen running, or slow to start"
    pod = kube.find("Pod", NAMESPACE, f"{NAME}-1")
    assert pod is not None and pod["metadata"]["finalizers"] == [TRACKING_FINALIZER]
    stamped = parse_time(pod["metadata"]["annotations"][ANNOTATION_CREATED_AT])
    assert stamped is not None and before <= stamped <= utcnow()


async def test_a_pod_the_restarted_operator_has_not_seen_yet_is_adopted(
    kube: FakeKube, reconciler: Reconciler
) -> None:
    submit(kube, reconciler)
    assert await step(kube, reconciler) == {}
    # Restarted: the StepRun is listed before its Pod, whose creation status does not record.
    restarted = Reconciler(kube, CONFIG)  # type: ignore[arg-type]
    restarted.stepruns.observe(kube.find("StepRun", NAMESPACE, NAME) or {})
    await restarted.reconcile(KEY)
    finish_pod(kube, f"{NAME}-1")

    status = await step(kube, restarted)

    assert (status["phase"], status["podName"]) == ("Succeeded", f"{NAME}-1")
    assert kube.count("create", "Pod") == 2  # the second answered AlreadyExists: adopted
    assert len(kube.of_kind("Pod")) == 1
    await restarted.queue.drain()


# ---------------------------------------------------------------- the tracking finalizer


async def test_pod_finished_and_deleted_while_the_operator_was_down_is_recorded_not_retried(
    kube: FakeKube, reconciler: Reconciler
) -> None:
    submit(kube, reconciler, {"retries": {"limit": 2, "backoffSeconds": 0}})
    await step(kube, reconciler)
    # Operator down: the step finishes, then PodGC or a janitor deletes the Pod.
    finish_pod(kube, f"{NAME}-1")
    await kube.delete("Pod", NAMESPACE, f"{NAME}-1")
    assert kube.find("Pod", NAMESPACE, f"{NAME}-1") is not None, "held by the finalizer"

    restarted = Reconciler(kube, CONFIG)  # type: ignore[arg-type]
    # The restarted operator does not know the unrecorded Pod: it adopts it (its create answers
    # AlreadyExists and the Pod passes the check), then records its outcome.
    status = await step(kube, restarted, times=2)
    assert status["phase"] == "Succeeded"
    assert status["attempts"][0]["reason"] == "Completed"

    await step(kube, restarted)
    assert kube.find("Pod", NAMESPACE, f"{NAME}-1") is None, "released once recorded"
    assert kube.count("create", "Pod") == 2
    await restarted.queue.drain()


async def test_a_pod_planted_under_the_next_attempts_name_is_not_followed(
    kube: FakeKube, reconciler: Reconciler
) -> None:
    submit(kube, reconciler, {"retries": {"limit": 1, "backoffSeconds": 0}})
    await step(kube, reconciler)
    finish_pod(kube, f"{NAME}-1", exit_code=1)
    status = await step(kube, reconciler)
    assert status["nextAttemptTime"], status
    # A co-tenant who may create Pods copies the first Pod's owner under the next name.
    first = kube.find("Pod", NAMESPACE, f"{NAME}-1") or {}
    kube.put(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{NAME}-2",
                "namespace": NAMESPACE,
                "labels": dict(first["metadata"]["labels"]),
                "ownerReferences": first["metadata"]["ownerReferences"],
            },
            "spec": {"containers": [{"name": "step", "image": "evil", "command": ["sleep"]}]},
            "status": {"phase": "Succeeded"},
        }
    )

    status = await step(kube, reconciler, times=2)

    assert (status["phase"], status["reason"]) == ("Failed", "PodCreateFailed"), status
    assert "is not what the operator made" in status["message"]
    planted = kube.find("Pod", NAMESPACE, f"{NAME}-2")
    assert planted is not None and planted["spec"]["containers"][0]["image"] == "evil"


async def test_finalizer_is_kept_until_the_outcome_is_written(
    kube: FakeKube, reconciler: Reconciler
) -> None:
    submit(kube, reconciler)
    await step(kube, reconciler)
    finish_pod(kube, f"{NAME}-1")
    kube.fail("patch_status", "StepRun", Transient(500, "InternalError", "etcd hiccup"))

    await step(kube, reconciler)

    pod = kube.find("Pod", NAMESPACE, f"{NAME}-1")
    assert pod is not None and TRACKING_FINALIZER in pod["metadata"]["finalizers"]
    assert kube.count("remove_finalizer", "Pod") == 0


async def test_pods_of_a_deleted_steprun_are_released(
    kube: FakeKube, reconciler: Reconciler
) -> None:
    submit(kube, reconciler)
    await step(kube, reconciler)
    kube.cluster.remove("StepRun", NAMESPACE, NAME)
    await kube.delete("Pod", NAMESPACE, f"{NAME}-1")  # the garbage collector

    await step(kube, reconciler)

    assert kube.find("Pod", NAMESPACE, f"{NAME}-1") is None


# ---------------------------------------------------------------- cancel


async def test_cancel_deletes_every_pod_of_the_steprun_whatever_status_says(
    kube: FakeKube, reconciler: Reconciler
) -> None:
    submit(kube, reconciler)
    # The Pod is created; the cancel arrives before any status records it.
    await step(kube, reconciler)
    kube.cluster.update("StepRun", NAMESPACE, NAME, lambda body: body["spec"].update(cancel=True))

    status = await step(kube, reconciler)

    assert status["phase"] == "Cancelled"
    pod = kube.find("Pod", NAMESPACE, f"{NAME}-1")
    assert pod is None or pod["metadata"].get("deletionTimestamp")
    assert f"{NAME}-1" in status["message"]
    await step(kube, reconciler)
    assert kube.find("Pod", NAMESPACE, f"{NAME}-1") is None


async def test_a_cancelled_steps_log_is_followed_outside_the_reconcile_slot(
    kube: FakeKube, reconciler: Reconciler, monkeypatch: pytest.MonkeyPatch
) -> None:
    container_ended = asyncio.Event()
    followed: list[float] = []

    async def archive_log(*_: Any, follow: bool = False, give_up_after: float = 0) -> str | None:
        assert follow
        followed.append(give_up_after)
        await container_ended.wait()
        return "log of attempt 1 not archived: store down"

    monkeypatch.setattr(reconciler.artifacts, "archives_logs", lambda namespace: True)
    monkeypatch.setattr(reconciler.artifacts, "archive_log", archive_log)
    submit(kube, reconciler, {"terminationGracePeriodSeconds": 600})
    await step(kube, reconciler)
    start_pod(kube, f"{NAME}-1")
    kube.cluster.update("StepRun", NAMESPACE, NAME, lambda body: body["spec"].update(cancel=True))

    # The reconcile that cancels returns at once: the Pod is deleted, its log still followed.
    status = await asyncio.wait_for(step(kube, reconciler), 1)
    assert status.get("phase") != "Cancelled"
    pod = kube.find("Pod", NAMESPACE, f"{NAME}-1")
    assert pod is not None and pod["metadata"].get("deletionTimestamp")
    deletes = kube.count("delete", "Pod")
    await asyncio.wait_for(step(kube, reconciler), 1)  # the Pod's events meanwhile
    assert kube.count("delete", "Pod") == deletes and len(followed) == 1
    # Followed for the grace period (with a margin for the last lines), not longer.
    assert 600 < followed[0] <= 600 + ARCHIVE_MARGIN_SECONDS

    # The engine relabels the StepRun meanwhile: the late status write is refused once.
    another_writer(kube, lambda body: body["metadata"].update(labels={"team": "web"}))
    container_ended.set()
    await reconciler.off_lane.wait()
    status = (kube.find("StepRun", NAMESPACE, NAME) or {})["status"]
    assert status["phase"] == "Cancelled"
    assert status["message"].endswith("log of attempt 1 not archived: store down"), status


async def test_a_cancelled_step_whose_container_never_started_has_no_log_to_archive(
    kube: FakeKube, reconciler: Reconciler, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    async def archive_log(*args: Any, **_: Any) -> str | None:
        asked.append(args[2])
        return "log of attempt 1 not archived: 400 container is waiting to start"

    monkeypatch.setattr(reconciler.artifacts, "archives_logs", lambda namespace: True)
    monkeypatch.setattr(reconciler.artifacts, "archive_log", archive_log)
    submit(kube, reconciler)
    await step(kube, reconciler)
    kube.cluster.update(
        "Pod",
        NAMESPACE,
        f"{NAME}-1",
        lambda pod: pod.update(
            status={
                "phase": "Pending",
                "containerStatuses": [container_status(waiting("ErrImagePull"))],
            }
        ),
    )
    kube.cluster.update("StepRun", NAMESPACE, NAME, lambda body: body["spec"].update(cancel=True))

    status = await step(kube, reconciler)

    assert status["phase"] == "Cancelled"
    assert asked == [] and "not archived" not in status["message"], status["message"]


# ---------------------------------------------------------------- resourceVersion conflicts


def another_writer(kube: FakeKube, change: Callable[[dict[str, Any]], object]) -> None:
    """Someone else changes the StepRun between the operator's read and its next status write:
    that write carries a stale resourceVersion and the API server refuses it (Conflict)."""
    kube.cluster.interleave(
        "patch_status",
        "StepRun",
        lambda: kube.cluster.update("StepRun", NAMESPACE, NAME, change),
    )


async def test_an_outcome_refused_as_stale_is_re_applied_to_the_fresh_object(
    kube: FakeKube, reconciler: Reconciler
) -> None:
    submit(kube, reconciler)
    await step(kube, reconciler)
    finish_pod(kube, f"{NAME}-1")
    another_writer(kube, lambda body: body["metadata"].update(labels={"team": "web"}))
    writes = kube.count("patch_status", "StepRun")

    status = await step(kube, reconciler)

    assert status["phase"] == "Succeeded"
    assert kube.count("patch_status", "StepRun") - writes == 2, "refused once, then re-applied"
    stored = kube.find("StepRun", NAMESPACE, NAME)
    assert stored is not None and stored["metadata"]["labels"] == {"team": "web"}


async def test_a_status_write_refused_by_a_cancel_is_decided_again_from_the_fresh_object(
    kube: FakeKube, reconciler: Reconciler
) -> None:
    submit(kube, reconciler)
    await step(kube, reconciler)
    runs = {"phase": "Running", "containerStatuses": [container_status(running())]}
    kube.cluster.update("Pod", NAMESPACE, f"{NAME}-1", lambda pod: pod.update(status=runs))
    another_writer(kube, lambda body: body["spec"].update(cancel=True))

    assert await step(kube, reconciler) == {}, "the Running write lost the race"
    assert reconciler.stepruns.get(KEY)["spec"]["cancel"] is True, "read again at once"
    status = await step(kube, reconciler)

    assert status["phase"] == "Cancelled"
    await step(kube, reconciler)
    assert kube.find("Pod", NAMESPACE, f"{NAME}-1") is None


# ---------------------------------------------------------------- the error taxonomy


async def test_quota_exceeded_backs_off_honouring_retry_after(
    kube: FakeKube, reconciler: Reconciler
) -> None:
    submit(kube, reconciler)
    quota = QuotaExceeded(403, "Forbidden", "exceeded quota: pods", retry_after=7.0)
    kube.fail("create", "Pod", quota)

    status = await step(kube, reconciler)

    assert status == {}, "not an outcome: nothing written"
    assert reconciler.queue.failures(KEY) == 1
    timer = reconciler.queue._timers[KEY]
    assert timer.when() - asyncio.get_running_loop().time() > 6.5


async def test_quota_exceeded_past_the_startup_timeout_fails_the_attempt_and_retries(
    kube: FakeKube, reconciler: Reconciler
) -> None:
    submit(kube, reconciler, {"startupTimeoutSeconds": 30, "retries": {"limit": 1}})
    kube.fail("create", "Pod", QuotaExceeded(403, "Forbidden", "exceeded quota: pods"))
    await step(kube, reconciler)
    reconciler.memory(KEY).blocked_since = utcnow() - timedelta(seconds=31)
    kube.fail("create", "Pod", QuotaExceeded(403, "Forbidden", "exceeded quota: pods"))

    status = await step(kube, reconciler)

    assert status["phase"] == "Pending" and status["reason"] == "Retrying"
    assert status["attempts"][0]["reason"] == "PodCreateFailed"
    assert "exceeded quota" in status["attempts"][0]["message"]


@pytest.mark.parametrize(
    ("limit", "phase", "reason"),
    [
        pytest.param(0, "Failed", "PodCreateFailed", id="no-retries-left"),
        pytest.param(1, "Pending", "Retrying", id="consumes-a-retry"),
    ],
)
async def test_a_refused_pod_consumes_retries(
    kube: FakeKube, reconciler: Reconciler, limit: int, phase: str, reason: str
) -> None:
    submit(kube, reconciler, {"retries": {"limit": limit, "backoffSeconds": 5}})
    kube.fail("create", "Pod", Refused(422, "Invalid", 'Pod "x" is invalid: spec.bad'))

    status = await step(kube, reconciler)

    assert (status["phase"], status["reason"]) == (phase, reason)
    assert status["attempts"] == [
        {
            "attempt": 1,
            "podName": f"{NAME}-1",
            "reason": "PodCreateFailed",
            "message": 'the API server refused Pod build-42-lint-1: Pod "x" is invalid: spec.bad',
            "completionTime": status["attempts"][0]["completionTime"],
            "failure": {"category": "Config", "stage": "Admission", "reason": "PodCreateFailed"},
        }
    ]


async def test_a_status_the_api_server_refuses_ends_the_step_with_a_small_one(
    kube: FakeKube, reconciler: Reconciler
) -> None:
    submit(kube, reconciler)
    await step(kube, reconciler)
    finish_pod(kube, f"{NAME}-1")
    kube.fail("patch_status", "StepRun", TooLarge(413, "RequestEntityTooLarge", "too large"))

    status = await step(kube, reconciler)

    assert (status["phase"], status["reason"]) == ("Failed", "ReconcileFailed")
    assert "too large" in status["message"]
    assert reconciler.queue.failures(KEY) == 0


async def test_a_status_refused_every_time_is_not_retried_forever(
    kube: FakeKube, reconciler: Reconciler
) -> None:
    submit(kube, reconciler)
    await step(kube, reconciler)
    finish_pod(kube, f"{NAME}-1")
    forbidden = Refused(403, "Forbidden", "stepruns/status is forbidden")
    kube.fail("patch_status", "StepRun", forbidden, forbidden)

    await step(kube, reconciler)

    assert KEY not in reconciler.queue._timers
    assert kube.count("patch_status", "StepRun") == 2


async def test_a_reconcile_that_keeps_crashing_ends_the_step_saying_so(
    kube: FakeKube, reconciler: Reconciler, monkeypatch: pytest.MonkeyPatch
) -> None:
    submit(kube, reconciler)

    def broken(*_: Any, **__: Any) -> Any:
        raise KeyError("surprise")

    monkeypatch.setattr("steprun.render.attempt.render_pod", broken)
    delays = []
    for _ in range(CONFIG.max_reconcile_failures - 1):
        await step(kube, reconciler)
        delays.append(reconciler.queue.failures(KEY))
    assert delays == [1, 2], "backed off per key, growing"
    assert "phase" not in (kube.find("StepRun", NAMESPACE, NAME) or {}).get("status", {})

    status = await step(kube, reconciler)

    assert (status["phase"], status["reason"]) == ("Failed", "ReconcileFailed")
    assert "3 times" in status["message"] and "KeyError" in status["message"]
    assert KEY not in reconciler.queue._timers


# ---------------------------------------------------------------- hostile input


async def test_an_unreadable_steprun_ends_invalid_spec_with_an_event(
    kube: FakeKube, reconciler: Reconciler
) -> None:
    submit(kube, reconciler, {"fromANewerCrd": True})

    status = await step(kube, reconciler)

    assert (status["phase"], status["reason"]) == ("Failed", "InvalidSpec")
    assert "fromANewerCrd" in status["message"]
    events = kube.of_kind("Event")
    assert [e["reason"] for e in events] == ["InvalidSpec"]
    assert kube.count("create", "Pod") == 0


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.fixture
def api_server_depth() -> Iterator[None]:
    before = sys.getrecursionlimit()
    allow_api_server_depth()
    yield
    sys.setrecursionlimit(before)


@pytest.mark.usefixtures("api_server_depth")
async def test_inputs_nested_as_deep_as_the_api_server_allows_run(
    kube: FakeKube, reconciler: Reconciler
) -> None:
    submit(kube, reconciler, {"context": {"inputs": nested(9_990)}})

    await step(kube, reconciler)

    assert kube.find("Pod", NAMESPACE, f"{NAME}-1") is not None
    configmap = kube.find("ConfigMap", NAMESPACE, f"{NAME}-context")
    assert configmap is not None and configmap["data"]["context.json"].count('{"a":') == 9_989


async def test_inputs_too_deep_for_the_process_end_invalid_spec(
    kube: FakeKube, reconciler: Reconciler, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What any recursion past the allowance does (only possible beyond the API server's depth).
    def too_deep(*_: Any, **__: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr("steprun.render.attempt.render_configmap", too_deep)
    submit(kube, reconciler, {"context": {"inputs": nested(5)}})

    status = await step(kube, reconciler)

    assert (status["phase"], status["reason"]) == ("Failed", "InvalidSpec")
    assert "nested too deeply" in status["message"]
    assert reconciler.queue.failures(KEY) == 0


# ---------------------------------------------------------------- recreate, TTL, memory


async def test_recreating_under_the_same_name_waits_out_the_old_children(
    kube: FakeKube, reconciler: Reconciler
) -> None:
    submit(kube, reconciler)
    await step(kube, reconciler)
    # Deleted and created again before the garbage collector removed the old children.
    old = kube.cluster.remove("StepRun", NAMESPACE, NAME)
    submit(kube, reconciler)
    assert kube.find("StepRun", NAMESPACE, NAME)["metadata"]["uid"] != old["metadata"]["uid"]

    status = await step(kube, reconciler)
    assert "phase" not in status, "the old ConfigMap is removed first, not a failure"
    await step(kube, reconciler, times=4)

    pod = kube.find("Pod", NAMESPACE, f"{NAME}-1")
    assert pod is not None
    assert (
        pod["metadata"]["ownerReferences"][0]["uid"]
        == kube.find("StepRun", NAMESPACE, NAME)["metadata"]["uid"]
    )


async def test_the_operator_default_ttl_deletes_finished_stepruns(kube: FakeKube) -> None:
    rec = Reconciler(kube, OperatorConfig(default_ttl_seconds_after_finished=0))  # type: ignore[arg-type]
    submit(kube, rec)
    await step(kube, rec)
    finish_pod(kube, f"{NAME}-1")
    status = await step(kube, rec)
    assert status["phase"] == "Succeeded"

    await step(kube, rec, times=2)

    assert kube.find("StepRun", NAMESPACE, NAME) is None
    await rec.queue.drain()


async def test_a_terminal_steprun_and_its_pods_leave_the_cache(
    kube: FakeKube, reconciler: Reconciler
) -> None:
    submit(kube, reconciler, {"context": {"inputs": {"big": "x" * 10_000}}})
    await step(kube, reconciler)
    finish_pod(kube, f"{NAME}-1")
    await step(kube, reconciler, times=3)

    cached = reconciler.stepruns.get(KEY)
    assert cached is not None and cached["status"]["phase"] == "Succeeded"
    assert cached["spec"] == {}
    assert len(reconciler.pods) == 0
    assert KEY not in reconciler.memory, "nothing of a finished step is kept"


async def test_a_deleted_steprun_is_forgotten_at_once(
    kube: FakeKube, reconciler: Reconciler
) -> None:
    submit(kube, reconciler)
    await step(kube, reconciler, times=2)
    record = reconciler.memory.peek(KEY)
    assert record is not None and record.parsed is not None and record.made

    kube.cluster.remove("StepRun", NAMESPACE, NAME)
    await step(kube, reconciler)

    assert KEY not in reconciler.memory


async def test_a_steprun_version_already_read_is_not_parsed_again_and_a_new_one_is(
    kube: FakeKube, reconciler: Reconciler, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[str] = []
    from_body = StepRun.from_body

    def counting(body: Any) -> StepRun:
        parsed.append(body["metadata"]["resourceVersion"])
        return from_body(body)

    monkeypatch.setattr(StepRun, "from_body", staticmethod(counting))
    submit(kube, reconciler)
    await step(kube, reconciler, times=3)  # the Pod is created, then waited on
    assert len(parsed) == 1, parsed

    kube.cluster.update("StepRun", NAMESPACE, NAME, lambda sr: sr["spec"].update(cancel=True))
    status = await step(kube, reconciler)
    assert len(parsed) == 2, "a new resourceVersion is read again"
    assert status["phase"] == "Cancelled"


@pytest.mark.parametrize(
    ("spec", "status", "lane"),
    [
        pytest.param({}, None, "start", id="new"),
        pytest.param({}, {"phase": "Pending", "podName": f"{NAME}-1"}, "follow", id="pod-created"),
        pytest.param({}, "pod-not-recorded", "follow", id="pod-created-not-recorded"),
        pytest.param({}, {"phase": "Running", "podName": f"{NAME}-1"}, "follow", id="running"),
        pytest.param(
            {},
            {"phase": "Pending", "podName": f"{NAME}-1", "nextAttemptTime": "2024-05-01T10:00:00Z"},
            "start",
            id="retrying",
        ),
        pytest.param({"cancel": True}, None, "follow", id="cancelled-before-start"),
        pytest.param({}, {"phase": "Succeeded"}, "follow", id="terminal"),
    ],
)
async def test_steps_being_started_and_steps_being_followed_queue_apart(
    kube: FakeKube, reconciler: Reconciler, spec: dict[str, Any], status: Any, lane: str
) -> None:
    body = steprun(spec)
    if status == "pod-not-recorded":
        submit(kube, reconciler)
        await step(kube, reconciler)
    else:
        if status is not None:
            body["status"] = status
        reconciler.stepruns.observe(kube.put(body))

    assert reconciler._lane(KEY) == lane


def evict_pod(kube: FakeKube, name: str, node: str) -> None:
    def evicted(pod: dict[str, Any]) -> None:
        pod["spec"]["nodeName"] = node
        pod["status"] = {
            "phase": "Failed",
            "reason": "Evicted",
            "message": "The node was low on resource: memory.",
            "containerStatuses": [container_status(terminated(137))],
        }

    kube.cluster.update("Pod", NAMESPACE, name, evicted)


async def test_an_evicted_attempt_is_retried_elsewhere_without_spending_the_steps_retries(
    kube: FakeKube, reconciler: Reconciler
) -> None:
    submit(kube, reconciler, {"retries": {"limit": 0, "platformBackoffSeconds": 0}})
    await step(kube, reconciler)
    evict_pod(kube, f"{NAME}-1", "node-a")

    status = await step(kube, reconciler)
    assert (status["phase"], status["reason"]) == ("Pending", "Retrying"), status
    failure = status["attempts"][0]["failure"]
    assert (failure["category"], failure["node"]) == ("Platform", "node-a")

    await step(kube, reconciler)
    retry = kube.find("Pod", NAMESPACE, f"{NAME}-2")
    assert retry is not None
    preferred = retry["spec"]["affinity"]["nodeAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert preferred[0]["preference"]["matchFields"][0]["values"] == ["node-a"]
    assert kube.find("Pod", NAMESPACE, f"{NAME}-1")["spec"].get("affinity") is None

    # The step's own failure then ends it: limit 0 was never spent on the eviction.
    finish_pod(kube, f"{NAME}-2", exit_code=3)
    status = await step(kube, reconciler)
    assert (status["phase"], status["reason"]) == ("Failed", "Error"), status
    assert [a["failure"]["category"] for a in status["attempts"]] == ["Platform", "Step"]
    assert status["failure"]["category"] == "Step"
