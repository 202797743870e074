"""Tenant safety on the real cluster, with impersonated identities (docs/security.md).

The engine is a ServiceAccount holding only the chart's steprun-engine role; a co-tenant is a
ServiceAccount that may create Pods. This module runs its own operator with the default
(strict) tenancy configuration, watching only this module's namespaces; the session operator is
configured more permissively for the other tests.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from steprun.render.names import claim_name
from tests.cluster.conftest import SandboxPolicies, admission_documents, current_username
from tests.conftest import SESSION_PREFIX, STEP_IMAGE, kubectl_apply
from tests.support.operator_process import OperatorProcess
from tests.support.steps import Steps, eventually

REPO = Path(__file__).resolve().parents[2]
ENGINE_RBAC = REPO / "manifests" / "engine-rbac.yaml"
POD_ORIGIN = REPO / "manifests" / "admission" / "pod-origin.yaml"
TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
PREFIX = f"{SESSION_PREFIX}sec"
# Namespaces carrying this label are the only ones the test copy of the pod-origin policy
# guards: sessions sharing the cluster run operators under other identities elsewhere.
POD_ORIGIN_LABEL = "steprun.dev/e2e-pod-origin"


def apply(kubectl: list[str], documents: list[dict[str, Any]]) -> None:
    kubectl_apply(kubectl, yaml.safe_dump_all(documents))


def impersonating(kubeconfig: str, user: str) -> client.ApiClient:
    api = config.new_client_from_config(config_file=kubeconfig)
    api.set_default_header("Impersonate-User", user)
    return api


@pytest.fixture(scope="module")
def engine_role(kubectl: list[str]) -> str:
    """The chart's steprun-engine ClusterRole, as manifests/ ships it."""
    docs = [d for d in yaml.safe_load_all(ENGINE_RBAC.read_text()) if d]
    (role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    apply(kubectl, [role])
    return str(role["metadata"]["name"])


@pytest.fixture(scope="module")
def tenant_operator(
    kubeconfig: str, steprun_admission: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(
        kubeconfig=kubeconfig,
        log_dir=tmp_path_factory.mktemp("tenant-operator"),
        extra_env={"STEPRUN_NAMESPACES": f'["{PREFIX}-*"]'},
    )
    process.start()
    yield process
    process.stop()


@dataclass
class Tenant:
    namespace: str
    admin: Steps  # the cluster admin's view
    engine: Steps  # StepRuns created as the engine ServiceAccount
    engine_user: str
    rbac: client.RbacAuthorizationV1Api

    def grant(self, name: str, rules: list[dict[str, Any]], user: str | None = None) -> None:
        """A Role with ``rules`` bound to ``user`` (default: the engine)."""
        subject = user or self.engine_user
        _, _, sa_namespace, sa_name = subject.split(":")
        self.rbac.create_namespaced_role(
            self.namespace, {"metadata": {"name": name}, "rules": rules}
        )
        self.rbac.create_namespaced_role_binding(
            self.namespace,
            {
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [
                    {"kind": "ServiceAccount", "name": sa_name, "namespace": sa_namespace}
                ],
            },
        )

    def secret(self, name: str, data: dict[str, str]) -> None:
        self.admin.core.create_namespaced_secret(
            self.namespace, {"metadata": {"name": name}, "stringData": data}
        )


def _namespace(api_client: client.ApiClient, prefix: str = PREFIX) -> str:
    core = client.CoreV1Api(api_client)
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    eventually(
        lambda: (
            core.list_namespaced_service_account(name, field_selector="metadata.name=default").items
        ),
        30,
        f"the default ServiceAccount of {name}",
    )
    return name


@pytest.fixture
def tenant(
    api_client: client.ApiClient,
    kubeconfig: str,
    engine_role: str,
    tenant_operator: OperatorProcess,
) -> Iterator[Tenant]:
    namespace = _namespace(api_client)
    core = client.CoreV1Api(api_client)
    rbac = client.RbacAuthorizationV1Api(api_client)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "engine"}})
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "engine"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": engine_role,
            },
            "subjects": [{"kind": "ServiceAccount", "name": "engine", "namespace": namespace}],
        },
    )
    user = f"system:serviceaccount:{namespace}:engine"
    engine = Steps(impersonating(kubeconfig, user), namespace)
    until_allowed(
        lambda: engine.custom.list_namespaced_custom_object(
            "steprun.dev", "v1alpha1", namespace, "stepruns"
        ),
        "RBAC to let the engine list StepRuns",
    )
    yield Tenant(namespace, Steps(api_client, namespace), engine, user, rbac)
    core.delete_namespace(namespace, propagation_policy="Background")


