"""Flood event analytics: rain events, flood events, how one follows the other, traffic.

Pure logic over numpy arrays; no store or HTTP. Conventions:

* time ``t`` is float seconds since the Unix epoch (UTC), strictly increasing;
* a rain-gauge reading ``rain_mm[i]`` is the rain accumulated over the gauge interval
  that *ends* at ``t[i]``, i.e. over ``(t[i] - interval_s, t[i]]``; intensities are
  reported in mm/h;
* a flood sensor reading ``depth_cm[i]`` is the water depth on the road at ``t[i]``;
* a traffic reading ``traffic_volume[i]`` is the vehicles counted over the interval that
  ends at ``traffic_t[i]`` (``TrafficFlowObserved.intensity``);
* NaN readings are gaps: they never count as zero rain, zero depth or zero vehicles.

Rain events follow the usual inter-event time definition (IETD): two wet readings
belong to the same event unless the dry time between them is at least ``min_dry_s``
(6 h by default); events whose total is below ``min_total_mm`` are then left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from scipy import stats

__all__ = [
    "Correlation",
    "EventDataError",
    "EventResponse",
    "FloodEvent",
    "HourlyImpact",
    "RainEvent",
    "TrafficImpact",
    "TrafficImpactResult",
    "correlation",
    "flood_events",
    "impact_by_hour",
    "rain_events",
    "site_event_table",
    "traffic_impact",
]

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class EventDataError(ValueError):
    """Input that cannot be analysed; the message names the field."""


# ============================================================================ results
@dataclass(frozen=True)
class RainEvent:
    """One rain event at a gauge."""

    start: float  # start of the first wet gauge interval
    end: float  # end of the last wet gauge interval
    duration_s: float
    total_mm: float
    peak_mm_h: float  # highest intensity over one gauge interval
    peak_t: float  # end of that interval
    peak_window_mm_h: float  # highest intensity over ``window_s``
    window_s: float
    readings: int  # valid (non-NaN) readings inside the event
    missing_s: float  # time inside the event without a valid reading


@dataclass(frozen=True)
class FloodEvent:
    """One period with the road at or above a depth threshold."""

    start: float  # up-crossing, interpolated between readings where possible
    end: float  # down-crossing, interpolated likewise
    duration_s: float
    peak_depth_cm: float
    peak_t: float
    threshold_cm: float
    readings: int  # valid readings between start and end


@dataclass(frozen=True)
class EventResponse:
    """How the road at a site answered one rain event (one row per site and event)."""

    site_id: str
    event: int  # 1-based number of the rain event at this site
    rain_start: float
    rain_end: float
    rain_duration_s: float
    rain_total_mm: float
    rain_peak_mm_h: float
    rain_peak_window_mm_h: float
    window_end: float  # the response is looked for in [rain_start, window_end]
    time_to_cm: dict[float, float | None]  # level -> seconds from rain start, None: not reached
    flood_level_cm: float
    flood_duration_s: float  # time at or above flood_level_cm inside the window
    peak_depth_cm: float | None  # None: no valid depth reading in the window
    peak_depth_t: float | None
    depth_readings: int


@dataclass(frozen=True)
class Correlation:
    """Pearson and Spearman correlation of two samples, with confidence intervals."""

    n: int
    confidence: float
    pearson_r: float
    pearson_p: float
    pearson_ci: tuple[float, float]
    spearman_rho: float
    spearman_p: float
    spearman_ci: tuple[float, float]
    slope: float  # least-squares line y = intercept + slope * x
    intercept: float


@dataclass(frozen=True)
class HourlyImpact:
    """Traffic during floods against dry days, within one local clock hour."""

    hour: int
    observed_vehicles: float
    expected_vehicles: float
    change_pct: float | None
    readings: int


@dataclass(frozen=True)
class TrafficImpact:
    """Traffic during one flood against the same hours on dry days of the same weekday."""

    start: float
    end: float
    weekday: str  # local weekday of the flood start
    readings_in_flood: int
    readings_used: int  # with a valid count and a dry-day reference
    observed_vehicles: float | None
    expected_vehicles: float | None
    change_pct: float | None
    dry_days: tuple[str, ...]  # ISO local dates whose counts made the expectation
    hourly: tuple[HourlyImpact, ...]


@dataclass(frozen=True)
class TrafficImpactResult:
    """Per-flood impacts and their sum by local hour of day."""

    events: tuple[TrafficImpact, ...]
    by_hour: tuple[HourlyImpact, ...]


# ========================================================================= validation
def _times(t, field: str) -> np.ndarray:
    try:
        arr = np.asarray(t, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise EventDataError(f"{field}: times must be numbers ({exc})") from None
    if arr.ndim != 1:
        raise EventDataError(f"{field}: must be one-dimensional, got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise EventDataError(f"{field}[{bad[0]}]: time must be finite, got {arr[bad[0]]}")
    back = np.flatnonzero(np.diff(arr) <= 0)
    if back.size:
        i = back[0]
        raise EventDataError(
            f"{field}[{i + 1}]: times must be strictly increasing ({arr[i]} then {arr[i + 1]})")
    return arr


def _readings(v, n: int, field: str, t_field: str, *, nonnegative: bool) -> np.ndarray:
    try:
        arr = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise EventDataError(f"{field}: readings must be numbers ({exc})") from None
    if arr.ndim != 1:
        raise EventDataError(f"{field}: must be one-dimensional, got shape {arr.shape}")
    if arr.size != n:
        raise EventDataError(f"{field}: length {arr.size} differs from {t_field} length {n}")
    bad = np.flatnonzero(np.isinf(arr))
    if bad.size:
        raise EventDataError(f"{field}[{bad[0]}]: infinite reading (use NaN for a gap)")
    if nonnegative:
        neg = np.flatnonzero(arr < 0)
        if neg.size:
            raise EventDataError(f"{field}[{neg[0]}]: negative reading {arr[neg[0]]}")
    return arr


def _positive(value: float, field: str, *, allow_zero: bool = False) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise EventDataError(f"{field}: must be a number, got {value!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise EventDataError(f"{field}: must be a finite {kind} number, got {value}")
    return value


def _interval(t: np.ndarray, interval_s: float | None, field: str, t_field: str) -> float:
    """The nominal reading interval: given, or the median spacing of the record."""
    if interval_s is not None:
        return _positive(interval_s, field)
    if t.size < 2:
        raise EventDataError(f"{field}: give it; {t_field} has fewer than 2 readings to infer it")
    return float(np.median(np.diff(t)))


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise EventDataError(f"tz: unknown time zone {tz!r}") from None


# ======================================================================== rain events
def rain_events(t, rain_mm, *, min_dry_s: float = 6 * 3600, min_total_mm: float = 1.0,
                window_s: float = 600.0, interval_s: float | None = None,
                wet_mm: float = 0.0) -> list[RainEvent]:
    """Split a rain-gauge record into rain events by the inter-event dry time.

    Parameters
    ----------
    t : array_like of float
        End of each gauge interval, seconds since the epoch, strictly increasing.
    rain_mm : array_like of float
        Rain accumulated over each interval (mm); NaN is a gap (neither wet nor dry).
    min_dry_s : float, default 6 h
        Inter-event dry time: a dry spell of at least this long, from the end of one wet
        interval to the start of the next, separates two events.
    min_total_mm : float, default 1.0
        Events with less rain than this are left out (after splitting).
    window_s : float, default 600
        Window for the peak intensity; a whole multiple of the gauge interval.
    interval_s : float, optional
        Gauge interval; by default the median spacing of ``t``.
    wet_mm : float, default 0.0
        A reading is wet when it is above this (raise it to ignore single tips).

    Returns
    -------
    list of RainEvent
        In time order. Peaks are lower bounds where the event has gaps (``missing_s``).

    Raises
    ------
    EventDataError
        Unsorted or non-finite times, unequal lengths, negative or infinite rain, or a
        window that is not a whole multiple of the gauge interval.
    """
    return _rain_events(t, rain_mm, min_dry_s, min_total_mm, window_s, interval_s, wet_mm,
                        "t", "interval_s")


def _rain_events(t, rain_mm, min_dry_s, min_total_mm, window_s, interval_s, wet_mm,
                 t_field, interval_field) -> list[RainEvent]:
    t = _times(t, t_field)
    rain = _readings(rain_mm, t.size, "rain_mm", t_field, nonnegative=True)
    min_dry_s = _positive(min_dry_s, "min_dry_s")
    min_total_mm = _positive(min_total_mm, "min_total_mm", allow_zero=True)
    window_s = _positive(window_s, "window_s")
    wet_mm = _positive(wet_mm, "wet_mm", allow_zero=True)
    if t.size == 0:
        return []
    dt = _interval(t, interval_s, interval_field, t_field)
    k = window_s / dt
    if round(k) < 1 or abs(k - round(k)) > 1e-6 * k:
        raise EventDataError(
            f"window_s: {window_s:g} s is not a whole multiple of the gauge interval {dt:g} s")

    wet = np.flatnonzero(rain > wet_mm)  # NaN compares False: a gap is not wet
    if wet.size == 0:
        return []
    dry_before = (t[wet[1:]] - dt) - t[wet[:-1]]
    groups = np.split(wet, np.flatnonzero(dry_before >= min_dry_s) + 1)

    valid = ~np.isnan(rain)
    filled = np.where(valid, rain, 0.0)
    cum = np.concatenate([[0.0], np.cumsum(filled)])
    cum_valid = np.concatenate([[0], np.cumsum(valid)])
    # Window ending at t[j] holds readings whose whole interval lies in (t[j] - window_s, t[j]].
    lo = np.searchsorted(t, t - window_s + dt - 1e-6 * dt, side="left")

    events = []
    for g in groups:
        first, last = int(g[0]), int(g[-1])
        total = float(cum[last + 1] - cum[first])
        if total < min_total_mm:
            continue
        inside = np.arange(first, last + 1)
        peak_i = first + int(np.nanargmax(rain[first:last + 1]))
        window_sum = cum[inside + 1] - cum[np.maximum(lo[inside], first)]
        start, end = float(t[first] - dt), float(t[last])
        n_valid = int(cum_valid[last + 1] - cum_valid[first])
        events.append(RainEvent(
            start=start, end=end, duration_s=end - start, total_mm=total,
            peak_mm_h=float(rain[peak_i]) / dt * 3600.0, peak_t=float(t[peak_i]),
            peak_window_mm_h=float(window_sum.max()) / window_s * 3600.0, window_s=window_s,
            readings=n_valid, missing_s=max(0.0, (end - start) - n_valid * dt)))
    return events


# ======================================================================= flood events
def _above(t: np.ndarray, depth: np.ndarray, level: float,
           max_interp_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Runs of readings at or above ``level``: (start_t, end_t, first_i, last_i).

    Crossing times are interpolated linearly from the neighbouring reading below the
    level when it is valid and no more than ``max_interp_s`` away; otherwise the run
    starts (ends) at its first (last) reading. A gap (NaN or a silence longer than
    ``max_interp_s``) ends a run: nobody knows what the water did meanwhile.
    """
    n = t.size
    above = depth >= level
    step = np.diff(t)
    link = above[:-1] & above[1:] & (step <= max_interp_s)
    first = above.copy()
    first[1:] &= ~link
    last = above.copy()
    last[:-1] &= ~link
    a, b = np.flatnonzero(first), np.flatnonzero(last)
    start, end = t[a].copy(), t[b].copy()

    prev = a - 1
    ok = prev >= 0
    ok[ok] &= ~np.isnan(depth[prev[ok]]) & (step[prev[ok]] <= max_interp_s)
    p, q = prev[ok], a[ok]
    start[ok] = t[p] + (level - depth[p]) / (depth[q] - depth[p]) * (t[q] - t[p])

    nxt = b + 1
    ok = nxt < n
    ok[ok] &= ~np.isnan(depth[nxt[ok]]) & (step[b[ok]] <= max_interp_s)
    p, q = b[ok], nxt[ok]
    end[ok] = t[p] + (depth[p] - level) / (depth[p] - depth[q]) * (t[q] - t[p])
    return start, end, a, b


