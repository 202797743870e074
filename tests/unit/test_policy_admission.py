from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from steprun.api.models import (
    AdmittedSandbox,
    EgressRule,
    LabelSelector,
    Permission,
    Reason,
    ResourceRequirements,
    SandboxPolicy,
    SandboxPolicySpec,
    StepRun,
    StepRunSpec,
)
from steprun.config import OperatorConfig
from steprun.policy.admission import AdmissionResult, Denial, admit, namespace_matches
from steprun.policy.decision import SandboxDecision
from steprun.policy.resolve import policy_problems
from steprun.render.pod import render_pod

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "sandbox"
CONFIG = OperatorConfig(default_timeout_seconds=3600)
NS_LABELS = {"kubernetes.io/metadata.name": "ci", "team": "platform"}


def policy(**spec: Any) -> SandboxPolicy:
    base: dict[str, Any] = {
        "grants": ["secrets.read"],
        "plugins": [
            {"name": "eslint", "image": "registry.example/eslint:9", "command": ["eslint"]},
            {
                "name": "fetcher",
                "image": "registry.example/fetch:1",
                "permissions": ["network.egress"],
            },
        ],
        "maxTimeoutSeconds": 900,
    }
    base.update(spec)
    return SandboxPolicy.from_body(
        {
            "apiVersion": "steprun.dev/v1alpha1",
            "kind": "SandboxPolicy",
            "metadata": {"name": "default"},
            "spec": base,
        }
    )


def steprun(*, sandbox: dict[str, Any] | None = None, **spec: Any) -> StepRun:
    return StepRun.from_body(
        {
            "apiVersion": "steprun.dev/v1alpha1",
            "kind": "StepRun",
            "metadata": {"name": "build-42-lint", "namespace": "ci", "uid": "u1"},
            "spec": {
                "mode": "sandbox",
                "sandbox": {"plugin": "eslint", **(sandbox or {})},
                **spec,
            },
        }
    )


def admitted(result: AdmissionResult) -> SandboxDecision:
    assert result.reason is None, result.message
    assert result.decision is not None
    assert result.admitted
    assert result.denials == ()
    return result.decision


def refused(result: AdmissionResult) -> list[str]:
    assert result.decision is None
    assert not result.admitted
    assert result.reason is not None
    assert result.denials
    return [d.item for d in result.denials]


# ---------------------------------------------------------------- admitted steps


def test_minimal_step_is_admitted_with_plugin_and_policy_settings() -> None:
    pol = policy(
        runtimeClassName="gvisor",
        podLabels={"team": "platform"},
        env={"HTTP_PROXY": "http://proxy:3128"},
    )
    decision = admitted(admit(steprun(args=["src/"]), pol, NS_LABELS, CONFIG))
    assert decision.policy == "default"
    assert decision.plugin == "eslint"
    assert decision.image == "registry.example/eslint:9"
    assert decision.command == ["eslint"]
    assert decision.granted == frozenset()
    assert decision.runtime_class_name == "gvisor"
    assert decision.pod_labels == {"team": "platform"}
    assert decision.env == {"HTTP_PROXY": "http://proxy:3128"}
    assert decision.egress == []


def test_granted_is_what_the_step_needs_not_what_the_policy_grants() -> None:
    pol = policy(grants=["secrets.read", "network.egress", "filesystem.writable"])
    decision = admitted(admit(steprun(), pol, NS_LABELS, CONFIG))
    assert decision.granted == frozenset()
    assert not decision.grants(Permission.SECRETS_READ)
    assert not decision.grants(Permission.NETWORK_EGRESS)
    assert not decision.grants(Permission.FILESYSTEM_WRITABLE)


def test_granted_unites_plugin_and_step_permissions() -> None:
    pol = policy(
        grants=["secrets.read", "network.egress", "filesystem.writable"],
        egress=[{"cidr": "10.0.0.0/8", "ports": [443]}],
    )
    sr = steprun(sandbox={"plugin": "fetcher", "permissions": ["secrets.read"]})
    decision = admitted(admit(sr, pol, NS_LABELS, CONFIG))
    assert decision.granted == frozenset({Permission.NETWORK_EGRESS, Permission.SECRETS_READ})
    assert all(isinstance(p, Permission) for p in decision.granted)
    assert [r.cidr for r in decision.egress] == ["10.0.0.0/8"]
    assert decision.egress[0].ports == [443]


def test_egress_rules_are_recorded_only_when_egress_is_needed() -> None:
    pol = policy(grants=["network.egress"], egress=[{"cidr": "10.0.0.0/8"}])
    assert admitted(admit(steprun(), pol, NS_LABELS, CONFIG)).egress == []


