"""Cancellation never holds a reconcile slot: a cancelled step's log is followed through its
grace period outside the reconcile lanes (docs/security.md).

An operator with the artifact store (so cancelled steps' logs are archived) and only two
reconcile slots per lane serves two namespaces of its own: in one, more steps than there are
slots trap SIGTERM and are cancelled with a long grace period; the other's steps must still
have their outcomes recorded on time meanwhile.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.cluster.test_artifacts_e2e import _namespace, _operator, credentials_secret, store_env
from tests.conftest import SESSION_PREFIX, STEP_IMAGE
from tests.support.operator_process import OperatorProcess
from tests.support.steps import Steps, eventually

PREFIX = f"{SESSION_PREFIX}cx"
SLOTS = 2
GRACE_SECONDS = 45
# Steps that keep running through SIGTERM (the trap prints and the loop goes on) until the
# kubelet kills them at the end of the grace period.
STUBBORN = "trap 'echo got TERM' TERM; echo started; while true; do sleep 1; done"

__all__ = ["credentials_secret", "store_env"]  # the store's fixtures, shared with that module


@pytest.fixture(scope="module")
def slow_cancel_operator(
    kubeconfig: str,
    crds: None,
    store_env: dict[str, str],
    credentials_secret: tuple[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    process = _operator(
        kubeconfig,
        tmp_path_factory.mktemp("cancel-operator"),
        PREFIX,
        store_env["STORE_ENDPOINT"],
        store_env["STORE_BUCKET"],
        credentials_secret,
    )
    process.extra_env["STEPRUN_RECONCILE_CONCURRENCY"] = str(SLOTS)
    process.start()
    yield process
    process.stop()


@pytest.fixture
def two_namespaces(
    api_client: client.ApiClient, slow_cancel_operator: OperatorProcess
) -> Iterator[tuple[Steps, Steps]]:
    core = client.CoreV1Api(api_client)
    names = [_namespace(core, PREFIX) for _ in range(2)]
    yield Steps(api_client, names[0]), Steps(api_client, names[1])
    for name in names:
        core.delete_namespace(name, propagation_policy="Background")


def test_cancelled_steps_in_their_grace_period_hold_up_no_other_namespace(
    two_namespaces: tuple[Steps, Steps], slow_cancel_operator: OperatorProcess
) -> None:
    busy, quiet = two_namespaces
    stubborn = [f"stubborn-{i}" for i in range(3 * SLOTS)]
    for name in stubborn:
        busy.create(
            name,
            {
                "image": STEP_IMAGE,
                "script": STUBBORN,
                "terminationGracePeriodSeconds": GRACE_SECONDS,
            },
        )
    for name in stubborn:
        busy.wait_phase(name, "Running", timeout=120)
    cancelled_at = time.monotonic()
    for name in stubborn:
        busy.patch_spec(name, {"cancel": True})

    # Each cancelled step's Pod is now in its grace period, its log followed to the end; the
    # other namespace's steps start, run and are reported as if nothing else were going on.
    quick = [f"quick-{uuid.uuid4().hex[:4]}-{i}" for i in range(2)]
    for name in quick:
        quiet.create(name, {"image": STEP_IMAGE, "script": "echo done"})
    for name in quick:
        status = quiet.wait_terminal(name, timeout=GRACE_SECONDS - 15)
        assert status["phase"] == "Succeeded", status
    assert time.monotonic() - cancelled_at < GRACE_SECONDS - 5, "reported within the grace"
    assert all(busy.status(name).get("phase") == "Running" for name in stubborn), (
        "the cancelled steps are still in their grace period (their logs followed)"
    )

    # The cancelled steps end Cancelled once their containers are killed, their logs archived
    # (or, past their namespace's turns, said not to be), never much after the grace period.
    def all_cancelled() -> list[dict[str, str]] | None:
        statuses = [busy.status(name) for name in stubborn]
        return statuses if all(s.get("phase") == "Cancelled" for s in statuses) else None

    statuses = eventually(all_cancelled, GRACE_SECONDS + 60, "every stubborn step cancelled")
    assert time.monotonic() - cancelled_at >= GRACE_SECONDS - 5
    archived = [s for s in statuses if "not archived" not in s["message"]]
    assert archived, [s["message"] for s in statuses]
    assert slow_cancel_operator.process is not None and slow_cancel_operator.process.poll() is None
