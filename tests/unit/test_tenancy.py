"""Tenancy checks and hardening (pure): what a step may ask for on a shared cluster."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from steprun.api.models import API_VERSION, Permission, StepRun
from steprun.config import OperatorConfig
from steprun.observe.redact import REDACTED, redact, redact_json, secret_values
from steprun.policy.decision import SandboxDecision
from steprun.policy.tenancy import (
    AdmissionGuard,
    authorization_refusal,
    claim_origin_problem,
    claim_origin_refusal,
    namespace_refusal,
    needs_creator_check,
    network_policy_conflicts,
    scheduling_refusals,
)
from steprun.render.adoption import adoption_problems
from steprun.render.context import merged_env, render_configmap
from steprun.render.pod import render_pod
from steprun.render.sandbox import harden_pod, restricted_violations

CONFIG = OperatorConfig()
POLICY = "steprun-stepruns"
CREATED = "2026-12-01T10:00:00Z"


def steprun(created: str = "2026-12-01T10:05:00Z", namespace: str = "ci", **spec: Any) -> StepRun:
    spec.setdefault("image", "busybox:1.36")
    return StepRun.from_body(
        {
            "metadata": {
                "name": "lint",
                "namespace": namespace,
                "uid": "uid-1",
                "creationTimestamp": created,
            },
            "spec": spec,
        }
    )


def sandbox_decision(**fields: Any) -> SandboxDecision:
    return SandboxDecision(
        policy="default",
        plugin="eslint",
        image="registry.example/eslint:9",
        command=["eslint"],
        granted=frozenset({Permission.SECRETS_READ}),
        timeout_seconds=600,
        resources=None,
        **fields,
    )


SECRET = [{"name": "TOKEN", "secretKeyRef": {"name": "gh", "key": "token"}}]


# ---------------------------------------------------------------- system namespaces


@pytest.mark.parametrize(
    ("namespace", "config", "refused"),
    [
        ("kube-system", CONFIG, True),
        ("kube-public", CONFIG, True),
        ("kube-node-lease", CONFIG, True),
        (
            "steprun-system",
            CONFIG.model_copy(update={"operator_namespace": "steprun-system"}),
            True,
        ),
        ("ci", CONFIG.model_copy(update={"operator_namespace": "steprun-system"}), False),
        (
            "kube-system",
            CONFIG.model_copy(update={"allowed_system_namespaces": ["kube-system"]}),
            False,
        ),
        (
            "steprun-system",
            CONFIG.model_copy(
                update={
                    "operator_namespace": "steprun-system",
                    "allowed_system_namespaces": ["steprun-system"],
                }
            ),
            False,
        ),
    ],
    ids=["kube-system", "kube-public", "kube-node-lease", "own", "other", "listed", "own-listed"],
)
def test_system_namespaces(namespace: str, config: OperatorConfig, refused: bool) -> None:
    problem = namespace_refusal(namespace, config)
    assert (problem is not None) == refused
    if problem:
        assert namespace in problem and "STEPRUN_ALLOWED_SYSTEM_NAMESPACES" in problem


# ---------------------------------------------------------------- fail closed


def policy_body(created: str = CREATED, failure: str | None = None) -> dict[str, Any]:
    spec = {"failurePolicy": failure} if failure else {}
    return {"metadata": {"name": POLICY, "creationTimestamp": created}, "spec": spec}


def binding(
    actions: list[str] | None = None, created: str = CREATED, **match: Any
) -> dict[str, Any]:
    spec: dict[str, Any] = {"policyName": POLICY, "validationActions": actions or ["Deny"]}
    if match:
        spec["matchResources"] = match
    return {"metadata": {"name": POLICY, "creationTimestamp": created}, "spec": spec}


CLAIM_TEMPLATE = {"spec": {"resources": {"requests": {"storage": "1Gi"}}}}


@pytest.mark.parametrize(
    ("spec", "needs"),
    [
        ({}, []),
        ({"serviceAccountName": "default"}, []),
        ({"serviceAccountName": "builder"}, ["ServiceAccount builder"]),
        ({"context": {"secrets": SECRET}}, ["Secret(s) gh"]),
        (
            {"context": {"secrets": SECRET}, "serviceAccountName": "ops"},
            ["Secret(s) gh", "ServiceAccount ops"],
        ),
        (
            {
                "workspaces": [
                    {"name": "src", "persistentVolumeClaim": {"claimName": "cache"}},
                    {"name": "tmp", "emptyDir": {}},
                ]
            },
            ["PersistentVolumeClaim(s) cache"],
        ),
        # The operator creates the run's claim (any size and class) or joins another's.
        (
            {
                "context": {"workflow": {"name": "build", "runId": "42"}},
                "workspaces": [
                    {"name": "src", "volumeClaimTemplate": CLAIM_TEMPLATE},
                    {"name": "out", "volumeClaimTemplate": CLAIM_TEMPLATE},
                ],
            },
            ["the claims of volumeClaimTemplate workspace(s) out, src"],
        ),
        (
            {
                "artifacts": {
                    "inputs": [
                        {
                            "name": "dist",
                            "from": {"stepRun": "build", "artifact": "dist"},
                            "path": "/in/dist",
                        }
                    ]
                }
            },
            ["StepRun(s) build (artifact inputs)"],
        ),
        (
            {"mode": "sandbox", "sandbox": {"policy": "default", "plugin": "eslint"}},
            [],
        ),
        (
            {"mode": "sandbox", "sandbox": {"policy": "trusted", "plugin": "eslint"}},
            ["SandboxPolicy trusted"],
        ),
        # A ServiceAccount means nothing to a sandbox step (its Pods get none), a policy does.
        (
            {
                "mode": "sandbox",
                "serviceAccountName": "builder",
                "sandbox": {"policy": "trusted", "plugin": "eslint"},
            },
            ["SandboxPolicy trusted"],
        ),
    ],
)
def test_what_needs_the_creator_check(spec: dict[str, Any], needs: list[str]) -> None:
    assert needs_creator_check(steprun(**spec)) == needs


GUARDS = {
    "installed": (AdmissionGuard.read(POLICY, policy_body(), [binding()]), None),
    "no-policy": (AdmissionGuard.read(POLICY, None, [binding()]), "is not installed"),
    "no-binding": (
        AdmissionGuard.read(POLICY, policy_body(), []),
        "no ValidatingAdmissionPolicyBinding",
    ),
    "warn-only-binding": (
        AdmissionGuard.read(POLICY, policy_body(), [binding(["Warn", "Audit"])]),
        "no ValidatingAdmissionPolicyBinding",
    ),
    "failure-ignored": (
        AdmissionGuard.read(POLICY, policy_body(failure="Ignore"), [binding()]),
        "failurePolicy Fail",
    ),
    "other-namespaces": (
        AdmissionGuard.read(
            POLICY, policy_body(), [binding(namespaceSelector={"matchLabels": {"team": "web"}})]
        ),
        "exclude namespace ci",
    ),
    "this-namespace": (
        AdmissionGuard.read(
            POLICY, policy_body(), [binding(namespaceSelector={"matchLabels": {"team": "ci"}})]
        ),
        None,
    ),
    "object-selector": (
        AdmissionGuard.read(
            POLICY, policy_body(), [binding(objectSelector={"matchLabels": {"x": "y"}})]
        ),
        "no ValidatingAdmissionPolicyBinding",
    ),
    "installed-after-the-steprun": (
        AdmissionGuard.read(POLICY, policy_body("2026-12-01T10:06:00Z"), [binding()]),
        "installed after this StepRun was created",
    ),
    "binding-after-the-steprun": (
        AdmissionGuard.read(POLICY, policy_body(), [binding(created="2026-12-01T10:05:00Z")]),
        "installed after this StepRun was created",
    ),
    "unreadable": (None, "cannot read"),
}


@pytest.mark.parametrize(("guard", "problem"), GUARDS.values(), ids=GUARDS.keys())
def test_fail_closed_without_the_admission_policy(
    guard: AdmissionGuard | None, problem: str | None
) -> None:
    sr = steprun(context={"secrets": SECRET})
    refusal = authorization_refusal(sr, guard, {"team": "ci"}, CONFIG)
    if problem is None:
        assert refusal is None
        return
    assert refusal is not None
    assert problem in refusal
    assert "Secret(s) gh" in refusal and "STEPRUN_REQUIRE_ADMISSION_POLICY=false" in refusal
    # Steps that name nothing run anyway, and an admin may opt out.
    assert authorization_refusal(steprun(), guard, {"team": "ci"}, CONFIG) is None
    opt_out = CONFIG.model_copy(update={"require_admission_policy": False})
    assert authorization_refusal(sr, guard, {"team": "ci"}, opt_out) is None


# ---------------------------------------------------------------- run claims

RUN_CLAIM_SPEC = {
    "context": {"workflow": {"name": "build", "runId": "42"}},
    "workspaces": [{"name": "src", "volumeClaimTemplate": CLAIM_TEMPLATE}],
}
CLAIM_GUARDS = {
    name: case
    for name, case in GUARDS.items()
    # When the StepRun was created does not matter here, only when each claim was.
    if name not in ("installed-after-the-steprun", "binding-after-the-steprun")
}


@pytest.mark.parametrize(("guard", "problem"), CLAIM_GUARDS.values(), ids=CLAIM_GUARDS.keys())
def test_run_claims_fail_closed_without_the_claim_origin_policy(
    guard: AdmissionGuard | None, problem: str | None
) -> None:
    sr = steprun(**RUN_CLAIM_SPEC)
    refusal = claim_origin_refusal(sr, guard, {"team": "ci"}, CONFIG)
    if problem is None:
        assert refusal is None
        return
    assert refusal is not None and problem in refusal
    assert "workspace(s) src mount the claim of the workflow run" in refusal
    assert claim_origin_refusal(steprun(), guard, {"team": "ci"}, CONFIG) is None
    opt_out = CONFIG.model_copy(update={"require_admission_policy": False})
    assert claim_origin_refusal(sr, guard, {"team": "ci"}, opt_out) is None


def run_claim(created: str, annotated: bool = True) -> dict[str, Any]:
    annotations = {"steprun.dev/created-for": "uid-0"} if annotated else {}
    return {"metadata": {"creationTimestamp": created, "annotations": annotations}}


GUARDED_SINCE = AdmissionGuard.read(POLICY, policy_body(), [binding()])


@pytest.mark.parametrize(
    ("claim", "guard", "config", "problem"),
    [
        pytest.param(run_claim("2026-12-01T10:00:01Z"), GUARDED_SINCE, CONFIG, None, id="after"),
        pytest.param(
            run_claim(CREATED), GUARDED_SINCE, CONFIG, "before the claim-origin", id="same-second"
        ),
        pytest.param(
            run_claim("2026-12-01T09:00:00Z"), GUARDED_SINCE, CONFIG, "anyone may", id="before"
        ),
        pytest.param(
            run_claim("2026-12-01T10:00:01Z"), None, CONFIG, "before the claim-origin", id="unread"
        ),
        pytest.param(
            run_claim("2026-12-01T10:00:01Z", annotated=False),
            GUARDED_SINCE,
            CONFIG,
            "steprun did not make it",
            id="planted-without-the-annotation",
        ),
        pytest.param(
            run_claim("2026-12-01T09:00:00Z"),
            None,
            CONFIG.model_copy(update={"require_admission_policy": False}),
            None,
            id="opted-out",
        ),
        pytest.param(
            run_claim("2026-12-01T09:00:00Z", annotated=False),
            None,
            CONFIG.model_copy(update={"require_admission_policy": False}),
            "steprun did not make it",
            id="opted-out-still-needs-the-annotation",
        ),
    ],
)  # fmt: skip
def test_an_existing_run_claim_is_joined_only_when_the_operator_made_it(
    claim: dict[str, Any],
    guard: AdmissionGuard | None,
    config: OperatorConfig,
    problem: str | None,
) -> None:
    found = claim_origin_problem(claim, guard, config)
    assert found is None if problem is None else (found is not None and problem in found)


# ---------------------------------------------------------------- podTemplate


OPEN = CONFIG.model_copy(
    update={
        "pod_label_keys": ["team", "example.com/*"],
        "pod_annotation_keys": ["example.com/*"],
        "node_selector_keys": ["pool"],
        "toleration_keys": ["ci"],
    }
)


def test_labels_and_annotations_reach_the_pod_only_under_admin_patterns() -> None:
    template = {
        "labels": {"app": "payments", "team": "ci", "example.com/tier": "x"},
        "annotations": {
            "sidecar.istio.io/inject": "false",
            "vault.hashicorp.com/agent-inject": "true",
            "example.com/note": "kept",
        },
    }
    sr = steprun(podTemplate=template)
    default_meta = render_pod(sr, 1, CONFIG)["metadata"]
    assert not [k for k in default_meta["labels"] if not k.startswith(("steprun.dev/", "app.k"))]
    assert "annotations" not in default_meta
    meta = render_pod(sr, 1, OPEN)["metadata"]
    assert meta["labels"]["team"] == "ci" and meta["labels"]["example.com/tier"] == "x"
    assert "app" not in meta["labels"]
    assert meta["annotations"] == {"example.com/note": "kept"}
    # The StepRun keeps its own podTemplate: nothing is rewritten there.
    assert sr.spec.pod_template is not None and sr.spec.pod_template.labels == template["labels"]


@pytest.mark.parametrize(
    ("template", "config", "refused"),
    [
        ({"nodeSelector": {"pool": "ci"}}, CONFIG, ["nodeSelector key pool"]),
        ({"nodeSelector": {"pool": "ci"}}, OPEN, []),
        (
            {"nodeSelector": {"node-role.kubernetes.io/control-plane": ""}},
            OPEN,
            ["nodeSelector key node-role.kubernetes.io/control-plane"],
        ),
        ({"tolerations": [{"operator": "Exists"}]}, OPEN, ["tolerations[0] has no key"]),
        (
            {"tolerations": [{"operator": "Exists"}]},
            OPEN.model_copy(update={"allow_wildcard_toleration": True}),
            [],
        ),
        ({"tolerations": [{"key": "ci", "operator": "Exists"}]}, OPEN, []),
        ({"tolerations": [{"key": "ci", "operator": "Exists"}]}, CONFIG, ["tolerations[0] key ci"]),
        (
            {
                "tolerations": [
                    {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}
                ]
            },
            OPEN,
            ["tolerations[0] key node-role.kubernetes.io/control-plane"],
        ),
    ],
)
def test_scheduling_is_bounded(
    template: dict[str, Any], config: OperatorConfig, refused: list[str]
) -> None:
    found = scheduling_refusals(steprun(podTemplate=template), config)
    assert len(found) == len(refused), found
    for expected, message in zip(refused, found, strict=True):
        assert expected in message


def test_sandbox_pods_take_nothing_from_the_pod_template() -> None:
    template = {
        "labels": {"app": "payments", "team": "ci"},
        "annotations": {"example.com/note": "x"},
        "nodeSelector": {"pool": "ci"},
        "tolerations": [{"operator": "Exists"}],
    }
    sr = steprun(mode="sandbox", image=None, sandbox={"plugin": "eslint"}, podTemplate=template)
    assert scheduling_refusals(sr, CONFIG) == []
    decision = sandbox_decision(node_selector={"pool": "sandbox"})
    pod = harden_pod(render_pod(sr, 1, OPEN, decision), decision)
    assert "app" not in pod["metadata"]["labels"] and "team" not in pod["metadata"]["labels"]
    assert "annotations" not in pod["metadata"]
    assert pod["spec"]["nodeSelector"] == {"pool": "sandbox"}
    assert "tolerations" not in pod["spec"]


# ---------------------------------------------------------------- local Pod hardening


def test_local_pods_are_hardened_by_default() -> None:
    spec = render_pod(steprun(), 1, CONFIG)["spec"]
    assert spec["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    assert spec["containers"][0]["securityContext"] == {"allowPrivilegeEscalation": False}
    # No token of the namespace's default ServiceAccount...
    assert spec["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in spec
    # ... but the token of the one a step names.
    # Naming "default" needs no permission at admission, so it gets no token either.
    default = render_pod(steprun(serviceAccountName="default"), 1, CONFIG)["spec"]
    assert default["automountServiceAccountToken"] is False
    named = render_pod(steprun(serviceAccountName="builder"), 1, CONFIG)["spec"]
    assert named["automountServiceAccountToken"] is True
    assert named["serviceAccountName"] == "builder"


def test_hardening_can_be_relaxed_by_the_admin() -> None:
    relaxed = CONFIG.model_copy(update={"local_pod_hardening": False})
    spec = render_pod(steprun(), 1, relaxed)["spec"]
    assert "securityContext" not in spec and "automountServiceAccountToken" not in spec
    assert "securityContext" not in spec["containers"][0]


@pytest.mark.parametrize("hardening", [True, False])
def test_local_pods_comply_with_a_restricted_namespace(hardening: bool) -> None:
    config = CONFIG.model_copy(update={"local_pod_hardening": hardening})
    sr = steprun(context={"secrets": [{**SECRET[0], "as": "file"}]})
    pod = render_pod(sr, 1, config, restricted=True)
    assert restricted_violations(pod) == []
    assert pod["spec"]["securityContext"]["runAsUser"] != 0
    # Unrestricted namespaces keep the image's own user.
    assert "runAsUser" not in render_pod(sr, 1, config)["spec"].get("securityContext", {})
    assert restricted_violations(render_pod(sr, 1, config)) != []


# ---------------------------------------------------------------- sandbox env


@pytest.mark.parametrize(
    ("name", "allowed", "reaches"),
    [
        ("LOG_LEVEL", None, True),
        ("LD_PRELOAD", None, False),
        ("LD_LIBRARY_PATH", None, False),
        ("NODE_OPTIONS", None, False),
        ("PYTHONPATH", None, False),
        ("PYTHONSTARTUP", None, False),
        ("JAVA_TOOL_OPTIONS", None, False),
        ("BASH_ENV", None, False),
        ("ENV", None, False),
        ("PERL5OPT", None, False),
        ("RUBYOPT", None, False),
        ("GIT_CONFIG_COUNT", None, False),
        ("GIT_CONFIG_KEY_0", None, False),
        ("PATH", None, False),
        ("LOG_LEVEL", ["ESLINT_*"], False),
        ("ESLINT_USE_FLAT_CONFIG", ["ESLINT_*"], True),
        ("NODE_OPTIONS", ["NODE_OPTIONS"], True),
    ],
)
def test_author_env_reaching_a_plugin(name: str, allowed: list[str] | None, reaches: bool) -> None:
    sr = steprun(
        mode="sandbox",
        image=None,
        sandbox={"plugin": "eslint", "permissions": ["secrets.read"]},
        env={name: "x"},
        context={"env": {f"CTX_{name}": "y"}, "secrets": [{**SECRET[0], "name": name}]},
    )
    decision = sandbox_decision(allowed_env=allowed)
    assert (name in merged_env(sr, CONFIG, decision)) == reaches
    env = {e["name"] for e in render_pod(sr, 1, CONFIG, decision)["spec"]["containers"][0]["env"]}
    assert (name in env) == reaches
    assert (name in render_configmap(sr, CONFIG, decision)["data"]) == reaches
    # The admin's own policy env is never filtered, nor a local step's env.
    with_policy_env = sandbox_decision(allowed_env=allowed, env={name: "admin"})
    assert merged_env(steprun(), CONFIG, with_policy_env).get(name) == "admin"
    assert name in merged_env(steprun(env={name: "x"}), CONFIG)


# ---------------------------------------------------------------- NetworkPolicies


def network_policy(name: str, selector: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"podSelector": selector, **spec}}


POD_LABELS = {"steprun.dev/name": "lint", "steprun.dev/sandbox": "true", "team": "platform"}


@pytest.mark.parametrize(
    ("policy", "conflict"),
    [
        (network_policy("allow-all", {}, ingress=[{}], policyTypes=["Ingress"]), True),
        (network_policy("egress-out", {"matchLabels": {"team": "platform"}}, egress=[{}]), True),
        (
            network_policy(
                "by-expression",
                {"matchExpressions": [{"key": "steprun.dev/sandbox", "operator": "Exists"}]},
                egress=[{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}],
            ),
            True,
        ),
        (network_policy("deny-all", {}, policyTypes=["Ingress", "Egress"]), False),
        (network_policy("other-app", {"matchLabels": {"app": "payments"}}, ingress=[{}]), False),
        (
            network_policy(
                "excludes-sandboxes",
                {"matchExpressions": [{"key": "steprun.dev/sandbox", "operator": "DoesNotExist"}]},
                ingress=[{}],
            ),
            False,
        ),
        (
            {
                "metadata": {
                    "name": "lint-sandbox",
                    "ownerReferences": [
                        {
                            "apiVersion": API_VERSION,
                            "kind": "StepRun",
                            "name": "lint",
                            "uid": "uid-1",
                        }
                    ],
                },
                "spec": {"podSelector": {}, "egress": [{}]},
            },
            False,
        ),
    ],
    ids=["allow-all", "egress", "expression", "deny-all", "other-app", "excluded", "own"],
)
def test_network_policies_that_reopen_a_sandbox(policy: dict[str, Any], conflict: bool) -> None:
    found = network_policy_conflicts(POD_LABELS, [policy], "uid-1")
    assert bool(found) == conflict
    if conflict:
        assert found[0].startswith(policy["metadata"]["name"])


# ---------------------------------------------------------------- redaction


def test_values_and_their_base64_forms_are_masked() -> None:
    value = "s3cr3t-value"
    stored = base64.b64encode(f"{value}\n".encode()).decode()
    values = secret_values({"TOKEN": stored})
    encoded = base64.b64encode(value.encode()).decode()
    text = f"token={value} b64={encoded} raw={stored}"
    masked = redact(text, values)
    assert value not in masked and encoded not in masked
    assert masked.count(REDACTED) == 3
    assert redact_json({"out": [value, {value: 1}], "n": 2}, values) == {
        "out": [REDACTED, {REDACTED: 1}],
        "n": 2,
    }
    # Values too short to mask without garbling every message are left alone.
    assert redact("abc", secret_values({"K": base64.b64encode(b"abc").decode()})) == "abc"


# ---------------------------------------------------------------- adoption


def live(pod: dict[str, Any]) -> dict[str, Any]:
    """The Pod as the API server returns it: defaults and an injected token volume added."""
    stored = copy.deepcopy(pod)
    spec = stored["spec"]
    spec.update(dnsPolicy="ClusterFirst", schedulerName="default-scheduler", priority=0)
    spec.setdefault("serviceAccountName", "default")
    spec["nodeName"] = "node-1"
    spec.setdefault("securityContext", {})
    spec["tolerations"] = [
        *spec.get("tolerations", []),
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    ]
    for container in spec["containers"]:
        container.update(imagePullPolicy="IfNotPresent", resources=container.get("resources", {}))
    for volume in spec["volumes"]:
        if "configMap" in volume:
            volume["configMap"]["defaultMode"] = 420
    if spec.get("automountServiceAccountToken") is not False:
        spec["volumes"].append(
            {"name": "kube-api-access-x", "projected": {"sources": [{"serviceAccountToken": {}}]}}
        )
        spec["containers"][0]["volumeMounts"].append(
            {
                "name": "kube-api-access-x",
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            }
        )
    return stored


def forged(change: str) -> dict[str, Any]:
    pod = live(render_pod(steprun(), 1, CONFIG))
    spec, container = pod["spec"], pod["spec"]["containers"][0]
    if change == "image":
        container["image"] = "attacker/image"
    elif change == "command":
        container["command"] = ["sh", "-c", "curl evil"]
    elif change == "privileged":
        container["securityContext"] = {"privileged": True}
    elif change == "service-account":
        spec["serviceAccountName"] = "steprun-operator"
        spec["automountServiceAccountToken"] = True
    elif change == "host-path":
        spec["volumes"].append({"name": "root", "hostPath": {"path": "/"}})
    elif change == "init-container":
        spec["initContainers"] = [{"name": "x", "image": "attacker/image"}]
    elif change == "host-network":
        spec["hostNetwork"] = True
    elif change == "labels":
        pod["metadata"]["labels"] = {}
    elif change == "toleration":
        spec["tolerations"].append({"operator": "Exists"})
    elif change == "env":
        container["env"].append({"name": "LD_PRELOAD", "value": "/tmp/x.so"})
    return pod


@pytest.mark.parametrize(
    "change",
    [
        "image",
        "command",
        "privileged",
        "service-account",
        "host-path",
        "init-container",
        "host-network",
        "labels",
        "toleration",
        "env",
    ],
)
def test_a_pod_the_operator_did_not_render_is_not_adopted(change: str) -> None:
    rendered = render_pod(steprun(), 1, CONFIG)
    assert adoption_problems(rendered, forged(change)) != []


@pytest.mark.parametrize(
    "sr",
    [
        steprun(),
        steprun(serviceAccountName="builder", context={"secrets": [{**SECRET[0], "as": "file"}]}),
        steprun(resources={"limits": {"cpu": "1000m", "memory": "1Gi"}}),
    ],
    ids=["plain", "account-and-secret-file", "resources"],
)
def test_the_operators_own_pod_is_adopted(sr: StepRun) -> None:
    rendered = render_pod(sr, 1, CONFIG)
    stored = live(rendered)
    for c in stored["spec"]["containers"]:
        if "resources" in c and c["resources"].get("limits"):
            c["resources"]["limits"] = {"cpu": "1", "memory": "1Gi"}  # canonical form
    assert adoption_problems(rendered, stored) == []


def test_a_context_configmap_with_other_data_is_not_adopted() -> None:
    sr = steprun(env={"A": "1"})
    rendered = render_configmap(sr, CONFIG)
    assert adoption_problems(rendered, copy.deepcopy(rendered)) == []
    planted = copy.deepcopy(rendered)
    planted["data"]["A"] = "2"
    assert adoption_problems(rendered, planted)
    planted = copy.deepcopy(rendered)
    planted["data"]["LD_PRELOAD"] = "/x.so"
    assert adoption_problems(rendered, planted)
