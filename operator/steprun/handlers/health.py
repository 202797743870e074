"""Liveness that notices a dead watch stream.

kopf runs one watcher task per watched resource (and namespace) and does not restart one that
fails: the operator would then sit alive but blind to that resource. kopf names those tasks
``watcher for <resource>@<namespace>``; a task factory notes each that ends other than by
cancellation, and the liveness probe fails while any is dead, so the kubelet restarts the
operator (which then lists everything again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any

WATCHER_TASK_PREFIX = "watcher for "


class WatcherDied(Exception):
    pass


class Watchers:
    def __init__(self) -> None:
        self.dead: dict[str, str] = {}

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        previous = loop.get_task_factory()

        def factory(
            loop: asyncio.AbstractEventLoop,
            coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any],
            **kwargs: Any,
        ) -> asyncio.Future[Any]:
            if previous is not None:
                task = previous(loop, coro, **kwargs)
            else:
                task = asyncio.Task(coro, loop=loop, **kwargs)
            # The name is set after the factory returns; it is read when the task ends.
            task.add_done_callback(self._ended)
            return task

        loop.set_task_factory(factory)

    def _ended(self, task: asyncio.Future[Any]) -> None:
        name = task.get_name() if isinstance(task, asyncio.Task) else ""
        if not name.startswith(WATCHER_TASK_PREFIX) or task.cancelled():
            return
        error = task.exception()
        self.dead[name] = f"{type(error).__name__}: {error}" if error else "finished"

    def check(self) -> str:
        """Raises while a watcher is dead (the liveness probe then fails)."""
        if self.dead:
            detail = "; ".join(f"{name} ({why})" for name, why in sorted(self.dead.items()))
            raise WatcherDied(f"watch streams stopped: {detail}")
        return "watching"
