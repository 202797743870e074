"""``steprun render`` prints what the operator creates: every example, both routes, same objects.

Each StepRun of ``examples/`` is rendered through the CLI and started by the reconciler against
the in-memory API server; the objects the reconciler created must be the objects the CLI printed
(fields only the API server or the clock can fill aside). Namespaces with and without Pod
Security "restricted" enforcement, and an artifact store given by IP address, so the restricted
hardening, the artifact helper and the store's egress rule are all on both routes.
"""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from steprun.api.models import StepRun
from steprun.cli.main import main
from steprun.cli.rendering import PLACEHOLDER_UID, placeholder_inputs, redact_secret
from steprun.config import OperatorConfig
from steprun.reconcile.reconciler import Reconciler
from steprun.render.names import ANNOTATION_CREATED_AT, workload_name
from steprun.render.workload import queue_name
from tests.support.fake_kube import FakeKube

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
POLICY = EXAMPLES / "sandbox" / "policy-default.yaml"
NAMESPACE = "ci"
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}
SETTINGS = {
    # This fake has no admission policy; the creator checks have their own tests.
    "STEPRUN_REQUIRE_ADMISSION_POLICY": "false",
    "STEPRUN_ARTIFACTS_ENDPOINT": "http://10.0.0.9:9000",
    "STEPRUN_ARTIFACTS_BUCKET": "steps",
    "STEPRUN_ARTIFACTS_SECRET": "steprun-system/artifact-store",
    "STEPRUN_ARTIFACTS_ARCHIVE_LOGS": "false",
    "STEPRUN_EVENTS": "off",
}
# Filled by the API server (or the operator's clock at creation), never by a renderer.
SERVED = ("uid", "resourceVersion", "creationTimestamp", "generation")


def examples() -> list[Any]:
    found = []
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
        if any(d.get("kind") == "StepRun" for d in documents):
            found.append(pytest.param(path, id=str(path.relative_to(EXAMPLES))))
    return found


def steprun_document(path: Path) -> dict[str, Any]:
    """The example's StepRun, in the test's namespace, with the uid the CLI makes up."""
    document = next(
        d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "StepRun"
    )
    metadata = {**document["metadata"], "namespace": NAMESPACE, "uid": PLACEHOLDER_UID}
    return {**document, "metadata": metadata}


def by_cli(path: Path, labels: dict[str, str]) -> tuple[int, list[dict[str, Any]]]:
    argv = ["render", "-f", str(path), "-n", NAMESPACE, "--policy", str(POLICY)]
    for key, value in labels.items():
        argv += ["--namespace-label", f"{key}={value}"]
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdout=out, stderr=err)
    return code, [d for d in yaml.safe_load_all(out.getvalue()) if d is not None]


def cluster(sr: StepRun, labels: dict[str, str]) -> FakeKube:
    """What the step needs to start: its namespace, the policy, the store's credentials, the
    Secrets and claims it names, and the producers of its artifact inputs."""
    kube = FakeKube()
    put = kube.put
    namespace_labels = {"kubernetes.io/metadata.name": NAMESPACE, **labels}
    put({"kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": namespace_labels}})
    put(yaml.safe_load(POLICY.read_text()))
    store = {"name": "artifact-store", "namespace": "steprun-system"}
    put({"kind": "Secret", "metadata": store, "data": {"accessKey": "YQ==", "secretKey": "cw=="}})
    for projection in sr.spec.context.secrets:
        ref = projection.secret_key_ref
        meta = {"name": ref.name, "namespace": NAMESPACE}
        old = kube.find("Secret", NAMESPACE, ref.name) or {"data": {}}
        put({"kind": "Secret", "metadata": meta, "data": {**old["data"], ref.key: "dg=="}})
    for workspace in sr.spec.workspace_list:
        if workspace.persistent_volume_claim is not None:
            meta = {"name": workspace.persistent_volume_claim.claim_name, "namespace": NAMESPACE}
            put({"kind": "PersistentVolumeClaim", "metadata": meta, "spec": {}})
    for item in placeholder_inputs(sr):
        spec = sr.spec.artifacts
        assert spec is not None
        source = next(i.from_ for i in spec.inputs if i.name == item.name)
        upload = {"name": source.artifact, "attempt": 1, "size": 1, "key": item.key}
        upload["sha256"] = item.sha256
        producer = {"name": source.step_run, "namespace": NAMESPACE}
        put({"kind": "StepRun", "metadata": producer, "spec": {"image": "x"}})
        kube.cluster.set_status(NAMESPACE, source.step_run, phase="Succeeded", artifacts=[upload])
    return kube


async def by_operator(
    document: dict[str, Any], sr: StepRun, labels: dict[str, str]
) -> list[dict[str, Any]]:
    kube = cluster(sr, labels)
    body = kube.put(document)
    kube.calls.clear()
    rec = Reconciler(kube, OperatorConfig())
    rec.stepruns.observe(body)
    key = (NAMESPACE, sr.name)
    await rec.reconcile(key)
    if queue_name(sr):
        # Kueue's part: the step's Workload is admitted; its admission, then its attempt follow.
        kube.cluster.update("Workload", NAMESPACE, workload_name(sr.name), admitted)
        for _ in range(2):
            rec.workloads.observe(key, kube.find("Workload", NAMESPACE, workload_name(sr.name)))
            await rec.reconcile(key)
    await rec.queue.drain()
    # The Workload asks Kueue for the attempt; render prints the attempt's own objects.
    created = [
        (kind, name) for verb, kind, name in kube.calls if verb == "create" and kind != "Workload"
    ]
    found = [kube.find(kind, NAMESPACE, str(name)) for kind, name in created]
    return [obj for obj in found if obj is not None]


def admitted(workload: dict[str, Any]) -> None:
    workload["status"] = {
        "admission": {"clusterQueue": "cq", "podSetAssignments": [{"name": "main"}]},
        "conditions": [
            {"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved"},
            {"type": "Admitted", "status": "True", "reason": "Admitted"},
        ],
    }


def comparable(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(redact_secret(obj) if obj.get("kind") == "Secret" else obj)
    meta = out["metadata"]
    for key in SERVED:
        meta.pop(key, None)
    annotations = meta.get("annotations") or {}
    annotations.pop(ANNOTATION_CREATED_AT, None)
    if not annotations:
        meta.pop("annotations", None)
    return out


def keyed(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): comparable(o) for o in objects}


@pytest.mark.parametrize("labels", [{}, RESTRICTED], ids=["baseline", "restricted"])
@pytest.mark.parametrize("path", examples())
async def test_render_prints_exactly_what_the_operator_creates(
    path: Path, labels: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SETTINGS.items():
        monkeypatch.setenv(name, value)
    document = steprun_document(path)
    sr = StepRun.model_validate(document)

    code, printed = by_cli(path, labels)
    made = await by_operator(document, sr, labels)

    if code != 0:
        # Refused by the CLI (a sandbox denial): the operator makes nothing either.
        assert made == []
        return
    assert made, "the operator created nothing"
    assert keyed(made) == keyed(printed)
    assert {o["kind"] for o in made} >= {"ConfigMap", "Pod"}
