"""Temporal aggregation against answers worked out by hand."""

from __future__ import annotations

import math

import pytest

from cityos.core.errors import BadRequestData
from cityos.core.ngsi_ld.aggregation import METHODS, aggregate, parse_duration, parse_methods

MIN = 60_000_000
HOUR = 60 * MIN
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize(("text", "micros"), [
    ("PT1H", HOUR), ("PT15M", 15 * MIN), ("P1D", 24 * HOUR), ("P1W", 7 * 24 * HOUR),
    ("PT0S", 0), ("P1DT2H30M", 26 * HOUR + 30 * MIN), ("PT0.5S", 500_000),
    ("PT90M", 90 * MIN),
])
def test_parse_duration(text, micros):
    assert parse_duration(text) == micros


@pytest.mark.parametrize(("text", "detail"), [
    ("1H", "aggrPeriodDuration: '1H' is not an ISO 8601 duration"),
    ("P", "aggrPeriodDuration: 'P' is not an ISO 8601 duration"),
    ("PT", "aggrPeriodDuration: 'PT' is not an ISO 8601 duration"),
    ("PTXH", "aggrPeriodDuration: 'PTXH' is not an ISO 8601 duration"),
    ("P1M", "aggrPeriodDuration: 'P1M' uses years or months"),
    ("P1Y", "aggrPeriodDuration: 'P1Y' uses years or months"),
])
def test_bad_durations(text, detail):
    with pytest.raises(BadRequestData) as caught:
        parse_duration(text)
    assert caught.value.detail.startswith(detail)


def test_parse_methods():
    assert parse_methods("avg,max,avg") == ["avg", "max"]
    with pytest.raises(BadRequestData, match="aggrMethods: 'median' is not one of"):
        parse_methods("avg,median")
    with pytest.raises(BadRequestData, match="aggrMethods is required"):
        parse_methods(None)


def test_hourly_buckets_aligned_to_an_anchor():
    # 00:00 1, 00:20 2, 00:40 3 | 01:10 4, 01:50 5 | (02:xx none) | 03:00 "x"
    times = [T0, T0 + 20 * MIN, T0 + 40 * MIN, T0 + 70 * MIN, T0 + 110 * MIN, T0 + 3 * HOUR]
    values = [1, 2, 3, 4, 5, "x"]
    out = aggregate(times, values, METHODS, HOUR, anchor_us=T0)
    starts = [T0, T0 + HOUR, T0 + 3 * HOUR]
    assert [b[1] for b in out["totalCount"]] == starts
    assert [b[2] for b in out["totalCount"]] == [s + HOUR for s in starts]
    assert [b[0] for b in out["totalCount"]] == [3, 2, 1]
    assert [b[0] for b in out["distinctCount"]] == [3, 2, 1]
    assert [b[0] for b in out["sum"]] == [6, 9, None]
    assert [b[0] for b in out["avg"]] == [2.0, 4.5, None]
    assert [b[0] for b in out["min"]] == [1, 4, None]
    assert [b[0] for b in out["max"]] == [3, 5, None]
    assert [b[0] for b in out["sumsq"]] == [14, 41, None]
    # sample standard deviation: sqrt(((1-2)^2 + 0 + (3-2)^2) / 2) = 1; sqrt(0.5)
    stddev = [b[0] for b in out["stddev"]]
    assert stddev[0] == pytest.approx(1.0)
    assert stddev[1] == pytest.approx(math.sqrt(0.5))
    assert stddev[2] is None
    assert isinstance(out["sum"][0][0], int) and isinstance(out["avg"][0][0], float)


def test_buckets_align_to_the_first_instant_without_anchor():
    # 15-minute buckets from 00:10: [00:10, 00:25) holds 1.5 and 2.0, [00:40, 00:55) 10
    times = [T0 + 10 * MIN, T0 + 24 * MIN, T0 + 40 * MIN]
    out = aggregate(times, [1.5, 2.0, 10.0], ["sum"], 15 * MIN)
    assert out["sum"] == [(3.5, T0 + 10 * MIN, T0 + 25 * MIN),
                          (10.0, T0 + 40 * MIN, T0 + 55 * MIN)]


def test_anchor_after_the_data_gives_earlier_buckets():
    out = aggregate([T0 - 30 * MIN, T0 - 10 * MIN], [2, 4], ["avg"], HOUR, anchor_us=T0)
    assert out["avg"] == [(3.0, T0 - HOUR, T0)]


def test_zero_period_is_one_bucket_over_the_range():
    times = [T0 + 5 * MIN, T0, T0 + 2 * MIN]  # unsorted on purpose
    out = aggregate(times, [3, 1, 2], ["min", "max", "totalCount"], 0, anchor_us=T0 - MIN,
                    end_us=T0 + HOUR)
    assert out == {"min": [(1, T0 - MIN, T0 + HOUR)], "max": [(3, T0 - MIN, T0 + HOUR)],
                   "totalCount": [(3, T0 - MIN, T0 + HOUR)]}
    open_range = aggregate(times, [3, 1, 2], ["sum"], 0)
    assert open_range == {"sum": [(6, T0, T0 + 5 * MIN)]}


def test_non_numbers_and_empty_series():
    out = aggregate([T0, T0 + 1], [True, {"a": 1}], ["sum", "totalCount", "distinctCount"],
                    HOUR)
    assert out["sum"] == [(None, T0, T0 + HOUR)]
    assert out["totalCount"] == [(2, T0, T0 + HOUR)]
    assert out["distinctCount"] == [(2, T0, T0 + HOUR)]
    assert aggregate([], [], ["avg"], HOUR) == {"avg": []}