def until_allowed(create: Callable[[], Any], what: str) -> Any:
    """Retry while RBAC just granted is not yet in the authorizer's cache (403)."""

    def attempt() -> Any:
        try:
            return create() or True
        except client.ApiException as error:
            if error.status == 403:
                return None
            raise

    return eventually(attempt, 20, what)


def refusal(error: client.ApiException) -> str:
    assert error.status == 403, error
    return str(json.loads(error.body)["message"])


def local(script: str, **spec: Any) -> dict[str, Any]:
    return {"image": STEP_IMAGE, "script": script, **spec}


SECRET_ENV = [{"name": "TOKEN", "secretKeyRef": {"name": "gh", "key": "token"}}]


# ------------------------------------------------ admission with the creator's rights


def test_engine_cannot_name_a_secret_it_may_not_read(tenant: Tenant) -> None:
    tenant.secret("gh", {"token": "from-gh"})
    with pytest.raises(client.ApiException) as refused:
        tenant.engine.create("steal", local("echo $TOKEN", context={"secrets": SECRET_ENV}))
    message = refusal(refused.value)
    assert "ValidatingAdmissionPolicy 'steprun-stepruns'" in message, message
    assert f"{tenant.engine_user} may not get Secret gh in namespace {tenant.namespace}" in message
    assert not tenant.admin.exists("steal")


def test_engine_names_a_secret_it_may_read(tenant: Tenant) -> None:
    tenant.secret("gh", {"token": "from-gh"})
    rules = [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["gh"], "verbs": ["get"]}
    ]
    tenant.grant("read-gh", rules)
    spec = local('test "$TOKEN" = from-gh', context={"secrets": SECRET_ENV})
    until_allowed(lambda: tenant.engine.create("allowed", spec), "RBAC to allow reading gh")
    assert tenant.admin.wait_terminal("allowed")["phase"] == "Succeeded"


def test_service_account_needs_the_use_verb(tenant: Tenant) -> None:
    tenant.admin.core.create_namespaced_service_account(
        tenant.namespace, {"metadata": {"name": "builder"}}
    )
    spec = local(f"test -s {TOKEN}", serviceAccountName="builder")
    with pytest.raises(client.ApiException) as refused:
        tenant.engine.create("as-builder", spec)
    message = refusal(refused.value)
    assert f"may not use ServiceAccount builder in namespace {tenant.namespace}" in message
    assert "verb use on serviceaccounts/builder" in message
    use = {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["use"]}
    tenant.grant("use-builder", [{**use, "resourceNames": ["builder"]}])
    until_allowed(lambda: tenant.engine.create("as-builder", spec), "RBAC to allow use")
    status = tenant.admin.wait_terminal("as-builder")
    assert status["phase"] == "Succeeded", status
    (pod,) = tenant.admin.pods("as-builder")
    assert pod.spec.service_account_name == "builder"
    # "default" needs nothing, and gets no token.
    tenant.engine.create("as-default", local(f"test ! -e {TOKEN}", serviceAccountName="default"))
    assert tenant.admin.wait_terminal("as-default")["phase"] == "Succeeded"


