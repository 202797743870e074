"""The Helm chart and the manifests generated from it: in sync, and saying what they should.

Rendering needs the pinned helm binary (``make helm`` builds it). Without it these tests are
skipped, except in CI (``CI=true``), where ``make test`` installs helm first, so a missing
binary is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from steprun.api.models import MAX_ARTIFACTS, MAX_SECRETS, MAX_WORKSPACES
from steprun.config import OperatorConfig
from steprun.render.sandbox import restricted_violations

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "steprun"
MANIFESTS = REPO / "manifests"
GEN = REPO / "hack" / "gen-manifests.sh"
Doc = dict[str, Any]


def _pinned(expression: str) -> str:
    return subprocess.run(
        ["bash", "-c", f". {REPO}/hack/versions.sh; echo {expression}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.fixture(scope="module")
def helm() -> str:
    given = os.environ.get("HELM")
    candidate = Path(given) if given else Path(_pinned('"$STEPRUN_CACHE/helm/$HELM_VERSION/helm"'))
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    message = f"helm is not installed at {candidate} (make helm builds it)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def render(
    helm: str, *args: str, release: str = "steprun", namespace: str = "steprun-system"
) -> list[Doc]:
    result = subprocess.run(
        [helm, "template", release, str(CHART), "--namespace", namespace, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def render_error(helm: str, *args: str) -> str:
    result = subprocess.run(
        [helm, "template", "steprun", str(CHART), *args], capture_output=True, text=True
    )
    assert result.returncode != 0, "expected helm to refuse these values"
    return result.stderr


def one(docs: Sequence[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, [(d["kind"], d["metadata"]["name"]) for d in docs]
    return found[0]


def env_of(docs: Sequence[Doc]) -> dict[str, Any]:
    container = one(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def rules_of(
    docs: Sequence[Doc], name: str, kind: str = "ClusterRole", namespace: str | None = None
) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) triples a ClusterRole (or the Role of ``namespace``) grants;
    resourceNames marked on the verb."""
    granted = set()
    roles = [
        d
        for d in docs
        if d["kind"] == kind
        and d["metadata"]["name"] == name
        and d["metadata"].get("namespace") == namespace
    ]
    assert len(roles) == 1, (kind, name, namespace, len(roles))
    for rule in roles[0]["rules"]:
        suffix = f"[{','.join(rule['resourceNames'])}]" if rule.get("resourceNames") else ""
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    granted.add((group, resource, verb + suffix))
    return granted


# ---------------------------------------------------------------- sources in sync


def test_chart_crds_are_the_generated_crds() -> None:
    generated = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    assert generated, "crds/ is empty"
    for name in generated:
        assert (CHART / "crds" / name).read_bytes() == (REPO / "crds" / name).read_bytes(), (
            f"helm/steprun/crds/{name} differs from crds/{name}: run hack/gen-manifests.sh"
        )


def test_manifests_are_the_rendered_chart(helm: str) -> None:
    result = subprocess.run(
        [str(GEN), "--check"], capture_output=True, text=True, env={**os.environ, "HELM": helm}
    )
    assert result.returncode == 0, result.stderr[-6000:]


def test_drift_check_names_the_drifted_file(helm: str, tmp_path: Path) -> None:
    copy = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, copy)
    operator = copy / "operator.yaml"
    operator.write_text(operator.read_text().replace("replicas: 2", "replicas: 3"))
    result = subprocess.run(
        [str(GEN), "--check", "--dir", str(copy)],
        capture_output=True,
        text=True,
        env={**os.environ, "HELM": helm},
    )
    assert result.returncode != 0
    assert "operator.yaml" in result.stderr
    assert "replicas: 3" in result.stderr


def test_kustomization_lists_every_manifest() -> None:
    listed: set[Path] = set()

    def walk(directory: Path) -> None:
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
        for entry in kustomization["resources"]:
            path = directory / entry
            assert path.exists(), f"{directory}/kustomization.yaml lists missing {entry}"
            if path.is_dir():
                walk(path)
            else:
                listed.add(path)

    walk(MANIFESTS)
    on_disk = {p for p in MANIFESTS.rglob("*.yaml") if p.name != "kustomization.yaml"}
    assert listed == on_disk