def _depth_record(t, depth_cm, max_interp_s, t_field="t", depth_field="depth_cm"):
    t = _times(t, t_field)
    depth = _readings(depth_cm, t.size, depth_field, t_field, nonnegative=False)
    if max_interp_s is None:
        max_interp_s = 2.0 * float(np.median(np.diff(t))) if t.size > 1 else 0.0
    else:
        max_interp_s = _positive(max_interp_s, "max_interp_s", allow_zero=True)
    return t, depth, max_interp_s


def flood_events(t, depth_cm, *, threshold_cm: float = 10.0, min_gap_s: float = 900.0,
                 min_duration_s: float = 0.0,
                 max_interp_s: float | None = None) -> list[FloodEvent]:
    """Periods with the road at or above a depth threshold.

    Parameters
    ----------
    t : array_like of float
        Reading times, seconds since the epoch, strictly increasing.
    depth_cm : array_like of float
        Water depth on the road (cm); NaN is a gap.
    threshold_cm : float, default 10
        Depth that makes a flood.
    min_gap_s : float, default 900
        Two floods closer than this (a short dip below the threshold, or a short gap in
        the record) are merged into one.
    min_duration_s : float, default 0
        Floods shorter than this, after merging, are left out.
    max_interp_s : float, optional
        Longest spacing between two readings across which a crossing time is
        interpolated (default twice the median spacing).

    Returns
    -------
    list of FloodEvent
        In time order; start and end are the interpolated crossings of the threshold.

    Raises
    ------
    EventDataError
        Unsorted or non-finite times, unequal lengths, infinite depths, bad parameters.
    """
    t, depth, max_interp_s = _depth_record(t, depth_cm, max_interp_s)
    threshold_cm = float(threshold_cm)
    if not math.isfinite(threshold_cm):
        raise EventDataError(f"threshold_cm: must be finite, got {threshold_cm}")
    min_gap_s = _positive(min_gap_s, "min_gap_s", allow_zero=True)
    min_duration_s = _positive(min_duration_s, "min_duration_s", allow_zero=True)
    if t.size == 0:
        return []
    start, end, a, b = _above(t, depth, threshold_cm, max_interp_s)
    if start.size == 0:
        return []
    groups = np.split(np.arange(start.size), np.flatnonzero(start[1:] - end[:-1] >= min_gap_s) + 1)
    events = []
    for g in groups:
        s, e = float(start[g[0]]), float(end[g[-1]])
        if e - s < min_duration_s:
            continue
        i0, i1 = int(a[g[0]]), int(b[g[-1]])
        peak = i0 + int(np.nanargmax(depth[i0:i1 + 1]))
        events.append(FloodEvent(
            start=s, end=e, duration_s=e - s, peak_depth_cm=float(depth[peak]),
            peak_t=float(t[peak]), threshold_cm=threshold_cm,
            readings=int(np.count_nonzero(~np.isnan(depth[i0:i1 + 1])))))
    return events


