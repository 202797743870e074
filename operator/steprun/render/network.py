"""The NetworkPolicy that confines a sandbox step's Pods (pure).

A step serves nothing, so all ingress is denied. Egress is denied too unless network.egress was
granted; then exactly the policy's egress rules apply.

DNS is not special-cased: with egress denied the step cannot resolve names either, and when
egress is granted only the policy's rules apply, so a policy whose steps need DNS must list the
cluster DNS service (its CIDR, ports 53) itself. Adding it silently would let every sandbox step
send data out through DNS queries, which is for a cluster admin to allow, not for the operator.

Granted egress with a policy that lists no rules still denies everything: the rules are the
allowance, not the permission.

A NetworkPolicy takes effect only where the cluster's network plugin enforces NetworkPolicies.
"""

from __future__ import annotations

from typing import Any

from steprun.api.models import EgressRule, Permission, StepRun
from steprun.policy.decision import SandboxDecision
from steprun.render.names import (
    COMPONENT_NETWORK,
    LABEL_COMPONENT,
    LABEL_NAME,
    LABEL_SANDBOX,
    child_labels,
    name_label_value,
    network_policy_name,
    owner_reference,
)


def render_network_policy(sr: StepRun, decision: SandboxDecision) -> dict[str, Any]:
    """The NetworkPolicy for ``sr``'s sandbox Pods, owned by the StepRun."""
    spec: dict[str, Any] = {
        "podSelector": {
            "matchLabels": {
                LABEL_NAME: name_label_value(sr.name),
                LABEL_SANDBOX: "true",
            }
        },
        # A policy type listed without rules denies all of that direction. Empty rule lists are
        # left out because the API server drops them too, so the object reads back as rendered.
        "policyTypes": ["Ingress", "Egress"],
    }
    if decision.grants(Permission.NETWORK_EGRESS) and decision.egress:
        spec["egress"] = [_egress_rule(r) for r in decision.egress]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": network_policy_name(sr.name),
            "namespace": sr.namespace,
            "labels": {**child_labels(sr), LABEL_COMPONENT: COMPONENT_NETWORK},
            "ownerReferences": [owner_reference(sr)],
        },
        "spec": spec,
    }


def _egress_rule(rule: EgressRule) -> dict[str, Any]:
    rendered: dict[str, Any] = {"to": [{"ipBlock": {"cidr": rule.cidr}}]}
    # No ports means every port and protocol of that CIDR, as the NetworkPolicy API defines it.
    if rule.ports:
        rendered["ports"] = [{"protocol": "TCP", "port": port} for port in rule.ports]
    return rendered
