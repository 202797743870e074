"""The outcome of a finished step, as an engine consumes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from steprun.api.models import AttemptStatus, Failure, Phase, StepRun, is_terminal_phase
from steprun.client.errors import StepRunRejected


@dataclass(frozen=True)
class StepResult:
    """What a step ended with. ``succeeded`` is True only for phase Succeeded."""

    name: str
    namespace: str
    phase: Phase
    reason: str | None
    message: str | None
    exit_code: int | None
    outputs: dict[str, Any] = field(default_factory=dict)
    attempts: tuple[AttemptStatus, ...] = ()
    # Why it failed, for branching without reading the message: failure.category is Step
    # (report it), Platform (the cluster's fault: worth running again) or Config (fix the
    # step or the policy). None for a step that succeeded or was cancelled.
    failure: Failure | None = None

    @property
    def succeeded(self) -> bool:
        return self.phase is Phase.SUCCEEDED


def is_terminal(steprun: StepRun) -> bool:
    phase = steprun.status.phase
    return is_terminal_phase(phase)


def build_result(steprun: StepRun) -> StepResult:
    """The result of a StepRun in a terminal phase."""
    status = steprun.status
    # A phase this version does not know is kept as a string, and is not terminal.
    if not isinstance(status.phase, Phase) or not status.phase.terminal:
        raise ValueError(
            f'steprun "{steprun.name}" is not finished (phase {status.phase or "unset"})'
        )
    return StepResult(
        name=steprun.name,
        namespace=steprun.namespace,
        phase=status.phase,
        reason=status.reason,
        message=status.message,
        exit_code=status.exit_code,
        outputs=dict(status.outputs or {}),
        attempts=tuple(status.attempts),
        failure=status.failure,
    )


def result_of(steprun: StepRun) -> StepResult:
    """The result of a finished StepRun; a rejected one raises StepRunRejected instead.

    A Failed, TimedOut or Cancelled step is a result, not an error: the engine decides what a
    failed step means for its workflow.
    """
    if steprun.status.phase == Phase.REJECTED:
        raise StepRunRejected(steprun)
    return build_result(steprun)
