"""One blocking GET of the API server with the standard library: the CLI's quick answers.

`steprun list`, `get` and the completion of a name read one list or object. Through the full
access layer that costs the import of aiohttp, the kubeconfig loaders and the pydantic models
(most of a second of CPU against kubectl's tenth); here it is one HTTPS request. Only the
plain case is served: a kubeconfig file with a token, basic auth or client certificates, and
a 200 answer. Anything else (exec or auth-provider credentials, several kubeconfig files, a
proxy, in-cluster credentials, any error) raises ``Unsupported``, and the caller asks the
full access layer, which owns every error message and retry.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import tempfile
import urllib.parse
from collections.abc import Mapping
from typing import Any

from steprun.kube.locate import kubeconfig_path

DEFAULT_NAMESPACE = "default"


class Unsupported(Exception):
    """This request is for the full access layer (the message says why, for debugging)."""


class Target:
    """Where the API server is and how to reach it, from one kubeconfig context."""

    # A plain class: importing dataclasses would cost this quick path a tenth of its time.
    def __init__(
        self,
        *,
        scheme: str,
        host: str,
        port: int | None,
        base_path: str,
        namespace: str,
        context: ssl.SSLContext | None,
        headers: dict[str, str],
    ) -> None:
        self.scheme = scheme
        self.host = host
        self.port = port
        self.base_path = base_path
        self.namespace = namespace
        self.context = context
        self.headers = headers


def _named(entries: Any, name: Any, what: str) -> dict[str, Any]:
    for entry in entries or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            found = entry.get(what)
            if isinstance(found, dict):
                return found
    raise Unsupported(f"no {what} named {name!r}")


def _read_kubeconfig(path: str) -> dict[str, Any]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        with open(path, encoding="utf-8") as handle:
            config = yaml.load(handle, Loader=loader)
    except (OSError, yaml.YAMLError) as exc:
        raise Unsupported(f"kubeconfig unreadable: {exc}") from exc
    if not isinstance(config, dict):
        raise Unsupported("kubeconfig is not a mapping")
    return config


def _relative(path: str, kubeconfig: str) -> str:
    # kubectl resolves file paths of a kubeconfig against the kubeconfig's directory.
    return path if os.path.isabs(path) else os.path.join(os.path.dirname(kubeconfig), path)


def _tls(cluster: Mapping[str, Any], user: Mapping[str, Any], kubeconfig: str) -> ssl.SSLContext:
    if cluster.get("insecure-skip-tls-verify"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif cluster.get("certificate-authority-data"):
        pem = base64.b64decode(cluster["certificate-authority-data"]).decode()
        context = ssl.create_default_context(cadata=pem)
    elif cluster.get("certificate-authority"):
        context = ssl.create_default_context(
            cafile=_relative(str(cluster["certificate-authority"]), kubeconfig)
        )
    else:
        context = ssl.create_default_context()
    if cluster.get("tls-server-name"):
        raise Unsupported("tls-server-name")
    cert, key = user.get("client-certificate-data"), user.get("client-key-data")
    if cert and key:
        # The ssl module loads a key pair from files only: private ones, gone once loaded.
        with tempfile.TemporaryDirectory() as directory:
            paths = []
            for name, data in (("cert.pem", cert), ("key.pem", key)):
                path = os.path.join(directory, name)
                with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as handle:
                    handle.write(base64.b64decode(data))
                paths.append(path)
            context.load_cert_chain(paths[0], paths[1])
    elif user.get("client-certificate") and user.get("client-key"):
        context.load_cert_chain(
            _relative(str(user["client-certificate"]), kubeconfig),
            _relative(str(user["client-key"]), kubeconfig),
        )
    return context


def target(explicit: str | None = None, context_name: str | None = None) -> Target:
    """The API server of the kubeconfig ``explicit`` (else KUBECONFIG, ~/.kube/config) and
    the context ``context_name`` (else the current one)."""
    path = kubeconfig_path(explicit)
    if path is None or os.pathsep in path:
        raise Unsupported("in-cluster or several kubeconfig files")
    config = _read_kubeconfig(path)
    name = context_name or config.get("current-context")
    context = _named(config.get("contexts"), name, "context")
    cluster = _named(config.get("clusters"), context.get("cluster"), "cluster")
    user = _named(config.get("users"), context.get("user"), "user") if context.get("user") else {}
    if {"exec", "auth-provider", "as", "as-groups", "impersonate"} & user.keys():
        raise Unsupported("credentials from a plugin, or impersonation")
    if cluster.get("proxy-url") or os.environ.get("STEPRUN_API_PROXY"):
        raise Unsupported("a proxy")
    server = urllib.parse.urlsplit(str(cluster.get("server") or ""))
    if server.scheme not in ("https", "http") or not server.hostname:
        raise Unsupported("no usable server URL")
    headers = {"Accept": "application/json", "User-Agent": "steprun"}
    token = user.get("token")
    if not token and user.get("tokenFile"):
        try:
            with open(_relative(str(user["tokenFile"]), path), encoding="utf-8") as handle:
                token = handle.read().strip()
        except OSError as exc:
            raise Unsupported(f"token file: {exc}") from exc
    if token:
        headers["Authorization"] = f"Bearer {token}"
    elif user.get("username") and user.get("password"):
        pair = f"{user['username']}:{user['password']}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    tls = _tls(cluster, user, path) if server.scheme == "https" else None
    return Target(
        scheme=server.scheme,
        host=server.hostname,
        port=server.port,
        base_path=server.path.rstrip("/"),
        namespace=str(context.get("namespace") or DEFAULT_NAMESPACE),
        context=tls,
        headers=headers,
    )


def get_json(
    to: Target, path: str, query: Mapping[str, str] | None = None, *, timeout: float = 5.0
) -> dict[str, Any]:
    """The JSON object a GET of ``path`` answers with 200 (anything else: Unsupported)."""
    url = to.base_path + path
    if query:
        url += "?" + urllib.parse.urlencode(dict(query))
    connection: http.client.HTTPConnection = (
        http.client.HTTPSConnection(to.host, to.port, timeout=timeout, context=to.context)
        if to.scheme == "https"
        else http.client.HTTPConnection(to.host, to.port, timeout=timeout)
    )
    try:
        connection.request("GET", url, headers=to.headers)
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise Unsupported(f"request failed: {exc}") from exc
    finally:
        connection.close()
    if response.status != 200:
        raise Unsupported(f"answered {response.status}")
    try:
        answer = json.loads(body)
    except ValueError as exc:
        raise Unsupported("not JSON") from exc
    if not isinstance(answer, dict):
        raise Unsupported("not a JSON object")
    return answer


# The StepRun API's path, written here rather than taken from steprun.api.resources, whose
# import costs the pydantic models: tests/unit/test_cli_startup_imports.py checks they agree.
STEPRUN_API = "/apis/steprun.dev/v1alpha1"


def steprun_path(namespace: str | None, name: str | None = None) -> str:
    """A namespace's StepRuns (every namespace's when None), or one of them."""
    path = STEPRUN_API + (f"/namespaces/{namespace}" if namespace else "") + "/stepruns"
    return f"{path}/{name}" if name else path
