"""Fixtures of sandbox tests: restricted namespaces, SandboxPolicies, the admission policy.

SandboxPolicies are cluster-scoped and the cluster is shared with other test sessions, so every
policy a test creates gets a unique name and is deleted when the test ends.

The admission policy of ``manifests/admission/`` is installed under its own name, as an
installation would, with the test operator's identity added to ``allowedCreators``. It is left
installed at the end: other sessions sharing the cluster may be relying on it at that moment,
and every session applies the same object.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from steprun.policy.decision import SandboxDecision
from steprun.render.sandbox import harden_pod
from tests.support.operator_process import OperatorProcess
from tests.support.steps import Steps, eventually

REPO = Path(__file__).resolve().parents[2]
ADMISSION_MANIFEST = REPO / "manifests" / "admission" / "sandbox-pods.yaml"
OPERATOR_SERVICE_ACCOUNT = "system:serviceaccount:steprun-system:steprun-operator"
FIELD_MANAGER = "steprun-e2e"
SANDBOX_GROUP, SANDBOX_VERSION, POLICY_PLURAL = "steprun.dev", "v1alpha1", "sandboxpolicies"
PSA_ENFORCE = "pod-security.kubernetes.io/enforce"
# Namespaces of sandbox tests carry this label with a value of their own, so a policy can
# select exactly the namespace of one test.
NAMESPACE_LABEL = "steprun.dev/e2e-namespace"


@pytest.fixture(scope="session", autouse=True)
def steprun_admission_everywhere(steprun_admission: str) -> str:
    """Every cluster test runs where the StepRun-create policy is installed, as a default
    install has it: operators fail closed on steps naming Secrets, claims or artifact
    producers without it, whatever test module happens to run first on a fresh cluster."""
    return steprun_admission


CLAIM_ORIGIN_MANIFEST = REPO / "manifests" / "admission" / "claim-origin.yaml"


@pytest.fixture(scope="session", autouse=True)
def claim_origin_everywhere(api_client: client.ApiClient, kubectl: list[str], crds: None) -> str:
    """The claim-origin policy, as a default install has it: operators do not run steps with
    volumeClaimTemplate workspaces without it. The session's operators run as the test's own
    identity, so it is added to ``allowedCreators``; left installed at the end like the others
    (every session applies the same object). Returns its name."""
    docs = admission_documents([current_username(api_client)], CLAIM_ORIGIN_MANIFEST)
    apply_server_side(kubectl, docs)
    return str(docs[0]["metadata"]["name"])


def current_username(api_client: client.ApiClient) -> str:
    """Who the API server thinks the kubeconfig is (the identity the test operator runs as)."""
    review = client.AuthenticationV1Api(api_client).create_self_subject_review(
        client.V1SelfSubjectReview(metadata=client.V1ObjectMeta())
    )
    return str(review.status.user_info.username)


def admission_documents(
    extra_creators: list[str], manifest: Path = ADMISSION_MANIFEST
) -> list[dict[str, Any]]:
    """The manifest's objects, with ``extra_creators`` added to its allowedCreators list."""
    docs = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    policy = next(d for d in docs if d["kind"] == "ValidatingAdmissionPolicy")
    variable = policy["spec"]["variables"][0]
    assert variable["name"] == "allowedCreators", variable
    # The expression is a CEL list of single-quoted strings, which YAML reads as a flow list.
    creators: list[str] = list(yaml.safe_load(variable["expression"]))
    assert OPERATOR_SERVICE_ACCOUNT in creators, creators
    for name in extra_creators:
        if name not in creators:
            creators.append(name)
    assert all("'" not in name and "\\" not in name for name in creators), creators
    variable["expression"] = "[" + ", ".join(f"'{name}'" for name in creators) + "]"
    return docs


def apply_server_side(kubectl: list[str], docs: list[dict[str, Any]]) -> None:
    """Applied server-side under one field manager, so concurrent sessions applying the same
    objects do not conflict."""
    subprocess.run(
        [
            *kubectl,
            "apply",
            "--server-side",
            "--force-conflicts",
            f"--field-manager={FIELD_MANAGER}",
            "-f",
            "-",
        ],
        input=yaml.safe_dump_all(docs),
        text=True,
        check=True,
        capture_output=True,
    )


def hardened_probe_pod(name: str, image: str, labels: dict[str, str]) -> dict[str, Any]:
    """A Pod hardened exactly as the operator hardens sandbox Pods, with ``labels`` on top."""
    decision = SandboxDecision(
        policy="probe",
        plugin="probe",
        image=image,
        command=None,
        granted=frozenset(),
        timeout_seconds=60,
        resources=None,
    )
    plain = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "step", "image": image, "command": ["true"]}],
        },
    }
    pod = harden_pod(plain, decision)
    pod["metadata"]["labels"] = labels
    return pod


def _dry_run_status(core: client.CoreV1Api, namespace: str, pod: dict[str, Any]) -> int:
    try:
        core.create_namespaced_pod(namespace, pod, dry_run="All")
        return 201
    except client.ApiException as error:
        return int(error.status)


