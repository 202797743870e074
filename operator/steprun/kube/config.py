"""The one way to find the cluster, for the operator, the engine client, the CLI and the bench.

As kubectl does: the kubeconfig named explicitly, else ``KUBECONFIG`` (a ``:``-separated list
is merged), else ``~/.kube/config`` when it exists, else the in-cluster service account. The
default namespace is the one of the kubeconfig context in use, or the Pod's own in a cluster,
else ``default``.

Every loader fills a fresh ``Configuration``: nothing global is touched, so two clients of one
process can talk to two clusters.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config

from steprun.kube.locate import kubeconfig_path

# What a missing or unusable configuration raises (kubernetes_asyncio's own exception).
ConfigException = k8s_config.ConfigException

DEFAULT_NAMESPACE = "default"
IN_CLUSTER_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

# The loaders of kubernetes_asyncio carry no annotations; the alias says so once.
_loaders: Any = k8s_config


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
    contexts, active = _loaders.list_kube_config_contexts(config_file=path)
    return context_namespace(contexts or [], active, context)


def in_cluster_namespace() -> str | None:
    try:
        return IN_CLUSTER_NAMESPACE_FILE.read_text().strip() or None
    except OSError:
        return None


async def load_configuration(
    config_file: str | None = None, context: str | None = None
) -> tuple[k8s.Configuration, str]:
    """A new configuration for the cluster, and the default namespace.

    Raises ConfigException when there is no usable configuration (no kubeconfig and not in a
    Pod, an unknown context, a kubeconfig that cannot be read).
    """
    configuration = k8s.Configuration()
    path = kubeconfig_path(config_file)
    if path is None:
        _loaders.load_incluster_config(client_configuration=configuration)
        return configuration, in_cluster_namespace() or DEFAULT_NAMESPACE
    await _loaders.load_kube_config(
        config_file=path,
        context=context,
        client_configuration=configuration,
        # Never write refreshed tokens back into somebody's kubeconfig.
        persist_config=False,
    )
    return configuration, kubeconfig_namespace(path, context) or DEFAULT_NAMESPACE


async def connection_fields(configuration: k8s.Configuration) -> dict[str, Any]:
    """Where the API server is and how to authenticate, as plain fields (kopf's ConnectionInfo
    takes them): so kopf's own watch connection uses the credentials loaded here."""
    header: Any = configuration.get_api_key_with_prefix("BearerToken")
    if inspect.isawaitable(header):  # a coroutine from kubernetes_asyncio 33.3 on
        header = await header
    scheme, _, token = str(header or "").partition(" ")
    if not token:  # a bare token, without "Bearer"
        scheme, token = "", scheme
    return {
        "server": configuration.host,
        "ca_path": configuration.ssl_ca_cert,
        "insecure": not configuration.verify_ssl,
        "username": configuration.username or None,
        "password": configuration.password or None,
        "scheme": scheme or None,
        "token": token or None,
        "certificate_path": configuration.cert_file,
        "private_key_path": configuration.key_file,
    }


# The attributes that say where the API server is and how to authenticate to it: the same names
# in the `kubernetes` and `kubernetes_asyncio` packages' Configuration classes.
_CONNECTION_FIELDS = (
    "host",
    "api_key",
    "api_key_prefix",
    "username",
    "password",
    "ssl_ca_cert",
    "cert_file",
    "key_file",
    "verify_ssl",
    "tls_server_name",
    "proxy",
    "proxy_headers",
)


def configuration_of(source: Any) -> k8s.Configuration:
    """A configuration of this layer's client library from an API client or configuration of
    either Kubernetes package (so callers holding a ``kubernetes.client.ApiClient`` keep
    working); only the connection and credential settings are copied."""
    if isinstance(source, k8s.Configuration):
        return source
    given = getattr(source, "configuration", source)
    if isinstance(given, k8s.Configuration):
        return given
    configuration = k8s.Configuration()
    for field in _CONNECTION_FIELDS:
        if hasattr(given, field):
            value = getattr(given, field)
            setattr(configuration, field, dict(value) if isinstance(value, dict) else value)
    # The `kubernetes` package also accepts a token under "authorization"; this library reads
    # only "BearerToken".
    keys = configuration.api_key
    if "authorization" in keys and "BearerToken" not in keys:
        keys["BearerToken"] = keys.pop("authorization")
    return configuration


__all__ = [
    "DEFAULT_NAMESPACE",
    "ConfigException",
    "configuration_of",
    "connection_fields",
    "context_namespace",
    "in_cluster_namespace",
    "kubeconfig_namespace",
    "kubeconfig_path",
    "load_configuration",
]
