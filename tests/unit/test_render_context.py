from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import pytest

from steprun.api.models import Permission, StepRun
from steprun.config import OperatorConfig
from steprun.policy.decision import SandboxDecision
from steprun.render.context import (
    context_document,
    env_secret_projections,
    file_secret_projections,
    merged_env,
    needs_secret,
    render_configmap,
    render_secret,
    reserved_env,
    resolve_secret_values,
    secret_sources,
)

TOKEN_VALUE = "ghp_s3cr3t-token-value"
KEY_VALUE = "-----BEGIN OPENSSH PRIVATE KEY-----abc"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


SECRETS = [
    {"name": "TOKEN", "secretKeyRef": {"name": "gh", "key": "token"}},
    {"name": "id_rsa", "secretKeyRef": {"name": "ssh", "key": "key"}, "as": "file"},
]


def steprun(**spec: Any) -> StepRun:
    return StepRun.from_body(
        {
            "apiVersion": "steprun.dev/v1alpha1",
            "kind": "StepRun",
            "metadata": {"name": "build-42-lint", "namespace": "ci", "uid": "uid-1"},
            "spec": {"image": "busybox:1.36", **spec},
        }
    )


def decision(
    *, grants: tuple[Permission, ...] = (), env: dict[str, str] | None = None
) -> SandboxDecision:
    return SandboxDecision(
        policy="default",
        plugin="eslint",
        image="registry.example/plugins/eslint:9",
        command=["eslint"],
        granted=frozenset(grants),
        timeout_seconds=900,
        resources=None,
        env=env or {},
    )


def config(**kwargs: Any) -> OperatorConfig:
    return OperatorConfig(**kwargs)


# Each row sets the same variable in several layers; the highest layer must win.
@pytest.mark.parametrize(
    ("default_env", "policy_env", "context_env", "step_env", "expected"),
    [
        ({"V": "operator"}, None, {}, {}, "operator"),
        ({"V": "operator"}, {"V": "policy"}, {}, {}, "policy"),
        ({"V": "operator"}, {"V": "policy"}, {"V": "context"}, {}, "context"),
        ({"V": "operator"}, {"V": "policy"}, {"V": "context"}, {"V": "step"}, "step"),
        ({}, None, {"V": "context"}, {"V": "step"}, "step"),
        ({"V": "operator"}, None, {"V": "context"}, {}, "context"),
        ({"V": "operator"}, None, {}, {"V": "step"}, "step"),
    ],
)
def test_env_precedence(
    default_env: dict[str, str],
    policy_env: dict[str, str] | None,
    context_env: dict[str, str],
    step_env: dict[str, str],
    expected: str,
) -> None:
    sr = steprun(env=step_env, context={"env": context_env})
    chosen = decision(env=policy_env) if policy_env is not None else None
    assert merged_env(sr, config(default_env=default_env), chosen)["V"] == expected


def test_merged_env_unions_layers_and_sorts_keys() -> None:
    sr = steprun(env={"Z": "1"}, context={"env": {"CI": "true"}})
    env = merged_env(sr, config(default_env={"B": "x"}), decision(env={"A": "p"}))
    assert env == {"A": "p", "B": "x", "CI": "true", "Z": "1"}
    assert list(env) == sorted(env)


@pytest.mark.parametrize("layer", ["operator", "policy", "context", "step"])
def test_reserved_names_are_dropped_from_every_layer(layer: str) -> None:
    reserved = {"STEPRUN_NAME": "spoofed", "STEPRUN_ANYTHING": "x", "KEEP": "1"}
    sr = steprun(
        env=reserved if layer == "step" else {},
        context={"env": reserved if layer == "context" else {}},
    )
    chosen = decision(env=reserved) if layer == "policy" else None
    cfg = config(default_env=reserved if layer == "operator" else {})
    assert merged_env(sr, cfg, chosen) == {"KEEP": "1"}


def test_context_json_is_not_an_env_key() -> None:
    sr = steprun(env={"context.json": "clash"})
    assert "context.json" not in merged_env(sr, config())
    data = render_configmap(sr, config())["data"]
    assert json.loads(data["context.json"])["step"]["name"] == "build-42-lint"


