"""The only module of the operator that talks to the API server.

Asynchronous all the way (``kubernetes_asyncio``): a blocking call on the event loop would stall
every StepRun at once. Objects travel as plain JSON dicts; rendering them is somebody else's job.
Every failure is classified once, into the taxonomy of ``steprun.kube.errors``.

Every request passes ``steprun.kube.throttle``: the client-side rate (STEPRUN_API_QPS,
STEPRUN_API_BURST) and the API server's 429s, whose Retry-After holds all requests. The HTTP
session does not consult the environment (``trust_env``): kubernetes_asyncio turns it on, and
it costs every request two thread-pool hops (a .netrc read and a proxy lookup). A proxy is
used when given explicitly: the kubeconfig cluster's ``proxy-url`` or STEPRUN_API_PROXY.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncGenerator, Iterator, Mapping
from typing import Any, cast

import aiohttp
from kubernetes_asyncio import client as k8s

from steprun.api.resources import resource
from steprun.kube.config import configuration_of, load_configuration
from steprun.kube.errors import (
    AlreadyExists,
    Conflict,
    KubeError,
    NotFound,
    QuotaExceeded,
    Refused,
    TooLarge,
    Transient,
    classify_exception,
    classify_response,
)
from steprun.kube.throttle import Throttle
from steprun.metrics import API_ERRORS, API_REQUESTS, API_THROTTLED_SECONDS

Body = dict[str, Any]
# Seconds for the whole request, or (connect, read) seconds: a read timeout bounds the silence
# between two chunks, not the length of a stream. None: no bound.
Timeout = float | tuple[float, float] | None


def _path(kind: str, namespace: str | None, name: str | None = None, sub: str = "") -> str:
    return resource(kind).path(namespace, name, sub)


@contextlib.contextmanager
def _answered(verb: str, throttle: Throttle | None = None) -> Iterator[None]:
    """Times one request and turns its failure into the taxonomy of ``steprun.kube.errors``
    (counted by status; 0 when the server never answered). A 429 holds ``throttle``."""
    started = time.perf_counter()
    try:
        yield
    except k8s.ApiException as raw:
        headers: Mapping[str, str] = raw.headers or {}
        error = classify_response(
            int(raw.status or 0),
            raw.body,
            http_reason=str(raw.reason or ""),
            retry_after=headers.get("Retry-After"),
        )
        if error.status == 429 and throttle is not None:
            # API Priority and Fairness (or max-in-flight) refused this flow: everything this
            # client sends next would be refused too until the server's Retry-After.
            throttle.hold(error.retry_after)
        API_ERRORS.labels(verb=verb, code=str(error.status)).inc()
        raise error from None
    except Exception as raw:
        unanswered = classify_exception(raw)
        if unanswered is None:
            raise
        API_ERRORS.labels(verb=verb, code="0").inc()
        raise unanswered from raw
    finally:
        API_REQUESTS.labels(verb=verb).observe(time.perf_counter() - started)


# kubernetes_asyncio's read buffer: a watch event or object may be up to etcd's 1.5 MiB.
_READ_BUFSIZE = 2**21


def api_client(configuration: k8s.Configuration, *, proxy: str | None = None) -> k8s.ApiClient:
    """An ApiClient whose HTTP session never looks at the environment (see the module doc)."""
    if proxy:
        configuration.proxy = proxy
    api = k8s.ApiClient(configuration)
    rest = api.rest_client
    implicit = rest.pool_manager
    rest.pool_manager = aiohttp.ClientSession(
        connector=implicit.connector, trust_env=False, read_bufsize=_READ_BUFSIZE
    )
    # The replaced session has sent nothing; the connector (the TLS setup) is kept.
    implicit.detach()
    return api


class Kube:
    """Thin async access to the handful of resources the operator reads and writes."""

    def __init__(self, api: k8s.ApiClient, *, throttle: Throttle | None = None):
        self._api = api
        self.throttle = throttle or Throttle()

    @classmethod
    async def connect(
        cls,
        config_file: str | None = None,
        context: str | None = None,
        *,
        qps: float = 0.0,
        burst: int = 1,
        proxy: str | None = None,
    ) -> Kube:
        """Credentials as kubectl finds them (``steprun.kube.config``): the kubeconfig, else
        the in-cluster service account; ``qps``/``burst``: the client-side rate (0: none)."""
        configuration, _ = await load_configuration(config_file, context)
        return cls.from_configuration(configuration, qps=qps, burst=burst, proxy=proxy)

    @classmethod
    def over(cls, given: Any) -> Kube:
        """Over an API client of this layer's library as it is, or over the connection
        settings of any other API client or configuration (``configuration_of``)."""
        if isinstance(given, k8s.ApiClient):
            return cls(given)
        return cls.from_configuration(configuration_of(given))

    @classmethod
    def from_configuration(
        cls,
        configuration: k8s.Configuration,
        *,
        qps: float = 0.0,
        burst: int = 1,
        proxy: str | None = None,
    ) -> Kube:
        """Over a configuration of ``steprun.kube.config`` (e.g. with a larger connection pool);
        call it inside the event loop that will use it."""
        return cls(api_client(configuration, proxy=proxy), throttle=Throttle(qps, burst))

    async def close(self) -> None:
        await self._api.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        request_timeout: Timeout = None,
    ) -> Body:
        """Any JSON request by path, classified into ``steprun.kube.errors`` (the helpers
        below are made of it; callers use it for what they do not offer: dry runs, /version,
        benchmarks)."""
        waited = await self.throttle.acquire()
        if waited:
            API_THROTTLED_SECONDS.observe(waited)
        with _answered(method.lower(), self.throttle):
            result = await self._api.call_api(
                path,
                method,
                query_params=list((query or {}).items()),
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                response_types_map={200: "object", 201: "object", 202: "object"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                # The library's annotation says a 1-tuple; its code takes (connect, read) pairs.
                _request_timeout=cast(Any, request_timeout),
            )
        return cast(Body, result or {})

    # ------------------------------------------------------------------ generic verbs

    async def get(self, kind: str, namespace: str | None, name: str) -> Body:
        return await self.request("GET", _path(kind, namespace, name))

    async def create(self, body: Mapping[str, Any]) -> Body:
        kind = str(body["kind"])
        namespace = body.get("metadata", {}).get("namespace")
        return await self.request("POST", _path(kind, namespace), body=dict(body))

    async def delete(
        self,
        kind: str,
        namespace: str | None,
        name: str,
        *,
        grace_period_seconds: int | None = None,
        uid: str | None = None,
    ) -> bool:
        """Delete; True when this call deleted it, False when it was already gone."""
        options: dict[str, Any] = {"propagationPolicy": "Background"}
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if uid:
            # Never delete a namesake created after the object we mean.
            options["preconditions"] = {"uid": uid}
        try:
            await self.request("DELETE", _path(kind, namespace, name), body=options)
        except NotFound:
            return False
        return True

    async def patch_status(
        self,
        kind: str,
        namespace: str | None,
        name: str,
        status: Mapping[str, Any],
        *,
        resource_version: str | None,
    ) -> Body:
        """Merge-patch .status; with resource_version, refused (Conflict) if the object moved on."""
        patch: dict[str, Any] = {"status": dict(status)}
        if resource_version:
            patch["metadata"] = {"resourceVersion": resource_version}
        return await self.request(
            "PATCH",
            _path(kind, namespace, name, "status"),
            body=patch,
            content_type="application/merge-patch+json",
        )

    async def list(
        self,
        kind: str,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Body]:
        """The items of one list call (no paging: for small, selected lists such as a Pod's
        events)."""
        query = {
            key: value
            for key, value in (("labelSelector", label_selector), ("fieldSelector", field_selector))
            if value
        }
        body = await self.request("GET", _path(kind, namespace), query=query)
        return list(body.get("items") or [])

    async def patch(
        self,
        kind: str,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        *,
        resource_version: str | None,
    ) -> Body:
        """Merge-patch the object; with resource_version, refused (Conflict) if it moved on."""
        body: dict[str, Any] = dict(patch)
        if resource_version:
            body["metadata"] = {**body.get("metadata", {}), "resourceVersion": resource_version}
        return await self.request(
            "PATCH",
            _path(kind, namespace, name),
            body=body,
            content_type="application/merge-patch+json",
        )

    async def remove_finalizer(
        self, kind: str, namespace: str | None, body: Mapping[str, Any], finalizer: str
    ) -> bool:
        """Remove ``finalizer`` from the object as last seen; False when it is already gone.

        A JSON patch that tests the entry it removes: a concurrent change of the list makes
        the patch fail instead of removing someone else's finalizer.
        """
        meta = body.get("metadata") or {}
        name = str(meta.get("name"))
        finalizers = list(meta.get("finalizers") or [])
        for _ in range(3):
            if finalizer not in finalizers:
                return False
            index = finalizers.index(finalizer)
            patch = [
                {"op": "test", "path": f"/metadata/finalizers/{index}", "value": finalizer},
                {"op": "remove", "path": f"/metadata/finalizers/{index}"},
            ]
            try:
                await self.request(
                    "PATCH",
                    _path(kind, namespace, name),
                    body=patch,
                    content_type="application/json-patch+json",
                )
                return True
            except NotFound:
                return False
            except Refused as error:
                if error.status != 422:
                    raise
            # The test failed: the list changed since it was read. Read it again.
            fresh = await self.get_or_none(kind, namespace, name)
            if fresh is None:
                return False
            finalizers = list(fresh["metadata"].get("finalizers") or [])
        raise Transient(409, "Conflict", f"the finalizers of {kind} {name} keep changing")

    # ------------------------------------------------------------------ helpers by kind

    async def get_or_none(self, kind: str, namespace: str | None, name: str) -> Body | None:
        try:
            return await self.get(kind, namespace, name)
        except NotFound:
            return None

    async def stream_log(
        self,
        namespace: str,
        name: str,
        container: str | None,
        *,
        follow: bool = False,
        timeout_seconds: Timeout = None,
        options: Mapping[str, str] | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """A container's log as it arrives, in chunks (never read whole into memory).

        ``options``: more of the API server's log options (tailLines, sinceSeconds, timestamps).
        """
        query = {**({"container": container} if container else {}), **(options or {})}
        if follow:
            query["follow"] = "true"
        async for chunk in self.stream(
            _path("Pod", namespace, name, "log"), query=query, request_timeout=timeout_seconds
        ):
            yield chunk

    async def stream(
        self, path: str, *, query: Mapping[str, str] | None = None, request_timeout: Timeout = None
    ) -> AsyncGenerator[bytes, None]:
        """A GET whose answer is read as it arrives, in chunks (logs, watches, /metrics)."""
        await self.throttle.acquire()
        with _answered("get", self.throttle):
            response = await self._api.call_api(
                path,
                "GET",
                query_params=list((query or {}).items()),
                header_params={"Accept": "*/*"},
                response_types_map={200: "str"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _preload_content=False,
                # The library's annotation says a 1-tuple; its code takes (connect, read) pairs.
                _request_timeout=cast(Any, request_timeout),
            )
        try:
            # Unread responses are not checked by the client library: a 404 would be streamed
            # as if it were the answer.
            if not 200 <= response.status <= 299:
                error = classify_response(
                    response.status,
                    await response.read(),
                    http_reason=str(response.reason or ""),
                    retry_after=response.headers.get("Retry-After"),
                )
                API_ERRORS.labels(verb="get", code=str(error.status)).inc()
                raise error
            try:
                async for chunk in response.content.iter_chunked(64 * 1024):
                    yield chunk
            except Exception as raw:
                # A connection lost mid-stream is classified like any other unanswered request.
                lost = classify_exception(raw)
                if lost is None or lost is raw:
                    raise
                API_ERRORS.labels(verb="get", code="0").inc()
                raise lost from raw
        finally:
            response.release()

    async def watch(
        self, path: str, *, query: Mapping[str, str] | None = None, request_timeout: Timeout = None
    ) -> AsyncGenerator[Body, None]:
        """The events of one watch request on the collection ``path``, as served (``type``,
        ``object``), until the server ends the watch.

        Events are parsed straight from the stream, without model classes: a watch of many
        objects must stay cheap. Resuming, and listing again after 410 Gone, is the caller's.
        """
        buffer = b""
        async for chunk in self.stream(
            path, query={**(query or {}), "watch": "true"}, request_timeout=request_timeout
        ):
            # Lines of any length: one event may be larger than any read buffer.
            *complete, buffer = (buffer + chunk).split(b"\n")
            for line in complete:
                if line.strip():
                    yield _event(line)
        if buffer.strip():
            yield _event(buffer)


def _event(line: bytes) -> Body:
    event = json.loads(line)
    if isinstance(event, dict) and "type" not in event and event.get("kind") == "Status":
        # The watch itself was refused mid-way: the server sent a bare Status.
        return {"type": "ERROR", "object": event}
    return cast(Body, event)


__all__ = [
    "AlreadyExists",
    "Body",
    "Conflict",
    "Kube",
    "KubeError",
    "NotFound",
    "QuotaExceeded",
    "Refused",
    "Timeout",
    "TooLarge",
    "Transient",
]
