"""What the reconciler writes for a step queued by Kueue (reconcile/rules.py), as tables."""

from __future__ import annotations

from typing import Any

import pytest

from steprun.api.models import Phase, Reason
from steprun.reconcile.rules import (
    admission,
    preemption,
    queue_base,
    queue_timed_out,
    still_queued,
)
from tests.unit.factories import at, steprun

QUEUE = "team-a"
WORKLOAD = "build-42-lint"


def queued(**queue: Any) -> Any:
    return steprun(
        status={
            "phase": "Pending",
            "reason": "Queued",
            "queue": {"name": QUEUE, "workload": WORKLOAD, **queue},
        }
    )


@pytest.mark.parametrize(
    ("recorded", "now", "waited", "total"),
    [
        pytest.param(
            {"queuedTime": "2026-01-01T00:00:00Z"},
            "2026-01-01T00:00:12Z",
            12,
            12,
            id="first-admission",
        ),
        pytest.param(
            {"queuedTime": "2026-01-01T00:00:00Z", "waitSeconds": 30},
            "2026-01-01T00:00:05Z",
            5,
            35,
            id="after-a-preemption-the-waits-add-up",
        ),
        pytest.param({}, "2026-01-01T00:00:05Z", 0, 0, id="no-recorded-wait"),
        pytest.param(
            {"queuedTime": "2026-01-01T00:00:09Z"},
            "2026-01-01T00:00:05Z",
            0,
            0,
            id="a-clock-behind-never-waits-negative",
        ),
    ],
)
def test_admission_counts_the_wait_of_this_round(
    recorded: dict[str, Any], now: str, waited: float, total: int
) -> None:
    sr = queued(clusterQueue="cq", **recorded)
    base = queue_base(sr, QUEUE, WORKLOAD)
    admitted = admission(sr, base, None, {"cpu": "default"}, at(now))
    assert admitted.waited_seconds == waited
    assert admitted.queue.wait_seconds == total
    assert admitted.queue.cluster_queue == "cq"
    assert admitted.queue.flavors == {"cpu": "default"}
    assert admitted.message == (
        f"admitted by Kueue (ClusterQueue cq; flavors cpu: default) after {waited}s "
        f"in LocalQueue {QUEUE}"
    )


def test_admission_names_the_cluster_queue_kueue_admitted_through() -> None:
    sr = queued(queuedTime="2026-01-01T00:00:00Z")
    admitted = admission(
        sr, queue_base(sr, QUEUE, WORKLOAD), "cq-b", {}, at("2026-01-01T00:00:01Z")
    )
    assert admitted.queue.cluster_queue == "cq-b"
    assert admitted.queue.flavors is None
    assert "flavors" not in admitted.message


@pytest.mark.parametrize(
    ("recorded", "expected_since"),
    [
        pytest.param(
            {"queuedTime": "2026-01-01T00:00:00Z"},
            "2026-01-01T00:00:00Z",
            id="keeps-when-it-started-waiting",
        ),
        pytest.param({}, "2026-01-01T00:01:00Z", id="starts-waiting-now"),
    ],
)
def test_a_waiting_step_keeps_when_its_wait_began(
    recorded: dict[str, Any], expected_since: str
) -> None:
    sr = queued(**recorded)
    waiting = still_queued(sr, queue_base(sr, QUEUE, WORKLOAD), "cq", at("2026-01-01T00:01:00Z"))
    assert waiting.queued_time == expected_since
    assert waiting.cluster_queue == "cq"
    assert waiting.workload == WORKLOAD


def test_preemption_ends_the_attempt_preempted_and_queues_the_step_again() -> None:
    sr = steprun(
        status={
            "phase": "Running",
            "attempt": 2,
            "queue": {"name": QUEUE, "workload": WORKLOAD, "clusterQueue": "cq", "waitSeconds": 4},
        }
    )
    ended = preemption(
        sr,
        queue_base(sr, QUEUE, WORKLOAD),
        "preempted by a higher priority step",
        "log not archived",
        at("2026-01-01T00:02:00Z"),
    )
    assert (ended.outcome.phase, ended.outcome.reason) == (Phase.FAILED, Reason.PREEMPTED)
    assert ended.outcome.message == "preempted by a higher priority step; log not archived"
    assert ended.queue.queued_time == "2026-01-01T00:02:00Z"
    assert ended.queue.wait_seconds == 4
    assert ended.message.startswith("attempt 2 was preempted by a higher priority step; ")
    assert QUEUE in ended.message and "cq" in ended.message


def test_a_queue_timeout_fails_the_step() -> None:
    ending = queue_timed_out("waited 60s")
    assert (ending.phase, ending.reason, ending.message) == (
        Phase.FAILED,
        Reason.QUEUE_TIMEOUT,
        "waited 60s",
    )