def test_reserved_env_per_attempt() -> None:
    cfg = config(
        context_mount_path="/ctx/",
        secrets_mount_path="/sec",
        output_file="/out/result.json",
    )
    assert reserved_env(steprun(), 3, cfg) == {
        "STEPRUN_NAME": "build-42-lint",
        "STEPRUN_NAMESPACE": "ci",
        "STEPRUN_ATTEMPT": "3",
        "STEPRUN_CONTEXT_FILE": "/ctx/context.json",
        "STEPRUN_SECRETS_DIR": "/sec",
        "STEPRUN_OUTPUT_FILE": "/out/result.json",
    }


def test_context_document() -> None:
    sr = steprun(
        context={
            "workflow": {"name": "build", "runId": "42", "stepId": "lint"},
            "inputs": {"branch": "main", "files": [1, 2]},
            "secrets": SECRETS,
        }
    )
    assert context_document(sr) == {
        "workflow": {"name": "build", "runId": "42", "stepId": "lint"},
        "inputs": {"branch": "main", "files": [1, 2]},
        "step": {"name": "build-42-lint", "namespace": "ci", "uid": "uid-1"},
    }


def test_context_document_without_workflow() -> None:
    assert context_document(steprun())["workflow"] == {}


def test_render_configmap() -> None:
    sr = steprun(
        env={"LOG_LEVEL": "debug"},
        context={"workflow": {"name": "build"}, "env": {"CI": "true"}, "inputs": {"b": 1, "a": 2}},
    )
    cm = render_configmap(sr, config(default_env={"TZ": "UTC"}))
    assert cm["apiVersion"] == "v1"
    assert cm["kind"] == "ConfigMap"
    assert cm["immutable"] is True
    assert cm["metadata"]["name"] == "build-42-lint-context"
    assert cm["metadata"]["namespace"] == "ci"
    assert cm["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "steprun",
        "steprun.dev/name": "build-42-lint",
        "steprun.dev/uid": "uid-1",
        "steprun.dev/workflow": "build",
        "steprun.dev/component": "context",
    }
    assert cm["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert cm["data"] == {
        "CI": "true",
        "LOG_LEVEL": "debug",
        "TZ": "UTC",
        "context.json": (
            '{"inputs":{"a":2,"b":1},"step":{"name":"build-42-lint","namespace":"ci",'
            '"uid":"uid-1"},"workflow":{"name":"build"}}'
        ),
    }


def test_render_configmap_keeps_unicode_readable() -> None:
    cm = render_configmap(steprun(context={"inputs": {"msg": "grüße"}}), config())
    assert "grüße" in cm["data"]["context.json"]


def test_secret_values_never_reach_the_configmap() -> None:
    sr = steprun(context={"secrets": SECRETS, "env": {"CI": "true"}})
    fetched = {"gh": {"token": b64(TOKEN_VALUE)}, "ssh": {"key": b64(KEY_VALUE)}}
    data, problems = resolve_secret_values(sr, fetched)
    assert problems == []
    dumped = json.dumps(render_configmap(sr, config()))
    for value in (TOKEN_VALUE, KEY_VALUE, *data.values()):
        assert value not in dumped


def test_secret_sources_are_distinct_and_ordered() -> None:
    sr = steprun(
        context={
            "secrets": [
                {"name": "A", "secretKeyRef": {"name": "gh", "key": "token"}},
                {"name": "B", "secretKeyRef": {"name": "ssh", "key": "key"}},
                {"name": "C", "secretKeyRef": {"name": "gh", "key": "token"}, "as": "file"},
                {"name": "D", "secretKeyRef": {"name": "gh", "key": "user"}},
            ]
        }
    )
    assert secret_sources(sr) == [("gh", "token"), ("ssh", "key"), ("gh", "user")]


@pytest.mark.parametrize(
    ("fetched", "expected_data", "expected_problems"),
    [
        (
            {"gh": {"token": b64(TOKEN_VALUE)}, "ssh": {"key": b64(KEY_VALUE)}},
            {"TOKEN": b64(TOKEN_VALUE), "id_rsa": b64(KEY_VALUE)},
            [],
        ),
        (
            {"gh": None, "ssh": {"key": b64(KEY_VALUE)}},
            {"id_rsa": b64(KEY_VALUE)},
            ['secret "gh" not found'],
        ),
        (
            {"ssh": {"key": b64(KEY_VALUE)}},  # not fetched at all
            {"id_rsa": b64(KEY_VALUE)},
            ['secret "gh" not found'],
        ),
        (
            {"gh": {"user": b64("octocat")}, "ssh": {}},
            {},
            ['secret "gh" has no key "token"', 'secret "ssh" has no key "key"'],
        ),
        ({}, {}, ['secret "gh" not found', 'secret "ssh" not found']),
    ],
)
def test_resolve_secret_values(
    fetched: Mapping[str, Mapping[str, str] | None],
    expected_data: dict[str, str],
    expected_problems: list[str],
) -> None:
    sr = steprun(context={"secrets": SECRETS})
    data, problems = resolve_secret_values(sr, fetched)
    assert data == expected_data
    assert problems == expected_problems


