"""Work that waits on a step's container, done outside the reconcile lanes.

A cancelled step's log is followed until its container ends, which may take its whole grace
period. Done inside a reconcile, as many cancelled steps as there are reconcile slots (each
trapping SIGTERM with a long grace period) would hold every slot, and no namespace would get an
outcome recorded meanwhile. Here each such piece of work is a task of its own, keyed by its
StepRun so a reconcile can tell it is under way. Work of one namespace takes turns in that
namespace's slots (``per_namespace`` at a time): a namespace cancelling many steps waits for
itself, never for the others, and each piece says how long it may wait for its turn.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from steprun.log import get_logger
from steprun.reconcile.queue import Key


class OffLane:
    def __init__(self, per_namespace: int, on_done: Callable[[Key], None]):
        """``on_done``: called with the key when its work has ended, however it ended (the
        reconciler looks at the StepRun again then)."""
        self.per_namespace = per_namespace
        self._on_done = on_done
        self._tasks: dict[Key, asyncio.Task[None]] = {}
        # Per namespace: its slots, and how many pieces of work hold or wait for one (the entry
        # goes when that is none, so idle namespaces cost nothing).
        self._slots: dict[str, tuple[asyncio.Semaphore, int]] = {}
        self._log = get_logger("steprun.offlane")

    def busy(self, key: Key) -> bool:
        """Whether work of ``key`` is under way (its reconciles then leave it be)."""
        return key in self._tasks

    def start(self, key: Key, work: Coroutine[Any, Any, None]) -> None:
        """Runs ``work`` as a task of its own; at most one per key (a second is closed)."""
        if key in self._tasks:
            work.close()
            return
        task = asyncio.get_running_loop().create_task(work)
        self._tasks[key] = task
        task.add_done_callback(lambda done: self._done(key, done))

    @contextlib.asynccontextmanager
    async def slot(self, namespace: str, within: float) -> AsyncIterator[bool]:
        """One of the namespace's slots while the block runs; yields False, holding none, if
        none frees within ``within`` seconds."""
        semaphore, users = self._slots.get(namespace) or (asyncio.Semaphore(self.per_namespace), 0)
        self._slots[namespace] = (semaphore, users + 1)
        try:
            try:
                await asyncio.wait_for(semaphore.acquire(), max(within, 0.0))
            except TimeoutError:
                yield False
                return
            try:
                yield True
            finally:
                semaphore.release()
        finally:
            semaphore, users = self._slots[namespace]
            if users <= 1:
                del self._slots[namespace]
            else:
                self._slots[namespace] = (semaphore, users - 1)

    async def drain(self) -> None:
        """Cancels what is under way (a restarted operator redoes it from the StepRun)."""
        for task in list(self._tasks.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait(self) -> None:
        """Until everything under way now has ended (tests)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks.values()))

    def _done(self, key: Key, task: asyncio.Task[None]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled() and (error := task.exception()) is not None:
            self._log.error(
                "work outside the reconcile lanes failed; the step is reconciled again",
                namespace=key[0],
                name=key[1],
                error=f"{type(error).__name__}: {error}",
            )
        if not task.cancelled():
            self._on_done(key)


__all__ = ["OffLane"]
