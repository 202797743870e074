from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from steprun.api.models import (
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
    assert not decision.secrets_allowed
    assert not decision.egress_allowed
    assert not decision.writable_root


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
    assert admitted(admit(sr, policy(), NS_LABELS, CONFIG)).secrets_allowed


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
    assert SandboxDecision.from_status(decision.to_status()) == decision


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
        "denied.yaml",
        "egress.yaml",
        "plugin-runs.yaml",
        "policy-default.yaml",
    ]


def test_example_policy_declares_the_documented_plugins() -> None:
    pol = example_policy()
    assert pol.metadata.name == "default"
    assert {p.name: p.image for p in pol.spec.plugins} == {
        "echo-plugin": "steprun.local/step:1",
        "lint": "steprun.local/step:1",
    }
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
    assert decision.egress_allowed
    assert [(r.cidr, r.ports) for r in decision.egress] == [("10.96.0.0/12", [443])]
