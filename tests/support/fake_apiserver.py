"""The in-memory API server (``tests.support.fake_cluster``) served over real HTTP.

For the engine client and the CLI: real kubernetes clients, real request shapes, content
types, chunked streaming, watch resumption and error mapping. It serves the paths of the
access layer (``steprun.api.resources``) for the kinds below: lists and watches (with
label and field selectors, resourceVersions, 410 Gone after compaction), get, create (with
``dryRun``), merge patches of objects and of their status, JSON patches of objects, delete
(with a uid precondition), Pod logs (``follow``, ``tailLines``, ``timestamps``) and ``/version``.

A failure injected into the cluster (``cluster.fail(verb, kind, error)``, verbs ``get``,
``list``, ``watch``, ``create``, ``patch``, ``patch_status``, ``delete``, ``log``) is answered
as the API server's Status of that error.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import kubernetes
import kubernetes_asyncio

from steprun.api.resources import resource
from steprun.client.backoff import Backoff
from steprun.kube.errors import KubeError
from tests.support.fake_cluster import Body, FakeCluster

# The namespace of the kubeconfig's context, unless told otherwise.
NS = "ns1"
# The kinds served; their paths are the access layer's.
KINDS = ("StepRun", "SandboxPolicy", "Pod", "Event", "Namespace", "ConfigMap", "Secret")
# What the operator writes when a step ends, unless told otherwise.
SUCCEEDED = {"phase": "Succeeded", "reason": "Completed", "exitCode": 0}
# Retries short enough for tests, as many as the client would make.
FAST = Backoff(retries=2, initial=0.01, maximum=0.02)

Route = tuple[re.Pattern[str], str, str]  # pattern, kind, apiVersion
Query = dict[str, list[str]]


def _routes() -> list[Route]:
    namespaced: list[Route] = []
    cluster_scoped: list[Route] = []
    item = r"(?:/(?P<name>[^/]+))?(?:/(?P<sub>status|log))?$"
    for kind in KINDS:
        collection = resource(kind).path(None)
        base, _, plural = collection.rpartition("/")
        api_version = base.removeprefix("/apis/").removeprefix("/api/")
        if resource(kind).path("ns") == collection:
            pattern = re.compile(f"^{re.escape(collection)}{item}")
            cluster_scoped.append((pattern, kind, api_version))
        else:
            inside = f"^{re.escape(base)}/namespaces/(?P<namespace>[^/]+)/{plural}{item}"
            namespaced.append((re.compile(inside), kind, api_version))
            namespaced.append((re.compile(f"^{re.escape(collection)}$"), kind, api_version))
    # "/api/v1/namespaces/ns1/pods" is a Pod collection before it could be a Namespace.
    return namespaced + cluster_scoped


ROUTES = _routes()


def status_of(code: int, message: str, **extra: Any) -> Body:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "message": message,
        **extra,
    }


def _answer_of(error: KubeError) -> Body:
    return error.body or status_of(error.status, error.message, reason=error.reason)


def _first(query: Query, key: str, default: str = "") -> str:
    return (query.get(key) or [default])[0]


def _true(query: Query, key: str) -> bool:
    # Like the API server (Go's strconv.ParseBool): "true" and "True" alike.
    return _first(query, key).lower() == "true"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_: FakeApiServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    # ---------------------------------------------------------------- plumbing

    def _query(self) -> Query:
        return parse_qs(urlparse(self.path).query)

    def _send_json(self, code: int, body: Body) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}") if length else {}

    def _dispatch(self, method: str) -> None:
        path = urlparse(self.path).path
        query = self._query()
        self.server_.requests.append((method, path, query, self.headers.get("Content-Type", "")))
        if re.match(r"^/version/?$", path) and method == "GET":
            self._send_json(200, self.server_.version)
            return
        for pattern, kind, api_version in ROUTES:
            match = pattern.match(path)
            if match:
                try:
                    self._serve(method, kind, api_version, query, **match.groupdict())
                except KubeError as error:
                    self._send_json(error.status, _answer_of(error))
                return
        self._send_json(404, status_of(404, f"no route for {method} {path}"))

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # ---------------------------------------------------------------- the verbs

    def _serve(
        self,
        method: str,
        kind: str,
        api_version: str,
        query: Query,
        namespace: str | None = None,
        name: str | None = None,
        sub: str | None = None,
    ) -> None:
        cluster = self.server_.cluster
        verb = {
            ("GET", False): "watch" if _true(query, "watch") else "list",
            ("GET", True): "log" if sub == "log" else "get",
            ("POST", False): "create",
            ("PATCH", True): "patch_status" if sub == "status" else "patch",
            ("DELETE", True): "delete",
        }.get((method, name is not None))
        if verb is None or (sub == "log" and kind != "Pod"):
            self._send_json(405, status_of(405, f"{method} is not served here"))
            return
        cluster.enter(verb, kind, name)
        if verb == "watch":
            self._watch(kind, namespace, query)
        elif verb == "list":
            items, rv = cluster.list(
                kind,
                namespace,
                label_selector=_first(query, "labelSelector"),
                field_selector=_first(query, "fieldSelector"),
            )
            self._send_json(
                200,
                {
                    "apiVersion": api_version,
                    "kind": f"{kind}List",
                    "metadata": {"resourceVersion": rv},
                    "items": items,
                },
            )
        elif verb == "get":
            self._send_json(200, cluster.get(kind, namespace, str(name)))
        elif verb == "log":
            self._pod_log(str(namespace), str(name), query)
        elif verb == "create":
            body = self._body()
            body.setdefault("apiVersion", api_version)
            body.setdefault("kind", kind)
            if namespace is not None:
                body.setdefault("metadata", {})["namespace"] = namespace
            created = cluster.create(body, dry_run=_first(query, "dryRun") == "All")
            self._send_json(201, created)
        elif verb in ("patch", "patch_status"):
            content_type = self.headers.get("Content-Type")
            if content_type == "application/merge-patch+json":
                patch = self._body()
                patched = cluster.patch(kind, namespace, str(name), patch, subresource=sub or "")
            elif content_type == "application/json-patch+json" and verb == "patch":
                patched = cluster.json_patch(kind, namespace, str(name), self._body())
            else:
                self._send_json(415, status_of(415, "unsupported patch type"))
                return
            self._send_json(200, patched)
        else:
            options = self._body()
            uid = (options.get("preconditions") or {}).get("uid")
            left = cluster.delete(kind, namespace, str(name), uid=uid)
            if cluster.find(kind, namespace, str(name)) is None:
                self._send_json(200, status_of(200, "deleted") | {"status": "Success"})
            else:
                self._send_json(200, left)  # held by its finalizers

    def _watch(self, kind: str, namespace: str | None, query: Query) -> None:
        cluster = self.server_.cluster
        since = int(_first(query, "resourceVersion") or 0)
        deadline = time.monotonic() + int(_first(query, "timeoutSeconds", "30"))
        selectors = {
            "label_selector": _first(query, "labelSelector"),
            "field_selector": _first(query, "fieldSelector"),
        }
        self._start_stream("application/json")
        while True:
            try:
                with cluster.cond:
                    seen = cluster.rv
                    events = cluster.events_since(since, kind, namespace, **selectors)
            except KubeError as gone:
                self._chunk(json.dumps({"type": "ERROR", "object": _answer_of(gone)}).encode())
                break
            for rv, event, obj in events:
                self._chunk(json.dumps({"type": event, "object": obj}).encode() + b"\n")
                since = rv
            if events:
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not cluster.wait_for(
                lambda seen=seen: cluster.rv > seen, remaining
            ):
                break
        self._end_stream()

    def _pod_log(self, namespace: str, pod: str, query: Query) -> None:
        cluster = self.server_.cluster
        key = (namespace, pod)
        follow = _true(query, "follow")
        tail = int(_first(query, "tailLines", "-1"))
        stamped = _true(query, "timestamps")
        found = cluster.get("Pod", namespace, pod)
        if "waiting" in found["status"]["containerStatuses"][0]["state"]:
            self._send_json(400, status_of(400, f'container "step" in pod "{pod}" is waiting'))
            return
        self._start_stream("text/plain")
        sent = max(0, len(cluster.logs.get(key, [])) - tail) if tail >= 0 else 0
        while True:
            with cluster.cond:
                lines = cluster.logs.get(key, [])[sent:]
                done = not follow or key in cluster.closed_logs
            # One chunk per half line, to exercise the client's reassembly of lines.
            for line in lines:
                data = (f"2026-01-01T00:00:00Z {line}" if stamped else line).encode()
                half = len(data) // 2
                self._chunk(data[:half])
                self._chunk(data[half:])
            sent += len(lines)
            if not lines and done:
                break
            if not lines and not cluster.wait_for(
                lambda sent=sent: (
                    len(cluster.logs.get(key, [])) > sent or key in cluster.closed_logs
                ),
                300,
            ):
                break
        self._end_stream()


class FakeApiServer:
    """Serves ``cluster`` (a fresh one by default) on a free local port for the duration of a
    ``with`` block; ``requests`` records what came in: (method, path, query, content type)."""

    def __init__(self, cluster: FakeCluster | None = None) -> None:
        self.cluster = cluster or FakeCluster()
        self.requests: list[tuple[str, str, Query, str]] = []
        self.version: Body = {"major": "1", "minor": "34", "gitVersion": "v1.34.1"}
        handler = type("Handler", (_Handler,), {"server_": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self.cluster.cond:
            self.cluster.stopping = True
            self.cluster.cond.notify_all()
        self._server.shutdown()
        self._server.server_close()

    def requests_of(self, method: str, path_part: str = "") -> list[Query]:
        return [q for m, p, q, _ in self.requests if m == method and path_part in p]

    def kubeconfig(self, directory: Path, namespace: str = NS) -> str:
        path = directory / "kubeconfig"
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                    "users": [{"name": "tester", "user": {"token": "t0ken"}}],
                    "contexts": [
                        {
                            "name": "fake",
                            "context": {
                                "cluster": "fake",
                                "user": "tester",
                                "namespace": namespace,
                            },
                        }
                    ],
                    "current-context": "fake",
                }
            )
        )
        return str(path)

    def sync_api_client(self) -> kubernetes.client.ApiClient:
        configuration = kubernetes.client.Configuration()
        configuration.host = self.url
        return kubernetes.client.ApiClient(configuration)

    def async_api_client(self) -> kubernetes_asyncio.client.ApiClient:
        configuration = kubernetes_asyncio.client.Configuration()
        configuration.host = self.url
        return kubernetes_asyncio.client.ApiClient(configuration)


def steprun(namespace: str, name: str, labels: dict[str, str] | None = None, **spec: Any) -> Body:
    """A StepRun as a user would create it (the image defaults to ``b``)."""
    return {
        "apiVersion": "steprun.dev/v1alpha1",
        "kind": "StepRun",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {"image": "b", **spec},
    }


def later(delay: float, action: Callable[[], object]) -> threading.Timer:
    """Plays the operator's part: ``action`` runs ``delay`` seconds from now."""
    timer = threading.Timer(delay, action)
    timer.daemon = True
    timer.start()
    return timer


def finish(cluster: FakeCluster, name: str, namespace: str = NS, **status: Any) -> None:
    """What the operator writes when a step ends (Succeeded with exit code 0 by default)."""
    cluster.set_status(namespace, name, **(SUCCEEDED | status))
