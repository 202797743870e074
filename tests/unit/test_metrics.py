"""The operator's metrics: the incremental phase gauge exported by the active replica only,
step durations, Pod start, work-queue depth and latency, build info, and the HTTP endpoint."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from typing import Any

import pytest
from prometheus_client import REGISTRY, generate_latest

from steprun import metrics
from steprun.api.models import Phase, Reason, StepRunStatus
from steprun.metrics import PhaseCounts, record_pod_start, record_transition
from steprun.reconcile.queue import WorkQueue
from steprun.timeutil import parse_time


def body(name: str, phase: str | None, namespace: str = "ns") -> dict[str, Any]:
    status = {"phase": phase} if phase else {}
    return {"metadata": {"name": name, "namespace": namespace}, "status": status}


def sample(name: str, labels: dict[str, str] | None = None) -> float | None:
    return REGISTRY.get_sample_value(name, labels or {})


def test_phase_counts_move_one_step_at_a_time() -> None:
    counts = PhaseCounts()
    counts.observe(body("a", None))
    counts.observe(body("b", "Running"))
    counts.observe(body("a", "Pending"))
    counts.observe(body("a", "Pending"))  # the same state again changes nothing
    counts.observe(body("b", "Succeeded"))
    counts.observe(body("c", "Failed", namespace="other"))
    assert {k: v for k, v in counts.counts().items() if v} == {
        "Pending": 1,
        "Succeeded": 1,
        "Failed": 1,
    }
    counts.observe(body("b", "Succeeded"), deleted=True)
    counts.observe(body("gone", "Running"), deleted=True)  # never seen: nothing to remove
    assert {k: v for k, v in counts.counts().items() if v} == {"Pending": 1, "Failed": 1}
    assert set(counts.counts()) >= set(metrics.PHASES)


def test_phase_gauge_is_exported_by_the_active_replica_only() -> None:
    metrics.set_active(False)
    metrics.STEPRUN_PHASES.observe(body("x", "Running"))
    assert b"steprun_stepruns{" not in generate_latest(REGISTRY)
    assert sample("steprun_active_replica") == 0
    metrics.set_active(True)
    metrics.STEPRUN_PHASES.observe(body("x", "Running"))
    assert sample("steprun_stepruns", {"phase": "Running"}) == 1
    assert sample("steprun_active_replica") == 1
    # Going on standby forgets the counts: the events that would keep them right stop coming.
    metrics.set_active(False)
    metrics.set_active(True)
    assert sample("steprun_stepruns", {"phase": "Running"}) == 0
    metrics.set_active(False)


def test_terminal_transitions_observe_the_step_duration_by_phase_and_reason() -> None:
    labels = {"phase": "Failed", "reason": "ImagePullFailed"}
    before = sample("steprun_step_duration_seconds_count", labels) or 0
    before_sum = sample("steprun_step_duration_seconds_sum", labels) or 0
    record_transition(
        "2026-01-01T00:00:00Z", StepRunStatus(phase=Phase.RUNNING, reason=Reason.STARTED)
    )
    record_transition(
        "2026-01-01T00:00:00Z",
        StepRunStatus(
            phase=Phase.FAILED,
            reason=Reason.IMAGE_PULL_FAILED,
            completion_time="2026-01-01T00:01:30Z",
        ),
    )
    assert sample("steprun_step_duration_seconds_count", labels) == before + 1
    assert sample("steprun_step_duration_seconds_sum", labels) == before_sum + 90
    assert sample("steprun_transitions_total", {"phase": "Running", "reason": "Started"})


def test_a_quick_steps_start_is_read_from_its_terminated_container() -> None:
    pod = {
        "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
        "status": {
            "containerStatuses": [
                {"state": {"terminated": {"startedAt": "2026-01-01T00:00:03Z", "exitCode": 0}}}
            ]
        },
    }
    assert metrics.container_started_at(pod) == parse_time("2026-01-01T00:00:03Z")
    assert metrics.container_started_at({"status": {}}) is None


def test_pod_start_is_from_pod_creation_to_container_running() -> None:
    before = sample("steprun_pod_start_duration_seconds_sum") or 0
    pod = {"metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"}}
    record_pod_start(pod, parse_time("2026-01-01T00:00:12Z"))
    assert sample("steprun_pod_start_duration_seconds_sum") == before + 12


async def test_work_queue_depth_and_latency() -> None:
    release = asyncio.Event()
    seen: list[tuple[str, str]] = []

    async def work(key: tuple[str, str]) -> None:
        seen.append(key)
        await release.wait()

    queue = WorkQueue(work, concurrency=1)
    latency_before = sample("steprun_workqueue_queue_duration_seconds_count") or 0
    adds_before = sample("steprun_workqueue_adds_total") or 0
    queue.add(("ns", "a"))
    queue.add(("ns", "b"))
    queue.add(("ns", "b"))  # coalesced: still one waiting entry
    await asyncio.sleep(0.05)
    assert seen == [("ns", "a")]
    assert queue.depth == 1 and sample("steprun_workqueue_depth") == 1
    release.set()
    await asyncio.sleep(0.05)
    assert queue.depth == 0 and sample("steprun_workqueue_depth") == 0
    assert sample("steprun_workqueue_queue_duration_seconds_count") == latency_before + 2
    assert sample("steprun_workqueue_adds_total") == adds_before + 3
    await queue.drain()


def test_build_info_names_the_versions() -> None:
    text = generate_latest(REGISTRY).decode()
    (line,) = [ln for ln in text.splitlines() if ln.startswith("steprun_build_info{")]
    assert 'version="0.1.0"' in line and "python_version=" in line and "kopf_version=" in line


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_metrics_and_readiness_endpoint() -> None:
    state = {"ready": (False, "starting")}
    port = _free_port()
    stop = await metrics.serve(port, lambda: state["ready"])

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    try:
        status, text = await asyncio.to_thread(get, "/metrics")
        assert status == 200 and "# TYPE steprun_workqueue_depth gauge" in text
        assert await asyncio.to_thread(get, "/readyz") == (503, "starting\n")
        state["ready"] = (True, "active")
        assert await asyncio.to_thread(get, "/readyz") == (200, "active\n")
    finally:
        await stop()


@pytest.fixture(autouse=True)
def _standby_after() -> Any:
    yield
    metrics.set_active(False)


def _exported_series() -> set[str]:
    text = generate_latest(REGISTRY).decode()
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE steprun_")}


def test_no_created_timestamp_series_are_exported() -> None:
    text = generate_latest(REGISTRY).decode()
    assert not [line for line in text.splitlines() if "_created" in line.split("{")[0]]


def test_every_exported_series_is_documented_and_charted() -> None:
    import json
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    exported = _exported_series() | {"steprun_stepruns"}
    deploy = (root / "docs" / "deploy.md").read_text()
    documented = set(re.findall(r"^\| `(steprun_[a-z_]+)`", deploy, re.M))
    assert exported - documented == set()
    chart = root / "helm" / "steprun" / "dashboards" / "steprun.json"
    queries = " ".join(
        t["expr"] for p in json.loads(chart.read_text())["panels"] for t in p["targets"]
    )
    uncharted = {
        name
        for name in exported
        if not re.search(rf"\b{name.removesuffix('_info')}(_info|_bucket|_count)?\{{", queries)
    }
    assert uncharted == set()
