"""The only module of the operator that talks to the API server.

Asynchronous all the way (``kubernetes_asyncio``): a blocking call on the event loop would stall
every StepRun at once. Objects travel as plain JSON dicts; rendering them is somebody else's job.
Errors are turned into a few typed exceptions that the reconciler can decide on.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, cast

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config

from steprun.api.models import GROUP, SANDBOXPOLICY_PLURAL, STEPRUN_PLURAL, VERSION
from steprun.metrics import API_ERRORS, API_REQUESTS

Body = dict[str, Any]

# kind -> (API path prefix, plural); namespaced unless noted in CLUSTER_SCOPED.
_RESOURCES: dict[str, tuple[str, str]] = {
    "Pod": ("/api/v1", "pods"),
    "ConfigMap": ("/api/v1", "configmaps"),
    "Secret": ("/api/v1", "secrets"),
    "Event": ("/api/v1", "events"),
    "Namespace": ("/api/v1", "namespaces"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "StepRun": (f"/apis/{GROUP}/{VERSION}", STEPRUN_PLURAL),
    "SandboxPolicy": (f"/apis/{GROUP}/{VERSION}", SANDBOXPOLICY_PLURAL),
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
    {"Namespace", "SandboxPolicy", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
)


class KubeError(Exception):
    def __init__(self, status: int, reason: str, message: str, body: Mapping[str, Any] | None):
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body or {}


class NotFound(KubeError):
    pass


class AlreadyExists(KubeError):
    pass


class Conflict(KubeError):
    """A write lost a race: the object changed since it was read (stale resourceVersion)."""


class Invalid(KubeError):
    """The API server refused the object (422) or forbade it (403, e.g. admission)."""


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


def _error(error: k8s.ApiException) -> KubeError:
    import json

    body: dict[str, Any] = {}
    try:
        body = json.loads(error.body) if error.body else {}
    except (TypeError, ValueError):
        body = {}
    reason = str(body.get("reason") or error.reason or "")
    message = str(body.get("message") or error.reason or "")
    status = int(error.status or 0)
    if status == 404:
        return NotFound(status, reason, message, body)
    if status == 409 and reason == "AlreadyExists":
        return AlreadyExists(status, reason, message, body)
    if status == 409:
        return Conflict(status, reason, message, body)
    if status in (403, 422, 400):
        return Invalid(status, reason, message, body)
    return KubeError(status, reason, message, body)


class Kube:
    """Thin async access to the handful of resources the operator reads and writes."""

    def __init__(self, api: k8s.ApiClient):
        self._api = api

    @classmethod
    async def connect(cls) -> Kube:
        """Use in-cluster credentials when running in a Pod, the kubeconfig otherwise."""
        try:
            k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException:
            await k8s_config.load_kube_config()
        return cls(k8s.ApiClient())

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
            error = _error(raw)
            API_ERRORS.labels(verb=verb, code=str(error.status)).inc()
            raise error from None
        finally:
            API_REQUESTS.labels(verb=verb).observe(time.perf_counter() - started)
        return cast(Body, result or {})

    # ------------------------------------------------------------------ generic verbs

    async def get(self, kind: str, namespace: str | None, name: str) -> Body:
        return await self._call("GET", _path(kind, namespace, name))

    async def list(self, kind: str, namespace: str | None) -> list[Body]:
        """Every object of ``kind`` (in ``namespace`` when namespaced), one page at a time."""
        items: list[Body] = []
        query: dict[str, str] = {"limit": "500"}
        while True:
            page = await self._call("GET", _path(kind, namespace), query=query)
            items += page.get("items") or []
            more = (page.get("metadata") or {}).get("continue")
            if not more:
                return items
            query = {"limit": "500", "continue": str(more)}

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

    # ------------------------------------------------------------------ helpers by kind

    async def get_or_none(self, kind: str, namespace: str | None, name: str) -> Body | None:
        try:
            return await self.get(kind, namespace, name)
        except NotFound:
            return None
