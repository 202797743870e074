"""Sandbox steps end to end: SandboxPolicy admission, hardened Pods, NetworkPolicies.

Every sandbox step here runs in a namespace enforcing the Pod Security "restricted" profile,
with the sandbox-Pod ValidatingAdmissionPolicy of ``manifests/admission/`` installed, so each
Pod the operator creates is also proof that both admit it.

NetworkPolicies are checked here as objects (owner, selected Pods, rules);
tests/cluster/test_network_policy.py sends real traffic through them.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from steprun.config import OperatorConfig
from steprun.policy.quantity import parse_quantity
from steprun.render.names import network_policy_name
from steprun.render.sandbox import restricted_violations
from tests.cluster.conftest import (
    NAMESPACE_LABEL,
    OPERATOR_SERVICE_ACCOUNT,
    PSA_ENFORCE,
    SandboxPolicies,
    current_username,
    hardened_probe_pod,
)
from tests.conftest import STEP_IMAGE
from tests.support.steps import Steps, audit_pod_creations, eventually

REPO = Path(__file__).resolve().parents[2]
SANDBOX_EXAMPLES = REPO / "examples" / "sandbox"
AUDIT_LOG = REPO / ".cluster" / "logs" / "audit.log"
SHELL = ["/bin/sh", "-c"]
TOKEN_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
OPERATOR_DEFAULT_TIMEOUT = OperatorConfig().default_timeout_seconds


def plugin(name: str = "sh", permissions: list[str] | None = None) -> dict[str, Any]:
    """A plugin whose command is a shell: a step's first arg is its script."""
    return {"name": name, "image": STEP_IMAGE, "command": SHELL, "permissions": permissions or []}


def sandbox_step(policy: str, script: str, plugin_name: str = "sh", **spec: Any) -> dict[str, Any]:
    permissions = spec.pop("permissions", [])
    return {
        "mode": "sandbox",
        "sandbox": {"policy": policy, "plugin": plugin_name, "permissions": permissions},
        "args": [script],
        **spec,
    }


def live_pod(steps: Steps, name: str) -> dict[str, Any]:
    """The Pod as the API server stored it, in wire form (camelCase, defaults filled in)."""
    pod = steps.core.read_namespaced_pod(name, steps.namespace)
    return dict(steps.api.sanitize_for_serialization(pod))


def no_pod_was_created(steps: Steps, name: str) -> None:
    assert steps.pods(name) == []
    if AUDIT_LOG.exists():
        created = audit_pod_creations(AUDIT_LOG, steps.namespace)
        assert not [p for p in created if p.startswith(f"{name}-")], created


def warning_event(steps: Steps, name: str, reason: str) -> client.CoreV1Event:
    def probe() -> client.CoreV1Event | None:
        return next(
            (e for e in steps.events(name) if e.type == "Warning" and e.reason == reason), None
        )

    return eventually(probe, 20, f"a Warning Event {reason} for {name}")


def assert_rejected(
    steps: Steps, name: str, reason: str, policy: str, items: list[str]
) -> dict[str, Any]:
    """The step ends Rejected with ``reason``, naming the policy and every item, without a Pod."""
    status = steps.wait_terminal(name, timeout=60)
    assert status["phase"] == "Rejected", status
    assert status["reason"] == reason, status
    message = status["message"]
    assert f'SandboxPolicy "{policy}"' in message, message
    for item in items:
        assert item in message, f"{item!r} not named in {message!r}"
    assert "admitted" not in status
    no_pod_was_created(steps, name)
    assert not steps.configmap_exists(f"{name}-context")
    event = warning_event(steps, name, reason)
    assert f'SandboxPolicy "{policy}"' in event.message
    return status


# ------------------------------------------------------------------ 1. an allowed plugin runs


