"""The wording of what pydantic found wrong with an object: one field path and message each.

The CLI, the client and the operator all say it the same way: ``spec.context.inputs: Input
should be a valid dictionary``, problems joined by ``; ``.
"""

from __future__ import annotations

from pydantic import ValidationError


def field_problems(error: ValidationError, *, prefix: str = "") -> list[tuple[str, str]]:
    """Each problem as (dotted field path under ``prefix``, message), in pydantic's order."""
    found = []
    for item in error.errors():
        path = ".".join(str(part) for part in (*filter(None, [prefix]), *item["loc"]))
        found.append((path, str(item["msg"])))
    return found


def describe(error: ValidationError, *, prefix: str = "", limit: int | None = None) -> str:
    """The problems as one line (the first ``limit`` of them, if given)."""
    listed = field_problems(error, prefix=prefix)[:limit]
    return "; ".join(f"{path}: {message}" if path else message for path, message in listed)
