"""The steprun command end to end against the fake API server (the operator is played here)."""

from __future__ import annotations

import io
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from steprun.cli import exit_codes
from steprun.cli.main import main
from steprun.kube.errors import Refused
from tests.support.cli import cli_process, steprun_cli
from tests.support.fake_apiserver import NS, FakeApiServer, finish, later, status_of
from tests.support.fake_cluster import FakeCluster


def operate(cluster: FakeCluster, scenario: Callable[[str], None]) -> threading.Thread:
    """Runs ``scenario(name)`` once the first StepRun exists, like the operator reacting."""

    def wait_and_run() -> None:
        if cluster.wait_for(lambda: bool(cluster.of_kind("StepRun")), 120):
            (name,) = cluster.names("StepRun", NS)
            scenario(name)

    thread = threading.Thread(target=wait_and_run, daemon=True)
    thread.start()
    return thread


def ran(cluster: FakeCluster, *lines: str, **status: object) -> Callable[[str], None]:
    """A scenario: a Pod that waits for its image, runs, prints ``lines``, ends with status."""

    def scenario(name: str) -> None:
        pod = cluster.add_pod(NS, name, 1, state="waiting", reason="ContainerCreating")
        time.sleep(0.3)
        cluster.set_status(NS, name, phase="Running")
        cluster.set_pod_state(NS, pod, "running")
        cluster.log(NS, pod, *lines)
        time.sleep(0.2)
        reason = "Completed" if status.get("phase", "Succeeded") == "Succeeded" else "Error"
        cluster.set_pod_state(NS, pod, "terminated", reason)
        cluster.end_log(NS, pod)
        finish(cluster, name, NS, **status)

    return scenario


# ---------------------------------------------------------------------- run


def test_run_streams_logs_and_exits_zero(server: FakeApiServer, kubeconfig: str) -> None:
    operate(server.cluster, ran(server.cluster, "hello", "world"))
    code, out, err = steprun_cli(kubeconfig, "run", "--image", "busybox:1.36", "--", "echo", "hi")
    assert code == 0, err
    assert out == "hello\nworld\n"
    assert "(ContainerCreating)" in err and "waiting for pod busybox-" in err
    assert "Succeeded" in err.splitlines()[-1]
    (created,) = server.cluster.of_kind("StepRun")
    assert created["spec"]["command"] == ["echo", "hi"]
    assert created["metadata"]["namespace"] == NS


def test_run_exits_with_the_steps_exit_code(server: FakeApiServer, kubeconfig: str) -> None:
    operate(
        server.cluster,
        ran(server.cluster, "oops", phase="Failed", reason="Error", exitCode=3, message="exit 3"),
    )
    code, out, err = steprun_cli(kubeconfig, "run", "failing", "--image", "b", "--script", "x")
    assert code == 3
    assert out == "oops\n"
    assert err.splitlines()[-1] == "steprun/failing Failed, exit code 3, Error: exit 3"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"phase": "TimedOut", "reason": "DeadlineExceeded"}, exit_codes.STEP_TIMED_OUT),
        ({"phase": "Cancelled", "reason": "Cancelled"}, exit_codes.CANCELLED),
        ({"phase": "Failed", "reason": "ImagePullFailed"}, exit_codes.NO_EXIT_CODE),
        (
            {"phase": "Rejected", "reason": "PermissionDenied", "message": "not granted"},
            exit_codes.USAGE,
        ),
    ],
)
def test_run_without_an_exit_code_uses_documented_codes(
    server: FakeApiServer, kubeconfig: str, status: dict[str, object], expected: int
) -> None:
    operate(
        server.cluster,
        lambda name: later(0.2, lambda: finish(server.cluster, name, NS, **status)).join(),
    )
    code, _, err = steprun_cli(kubeconfig, "run", "--image", "b", "--no-logs", "--", "true")
    assert code == expected, err
    assert str(status["phase"]) in err


def test_run_detach_prints_the_name(server: FakeApiServer, kubeconfig: str) -> None:
    code, out, _ = steprun_cli(kubeconfig, "run", "d1", "--image", "b", "--detach", "--", "x")
    assert (code, out) == (0, "d1\n")
    assert server.cluster.names("StepRun", NS) == ["d1"]


def test_run_refused_by_the_server_exits_2_with_the_field(
    server: FakeApiServer, kubeconfig: str
) -> None:
    message = "spec.retries.limit: must be <= 20"
    causes = [{"field": "spec.retries.limit", "message": "must be <= 20"}]
    refusal = status_of(422, message, details={"causes": causes})
    server.cluster.fail("create", "StepRun", Refused(422, "Invalid", message, refusal))
    code, _, err = steprun_cli(kubeconfig, "run", "--image", "b", "--", "x")
    assert code == exit_codes.USAGE
    assert "spec.retries.limit: must be <= 20" in err


