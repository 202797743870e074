"""Which Pod's logs to read next, from snapshots of Pods (no server)."""

from __future__ import annotations

from typing import Any

import pytest

from steprun.client.logs import (
    LineSplitter,
    LogPlanner,
    LogsDone,
    PodView,
    PodWaiting,
    StreamLogs,
    WaitForPod,
    pod_view,
)


def view(attempt: int, state: str = "running", reason: str = "") -> PodView:
    return PodView(f"s-{attempt}", attempt, "step", state, reason or state.title())  # type: ignore[arg-type]


def pod(
    attempt: str | None, statuses: list[dict[str, Any]] | None = None, **status: Any
) -> dict[str, Any]:
    labels = {"steprun.dev/attempt": attempt} if attempt is not None else {}
    return {
        "metadata": {"name": "s-1", "labels": labels},
        "spec": {"containers": [{"name": "step"}, {"name": "sidecar"}]},
        "status": {"containerStatuses": statuses or [], **status},
    }


# ---------------------------------------------------------------------- pod_view


@pytest.mark.parametrize(
    ("raw", "state", "reason"),
    [
        (pod("1", [{"name": "step", "state": {"running": {}}}]), "running", "Running"),
        (
            pod("1", [{"name": "step", "state": {"terminated": {"reason": "Error"}}}]),
            "terminated",
            "Error",
        ),
        (
            pod("1", [{"name": "step", "state": {"waiting": {"reason": "ErrImagePull"}}}]),
            "waiting",
            "ErrImagePull",
        ),
        # Only the step container counts, not a sidecar.
        (
            pod(
                "1",
                [
                    {"name": "sidecar", "state": {"running": {}}},
                    {"name": "step", "state": {"waiting": {"reason": "ContainerCreating"}}},
                ],
            ),
            "waiting",
            "ContainerCreating",
        ),
        (
            pod(
                "1",
                conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}],
            ),
            "waiting",
            "Unschedulable",
        ),
        (pod("1", phase="Pending"), "waiting", "Pending"),
        (pod("1", phase="Failed"), "terminated", "Failed"),
    ],
)
def test_pod_view_reads_the_step_containers_state(
    raw: dict[str, Any], state: str, reason: str
) -> None:
    seen = pod_view(raw)
    assert seen is not None
    assert (seen.attempt, seen.container, seen.state, seen.reason) == (1, "step", state, reason)


@pytest.mark.parametrize("attempt", [None, "x", ""])
def test_pods_without_an_attempt_number_are_ignored(attempt: str | None) -> None:
    assert pod_view(pod(attempt)) is None


# ---------------------------------------------------------------------- the planner


def test_a_snapshot_reads_every_attempt_in_order_then_stops() -> None:
    planner = LogPlanner(follow=False)
    pods = [view(2), view(1, "terminated")]
    first = planner.plan(pods, finished=False)
    assert isinstance(first, StreamLogs) and first.pod.attempt == 1 and not first.follow
    planner.streamed(1)
    second = planner.plan(pods, finished=False)
    assert isinstance(second, StreamLogs) and second.pod.attempt == 2
    planner.streamed(2)
    assert isinstance(planner.plan(pods, finished=False), LogsDone)


def test_a_snapshot_skips_attempts_whose_container_never_started() -> None:
    planner = LogPlanner(follow=False)
    action = planner.plan([view(1, "waiting", "ErrImagePull"), view(2)], finished=False)
    assert isinstance(action, StreamLogs) and action.pod.attempt == 2


def test_following_waits_for_the_first_pod_and_reports_each_new_wait_once() -> None:
    planner = LogPlanner(follow=True)
    plans = [
        planner.plan([], finished=False),
        planner.plan([], finished=False),
        planner.plan([view(1, "waiting", "ContainerCreating")], finished=False),
        planner.plan([view(1, "waiting", "ContainerCreating")], finished=False),
        planner.plan([view(1, "waiting", "ErrImagePull")], finished=False),
    ]
    assert all(isinstance(p, WaitForPod) for p in plans)
    reported = [p.event for p in plans if isinstance(p, WaitForPod) and p.report]
    assert reported == [
        PodWaiting(1, None, "NotCreated"),
        PodWaiting(1, "s-1", "ContainerCreating"),
        PodWaiting(1, "s-1", "ErrImagePull"),
    ]


