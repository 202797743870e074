"""An in-memory API server behind the operator's access layer (``steprun.kube.client.Kube``).

It keeps the semantics the reconciler relies on: resourceVersions that move on every write and
refuse a stale precondition (Conflict), AlreadyExists and NotFound, uid preconditions on
delete, finalizers that hold a deleted object (deletionTimestamp set) until they are removed,
and label-selected lists. Failures are injected per (verb, kind) as the access layer's own
typed errors, so the reconciler sees exactly what it would see from a real server.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from steprun.kube.errors import AlreadyExists, Conflict, KubeError, NotFound

Body = dict[str, Any]
ObjKey = tuple[str, str | None, str]
CREATED = "2024-05-01T10:00:00Z"


def _merge(target: Body, patch: Mapping[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class Killed(BaseException):
    """The operator's process dies as it is about to make a request: the request never reaches
    the server and nothing the process held in memory survives. Not an API error, so no
    ``except Exception`` in the operator can swallow it."""


def _selected(labels: Mapping[str, str], selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[ObjKey, Body] = {}
        self.calls: list[tuple[str, str, str | None]] = []
        self.failures: dict[tuple[str, str], list[KubeError]] = defaultdict(list)
        self._versions = itertools.count(1000)
        self._kill_at: int | None = None

    # ---------------------------------------------------------------- test controls

    def fail(self, verb: str, kind: str, *errors: KubeError) -> None:
        """The next calls of ``verb`` on ``kind`` fail with ``errors``, one per call."""
        self.failures[(verb, kind)].extend(errors)

    def kill_at(self, request: int) -> None:
        """The operator dies as it makes its ``request``-th request from now (0: the next one)."""
        self._kill_at = len(self.calls) + request

    def put(self, body: Mapping[str, Any]) -> Body:
        """Store an object as another client would have created it."""
        stored = copy.deepcopy(dict(body))
        meta = stored.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", CREATED)
        meta["resourceVersion"] = str(next(self._versions))
        self.objects[(stored["kind"], meta.get("namespace"), meta["name"])] = stored
        return copy.deepcopy(stored)

    def of_kind(self, kind: str) -> list[Body]:
        return [copy.deepcopy(b) for (k, _, _), b in sorted(self.objects.items()) if k == kind]

    def find(self, kind: str, namespace: str | None, name: str) -> Body | None:
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def count(self, verb: str, kind: str) -> int:
        return sum(1 for v, k, _ in self.calls if v == verb and k == kind)

    # ---------------------------------------------------------------- the Kube interface

    def _enter(self, verb: str, kind: str, name: str | None) -> None:
        if self._kill_at is not None and len(self.calls) >= self._kill_at:
            self._kill_at = None
            raise Killed(f"killed before {verb} {kind} {name}")
        self.calls.append((verb, kind, name))
        pending = self.failures.get((verb, kind))
        if pending:
            raise pending.pop(0)

    def _stored(self, kind: str, namespace: str | None, name: str) -> Body:
        body = self.objects.get((kind, namespace, name))
        if body is None:
            raise NotFound(404, "NotFound", f'{kind.lower()}s "{name}" not found')
        return body

    def _bump(self, body: Body) -> None:
        body["metadata"]["resourceVersion"] = str(next(self._versions))

    async def get(self, kind: str, namespace: str | None, name: str) -> Body:
        self._enter("get", kind, name)
        return copy.deepcopy(self._stored(kind, namespace, name))

    async def get_or_none(self, kind: str, namespace: str | None, name: str) -> Body | None:
        try:
            return await self.get(kind, namespace, name)
        except NotFound:
            return None

    async def list(
        self,
        kind: str,
        namespace: str | None,
        *,
        label_selector: str = "",
        field_selector: str | None = None,
    ) -> list[Body]:
        self._enter("list", kind, None)
        return [
            copy.deepcopy(b)
            for (k, ns, _), b in sorted(self.objects.items())
            if k == kind
            and ns == namespace
            and _selected(b["metadata"].get("labels") or {}, label_selector)
        ]

    async def create(self, body: Mapping[str, Any]) -> Body:
        kind, meta = str(body["kind"]), body["metadata"]
        self._enter("create", kind, meta.get("name"))
        if (kind, meta.get("namespace"), meta["name"]) in self.objects:
            raise AlreadyExists(409, "AlreadyExists", f'{kind.lower()}s "{meta["name"]}" exists')
        stored = self.put({**body, "metadata": {k: v for k, v in meta.items() if k != "uid"}})
        return stored

    async def delete(
        self,
        kind: str,
        namespace: str | None,
        name: str,
        *,
        grace_period_seconds: int | None = None,
        uid: str | None = None,
    ) -> bool:
        self._enter("delete", kind, name)
        body = self.objects.get((kind, namespace, name))
        if body is None:
            return False
        if uid and body["metadata"].get("uid") != uid:
            raise Conflict(409, "Conflict", "Precondition failed: UID in precondition")
        if body["metadata"].get("finalizers"):
            body["metadata"].setdefault("deletionTimestamp", CREATED)
            self._bump(body)
        else:
            del self.objects[(kind, namespace, name)]
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
        self._enter("patch_status", kind, name)
        body = self._stored(kind, namespace, name)
        if resource_version and body["metadata"]["resourceVersion"] != resource_version:
            raise Conflict(409, "Conflict", "the object has been modified")
        target = body.setdefault("status", {})
        _merge(target, status)
        self._bump(body)
        return copy.deepcopy(body)

    async def remove_finalizer(
        self, kind: str, namespace: str | None, body: Mapping[str, Any], finalizer: str
    ) -> bool:
        name = str(body["metadata"]["name"])
        self._enter("remove_finalizer", kind, name)
        stored = self.objects.get((kind, namespace, name))
        if stored is None or finalizer not in (stored["metadata"].get("finalizers") or []):
            return False
        stored["metadata"]["finalizers"].remove(finalizer)
        if stored["metadata"].get("deletionTimestamp") and not stored["metadata"]["finalizers"]:
            del self.objects[(kind, namespace, name)]
        else:
            self._bump(stored)
        return True

    async def close(self) -> None:
        return None