def test_engine_cannot_mount_a_claim_it_may_not_read(tenant: Tenant) -> None:
    tenant.admin.core.create_namespaced_persistent_volume_claim(
        tenant.namespace,
        {
            "metadata": {"name": "payroll"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "16Mi"}},
            },
        },
    )
    workspace = {"name": "data", "persistentVolumeClaim": {"claimName": "payroll"}}
    spec = local("ls /workspace/data", workspaces=[workspace])
    with pytest.raises(client.ApiException) as refused:
        tenant.engine.create("mount", spec)
    message = refusal(refused.value)
    assert (
        f"{tenant.engine_user} may not get PersistentVolumeClaim payroll in namespace "
        f"{tenant.namespace}" in message
    ), message
    assert not tenant.admin.exists("mount")
    rules = [
        {
            "apiGroups": [""],
            "resources": ["persistentvolumeclaims"],
            "resourceNames": ["payroll"],
            "verbs": ["get"],
        }
    ]
    tenant.grant("read-payroll", rules)
    until_allowed(lambda: tenant.engine.create("mount", spec), "RBAC to allow reading payroll")
    assert tenant.admin.wait_terminal("mount")["phase"] == "Succeeded"


# ---------------------------------------------------------------- run claims

CLAIM_TEMPLATE = {
    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "16Mi"}}}
}
PVCS = {"apiGroups": [""], "resources": ["persistentvolumeclaims"]}


def run_claim_step(run_id: str, script: str) -> dict[str, Any]:
    return local(
        script,
        context={"workflow": {"name": "build", "runId": run_id}},
        workspaces=[{"name": "src", "volumeClaimTemplate": CLAIM_TEMPLATE}],
    )


def test_a_template_workspace_needs_create_and_get_on_claims(tenant: Tenant) -> None:
    spec = run_claim_step("1", "echo shared > f")
    with pytest.raises(client.ApiException) as refused:
        tenant.engine.create("first", spec)
    message = refusal(refused.value)
    assert (
        f"{tenant.engine_user} may not create PersistentVolumeClaims in namespace "
        f"{tenant.namespace}: workspace src has a volumeClaimTemplate" in message
    ), message
    tenant.grant("create-claims", [{**PVCS, "verbs": ["create"]}])

    def refused_for_get() -> str | None:
        try:
            tenant.engine.create("first", spec)
        except client.ApiException as error:
            message = refusal(error)
            return message if "may not get PersistentVolumeClaims" in message else None
        raise AssertionError("a template workspace was admitted without get on claims")

    message = eventually(refused_for_get, 20, "the refusal naming get")
    assert "mounts the claim of the run" in message, message
    assert not tenant.admin.exists("first")
    tenant.grant("get-claims", [{**PVCS, "verbs": ["get"]}])
    until_allowed(lambda: tenant.engine.create("first", spec), "RBAC to allow get on claims")
    assert tenant.admin.wait_terminal("first", timeout=120)["phase"] == "Succeeded"
    # The legitimate path: the next step of the run mounts the same claim.
    tenant.engine.create("second", run_claim_step("1", 'test "$(cat f)" = shared'))
    assert tenant.admin.wait_terminal("second", timeout=120)["phase"] == "Succeeded"


