"""The client against an in-process fake API server: real HTTP, real kubernetes clients.

The fake serves just what the client uses (StepRun CRUD, list and watch with resourceVersions
and 410 Gone, Pod lists, Pod logs with follow), so these tests check the wiring that pure unit
tests cannot: request shapes, content types, streaming, watch resumption, error mapping.
``FakeApiServer`` is reused by the CLI tests.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import hashlib
import inspect
import json
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast, get_type_hints
from urllib.parse import parse_qs, urlparse

import kubernetes
import kubernetes_asyncio
import pytest

from steprun.api.models import StepRunSpec
from steprun.artifacts.store import ArtifactStore
from steprun.client import (
    ApiUnreachable,
    AttemptStarted,
    InvalidStepRun,
    LogLine,
    PodWaiting,
    StepRunClient,
    StepRunConflict,
    StepRunHandle,
    StepRunNotFound,
    StepRunRejected,
    WaitTimeout,
)
from steprun.client.aio import AsyncStepRunClient, AsyncStepRunHandle, ClientOptions
from steprun.client.backoff import Backoff
from steprun.client.logs import LogOptions

Json = dict[str, Any]
Key = tuple[str, str]

_STEPRUNS = re.compile(r"^/apis/steprun\.dev/v1alpha1/namespaces/([^/]+)/stepruns$")
_ALL_STEPRUNS = re.compile(r"^/apis/steprun\.dev/v1alpha1/stepruns$")
_STEPRUN = re.compile(r"^/apis/steprun\.dev/v1alpha1/namespaces/([^/]+)/stepruns/([^/]+)$")
_PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods$")
_POD_LOG = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$")
_EVENTS = re.compile(r"^/api/v1/namespaces/([^/]+)/events$")
_NAMESPACES = re.compile(r"^/api/v1/namespaces$")
_VERSION = re.compile(r"^/version/?$")


def _status(code: int, message: str, **extra: Any) -> Json:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "message": message,
        **extra,
    }


def _fields_match(obj: Json, selector: str) -> bool:
    """Equality field selectors over dotted paths, like the API server's selectableFields."""
    for term in filter(None, selector.split(",")):
        path, _, wanted = term.partition("=")
        value: Any = obj
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is None or str(value) != wanted:
            return False
    return True


def _matches(labels: dict[str, str], selector: str | None) -> bool:
    if not selector:
        return True
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


