from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.procstat import Usage
from bench.profiler import hotspots
from bench.report import (
    operator_writes_per_success,
    render,
    spread_table,
    verdicts,
    write,
    writes_per_step,
)
from bench.scenario import ScenarioResult, ScenarioSpec
from bench.stats import summarize
from bench.timeline import PodProgress, Timeline


def _timeline(pod_delay: float, end_delay: float, count: int = 4) -> Timeline:
    timeline = Timeline()
    for i in range(count):
        name = f"s-{i}"
        timeline.submitted(name, float(i))
        timeline.pod_event(name, f"{name}-1", i + pod_delay, PodProgress(scheduled=True))
        timeline.pod_event(name, f"{name}-1", i + 1.0, PodProgress(finished=True))
        timeline.owner_event(name, i + 1.0 + end_delay, "Succeeded")
    return timeline


def _row(side: str, who: str, resource: str, verb: str, ok: int, failed: int = 0) -> dict[str, Any]:
    return {
        "side": side,
        "actor": who,
        "resource": resource,
        "verb": verb,
        "ok": ok,
        "failed": failed,
    }


def _result(
    rate: float | None, operator_writes: int, repeat: int = 1, pod_delay: float = 0.1
) -> ScenarioResult:
    spec = ScenarioSpec(
        size=4, rate=rate, nodes="kwok", controller_manager="default", repeat=repeat
    )
    result = ScenarioResult(
        spec=spec,
        run_id="r",
        started_at="2026-01-01T00:00:00+00:00",
        namespaces={"steprun": "a", "job": "b", "pod": "c"},
        operator_user="op",
    )
    result.summaries = {
        "steprun": summarize(_timeline(pod_delay, 0.05)),
        "job": summarize(_timeline(0.2, 0.5)),
        "pod": summarize(_timeline(0.01, 0.0)),
    }
    result.latencies = {
        side: {"pod_creation": [0.1, 0.2], "owner_terminal": [0.05, 0.5], "end_to_end": [1, 2]}
        for side in ("steprun", "job", "pod")
    }
    result.rss_curve = [(0.0, 0, 100 * 2**20), (1.0, 4, 110 * 2**20)]
    result.usage = {"operator": Usage("operator", 1, 0.0, 2.0, 120 * 1024 * 1024, 0)}
    result.audit_complete = True
    result.audit_rows = [
        _row("steprun", "operator", "pods", "create", 4),
        _row("steprun", "operator", "stepruns/status", "patch", operator_writes - 4, failed=1),
        _row("steprun", "operator", "secrets", "get", 8),
        _row("job", "job controller", "pods", "create", 4),
        _row("pod", "bench client", "pods", "create", 4),
    ]
    return result


def test_verdicts_follow_the_numbers() -> None:
    good = {v.target: v.met for v in verdicts([_result(10, 32), _result(None, 32)])}
    assert all(good.values()), good
    assert operator_writes_per_success(_result(10, 40)) == 10
    bad = {v.target: v.met for v in verdicts([_result(10, 40)])}
    assert [t for t, met in bad.items() if not met] == [
        "At most 8 mutating API requests per successful StepRun "
        "(context, secrets and cleanup included)"
    ]


