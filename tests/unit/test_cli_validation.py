"""`steprun render --validate`: the CRD's CEL rules and the name rules, applied before render.

tests/cluster/test_cli_e2e.py sends the same refused cases to a real API server and checks
that it refuses each of them too, for the same field."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from steprun.cli import exit_codes
from steprun.cli.main import main
from steprun.cli.validation import escape_property, steprun_problems

# (id, StepRun document, the fields the API server refuses): shared with the cluster test.
REFUSED: list[tuple[str, dict[str, Any], set[str]]] = [
    (
        "reserved-env",
        {"metadata": {"name": "e"}, "spec": {"image": "b", "env": {"STEPRUN_NAME": "x"}}},
        {"spec.env"},
    ),
    (
        "env-name",
        {"metadata": {"name": "e"}, "spec": {"image": "b", "context": {"env": {"9lives": "x"}}}},
        {"spec.context.env"},
    ),
    (
        "reserved-secret-env",
        {
            "metadata": {"name": "s"},
            "spec": {
                "image": "b",
                "context": {
                    "secrets": [
                        {"name": "STEPRUN_TOKEN", "secretKeyRef": {"name": "a", "key": "b"}}
                    ]
                },
            },
        },
        {"spec.context.secrets[0].name"},
    ),
    (
        "bad-quantity",
        {
            "metadata": {"name": "q"},
            "spec": {"image": "b", "resources": {"limits": {"cpu": "lots"}}},
        },
        {"spec.resources.limits"},
    ),
    ("bad-name", {"metadata": {"name": "Not_A_Name"}, "spec": {"image": "b"}}, {"metadata.name"}),
    (
        "script-and-command",
        {"metadata": {"name": "c"}, "spec": {"image": "b", "script": "x", "command": ["sh"]}},
        {"spec.script"},
    ),
    ("no-image", {"metadata": {"name": "i"}, "spec": {"script": "x"}}, {"spec.image"}),
    (
        "sandbox-with-image",
        {
            "metadata": {"name": "x"},
            "spec": {"mode": "sandbox", "image": "b", "sandbox": {"plugin": "p"}},
        },
        {"spec.image"},
    ),
]
ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    (
        "full",
        {
            "metadata": {"name": "build-42.lint"},
            "spec": {
                "image": "b",
                "script": "make",
                "env": {"CI": "1"},
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": 1}},
                "context": {
                    "env": {"_X": "1"},
                    "secrets": [
                        {
                            "name": "STEPRUN_F",
                            "secretKeyRef": {"name": "a", "key": "b"},
                            "as": "file",
                        }
                    ],
                },
            },
        },
    ),
    ("generate-name", {"metadata": {"generateName": "lint-"}, "spec": {"image": "b"}}),
]


@pytest.mark.parametrize(
    ("document", "fields"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_refused_documents_name_the_field(document: dict[str, Any], fields: set[str]) -> None:
    assert {p.field for p in steprun_problems(document)} == fields


@pytest.mark.parametrize("document", [c[1] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_accepted_documents_have_no_problem(document: dict[str, Any]) -> None:
    assert steprun_problems(document) == []


def test_property_names_are_escaped_like_the_api_server() -> None:
    assert escape_property("as") == "__as__"
    assert escape_property("a.b-c/d") == "a__dot__b__dash__c__slash__d"
    assert escape_property("x__y") == "x__underscores__y"


def test_render_validate_prints_each_problem_and_exits_2(tmp_path: Path) -> None:
    manifest = tmp_path / "step.yaml"
    manifest.write_text(
        "kind: StepRun\nmetadata: {name: Bad}\nspec: {image: b, env: {STEPRUN_X: '1'}}\n"
    )
    err = io.StringIO()
    code = main(["render", "-f", str(manifest), "--validate"], stdout=io.StringIO(), stderr=err)
    assert code == exit_codes.USAGE
    assert "  metadata.name: 'Bad' is not a valid name" in err.getvalue()
    assert "  spec.env: spec.env keys must not start with STEPRUN_" in err.getvalue()
    # Without --validate the same file renders: the pydantic models accept it.
    assert main(["render", "-f", str(manifest)], stdout=io.StringIO()) == 0