def test_secrets_with_secrets_read_are_admitted() -> None:
    sr = steprun(
        sandbox={"permissions": ["secrets.read"]},
        context={"secrets": [{"name": "TOKEN", "secretKeyRef": {"name": "gh", "key": "t"}}]},
    )
    assert admitted(admit(sr, policy(), NS_LABELS, CONFIG)).grants(Permission.SECRETS_READ)


@pytest.mark.parametrize(
    ("asked", "maximum", "default", "expected"),
    [
        (None, 900, 3600, 900),  # the operator default is capped by the policy
        (None, 900, 600, 600),  # a smaller operator default stays
        (None, None, 3600, 3600),  # no maximum: the operator default
        (900, 900, 3600, 900),  # equal to the maximum is fine
        (30, 900, 3600, 30),
        (5000, None, 3600, 5000),  # no maximum: anything the schema allows
    ],
)
def test_timeout(asked: int | None, maximum: int | None, default: int, expected: int) -> None:
    spec: dict[str, Any] = {"timeoutSeconds": asked} if asked is not None else {}
    sr = steprun(**spec)
    pol = policy(maxTimeoutSeconds=maximum)
    config = OperatorConfig(default_timeout_seconds=default)
    assert admitted(admit(sr, pol, NS_LABELS, config)).timeout_seconds == expected


def test_resources_default_from_the_policy() -> None:
    default = {"limits": {"cpu": "1", "memory": "512Mi"}}
    decision = admitted(admit(steprun(), policy(defaultResources=default), NS_LABELS, CONFIG))
    assert decision.resources == ResourceRequirements.model_validate(default)


@pytest.mark.parametrize(
    ("asked", "defaults", "maximum", "expected"),
    [
        pytest.param(
            {"requests": {"cpu": "250m"}},
            {"limits": {"cpu": "1"}},
            {"cpu": "2"},
            {"requests": {"cpu": "250m"}, "limits": {"cpu": "1"}},
            id="requests-only-keeps-default-limits",
        ),
        pytest.param(
            {},
            {"requests": {"cpu": "50m"}, "limits": {"cpu": "1", "memory": "256Mi"}},
            None,
            {"requests": {"cpu": "50m"}, "limits": {"cpu": "1", "memory": "256Mi"}},
            id="empty-resources-get-the-defaults",
        ),
        pytest.param(
            {"limits": {"cpu": "500m"}},
            {"limits": {"cpu": "1", "memory": "256Mi"}},
            None,
            {"limits": {"cpu": "500m", "memory": "256Mi"}},
            id="merged-per-key",
        ),
        pytest.param(
            None,
            None,
            {"cpu": "2", "memory": "1Gi"},
            {"limits": {"cpu": "2", "memory": "1Gi"}},
            id="every-bounded-resource-gets-a-limit",
        ),
        pytest.param(
            {"requests": {"memory": "512Mi"}},
            {"limits": {"memory": "256Mi"}},
            {"memory": "1Gi"},
            {"requests": {"memory": "512Mi"}, "limits": {"memory": "512Mi"}},
            id="defaulted-limit-raised-to-the-request",
        ),
        pytest.param(
            {"requests": {"memory": "512Mi"}, "limits": {"memory": "600Mi"}},
            {"limits": {"memory": "256Mi"}},
            {"memory": "1Gi"},
            {"requests": {"memory": "512Mi"}, "limits": {"memory": "600Mi"}},
            id="asked-limit-kept",
        ),
    ],
)
def test_resources_are_bounded(
    asked: dict[str, Any] | None,
    defaults: dict[str, Any] | None,
    maximum: dict[str, Any] | None,
    expected: dict[str, Any],
) -> None:
    kwargs: dict[str, Any] = {}
    if defaults is not None:
        kwargs["defaultResources"] = defaults
    if maximum is not None:
        kwargs["maxResources"] = maximum
    sr = steprun(resources=asked) if asked is not None else steprun()
    decision = admitted(admit(sr, policy(**kwargs), NS_LABELS, CONFIG))
    assert decision.resources == ResourceRequirements.model_validate(expected)


def test_no_resources_anywhere() -> None:
    assert admitted(admit(steprun(), policy(), NS_LABELS, CONFIG)).resources is None


@pytest.mark.parametrize(
    "resources",
    [
        {"limits": {"cpu": "2", "memory": "1Gi"}},  # exactly the maxima
        {"requests": {"cpu": "2000m"}, "limits": {"memory": "1024Mi"}},  # same, other units
        {"limits": {"cpu": 1, "memory": "1e9"}},  # below, integer and exponent forms
        {"limits": {"ephemeral-storage": "100Gi"}},  # resources the policy does not bound
    ],
)
def test_resources_within_the_maxima(resources: dict[str, Any]) -> None:
    pol = policy(maxResources={"cpu": "2", "memory": "1Gi"})
    admitted(admit(steprun(resources=resources), pol, NS_LABELS, CONFIG))


