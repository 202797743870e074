from __future__ import annotations

from pathlib import Path

from bench.panels import Latency, verdict
from bench.report import render, to_json, write
from bench.rerender import rerender, results_from_json
from bench.tests.test_report_profiler import _result


def test_a_steprun_within_30_ms_of_bare_pods_and_no_later_than_the_job_meets_its_targets() -> None:
    panel = verdict(
        "c",
        {
            "steprun": Latency(0.129, 0.5),
            "job": Latency(0.2, 0.5),
            "pod": Latency(0.1, 0.3),
        },
    )
    assert panel.met is True
    assert panel.verdict.startswith("met: p50 +29 ms over bare Pods")
    assert panel.p50_target == 0.1 + 0.030
    assert panel.p99_target == 0.5


def test_each_target_missed_is_named_in_the_verdict() -> None:
    over = verdict("c", {"steprun": Latency(0.131, 0.4), "pod": Latency(0.1, 0.3)})
    assert over.met is False
    assert over.verdict == "**missed**: p50 +31 ms over bare Pods (target ≤ +30 ms) missed"
    late = verdict("c", {"steprun": Latency(0.1, 0.9), "job": Latency(0.2, 0.8)})
    assert late.met is False
    assert "p50 100 ms vs Job 200 ms met; p99 900 ms vs Job 800 ms missed" in late.verdict
    # The Job's p50 is a target even where it is below bare Pods + 30 ms.
    arms = {"steprun": Latency(0.12, 0.2), "job": Latency(0.11, 0.3), "pod": Latency(0.1, 0.3)}
    assert verdict("c", arms).met is False
    assert verdict("c", arms).p50_target == 0.11


def test_without_a_steprun_arm_or_anything_to_compare_nothing_is_judged() -> None:
    assert verdict("c", {"job": Latency(0.1, 0.2)}).met is None
    assert verdict("c", {"steprun": Latency(0.1, 0.2)}).met is None


def test_the_report_has_one_verdict_line_per_configuration() -> None:
    runs = [_result(10, 32), _result(10, 32, repeat=2), _result(None, 32)]
    text = render(4, runs, {"cpus": 2}, {"sizes": "4"}, "x.png")
    section = text.split("## create → Pod at a glance")[1].split("![")[0]
    lines = [line for line in section.splitlines() if line.startswith("- ")]
    assert [line.split(":")[0] for line in lines] == [
        "- 4 at 10/s on kwok, default controller-manager",
        "- 4 at burst on kwok, default controller-manager",
    ]


def test_a_report_renders_again_from_its_json_unchanged(tmp_path: Path) -> None:
    runs = [_result(10, 32), _result(None, 40, pod_delay=0.3)]
    machine, settings = {"cpus": 2, "revision": "abc"}, {"sizes": "4"}
    results, machine_read, settings_read = results_from_json(to_json(runs, machine, settings))
    assert render(4, results, machine_read, settings_read, "x.png") == render(
        4, runs, machine, settings, "x.png"
    )
    report = write(tmp_path, "2026-01-01-4", 4, runs, machine, settings)
    first = report.read_text()
    report.write_text("stale")
    (tmp_path / "latest.md").write_text("stale")

    assert rerender(tmp_path / "2026-01-01-4.json") == report
    assert report.read_text() == first
    assert (tmp_path / "latest.md").read_text() == first, "it was a copy of this report"
    assert (tmp_path / "2026-01-01-4.png").read_bytes()[:4] == b"\x89PNG"
