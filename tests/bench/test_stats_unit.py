"""The benchmarks' one percentile convention (nearest rank) and their table layouts."""

from __future__ import annotations

import pytest

from netloom.bench.report import key_values, text_table
from netloom.bench.stats import median, percentile, ratio, rounded, summary
from netloom.errors import InvalidInput

pytestmark = pytest.mark.unit


def test_an_empty_list_has_no_percentile_median_or_summary() -> None:
    assert percentile([], 0.5) is None
    assert median([]) is None
    assert summary("x", []) == {"x_p50": None, "x_p99": None, "x_max": None}


def test_one_value_is_every_percentile_of_itself() -> None:
    assert [percentile([7.0], q) for q in (0.0, 0.01, 0.5, 0.99, 1.0)] == [7.0] * 5
    assert median([7.0]) == 7.0


def test_nearest_rank_takes_an_observed_value_never_interpolates() -> None:
    values = [40.0, 10.0, 30.0, 20.0]  # unsorted on purpose
    assert percentile(values, 0.0) == 10.0
    assert percentile(values, 0.25) == 10.0  # ceil(0.25 * 4) = rank 1
    assert percentile(values, 0.26) == 20.0  # rank 2
    assert percentile(values, 0.5) == 20.0  # not 25: no interpolation
    assert percentile(values, 0.99) == 40.0
    assert percentile(values, 1.0) == 40.0
    assert median(values) == 25.0  # the median is the mean of the two middle values
    hundred = [float(v) for v in range(1, 101)]
    assert (percentile(hundred, 0.5), percentile(hundred, 0.9), percentile(hundred, 0.99)) == (
        50.0,
        90.0,
        99.0,
    )


@pytest.mark.parametrize("q", [-0.1, 1.5, 50.0])
def test_a_fraction_outside_zero_to_one_is_refused(q: float) -> None:
    with pytest.raises(InvalidInput):
        percentile([1.0, 2.0], q)


def test_ratio_and_rounding_keep_missing_figures_missing() -> None:
    assert ratio(3.0, 4.0) == 0.75
    assert ratio(None, 4.0) is None and ratio(3.0, None) is None and ratio(3.0, 0.0) is None
    assert rounded(None, 2) is None and rounded(1.23456, 2) == 1.23


def test_summary_rounds_p50_p99_and_max() -> None:
    assert summary("rtt", [1.11111, 2.22222, 3.33333], digits=2) == {
        "rtt_p50": 2.22,
        "rtt_p99": 3.33,
        "rtt_max": 3.33,
    }


def test_text_table_aligns_the_first_column_left_and_the_others_right() -> None:
    assert text_table(["test", "bare"], [["TCP_RR", "9"], ["x", "1,000"]]) == [
        "| test   |  bare |",
        "|--------|-------|",
        "| TCP_RR |     9 |",
        "| x      | 1,000 |",
    ]


def test_key_values_align_the_values() -> None:
    assert key_values([("a", 1), ("long key", "v")]) == "a         1\nlong key  v"
    assert key_values([]) == ""
