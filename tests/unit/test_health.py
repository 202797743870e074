"""Liveness fails once one of kopf's watch streams has died."""

from __future__ import annotations

import asyncio

import pytest

from steprun.handlers.health import WatcherDied, Watchers


async def test_a_failed_watcher_fails_liveness_and_a_cancelled_one_does_not() -> None:
    watchers = Watchers()
    loop = asyncio.get_running_loop()
    watchers.install(loop)
    try:
        await _watchers_die(watchers)
    finally:
        loop.set_task_factory(None)


async def _watchers_die(watchers: Watchers) -> None:
    async def fails() -> None:
        raise RecursionError("maximum recursion depth exceeded while decoding a JSON object")

    async def forever() -> None:
        await asyncio.Event().wait()

    stopped = asyncio.create_task(forever(), name="watcher for pods.v1@ci")
    other = asyncio.create_task(fails(), name="reconcile of something else")
    await asyncio.sleep(0)
    stopped.cancel()
    await asyncio.gather(stopped, other, return_exceptions=True)
    assert watchers.check() == "watching"

    dead = asyncio.create_task(fails(), name="watcher for stepruns.v1alpha1.steprun.dev@ci")
    await asyncio.gather(dead, return_exceptions=True)
    with pytest.raises(WatcherDied, match=r"stepruns\.v1alpha1\.steprun\.dev@ci .*RecursionError"):
        watchers.check()
