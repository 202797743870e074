from __future__ import annotations

from bench.memory import Point, bytes_per_steprun, listed_so_far


def test_the_per_steprun_figure_is_the_slope_not_the_total_over_the_count() -> None:
    empty = 100 * 10**6
    points = [Point(n, empty + 12_000 * n, 0, 0.0) for n in (0, 1000, 5000, 10000)]
    assert bytes_per_steprun(points) == 12_000


def test_one_size_gives_no_per_steprun_figure() -> None:
    assert bytes_per_steprun([Point(1000, 10**8, 0, 0.0)]) is None


def test_listed_so_far_reads_the_phase_gauge_and_the_queue_adds() -> None:
    metrics = "\n".join(
        [
            "# TYPE steprun_stepruns gauge",
            'steprun_stepruns{phase="Succeeded"} 7.0',
            'steprun_stepruns{phase="Failed"} 2.0',
            "# TYPE steprun_workqueue_adds_total counter",
            "steprun_workqueue_adds_total 15.0",
            "",
        ]
    )
    assert listed_so_far(metrics) == (9, 15)
