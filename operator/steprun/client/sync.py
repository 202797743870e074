"""The blocking client, on the official ``kubernetes`` package."""

from __future__ import annotations

import builtins
import functools
import json
import os
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

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
    StepRunError,
    StepRunNotFound,
    error_for_status,
    is_retryable_status,
)
from steprun.client.kubeconfig import DEFAULT_NAMESPACE, load_api_client
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
from steprun.client.waiting import (
    Event,
    StreamBroken,
    WaitTracker,
    WatchExpired,
    wait_for_terminal,
)

# Connection and read timeouts of ordinary requests, in seconds. Watches and followed logs
# set their own: they legitimately stay quiet for long.
REQUEST_TIMEOUT = (10.0, 60.0)
CONNECT_TIMEOUT = 10.0
# A watch's read timeout exceeds the server-side timeoutSeconds by this much, so only a dead
# connection (not a quiet one) trips it.
WATCH_READ_MARGIN = 30.0
MERGE_PATCH = "application/merge-patch+json"
_LOG_CHUNK = 64 * 1024
# kubernetes.watch carries no annotations; the alias says its results are untyped.
_watch_module: Any = kubernetes.watch

# What a broken connection looks like to urllib3-based code (ConnectionError is an OSError).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (urllib3.exceptions.HTTPError, OSError)


class _LogUnavailable(Exception):
    """The container has no readable log (not started yet) or its Pod is gone."""