@pytest.fixture(scope="session")
def sandbox_admission(api_client: client.ApiClient, kubectl: list[str], step_image: str) -> str:
    """The sandbox-Pod admission policy, active; returns its name.

    Applied server-side, so concurrent sessions applying the same object do not conflict.
    Returns only once the API server enforces the policy as applied: a sandbox-labelled
    Pod on the host network is refused and an operator-style Pod from this identity is admitted.
    """
    docs = admission_documents([current_username(api_client)])
    apply_server_side(kubectl, docs)
    policy_name = str(docs[0]["metadata"]["name"])
    core = client.CoreV1Api(api_client)
    labels = {"steprun.dev/sandbox": "true", "steprun.dev/policy": "probe"}
    admitted = hardened_probe_pod(f"admission-probe-{uuid.uuid4().hex[:6]}", step_image, labels)
    loosened = hardened_probe_pod(admitted["metadata"]["name"], step_image, labels)
    loosened["spec"]["hostNetwork"] = True

    def enforced() -> bool:
        return (
            _dry_run_status(core, "default", loosened) == 403
            and _dry_run_status(core, "default", admitted) == 201
        )

    # Policies are loaded by an informer; several agreeing answers in a row show it settled.
    for _ in range(3):
        eventually(enforced, 60, f"ValidatingAdmissionPolicy {policy_name} to be enforced")
        time.sleep(0.5)
    return policy_name


class SandboxPolicies:
    """SandboxPolicies of one test, each under a unique name, deleted at the end of the test."""

    def __init__(self, api_client: client.ApiClient):
        self.custom = client.CustomObjectsApi(api_client)
        self.prefix = f"e2e-{uuid.uuid4().hex[:8]}"
        self.names: list[str] = []

    def create(self, suffix: str, spec: dict[str, Any]) -> str:
        name = f"{self.prefix}-{suffix}"
        body = {
            "apiVersion": f"{SANDBOX_GROUP}/{SANDBOX_VERSION}",
            "kind": "SandboxPolicy",
            "metadata": {"name": name},
            "spec": spec,
        }
        self.custom.create_cluster_custom_object(
            SANDBOX_GROUP, SANDBOX_VERSION, POLICY_PLURAL, body
        )
        self.names.append(name)
        return name

    def unused_name(self, suffix: str) -> str:
        """A name no policy has: no one else uses this test's prefix."""
        return f"{self.prefix}-{suffix}"

    def replace_spec(self, name: str, spec: dict[str, Any]) -> None:
        current = self.custom.get_cluster_custom_object(
            SANDBOX_GROUP, SANDBOX_VERSION, POLICY_PLURAL, name
        )
        current["spec"] = spec
        self.custom.replace_cluster_custom_object(
            SANDBOX_GROUP, SANDBOX_VERSION, POLICY_PLURAL, name, current
        )

    def delete_all(self) -> None:
        for name in self.names:
            try:
                self.custom.delete_cluster_custom_object(
                    SANDBOX_GROUP, SANDBOX_VERSION, POLICY_PLURAL, name
                )
            except client.ApiException as error:
                if error.status != 404:
                    raise


@pytest.fixture
def node_gate(api_client: client.ApiClient) -> Iterator[tuple[str, str]]:
    """A label key no node has yet: Pods selecting it wait unscheduled until the test opens it."""
    core = client.CoreV1Api(api_client)
    node = next(
        n.metadata.name
        for n in core.list_node().items
        if (n.metadata.annotations or {}).get("kwok.x-k8s.io/node") != "fake"
    )
    key = f"steprun.dev/gate-{uuid.uuid4().hex[:8]}"
    yield node, key
    core.patch_node(node, {"metadata": {"labels": {key: None}}})


@pytest.fixture
def sandbox_policies(api_client: client.ApiClient, crds: None) -> Iterator[SandboxPolicies]:
    policies = SandboxPolicies(api_client)
    yield policies
    policies.delete_all()


@pytest.fixture
def restricted_namespace(api_client: client.ApiClient, namespace: str) -> str:
    """The test's namespace, enforcing the Pod Security "restricted" profile.

    It also carries ``NAMESPACE_LABEL: <its name>`` for policies that select it.
    """
    labels = {PSA_ENFORCE: "restricted", NAMESPACE_LABEL: namespace}
    client.CoreV1Api(api_client).patch_namespace(namespace, {"metadata": {"labels": labels}})
    return namespace


@pytest.fixture
def sandbox_steps(
    api_client: client.ApiClient,
    restricted_namespace: str,
    operator: OperatorProcess,
    sandbox_admission: str,
) -> Steps:
    """StepRuns of a restricted namespace, with the sandbox-Pod admission policy enforced, so
    every sandbox Pod the operator creates there also proves both admit it."""
    return Steps(api_client, restricted_namespace)


def read_store_env(kubeconfig: str) -> dict[str, str]:
    path = Path(kubeconfig).resolve().parent / "store" / "store.env"
    if not path.exists():
        pytest.fail(
            f"no artifact store for this cluster ({path} is missing): hack/cluster-up.sh starts "
            "one (hack/store-up.sh)"
        )
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}
