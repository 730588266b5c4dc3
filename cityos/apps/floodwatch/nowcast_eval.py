"""How good the flood-depth nowcasts are on held-out storms, against persistence.

:func:`evaluate` replays a site's held-out readings through a fitted
:class:`~cityos.apps.floodwatch.nowcast.SiteNowcaster` (every reading issues a
nowcast, as the platform would) and scores, for the model it chose, every candidate it
fitted and persistence (the depth now, at every horizon), in the same run:

RMSE by horizon
    Over every held-out reading, and over wet periods
    (:func:`~cityos.apps.floodwatch.nowcast.wet_periods`: rain in the last hour or
    water on the road now or at the valid time). Errors are against the sensor's
    reading at the valid time.
Exceedance at each horizon
    Is the depth at the valid time at or above the threshold (20 cm by default)? Over
    every held-out reading, a hit is a nowcast at or above it when the depth was, a
    miss one below when it was, a false alarm one at or above it when it was not.
    Probability of detection (hit rate) = hits / (hits + misses); false-alarm ratio =
    false alarms / (hits + false alarms).
Warnings of crossings
    A crossing is the first reading at or above the threshold of an exceedance event
    (runs of readings at or above it less than ``merge_gap_min`` apart are one event).
    A model warns at a reading when any horizon's nowcast reaches the threshold. A
    crossing is warned if the model was warning at the reading just before it; the
    lead time is how long it had been warning without a break, at most the longest
    horizon (a nowcast cannot see further). Persistence only warns once the water is
    there, so it warns no crossing ahead. A warning (run of warning readings, merged
    like events) is false if the depth does not reach the threshold from its start
    to a longest horizon after its end.

:func:`run_synthetic_evaluation` does it all on the synthetic catchment (what
``cityos floodwatch evaluate`` prints): fit each site on the first part of its record,
evaluate on the rest, pool the sites; :meth:`EvaluationReport.table` formats it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import numpy as np

from cityos.apps.floodwatch.nowcast import (
    CANDIDATES,
    NowcastInputError,
    SiteNowcaster,
    check_readings,
    horizon_steps,
    wet_periods,
)
from cityos.apps.floodwatch.synthetic import synthetic_catchment

__all__ = ["DEFAULT_THRESHOLD_CM", "EvaluationReport", "ModelScores", "SiteEvaluation",
           "crossings", "evaluate", "run_synthetic_evaluation", "warning_lead_times"]

DEFAULT_THRESHOLD_CM = 20.0


@dataclass
class ModelScores:
    """Sums behind a model's scores, so that sites can be pooled (:meth:`merge`).

    Lists run over the horizons.
    """

    squared_error: list[float]
    readings: list[int]
    squared_error_wet: list[float]
    readings_wet: list[int]
    hits: list[int]
    misses: list[int]
    false_alarms: list[int]
    events: int = 0
    events_warned: int = 0
    lead_min: list[float] = field(default_factory=list)
    warnings: int = 0
    false_warnings: int = 0

    @classmethod
    def empty(cls, horizons: int) -> ModelScores:
        """Nothing counted yet."""
        zeros = [0] * horizons
        return cls([0.0] * horizons, list(zeros), [0.0] * horizons, list(zeros),
                   list(zeros), list(zeros), list(zeros))

    def merge(self, other: ModelScores) -> ModelScores:
        """The pooled sums of two."""
        add = lambda a, b: [x + y for x, y in zip(a, b, strict=True)]  # noqa: E731
        return ModelScores(add(self.squared_error, other.squared_error),
                           add(self.readings, other.readings),
                           add(self.squared_error_wet, other.squared_error_wet),
                           add(self.readings_wet, other.readings_wet),
                           add(self.hits, other.hits), add(self.misses, other.misses),
                           add(self.false_alarms, other.false_alarms),
                           self.events + other.events, self.events_warned + other.events_warned,
                           self.lead_min + other.lead_min, self.warnings + other.warnings,
                           self.false_warnings + other.false_warnings)

    @property
    def rmse_cm(self) -> list[float]:
        """RMSE per horizon over all held-out readings."""
        return [_ratio(s, n, root=True) for s, n in zip(self.squared_error, self.readings,
                                                          strict=True)]

    @property
    def rmse_wet_cm(self) -> list[float]:
        """RMSE per horizon over wet periods."""
        return [_ratio(s, n, root=True) for s, n in zip(self.squared_error_wet,
                                                          self.readings_wet, strict=True)]

    @property
    def hit_rate(self) -> list[float]:
        """Probability of detection of exceedance at the valid time, per horizon."""
        return [_ratio(h, h + m) for h, m in zip(self.hits, self.misses, strict=True)]

    @property
    def false_alarm_ratio(self) -> list[float]:
        """Share of exceedance nowcasts that did not come true, per horizon."""
        return [_ratio(f, h + f) for h, f in zip(self.hits, self.false_alarms, strict=True)]

    @property
    def warned_share(self) -> float:
        """Share of crossings warned of before they happened."""
        return _ratio(self.events_warned, self.events)

    @property
    def warning_false_alarm_ratio(self) -> float:
        """Share of warnings after which the depth did not reach the threshold."""
        return _ratio(self.false_warnings, self.warnings)

    @property
    def mean_lead_min(self) -> float:
        """Mean warning lead time over the warned crossings, minutes."""
        return float(np.mean(self.lead_min)) if self.lead_min else math.nan


def _ratio(a: float, b: float, root: bool = False) -> float:
    if not b:
        return math.nan
    return math.sqrt(a / b) if root else a / b


@dataclass
class SiteEvaluation:
    """One site's held-out scores, per model (``"chosen"``, the candidates,
    ``"persistence"``)."""

    site_id: str
    chosen: str
    reason: str
    scores: dict[str, ModelScores]
    start_s: float
    end_s: float
    readings: int


@dataclass
class EvaluationReport:
    """Held-out scores of several sites, pooled; :meth:`table` prints them."""

    sites: list[SiteEvaluation]
    threshold_cm: float
    horizons_min: tuple[float, ...]
    with_forecast: bool
    notes: list[str] = field(default_factory=list)

    @property
    def models(self) -> list[str]:
        """Scored models: chosen, the candidates present, persistence."""
        seen = {name for site in self.sites for name in site.scores}
        return [m for m in ("chosen", *CANDIDATES, "persistence") if m in seen]

    @property
    def pooled(self) -> dict[str, ModelScores]:
        """Every model's scores summed over the sites that have it."""
        out: dict[str, ModelScores] = {}
        for site in self.sites:
            for name, scores in site.scores.items():
                out[name] = out[name].merge(scores) if name in out else scores
        return out

    def to_dict(self) -> dict:
        """Plain data (for JSON), with the derived scores."""
        pooled = {}
        for name, s in self.pooled.items():
            pooled[name] = {"rmse_cm": s.rmse_cm, "rmse_wet_cm": s.rmse_wet_cm,
                            "hit_rate": s.hit_rate, "false_alarm_ratio": s.false_alarm_ratio,
                            "crossings": s.events, "crossings_warned": s.events_warned,
                            "warning_false_alarm_ratio": s.warning_false_alarm_ratio,
                            "mean_lead_min": s.mean_lead_min}
        return {"threshold_cm": self.threshold_cm, "horizons_min": list(self.horizons_min),
                "with_forecast": self.with_forecast, "pooled": pooled,
                "sites": [{"site_id": s.site_id, "chosen": s.chosen, "reason": s.reason,
                           "start_s": s.start_s, "end_s": s.end_s, "readings": s.readings,
                           "scores": {k: asdict(v) for k, v in s.scores.items()}}
                          for s in self.sites], "notes": list(self.notes)}

    def table(self) -> str:
        """The report as plain-text tables."""
        pooled = self.pooled
        models = self.models
        heads = "".join(f"{h:>8g}m" for h in self.horizons_min)
        width = 9 * len(self.horizons_min)
        start = min(s.start_s for s in self.sites)
        end = max(s.end_s for s in self.sites)
        lines = [f"Flood-depth nowcasts on held-out readings: {len(self.sites)} site(s), "
                 f"{_day(start)} to {_day(end)} ({(end - start) / 86400:.1f} days), "
                 f"threshold {self.threshold_cm:g} cm, rainfall forecast "
                 + ("given" if self.with_forecast else "not given (decaying recent rain)"),
                 "", "Model chosen per site (on validation within its training period):"]
        lines += [f"  {s.site_id:<10} {s.chosen:<12} {s.reason}" for s in self.sites]
        lines += ["", f"{'RMSE (cm)':<13}{'all readings':^{width}}   {'wet periods':^{width}}",
                  f"{'model':<13}{heads}   {heads}"]
        for m in models:
            lines.append(f"{m:<13}{_cells(pooled[m].rmse_cm, 9, '.2f')}   "
                         f"{_cells(pooled[m].rmse_wet_cm, 9, '.2f')}")
        lines += ["", f"Depth >= {self.threshold_cm:g} cm at the valid time",
                  f"{'':<13}{'hit rate':^{width}}   {'false-alarm ratio':^{width}}",
                  f"{'model':<13}{heads}   {heads}"]
        for m in models:
            lines.append(f"{m:<13}{_cells(pooled[m].hit_rate, 9, '.2f')}   "
                         f"{_cells(pooled[m].false_alarm_ratio, 9, '.2f')}")
        events = pooled[models[0]].events if models else 0
        lines += ["", f"Warnings of the {events} crossing(s) of {self.threshold_cm:g} cm "
                  f"(warned: warning in force just before the crossing)",
                  f"{'model':<13}{'warned':>8}{'hit rate':>10}{'warnings':>10}"
                  f"{'false-alarm ratio':>19}{'mean lead (min)':>17}"]
        for m in models:
            s = pooled[m]
            lines.append(f"{m:<13}{s.events_warned:>8d}{_cell(s.warned_share, '.2f'):>10}"
                         f"{s.warnings:>10d}{_cell(s.warning_false_alarm_ratio, '.2f'):>19}"
                         f"{_cell(s.mean_lead_min, '.1f'):>17}")
        for m in models:
            have = sum(m in site.scores for site in self.sites)
            if have < len(self.sites):
                lines.append(f"{m}: scored at {have} of {len(self.sites)} sites (not fitted "
                             "at the others, see why above)")
        lines += self.notes
        return "\n".join(lines)


