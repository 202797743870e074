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

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

import aiohttp
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config

from steprun.api.models import GROUP, SANDBOXPOLICY_PLURAL, STEPRUN_PLURAL, VERSION
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

# kind -> (API path prefix, plural); namespaced unless noted in CLUSTER_SCOPED.
_RESOURCES: dict[str, tuple[str, str]] = {
    "Pod": ("/api/v1", "pods"),
    "ConfigMap": ("/api/v1", "configmaps"),
    "Secret": ("/api/v1", "secrets"),
    "Event": ("/api/v1", "events"),
    "Namespace": ("/api/v1", "namespaces"),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "StepRun": (f"/apis/{GROUP}/{VERSION}", STEPRUN_PLURAL),
    "SandboxPolicy": (f"/apis/{GROUP}/{VERSION}", SANDBOXPOLICY_PLURAL),
    # Read to tell whether this replica is the active one (steprun.activity).
    "ClusterKopfPeering": ("/apis/kopf.dev/v1", "clusterkopfpeerings"),
    # Read to know whether StepRun creators are checked (steprun.reconcile.tenancy).
    "ValidatingAdmissionPolicy": (
        "/apis/admissionregistration.k8s.io/v1",
        "validatingadmissionpolicies",
    ),
    "ValidatingAdmissionPolicyBinding": (
        "/apis/admissionregistration.k8s.io/v1",
        "validatingadmissionpolicybindings",
    ),
}
_CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "SandboxPolicy",
        "ClusterKopfPeering",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
)


def _path(kind: str, namespace: str | None, name: str | None = None, sub: str = "") -> str:
    prefix, plural = _RESOURCES[kind]
    path = prefix
    if kind not in _CLUSTER_SCOPED:
        path += f"/namespaces/{namespace}"
    path += f"/{plural}"
    if name:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    return path


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
    async def connect(cls, *, qps: float = 0.0, burst: int = 1, proxy: str | None = None) -> Kube:
        """Use in-cluster credentials when running in a Pod, the kubeconfig otherwise."""
        try:
            k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException:
            await k8s_config.load_kube_config()
        # What ApiClient() would use (the loaded default), with the session made here.
        configuration = k8s.Configuration.get_default_copy()
        return cls(api_client(configuration, proxy=proxy), throttle=Throttle(qps, burst))

    async def close(self) -> None:
        await self._api.close()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Body:
        verb = method.lower()
        waited = await self.throttle.acquire()
        if waited:
            API_THROTTLED_SECONDS.observe(waited)
        started = time.perf_counter()
        try:
            result = await self._api.call_api(
                path,
                method,
                query_params=list((query or {}).items()),
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                response_types_map={200: "object", 201: "object", 202: "object"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
            )
        except k8s.ApiException as raw:
            headers: Mapping[str, str] = raw.headers or {}
            error = classify_response(
                int(raw.status or 0),
                raw.body,
                http_reason=str(raw.reason or ""),
                retry_after=headers.get("Retry-After"),
            )
            if error.status == 429:
                # API Priority and Fairness (or max-in-flight) refused this flow: everything
                # this client sends next would be refused too until the server's Retry-After.
                self.throttle.hold(error.retry_after)
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
        return cast(Body, result or {})

    # ------------------------------------------------------------------ generic verbs

    async def get(self, kind: str, namespace: str | None, name: str) -> Body:
        return await self._call("GET", _path(kind, namespace, name))

    async def create(self, body: Mapping[str, Any]) -> Body:
        kind = str(body["kind"])
        namespace = body.get("metadata", {}).get("namespace")
        return await self._call("POST", _path(kind, namespace), body=dict(body))

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
            await self._call("DELETE", _path(kind, namespace, name), body=options)
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
        return await self._call(
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
        body = await self._call("GET", _path(kind, namespace), query=query)
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
        return await self._call(
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
                await self._call(
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
        container: str,
        *,
        follow: bool = False,
        timeout_seconds: float | None = None,
    ) -> AsyncIterator[bytes]:
        """A container's log as it arrives, in chunks (never read whole into memory)."""
        query = [("container", container)]
        if follow:
            query.append(("follow", "true"))
        await self.throttle.acquire()
        started = time.perf_counter()
        try:
            response = await self._api.call_api(
                _path("Pod", namespace, name, "log"),
                "GET",
                query_params=query,
                header_params={"Accept": "*/*"},
                response_types_map={200: "str"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _preload_content=False,
                _request_timeout=timeout_seconds,
            )
        except k8s.ApiException as raw:
            headers: Mapping[str, str] = raw.headers or {}
            error = classify_response(
                int(raw.status or 0),
                raw.body,
                http_reason=str(raw.reason or ""),
                retry_after=headers.get("Retry-After"),
            )
            API_ERRORS.labels(verb="get", code=str(error.status)).inc()
            raise error from None
        except Exception as raw:
            unanswered = classify_exception(raw)
            if unanswered is None:
                raise
            API_ERRORS.labels(verb="get", code="0").inc()
            raise unanswered from raw
        finally:
            API_REQUESTS.labels(verb="get").observe(time.perf_counter() - started)
        try:
            # Unread responses are not checked by the client library: a 404 would be streamed
            # as if it were the log.
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
                # A connection lost mid-log is classified like any other unanswered request.
                lost = classify_exception(raw)
                if lost is None or lost is raw:
                    raise
                API_ERRORS.labels(verb="get", code="0").inc()
                raise lost from raw
        finally:
            response.release()


__all__ = [
    "AlreadyExists",
    "Body",
    "Conflict",
    "Kube",
    "KubeError",
    "NotFound",
    "QuotaExceeded",
    "Refused",
    "TooLarge",
    "Transient",
]
