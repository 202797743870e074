"""kopf's private API that ``handlers/kopf_handlers.py`` imports and patches, checked loudly.

``see_listed_namespaces`` replaces ``process_discovered_namespace_event`` of kopf's
``_core.reactor.observation`` and calls ``revise_namespaces`` under ``insights.revised``. None
of that is kopf's public API, so pyproject.toml pins kopf to the minor version this was written
against, and these checks fail with what changed when the pin is moved, instead of a namespace
that silently goes unserved.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import re
import tomllib
from pathlib import Path

from kopf._cogs.structs import bodies, references
from kopf._core.reactor import observation

from steprun.handlers import kopf_handlers

REPO = Path(__file__).resolve().parents[2]
# The minor version whose private API is patched; pyproject.toml allows no other.
PATCHED_MINOR = (1, 45)


def keyword_parameters(function: object) -> set[str]:
    signature = inspect.signature(function)  # type: ignore[arg-type]
    return {
        name
        for name, parameter in signature.parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }


def test_the_installed_kopf_is_the_patched_minor_version() -> None:
    installed = importlib.metadata.version("kopf")
    assert tuple(int(part) for part in installed.split(".")[:2]) == PATCHED_MINOR, installed


def test_pyproject_pins_kopf_to_the_patched_minor_version() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    [requirement] = [d for d in project["dependencies"] if re.match(r"kopf\b", d)]
    major, minor = PATCHED_MINOR
    assert requirement.replace(" ", "") == f"kopf>={major}.{minor},<{major}.{minor + 1}"


def test_the_replaced_function_still_has_the_arguments_the_replacement_takes() -> None:
    original = kopf_handlers.KOPF_NAMESPACE_EVENT
    assert original.__module__ == observation.__name__
    assert {"raw_event", "namespaces", "insights"} <= keyword_parameters(original)


def test_kopf_looks_the_replaced_function_up_when_it_starts_the_namespace_watcher() -> None:
    # Patching the module attribute works only while the observer reads it as a global at call
    # time (not bound at import).
    assert "process_discovered_namespace_event" in observation.namespace_observer.__code__.co_names


def test_what_the_replacement_calls_is_still_there() -> None:
    assert {"raw_events", "insights", "namespaces"} <= keyword_parameters(
        observation.revise_namespaces
    )
    assert "revised" in references.Insights.__dataclass_fields__
    assert {"type", "object"} <= set(bodies.RawEvent.__annotations__)