# ============================================================== rain -> flood linking
def site_event_table(site_id: str, rain_t, rain_mm, depth_t, depth_cm, *,
                     levels_cm: Sequence[float] = (10.0, 20.0, 30.0),
                     flood_level_cm: float = 10.0, response_s: float = 6 * 3600,
                     min_dry_s: float = 6 * 3600, min_total_mm: float = 1.0,
                     window_s: float = 600.0, rain_interval_s: float | None = None,
                     min_gap_s: float = 900.0,
                     max_interp_s: float | None = None) -> list[EventResponse]:
    """One row per rain event at a site: the rain, and how deep and how fast the road flooded.

    The response to an event is looked for from the rain start until ``response_s``
    after the rain ends, or until the next rain event starts if that is sooner.

    Parameters
    ----------
    site_id : str
        The site (a flood-depth sensor with its nearby rain gauge).
    rain_t, rain_mm : array_like of float
        The rain-gauge record (see :func:`rain_events`).
    depth_t, depth_cm : array_like of float
        The flood-sensor record (see :func:`flood_events`).
    levels_cm : sequence of float, default (10, 20, 30)
        Depths whose time from rain start is reported (``time_to_cm``); a level the road
        was already at when the rain started counts as reached after 0 s.
    flood_level_cm : float, default 10
        Depth counted as flooded for ``flood_duration_s``.
    response_s : float, default 6 h
        How long after the rain ends the road's response is still attributed to it.
    min_dry_s, min_total_mm, window_s, rain_interval_s
        Passed to :func:`rain_events` (``rain_interval_s`` as ``interval_s``).
    min_gap_s, max_interp_s
        Passed to :func:`flood_events`.

    Returns
    -------
    list of EventResponse
    """
    if not isinstance(site_id, str) or not site_id:
        raise EventDataError(f"site_id: must be a non-empty string, got {site_id!r}")
    levels = sorted({float(v) for v in levels_cm})
    if not levels or not all(math.isfinite(v) for v in levels):
        raise EventDataError(f"levels_cm: must be finite depths, got {list(levels_cm)!r}")
    response_s = _positive(response_s, "response_s", allow_zero=True)
    rains = _rain_events(rain_t, rain_mm, min_dry_s, min_total_mm, window_s, rain_interval_s,
                         0.0, "rain_t", "rain_interval_s")
    t, depth, max_interp_s = _depth_record(depth_t, depth_cm, max_interp_s, "depth_t")
    floods = flood_events(t, depth, threshold_cm=flood_level_cm, min_gap_s=min_gap_s,
                          max_interp_s=max_interp_s)
    flood_start = np.array([f.start for f in floods])
    flood_end = np.array([f.end for f in floods])
    crossings = {level: _above(t, depth, level, max_interp_s)[:2] for level in levels}

    rows = []
    for k, ev in enumerate(rains):
        w0 = ev.start
        w1 = ev.end + response_s
        if k + 1 < len(rains):
            w1 = min(w1, rains[k + 1].start)
        time_to: dict[float, float | None] = {}
        for level in levels:
            s, e = crossings[level]
            hit = np.flatnonzero((e >= w0) & (s <= w1))
            time_to[level] = float(max(s[hit[0]], w0) - w0) if hit.size else None
        overlap = np.minimum(flood_end, w1) - np.maximum(flood_start, w0)
        i0, i1 = np.searchsorted(t, w0, "left"), np.searchsorted(t, w1, "right")
        window = depth[i0:i1]
        n_valid = int(np.count_nonzero(~np.isnan(window)))
        if n_valid:
            j = i0 + int(np.nanargmax(window))
            peak, peak_t = float(depth[j]), float(t[j])
        else:
            peak = peak_t = None
        rows.append(EventResponse(
            site_id=site_id, event=k + 1, rain_start=ev.start, rain_end=ev.end,
            rain_duration_s=ev.duration_s, rain_total_mm=ev.total_mm,
            rain_peak_mm_h=ev.peak_mm_h, rain_peak_window_mm_h=ev.peak_window_mm_h,
            window_end=w1, time_to_cm=time_to, flood_level_cm=float(flood_level_cm),
            flood_duration_s=float(np.clip(overlap, 0.0, None).sum()),
            peak_depth_cm=peak, peak_depth_t=peak_t, depth_readings=n_valid))
    return rows