def _cell(value: float, spec: str) -> str:
    return "-" if not math.isfinite(value) else format(value, spec)


def _cells(values: Sequence[float], width: int, spec: str) -> str:
    return "".join(f"{_cell(v, spec):>{width}}" for v in values)


def _day(t_s: float) -> str:
    return datetime.fromtimestamp(t_s, UTC).strftime("%Y-%m-%d %H:%M")


def _runs(flags: np.ndarray, merge_gap: int) -> list[tuple[int, int]]:
    """``(first, last)`` index of runs of True, runs less than ``merge_gap`` apart joined."""
    index = np.flatnonzero(flags)
    if index.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(index) > merge_gap)
    firsts = np.concatenate([[index[0]], index[breaks + 1]])
    lasts = np.concatenate([index[breaks], [index[-1]]])
    return list(zip(firsts.tolist(), lasts.tolist(), strict=True))


def crossings(depth_cm, threshold_cm: float, merge_gap: int) -> np.ndarray:
    """Index of the first reading at or above the threshold of each exceedance event."""
    depth = np.asarray(depth_cm, dtype=float)
    return np.array([first for first, _ in _runs(depth >= threshold_cm, merge_gap)], dtype=int)


def warning_lead_times(warning: np.ndarray, crossing_index: np.ndarray,
                       max_lead: int) -> np.ndarray:
    """Readings of continuous warning just before each crossing (0: not warned).

    Capped at ``max_lead``.
    """
    warning = np.asarray(warning, dtype=bool)
    index = np.arange(warning.size)
    # start of the warning run each reading belongs to
    run_start = np.maximum.accumulate(np.where(~warning, index + 1, 0))
    leads = []
    for c in np.asarray(crossing_index, dtype=int).tolist():
        before = c - 1
        leads.append(0 if before < 0 or not warning[before]
                     else min(c - run_start[before], max_lead))
    return np.array(leads, dtype=int)