class FakeCluster:
    """The state of the fake API server; tests change it to play the operator's part."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.rv = 1000
        self.stepruns: dict[Key, Json] = {}
        self.history: list[tuple[int, str, Json]] = []
        # A watch from a resourceVersion older than this gets 410 Gone (etcd compaction).
        self.compacted_below = 0
        self.pods: dict[Key, Json] = {}
        self.logs: dict[Key, list[str]] = {}
        self.closed_logs: set[Key] = set()
        self.failures: list[int] = []
        self.requests: list[tuple[str, str, dict[str, list[str]], str]] = []
        self.invalid: Json | None = None
        self.stopping = False
        # Served as they are by the routes below (kubectl-like CLI commands read them).
        self.events: list[Json] = []
        self.namespaces: list[str] = []
        self.version: Json = {"major": "1", "minor": "34", "gitVersion": "v1.34.1"}

    # -- StepRuns -------------------------------------------------------------------------

    def _record(self, kind: str, obj: Json) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.history.append((self.rv, kind, copy.deepcopy(obj)))
        self.cond.notify_all()

    def create(self, namespace: str, body: Json, *, dry_run: bool = False) -> tuple[int, Json]:
        with self.cond:
            if self.invalid is not None:
                return 422, self.invalid
            obj = copy.deepcopy(body)
            meta = obj.setdefault("metadata", {})
            if not meta.get("name"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            key = (namespace, meta["name"])
            if key in self.stepruns:
                return 409, _status(
                    409, f'stepruns "{meta["name"]}" already exists', reason="AlreadyExists"
                )
            meta.update(
                namespace=namespace,
                uid=str(uuid.uuid4()),
                generation=1,
                creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
            if dry_run:
                return 201, copy.deepcopy(obj)
            self.stepruns[key] = obj
            self._record("ADDED", obj)
            return 201, copy.deepcopy(obj)

    def set_status(self, namespace: str, name: str, **status: Any) -> None:
        with self.cond:
            obj = self.stepruns[(namespace, name)]
            obj["status"] = {**obj.get("status", {}), **status}
            self._record("MODIFIED", obj)

    def touch(self, namespace: str, name: str) -> None:
        """A change that is not a phase change (e.g. a label), so watches see more events."""
        with self.cond:
            obj = self.stepruns[(namespace, name)]
            obj["metadata"].setdefault("annotations", {})["touched"] = str(self.rv)
            self._record("MODIFIED", obj)

    def patch(self, namespace: str, name: str, patch: Json) -> Json | None:
        with self.cond:
            obj = self.stepruns.get((namespace, name))
            if obj is None:
                return None
            _merge(obj, patch)
            self._record("MODIFIED", obj)
            return copy.deepcopy(obj)

    def delete(self, namespace: str, name: str) -> Json | None:
        with self.cond:
            obj = self.stepruns.pop((namespace, name), None)
            if obj is not None:
                self._record("DELETED", obj)
            return obj

    def get(self, namespace: str, name: str) -> Json:
        with self.cond:
            return copy.deepcopy(self.stepruns[(namespace, name)])

    # -- Pods and logs --------------------------------------------------------------------

    def add_pod(
        self, namespace: str, steprun: str, attempt: int, state: str = "running", reason: str = ""
    ) -> str:
        name = f"{steprun}-{attempt}"
        container_state = _container_state(state, reason)
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {
                    "steprun.dev/name": steprun,
                    "app.kubernetes.io/managed-by": "steprun",
                    "steprun.dev/attempt": str(attempt),
                },
            },
            "spec": {"containers": [{"name": "step", "image": "busybox"}]},
            "status": {
                "phase": "Pending" if state == "waiting" else "Running",
                "containerStatuses": [
                    {
                        "name": "step",
                        "image": "busybox",
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": container_state,
                    }
                ],
            },
        }
        with self.cond:
            self.pods[(namespace, name)] = pod
            self.logs.setdefault((namespace, name), [])
            self.cond.notify_all()
        return name

    def set_pod_state(self, namespace: str, pod: str, state: str, reason: str = "") -> None:
        with self.cond:
            status = self.pods[(namespace, pod)]["status"]
            status["containerStatuses"][0]["state"] = _container_state(state, reason)
            status["phase"] = {"waiting": "Pending", "running": "Running"}.get(state, "Failed")
            self.cond.notify_all()

    def log(self, namespace: str, pod: str, *lines: str) -> None:
        with self.cond:
            self.logs.setdefault((namespace, pod), []).extend(f"{line}\n" for line in lines)
            self.cond.notify_all()

    def end_log(self, namespace: str, pod: str) -> None:
        with self.cond:
            self.closed_logs.add((namespace, pod))
            self.cond.notify_all()

    def requests_of(self, method: str, path_part: str = "") -> list[dict[str, list[str]]]:
        return [q for m, p, q, _ in self.requests if m == method and path_part in p]


def _container_state(state: str, reason: str) -> Json:
    detail: Json = {"reason": reason} if reason else {}
    if state == "terminated":
        detail["exitCode"] = 0 if reason == "Completed" else 1
    return {state: detail}


def _merge(target: Json, patch: Json) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        elif value is None:
            target.pop(key, None)
        else:
            target[key] = value


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    cluster: FakeCluster

    def log_message(self, format: str, *args: Any) -> None:
        return

    # -- plumbing -------------------------------------------------------------------------

    def _query(self) -> dict[str, list[str]]:
        return parse_qs(urlparse(self.path).query)

    def _send_json(self, code: int, body: Json) -> None:
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

    def _body(self) -> Json:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}") if length else {}

    def _dispatch(self, method: str) -> None:
        path = urlparse(self.path).path
        cluster = self.cluster
        cluster.requests.append((method, path, self._query(), self.headers.get("Content-Type", "")))
        if cluster.failures:
            code = cluster.failures.pop(0)
            self._send_json(code, _status(code, "injected failure"))
            return
        for pattern, handler in self._routes(method):
            match = pattern.match(path)
            if match:
                handler(*match.groups())
                return
        self._send_json(404, _status(404, f"no route for {method} {path}"))

    def _routes(self, method: str) -> list[tuple[re.Pattern[str], Callable[..., None]]]:
        return {
            "GET": [
                (_STEPRUNS, self._list_stepruns),
                (_ALL_STEPRUNS, lambda: self._list_stepruns(None)),
                (_STEPRUN, self._get_steprun),
                (_PODS, self._list_pods),
                (_POD_LOG, self._pod_log),
                (_EVENTS, self._list_events),
                (_NAMESPACES, self._list_namespaces),
                (_VERSION, lambda: self._send_json(200, self.cluster.version)),
            ],
            "POST": [(_STEPRUNS, self._create)],
            "PATCH": [(_STEPRUN, self._patch)],
            "DELETE": [(_STEPRUN, self._delete)],
        }[method]

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- StepRuns -------------------------------------------------------------------------

    def _selected(self, namespace: str | None) -> list[Json]:
        query = self._query()
        fields = (query.get("fieldSelector") or [""])[0]
        labels = (query.get("labelSelector") or [None])[0]
        return [
            copy.deepcopy(obj)
            for (ns, _name), obj in sorted(self.cluster.stepruns.items())
            if namespace in (None, ns)
            and _fields_match(obj, fields)
            and _matches(obj["metadata"].get("labels") or {}, labels)
        ]

    def _list_stepruns(self, namespace: str | None) -> None:
        # Like the API server (Go's strconv.ParseBool), accept "true" and "True".
        if (self._query().get("watch") or [""])[0].lower() == "true":
            self._watch(namespace)
            return
        with self.cluster.cond:
            items = self._selected(namespace)
            rv = str(self.cluster.rv)
        self._send_json(
            200,
            {
                "apiVersion": "steprun.dev/v1alpha1",
                "kind": "StepRunList",
                "metadata": {"resourceVersion": rv},
                "items": items,
            },
        )

    def _watch(self, namespace: str | None) -> None:
        query = self._query()
        cluster = self.cluster
        since = int((query.get("resourceVersion") or ["0"])[0] or 0)
        timeout = int((query.get("timeoutSeconds") or ["30"])[0])
        field = (query.get("fieldSelector") or [""])[0]
        labels = (query.get("labelSelector") or [None])[0]
        wanted_name = field.removeprefix("metadata.name=") if field else None
        self._start_stream("application/json")
        if since < cluster.compacted_below:
            gone = _status(410, "too old resource version", reason="Expired")
            self._chunk(json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
            self._end_stream()
            return
        deadline = time.monotonic() + timeout
        while not cluster.stopping:
            with cluster.cond:
                events = [
                    (rv, kind, obj)
                    for rv, kind, obj in cluster.history
                    if rv > since
                    and namespace in (None, obj["metadata"]["namespace"])
                    and wanted_name in (None, obj["metadata"]["name"])
                    and _matches(obj["metadata"].get("labels") or {}, labels)
                ]
                if not events:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    cluster.cond.wait(min(remaining, 0.2))
                    continue
            for rv, kind, obj in events:
                self._chunk(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
                since = rv
        self._end_stream()

    def _get_steprun(self, namespace: str, name: str) -> None:
        with self.cluster.cond:
            obj = self.cluster.stepruns.get((namespace, name))
        if obj is None:
            self._send_json(404, _status(404, f'stepruns "{name}" not found', reason="NotFound"))
        else:
            self._send_json(200, obj)

    def _create(self, namespace: str) -> None:
        dry_run = (self._query().get("dryRun") or [""])[0] == "All"
        code, body = self.cluster.create(namespace, self._body(), dry_run=dry_run)
        self._send_json(code, body)

    def _list_events(self, namespace: str) -> None:
        fields = (self._query().get("fieldSelector") or [""])[0]
        with self.cluster.cond:
            items = [
                copy.deepcopy(e)
                for e in self.cluster.events
                if e["metadata"]["namespace"] == namespace and _fields_match(e, fields)
            ]
        self._send_json(200, {"kind": "EventList", "apiVersion": "v1", "items": items})

    def _list_namespaces(self) -> None:
        items = [{"metadata": {"name": name}} for name in self.cluster.namespaces]
        self._send_json(200, {"kind": "NamespaceList", "apiVersion": "v1", "items": items})

    def _patch(self, namespace: str, name: str) -> None:
        if self.headers.get("Content-Type") != "application/merge-patch+json":
            self._send_json(415, _status(415, "unsupported patch type"))
            return
        obj = self.cluster.patch(namespace, name, self._body())
        if obj is None:
            self._send_json(404, _status(404, f'stepruns "{name}" not found'))
        else:
            self._send_json(200, obj)

    def _delete(self, namespace: str, name: str) -> None:
        obj = self.cluster.delete(namespace, name)
        if obj is None:
            self._send_json(404, _status(404, f'stepruns "{name}" not found'))
        else:
            self._send_json(200, _status(200, "deleted") | {"status": "Success"})

    # -- Pods -----------------------------------------------------------------------------

    def _list_pods(self, namespace: str) -> None:
        selector = (self._query().get("labelSelector") or [None])[0]
        with self.cluster.cond:
            items = [
                copy.deepcopy(pod)
                for (ns, _), pod in sorted(self.cluster.pods.items())
                if ns == namespace and _matches(pod["metadata"]["labels"], selector)
            ]
        self._send_json(
            200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}
        )

    def _pod_log(self, namespace: str, pod: str) -> None:
        cluster = self.cluster
        key = (namespace, pod)
        query = self._query()
        follow = (query.get("follow") or [""])[0].lower() == "true"
        tail = int((query.get("tailLines") or ["-1"])[0])
        stamped = (query.get("timestamps") or [""])[0].lower() == "true"
        with cluster.cond:
            found = cluster.pods.get(key)
            state = found["status"]["containerStatuses"][0]["state"] if found else {}
        if found is None:
            self._send_json(404, _status(404, f'pods "{pod}" not found'))
            return
        if "waiting" in state:
            self._send_json(400, _status(400, f'container "step" in pod "{pod}" is waiting'))
            return
        self._start_stream("text/plain")
        sent = 0
        while not cluster.stopping:
            with cluster.cond:
                if sent == 0 and tail >= 0:
                    sent = max(0, len(cluster.logs.get(key, [])) - tail)
                lines = cluster.logs.get(key, [])[sent:]
                done = not follow or key in cluster.closed_logs
                if not lines and not done:
                    cluster.cond.wait(0.2)
                    continue
            if lines:
                # One chunk per line, except the last line split in two, to exercise the
                # client's reassembly of lines across chunks.
                for line in lines:
                    data = (f"2026-01-01T00:00:00Z {line}" if stamped else line).encode()
                    half = len(data) // 2
                    self._chunk(data[:half])
                    self._chunk(data[half:])
                sent += len(lines)
            elif done:
                break
        self._end_stream()


class FakeApiServer:
    """Runs the fake API server on a free local port for the duration of a ``with`` block."""

    def __init__(self) -> None:
        self.cluster = FakeCluster()
        handler = type("Handler", (_Handler,), {"cluster": self.cluster})
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

    def kubeconfig(self, directory: Path, namespace: str = "ns1") -> str:
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


def later(delay: float, action: Callable[[], None]) -> threading.Timer:
    """Plays the operator's part: ``action`` runs ``delay`` seconds from now."""
    timer = threading.Timer(delay, action)
    timer.daemon = True
    timer.start()
    return timer