def test_report_files(tmp_path: Path) -> None:
    results = [_result(10, 32), _result(None, 32)]
    text = render(4, results, {"cpus": 2}, {"sizes": "4"}, "x.png")
    assert "# StepRun vs Job vs bare Pods: 4 steps per arm" in text
    assert "from revision `unknown`" in text
    assert "| operator | pods | create | 1.00 |" in text.replace("steprun | ", "")
    assert "(0.25)" in text  # the failed status patch, per step
    report = write(tmp_path, "2026-01-01-4", 4, results, {"cpus": 2}, {"sizes": "4"})
    assert (tmp_path / "latest.md").read_text() == report.read_text()
    for png in ("2026-01-01-4.png", "2026-01-01-4-cost.png", "2026-01-01-4-rss.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({png})" in report.read_text()
    assert '"scenarios"' in (tmp_path / "2026-01-01-4.json").read_text()


def test_hotspots_from_collapsed_stacks() -> None:
    collapsed = "\n".join(
        [
            "main (m.py:1);loop (l.py:2);parse (p.py:3) 6",
            "main (m.py:1);loop (l.py:2);write (w.py:4) 3",
            "main (m.py:1);idle (i.py:5) 1",
            "garbage line",
        ]
    )
    spots = hotspots(collapsed, top=2)
    assert spots.samples == 10
    assert spots.self_time == [("parse (p.py:3)", 6), ("write (w.py:4)", 3)]
    assert spots.inclusive[0] == ("main (m.py:1)", 10)


def test_profile_samples_are_shared_out_by_what_they_were_spent_for() -> None:
    collapsed = "\n".join(
        [
            # The pure decision counts as the operator's own, though the reconciler called it.
            "run (steprun/reconcile/reconciler.py:1);decide (steprun/reconcile/decide.py:2) 4",
            "run (steprun/reconcile/reconciler.py:1);Kube.request (steprun/kube/client.py:3);"
            "loads (json/__init__.py:4) 3",
            "worker (kopf/_core/reactor/queueing.py:5);info (structlog/stdlib.py:6) 2",
            "worker (kopf/_core/reactor/queueing.py:5) 1",
            # The entry point is on every stack: it says nothing of what a sample was for.
            "<module> (steprun/handlers/main.py:9);select (selectors.py:7) 1",
            "<module> (steprun/handlers/main.py:9);_run (asyncio/events.py:8) 1",
        ]
    )
    spots = hotspots(collapsed)
    assert spots.categories == [
        ("steprun: decide, render, observe, policy (pure functions)", 4),
        ("logging (structlog)", 2),
        ("steprun: its API requests (kubernetes_asyncio, aiohttp, TLS, JSON)", 3),
        ("kopf: event processing and handler dispatch", 1),
        ("event loop: polling sockets (select)", 1),
        ("event loop, sockets and TLS not attributable to a caller", 1),
    ]


def test_report_shows_where_the_time_goes() -> None:
    text = render(4, [_result(10, 32)], {}, {}, None)
    (row,) = [line for line in text.splitlines() if "scheduled → running → finished" in line]
    # _timeline: each Pod is first seen already bound (0.1 s after its StepRun, 0.2 s after its
    # Job) and next seen finished 1 s after its owner, so it counts as running from then on.
    assert "| 0.000 / 0.900 / 0.000 | 0.000 / 0.800 / 0.000 | 0.000 / 0.990 / 0.000 |" in row


def test_reads_are_counted_apart_from_writes() -> None:
    result = _result(10, 32)
    assert writes_per_step(result, "steprun", "operator") == 8
    assert writes_per_step(result, "steprun", "operator", reads=True) == 2
    assert operator_writes_per_success(result) == 8  # the reads are not writes


def test_report_names_local_changes_and_labels_the_job_arm() -> None:
    text = render(4, [_result(10, 32)], {"revision": "abc", "local_changes": True}, {}, None)
    assert "from revision `abc` WITH LOCAL CHANGES" in text
    assert "Job (default controller-manager)" in text
    assert "| bare Pods |" in text or "bare Pods" in text


def test_spread_is_the_median_and_range_of_the_runs() -> None:
    runs = [_result(10, 32, repeat=n, pod_delay=d) for n, d in ((1, 0.1), (2, 0.3), (3, 0.2))]
    lines = spread_table(runs)
    assert (
        lines[0] == "### 4 at 10/s on kwok, default controller-manager: 3 run(s), median (min-max)"
    )
    (row,) = [line for line in lines if line.startswith("| create → Pod p50")]
    # The StepRun arm's p50 was 0.1, 0.3 and 0.2 s in the three runs.
    assert row.split(" | ")[1] == "0.200 (0.100-0.300)"
