"""Control-plane faults: kube-apiserver and etcd crash (SIGKILL) while steps are in flight.

LOCAL CLUSTER ONLY: the components are found through the pid files ``hack/lib.sh`` writes
(``.cluster/pids/<component>.pid``) and brought back with ``hack/cluster-up.sh``, which starts
whatever is not running and waits until it is ready. On any other cluster these tests fail and
say why, unless ``STEPRUN_SKIP_CONTROL_PLANE_FAULTS=1`` asks explicitly to skip them. The file
name sorts last so the outage comes after every other test of a run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kubernetes import client

from tests.cluster.test_faults import assert_context_cleaned_up, assert_one_pod_per_attempt
from tests.support.operator_process import OperatorProcess
from tests.support.steps import Steps, eventually

REPO = Path(__file__).resolve().parents[2]
CLUSTER_DIR = REPO / ".cluster"
PIDS = CLUSTER_DIR / "pids"
CLUSTER_UP = REPO / "hack" / "cluster-up.sh"
SKIP_VARIABLE = "STEPRUN_SKIP_CONTROL_PLANE_FAULTS"
STEPS_IN_FLIGHT = 20


def _pid(component: str) -> int:
    path = PIDS / f"{component}.pid"
    if not path.exists():
        pytest.fail(f"{path} is missing: is {component} running under hack/cluster-up.sh?")
    return int(path.read_text().strip())


def _alive(pid: int, component: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    # A recycled pid belongs to another program; a zombie has already died.
    return component.encode() in cmdline and state != "Z"


@pytest.fixture(scope="module")
def local_control_plane(kubeconfig: str) -> None:
    if os.environ.get(SKIP_VARIABLE) == "1":
        pytest.skip(f"{SKIP_VARIABLE}=1: control-plane faults explicitly skipped")
    local = (CLUSTER_DIR / "kubeconfig").resolve()
    why = (
        "control-plane fault tests kill and restart kube-apiserver and etcd, which only works "
        "on the local cluster of hack/cluster-up.sh (pid files in .cluster/pids); set "
        f"{SKIP_VARIABLE}=1 to skip them explicitly on other clusters"
    )
    if Path(kubeconfig).resolve() != local:
        pytest.fail(f"KUBECONFIG={kubeconfig} is not the local cluster: {why}")
    for component in ("kube-apiserver", "etcd"):
        if not (PIDS / f"{component}.pid").exists() or not _alive(_pid(component), component):
            pytest.fail(f"{component} is not running from {PIDS}: {why}")


def crash_and_restart(component: str) -> float:
    """SIGKILL the component, bring it back with hack/cluster-up.sh; the outage in seconds."""
    pid = _pid(component)
    assert _alive(pid, component), f"{component} (pid {pid}) is not running"
    started = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    eventually(lambda: not _alive(pid, component), 30, f"{component} to die")
    result = subprocess.run(
        [str(CLUSTER_UP)], capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, f"hack/cluster-up.sh failed:\n{result.stderr[-4000:]}"
    assert _alive(_pid(component), component), f"{component} did not come back"
    return time.monotonic() - started


@pytest.fixture
def steps(
    api_client: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    local_control_plane: None,
) -> Steps:
    return Steps(api_client, namespace)


@pytest.fixture
def surviving_operator(operator: OperatorProcess) -> Iterator[OperatorProcess]:
    """The session's operator must ride out the outage by itself, without a crash or restart."""
    starts, offset = operator.starts, len(operator.log())
    yield operator
    assert operator.process is not None and operator.process.poll() is None, "operator died"
    assert operator.starts == starts, "the operator was restarted"
    assert "Traceback" not in operator.log()[offset:]


def run_through_outage(steps: Steps, step_image: str, component: str) -> None:
    names = [f"{component}-{i}" for i in range(STEPS_IN_FLIGHT)]
    for name in names:
        steps.create(name, {"image": step_image, "script": "sleep 5", "startupTimeoutSeconds": 300})
    # Some running, some still starting when the component goes down.
    steps.wait_phase(names[0], "Running", timeout=60)
    killed_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    outage = crash_and_restart(component)
    statuses = {name: steps.wait_terminal(name, timeout=240) for name in names}
    phases = {name: status["phase"] for name, status in statuses.items()}
    assert set(phases.values()) == {"Succeeded"}, (outage, phases)
    # The outage must have hit steps in flight, or this proved nothing.
    assert any(s["completionTime"] > killed_at for s in statuses.values()), (killed_at, statuses)
    assert_one_pod_per_attempt(steps, names)
    assert_context_cleaned_up(steps)


def test_apiserver_crash_mid_flight(
    steps: Steps, step_image: str, surviving_operator: OperatorProcess
) -> None:
    run_through_outage(steps, step_image, "kube-apiserver")


def test_etcd_crash_mid_flight(
    steps: Steps, step_image: str, surviving_operator: OperatorProcess
) -> None:
    run_through_outage(steps, step_image, "etcd")
