"""Fixtures shared by every test: the cluster, namespaces, the operator process.

Tests under ``tests/cluster/`` need a real Kubernetes cluster. They use whatever ``KUBECONFIG``
points at; without one, the local cluster is brought up (``hack/cluster-up.sh``). There is no
silent skip: when no cluster can be had, those tests fail and say why.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from steprun.render.names import TRACKING_FINALIZER
from tests.support.operator_process import OperatorProcess

REPO = Path(__file__).resolve().parent.parent
LOCAL_KUBECONFIG = REPO / ".cluster" / "kubeconfig"
STEP_IMAGE = "steprun.local/step:1"
# Every namespace of this test session starts with this prefix and the session's operator
# watches only those, so several test sessions can share one cluster without interfering.
SESSION_PREFIX = f"t{uuid.uuid4().hex[:4]}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.cluster)


def _reachable(kubeconfig: str) -> bool:
    try:
        api = config.new_client_from_config(config_file=kubeconfig)
        client.VersionApi(api).get_code(_request_timeout=5)
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    given = os.environ.get("KUBECONFIG")
    if given and _reachable(given):
        return given
    if given and Path(given).resolve() != LOCAL_KUBECONFIG.resolve():
        pytest.fail(f"KUBECONFIG={given} points at a cluster that does not answer")
    result = subprocess.run(
        [str(REPO / "hack" / "cluster-up.sh")], capture_output=True, text=True, check=False
    )
    if result.returncode != 0 or not _reachable(str(LOCAL_KUBECONFIG)):
        pytest.fail(f"could not bring up the local cluster:\n{result.stderr[-4000:]}")
    os.environ["KUBECONFIG"] = str(LOCAL_KUBECONFIG)
    return str(LOCAL_KUBECONFIG)


@pytest.fixture(scope="session")
def api_client(kubeconfig: str) -> client.ApiClient:
    return config.new_client_from_config(config_file=kubeconfig)


@pytest.fixture(scope="session")
def kubectl(kubeconfig: str) -> list[str]:
    """The kubectl command line for the test cluster (the locally built one when present)."""
    built = subprocess.run(
        ["bash", "-c", f". {REPO}/hack/versions.sh; k8s_bin_dir"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    binary = Path(built) / "kubectl"
    return [str(binary) if binary.exists() else "kubectl", "--kubeconfig", kubeconfig]


@pytest.fixture(scope="session")
def crds(kubectl: list[str]) -> None:
    subprocess.run(
        [*kubectl, "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds")],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *kubectl,
            "wait",
            "--for=condition=Established",
            "crd/stepruns.steprun.dev",
            "crd/sandboxpolicies.steprun.dev",
            "--timeout=60s",
        ],
        check=True,
        capture_output=True,
    )


STEPRUN_ADMISSION_MANIFEST = REPO / "manifests" / "admission" / "stepruns.yaml"
# An identity that may create StepRuns in "default" and nothing else: the admission policy is
# enforced once a StepRun naming a Secret is refused to it.
ADMISSION_PROBE_USER = "steprun-e2e-admission-probe"


def kubectl_apply(kubectl: list[str], documents: str) -> None:
    """Server-side apply, taking over fields other sessions applied (same objects)."""
    subprocess.run(
        [*kubectl, "apply", "--server-side", "--force-conflicts", "--field-manager=e2e", "-f", "-"],
        input=documents,
        text=True,
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="session")
def steprun_admission(api_client: client.ApiClient, kubectl: list[str], crds: None) -> str:
    """The StepRun-create admission policy of ``manifests/admission/``, enforced; its name.

    Left installed at the end, like the sandbox-Pod policy: other sessions sharing the cluster
    apply the same object and may rely on it.
    """
    import time

    import yaml

    text = STEPRUN_ADMISSION_MANIFEST.read_text()
    kubectl_apply(kubectl, text)
    name = str(next(d for d in yaml.safe_load_all(text) if d)["metadata"]["name"])
    probe_rbac = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": ADMISSION_PROBE_USER, "namespace": "default"},
            "rules": [
                {"apiGroups": ["steprun.dev"], "resources": ["stepruns"], "verbs": ["create"]}
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": ADMISSION_PROBE_USER, "namespace": "default"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": ADMISSION_PROBE_USER,
            },
            "subjects": [
                {
                    "kind": "User",
                    "name": ADMISSION_PROBE_USER,
                    "apiGroup": "rbac.authorization.k8s.io",
                }
            ],
        },
    ]
    kubectl_apply(kubectl, yaml.safe_dump_all(probe_rbac))
    probe = config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"))
    probe.set_default_header("Impersonate-User", ADMISSION_PROBE_USER)
    body = {
        "apiVersion": "steprun.dev/v1alpha1",
        "kind": "StepRun",
        "metadata": {"name": "admission-probe"},
        "spec": {
            "image": STEP_IMAGE,
            "context": {"secrets": [{"name": "S", "secretKeyRef": {"name": "probe", "key": "k"}}]},
        },
    }
    deadline = time.monotonic() + 60
    while True:
        try:
            client.CustomObjectsApi(probe).create_namespaced_custom_object(
                "steprun.dev", "v1alpha1", "default", "stepruns", body, dry_run="All"
            )
        except client.ApiException as error:
            if error.status == 403 and f"ValidatingAdmissionPolicy '{name}'" in str(error.body):
                break
        if time.monotonic() > deadline:
            pytest.fail(f"ValidatingAdmissionPolicy {name} is not enforced after 60s")
        time.sleep(0.5)
    # The operator trusts the policy for StepRuns created after it (second precision).
    time.sleep(1.1)
    return name


@pytest.fixture(scope="session")
def step_image() -> str:
    return STEP_IMAGE


@pytest.fixture
def namespace(api_client: client.ApiClient) -> Iterator[str]:
    name = f"{SESSION_PREFIX}-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    # The ServiceAccount controller creates "default" asynchronously; Pods need it.
    for _ in range(100):
        try:
            core.read_namespaced_service_account("default", name)
            break
        except client.ApiException:
            import time

            time.sleep(0.1)
    yield name
    core.delete_namespace(name, propagation_policy="Background")
    # Step Pods hold the operator's tracking finalizer until it records their outcome; a test
    # that stopped the operator must not leave the namespace terminating forever.
    for pod in core.list_namespaced_pod(name).items:
        finalizers = pod.metadata.finalizers or []
        if TRACKING_FINALIZER in finalizers:
            kept = [f for f in finalizers if f != TRACKING_FINALIZER]
            try:
                core.patch_namespaced_pod(
                    pod.metadata.name, name, {"metadata": {"finalizers": kept or None}}
                )
            except client.ApiException as error:
                if error.status != 404:
                    raise


# The session operator lets steps pick nodes, keep a "team" label and tell kwok how long to run
# (tests use kwok nodes, gates and labels); tests/cluster/test_tenancy_e2e.py runs one with the
# defaults.
PERMISSIVE_TENANCY = {
    "STEPRUN_POD_LABEL_KEYS": '["team"]',
    "STEPRUN_POD_ANNOTATION_KEYS": '["kwok.steprun.dev/*"]',
    "STEPRUN_NODE_SELECTOR_KEYS": '["*"]',
    "STEPRUN_TOLERATION_KEYS": '["*"]',
}


@pytest.fixture(scope="session")
def operator(
    kubeconfig: str,
    crds: None,
    steprun_admission: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    """The operator, running as its own process against the test cluster for the whole session.

    The StepRun-create admission policy is installed first: without it the operator refuses
    steps that name Secrets."""
    log_dir = tmp_path_factory.mktemp("operator")
    process = OperatorProcess(
        kubeconfig=kubeconfig,
        log_dir=log_dir,
        extra_env={"STEPRUN_NAMESPACES": f'["{SESSION_PREFIX}-*"]', **PERMISSIVE_TENANCY},
    )
    process.start()
    yield process
    process.stop()