def finish(cluster: FakeCluster, name: str, namespace: str = "ns1", **status: Any) -> None:
    """What the operator writes when a step ends (Succeeded with exit code 0 by default)."""
    cluster.set_status(
        namespace, name, **({"phase": "Succeeded", "reason": "Completed", "exitCode": 0} | status)
    )


SPEC = {"image": "busybox:1.36", "script": "echo hi"}
FAST = Backoff(retries=2, initial=0.01, maximum=0.02)


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with FakeApiServer() as running:
        yield running


@pytest.fixture
def client(server: FakeApiServer) -> Iterator[StepRunClient]:
    with StepRunClient(
        server.sync_api_client(), "ns1", watch_timeout_seconds=1, poll_interval=0.05, backoff=FAST
    ) as made:
        yield made


# ---------------------------------------------------------------------- submit / get / list


def test_submit_creates_the_steprun_with_workflow_labels(
    client: StepRunClient, server: FakeApiServer
) -> None:
    spec = {**SPEC, "context": {"workflow": {"name": "build", "runId": "42", "stepId": "lint"}}}
    handle = client.submit(spec, name="build-42-lint", labels={"team": "web"})
    assert (handle.name, handle.namespace) == ("build-42-lint", "ns1")
    stored = server.cluster.get("ns1", "build-42-lint")
    assert stored["metadata"]["labels"] == {
        "team": "web",
        "steprun.dev/workflow": "build",
        "steprun.dev/run-id": "42",
        "steprun.dev/step-id": "lint",
    }
    assert stored["spec"]["script"] == "echo hi"
    assert client.get("build-42-lint").spec.image == "busybox:1.36"