def test_decision_survives_status_round_trip() -> None:
    pol = policy(
        grants=["network.egress"],
        egress=[{"cidr": "10.0.0.0/8", "ports": [443]}],
        defaultResources={"limits": {"cpu": "1"}},
        podLabels={"team": "platform"},
    )
    decision = admitted(admit(steprun(sandbox={"plugin": "fetcher"}), pol, NS_LABELS, CONFIG))
    assert SandboxDecision.from_status(decision.to_admitted().to_api()) == decision


def test_the_decision_does_not_share_state_with_the_policy() -> None:
    pol = policy(podLabels={"team": "a"}, defaultResources={"limits": {"cpu": "1"}})
    decision = admitted(admit(steprun(), pol, NS_LABELS, CONFIG))
    assert pol.spec.pod_labels is not None and pol.spec.default_resources is not None
    pol.spec.pod_labels["team"] = "b"
    assert pol.spec.default_resources.limits is not None
    pol.spec.default_resources.limits["cpu"] = "4"
    assert decision.pod_labels == {"team": "a"}
    assert decision.resources == ResourceRequirements(limits={"cpu": "1"})


# ---------------------------------------------------------------- refused steps


def test_missing_policy_is_policy_not_found_naming_it() -> None:
    result = admit(steprun(sandbox={"policy": "strict"}), None, NS_LABELS, CONFIG)
    refused(result)
    assert result.reason == Reason.POLICY_NOT_FOUND
    assert 'SandboxPolicy "strict"' in result.message
    assert "spec.sandbox.policy" in result.message


