"""The operator's own identity for a benchmark run, so the audit log tells its requests apart.

A ServiceAccount in the run's StepRun namespace, bound to cluster-admin for the run only, and a
kubeconfig with a token for it. The binding's name is unique per run and it is deleted with
the run; the ServiceAccount goes with its namespace.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml

from bench.kube import Api
from steprun.api.resources import resource

SERVICE_ACCOUNT = "steprun-operator"
TOKEN_SECONDS = 24 * 3600


def binding_name(run_id: str) -> str:
    return f"steprun-bench-{run_id}"


def username(namespace: str) -> str:
    return f"system:serviceaccount:{namespace}:{SERVICE_ACCOUNT}"


def token_kubeconfig(admin_kubeconfig: dict[str, Any], token: str) -> dict[str, Any]:
    """The admin kubeconfig's current cluster, with the token as the only user (pure)."""
    contexts = {c["name"]: c["context"] for c in admin_kubeconfig.get("contexts") or []}
    current = contexts[admin_kubeconfig["current-context"]]
    clusters = {c["name"]: c["cluster"] for c in admin_kubeconfig.get("clusters") or []}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "bench", "cluster": clusters[current["cluster"]]}],
        "users": [{"name": SERVICE_ACCOUNT, "user": {"token": token}}],
        "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": SERVICE_ACCOUNT}}],
        "current-context": "bench",
    }


def write_kubeconfig(admin_kubeconfig: Path, token: str, out: Path) -> None:
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    out.write_text(yaml.safe_dump(token_kubeconfig(admin, token)))
    out.chmod(0o600)


async def create_operator_identity(
    api: Api, namespace: str, run_id: str, admin_kubeconfig: Path, out: Path
) -> str:
    """Writes the operator's kubeconfig to ``out``; returns the username it will appear as."""
    await api.create(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SERVICE_ACCOUNT}},
        resource("ServiceAccount").path(namespace),
    )
    await api.create(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": binding_name(run_id), "labels": {"steprun.dev/bench": run_id}},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": namespace}
            ],
        },
        resource("ClusterRoleBinding").path(),
    )
    review = await api.create(
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": TOKEN_SECONDS},
        },
        resource("ServiceAccount").path(namespace, SERVICE_ACCOUNT, "token"),
    )
    await asyncio.to_thread(write_kubeconfig, admin_kubeconfig, review["status"]["token"], out)
    return username(namespace)


async def delete_operator_identity(api: Api, run_id: str) -> None:
    await api.delete(resource("ClusterRoleBinding").path(name=binding_name(run_id)))


async def whoami(api: Api) -> str:
    """The username the API server sees for the benchmark's own client."""
    review = await api.create(
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        resource("SelfSubjectReview").path(),
    )
    return str(review["status"]["userInfo"]["username"])
