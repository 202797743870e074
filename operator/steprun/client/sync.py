"""The blocking client: the asyncio client run on a private event loop (a "portal" thread).

There is one implementation (``steprun.client.aio``); each blocking method hands its coroutine
to the portal's loop and waits for the answer, and each blocking iterator steps an async one.
So a fix or a feature lands once, and the blocking client talks to the API server through
the same access layer as the operator. docs/design.md says why this over generated code.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, Unpack

from steprun.artifacts.store import ArtifactStore
from steprun.client.aio import (
    AsyncStepRunClient,
    AsyncStepRunHandle,
    ClientOptions,
    FromKubeconfig,
)
from steprun.client.errors import StepRunError

T = TypeVar("T")
A = TypeVar("A")
R = TypeVar("R")
P = ParamSpec("P")
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
        # The caller's context variables (the engine's OpenTelemetry span, log bindings) are
        # the coroutine's, as if it ran in the caller's thread.
        context = contextvars.copy_context()

        def start() -> None:
            task = self._loop.create_task(make(), context=context)
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


class Derived(Protocol[A]):
    """A blocking class made of an asyncio one: the asyncio object and the portal to run it."""

    aio: A
    _portal: Portal


def blocking(
    method: Callable[Concatenate[A, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[Derived[A], P], R]:
    """The blocking form of a coroutine method of the asyncio class: run on the portal."""

    def call(self: Derived[A], /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._portal.call(lambda: method(self.aio, *args, **kwargs))

    # Its name, docstring and signature (help(), inspect) are the asyncio method's.
    functools.update_wrapper(call, method)
    return call


def iterating(
    method: Callable[Concatenate[A, P], AsyncIterator[R]],
) -> Callable[Concatenate[Derived[A], P], Iterator[R]]:
    """The blocking form of an async-iterator method of the asyncio class: each item is
    fetched on the portal."""

    def call(self: Derived[A], /, *args: P.args, **kwargs: P.kwargs) -> Iterator[R]:
        return self._portal.iterate(method(self.aio, *args, **kwargs))

    functools.update_wrapper(call, method)
    return call


def handing(
    method: Callable[Concatenate[AsyncStepRunClient, P], Coroutine[Any, Any, AsyncStepRunHandle]],
) -> Callable[Concatenate[StepRunClient, P], StepRunHandle]:
    """The blocking form of a method that returns a handle: a blocking handle."""

    def call(self: StepRunClient, /, *args: P.args, **kwargs: P.kwargs) -> StepRunHandle:
        handle = self._portal.call(lambda: method(self.aio, *args, **kwargs))
        return StepRunHandle(handle.name, handle.namespace, self)

    functools.update_wrapper(call, method)
    return call


class StepRunClient(FromKubeconfig):
    """Submits, watches, reads and cancels StepRuns, blocking.

    Without ``api_client`` the kubeconfig (``KUBECONFIG``, ``~/.kube/config``) or the in-cluster
    service account is loaded (now: a missing configuration raises ConfigException here), and
    ``namespace`` defaults to the context's. ``api_client`` may be an API client or
    configuration of ``kubernetes_asyncio`` or ``kubernetes``: its connection and credential
    settings are used, and ``namespace`` defaults to ``default``.
    """

    def __init__(
        self, api_client: Any = None, namespace: str | None = None, **options: Unpack[ClientOptions]
    ) -> None:
        self._portal = portal()

        async def connected() -> AsyncStepRunClient:
            # Made on the portal's loop: the HTTP session belongs to the loop that makes it.
            client = AsyncStepRunClient(api_client, namespace, **options)
            await client.connect()
            return client

        self.aio = self._portal.call(connected)

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

    def artifact_store(self) -> ArtifactStore:
        return self.aio.artifact_store()

    # The rest is the asyncio client's, each method derived by ``blocking`` or ``iterating``
    # (same parameters, same docstring); a method added there needs one line here, and
    # tests/unit/test_client_http.py fails until it has it.
    submit = handing(AsyncStepRunClient.submit)
    run = blocking(AsyncStepRunClient.run)
    get = blocking(AsyncStepRunClient.get)
    list = blocking(AsyncStepRunClient.list)
    wait = blocking(AsyncStepRunClient.wait)
    cancel = blocking(AsyncStepRunClient.cancel)
    delete = blocking(AsyncStepRunClient.delete)
    artifacts = blocking(AsyncStepRunClient.artifacts)
    download = blocking(AsyncStepRunClient.download)
    logs = iterating(AsyncStepRunClient.logs)
    log_events = iterating(AsyncStepRunClient.log_events)
    get_raw = blocking(AsyncStepRunClient.get_raw)
    list_raw = blocking(AsyncStepRunClient.list_raw)
    watch_raw = iterating(AsyncStepRunClient.watch_raw)
    dry_run_create = blocking(AsyncStepRunClient.dry_run_create)
    pods_raw = blocking(AsyncStepRunClient.pods_raw)
    events_raw = blocking(AsyncStepRunClient.events_raw)
    namespace_names = blocking(AsyncStepRunClient.namespace_names)
    server_version = blocking(AsyncStepRunClient.server_version)


class StepRunHandle:
    """A submitted StepRun: its name and namespace, and the client to follow it with."""

    def __init__(self, name: str, namespace: str, client: StepRunClient) -> None:
        self.name = name
        self.namespace = namespace
        self.client = client
        self.aio = AsyncStepRunHandle(name, namespace, client.aio)
        self._portal = client._portal

    def __repr__(self) -> str:
        return f"StepRunHandle(name={self.name!r}, namespace={self.namespace!r})"

    refresh = blocking(AsyncStepRunHandle.refresh)
    wait = blocking(AsyncStepRunHandle.wait)
    logs = iterating(AsyncStepRunHandle.logs)
    cancel = blocking(AsyncStepRunHandle.cancel)
    result = blocking(AsyncStepRunHandle.result)


__all__ = ["Portal", "StepRunClient", "StepRunError", "StepRunHandle", "portal"]