@pytest.mark.parametrize(
    ("sr_kwargs", "policy_kwargs", "items", "in_message"),
    [
        pytest.param(
            {"sandbox": {"plugin": "prettier"}},
            {},
            ["plugin prettier"],
            ["plugin prettier is not declared", "plugins: eslint, fetcher"],
            id="undeclared-plugin",
        ),
        pytest.param(
            {"sandbox": {"permissions": ["network.egress"]}},
            {},
            ["permission network.egress"],
            [
                "permission network.egress is not granted (grants: secrets.read)",
                "spec.sandbox.permissions",
            ],
            id="step-permission",
        ),
        pytest.param(
            {"sandbox": {"plugin": "fetcher"}},
            {},
            ["permission network.egress"],
            ["plugin fetcher needs it"],
            id="plugin-permission",
        ),
        pytest.param(
            {"sandbox": {"permissions": ["filesystem.writable"]}},
            {"grants": []},
            ["permission filesystem.writable"],
            ["(grants: none)"],
            id="nothing-granted",
        ),
        pytest.param(
            {"context": {"secrets": [{"name": "T", "secretKeyRef": {"name": "s", "key": "k"}}]}},
            {},
            ["context.secrets"],
            ["context.secrets requires permission secrets.read"],
            id="secrets-without-secrets-read",
        ),
        pytest.param(
            {"timeoutSeconds": 2000},
            {},
            ["timeoutSeconds 2000"],
            ["timeoutSeconds 2000 exceeds maxTimeoutSeconds 900"],
            id="timeout",
        ),
        pytest.param(
            {"resources": {"limits": {"memory": "2Gi"}}},
            {"maxResources": {"memory": "1Gi"}},
            ["resources.limits.memory 2Gi"],
            ["resources.limits.memory 2Gi exceeds maxResources memory 1Gi"],
            id="limit",
        ),
        pytest.param(
            {"resources": {"requests": {"cpu": "2001m"}}},
            {"maxResources": {"cpu": "2"}},
            ["resources.requests.cpu 2001m"],
            ["exceeds maxResources cpu 2"],
            id="request",
        ),
        pytest.param(
            {},
            {"defaultResources": {"limits": {"cpu": "4"}}, "maxResources": {"cpu": "2"}},
            ["resources.limits.cpu 4"],
            ["resources.limits.cpu 4 exceeds maxResources cpu 2"],
            id="policy-default-above-its-own-maximum",
        ),
        pytest.param(
            {"resources": {"limits": {"cpu": "lots"}}},
            {"maxResources": {"cpu": "2"}},
            ["resources.limits.cpu"],
            ["'lots' is not a Kubernetes quantity"],
            id="garbage-quantity",
        ),
        pytest.param(
            {"resources": {"limits": {"cpu": "1"}}},
            {"maxResources": {"cpu": "two"}},
            ["maxResources.cpu"],
            ["maxResources.cpu is invalid in the policy"],
            id="garbage-maximum",
        ),
        pytest.param(
            {"sandbox": {"permissions": ["network.egress"]}},
            {
                "grants": ["network.egress"],
                "egress": [{"cidr": "10.0.0.0/33"}, {"cidr": "10.1.2.3"}],
            },
            ["egress 10.0.0.0/33", "egress 10.1.2.3"],
            ["is not a valid CIDR in the policy"],
            id="invalid-egress-cidr",
        ),
        pytest.param(
            {},
            {"namespaceSelector": {"matchLabels": {"team": "security"}}},
            ["namespace ci"],
            ["namespace ci does not match the policy's namespaceSelector"],
            id="namespace",
        ),
        pytest.param(
            {},
            {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In"}]}},
            ["namespace ci"],
            ["namespaceSelector is invalid"],
            id="invalid-selector",
        ),
    ],
)
def test_each_rule_denies(
    sr_kwargs: dict[str, Any],
    policy_kwargs: dict[str, Any],
    items: list[str],
    in_message: list[str],
) -> None:
    result = admit(steprun(**sr_kwargs), policy(**policy_kwargs), NS_LABELS, CONFIG)
    assert refused(result) == items
    assert result.reason == Reason.PERMISSION_DENIED
    assert result.message.startswith('SandboxPolicy "default" denies this step: ')
    for text in in_message:
        assert text in result.message


def test_egress_rules_are_not_checked_when_egress_is_not_needed() -> None:
    pol = policy(egress=[{"cidr": "not-a-cidr"}])
    admitted(admit(steprun(), pol, NS_LABELS, CONFIG))


def test_every_denial_is_collected_in_one_message() -> None:
    sr = steprun(
        sandbox={"plugin": "fetcher", "permissions": ["filesystem.writable"]},
        timeoutSeconds=2000,
        resources={"requests": {"cpu": "3"}, "limits": {"cpu": "4", "memory": "2Gi"}},
        context={"secrets": [{"name": "T", "secretKeyRef": {"name": "s", "key": "k"}}]},
    )
    pol = policy(
        grants=[],
        namespaceSelector={"matchLabels": {"team": "security"}},
        maxResources={"cpu": "2", "memory": "1Gi"},
    )
    result = admit(sr, pol, NS_LABELS, CONFIG)
    assert refused(result) == [
        "namespace ci",
        "permission filesystem.writable",
        "permission network.egress",
        "context.secrets",
        "timeoutSeconds 2000",
        "resources.requests.cpu 3",
        "resources.limits.cpu 4",
        "resources.limits.memory 2Gi",
    ]
    assert result.reason == Reason.PERMISSION_DENIED
    assert result.message == 'SandboxPolicy "default" denies this step: ' + "; ".join(
        str(d) for d in result.denials
    )
    for denial in result.denials:
        assert denial.item in result.message


def test_message_reads_like_the_api_example() -> None:
    sr = steprun(sandbox={"permissions": ["network.egress"]}, timeoutSeconds=2000)
    message = admit(sr, policy(), NS_LABELS, CONFIG).message
    assert message.startswith(
        'SandboxPolicy "default" denies this step: permission network.egress is not granted '
        "(grants: secrets.read)"
    )
    assert message.endswith("; timeoutSeconds 2000 exceeds maxTimeoutSeconds 900: lower it")


def test_undeclared_plugin_still_reports_the_step_permissions() -> None:
    sr = steprun(sandbox={"plugin": "nope", "permissions": ["network.egress"]})
    assert refused(admit(sr, policy(), NS_LABELS, CONFIG)) == [
        "plugin nope",
        "permission network.egress",
    ]


def test_sandbox_block_missing_is_invalid_spec() -> None:
    sr = StepRun.from_body(
        {"metadata": {"name": "x", "namespace": "ci"}, "spec": {"mode": "sandbox"}}
    )
    result = admit(sr, policy(), NS_LABELS, CONFIG)
    assert refused(result) == ["spec.sandbox"]
    assert result.reason == Reason.INVALID_SPEC


def test_local_steps_are_not_admitted_here() -> None:
    sr = StepRun.from_body(
        {"metadata": {"name": "x", "namespace": "ci"}, "spec": {"image": "busybox"}}
    )
    with pytest.raises(ValueError, match="not a sandbox step"):
        admit(sr, policy(), NS_LABELS, CONFIG)


def test_denial_renders_item_then_detail() -> None:
    assert str(Denial("permission x", "is not granted")) == "permission x is not granted"


# ---------------------------------------------------------------- handlers and CLI commands


def tool_policy(**spec: Any) -> SandboxPolicy:
    """One plugin with a handler and a command that need different permissions."""
    tool = {
        "name": "tool",
        "image": "registry.example/tool:2",
        "command": ["tool"],
        "version": "2.3.0",
        "permissions": ["secrets.read"],
        "handlers": [
            {"id": "fix", "args": ["fix", "--write"], "permissions": ["filesystem.writable"]},
            {"id": "publish", "permissions": ["network.egress"]},
        ],
        "commands": [{"id": "lint", "command": ["tool", "lint"]}],
    }
    shell = {"name": "sh", "image": "registry.example/busybox:1", "permissions": []}
    return policy(
        **{
            "grants": ["secrets.read", "filesystem.writable"],
            "plugins": [tool, shell],
            **spec,
        }
    )


def uses_step(uses: str, **spec: Any) -> StepRun:
    permissions = spec.pop("permissions", [])
    return steprun(sandbox={"plugin": None, "uses": uses, "permissions": permissions}, **spec)


def test_a_handler_is_admitted_with_its_command_args_version_and_permissions() -> None:
    decision = admitted(admit(uses_step("plugin:tool/fix"), tool_policy(), NS_LABELS, CONFIG))
    assert decision.uses == "plugin:tool/fix"
    assert (decision.plugin, decision.version, decision.handler) == ("tool", "2.3.0", "fix")
    assert decision.cli_command is None
    assert decision.image == "registry.example/tool:2"
    assert decision.command == ["tool"]
    assert decision.args == ["fix", "--write"]
    assert decision.granted == frozenset({Permission.SECRETS_READ, Permission.FILESYSTEM_WRITABLE})


def test_a_command_of_the_same_plugin_holds_only_its_own_permissions() -> None:
    decision = admitted(admit(uses_step("command:lint"), tool_policy(), NS_LABELS, CONFIG))
    assert (decision.plugin, decision.cli_command, decision.handler) == ("tool", "lint", None)
    assert decision.command == ["tool", "lint"]
    assert decision.args == []
    assert decision.adapts_inputs
    assert decision.granted == frozenset({Permission.SECRETS_READ})
    assert not decision.grants(Permission.FILESYSTEM_WRITABLE)


def test_builtin_shell_runs_in_the_designated_plugin() -> None:
    sr = uses_step("builtin:shell", script="echo hi")
    decision = admitted(admit(sr, tool_policy(shellPlugin="sh"), NS_LABELS, CONFIG))
    assert decision.runs_script
    assert (decision.plugin, decision.image, decision.command) == (
        "sh",
        "registry.example/busybox:1",
        None,
    )
    refusal = admit(sr, tool_policy(), NS_LABELS, CONFIG)
    assert refused(refusal) == ["builtin:shell"]
    assert "names no shellPlugin" in refusal.message


def test_the_admission_message_names_the_entry_point() -> None:
    result = admit(uses_step("plugin:tool/fix"), tool_policy(), NS_LABELS, CONFIG)
    assert result.message == (
        'admitted by SandboxPolicy "default" (plugin tool, handler fix, permissions: '
        "filesystem.writable, secrets.read)"
    )


@pytest.mark.parametrize(
    ("uses", "item", "words"),
    [
        pytest.param(
            "plugin:tool/format",
            "Workflow handler not found: format in plugin tool",
            "(handlers of tool: fix, publish)",
            id="handler",
        ),
        pytest.param(
            "plugin:rubocop/fix", "Plugin not found: rubocop", "(plugins: tool, sh)", id="plugin"
        ),
        pytest.param(
            "command:format",
            "CLI command not found: format",
            "(commands: lint (plugin tool))",
            id="command",
        ),
    ],
)
def test_an_unknown_entry_point_is_rejected_naming_what_exists(
    uses: str, item: str, words: str
) -> None:
    result = admit(uses_step(uses), tool_policy(), NS_LABELS, CONFIG)
    assert refused(result) == [item]
    assert result.reason == Reason.PERMISSION_DENIED
    assert result.message == f'SandboxPolicy "default" denies this step: {item} {words}'


def test_a_denied_handler_lists_every_missing_permission_and_who_needs_it() -> None:
    sr = uses_step("plugin:tool/publish", permissions=["network.egress", "filesystem.writable"])
    result = admit(sr, tool_policy(grants=["secrets.read"]), NS_LABELS, CONFIG)
    assert refused(result) == ["permission filesystem.writable", "permission network.egress"]
    writable, egress = (str(d) for d in result.denials)
    assert "remove it from spec.sandbox.permissions" in writable
    assert egress == (
        "permission network.egress is not granted (grants: secrets.read): handler publish of "
        "plugin tool needs it, so ask a cluster admin to grant it or use another handler "
        "(spec.sandbox.permissions asks for it too)"
    )


def test_permissions_needed_by_plugin_and_entry_name_both() -> None:
    result = admit(uses_step("plugin:tool/fix"), tool_policy(grants=[]), NS_LABELS, CONFIG)
    assert refused(result) == ["permission filesystem.writable", "permission secrets.read"]
    assert "handler fix of plugin tool needs it" in result.message
    assert "plugin tool needs it, so ask a cluster admin to grant it or use another plugin" in (
        result.message
    )


def test_a_policy_declaring_a_command_twice_admits_no_step() -> None:
    pol = tool_policy()
    twin = pol.spec.plugins[0].model_copy(update={"name": "tool2"})
    pol.spec.plugins.append(twin)
    result = admit(uses_step("plugin:tool/fix"), pol, NS_LABELS, CONFIG)
    assert refused(result) == ["the policy"]
    assert "command lint is declared by plugins tool and tool2" in result.message
    command = admit(uses_step("command:lint"), pol, NS_LABELS, CONFIG)
    assert refused(command) == ["CLI command lint", "the policy"]
    assert "is ambiguous" in command.message


def test_plugin_and_uses_together_are_an_invalid_spec() -> None:
    sr = steprun(sandbox={"uses": "command:lint"})
    result = admit(sr, tool_policy(), NS_LABELS, CONFIG)
    assert refused(result) == ["spec.sandbox"]
    assert result.reason == Reason.INVALID_SPEC
    assert "exactly one of plugin and uses" in result.message


def test_the_frozen_decision_round_trips_through_status() -> None:
    decision = admitted(admit(uses_step("plugin:tool/fix"), tool_policy(), NS_LABELS, CONFIG))
    stored = decision.to_admitted().to_api()
    assert stored["handler"] == "fix" and stored["timeoutSeconds"] == 900
    assert stored["granted"] == ["filesystem.writable", "secrets.read"]
    assert SandboxDecision.from_status(stored) == decision
    status = StepRun.from_body(
        {**uses_step("plugin:tool/fix").model_dump(by_alias=True), "status": {"admitted": stored}}
    ).status
    assert status.admitted is not None
    assert SandboxDecision.from_status(status.admitted) == decision


def test_a_decision_stored_by_an_older_operator_is_still_read() -> None:
    """Before status.admitted was typed the operator stored a snake_case dict."""
    legacy = {
        "policy": "default",
        "plugin": "eslint",
        "image": "registry.example/eslint:9",
        "command": ["eslint"],
        "granted": ["network.egress"],
        "timeout_seconds": 600,
        "resources": {"limits": {"cpu": "1"}},
        "runtime_class_name": "gvisor",
        "pod_labels": {"team": "a"},
        "egress": [{"cidr": "10.0.0.0/8", "ports": [443]}],
        "env": {},
    }
    decision = SandboxDecision.from_status(legacy)
    assert decision.timeout_seconds == 600
    assert decision.runtime_class_name == "gvisor"
    assert decision.pod_labels == {"team": "a"}
    assert decision.granted == frozenset({Permission.NETWORK_EGRESS})
    assert decision.resources == ResourceRequirements(limits={"cpu": "1"})
    assert (decision.uses, decision.handler, decision.args) == (None, None, [])
    body = steprun().model_dump(by_alias=True)
    stored = StepRun.from_body({**body, "status": {"admitted": legacy}}).status.admitted
    assert stored is not None
    assert SandboxDecision.from_status(stored) == decision


# ---------------------------------------------------------------- namespace selectors


def selector(**raw: Any) -> LabelSelector:
    return LabelSelector.model_validate(raw)


LABELS = {"env": "prod", "team": "platform", "tier": "1"}


@pytest.mark.parametrize(
    ("raw", "matches"),
    [
        ({}, True),
        ({"matchLabels": {}, "matchExpressions": []}, True),
        ({"matchLabels": {"env": "prod"}}, True),
        ({"matchLabels": {"env": "prod", "team": "platform"}}, True),
        ({"matchLabels": {"env": "dev"}}, False),
        ({"matchLabels": {"missing": "x"}}, False),
        ({"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}]}, True),
        ({"matchExpressions": [{"key": "env", "operator": "In", "values": ["dev"]}]}, False),
        ({"matchExpressions": [{"key": "nope", "operator": "In", "values": ["x"]}]}, False),
        ({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}]}, True),
        ({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]}, False),
        ({"matchExpressions": [{"key": "nope", "operator": "NotIn", "values": ["x"]}]}, True),
        ({"matchExpressions": [{"key": "team", "operator": "Exists"}]}, True),
        ({"matchExpressions": [{"key": "nope", "operator": "Exists"}]}, False),
        ({"matchExpressions": [{"key": "nope", "operator": "DoesNotExist"}]}, True),
        ({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}, False),
        (
            {
                "matchLabels": {"env": "prod"},
                "matchExpressions": [
                    {"key": "team", "operator": "Exists"},
                    {"key": "tier", "operator": "In", "values": ["1", "2"]},
                ],
            },
            True,
        ),
        (
            {
                "matchLabels": {"env": "prod"},
                "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["1"]}],
            },
            False,
        ),
    ],
)
def test_namespace_matches(raw: dict[str, Any], matches: bool) -> None:
    assert namespace_matches(selector(**raw), LABELS) is matches


