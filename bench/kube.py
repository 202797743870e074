"""The benchmark's own thin async access to the API server: requests and raw watch streams.

Watch events are parsed straight from the HTTP stream into dicts (no model classes): with tens
of thousands of events per scenario the benchmark must stay cheap next to what it measures.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

import aiohttp
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config

Body = dict[str, Any]
JSON = "application/json"


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status


class Api:
    def __init__(self, api: k8s.ApiClient):
        self._api = api
        self.watch_restarts = 0  # watches that ended in an error and were resumed
        self.last_watch_error: str | None = None

    def _restarted(self, status: Mapping[str, Any]) -> None:
        self.watch_restarts += 1
        self.last_watch_error = f"{status.get('code')}: {status.get('message')}"

    @classmethod
    async def connect(cls, kubeconfig: str, connections: int = 64) -> Api:
        configuration = k8s.Configuration()
        await k8s_config.load_kube_config(
            config_file=kubeconfig, client_configuration=configuration
        )
        # Watches hold a connection each; creates in a burst need many more.
        configuration.connection_pool_maxsize = connections
        return cls(k8s.ApiClient(configuration))

    async def close(self) -> None:
        await self._api.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, str] | None = None,
        content_type: str = JSON,
    ) -> Body:
        try:
            result = await self._api.call_api(
                path,
                method,
                query_params=list((query or {}).items()),
                header_params={"Accept": JSON, "Content-Type": content_type},
                body=body,
                response_types_map={200: "object", 201: "object", 202: "object"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
            )
        except k8s.ApiException as error:
            raise ApiError(int(error.status or 0), str(error.body or error.reason)) from None
        return cast(Body, result or {})

    async def text(self, path: str) -> str:
        """A non-JSON document, such as /metrics."""
        response = await self._api.call_api(
            path,
            "GET",
            header_params={"Accept": "text/plain"},
            auth_settings=["BearerToken"],
            _preload_content=False,
        )
        async with response:
            return cast(str, await response.text())

    async def create(self, body: Mapping[str, Any], path: str) -> Body:
        return await self.request("POST", path, dict(body))

    async def delete(self, path: str) -> bool:
        """Delete in the background; False when it was already gone."""
        try:
            await self.request("DELETE", path, {"propagationPolicy": "Background"})
        except ApiError as error:
            if error.status == 404:
                return False
            raise
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
                "watch": "true",
                "resourceVersion": version,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": "3600",
            }
            expired = False
            try:
                response = await self._api.call_api(
                    path,
                    "GET",
                    query_params=list(query.items()),
                    header_params={"Accept": JSON},
                    auth_settings=["BearerToken"],
                    _preload_content=False,
                    _request_timeout=None,
                )
                async with response:
                    async for line in _lines(response.content):
                        event = json.loads(line)
                        if "type" not in event:
                            # The request itself was refused: the body is a bare Status.
                            expired = event.get("code") == 410
                            self._restarted(event)
                            break
                        kind, obj = str(event["type"]), cast(Body, event["object"])
                        if kind == "ERROR":
                            expired = obj.get("code") == 410
                            self._restarted(obj)
                            break
                        version = str(obj["metadata"]["resourceVersion"])
                        if kind != "BOOKMARK":
                            yield kind, obj
            except k8s.ApiException as error:
                expired = error.status == 410
                self._restarted({"code": error.status, "message": str(error.reason)})
            except (TimeoutError, aiohttp.ClientError) as error:
                # A dropped stream resumes from the last version seen.
                self._restarted({"message": repr(error)})
            if not expired and self.last_watch_error is not None:
                await asyncio.sleep(0.5)
            if expired:
                listed = await self.request("GET", path)
                version = str(listed["metadata"]["resourceVersion"])
                for item in listed.get("items") or []:
                    yield "MODIFIED", item
            await asyncio.sleep(0)


async def _lines(stream: Any) -> AsyncIterator[bytes]:
    """Newline-delimited JSON, whatever the size of a line (readline() caps it)."""
    buffer = b""
    async for chunk in stream.iter_any():
        *complete, buffer = (buffer + chunk).split(b"\n")
        for line in complete:
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer
