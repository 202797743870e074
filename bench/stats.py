"""Latency and throughput figures of one side of a scenario (pure)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.timeline import StepTimes, Timeline


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); values must be sorted."""
    if not sorted_values:
        return math.nan
    position = (len(sorted_values) - 1) * fraction
    low = math.floor(position)
    high = math.ceil(position)
    if low == high:
        return sorted_values[low]
    weight = position - low
    return sorted_values[low] * (1 - weight) + sorted_values[high] * weight


@dataclass(frozen=True)
class Distribution:
    count: int
    p50: float
    p90: float
    p99: float
    max: float
    mean: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Distribution:
        ordered = sorted(values)
        if not ordered:
            return cls(0, math.nan, math.nan, math.nan, math.nan, math.nan)
        return cls(
            count=len(ordered),
            p50=percentile(ordered, 0.50),
            p90=percentile(ordered, 0.90),
            p99=percentile(ordered, 0.99),
            max=ordered[-1],
            mean=sum(ordered) / len(ordered),
        )


def _deltas(steps: Iterable[StepTimes], start: str, end: str) -> list[float]:
    values = []
    for times in steps:
        begin, finish = getattr(times, start), getattr(times, end)
        if begin is not None and finish is not None:
            values.append(finish - begin)
    return values


@dataclass(frozen=True)
class SideSummary:
    submitted: int
    succeeded: int
    failed: int
    unfinished: int
    extra_pods: int  # Pods beyond one per step
    pod_creation: Distribution  # owner created -> first Pod seen
    owner_terminal: Distribution  # Pod finished seen -> owner terminal seen
    end_to_end: Distribution  # owner created -> owner terminal seen
    # Where the time between goes, p50 of each leg: scheduler, node agent, run, controller.
    pod_to_scheduled: Distribution
    scheduled_to_running: Distribution
    running_to_finished: Distribution
    drain_seconds: float  # first submission -> last owner terminal
    tail_seconds: float  # last submission -> last owner terminal
    throughput_per_second: float  # finished steps / drain_seconds

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def summarize(timeline: Timeline) -> SideSummary:
    steps = list(timeline.steps.values())
    submitted = [t.submitted for t in steps if t.submitted is not None]
    terminal = [t.owner_terminal for t in steps if t.owner_terminal is not None]
    succeeded = sum(1 for t in steps if t.outcome == "Succeeded")
    finished = len(terminal)
    if submitted and terminal:
        drain = max(terminal) - min(submitted)
        tail = max(terminal) - max(submitted)
    else:
        drain = tail = math.nan
    return SideSummary(
        submitted=len(submitted),
        succeeded=succeeded,
        failed=finished - succeeded,
        unfinished=len(submitted) - finished,
        extra_pods=sum(max(0, t.pods - 1) for t in steps),
        pod_creation=Distribution.of(_deltas(steps, "created", "pod_seen")),
        owner_terminal=Distribution.of(_deltas(steps, "pod_terminal", "owner_terminal")),
        end_to_end=Distribution.of(_deltas(steps, "created", "owner_terminal")),
        pod_to_scheduled=Distribution.of(_deltas(steps, "pod_seen", "pod_scheduled")),
        scheduled_to_running=Distribution.of(_deltas(steps, "pod_scheduled", "pod_running")),
        running_to_finished=Distribution.of(_deltas(steps, "pod_running", "pod_terminal")),
        drain_seconds=drain,
        tail_seconds=tail,
        throughput_per_second=finished / drain if drain and drain > 0 else math.nan,
    )


def latencies(timeline: Timeline, start: str, end: str) -> list[float]:
    """The raw latencies between two milestones, for plots."""
    return sorted(_deltas(timeline.steps.values(), start, end))