def test_submit_without_a_name_generates_one_from_the_image(client: StepRunClient) -> None:
    handle = client.submit(StepRunSpec.model_validate(SPEC))
    assert re.fullmatch(r"busybox-[0-9a-f]{5}", handle.name)


def test_submitting_the_same_step_twice_returns_the_existing_one(
    client: StepRunClient, server: FakeApiServer
) -> None:
    first = client.submit(SPEC, name="same")
    client.cancel("same")  # a control switch, not part of what the step is
    again = client.submit(SPEC, name="same")
    assert again.name == first.name
    assert len(server.cluster.requests_of("POST")) == 2
    with pytest.raises(StepRunConflict) as raised:
        client.submit({**SPEC, "script": "echo other"}, name="same")
    assert raised.value.steprun is not None and raised.value.steprun.name == "same"


def test_a_refused_steprun_raises_invalid_with_the_server_message(
    client: StepRunClient, server: FakeApiServer
) -> None:
    server.cluster.invalid = _status(
        422,
        'StepRun.steprun.dev "x" is invalid: spec.image: Required value',
        reason="Invalid",
        details={"causes": [{"field": "spec.image", "message": "Required value"}]},
    )
    with pytest.raises(InvalidStepRun) as raised:
        client.submit(SPEC, name="x")
    assert "spec.image: Required value" in raised.value.message
    assert raised.value.causes[0].field == "spec.image"


