"""The operator's access layer (``steprun.kube.client.Kube``) over the in-memory API server.

What the reconciler sends and what it gets back go through ``tests.support.fake_cluster``, the
same state the client and CLI tests reach over HTTP. Calls are counted as the access layer's
verbs (``kube.calls``: ``(verb, kind, name)``), and failures are injected by those verbs.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from steprun.kube.errors import KubeError, NotFound
from tests.support.fake_cluster import Body, Call, FakeCluster


class FakeKube:
    def __init__(self, cluster: FakeCluster | None = None) -> None:
        self.cluster = cluster or FakeCluster()

    # ---------------------------------------------------------------- test controls

    @property
    def calls(self) -> list[Call]:
        return self.cluster.calls

    def fail(self, verb: str, kind: str, *errors: KubeError) -> None:
        """The next calls of ``verb`` on ``kind`` fail with ``errors``, one per call."""
        self.cluster.fail(verb, kind, *errors)

    def count(self, verb: str, kind: str) -> int:
        return self.cluster.count(verb, kind)

    def put(self, body: Mapping[str, Any]) -> Body:
        return self.cluster.put(body)

    def find(self, kind: str, namespace: str | None, name: str) -> Body | None:
        return self.cluster.find(kind, namespace, name)

    def of_kind(self, kind: str) -> list[Body]:
        return self.cluster.of_kind(kind)

    # ---------------------------------------------------------------- the Kube interface

    async def get(self, kind: str, namespace: str | None, name: str) -> Body:
        self.cluster.enter("get", kind, name)
        return self.cluster.get(kind, namespace, name)

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
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Body]:
        self.cluster.enter("list", kind, None)
        items, _ = self.cluster.list(
            kind, namespace, label_selector=label_selector, field_selector=field_selector
        )
        return items

    async def create(self, body: Mapping[str, Any]) -> Body:
        self.cluster.enter("create", str(body["kind"]), body["metadata"].get("name"))
        return self.cluster.create(body)

    async def delete(
        self,
        kind: str,
        namespace: str | None,
        name: str,
        *,
        grace_period_seconds: int | None = None,
        uid: str | None = None,
    ) -> bool:
        self.cluster.enter("delete", kind, name)
        try:
            self.cluster.delete(kind, namespace, name, uid=uid)
        except NotFound:
            return False
        return True

    async def _merge_patch(
        self,
        subresource: str,
        kind: str,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        *,
        resource_version: str | None,
    ) -> Body:
        """What the access layer sends for ``patch`` and ``patch_status``: a merge patch (of
        the object, or under ``.status`` of its status), refused if the object has moved on from
        ``resource_version``."""
        self.cluster.enter(f"patch_{subresource}" if subresource else "patch", kind, name)
        body: dict[str, Any] = {subresource: dict(patch)} if subresource else dict(patch)
        if resource_version:
            body["metadata"] = {**body.get("metadata", {}), "resourceVersion": resource_version}
        return self.cluster.patch(kind, namespace, name, body, subresource=subresource)

    patch = functools.partialmethod(_merge_patch, "")
    patch_status = functools.partialmethod(_merge_patch, "status")

    async def remove_finalizer(
        self, kind: str, namespace: str | None, body: Mapping[str, Any], finalizer: str
    ) -> bool:
        name = str(body["metadata"]["name"])
        self.cluster.enter("remove_finalizer", kind, name)
        return self.cluster.remove_finalizer(kind, namespace, name, finalizer)

    async def close(self) -> None:
        return None
