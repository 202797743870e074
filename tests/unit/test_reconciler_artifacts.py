"""The reconciler's artifact hooks against the in-memory API server: the store's credentials in
the step's Secret, uploads recorded in status, and inputs checked before any Pod exists."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from steprun.artifacts.names import ACCESS_KEY_KEY, SECRET_KEY_KEY, UPLOAD_CONTAINER
from steprun.config import NamespaceArtifactRepository, OperatorConfig
from steprun.reconcile.reconciler import Reconciler
from tests.support.fake_kube import FakeKube
from tests.unit.factories import NAME, NAMESPACE, container_status, terminated
from tests.unit.test_reconciler import step, submit

SHA = "b" * 64
# No store is reached in these tests: logs are not archived, and nothing else talks to it.
CONFIG = OperatorConfig(
    events=False,
    artifacts_endpoint="http://store.invalid:9000",
    artifacts_bucket="steps",
    artifacts_secret="steprun-system/artifact-store",
    artifacts_archive_logs=False,
    # Inputs name their producer, which the creator check covers (test_tenancy.py); this fake
    # has no admission policy, so the operator would refuse every step with inputs.
    require_admission_policy=False,
)
OUTPUTS = {"artifacts": {"outputs": [{"name": "dist", "path": "/workspace/dist"}]}}


@pytest.fixture
def kube() -> FakeKube:
    fake = FakeKube()
    fake.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "artifact-store", "namespace": "steprun-system"},
            "data": {"accessKey": "YWs=", "secretKey": "c2s="},
        }
    )
    return fake


@pytest.fixture
async def reconciler(kube: FakeKube) -> AsyncIterator[Reconciler]:
    rec = Reconciler(kube, CONFIG)  # type: ignore[arg-type]
    yield rec
    await rec.queue.drain()


def uid_of(kube: FakeKube) -> str:
    found = kube.find("StepRun", NAMESPACE, NAME)
    assert found is not None
    return str(found["metadata"]["uid"])


def finish_with_upload(kube: FakeKube, uploads: list[dict[str, Any]]) -> None:
    report = json.dumps({"artifacts": uploads})
    status = {
        "phase": "Succeeded",
        "containerStatuses": [
            container_status(terminated(0)),
            container_status(terminated(0, message=report), name=UPLOAD_CONTAINER),
        ],
    }
    kube.cluster.update("Pod", NAMESPACE, f"{NAME}-1", lambda pod: pod.update(status=status))


async def test_the_store_credentials_ride_in_the_steps_own_secret(
    kube: FakeKube, reconciler: Reconciler
) -> None:
    submit(kube, reconciler, OUTPUTS)
    await step(kube, reconciler)

    secret = kube.find("Secret", NAMESPACE, f"{NAME}-context")
    assert secret is not None
    assert secret["data"][ACCESS_KEY_KEY] == "YWs="
    assert secret["data"][SECRET_KEY_KEY] == "c2s="


async def test_an_attempts_uploads_are_recorded_in_status(
    kube: FakeKube, reconciler: Reconciler
) -> None:
    submit(kube, reconciler, OUTPUTS)
    await step(kube, reconciler)
    finish_with_upload(kube, [{"name": "dist", "size": 120, "sha256": SHA}])

    status = await step(kube, reconciler)

    assert status["phase"] == "Succeeded"
    assert status["artifacts"] == [
        {
            "name": "dist",
            "attempt": 1,
            "key": f"{NAMESPACE}/{NAME}/{uid_of(kube)}/1/dist.tgz",
            "size": 120,
            "sha256": SHA,
        }
    ]
    assert kube.find("Secret", NAMESPACE, f"{NAME}-context") is None, "context cleaned up"


async def test_an_input_its_producer_never_uploaded_ends_the_step_before_any_pod(
    kube: FakeKube, reconciler: Reconciler
) -> None:
    kube.put(
        {
            "apiVersion": "steprun.dev/v1alpha1",
            "kind": "StepRun",
            "metadata": {"name": "build-1", "namespace": NAMESPACE, "generation": 1},
            "spec": {"image": "busybox:1.36", "script": "true"},
            "status": {"phase": "Succeeded"},
        }
    )
    wanted = {"name": "dist", "from": {"stepRun": "build-1", "artifact": "dist"}, "path": "/in"}
    submit(kube, reconciler, {"artifacts": {"inputs": [wanted]}})

    status = await step(kube, reconciler)

    assert status["phase"] == "Failed"
    assert status["reason"] == "InvalidSpec"
    assert "build-1" in status["message"] and "dist" in status["message"]
    assert kube.count("create", "Pod") == 0


async def test_a_namespace_with_its_own_repository_uses_its_credentials_and_prefix(
    kube: FakeKube,
) -> None:
    kube.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "team-store", "namespace": "steprun-system"},
            "data": {"accessKey": "dGVhbQ==", "secretKey": "dGVhbS1zaw=="},
        }
    )
    own = CONFIG.model_copy(
        update={
            "artifacts_namespaces": [
                NamespaceArtifactRepository(
                    namespaces=[NAMESPACE], key_prefix="team", secret="steprun-system/team-store"
                )
            ]
        }
    )
    reconciler = Reconciler(kube, own)  # type: ignore[arg-type]
    submit(kube, reconciler, OUTPUTS)
    await step(kube, reconciler)
    secret = kube.find("Secret", NAMESPACE, f"{NAME}-context")
    assert secret is not None
    assert secret["data"][ACCESS_KEY_KEY] == "dGVhbQ=="
    finish_with_upload(kube, [{"name": "dist", "size": 120, "sha256": SHA}])

    status = await step(kube, reconciler)

    assert status["artifacts"][0]["key"] == f"team/{NAMESPACE}/{NAME}/{uid_of(kube)}/1/dist.tgz"
    await reconciler.queue.drain()