@pytest.mark.parametrize(
    "requirement",
    [
        {"key": "env", "operator": "In"},
        {"key": "env", "operator": "NotIn", "values": []},
        {"key": "env", "operator": "Exists", "values": ["x"]},
        {"key": "env", "operator": "DoesNotExist", "values": ["x"]},
    ],
)
def test_invalid_requirements_raise(requirement: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="env"):
        namespace_matches(selector(matchExpressions=[requirement]), LABELS)


def test_empty_selector_matches_a_namespace_without_labels() -> None:
    assert namespace_matches(LabelSelector(), {})


# ---------------------------------------------------------------- the shipped examples


def load_example(name: str) -> dict[str, Any]:
    docs = list(yaml.safe_load_all((EXAMPLES / name).read_text()))
    assert len(docs) == 1
    doc = docs[0]
    assert isinstance(doc, dict)
    return doc


def example_steprun(name: str) -> StepRun:
    body = load_example(name)
    assert body["apiVersion"] == "steprun.dev/v1alpha1" and body["kind"] == "StepRun"
    StepRunSpec.model_validate(body["spec"])
    body["metadata"].setdefault("namespace", "default")
    return StepRun.from_body(body)


def example_policy() -> SandboxPolicy:
    body = load_example("policy-default.yaml")
    assert body["apiVersion"] == "steprun.dev/v1alpha1" and body["kind"] == "SandboxPolicy"
    SandboxPolicySpec.model_validate(body["spec"])
    return SandboxPolicy.from_body(body)