def test_following_moves_on_to_the_retry_and_stops_when_finished() -> None:
    planner = LogPlanner(follow=True)
    action = planner.plan([view(1)], finished=False)
    assert isinstance(action, StreamLogs) and action.follow and action.first
    planner.streamed(1)
    # The container ended, the operator has not written the outcome yet: wait, say nothing.
    silent = planner.plan([view(1, "terminated")], finished=False)
    assert isinstance(silent, WaitForPod) and silent.attempt == 2 and not silent.report
    # A retry waits out its backoff: that is worth saying, once.
    backoff = planner.plan([view(1, "terminated")], finished=False, retrying=True)
    assert isinstance(backoff, WaitForPod) and backoff.report
    assert backoff.event == PodWaiting(2, None, "Retrying")
    again = planner.plan([view(1, "terminated")], finished=False, retrying=True)
    assert isinstance(again, WaitForPod) and not again.report
    retry = planner.plan([view(1, "terminated"), view(2)], finished=False)
    assert isinstance(retry, StreamLogs) and retry.pod.attempt == 2
    planner.streamed(2)
    assert isinstance(planner.plan([view(1), view(2)], finished=True), LogsDone)


def test_following_a_finished_step_whose_pod_never_ran_stops() -> None:
    planner = LogPlanner(follow=True)
    assert isinstance(planner.plan([view(1, "waiting", "ErrImagePull")], finished=True), LogsDone)
    assert isinstance(LogPlanner(follow=True).plan([], finished=True), LogsDone)


def test_an_interrupted_stream_is_read_again_skipping_what_was_emitted() -> None:
    planner = LogPlanner(follow=True)
    first = planner.plan([view(1)], finished=False)
    assert isinstance(first, StreamLogs) and first.first and first.skip_lines == 0
    planner.progress(1, 7)
    again = planner.plan([view(1)], finished=False)
    assert isinstance(again, StreamLogs)
    assert (again.first, again.skip_lines) == (False, 7)


def test_unreadable_logs_are_retried_when_following_and_skipped_in_a_snapshot() -> None:
    following = LogPlanner(follow=True)
    following.plan([view(1)], finished=False)
    following.unavailable(1)
    again = following.plan([view(1)], finished=False)
    assert isinstance(again, StreamLogs) and again.pod.attempt == 1 and not again.first

    # Once the step is finished, an unreadable attempt will stay unreadable: move on.
    finished = LogPlanner(follow=True)
    finished.plan([view(1, "terminated"), view(2, "terminated")], finished=True)
    finished.unavailable(1)
    moved = finished.plan([view(1, "terminated"), view(2, "terminated")], finished=True)
    assert isinstance(moved, StreamLogs) and moved.pod.attempt == 2

    snapshot = LogPlanner(follow=False)
    snapshot.plan([view(1), view(2)], finished=True)
    snapshot.unavailable(1)
    then = snapshot.plan([view(1), view(2)], finished=True)
    assert isinstance(then, StreamLogs) and then.pod.attempt == 2


def test_one_attempt_only() -> None:
    planner = LogPlanner(follow=False, attempt=2)
    action = planner.plan([view(1), view(2), view(3)], finished=True)
    assert isinstance(action, StreamLogs) and action.pod.attempt == 2
    planner.streamed(2)
    assert isinstance(planner.plan([view(1), view(2), view(3)], finished=True), LogsDone)
    assert isinstance(LogPlanner(follow=False, attempt=5).plan([view(1)], True), LogsDone)


def test_following_one_attempt_waits_for_it() -> None:
    planner = LogPlanner(follow=True, attempt=2)
    action = planner.plan([view(1)], finished=False)
    assert isinstance(action, WaitForPod) and action.attempt == 2


def test_a_deleted_pod_of_an_earlier_attempt_is_passed_over() -> None:
    planner = LogPlanner(follow=False)
    action = planner.plan([view(3)], finished=True)
    assert isinstance(action, StreamLogs) and action.pod.attempt == 3


# ---------------------------------------------------------------------- line splitting


def test_lines_are_reassembled_across_chunks_and_decoded_whole() -> None:
    splitter = LineSplitter()
    text = "première\nseconde\nlast"
    data = text.encode()
    lines: list[str] = []
    for i in range(len(data)):  # one byte at a time: multi-byte characters are split too
        lines += splitter.feed(data[i : i + 1])
    lines += splitter.flush()
    assert lines == ["première", "seconde", "last"]
    assert splitter.flush() == []


def test_empty_lines_are_kept() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"a\n\nb\n") == ["a", "", "b"]
    assert splitter.flush() == []