def test_allowed_plugin_runs_in_a_restricted_namespace(
    sandbox_steps: Steps, sandbox_policies: SandboxPolicies
) -> None:
    steps = sandbox_steps
    labels = steps.core.read_namespace(steps.namespace).metadata.labels
    assert labels[PSA_ENFORCE] == "restricted"
    policy = sandbox_policies.create(
        "runs",
        {
            # Selects this test's namespace only: the selector is matched, not ignored.
            "namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: steps.namespace}},
            "plugins": [plugin()],
            "maxTimeoutSeconds": 120,
        },
    )
    script = (
        'set -e; uid=`id -u`; test "$uid" -ne 0; '
        'grep -q sandboxed-input "$STEPRUN_CONTEXT_FILE"; '
        'printf \'{"uid": %s, "attempt": "%s"}\' "$uid" "$STEPRUN_ATTEMPT" '
        '> "$STEPRUN_OUTPUT_FILE"'
    )
    steps.create(
        "allowed",
        sandbox_step(policy, script, context={"inputs": {"marker": "sandboxed-input"}}),
    )
    status = steps.wait_terminal("allowed", timeout=90)
    assert status["phase"] == "Succeeded", status
    assert status["reason"] == "Completed" and status["exitCode"] == 0
    pod = live_pod(steps, "allowed-1")
    uid = pod["spec"]["securityContext"]["runAsUser"]
    assert uid != 0
    assert status["outputs"] == {"uid": uid, "attempt": "1"}
    assert status["admitted"]["policy"] == policy
    assert status["admitted"]["plugin"] == "sh"
    assert pod["spec"]["containers"][0]["image"] == STEP_IMAGE


# ------------------------------------------------------------------ 2. denials


@dataclass(frozen=True)
class Denied:
    """A step a policy refuses; ``{namespace}`` in items is the test namespace."""

    policy: dict[str, Any] | None
    step: dict[str, Any]
    items: list[str]
    reason: str = "PermissionDenied"
    plugin: str = "sh"
    permissions: list[str] = field(default_factory=list)
    denials: int = 1


DENIED = {
    "policy-not-found": Denied(None, {}, ["not found"], reason="PolicyNotFound"),
    "namespace-not-selected": Denied(
        {
            "namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: "elsewhere"}},
            "plugins": [plugin()],
        },
        {},
        ["namespace {namespace}", "namespaceSelector"],
    ),
    "undeclared-plugin": Denied(
        {"plugins": [plugin(), plugin("lint")]},
        {},
        ["plugin eslint", "not declared", "sh, lint"],
        plugin="eslint",
    ),
    "step-permission-not-granted": Denied(
        {"plugins": [plugin()], "grants": ["secrets.read"]},
        {},
        ["permission network.egress", "grants: secrets.read", "spec.sandbox.permissions"],
        permissions=["network.egress"],
    ),
    "plugin-permission-not-granted": Denied(
        {"plugins": [plugin(permissions=["filesystem.writable"])]},
        {},
        ["permission filesystem.writable", "plugin sh needs it"],
    ),
    "timeout-above-max": Denied(
        {"plugins": [plugin()], "maxTimeoutSeconds": 60},
        {"timeoutSeconds": 61},
        ["timeoutSeconds 61", "maxTimeoutSeconds 60"],
    ),
    "resources-above-max": Denied(
        {"plugins": [plugin()], "maxResources": {"cpu": "500m", "memory": "64Mi"}},
        {"resources": {"requests": {"cpu": "600m"}, "limits": {"cpu": "1", "memory": "64Mi"}}},
        ["resources.requests.cpu 600m", "resources.limits.cpu 1", "maxResources cpu 500m"],
        denials=2,
    ),
    "default-resources-above-max": Denied(
        {
            "plugins": [plugin()],
            "defaultResources": {"limits": {"memory": "1Gi"}},
            "maxResources": {"memory": "512Mi"},
        },
        {},
        ["resources.limits.memory 1Gi", "maxResources memory 512Mi"],
    ),
    # The policy grants secrets.read, but a step gets secrets only when it asks for them.
    "secrets-without-secrets-read": Denied(
        {"plugins": [plugin()], "grants": ["secrets.read"]},
        {"context": {"secrets": [{"name": "TOKEN", "secretKeyRef": {"name": "gh", "key": "t"}}]}},
        ["context.secrets", "requires permission secrets.read"],
    ),
    "several-at-once": Denied(
        {
            "namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: "elsewhere"}},
            "plugins": [plugin()],
            "maxTimeoutSeconds": 30,
            "maxResources": {"memory": "64Mi"},
        },
        {
            "timeoutSeconds": 300,
            "resources": {"limits": {"memory": "128Mi"}},
            "context": {"secrets": [{"name": "T", "secretKeyRef": {"name": "gh", "key": "t"}}]},
        },
        [
            "namespace {namespace}",
            "plugin nope",
            "permission network.egress",
            "context.secrets",
            "timeoutSeconds 300",
            "resources.limits.memory 128Mi",
        ],
        plugin="nope",
        permissions=["network.egress"],
        denials=6,
    ),
}