def test_resolve_secret_values_reports_each_problem_once_and_no_values() -> None:
    sr = steprun(
        context={
            "secrets": [
                {"name": "A", "secretKeyRef": {"name": "gh", "key": "token"}},
                {"name": "B", "secretKeyRef": {"name": "gh", "key": "token"}, "as": "file"},
            ]
        }
    )
    _, problems = resolve_secret_values(sr, {"gh": {"other": b64(TOKEN_VALUE)}})
    assert problems == ['secret "gh" has no key "token"']
    assert not any(TOKEN_VALUE in p or b64(TOKEN_VALUE) in p for p in problems)


def test_render_secret() -> None:
    sr = steprun(context={"workflow": {"runId": "42"}, "secrets": SECRETS})
    secret = render_secret(sr, {"id_rsa": b64(KEY_VALUE), "TOKEN": b64(TOKEN_VALUE)})
    assert secret == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "build-42-lint-context",
            "namespace": "ci",
            "labels": {
                "app.kubernetes.io/managed-by": "steprun",
                "steprun.dev/name": "build-42-lint",
                "steprun.dev/uid": "uid-1",
                "steprun.dev/run-id": "42",
                "steprun.dev/component": "context",
            },
            "ownerReferences": [
                {
                    "apiVersion": "steprun.dev/v1alpha1",
                    "kind": "StepRun",
                    "name": "build-42-lint",
                    "uid": "uid-1",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "immutable": True,
        "type": "Opaque",
        "data": {"TOKEN": b64(TOKEN_VALUE), "id_rsa": b64(KEY_VALUE)},
    }


@pytest.mark.parametrize(
    ("secrets", "chosen", "expected"),
    [
        ([], None, False),
        (SECRETS, None, True),
        (SECRETS, decision(), False),
        (SECRETS, decision(grants=(Permission.NETWORK_EGRESS,)), False),
        (SECRETS, decision(grants=(Permission.SECRETS_READ,)), True),
        ([], decision(grants=(Permission.SECRETS_READ,)), False),
    ],
)
def test_needs_secret(
    secrets: list[dict[str, Any]], chosen: SandboxDecision | None, expected: bool
) -> None:
    assert needs_secret(steprun(context={"secrets": secrets}), chosen) is expected


def test_projections_split_by_delivery_and_respect_the_decision() -> None:
    sr = steprun(
        context={
            "secrets": [
                *SECRETS,
                {"name": "STEPRUN_NAME", "secretKeyRef": {"name": "gh", "key": "token"}},
            ]
        }
    )
    assert [p.name for p in env_secret_projections(sr)] == ["TOKEN"]
    assert [p.name for p in file_secret_projections(sr)] == ["id_rsa"]
    granted = decision(grants=(Permission.SECRETS_READ,))
    assert [p.name for p in env_secret_projections(sr, granted)] == ["TOKEN"]
    assert env_secret_projections(sr, decision()) == []
    assert file_secret_projections(sr, decision()) == []


def test_inputs_within_256_kib_are_fine_and_beyond_are_a_named_problem() -> None:
    from steprun.api.models import MAX_INPUTS_BYTES, StepRun
    from steprun.render.context import inputs_problem

    def step(blob: str) -> StepRun:
        return StepRun.model_validate(
            {
                "metadata": {"name": "big", "namespace": "ci", "uid": "u"},
                "spec": {"image": "busybox", "context": {"inputs": {"blob": blob}}},
            }
        )

    overhead = len('{"blob":""}')
    assert inputs_problem(step("x" * (MAX_INPUTS_BYTES - overhead))) is None
    problem = inputs_problem(step("x" * (MAX_INPUTS_BYTES - overhead + 1)))
    assert problem is not None and "spec.context.inputs" in problem and "262145" in problem
