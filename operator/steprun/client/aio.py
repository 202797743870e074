"""The engine client, written once, for asyncio; ``steprun.client.sync`` runs it for blocking
callers.

Every request goes through the access layer the operator uses (``steprun.kube``): the same
client library, credential loader, error taxonomy and backoff. This module decides what to
ask; the pure modules beside it (objects, waiting, logs, result) decide what the answers mean.
"""

from __future__ import annotations

import asyncio
import builtins
import inspect
import json
import os
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Self, TypedDict, TypeVar, Unpack

from steprun.api.models import ArtifactStatus, StepRun, StepRunSpec
from steprun.api.resources import STEPRUN, resource
from steprun.artifacts.store import ArtifactStore, StoreNotConfigured, store_from_env
from steprun.client import artifacts as artifact_files
from steprun.client.backoff import Backoff
from steprun.client.errors import (
    ApiError,
    ApiUnreachable,
    StepRunConflict,
    StepRunError,
    StepRunNotFound,
    error_for,
)
from steprun.client.logs import (
    AttemptStarted,
    LineSplitter,
    LogEvent,
    LogLine,
    LogOptions,
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
from steprun.client.waiting import Event, StreamBroken, WaitTracker, WatchExpired, wait_for_terminal
from steprun.kube.client import Body, Kube, Timeout
from steprun.kube.config import DEFAULT_NAMESPACE, load_configuration
from steprun.kube.errors import KubeError, classify_response

# Connection and read timeouts of ordinary requests, in seconds. Watches and followed logs
# set their own: they legitimately stay quiet for long.
REQUEST_TIMEOUT = (10.0, 60.0)
CONNECT_TIMEOUT = 10.0
# A watch's read timeout exceeds the server-side timeoutSeconds by this much, so only a dead
# connection (not a quiet one) trips it.
WATCH_READ_MARGIN = 30.0
MERGE_PATCH = "application/merge-patch+json"
GONE = 410

T = TypeVar("T")
P = ParamSpec("P")


class _LogUnavailable(Exception):
    """The container has no readable log (not started yet) or its Pod is gone."""


@dataclass(frozen=True)
class _Archived:
    """Where the archived part of a log is read: the StepRun's uid, the attempts to show in
    order, those archived, and the Pods still there."""

    store: ArtifactStore
    uid: str
    attempts: list[int]
    archived: set[int]
    pods: dict[int, PodView]


class ClientOptions(TypedDict, total=False):
    """The keyword options both clients' constructors take: the blocking client hands them to
    the asyncio one, whose signature gives each one's default."""

    config_file: str | None
    context: str | None
    watch_timeout_seconds: int
    poll_interval: float
    backoff: Backoff | None
    request_timeout: Timeout
    artifact_store: ArtifactStore | None


class ListScope(TypedDict, total=False):
    """Which StepRuns ``list_raw`` and ``watch_raw`` cover: those of ``namespace`` (default:
    the client's) or, with ``all_namespaces``, of every namespace; narrowed by a
    ``label_selector`` and a ``field_selector`` (kubectl's syntax), if given."""

    namespace: str | None
    all_namespaces: bool
    label_selector: str | None
    field_selector: str | None


class FromKubeconfig:
    """The alternative constructor both clients share."""

    if TYPE_CHECKING:
        # What both clients' constructors accept; each defines its own.
        def __init__(
            self, api_client: Any = None, namespace: str | None = None, **options: Any
        ) -> None: ...

    @classmethod
    def from_kubeconfig(
        cls,
        config_file: str | None = None,
        *,
        context: str | None = None,
        namespace: str | None = None,
        **options: Any,
    ) -> Self:
        """A client for a given kubeconfig file and context (kubectl's --kubeconfig/--context)."""
        return cls(None, namespace, config_file=config_file, context=context, **options)


def _lines_only(
    events_of: Callable[Concatenate[AsyncStepRunClient, P], AsyncGenerator[LogEvent, None]],
) -> Callable[Concatenate[AsyncStepRunClient, P], AsyncGenerator[str, None]]:
    """``logs`` made of ``log_events``: the same parameters, only the lines' text."""

    async def logs(
        self: AsyncStepRunClient, /, *args: P.args, **kwargs: P.kwargs
    ) -> AsyncGenerator[str, None]:
        events = events_of(self, *args, **kwargs)
        async with aclosing(events):
            async for event in events:
                if isinstance(event, LogLine):
                    yield event.text

    # help() and inspect show log_events' parameters.
    logs.__signature__ = inspect.signature(events_of).replace(  # type: ignore[attr-defined]
        return_annotation="AsyncGenerator[str, None]"
    )
    logs.__qualname__ = "AsyncStepRunClient.logs"
    logs.__doc__ = (
        "The step's log lines (without line ends), attempt after attempt: the lines of "
        "``log_events``, which says what each parameter does."
    )
    return logs


class AsyncStepRunClient(FromKubeconfig):
    """Submits, watches, reads and cancels StepRuns. Use it as ``async with AsyncStepRunClient()``.

    Without ``api_client`` the kubeconfig (``config_file``, ``KUBECONFIG``, ``~/.kube/config``)
    or the in-cluster service account is loaded on first use (an aiohttp session needs a
    running loop), and ``namespace`` defaults to the context's; with an ``api_client`` (a
    ``kubernetes_asyncio`` API client, or any API client or configuration whose connection
    settings are copied), it defaults to ``default``.
    """

    def __init__(
        self,
        api_client: Any = None,
        namespace: str | None = None,
        *,
        config_file: str | None = None,
        context: str | None = None,
        watch_timeout_seconds: int = 300,
        poll_interval: float = 1.0,
        backoff: Backoff | None = None,
        request_timeout: Timeout = None,
        artifact_store: ArtifactStore | None = None,
    ) -> None:
        self._given = api_client
        self._kube_client: Kube | None = None
        self._requested_namespace = namespace
        self._namespace = namespace or DEFAULT_NAMESPACE
        self._config_file = config_file
        self._context = context
        self._load_lock: asyncio.Lock | None = None
        self.watch_timeout_seconds = watch_timeout_seconds
        self.poll_interval = poll_interval
        self.backoff = backoff or Backoff()
        # Bounds every ordinary request (connect, read); the CLI's --request-timeout.
        self.request_timeout: Timeout = request_timeout or REQUEST_TIMEOUT
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        # The store, for downloads and archived logs: given, or described by the environment.
        self._artifact_store = artifact_store

    @property
    def namespace(self) -> str:
        """The default namespace (the context's is known only once the client is loaded)."""
        return self._namespace

    async def connect(self) -> None:
        """Loads the configuration now rather than on first use (ConfigException if none)."""
        await self._kube()

    async def _kube(self) -> Kube:
        if self._kube_client is None:
            if self._load_lock is None:
                self._load_lock = asyncio.Lock()
            async with self._load_lock:
                if self._kube_client is None:
                    self._kube_client = await self._load()
        return self._kube_client

    async def _load(self) -> Kube:
        if self._given is not None:
            return Kube.over(self._given)
        configuration, discovered = await load_configuration(self._config_file, self._context)
        self._namespace = self._requested_namespace or discovered
        return Kube.from_configuration(configuration)

    async def _ns(self, namespace: str | None) -> str:
        await self._kube()
        return namespace or self._namespace

    async def close(self) -> None:
        if self._kube_client is not None:
            await self._kube_client.close()

    async def __aenter__(self) -> AsyncStepRunClient:
        await self._kube()
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
        """Creates a StepRun. Submitting the same ``name`` and spec again returns the existing
        one (so a restarted engine can resubmit safely); a different spec raises
        StepRunConflict. A spec without ``context.trace`` gets the current OpenTelemetry trace
        context when opentelemetry-api is installed and a span is active (``propagate_trace``
        turns that off)."""
        ns = await self._ns(namespace)
        spec_model = coerce_spec(spec)
        if propagate_trace:
            spec_model = with_current_trace(spec_model)
        body = steprun_body(
            spec_model, namespace=ns, name=name, generate_name=generate_name, labels=labels
        )
        try:
            created = await self._request(
                "POST", STEPRUN.path(ns), body=body, name=None, namespace=ns
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
        return parse_steprun(await self.get_raw(name, namespace))

    async def list(
        self,
        *,
        namespace: str | None = None,
        all_namespaces: bool = False,
        workflow: str | None = None,
        run_id: str | None = None,
        step_id: str | None = None,
    ) -> builtins.list[StepRun]:
        """StepRuns of a namespace (or all), optionally of one workflow, run or step."""
        body = await self.list_raw(
            namespace=namespace,
            all_namespaces=all_namespaces,
            field_selector=steprun_field_selector(
                workflow=workflow, run_id=run_id, step_id=step_id
            ),
        )
        items, _ = parse_steprun_list(body)
        return items

    async def wait(
        self,
        name: str,
        *,
        namespace: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - enforced through the watch's timeoutSeconds
    ) -> StepRun:
        """Returns the StepRun once it is in a terminal phase.

        Raises WaitTimeout after ``timeout`` seconds (the step keeps running), StepRunNotFound
        if it does not exist or is deleted meanwhile.
        """
        ns = await self._ns(namespace)
        return await wait_for_terminal(
            _WatchSource(self, name, ns),
            WaitTracker(name, ns),
            timeout=timeout,
            watch_timeout=self.watch_timeout_seconds,
            backoff=self.backoff,
            sleep=self._sleep,
        )

    async def cancel(self, name: str, *, namespace: str | None = None) -> StepRun:
        """Asks the operator to cancel (``spec.cancel: true``); ``wait`` sees it end Cancelled."""
        ns = await self._ns(namespace)
        body = await self._request(
            "PATCH",
            STEPRUN.path(ns, name),
            body=CANCEL_PATCH,
            content_type=MERGE_PATCH,
            name=name,
            namespace=ns,
        )
        return parse_steprun(body)

    async def delete(self, name: str, *, namespace: str | None = None) -> None:
        """Deletes the StepRun; its Pods, ConfigMap and Secret go with it (owner references)."""
        ns = await self._ns(namespace)
        await self._request("DELETE", STEPRUN.path(ns, name), name=name, namespace=ns)

    async def run(
        self,
        spec: StepRunSpec | Mapping[str, Any],
        *,
        name: str | None = None,
        namespace: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - enforced through the watch's timeoutSeconds
    ) -> StepResult:
        """Submits and waits. A failed step is a result (see ``succeeded`` and ``exit_code``),
        not an error; a rejected one raises StepRunRejected."""
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
        """Streams an artifact (tar+gzip) to the file ``dest``, checking its sha256.

        ``attempt``: which attempt's upload (default: the latest that uploaded it). Raises
        ArtifactNotFound, ArtifactStoreError (store unreachable, refusing, not configured) or
        ArtifactIntegrityError (hash mismatch; nothing is left at ``dest``).
        """
        entry = artifact_files.pick(await self.get(name, namespace), artifact, attempt)
        return await artifact_files.download(self.artifact_store(), entry, Path(dest))

    def artifact_store(self) -> ArtifactStore:
        """The store this client reads; ArtifactStoreError says how to configure one."""
        if self._artifact_store is None:
            try:
                self._artifact_store = store_from_env()
            except StoreNotConfigured as exc:
                raise artifact_files.ArtifactStoreError(str(exc)) from exc
        return self._artifact_store

    def _store_or_none(self) -> ArtifactStore | None:
        try:
            return self.artifact_store()
        except artifact_files.ArtifactStoreError:
            return None

    async def _archived_attempts(
        self, name: str, namespace: str, attempt: int | None, uid: str | None
    ) -> _Archived | None:
        """What to read when some attempt's Pod is gone and the archive has its log: the
        store, the StepRun's uid, the attempts in order, those archived, the Pods left. None:
        all Pods are there, or no store is configured (read the Pods).

        The archive is read by uid, never by name alone: a StepRun deleted and created again
        under its name is another object with logs of its own. The StepRun read is the one
        whose logs are shown; once it is gone, the one uid archived under its name (or the
        one asked for with ``uid``)."""
        store = self._store_or_none()
        try:
            steprun: StepRun | None = await self.get(name, namespace)
        except StepRunNotFound:
            if store is None:
                raise
            steprun = None
        if steprun is not None and uid is not None and steprun.uid != uid:
            raise StepRunError(
                f'steprun "{name}" in namespace "{namespace}" has uid {steprun.uid}, not {uid}: '
                "the StepRun asked for was deleted and its name used again",
                steprun=steprun,
            )
        if store is None:
            return None
        pods = {pod.attempt: pod for pod in await self._pods(name, namespace)}
        if steprun is not None:
            numbers = [a.attempt for a in steprun.status.attempts]
            if all(n in pods for n in numbers):
                return None
        # Listing the store is blocking (obstore's list): off the event loop.
        by_uid = await asyncio.to_thread(artifact_files.archived_attempts, store, namespace, name)
        if steprun is not None:
            uid = steprun.uid
        elif uid is None:
            if not by_uid:
                raise StepRunNotFound(name, namespace)
            if len(by_uid) > 1:
                raise StepRunError(
                    f'steprun "{name}" was deleted, and the archive holds the logs of '
                    f"{len(by_uid)} StepRuns that had this name (uids {', '.join(by_uid)}): "
                    "say which one with its uid"
                )
            uid = next(iter(by_uid))
        elif uid not in by_uid:
            raise StepRunNotFound(name, namespace)
        archived = by_uid.get(uid, [])
        numbers = numbers if steprun is not None else archived
        wanted = [n for n in numbers if attempt in (None, n)]
        return _Archived(store, uid, wanted, set(archived), pods)

    async def _archived_events(
        self, name: str, namespace: str, found: _Archived
    ) -> AsyncGenerator[LogEvent, None]:
        for number in found.attempts:
            pod = found.pods.get(number)
            pod_name = pod.name if pod is not None else f"{name} attempt {number} (archived)"
            if number in found.archived:
                yield AttemptStarted(number, pod_name)
                lines = artifact_files.archived_lines(
                    found.store, namespace, name, found.uid, number
                )
                async for text in lines:
                    yield LogLine(number, pod_name, text)
            elif pod is not None and pod.state != "waiting":
                yield AttemptStarted(number, pod.name)
                try:
                    async for text in self._read_log(pod, namespace, follow=False):
                        yield LogLine(number, pod.name, text)
                except _LogUnavailable:
                    continue

    # ------------------------------------------------------------------ logs

    async def log_events(
        self,
        name: str,
        *,
        namespace: str | None = None,
        follow: bool = False,
        attempt: int | None = None,
        options: LogOptions | None = None,
        uid: str | None = None,
    ) -> AsyncGenerator[LogEvent, None]:
        """The step's log, attempt after attempt, as events: each line (without its line end)
        with the attempt it is from, each attempt's start, and what is awaited (LogLine,
        AttemptStarted, PodWaiting), for progress displays; ``logs`` has just the lines.

        With ``follow``, waits for Pods to start, follows the running attempt, moves on to
        retries, and ends when the StepRun is finished. ``attempt`` reads only that attempt;
        ``options`` limits each attempt's log (tail, since) or adds timestamps. Attempts whose
        Pod is gone are read from the archive when an artifact store is configured, by the
        StepRun's uid; ``uid`` picks one of several deleted StepRuns that had this name.
        """
        ns = await self._ns(namespace)
        if not follow:
            # Pods go (TTL, PodGC, cancel); with an artifact store the logs stay readable.
            found = await self._archived_attempts(name, ns, attempt, uid)
            if found is not None:
                events = self._archived_events(name, ns, found)
                async with aclosing(events):
                    async for event in events:
                        yield event
                return
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
            lines = self._read_log(pod, ns, follow=action.follow, options=options)
            try:
                async with aclosing(lines):
                    async for text in lines:
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

    # The text of each LogLine of ``log_events``, for engines that only want the log.
    logs = _lines_only(log_events)

    async def _progress(self, name: str, namespace: str) -> tuple[bool, bool]:
        """Whether the step is finished (or gone), and whether it waits to retry."""
        try:
            steprun = await self.get(name, namespace)
        except StepRunNotFound:
            return True, False
        return is_terminal(steprun), bool(steprun.status.next_attempt_time)

    async def _pods(self, name: str, namespace: str) -> Sequence[PodView]:
        views = (pod_view(item) for item in await self.pods_raw(name, namespace))
        return [view for view in views if view is not None]

    async def _read_log(
        self, pod: PodView, namespace: str, *, follow: bool, options: LogOptions | None = None
    ) -> AsyncGenerator[str, None]:
        kube = await self._kube()
        chunks = kube.stream_log(
            namespace,
            pod.name,
            pod.container,
            follow=follow,
            # A followed step may print nothing for a long time: no read timeout.
            timeout_seconds=None if follow else self.request_timeout,
            options=(options or LogOptions()).query(),
        )
        splitter = LineSplitter()
        try:
            async with aclosing(chunks):
                async for chunk in chunks:
                    for line in splitter.feed(chunk):
                        yield line
        except KubeError as error:
            if error.status in (400, 404):
                raise _LogUnavailable() from error
            if error.transient:
                raise StreamBroken(str(error)) from error
            raise error_for(error, name=None, namespace=namespace) from error
        for line in splitter.flush():
            yield line

    # ------------------------------------------------------------------ objects as served
    # For kubectl-like tools: the API server's JSON, unchanged (no defaults added, unknown
    # fields kept), and the objects around a StepRun.

    async def get_raw(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        """The StepRun exactly as the API server serves it."""
        ns = await self._ns(namespace)
        return await self._request("GET", STEPRUN.path(ns, name), name=name, namespace=ns)

    async def list_raw(self, **scope: Unpack[ListScope]) -> dict[str, Any]:
        """The StepRun list as served (``items`` and the list's ``metadata.resourceVersion``)."""
        ns = await self._ns(scope.get("namespace"))
        return await self._request(
            "GET",
            _scope_path(scope, ns),
            query=_selectors(scope.get("label_selector"), scope.get("field_selector")),
            name=None,
            namespace=ns,
        )

    async def watch_raw(
        self, *, resource_version: str, **scope: Unpack[ListScope]
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Watch events (``type``, ``object`` as served) of the StepRuns ``list_raw`` would
        list, after ``resource_version``, forever.

        The watch is renewed when the server ends it; after 410 Gone it goes on from a fresh
        list, so changes made meanwhile are reported once as they are now.
        """
        ns = await self._ns(scope.get("namespace"))
        path = _scope_path(scope, ns)
        failures = 0
        while True:
            try:
                events = self._watch_once(
                    path,
                    resource_version,
                    label_selector=scope.get("label_selector"),
                    field_selector=scope.get("field_selector"),
                    namespace=ns,
                    seconds=self.watch_timeout_seconds,
                )
                async with aclosing(events):
                    async for event in events:
                        failures = 0
                        raw = event["object"]
                        resource_version = str(
                            (raw.get("metadata") or {}).get("resourceVersion") or resource_version
                        )
                        if event["type"] != "BOOKMARK":
                            yield {"type": event["type"], "object": raw}
                continue
            except WatchExpired:
                fresh = await self.list_raw(**scope)
                resource_version = str((fresh.get("metadata") or {}).get("resourceVersion"))
                for item in fresh.get("items") or []:
                    yield {"type": "MODIFIED", "object": item}
                continue
            except StreamBroken as exc:
                failure = exc
            failures += 1
            delay = self.backoff.delay(failures)
            if delay is None:
                raise ApiUnreachable(f"watching StepRuns failed: {failure}") from failure
            await self._sleep(delay)

    async def _watch_once(
        self,
        path: str,
        resource_version: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        namespace: str,
        seconds: int,
        name: str | None = None,
    ) -> AsyncGenerator[Event, None]:
        """One watch request: its events, until the server ends it. In-stream errors are
        raised like refused requests: WatchExpired (410), StreamBroken (transient) or the
        client's typed error."""
        kube = await self._kube()
        query = {
            **_selectors(label_selector, field_selector),
            "timeoutSeconds": str(seconds),
            "allowWatchBookmarks": "true",
        }
        # Never watch from "" or "0": the API server would start with every object it has.
        if resource_version:
            query["resourceVersion"] = resource_version
        events = kube.watch(
            path, query=query, request_timeout=(CONNECT_TIMEOUT, seconds + WATCH_READ_MARGIN)
        )
        try:
            async with aclosing(events):
                async for event in events:
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        code = status.get("code")
                        raise classify_response(
                            code if isinstance(code, int) else 0, json.dumps(status)
                        )
                    yield event
        except KubeError as error:
            if error.status == GONE:
                raise WatchExpired(error.message) from error
            if error.transient:
                raise StreamBroken(str(error)) from error
            raise error_for(error, name=name, namespace=namespace) from error

    async def dry_run_create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """What the API server would store for ``body`` (defaults, validation, admission),
        without storing it; a refusal raises InvalidStepRun like ``submit``."""
        ns = str((body.get("metadata") or {}).get("namespace") or await self._ns(None))
        return await self._request(
            "POST",
            STEPRUN.path(ns),
            body=dict(body),
            query={"dryRun": "All"},
            name=None,
            namespace=ns,
        )

    async def pods_raw(
        self, name: str, namespace: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        """The Pods of every attempt of the StepRun, as served."""
        return await self._items("Pod", namespace, {"labelSelector": pod_label_selector(name)})

    async def events_raw(
        self, name: str, namespace: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        """The core Events about the StepRun (the operator posts one per transition)."""
        selector = f"involvedObject.kind=StepRun,involvedObject.name={name}"
        return await self._items("Event", namespace, {"fieldSelector": selector})

    async def namespace_names(self) -> builtins.list[str]:
        """Names of the cluster's namespaces (for shell completion)."""
        items = await self._items("Namespace", None, {})
        return sorted(str(item["metadata"]["name"]) for item in items)

    async def _items(
        self, kind: str, namespace: str | None, query: Mapping[str, str]
    ) -> builtins.list[dict[str, Any]]:
        """The items of one list of ``kind`` (namespaced kinds: in ``namespace`` or the
        client's; Namespace: the cluster's)."""
        ns = None if kind == "Namespace" else await self._ns(namespace)
        body = await self._request(
            "GET", resource(kind).path(ns), query=query, name=None, namespace=ns or ""
        )
        return list(body.get("items") or [])

    async def server_version(self) -> dict[str, Any]:
        """The API server's /version (gitVersion, platform, ...)."""
        return await self._request("GET", "/version", name=None, namespace="")

    # ------------------------------------------------------------------ plumbing

    async def _request(
        self,
        method: str,
        path: str,
        *,
        name: str | None,
        namespace: str,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Body:
        """One API request, retried while the server is unreachable or overloaded (the access
        layer's Transient); any other refusal becomes the client's typed error."""
        kube = await self._kube()
        failures = 0
        while True:
            try:
                return await kube.request(
                    method,
                    path,
                    body=body,
                    query=query,
                    content_type=content_type,
                    request_timeout=self.request_timeout,
                )
            except KubeError as error:
                if not error.transient:
                    raise error_for(error, name=name, namespace=namespace) from error
                failures += 1
                delay = self.backoff.delay(failures, retry_after=error.retry_after)
                if delay is None:
                    raise ApiUnreachable(f"API server unreachable: {error}") from error
                await self._sleep(delay)


def _scope_path(scope: ListScope, namespace: str) -> str:
    return STEPRUN.path(None if scope.get("all_namespaces") else namespace)


def _selectors(label_selector: str | None, field_selector: str | None) -> dict[str, str]:
    return {
        key: value
        for key, value in (("labelSelector", label_selector), ("fieldSelector", field_selector))
        if value
    }


class _WatchSource:
    """Feeds ``wait_for_terminal`` from the API server."""

    def __init__(self, client: AsyncStepRunClient, name: str, namespace: str) -> None:
        self._client = client
        self._name = name
        self._namespace = namespace

    async def list(self) -> tuple[list[StepRun], str]:
        body = await self._client.list_raw(
            namespace=self._namespace, field_selector=name_field_selector(self._name)
        )
        return parse_steprun_list(body)

    def watch(self, resource_version: str, timeout_seconds: int) -> AsyncGenerator[Event, None]:
        return self._client._watch_once(
            STEPRUN.path(self._namespace),
            resource_version,
            field_selector=name_field_selector(self._name),
            namespace=self._namespace,
            seconds=timeout_seconds,
            name=self._name,
        )


class AsyncStepRunHandle:
    """A submitted StepRun: its name and namespace, and the client to follow it with."""

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
        """Waits for the end and returns the result; raises StepRunRejected if rejected."""
        return result_of(await self.wait(timeout))


__all__ = ["AsyncStepRunClient", "AsyncStepRunHandle"]
