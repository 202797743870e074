"""One wording for what pydantic finds wrong, whoever reports it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from steprun.api.models import StepRunSpec
from steprun.api.problems import describe, field_problems


def error_of(spec: dict[str, Any]) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        StepRunSpec.model_validate(spec)
    return caught.value


@pytest.mark.parametrize(
    ("spec", "prefix", "expected"),
    [
        pytest.param(
            {"image": "x", "timeoutSeconds": "soon"},
            "",
            [
                (
                    "timeoutSeconds",
                    "Input should be a valid integer, unable to parse string as an integer",
                )
            ],
            id="top-level-field",
        ),
        pytest.param(
            {"image": "x", "context": {"inputs": []}},
            "spec",
            [("spec.context.inputs", "Input should be a valid dictionary")],
            id="nested-under-a-prefix",
        ),
        pytest.param(
            {"image": "x", "nope": 1},
            "spec",
            [("spec.nope", "Extra inputs are not permitted")],
            id="unknown-field",
        ),
    ],
)
def test_each_problem_is_its_field_path_and_message(
    spec: dict[str, Any], prefix: str, expected: list[tuple[str, str]]
) -> None:
    assert field_problems(error_of(spec), prefix=prefix) == expected


def test_problems_are_joined_on_one_line_and_may_be_capped() -> None:
    error = error_of({"image": "x", "timeoutSeconds": "soon", "nope": 1, "other": 2})
    assert describe(error, prefix="spec").count("; ") == 2
    assert describe(error, limit=1) == (
        "timeoutSeconds: Input should be a valid integer, unable to parse string as an integer"
    )
