from __future__ import annotations

import math
from typing import Any

import pytest

from bench.stats import Distribution, percentile, summarize
from bench.timeline import (
    PodProgress,
    Timeline,
    job_outcome,
    pod_finished,
    pod_owner,
    pod_progress,
    steprun_outcome,
)


def test_percentile_interpolates_between_ranks() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 0.5) == 2.5
    assert percentile(values, 0.0) == 1.0
    assert percentile(values, 1.0) == 4.0
    assert math.isnan(percentile([], 0.5))


def test_distribution_of_nothing_is_nan_not_an_error() -> None:
    empty = Distribution.of([])
    assert empty.count == 0 and math.isnan(empty.p99)


def test_first_observation_wins_and_pods_are_counted_once() -> None:
    timeline = Timeline()
    timeline.submitted("a", 10.0)
    timeline.owner_event("a", 10.2, None)
    timeline.owner_event("a", 10.9, None)
    timeline.pod_event("a", "a-1", 10.5, PodProgress(scheduled=True))
    timeline.pod_event("a", "a-1", 12.0, PodProgress(finished=True))
    timeline.pod_event("a", "a-1", 12.5, PodProgress(finished=True))
    timeline.owner_event("a", 12.25, "Succeeded")
    timeline.owner_event("a", 13.0, "Failed")
    times = timeline.steps["a"]
    assert times.created == 10.0
    assert times.pod_seen == 10.5
    assert times.pod_terminal == 12.0
    assert (times.owner_terminal, times.outcome) == (12.25, "Succeeded")
    assert times.pods == 1


def test_created_is_the_earliest_sign_of_the_owner() -> None:
    timeline = Timeline()
    timeline.owner_event("a", 5.0, None)  # the watch beat the create call's response
    timeline.submitted("a", 5.3)
    assert timeline.steps["a"].created == 5.0


def test_summary_of_two_sides_worth_of_steps() -> None:
    timeline = Timeline()
    for i, (pod_delay, end_delay, outcome) in enumerate(
        [(0.1, 0.2, "Succeeded"), (0.3, 0.4, "Succeeded"), (0.2, 0.1, "Failed")]
    ):
        name = f"s{i}"
        start = float(i)
        timeline.submitted(name, start)
        timeline.owner_event(name, start + 0.01, None)
        timeline.pod_event(name, f"{name}-1", start + pod_delay, PodProgress(scheduled=True))
        timeline.pod_event(name, f"{name}-1", start + 1.0, PodProgress(finished=True))
        timeline.owner_event(name, start + 1.0 + end_delay, outcome)
    timeline.submitted("never", 3.0)
    summary = summarize(timeline)
    assert (summary.submitted, summary.succeeded, summary.failed, summary.unfinished) == (
        4,
        2,
        1,
        1,
    )
    assert summary.pod_creation.p50 == pytest.approx(0.2)
    assert summary.owner_terminal.max == pytest.approx(0.4)
    assert summary.drain_seconds == pytest.approx(3.1 - 0.0)
    assert summary.tail_seconds == pytest.approx(3.1 - 3.0)
    assert summary.throughput_per_second == pytest.approx(3 / 3.1)


def test_a_second_pod_for_a_step_is_reported() -> None:
    timeline = Timeline()
    timeline.pod_event("a", "a-1", 1.0, PodProgress(finished=True))
    timeline.pod_event("a", "a-2", 2.0, PodProgress(finished=True))
    assert summarize(timeline).extra_pods == 1


def test_outcomes() -> None:
    assert steprun_outcome({"status": {"phase": "Running"}}) is None
    assert steprun_outcome({"status": {"phase": "TimedOut"}}) == "TimedOut"
    assert (
        job_outcome({"status": {"conditions": [{"type": "Complete", "status": "False"}]}}) is None
    )
    assert job_outcome({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}) == (
        "Succeeded"
    )
    failed = {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "X"}]}}
    assert job_outcome(failed) == "Failed (X)"


def test_pod_finished_by_phase_or_by_every_container_terminated() -> None:
    running: dict[str, Any] = {"state": {"running": {}}}
    done = {"state": {"terminated": {"exitCode": 0}}}
    assert pod_finished({"status": {"phase": "Succeeded"}})
    assert pod_finished({"status": {"phase": "Running", "containerStatuses": [done, done]}})
    assert not pod_finished({"status": {"phase": "Running", "containerStatuses": [done, running]}})
    assert not pod_finished({"status": {"phase": "Pending"}})


def test_pod_owner_is_the_controller_reference_of_the_kind() -> None:
    pod = {
        "metadata": {
            "ownerReferences": [
                {"kind": "Job", "name": "other", "controller": False},
                {"kind": "Job", "name": "mine", "controller": True},
            ]
        }
    }
    assert pod_owner(pod, "Job") == "mine"
    assert pod_owner(pod, "StepRun") is None


def test_pod_progress_milestones() -> None:
    pending = {"spec": {}, "status": {"phase": "Pending"}}
    bound = {"spec": {"nodeName": "n"}, "status": {"phase": "Pending"}}
    running = {"spec": {"nodeName": "n"}, "status": {"phase": "Running"}}
    done = {"spec": {"nodeName": "n"}, "status": {"phase": "Succeeded"}}
    assert pod_progress(pending) == PodProgress()
    assert pod_progress(bound) == PodProgress(scheduled=True)
    assert pod_progress(running) == PodProgress(scheduled=True, running=True)
    assert pod_progress(done) == PodProgress(scheduled=True, finished=True)
    timeline = Timeline()
    for now, body in ((1.0, pending), (1.5, bound), (2.5, running), (4.0, done)):
        timeline.pod_event("a", "a-1", now, pod_progress(body))
    summary = summarize(timeline)
    assert (summary.pod_to_scheduled.p50, summary.scheduled_to_running.p50) == (0.5, 1.0)
    assert summary.running_to_finished.p50 == 1.5
    # A Pod seen only once it had ended counts as running from then on: no negative legs.
    quick = Timeline()
    quick.pod_event("b", "b-1", 3.0, pod_progress(done))
    assert summarize(quick).running_to_finished.p50 == 0.0
