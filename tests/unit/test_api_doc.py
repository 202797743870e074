"""docs/api.md stays true to the CRDs: its examples are valid objects, and it names every field.

A field, phase, reason or permission added to the models without a word in the API reference
fails here; so does an example that names a field the models do not have.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from steprun.api import crdgen
from steprun.api.models import Permission, Phase, Reason, SandboxPolicy, StepRun

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "api.md").read_text()
MODELS = {"StepRun": StepRun, "SandboxPolicy": SandboxPolicy}
# Schemas the reference describes by their Kubernetes type rather than field by field.
KUBERNETES_TYPES = {"resources", "defaultResources", "podTemplate", "namespaceSelector"}
KUBERNETES_TYPES |= {"tolerations", "conditions", "admitted", "maxResources"}


def examples() -> list[dict[str, Any]]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC, flags=re.DOTALL)
    return [d for block in blocks for d in yaml.safe_load_all(block) if d and "kind" in d]


def field_names(schema: dict[str, Any], depth: int = 0) -> Iterator[str]:
    """The property names of ``schema``, three levels down (items of arrays included)."""
    properties = schema.get("properties") or (schema.get("items") or {}).get("properties") or {}
    for name, child in properties.items():
        yield name
        if depth < 3 and name not in KUBERNETES_TYPES:
            yield from field_names(child, depth + 1)


def crd_fields() -> list[tuple[str, str]]:
    found = []
    crds = {"StepRun": crdgen.steprun_crd(), "SandboxPolicy": crdgen.sandboxpolicy_crd()}
    for kind, crd in crds.items():
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
        for part in ("spec", "status"):
            found += [(kind, name) for name in field_names(schema.get(part) or {})]
    return sorted(set(found))


@pytest.mark.parametrize(
    "document", examples(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}"
)
def test_every_example_is_a_valid_object(document: dict[str, Any]) -> None:
    MODELS[document["kind"]].model_validate(document)


def test_the_examples_cover_both_kinds() -> None:
    assert {d["kind"] for d in examples()} == set(MODELS)


@pytest.mark.parametrize(("kind", "name"), crd_fields(), ids=lambda v: str(v))
def test_every_field_of_the_crds_is_named(kind: str, name: str) -> None:
    assert re.search(rf"\b{re.escape(name)}\b", DOC), f"{kind} field {name} is not in docs/api.md"


@pytest.mark.parametrize(
    "value", [*Phase, *Reason, *Permission], ids=lambda v: f"{type(v).__name__}.{v}"
)
def test_every_phase_reason_and_permission_is_named(value: str) -> None:
    assert f"`{value}`" in DOC or f" {value}" in DOC, f"{value} is not in docs/api.md"
