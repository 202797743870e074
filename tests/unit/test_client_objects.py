"""The client's pure parts: bodies, selectors, spec comparison, errors, results, kubeconfig."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from steprun.api.models import Phase, StepRun, StepRunSpec
from steprun.client.backoff import Backoff
from steprun.client.errors import (
    ApiError,
    ApiUnreachable,
    InvalidStepRun,
    StepRunNotFound,
    StepRunRejected,
    WaitTimeout,
    error_for,
)
from steprun.client.objects import (
    coerce_spec,
    default_generate_name,
    parse_steprun,
    parse_steprun_list,
    pod_label_selector,
    same_spec,
    steprun_body,
    steprun_field_selector,
)
from steprun.client.result import build_result, is_terminal, result_of
from steprun.kube.config import context_namespace, kubeconfig_path
from steprun.kube.errors import classify_exception, classify_response
from steprun.render.names import workflow_labels


def spec(**fields: Any) -> StepRunSpec:
    return StepRunSpec.model_validate({"image": "busybox:1.36", **fields})


def finished(phase: str, **status: Any) -> StepRun:
    return StepRun.from_body(
        {
            "metadata": {"name": "s", "namespace": "ns"},
            "spec": {"image": "busybox"},
            "status": {"phase": phase, **status},
        }
    )


# ---------------------------------------------------------------------- bodies and selectors


def test_body_carries_spec_in_wire_form_and_workflow_labels_over_caller_labels() -> None:
    s = spec(
        script="echo hi",
        timeoutSeconds=60,
        context={"workflow": {"name": "build", "runId": "42"}},
    )
    body = steprun_body(
        s, namespace="ci", name="b-1", labels={"steprun.dev/workflow": "forged", "team": "x"}
    )
    assert body["apiVersion"] == "steprun.dev/v1alpha1" and body["kind"] == "StepRun"
    assert body["metadata"] == {
        "namespace": "ci",
        "name": "b-1",
        "labels": {"team": "x", "steprun.dev/workflow": "build", "steprun.dev/run-id": "42"},
    }
    assert body["spec"]["timeoutSeconds"] == 60 and body["spec"]["script"] == "echo hi"
    json.dumps(body)  # what the client POSTs must be plain JSON


def test_body_without_name_uses_generate_name() -> None:
    assert steprun_body(spec(), namespace="ci")["metadata"]["generateName"] == "busybox-"
    given = steprun_body(spec(), namespace="ci", generate_name="lint-")
    assert given["metadata"] == {"namespace": "ci", "generateName": "lint-"}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"image": "busybox:1.36"}, "busybox-"),
        ({"image": "registry.example:5000/tools/Go_Lang:1.22"}, "go-lang-"),
        ({"image": "ghcr.io/x/y@sha256:abc"}, "y-"),
        ({"image": "a" * 80}, "a" * 40 + "-"),
        ({"image": None, "mode": "sandbox", "sandbox": {"plugin": "eslint"}}, "eslint-"),
        ({"mode": "sandbox", "sandbox": {"uses": "plugin:eslint/fix"}}, "eslint-fix-"),
        ({"mode": "sandbox", "sandbox": {"uses": "command:mind:rag-index"}}, "mind-rag-index-"),
        ({"mode": "sandbox", "sandbox": {"uses": "builtin:shell"}, "script": "x"}, "shell-"),
        ({"image": "___"}, "step-"),
    ],
)
def test_default_generate_name(fields: dict[str, Any], expected: str) -> None:
    assert default_generate_name(StepRunSpec.model_validate(fields)) == expected


def test_workflow_labels_only_for_given_parts() -> None:
    assert workflow_labels(spec()) == {}
    assert workflow_labels(spec(context={"workflow": {"stepId": "lint"}})) == {
        "steprun.dev/step-id": "lint"
    }


def test_list_selector() -> None:
    assert steprun_field_selector() is None
    assert steprun_field_selector(run_id="42", workflow="build") == (
        "spec.context.workflow.name=build,spec.context.workflow.runId=42"
    )
    assert steprun_field_selector(step_id="lint") == "spec.context.workflow.stepId=lint"


def test_pod_selector_selects_the_operators_children_of_that_step() -> None:
    assert pod_label_selector("build-1") == (
        "steprun.dev/name=build-1,app.kubernetes.io/managed-by=steprun"
    )
    # Names longer than a label value are hashed, like the operator labels its Pods.
    long_name = "x" * 80
    value = pod_label_selector(long_name).split(",")[0].split("=")[1]
    assert len(value) <= 63 and value != long_name


def test_a_sandbox_step_written_as_a_workflow_step_is_submitted_as_is() -> None:
    spec = coerce_spec(
        {
            "mode": "sandbox",
            "sandbox": {"uses": "command:lint", "permissions": ["network.egress"]},
            "context": {"inputs": {"fix": True}},
        }
    )
    assert spec.sandbox is not None and spec.sandbox.uses == "command:lint"
    body = steprun_body(spec, namespace="ci")
    assert body["spec"]["sandbox"] == {
        "policy": "default",
        "uses": "command:lint",
        "permissions": ["network.egress"],
    }
    assert body["metadata"]["generateName"] == "lint-"
    with pytest.raises(InvalidStepRun, match="uses"):
        coerce_spec({"mode": "sandbox", "sandbox": {"uses": "plugin:eslint"}})


def test_coerce_spec_accepts_camel_and_snake_case() -> None:
    assert coerce_spec({"image": "b", "timeoutSeconds": 5}).timeout_seconds == 5
    assert coerce_spec({"image": "b", "timeout_seconds": 5}).timeout_seconds == 5
    same = spec()
    assert coerce_spec(same) is same


def test_same_spec_ignores_cancel_and_defaults_only() -> None:
    requested = spec(script="x")
    # What the server returns has every default filled in and may have been cancelled.
    existing = StepRunSpec.model_validate(
        {**requested.to_api(), "mode": "local", "cancel": True, "retries": {"limit": 0}}
    )
    assert same_spec(existing, requested)
    assert not same_spec(spec(script="y"), requested)
    assert not same_spec(spec(script="x", env={"A": "1"}), requested)


def test_parse_list_returns_items_and_the_list_version() -> None:
    items, version = parse_steprun_list(
        {
            "metadata": {"resourceVersion": "77"},
            "items": [{"metadata": {"name": "a"}, "spec": {"image": "b"}}],
        }
    )
    assert [i.name for i in items] == ["a"] and version == "77"
    assert parse_steprun_list({}) == ([], "")


# ---------------------------------------------------------------------- errors


def test_a_refusal_carries_the_servers_message_and_field_causes() -> None:
    body = json.dumps(
        {
            "kind": "Status",
            "message": "spec.image: Required value",
            "details": {"causes": [{"field": "spec.image", "message": "Required value"}]},
        }
    )
    error = error_for(classify_response(422, body.encode()), name="x", namespace="ns")
    assert isinstance(error, InvalidStepRun)
    assert error.message == "spec.image: Required value"
    assert [(c.field, c.message) for c in error.causes] == [("spec.image", "Required value")]
    plain = error_for(classify_response(400, "plain text "), name="x", namespace="ns")
    assert (plain.message, cast(InvalidStepRun, plain).causes) == ("plain text", ())


@pytest.mark.parametrize(
    ("status", "name", "expected"),
    [
        (404, "x", StepRunNotFound),
        (404, None, ApiError),
        (422, "x", InvalidStepRun),
        (400, None, InvalidStepRun),
        (503, "x", ApiUnreachable),
        (429, "x", ApiUnreachable),
        (408, "x", ApiUnreachable),
        (403, "x", ApiError),
        (409, "x", ApiError),
        (0, "x", ApiError),
    ],
)
def test_errors_follow_the_access_layers_taxonomy(
    status: int, name: str | None, expected: type
) -> None:
    assert type(error_for(classify_response(status, None), name=name, namespace="ns")) is expected


def test_an_unanswered_request_is_unreachable() -> None:
    lost = classify_exception(ConnectionResetError("reset by peer"))
    assert lost is not None
    assert type(error_for(lost, name="x", namespace="ns")) is ApiUnreachable


def test_errors_carry_the_steprun_and_its_message() -> None:
    rejected = finished("Rejected", reason="PermissionDenied", message="network.egress denied")
    error = StepRunRejected(rejected)
    assert (error.reason, error.message, error.steprun) == (
        "PermissionDenied",
        "network.egress denied",
        rejected,
    )
    assert "network.egress denied" in str(error)
    timeout = WaitTimeout("s", "ns", 5, finished("Running"))
    assert "phase Running" in str(timeout) and timeout.steprun is not None


# ---------------------------------------------------------------------- results


def test_result_of_a_failed_step() -> None:
    result = build_result(
        finished(
            "Failed",
            reason="Error",
            message="exit 3",
            exitCode=3,
            outputs={"k": "v"},
            attempts=[{"attempt": 1, "podName": "s-1", "exitCode": 3}],
            failure={"category": "Step", "stage": "Running", "reason": "Error", "exitCode": 3},
        )
    )
    assert result.phase is Phase.FAILED and not result.succeeded
    assert (result.exit_code, result.outputs, result.reason) == (3, {"k": "v"}, "Error")
    assert [a.pod_name for a in result.attempts] == ["s-1"]
    assert result.failure is not None
    assert (result.failure.category, result.failure.stage) == ("Step", "Running")
    assert build_result(finished("Succeeded")).failure is None


def test_results_exist_only_for_terminal_steps() -> None:
    assert build_result(finished("Succeeded")).succeeded
    assert is_terminal(finished("Cancelled")) and not is_terminal(finished("Running"))
    with pytest.raises(ValueError, match="not finished"):
        build_result(finished("Running"))


def test_result_of_raises_only_for_rejected() -> None:
    assert result_of(finished("TimedOut")).phase is Phase.TIMED_OUT
    with pytest.raises(StepRunRejected):
        result_of(finished("Rejected", reason="PolicyNotFound"))


# ---------------------------------------------------------------------- backoff, kubeconfig


def test_backoff_doubles_up_to_the_maximum_then_gives_up() -> None:
    backoff = Backoff(retries=5, initial=0.5, maximum=3)
    assert [backoff.delay(n) for n in range(1, 7)] == [0.5, 1, 2, 3, 3, None]
    assert backoff.delay(0) is None


def test_context_namespace() -> None:
    contexts = [
        {"name": "a", "context": {"namespace": "ns-a"}},
        {"name": "b", "context": {"cluster": "c"}},
    ]
    assert context_namespace(contexts, contexts[0]) == "ns-a"
    assert context_namespace(contexts, contexts[0], "b") is None
    assert context_namespace(contexts, None, "a") == "ns-a"
    assert context_namespace(contexts, contexts[0], "missing") is None


def test_kubeconfig_path_prefers_argument_then_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("KUBECONFIG", "/from/env")
    assert kubeconfig_path("/given") == "/given"
    assert kubeconfig_path() == "/from/env"
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert kubeconfig_path() is None
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text("{}")
    assert kubeconfig_path() == str(tmp_path / ".kube" / "config")


def test_reading_is_forward_compatible_unknown_fields_ignored_unknown_phase_kept() -> None:
    body = {
        "apiVersion": "steprun.dev/v1alpha1",
        "kind": "StepRun",
        "metadata": {"name": "newer", "namespace": "ci"},
        "spec": {"image": "busybox", "gpus": 2, "context": {"inputs": {}, "artifacts": []}},
        "status": {
            "phase": "Paused",
            "newSummary": {"x": 1},
            "attempts": [{"attempt": 1, "podName": "newer-1", "node": "n1"}],
            "conditions": [{"type": "Succeeded", "status": "Unknown", "severity": "Info"}],
        },
    }
    steprun = parse_steprun(body)
    assert steprun.spec.image == "busybox"
    assert steprun.status.phase == "Paused"
    assert type(steprun.status.phase) is str
    assert not is_terminal(steprun)
    assert steprun.status.attempts[0].pod_name == "newer-1"
    items, _ = parse_steprun_list({"items": [body], "metadata": {"resourceVersion": "5"}})
    assert [sr.name for sr in items] == ["newer"]


def test_known_phases_are_still_read_as_phases() -> None:
    body = {
        "metadata": {"name": "a", "namespace": "ci"},
        "spec": {"image": "busybox"},
        "status": {"phase": "Succeeded"},
    }
    assert parse_steprun(body).status.phase is Phase.SUCCEEDED
    assert is_terminal(parse_steprun(body))


def test_a_dict_spec_the_schema_refuses_is_an_invalid_steprun_naming_each_field() -> None:
    with pytest.raises(InvalidStepRun) as caught:
        coerce_spec({"image": "steprun.local/step:1", "scirpt": "x", "timeoutSeconds": "soon"})
    fields = {cause.field: cause.message for cause in caught.value.causes}
    # kubectl's words for a field the schema does not declare, not pydantic's.
    assert fields["spec.scirpt"] == 'unknown field "spec.scirpt"'
    assert "spec.timeoutSeconds" in fields
    assert "Extra inputs" not in str(caught.value)
    assert "spec.scirpt" in str(caught.value)
