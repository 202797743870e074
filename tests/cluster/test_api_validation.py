"""The API server itself refuses invalid StepRuns, naming the field (CRD schema and CEL)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from tests.support.steps import Steps

IMAGE = "steprun.local/step:1"
TEMPLATE = {"spec": {"resources": {"requests": {"storage": "1Gi"}}}}
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def steps(api_client: client.ApiClient, namespace: str, crds: None) -> Steps:
    return Steps(api_client, namespace)


def refusal(steps: Steps, spec: dict[str, Any]) -> str:
    body = {
        "apiVersion": "steprun.dev/v1alpha1",
        "kind": "StepRun",
        "metadata": {"name": "invalid"},
        "spec": spec,
    }
    with pytest.raises(client.ApiException) as refused:
        # Strict, as kubectl sends it: unknown fields are errors, not silently pruned.
        steps.custom.create_namespaced_custom_object(
            "steprun.dev",
            "v1alpha1",
            steps.namespace,
            "stepruns",
            body,
            field_validation="Strict",
        )
    assert refused.value.status in (400, 422), refused.value.body
    return str(refused.value.body)


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ({"script": "true"}, "spec.image", "image"),
        ({"image": IMAGE, "script": "true", "command": ["sh"]}, "spec.script", "command"),
        ({"image": IMAGE, "mode": "sandbox"}, "spec.sandbox", "sandbox"),
        ({"image": IMAGE, "sandbox": {"plugin": "x"}}, "spec.sandbox", "sandbox"),
        ({"mode": "sandbox", "image": IMAGE, "sandbox": {"plugin": "x"}}, "spec.image", "image"),
        ({"image": IMAGE, "mode": "remote"}, "spec.mode", "Unsupported value"),
        ({"image": IMAGE, "timeoutSeconds": 0}, "spec.timeoutSeconds", "greater than or equal"),
        ({"image": IMAGE, "retries": {"limit": 1000}}, "spec.retries.limit", "less than or equal"),
        ({"image": IMAGE, "env": {"STEPRUN_NAME": "x"}}, "spec.env", "STEPRUN_"),
        ({"image": IMAGE, "env": {"1BAD": "x"}}, "spec.env", "env"),
        (
            {
                "image": IMAGE,
                "context": {"secrets": [{"name": "T", "secretKeyRef": {"name": "s"}}]},
            },
            "spec.context.secrets[0].secretKeyRef.key",
            "Required",
        ),
        (
            {
                "image": IMAGE,
                "context": {
                    "secrets": [
                        {"name": "T", "secretKeyRef": {"name": "s", "key": "k"}},
                        {"name": "T", "secretKeyRef": {"name": "s", "key": "j"}},
                    ]
                },
            },
            "spec.context.secrets[1]",
            "Duplicate",
        ),
        (
            {"image": IMAGE, "resources": {"limits": {"memory": "lots"}}},
            "spec.resources.limits",
            "quantit",
        ),
        ({"image": IMAGE, "unknownField": 1}, "unknownField", "unknown field"),
        ({"image": IMAGE, "workspaces": [{"name": "w"}]}, "spec.workspaces[0]", "exactly one"),
        (
            {
                "image": IMAGE,
                "workspaces": [
                    {"name": "w", "emptyDir": {}, "persistentVolumeClaim": {"claimName": "c"}}
                ],
            },
            "spec.workspaces[0]",
            "exactly one",
        ),
        (
            {
                "image": IMAGE,
                "workspaces": [{"name": "w", "emptyDir": {}}, {"name": "w", "emptyDir": {}}],
            },
            "spec.workspaces[1]",
            "Duplicate",
        ),
        (
            {"image": IMAGE, "workspaces": [{"name": "w", "volumeClaimTemplate": TEMPLATE}]},
            "spec.workspaces",
            "context.workflow.name and runId",
        ),
        (
            {
                "image": IMAGE,
                "context": {"workflow": {"name": "build"}},
                "workspaces": [{"name": "w", "volumeClaimTemplate": TEMPLATE}],
            },
            "spec.workspaces",
            "context.workflow.name and runId",
        ),
        (
            {
                "image": IMAGE,
                "workspaces": [
                    {"name": "w", "volumeClaimTemplate": {"spec": {"resources": {"requests": {}}}}}
                ],
            },
            "spec.workspaces[0].volumeClaimTemplate.spec.resources.requests",
            "storage",
        ),
        (
            {"image": IMAGE, "workspaces": [{"name": "w", "emptyDir": {}, "subPath": "a/../.."}]},
            "spec.workspaces[0].subPath",
            "..",
        ),
        (
            {"image": IMAGE, "workspaces": [{"name": "w", "emptyDir": {}, "mountPath": "rel"}]},
            "spec.workspaces[0].mountPath",
            "should match",
        ),
        (
            {
                "image": IMAGE,
                "workspaces": [
                    {"name": "a", "emptyDir": {}, "mountPath": "/workspace/b"},
                    {"name": "b", "emptyDir": {}},
                ],
            },
            "spec.workspaces",
            "distinct mount paths",
        ),
        (
            {"image": IMAGE, "context": {"trace": {"traceparent": "not-a-traceparent"}}},
            "spec.context.trace.traceparent",
            "should match",
        ),
        (
            {
                "image": IMAGE,
                "context": {"trace": {"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"}},
            },
            "spec.context.trace.traceparent",
            "trace-id must not be all zeros",
        ),
        (
            {"image": IMAGE, "context": {"trace": {"traceparent": "ff" + TRACEPARENT[2:]}}},
            "spec.context.trace.traceparent",
            "version ff",
        ),
        (
            {
                "image": IMAGE,
                "context": {
                    "trace": {
                        "traceparent": TRACEPARENT,
                        "tracestate": ",".join(f"k{i}=v" for i in range(33)),
                    }
                },
            },
            "spec.context.trace.tracestate",
            "more than 32",
        ),
        (
            {
                "image": IMAGE,
                "context": {"trace": {"traceparent": TRACEPARENT, "tracestate": "A B"}},
            },
            "spec.context.trace.tracestate",
            "should match",
        ),
        ({"mode": "sandbox", "sandbox": {}}, "spec.sandbox", "needs exactly one of plugin"),
        (
            {"mode": "sandbox", "sandbox": {"plugin": "x", "uses": "command:lint"}},
            "spec.sandbox",
            "needs exactly one of plugin",
        ),
        ({"mode": "sandbox", "sandbox": {"uses": "plugin:eslint"}}, "spec.sandbox.uses", "match"),
        ({"mode": "sandbox", "sandbox": {"uses": "shell"}}, "spec.sandbox.uses", "match"),
        (
            {"mode": "sandbox", "sandbox": {"uses": "builtin:shell"}},
            "spec.script",
            "builtin:shell runs spec.script",
        ),
        (
            {"mode": "sandbox", "sandbox": {"uses": "command:lint"}, "script": "true"},
            "spec.script",
            "unless spec.sandbox.uses is builtin:shell",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and "." in v else None,
)
def test_invalid_spec_is_refused_naming_the_field(
    steps: Steps, spec: dict[str, Any], field: str, words: str
) -> None:
    body = refusal(steps, spec)
    assert field in body, body
    assert words.lower() in body.lower(), body


def test_spec_is_immutable_except_cancel(steps: Steps) -> None:
    steps.create("frozen", {"image": IMAGE, "script": "sleep 1", "cancel": False})
    with pytest.raises(client.ApiException) as refused:
        steps.patch_spec("frozen", {"script": "echo changed"})
    assert refused.value.status == 422
    assert "only spec.cancel may change" in refused.value.body
    with pytest.raises(client.ApiException):
        steps.patch_spec("frozen", {"timeoutSeconds": 5})
    assert steps.patch_spec("frozen", {"cancel": True})["spec"]["cancel"] is True
    with pytest.raises(client.ApiException) as uncancel:
        steps.patch_spec("frozen", {"cancel": False})
    assert "spec.cancel" in uncancel.value.body


def test_workspaces_and_trace_are_immutable_and_valid_ones_are_accepted(steps: Steps) -> None:
    created = steps.create(
        "ws",
        {
            "image": IMAGE,
            "script": "sleep 1",
            "context": {
                "workflow": {"name": "build", "runId": "42", "jobId": "main"},
                "trace": {"traceparent": TRACEPARENT, "tracestate": "a=1, b=2"},
            },
            "workspaces": [
                {"name": "src", "volumeClaimTemplate": TEMPLATE},
                {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}, "subPath": "x/y"},
            ],
        },
    )
    assert created["spec"]["workspaces"][0]["readOnly"] is False
    for change in (
        {"workspaces": [{"name": "src", "emptyDir": {}}]},
        {"context": {"trace": {"traceparent": TRACEPARENT.replace("01", "00", 1)}}},
    ):
        with pytest.raises(client.ApiException) as refused:
            steps.patch_spec("ws", change)
        assert "only spec.cancel may change" in refused.value.body


def test_defaults_are_applied_by_the_api_server(steps: Steps) -> None:
    created = steps.create("defaults", {"image": IMAGE, "script": "true"})
    spec = created["spec"]
    assert spec["mode"] == "local"
    assert spec["terminationGracePeriodSeconds"] == 30


def test_explain_describes_the_context(kubectl: list[str], crds: None) -> None:
    import subprocess

    out = subprocess.run(
        [*kubectl, "explain", "stepruns.spec.context"], capture_output=True, text=True, check=True
    ).stdout
    assert "secrets" in out and "inputs" in out and "context.json" in out


def test_field_selectors_find_steps_of_a_workflow_however_created(steps: Steps) -> None:
    from steprun.client import StepRunClient

    for run_id in ("1", "2"):
        steps.create(  # plain API writes, like kubectl apply: no labels set
            f"wf-{run_id}",
            {
                "image": IMAGE,
                "script": "true",
                "context": {"workflow": {"name": "wf", "runId": run_id}},
            },
        )
    steps.create("other", {"image": IMAGE, "script": "true"})
    listed = steps.custom.list_namespaced_custom_object(
        "steprun.dev",
        "v1alpha1",
        steps.namespace,
        "stepruns",
        field_selector="spec.context.workflow.name=wf,spec.context.workflow.runId=2",
    )
    assert [i["metadata"]["name"] for i in listed["items"]] == ["wf-2"]
    client_view = StepRunClient(steps.api, namespace=steps.namespace)
    assert sorted(sr.name for sr in client_view.list(workflow="wf")) == ["wf-1", "wf-2"]


@pytest.mark.parametrize(
    "uses", ["plugin:eslint/fix", "plugin:eslint/notes/draft", "command:mind:rag-index"]
)
def test_the_workflow_forms_of_uses_are_accepted(steps: Steps, uses: str) -> None:
    body = {
        "apiVersion": "steprun.dev/v1alpha1",
        "kind": "StepRun",
        "metadata": {"name": "valid"},
        "spec": {"mode": "sandbox", "sandbox": {"uses": uses}},
    }
    steps.custom.create_namespaced_custom_object(
        "steprun.dev", "v1alpha1", steps.namespace, "stepruns", body, dry_run="All"
    )
    shell = {**body, "spec": {**body["spec"], "sandbox": {"uses": "builtin:shell"}, "script": "x"}}
    steps.custom.create_namespaced_custom_object(
        "steprun.dev", "v1alpha1", steps.namespace, "stepruns", shell, dry_run="All"
    )


def policy_refusal(steps: Steps, spec: dict[str, Any]) -> str:
    body = {
        "apiVersion": "steprun.dev/v1alpha1",
        "kind": "SandboxPolicy",
        "metadata": {"name": "e2e-invalid-policy"},
        "spec": spec,
    }
    with pytest.raises(client.ApiException) as refused:
        steps.custom.create_cluster_custom_object(
            "steprun.dev", "v1alpha1", "sandboxpolicies", body, dry_run="All"
        )
    assert refused.value.status in (400, 422), refused.value.body
    return str(refused.value.body)


def tool(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": IMAGE, **fields}


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        pytest.param(
            {"plugins": [tool(n, commands=[{"id": "lint"}]) for n in ("a", "b")]},
            "must resolve to exactly one plugin",
            id="command-in-two-plugins",
        ),
        pytest.param(
            {"plugins": [tool("a", commands=[{"id": "lint"}, {"id": "lint"}])]},
            "Duplicate value",
            id="command-twice-in-one-plugin",
        ),
        pytest.param(
            {"plugins": [tool("a", handlers=[{"id": "fix"}, {"id": "fix"}])]},
            "Duplicate value",
            id="handler-twice",
        ),
        pytest.param(
            {"plugins": [tool("a")], "shellPlugin": "sh"},
            "spec.shellPlugin must name one of spec.plugins",
            id="shell-plugin-undeclared",
        ),
        pytest.param(
            {"plugins": [tool("a", handlers=[{"id": "-fix"}])]},
            "spec.plugins[0].handlers[0].id",
            id="handler-id-pattern",
        ),
    ],
)  # fmt: skip
def test_an_ambiguous_or_inconsistent_policy_is_refused(
    steps: Steps, spec: dict[str, Any], words: str
) -> None:
    assert words in policy_refusal(steps, spec)


def test_a_policy_with_handlers_commands_and_a_shell_is_accepted(steps: Steps) -> None:
    spec = {
        "shellPlugin": "a",
        "plugins": [
            tool(
                "a",
                version="1.0.0",
                handlers=[{"id": "fix", "args": ["--fix"], "permissions": ["filesystem.writable"]}],
                commands=[{"id": "lint", "command": ["lint"]}],
            ),
            tool("b", handlers=[{"id": "fix"}], commands=[{"id": "mind:rag-index"}]),
        ],
    }
    body = {
        "apiVersion": "steprun.dev/v1alpha1",
        "kind": "SandboxPolicy",
        "metadata": {"name": "e2e-valid-policy"},
        "spec": spec,
    }
    created = steps.custom.create_cluster_custom_object(
        "steprun.dev", "v1alpha1", "sandboxpolicies", body, dry_run="All"
    )
    assert created["spec"]["plugins"][1]["commands"] == [{"id": "mind:rag-index"}]


def test_explain_documents_the_admission_decision(kubectl: list[str], crds: None) -> None:
    import subprocess

    out = subprocess.run(
        [*kubectl, "explain", "stepruns.status.admitted"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for field in ("handler", "cliCommand", "version", "granted", "timeoutSeconds"):
        assert field in out, out