def test_every_example_is_covered() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == [
        "command.yaml",
        "denied.yaml",
        "egress.yaml",
        "handler-not-found.yaml",
        "handler.yaml",
        "plugin-runs.yaml",
        "policy-default.yaml",
        "shell.yaml",
    ]


def test_example_policy_declares_the_documented_plugins() -> None:
    pol = example_policy()
    assert pol.metadata.name == "default"
    assert {p.name: p.image for p in pol.spec.plugins} == {
        "echo-plugin": "steprun.local/step:1",
        "lint": "steprun.local/step:1",
        "toolbox": "steprun.local/step:1",
    }
    assert pol.spec.shell_plugin == "echo-plugin"
    assert policy_problems(pol.spec) == []
    assert sorted(pol.spec.grants) == ["network.egress", "secrets.read"]


def test_example_plugin_run_is_admitted() -> None:
    decision = admitted(admit(example_steprun("plugin-runs.yaml"), example_policy(), {}, CONFIG))
    assert decision.command == ["/bin/sh", "-c"]
    assert decision.granted == frozenset()
    assert decision.timeout_seconds == 120
    assert decision.resources is not None  # the policy's defaultResources


def test_example_denied_is_refused_for_filesystem_writable() -> None:
    result = admit(example_steprun("denied.yaml"), example_policy(), {}, CONFIG)
    assert refused(result) == ["permission filesystem.writable"]
    assert result.reason == Reason.PERMISSION_DENIED
    assert 'SandboxPolicy "default"' in result.message


