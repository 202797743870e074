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


@pytest.fixture(scope="session")
def operator(
    kubeconfig: str, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator, running as its own process against the test cluster for the whole session."""
    log_dir = tmp_path_factory.mktemp("operator")
    process = OperatorProcess(
        kubeconfig=kubeconfig,
        log_dir=log_dir,
        extra_env={"STEPRUN_NAMESPACES": f'["{SESSION_PREFIX}-*"]'},
    )
    process.start()
    yield process
    process.stop()
