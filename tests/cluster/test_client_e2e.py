"""The engine's client against the real cluster and operator (sync and asyncio)."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Iterator, Mapping
from typing import Any

import pytest
from kubernetes import client as k8s

from steprun.client import (
    InvalidStepRun,
    StepRunClient,
    StepRunConflict,
    StepRunRejected,
)
from steprun.client.aio import AsyncStepRunClient
from tests.support.operator_process import OperatorProcess
from tests.support.steps import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

OUTPUTS_SCRIPT = 'echo hello; printf \'{"k":"v"}\' > "$STEPRUN_OUTPUT_FILE"'


@pytest.fixture
def steprun_client(
    api_client: k8s.ApiClient, namespace: str, operator: OperatorProcess
) -> Iterator[StepRunClient]:
    with StepRunClient(api_client, namespace, poll_interval=0.2) as client:
        yield client


def test_run_to_success_returns_exit_code_and_outputs(
    steprun_client: StepRunClient, step_image: str
) -> None:
    result = steprun_client.run(
        {"image": step_image, "script": OUTPUTS_SCRIPT}, name="ok", timeout=120
    )
    assert result.succeeded
    assert (result.phase, result.exit_code, result.outputs) == ("Succeeded", 0, {"k": "v"})
    assert [a.pod_name for a in result.attempts] == ["ok-1"]
    assert list(steprun_client.logs("ok")) == ["hello"]


def test_run_to_failure_is_a_result_not_an_error(
    steprun_client: StepRunClient, step_image: str
) -> None:
    result = steprun_client.run(
        {"image": step_image, "script": "echo bad >&2; exit 3"}, name="bad", timeout=120
    )
    assert not result.succeeded
    assert (result.phase, result.reason, result.exit_code) == ("Failed", "Error", 3)


def test_logs_follow_across_a_retry(steprun_client: StepRunClient, step_image: str) -> None:
    script = 'echo "attempt $STEPRUN_ATTEMPT"; [ "$STEPRUN_ATTEMPT" -ge 2 ] || exit 1'
    handle = steprun_client.submit(
        {"image": step_image, "script": script, "retries": {"limit": 1, "backoffSeconds": 2}},
        name="retried",
    )
    assert list(handle.logs(follow=True)) == ["attempt 1", "attempt 2"]
    result = handle.result(timeout=60)
    assert result.succeeded and [a.attempt for a in result.attempts] == [1, 2]
    assert list(handle.logs(attempt=1)) == ["attempt 1"]


def test_cancel_from_the_library(steprun_client: StepRunClient, step_image: str) -> None:
    handle = steprun_client.submit(
        {"image": step_image, "script": "sleep 300", "terminationGracePeriodSeconds": 2},
        name="cancelme",
    )
    eventually(lambda: handle.refresh().status.phase == "Running", 90, "the step to run")
    assert handle.cancel().spec.cancel is True
    result = handle.result(timeout=60)
    assert (result.phase, result.reason) == ("Cancelled", "Cancelled")


def test_wait_survives_watch_restarts(
    api_client: k8s.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    step_image: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two-second watches during a ten-second step: the server ends the watch several times
    # and the client must resume each time without missing the end.
    steprun_client = StepRunClient(api_client, namespace, watch_timeout_seconds=2)
    watches: list[str] = []
    original = steprun_client.aio._watch_once

    def counting(
        path: str, resource_version: str, **options: Any
    ) -> AsyncGenerator[Mapping[str, Any], None]:
        watches.append(resource_version)
        return original(path, resource_version, **options)

    monkeypatch.setattr(steprun_client.aio, "_watch_once", counting)
    steprun_client.submit({"image": step_image, "script": "sleep 10"}, name="long")
    started = time.monotonic()
    done = steprun_client.wait("long", timeout=180)
    assert done.status.phase == "Succeeded"
    assert time.monotonic() - started >= 5
    assert len(watches) >= 3 and all(watches)


def test_submit_is_idempotent_for_the_same_spec(
    steprun_client: StepRunClient, step_image: str
) -> None:
    spec = {
        "image": step_image,
        "script": "true",
        "context": {"workflow": {"name": "wf", "runId": "7", "stepId": "a"}},
    }
    first = steprun_client.submit(spec, name="same")
    again = steprun_client.submit(spec, name="same")
    assert again.name == first.name
    with pytest.raises(StepRunConflict):
        steprun_client.submit({**spec, "script": "false"}, name="same")
    assert [sr.name for sr in steprun_client.list(workflow="wf", run_id="7")] == ["same"]
    assert steprun_client.list(workflow="wf", run_id="8") == []


def test_rejected_step_raises_with_the_operators_message(
    steprun_client: StepRunClient, namespace: str
) -> None:
    spec = {"mode": "sandbox", "sandbox": {"policy": f"absent-{namespace}", "plugin": "x"}}
    with pytest.raises(StepRunRejected) as raised:
        steprun_client.run(spec, name="rejected", timeout=120)
    assert raised.value.reason == "PolicyNotFound"
    assert f"absent-{namespace}" in raised.value.message


def test_the_api_servers_refusal_is_typed(steprun_client: StepRunClient, step_image: str) -> None:
    with pytest.raises(InvalidStepRun) as raised:
        steprun_client.submit({"image": step_image, "script": "true"}, name="Not_A_Name")
    assert "metadata.name" in str(raised.value.message) or raised.value.causes


@pytest.fixture
def kubeconfig_env(kubeconfig: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("KUBECONFIG", kubeconfig)
    yield kubeconfig


async def test_async_client_runs_a_step(
    kubeconfig_env: str, namespace: str, operator: OperatorProcess, step_image: str
) -> None:
    async with AsyncStepRunClient(namespace=namespace, poll_interval=0.2) as steprun_client:
        handle = await steprun_client.submit(
            {"image": step_image, "script": OUTPUTS_SCRIPT}, name="async-ok"
        )
        lines = [line async for line in handle.logs(follow=True)]
        assert lines == ["hello"]
        result = await handle.result(timeout=120)
        assert result.succeeded and result.outputs == {"k": "v"}

        failed = await steprun_client.run(
            {"image": step_image, "script": "exit 4"}, name="async-bad", timeout=120
        )
        assert (failed.phase, failed.exit_code) == ("Failed", 4)