def test_run_with_bad_arguments_exits_2_before_calling_the_server(
    server: FakeApiServer, kubeconfig: str
) -> None:
    code, _, err = steprun_cli(kubeconfig, "run", "--script", "echo")
    assert code == exit_codes.USAGE and "needs an image" in err
    assert server.requests == []


# ---------------------------------------------------------------------- the other commands


def test_list_get_logs_cancel_delete(server: FakeApiServer, kubeconfig: str) -> None:
    cluster = server.cluster
    for name in ("b", "a"):
        steprun_cli(kubeconfig, "run", name, "--image", "busybox", "--detach", "--", "x")
    pod = cluster.add_pod(NS, "a", 1)
    cluster.log(NS, pod, "line 1", "line 2")
    finish(cluster, "a", NS, exitCode=0)

    # The default client factory (from --kubeconfig) is used here.
    out, err = io.StringIO(), io.StringIO()
    assert main(["--kubeconfig", kubeconfig, "list"], stdout=out, stderr=err) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["NAME", "PHASE", "MODE", "EXIT", "DURATION", "AGE"]
    assert [line.split()[0] for line in lines[1:]] == ["a", "b"]
    assert lines[1].split()[1:4] == ["Succeeded", "local", "0"]

    names = steprun_cli(kubeconfig, "list", "-o", "name")[1]
    assert names == "steprun.steprun.dev/a\nsteprun.steprun.dev/b\n"
    code, out_yaml, _ = steprun_cli(kubeconfig, "get", "a", "-o", "yaml")
    assert code == 0 and yaml.safe_load(out_yaml)["status"]["phase"] == "Succeeded"
    code, listing, _ = steprun_cli(kubeconfig, "list", "-A", "-o", "json")
    assert code == 0 and '"kind": "List"' in listing

    assert steprun_cli(kubeconfig, "logs", "a")[:2] == (0, "line 1\nline 2\n")
    assert steprun_cli(kubeconfig, "wait", "a")[0] == 0

    code, out_cancel, _ = steprun_cli(kubeconfig, "cancel", "b")
    assert code == 0 and "cancel requested" in out_cancel
    assert cluster.get("StepRun", NS, "b")["spec"]["cancel"] is True
    assert steprun_cli(kubeconfig, "delete", "b")[0] == 0
    assert cluster.names("StepRun", NS) == ["a"]


def test_wait_timeout_and_missing_steps(server: FakeApiServer, kubeconfig: str) -> None:
    steprun_cli(kubeconfig, "run", "slow", "--image", "b", "--detach", "--", "x")
    code, _, err = steprun_cli(kubeconfig, "wait", "slow", "--timeout", "1")
    assert code == exit_codes.WAIT_TIMEOUT and "did not finish" in err
    code, _, err = steprun_cli(kubeconfig, "get", "nope")
    assert code == exit_codes.ERROR and 'steprun "nope" not found' in err
    assert steprun_cli(kubeconfig, "-n", "elsewhere", "logs", "slow")[0] == exit_codes.ERROR


def test_an_unreachable_server_exits_69(tmp_path: Path) -> None:
    with FakeApiServer() as gone:
        path = gone.kubeconfig(tmp_path)
    code, _, err = steprun_cli(path, "list")
    assert code == exit_codes.API_UNREACHABLE and "unreachable" in err


# ---------------------------------------------------------------------- Ctrl-C, as a process


def test_ctrl_c_cancels_the_step_and_exits_130(server: FakeApiServer, kubeconfig: str) -> None:
    cluster = server.cluster

    def scenario(name: str) -> None:
        pod = cluster.add_pod(NS, name, 1)
        cluster.set_status(NS, name, phase="Running")
        cluster.log(NS, pod, "working")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if cluster.get("StepRun", NS, name)["spec"].get("cancel"):
                cluster.set_pod_state(NS, pod, "terminated", "Error")
                cluster.end_log(NS, pod)
                finish(cluster, name, NS, phase="Cancelled", reason="Cancelled")
                return
            time.sleep(0.05)

    operate(cluster, scenario)
    process = cli_process(kubeconfig, "run", "--image", "b", "--", "sleep", "60")
    assert process.stdout is not None
    assert process.stdout.readline() == "working\n"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == exit_codes.CANCELLED, err
    assert "cancelling" in err and "Cancelled" in err.splitlines()[-1]
    assert server.requests_of("PATCH")
