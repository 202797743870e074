"""How the CLI prints StepRuns: kubectl-style tables, YAML, JSON (pure)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import yaml

from steprun.api.models import StepRun
from steprun.timeutil import parse_time_or_none

OUTPUT_FORMATS = ("table", "wide", "yaml", "json")
TABLE_HEADERS = ("NAME", "PHASE", "MODE", "EXIT", "REASON", "AGE")
WIDE_HEADERS = ("ATTEMPT", "DURATION", "POD", "WORKFLOW", "RUN-ID", "STEP-ID")
_NONE = "<none>"


def enum_text(value: object) -> str:
    """An API enum field as text: a (str) member's value, or the string read for a value this
    version does not know (a phase a newer operator wrote)."""
    return str(value)


def format_age(seconds: float) -> str:
    """A duration the way ``kubectl get`` shows ages: 45s, 3m12s, 15m, 5h30m, 2d3h, 40d, 2y."""
    total = max(0, int(seconds))
    minutes, hours, days = total // 60, total // 3600, total // 86400
    if total < 120:
        return f"{total}s"
    if minutes < 10:
        rest = total % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        rest = hours % 24
        return f"{days}d{rest}h" if rest else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    return f"{days // 365}y"


def steprun_row(
    sr: StepRun, now: datetime, *, with_namespace: bool = False, wide: bool = False
) -> list[str]:
    status = sr.status
    created = parse_time_or_none(sr.metadata.creation_timestamp)
    age = format_age((now - created).total_seconds()) if created else _NONE
    exit_code = "" if status.exit_code is None else str(status.exit_code)
    row = [
        sr.name,
        enum_text(status.phase or "Pending"),
        enum_text(sr.spec.mode),
        exit_code,
        status.reason or "",
        age,
    ]
    if wide:
        row += _wide_cells(sr, now)
    return [sr.namespace, *row] if with_namespace else row


def _wide_cells(sr: StepRun, now: datetime) -> list[str]:
    status = sr.status
    started = parse_time_or_none(status.start_time)
    # A running step's duration grows until it completes.
    ended = parse_time_or_none(status.completion_time) or now
    duration = format_age((ended - started).total_seconds()) if started else ""
    workflow = sr.spec.context.workflow
    return [
        "" if status.attempt is None else str(status.attempt),
        duration,
        status.pod_name or "",
        (workflow.name if workflow else None) or "",
        (workflow.run_id if workflow else None) or "",
        (workflow.step_id if workflow else None) or "",
    ]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by three spaces, like kubectl; no trailing blanks."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [
        "   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [list(headers), *rows]
    ]
    return "\n".join(lines) + "\n"


def steprun_table(
    steprun_list: Sequence[StepRun],
    now: datetime,
    *,
    with_namespace: bool = False,
    wide: bool = False,
) -> str:
    headers = (
        (("NAMESPACE",) if with_namespace else ()) + TABLE_HEADERS + (WIDE_HEADERS if wide else ())
    )
    rows = [steprun_row(sr, now, with_namespace=with_namespace, wide=wide) for sr in steprun_list]
    return format_table(headers, rows)


def dump(document: Any, output: str) -> str:
    if output == "json":
        return json.dumps(document, indent=2, sort_keys=False) + "\n"
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False)


def dump_all_yaml(documents: Sequence[Any]) -> str:
    """A multi-document YAML stream, the format ``kubectl apply -f`` reads."""
    return yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=False)


def served_list_document(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Objects as served, as one ``kind: List`` document (each item with its apiVersion/kind)."""
    from steprun.api.models import API_VERSION

    return {
        "apiVersion": "v1",
        "kind": "List",
        "items": [{"apiVersion": API_VERSION, "kind": "StepRun", **item} for item in items],
        "metadata": {"resourceVersion": ""},
    }


def format_objects(
    items: Sequence[dict[str, Any]],
    output: str,
    now: datetime,
    *,
    single: bool = False,
    with_namespace: bool = False,
    no_headers: bool = False,
) -> str:
    """Served StepRuns in an output format of ``-o`` (table, wide, name, yaml, json,
    jsonpath=TEMPLATE); ``single``: one object asked by name, printed as itself, not a List."""
    from steprun.cli import jsonpath

    if output.startswith("jsonpath="):
        document: Any = items[0] if single and len(items) == 1 else served_list_document(items)
        text = jsonpath.render(output[len("jsonpath=") :], document)
        return text
    if output == "name":
        return "".join(f"{item['metadata']['name']}\n" for item in items)
    if output in ("yaml", "json"):
        document = items[0] if single and len(items) == 1 else served_list_document(items)
        return dump(document, output)
    table = steprun_table(
        [StepRun.from_body(item) for item in items],
        now,
        with_namespace=with_namespace,
        wide=output == "wide",
    )
    return "".join(table.splitlines(keepends=True)[1:]) if no_headers else table
