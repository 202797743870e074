"""Each configuration's create → Pod latency at a glance: its arms side by side, the targets
drawn in, and a one-line verdict.

The targets are issue 31's: a StepRun's Pod is created at most 30 ms after a bare Pod's (p50),
and no later than the Job controller's (p50 and p99). Runs of one configuration are pooled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from bench.scenario import ScenarioResult
from bench.stats import percentile

# create → Pod a StepRun may add over a bare Pod, p50 (seconds).
OVER_BARE_PODS_TARGET = 0.030
ARMS = ("steprun", "job", "pod")


@dataclass(frozen=True)
class Latency:
    p50: float
    p99: float


@dataclass(frozen=True)
class Panel:
    configuration: str
    arms: dict[str, Latency]  # create → Pod, seconds, the configuration's runs pooled
    met: bool | None  # None: nothing to compare with
    verdict: str

    @property
    def p50_target(self) -> float | None:
        """The StepRun p50 the targets allow: bare Pods' plus 30 ms, at most the Job's."""
        limits = []
        if "pod" in self.arms:
            limits.append(self.arms["pod"].p50 + OVER_BARE_PODS_TARGET)
        if "job" in self.arms:
            limits.append(self.arms["job"].p50)
        known = [v for v in limits if not math.isnan(v)]
        return min(known) if known else None

    @property
    def p99_target(self) -> float | None:
        job = self.arms.get("job")
        return None if job is None or math.isnan(job.p99) else job.p99


def _pooled(runs: Sequence[ScenarioResult], arm: str) -> Latency | None:
    values = sorted(v for r in runs for v in r.latencies.get(arm, {}).get("pod_creation", []))
    if not values:
        return None
    return Latency(percentile(values, 0.50), percentile(values, 0.99))


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def verdict(configuration: str, arms: dict[str, Latency]) -> Panel:
    """Which targets the StepRun arm meets, in one line that quotes the numbers."""
    steprun = arms.get("steprun")
    if steprun is None:
        return Panel(configuration, arms, None, "not measured: no StepRun arm")
    checks: list[tuple[bool, str]] = []
    if (pods := arms.get("pod")) is not None:
        over = steprun.p50 - pods.p50
        checks.append(
            (
                over <= OVER_BARE_PODS_TARGET,
                f"p50 {'+' if over >= 0 else '-'}{_ms(abs(over))} "
                f"over bare Pods (target ≤ +{_ms(OVER_BARE_PODS_TARGET)})",
            )
        )
    if (job := arms.get("job")) is not None:
        checks.append((steprun.p50 <= job.p50, f"p50 {_ms(steprun.p50)} vs Job {_ms(job.p50)}"))
        checks.append((steprun.p99 <= job.p99, f"p99 {_ms(steprun.p99)} vs Job {_ms(job.p99)}"))
    if not checks:
        return Panel(configuration, arms, None, "not measured: no arm to compare with")
    met = all(ok for ok, _ in checks)
    parts = [f"{text} {'met' if ok else 'missed'}" for ok, text in checks]
    line = f"{'met' if met else '**missed**'}: " + "; ".join(parts)
    return Panel(configuration, arms, met, line)


def panels(groups: dict[str, list[ScenarioResult]]) -> list[Panel]:
    """One panel per configuration, in the order the configurations ran."""
    out = []
    for name, runs in groups.items():
        arms = {arm: lat for arm in ARMS if (lat := _pooled(runs, arm)) is not None}
        out.append(verdict(name, arms))
    return out


def glance(groups: dict[str, list[ScenarioResult]]) -> list[str]:
    """The Markdown lines: one verdict per configuration."""
    return [f"- {p.configuration}: {p.verdict}" for p in panels(groups)]