def test_list_filters_by_workflow_fields(client: StepRunClient, server: FakeApiServer) -> None:
    for run_id in ("1", "2"):
        client.submit(
            {**SPEC, "context": {"workflow": {"name": "build", "runId": run_id}}},
            name=f"build-{run_id}",
        )
    client.submit(SPEC, name="other")
    assert [sr.name for sr in client.list(workflow="build", run_id="2")] == ["build-2"]
    assert {sr.name for sr in client.list(workflow="build")} == {"build-1", "build-2"}
    assert len(client.list(all_namespaces=True)) == 3
    (query,) = [q for q in server.cluster.requests_of("GET", "stepruns") if "fieldSelector" in q][
        :1
    ]
    assert query["fieldSelector"] == [
        "spec.context.workflow.name=build,spec.context.workflow.runId=2"
    ]


def test_get_of_a_missing_steprun_raises_not_found(client: StepRunClient) -> None:
    with pytest.raises(StepRunNotFound):
        client.get("nope")


def test_cancel_sends_a_merge_patch(client: StepRunClient, server: FakeApiServer) -> None:
    client.submit(SPEC, name="c")
    assert client.cancel("c").spec.cancel is True
    (patch,) = [r for r in server.cluster.requests if r[0] == "PATCH"]
    assert patch[3] == "application/merge-patch+json"


def test_delete_removes_and_then_not_found(client: StepRunClient) -> None:
    client.submit(SPEC, name="d")
    client.delete("d")
    with pytest.raises(StepRunNotFound):
        client.delete("d")


# ---------------------------------------------------------------------- retries and errors


def test_transient_server_errors_are_retried(client: StepRunClient, server: FakeApiServer) -> None:
    client.submit(SPEC, name="r")
    server.cluster.failures = [503, 500]
    assert client.get("r").name == "r"


def test_persistent_server_errors_raise_api_unreachable(
    client: StepRunClient, server: FakeApiServer
) -> None:
    server.cluster.failures = [503, 503, 503]
    with pytest.raises(ApiUnreachable):
        client.get("r")


def test_a_server_that_is_not_there_raises_api_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    configuration = kubernetes.client.Configuration()
    configuration.host = f"http://127.0.0.1:{port}"
    configuration.retries = 0
    with (
        StepRunClient(kubernetes.client.ApiClient(configuration), "ns1", backoff=FAST) as client,
        pytest.raises(ApiUnreachable),
    ):
        client.get("x")


# ---------------------------------------------------------------------- wait


def test_wait_returns_the_terminal_steprun_across_watch_restarts(
    client: StepRunClient, server: FakeApiServer
) -> None:
    client.submit(SPEC, name="w")
    later(0.3, lambda: server.cluster.set_status("ns1", "w", phase="Running"))
    later(2.6, lambda: finish(server.cluster, "w"))
    done = client.wait("w", timeout=20)
    assert done.status.phase == "Succeeded"
    watches = server.cluster.requests_of("GET", "stepruns")
    watches = [q for q in watches if q.get("watch")]
    # One-second watches over ~2.6 s: the client resumed several times, each time from the
    # version it had seen last, never from scratch.
    assert len(watches) >= 3
    assert all(q["resourceVersion"][0] for q in watches)
    assert all(q["fieldSelector"] == ["metadata.name=w"] for q in watches)


def test_wait_relists_after_410_gone(client: StepRunClient, server: FakeApiServer) -> None:
    client.submit(SPEC, name="g")

    def compact_then_finish() -> None:
        server.cluster.compacted_below = 10**9
        finish(server.cluster, "g", phase="Failed", reason="Error", exitCode=3)

    later(1.5, compact_then_finish)
    done = client.wait("g", timeout=20)
    assert (done.status.phase, done.status.exit_code) == ("Failed", 3)


def test_wait_times_out_with_the_last_seen_state(
    client: StepRunClient, server: FakeApiServer
) -> None:
    client.submit(SPEC, name="slow")
    server.cluster.set_status("ns1", "slow", phase="Running")
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as raised:
        client.wait("slow", timeout=1.2)
    assert time.monotonic() - started < 5
    assert raised.value.steprun is not None and raised.value.steprun.status.phase == "Running"


def test_wait_on_a_deleted_steprun_raises_not_found(
    client: StepRunClient, server: FakeApiServer
) -> None:
    client.submit(SPEC, name="gone")
    later(0.3, lambda: server.cluster.delete("ns1", "gone"))
    with pytest.raises(StepRunNotFound):
        client.wait("gone", timeout=10)


def test_run_returns_a_failed_result_and_raises_on_rejected(
    client: StepRunClient, server: FakeApiServer
) -> None:
    def operator(name: str, **status: Any) -> None:
        later(0.3, lambda: finish(server.cluster, name, **status))

    operator(
        "f",
        phase="Failed",
        reason="Error",
        exitCode=7,
        outputs={"k": "v"},
        attempts=[{"attempt": 1, "podName": "f-1", "exitCode": 7}],
    )
    result = client.run(SPEC, name="f", timeout=10)
    assert not result.succeeded
    assert (result.exit_code, result.outputs, len(result.attempts)) == (7, {"k": "v"}, 1)

    operator("rej", phase="Rejected", reason="PermissionDenied", message="denied: x")
    with pytest.raises(StepRunRejected) as raised:
        client.run(SPEC, name="rej", timeout=10)
    assert (raised.value.reason, raised.value.message) == ("PermissionDenied", "denied: x")


