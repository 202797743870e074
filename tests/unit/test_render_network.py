from __future__ import annotations

from typing import Any

import pytest

from steprun.api.models import EgressRule, Permission, StepRun
from steprun.config import OperatorConfig
from steprun.policy.decision import SandboxDecision
from steprun.render.names import (
    LABEL_COMPONENT,
    LABEL_NAME,
    LABEL_SANDBOX,
    network_policy_name,
    owner_reference,
)
from steprun.render.network import render_network_policy
from steprun.render.pod import render_pod
from steprun.render.sandbox import harden_pod

RULES = [
    EgressRule(cidr="10.96.0.0/12", ports=[443]),
    EgressRule(cidr="192.168.0.0/16", ports=[80, 8080]),
    EgressRule(cidr="172.16.0.0/12"),
]


def steprun(name: str = "build-42-lint") -> StepRun:
    return StepRun.from_body(
        {
            "metadata": {"name": name, "namespace": "ci", "uid": "uid-7"},
            "spec": {"mode": "sandbox", "sandbox": {"plugin": "eslint"}},
        }
    )


def decision(*grants: Permission, egress: list[EgressRule] | None = None) -> SandboxDecision:
    return SandboxDecision(
        policy="default",
        plugin="eslint",
        image="registry.example/eslint:9",
        command=["eslint"],
        granted=frozenset(grants),
        timeout_seconds=600,
        resources=None,
        egress=list(RULES if egress is None else egress),
    )


def test_metadata_and_ownership() -> None:
    sr = steprun()
    policy = render_network_policy(sr, decision())
    assert policy["apiVersion"] == "networking.k8s.io/v1"
    assert policy["kind"] == "NetworkPolicy"
    meta = policy["metadata"]
    assert meta["name"] == network_policy_name("build-42-lint") == "build-42-lint-sandbox"
    assert meta["namespace"] == "ci"
    assert meta["ownerReferences"] == [owner_reference(sr)]
    assert meta["ownerReferences"][0]["uid"] == "uid-7"
    assert meta["labels"][LABEL_NAME] == "build-42-lint"
    assert meta["labels"][LABEL_COMPONENT] == "network"


def test_without_egress_everything_is_denied() -> None:
    spec = render_network_policy(steprun(), decision(Permission.SECRETS_READ))["spec"]
    # Listed types without rules deny everything; empty lists are omitted as the server does.
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in spec
    assert "egress" not in spec


def test_egress_rules_recorded_but_not_granted_stay_denied() -> None:
    # Defence in depth: the permission decides, not the presence of rules.
    spec = render_network_policy(steprun(), decision(egress=RULES))["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert "egress" not in spec


def test_with_egress_exactly_the_policy_rules() -> None:
    spec = render_network_policy(steprun(), decision(Permission.NETWORK_EGRESS))["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in spec
    assert spec["egress"] == [
        {
            "to": [{"ipBlock": {"cidr": "10.96.0.0/12"}}],
            "ports": [{"protocol": "TCP", "port": 443}],
        },
        {
            "to": [{"ipBlock": {"cidr": "192.168.0.0/16"}}],
            "ports": [{"protocol": "TCP", "port": 80}, {"protocol": "TCP", "port": 8080}],
        },
        {"to": [{"ipBlock": {"cidr": "172.16.0.0/12"}}]},  # no ports: every port
    ]


def test_dns_is_not_added_silently() -> None:
    spec = render_network_policy(steprun(), decision(Permission.NETWORK_EGRESS))["spec"]
    ports = [p["port"] for rule in spec["egress"] for p in rule.get("ports", [])]
    assert 53 not in ports
    assert len(spec["egress"]) == len(RULES)


def test_granted_egress_without_rules_denies_everything() -> None:
    spec = render_network_policy(steprun(), decision(Permission.NETWORK_EGRESS, egress=[]))["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert "egress" not in spec


@pytest.mark.parametrize("name", ["build-42-lint", "x" * 200, "a.b.c"])
def test_selector_matches_the_hardened_pods_of_the_step(name: str) -> None:
    sr = steprun(name)
    dec = decision()
    selector = render_network_policy(sr, dec)["spec"]["podSelector"]
    assert set(selector) == {"matchLabels"}
    pod_labels: dict[str, Any] = harden_pod(render_pod(sr, 1, OperatorConfig(), dec), dec)[
        "metadata"
    ]["labels"]
    for key, value in selector["matchLabels"].items():
        assert pod_labels[key] == value
    assert selector["matchLabels"][LABEL_SANDBOX] == "true"
    assert len(selector["matchLabels"][LABEL_NAME]) <= 63


def test_selector_does_not_match_another_steps_pods() -> None:
    dec = decision()
    mine = render_network_policy(steprun("step-a"), dec)["spec"]["podSelector"]["matchLabels"]
    other = steprun("step-b")
    labels = harden_pod(render_pod(other, 1, OperatorConfig(), dec), dec)["metadata"]["labels"]
    assert any(labels.get(k) != v for k, v in mine.items())


def test_input_decision_is_not_shared() -> None:
    dec = decision(Permission.NETWORK_EGRESS)
    policy = render_network_policy(steprun(), dec)
    policy["spec"]["egress"][0]["ports"].append({"protocol": "UDP", "port": 53})
    assert dec.egress[0].ports == [443]
