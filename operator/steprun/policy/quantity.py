"""Kubernetes resource quantities ("100m", "512Mi", "1e3", 2) as exact numbers.

Quantities are compared when a SandboxPolicy bounds a step's resources, so the parse must be
exact: floats would make "0.1" and "100m" differ. The grammar is the one of
``k8s.io/apimachinery/pkg/api/resource``::

    quantity ::= signedNumber suffix
    suffix   ::= binarySI | decimalExponent | decimalSI
    binarySI ::= Ki | Mi | Gi | Ti | Pi | Ei
    decimalSI ::= m | "" | k | M | G | T | P | E
    decimalExponent ::= ("e" | "E") signedInteger

Written here because the client library the operator uses (kubernetes_asyncio) has no quantity
parser, and the one in the blocking ``kubernetes`` package would mean a second client stack.
"""

from __future__ import annotations

import re
from fractions import Fraction

_BINARY_SUFFIXES = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_DECIMAL_SUFFIXES = {
    "m": Fraction(1, 1000),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
# "1E" is one exa, "1E3" is one thousand: an exponent is an E followed by a signed integer.
_QUANTITY = re.compile(
    r"""
    (?P<number>[+-]?(?:\d+\.?\d*|\.\d+))
    (?:
        (?P<exponent>[eE][+-]?\d+)
      | (?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)
    )?
    """,
    re.VERBOSE | re.ASCII,
)
# Bounds the exponent so "1e999999999" cannot make an astronomically large Fraction.
_MAX_EXPONENT = 100


def parse_quantity(value: int | str) -> Fraction:
    """The exact value of a quantity, in base units (cores, bytes, ...).

    Raises ValueError naming the value when it is not a Kubernetes quantity.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (expected a string or integer)")
    if isinstance(value, int):
        return Fraction(value)
    match = _QUANTITY.fullmatch(value)
    if not match:
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 100m, 1, 512Mi, 1e3)")
    number = Fraction(match["number"])
    if match["exponent"]:
        exponent = int(match["exponent"][1:])
        if abs(exponent) > _MAX_EXPONENT:
            raise ValueError(f"{value!r} is not a usable quantity: exponent out of range")
        return number * Fraction(10) ** exponent
    suffix = match["suffix"] or ""
    if suffix in _BINARY_SUFFIXES:
        return number * _BINARY_SUFFIXES[suffix]
    return number * _DECIMAL_SUFFIXES[suffix]
