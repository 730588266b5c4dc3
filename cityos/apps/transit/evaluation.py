"""How good the arrival predictions are, on held-out days, against two baselines.

:func:`evaluate` trains an :class:`~cityos.apps.transit.prediction.ArrivalPredictor`
on some days' observed arrivals and replays other days' pings through it, as the
server would: each vehicle's pings in time order, snapped to its trip's shape
(:class:`~cityos.apps.transit.snapping.ShapeSnapper`, monotonic progress), every
ping updating the vehicle's filter and, every ``every_s`` seconds per vehicle, a
prediction for each downstream stop. Each prediction is scored against the observed
arrival, with two baselines computed from the same pings at the same instants:

- *schedule*: the timetable's arrival time;
- *carried deviation*: the timetable plus the schedule deviation at the vehicle's
  position now (not negative while it waits at its first stop).

Errors are ``actual - predicted`` (positive: the bus came later than predicted).
MAE and the 90th percentile of the absolute error are given by horizon bucket,
the horizon being the time until the bus really arrived, so that all three methods
are scored on the same predictions. The ETA Accuracy Benchmark score buckets each
method's predictions by the horizon it predicted (what a rider is shown) and counts
those inside the band of the bucket: 0-3 min ahead from 30 s early to 90 s late,
3-6 min from 1 min early to 2.5 min late, 6-10 min from 1 min early to 3.5 min late,
10-15 min from 1.5 min early to 4.5 min late, where "x early" means the bus arrived
up to x before the predicted time (``error >= -x``) and "y late" up to y after it
(``error <= y``); the score is the mean of the four buckets' shares.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from cityos.apps.transit.models import DayTrace, Feed, Ping
from cityos.apps.transit.prediction import ArrivalPredictor
from cityos.apps.transit.snapping import ShapeSnapper

__all__ = ["BENCHMARK_BANDS", "HORIZON_BUCKETS", "METHODS", "EvaluationReport",
           "benchmark_score", "evaluate"]

#: Horizon buckets of the error table, seconds ``[from, to)``.
HORIZON_BUCKETS = ((0, 300), (300, 600), (600, 1200), (1200, 1800))
#: ETA Accuracy Benchmark: ``(from_s, to_s, early_s, late_s)`` per horizon bucket.
BENCHMARK_BANDS = ((0, 180, 30, 90), (180, 360, 60, 150), (360, 600, 60, 210),
                   (600, 900, 90, 270))
METHODS = ("model", "schedule", "carried")
METHOD_NAMES = {"model": "model", "schedule": "schedule", "carried": "carried deviation"}


def benchmark_score(horizon_s, error_s) -> tuple[float, list[float], list[int]]:
    """The ETA Accuracy Benchmark score of some predictions.

    Parameters
    ----------
    horizon_s : array-like
        Predicted time to arrival when each prediction was made (predicted - made_at).
    error_s : array-like
        ``actual - predicted`` arrival time of each, seconds.

    Returns
    -------
    score : float
        Mean over the four buckets of the share in band (NaN when a bucket is empty:
        the mean of the others).
    shares : list of float
        Share in band per bucket of :data:`BENCHMARK_BANDS` (NaN when empty).
    counts : list of int
        Predictions per bucket.
    """
    horizon = np.asarray(horizon_s, dtype=float)
    error = np.asarray(error_s, dtype=float)
    shares, counts = [], []
    for low, high, early, late in BENCHMARK_BANDS:
        inside = (horizon >= low) & (horizon < high)
        n = int(inside.sum())
        counts.append(n)
        good = (error[inside] >= -early) & (error[inside] <= late)
        shares.append(float(good.mean()) if n else float("nan"))
    finite = [s for s in shares if np.isfinite(s)]
    return (float(np.mean(finite)) if finite else float("nan")), shares, counts


@dataclass
class EvaluationReport:
    """Errors of the model and the baselines by horizon; benchmark scores.

    ``mae_s[method][i]`` and ``p90_s[method][i]`` belong to ``HORIZON_BUCKETS[i]``;
    ``benchmark[method]`` is ``(score, shares per band, counts per band)``.
    """

    counts: list[int]
    mae_s: dict[str, list[float]]
    p90_s: dict[str, list[float]]
    benchmark: dict[str, tuple[float, list[float], list[int]]]
    interval_coverage: float
    interval_coverage_by_bucket: list[float]
    predictions: int
    train_days: int
    test_days: int
    scenario: str = ""
    notes: list[str] = field(default_factory=list)

    def mae(self, method: str, bucket: tuple[int, int]) -> float:
        """MAE (s) of ``method`` in one of :data:`HORIZON_BUCKETS`."""
        return self.mae_s[method][HORIZON_BUCKETS.index(bucket)]

    def score(self, method: str = "model") -> float:
        """ETA Accuracy Benchmark score (0..1) of ``method``."""
        return self.benchmark[method][0]

    def table(self) -> str:
        """The report as Markdown tables."""
        lines = [f"Held-out evaluation: {self.train_days} training day(s), "
                 f"{self.test_days} test day(s)"
                 + (f", scenario {self.scenario}" if self.scenario else "")
                 + f"; {self.predictions:,} stop predictions.", "",
                 "| horizon | predictions | model MAE | model P90 | schedule MAE | "
                 "schedule P90 | carried MAE | carried P90 | model / schedule | "
                 "model / carried |",
                 "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for i, (low, high) in enumerate(HORIZON_BUCKETS):
            cells = [f"{low // 60}-{high // 60} min", f"{self.counts[i]:,}"]
            for method in METHODS:
                cells += [_seconds(self.mae_s[method][i]), _seconds(self.p90_s[method][i])]
            cells.append(_ratio(self.mae_s["model"][i], self.mae_s["schedule"][i]))
            cells.append(_ratio(self.mae_s["model"][i], self.mae_s["carried"][i]))
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "| ETA Accuracy Benchmark band | model | schedule | carried |",
                  "|---|---:|---:|---:|"]
        for j, (low, high, early, late) in enumerate(BENCHMARK_BANDS):
            label = f"{low // 60}-{high // 60} min ({early} s early .. {late} s late)"
            cells = [_percent(self.benchmark[m][1][j]) for m in METHODS]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("| **score** | " + " | ".join(
            f"**{_percent(self.benchmark[m][0])}**" for m in METHODS) + " |")
        lines += ["", f"Model 10-90 % interval holds the arrival in "
                      f"{_percent(self.interval_coverage)} of predictions (by horizon: "
                      + ", ".join(_percent(c) for c in self.interval_coverage_by_bucket)
                      + ")."]
        lines += self.notes
        return "\n".join(lines)


def _seconds(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{value:.0f} s"


def _ratio(a: float, b: float) -> str:
    return "-" if not (np.isfinite(a) and np.isfinite(b) and b > 0) else f"{a / b:.2f}"


def _percent(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{100 * value:.1f} %"


# ========================================================================== replay
def _vehicle_runs(pings: Sequence[Ping]) -> dict[str, list[tuple[str, list[Ping]]]]:
    """Per vehicle, its trips in time order with their pings (sorted, deduplicated)."""
    by_vehicle: dict[str, list[Ping]] = {}
    for ping in pings:
        if ping.trip_id is not None:
            by_vehicle.setdefault(ping.vehicle_id, []).append(ping)
    out: dict[str, list[tuple[str, list[Ping]]]] = {}
    for vehicle, own in by_vehicle.items():
        own.sort(key=lambda p: p.t)
        runs: list[tuple[str, list[Ping]]] = []
        last_t = None
        for ping in own:
            if ping.t == last_t:
                continue  # sent twice
            last_t = ping.t
            if not runs or runs[-1][0] != ping.trip_id:
                runs.append((ping.trip_id, []))
            runs[-1][1].append(ping)
        out[vehicle] = runs
    return out


class _Tally:
    """The evaluation's aggregates, added to forecast by forecast: counts, sums of
    absolute errors and histograms of them (for the 90th percentile) per horizon
    bucket and method, benchmark bands, interval coverage. Its size does not depend
    on how many predictions it has seen."""

    def __init__(self) -> None:
        n_buckets, n_methods = len(HORIZON_BUCKETS), len(METHODS)
        self.counts = np.zeros(n_buckets, dtype=np.int64)
        self.inside = np.zeros(n_buckets, dtype=np.int64)
        self.abs_sum = np.zeros((n_methods, n_buckets))
        self.hist = np.zeros((n_methods, n_buckets, _HIST_BINS), dtype=np.int64)
        self.band_n = np.zeros((n_methods, len(BENCHMARK_BANDS)), dtype=np.int64)
        self.band_good = np.zeros((n_methods, len(BENCHMARK_BANDS)), dtype=np.int64)
        self.in_table = 0
        self.inside_table = 0
        self.predictions = 0
        self.untimed_runs = 0  # runs of trips without times: nothing to score against

    def add(self, made: float, actual: np.ndarray, predicted: dict[str, np.ndarray],
            lower: np.ndarray, upper: np.ndarray) -> None:
        """One forecast's predictions of the stops ahead (``predicted[method]``)."""
        to_go = actual - made
        inside = (actual >= lower) & (actual <= upper)
        self.predictions += len(actual)
        table = (to_go >= 0) & (to_go < HORIZON_BUCKETS[-1][1])
        self.in_table += int(table.sum())
        self.inside_table += int(inside[table].sum())
        bucket = np.searchsorted(_BUCKET_EDGES, to_go, side="right") - 1
        scored = table & (bucket >= 0) & (bucket < len(HORIZON_BUCKETS))
        b = bucket[scored]
        np.add.at(self.counts, b, 1)
        np.add.at(self.inside, b, inside[scored].astype(np.int64))
        for m, method in enumerate(METHODS):
            error = actual - predicted[method]
            absolute = np.abs(error[scored])
            np.add.at(self.abs_sum[m], b, absolute)
            np.add.at(self.hist[m], (b, _hist_bin(absolute)), 1)
            horizon = predicted[method] - made
            for j, (low, high, early, late) in enumerate(BENCHMARK_BANDS):
                band = (horizon >= low) & (horizon < high)
                self.band_n[m, j] += int(band.sum())
                self.band_good[m, j] += int(((error[band] >= -early)
                                             & (error[band] <= late)).sum())

    def report(self, train_days: int, test_days: int, scenario: str) -> EvaluationReport:
        counts = self.counts.tolist()
        mae = {m: [] for m in METHODS}
        p90 = {m: [] for m in METHODS}
        for k, method in enumerate(METHODS):
            for i, n in enumerate(counts):
                mae[method].append(float(self.abs_sum[k, i] / n) if n else np.nan)
                p90[method].append(_hist_quantile(self.hist[k, i], 0.9) if n else np.nan)
        benchmark = {}
        for k, method in enumerate(METHODS):
            n = self.band_n[k]
            shares = [float(g / c) if c else float("nan")
                      for g, c in zip(self.band_good[k].tolist(), n.tolist(), strict=True)]
            finite = [x for x in shares if np.isfinite(x)]
            benchmark[method] = (float(np.mean(finite)) if finite else float("nan"), shares,
                                 n.tolist())
        coverage_by_bucket = [float(i / n) if n else np.nan
                              for i, n in zip(self.inside.tolist(), counts, strict=True)]
        coverage = self.inside_table / self.in_table if self.in_table else np.nan
        notes = [] if not self.untimed_runs else [
            "", f"{self.untimed_runs:,} vehicle run(s) of trips without times in the feed "
                "were not scored (no timetable to predict from or compare with)."]
        return EvaluationReport(counts, mae, p90, benchmark, float(coverage),
                                coverage_by_bucket, self.predictions, train_days,
                                test_days, scenario, notes)


