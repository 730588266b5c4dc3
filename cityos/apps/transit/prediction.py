"""Arrival predictions for every downstream stop of a trip, refreshed on every ping.

:class:`ArrivalPredictor` learns from the stored history (:class:`ObservedArrival`)
how long each *segment* (a consecutive pair of stops, shared by every route running
it) takes and how long buses *dwell* at each stop, by time of day (30-minute bins,
interpolated between bin centres) and day type (weekday, Saturday, Sunday or
holiday). The statistics are robust: a median, a mean winsorised at the 10th and 90th
percentiles (the point estimate of a sum of skewed times is the sum of means, not of
medians), and a spread from the interquartile range (of log running times, of
dwell seconds). Where a bin has fewer than ``min_count`` observations the table falls
back to the neighbouring bins, then to the segment's whole day, then to every day
type, and finally, for a segment never seen, to the timetable's running time scaled
by the network's observed-to-scheduled ratio at that time of day.

From a vehicle's progress (the last stop reached, the distance along the shape and
the time) the prediction walks the trip forward: the rest of the current segment,
then dwell + running time of each following segment, with the clock carried forward
so that each segment is costed at the time of day it will be travelled in (two
passes: the first clock is the timetable shifted by the current schedule deviation,
the second the first pass's predictions). Everything is a few NumPy gathers and
cumulative sums over the downstream stops: about a hundred microseconds per trip.

Live against historical: a Kalman filter per vehicle estimates how much slower or
faster than history this bus runs, as a log ratio of running times with two parts:
a persistent part ``b`` (this vehicle and driver today, carried to its next trip)
and a transient part ``u`` (the traffic it is in now) that fades along the route as
an AR(1) process, ``phi`` per segment. Each ping far enough from a stop gives a
measurement: the log ratio of the time taken since the previous measurement to the
historical time for the same stretch. The variances of ``b``, ``u`` and of the
independent noise per segment, and ``phi``, are learnt from the autocovariance of
the residuals of the training history along trips; the noise of each segment is
scaled by its own historical variance in that time bin. Predictions combine the
filter's ratio (``b`` plus ``u`` decayed to each segment) with the historical times,
so the current deviation from history is carried forward and decays with the
distance ahead. The interval (10 %-90 % by default) comes from the accumulated
variance of the remaining time (filter uncertainty, AR innovations, independent
noise), lognormal so that it is wider on the late side.

The schedule deviation itself enters three ways: the bus's position now (where the
prediction starts from), the clock used to pick historical bins, and the first stop
of a trip, which a bus leaves no earlier than its scheduled departure.
"""

from __future__ import annotations

import json
import math
import warnings
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cityos.apps.transit.models import (
    ArrivalPrediction,
    Feed,
    ObservedArrival,
    service_day_origin,
)

__all__ = [
    "DAY_TYPES",
    "ArrivalPredictor",
    "ErrorModel",
    "Progress",
    "StopForecast",
    "day_type",
]

#: Day types of the historical tables (index 0, 1, 2).
DAY_TYPES = ("weekday", "saturday", "sunday_holiday")
BIN_S = 1800.0  # time-of-day bin
N_BINS = 60  # 0 .. 30 h of GTFS time (trips after midnight run past 24 h)
AT_STOP_M = 30.0  # within this of a stop a bus may be dwelling: no speed measurement
#: A bus this close to the first stop is still there: GPS jitter of a standing bus
#: ratchets monotonic progress forward by a few sigma, and calling a bus that has
#: just left "at the stop" costs only the seconds of those metres.
AT_FIRST_STOP_M = 60.0
CLOCK_TOLERANCE_S = 120.0  # second pass of the clock only when the first was off more
MIN_WINDOW_S = 45.0  # historical seconds a speed measurement spans at least
Z90 = 1.2815515655446004  # standard normal 90th percentile
FORMAT_VERSION = 1
#: Step of the interval's self-calibration (adaptive conformal inference): the log of
#: the spread factor moves by this x (missed - expected miss rate) per scored interval.
CALIBRATION_STEP = 0.005
#: Intervals scored against the arrivals the vehicle's pings show: from this far ahead
#: (a stop passage is known to a ping interval) to this far.
CALIBRATION_HORIZONS_S = (120.0, 1800.0)
#: A stop passage is timed (interpolated between two positions) only when they are at
#: most this far apart in time: across a GPS outage it is not known well enough.
CALIBRATION_MAX_GAP_S = 60.0


def day_type(feed: Feed | None, day: date) -> int:
    """Index into :data:`DAY_TYPES` of a service date.

    A weekday on which a weekend-only service is added (a public holiday running the
    Sunday timetable) counts as a Sunday.

    Parameters
    ----------
    feed : Feed or None
        Its calendars tell the holidays; None: by the day of the week only.
    day : date
    """
    weekday = day.weekday()
    if weekday == 5:
        return 1
    if weekday == 6:
        return 2
    if feed is not None:
        for calendar in feed.calendars.values():
            if day in calendar.added and not any(calendar.weekdays[:5]) \
                    and any(calendar.weekdays[5:]):
                return 2
    return 0


class Progress(NamedTuple):
    """Where a vehicle is on its trip."""

    stop_sequence: int | None  # the last stop reached (None: not at the first yet)
    dist_m: float  # distance along the trip's shape
    t: float  # POSIX seconds


@dataclass
class ErrorModel:
    """How a trip's running times deviate from history (log ratios per segment).

    ``log(actual / historical)`` of segment ``i`` of a trip is ``b + u_i + e_i``:
    ``b`` persists for the vehicle (variance ``var_b``), ``u`` is AR(1) along the trip
    (``u_i = phi u_{i-1} + w_i``, stationary variance ``var_u``), ``e`` independent
    (variance ``var_e``).
    """

    var_b: float = 0.004
    var_u: float = 0.02
    phi: float = 0.6
    var_e: float = 0.02
    drift_b: float = 1e-5  # growth of var_b per segment (a vehicle's day changes slowly)

    @property
    def total(self) -> float:
        return self.var_b + self.var_u + self.var_e


@dataclass
class StopForecast:
    """Predictions for the downstream stops of one trip, as arrays.

    ``first`` is the index (in the trip's stop order) of the first predicted stop;
    element ``i`` of each array belongs to stop ``first + i``.
    """

    trip_id: str
    first: int
    predicted_t: np.ndarray
    lower_t: np.ndarray
    upper_t: np.ndarray
    scheduled_t: np.ndarray
    made_at: float
    deviation_s: float = 0.0  # schedule deviation at the vehicle's position (+ late)


