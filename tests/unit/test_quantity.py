from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

import pytest

from steprun.policy.quantity import parse_quantity


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", Fraction(1)),
        (2, Fraction(2)),
        (0, Fraction(0)),
        ("0", Fraction(0)),
        ("100m", Fraction(1, 10)),
        ("1500m", Fraction(3, 2)),
        ("0.5", Fraction(1, 2)),
        (".5", Fraction(1, 2)),
        ("1.", Fraction(1)),
        ("+1", Fraction(1)),
        ("-1", Fraction(-1)),
        ("1k", Fraction(1000)),
        ("1M", Fraction(10**6)),
        ("1G", Fraction(10**9)),
        ("1T", Fraction(10**12)),
        ("1P", Fraction(10**15)),
        ("1E", Fraction(10**18)),
        ("1Ki", Fraction(1024)),
        ("512Mi", Fraction(512 * 2**20)),
        ("1Gi", Fraction(2**30)),
        ("1.5Gi", Fraction(3 * 2**29)),
        ("1Ti", Fraction(2**40)),
        ("1Pi", Fraction(2**50)),
        ("1Ei", Fraction(2**60)),
        ("1e3", Fraction(1000)),
        ("1E3", Fraction(1000)),
        ("1e+3", Fraction(1000)),
        ("1e-3", Fraction(1, 1000)),
        ("2.5e2", Fraction(250)),
    ],
)
def test_parses_exactly(text: int | str, expected: Fraction) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize(
    ("smaller", "larger"),
    [
        ("100m", "0.2"),
        ("999m", "1"),
        ("1G", "1Gi"),
        ("1000Mi", "1Gi"),
        ("1e3", "1Ki"),
        ("1023", "1Ki"),
        ("511Mi", "0.5Gi"),
    ],
)
def test_compares_across_suffixes(smaller: str, larger: str) -> None:
    assert parse_quantity(smaller) < parse_quantity(larger)


@pytest.mark.parametrize(
    ("a", "b"),
    [("0.1", "100m"), ("1", "1000m"), ("1Ki", "1024"), ("1k", "1e3"), ("0.5Gi", "512Mi")],
)
def test_equal_values_in_different_forms(a: str, b: str) -> None:
    assert parse_quantity(a) == parse_quantity(b)


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "abc",
        "Mi",
        "1K",  # only lowercase k is a suffix
        "1mi",
        "1ki",
        "1 Mi",
        " 1",
        "1 ",
        "1e",
        "1.2.3",
        "--1",
        "1Gi1",
        "0x10",
        "\u0661",  # a non-ASCII digit
        "1e999",
        1.5,
        True,
        None,
        [1],
    ],
)
def test_rejects_garbage_naming_the_value(garbage: Any) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(garbage))):
        parse_quantity(garbage)
