from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from steprun.api.models import DNS_LABEL_PATTERN, LABEL_VALUE_PATTERN, StepRun
from steprun.render.names import (
    LABEL_ATTEMPT,
    LABEL_COMPONENT,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_RUN,
    LABEL_STEP,
    LABEL_UID,
    LABEL_WORKFLOW,
    child_labels,
    context_name,
    is_reserved_key,
    label_selector_for,
    name_label_value,
    network_policy_name,
    owner_reference,
    pod_labels,
    pod_name,
)

DNS_LABEL = re.compile(DNS_LABEL_PATTERN)
LABEL_VALUE = re.compile(LABEL_VALUE_PATTERN)

LONG = "a" * 60
DOTTED = "release.v1.build"
MAX_SUBDOMAIN = ".".join(["x" * 63, "y" * 63, "z" * 63, "w" * 61])  # 253 chars


def steprun(name: str = "build-42-lint", uid: str = "uid-1", **context: Any) -> StepRun:
    return StepRun.from_body(
        {
            "apiVersion": "steprun.dev/v1alpha1",
            "kind": "StepRun",
            "metadata": {"name": name, "namespace": "ci", "uid": uid},
            "spec": {"image": "busybox:1.36", "context": context},
        }
    )


@pytest.mark.parametrize(
    ("name", "attempt", "expected"),
    [
        ("build-42-lint", 1, "build-42-lint-1"),
        ("build-42-lint", 12, "build-42-lint-12"),
        ("a" * 61, 1, "a" * 61 + "-1"),  # exactly 63: kept as is
    ],
)
def test_pod_name_plain(name: str, attempt: int, expected: str) -> None:
    assert pod_name(name, attempt) == expected


def test_pod_name_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError, match="start at 1"):
        pod_name("x", 0)


NAME_FUNCTIONS: list[Callable[[str], str]] = [
    lambda n: pod_name(n, 1),
    lambda n: pod_name(n, 20),
    context_name,
    network_policy_name,
]


@pytest.mark.parametrize("name", ["a", LONG, "a" * 62, DOTTED, MAX_SUBDOMAIN, "a." * 100 + "b"])
@pytest.mark.parametrize("make", NAME_FUNCTIONS)
def test_child_names_are_dns_labels(make: Callable[[str], str], name: str) -> None:
    result = make(name)
    assert len(result) <= 63
    assert DNS_LABEL.match(result), result
    assert make(name) == result  # deterministic


@pytest.mark.parametrize("make", NAME_FUNCTIONS)
def test_truncated_names_stay_unique(make: Callable[[str], str]) -> None:
    # Names sharing their first 200 characters must still get distinct children.
    names = [f"{'p' * 200}-{i}" for i in range(200)]
    assert len({make(n) for n in names}) == len(names)


@pytest.mark.parametrize("make", NAME_FUNCTIONS)
def test_dotted_name_does_not_collide_with_dashed_one(make: Callable[[str], str]) -> None:
    assert make("a.b") != make("a-b")


def test_truncated_pod_name_keeps_prefix_and_attempt() -> None:
    name = "nightly-integration-" + "x" * 80
    result = pod_name(name, 3)
    assert result.startswith("nightly-integration-")
    assert result.endswith("-3")
    assert pod_name(name, 3) != pod_name(name, 4)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("build-42-lint", "build-42-lint-context"),
        (DOTTED, None),  # dots: hashed form
    ],
)
def test_context_name(name: str, expected: str | None) -> None:
    result = context_name(name)
    if expected is not None:
        assert result == expected
    assert result.endswith("-context")
    assert network_policy_name(name).endswith("-sandbox")


@pytest.mark.parametrize("name", ["short", "a" * 63, "b" * 64, MAX_SUBDOMAIN])
def test_name_label_value_is_a_valid_label_value(name: str) -> None:
    value = name_label_value(name)
    assert len(value) <= 63
    assert LABEL_VALUE.match(value)
    if len(name) <= 63:
        assert value == name


def test_name_label_values_of_long_names_differ() -> None:
    assert name_label_value("c" * 70 + "1") != name_label_value("c" * 70 + "2")


@pytest.mark.parametrize(
    ("workflow", "expected_extra"),
    [
        (None, {}),
        ({"name": "build"}, {LABEL_WORKFLOW: "build"}),
        (
            {"name": "build", "runId": "42", "stepId": "lint"},
            {LABEL_WORKFLOW: "build", LABEL_RUN: "42", LABEL_STEP: "lint"},
        ),
        ({"runId": "42"}, {LABEL_RUN: "42"}),
    ],
)
def test_child_labels(workflow: dict[str, str] | None, expected_extra: dict[str, str]) -> None:
    sr = steprun(workflow=workflow) if workflow is not None else steprun()
    assert child_labels(sr) == {
        LABEL_MANAGED_BY: "steprun",
        LABEL_NAME: "build-42-lint",
        LABEL_UID: "uid-1",
        **expected_extra,
    }


def test_child_labels_without_uid_omit_the_uid_label() -> None:
    assert LABEL_UID not in child_labels(steprun(uid=""))


def test_pod_labels_add_attempt_and_component() -> None:
    labels = pod_labels(steprun(), 2)
    assert labels[LABEL_ATTEMPT] == "2"
    assert labels[LABEL_COMPONENT] == "pod"
    assert child_labels(steprun()).items() <= labels.items()


def test_owner_reference() -> None:
    assert owner_reference(steprun()) == {
        "apiVersion": "steprun.dev/v1alpha1",
        "kind": "StepRun",
        "name": "build-42-lint",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "build-42-lint",
            "steprun.dev/name=build-42-lint,app.kubernetes.io/managed-by=steprun",
        ),
        (
            MAX_SUBDOMAIN,
            f"steprun.dev/name={name_label_value(MAX_SUBDOMAIN)},app.kubernetes.io/managed-by=steprun",
        ),
    ],
)
def test_label_selector_matches_child_labels(name: str, expected: str) -> None:
    selector = label_selector_for(name)
    assert selector == expected
    labels = child_labels(steprun(name=name))
    for term in selector.split(","):
        key, value = term.split("=")
        assert labels[key] == value


@pytest.mark.parametrize(
    ("key", "reserved"),
    [
        ("steprun.dev/name", True),
        ("steprun.dev/sandbox", True),
        ("app.kubernetes.io/managed-by", True),
        ("app.kubernetes.io/name", False),
        ("team", False),
        ("example.com/steprun.dev", False),
    ],
)
def test_is_reserved_key(key: str, reserved: bool) -> None:
    assert is_reserved_key(key) is reserved