def test_a_claim_planted_with_steprun_labels_is_refused_and_never_joined(
    tenant: Tenant, kubeconfig: str, claim_origin_everywhere: str
) -> None:
    tenant.admin.core.create_namespaced_service_account(
        tenant.namespace, {"metadata": {"name": "cotenant"}}
    )
    cotenant = f"system:serviceaccount:{tenant.namespace}:cotenant"
    tenant.grant(
        "cotenant",
        [
            {
                "apiGroups": [""],
                "resources": ["pods", "persistentvolumeclaims"],
                "verbs": ["create"],
            },
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]},
        ],
        cotenant,
    )
    tenant.grant("claims", [{**PVCS, "verbs": ["create", "get"]}])
    as_cotenant = client.CoreV1Api(impersonating(kubeconfig, cotenant))
    name = claim_name("build", "2", "src")
    labels = {
        "app.kubernetes.io/managed-by": "steprun",
        "steprun.dev/component": "workspace",
        "steprun.dev/workflow": "build",
        "steprun.dev/run-id": "2",
        "steprun.dev/workspace": "src",
    }
    planted = {"metadata": {"name": name, "labels": labels}, "spec": CLAIM_TEMPLATE["spec"]}

    def refused() -> str | None:
        try:
            as_cotenant.create_namespaced_persistent_volume_claim(
                tenant.namespace, planted, dry_run="All"
            )
        except client.ApiException as error:
            body = str(error.body)
            return body if error.status == 403 and claim_origin_everywhere in body else None
        return None  # admitted: the policy is not enforced yet (or not at all)

    message = eventually(refused, 30, "the claim-origin policy to refuse the co-tenant")
    assert "only by the steprun operator" in " ".join(message.replace("\\n", " ").split())
    # The operator's own check, for a claim made before the policy guarded the namespace (here
    # by an identity the policy allows): labels alone do not make it the run's.
    tenant.admin.core.create_namespaced_persistent_volume_claim(tenant.namespace, planted)
    tenant.engine.create("squatted", run_claim_step("2", "echo mine > f"))
    status = tenant.admin.wait_terminal("squatted")
    assert (status["phase"], status["reason"]) == ("Failed", "WorkspaceUnavailable"), status
    assert "steprun did not make it" in status["message"], status
    claim = tenant.admin.core.read_namespaced_persistent_volume_claim(name, tenant.namespace)
    assert not claim.metadata.owner_references


@pytest.fixture
def operator_without_claim_origin(
    api_client: client.ApiClient, kubeconfig: str, tmp_path: Path
) -> Iterator[tuple[OperatorProcess, str]]:
    """An operator told to rely on a claim-origin policy that does not exist."""
    namespace = _namespace(api_client, f"{SESSION_PREFIX}noclaims")
    process = OperatorProcess(
        kubeconfig=kubeconfig,
        log_dir=tmp_path,
        extra_env={
            "STEPRUN_NAMESPACES": json.dumps([namespace]),
            "STEPRUN_CLAIM_ORIGIN_POLICY": f"e2e-absent-{uuid.uuid4().hex[:6]}",
        },
    )
    process.start()
    yield process, namespace
    process.stop()
    client.CoreV1Api(api_client).delete_namespace(namespace, propagation_policy="Background")


def test_run_claims_are_not_used_without_the_claim_origin_policy(
    api_client: client.ApiClient, operator_without_claim_origin: tuple[OperatorProcess, str]
) -> None:
    process, namespace = operator_without_claim_origin
    steps = Steps(api_client, namespace)
    steps.create("with-run-claim", run_claim_step("3", "true"))
    steps.create("plain", local("true"))
    status = steps.wait_terminal("with-run-claim")
    assert (status["phase"], status["reason"]) == ("Rejected", "PermissionDenied"), status
    assert "workspace(s) src mount the claim of the workflow run" in status["message"], status
    assert "is not installed" in status["message"], status
    assert steps.pods("with-run-claim") == []
    assert steps.core.list_namespaced_persistent_volume_claim(namespace).items == []
    assert steps.wait_terminal("plain")["phase"] == "Succeeded"
    assert "claim-origin admission policy missing" in process.log()


# ---------------------------------------------------------------- fail closed, system namespaces


@pytest.fixture
def unguarded_operator(
    api_client: client.ApiClient, kubeconfig: str, tmp_path: Path, steprun_admission: str
) -> Iterator[tuple[OperatorProcess, str, str]]:
    """An operator told to rely on an admission policy that does not exist, whose own
    namespace is ``own``; it also watches kube-system."""
    # Not matched by the module operator's pattern: only this operator may answer there.
    watched, own = (_namespace(api_client, f"{SESSION_PREFIX}unguarded") for _ in range(2))
    process = OperatorProcess(
        kubeconfig=kubeconfig,
        log_dir=tmp_path,
        extra_env={
            "STEPRUN_NAMESPACES": json.dumps([watched, own, "kube-system"]),
            "STEPRUN_ADMISSION_POLICY": f"e2e-absent-{uuid.uuid4().hex[:6]}",
            "STEPRUN_OPERATOR_NAMESPACE": own,
        },
    )
    process.start()
    yield process, watched, own
    process.stop()
    core = client.CoreV1Api(api_client)
    for name in (watched, own):
        core.delete_namespace(name, propagation_policy="Background")


