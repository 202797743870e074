"""Masking secret values in text that comes from a step's Pod (pure).

A step may print a secret it was given into its output file or exit message; the operator
copies such text into status (message, attempts), Events and its own log lines, which more
people can read than the Secret. Every value is masked, and so are its base64 forms (a Secret's
data as the API returns it) so that a step echoing what it read from the API is masked too.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Any

# Values this short would garble messages when masked and reveal little when not.
MIN_REDACTED_LENGTH = 4
REDACTED = "***"


def secret_values(data: Mapping[str, str]) -> list[str]:
    """The values to mask for a Secret's ``data`` (base64, as the API returns it)."""
    values: set[str] = set()
    for encoded in data.values():
        values.add(encoded)
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        for text in (raw.decode("utf-8", "replace"), raw.decode("latin-1")):
            values.add(text)
            # A value read from a file usually ends with a newline the step does not print.
            values.add(text.strip())
        values.add(base64.b64encode(raw.strip()).decode())
    return sorted(v for v in values if len(v) >= MIN_REDACTED_LENGTH)


def redact(text: str, values: Iterable[str]) -> str:
    # Longest first, so a value containing another is masked whole.
    for value in sorted(set(values), key=len, reverse=True):
        if len(value) >= MIN_REDACTED_LENGTH:
            text = text.replace(value, REDACTED)
    return text


def redact_json(value: Any, values: Iterable[str]) -> Any:
    """A JSON document (a step's outputs) with every string, keys included, masked."""
    values = list(values)
    if isinstance(value, str):
        return redact(value, values)
    if isinstance(value, list):
        return [redact_json(v, values) for v in value]
    if isinstance(value, dict):
        return {redact(str(k), values): redact_json(v, values) for k, v in value.items()}
    return value