#: Histogram of absolute errors: 1 s bins to an hour, then 10 s bins to two days.
_FINE_S, _COARSE_STEP_S, _HIST_MAX_S = 3600, 10, 2 * 86400
_HIST_BINS = _FINE_S + (_HIST_MAX_S - _FINE_S) // _COARSE_STEP_S + 1
_BUCKET_EDGES = np.array([low for low, _ in HORIZON_BUCKETS] + [HORIZON_BUCKETS[-1][1]],
                         dtype=float)


def _hist_bin(absolute: np.ndarray) -> np.ndarray:
    coarse = _FINE_S + (absolute - _FINE_S) // _COARSE_STEP_S
    index = np.where(absolute < _FINE_S, np.floor(absolute), coarse)
    return np.clip(index, 0, _HIST_BINS - 1).astype(np.int64)


def _hist_quantile(hist: np.ndarray, q: float) -> float:
    """The ``q`` quantile of the values binned in ``hist`` (a bin's middle)."""
    total = int(hist.sum())
    k = int(np.searchsorted(np.cumsum(hist), q * total, side="left"))
    if k < _FINE_S:
        return k + 0.5
    return _FINE_S + (k - _FINE_S + 0.5) * _COARSE_STEP_S


def evaluate(feed: Feed, train_days: Sequence[DayTrace], test_days: Iterable[DayTrace],
             timezone: str | None = None, *, every_s: float = 30.0,
             predictor: ArrivalPredictor | None = None, scenario: str = "",
             train_day_count: int | None = None) -> EvaluationReport:
    """Train on some days, predict along other days' pings, score against the truth.

    The test days are taken one at a time and only aggregates are kept (errors
    binned by horizon, benchmark bands), so memory does not grow with the number of
    days or predictions: pass a generator to simulate each day when its turn comes.

    Parameters
    ----------
    feed : Feed
        The timetable of every day.
    train_days : sequence of DayTrace
        Whose observed arrivals the predictor learns from (ignored when a trained
        ``predictor`` is given).
    test_days : iterable of DayTrace
        Held out: their pings are replayed, their arrivals are the truth.
    timezone : str, optional
        The agency's (default: the feed's first agency).
    every_s : float
        How often each vehicle's predictions are scored (every ping feeds the filter).
    predictor : ArrivalPredictor, optional
        An already trained predictor.
    scenario : str
        A label for the report.
    train_day_count : int, optional
        Training days to report (default ``len(train_days)``).

    Returns
    -------
    EvaluationReport
    """
    if predictor is None:
        predictor = ArrivalPredictor()
        predictor.learn((a for day in train_days for a in day.arrivals), feed, timezone)
    snappers: dict[str, ShapeSnapper] = {}
    tally = _Tally()
    days = 0
    for day in test_days:
        days += 1
        _score_day(feed, day, predictor, snappers, tally, timezone, every_s)
    trained = len(train_days) if train_day_count is None else train_day_count
    return tally.report(trained, days, scenario)