# ====================================================================== statistics
def _group_stats(key: np.ndarray, value: np.ndarray, n_keys: int, log_spread: bool):
    """Per key in ``0..n_keys-1``: count, median, 10/90-winsorised mean and a robust
    spread (IQR / 1.349 of the log values when ``log_spread``, else of the values)."""
    count = np.zeros(n_keys, dtype=np.int64)
    median = np.full(n_keys, np.nan)
    mean = np.full(n_keys, np.nan)
    spread = np.full(n_keys, np.nan)
    if not len(key):
        return count, median, mean, spread
    order = np.lexsort((value, key))
    k, v = key[order], value[order]
    starts = np.flatnonzero(np.concatenate([[True], k[1:] != k[:-1]]))
    n = np.diff(np.concatenate([starts, [len(k)]]))

    def quantile(p: float) -> np.ndarray:
        pos = starts + p * (n - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, starts + n - 1)
        w = pos - lo
        return v[lo] * (1 - w) + v[hi] * w

    groups = k[starts]
    count[groups] = n
    median[groups] = quantile(0.5)
    q10, q90 = quantile(0.1), quantile(0.9)
    clipped = np.clip(v, np.repeat(q10, n), np.repeat(q90, n))
    mean[groups] = np.add.reduceat(clipped, starts) / n
    q25, q75 = quantile(0.25), quantile(0.75)
    if log_spread:
        spread[groups] = (np.log(np.maximum(q75, 1.0)) - np.log(np.maximum(q25, 1.0))) / 1.349
    else:
        spread[groups] = (q75 - q25) / 1.349
    return count, median, mean, spread


