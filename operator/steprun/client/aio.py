"""The asyncio client, on ``kubernetes_asyncio``: the blocking client's methods as coroutines.

Every decision (request bodies, selectors, wait and log logic, results, errors) comes from the
modules the blocking client uses too; this module only performs the I/O.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import aiohttp
import kubernetes_asyncio
from kubernetes_asyncio.client.exceptions import ApiException

from steprun.api.models import (
    GROUP,
    STEPRUN_PLURAL,
    VERSION,
    ArtifactStatus,
    StepRun,
    StepRunSpec,
)
from steprun.artifacts.store import ArtifactStore, StoreNotConfigured, store_from_env
from steprun.client import artifacts as artifact_files
from steprun.client.backoff import Backoff
from steprun.client.errors import (
    ApiError,
    ApiUnreachable,
    StepRunConflict,
    StepRunNotFound,
    error_for_status,
    is_retryable_status,
)
from steprun.client.kubeconfig import (
    DEFAULT_NAMESPACE,
    in_cluster_namespace,
    kubeconfig_namespace,
    kubeconfig_path,
)
from steprun.client.logs import (
    AttemptStarted,
    LineSplitter,
    LogEvent,
    LogLine,
    LogPlanner,
    LogsDone,
    PodView,
    WaitForPod,
    pod_view,
)
from steprun.client.objects import (
    CANCEL_PATCH,
    coerce_spec,
    name_field_selector,
    parse_steprun,
    parse_steprun_list,
    pod_label_selector,
    same_spec,
    steprun_body,
    steprun_field_selector,
)
from steprun.client.result import StepResult, is_terminal, result_of
from steprun.client.trace import with_current_trace
from steprun.client.waiting import (
    Event,
    StreamBroken,
    WaitTracker,
    WatchExpired,
    async_wait_for_terminal,
)

REQUEST_TIMEOUT = (10.0, 60.0)
CONNECT_TIMEOUT = 10.0
WATCH_READ_MARGIN = 30.0
MERGE_PATCH = "application/merge-patch+json"

TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientError,
    asyncio.TimeoutError,
    OSError,
)

# kubernetes_asyncio's configuration helpers and watch carry no annotations.
_config: Any = kubernetes_asyncio.config
_watch_module: Any = kubernetes_asyncio.watch


async def load_async_api_client(
    config_file: str | None = None, context: str | None = None
) -> tuple[kubernetes_asyncio.client.ApiClient, str]:
    """Like ``steprun.client.kubeconfig.load_api_client``; must run inside the event loop."""
    path = kubeconfig_path(config_file)
    if path is None:
        configuration = kubernetes_asyncio.client.Configuration()
        _config.load_incluster_config(client_configuration=configuration)
        api_client = kubernetes_asyncio.client.ApiClient(configuration=configuration)
        return api_client, in_cluster_namespace() or DEFAULT_NAMESPACE
    from_file: kubernetes_asyncio.client.ApiClient = await _config.new_client_from_config(
        config_file=path, context=context, persist_config=False
    )
    return from_file, kubeconfig_namespace(path, context) or DEFAULT_NAMESPACE


class _LogUnavailable(Exception):
    """The container has no readable log (not started yet) or its Pod is gone."""


class AsyncStepRunClient:
    """The asyncio flavour of ``StepRunClient``. Use it as ``async with AsyncStepRunClient()``.

    Without ``api_client``, the kubeconfig or in-cluster configuration is loaded on first use
    (an aiohttp session needs a running loop), and ``namespace`` defaults to the context's.
    """

    def __init__(
        self,
        api_client: kubernetes_asyncio.client.ApiClient | None = None,
        namespace: str | None = None,
        *,
        config_file: str | None = None,
        context: str | None = None,
        watch_timeout_seconds: int = 300,
        poll_interval: float = 1.0,
        backoff: Backoff | None = None,
        artifact_store: ArtifactStore | None = None,
    ) -> None:
        self._api_client = api_client
        self._artifact_store = artifact_store
        self._requested_namespace = namespace
        self._namespace = namespace or DEFAULT_NAMESPACE
        self._config_file = config_file
        self._context = context
        self._load_lock = asyncio.Lock()
        self.watch_timeout_seconds = watch_timeout_seconds
        self.poll_interval = poll_interval
        self.backoff = backoff or Backoff()
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    @property
    def namespace(self) -> str:
        """The default namespace (the context's is known only once the client is loaded)."""
        return self._namespace

    async def _client(self) -> kubernetes_asyncio.client.ApiClient:
        if self._api_client is None:
            async with self._load_lock:
                if self._api_client is None:
                    api_client, discovered = await load_async_api_client(
                        self._config_file, self._context
                    )
                    self._namespace = self._requested_namespace or discovered
                    self._api_client = api_client
        return self._api_client

    async def _objects(self) -> Any:
        return kubernetes_asyncio.client.CustomObjectsApi(await self._client())

    async def _core(self) -> Any:
        return kubernetes_asyncio.client.CoreV1Api(await self._client())

    async def _ns(self, namespace: str | None) -> str:
        await self._client()
        return namespace or self._namespace

    async def close(self) -> None:
        if self._api_client is not None:
            await cast(Any, self._api_client).close()

    async def __aenter__(self) -> AsyncStepRunClient:
        await self._client()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ StepRuns

    async def submit(
        self,
        spec: StepRunSpec | Mapping[str, Any],
        *,
        name: str | None = None,
        generate_name: str | None = None,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        propagate_trace: bool = True,
    ) -> AsyncStepRunHandle:
        """See ``StepRunClient.submit``: same name and spec again returns the existing one."""
        ns = await self._ns(namespace)
        spec_model = coerce_spec(spec)
        if propagate_trace:
            spec_model = with_current_trace(spec_model)
        body = steprun_body(
            spec_model, namespace=ns, name=name, generate_name=generate_name, labels=labels
        )
        objects = await self._objects()
        try:
            created = await self._call(
                objects.create_namespaced_custom_object,
                GROUP,
                VERSION,
                ns,
                STEPRUN_PLURAL,
                body,
                name=None,
                namespace=ns,
            )
        except ApiError as exc:
            if exc.status != 409 or not name:
                raise
            existing = await self.get(name, ns)
            if not same_spec(existing.spec, spec_model):
                raise StepRunConflict(existing) from None
            return AsyncStepRunHandle(existing.name, ns, self)
        return AsyncStepRunHandle(str(created["metadata"]["name"]), ns, self)

    async def get(self, name: str, namespace: str | None = None) -> StepRun:
        ns = await self._ns(namespace)
        objects = await self._objects()
        body = await self._call(
            objects.get_namespaced_custom_object,
            GROUP,
            VERSION,
            ns,
            STEPRUN_PLURAL,
            name,
            name=name,
            namespace=ns,
        )
        return parse_steprun(body)

    async def list(
        self,
        *,
        namespace: str | None = None,
        all_namespaces: bool = False,
        workflow: str | None = None,
        run_id: str | None = None,
        step_id: str | None = None,
    ) -> list[StepRun]:
        selector = steprun_field_selector(workflow=workflow, run_id=run_id, step_id=step_id)
        ns = await self._ns(namespace)
        objects = await self._objects()
        if all_namespaces:
            body = await self._call(
                objects.list_cluster_custom_object,
                GROUP,
                VERSION,
                STEPRUN_PLURAL,
                field_selector=selector,
                name=None,
                namespace="",
            )
        else:
            body = await self._call(
                objects.list_namespaced_custom_object,
                GROUP,
                VERSION,
                ns,
                STEPRUN_PLURAL,
                field_selector=selector,
                name=None,
                namespace=ns,
            )
        items, _ = parse_steprun_list(body)
        return items

    async def wait(
        self,
        name: str,
        *,
        namespace: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - same signature as the blocking client
    ) -> StepRun:
        ns = await self._ns(namespace)
        return await async_wait_for_terminal(
            _AsyncWatchSource(self, name, ns),
            WaitTracker(name, ns),
            timeout=timeout,
            watch_timeout=self.watch_timeout_seconds,
            backoff=self.backoff,
            sleep=self._sleep,
        )

    async def cancel(self, name: str, *, namespace: str | None = None) -> StepRun:
        ns = await self._ns(namespace)
        objects = await self._objects()
        body = await self._call(
            objects.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            ns,
            STEPRUN_PLURAL,
            name,
            CANCEL_PATCH,
            _content_type=MERGE_PATCH,
            name=name,
            namespace=ns,
        )
        return parse_steprun(body)

    async def delete(self, name: str, *, namespace: str | None = None) -> None:
        ns = await self._ns(namespace)
        objects = await self._objects()
        await self._call(
            objects.delete_namespaced_custom_object,
            GROUP,
            VERSION,
            ns,
            STEPRUN_PLURAL,
            name,
            name=name,
            namespace=ns,
        )

    async def run(
        self,
        spec: StepRunSpec | Mapping[str, Any],
        *,
        name: str | None = None,
        namespace: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - same signature as the blocking client
    ) -> StepResult:
        handle = await self.submit(spec, name=name, namespace=namespace)
        return await handle.result(timeout=timeout)

    # ------------------------------------------------------------------ artifacts

    async def artifacts(
        self, name: str, *, namespace: str | None = None
    ) -> Sequence[ArtifactStatus]:
        """Every artifact the step uploaded (name, attempt, key, size, sha256), oldest first."""
        return artifact_files.uploads(await self.get(name, namespace))

    async def download(
        self,
        name: str,
        artifact: str,
        dest: str | os.PathLike[str],
        *,
        namespace: str | None = None,
        attempt: int | None = None,
    ) -> Path:
        """Streams an artifact (tar+gzip) to the file ``dest``, checking its sha256 (like the
        blocking client's ``download``)."""
        entry = artifact_files.pick(await self.get(name, namespace), artifact, attempt)
        if self._artifact_store is None:
            try:
                self._artifact_store = store_from_env()
            except StoreNotConfigured as exc:
                raise artifact_files.ArtifactStoreError(str(exc)) from exc
        return await artifact_files.download_async(self._artifact_store, entry, Path(dest))

    # ------------------------------------------------------------------ logs

    async def logs(
        self,
        name: str,
        *,
        namespace: str | None = None,
        follow: bool = False,
        attempt: int | None = None,
    ) -> AsyncIterator[str]:
        async for event in self.log_events(
            name, namespace=namespace, follow=follow, attempt=attempt
        ):
            if isinstance(event, LogLine):
                yield event.text

    async def log_events(
        self,
        name: str,
        *,
        namespace: str | None = None,
        follow: bool = False,
        attempt: int | None = None,
    ) -> AsyncIterator[LogEvent]:
        ns = await self._ns(namespace)
        await self.get(name, ns)
        planner = LogPlanner(follow=follow, attempt=attempt)
        failures = 0
        while True:
            finished, retrying = (True, False) if not follow else await self._progress(name, ns)
            action = planner.plan(await self._pods(name, ns), finished, retrying)
            if isinstance(action, LogsDone):
                return
            if isinstance(action, WaitForPod):
                if action.report:
                    yield action.event
                await self._sleep(self.poll_interval)
                continue
            pod = action.pod
            if action.first:
                yield AttemptStarted(pod.attempt, pod.name)
            seen = 0
            try:
                async for text in self._read_log(pod, ns, follow=action.follow):
                    seen += 1
                    if seen > action.skip_lines:
                        yield LogLine(pod.attempt, pod.name, text)
            except _LogUnavailable:
                planner.unavailable(pod.attempt)
                if follow:
                    await self._sleep(self.poll_interval)
                continue
            except StreamBroken as exc:
                planner.progress(pod.attempt, max(seen, action.skip_lines))
                failures += 1
                delay = self.backoff.delay(failures)
                if delay is None:
                    raise ApiUnreachable(f"reading logs of pod {pod.name!r} failed: {exc}") from exc
                await self._sleep(delay)
                continue
            failures = 0
            planner.streamed(pod.attempt)

    async def _progress(self, name: str, namespace: str) -> tuple[bool, bool]:
        """Whether the step is finished (or gone), and whether it waits to retry."""
        try:
            steprun = await self.get(name, namespace)
        except StepRunNotFound:
            return True, False
        return is_terminal(steprun), bool(steprun.status.next_attempt_time)

    async def _pods(self, name: str, namespace: str) -> Sequence[PodView]:
        core = await self._core()
        pods = await self._call(
            core.list_namespaced_pod,
            namespace,
            label_selector=pod_label_selector(name),
            name=None,
            namespace=namespace,
        )
        raw = cast(Any, await self._client()).sanitize_for_serialization(pods)
        views = (pod_view(item) for item in raw.get("items") or [])
        return [view for view in views if view is not None]

    async def _read_log(
        self, pod: PodView, namespace: str, *, follow: bool
    ) -> AsyncGenerator[str, None]:
        core = await self._core()
        try:
            response = await core.read_namespaced_pod_log(
                pod.name,
                namespace,
                container=pod.container,
                follow=follow,
                _preload_content=False,
                _request_timeout=None if follow else REQUEST_TIMEOUT,
            )
        except TRANSPORT_ERRORS as exc:
            raise StreamBroken(str(exc)) from exc
        try:
            # Without preloading, kubernetes_asyncio hands back the aiohttp response unchecked.
            if not 200 <= response.status <= 299:
                body = await response.read()
                if response.status in (400, 404):
                    raise _LogUnavailable()
                if is_retryable_status(response.status):
                    raise StreamBroken(f"{response.status} {response.reason}")
                raise error_for_status(response.status, body, name=None, namespace=namespace)
            splitter = LineSplitter()
            async for chunk in response.content.iter_any():
                for line in splitter.feed(chunk):
                    yield line
            for line in splitter.flush():
                yield line
        except TRANSPORT_ERRORS as exc:
            raise StreamBroken(str(exc)) from exc
        finally:
            response.release()

    # ------------------------------------------------------------------ plumbing

    async def _call(
        self,
        fn: Callable[..., Awaitable[Any]],
        *args: Any,
        name: str | None,
        namespace: str,
        **kwargs: Any,
    ) -> Any:
        """One API request, retried while the server is unreachable or overloaded."""
        kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
        failures = 0
        while True:
            try:
                return await fn(*args, **kwargs)
            except ApiException as exc:
                if not is_retryable_status(exc.status):
                    raise error_for_status(
                        exc.status, exc.body, name=name, namespace=namespace
                    ) from exc
                failure: BaseException = exc
            except TRANSPORT_ERRORS as exc:
                failure = exc
            failures += 1
            delay = self.backoff.delay(failures)
            if delay is None:
                raise ApiUnreachable(f"API server unreachable: {failure}") from failure
            await self._sleep(delay)

    async def _watch(
        self, name: str, namespace: str, resource_version: str, seconds: int
    ) -> AsyncGenerator[Event, None]:
        objects = await self._objects()
        watch = _watch_module.Watch()
        try:
            async for event in watch.stream(
                objects.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                STEPRUN_PLURAL,
                field_selector=name_field_selector(name),
                resource_version=resource_version,
                timeout_seconds=seconds,
                allow_watch_bookmarks=True,
                _request_timeout=(CONNECT_TIMEOUT, seconds + WATCH_READ_MARGIN),
            ):
                yield {"type": event["type"], "object": event["raw_object"]}
        except ApiException as exc:
            if exc.status == 410:
                raise WatchExpired(str(exc.reason)) from exc
            if is_retryable_status(exc.status):
                raise StreamBroken(f"{exc.status} {exc.reason}") from exc
            raise error_for_status(exc.status, exc.body, name=name, namespace=namespace) from exc
        except TRANSPORT_ERRORS as exc:
            raise StreamBroken(str(exc)) from exc
        finally:
            await watch.close()


class _AsyncWatchSource:
    def __init__(self, client: AsyncStepRunClient, name: str, namespace: str) -> None:
        self._client = client
        self._name = name
        self._namespace = namespace

    async def list(self) -> tuple[list[StepRun], str]:
        objects = await self._client._objects()
        body = await self._client._call(
            objects.list_namespaced_custom_object,
            GROUP,
            VERSION,
            self._namespace,
            STEPRUN_PLURAL,
            field_selector=name_field_selector(self._name),
            name=None,
            namespace=self._namespace,
        )
        return parse_steprun_list(body)

    def watch(self, resource_version: str, timeout_seconds: int) -> AsyncGenerator[Event, None]:
        return self._client._watch(self._name, self._namespace, resource_version, timeout_seconds)


class AsyncStepRunHandle:
    """A submitted StepRun, for the asyncio client."""

    def __init__(self, name: str, namespace: str, client: AsyncStepRunClient) -> None:
        self.name = name
        self.namespace = namespace
        self.client = client

    def __repr__(self) -> str:
        return f"AsyncStepRunHandle(name={self.name!r}, namespace={self.namespace!r})"

    async def refresh(self) -> StepRun:
        return await self.client.get(self.name, self.namespace)

    async def wait(self, timeout: float | None = None) -> StepRun:  # noqa: ASYNC109
        return await self.client.wait(self.name, namespace=self.namespace, timeout=timeout)

    def logs(self, follow: bool = False, attempt: int | None = None) -> AsyncIterator[str]:
        return self.client.logs(self.name, namespace=self.namespace, follow=follow, attempt=attempt)

    async def cancel(self) -> StepRun:
        return await self.client.cancel(self.name, namespace=self.namespace)

    async def result(self, timeout: float | None = None) -> StepResult:  # noqa: ASYNC109
        return result_of(await self.wait(timeout))