def test_kustomize_builds_the_manifests() -> None:
    built = Path(_pinned('"$(k8s_bin_dir)/kubectl"'))
    kubectl = str(built) if built.exists() else shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl to run kustomize with")
    result = subprocess.run(
        [kubectl, "kustomize", str(MANIFESTS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(result.stdout) if d)
    assert kinds.count("CustomResourceDefinition") == 3
    for kind in ("Namespace", "ServiceAccount", "StatefulSet", "ClusterKopfPeering"):
        assert kind in kinds


# ---------------------------------------------------------------- what the chart says


def test_helm_lint_is_clean(helm: str) -> None:
    for args in (
        [],
        ["--set", "watchNamespaces={ci-*}"],
        ["--set", "replicas=1", "--set", "watchNamespaces={ci-*}"],
    ):
        result = subprocess.run(
            [helm, "lint", "--strict", str(CHART), *args], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


def test_default_install_peers_two_replicas_cluster_wide(helm: str) -> None:
    docs = render(helm)
    sts = one(docs, "StatefulSet", "steprun-operator")
    assert sts["spec"]["replicas"] == 2
    assert sts["spec"]["serviceName"] == one(docs, "Service")["metadata"]["name"]
    env = env_of(docs)
    assert json.loads(env["STEPRUN_NAMESPACES"]) == []
    assert env["STEPRUN_PEERING"] == "steprun"
    assert env["STEPRUN_PEERING_LIFETIME"] == "60"
    assert OperatorConfig(peering_lifetime=env["STEPRUN_PEERING_LIFETIME"]).peering_lifetime == 60
    assert env["STEPRUN_PRIORITY"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert one(docs, "ClusterKopfPeering")["metadata"]["name"] == "steprun"
    assert not [d for d in docs if d["kind"] == "KopfPeering"]
    granted = rules_of(docs, "steprun-operator")
    assert {
        ("kopf.dev", "clusterkopfpeerings", v) for v in ("list", "watch", "patch[steprun]")
    } <= granted
    assert not {g for g in granted if g[1] == "kopfpeerings"}


def test_replicas_get_distinct_priorities_from_their_pod_names(helm: str) -> None:
    sts = one(render(helm, "--set", "replicas=3"), "StatefulSet")
    name = sts["metadata"]["name"]
    priorities = [
        OperatorConfig(priority=f"{name}-{ordinal}").priority
        for ordinal in range(sts["spec"]["replicas"])
    ]
    assert priorities == [100, 99, 98]


def _peers_cluster_wide(docs: Sequence[Doc]) -> None:
    """One ClusterKopfPeering named after the release, RBAC for it alone, no KopfPeering."""
    assert one(docs, "ClusterKopfPeering")["metadata"]["name"] == "steprun"
    assert not [d for d in docs if d["kind"] == "KopfPeering"]
    assert env_of(docs)["STEPRUN_PEERING"] == "steprun"
    peering_rules = {g for g in rules_of(docs, "steprun-operator") if g[0] == "kopf.dev"}
    assert peering_rules == {
        ("kopf.dev", "clusterkopfpeerings", v) for v in ("list", "watch", "patch[steprun]")
    }


def test_watched_namespaces_peer_cluster_wide_too(helm: str) -> None:
    docs = render(helm, "--set", "watchNamespaces={ci,builds}")
    assert json.loads(env_of(docs)["STEPRUN_NAMESPACES"]) == ["ci", "builds"]
    _peers_cluster_wide(docs)
    granted = rules_of(docs, "steprun-operator")
    assert {("", "namespaces", v) for v in ("get", "list", "watch")} <= granted


def test_patterns_work_with_several_replicas(helm: str) -> None:
    docs = render(helm, "--set", "watchNamespaces={ci-*,!ci-pr-*}")
    assert one(docs, "StatefulSet")["spec"]["replicas"] == 2
    assert json.loads(env_of(docs)["STEPRUN_NAMESPACES"]) == ["ci-*", "!ci-pr-*"]
    _peers_cluster_wide(docs)
    granted = rules_of(docs, "steprun-operator")
    assert {("", "namespaces", v) for v in ("get", "list", "watch")} <= granted


def test_a_single_replica_does_not_peer(helm: str) -> None:
    docs = render(helm, "--set", "watchNamespaces={ci-*}", "--set", "replicas=1")
    env = env_of(docs)
    assert json.loads(env["STEPRUN_NAMESPACES"]) == ["ci-*"]
    assert "STEPRUN_PEERING" not in env and "STEPRUN_PRIORITY" not in env
    assert "STEPRUN_PEERING_LIFETIME" not in env
    assert not [d for d in docs if "Peering" in d["kind"]]
    assert not {g for g in rules_of(docs, "steprun-operator") if g[0] == "kopf.dev"}


def test_peering_name_and_lifetime_are_settable(helm: str) -> None:
    docs = render(helm, "--set", "peering.name=ops-peers", "--set", "peering.lifetime=10")
    env = env_of(docs)
    assert env["STEPRUN_PEERING"] == "ops-peers"
    assert OperatorConfig(peering_lifetime=env["STEPRUN_PEERING_LIFETIME"]).peering_lifetime == 10
    assert one(docs, "ClusterKopfPeering")["metadata"]["name"] == "ops-peers"
    assert ("kopf.dev", "clusterkopfpeerings", "patch[ops-peers]") in rules_of(
        docs, "steprun-operator"
    )


NAMESPACED_OPERATOR_RULES = {
    ("steprun.dev", "stepruns", "get"),
    ("steprun.dev", "stepruns", "list"),
    ("steprun.dev", "stepruns", "watch"),
    ("steprun.dev", "stepruns", "delete"),
    ("steprun.dev", "stepruns/status", "patch"),
    *{("", "pods", v) for v in ("create", "get", "list", "watch", "delete", "patch")},
    ("", "pods/log", "get"),
    *{("", r, v) for r in ("configmaps", "secrets") for v in ("create", "get", "delete")},
    *{("", "persistentvolumeclaims", v) for v in ("create", "get", "patch")},
    *{("networking.k8s.io", "networkpolicies", v) for v in ("create", "get", "list")},
    ("", "events", "create"),
    ("", "events", "list"),
    *{("kueue.x-k8s.io", "workloads", v) for v in ("create", "get", "list", "watch", "delete")},
    ("kueue.x-k8s.io", "workloads/status", "patch"),
    ("kueue.x-k8s.io", "localqueues", "get"),
}
CLUSTER_OPERATOR_RULES = {
    ("steprun.dev", "sandboxpolicies", "get"),
    ("kueue.x-k8s.io", "resourceflavors", "get"),
    ("kueue.x-k8s.io", "workloadpriorityclasses", "get"),
    (
        "admissionregistration.k8s.io",
        "validatingadmissionpolicies",
        "get[steprun-stepruns,steprun-claim-origin]",
    ),
    ("admissionregistration.k8s.io", "validatingadmissionpolicybindings", "list"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
}


def test_operator_role_is_exactly_what_the_operator_uses(helm: str) -> None:
    granted = rules_of(render(helm, "--set", "replicas=1"), "steprun-operator")
    assert granted == {
        *NAMESPACED_OPERATOR_RULES,
        *CLUSTER_OPERATOR_RULES,
        ("", "namespaces", "get"),
    }


def test_namespaced_install_grants_namespaced_rights_only_where_it_watches(helm: str) -> None:
    docs = render(helm, "--set", "replicas=1", "--set", "watchNamespaces={ci,builds}")
    assert rules_of(docs, "steprun-operator") == {
        *CLUSTER_OPERATOR_RULES,
        *{("", "namespaces", v) for v in ("get", "list", "watch")},
    }
    for namespace in ("ci", "builds"):
        assert rules_of(docs, "steprun-operator", "Role", namespace) == NAMESPACED_OPERATOR_RULES
        (binding,) = [
            d
            for d in docs
            if d["kind"] == "RoleBinding"
            and d["metadata"]["namespace"] == namespace
            and d["metadata"]["name"] == "steprun-operator"
        ]
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "steprun-operator", "namespace": "steprun-system"}
        ]
    roles = {d["metadata"].get("namespace") for d in docs if d["kind"] == "Role"}
    assert roles == {"ci", "builds"}


def test_namespaced_install_may_read_the_artifact_store_credentials(helm: str) -> None:
    """The operator copies the store's credentials into each step's Secret: confined to its
    watched namespaces, it still needs get on those Secrets (and only those) in its own."""
    store = [
        *("--set", "artifactRepository.endpoint=http://store:9000"),
        *("--set", "artifactRepository.bucket=steps"),
        *("--set", "artifactRepository.credentialsSecret=store"),
        "--set-json",
        'artifactRepository.namespaces=[{"namespaces":["ci"],"credentialsSecret":"team-store"},'
        '{"namespaces":["builds"],"bucket":"b"}]',
    ]
    docs = render(helm, "--set", "replicas=1", "--set", "watchNamespaces={ci,builds}", *store)
    assert rules_of(docs, "steprun-operator-artifact-credentials", "Role", "steprun-system") == {
        ("", "secrets", "get[store,team-store]")
    }
    (binding,) = [
        d
        for d in docs
        if d["kind"] == "RoleBinding" and d["metadata"]["namespace"] == "steprun-system"
    ]
    assert binding["roleRef"]["name"] == "steprun-operator-artifact-credentials"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "steprun-operator", "namespace": "steprun-system"}
    ]
    # Cluster-wide, the operator's ClusterRole already reads Secrets; without a store, no Role.
    assert not [d for d in render(helm, *store) if d["kind"] == "Role"]
    watching = render(helm, "--set", "replicas=1", "--set", "watchNamespaces={ci}")
    assert {d["metadata"]["namespace"] for d in watching if d["kind"] == "Role"} == {"ci"}


def test_patterns_need_the_namespaced_rights_cluster_wide(helm: str) -> None:
    docs = render(helm, "--set", "replicas=1", "--set", "watchNamespaces={ci,ci-*}")
    assert rules_of(docs, "steprun-operator") >= NAMESPACED_OPERATOR_RULES
    assert not [d for d in docs if d["kind"] == "Role"]


def test_engine_role_and_its_bindings(helm: str) -> None:
    docs = render(
        helm,
        "--set",
        "engine.namespaces={ci,builds}",
        "--set-json",
        'engine.extraSubjects=[{"kind":"Group","name":"ci-bots",'
        '"apiGroup":"rbac.authorization.k8s.io"}]',
    )
    assert rules_of(docs, "steprun-engine") == {
        *{("steprun.dev", "stepruns", v) for v in ("create", "get", "list", "watch")},
        ("steprun.dev", "stepruns", "patch"),
        ("steprun.dev", "stepruns", "delete"),
        *{("", "pods", v) for v in ("get", "list", "watch")},
        ("", "pods/log", "get"),
        ("steprun.dev", "sandboxpolicies", "use"),
    }
    narrowed = render(helm, "--set", "engine.sandboxPolicies={lint,build}")
    assert ("steprun.dev", "sandboxpolicies", "use[lint,build]") in rules_of(
        narrowed, "steprun-engine"
    )
    assert ("steprun.dev", "sandboxpolicies", "use") not in rules_of(narrowed, "steprun-engine")
    bindings = sorted(
        (d for d in docs if d["kind"] == "RoleBinding"), key=lambda d: d["metadata"]["namespace"]
    )
    assert [b["metadata"]["namespace"] for b in bindings] == ["builds", "ci"]
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "steprun-engine",
        }
        namespace = binding["metadata"]["namespace"]
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "steprun-engine", "namespace": namespace},
            {"kind": "Group", "name": "ci-bots", "apiGroup": "rbac.authorization.k8s.io"},
        ]