def _score_day(feed: Feed, day: DayTrace, predictor: ArrivalPredictor,
               snappers: dict[str, ShapeSnapper], tally: _Tally, timezone: str | None,
               every_s: float) -> None:
    """Replay one day's pings through ``predictor`` and add its scores to ``tally``."""
    truth = _truth(day)
    predictor.forget()
    for vehicle, runs in _vehicle_runs(day.pings).items():
        last_scored = -np.inf
        for trip_id, pings in runs:
            if trip_id not in feed.trips:
                continue
            shape = feed.shape_of(trip_id)
            if shape is None or len(shape.lon) < 2:
                continue
            snapper = snappers.get(shape.shape_id)
            if snapper is None:
                snapper = snappers[shape.shape_id] = ShapeSnapper(shape)
            lat = np.array([p.lat for p in pings])
            lon = np.array([p.lon for p in pings])
            t = np.array([p.t for p in pings])
            # plausible travel between fixes: 25 m/s, at least 200 m
            advance = np.maximum(np.diff(t, prepend=t[0]) * 25.0, 200.0)
            dist, _ = snapper.snap_track(lat, lon, advance)
            schedule = feed.schedule(trip_id)
            if not np.isfinite(schedule.arrival_s).all():
                tally.untimed_runs += 1  # the reader left its times unknown
                continue
            sequence = schedule.stop_sequence.tolist()
            actual_all = np.array([truth.get((vehicle, trip_id, s), np.nan)
                                   for s in sequence])
            # a run of a repeated trip (frequencies.txt, or untimed) keeps to the
            # template's times moved to its own start
            offset = _run_offset(feed, trip_id, schedule, truth.get((vehicle, trip_id, None)),
                                 predictor, day.service_date, timezone)
            for i in np.flatnonzero(np.isfinite(dist)).tolist():
                progress = (None, float(dist[i]), float(t[i]))
                if t[i] - last_scored < every_s:
                    predictor.observe(feed, trip_id, vehicle, progress, day.service_date,
                                      timezone)
                    continue
                last_scored = t[i]
                f = predictor.forecast(feed, trip_id, vehicle, progress, day.service_date,
                                       timezone)
                if not len(f.predicted_t):
                    continue
                actual = actual_all[f.first:]
                ahead = np.isfinite(actual) & (actual > f.made_at)
                if not ahead.any():
                    continue
                scheduled = f.scheduled_t[ahead] + offset
                tally.add(f.made_at, actual[ahead], {
                    "model": f.predicted_t[ahead], "schedule": scheduled,
                    "carried": scheduled + (f.deviation_s - offset)},
                    f.lower_t[ahead], f.upper_t[ahead])