def _score(predicted: np.ndarray, depth: np.ndarray, steps: np.ndarray, scored: np.ndarray,
           wet: np.ndarray, threshold: float, merge_gap: int, first_scored: int,
           dt_min: float) -> ModelScores:
    out = ModelScores.empty(steps.size)
    for k, h in enumerate(steps.tolist()):
        rows = np.flatnonzero(scored[: max(depth.size - h, 0)])
        error = predicted[rows, k] - depth[rows + h]
        out.squared_error[k] = float(np.sum(error**2))
        out.readings[k] = int(rows.size)
        wet_rows = wet[k][rows]
        out.squared_error_wet[k] = float(np.sum(error[wet_rows] ** 2))
        out.readings_wet[k] = int(wet_rows.sum())
        said = predicted[rows, k] >= threshold
        came = depth[rows + h] >= threshold
        out.hits[k] = int(np.sum(said & came))
        out.misses[k] = int(np.sum(~said & came))
        out.false_alarms[k] = int(np.sum(said & ~came))
    max_lead = int(steps.max())
    warning = (predicted >= threshold).any(axis=1) & scored
    events = crossings(depth, threshold, merge_gap)
    events = events[events >= first_scored + max_lead]  # the whole lead window is scored
    leads = warning_lead_times(warning, events, max_lead)
    out.events = int(events.size)
    out.events_warned = int(np.sum(leads > 0))
    out.lead_min = (leads[leads > 0] * dt_min).tolist()
    exceed = depth >= threshold
    for first, last in _runs(warning, merge_gap):
        out.warnings += 1
        out.false_warnings += int(not exceed[first:last + max_lead + 1].any())
    return out