def test_example_egress_is_admitted_with_the_policy_rules() -> None:
    decision = admitted(admit(example_steprun("egress.yaml"), example_policy(), {}, CONFIG))
    assert decision.grants(Permission.NETWORK_EGRESS)
    assert [(r.cidr, r.ports) for r in decision.egress] == [("10.96.0.0/12", [443])]


# ---------------------------------------------------------------- workspaces

CLAIM = {"name": "cache", "persistentVolumeClaim": {"claimName": "ci-cache"}}
SCRATCH = {"name": "scratch", "emptyDir": {}}


def test_workspaces_need_the_workspaces_mount_permission() -> None:
    result = admit(
        steprun(workspaces=[SCRATCH]), policy(grants=["workspaces.mount"]), NS_LABELS, CONFIG
    )
    assert refused(result) == ["spec.workspaces"]
    assert "workspaces.mount" in result.message


def test_workspaces_mount_must_be_granted() -> None:
    result = admit(
        steprun(workspaces=[SCRATCH], sandbox={"permissions": ["workspaces.mount"]}),
        policy(),
        NS_LABELS,
        CONFIG,
    )
    assert refused(result) == ["permission workspaces.mount"]


def test_scratch_workspace_is_admitted_with_the_grant() -> None:
    decision = admitted(
        admit(
            steprun(workspaces=[SCRATCH], sandbox={"permissions": ["workspaces.mount"]}),
            policy(grants=["workspaces.mount"]),
            NS_LABELS,
            CONFIG,
        )
    )
    assert decision.grants(Permission.WORKSPACES_MOUNT) and not decision.grants(
        Permission.FILESYSTEM_WRITABLE
    )