class StepRunClient:
    """Submits, watches, reads and cancels StepRuns.

    Without ``api_client`` the kubeconfig (``KUBECONFIG``, ``~/.kube/config``) or the in-cluster
    service account is loaded, and ``namespace`` defaults to the context's namespace; with an
    ``api_client``, it defaults to ``default``.
    """

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient | None = None,
        namespace: str | None = None,
        *,
        watch_timeout_seconds: int = 300,
        poll_interval: float = 1.0,
        backoff: Backoff | None = None,
        request_timeout: float | tuple[float, float] | None = None,
        artifact_store: ArtifactStore | None = None,
    ) -> None:
        discovered = DEFAULT_NAMESPACE
        if api_client is None:
            api_client, discovered = load_api_client()
        self.api_client = api_client
        self.namespace = namespace or discovered
        self.watch_timeout_seconds = watch_timeout_seconds
        self.poll_interval = poll_interval
        self.backoff = backoff or Backoff()
        # Bounds every ordinary request (connect, read); the CLI's --request-timeout.
        self.request_timeout = request_timeout or REQUEST_TIMEOUT
        self._objects = kubernetes.client.CustomObjectsApi(api_client)
        self._core = kubernetes.client.CoreV1Api(api_client)
        self._sleep: Callable[[float], None] = time.sleep
        # The store, for downloads and archived logs: given, or described by the environment.
        self._artifact_store = artifact_store

    @classmethod
    def from_kubeconfig(
        cls,
        config_file: str | None = None,
        *,
        context: str | None = None,
        namespace: str | None = None,
        **options: Any,
    ) -> StepRunClient:
        """A client for a given kubeconfig file and context (kubectl's --kubeconfig/--context)."""
        api_client, discovered = load_api_client(config_file, context)
        return cls(api_client, namespace or discovered, **options)

    def close(self) -> None:
        cast(Any, self.api_client).close()

    def __enter__(self) -> StepRunClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ StepRuns

    def submit(
        self,
        spec: StepRunSpec | Mapping[str, Any],
        *,
        name: str | None = None,
        generate_name: str | None = None,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        propagate_trace: bool = True,
    ) -> StepRunHandle:
        """Creates a StepRun. Submitting the same ``name`` and spec again returns the existing
        one (so a restarted engine can resubmit safely); a different spec raises
        StepRunConflict. A spec without ``context.trace`` gets the current OpenTelemetry trace
        context when opentelemetry-api is installed and a span is active (``propagate_trace``
        turns that off)."""
        ns = namespace or self.namespace
        spec_model = coerce_spec(spec)
        if propagate_trace:
            spec_model = with_current_trace(spec_model)
        body = steprun_body(
            spec_model, namespace=ns, name=name, generate_name=generate_name, labels=labels
        )
        try:
            created = self._call(
                self._objects.create_namespaced_custom_object,
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
            existing = self.get(name, ns)
            if not same_spec(existing.spec, spec_model):
                raise StepRunConflict(existing) from None
            return StepRunHandle(existing.name, ns, self)
        return StepRunHandle(str(created["metadata"]["name"]), ns, self)

    def get(self, name: str, namespace: str | None = None) -> StepRun:
        return parse_steprun(self.get_raw(name, namespace))

    def list(
        self,
        *,
        namespace: str | None = None,
        all_namespaces: bool = False,
        workflow: str | None = None,
        run_id: str | None = None,
        step_id: str | None = None,
    ) -> list[StepRun]:
        """StepRuns of a namespace (or all), optionally of one workflow, run or step."""
        selector = steprun_field_selector(workflow=workflow, run_id=run_id, step_id=step_id)
        ns = namespace or self.namespace
        if all_namespaces:
            body = self._call(
                self._objects.list_cluster_custom_object,
                GROUP,
                VERSION,
                STEPRUN_PLURAL,
                field_selector=selector,
                name=None,
                namespace="",
            )
        else:
            body = self._call(
                self._objects.list_namespaced_custom_object,
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

    def wait(
        self, name: str, *, namespace: str | None = None, timeout: float | None = None
    ) -> StepRun:
        """Blocks until the StepRun is in a terminal phase and returns it.

        Raises WaitTimeout after ``timeout`` seconds (the step keeps running), StepRunNotFound
        if it does not exist or is deleted meanwhile.
        """
        ns = namespace or self.namespace
        return wait_for_terminal(
            _WatchSource(self, name, ns),
            WaitTracker(name, ns),
            timeout=timeout,
            watch_timeout=self.watch_timeout_seconds,
            backoff=self.backoff,
            sleep=self._sleep,
        )

    def cancel(self, name: str, *, namespace: str | None = None) -> StepRun:
        """Asks the operator to cancel (``spec.cancel: true``); ``wait`` sees it end Cancelled."""
        ns = namespace or self.namespace
        body = self._call(
            self._objects.patch_namespaced_custom_object,
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

    def delete(self, name: str, *, namespace: str | None = None) -> None:
        """Deletes the StepRun; its Pods, ConfigMap and Secret go with it (owner references)."""
        ns = namespace or self.namespace
        self._call(
            self._objects.delete_namespaced_custom_object,
            GROUP,
            VERSION,
            ns,
            STEPRUN_PLURAL,
            name,
            name=name,
            namespace=ns,
        )

    def run(
        self,
        spec: StepRunSpec | Mapping[str, Any],
        *,
        name: str | None = None,
        namespace: str | None = None,
        timeout: float | None = None,
    ) -> StepResult:
        """Submits and waits. A failed step is a result (see ``succeeded`` and ``exit_code``),
        not an error; a rejected one raises StepRunRejected."""
        handle = self.submit(spec, name=name, namespace=namespace)
        return handle.result(timeout=timeout)

    # ------------------------------------------------------------------ artifacts

    def artifacts(self, name: str, *, namespace: str | None = None) -> Sequence[ArtifactStatus]:
        """Every artifact the step uploaded (name, attempt, key, size, sha256), oldest first."""
        return artifact_files.uploads(self.get(name, namespace))

    def download(
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
        entry = artifact_files.pick(self.get(name, namespace), artifact, attempt)
        return artifact_files.download(self.artifact_store(), entry, Path(dest))

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

    def _archived_log_events(
        self, name: str, namespace: str, attempt: int | None
    ) -> Iterator[LogEvent] | None:
        """Log events read from the archive when some attempt's Pod is gone (None: all Pods are
        there, or no store is configured: read the Pods)."""
        store = self._store_or_none()
        try:
            steprun: StepRun | None = self.get(name, namespace)
        except StepRunNotFound:
            if store is None:
                raise
            steprun = None
        if store is None:
            return None
        pods = {pod.attempt: pod for pod in self._pods(name, namespace)}
        if steprun is not None:
            numbers = [a.attempt for a in steprun.status.attempts]
            if all(n in pods for n in numbers):
                return None
        archived = artifact_files.archived_attempts(store, namespace, name)
        if steprun is None:
            if not archived:
                raise StepRunNotFound(name, namespace)
            numbers = archived
        wanted = [n for n in numbers if attempt in (None, n)]
        return self._events_from(store, name, namespace, wanted, set(archived), pods)

    def _events_from(
        self,
        store: ArtifactStore,
        name: str,
        namespace: str,
        attempts: Sequence[int],
        archived: set[int],
        pods: dict[int, PodView],
    ) -> Iterator[LogEvent]:
        for number in attempts:
            pod = pods.get(number)
            pod_name = pod.name if pod is not None else f"{name} attempt {number} (archived)"
            if number in archived:
                yield AttemptStarted(number, pod_name)
                for text in artifact_files.archived_lines(store, namespace, name, number):
                    yield LogLine(number, pod_name, text)
            elif pod is not None and pod.state != "waiting":
                yield AttemptStarted(number, pod.name)
                try:
                    for text in self._read_log(pod, namespace, follow=False):
                        yield LogLine(number, pod.name, text)
                except _LogUnavailable:
                    continue

    # ------------------------------------------------------------------ logs

    def logs(
        self,
        name: str,
        *,
        namespace: str | None = None,
        follow: bool = False,
        attempt: int | None = None,
        options: LogOptions | None = None,
    ) -> Iterator[str]:
        """The step's log lines (without line ends), attempt after attempt.

        With ``follow``, waits for Pods to start, follows the running attempt, moves on to
        retries, and ends when the StepRun is finished. ``attempt`` reads only that attempt;
        ``options`` limits each attempt's log (tail, since) or adds timestamps.
        """
        events = self.log_events(
            name, namespace=namespace, follow=follow, attempt=attempt, options=options
        )
        for event in events:
            if isinstance(event, LogLine):
                yield event.text

    def log_events(
        self,
        name: str,
        *,
        namespace: str | None = None,
        follow: bool = False,
        attempt: int | None = None,
        options: LogOptions | None = None,
    ) -> Iterator[LogEvent]:
        """Like ``logs``, but also says which attempt each line is from and what is awaited
        (LogLine, AttemptStarted, PodWaiting), for progress displays."""
        ns = namespace or self.namespace
        if not follow:
            # Pods go (TTL, PodGC, cancel); with an artifact store the logs stay readable.
            archived = self._archived_log_events(name, ns, attempt)
            if archived is not None:
                yield from archived
                return
        self.get(name, ns)
        planner = LogPlanner(follow=follow, attempt=attempt)
        failures = 0
        while True:
            finished, retrying = (True, False) if not follow else self._progress(name, ns)
            action = planner.plan(self._pods(name, ns), finished, retrying)
            if isinstance(action, LogsDone):
                return
            if isinstance(action, WaitForPod):
                if action.report:
                    yield action.event
                self._sleep(self.poll_interval)
                continue
            pod = action.pod
            if action.first:
                yield AttemptStarted(pod.attempt, pod.name)
            seen = 0
            try:
                for text in self._read_log(pod, ns, follow=action.follow, options=options):
                    seen += 1
                    if seen > action.skip_lines:
                        yield LogLine(pod.attempt, pod.name, text)
            except _LogUnavailable:
                planner.unavailable(pod.attempt)
                if follow:
                    self._sleep(self.poll_interval)
                continue
            except StreamBroken as exc:
                planner.progress(pod.attempt, max(seen, action.skip_lines))
                failures += 1
                delay = self.backoff.delay(failures)
                if delay is None:
                    raise ApiUnreachable(f"reading logs of pod {pod.name!r} failed: {exc}") from exc
                self._sleep(delay)
                continue
            failures = 0
            planner.streamed(pod.attempt)

    def _progress(self, name: str, namespace: str) -> tuple[bool, bool]:
        """Whether the step is finished (or gone), and whether it waits to retry."""
        try:
            steprun = self.get(name, namespace)
        except StepRunNotFound:
            return True, False
        return is_terminal(steprun), bool(steprun.status.next_attempt_time)

    def _pods(self, name: str, namespace: str) -> Sequence[PodView]:
        # Raw JSON, not the client's Pod models: only a few fields are read, and they must
        # not depend on how strictly this client version models the rest of a Pod.
        response = self._call(
            self._core.list_namespaced_pod,
            namespace,
            label_selector=pod_label_selector(name),
            _preload_content=False,
            name=None,
            namespace=namespace,
        )
        try:
            raw = json.loads(response.data)
        finally:
            response.release_conn()
        views = (pod_view(item) for item in raw.get("items") or [])
        return [view for view in views if view is not None]

    def _read_log(
        self, pod: PodView, namespace: str, *, follow: bool, options: LogOptions | None = None
    ) -> Generator[str, None, None]:
        try:
            # Without preloading, the call returns the raw HTTP response, not the annotated str.
            response = cast(Any, self._core).read_namespaced_pod_log(
                pod.name,
                namespace,
                container=pod.container,
                follow=follow,
                _preload_content=False,
                # A followed step may print nothing for a long time: no read timeout.
                _request_timeout=None if follow else self.request_timeout,
                **(options or LogOptions()).query(),
            )
        except ApiException as exc:
            if exc.status in (400, 404):
                raise _LogUnavailable() from exc
            if is_retryable_status(exc.status):
                raise StreamBroken(f"{exc.status} {exc.reason}") from exc
            raise error_for_status(exc.status, exc.body, name=None, namespace=namespace) from exc
        except TRANSPORT_ERRORS as exc:
            raise StreamBroken(str(exc)) from exc
        splitter = LineSplitter()
        try:
            while chunk := response.read1(_LOG_CHUNK):
                yield from splitter.feed(chunk)
            yield from splitter.flush()
        except TRANSPORT_ERRORS as exc:
            raise StreamBroken(str(exc)) from exc
        finally:
            response.release_conn()

    # ------------------------------------------------------------------ objects as served
    # For kubectl-like tools: the API server's JSON, unchanged (no defaults added, unknown
    # fields kept), and the objects around a StepRun.

    def get_raw(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        """The StepRun exactly as the API server serves it."""
        ns = namespace or self.namespace
        return dict(
            self._call(
                self._objects.get_namespaced_custom_object,
                GROUP,
                VERSION,
                ns,
                STEPRUN_PLURAL,
                name,
                name=name,
                namespace=ns,
            )
        )

    def list_raw(
        self,
        *,
        namespace: str | None = None,
        all_namespaces: bool = False,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> dict[str, Any]:
        """The StepRun list as served (``items`` and the list's ``metadata.resourceVersion``)."""
        ns = namespace or self.namespace
        selectors = {"label_selector": label_selector, "field_selector": field_selector}
        if all_namespaces:
            body = self._call(
                self._objects.list_cluster_custom_object,
                GROUP,
                VERSION,
                STEPRUN_PLURAL,
                **{k: v for k, v in selectors.items() if v},
                name=None,
                namespace="",
            )
        else:
            body = self._call(
                self._objects.list_namespaced_custom_object,
                GROUP,
                VERSION,
                ns,
                STEPRUN_PLURAL,
                **{k: v for k, v in selectors.items() if v},
                name=None,
                namespace=ns,
            )
        return dict(body)

    def watch_raw(
        self,
        *,
        namespace: str | None = None,
        all_namespaces: bool = False,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str,
    ) -> Iterator[dict[str, Any]]:
        """Watch events (``type``, ``object`` as served) after ``resource_version``, forever.

        The watch is renewed when the server ends it; after 410 Gone it goes on from a fresh
        list, so changes made meanwhile are reported once as they are now.
        """
        ns = "" if all_namespaces else (namespace or self.namespace)
        listing: Callable[..., Any] = (
            functools.partial(self._objects.list_cluster_custom_object, GROUP, VERSION)
            if all_namespaces
            else functools.partial(self._objects.list_namespaced_custom_object, GROUP, VERSION, ns)
        )
        selectors = {
            k: v
            for k, v in {"label_selector": label_selector, "field_selector": field_selector}.items()
            if v
        }
        failures = 0
        while True:
            watch = _watch_module.Watch()
            try:
                for event in watch.stream(
                    listing,
                    STEPRUN_PLURAL,
                    resource_version=resource_version,
                    timeout_seconds=self.watch_timeout_seconds,
                    allow_watch_bookmarks=True,
                    _request_timeout=(
                        CONNECT_TIMEOUT,
                        self.watch_timeout_seconds + WATCH_READ_MARGIN,
                    ),
                    **selectors,
                ):
                    failures = 0
                    raw = event["raw_object"]
                    resource_version = str(
                        (raw.get("metadata") or {}).get("resourceVersion") or resource_version
                    )
                    if event["type"] != "BOOKMARK":
                        yield {"type": event["type"], "object": raw}
            except ApiException as exc:
                if exc.status == 410:
                    fresh = self.list_raw(
                        namespace=namespace,
                        all_namespaces=all_namespaces,
                        label_selector=label_selector,
                        field_selector=field_selector,
                    )
                    resource_version = str((fresh.get("metadata") or {}).get("resourceVersion"))
                    for item in fresh.get("items") or []:
                        yield {"type": "MODIFIED", "object": item}
                    continue
                if not is_retryable_status(exc.status):
                    raise error_for_status(exc.status, exc.body, name=None, namespace=ns) from exc
                failure: BaseException = exc
            except TRANSPORT_ERRORS as exc:
                failure = exc
            else:
                continue
            finally:
                watch.stop()
            failures += 1
            delay = self.backoff.delay(failures)
            if delay is None:
                raise ApiUnreachable(f"watching StepRuns failed: {failure}") from failure
            self._sleep(delay)

    def dry_run_create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """What the API server would store for ``body`` (defaults, validation, admission),
        without storing it; a refusal raises InvalidStepRun like ``submit``."""
        ns = str((body.get("metadata") or {}).get("namespace") or self.namespace)
        created = self._call(
            self._objects.create_namespaced_custom_object,
            GROUP,
            VERSION,
            ns,
            STEPRUN_PLURAL,
            dict(body),
            dry_run="All",
            name=None,
            namespace=ns,
        )
        return dict(created)

    def pods_raw(self, name: str, namespace: str | None = None) -> builtins.list[dict[str, Any]]:
        """The Pods of every attempt of the StepRun, as served."""
        ns = namespace or self.namespace
        response = self._call(
            self._core.list_namespaced_pod,
            ns,
            label_selector=pod_label_selector(name),
            _preload_content=False,
            name=None,
            namespace=ns,
        )
        try:
            return list(json.loads(response.data).get("items") or [])
        finally:
            response.release_conn()

    def events_raw(self, name: str, namespace: str | None = None) -> builtins.list[dict[str, Any]]:
        """The core Events about the StepRun (the operator posts one per transition)."""
        ns = namespace or self.namespace
        response = self._call(
            self._core.list_namespaced_event,
            ns,
            field_selector=f"involvedObject.kind=StepRun,involvedObject.name={name}",
            _preload_content=False,
            name=None,
            namespace=ns,
        )
        try:
            return list(json.loads(response.data).get("items") or [])
        finally:
            response.release_conn()

    def namespace_names(self) -> builtins.list[str]:
        """Names of the cluster's namespaces (for shell completion)."""
        response = self._call(
            self._core.list_namespace, _preload_content=False, name=None, namespace=""
        )
        try:
            items = json.loads(response.data).get("items") or []
        finally:
            response.release_conn()
        return sorted(str(item["metadata"]["name"]) for item in items)

    def server_version(self) -> dict[str, Any]:
        """The API server's /version (gitVersion, platform, ...)."""
        api = kubernetes.client.VersionApi(self.api_client)
        response = self._call(api.get_code, _preload_content=False, name=None, namespace="")
        try:
            return dict(json.loads(response.data))
        finally:
            response.release_conn()

    # ------------------------------------------------------------------ plumbing

    def _call(
        self, fn: Callable[..., Any], *args: Any, name: str | None, namespace: str, **kwargs: Any
    ) -> Any:
        """One API request, retried while the server is unreachable or overloaded."""
        kwargs.setdefault("_request_timeout", self.request_timeout)
        failures = 0
        while True:
            try:
                return fn(*args, **kwargs)
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
            self._sleep(delay)

    def _watch(
        self, name: str, namespace: str, resource_version: str, seconds: int
    ) -> Generator[Event, None, None]:
        watch = _watch_module.Watch()
        try:
            for event in watch.stream(
                self._objects.list_namespaced_custom_object,
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
            watch.stop()


class _WatchSource:
    """Feeds ``wait_for_terminal`` from the API server."""

    def __init__(self, client: StepRunClient, name: str, namespace: str) -> None:
        self._client = client
        self._name = name
        self._namespace = namespace

    def list(self) -> tuple[list[StepRun], str]:
        body = self._client._call(
            self._client._objects.list_namespaced_custom_object,
            GROUP,
            VERSION,
            self._namespace,
            STEPRUN_PLURAL,
            field_selector=name_field_selector(self._name),
            name=None,
            namespace=self._namespace,
        )
        return parse_steprun_list(body)

    def watch(self, resource_version: str, timeout_seconds: int) -> Generator[Event, None, None]:
        return self._client._watch(self._name, self._namespace, resource_version, timeout_seconds)


class StepRunHandle:
    """A submitted StepRun: its name and namespace, and the client to follow it with."""

    def __init__(self, name: str, namespace: str, client: StepRunClient) -> None:
        self.name = name
        self.namespace = namespace
        self.client = client

    def __repr__(self) -> str:
        return f"StepRunHandle(name={self.name!r}, namespace={self.namespace!r})"

    def refresh(self) -> StepRun:
        return self.client.get(self.name, self.namespace)

    def wait(self, timeout: float | None = None) -> StepRun:
        return self.client.wait(self.name, namespace=self.namespace, timeout=timeout)

    def logs(self, follow: bool = False, attempt: int | None = None) -> Iterator[str]:
        return self.client.logs(self.name, namespace=self.namespace, follow=follow, attempt=attempt)

    def cancel(self) -> StepRun:
        return self.client.cancel(self.name, namespace=self.namespace)

    def result(self, timeout: float | None = None) -> StepResult:
        """Waits for the end and returns the result; raises StepRunRejected if rejected."""
        return result_of(self.wait(timeout))


__all__ = ["StepRunClient", "StepRunError", "StepRunHandle"]
