from __future__ import annotations

from bench.memory import Point, bytes_per_steprun


def test_the_per_steprun_figure_is_the_slope_not_the_total_over_the_count() -> None:
    empty = 100 * 10**6
    points = [Point(n, empty + 12_000 * n, 0, 0.0) for n in (0, 1000, 5000, 10000)]
    assert bytes_per_steprun(points) == 12_000


def test_one_size_gives_no_per_steprun_figure() -> None:
    assert bytes_per_steprun([Point(1000, 10**8, 0, 0.0)]) is None