def test_steps_naming_secrets_do_not_run_without_the_policy(
    api_client: client.ApiClient, unguarded_operator: tuple[OperatorProcess, str, str]
) -> None:
    process, namespace, _ = unguarded_operator
    assert "StepRun admission policy missing" in process.log()
    steps = Steps(api_client, namespace)
    steps.core.create_namespaced_secret(
        namespace, {"metadata": {"name": "gh"}, "stringData": {"token": "t0ken-value"}}
    )
    steps.create("with-secret", local("true", context={"secrets": SECRET_ENV}))
    steps.create("with-account", local("true", serviceAccountName="builder"))
    steps.create("plain", local("true"))
    for name, what in (("with-secret", "Secret(s) gh"), ("with-account", "ServiceAccount builder")):
        status = steps.wait_terminal(name)
        assert status["phase"] == "Rejected" and status["reason"] == "PermissionDenied", status
        assert what in status["message"] and "is not installed" in status["message"]
        assert steps.pods(name) == []
    assert steps.wait_terminal("plain")["phase"] == "Succeeded"


def test_system_and_operator_namespaces_are_not_served(
    api_client: client.ApiClient, unguarded_operator: tuple[OperatorProcess, str, str]
) -> None:
    _, _, own = unguarded_operator
    for namespace, why in (
        (own, "the steprun operator's own"),
        ("kube-system", "system namespace"),
    ):
        steps = Steps(api_client, namespace)
        name = f"e2e-{uuid.uuid4().hex[:6]}"
        steps.create(name, local("true"))
        try:
            status = steps.wait_terminal(name)
            assert status["phase"] == "Rejected", status
            assert why in status["message"], status
            assert steps.pods(name) == []
        finally:
            steps.custom.delete_namespaced_custom_object(
                "steprun.dev", "v1alpha1", namespace, "stepruns", name
            )


# ---------------------------------------------------------------- Pod metadata and scheduling


def test_pod_template_metadata_and_scheduling_are_bounded(tenant: Tenant) -> None:
    template = {
        "labels": {"app": "payments", "team": "ci"},
        "annotations": {
            "sidecar.istio.io/inject": "false",
            "vault.hashicorp.com/agent-inject": "true",
        },
    }
    tenant.engine.create("joined", local("true", podTemplate=template))
    tenant.engine.create(
        "everywhere", local("true", podTemplate={"tolerations": [{"operator": "Exists"}]})
    )
    control_plane = {"nodeSelector": {"node-role.kubernetes.io/control-plane": ""}}
    tenant.engine.create("control-plane", local("true", podTemplate=control_plane))
    assert tenant.admin.wait_terminal("joined")["phase"] == "Succeeded"
    (pod,) = tenant.admin.pods("joined")
    assert not {"app", "team"} & set(pod.metadata.labels)
    assert not pod.metadata.annotations or not set(template["annotations"]) & set(
        pod.metadata.annotations
    )
    # The StepRun keeps what its author wrote.
    assert tenant.admin.get("joined")["spec"]["podTemplate"]["labels"] == template["labels"]
    for name, what in (
        ("everywhere", "wildcard tolerations are not allowed"),
        ("control-plane", "nodeSelector key node-role.kubernetes.io/control-plane"),
    ):
        status = tenant.admin.wait_terminal(name)
        assert status["phase"] == "Rejected" and what in status["message"], status
        assert tenant.admin.pods(name) == []


# ---------------------------------------------------------------- local Pod hardening


def test_local_pods_are_hardened_by_default(tenant: Tenant) -> None:
    tenant.engine.create("hardened", local(f"test ! -e {TOKEN}"))
    assert tenant.admin.wait_terminal("hardened")["phase"] == "Succeeded"
    (pod,) = tenant.admin.pods("hardened")
    assert pod.spec.automount_service_account_token is False
    assert pod.spec.security_context.seccomp_profile.type == "RuntimeDefault"
    assert pod.spec.containers[0].security_context.allow_privilege_escalation is False