# ---------------------------------------------------------------------- logs


def test_logs_follow_every_attempt_in_order(client: StepRunClient, server: FakeApiServer) -> None:
    cluster = server.cluster
    client.submit(SPEC, name="lg")
    pod1 = cluster.add_pod("ns1", "lg", 1, state="waiting", reason="ContainerCreating")

    def first_attempt() -> None:
        cluster.set_pod_state("ns1", pod1, "running")
        cluster.log("ns1", pod1, "attempt 1", "failing")
        later(0.3, second_attempt)

    def second_attempt() -> None:
        cluster.set_pod_state("ns1", pod1, "terminated", "Error")
        cluster.end_log("ns1", pod1)
        cluster.set_status(
            "ns1", "lg", phase="Pending", reason="Retrying", nextAttemptTime="2030-01-01T00:00:00Z"
        )
        later(0.3, start_second)

    def start_second() -> None:
        pod2 = cluster.add_pod("ns1", "lg", 2)
        cluster.log("ns1", pod2, "attempt 2", "résumé ok")
        cluster.set_pod_state("ns1", pod2, "terminated", "Completed")
        cluster.end_log("ns1", pod2)
        finish(cluster, "lg")

    later(0.3, first_attempt)
    events = list(client.log_events("lg", follow=True))
    lines = [e.text for e in events if isinstance(e, LogLine)]
    assert lines == ["attempt 1", "failing", "attempt 2", "résumé ok"]
    assert [e.attempt for e in events if isinstance(e, AttemptStarted)] == [1, 2]
    waiting = [e for e in events if isinstance(e, PodWaiting)]
    assert waiting[0] == PodWaiting(1, "lg-1", "ContainerCreating")
    assert PodWaiting(2, None, "Retrying") in waiting
    # Both attempts read again without follow, after the fact, give the same lines.
    assert list(client.logs("lg")) == lines
    assert list(client.logs("lg", attempt=2)) == ["attempt 2", "résumé ok"]


def test_logs_of_a_missing_steprun_raise_not_found(client: StepRunClient) -> None:
    with pytest.raises(StepRunNotFound):
        list(client.logs("nope"))


# ---------------------------------------------------------------------- asyncio client


async def test_async_client_submits_waits_reads_logs_and_cancels(server: FakeApiServer) -> None:
    cluster = server.cluster
    async with AsyncStepRunClient(
        server.async_api_client(),
        "ns1",
        watch_timeout_seconds=1,
        poll_interval=0.05,
        backoff=FAST,
    ) as client:
        handle = await client.submit(SPEC, name="a")
        again = await client.submit(SPEC, name="a")
        assert again.name == handle.name
        pod = cluster.add_pod("ns1", "a", 1)
        cluster.log("ns1", pod, "hello", "from async")

        def end() -> None:
            cluster.set_pod_state("ns1", pod, "terminated", "Completed")
            cluster.end_log("ns1", pod)
            finish(cluster, "a", outputs={"k": "v"})

        later(2.2, end)
        lines = [line async for line in handle.logs(follow=True)]
        assert lines == ["hello", "from async"]
        result = await handle.result(timeout=10)
        assert result.succeeded and result.outputs == {"k": "v"}

        await client.submit(SPEC, name="b")
        later(1.5, lambda: finish(cluster, "b", phase="Cancelled", reason="Cancelled"))
        cancelled = await client.cancel("b")
        assert cancelled.spec.cancel is True
        assert (await client.wait("b", timeout=10)).status.phase == "Cancelled"
        assert [sr.name for sr in await client.list()] == ["a", "b"]
        with pytest.raises(StepRunNotFound):
            await client.get("missing")
        await client.delete("b")


async def test_async_wait_resumes_and_relists(server: FakeApiServer) -> None:
    cluster = server.cluster
    async with AsyncStepRunClient(
        server.async_api_client(), "ns1", watch_timeout_seconds=1, backoff=FAST
    ) as client:
        await client.submit(SPEC, name="w")
        later(1.2, lambda: cluster.touch("ns1", "w"))

        def compact_then_finish() -> None:
            cluster.compacted_below = 10**9
            finish(cluster, "w", phase="TimedOut", reason="DeadlineExceeded")

        later(2.5, compact_then_finish)
        done = await client.wait("w", timeout=20)
        assert done.status.phase == "TimedOut"
        watches = [q for q in cluster.requests_of("GET", "stepruns") if q.get("watch")]
        assert len(watches) >= 3
        with pytest.raises(WaitTimeout):
            await client.wait((await client.submit(SPEC, name="never")).name, timeout=1.1)