@pytest.mark.parametrize("case", DENIED.values(), ids=DENIED.keys())
def test_denied_step_is_rejected_without_a_pod(
    sandbox_steps: Steps, sandbox_policies: SandboxPolicies, case: Denied
) -> None:
    steps = sandbox_steps
    if case.policy is None:
        policy = sandbox_policies.unused_name("absent")
    else:
        policy = sandbox_policies.create("denies", case.policy)
    spec = sandbox_step(
        policy, "echo never runs", case.plugin, permissions=case.permissions, **case.step
    )
    steps.create("denied", spec)
    items = [item.format(namespace=steps.namespace) for item in case.items]
    status = assert_rejected(steps, "denied", case.reason, policy, items)
    # One "; "-separated clause per denial: nothing left out, nothing extra.
    denials = status["message"].split(" denies this step: ", 1)[-1].split("; ")
    assert len(denials) == case.denials, denials


# ------------------------------------------------------------------ 3. the hardened Pod


@pytest.fixture
def runtime_class(api_client: client.ApiClient) -> Iterator[str]:
    """A RuntimeClass of the cluster's only runtime handler, under a unique name."""
    node = client.NodeV1Api(api_client)
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    node.create_runtime_class(
        client.V1RuntimeClass(metadata=client.V1ObjectMeta(name=name), handler="runc")
    )
    yield name
    node.delete_runtime_class(name)