def test_local_steps_run_in_a_restricted_namespace(tenant: Tenant) -> None:
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    tenant.admin.core.patch_namespace(tenant.namespace, {"metadata": {"labels": labels}})
    tenant.secret("gh", {"token": "from-gh"})
    secrets = [{**SECRET_ENV[0], "as": "file"}]
    spec = local('test "$(cat $STEPRUN_SECRETS_DIR/TOKEN)" = from-gh', context={"secrets": secrets})
    tenant.admin.create("restricted", spec)
    status = tenant.admin.wait_terminal("restricted")
    assert status["phase"] == "Succeeded", status
    (pod,) = tenant.admin.pods("restricted")
    assert pod.spec.security_context.run_as_non_root is True
    assert pod.spec.containers[0].security_context.capabilities.drop == ["ALL"]


# ---------------------------------------------------------------- sandbox bounds and network


def plugin_step(policy: str, script: str, **spec: Any) -> dict[str, Any]:
    return {
        "mode": "sandbox",
        "sandbox": {"policy": policy, "plugin": "sh"},
        "args": [script],
        **spec,
    }


SH = {"name": "sh", "image": STEP_IMAGE, "command": ["/bin/sh", "-c"]}


def test_sandbox_bounds_cannot_be_skipped(
    tenant: Tenant, sandbox_policies: SandboxPolicies, sandbox_admission: str
) -> None:
    policy = sandbox_policies.create(
        "bounded",
        {
            "plugins": [SH],
            "grants": ["workspaces.mount"],
            "defaultResources": {"limits": {"cpu": "200m"}},
            "maxResources": {"cpu": "500m", "memory": "128Mi", "ephemeral-storage": "64Mi"},
        },
    )
    script = 'test -z "$NODE_OPTIONS" && test -z "$BASH_ENV" && test "$KEPT" = yes'
    env = {"NODE_OPTIONS": "--require /tmp/x.js", "BASH_ENV": "/tmp/x", "KEPT": "yes"}
    spec = plugin_step(policy, script, resources={}, terminationGracePeriodSeconds=3600, env=env)
    # The author's own size for a scratch workspace is no way past the policy's bound.
    spec["sandbox"]["permissions"] = ["workspaces.mount"]
    spec["workspaces"] = [
        {"name": "big", "emptyDir": {"sizeLimit": "100Gi"}},
        {"name": "small", "emptyDir": {"sizeLimit": "1Mi"}},
    ]
    tenant.engine.create("bounded", spec)
    status = tenant.admin.wait_terminal("bounded")
    assert status["phase"] == "Succeeded", status
    (pod,) = tenant.admin.pods("bounded")
    limits = pod.spec.containers[0].resources.limits
    assert limits == {"cpu": "200m", "memory": "128Mi", "ephemeral-storage": "64Mi"}, limits
    dirs = {v.name: v.empty_dir for v in pod.spec.volumes if v.empty_dir is not None}
    assert dirs.pop("ws-1").size_limit == "1Mi"
    assert "ws-0" in dirs and all(d.size_limit == "64Mi" for d in dirs.values()), dirs
    assert pod.spec.termination_grace_period_seconds == 30