# ======================================================================== correlation
def correlation(x, y, *, confidence: float = 0.95) -> Correlation:
    """Pearson and Spearman correlation with confidence intervals and p-values.

    Pairs where either value is NaN are dropped. Both intervals come from the Fisher z
    transform, ``atanh(r) +/- z_{1-a/2} * se``, mapped back with ``tanh``:

    * Pearson: ``se = 1 / sqrt(n - 3)`` (Fisher 1921);
    * Spearman: ``se = sqrt((1 + rho**2 / 2) / (n - 3))``, the standard error of
      Bonett & Wright (2000), "Sample size requirements for estimating Pearson, Kendall
      and Spearman correlations", Psychometrika 65(1), 23-28.

    p-values are scipy's two-sided ones (:func:`scipy.stats.pearsonr`, exact t-based;
    :func:`scipy.stats.spearmanr`, t approximation).

    Parameters
    ----------
    x, y : array_like of float
        Paired samples, e.g. cumulative rainfall (mm) and flood duration of each event.
    confidence : float, default 0.95
        Level of both intervals.

    Returns
    -------
    Correlation

    Raises
    ------
    EventDataError
        Unequal lengths, fewer than 4 complete pairs, or a constant sample.
    """
    xs = _readings(x, np.size(x), "x", "x", nonnegative=False)
    ys = _readings(y, xs.size, "y", "x", nonnegative=False)
    confidence = float(confidence)
    if not 0.0 < confidence < 1.0:
        raise EventDataError(f"confidence: must lie strictly between 0 and 1, got {confidence}")
    keep = ~(np.isnan(xs) | np.isnan(ys))
    xs, ys = xs[keep], ys[keep]
    n = xs.size
    if n < 4:
        raise EventDataError(
            f"x, y: {n} complete pairs; a confidence interval needs at least 4 (n - 3 > 0)")
    for name, v in (("x", xs), ("y", ys)):
        if np.all(v == v[0]):
            raise EventDataError(f"{name}: all values are equal; the correlation is undefined")
    z_crit = stats.norm.ppf(0.5 + confidence / 2.0)

    def interval(r: float, se: float) -> tuple[float, float]:
        z = math.atanh(min(max(r, -1.0 + 1e-15), 1.0 - 1e-15))
        return math.tanh(z - z_crit * se), math.tanh(z + z_crit * se)

    pearson = stats.pearsonr(xs, ys)
    spearman = stats.spearmanr(xs, ys)
    r, rho = float(pearson.statistic), float(spearman.statistic)
    slope, intercept = np.polyfit(xs, ys, 1)
    return Correlation(
        n=int(n), confidence=confidence,
        pearson_r=r, pearson_p=float(pearson.pvalue),
        pearson_ci=interval(r, 1.0 / math.sqrt(n - 3)),
        spearman_rho=rho, spearman_p=float(spearman.pvalue),
        spearman_ci=interval(rho, math.sqrt((1.0 + rho * rho / 2.0) / (n - 3))),
        slope=float(slope), intercept=float(intercept))