def _binned_table(item: np.ndarray, kind: np.ndarray, clock_s: np.ndarray,
                  value: np.ndarray, n_items: int, min_count: int, log_spread: bool):
    """Tables ``(n_items, 3, N_BINS)`` of mean, median and spread with fallbacks:
    the bin, the bin and its neighbours, the day type's whole day, every day."""
    bins = np.clip((clock_s // BIN_S).astype(np.int64), 0, N_BINS - 1)
    shape = (n_items, len(DAY_TYPES), N_BINS)
    size = int(np.prod(shape))
    fine = np.ravel_multi_index((item, kind, bins), shape) if len(item) else \
        np.zeros(0, dtype=np.int64)
    count, median, mean, spread = (a.reshape(shape) for a in _group_stats(
        fine, value, size, log_spread))
    # the bin with its neighbours (90 minutes)
    wide_bins = np.concatenate([np.clip(bins + d, 0, N_BINS - 1) for d in (-1, 0, 1)])
    wide_key = np.ravel_multi_index((np.tile(item, 3), np.tile(kind, 3), wide_bins), shape) \
        if len(item) else np.zeros(0, dtype=np.int64)
    wide = [a.reshape(shape) for a in _group_stats(wide_key, np.tile(value, 3), size,
                                                   log_spread)]
    # the whole day of the day type, then every day type
    day_key = item * len(DAY_TYPES) + kind
    day = [a.reshape(n_items, len(DAY_TYPES), 1) for a in _group_stats(
        day_key, value, n_items * len(DAY_TYPES), log_spread)]
    every = [a.reshape(n_items, 1, 1) for a in _group_stats(item, value, n_items, log_spread)]
    tables = [median, mean, spread]
    used = count.copy()  # observations behind the values now in the tables
    for level in (wide, day, every):
        level_count = np.broadcast_to(level[0], shape)
        coarser = (used < min_count) & (level_count > used)
        for target, source in zip(tables, level[1:], strict=True):
            target[coarser] = np.broadcast_to(source, shape)[coarser]
        used = np.where(coarser, level_count, used)
    return mean, median, spread, count


def _interp_bins(table: np.ndarray, rows: np.ndarray, clock_s: np.ndarray) -> np.ndarray:
    """``table[rows, bin(clock)]`` interpolated linearly between bin centres."""
    position = clock_s / BIN_S - 0.5
    i0 = np.clip(np.floor(position).astype(np.int64), 0, N_BINS - 2)
    w = np.clip(position - i0, 0.0, 1.0)
    return table[rows, i0] * (1.0 - w) + table[rows, i0 + 1] * w


# ======================================================================== trip plans
@dataclass
class _Plan:
    """What the predictor needs of one trip, computed once."""

    trip_id: str
    stop_ids: list[str]
    sequence: np.ndarray
    seq_index: dict[int, int]
    dist_m: np.ndarray
    arrival_s: np.ndarray
    departure_s: np.ndarray
    sched_run_s: np.ndarray  # per segment
    sched_dwell_s: np.ndarray  # per stop
    seg_rows: np.ndarray  # per segment, row of the predictor's tables (sentinel if unknown)
    stop_rows: np.ndarray
    complete: bool = False  # every segment and inner stop has history: no fallbacks


@dataclass
class _Track:
    """The filter of one vehicle, and its position on its current trip."""

    trip_id: str | None = None
    service_date: date | None = None
    state: np.ndarray = field(default_factory=lambda: np.zeros(2))  # b, u
    cov: np.ndarray = field(default_factory=lambda: np.zeros((2, 2)))
    last_t: float = -math.inf
    k: int = -1
    t_reached: float = math.nan  # when stop k was reached
    anchor: tuple[float, float, float] | None = None  # (units, historical s, t)
    timeline: np.ndarray | None = None  # historical arrival at each stop from departure
    run_h: np.ndarray | None = None
    dwell_h: np.ndarray | None = None
    measurements: int = 0
    ended_t: float = math.nan  # when the vehicle reached the last stop of its trip
    at_terminus_t: float = math.nan  # when it was first at the first stop of this one
    # intervals issued on this trip, one forecast per stop reached, to be scored
    # against the arrivals: (made at, index of the first stop, lower, upper)
    issued: list = field(default_factory=list)
    issued_k: int = -2  # the stop reached when the last one was recorded
    last_dist: float = math.nan  # distance along the shape at last_t


def _elapsed_cov(phi: float, h: np.ndarray, var: np.ndarray) -> np.ndarray:
    """Variance of the cumulative sums of ``h_i e_i`` where ``e`` is AR(1) with
    coefficient ``phi`` and ``var(e_i) = var[i]`` (``cov(e_j, e_i) = phi^(j-i) var_i``)."""
    g = h * var
    m = len(h)
    if m == 0:
        return np.zeros(0)
    if phi <= 0.0:
        c = np.zeros(m)
    elif m * -math.log(phi) < 600.0:
        powers = phi ** np.arange(m)
        # c_j = sum_{i<j} phi^(j-i) g_i, an exclusive discounted cumulative sum
        c = powers * np.concatenate([[0.0], np.cumsum(g[:-1] / powers[:-1])]) * 1.0
    else:  # very long trips: a plain loop keeps the powers finite
        c = np.zeros(m)
        for j in range(1, m):
            c[j] = phi * (c[j - 1] + g[j - 1])
    return np.cumsum(h * g + 2.0 * h * c)


# ======================================================================== predictor
class _ArrivalColumns:
    """Observed arrivals held as columns (24 bytes each) and grouped by trip instance.

    :meth:`ArrivalPredictor.learn` reads weeks of history: as columns it holds one
    small row per arrival instead of an object and a list entry, and gives the same
    groups in the same order (a stable sort by stop sequence within each instance),
    so the learned tables do not change.
    """

    __slots__ = ("keys", "run", "seq", "arrival", "departure")

    def __init__(self) -> None:
        self.keys: dict[tuple[date, str, str], int] = {}  # (day, vehicle, trip) -> run
        self.run = array("i")
        self.seq = array("i")
        self.arrival = array("d")
        self.departure = array("d")

    @classmethod
    def of(cls, arrivals: Iterable[ObservedArrival]) -> _ArrivalColumns:
        """The columns of ``arrivals`` (consumed once, in any order)."""
        columns = cls()
        keys = columns.keys
        for a in arrivals:
            key = (a.service_date, a.vehicle_id, a.trip_id)
            run = keys.get(key)
            if run is None:
                run = keys[key] = len(keys)
            columns.run.append(run)
            columns.seq.append(a.stop_sequence)
            columns.arrival.append(a.arrival_t)
            columns.departure.append(a.departure_t)
        return columns

    def groups(self) -> Iterator[tuple[tuple[date, str, str], np.ndarray, np.ndarray,
                                       np.ndarray]]:
        """``(key, stop sequences, arrival times, departure times)`` per trip instance,
        in order of first appearance, each sorted by stop sequence."""
        run = np.frombuffer(self.run, dtype=np.int32) if self.run else np.zeros(0, np.int32)
        seq = np.frombuffer(self.seq, dtype=np.int32) if self.seq else np.zeros(0, np.int32)
        order = np.lexsort((seq, run))  # stable: equal sequences keep their order
        seq = seq[order]
        arrival = np.asarray(self.arrival, dtype=float)[order]
        departure = np.asarray(self.departure, dtype=float)[order]
        bounds = np.searchsorted(run[order], np.arange(len(self.keys) + 1))
        for key, start, end in zip(self.keys, bounds[:-1], bounds[1:], strict=True):
            yield key, seq[start:end], arrival[start:end], departure[start:end]


class ArrivalPredictor:
    """Learn segment running and dwell times from history; predict arrivals live.

    Parameters
    ----------
    min_count : int
        Observations a time bin needs before its own statistics are used.
    interval : (float, float)
        Quantiles of the prediction interval.

    Notes
    -----
    The interval calibrates itself while it predicts: each vehicle's intervals (those
    of the first forecast after each stop it reaches) are scored when it reaches the
    stops they were for, and a spread factor ``interval_scale`` grows after a miss and
    shrinks after a hit so that the share held converges to the interval's coverage
    (adaptive conformal inference, Gibbs and Candes 2021). The error variances alone
    fit replays of recorded stop times but not predictions from live positions, which
    run early (see docs/transit.md).

    Examples
    --------
    >>> predictor = ArrivalPredictor()
    >>> predictor.learn(history, feed)                                  # doctest: +SKIP
    >>> predictor.predict(feed, "1-WD-0-0706", "bus-1-03",
    ...                   (4, 1830.0, now), today, "Asia/Kuala_Lumpur")  # doctest: +SKIP
    """

    def __init__(self, min_count: int = 4, interval: tuple[float, float] = (0.1, 0.9)):
        self.min_count = int(min_count)
        if not 0.0 < interval[0] < 0.5 < interval[1] < 1.0:
            raise ValueError(f"interval: {interval!r} must be two quantiles around 0.5")
        self.interval = (float(interval[0]), float(interval[1]))
        self._z_low = _normal_quantile(self.interval[0])
        self._z_high = _normal_quantile(self.interval[1])
        self.segments: list[tuple[str, str]] = []
        self.stops: list[str] = []
        shape = (1, len(DAY_TYPES), N_BINS)
        # tables: the last row is the sentinel of unknown segments / stops (NaN)
        self.run_mean = np.full(shape, np.nan)
        self.run_median = np.full(shape, np.nan)
        self.run_log_sd = np.full(shape, np.nan)
        self.run_count = np.zeros(shape, dtype=np.int64)
        self.dwell_mean = np.full(shape, np.nan)
        self.dwell_median = np.full(shape, np.nan)
        self.dwell_sd = np.full(shape, np.nan)
        self.dwell_count = np.zeros(shape, dtype=np.int64)
        # network-wide fallbacks by (day type, bin)
        self.schedule_ratio = np.ones((len(DAY_TYPES), N_BINS))
        self.network_log_sd = np.full((len(DAY_TYPES), N_BINS), 0.2)
        self.network_dwell = np.full((len(DAY_TYPES), N_BINS), np.nan)
        self.network_dwell_sd = np.full((len(DAY_TYPES), N_BINS), 10.0)
        self.error = ErrorModel()
        # leaving a trip's first stop: scheduled time + lag, or arrival + turn-round
        self.terminus_lag_s = 0.0
        self.terminus_turnround_s = 0.0
        self.mean_log_var = self.error.var_u + self.error.var_e
        # factor on the interval's log-scale spread, calibrated online (see Notes)
        self.interval_scale = 1.0
        self._reindex()
        self._plans: dict[str, _Plan] = {}
        self._plans_feed: Feed | None = None
        self._tracks: dict[str, _Track] = {}
        self._origins: dict[tuple[date, str], float] = {}
        self._day_types: dict[date, int] = {}

    # ---------------------------------------------------------------- learning
    def _reindex(self) -> None:
        self._segment_row = {s: i for i, s in enumerate(self.segments)}
        self._stop_row = {s: i for i, s in enumerate(self.stops)}
        # per day type, (row, bin, [mean, spread]) contiguous: one gather per lookup
        self._run_lookup = np.ascontiguousarray(
            np.stack([self.run_mean, self.run_log_sd], axis=-1).transpose(1, 0, 2, 3))
        self._dwell_lookup = np.ascontiguousarray(
            np.stack([self.dwell_mean, self.dwell_sd], axis=-1).transpose(1, 0, 2, 3))

    @property
    def fitted(self) -> bool:
        """True once :meth:`learn` or :meth:`load` gave it history."""
        return bool(self.segments)

    def learn(self, arrivals: Iterable[ObservedArrival], feed: Feed,
              timezone: str | None = None) -> ArrivalPredictor:
        """Learn running times, dwell times and the error structure from history.

        Parameters
        ----------
        arrivals : iterable of ObservedArrival
            Observed arrivals and departures of past trips (any order). Pairs of
            consecutive stops of a trip in ``feed`` make the segments.
        feed : Feed
            The timetable the arrivals ran on.
        timezone : str, optional
            The agency's; defaults to the feed's first agency.

        Returns
        -------
        ArrivalPredictor
            ``self``, replacing what it had learnt before.
        """
        tz = self._timezone(feed, timezone)
        self._use_feed(feed)
        runs = _ArrivalColumns.of(arrivals)
        run_parts: list[tuple] = []  # (segment ids, kind, clock, run)
        dwell_parts: list[tuple] = []
        sched_ratio_parts: list[tuple] = []
        pieces = []  # per trip instance, for the error structure
        segment_ids: dict[tuple[str, str], int] = {}
        stop_ids: dict[str, int] = {}
        for (day, _vehicle, trip_id), seqs, arr, dep in runs.groups():
            if trip_id not in feed.trips:
                continue
            plan = self._plan(feed, trip_id)
            index = np.array([plan.seq_index.get(seq, -1) for seq in seqs.tolist()],
                             dtype=np.int64)
            keep = index >= 0
            if keep.sum() < 2:
                continue
            order = np.argsort(index[keep], kind="stable")  # along the trip's plan
            index, arr, dep = index[keep][order], arr[keep][order], dep[keep][order]
            origin = self._origin(day, tz)
            kind = self._day_type(feed, day)
            # consecutive stops of the trip: a segment each
            pair = np.flatnonzero(np.diff(index) == 1)
            run = arr[pair + 1] - dep[pair]
            ok = np.isfinite(run) & (run > 0)
            pair = pair[ok]
            segs = []
            for i in index[pair].tolist():
                key = (plan.stop_ids[i], plan.stop_ids[i + 1])
                segs.append(segment_ids.setdefault(key, len(segment_ids)))
            segs = np.array(segs, dtype=np.int64)
            clock = dep[pair] - origin
            run_parts.append((segs, np.full(len(pair), kind), clock, run[ok]))
            sched = plan.sched_run_s[index[pair]]
            good = sched > 0
            sched_ratio_parts.append((np.full(int(good.sum()), kind), clock[good],
                                      run[ok][good] / sched[good]))
            # dwell at the stops between the first and the last
            inner = (index > 0) & (index < len(plan.stop_ids) - 1)
            dwell = dep[inner] - arr[inner]
            fine = np.isfinite(dwell) & (dwell >= 0)
            ids = np.array([stop_ids.setdefault(plan.stop_ids[i], len(stop_ids))
                            for i in index[inner][fine].tolist()], dtype=np.int64)
            dwell_parts.append((ids, np.full(len(ids), kind),
                                arr[inner][fine] - origin, dwell[fine]))
            pieces.append((trip_id, kind, index, arr, dep, origin, day, _vehicle,
                           len(plan.stop_ids), float(plan.departure_s[0])))

        def joined(parts, i, dtype=float):
            return np.concatenate([p[i] for p in parts]).astype(dtype) if parts else \
                np.zeros(0, dtype=dtype)

        self.segments = list(segment_ids)
        self.stops = list(stop_ids)
        n_seg, n_stop = len(self.segments), len(self.stops)
        mean, median, spread, count = _binned_table(
            joined(run_parts, 0, np.int64), joined(run_parts, 1, np.int64),
            joined(run_parts, 2), joined(run_parts, 3), n_seg, self.min_count, True)
        self.run_mean, self.run_median, self.run_log_sd, self.run_count = (
            _with_sentinel(a) for a in (mean, median, spread, count))
        mean, median, spread, count = _binned_table(
            joined(dwell_parts, 0, np.int64), joined(dwell_parts, 1, np.int64),
            joined(dwell_parts, 2), joined(dwell_parts, 3), n_stop, self.min_count, False)
        self.dwell_mean, self.dwell_median, self.dwell_sd, self.dwell_count = (
            _with_sentinel(a) for a in (mean, median, spread, count))
        # network-wide: timetable ratio, running-time spread and dwell by (day type, bin)
        kinds = joined(sched_ratio_parts, 0, np.int64)
        ratio = _binned_table(np.zeros(len(kinds), np.int64), kinds,
                              joined(sched_ratio_parts, 1),
                              joined(sched_ratio_parts, 2), 1, self.min_count, True)[1][0]
        self.schedule_ratio = np.where(np.isfinite(ratio), ratio, 1.0)
        with warnings.catch_warnings():  # bins no segment has data for: NaN, filled below
            warnings.simplefilter("ignore", RuntimeWarning)
            sd = np.nanmedian(self.run_log_sd[:-1], axis=0) if n_seg else \
                np.full((len(DAY_TYPES), N_BINS), np.nan)
        overall = float(np.nanmedian(sd)) if np.isfinite(sd).any() else 0.2
        self.network_log_sd = np.where(np.isfinite(sd), sd, overall)
        dwell_kind = joined(dwell_parts, 1, np.int64)
        net = _binned_table(np.zeros(len(dwell_kind), np.int64), dwell_kind,
                            joined(dwell_parts, 2), joined(dwell_parts, 3), 1,
                            self.min_count, False)
        self.network_dwell = net[0][0]
        dwell_sd = net[2][0]
        self.network_dwell_sd = np.where(np.isfinite(dwell_sd), dwell_sd, 10.0)
        self._reindex()
        self._plans.clear()
        self._tracks.clear()
        self._learn_errors(feed, pieces)
        self._learn_terminus(pieces)
        return self

    def _learn_terminus(self, pieces: list) -> None:
        """How buses leave the first stop of a trip: a usual lag after the scheduled
        departure when they were there in time, else a least turn-round after the
        arrival of their previous trip (recovery time, boarding)."""
        chains: dict[tuple, list] = {}
        for piece in pieces:
            chains.setdefault((piece[6], piece[7]), []).append(piece)
        lags, turns = [], []
        for chain in chains.values():
            chain.sort(key=lambda piece: piece[4][0])
            for before, after in zip(chain, chain[1:], strict=False):
                _, _, index, arr, _, _, _, _, n_before, _ = before
                _, _, index_after, _, dep_after, origin, _, _, _, sched_dep = after
                if index[-1] != n_before - 1 or index_after[0] != 0:
                    continue
                end, leave = arr[-1], dep_after[0]
                slack = origin + sched_dep - end
                lag = leave - (origin + sched_dep)
                turns.append((slack, lag, leave - end))
                if slack > 300.0:
                    lags.append(lag)
        if not turns:
            return
        lag = float(np.median(lags)) if lags else 0.0
        late = [turn for slack, gap, turn in turns if gap > max(lag, 0.0) + 30.0]
        self.terminus_lag_s = lag
        self.terminus_turnround_s = float(np.median(late)) if len(late) >= 3 else 0.0

    def _learn_errors(self, feed: Feed, pieces: list) -> None:
        """Fit :class:`ErrorModel` to the autocovariance of the log residuals of the
        segments (dwell + run) of each trip of the history."""
        residuals = []
        log_vars = []
        for trip_id, kind, index, arr, dep, origin, *_ in pieces:
            plan = self._plan(feed, trip_id)
            # contiguous runs of stops
            breaks = np.flatnonzero(np.diff(index) != 1) + 1
            for part in np.split(np.arange(len(index)), breaks):
                if len(part) < 3:
                    continue
                idx = index[part]
                seg = idx[:-1]
                clock = arr[part][:-1] - origin
                run_h, dwell_h, run_var, dwell_var = self._historical(plan, kind, seg, clock)
                dwell_h = np.where(seg == 0, 0.0, dwell_h)
                dwell_var = np.where(seg == 0, 0.0, dwell_var)
                actual = np.where(seg == 0, arr[part][1:] - dep[part][:-1],
                                  np.diff(arr[part]))
                expected = run_h + dwell_h
                good = (actual > 0) & (expected > 0)
                if good.sum() < 3:
                    continue
                r = np.log(actual[good] / expected[good])
                residuals.append(r)
                log_vars.append((run_var + dwell_var)[good] / expected[good] ** 2)
        if not residuals:
            return
        pooled = np.concatenate(residuals)
        centre = float(np.median(pooled))
        max_lag = 12
        sums = np.zeros(max_lag + 1)
        counts = np.zeros(max_lag + 1)
        for r in residuals:
            # clip the odd wild segment (a breakdown) so that it does not rule the fit
            r = np.clip(r - centre, -1.0, 1.0)
            for lag in range(min(max_lag, len(r) - 1) + 1):
                sums[lag] += float(np.dot(r[: len(r) - lag], r[lag:]))
                counts[lag] += len(r) - lag
        cov = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        far = cov[8:][np.isfinite(cov[8:])]
        var_b = max(float(np.mean(far)) if len(far) else 0.0, 1e-4)
        c1, c2 = cov[1] - var_b, cov[2] - var_b
        phi = float(np.clip(c2 / c1, 0.2, 0.95)) if np.isfinite(c2) and c1 > 1e-6 else 0.5
        var_u = max(c1 / phi if np.isfinite(c1) else 0.0, 1e-4)
        var_e = max(float(cov[0]) - var_b - var_u, 1e-4)
        self.error = ErrorModel(var_b=var_b, var_u=var_u, phi=phi, var_e=var_e)
        self.mean_log_var = float(np.mean(np.concatenate(log_vars))) or 1e-3

    # -------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write what was learnt to ``path`` (NumPy ``.npz``); :meth:`load` reads it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"version": FORMAT_VERSION, "segments": self.segments, "stops": self.stops,
                "error": asdict(self.error), "mean_log_var": self.mean_log_var,
                "interval_scale": self.interval_scale,
                "terminus_lag_s": self.terminus_lag_s,
                "terminus_turnround_s": self.terminus_turnround_s,
                "min_count": self.min_count, "interval": list(self.interval),
                "bin_s": BIN_S, "n_bins": N_BINS, "day_types": list(DAY_TYPES)}
        with path.open("wb") as handle:
            np.savez_compressed(handle, meta=np.array(json.dumps(meta)),
                                **{name: getattr(self, name) for name in _TABLES})
        return path

    @classmethod
    def load(cls, path: str | Path) -> ArrivalPredictor:
        """A predictor with what :meth:`save` wrote; ValueError naming what is wrong."""
        with np.load(Path(path), allow_pickle=False) as data:
            if "meta" not in data:
                raise ValueError(f"{path}: not an arrival predictor file (no meta)")
            meta = json.loads(str(data["meta"]))
            if meta.get("version") != FORMAT_VERSION or meta.get("n_bins") != N_BINS \
                    or meta.get("bin_s") != BIN_S:
                raise ValueError(f"{path}: version/bins {meta.get('version')}/"
                                 f"{meta.get('n_bins')} not supported")
            predictor = cls(meta["min_count"], tuple(meta["interval"]))
            for name in _TABLES:
                if name not in data:
                    raise ValueError(f"{path}: table {name} missing")
                setattr(predictor, name, np.array(data[name]))
        predictor.segments = [tuple(s) for s in meta["segments"]]
        predictor.stops = list(meta["stops"])
        predictor.error = ErrorModel(**meta["error"])
        predictor.mean_log_var = float(meta["mean_log_var"])
        predictor.interval_scale = float(meta.get("interval_scale", 1.0))
        predictor.terminus_lag_s = float(meta.get("terminus_lag_s", 0.0))
        predictor.terminus_turnround_s = float(meta.get("terminus_turnround_s", 0.0))
        if predictor.run_mean.shape[0] != len(predictor.segments) + 1 or \
                predictor.dwell_mean.shape[0] != len(predictor.stops) + 1:
            raise ValueError(f"{path}: tables do not match the segment and stop lists")
        predictor._reindex()
        return predictor

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def _timezone(feed: Feed, timezone: str | None) -> str:
        if timezone:
            return timezone
        agency = next(iter(feed.agencies.values()), None)
        return agency.timezone if agency and agency.timezone else "UTC"

    def _origin(self, day: date, timezone: str) -> float:
        key = (day, timezone)
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = service_day_origin(day, timezone)
        return origin

    def _day_type(self, feed: Feed, day: date) -> int:
        kind = self._day_types.get(day)
        if kind is None:
            kind = self._day_types[day] = day_type(feed, day)
        return kind

    def _use_feed(self, feed: Feed) -> None:
        if feed is not self._plans_feed:
            self._plans = {}
            self._plans_feed = feed
            self._day_types = {}

    def _plan(self, feed: Feed, trip_id: str) -> _Plan:
        plan = self._plans.get(trip_id)
        if plan is not None:
            return plan
        if trip_id not in feed.trips:
            raise KeyError(f"trip_id: {trip_id!r} is not in the feed")
        schedule = feed.schedule(trip_id)
        n = len(schedule)
        if n < 2:
            raise ValueError(f"trip_id: {trip_id!r} has fewer than two stop times")
        dist = np.asarray(schedule.shape_dist_m, dtype=float)
        if not np.all(np.isfinite(dist)) or np.any(np.diff(dist) < 0):
            dist = _stop_distances(feed, schedule.stop_ids)
        arrival = np.asarray(schedule.arrival_s, dtype=float)
        departure = np.asarray(schedule.departure_s, dtype=float)
        seg_sentinel, stop_sentinel = len(self.segments), len(self.stops)
        seg_rows = np.array([self._segment_row.get((a, b), seg_sentinel) for a, b in
                             zip(schedule.stop_ids, schedule.stop_ids[1:], strict=False)],
                            dtype=np.int64)
        stop_rows = np.array([self._stop_row.get(s, stop_sentinel) for s in schedule.stop_ids],
                             dtype=np.int64)
        sequence = np.asarray(schedule.stop_sequence, dtype=np.int64)
        complete = bool(self.segments) and bool((seg_rows < seg_sentinel).all()) \
            and bool((stop_rows[1:-1] < stop_sentinel).all())
        if complete and stop_rows[0] == stop_sentinel:
            stop_rows[0] = 0  # dwell at the first stop is never used: any row will do
        plan = _Plan(trip_id, list(schedule.stop_ids), sequence,
                     {int(s): i for i, s in enumerate(sequence.tolist())}, dist, arrival,
                     departure, np.maximum(arrival[1:] - departure[:-1], 0.0),
                     np.maximum(departure - arrival, 0.0), seg_rows, stop_rows, complete)
        self._plans[trip_id] = plan
        return plan

    def _historical(self, plan: _Plan, kind: int, seg: np.ndarray, clock_s: np.ndarray):
        """Historical mean run (s), mean dwell at the segment's first stop (s) and
        their variances (s^2) for segments ``seg`` of ``plan`` started at ``clock_s``."""
        if plan.complete:
            position = clock_s * (1.0 / BIN_S) - 0.5
            i0 = np.minimum(np.maximum(np.floor(position), 0.0), N_BINS - 2).astype(np.int64)
            w = np.minimum(np.maximum(position - i0, 0.0), 1.0)[:, None]
            table = self._run_lookup[kind]
            rows = plan.seg_rows[seg]
            lo, hi = table[rows, i0], table[rows, i0 + 1]
            run = lo + (hi - lo) * w
            table = self._dwell_lookup[kind]
            rows = plan.stop_rows[seg]
            lo, hi = table[rows, i0], table[rows, i0 + 1]
            dwell = lo + (hi - lo) * w
            return (run[:, 0], dwell[:, 0], (run[:, 0] * run[:, 1]) ** 2, dwell[:, 1] ** 2)
        rows = plan.seg_rows[seg]
        run = _interp_bins(self.run_mean[:, kind], rows, clock_s)
        log_sd = _interp_bins(self.run_log_sd[:, kind], rows, clock_s)
        stops = plan.stop_rows[seg]
        dwell = _interp_bins(self.dwell_mean[:, kind], stops, clock_s)
        dwell_sd = _interp_bins(self.dwell_sd[:, kind], stops, clock_s)
        unknown_run = ~np.isfinite(run)
        if unknown_run.any():
            ratio = _interp_bins(self.schedule_ratio[kind][None, :],
                                 np.zeros(len(seg), np.int64), clock_s)
            run = np.where(unknown_run, plan.sched_run_s[seg] * ratio, run)
        unknown_sd = ~np.isfinite(log_sd)
        if unknown_sd.any():
            net = _interp_bins(self.network_log_sd[kind][None, :],
                               np.zeros(len(seg), np.int64), clock_s)
            log_sd = np.where(unknown_sd, net, log_sd)
        unknown_dwell = ~np.isfinite(dwell)
        if unknown_dwell.any():
            net = _interp_bins(self.network_dwell[kind][None, :],
                               np.zeros(len(seg), np.int64), clock_s)
            net = np.where(np.isfinite(net), net, plan.sched_dwell_s[seg])
            dwell = np.where(unknown_dwell, net, dwell)
        unknown_dwell_sd = ~np.isfinite(dwell_sd)
        if unknown_dwell_sd.any():
            net = _interp_bins(self.network_dwell_sd[kind][None, :],
                               np.zeros(len(seg), np.int64), clock_s)
            dwell_sd = np.where(unknown_dwell_sd, net, dwell_sd)
        return run, dwell, (run * log_sd) ** 2, dwell_sd ** 2

    # -------------------------------------------------------------- live filter
    def forget(self, vehicle_id: str | None = None) -> None:
        """Drop a vehicle's filter (it left service); every vehicle's when None."""
        if vehicle_id is None:
            self._tracks.clear()
        else:
            self._tracks.pop(vehicle_id, None)

    def _track(self, vehicle_id: str, trip_id: str, service_date: date) -> _Track:
        track = self._tracks.get(vehicle_id)
        err = self.error
        if track is None or track.service_date != service_date:
            track = self._tracks[vehicle_id] = _Track()
            track.cov = np.diag([err.var_b, err.var_u])
        if track.trip_id != trip_id:
            # a new trip: keep what was learnt of the vehicle, the traffic starts afresh
            cov = track.cov
            track.trip_id, track.service_date = trip_id, service_date
            track.state = np.array([track.state[0], 0.0])
            track.cov = np.array([[cov[0, 0] + 10 * err.drift_b, 0.0], [0.0, err.var_u]])
            track.last_t, track.k, track.t_reached = -math.inf, -1, math.nan
            track.anchor, track.timeline, track.measurements = None, None, 0
            track.at_terminus_t, track.ended_t = track.ended_t, math.nan
            track.issued, track.issued_k = [], -2
        return track

    def _locate(self, plan: _Plan, progress) -> tuple[int, float, float, bool]:
        """(k, fraction of segment k travelled, distance, at a stop) of a progress."""
        sequence, dist, _t = progress
        d = plan.dist_m
        n = len(d)
        k = plan.seq_index.get(int(sequence), -1) if sequence is not None else -1
        if not math.isfinite(dist):
            dist = float(d[max(k, 0)])
        by_dist = int(np.searchsorted(d, dist + AT_STOP_M, side="right")) - 1
        k = min(max(k, by_dist, 0), n - 1)
        if k >= n - 1:
            return n - 1, 1.0, dist, True
        length = d[k + 1] - d[k]
        fraction = float(np.clip((dist - d[k]) / length, 0.0, 1.0)) if length > 0 else 1.0
        at_stop = abs(dist - d[k]) < (AT_FIRST_STOP_M if k == 0 else AT_STOP_M)
        return k, fraction, dist, at_stop

    def _timeline(self, plan: _Plan, track: _Track, kind: int, delay: float) -> None:
        n = len(plan.stop_ids)
        seg = np.arange(n - 1)
        run, dwell, _, _ = self._historical(plan, kind, seg, plan.arrival_s[:-1] + delay)
        dwell = np.where(seg == 0, 0.0, dwell)
        track.run_h, track.dwell_h = run, dwell
        track.timeline = np.concatenate([[0.0], np.cumsum(run + dwell)])

    def _measure(self, track: _Track, k: int, fraction: float, t: float) -> None:
        """One speed measurement: time since the anchor over the historical time."""
        units = k + fraction
        historical = track.timeline[k] + track.dwell_h[k] + fraction * track.run_h[k]
        if track.anchor is None:
            track.anchor = (units, historical, t)
            return
        a_units, a_hist, a_t = track.anchor
        window = historical - a_hist
        if window < MIN_WINDOW_S or t <= a_t:
            return
        err = self.error
        delta = max(units - a_units, 1e-3)
        # predict: b keeps, u fades along the route
        fade = err.phi ** delta
        F = np.array([[1.0, 0.0], [0.0, fade]])
        Q = np.array([[err.drift_b * delta, 0.0], [0.0, err.var_u * (1.0 - fade * fade)]])
        state = F @ track.state
        cov = F @ track.cov @ F.T + Q
        # measure z = b + u + noise; the independent noise averages over the window;
        # GPS error (~10 m each end at ~6 m/s) adds a little on short windows
        z = math.log((t - a_t) / window)
        R = err.var_e / max(delta, 0.25) + 2.0 * (10.0 / 6.0) ** 2 / window ** 2
        H = np.array([1.0, 1.0])
        S = float(H @ cov @ H) + R
        innovation = z - float(H @ state)
        limit = 3.0 * math.sqrt(S)  # a GPS glitch or a breakdown: bounded influence
        innovation = max(-limit, min(limit, innovation))
        gain = cov @ H / S
        track.state = state + gain * innovation
        track.cov = cov - np.outer(gain, H @ cov)
        track.anchor = (units, historical, t)
        track.measurements += 1

    # ---------------------------------------------------------------- predicting
    def _update(self, feed: Feed, trip_id: str, vehicle_id: str, progress,
                service_date: date, timezone: str | None):
        """Locate the vehicle on its trip and feed its filter (once per new time)."""
        self._use_feed(feed)
        plan = self._plan(feed, trip_id)
        tz = self._timezone(feed, timezone)
        origin = self._origin(service_date, tz)
        kind = self._day_type(feed, service_date)
        t = float(progress[2])
        if not math.isfinite(t):
            raise ValueError(f"progress: time {progress[2]!r} is not a finite number")
        k, fraction, dist, at_stop = self._locate(plan, progress)
        n = len(plan.stop_ids)
        # schedule deviation at the vehicle's position (a bus waiting at its first
        # stop is not late before its departure time)
        if at_stop:
            scheduled_here = plan.departure_s[k]
        else:
            scheduled_here = plan.departure_s[k] + fraction * plan.sched_run_s[k]
        deviation = t - origin - scheduled_here
        if k == 0 and at_stop:
            deviation = max(deviation, 0.0)
        track = self._track(vehicle_id, trip_id, service_date)
        if track.timeline is None:
            self._timeline(plan, track, kind, deviation)
        if t > track.last_t:
            if k > track.k:
                if track.issued:
                    self._score_intervals(track, plan, k, dist, t)
                track.k, track.t_reached = k, t
                if k == n - 1:
                    track.ended_t = t
            if k == 0 and at_stop and not math.isfinite(track.at_terminus_t):
                track.at_terminus_t = t
            near_next = k + 1 < n and plan.dist_m[k + 1] - dist < AT_STOP_M
            if not at_stop and not near_next and k < n - 1:
                self._measure(track, k, fraction, t)
            track.last_t, track.last_dist = t, dist
        return plan, track, origin, kind, t, k, fraction, at_stop, deviation

    def _score_intervals(self, track: _Track, plan: _Plan, k: int, dist: float,
                         t: float) -> None:
        """Score the intervals issued for the stops passed since the last position (up
        to stop ``k``, the vehicle now at ``dist`` at ``t``); move the spread factor."""
        gap = t - track.last_t
        if not (0.0 < gap <= CALIBRATION_MAX_GAP_S) or not dist > track.last_dist:
            track.issued = [r for r in track.issued if r[1] + len(r[2]) - 1 > k]
            return
        low_h, high_h = CALIBRATION_HORIZONS_S
        expected_miss = 1.0 - (self.interval[1] - self.interval[0])
        step = 0.0
        for j in range(max(track.k + 1, 0), k + 1):
            # when the vehicle passed stop j, between its last position and this one
            share = (plan.dist_m[j] - track.last_dist) / (dist - track.last_dist)
            passed = track.last_t + min(max(share, 0.0), 1.0) * gap
            for made, first, lower, upper in track.issued:
                i = j - first
                if 0 <= i < len(lower) and low_h <= passed - made <= high_h:
                    missed = not lower[i] <= passed <= upper[i]
                    step += CALIBRATION_STEP * (missed - expected_miss)
        track.issued = [r for r in track.issued if r[1] + len(r[2]) - 1 > k]
        if step:
            self.interval_scale = float(np.clip(self.interval_scale * math.exp(step),
                                                0.5, 4.0))

    def observe(self, feed: Feed, trip_id: str, vehicle_id: str, progress,
                service_date: date, timezone: str | None = None) -> None:
        """Update the vehicle's filter with a progress without predicting.

        Parameters are those of :meth:`predict`.
        """
        self._update(feed, trip_id, vehicle_id, progress, service_date, timezone)

    def forecast(self, feed: Feed, trip_id: str, vehicle_id: str, progress,
                 service_date: date, timezone: str | None = None,
                 now: float | None = None) -> StopForecast:
        """:meth:`predict` as arrays (cheaper for a server or an evaluation).

        Updates the vehicle's filter with ``progress`` first (a progress not newer
        than the last one seen only predicts).
        """
        plan, track, origin, kind, t, k, fraction, at_stop, delay = self._update(
            feed, trip_id, vehicle_id, progress, service_date, timezone)
        now = t if now is None else float(now)
        n = len(plan.stop_ids)
        first = k + 1
        if first >= n:
            empty = np.zeros(0)
            return StopForecast(trip_id, n, empty, empty, empty, empty, now, delay)
        seg = np.arange(k, n - 1)
        err = self.error
        b, u = float(track.state[0]), float(track.state[1])
        # start: leaving the first stop no earlier than scheduled, else from here;
        # the segment under way counts only its part still ahead
        remaining = np.ones(len(seg))
        dwelt = math.inf  # how long the bus has stood at stop k (inf: it has left)
        if k == 0 and at_stop:
            start = max(origin + plan.departure_s[0] + self.terminus_lag_s, t)
            if math.isfinite(track.at_terminus_t):
                start = max(start, track.at_terminus_t + self.terminus_turnround_s)
        else:
            start = t
            remaining[0] = 1.0 - fraction
            if at_stop:
                dwelt = t - track.t_reached
        units_here = k + fraction
        ahead = seg + 0.5 - units_here
        ahead[0] = 0.5 * remaining[0]
        fade = err.phi ** ahead
        ratio = np.exp(b + u * fade)
        clock = plan.arrival_s[seg] + delay
        for _ in range(2):  # carry the clock forward: each segment at its own time
            run, dwell, run_var, dwell_var = self._historical(plan, kind, seg, clock)
            dwell[seg == 0] = 0.0
            dwell_var[seg == 0] = 0.0
            # at the stop: what is left of the usual dwell; on the way: none
            dwell[0] = max(dwell[0] - dwelt, 0.0) if math.isfinite(dwelt) else 0.0
            if dwell[0] == 0.0:
                dwell_var[0] = 0.0
            h = (dwell + remaining * run) * ratio
            arrive = start + np.cumsum(h)
            previous = clock
            clock = np.concatenate([[start - origin], arrive[:-1] - origin])
            if np.abs(clock - previous).max() < CLOCK_TOLERANCE_S:
                break  # a minute or two moves a 30-minute bin's value by next to nothing
        # variance of the remaining time to each stop
        scale = np.clip((run_var * remaining ** 2 + dwell_var) / np.maximum(h, 1.0) ** 2
                        / self.mean_log_var, 0.25, 4.0)
        total_h = np.cumsum(h)
        faded_h = np.cumsum(h * fade)
        cov = track.cov
        var = total_h ** 2 * cov[0, 0] + faded_h ** 2 * cov[1, 1] \
            + 2.0 * total_h * faded_h * cov[0, 1]
        innovations = err.var_u * (1.0 - fade ** 2) * scale
        var = var + _elapsed_cov(err.phi, h, innovations)
        var = var + np.cumsum(h ** 2 * err.var_e * scale / np.maximum(remaining, 0.05))
        left = np.maximum(arrive - now, 1.0)
        sigma = np.sqrt(np.log1p(var / left ** 2)) * self.interval_scale
        predicted = np.maximum(arrive, now)
        lower = now + left * np.exp(self._z_low * sigma)
        upper = now + left * np.exp(self._z_high * sigma)
        lower = np.minimum(np.maximum(lower, now), predicted)
        if track.issued_k != k:  # one forecast per stop reached is scored later
            # only the stops that may be passed within the scored horizon: a long
            # trip's full arrays for every stop would hold n^2 numbers per bus
            within = np.flatnonzero(lower <= now + 2.0 * CALIBRATION_HORIZONS_S[1])
            if len(within):
                m = int(within[-1]) + 1
                track.issued.append((now, first, lower[:m].copy(), upper[:m].copy()))
            track.issued_k = k
        scheduled = origin + plan.arrival_s[first:]
        return StopForecast(trip_id, first, predicted, lower, upper, scheduled, now, delay)

    def predict(self, feed: Feed, trip_id: str, vehicle_id: str, progress,
                service_date: date, timezone: str | None = None,
                now: float | None = None) -> list[ArrivalPrediction]:
        """Predict the arrival at every downstream stop of a trip.

        Parameters
        ----------
        feed : Feed
        trip_id : str
            The trip the vehicle runs.
        vehicle_id : str
            Whose filter to update and use.
        progress : Progress or (int | None, float, float)
            The stop sequence last reached (None: not at the first stop yet), the
            distance along the shape (m, the frame of ``TripSchedule.shape_dist_m``)
            and the time of that position (POSIX s).
        service_date : date
            The service day the trip runs on.
        timezone : str, optional
            The agency's (default: the feed's first agency).
        now : float, optional
            When the prediction is made (default: the progress time).

        Returns
        -------
        list of ArrivalPrediction
            One per stop after the one reached, in stop order; empty at the last stop.

        Raises
        ------
        KeyError
            When ``trip_id`` is not in the feed.
        """
        f = self.forecast(feed, trip_id, vehicle_id, progress, service_date, timezone, now)
        plan = self._plans[trip_id]
        sequence = plan.sequence[f.first:].tolist()
        stops = plan.stop_ids[f.first:]
        return [ArrivalPrediction(trip_id, seq, stop, vehicle_id, p, lo, hi, s, f.made_at)
                for seq, stop, p, lo, hi, s in zip(
                    sequence, stops, f.predicted_t.tolist(), f.lower_t.tolist(),
                    f.upper_t.tolist(), f.scheduled_t.tolist(), strict=True)]


_TABLES = ("run_mean", "run_median", "run_log_sd", "run_count", "dwell_mean",
           "dwell_median", "dwell_sd", "dwell_count", "schedule_ratio", "network_log_sd",
           "network_dwell", "network_dwell_sd")


def _with_sentinel(table: np.ndarray) -> np.ndarray:
    """Append the row unknown segments and stops index: NaN (zero counts)."""
    fill = 0 if table.dtype.kind == "i" else np.nan
    return np.concatenate([table, np.full((1,) + table.shape[1:], fill, dtype=table.dtype)])


def _stop_distances(feed: Feed, stop_ids: list[str]) -> np.ndarray:
    """Straight-line distances between a trip's stops, cumulative (no shape distances)."""
    lat = np.radians([feed.stops[s].lat for s in stop_ids])
    lon = np.radians([feed.stops[s].lon for s in stop_ids])
    a = np.sin(np.diff(lat) / 2) ** 2 + np.cos(lat[:-1]) * np.cos(lat[1:]) * \
        np.sin(np.diff(lon) / 2) ** 2
    return np.concatenate([[0.0], np.cumsum(2 * 6_371_008.8 * np.arcsin(np.sqrt(a)))])


def _normal_quantile(p: float) -> float:
    """Inverse of the standard normal CDF (Acklam's rational approximation, 1e-9)."""
    a = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
         1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)
    b = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
         6.680131188771972e01, -1.328068155288572e01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
         -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00,
         3.754408661907416e00)
    if p < 0.02425:
        q = math.sqrt(-2 * math.log(p))
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / \
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    if p > 1 - 0.02425:
        return -_normal_quantile(1 - p)
    q = p - 0.5
    r = q * q
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / \
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