def evaluate(nowcaster: SiteNowcaster, t_s, rain_mm, depth_cm, rain_forecast_mm=None, *,
             threshold_cm: float = DEFAULT_THRESHOLD_CM, start_s: float | None = None,
             site_id: str = "site", merge_gap_min: float = 30.0) -> SiteEvaluation:
    """Score a fitted nowcaster, its candidates and persistence on held-out readings.

    Parameters
    ----------
    nowcaster : SiteNowcaster
        Fitted on data before ``start_s``.
    t_s, rain_mm, depth_cm : array-like
        The site's readings; those before ``start_s`` only warm the models up.
    rain_forecast_mm : array-like, optional
        The rainfall forecast issued at each reading (``(readings, steps)``).
    threshold_cm : float
        Exceedance threshold (20 cm: unsafe for cars).
    start_s : float, optional
        First reading scored (default: the first).
    site_id : str
        For the report.
    merge_gap_min : float
        Exceedances (and warnings) less than this apart count as one.

    Returns
    -------
    SiteEvaluation
    """
    t, rain, depth, forecast, dt_s = check_readings(t_s, rain_mm, depth_cm, rain_forecast_mm)
    if not (math.isfinite(threshold_cm) and threshold_cm > 0):
        raise NowcastInputError(f"threshold_cm: {threshold_cm!r} must be a positive depth")
    if not nowcaster.chosen:
        raise NowcastInputError("nowcaster: not fitted")
    steps = horizon_steps(nowcaster.horizons_min, dt_s)
    scored = np.ones(t.size, dtype=bool) if start_s is None else t >= start_s
    if scored.sum() <= steps.max():
        raise NowcastInputError("start_s: fewer held-out readings than the longest horizon")
    first_scored = int(np.argmax(scored))
    wet = [wet_periods(rain, depth, dt_s, int(h)) for h in steps]
    merge_gap = max(1, int(round(merge_gap_min * 60.0 / dt_s)))
    scores: dict[str, ModelScores] = {}
    for name in ("persistence", *CANDIDATES):
        if name not in nowcaster.models:
            continue
        predicted = nowcaster.predict_series(t, rain, depth, forecast, model=name)
        scores[name] = _score(predicted, depth, steps, scored, wet, threshold_cm, merge_gap,
                              first_scored, dt_s / 60.0)
    scores["chosen"] = scores[nowcaster.chosen]
    return SiteEvaluation(site_id=site_id, chosen=nowcaster.chosen, reason=nowcaster.reason,
                          scores=scores, start_s=float(t[first_scored]), end_s=float(t[-1]),
                          readings=int(scored.sum()))