# ===================================================================== traffic impact
def _spans(floods) -> list[tuple[float, float]]:
    spans = []
    for i, f in enumerate(floods):
        try:
            s, e = (float(f.start), float(f.end)) if hasattr(f, "start") else map(float, f)
        except (TypeError, ValueError):
            raise EventDataError(
                f"flood_events[{i}]: need a FloodEvent or a (start, end) pair, got {f!r}"
            ) from None
        if not (math.isfinite(s) and math.isfinite(e)) or e < s:
            raise EventDataError(f"flood_events[{i}]: end {e} before start {s} or not finite")
        spans.append((s, e))
    return spans


def _local(t: np.ndarray, zone: ZoneInfo) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local date ordinal, weekday (Mon=0) and seconds after local midnight of each time."""
    ordinal = np.empty(t.size, dtype=np.int64)
    weekday = np.empty(t.size, dtype=np.int64)
    sod = np.empty(t.size)
    for i, ts in enumerate(t.tolist()):
        d = datetime.fromtimestamp(ts, zone)
        ordinal[i], weekday[i] = d.toordinal(), d.weekday()
        sod[i] = d.hour * 3600 + d.minute * 60 + d.second + d.microsecond * 1e-6
    return ordinal, weekday, sod


def _hourly(acc: dict[int, list[float]]) -> tuple[HourlyImpact, ...]:
    out = []
    for hour in sorted(acc):
        obs, exp, n = acc[hour]
        change = (obs - exp) / exp * 100.0 if exp > 0 else None
        out.append(HourlyImpact(hour=hour, observed_vehicles=obs, expected_vehicles=exp,
                                change_pct=change, readings=int(n)))
    return tuple(out)


def impact_by_hour(impacts: Iterable[TrafficImpact]) -> tuple[HourlyImpact, ...]:
    """Sum per-flood traffic impacts by local hour of day (e.g. over several sites).

    Parameters
    ----------
    impacts : iterable of TrafficImpact

    Returns
    -------
    tuple of HourlyImpact
        One per hour that had flood readings with a reference; change in % of the
        summed expectation.
    """
    acc: dict[int, list[float]] = {}
    for impact in impacts:
        for h in impact.hourly:
            row = acc.setdefault(h.hour, [0.0, 0.0, 0])
            row[0] += h.observed_vehicles
            row[1] += h.expected_vehicles
            row[2] += h.readings
    return _hourly(acc)


def traffic_impact(flood_events, traffic_t, traffic_volume, *, tz: str = "Asia/Phnom_Penh",
                   rain_t=None, rain_mm=None, dry_day_rain_mm: float = 0.0,
                   interval_s: float | None = None,
                   rain_interval_s: float | None = None) -> TrafficImpactResult:
    """Vehicle volume near a sensor during each flood against dry days of the same weekday.

    A count belongs to a flood when the middle of its interval lies within the flood.
    Its expectation is the mean count in the same local clock slot on *dry days* of the
    same weekday: local days that no flood touches and, when a rain record is given,
    whose rain total is known (at least one valid reading) and at most
    ``dry_day_rain_mm``. Counts that are NaN, or have no dry-day reference, are left out
    of both the observed and the expected sums.

    Parameters
    ----------
    flood_events : sequence of FloodEvent or (start, end) pairs
        All the floods at the site (they also mark days as not dry).
    traffic_t : array_like of float
        End of each counting interval, seconds since the epoch, strictly increasing.
    traffic_volume : array_like of float
        Vehicles counted in each interval; NaN is a gap.
    tz : str, default "Asia/Phnom_Penh"
        IANA time zone of the city, for days, weekdays and clock hours.
    rain_t, rain_mm : array_like of float, optional
        The site's rain-gauge record; days with rain are then not dry.
    dry_day_rain_mm : float, default 0.0
        Most rain (mm over the local day) a dry day may have.
    interval_s, rain_interval_s : float, optional
        Counting and gauge intervals; by default the median spacing of each record.

    Returns
    -------
    TrafficImpactResult
        ``events`` in the order of ``flood_events``; ``by_hour`` sums them by local hour.
    """
    spans = _spans(flood_events)
    zone = _zone(tz)
    t = _times(traffic_t, "traffic_t")
    volume = _readings(traffic_volume, t.size, "traffic_volume", "traffic_t", nonnegative=True)
    dry_day_rain_mm = _positive(dry_day_rain_mm, "dry_day_rain_mm", allow_zero=True)
    if t.size == 0:
        raise EventDataError("traffic_t: no traffic readings")
    dt = _interval(t, interval_s, "interval_s", "traffic_t")
    mid = t - dt / 2.0
    ordinal, weekday, sod = _local(mid, zone)
    slot = np.floor(sod / dt).astype(np.int64)  # the middle of an interval names its slot

    not_dry: set[int] = set()
    for s, e in spans:
        first = datetime.fromtimestamp(s, zone).toordinal()
        last = datetime.fromtimestamp(e, zone).toordinal()
        not_dry.update(range(first, last + 1))
    days = set(np.unique(ordinal).tolist()) - not_dry
    if rain_t is not None or rain_mm is not None:
        if rain_t is None or rain_mm is None:
            raise EventDataError("rain_t, rain_mm: give both or neither")
        rt = _times(rain_t, "rain_t")
        rain = _readings(rain_mm, rt.size, "rain_mm", "rain_t", nonnegative=True)
        if rt.size == 0:
            days = set()
        else:
            rdt = _interval(rt, rain_interval_s, "rain_interval_s", "rain_t")
            r_ord = _local(rt - rdt / 2.0, zone)[0]
            valid = ~np.isnan(rain)
            known = set(r_ord[valid].tolist())
            wet_total: dict[int, float] = {}
            for d, mm in zip(r_ord[valid].tolist(), rain[valid].tolist(), strict=True):
                wet_total[d] = wet_total.get(d, 0.0) + mm
            days = {d for d in days if d in known and wet_total[d] <= dry_day_rain_mm}

    # Reference counts: (weekday, slot) -> {day: count} on dry days.
    reference: dict[tuple[int, int], dict[int, float]] = {}
    dry = np.isin(ordinal, np.fromiter(days, dtype=np.int64, count=len(days))) & ~np.isnan(volume)
    for i in np.flatnonzero(dry).tolist():
        reference.setdefault((int(weekday[i]), int(slot[i])), {})[int(ordinal[i])] = volume[i]

    impacts = []
    for s, e in spans:
        inside = np.flatnonzero((mid >= s) & (mid <= e))
        obs = exp = 0.0
        used_days: set[int] = set()
        acc: dict[int, list[float]] = {}
        used = 0
        for i in inside.tolist():
            ref = reference.get((int(weekday[i]), int(slot[i])))
            if np.isnan(volume[i]) or not ref:
                continue
            mean = sum(ref.values()) / len(ref)
            obs += volume[i]
            exp += mean
            used += 1
            used_days.update(ref)
            row = acc.setdefault(int(sod[i] // 3600), [0.0, 0.0, 0])
            row[0] += volume[i]
            row[1] += mean
            row[2] += 1
        impacts.append(TrafficImpact(
            start=s, end=e, weekday=_WEEKDAYS[datetime.fromtimestamp(s, zone).weekday()],
            readings_in_flood=int(inside.size), readings_used=used,
            observed_vehicles=obs if used else None, expected_vehicles=exp if used else None,
            change_pct=(obs - exp) / exp * 100.0 if used and exp > 0 else None,
            dry_days=tuple(date.fromordinal(d).isoformat() for d in sorted(used_days)),
            hourly=_hourly(acc)))
    impacts = tuple(impacts)
    return TrafficImpactResult(events=impacts, by_hour=impact_by_hour(impacts))

