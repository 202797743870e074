"""Watches both sides' owners and Pods and timestamps every milestone as it is observed."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.kube import Api, Body
from bench.timeline import (
    Timeline,
    bare_pod_outcome,
    job_outcome,
    pod_owner,
    pod_progress,
    steprun_outcome,
)
from bench.workload import SIDES, Side
from steprun.api.resources import STEPRUN, resource

POD = resource("Pod")


@dataclass(frozen=True)
class Stream:
    side: Side
    path: str
    handle: Callable[[Timeline, Body, float], None]


def _steprun(timeline: Timeline, body: Body, now: float) -> None:
    timeline.owner_event(body["metadata"]["name"], now, steprun_outcome(body))


def _job(timeline: Timeline, body: Body, now: float) -> None:
    timeline.owner_event(body["metadata"]["name"], now, job_outcome(body))


def _pod_of(kind: str) -> Callable[[Timeline, Body, float], None]:
    def handle(timeline: Timeline, body: Body, now: float) -> None:
        owner = pod_owner(body, kind)
        if owner is not None:
            timeline.pod_event(owner, body["metadata"]["name"], now, pod_progress(body))

    return handle


def _bare_pod(timeline: Timeline, body: Body, now: float) -> None:
    # A bare Pod is its own owner: created, seen and terminal are the Pod's own milestones.
    name = body["metadata"]["name"]
    timeline.pod_event(name, name, now, pod_progress(body))
    timeline.owner_event(name, now, bare_pod_outcome(body))


def streams(steprun_namespace: str, job_namespace: str, pod_namespace: str) -> list[Stream]:
    return [
        Stream("steprun", STEPRUN.path(steprun_namespace), _steprun),
        Stream("steprun", POD.path(steprun_namespace), _pod_of("StepRun")),
        Stream("job", resource("Job").path(job_namespace), _job),
        Stream("job", POD.path(job_namespace), _pod_of("Job")),
        Stream("pod", POD.path(pod_namespace), _bare_pod),
    ]


class Recorder:
    def __init__(
        self, api: Api, watched: list[Stream], clock: Callable[[], float] = time.monotonic
    ):
        self.api = api
        self.watched = watched
        self.clock = clock
        self.timelines: dict[Side, Timeline] = {side: Timeline() for side in SIDES}
        self.events = 0
        self._tasks: list[asyncio.Task[None]] = []
        self.failure: BaseException | None = None

    async def start(self) -> None:
        """Returns once every stream has a starting version: nothing after that is missed."""
        versions = [await self.api.list_version(stream.path) for stream in self.watched]
        loop = asyncio.get_running_loop()
        for stream, version in zip(self.watched, versions, strict=True):
            self._tasks.append(loop.create_task(self._follow(stream, version)))

    async def _follow(self, stream: Stream, version: str) -> None:
        timeline = self.timelines[stream.side]
        try:
            async for _kind, body in self.api.watch(stream.path, version):
                self.events += 1
                stream.handle(timeline, body, self.clock())
        except asyncio.CancelledError:
            raise
        except Exception as error:  # surfaced by wait_until_finished, never swallowed
            self.failure = error

    async def wait_until_finished(
        self, expected: dict[Side, int], deadline: float, progress: Callable[[str], Any]
    ) -> bool:
        """True when every expected step of each side is terminal before ``deadline``."""
        last_report = 0.0
        while True:
            if self.failure is not None:
                raise RuntimeError(f"a watch failed: {self.failure!r}") from self.failure
            done = {side: self.timelines[side].finished() for side in expected}
            if all(done[side] >= count for side, count in expected.items()):
                return True
            now = self.clock()
            if now >= deadline:
                return False
            if now - last_report >= 10:
                progress(", ".join(f"{side} {done[side]}/{n}" for side, n in expected.items()))
                last_report = now
            await asyncio.sleep(0.25)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
