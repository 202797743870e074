"""Typed errors of the steprun client, and the mapping from API server responses to them.

Every error a caller can act on has its own class; all derive from :class:`StepRunError`, so
``except StepRunError`` catches everything the client raises on purpose.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from steprun.api.models import StepRun
from steprun.kube.errors import KubeError, NotFound


class StepRunError(Exception):
    """Base class of every error the client raises."""

    def __init__(self, message: str, *, steprun: StepRun | None = None) -> None:
        super().__init__(message)
        self.message = message
        # The StepRun as last seen, when the error concerns one that exists.
        self.steprun = steprun


class StepRunNotFound(StepRunError):
    def __init__(self, name: str, namespace: str) -> None:
        super().__init__(f'steprun "{name}" not found in namespace "{namespace}"')
        self.name = name
        self.namespace = namespace


class StepRunRejected(StepRunError):
    """The step reached phase Rejected: the operator refused to run it (no Pod was created)."""

    def __init__(self, steprun: StepRun) -> None:
        self.reason = steprun.status.reason or "Rejected"
        detail = steprun.status.message or "no message"
        super().__init__(
            f'steprun "{steprun.name}" was rejected ({self.reason}): {detail}', steprun=steprun
        )
        # The StepRun's own status message, unprefixed, e.g. to show it to the step's author.
        self.message = steprun.status.message or ""


class StepRunConflict(StepRunError):
    """A StepRun of that name exists with a different spec, so submitting it again is refused."""

    def __init__(self, existing: StepRun) -> None:
        super().__init__(
            f'steprun "{existing.name}" already exists in namespace "{existing.namespace}" '
            "with a different spec",
            steprun=existing,
        )


class WaitTimeout(StepRunError):
    """The step did not reach a terminal phase in time. The step itself keeps running."""

    def __init__(
        self, name: str, namespace: str, timeout: float, steprun: StepRun | None = None
    ) -> None:
        phase = steprun.status.phase if steprun is not None else None
        super().__init__(
            f'steprun "{name}" in namespace "{namespace}" did not finish within {timeout:g}s'
            + (f" (phase {phase})" if phase else ""),
            steprun=steprun,
        )
        self.name = name
        self.namespace = namespace
        self.timeout = timeout


class ApiUnreachable(StepRunError):
    """The API server could not be reached, or kept failing (5xx, 429), after retries."""


@dataclass(frozen=True)
class FieldCause:
    """One field the API server refused, as listed in a 422 response's details.causes."""

    field: str
    message: str


class InvalidStepRun(StepRunError):
    """The API server refused the StepRun (schema or validation rules); ``message`` says why."""

    def __init__(self, message: str, causes: tuple[FieldCause, ...] = ()) -> None:
        super().__init__(message)
        self.causes = causes


class ApiError(StepRunError):
    """Any other refusal by the API server (e.g. 401 Unauthorized, 403 Forbidden)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"API server answered {status}: {message}")
        self.status = status


def field_causes(body: Mapping[str, Any]) -> tuple[FieldCause, ...]:
    """The field causes of a ``kind: Status`` error body (``details.causes``)."""
    details = body.get("details")
    raw_causes = details.get("causes") if isinstance(details, dict) else None
    return tuple(
        FieldCause(field=str(c.get("field", "")), message=str(c.get("message", "")))
        for c in raw_causes or []
        if isinstance(c, dict)
    )


def schema_causes(error: ValidationError, prefix: str = "spec") -> tuple[FieldCause, ...]:
    """The models' refusal of a document, field by field in kubectl's words (the field path as
    the API server spells it, ``unknown field``, ``Required value``, ``Invalid value``)."""
    causes = []
    for problem in error.errors():
        # Union members and validator wrappers appear in the location; they are not fields.
        parts = [str(p) for p in problem["loc"] if not re.search(r"[\[(]", str(p))]
        field = prefix
        for part in parts:
            field += f"[{part}]" if part.isdigit() else f".{part}" if field else part
        kind = problem["type"]
        if kind == "extra_forbidden":
            message = f'unknown field "{field}"'
        elif kind == "missing":
            message = "Required value"
        else:
            shown = json.dumps(problem.get("input"), default=str)
            message = f"Invalid value: {shown}: {problem['msg']}"
        causes.append(FieldCause(field=field, message=message))
    return tuple(causes)


def invalid_spec(error: ValidationError, prefix: str = "spec") -> InvalidStepRun:
    """The client's error for a spec its models refuse before anything is sent."""
    causes = schema_causes(error, prefix)
    return InvalidStepRun(f"invalid StepRun: {causes_text(causes)}", causes)


def causes_text(causes: Iterable[FieldCause]) -> str:
    """Field causes on one line: how the CLI, the client and the operator say a refusal."""
    return "; ".join(f"{c.field}: {c.message}" for c in causes)


def error_for(error: KubeError, *, name: str | None, namespace: str) -> StepRunError:
    """The client's error for a refusal of the access layer concerning the StepRun ``name``.

    ``name`` is None for collection requests (create with generateName, list), where a 404 means
    the resource type itself is missing: the CRD is not installed.
    """
    if isinstance(error, NotFound):
        if name is None:
            return ApiError(
                404,
                error.message or "the StepRun resource type is not installed (is the CRD applied?)",
            )
        return StepRunNotFound(name, namespace)
    if error.status in (400, 422):
        return InvalidStepRun(
            error.message or "the API server refused the StepRun", field_causes(error.body)
        )
    if error.transient:
        return ApiUnreachable(
            f"API server kept failing ({error.status or error.reason}): "
            f"{error.message or 'no message'}"
        )
    return ApiError(error.status, error.message or "no message")
