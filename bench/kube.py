"""The benchmark's access to the API server: the operator's access layer (``steprun.kube``), by
path, plus watch streams that resume across reconnects.

Watch events are parsed straight from the HTTP stream into dicts (no model classes): with tens
of thousands of events per scenario the benchmark must stay cheap next to what it measures.
Errors are the access layer's (``ApiError`` is its ``KubeError``: ``.status``, 0 when the
server never answered).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

from steprun.kube.client import Body, Kube
from steprun.kube.config import load_configuration
from steprun.kube.errors import KubeError, NotFound

ApiError = KubeError
JSON = "application/json"

__all__ = ["JSON", "Api", "ApiError", "Body"]


class Api:
    def __init__(self, kube: Kube):
        self._kube = kube
        self.watch_restarts = 0  # watches that ended in an error and were resumed
        self.last_watch_error: str | None = None

    def _restarted(self, status: Mapping[str, Any]) -> None:
        self.watch_restarts += 1
        self.last_watch_error = f"{status.get('code')}: {status.get('message')}"

    @classmethod
    async def connect(cls, kubeconfig: str, connections: int = 64) -> Api:
        configuration, _ = await load_configuration(kubeconfig)
        # Watches hold a connection each; creates in a burst need many more.
        configuration.connection_pool_maxsize = connections
        return cls(Kube.from_configuration(configuration))

    async def close(self) -> None:
        await self._kube.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, str] | None = None,
        content_type: str = JSON,
    ) -> Body:
        return await self._kube.request(
            method, path, body=body, query=query, content_type=content_type
        )

    async def text(self, path: str) -> str:
        """A non-JSON document, such as /metrics."""
        chunks = [chunk async for chunk in self._kube.stream(path)]
        return b"".join(chunks).decode()

    async def create(self, body: Mapping[str, Any], path: str) -> Body:
        return await self.request("POST", path, dict(body))

    async def delete(self, path: str) -> bool:
        """Delete in the background; False when it was already gone."""
        try:
            await self.request("DELETE", path, {"propagationPolicy": "Background"})
        except NotFound:
            return False
        return True

    async def list_version(self, path: str) -> str:
        """The resourceVersion to watch ``path`` from so that nothing after now is missed."""
        listed = await self.request("GET", path, query={"limit": "1"})
        return str(listed["metadata"]["resourceVersion"])

    async def watch(self, path: str, version: str) -> AsyncIterator[tuple[str, Body]]:
        """(type, object) of every change below ``path`` after ``version``, across reconnects.

        Always from a list's resourceVersion, never from 0 or "", which this API server turns
        into a watch-list request. If the version falls out of the watch cache (410 Gone), the
        objects are listed again and reported as MODIFIED.
        """
        while True:
            query = {
                "resourceVersion": version,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": "3600",
            }
            expired = False
            try:
                async for event in self._kube.watch(path, query=query):
                    kind, obj = str(event["type"]), event["object"]
                    if kind == "ERROR":
                        expired = obj.get("code") == 410
                        self._restarted(obj)
                        break
                    version = str(obj["metadata"]["resourceVersion"])
                    if kind != "BOOKMARK":
                        yield kind, obj
            except KubeError as error:
                # Refused (410 when the version is gone) or dropped: resume from the last seen.
                expired = error.status == 410
                self._restarted({"code": error.status, "message": error.message})
            if not expired and self.last_watch_error is not None:
                await asyncio.sleep(0.5)
            if expired:
                listed = await self.request("GET", path)
                version = str(listed["metadata"]["resourceVersion"])
                for item in listed.get("items") or []:
                    yield "MODIFIED", item
            await asyncio.sleep(0)
