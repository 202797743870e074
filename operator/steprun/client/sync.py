"""The blocking client: the asyncio client run on a private event loop (a "portal" thread).

There is one implementation (``steprun.client.aio``); each blocking method hands its coroutine
to the portal's loop and waits for the answer, and each blocking iterator steps an async one.
So a fix or a feature lands once, and the blocking client talks to the API server through
the same access layer as the operator. docs/design.md says why this over generated code.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import contextlib
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from steprun.api.models import ArtifactStatus, StepRun, StepRunSpec
from steprun.artifacts.store import ArtifactStore
from steprun.client.aio import AsyncStepRunClient
from steprun.client.backoff import Backoff
from steprun.client.errors import StepRunError
from steprun.client.logs import LogEvent, LogOptions
from steprun.client.result import StepResult, result_of
from steprun.kube.client import Timeout

T = TypeVar("T")
# How long an interrupted call (Ctrl-C) may take to unwind on the loop before the caller goes
# on regardless: its cleanup only closes connections.
CANCEL_GRACE_SECONDS = 5.0


class Portal:
    """An event loop on a daemon thread, running coroutines for threads that block on them.

    One per process (``portal()``), shared by every blocking client, like kr8s's: a thread per
    client would outlive clients that are never closed.
    """

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="steprun-client-portal", daemon=True
        )
        self._thread.start()

    def call(
        self, make: Callable[[], Coroutine[Any, Any, T]], *, timeout: float | None = None
    ) -> T:
        """Runs ``make()`` on the loop and returns its result (or raises its exception).

        Interrupted while waiting (KeyboardInterrupt, or ``timeout``), the coroutine is
        cancelled and given a moment to unwind, so the next call finds no half-run generator
        or request.
        """
        done: concurrent.futures.Future[T] = concurrent.futures.Future()
        tasks: list[asyncio.Task[T]] = []

        def start() -> None:
            task = self._loop.create_task(make())
            tasks.append(task)
            task.add_done_callback(lambda finished: _settle(finished, done))

        self._loop.call_soon_threadsafe(start)
        try:
            return done.result(timeout)
        except BaseException:
            if not done.done():
                # Runs after start() (callbacks keep their order), so the task exists.
                self._loop.call_soon_threadsafe(lambda: tasks[0].cancel())
                concurrent.futures.wait([done], timeout=CANCEL_GRACE_SECONDS)
            raise

    def iterate(self, items: AsyncIterator[T]) -> Iterator[T]:
        """The items of an async iterator, each fetched on the loop; closed when abandoned."""
        try:
            while True:
                try:
                    item = self.call(lambda: _next(items))
                except StopAsyncIteration:
                    return
                yield item
        finally:
            # An iterator abandoned at interpreter exit is not closed: the loop's thread may
            # already be gone, and waiting for it would hang the exit.
            if hasattr(items, "aclose") and not sys.is_finalizing() and self._thread.is_alive():
                self.call(lambda: _close(items), timeout=CANCEL_GRACE_SECONDS)


def _settle(task: asyncio.Task[T], done: concurrent.futures.Future[T]) -> None:
    if task.cancelled():
        done.cancel()
    elif task.exception() is not None:
        done.set_exception(task.exception())
    else:
        done.set_result(task.result())


async def _next(items: AsyncIterator[T]) -> T:
    return await items.__anext__()


async def _close(items: Any) -> None:
    # RuntimeError: still running, an interrupted step did not unwind within the grace
    # period. The loop finalizes the generator once it stops; closing must not mask the
    # interrupt.
    with contextlib.suppress(RuntimeError):
        await items.aclose()


_portal: Portal | None = None
_portal_pid = 0
_portal_lock = threading.Lock()


def portal() -> Portal:
    """The process's portal, started on first use (again in a forked child: threads do not
    survive a fork)."""
    global _portal, _portal_pid
    with _portal_lock:
        if _portal is None or _portal_pid != os.getpid():
            _portal, _portal_pid = Portal(), os.getpid()
        return _portal


class StepRunClient:
    """Submits, watches, reads and cancels StepRuns, blocking.

    Without ``api_client`` the kubeconfig (``KUBECONFIG``, ``~/.kube/config``) or the in-cluster
    service account is loaded (now: a missing configuration raises ConfigException here), and
    ``namespace`` defaults to the context's. ``api_client`` may be an API client or
    configuration of ``kubernetes_asyncio`` or ``kubernetes``: its connection and credential
    settings are used, and ``namespace`` defaults to ``default``.
    """

    def __init__(
        self,
        api_client: Any = None,
        namespace: str | None = None,
        *,
        watch_timeout_seconds: int = 300,
        poll_interval: float = 1.0,
        backoff: Backoff | None = None,
        request_timeout: Timeout = None,
        artifact_store: ArtifactStore | None = None,
        config_file: str | None = None,
        context: str | None = None,
    ) -> None:
        self._portal = portal()

        async def connected() -> AsyncStepRunClient:
            # Made on the portal's loop: the HTTP session belongs to the loop that makes it.
            client = AsyncStepRunClient(
                api_client,
                namespace,
                config_file=config_file,
                context=context,
                watch_timeout_seconds=watch_timeout_seconds,
                poll_interval=poll_interval,
                backoff=backoff,
                request_timeout=request_timeout,
                artifact_store=artifact_store,
            )
            await client.connect()
            return client

        self.aio = self._portal.call(connected)

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
        return cls(None, namespace, config_file=config_file, context=context, **options)

    @property
    def namespace(self) -> str:
        return self.aio.namespace

    def close(self) -> None:
        self._portal.call(self.aio.close)

    def __enter__(self) -> StepRunClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # Each method below is the asyncio client's, run on the portal; their docstrings are there.

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
        # The trace context is the caller's thread's: read it here, not on the portal's loop.
        from steprun.client.objects import coerce_spec
        from steprun.client.trace import with_current_trace

        spec_model = coerce_spec(spec)
        if propagate_trace:
            spec_model = with_current_trace(spec_model)
        handle = self._portal.call(
            lambda: self.aio.submit(
                spec_model,
                name=name,
                generate_name=generate_name,
                namespace=namespace,
                labels=labels,
                propagate_trace=False,
            )
        )
        return StepRunHandle(handle.name, handle.namespace, self)

    def get(self, name: str, namespace: str | None = None) -> StepRun:
        return self._portal.call(lambda: self.aio.get(name, namespace))

    def list(
        self,
        *,
        namespace: str | None = None,
        all_namespaces: bool = False,
        workflow: str | None = None,
        run_id: str | None = None,
        step_id: str | None = None,
    ) -> builtins.list[StepRun]:
        return self._portal.call(
            lambda: self.aio.list(
                namespace=namespace,
                all_namespaces=all_namespaces,
                workflow=workflow,
                run_id=run_id,
                step_id=step_id,
            )
        )

    def wait(
        self, name: str, *, namespace: str | None = None, timeout: float | None = None
    ) -> StepRun:
        return self._portal.call(lambda: self.aio.wait(name, namespace=namespace, timeout=timeout))

    def cancel(self, name: str, *, namespace: str | None = None) -> StepRun:
        return self._portal.call(lambda: self.aio.cancel(name, namespace=namespace))

    def delete(self, name: str, *, namespace: str | None = None) -> None:
        self._portal.call(lambda: self.aio.delete(name, namespace=namespace))

    def run(
        self,
        spec: StepRunSpec | Mapping[str, Any],
        *,
        name: str | None = None,
        namespace: str | None = None,
        timeout: float | None = None,
    ) -> StepResult:
        return self.submit(spec, name=name, namespace=namespace).result(timeout=timeout)

    def artifacts(self, name: str, *, namespace: str | None = None) -> Sequence[ArtifactStatus]:
        return self._portal.call(lambda: self.aio.artifacts(name, namespace=namespace))

    def download(
        self,
        name: str,
        artifact: str,
        dest: str | os.PathLike[str],
        *,
        namespace: str | None = None,
        attempt: int | None = None,
    ) -> Path:
        return self._portal.call(
            lambda: self.aio.download(name, artifact, dest, namespace=namespace, attempt=attempt)
        )

    def artifact_store(self) -> ArtifactStore:
        return self.aio.artifact_store()

    def logs(
        self,
        name: str,
        *,
        namespace: str | None = None,
        follow: bool = False,
        attempt: int | None = None,
        options: LogOptions | None = None,
    ) -> Iterator[str]:
        return self._portal.iterate(
            self.aio.logs(
                name, namespace=namespace, follow=follow, attempt=attempt, options=options
            )
        )

    def log_events(
        self,
        name: str,
        *,
        namespace: str | None = None,
        follow: bool = False,
        attempt: int | None = None,
        options: LogOptions | None = None,
    ) -> Iterator[LogEvent]:
        return self._portal.iterate(
            self.aio.log_events(
                name, namespace=namespace, follow=follow, attempt=attempt, options=options
            )
        )

    def get_raw(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        return self._portal.call(lambda: self.aio.get_raw(name, namespace))

    def list_raw(
        self,
        *,
        namespace: str | None = None,
        all_namespaces: bool = False,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> dict[str, Any]:
        return self._portal.call(
            lambda: self.aio.list_raw(
                namespace=namespace,
                all_namespaces=all_namespaces,
                label_selector=label_selector,
                field_selector=field_selector,
            )
        )

    def watch_raw(
        self,
        *,
        namespace: str | None = None,
        all_namespaces: bool = False,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str,
    ) -> Iterator[dict[str, Any]]:
        return self._portal.iterate(
            self.aio.watch_raw(
                namespace=namespace,
                all_namespaces=all_namespaces,
                label_selector=label_selector,
                field_selector=field_selector,
                resource_version=resource_version,
            )
        )

    def dry_run_create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._portal.call(lambda: self.aio.dry_run_create(body))

    def pods_raw(self, name: str, namespace: str | None = None) -> builtins.list[dict[str, Any]]:
        return self._portal.call(lambda: self.aio.pods_raw(name, namespace))

    def events_raw(self, name: str, namespace: str | None = None) -> builtins.list[dict[str, Any]]:
        return self._portal.call(lambda: self.aio.events_raw(name, namespace))

    def namespace_names(self) -> builtins.list[str]:
        return self._portal.call(self.aio.namespace_names)

    def server_version(self) -> dict[str, Any]:
        return self._portal.call(self.aio.server_version)


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


__all__ = ["Portal", "StepRunClient", "StepRunError", "StepRunHandle", "portal"]