def _truth(day: DayTrace) -> dict:
    """Observed arrival per ``(vehicle, trip, stop_sequence)``; under ``(vehicle,
    trip, None)`` the departure from the run's first stop."""
    truth: dict = {}
    for a in day.arrivals:
        truth[(a.vehicle_id, a.trip_id, a.stop_sequence)] = a.arrival_t
        first = (a.vehicle_id, a.trip_id, None)
        truth[first] = min(truth.get(first, np.inf), a.departure_t)
    return truth


def _run_offset(feed: Feed, trip_id: str, schedule, departed_t: float | None,
                predictor: ArrivalPredictor, service_date, timezone: str | None) -> float:
    """Seconds from a repeated trip's template times to this run's own timetable.

    A trip of ``frequencies.txt`` runs at the start of its periods' headways: the
    run is the one whose start is the latest not after its departure from the first
    stop. Other trips: 0.
    """
    periods = feed.frequencies.get(trip_id)
    if not periods or departed_t is None or not np.isfinite(departed_t):
        return 0.0
    from cityos.apps.transit.models import service_day_origin

    tz = predictor._timezone(feed, timezone)
    departed_s = departed_t - service_day_origin(service_date, tz)
    starts = np.array([s for p in periods for s in range(p.start_s, p.end_s,
                                                          max(p.headway_s, 1))], dtype=float)
    if not len(starts):
        return 0.0
    before = starts[starts <= departed_s + 1.0]
    start = before.max() if len(before) else starts.min()
    return float(start - schedule.departure_s[0])
