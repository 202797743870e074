"""Durations on the command line, written as kubectl takes them: 30s, 5m, 1h30m, 2h, 1.5s."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds of ``text`` (a bare number is seconds); raises ValueError with what is wrong."""
    stripped = text.strip()
    try:
        return _non_negative(float(stripped), text)
    except ValueError:
        pass
    parts = _PART.findall(stripped)
    if not parts or "".join(number + unit for number, unit in parts) != stripped:
        raise ValueError(f"invalid duration {text!r}: use e.g. 30s, 5m, 1h30m")
    return _non_negative(sum(float(n) * _UNIT_SECONDS[u] for n, u in parts), text)


def _non_negative(seconds: float, text: str) -> float:
    if seconds < 0:
        raise ValueError(f"invalid duration {text!r}: it must not be negative")
    return seconds