def assert_hardened(pod: dict[str, Any], policy: str, writable_root: bool) -> None:
    spec = pod["spec"]
    pod_security = spec["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security.get("runAsUser") != 0
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in spec["containers"] + spec.get("initContainers", []):
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert not security["capabilities"].get("add")
        assert security.get("privileged") in (None, False)
        assert security["readOnlyRootFilesystem"] is (not writable_root)
        assert not [p for p in container.get("ports", []) if p.get("hostPort")]
        mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
        assert not [m for m in mounts if m.startswith(TOKEN_MOUNT)], mounts
    assert spec["automountServiceAccountToken"] is False
    for volume in spec.get("volumes", []):
        assert "hostPath" not in volume, volume
        sources = (volume.get("projected") or {}).get("sources") or []
        assert not [s for s in sources if "serviceAccountToken" in s], volume
    for host_namespace in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(host_namespace), host_namespace
    labels = pod["metadata"]["labels"]
    assert labels["steprun.dev/sandbox"] == "true"
    assert labels["steprun.dev/policy"] == policy
    assert restricted_violations(pod) == []


def test_pod_is_hardened_and_filled_from_the_policy(
    sandbox_steps: Steps, sandbox_policies: SandboxPolicies, runtime_class: str
) -> None:
    steps = sandbox_steps
    default_resources = {
        "requests": {"cpu": "10m", "memory": "16Mi"},
        "limits": {"cpu": "200m", "memory": "64Mi"},
    }
    capped = sandbox_policies.create(
        "capped",
        {
            "plugins": [plugin()],
            "grants": ["filesystem.writable"],
            "maxTimeoutSeconds": 120,
            "defaultResources": default_resources,
            "maxResources": {"cpu": "1", "memory": "256Mi"},
            "runtimeClassName": runtime_class,
            # A policy label may not override the operator's own.
            "podLabels": {"team": "e2e", "steprun.dev/sandbox": "false"},
        },
    )
    roomy = sandbox_policies.create(
        "roomy", {"plugins": [plugin()], "maxTimeoutSeconds": OPERATOR_DEFAULT_TIMEOUT + 600}
    )
    # /tmp is always writable (an emptyDir when the root is read-only). /workspace is a
    # directory of the image open to every user, on the root filesystem: writable only with
    # filesystem.writable. Exit 20 tells the two apart.
    write_root = "touch /tmp/scratch || exit 10; touch /workspace/written || exit 20"
    steps.create("readonly", sandbox_step(capped, write_root))
    steps.create("writable", sandbox_step(capped, write_root, permissions=["filesystem.writable"]))
    steps.create("uncapped", sandbox_step(roomy, "true"))

    readonly = steps.wait_terminal("readonly", timeout=90)
    assert readonly["phase"] == "Failed" and readonly["exitCode"] == 20, readonly
    writable = steps.wait_terminal("writable", timeout=90)
    assert writable["phase"] == "Succeeded", writable
    assert steps.wait_terminal("uncapped", timeout=90)["phase"] == "Succeeded"

    for name, writable_root in (("readonly", False), ("writable", True)):
        pod = live_pod(steps, f"{name}-1")
        assert_hardened(pod, capped, writable_root)
        assert pod["metadata"]["labels"]["team"] == "e2e"
        assert pod["spec"]["runtimeClassName"] == runtime_class
        # Filled from the policy: the timeout is min(operator default, maxTimeoutSeconds).
        assert pod["spec"]["activeDeadlineSeconds"] == min(OPERATOR_DEFAULT_TIMEOUT, 120)
        resources = pod["spec"]["containers"][0]["resources"]
        for kind, quantities in default_resources.items():
            got = {k: parse_quantity(v) for k, v in resources[kind].items()}
            assert got == {k: parse_quantity(v) for k, v in quantities.items()}, resources

    uncapped = live_pod(steps, "uncapped-1")
    assert_hardened(uncapped, roomy, writable_root=False)
    assert uncapped["spec"]["activeDeadlineSeconds"] == OPERATOR_DEFAULT_TIMEOUT
    assert not uncapped["spec"].get("runtimeClassName")
    assert "team" not in uncapped["metadata"]["labels"]


# ------------------------------------------------------------------ 4. the NetworkPolicy


def test_network_policy_confines_each_step(
    sandbox_steps: Steps, sandbox_policies: SandboxPolicies
) -> None:
    steps = sandbox_steps
    egress = [{"cidr": "10.96.0.0/12", "ports": [443, 8443]}, {"cidr": "192.0.2.0/24"}]
    policy = sandbox_policies.create(
        "network", {"plugins": [plugin()], "grants": ["network.egress"], "egress": egress}
    )
    steps.create("closed", sandbox_step(policy, "true"))
    steps.create("open", sandbox_step(policy, "true", permissions=["network.egress"]))
    for name in ("closed", "open"):
        assert steps.wait_terminal(name, timeout=90)["phase"] == "Succeeded"

    networking = client.NetworkingV1Api(steps.api)
    expected_egress: dict[str, list[dict[str, Any]] | None] = {
        "closed": None,
        "open": [
            {
                "to": [{"ipBlock": {"cidr": "10.96.0.0/12"}}],
                "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 8443}],
            },
            {"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}]},
        ],
    }
    for name, rules in expected_egress.items():
        body = networking.read_namespaced_network_policy(network_policy_name(name), steps.namespace)
        np = dict(steps.api.sanitize_for_serialization(body))
        (owner,) = np["metadata"]["ownerReferences"]
        assert owner["kind"] == "StepRun" and owner["name"] == name
        assert owner["uid"] == steps.get(name)["metadata"]["uid"] and owner["controller"]
        spec = np["spec"]
        assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
        assert not spec.get("ingress")
        # No egress rules with policyType Egress: every destination is denied.
        assert spec.get("egress") == rules
        selector = ",".join(f"{k}={v}" for k, v in spec["podSelector"]["matchLabels"].items())
        assert not spec["podSelector"].get("matchExpressions")
        selected = steps.core.list_namespaced_pod(steps.namespace, label_selector=selector)
        assert [p.metadata.name for p in selected.items] == [f"{name}-1"]


# ------------------------------------------------------------------ 5. the admission policy


def test_sandbox_pod_from_another_identity_is_refused(
    sandbox_steps: Steps, sandbox_admission: str, kubeconfig: str
) -> None:
    steps = sandbox_steps
    namespace = steps.namespace
    installed = client.AdmissionregistrationV1Api(steps.api).read_validating_admission_policy(
        sandbox_admission
    )
    creators = yaml.safe_load(installed.spec.variables[0].expression)
    assert {OPERATOR_SERVICE_ACCOUNT, current_username(steps.api)} <= set(creators), creators
    sa = "intruder"
    steps.core.create_namespaced_service_account(namespace, {"metadata": {"name": sa}})
    rbac = client.RbacAuthorizationV1Api(steps.api)
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "pod-writer"},
            "rules": [
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "list"]}
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "pod-writer"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "pod-writer",
            },
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}],
        },
    )
    user = f"system:serviceaccount:{namespace}:{sa}"
    impersonating = config.new_client_from_config(config_file=kubeconfig)
    impersonating.set_default_header("Impersonate-User", user)
    as_intruder = client.CoreV1Api(impersonating)

    # Without the sandbox label the same Pod is admitted: RBAC and Pod Security allow it, so
    # the refusal below comes from the admission policy alone.
    plain = hardened_probe_pod("forged", STEP_IMAGE, {"app": "plain"})
    eventually(
        lambda: as_intruder.create_namespaced_pod(namespace, plain, dry_run="All"),
        10,
        "RBAC to allow the ServiceAccount to create Pods",
    )
    forged = hardened_probe_pod(
        "forged", STEP_IMAGE, {"steprun.dev/sandbox": "true", "steprun.dev/policy": "default"}
    )
    with pytest.raises(client.ApiException) as refused:
        as_intruder.create_namespaced_pod(namespace, forged)
    assert refused.value.status == 403
    message = json.loads(refused.value.body)["message"]
    assert f"ValidatingAdmissionPolicy '{sandbox_admission}'" in message, message
    assert user in message and "create a StepRun with mode: sandbox" in message, message
    assert steps.core.list_namespaced_pod(namespace).items == []

    # The operator's identity is allowed to create sandbox Pods, but only hardened ones.
    loosened = hardened_probe_pod(
        "loosened", STEP_IMAGE, {"steprun.dev/sandbox": "true", "steprun.dev/policy": "default"}
    )
    loosened["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    with pytest.raises(client.ApiException) as refused:
        steps.core.create_namespaced_pod(namespace, loosened, dry_run="All")
    assert refused.value.status == 403
    assert "allowPrivilegeEscalation=false" in json.loads(refused.value.body)["message"]


# ------------------------------------------------------------------ 6. policy edits


def wait_admitted(steps: Steps, name: str) -> dict[str, Any]:
    return eventually(lambda: steps.status(name).get("admitted"), 60, f"{name} to be admitted")


def test_policy_edit_does_not_change_a_started_step(
    sandbox_steps: Steps, sandbox_policies: SandboxPolicies
) -> None:
    steps = sandbox_steps
    policy = sandbox_policies.create("edited", {"plugins": [plugin()]})
    spec = sandbox_step(policy, "sleep 4; echo finished")
    steps.create("started", spec)
    wait_admitted(steps, "started")
    sandbox_policies.replace_spec(policy, {"plugins": [plugin("other")]})
    assert steps.status("started")["phase"] in ("Pending", "Running")

    status = steps.wait_terminal("started", timeout=60)
    assert status["phase"] == "Succeeded", status
    steps.create("after-edit", spec)
    assert_rejected(steps, "after-edit", "PermissionDenied", policy, ["plugin sh", "other"])


def test_retry_after_a_policy_edit_runs_under_the_frozen_decision(
    sandbox_steps: Steps, sandbox_policies: SandboxPolicies
) -> None:
    steps = sandbox_steps
    policy = sandbox_policies.create(
        "retried", {"plugins": [plugin()], "grants": ["filesystem.writable"]}
    )
    # Attempt 1 fails after a pause (the policy is edited meanwhile); attempt 2 needs the
    # writable root the policy granted at admission.
    script = 'if [ "$STEPRUN_ATTEMPT" = 1 ]; then sleep 3; exit 1; fi; touch /workspace/2'
    spec = sandbox_step(
        policy,
        script,
        permissions=["filesystem.writable"],
        retries={"limit": 1, "backoffSeconds": 1},
    )
    steps.create("retried", spec)
    admitted = wait_admitted(steps, "retried")
    assert admitted["granted"] == ["filesystem.writable"]
    sandbox_policies.replace_spec(policy, {"plugins": [plugin()], "grants": []})
    before = steps.status("retried")
    assert before["attempt"] == 1 and len(before["attempts"]) == 1, before

    status = steps.wait_terminal("retried", timeout=60)
    assert status["phase"] == "Succeeded", status
    assert [a["attempt"] for a in status["attempts"]] == [1, 2]
    assert status["attempts"][0]["exitCode"] == 1
    assert status["admitted"] == admitted
    second = live_pod(steps, "retried-2")
    assert second["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is False

    steps.create("retried-again", spec)
    assert_rejected(
        steps, "retried-again", "PermissionDenied", policy, ["permission filesystem.writable"]
    )


# ------------------------------------------------------------------ 7. handlers and commands

# One plugin with two entry points that need different permissions, written as a plugin
# manifest would declare them. The plugin's command is a shell, so an entry's first argument
# is its script and the arguments after its name ($0) arrive as "$@".
REPORT = (
    'printf \'{"form": "%s", "args": "%s", "cwd": "%s"}\' "$0" "$*" "$PWD" > "$STEPRUN_OUTPUT_FILE"'
)


def tool_plugin(wait_prints: str = "original") -> dict[str, Any]:
    return {
        "name": "tool",
        "image": STEP_IMAGE,
        "command": SHELL,
        "version": "1.2.0",
        "handlers": [
            {"id": "write", "args": [REPORT, "handler"], "permissions": ["filesystem.writable"]},
            {"id": "publish", "args": [REPORT, "publish"], "permissions": ["network.egress"]},
        ],
        "commands": [
            {"id": "report", "command": [*SHELL, REPORT, "command"]},
            {
                "id": "wait",
                "command": [
                    *SHELL,
                    f'sleep 4; printf \'{{"printed": "{wait_prints}"}}\' > "$STEPRUN_OUTPUT_FILE"',
                ],
            },
        ],
    }


def uses_step(policy: str, uses: str, **spec: Any) -> dict[str, Any]:
    return {"mode": "sandbox", "sandbox": {"policy": policy, "uses": uses}, **spec}


def test_a_handler_and_a_command_of_one_plugin_run_with_their_own_permissions(
    sandbox_steps: Steps, sandbox_policies: SandboxPolicies
) -> None:
    steps = sandbox_steps
    policy = sandbox_policies.create(
        "entries", {"plugins": [tool_plugin()], "grants": ["filesystem.writable"]}
    )
    steps.create("handler", uses_step(policy, "plugin:tool/write", args=["a", "b"]))
    inputs = {
        "dir": "src",
        "fix": True,
        "quiet": False,
        "ext": ["js", "ts"],
        "max": 3,
        "note": "$(HOME)",
        "evil": "--evil",
    }
    steps.create(
        "command",
        uses_step(
            policy, "command:report", args=["x"], workingDir="/tmp/work", context={"inputs": inputs}
        ),
    )
    positional = {"argv": ["--evil", "$(HOME)"], "flags": {"fix": True}}
    steps.create(
        "positional",
        uses_step(policy, "command:report", args=["$(HOME)"], context={"inputs": positional}),
    )

    handler = steps.wait_terminal("handler", timeout=90)
    assert handler["phase"] == "Succeeded", handler
    assert handler["outputs"]["form"] == "handler"
    assert handler["outputs"]["args"] == "a b"
    admitted = handler["admitted"]
    assert (admitted["plugin"], admitted["version"], admitted["handler"]) == (
        "tool",
        "1.2.0",
        "write",
    )
    assert admitted["uses"] == "plugin:tool/write" and "cliCommand" not in admitted
    assert admitted["granted"] == ["filesystem.writable"]
    assert_hardened(live_pod(steps, "handler-1"), policy, writable_root=True)

    command = steps.wait_terminal("command", timeout=90)
    assert command["phase"] == "Succeeded", command
    # context.inputs became flags (sorted; true bare, false left out, lists repeated, each value
    # glued to its flag so "--evil" stays a value), then spec.args; values arrive as written
    # (the kubelet expanded no $(VAR)); the command ran in the step's working directory.
    assert command["outputs"] == {
        "form": "command",
        "args": "--dir=src --evil=--evil --ext=js --ext=ts --fix --max=3 --note=$(HOME) x",
        "cwd": "/tmp/work",
    }
    positional = steps.wait_terminal("positional", timeout=90)
    assert positional["phase"] == "Succeeded", positional
    # Positional inputs follow "--"; the author's spec.args are not expanded either.
    assert positional["outputs"]["args"] == "--fix $(HOME) -- --evil $(HOME)"
    admitted = command["admitted"]
    assert (admitted["plugin"], admitted["cliCommand"]) == ("tool", "report")
    assert admitted["granted"] == [] and "handler" not in admitted
    assert_hardened(live_pod(steps, "command-1"), policy, writable_root=False)


def test_a_denied_or_unknown_handler_is_rejected_without_a_pod(
    sandbox_steps: Steps, sandbox_policies: SandboxPolicies
) -> None:
    steps = sandbox_steps
    policy = sandbox_policies.create(
        "denied-handler", {"plugins": [tool_plugin()], "grants": ["filesystem.writable"]}
    )
    steps.create("publish", uses_step(policy, "plugin:tool/publish"))
    steps.create("unknown", uses_step(policy, "plugin:tool/deploy"))
    steps.create("no-command", uses_step(policy, "command:deploy"))
    assert_rejected(
        steps,
        "publish",
        "PermissionDenied",
        policy,
        ["permission network.egress", "handler publish of plugin tool needs it"],
    )
    assert_rejected(
        steps,
        "unknown",
        "PermissionDenied",
        policy,
        ["Workflow handler not found: deploy in plugin tool", "handlers of tool: write, publish"],
    )
    assert_rejected(
        steps,
        "no-command",
        "PermissionDenied",
        policy,
        ["CLI command not found: deploy", "report (plugin tool), wait (plugin tool)"],
    )


def test_a_policy_edit_after_start_does_not_change_the_resolved_command(
    sandbox_steps: Steps, sandbox_policies: SandboxPolicies
) -> None:
    steps = sandbox_steps
    policy = sandbox_policies.create("edited-command", {"plugins": [tool_plugin("original")]})
    steps.create("started", uses_step(policy, "command:wait"))
    admitted = wait_admitted(steps, "started")
    sandbox_policies.replace_spec(policy, {"plugins": [tool_plugin("edited")]})
    assert steps.status("started")["phase"] in ("Pending", "Running")

    status = steps.wait_terminal("started", timeout=60)
    assert status["phase"] == "Succeeded", status
    assert status["outputs"] == {"printed": "original"}
    assert status["admitted"] == admitted
    steps.create("after-edit", uses_step(policy, "command:wait"))
    after = steps.wait_terminal("after-edit", timeout=60)
    assert after["outputs"] == {"printed": "edited"}, after
    assert after["admitted"]["command"] != admitted["command"]


def test_builtin_shell_runs_the_script_only_where_the_policy_names_a_shell(
    sandbox_steps: Steps, sandbox_policies: SandboxPolicies
) -> None:
    steps = sandbox_steps
    with_shell = sandbox_policies.create("shell", {"plugins": [plugin()], "shellPlugin": "sh"})
    without = sandbox_policies.create("no-shell", {"plugins": [plugin()]})
    script = 'printf \'{"shell": "%s"}\' "`id -u`" > "$STEPRUN_OUTPUT_FILE"'
    steps.create("shell", uses_step(with_shell, "builtin:shell", script=script))
    steps.create("no-shell", uses_step(without, "builtin:shell", script=script))
    status = steps.wait_terminal("shell", timeout=90)
    assert status["phase"] == "Succeeded", status
    assert status["outputs"] == {
        "shell": str(live_pod(steps, "shell-1")["spec"]["securityContext"]["runAsUser"])
    }
    assert status["admitted"]["plugin"] == "sh"
    assert_rejected(
        steps, "no-shell", "PermissionDenied", without, ["builtin:shell", "shellPlugin"]
    )


# ------------------------------------------------------------------ 8. the examples


def example_documents() -> tuple[dict[str, Any], list[Path]]:
    policies, steprun_files = [], []
    for path in sorted(SANDBOX_EXAMPLES.glob("*.yaml")):
        kinds = [d["kind"] for d in yaml.safe_load_all(path.read_text()) if d]
        if kinds == ["SandboxPolicy"]:
            policies.append(yaml.safe_load(path.read_text()))
        else:
            assert kinds == ["StepRun"], f"{path}: one StepRun or one SandboxPolicy per file"
            steprun_files.append(path)
    (policy,) = policies
    return policy, steprun_files


EXAMPLE_POLICY, STEPRUN_EXAMPLES = example_documents()


def expectations(path: Path) -> dict[str, str]:
    line = next(line for line in path.read_text().splitlines() if line.startswith("# expect:"))
    return dict(re.findall(r"(\w+)=(\{.*\}|\S+)", line))


@pytest.mark.parametrize("example", STEPRUN_EXAMPLES, ids=lambda p: p.stem)
def test_sandbox_example_reaches_its_documented_phase(
    sandbox_steps: Steps, sandbox_policies: SandboxPolicies, example: Path
) -> None:
    steps = sandbox_steps
    expected = expectations(example)
    example_policy = EXAMPLE_POLICY["metadata"]["name"]
    policy = sandbox_policies.create(example_policy, EXAMPLE_POLICY["spec"])
    (doc,) = yaml.safe_load_all(example.read_text())
    assert doc["spec"]["sandbox"].get("policy", "default") == example_policy, example
    doc["spec"]["sandbox"]["policy"] = policy
    name = doc["metadata"]["name"]
    steps.create(name, doc["spec"])

    status = steps.wait_terminal(name, timeout=90)
    assert status["phase"] == expected["phase"], status
    assert status["reason"] == expected["reason"], status
    if "exitCode" in expected:
        assert status.get("exitCode") == int(expected["exitCode"]), status
    if "outputs" in expected:
        assert status.get("outputs") == json.loads(expected["outputs"]), status
    if status["phase"] == "Rejected":
        assert policy in status["message"]
        no_pod_was_created(steps, name)
    else:
        assert_hardened(live_pod(steps, f"{name}-1"), policy, writable_root=False)
    eventually(lambda: not steps.context_outliving(name), 30, "the step's context deleted")


def test_examples_document_their_expectations() -> None:
    assert len(STEPRUN_EXAMPLES) >= 3
    for path in STEPRUN_EXAMPLES:
        expected = expectations(path)
        assert {"phase", "reason"} <= set(expected), path
