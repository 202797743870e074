from __future__ import annotations

import pytest

import bench.__main__ as entry
from bench.recorder import streams
from bench.settings import parse_modes, settings_from
from bench.timeline import Timeline
from bench.workload import Workload, bare_pod, job


def test_the_bare_pod_is_the_jobs_pod_with_no_controller() -> None:
    workload = Workload("r", "kwok", 16, "1s")
    pod = bare_pod(workload, "ns-pod", 3)
    assert pod["kind"] == "Pod" and pod["metadata"]["name"] == "s-00003"
    assert "ownerReferences" not in pod["metadata"]
    assert pod["spec"] == job(workload, "ns-job", 3)["spec"]["template"]["spec"]
    assert pod["metadata"]["annotations"] == {"kwok.steprun.dev/run-duration": "1s"}


def test_a_bare_pod_is_its_own_owner_in_the_timeline() -> None:
    (pods,) = [s for s in streams("a", "b", "c") if s.side == "pod"]
    timeline = Timeline()
    body = {"metadata": {"name": "s-00001"}, "spec": {"nodeName": "n"}, "status": {}}
    pods.handle(timeline, body, 1.0)
    done = {**body, "status": {"phase": "Succeeded"}}
    pods.handle(timeline, done, 2.5)
    times = timeline.steps["s-00001"]
    assert (times.pod_seen, times.pod_terminal, times.owner_terminal) == (1.0, 2.5, 2.5)
    assert times.outcome == "Succeeded" and times.pods == 1


def test_controller_manager_modes_leave_the_cluster_as_found() -> None:
    assert entry.mode_order(("unthrottled", "default"), "default") == ["unthrottled", "default"]
    assert entry.mode_order(("unthrottled", "default"), "unthrottled") == [
        "default",
        "unthrottled",
    ]
    assert entry.found_mode(["--v=1"]) == "default"
    assert entry.found_mode(["--kube-api-qps", "1000"]) == "unthrottled"
    assert parse_modes("unthrottled, as found") == ("unthrottled", "as found")
    with pytest.raises(ValueError, match="controller-manager modes"):
        parse_modes("fast")


def test_a_report_needs_a_committed_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(entry.machine, "revision", lambda: ("abc123", True))
    with pytest.raises(SystemExit, match="commit first"):
        entry.require_committed(settings_from([], {}))
    allowed = settings_from(["--allow-local-changes"], {})
    assert entry.require_committed(allowed) == "abc123"
    monkeypatch.setattr(entry.machine, "revision", lambda: ("abc123", False))
    assert entry.require_committed(settings_from([], {})) == "abc123"
