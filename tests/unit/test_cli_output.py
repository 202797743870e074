"""Tables, documents and exit codes of the steprun command."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from steprun.api.models import StepRun
from steprun.cli import exit_codes
from steprun.cli.output import (
    format_age,
    format_objects,
    format_table,
    steprun_table,
)
from steprun.timeutil import parse_time_or_none

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def make(name: str, *, age: timedelta | None = None, **status: Any) -> StepRun:
    created = (NOW - age).strftime("%Y-%m-%dT%H:%M:%SZ") if age is not None else None
    metadata: dict[str, Any] = {"name": name, "namespace": "ci"}
    if created:
        metadata["creationTimestamp"] = created
    return StepRun.from_body({"metadata": metadata, "spec": {"image": "b"}, "status": status})


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (-3, "0s"),
        (0, "0s"),
        (59, "59s"),
        (119, "119s"),
        (120, "2m"),
        (125, "2m5s"),
        (599, "9m59s"),
        (600, "10m"),
        (3 * 3600 - 1, "179m"),
        (3 * 3600, "3h"),
        (5 * 3600 + 30 * 60, "5h30m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (2 * 86400 + 3 * 3600, "2d3h"),
        (7 * 86400, "7d"),
        (40 * 86400, "40d"),
        (3 * 365 * 86400, "3y"),
    ],
)
def test_ages_read_like_kubectl(seconds: float, expected: str) -> None:
    assert format_age(seconds) == expected


def test_timestamps() -> None:
    assert parse_time_or_none("2024-05-01T10:00:00Z") == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert parse_time_or_none("2024-05-01T10:00:00") == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert parse_time_or_none("garbage") is None and parse_time_or_none(None) is None


def test_table_aligns_columns_without_trailing_blanks() -> None:
    text = format_table(("A", "LONGER"), [["x", ""], ["yyyy", "z"]])
    assert text == "A      LONGER\nx\nyyyy   z\n"


def test_steprun_table() -> None:
    rows = [
        make(
            "build-1", age=timedelta(seconds=30), phase="Succeeded", reason="Completed", exitCode=0
        ),
        make("lint", age=timedelta(minutes=3), phase="Failed", reason="Error", exitCode=2),
        make("new"),
    ]
    rows[0].status.duration = "12s"
    lines = steprun_table(rows, NOW).splitlines()
    assert lines[0].split() == ["NAME", "PHASE", "MODE", "EXIT", "DURATION", "AGE"]
    assert lines[1].split() == ["build-1", "Succeeded", "local", "0", "12s", "30s"]
    assert lines[2].split() == ["lint", "Failed", "local", "2", "3m"]
    assert lines[3].split() == ["new", "Pending", "local", "<none>"]
    # Columns line up: every row's PHASE starts where the header's does.
    column = lines[0].index("PHASE")
    assert all(line[column - 1] == " " and line[column] != " " for line in lines)
    wide = steprun_table(rows, NOW, with_namespace=True).splitlines()
    assert wide[0].split()[:2] == ["NAMESPACE", "NAME"] and wide[1].split()[0] == "ci"


def test_documents_are_api_objects_in_yaml_and_json() -> None:
    sr = make("x", phase="Succeeded", exitCode=0, outputs={"k": "v"})
    served = sr.model_dump(by_alias=True, exclude_none=True, mode="json")
    for output, load in (("yaml", yaml.safe_load), ("json", json.loads)):
        document = load(format_objects([served], output, NOW, single=True))
        assert document == served, output
        assert document["apiVersion"] == "steprun.dev/v1alpha1" and document["kind"] == "StepRun"
        assert document["status"]["exitCode"] == 0 and document["status"]["outputs"] == {"k": "v"}
        listed = load(format_objects([served, served], output, NOW))
        assert listed["kind"] == "List" and listed["items"] == [served, served], output


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"phase": "Succeeded", "exitCode": 0}, 0),
        ({"phase": "Failed", "exitCode": 3}, 3),
        ({"phase": "Failed", "exitCode": 137, "reason": "OOMKilled"}, 137),
        ({"phase": "Failed", "reason": "ImagePullFailed"}, exit_codes.NO_EXIT_CODE),
        ({"phase": "Failed", "exitCode": 0}, exit_codes.NO_EXIT_CODE),
        ({"phase": "TimedOut", "exitCode": 143}, exit_codes.STEP_TIMED_OUT),
        ({"phase": "Cancelled"}, exit_codes.CANCELLED),
        ({"phase": "Rejected"}, exit_codes.USAGE),
    ],
)
def test_exit_codes(status: dict[str, Any], expected: int) -> None:
    assert exit_codes.exit_code_for(make("x", **status)) == expected


def test_exit_codes_are_distinct_and_documented() -> None:
    codes = [
        exit_codes.ERROR,
        exit_codes.USAGE,
        exit_codes.API_UNREACHABLE,
        exit_codes.WAIT_TIMEOUT,
        exit_codes.STEP_TIMED_OUT,
        exit_codes.NO_EXIT_CODE,
        exit_codes.CANCELLED,
    ]
    assert len(set(codes)) == len(codes)
    assert all(f"  {code} " in exit_codes.EXIT_CODES_HELP for code in codes)


def test_no_exit_code_for_a_running_step() -> None:
    with pytest.raises(ValueError):
        exit_codes.exit_code_for(make("x", phase="Running"))


def test_wide_table_adds_attempt_duration_pod_and_workflow() -> None:
    done = StepRun.from_body(
        {
            "metadata": {"name": "lint", "namespace": "ci"},
            "spec": {
                "image": "b",
                "context": {"workflow": {"name": "build", "runId": "42", "stepId": "lint"}},
            },
            "status": {
                "phase": "Succeeded",
                "attempt": 2,
                "podName": "lint-2",
                "startTime": "2024-05-01T11:58:00Z",
                "completionTime": "2024-05-01T11:59:05Z",
            },
        }
    )
    running = make("run", phase="Running", startTime="2024-05-01T11:59:30Z")
    lines = steprun_table([done, running], NOW, wide=True).splitlines()
    assert lines[0].split()[4:] == [
        *("DURATION", "REASON", "POD", "QUEUE", "QUEUEWAIT", "AGE"),
        *("ATTEMPT", "WORKFLOW", "RUN-ID", "STEP-ID"),
    ]
    assert lines[1].split()[-7:] == ["65s", "lint-2", "<none>", "2", "build", "42", "lint"]
    # A running step's duration counts up to now.
    assert "30s" in lines[2].split()


def test_default_and_wide_columns_are_the_crds_printer_columns() -> None:
    from steprun.api.crdgen import steprun_crd
    from steprun.cli.output import TABLE_HEADERS, WIDE_HEADERS

    (version,) = steprun_crd()["spec"]["versions"]
    columns = version["additionalPrinterColumns"]
    # kubectl adds NAME first; -o wide shows every column in the CRD's order.
    default = ("NAME", *(c["name"].upper() for c in columns if not c.get("priority")))
    assert default == TABLE_HEADERS
    assert WIDE_HEADERS[: len(columns) + 1] == ("NAME", *(c["name"].upper() for c in columns))


def test_label_columns_and_show_labels() -> None:
    sr = make("x", phase="Running")
    sr.metadata.labels = {"team": "web", "steprun.dev/workflow": "build"}
    lines = steprun_table(
        [sr], NOW, label_columns=["steprun.dev/workflow", "missing"], show_labels=True
    ).splitlines()
    assert lines[0].split()[-3:] == ["WORKFLOW", "MISSING", "LABELS"]
    assert lines[1].split()[-2:] == ["build", "steprun.dev/workflow=build,team=web"]


def test_custom_columns_and_name_output() -> None:
    from steprun.cli.output import format_objects

    items = [
        {"metadata": {"name": "a"}, "spec": {"image": "b"}, "status": {"phase": "Failed"}},
        {"metadata": {"name": "bb"}, "spec": {"image": "b"}},
    ]
    text = format_objects(items, "custom-columns=N:.metadata.name,P:.status.phase", NOW)
    assert text == "N    P\na    Failed\nbb   <none>\n"
    assert format_objects(items, "name", NOW) == ("steprun.steprun.dev/a\nsteprun.steprun.dev/bb\n")