def test_a_sandbox_policy_other_than_default_needs_the_use_verb(
    tenant: Tenant, kubeconfig: str, sandbox_policies: SandboxPolicies, sandbox_admission: str
) -> None:
    policy = sandbox_policies.create("trusted", {"plugins": [SH]})
    spec = plugin_step(policy, "true")
    # An author who may create StepRuns here but was granted no SandboxPolicy.
    tenant.admin.core.create_namespaced_service_account(
        tenant.namespace, {"metadata": {"name": "author"}}
    )
    author_user = f"system:serviceaccount:{tenant.namespace}:author"
    stepruns = {"apiGroups": ["steprun.dev"], "resources": ["stepruns"]}
    tenant.grant("author", [{**stepruns, "verbs": ["create", "get", "list"]}], user=author_user)
    author = Steps(impersonating(kubeconfig, author_user), tenant.namespace)

    def refused_for_the_policy() -> str | None:
        try:
            author.create("by-author", spec)
        except client.ApiException as error:
            message = refusal(error)
            # Until RBAC has the Role, the refusal is for the StepRun itself.
            return message if "SandboxPolicy" in message else None
        raise AssertionError("a StepRun naming an ungranted SandboxPolicy was admitted")

    message = eventually(refused_for_the_policy, 20, "the refusal naming the policy")
    assert f"may not use SandboxPolicy {policy} in namespace {tenant.namespace}" in message
    assert f"verb use on sandboxpolicies.steprun.dev/{policy}" in message
    use = {"apiGroups": ["steprun.dev"], "resources": ["sandboxpolicies"], "verbs": ["use"]}
    tenant.grant("use-trusted", [{**use, "resourceNames": [policy]}], user=author_user)
    until_allowed(lambda: author.create("by-author", spec), "RBAC to allow use of the policy")
    status = tenant.admin.wait_terminal("by-author")
    assert status["phase"] == "Succeeded", status
    # The chart's engine role holds use on every policy unless engine.sandboxPolicies narrows it.
    tenant.engine.create("by-engine", spec)
    assert tenant.admin.wait_terminal("by-engine")["phase"] == "Succeeded"


def test_a_network_policy_reopening_a_sandbox_refuses_the_step(
    tenant: Tenant, sandbox_policies: SandboxPolicies, sandbox_admission: str
) -> None:
    policy = sandbox_policies.create("net", {"plugins": [SH]})
    client.NetworkingV1Api(tenant.admin.api).create_namespaced_network_policy(
        tenant.namespace,
        {
            "metadata": {"name": "allow-all-ingress"},
            "spec": {"podSelector": {}, "ingress": [{}], "policyTypes": ["Ingress"]},
        },
    )
    tenant.engine.create("reopened", plugin_step(policy, "true"))
    status = tenant.admin.wait_terminal("reopened")
    assert status["phase"] == "Rejected", status
    assert "NetworkPolicy allow-all-ingress (allows ingress)" in status["message"]
    assert tenant.admin.pods("reopened") == []


# ---------------------------------------------------------------- redaction


def test_a_failing_step_that_prints_a_secret_leaks_it_nowhere(
    tenant: Tenant, tenant_operator: OperatorProcess
) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    encoded = base64.b64encode(canary.encode()).decode()
    tenant.secret("gh", {"token": canary})
    script = (
        'printf "token %s\\nencoded %s\\n" "$TOKEN" "$(printf %s "$TOKEN" | base64)" '
        '> "$STEPRUN_OUTPUT_FILE"; exit 3'
    )
    tenant.admin.create(
        "leaky",
        local(script, context={"secrets": SECRET_ENV}, retries={"limit": 1, "backoffSeconds": 0}),
    )
    status = tenant.admin.wait_terminal("leaky")
    assert status["phase"] == "Failed" and status["exitCode"] == 3, status
    assert "token ***" in status["message"], status["message"]
    texts = [json.dumps(status)]
    texts += [e.message or "" for e in tenant.admin.events("leaky")]
    texts.append(tenant_operator.log())
    for text in texts:
        assert canary not in text and encoded not in text
    assert len(status["attempts"]) == 2


# ---------------------------------------------------------------- trust only what the operator made


def test_unowned_context_objects_survive(tenant: Tenant) -> None:
    core = tenant.admin.core
    core.create_namespaced_config_map(
        tenant.namespace, {"metadata": {"name": "squatted-context"}, "data": {"mine": "1"}}
    )
    tenant.secret("gh", {"token": "x"})
    tenant.secret("secretive-context", {"mine": "2"})
    tenant.admin.create("squatted", local("true"))
    tenant.admin.create("secretive", local("true", context={"secrets": SECRET_ENV}))
    for name in ("squatted", "secretive"):
        status = tenant.admin.wait_terminal(name)
        assert status["phase"] == "Failed" and status["reason"] == "PodCreateFailed", status
        assert "not owned by this StepRun" in status["message"]
    time.sleep(2)  # the operator's cleanup ran when the status was written; nothing follows
    assert core.read_namespaced_config_map("squatted-context", tenant.namespace).data == {
        "mine": "1"
    }
    kept = core.read_namespaced_secret("secretive-context", tenant.namespace).data
    assert base64.b64decode(kept["mine"]) == b"2"


