"""The reconciler's artifact hooks against the in-memory API server: presigned URLs (never the
store's credentials) in the attempt's Secret, uploads recorded in status, and inputs checked
before any Pod exists."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from steprun.artifacts.names import UPLOAD_CONTAINER
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
            "data": {"accessKey": "QUtJRFNUT1JF", "secretKey": "d0phbHJTRUNSRVRTVE9SRUtFWQ=="},
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


def urls_of(kube: FakeKube, attempt: int = 1) -> dict[str, dict[str, str]]:
    secret = kube.find("Secret", NAMESPACE, f"{NAME}-artifacts-{attempt}")
    assert secret is not None, "the attempt's URLs are in a Secret of its own"
    urls: dict[str, dict[str, str]] = json.loads(base64.b64decode(secret["data"]["urls"]))
    return urls


def everything_in(kube: FakeKube, kind: str) -> str:
    """Every object of ``kind`` in the step's namespace, Secret values decoded."""
    text = ""
    for body in kube.cluster.of_kind(kind, NAMESPACE):
        for value in (body.get("data") or {}).values():
            text += base64.b64decode(value).decode(errors="replace")
        text += json.dumps(body)
    return text


async def test_no_store_credential_enters_the_steps_namespace(
    kube: FakeKube, reconciler: Reconciler
) -> None:
    """Only URLs presigned for this attempt's own objects: GET its inputs, PUT its outputs."""
    submit(kube, reconciler, OUTPUTS)
    await step(kube, reconciler)

    seen = everything_in(kube, "Secret") + everything_in(kube, "Pod")
    assert "wJalrSECRETSTOREKEY" not in seen and "SECRET_KEY" not in seen
    # The access key id is public in SigV4 (it names the signer): only inside a signature.
    assert seen.count("AKIDSTORE") == seen.count("X-Amz-Credential=AKIDSTORE")
    urls = urls_of(kube)
    assert urls["inputs"] == {}
    (put,) = urls["outputs"].values()
    path, _, query = put.partition("?")
    assert path == f"http://store.invalid:9000/steps/{NAMESPACE}/{NAME}/{uid_of(kube)}/1/dist.tgz"
    assert "X-Amz-Signature=" in query and "X-Amz-Credential=AKIDSTORE%2F" in query
    assert "X-Amz-Expires=" in query


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
    assert kube.find("Secret", NAMESPACE, f"{NAME}-artifacts-1") is None, "URLs gone with it"


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
    (put,) = urls_of(kube)["outputs"].values()
    assert f"/steps/team/{NAMESPACE}/{NAME}/" in put
    assert "X-Amz-Credential=team%2F" in put, "signed with the namespace's own credentials"
    finish_with_upload(kube, [{"name": "dist", "size": 120, "sha256": SHA}])

    status = await step(kube, reconciler)

    assert status["artifacts"][0]["key"] == f"team/{NAMESPACE}/{NAME}/{uid_of(kube)}/1/dist.tgz"
    await reconciler.queue.drain()


def planted(owners: list[dict[str, Any]]) -> dict[str, Any]:
    text = json.dumps({"inputs": {}, "outputs": {"dist": "http://attacker.invalid/x"}})
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": f"{NAME}-artifacts-1",
            "namespace": NAMESPACE,
            "ownerReferences": owners,
        },
        "data": {"urls": base64.b64encode(text.encode()).decode()},
    }


async def test_a_urls_secret_planted_under_its_name_is_replaced_never_trusted(
    kube: FakeKube, reconciler: Reconciler
) -> None:
    submit(kube, reconciler, OUTPUTS)
    owner = {"apiVersion": "steprun.dev/v1alpha1", "kind": "StepRun", "name": NAME}
    kube.put(planted([{**owner, "uid": uid_of(kube)}]))
    await step(kube, reconciler)
    (put,) = urls_of(kube)["outputs"].values()
    assert put.startswith("http://store.invalid:9000/steps/"), "the operator's own URL"


async def test_a_urls_secret_someone_else_owns_fails_the_step_and_survives(
    kube: FakeKube, reconciler: Reconciler
) -> None:
    submit(kube, reconciler, OUTPUTS)
    kube.put(planted([]))
    status = await step(kube, reconciler)
    assert (status["phase"], status["reason"]) == ("Failed", "PodCreateFailed"), status
    assert f"{NAME}-artifacts-1" in status["message"]
    assert kube.count("create", "Pod") == 0
    assert urls_of(kube)["outputs"]["dist"] == "http://attacker.invalid/x", "left alone"


async def test_a_retry_gets_urls_of_its_own_and_the_previous_ones_go(
    kube: FakeKube,
) -> None:
    reconciler = Reconciler(kube, CONFIG)  # type: ignore[arg-type]
    retried = {**OUTPUTS, "retries": {"limit": 1, "backoffSeconds": 0}}
    submit(kube, reconciler, retried)
    await step(kube, reconciler)
    first = urls_of(kube, 1)["outputs"]["dist"]
    status = {"phase": "Failed", "containerStatuses": [container_status(terminated(1))]}
    kube.cluster.update("Pod", NAMESPACE, f"{NAME}-1", lambda pod: pod.update(status=status))
    await step(kube, reconciler, times=3)
    assert kube.find("Pod", NAMESPACE, f"{NAME}-2") is not None, "the retry started"
    second = urls_of(kube, 2)["outputs"]["dist"]
    assert f"/{uid_of(kube)}/2/dist.tgz?" in second and f"/{uid_of(kube)}/1/dist.tgz?" in first
    assert kube.find("Secret", NAMESPACE, f"{NAME}-artifacts-1") is None
    await reconciler.queue.drain()
