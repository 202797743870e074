"""Finding the cluster and the default namespace, the way kubectl does.

A kubeconfig is used when one is named (argument or ``KUBECONFIG``) or ``~/.kube/config``
exists; otherwise the in-cluster service account. The default namespace is the one of the
kubeconfig context in use, or the Pod's own namespace in a cluster, else ``default``.
(The asyncio loader is in ``steprun.client.aio``, so the blocking client and the CLI never
import the asyncio Kubernetes client.)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import kubernetes

# The kubernetes package's configuration helpers carry no annotations; this alias states that
# their results are untyped instead of leaving each call site to say so.
_config: Any = kubernetes.config

DEFAULT_NAMESPACE = "default"
IN_CLUSTER_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def kubeconfig_path(explicit: str | None = None) -> str | None:
    """The kubeconfig to load, or None to use the in-cluster service account."""
    if explicit:
        return explicit
    from_env = os.environ.get("KUBECONFIG")
    if from_env:
        return from_env
    default = Path("~/.kube/config").expanduser()
    return str(default) if default.exists() else None


def context_namespace(
    contexts: Sequence[Mapping[str, Any]],
    active: Mapping[str, Any] | None,
    context: str | None = None,
) -> str | None:
    """The namespace of the named context (or of the active one when ``context`` is None)."""
    chosen: Mapping[str, Any] | None = active
    if context is not None:
        chosen = next((c for c in contexts if c.get("name") == context), None)
    if not chosen:
        return None
    namespace = (chosen.get("context") or {}).get("namespace")
    return str(namespace) if namespace else None


def kubeconfig_namespace(path: str, context: str | None = None) -> str | None:
    contexts, active = _config.list_kube_config_contexts(config_file=path)
    return context_namespace(contexts or [], active, context)


def in_cluster_namespace() -> str | None:
    try:
        return IN_CLUSTER_NAMESPACE_FILE.read_text().strip() or None
    except OSError:
        return None


def load_api_client(
    config_file: str | None = None, context: str | None = None
) -> tuple[kubernetes.client.ApiClient, str]:
    """A new API client (no global configuration touched) and the default namespace."""
    path = kubeconfig_path(config_file)
    if path is None:
        configuration = kubernetes.client.Configuration()
        _config.load_incluster_config(client_configuration=configuration)
        api_client = kubernetes.client.ApiClient(configuration=configuration)
        return api_client, in_cluster_namespace() or DEFAULT_NAMESPACE
    from_file: kubernetes.client.ApiClient = _config.new_client_from_config(
        config_file=path, context=context, persist_config=False
    )
    return from_file, kubeconfig_namespace(path, context) or DEFAULT_NAMESPACE
