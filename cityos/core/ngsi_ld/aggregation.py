"""Temporal aggregation of attribute history (NGSI-LD ``options=aggregatedValues``).

Pure functions over arrays: :func:`parse_duration` reads ``aggrPeriodDuration``,
:func:`parse_methods` reads ``aggrMethods`` and :func:`aggregate` folds one series of
(instant, value) pairs into period buckets with NumPy segment reductions.

A bucket is ``[anchor + k * period, anchor + (k + 1) * period)``; the anchor is
``timeAt`` when the query has one, else the first instant of the series. Only buckets
that hold at least one instance are returned. A period of zero (``PT0S``, the NGSI-LD
default) is one bucket over the whole series.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from cityos.core.errors import BadRequestData

#: The NGSI-LD aggregation methods CityOS computes.
METHODS = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq")

_DURATION = re.compile(
    r"^P(?!$)(?:(?P<years>\d+(?:\.\d+)?)Y)?(?:(?P<months>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$")
_MICROS = {"weeks": 604_800_000_000, "days": 86_400_000_000, "hours": 3_600_000_000,
           "minutes": 60_000_000, "seconds": 1_000_000}


def parse_duration(text: str, field: str = "aggrPeriodDuration") -> int:
    """An ISO 8601 duration (``PT1H``, ``PT15M``, ``P1D``, ``P1W``) in microseconds.

    Years and months have no fixed length and are refused; ``PT0S`` gives 0.

    Raises
    ------
    BadRequestData
        Naming ``field`` when ``text`` is not a duration CityOS can use.
    """
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise BadRequestData(f"{field}: {text!r} is not an ISO 8601 duration such as "
                             "PT1H, PT15M or P1D")
    parts = match.groupdict()
    if parts["years"] or parts["months"]:
        raise BadRequestData(f"{field}: {text!r} uses years or months, which have no fixed "
                             "length; use days (P30D) or weeks (P4W)")
    micros = sum(float(parts[name]) * factor for name, factor in _MICROS.items()
                 if parts[name])
    return int(round(micros))


def parse_methods(text: str | None, field: str = "aggrMethods") -> list[str]:
    """The aggregation methods of a comma-separated ``aggrMethods`` value.

    Raises
    ------
    BadRequestData
        When the list is empty or names a method that is not in :data:`METHODS`.
    """
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    if not names:
        raise BadRequestData(f"{field} is required with options=aggregatedValues "
                             f"(any of {', '.join(METHODS)})")
    for name in names:
        if name not in METHODS:
            raise BadRequestData(f"{field}: {name!r} is not one of {', '.join(METHODS)}")
    return list(dict.fromkeys(names))


def aggregate(times_us: Sequence[int], values: Sequence[Any], methods: Sequence[str],
              period_us: int, anchor_us: int | None = None,
              end_us: int | None = None) -> dict[str, list[tuple[Any, int, int]]]:
    """Aggregate one attribute series into period buckets.

    Parameters
    ----------
    times_us : sequence of int
        Instants (microseconds since the epoch) of the instances.
    values : sequence
        The instances' values; numbers take part in sum/avg/min/max/stddev/sumsq,
        anything else counts only in totalCount and distinctCount.
    methods : sequence of str
        Names from :data:`METHODS`.
    period_us : int
        Bucket length; 0 for one bucket over the whole series.
    anchor_us : int, optional
        Where buckets are aligned (``timeAt``); the first instant when omitted. With
        ``period_us`` 0 it is the start of the single bucket.
    end_us : int, optional
        End of the single bucket when ``period_us`` is 0 (``endTimeAt``); the last
        instant when omitted.

    Returns
    -------
    dict
        Method -> list of ``(value, start_us, end_us)`` per non-empty bucket, in time
        order. A numeric method over a bucket with no numbers gives None.
    """
    times = np.asarray(times_us, dtype=np.int64)
    if len(times) != len(values):
        raise ValueError("times_us and values differ in length")
    if times.size == 0:
        return {method: [] for method in methods}
    order = np.argsort(times, kind="stable")
    times = times[order]
    ordered = [values[i] for i in order]
    anchor = int(times[0]) if anchor_us is None else int(anchor_us)
    if period_us > 0:
        buckets = (times - anchor) // period_us
        starts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
        bucket_start = anchor + buckets[starts] * period_us
        bucket_end = bucket_start + period_us
    else:
        starts = np.array([0])
        bucket_start = np.array([anchor])
        bucket_end = np.array([int(end_us) if end_us is not None else int(times[-1])])
    stats = _segment_stats(ordered, starts)
    out: dict[str, list[tuple[Any, int, int]]] = {}
    for method in methods:
        column = stats[method]
        out[method] = [(column[i], int(bucket_start[i]), int(bucket_end[i]))
                       for i in range(len(starts))]
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def _segment_stats(values: list[Any], starts: np.ndarray) -> dict[str, list[Any]]:
    """Every method's result per segment (segments start at ``starts``)."""
    n = len(values)
    numeric = np.array([_is_number(v) for v in values], dtype=bool)
    integral = np.array([isinstance(v, int) and not isinstance(v, bool) for v in values],
                        dtype=bool)
    numbers = np.array([float(v) if ok else np.nan for v, ok in zip(values, numeric, strict=True)],
                       dtype=np.float64)
    zeroed = np.where(numeric, numbers, 0.0)
    total = np.diff(np.r_[starts, n])
    count = np.add.reduceat(numeric.astype(np.int64), starts)
    ints = np.add.reduceat(integral.astype(np.int64), starts)
    sums = np.add.reduceat(zeroed, starts)
    sumsq = np.add.reduceat(zeroed * zeroed, starts)
    mins = np.fmin.reduceat(numbers, starts)
    maxs = np.fmax.reduceat(numbers, starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / count
        segment_of_row = np.repeat(np.arange(len(starts)), total)
        deviation = np.where(numeric, numbers - means[segment_of_row], 0.0)
        squares = np.add.reduceat(deviation * deviation, starts)
        stddev = np.sqrt(squares / (count - 1))  # sample standard deviation
    bounds = np.r_[starts, n]
    distinct = [len({orjson.dumps(v, option=orjson.OPT_SORT_KEYS)
                     for v in values[bounds[i]:bounds[i + 1]]}) for i in range(len(starts))]

    def numbers_of(column: np.ndarray, keep_int: bool) -> list[Any]:
        result: list[Any] = []
        for i, value in enumerate(column.tolist()):
            if count[i] == 0 or not math.isfinite(value):
                result.append(None)
            elif keep_int and ints[i] == count[i] and float(value).is_integer():
                result.append(int(value))
            else:
                result.append(value)
        return result

    return {
        "totalCount": total.tolist(),
        "distinctCount": distinct,
        "sum": numbers_of(sums, True),
        "avg": numbers_of(means, False),
        "min": numbers_of(mins, True),
        "max": numbers_of(maxs, True),
        "stddev": [None if count[i] < 2 else v for i, v in
                   enumerate(numbers_of(stddev, False))],
        "sumsq": numbers_of(sumsq, True),
    }
