"""The steprun command as a user runs it: a subprocess with KUBECONFIG, a real cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from steprun.cli import exit_codes
from steprun.client import StepRunClient
from tests.support.cli import cli_process
from tests.support.operator_process import OperatorProcess
from tests.support.steps import eventually
from tests.unit.test_cli_validation import ACCEPTED, REFUSED

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
Cli = Callable[..., CompletedProcess[str]]


@pytest.fixture
def cli_env(kubeconfig: str, operator: OperatorProcess) -> dict[str, str]:
    return {**os.environ, "KUBECONFIG": kubeconfig, "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def cli(cli_env: dict[str, str], namespace: str) -> Cli:
    """Runs ``steprun -n <test namespace> ARGS...`` and returns the finished process."""

    def run(*argv: str, timeout: float = 180) -> CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "steprun", "-n", namespace, *argv],
            capture_output=True,
            text=True,
            env=cli_env,
            cwd=REPO,
            timeout=timeout,
        )

    return run


def test_run_succeeds_and_streams_logs(cli: Cli, step_image: str) -> None:
    done = cli("run", "hello", "--image", step_image, "--", "sh", "-c", "echo hello; echo world")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello\nworld\n"
    assert "steprun/hello Succeeded" in done.stderr


def test_run_exits_with_the_steps_exit_code(cli: Cli, step_image: str) -> None:
    done = cli("run", "--image", step_image, "--script", "echo failing; exit 7")
    assert done.returncode == 7, done.stderr
    assert done.stdout == "failing\n"
    assert "Failed, exit code 7" in done.stderr


def test_run_timeout_has_its_own_exit_code(cli: Cli, step_image: str) -> None:
    done = cli("run", "--image", step_image, "--timeout", "2", "--script", "sleep 60")
    assert done.returncode == exit_codes.STEP_TIMED_OUT, done.stderr


def test_logs_wait_get_and_list_after_the_fact(cli: Cli, step_image: str) -> None:
    script = 'echo "attempt $STEPRUN_ATTEMPT"; [ "$STEPRUN_ATTEMPT" -ge 2 ] || exit 5'
    created = cli(
        "run", "flaky", "--image", step_image, "--retries", "1", "--script", script, "--detach"
    )
    assert created.returncode == 0 and created.stdout == "flaky\n", created.stderr
    waited = cli("wait", "flaky", "--timeout", "120")
    assert waited.returncode == 0, waited.stderr
    logs = cli("logs", "flaky")
    assert logs.stdout == "attempt 1\nattempt 2\n"
    assert "--- attempt 2 (pod flaky-2) ---" in logs.stderr
    assert cli("logs", "flaky", "--attempt", "1").stdout == "attempt 1\n"
    row = cli("list").stdout.splitlines()[1].split()
    assert row[:4] == ["flaky", "Succeeded", "local", "0"]
    document = yaml.safe_load(cli("get", "flaky", "-o", "yaml").stdout)
    assert len(document["status"]["attempts"]) == 2


@pytest.mark.usefixtures("operator")
def test_ctrl_c_cancels_the_step_and_exits_130(
    kubeconfig: str, step_image: str, namespace: str, api_client: k8s.ApiClient
) -> None:
    process = cli_process(
        kubeconfig,
        "run",
        "interrupted",
        "-n",
        namespace,
        "--image",
        step_image,
        "--",
        "sh",
        "-c",
        "echo started; sleep 300",
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "started\n"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == exit_codes.CANCELLED, err
    assert "cancelling steprun/interrupted" in err
    steprun = StepRunClient(api_client, namespace).get("interrupted")
    assert steprun.spec.cancel is True and steprun.status.phase == "Cancelled"


def test_render_equals_what_the_operator_created(
    cli: Cli, step_image: str, namespace: str, api_client: k8s.ApiClient, tmp_path: Path
) -> None:
    core = k8s.CoreV1Api(api_client)
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "gh"}, "stringData": {"token": "s3cret"}}
    )
    steprun_client = StepRunClient(api_client, namespace)
    steprun_client.submit(
        {
            "image": step_image,
            "script": "sleep 30",
            "workingDir": "/tmp",
            "env": {"LOG_LEVEL": "debug"},
            "context": {
                "env": {"CI": "true"},
                "inputs": {"branch": "main"},
                "workflow": {"name": "build", "runId": "42", "stepId": "lint"},
                "secrets": [
                    {"name": "TOKEN", "secretKeyRef": {"name": "gh", "key": "token"}},
                    {
                        "name": "token_file",
                        "secretKeyRef": {"name": "gh", "key": "token"},
                        "as": "file",
                    },
                ],
            },
        },
        name="rendered",
    )
    pod = eventually(lambda: _pod_or_none(core, namespace, "rendered-1"), 90, "the Pod")
    steprun = steprun_client.get("rendered")
    manifest = tmp_path / "steprun.yaml"
    served = steprun.model_dump(by_alias=True, exclude_none=True, mode="json")
    manifest.write_text(yaml.safe_dump(served))

    done = cli("render", "-f", str(manifest))
    assert done.returncode == 0, done.stderr
    assert "s3cret" not in done.stdout
    rendered = {d["kind"]: d for d in yaml.safe_load_all(done.stdout) if d}
    assert rendered["Secret"]["data"] == {"TOKEN": "<redacted>", "token_file": "<redacted>"}

    actual = api_client.sanitize_for_serialization(pod)
    expected_spec = rendered["Pod"]["spec"]
    (container,) = actual["spec"]["containers"]
    (expected_container,) = expected_spec["containers"]
    assert container["env"] == expected_container["env"]
    assert _without_token(container["volumeMounts"]) == expected_container["volumeMounts"]
    assert _subset(
        expected_container, {**container, "volumeMounts": _without_token(container["volumeMounts"])}
    )
    assert _subset(expected_spec["volumes"], _without_token(actual["spec"]["volumes"]))
    assert len(expected_spec["volumes"]) == len(_without_token(actual["spec"]["volumes"]))
    assert _subset(rendered["Pod"]["metadata"]["labels"], actual["metadata"]["labels"])
    configmap = api_client.sanitize_for_serialization(
        core.read_namespaced_config_map("rendered-context", namespace)
    )
    assert configmap["data"] == rendered["ConfigMap"]["data"]
    steprun_client.cancel("rendered")


def _pod_or_none(core: k8s.CoreV1Api, namespace: str, name: str) -> k8s.V1Pod | None:
    try:
        return core.read_namespaced_pod(name, namespace)
    except k8s.ApiException as error:
        if error.status == 404:
            return None
        raise


def _without_token(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drops the service-account token volume (and its mount) the API server injects."""
    return [e for e in entries if not str(e.get("name", "")).startswith("kube-api-access-")]