@pytest.fixture(scope="module")
def pod_origin(api_client: client.ApiClient, kubectl: list[str]) -> str:
    """The pod-origin policy, as shipped but bound to labelled namespaces only (sessions sharing
    the cluster run operators under other identities) and allowing this session's operator."""
    docs = admission_documents([current_username(api_client)], POD_ORIGIN)
    binding = next(d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding")
    binding["spec"]["matchResources"] = {
        "namespaceSelector": {"matchLabels": {POD_ORIGIN_LABEL: "enforced"}}
    }
    apply(kubectl, docs)
    return str(binding["metadata"]["name"])


def planted_pod(steps: Steps, name: str, attempt: int) -> dict[str, Any]:
    """What a co-tenant plants: the next attempt's name, labels and owner, its own command."""
    steprun = steps.get(name)
    (first,) = steps.pods(name)
    labels = {**first.metadata.labels, "steprun.dev/attempt": str(attempt)}
    owner = {
        "apiVersion": "steprun.dev/v1alpha1",
        "kind": "StepRun",
        "name": name,
        "uid": steprun["metadata"]["uid"],
        "controller": True,
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{name}-{attempt}", "labels": labels, "ownerReferences": [owner]},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "step", "image": STEP_IMAGE, "command": ["sleep", "600"]}],
        },
    }


@pytest.mark.parametrize("guarded", [False, True], ids=["operator-check", "pod-origin-policy"])
def test_a_pod_planted_by_a_co_tenant_is_never_adopted(
    tenant: Tenant, kubeconfig: str, pod_origin: str, guarded: bool
) -> None:
    if guarded:
        labels = {POD_ORIGIN_LABEL: "enforced"}
        tenant.admin.core.patch_namespace(tenant.namespace, {"metadata": {"labels": labels}})
    tenant.admin.core.create_namespaced_service_account(
        tenant.namespace, {"metadata": {"name": "cotenant"}}
    )
    cotenant = f"system:serviceaccount:{tenant.namespace}:cotenant"
    tenant.grant(
        "pods", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}], cotenant
    )
    as_cotenant = client.CoreV1Api(impersonating(kubeconfig, cotenant))
    spec = local(
        '[ "$STEPRUN_ATTEMPT" -ge 2 ] || exit 1', retries={"limit": 1, "backoffSeconds": 20}
    )
    tenant.engine.create("target", spec)
    eventually(
        lambda: tenant.admin.status("target").get("nextAttemptTime"), 60, "the retry backoff"
    )
    planted = planted_pod(tenant.admin, "target", 2)
    if guarded:

        def refused() -> str | None:
            try:
                as_cotenant.create_namespaced_pod(tenant.namespace, planted, dry_run="All")
            except client.ApiException as error:
                return str(error.body) if error.status == 403 else None
            return None

        message = eventually(refused, 30, "the pod-origin policy to refuse the co-tenant")
        assert f"ValidatingAdmissionPolicy '{pod_origin}'" in message, message
        assert "only by the\\nsteprun operator" in message or "only by the steprun" in message
        status = tenant.admin.wait_terminal("target", timeout=60)
        assert status["phase"] == "Succeeded", status
        return
    until_allowed(lambda: as_cotenant.create_namespaced_pod(tenant.namespace, planted), "RBAC")
    status = tenant.admin.wait_terminal("target", timeout=60)
    assert status["phase"] == "Failed" and status["reason"] == "PodCreateFailed", status
    assert "is not what the operator made" in status["message"], status
    # Left alone: not adopted, not deleted.
    pod = tenant.admin.core.read_namespaced_pod("target-2", tenant.namespace)
    assert pod.spec.containers[0].command == ["sleep", "600"]
    assert pod.metadata.deletion_timestamp is None