def test_existing_claims_must_be_named_by_the_policy() -> None:
    step = steprun(workspaces=[CLAIM], sandbox={"permissions": ["workspaces.mount"]})
    denied = admit(
        step,
        policy(grants=["workspaces.mount"], workspaceClaims=["other"]),
        NS_LABELS,
        CONFIG,
    )
    assert refused(denied) == ["workspace cache (claim ci-cache)"]
    assert "workspaceClaims (other)" in denied.message
    decision = admitted(
        admit(
            step,
            policy(
                grants=["workspaces.mount", "filesystem.writable"], workspaceClaims=["ci-cache"]
            ),
            NS_LABELS,
            CONFIG,
        )
    )
    # Writable only when the step also asks for filesystem.writable.
    assert not decision.grants(Permission.FILESYSTEM_WRITABLE)


def test_example_handler_is_admitted_with_the_handler_args() -> None:
    decision = admitted(admit(example_steprun("handler.yaml"), example_policy(), {}, CONFIG))
    assert (decision.plugin, decision.version, decision.handler) == ("toolbox", "1.4.2", "greet")
    assert decision.command == ["/bin/sh", "-c"] and decision.args[-1] == "greet"
    assert decision.granted == frozenset()


def test_example_command_is_admitted_and_renders_its_flags() -> None:
    sr = example_steprun("command.yaml")
    decision = admitted(admit(sr, example_policy(), {}, CONFIG))
    assert (decision.plugin, decision.cli_command) == ("toolbox", "report")
    (container,) = render_pod(sr, 1, CONFIG, decision)["spec"]["containers"]
    assert container["args"] == ["--ext=js", "--ext=ts", "--fix", "--format=json", "src"]
    assert container["workingDir"] == "/tmp/work"
    # The documented outcome is the command line the example's command reports.
    assert '"argv":"' + " ".join(container["args"]) + '"' in (EXAMPLES / "command.yaml").read_text()


def test_example_shell_runs_in_the_policy_shell_plugin() -> None:
    decision = admitted(admit(example_steprun("shell.yaml"), example_policy(), {}, CONFIG))
    assert decision.runs_script and decision.plugin == "echo-plugin"


def test_example_handler_not_found_names_the_declared_handlers() -> None:
    result = admit(example_steprun("handler-not-found.yaml"), example_policy(), {}, CONFIG)
    assert refused(result) == ["Workflow handler not found: deploy in plugin toolbox"]
    assert result.message in (EXAMPLES / "handler-not-found.yaml").read_text().replace("\n#  ", "")


def test_every_decision_field_is_frozen_in_status() -> None:
    """A field added to the decision must reach status.admitted and come back, or a retry
    after an operator restart would silently run without it."""
    values: dict[str, Any] = {
        "policy": "default",
        "plugin": "tool",
        "image": "registry.example/tool:2",
        "command": ["tool", "lint"],
        "granted": frozenset({Permission.SECRETS_READ}),
        "timeout_seconds": 60,
        "resources": ResourceRequirements(limits={"cpu": "1"}),
        "runtime_class_name": "gvisor",
        "pod_labels": {"team": "a"},
        "egress": [EgressRule(cidr="10.0.0.0/8", ports=[443])],
        "env": {"A": "b"},
        "uses": "command:lint",
        "version": "2.3.0",
        "handler": "fix",
        "cli_command": "lint",
        "args": ["--x"],
        "termination_grace_period_seconds": 20,
        "empty_dir_size_limit": "1Gi",
        "allowed_env": ["ESLINT_*"],
        "node_selector": {"pool": "sandbox"},
        "tolerations": [{"key": "sandbox", "operator": "Exists"}],
    }
    names = {f.name for f in dataclasses.fields(SandboxDecision)}
    assert names == set(values), "give the new field a value here"
    assert names == set(AdmittedSandbox.model_fields), "add the field to AdmittedSandbox"
    decision = SandboxDecision(**values)
    stored = decision.to_admitted().to_api()
    assert len(stored) == len(values)
    assert SandboxDecision.from_status(stored) == decision