def _subset(expected: Any, actual: Any) -> bool:
    """Whether ``actual`` holds everything in ``expected`` (the server adds defaults)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and _subset(value, actual[key]) for key, value in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(_subset(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(expected == actual)


# ---------------------------------------------------------------------- render --validate


def _as_manifest(document: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "steprun.dev/v1alpha1", "kind": "StepRun", **document}


@pytest.mark.parametrize(("case", "document", "fields"), REFUSED, ids=[c[0] for c in REFUSED])
def test_the_api_server_refuses_what_render_validate_refuses(
    api_client: k8s.ApiClient,
    namespace: str,
    case: str,
    document: dict[str, Any],
    fields: set[str],
) -> None:
    """--validate's verdicts are the API server's: the same cases refused for the same fields."""
    objects = k8s.CustomObjectsApi(api_client)
    with pytest.raises(k8s.ApiException) as refused:
        objects.create_namespaced_custom_object(
            "steprun.dev", "v1alpha1", namespace, "stepruns", _as_manifest(document), dry_run="All"
        )
    assert refused.value.status == 422, refused.value.body
    causes = {
        c.get("field", "")
        for c in (yaml.safe_load(refused.value.body)["details"].get("causes") or [])
    }

    # The API server names list items and map keys its own way (secrets[0] vs [0]); compare
    # the path up to them.
    def base(field: str) -> str:
        return field.split("[")[0]

    assert {base(f) for f in fields} <= {base(c) for c in causes}, causes


@pytest.mark.parametrize(("case", "document"), ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_the_api_server_accepts_what_render_validate_accepts(
    api_client: k8s.ApiClient, namespace: str, case: str, document: dict[str, Any]
) -> None:
    k8s.CustomObjectsApi(api_client).create_namespaced_custom_object(
        "steprun.dev", "v1alpha1", namespace, "stepruns", _as_manifest(document), dry_run="All"
    )


def test_dry_run_server_and_get_as_served(
    cli: Cli, namespace: str, step_image: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "step.yaml"
    manifest.write_text(
        yaml.safe_dump(
            _as_manifest(
                {"metadata": {"name": "dry"}, "spec": {"image": step_image, "script": "true"}}
            )
        )
    )
    done = cli("render", "-f", str(manifest), "--dry-run=server")
    assert done.returncode == 0, done.stderr
    assert "kind: Pod" in done.stdout
    assert cli("get", "dry").returncode == exit_codes.ERROR  # nothing was stored
    done = cli("run", "served", "--image", step_image, "--detach", "--", "true")
    assert done.returncode == 0, done.stderr
    served = yaml.safe_load(cli("get", "served", "-o", "yaml").stdout)
    assert served["metadata"]["uid"] and "managedFields" not in served["metadata"]
    assert cli("get", "served", "-o", "jsonpath={.spec.image}").stdout == step_image
    described = cli("describe", "served")
    assert described.returncode == 0 and "Name:           served" in described.stdout
    version = cli("version")
    assert version.returncode == 0 and "Server Version: v1." in version.stdout