def run_synthetic_evaluation(seed: int = 0, days: float = 60.0, sites: int = 5, *,
                             train_fraction: float = 0.5,
                             threshold_cm: float = DEFAULT_THRESHOLD_CM,
                             rain_forecast: bool = True, dt_s: float = 60.0,
                             storms_per_day: float = 0.5, refit: bool = True,
                             boosting_options: dict | None = None,
                             progress: Callable[[str], None] | None = None
                             ) -> EvaluationReport:
    """Fit and evaluate nowcasts on the synthetic catchment (``cityos floodwatch evaluate``).

    Each site is fitted on the first ``train_fraction`` of the record and scored on
    the rest, whose storms it has never seen.

    Parameters
    ----------
    seed, days, sites : int, float, int
        The catchment (:func:`~cityos.apps.floodwatch.synthetic.synthetic_catchment`).
    train_fraction : float
        Share of the record used for fitting.
    threshold_cm : float
        Exceedance threshold.
    rain_forecast : bool
        Give the models a rainfall forecast (the truth with timing and amount errors).
    dt_s : float
        Reading interval.
    storms_per_day : float
        Storm rate of the catchment.
    refit : bool
        Refit on the whole training part after choosing (slower, a little better).
    boosting_options : dict, optional
        Settings of the data-driven model (see
        :class:`~cityos.apps.floodwatch.nowcast.BoostingNowcaster`).
    progress : callable, optional
        Called with each site's id once it is fitted and scored (a
        :meth:`~cityos.core.progress.Progress.step`).

    Returns
    -------
    EvaluationReport
    """
    if not 0.1 <= train_fraction <= 0.9:
        raise NowcastInputError(f"train_fraction: {train_fraction!r} must be within 0.1-0.9")
    catchment = synthetic_catchment(seed=seed, days=days, sites=sites, dt_s=dt_s,
                                    storms_per_day=storms_per_day)
    split = int(round(catchment.t_s.size * train_fraction))
    evaluations = []
    for i, site_id in enumerate(catchment.site_ids):
        forecast = catchment.rain_forecast(i) if rain_forecast else None
        part = slice(0, split)
        nowcaster = SiteNowcaster(refit=refit, random_state=seed,
                                  boosting_options=boosting_options).fit(
            catchment.t_s[part], catchment.rain_mm[i, part], catchment.depth_cm[i, part],
            None if forecast is None else forecast[part])
        evaluations.append(evaluate(nowcaster, catchment.t_s, catchment.rain_mm[i],
                                    catchment.depth_cm[i], forecast,
                                    threshold_cm=threshold_cm,
                                    start_s=float(catchment.t_s[split]), site_id=site_id))
        if progress is not None:
            progress(site_id)
    notes = [f"Synthetic catchment seed {seed}: {len(catchment.storms)} storms in "
             f"{days:g} days; fitted on the first {train_fraction:.0%} of each record."]
    return EvaluationReport(evaluations, threshold_cm, SiteNowcaster().horizons_min,
                            rain_forecast, ["", *notes])
