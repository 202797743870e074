"""When each step reached each milestone, as seen by the benchmark's watches (pure).

Every time is ``time.monotonic()`` in the benchmark process at the moment a watch event was
read (or a create call returned), so both sides are timed by the same clock through the same
API server. API timestamps (creationTimestamp and friends) have a resolution of one second,
too coarse for sub-second latencies; they are not used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from steprun.api.models import is_terminal_phase

POD_TERMINAL = frozenset({"Succeeded", "Failed"})


@dataclass
class StepTimes:
    submitted: float | None = None  # the create call returned
    owner_seen: float | None = None  # first watch event of the StepRun or Job
    pod_seen: float | None = None  # first watch event of its (first) Pod
    pod_scheduled: float | None = None  # the Pod was bound to a node
    pod_running: float | None = None  # the Pod's phase became Running (or it ended at once)
    pod_terminal: float | None = None  # the Pod showed its containers ended (see pod_finished)
    owner_terminal: float | None = None  # the StepRun or Job became terminal
    outcome: str | None = None  # Succeeded, or how it failed
    pods: int = 0  # Pods seen for this step (more than one would be a retry or a bug)

    @property
    def created(self) -> float | None:
        """The earliest sign the owner exists: its create call returned or a watch showed it.
        (Under load either can lag the other; the controller may already be at work.)"""
        known = [t for t in (self.submitted, self.owner_seen) if t is not None]
        return min(known) if known else None


def _first(current: float | None, now: float) -> float:
    return now if current is None else current


@dataclass
class Timeline:
    """The milestones of one side's steps, by step name."""

    steps: dict[str, StepTimes] = field(default_factory=dict)
    _pod_names: set[str] = field(default_factory=set)

    def step(self, name: str) -> StepTimes:
        return self.steps.setdefault(name, StepTimes())

    def submitted(self, name: str, now: float) -> None:
        times = self.step(name)
        times.submitted = _first(times.submitted, now)

    def owner_event(self, name: str, now: float, outcome: str | None) -> None:
        times = self.step(name)
        times.owner_seen = _first(times.owner_seen, now)
        if outcome is not None and times.owner_terminal is None:
            times.owner_terminal = now
            times.outcome = outcome

    def pod_event(self, owner: str, pod: str, now: float, progress: PodProgress) -> None:
        times = self.step(owner)
        if pod not in self._pod_names:
            self._pod_names.add(pod)
            times.pods += 1
        times.pod_seen = _first(times.pod_seen, now)
        if progress.scheduled:
            times.pod_scheduled = _first(times.pod_scheduled, now)
        if progress.running or progress.finished:
            times.pod_running = _first(times.pod_running, now)
        if progress.finished:
            times.pod_terminal = _first(times.pod_terminal, now)

    def finished(self) -> int:
        return sum(1 for t in self.steps.values() if t.owner_terminal is not None)


def steprun_outcome(body: Mapping[str, Any]) -> str | None:
    phase = (body.get("status") or {}).get("phase")
    return str(phase) if is_terminal_phase(phase) else None


def job_outcome(body: Mapping[str, Any]) -> str | None:
    """Complete counts as success, Failed as failure; nothing else ends a Job."""
    for condition in (body.get("status") or {}).get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return "Succeeded"
        if condition.get("type") == "Failed":
            return f"Failed ({condition.get('reason') or 'unknown'})"
    return None


def bare_pod_outcome(body: Mapping[str, Any]) -> str | None:
    """A Pod with no controller ends when it shows its containers ended."""
    if not pod_finished(body):
        return None
    phase = (body.get("status") or {}).get("phase")
    if phase == "Failed":
        return "Failed"
    containers = (body.get("status") or {}).get("containerStatuses") or []
    codes = [((c.get("state") or {}).get("terminated") or {}).get("exitCode") for c in containers]
    return "Succeeded" if phase == "Succeeded" or all(code == 0 for code in codes) else "Failed"


def pod_owner(body: Mapping[str, Any], kind: str) -> str | None:
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == kind and ref.get("controller"):
            return str(ref.get("name"))
    return None


@dataclass(frozen=True)
class PodProgress:
    scheduled: bool = False
    running: bool = False
    finished: bool = False


def pod_progress(body: Mapping[str, Any]) -> PodProgress:
    return PodProgress(
        scheduled=bool((body.get("spec") or {}).get("nodeName")),
        running=(body.get("status") or {}).get("phase") == "Running",
        finished=pod_finished(body),
    )


def pod_finished(body: Mapping[str, Any]) -> bool:
    """Whether the Pod shows that its step ended: a terminal phase, or every container in the
    terminated state. A real kubelet reports the containers' exit a moment before it moves the
    phase (after tearing the Pod down); the operator acts on the former, the Job controller on
    the latter, and the step is over at the former either way. On kwok both come together."""
    status = body.get("status") or {}
    if status.get("phase") in POD_TERMINAL:
        return True
    containers = status.get("containerStatuses") or []
    return bool(containers) and all("terminated" in (c.get("state") or {}) for c in containers)
