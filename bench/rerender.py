"""Render a report again from its JSON, without running anything: the report's presentation
may change after the numbers were measured.

    python -m bench.rerender bench/results/2026-12-01-200.json [...]

Writes <stem>.md and its figures next to each JSON file (the JSON itself is left as it is), and
``latest.md`` too when it was a copy of that report.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any

from bench import report
from bench.scenario import ScenarioResult


def _load(kind: Any, value: Any) -> Any:
    """``value`` as read from JSON, turned back into ``kind`` (what ``report._plain`` wrote)."""
    origin = typing.get_origin(kind)
    if origin is typing.Union or origin is types.UnionType:
        options = [k for k in typing.get_args(kind) if k is not type(None)]
        return None if value is None else _load(options[0], value)
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        hints = typing.get_type_hints(kind)
        fields = {f.name for f in dataclasses.fields(kind) if f.init}
        return kind(**{k: _load(hints[k], v) for k, v in value.items() if k in fields})
    if origin is dict:
        _, item = typing.get_args(kind)
        return {k: _load(item, v) for k, v in value.items()}
    if origin is list:
        (item,) = typing.get_args(kind)
        return [_load(item, v) for v in value]
    if origin is tuple:
        args = typing.get_args(kind)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_load(args[0], v) for v in value)
        return tuple(_load(a, v) for a, v in zip(args, value, strict=True))
    if kind is float:
        return math.nan if value is None else float(value)
    return value


def results_from_json(text: str) -> tuple[list[ScenarioResult], dict[str, Any], dict[str, Any]]:
    document = json.loads(text)
    results = [_load(ScenarioResult, scenario) for scenario in document["scenarios"]]
    return results, document["machine"], document["settings"]


def rerender(path: Path) -> Path:
    results, machine, settings = results_from_json(path.read_text())
    size = results[0].spec.size if results else 0
    markdown = path.with_suffix(".md")
    latest = path.with_name("latest.md")
    was_latest = (
        markdown.exists() and latest.exists() and latest.read_bytes() == markdown.read_bytes()
    )
    png = path.with_suffix(".png")
    report.plot(results, png)
    markdown.write_text(report.render(size, results, machine, settings, png.name))
    if was_latest:
        latest.write_bytes(markdown.read_bytes())
    return markdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json", nargs="+", type=Path)
    for path in parser.parse_args().json:
        print(rerender(path))


if __name__ == "__main__":
    main()