def test_operator_pod_passes_the_restricted_profile(helm: str) -> None:
    sts = one(render(helm), "StatefulSet")
    pod = {"metadata": sts["spec"]["template"]["metadata"], "spec": sts["spec"]["template"]["spec"]}
    assert restricted_violations(pod) == []
    container = pod["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8080"
    affinity = pod["spec"]["affinity"]["podAntiAffinity"]
    assert affinity["preferredDuringSchedulingIgnoredDuringExecution"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in affinity


def test_cluster_scoped_names_follow_the_release(helm: str) -> None:
    docs = render(helm, release="steprun-e2e1", namespace="e2e1")
    cluster_scoped = [d for d in docs if "namespace" not in d["metadata"]]
    assert {d["kind"] for d in cluster_scoped} == {
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterKopfPeering",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    for doc in cluster_scoped:
        assert doc["metadata"]["name"].startswith("steprun-e2e1"), doc["metadata"]["name"]
    other = render(helm, release="ci", namespace="e2e1")
    assert one(other, "StatefulSet")["metadata"]["name"] == "ci-steprun-operator"


def test_admission_policy_allows_the_operator_and_extra_creators(helm: str) -> None:
    docs = render(
        helm,
        "--set",
        "admission.extraAllowedCreators={system:serviceaccount:ci:tester}",
        "--set",
        "admission.namespaceSelector.matchLabels.team=ci",
        namespace="ops",
    )
    for name in ("steprun-sandbox-pods", "steprun-pod-origin", "steprun-claim-origin"):
        policy = one(docs, "ValidatingAdmissionPolicy", name)
        first = policy["spec"]["variables"][0]
        assert first["name"] == "allowedCreators"
        assert yaml.safe_load(first["expression"]) == [
            "system:serviceaccount:ops:steprun-operator",
            "system:serviceaccount:ci:tester",
        ]
    for name in (
        "steprun-sandbox-pods",
        "steprun-pod-origin",
        "steprun-claim-origin",
        "steprun-stepruns",
    ):
        binding = one(docs, "ValidatingAdmissionPolicyBinding", name)
        assert binding["spec"]["policyName"] == name
        assert binding["spec"]["validationActions"] == ["Deny"]
        assert binding["spec"]["matchResources"] == {
            "namespaceSelector": {"matchLabels": {"team": "ci"}}
        }
    # The operator is told which StepRun-create policy to look for.
    assert env_of(docs)["STEPRUN_ADMISSION_POLICY"] == "steprun-stepruns"
    assert env_of(docs)["STEPRUN_CLAIM_ORIGIN_POLICY"] == "steprun-claim-origin"


def test_steprun_policy_checks_every_secret_a_step_may_name(helm: str) -> None:
    policy = one(render(helm), "ValidatingAdmissionPolicy", "steprun-stepruns")
    validations = policy["spec"]["validations"]
    for resource, variable, bound in [
        ("resource('secrets')", "secretNames", MAX_SECRETS),
        ("resource('persistentvolumeclaims')", "claimNames", MAX_WORKSPACES),
        ("resource('stepruns')", "producerNames", MAX_ARTIFACTS),
    ]:
        checks = [v for v in validations if f"variables.{variable}" in v["expression"]]
        assert len(checks) == bound, resource
        assert all(resource in check["expression"] for check in checks)
        for index, validation in enumerate(checks):
            assert "check('get')" in validation["expression"]
            assert f"variables.{variable}[{index}]" in validation["messageExpression"]
    # A volumeClaimTemplate makes the operator create a claim, or mount the run's: both verbs
    # on every claim of the namespace (the claim's name is a hash CEL cannot compute).
    templates = [v for v in validations if "variables.templateWorkspaces" in v["expression"]]
    assert [t["messageExpression"].split(" may not ")[1].split(" ")[0] for t in templates] == [
        "create",
        "get",
    ]
    for verb, template in zip(("create", "get"), templates, strict=True):
        assert "resource('persistentvolumeclaims')" in template["expression"]
        assert f".check('{verb}')" in template["expression"]
        assert ".name(" not in template["expression"]
    account, sandbox_policy = [v for v in validations if "check('use')" in v["expression"]]
    assert "serviceaccounts" in account["expression"]
    assert "resource('sandboxpolicies')" in sandbox_policy["expression"]
    assert "variables.sandboxPolicyName == 'default'" in sandbox_policy["expression"]
    for validation in validations:
        # A message may not call the authorizer, and a CEL string cannot span lines.
        assert "authorizer" not in validation["messageExpression"]
        assert "\n" not in validation["messageExpression"]
    assert policy["spec"]["matchConstraints"]["resourceRules"][0]["operations"] == ["CREATE"]
    assert not [
        d for d in render(helm, "--set", "admission.enabled=false") if "Admission" in d["kind"]
    ]


def test_default_policy_is_optional(helm: str) -> None:
    assert not [d for d in render(helm) if d["kind"] == "SandboxPolicy"]
    policy = one(render(helm, "--set", "defaultPolicy.enabled=true"), "SandboxPolicy")
    assert policy["metadata"]["name"] == "default"
    assert policy["spec"]["maxTimeoutSeconds"] == 900


def test_schema_refuses_bad_values(helm: str) -> None:
    assert "replicas" in render_error(helm, "--set", "replicas=-1")
    assert "typo" in render_error(helm, "--set", "typo=1")
    assert "watchNamespaces" in render_error(helm, "--set", "watchNamespaces={Not_A_Namespace}")
    assert "logLevel" in render_error(helm, "--set", "config.logLevel=LOUD")
    # kopf renews a record 5-10 s before it runs out: shorter lifetimes would flap.
    assert "lifetime" in render_error(helm, "--set", "peering.lifetime=2")


def test_artifact_repository_values_become_the_operators_settings(helm: str) -> None:
    docs = render(
        helm,
        "--set",
        "artifactRepository.endpoint=http://store.example:9000",
        "--set",
        "artifactRepository.bucket=builds",
        "--set",
        "artifactRepository.keyPrefix=ci/",
        "--set",
        "artifactRepository.credentialsSecret=store-creds",
        "--set",
        "artifactRepository.maxBytes=1048576",
        "--set",
        "artifactRepository.maxUnpackedBytes=2097152",
        "--set",
        "artifactRepository.maxEntries=500",
    )
    env = env_of(docs)
    config = OperatorConfig(
        artifacts_endpoint=env["STEPRUN_ARTIFACTS_ENDPOINT"],
        artifacts_bucket=env["STEPRUN_ARTIFACTS_BUCKET"],
        artifacts_key_prefix=env["STEPRUN_ARTIFACTS_KEY_PREFIX"],
        artifacts_secret=env["STEPRUN_ARTIFACTS_SECRET"],
        artifacts_max_bytes=env["STEPRUN_ARTIFACTS_MAX_BYTES"],
        artifacts_max_unpacked_bytes=env["STEPRUN_ARTIFACTS_MAX_UNPACKED_BYTES"],
        artifacts_max_entries=env["STEPRUN_ARTIFACTS_MAX_ENTRIES"],
        artifacts_archive_logs=env["STEPRUN_ARTIFACTS_ARCHIVE_LOGS"],
    )
    assert config.artifacts_enabled
    assert config.artifacts_prefix == "ci/"
    assert config.artifacts_secret == "steprun-system/store-creds"
    assert config.artifacts_max_bytes == 1048576
    assert (config.artifacts_max_unpacked_bytes, config.artifacts_max_entries) == (2097152, 500)
    assert "maxBytes" in render_error(helm, "--set", "artifactRepository.maxBytes=6000000000")
    assert config.artifacts_archive_logs is True
    assert "STEPRUN_ARTIFACTS_ENDPOINT" not in env_of(render(helm))


def test_namespaces_may_have_their_own_artifact_repository(helm: str) -> None:
    docs = render(
        helm,
        "--set",
        "artifactRepository.namespaces[0].namespaces[0]=team-a-*",
        "--set",
        "artifactRepository.namespaces[0].bucket=team-a",
        "--set",
        "artifactRepository.namespaces[0].endpoint=http://10.0.0.9:9000",
        "--set",
        "artifactRepository.namespaces[0].credentialsSecret=team-a-store",
    )
    env = env_of(docs)
    config = OperatorConfig(artifacts_namespaces=json.loads(env["STEPRUN_ARTIFACTS_NAMESPACES"]))
    repository = config.artifact_repository("team-a-ci")
    assert (repository.endpoint, repository.bucket, repository.secret) == (
        "http://10.0.0.9:9000",
        "team-a",
        "steprun-system/team-a-store",
    )
    assert not config.artifact_repository("team-b").enabled
    with pytest.raises(AssertionError, match="namespaces"):
        render(helm, "--set", "artifactRepository.namespaces[0].bucket=x")
