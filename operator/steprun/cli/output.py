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
# The CRD's printer columns, so `steprun list` and `kubectl get sr` show the same table:
# (header, priority); priority 1 columns appear with -o wide, in the CRD's order
# (tests/unit/test_cli_output.py compares them with the generated CRD).
PRINTER_COLUMNS = (
    ("NAME", 0),
    ("PHASE", 0),
    ("MODE", 0),
    ("EXIT", 0),
    ("DURATION", 0),
    ("REASON", 1),
    ("POD", 1),
    ("QUEUE", 1),
    ("QUEUEWAIT", 1),
    ("AGE", 0),
)
TABLE_HEADERS = tuple(h for h, priority in PRINTER_COLUMNS if priority == 0)
# What -o wide adds after the CRD's columns.
WIDE_EXTRA_HEADERS = ("ATTEMPT", "WORKFLOW", "RUN-ID", "STEP-ID")
WIDE_HEADERS = tuple(h for h, _ in PRINTER_COLUMNS) + WIDE_EXTRA_HEADERS
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


def steprun_cells(sr: StepRun, now: datetime) -> dict[str, str]:
    """Every column's cell of one StepRun, by header."""
    status = sr.status
    created = parse_time_or_none(sr.metadata.creation_timestamp)
    workflow = sr.spec.context.workflow
    return {
        "NAMESPACE": sr.namespace,
        "NAME": sr.name,
        # Unset until the operator's first write about the Pod (README: shown as Pending).
        "PHASE": enum_text(status.phase or "Pending"),
        "MODE": enum_text(sr.spec.mode),
        "EXIT": "" if status.exit_code is None else str(status.exit_code),
        "DURATION": _duration(sr, now),
        "REASON": status.reason or "",
        "POD": status.pod_name or "",
        "QUEUE": status.queue.name if status.queue else "",
        "QUEUEWAIT": ""
        if status.queue is None or status.queue.wait_seconds is None
        else str(status.queue.wait_seconds),
        "AGE": format_age((now - created).total_seconds()) if created else _NONE,
        "ATTEMPT": "" if status.attempt is None else str(status.attempt),
        "WORKFLOW": (workflow.name if workflow else None) or "",
        "RUN-ID": (workflow.run_id if workflow else None) or "",
        "STEP-ID": (workflow.step_id if workflow else None) or "",
    }


def _duration(sr: StepRun, now: datetime) -> str:
    status = sr.status
    if status.duration:
        return status.duration
    started = parse_time_or_none(status.start_time)
    if started is None:
        return ""
    # A running step's duration grows until it completes.
    ended = parse_time_or_none(status.completion_time) or now
    return format_age((ended - started).total_seconds())


def table_headers(
    *, with_namespace: bool = False, wide: bool = False, label_columns: Sequence[str] = ()
) -> tuple[str, ...]:
    headers = WIDE_HEADERS if wide else TABLE_HEADERS
    return (
        (("NAMESPACE",) if with_namespace else ())
        + headers
        + tuple(label_column_header(k) for k in label_columns)
    )


def label_column_header(key: str) -> str:
    """kubectl's header of a -L column: the key's last path segment, upper-cased."""
    return key.rsplit("/", 1)[-1].upper()


def steprun_row(
    sr: StepRun,
    now: datetime,
    *,
    with_namespace: bool = False,
    wide: bool = False,
    label_columns: Sequence[str] = (),
    show_labels: bool = False,
) -> list[str]:
    cells = steprun_cells(sr, now)
    row = [cells[h] for h in table_headers(with_namespace=with_namespace, wide=wide)]
    labels = sr.metadata.labels or {}
    row += [labels.get(key, "") for key in label_columns]
    if show_labels:
        row.append(",".join(f"{k}={v}" for k, v in sorted(labels.items())) or _NONE)
    return row


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
    label_columns: Sequence[str] = (),
    show_labels: bool = False,
) -> str:
    headers = table_headers(with_namespace=with_namespace, wide=wide, label_columns=label_columns)
    headers += ("LABELS",) if show_labels else ()
    rows = [
        steprun_row(
            sr,
            now,
            with_namespace=with_namespace,
            wide=wide,
            label_columns=label_columns,
            show_labels=show_labels,
        )
        for sr in steprun_list
    ]
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
    label_columns: Sequence[str] = (),
    show_labels: bool = False,
) -> str:
    """Served StepRuns in an output format of ``-o`` (table, wide, name, yaml, json,
    jsonpath=TEMPLATE, custom-columns=SPEC); ``single``: one object asked by name, printed as
    itself, not a List."""
    from steprun.cli import jsonpath

    if output.startswith("jsonpath="):
        document: Any = items[0] if single and len(items) == 1 else served_list_document(items)
        text = jsonpath.render(output[len("jsonpath=") :], document)
        return text
    if output.startswith("custom-columns="):
        table = custom_columns_table(output[len("custom-columns=") :], items)
    elif output == "name":
        # kubectl's form, resource.group/name: what `kubectl delete`, `wait` and xargs take.
        return "".join(f"{NAME_PREFIX}{item['metadata']['name']}\n" for item in items)
    elif output in ("yaml", "json"):
        document = items[0] if single and len(items) == 1 else served_list_document(items)
        return dump(document, output)
    else:
        table = steprun_table(
            [StepRun.from_body(item) for item in items],
            now,
            with_namespace=with_namespace,
            wide=output == "wide",
            label_columns=label_columns,
            show_labels=show_labels,
        )
    return "".join(table.splitlines(keepends=True)[1:]) if no_headers else table


NAME_PREFIX = "steprun.steprun.dev/"


def parse_custom_columns(spec: str) -> list[tuple[str, str]]:
    """``HEADER:.json.path,...`` as kubectl's -o custom-columns reads it (ValueError if not)."""
    columns = []
    for part in spec.split(","):
        header, sep, path = part.partition(":")
        if not sep or not header or not path:
            raise ValueError(
                f"custom-columns expects HEADER:JSONPATH[,HEADER:JSONPATH], got {part!r}"
            )
        columns.append((header, path if path.startswith("{") else "{" + path + "}"))
    return columns


def custom_columns_table(spec: str, items: Sequence[dict[str, Any]]) -> str:
    from steprun.cli import jsonpath

    columns = parse_custom_columns(spec)
    rows = [[jsonpath.render(template, item) or _NONE for _, template in columns] for item in items]
    return format_table([h for h, _ in columns], rows)