async def test_async_client_loads_the_kubeconfig_namespace(
    server: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", server.kubeconfig(tmp_path, namespace="from-context"))
    async with AsyncStepRunClient(backoff=FAST) as client:
        assert client.namespace == "from-context"
        handle = await client.submit(SPEC, name="k")
        assert handle.namespace == "from-context"


def test_sync_client_loads_the_kubeconfig_namespace(
    server: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", server.kubeconfig(tmp_path, namespace="from-context"))
    with StepRunClient(backoff=FAST) as client:
        assert client.namespace == "from-context"
        assert client.submit(SPEC, name="k").namespace == "from-context"


# ---------------------------------------------------------------------- trace context

TRACE_ID, SPAN_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def engine_span() -> Any:
    """A span of the engine, as its tracer would make (the API alone, no SDK needed)."""
    from opentelemetry import trace
    from opentelemetry.trace.span import TraceState

    context = trace.SpanContext(
        TRACE_ID,
        SPAN_ID,
        is_remote=False,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
        trace_state=TraceState([("engine", "run42")]),
    )
    return trace.use_span(trace.NonRecordingSpan(context))


def test_submit_carries_the_engines_current_trace_context(
    client: StepRunClient, server: FakeApiServer
) -> None:
    with engine_span():
        client.submit(SPEC, name="traced")
        client.submit(SPEC, name="untraced", propagate_trace=False)
    assert server.cluster.get("ns1", "traced")["spec"]["context"]["trace"] == {
        "traceparent": TRACEPARENT,
        "tracestate": "engine=run42",
    }
    assert "trace" not in server.cluster.get("ns1", "untraced")["spec"].get("context", {})
    # Outside any span nothing is added.
    client.submit(SPEC, name="outside")
    assert "trace" not in server.cluster.get("ns1", "outside")["spec"].get("context", {})


def test_an_explicit_trace_wins_and_resubmitting_in_another_span_is_the_same_step(
    client: StepRunClient, server: FakeApiServer
) -> None:
    other = "00-11111111111111111111111111111111-2222222222222222-00"
    spec = {**SPEC, "context": {"trace": {"traceparent": other}}}
    with engine_span():
        client.submit(spec, name="explicit")
        again = client.submit(SPEC, name="explicit")
    assert again.name == "explicit"
    assert server.cluster.get("ns1", "explicit")["spec"]["context"]["trace"] == {
        "traceparent": other
    }


def test_without_opentelemetry_installed_nothing_is_added(
    client: StepRunClient, server: FakeApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with engine_span():
        # What `import` sees when the optional dependency is absent.
        monkeypatch.setitem(sys.modules, "opentelemetry.trace.propagation.tracecontext", None)
        client.submit(SPEC, name="no-otel")
    assert "trace" not in server.cluster.get("ns1", "no-otel")["spec"].get("context", {})


async def test_async_submit_carries_the_trace_context(server: FakeApiServer) -> None:
    async with AsyncStepRunClient(server.async_api_client(), "ns1", backoff=FAST) as client:
        with engine_span():
            await client.submit(SPEC, name="async-traced")
    trace = server.cluster.get("ns1", "async-traced")["spec"]["context"]["trace"]
    assert trace["traceparent"] == TRACEPARENT


# ---------------------------------------------------------------------- archive and artifacts


class MemoryStore:
    """An artifact store in a dict: what the clients read of the real one (list, stream)."""

    prefix = "runs/"

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def keys(self, prefix: str) -> list[str]:
        return sorted(key for key in self.objects if key.startswith(prefix))

    async def get_stream(self, key: str) -> Any:
        data = self.objects[key]
        for start in range(0, len(data), 7):  # small chunks: lines cross chunk borders
            yield data[start : start + 7]


def _archived_step(cluster: FakeCluster) -> MemoryStore:
    """A finished two-attempt step whose first Pod is gone; both logs are archived, and the
    second attempt uploaded an artifact."""
    from steprun.artifacts.names import artifact_key, log_key

    cluster.create("ns1", {"metadata": {"name": "arch"}, "spec": {"image": "busybox"}})
    data = b"tarball bytes"
    artifact = {
        "name": "dist",
        "attempt": 2,
        "key": artifact_key("runs/", "ns1", "arch", 2, "dist"),
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    finish(
        cluster,
        "arch",
        attempts=[{"attempt": 1, "podName": "arch-1"}, {"attempt": 2, "podName": "arch-2"}],
        artifacts=[artifact],
    )
    pod = cluster.add_pod("ns1", "arch", 2, state="terminated", reason="Completed")
    cluster.log("ns1", pod, "live line of 2")
    return MemoryStore(
        {
            log_key("runs/", "ns1", "arch", 1): b"first attempt\nfailed here\n",
            log_key("runs/", "ns1", "arch", 2): b"archived line of 2\nlast, no newline",
            artifact["key"]: data,
        }
    )


ARCHIVED_LINES = ["first attempt", "failed here", "archived line of 2", "last, no newline"]


def test_blocking_client_reads_archived_logs_and_downloads_artifacts(
    server: FakeApiServer, tmp_path: Path
) -> None:
    store = _archived_step(server.cluster)
    with StepRunClient(
        server.sync_api_client(), "ns1", backoff=FAST, artifact_store=cast(ArtifactStore, store)
    ) as client:
        assert list(client.logs("arch")) == ARCHIVED_LINES
        assert list(client.logs("arch", attempt=1)) == ARCHIVED_LINES[:2]
        assert [a.name for a in client.artifacts("arch")] == ["dist"]
        written = client.download("arch", "dist", tmp_path / "dist.tgz")
        assert written.read_bytes() == b"tarball bytes"


async def test_async_client_reads_archived_logs_and_downloads_artifacts(
    server: FakeApiServer, tmp_path: Path
) -> None:
    store = _archived_step(server.cluster)
    async with AsyncStepRunClient(
        server.async_api_client(), "ns1", backoff=FAST, artifact_store=cast(ArtifactStore, store)
    ) as client:
        assert [line async for line in client.logs("arch")] == ARCHIVED_LINES
        events = [event async for event in client.log_events("arch", attempt=2)]
        assert events[0] == AttemptStarted(2, "arch-2")
        assert [a.name for a in await client.artifacts("arch")] == ["dist"]
        written = await client.download("arch", "dist", tmp_path / "dist.tgz")
        assert written.read_bytes() == b"tarball bytes"
        # Deleted StepRun, archive kept: still readable.
        await client.delete("arch")
        assert [line async for line in client.logs("arch")] == ARCHIVED_LINES


def test_log_options_reach_the_log_request(client: StepRunClient, server: FakeApiServer) -> None:
    client.submit(SPEC, name="opt")
    pod = server.cluster.add_pod("ns1", "opt", 1, state="terminated", reason="Completed")
    server.cluster.log("ns1", pod, "one", "two", "three")
    assert list(client.logs("opt", options=LogOptions(tail=2, timestamps=True))) == [
        "2026-01-01T00:00:00Z two",
        "2026-01-01T00:00:00Z three",
    ]
    (query,) = server.cluster.requests_of("GET", "/log")
    assert (query["tailLines"], query["timestamps"]) == (["2"], ["true"])


# ---------------------------------------------------------------------- one implementation


def _public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(cls).items()
        if callable(member) and not name.startswith("_")
    }


@pytest.mark.parametrize(
    ("blocking", "asynchronous"),
    [(StepRunClient, AsyncStepRunClient), (StepRunHandle, AsyncStepRunHandle)],
    ids=["client", "handle"],
)
def test_the_blocking_api_is_the_async_one(blocking: type, asynchronous: type) -> None:
    """Every public method of the async client exists blocking, with the same parameters
    (connect() aside: the blocking client connects in its constructor)."""
    mirrored = _public_methods(blocking)
    for name, signature in _public_methods(asynchronous).items():
        if name == "connect":
            continue
        assert name in mirrored, f"{blocking.__name__} lacks {name}"
        assert list(mirrored[name].parameters) == list(signature.parameters), name


def test_the_blocking_client_takes_every_option_of_the_async_one() -> None:
    """The blocking constructor's keyword options are ClientOptions: the async constructor's
    keyword-only parameters, with the same types."""
    signature = inspect.signature(AsyncStepRunClient.__init__, eval_str=True)
    keyword_only = {
        name: parameter.annotation
        for name, parameter in signature.parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    assert get_type_hints(ClientOptions) == keyword_only


def test_an_interrupted_blocking_call_cancels_its_coroutine() -> None:
    from steprun.client.sync import portal

    unwound = threading.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            unwound.set()

    with pytest.raises(concurrent.futures.TimeoutError):
        portal().call(slow, timeout=0.2)
    # Cancelled and unwound by the time the caller goes on; the portal still serves calls.
    assert unwound.is_set()

    async def answer() -> int:
        return 42

    assert portal().call(answer) == 42


def test_an_abandoned_blocking_iterator_closes_the_async_one() -> None:
    from steprun.client.sync import portal

    closed = threading.Event()

    async def numbers() -> Any:
        try:
            for n in range(100):
                yield n
        finally:
            closed.set()

    items = portal().iterate(numbers())
    assert [next(items), next(items)] == [0, 1]
    items.close()  # what `break` out of a for loop does
    assert closed.is_set()
