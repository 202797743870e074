from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import promtext
from bench.audit import actor, audit_files, count_requests, entries
from bench.promtext import apiserver_writes, delta, operator_requests


def _entry(ns: str, user: str, resource: str, verb: str, code: int = 201, **ref: str) -> str:
    return json.dumps(
        {
            "stage": "ResponseComplete",
            "verb": verb,
            "user": {"username": user},
            "objectRef": {"namespace": ns, "resource": resource, **ref},
            "responseStatus": {"code": code},
        },
        separators=(",", ":"),
    )


def test_actors() -> None:
    who = {"operator": "system:serviceaccount:b:steprun-operator", "client": "steprun-admin"}
    assert actor("system:serviceaccount:b:steprun-operator", **who) == "operator"
    assert actor("steprun-admin", **who) == "bench client"
    assert actor("system:node:n1", **who) == "kubelet"
    assert actor("system:serviceaccount:kube-system:job-controller", **who) == "job controller"
    assert actor("someone", **who) == "someone"


def test_counts_by_side_actor_resource_and_verb(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    backup = tmp_path / "audit-2026-01-01T00-00-00.000.log"
    op = "system:serviceaccount:sr:steprun-operator"
    backup.write_text(_entry("sr", op, "configmaps", "create") + "\n")
    log.write_text(
        "\n".join(
            [
                _entry("sr", op, "stepruns", "patch", 200, subresource="status"),
                _entry("sr", op, "stepruns", "patch", 409, subresource="status"),
                _entry("sr", op, "secrets", "get", 200),
                _entry("job", "system:serviceaccount:kube-system:job-controller", "pods", "create"),
                _entry("elsewhere", op, "pods", "create"),
                '{"truncated',
            ]
        )
        + "\n"
    )
    files = audit_files(log)
    assert files == [backup, log]
    sides = {"sr": "steprun", "job": "job"}
    counts = count_requests(entries(files, sides), sides, operator=op, client="admin")
    assert counts.total("steprun", "operator") == 2
    assert counts.total("steprun", "operator", reads=True) == 1
    assert counts.total("steprun", failed=True) == 1
    assert counts.total("job", "job controller") == 1
    assert counts.total("job", reads=True) == 0
    rows = {(r["side"], r["resource"], r["verb"]): (r["ok"], r["failed"]) for r in counts.rows()}
    assert rows[("steprun", "stepruns/status", "patch")] == (1, 1)
    # Reads are counted (the audit policy logs get and list), apart from the writes.
    assert rows[("steprun", "secrets", "get")] == (1, 0)


PROM = """\
# HELP apiserver_request_total x
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",resource="pods",subresource="",verb="POST"} 7
apiserver_request_total{code="409",resource="pods",subresource="",verb="POST"} 1
apiserver_request_total{code="200",resource="pods",subresource="status",verb="PATCH"} 3
apiserver_request_total{code="200",resource="pods",subresource="",verb="GET"} 99
apiserver_request_total{code="200",resource="leases",subresource="",verb="PUT"} 50
"""


def test_apiserver_writes_of_step_resources_only() -> None:
    before = apiserver_writes(PROM)
    assert before[("pods", "POST")] == 8
    assert before[("pods/status", "PATCH")] == 3
    assert ("pods", "GET") not in before
    assert ("leases", "PUT") not in before
    after = apiserver_writes(PROM.replace("} 7", "} 17"))
    assert delta(before, after) == {"pods POST": 10}


def test_operator_requests_by_verb() -> None:
    text = """\
# TYPE steprun_api_request_duration_seconds histogram
steprun_api_request_duration_seconds_bucket{le="+Inf",verb="post"} 4
steprun_api_request_duration_seconds_count{verb="post"} 4
steprun_api_request_duration_seconds_sum{verb="post"} 0.2
steprun_api_request_duration_seconds_count{verb="patch"} 2
"""
    assert operator_requests(text) == {"post": 4, "patch": 2}


OPERATOR_METRICS = """\
# HELP steprun_workqueue_queue_duration_seconds How long a StepRun waits
# TYPE steprun_workqueue_queue_duration_seconds histogram
steprun_workqueue_queue_duration_seconds_bucket{le="0.1"} 2.0
steprun_workqueue_queue_duration_seconds_bucket{le="1.0"} 6.0
steprun_workqueue_queue_duration_seconds_bucket{le="+Inf"} 10.0
steprun_workqueue_queue_duration_seconds_count 10.0
steprun_workqueue_queue_duration_seconds_sum 12.0
# HELP steprun_api_request_duration_seconds Kubernetes API requests made by the operator
# TYPE steprun_api_request_duration_seconds histogram
steprun_api_request_duration_seconds_bucket{le="0.01",verb="get"} 4.0
steprun_api_request_duration_seconds_bucket{le="+Inf",verb="get"} 4.0
steprun_api_request_duration_seconds_count{verb="get"} 4.0
steprun_api_request_duration_seconds_sum{verb="get"} 0.02
steprun_api_request_duration_seconds_bucket{le="0.01",verb="post"} 0.0
steprun_api_request_duration_seconds_bucket{le="+Inf",verb="post"} 0.0
steprun_api_request_duration_seconds_count{verb="post"} 0.0
steprun_api_request_duration_seconds_sum{verb="post"} 0.0
"""


def test_operator_timings_from_its_histograms() -> None:
    rows = promtext.operator_timings(OPERATOR_METRICS)
    assert [r["what"] for r in rows] == [
        "work queue: waiting for a reconcile to start",
        "API request (get)",
    ], "in the order a step meets them; series never observed are left out"
    queue = rows[0]
    assert queue["count"] == 10 and queue["mean"] == 1.2
    # rank 5 of 10 falls in (0.1, 1.0], 3 of its 4 samples in: 0.1 + 0.9 * 3/4.
    assert queue["p50"] == pytest.approx(0.775)
    # rank 9 falls in +Inf: the highest finite bound, as histogram_quantile says.
    assert queue["p90"] == 1.0
    assert rows[1]["p50"] == pytest.approx(0.005)
