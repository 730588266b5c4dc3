"""Flood-depth nowcasts at a sensor for the next 10, 20 and 30 minutes.

Inputs are one site's readings: times ``t_s`` (seconds since the epoch, evenly spaced),
rain ``rain_mm`` (mm in each reading interval ``(t_s[i] - dt, t_s[i]]``, from the
site's gauge) and depth ``depth_cm`` (the road sensor), plus optionally a rainfall
forecast ``rain_forecast_mm``: row ``i`` holds the rain expected in each of the next
``30 min / dt`` intervals after ``t_s[i]``. Three models compete per site:

``conceptual`` (:class:`ConceptualNowcaster`)
    The physics of a flooded road sag: the rain first refills an initial loss (which
    dries out at :data:`LOSS_RECOVERY_MM_PER_H`), the excess x a gain passes a cascade
    of ``n_reservoirs`` linear reservoirs (time constant ``k_min`` each) into the sag,
    whose drain takes up to ``drain_cm_per_h``; what it cannot take is the depth. The
    four parameters (:class:`ReservoirParams`) are calibrated per site by least squares
    on its history (:func:`calibrate_reservoir`). At each nowcast the pond is reset to
    the observed depth (data assimilation: the depth is the model's pond, so the
    nowcast starts from what the sensor sees, while the reservoirs carry what is still
    on its way). Without a rainfall forecast the rain is assumed to go on at its mean
    rate of the last :data:`RECENT_RAIN_MIN` minutes, decaying exponentially with an
    e-folding time of :data:`RAIN_DECAY_MIN` minutes: convective cells rarely last
    much longer, and plain persistence floods the road after every storm's end while
    assuming no rain misses every storm's middle.
``boosting`` (:class:`BoostingNowcaster`)
    scikit-learn's ``HistGradientBoostingRegressor``, one per horizon, predicting the
    change of depth from :func:`lagged_features` (depth now and its recent changes,
    rain over the last 5 to 180 min, time since the storm started and since the last
    rain, and the forecast rain when given).
``persistence``
    Depth stays as it is now: the baseline, and the floor of the choice.

:class:`SiteNowcaster` fits the candidates on the first part of a history, scores
them on the rest (RMSE at the longest horizon over wet periods, :func:`wet_periods`),
keeps the best unless persistence does better, and refits on the whole history.

For many sites at once, :class:`ReservoirFleet` steps every site's calibrated
conceptual model together, one reading at a time (arrays over sites, no Python loop
over sites), and :func:`nowcast_sites` runs it over a recent window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares
from scipy.signal import lfilter
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

__all__ = ["CANDIDATES", "HORIZONS_MIN", "LOSS_RECOVERY_MM_PER_H", "RAIN_DECAY_MIN",
           "RECENT_RAIN_MIN", "BoostingNowcaster", "ConceptualNowcaster", "Nowcast",
           "NowcastInputError", "PersistenceNowcaster", "ReservoirCalibration",
           "ReservoirFleet", "ReservoirParams", "ReservoirRun", "SiteNowcaster", "Skill",
           "assumed_rain", "calibrate_reservoir", "check_readings", "horizon_steps",
           "lagged_features", "nowcast_sites", "simulate_reservoir", "wet_periods"]

HORIZONS_MIN = (10, 20, 30)
#: How fast the initial loss dries out between storms (evaporation off hot tarmac);
#: fixed, not calibrated: a history says little about it.
LOSS_RECOVERY_MM_PER_H = 2.0
#: Without a rainfall forecast, the rain is assumed to carry on at its mean rate over
#: the last RECENT_RAIN_MIN minutes, decaying with this e-folding time.
RAIN_DECAY_MIN = 20.0
RECENT_RAIN_MIN = 10.0
#: A reading is wet (scored in "wet periods") if it rained in the last WET_RAIN_MIN
#: minutes or the depth is at least WET_DEPTH_CM now or at the nowcast's valid time.
WET_RAIN_MIN = 60.0
WET_DEPTH_CM = 1.0
CANDIDATES = ("conceptual", "boosting")


class NowcastInputError(ValueError):
    """Readings or settings a nowcast cannot use; the text names the field."""


# ================================================================ input checks
def _series(name: str, values, n: int | None = None, ndim: int = 1) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise NowcastInputError(f"{name}: not numbers ({exc})") from None
    if array.ndim != ndim:
        raise NowcastInputError(f"{name}: expected {ndim} dimension(s), got shape "
                                f"{array.shape}")
    if n is not None and array.shape[0] != n:
        raise NowcastInputError(f"{name}: length {array.shape[0]} does not match "
                                f"t_s ({n})")
    bad = ~np.isfinite(array)
    if bad.any():
        where = np.argwhere(bad)[0]
        raise NowcastInputError(f"{name}: not a finite number at index "
                                f"{tuple(int(w) for w in where) if ndim > 1 else int(where[0])}")
    return array


def check_readings(t_s, rain_mm, depth_cm, rain_forecast_mm=None, *,
                   forecast_steps: int | None = None):
    """Validate one site's readings; a :class:`NowcastInputError` names what is wrong.

    Parameters
    ----------
    t_s : array-like
        Reading times, strictly increasing and evenly spaced, at least two.
    rain_mm, depth_cm : array-like
        Same length as ``t_s``, finite and not negative.
    rain_forecast_mm : array-like, optional
        ``(len(t_s), forecast_steps)``, finite and not negative.
    forecast_steps : int, optional
        Required width of ``rain_forecast_mm`` (at least this many columns).

    Returns
    -------
    tuple
        ``(t_s, rain_mm, depth_cm, rain_forecast_mm or None, dt_s)`` as float arrays.
    """
    t = _series("t_s", t_s)
    if t.size < 2:
        raise NowcastInputError(f"t_s: at least two readings needed, got {t.size}")
    steps = np.diff(t)
    if (steps <= 0).any():
        i = int(np.argmax(steps <= 0)) + 1
        raise NowcastInputError(f"t_s: not strictly increasing at index {i}")
    dt_s = float(np.median(steps))
    uneven = np.abs(steps - dt_s) > 1e-3 * dt_s
    if uneven.any():
        i = int(np.argmax(uneven)) + 1
        raise NowcastInputError(f"t_s: readings must be evenly spaced ({dt_s:g} s); "
                                f"gap of {steps[i - 1]:g} s before index {i}")
    rain = _series("rain_mm", rain_mm, t.size)
    depth = _series("depth_cm", depth_cm, t.size)
    for name, array in (("rain_mm", rain), ("depth_cm", depth)):
        if (array < 0).any():
            raise NowcastInputError(f"{name}: negative at index {int(np.argmax(array < 0))}")
    forecast = None
    if rain_forecast_mm is not None:
        forecast = _series("rain_forecast_mm", rain_forecast_mm, t.size, ndim=2)
        if forecast_steps is not None and forecast.shape[1] < forecast_steps:
            raise NowcastInputError(f"rain_forecast_mm: {forecast.shape[1]} columns, "
                                    f"{forecast_steps} needed to reach the last horizon")
        if (forecast < 0).any():
            raise NowcastInputError("rain_forecast_mm: negative rain")
    return t, rain, depth, forecast, dt_s


def horizon_steps(horizons_min: Sequence[float], dt_s: float) -> np.ndarray:
    """Readings ahead of each horizon; each must be a whole number of intervals."""
    horizons = np.asarray(horizons_min, dtype=float)
    if horizons.ndim != 1 or horizons.size == 0 or not (horizons > 0).all():
        raise NowcastInputError(f"horizons_min: {horizons_min!r} must be positive minutes")
    steps = horizons * 60.0 / dt_s
    if (np.abs(steps - np.rint(steps)) > 1e-6).any():
        raise NowcastInputError(f"horizons_min: {list(horizons_min)} are not whole "
                                f"numbers of {dt_s:g}-s readings")
    return np.rint(steps).astype(int)


def _steps(minutes: float, dt_s: float) -> int:
    return max(1, int(round(minutes * 60.0 / dt_s)))


def _trailing_sum(values: np.ndarray, window: int) -> np.ndarray:
    """Sum of the last ``window`` readings up to and including each one."""
    c = np.concatenate([[0.0], np.cumsum(values)])
    i = np.arange(1, values.size + 1)
    return c[i] - c[np.maximum(i - window, 0)]


def wet_periods(rain_mm, depth_cm, dt_s: float, ahead_steps: int = 0) -> np.ndarray:
    """Readings in wet weather: rain in the last hour, or water on the road.

    A reading ``i`` is wet if it rained in the :data:`WET_RAIN_MIN` minutes up to it,
    or the depth is at least :data:`WET_DEPTH_CM` at ``i`` or ``ahead_steps`` later.
    """
    rain = np.asarray(rain_mm, dtype=float)
    depth = np.asarray(depth_cm, dtype=float)
    wet = (_trailing_sum(rain, _steps(WET_RAIN_MIN, dt_s)) > 0) | (depth >= WET_DEPTH_CM)
    if ahead_steps:
        later = np.zeros(depth.size, dtype=bool)
        later[:-ahead_steps] = depth[ahead_steps:] >= WET_DEPTH_CM
        wet |= later
    return wet


# ======================================================= the conceptual model
@dataclass(frozen=True)
class ReservoirParams:
    """A site's conceptual flood model (see the module text).

    ``gain_cm_per_mm`` is the depth 1 mm of rain above the initial loss would pond if
    nothing drained (runoff coefficient x contributing area / ponding area / 10);
    ``drain_cm_per_h`` how fast the drain lowers the pond.
    """

    initial_loss_mm: float
    k_min: float
    gain_cm_per_mm: float
    drain_cm_per_h: float
    n_reservoirs: int = 2
    loss_recovery_mm_per_h: float = LOSS_RECOVERY_MM_PER_H

    def __post_init__(self):
        for name in ("initial_loss_mm", "k_min", "gain_cm_per_mm", "drain_cm_per_h",
                     "loss_recovery_mm_per_h"):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value < 0 or (name == "k_min" and value == 0):
                raise NowcastInputError(f"{name}: {value!r} is out of range")
        if int(self.n_reservoirs) != self.n_reservoirs or self.n_reservoirs < 1:
            raise NowcastInputError(f"n_reservoirs: {self.n_reservoirs!r} must be >= 1")


@dataclass
class ReservoirRun:
    """A run of the conceptual model over a series: depth and the state after each
    reading (``stores_cm`` is ``(n_reservoirs, readings)``)."""

    depth_cm: np.ndarray
    loss_deficit_mm: np.ndarray
    stores_cm: np.ndarray
    effective_rain_cm: np.ndarray
    inflow_cm: np.ndarray


def _reservoir_coefficients(k_min, dt_s: float):
    a = np.exp(-dt_s / (60.0 * np.asarray(k_min, dtype=float)))
    return a, 60.0 * np.asarray(k_min, dtype=float) / dt_s * (1.0 - a)


def _loss_excess(rain: np.ndarray, initial_loss_mm: float, recovery_mm: float,
                 deficit0: float, want_deficit: bool):
    """Rain above the initial loss per reading; the loss deficit after each if asked.

    Only wet readings are visited: over a dry spell the deficit just recovers
    linearly up to the loss capacity, which is done in one go.
    """
    excess = np.zeros(rain.size)
    wet = np.flatnonzero(rain > 0)
    after = np.empty(wet.size)
    deficit, last = float(deficit0), -1
    cap = float(initial_loss_mm)
    for n, i in enumerate(wet.tolist()):
        deficit = min(cap, deficit + recovery_mm * (i - last))
        r = rain[i]
        if r > deficit:
            excess[i] = r - deficit
            deficit = 0.0
        else:
            deficit -= r
        after[n] = deficit
        last = i
    if not want_deficit:
        return excess, None
    index = np.arange(rain.size)
    previous = np.searchsorted(wet, index, side="right") - 1  # last wet reading <= i
    seen = previous >= 0
    if wet.size:
        base = np.where(seen, after[np.maximum(previous, 0)], deficit0)
        since = index - np.where(seen, wet[np.maximum(previous, 0)], -1)
    else:
        base, since = np.full(rain.size, float(deficit0)), index + 1
    return excess, np.minimum(cap, base + recovery_mm * since)


def simulate_reservoir(rain_mm, params: ReservoirParams, dt_s: float = 60.0, *,
                       loss_deficit_mm: float | None = None,
                       stores_cm: Sequence[float] | None = None, pond_cm: float = 0.0,
                       states: bool = False):
    """Depth the conceptual model gives for a rain series (fast, for calibration).

    The linear reservoirs run as IIR filters (``scipy.signal.lfilter``) and the drain
    as a Lindley recursion (a cumulative sum and running minimum), so a month of
    one-minute readings takes about a millisecond.

    Parameters
    ----------
    rain_mm : array-like
        Rain per reading interval.
    params : ReservoirParams
        The site's model.
    dt_s : float
        Reading interval, seconds.
    loss_deficit_mm, stores_cm, pond_cm : optional
        State before the first reading; a dry road by default (initial loss empty,
        nothing stored).
    states : bool
        Return a :class:`ReservoirRun` with the state after every reading instead of
        the depth alone.

    Returns
    -------
    numpy.ndarray or ReservoirRun
        Depth after each reading, cm.
    """
    rain = np.asarray(rain_mm, dtype=float)
    n_res = int(params.n_reservoirs)
    deficit0 = params.initial_loss_mm if loss_deficit_mm is None else loss_deficit_mm
    stores0 = np.zeros(n_res) if stores_cm is None else np.asarray(stores_cm, dtype=float)
    excess, deficit = _loss_excess(rain, params.initial_loss_mm,
                                   params.loss_recovery_mm_per_h * dt_s / 3600.0,
                                   deficit0, states)
    effective = params.gain_cm_per_mm * excess
    a, b = _reservoir_coefficients(params.k_min, dt_s)
    flow = effective
    stores = np.empty((n_res, rain.size)) if states else None
    for j in range(n_res):
        # S[i] = a S[i-1] + b u[i]; outflow = S[i-1] + u[i] - S[i] (exact water balance)
        held = lfilter([b], [1.0, -a], flow, zi=[a * stores0[j]])[0]
        flow = np.concatenate([[stores0[j]], held[:-1]]) + flow - held
        if states:
            stores[j] = held
    # pond[i] = max(0, pond[i-1] + inflow[i] - drain): a Lindley recursion
    walk = np.cumsum(flow - params.drain_cm_per_h * dt_s / 3600.0)
    depth = walk - np.minimum(np.minimum.accumulate(walk), -float(pond_cm))
    np.maximum(depth, 0.0, out=depth)  # rounding of the cumulative sum
    if not states:
        return depth
    return ReservoirRun(depth_cm=depth, loss_deficit_mm=deficit, stores_cm=stores,
                        effective_rain_cm=effective, inflow_cm=flow)


@dataclass
class ReservoirCalibration:
    """What :func:`calibrate_reservoir` found: the parameters (None when the history
    has no ponding to learn from), the fit's RMSE over the readings used, and why."""

    params: ReservoirParams | None
    rmse_cm: float
    readings_used: int
    note: str = ""


def _recession_drain_cm_per_h(rain, depth, dt_s) -> float:
    """The drain rate seen in the history: how fast ponds fall once the rain stops."""
    lag = _steps(5, dt_s)
    dry = _trailing_sum(rain, _steps(20, dt_s)) == 0
    fall = np.full(depth.size, np.nan)
    fall[lag:] = (depth[:-lag] - depth[lag:]) / (lag * dt_s / 3600.0)
    use = dry & (np.concatenate([np.zeros(lag), depth[:-lag]]) > 3.0) & (depth > 1.0)
    return float(np.nanpercentile(fall[use], 90)) if use.sum() >= 5 else 30.0


def calibrate_reservoir(t_s, rain_mm, depth_cm, *, n_reservoirs: int = 2,
                        loss_recovery_mm_per_h: float = LOSS_RECOVERY_MM_PER_H,
                        min_ponding_cm: float = 3.0) -> ReservoirCalibration:
    """Calibrate the conceptual model to a site's history of rain and depth.

    Least squares (``scipy.optimize.least_squares``, trust region with bounds, in log
    space for the positive parameters) on the depth over the readings within six hours
    of rain or with water on the road, started from the best few points of a coarse
    grid (the drain rate's seeded from the recession slopes of the record).

    Bounds: initial loss 0-30 mm, time constant 0.5-180 min, gain 0.01-50 cm/mm, drain
    0.1-1000 cm/h.

    Parameters
    ----------
    t_s, rain_mm, depth_cm : array-like
        The history (see :func:`check_readings`).
    n_reservoirs : int
        Reservoirs in the cascade.
    loss_recovery_mm_per_h : float
        Drying of the initial loss (fixed).
    min_ponding_cm : float
        A history whose depth never reaches this has nothing to calibrate on.

    Returns
    -------
    ReservoirCalibration
    """
    _, rain, depth, _, dt_s = check_readings(t_s, rain_mm, depth_cm)
    if depth.max() < min_ponding_cm:
        return ReservoirCalibration(None, math.nan, 0,
                                    f"depth never reaches {min_ponding_cm:g} cm")
    use = (_trailing_sum(rain, _steps(360, dt_s)) > 0) | (depth >= 0.5)
    target = depth[use]

    def make(theta) -> ReservoirParams:
        return ReservoirParams(initial_loss_mm=float(theta[0]), k_min=math.exp(theta[1]),
                               gain_cm_per_mm=math.exp(theta[2]),
                               drain_cm_per_h=math.exp(theta[3]), n_reservoirs=n_reservoirs,
                               loss_recovery_mm_per_h=loss_recovery_mm_per_h)

    def residuals(theta):
        return simulate_reservoir(rain, make(theta), dt_s)[use] - target

    drain0 = min(max(_recession_drain_cm_per_h(rain, depth, dt_s), 1.0), 500.0)
    grid = [(il, math.log(k), math.log(g), math.log(drain0 * f))
            for il in (1.0, 4.0) for k in (2.0, 5.0, 12.0, 30.0)
            for g in (0.3, 0.8, 2.0, 5.0) for f in (0.7, 1.5)]
    costs = [float(np.sum(residuals(theta) ** 2)) for theta in grid]
    lower = [0.0, math.log(0.5), math.log(0.01), math.log(0.1)]
    upper = [30.0, math.log(180.0), math.log(50.0), math.log(1000.0)]
    best = None
    for i in np.argsort(costs)[:3]:
        start = np.clip(grid[i], lower, upper)
        fit = least_squares(residuals, start, bounds=(lower, upper), x_scale=[1.0, 0.3, 0.3, 0.3],
                            max_nfev=300)
        if best is None or fit.cost < best.cost:
            best = fit
    rmse = float(np.sqrt(2 * best.cost / target.size))
    return ReservoirCalibration(make(best.x), rmse, int(target.size),
                                "" if best.success else str(best.message))


def assumed_rain(rain_mm, dt_s: float, n_steps: int,
                 decay_min: float = RAIN_DECAY_MIN,
                 recent_min: float = RECENT_RAIN_MIN) -> np.ndarray:
    """Rain assumed for the next ``n_steps`` intervals when no forecast is given.

    The mean rate of the last ``recent_min`` minutes, decaying exponentially with an
    e-folding time of ``decay_min`` (integrated exactly over each interval).

    Parameters
    ----------
    rain_mm : array-like
        Rain per reading, ``(readings,)`` or ``(rows, readings)``; the assumption is made
        after every reading (last axis).
    dt_s : float
        Reading interval.
    n_steps : int
        Intervals ahead.

    Returns
    -------
    numpy.ndarray
        ``rain_mm.shape + (n_steps,)``, mm per interval.
    """
    rain = np.asarray(rain_mm, dtype=float)
    window = _steps(recent_min, dt_s)
    c = np.concatenate([np.zeros(rain.shape[:-1] + (1,)), np.cumsum(rain, axis=-1)], axis=-1)
    i = np.arange(1, rain.shape[-1] + 1)
    per_step = (c[..., i] - c[..., np.maximum(i - window, 0)]) / window
    return per_step[..., None] * _decay_weights(dt_s, n_steps, decay_min)


def _decay_weights(dt_s: float, n_steps: int, decay_min: float = RAIN_DECAY_MIN):
    """Mean of exp(-t / decay) over each of the next ``n_steps`` intervals."""
    edges = np.arange(n_steps + 1) * dt_s / (60.0 * decay_min)
    return np.diff(-np.exp(-edges)) * (60.0 * decay_min / dt_s)


class _Coefficients:
    """Per-row model coefficients for stepping many sites (or issue times) at once."""

    def __init__(self, params: Sequence[ReservoirParams], dt_s: float):
        col = lambda name: np.array([float(getattr(p, name)) for p in params])  # noqa: E731
        self.loss_cap = col("initial_loss_mm")
        self.recovery = col("loss_recovery_mm_per_h") * dt_s / 3600.0
        self.gain = col("gain_cm_per_mm")
        self.drain = col("drain_cm_per_h") * dt_s / 3600.0
        self.n_max = max(int(p.n_reservoirs) for p in params)
        # a reservoir past a site's own cascade passes its inflow on (a = b = 0)
        self.a = np.zeros((len(params), self.n_max))
        self.b = np.zeros((len(params), self.n_max))
        for i, p in enumerate(params):
            a, b = _reservoir_coefficients(p.k_min, dt_s)
            self.a[i, :p.n_reservoirs] = a
            self.b[i, :p.n_reservoirs] = b

    def take(self, rows: np.ndarray) -> _Coefficients:
        out = object.__new__(_Coefficients)
        for name in ("loss_cap", "recovery", "gain", "drain", "a", "b"):
            setattr(out, name, getattr(self, name)[rows])
        out.n_max = self.n_max
        return out


def _step(deficit, stores, pond, rain, c: _Coefficients) -> None:
    """Advance the state of every row by one reading of rain, in place."""
    np.minimum(c.loss_cap, deficit + c.recovery, out=deficit)
    absorbed = np.minimum(rain, deficit)
    deficit -= absorbed
    flow = c.gain * (rain - absorbed)
    for j in range(c.n_max):
        new = c.a[:, j] * stores[:, j] + c.b[:, j] * flow
        flow = stores[:, j] + flow - new
        stores[:, j] = new
    np.maximum(pond + flow - c.drain, 0.0, out=pond)


def _run_ahead(deficit, stores, pond, future_rain, c: _Coefficients,
               steps: np.ndarray) -> np.ndarray:
    """Depth at each of ``steps`` readings ahead for every row (state is consumed)."""
    out = np.empty((pond.size, steps.size))
    wanted = {int(s): k for k, s in enumerate(steps)}
    for j in range(int(steps.max())):
        _step(deficit, stores, pond, future_rain[:, j], c)
        if j + 1 in wanted:
            out[:, wanted[j + 1]] = pond
    return out


# ================================================================= candidates
class PersistenceNowcaster:
    """The depth now, at every horizon."""

    name = "persistence"

    def __init__(self, horizons_min: Sequence[float] = HORIZONS_MIN):
        self.horizons_min = tuple(horizons_min)

    def fit(self, t_s, rain_mm, depth_cm, rain_forecast_mm=None) -> PersistenceNowcaster:
        """Nothing to learn; checks the readings."""
        check_readings(t_s, rain_mm, depth_cm, rain_forecast_mm)
        return self

    def predict_series(self, t_s, rain_mm, depth_cm, rain_forecast_mm=None) -> np.ndarray:
        """``(readings, horizons)``: the depth of each reading, repeated."""
        _, _, depth, _, _ = check_readings(t_s, rain_mm, depth_cm, rain_forecast_mm)
        return np.repeat(depth[:, None], len(self.horizons_min), axis=1)


class ConceptualNowcaster:
    """The calibrated conceptual model, with the pond reset to the observed depth.

    Parameters
    ----------
    horizons_min : sequence of float
        Nowcast horizons, minutes.
    n_reservoirs : int
        Reservoirs in the cascade.
    params : ReservoirParams, optional
        Use these instead of calibrating in :meth:`fit`.
    """

    name = "conceptual"

    def __init__(self, horizons_min: Sequence[float] = HORIZONS_MIN, n_reservoirs: int = 2,
                 params: ReservoirParams | None = None):
        self.horizons_min = tuple(horizons_min)
        self.n_reservoirs = n_reservoirs
        self.params = params
        self.calibration: ReservoirCalibration | None = None

    @property
    def fitted(self) -> bool:
        """Whether there are parameters to nowcast with."""
        return self.params is not None

    def fit(self, t_s, rain_mm, depth_cm, rain_forecast_mm=None) -> ConceptualNowcaster:
        """Calibrate on a history (the forecast is not needed to calibrate)."""
        self.calibration = calibrate_reservoir(t_s, rain_mm, depth_cm,
                                               n_reservoirs=self.n_reservoirs)
        self.params = self.calibration.params
        return self

    def predict_series(self, t_s, rain_mm, depth_cm, rain_forecast_mm=None) -> np.ndarray:
        """Nowcast after every reading: ``(readings, horizons)`` depth, cm.

        The model runs over the whole series from a dry road; at each reading its pond
        is replaced by the observed depth and it runs ahead on the forecast rain (or on
        :func:`assumed_rain`).
        """
        if self.params is None:
            raise NowcastInputError("params: the conceptual model is not calibrated")
        _, rain, depth, forecast, dt_s = check_readings(t_s, rain_mm, depth_cm,
                                                        rain_forecast_mm)
        steps = horizon_steps(self.horizons_min, dt_s)
        if forecast is not None and forecast.shape[1] < steps.max():
            raise NowcastInputError(f"rain_forecast_mm: {forecast.shape[1]} columns, "
                                    f"{steps.max()} needed to reach the last horizon")
        run = simulate_reservoir(rain, self.params, dt_s, states=True)
        future = forecast if forecast is not None else assumed_rain(rain, dt_s, steps.max())
        coefficients = _Coefficients([self.params], dt_s).take(np.zeros(rain.size, dtype=int))
        return _run_ahead(run.loss_deficit_mm.copy(), np.ascontiguousarray(run.stores_cm.T),
                          depth.copy(), future, coefficients, steps)


def lagged_features(rain_mm, depth_cm, dt_s: float, rain_forecast_mm=None):
    """Features of every reading for the data-driven model (past readings only).

    Parameters
    ----------
    rain_mm, depth_cm : numpy.ndarray
        Checked readings of one site.
    dt_s : float
        Reading interval.
    rain_forecast_mm : numpy.ndarray, optional
        ``(readings, steps)``: adds the forecast rain over the next 10, 20 and 30 min
        (fewer when the forecast is shorter).

    Returns
    -------
    features : numpy.ndarray
        ``(readings, features)``.
    names : list of str
    """
    n = depth_cm.size
    columns = {"depth_cm": depth_cm}
    for minutes in (1, 5, 10, 20):
        lag = _steps(minutes, dt_s)
        before = depth_cm[np.maximum(np.arange(n) - lag, 0)]
        columns[f"depth_change_{minutes}min_cm"] = depth_cm - before
    window = _steps(60, dt_s)
    padded = np.concatenate([np.full(window - 1, depth_cm[0]), depth_cm])
    columns["depth_max_60min_cm"] = np.lib.stride_tricks.sliding_window_view(
        padded, window).max(axis=1)
    for minutes in (5, 10, 30, 60, 180):
        columns[f"rain_{minutes}min_mm"] = _trailing_sum(rain_mm, _steps(minutes, dt_s))
    index = np.arange(n)
    wet = rain_mm > 0
    last_wet = np.maximum.accumulate(np.where(wet, index, -10**9))
    # a storm starts at a wet reading after 30 min or more without rain
    gap = _steps(30, dt_s)
    previous_wet = np.concatenate([[-10**9], last_wet[:-1]])
    starts = wet & (index - previous_wet > gap)
    storm_start = np.maximum.accumulate(np.where(starts, index, -10**9))
    cap_min = 240.0
    minutes = dt_s / 60.0
    since_rain = np.minimum((index - last_wet) * minutes, cap_min)
    in_storm = (index - last_wet <= gap) & (storm_start >= 0)
    columns["min_since_rain"] = since_rain
    columns["min_since_storm_start"] = np.where(
        in_storm, np.minimum((index - storm_start) * minutes, cap_min), cap_min)
    if rain_forecast_mm is not None:
        ahead = np.cumsum(rain_forecast_mm, axis=1)
        for m in (10, 20, 30):
            k = min(_steps(m, dt_s), ahead.shape[1])
            columns[f"forecast_rain_{m}min_mm"] = ahead[:, k - 1]
    return np.column_stack(list(columns.values())), list(columns)


class BoostingNowcaster:
    """Gradient-boosted trees on :func:`lagged_features`, one per horizon.

    Each predicts the change of depth over its horizon; the nowcast is the depth now
    plus that change, never below zero. Training keeps every reading with rain in the
    last hour, water on the road or forecast rain, and 10 % of the dry ones (the rest
    teach nothing but "stays dry"). When fitted with a forecast, the training rows are
    repeated with the forecast features missing, so the model still nowcasts, as best
    it can, when no forecast is given.

    Parameters
    ----------
    horizons_min : sequence of float
        Nowcast horizons, minutes.
    random_state : int
        Seed of the dry-row sample and the trees.
    n_threads : int or None
        OpenMP threads for fitting and predicting; one by default, as a site's model
        is small (a few thousand rows) and threads mostly contend; None: all cores.
        Run sites in parallel instead.
    **hgb
        Settings passed to ``HistGradientBoostingRegressor``.
    """

    name = "boosting"

    def __init__(self, horizons_min: Sequence[float] = HORIZONS_MIN, random_state: int = 0,
                 n_threads: int | None = 1, **hgb):
        self.horizons_min = tuple(horizons_min)
        self.random_state = random_state
        self.n_threads = n_threads
        self.hgb = dict(max_iter=200, learning_rate=0.08, max_leaf_nodes=31,
                        min_samples_leaf=20, l2_regularization=1.0, early_stopping=False)
        self.hgb.update(hgb)
        self.models: list[HistGradientBoostingRegressor] = []
        self.feature_names: list[str] = []
        self.with_forecast = False

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit` has run."""
        return bool(self.models)

    def _threads(self):
        return threadpool_limits(self.n_threads, user_api="openmp")

    def fit(self, t_s, rain_mm, depth_cm, rain_forecast_mm=None) -> BoostingNowcaster:
        """Learn from a history."""
        with self._threads():
            return self._fit(t_s, rain_mm, depth_cm, rain_forecast_mm)

    def _fit(self, t_s, rain_mm, depth_cm, rain_forecast_mm) -> BoostingNowcaster:
        _, rain, depth, forecast, dt_s = check_readings(t_s, rain_mm, depth_cm,
                                                        rain_forecast_mm)
        steps = horizon_steps(self.horizons_min, dt_s)
        features, self.feature_names = lagged_features(rain, depth, dt_s, forecast)
        self.with_forecast = forecast is not None
        active = wet_periods(rain, depth, dt_s)
        active |= features[:, self.feature_names.index("depth_max_60min_cm")] >= WET_DEPTH_CM
        if forecast is not None:
            active |= forecast.sum(axis=1) > 0
        rng = np.random.default_rng(self.random_state)
        keep = active | (rng.random(depth.size) < 0.1)
        forecast_columns = [i for i, name in enumerate(self.feature_names)
                            if name.startswith("forecast_")]
        self.models = []
        for h in steps:
            rows = np.flatnonzero(keep[: max(depth.size - h, 0)])
            if rows.size < 50:
                raise NowcastInputError(f"depth_cm: too short a history for a {h}-reading "
                                        "horizon")
            x, y = features[rows], depth[rows + h] - depth[rows]
            if forecast_columns:
                blind = x.copy()
                blind[:, forecast_columns] = np.nan
                x, y = np.vstack([x, blind]), np.concatenate([y, y])
            model = HistGradientBoostingRegressor(random_state=self.random_state, **self.hgb)
            self.models.append(model.fit(x, y))
        return self

    def predict_series(self, t_s, rain_mm, depth_cm, rain_forecast_mm=None) -> np.ndarray:
        """Nowcast after every reading: ``(readings, horizons)`` depth, cm."""
        if not self.models:
            raise NowcastInputError("models: the boosting nowcaster is not fitted")
        _, rain, depth, forecast, dt_s = check_readings(t_s, rain_mm, depth_cm,
                                                        rain_forecast_mm)
        features, _ = lagged_features(rain, depth, dt_s, forecast)
        if self.with_forecast and forecast is None:
            extra = [name for name in self.feature_names if name.startswith("forecast_")]
            features = np.column_stack([features, np.full((depth.size, len(extra)), np.nan)])
        elif not self.with_forecast and forecast is not None:
            features = features[:, :len(self.feature_names)]
        with self._threads():
            change = np.column_stack([m.predict(features) for m in self.models])
        return np.maximum(depth[:, None] + change, 0.0)


# ================================================================== the choice
@dataclass
class Skill:
    """RMSE (cm) of a model on the validation readings, per horizon."""

    rmse_cm: list[float]
    rmse_wet_cm: list[float]
    readings: int
    wet_readings: int


@dataclass
class Nowcast:
    """Depth expected at one site after its latest reading."""

    issued_s: float
    horizons_min: tuple[float, ...]
    valid_s: list[float]
    depth_cm: list[float]
    model: str
    by_model: dict[str, list[float]] = field(default_factory=dict)


def _rmse(predicted: np.ndarray, observed: np.ndarray, steps: np.ndarray,
          rows: np.ndarray) -> list[float]:
    """RMSE per horizon over ``rows`` (a boolean mask of issue readings)."""
    out = []
    for k, h in enumerate(steps):
        use = np.flatnonzero(rows[: max(observed.size - h, 0)])
        error = predicted[use, k] - observed[use + h]
        out.append(float(np.sqrt(np.mean(error**2))) if use.size else math.nan)
    return out


class SiteNowcaster:
    """Nowcasts for one site, from whichever model validates best on its history.

    Parameters
    ----------
    horizons_min : sequence of float
        Nowcast horizons, minutes (10, 20, 30).
    validation_fraction : float
        The last part of the history held out to choose the model.
    candidates : sequence of str
        Among :data:`CANDIDATES`.
    refit : bool
        Refit the candidates on the whole history once chosen.
    n_reservoirs : int
        Cascade length of the conceptual model.
    random_state : int
        Seed of the data-driven model.
    boosting_options : dict, optional
        Settings for the data-driven model's ``HistGradientBoostingRegressor``.

    Attributes
    ----------
    chosen : str
        ``"conceptual"``, ``"boosting"`` or ``"persistence"``.
    reason : str
        Why, in words, with the skill numbers.
    skill : dict of str to Skill
        Validation RMSE of every candidate and of persistence.
    """

    def __init__(self, horizons_min: Sequence[float] = HORIZONS_MIN,
                 validation_fraction: float = 0.3,
                 candidates: Sequence[str] = CANDIDATES, refit: bool = True,
                 n_reservoirs: int = 2, random_state: int = 0,
                 boosting_options: dict | None = None):
        if not 0.05 <= validation_fraction <= 0.8:
            raise NowcastInputError(f"validation_fraction: {validation_fraction!r} must be "
                                    "within 0.05-0.8")
        unknown = set(candidates) - set(CANDIDATES)
        if unknown:
            raise NowcastInputError(f"candidates: unknown {sorted(unknown)}; "
                                    f"use {list(CANDIDATES)}")
        self.horizons_min = tuple(horizons_min)
        self.validation_fraction = validation_fraction
        self.candidates = tuple(candidates)
        self.refit = refit
        self.n_reservoirs = n_reservoirs
        self.random_state = random_state
        self.boosting_options = dict(boosting_options or {})
        self.models: dict[str, object] = {}
        self.chosen = ""
        self.reason = ""
        self.skill: dict[str, Skill] = {}
        self.dt_s = math.nan
        self._unfitted: dict[str, str] = {}

    def _new(self, name: str):
        if name == "conceptual":
            return ConceptualNowcaster(self.horizons_min, self.n_reservoirs)
        if name == "boosting":
            return BoostingNowcaster(self.horizons_min, self.random_state,
                                     **self.boosting_options)
        return PersistenceNowcaster(self.horizons_min)

    def _fit_all(self, t, rain, depth, forecast) -> dict[str, object]:
        """Every candidate that can be fitted; why the others could not in ``_unfitted``."""
        models = {"persistence": PersistenceNowcaster(self.horizons_min)}
        self._unfitted: dict[str, str] = {}
        for name in self.candidates:
            try:
                model = self._new(name).fit(t, rain, depth, forecast)
            except NowcastInputError as error:  # one candidate's failure is not the site's
                self._unfitted[name] = str(error)
                continue
            if model.fitted:
                models[name] = model
            else:
                self._unfitted[name] = model.calibration.note
        return models

    def fit(self, t_s, rain_mm, depth_cm, rain_forecast_mm=None) -> SiteNowcaster:
        """Fit the candidates, choose by validation skill, refit.

        Parameters
        ----------
        t_s, rain_mm, depth_cm : array-like
            The site's history (see :func:`check_readings`); a few weeks with storms.
        rain_forecast_mm : array-like, optional
            The forecasts that were issued at each reading; give them at prediction
            time too for the best nowcasts.

        Returns
        -------
        SiteNowcaster
            ``self``.
        """
        t, rain, depth, forecast, dt_s = check_readings(t_s, rain_mm, depth_cm,
                                                        rain_forecast_mm)
        steps = horizon_steps(self.horizons_min, dt_s)
        self.dt_s = dt_s
        split = int(round(t.size * (1 - self.validation_fraction)))
        part = slice(0, split)
        models = self._fit_all(t[part], rain[part], depth[part],
                               None if forecast is None else forecast[part])
        validation = np.zeros(t.size, dtype=bool)
        validation[split:] = True
        wet = validation & wet_periods(rain, depth, dt_s, int(steps.max()))
        self.skill = {}
        for name, model in models.items():
            predicted = model.predict_series(t, rain, depth, forecast)
            self.skill[name] = Skill(_rmse(predicted, depth, steps, validation),
                                     _rmse(predicted, depth, steps, wet),
                                     int(validation.sum()), int(wet.sum()))
        last = len(steps) - 1
        horizon = f"{self.horizons_min[-1]:g} min"
        base = self.skill["persistence"].rmse_wet_cm[last]
        scores = {name: s.rmse_wet_cm[last] for name, s in self.skill.items()
                  if name != "persistence" and math.isfinite(s.rmse_wet_cm[last])}
        unfitted = dict(self._unfitted)
        if not scores:
            self.chosen, self.reason = "persistence", "no candidate could be fitted"
        elif not wet.any():
            self.chosen, self.reason = "persistence", "no wet readings to validate on"
        elif min(scores.values()) >= base:
            self.chosen = "persistence"
            self.reason = (f"no candidate beats persistence at {horizon} over wet periods "
                           f"({base:.2f} cm)")
        else:
            self.chosen = min(scores, key=scores.get)
            others = ", ".join(f"{name} {value:.2f}" for name, value in scores.items()
                               if name != self.chosen)
            self.reason = (f"lowest wet-period RMSE at {horizon}: {scores[self.chosen]:.2f} "
                           f"cm (persistence {base:.2f}" + (f", {others}" if others else "")
                           + ")")
        if unfitted:
            self.reason += "; not fitted: " + ", ".join(f"{name} ({why})"
                                                      for name, why in unfitted.items())
        self.models = self._fit_all(t, rain, depth, forecast) if self.refit else models
        if self.chosen not in self.models:
            self.chosen, self.reason = "persistence", self.reason + "; refit failed"
        return self

    def predict_series(self, t_s, rain_mm, depth_cm, rain_forecast_mm=None,
                       model: str | None = None) -> np.ndarray:
        """Nowcast after every reading of a series: ``(readings, horizons)`` depth, cm.

        ``model`` picks a candidate (default: the chosen one).
        """
        if not self.chosen:
            raise NowcastInputError("model: the nowcaster is not fitted")
        name = model or self.chosen
        if name not in self.models:
            raise NowcastInputError(f"model: {name!r} not fitted here; have "
                                    f"{sorted(self.models)}")
        return self.models[name].predict_series(t_s, rain_mm, depth_cm, rain_forecast_mm)

    def predict(self, t_s, rain_mm, depth_cm, rain_forecast_mm=None) -> Nowcast:
        """Nowcast after the last of some recent readings (three hours or more).

        Parameters
        ----------
        t_s, rain_mm, depth_cm : array-like
            Recent readings at the fitted interval, oldest first.
        rain_forecast_mm : array-like, optional
            Rain expected in each interval after the last reading, mm.

        Returns
        -------
        Nowcast
        """
        t, rain, depth, _, dt_s = check_readings(t_s, rain_mm, depth_cm)
        if abs(dt_s - self.dt_s) > 1e-3 * self.dt_s:
            raise NowcastInputError(f"t_s: readings every {dt_s:g} s, fitted on {self.dt_s:g} s")
        forecast = None
        if rain_forecast_mm is not None:
            row = _series("rain_forecast_mm", rain_forecast_mm)
            forecast = np.zeros((t.size, row.size))
            forecast[-1] = row
        by_model = {name: self.predict_series(t, rain, depth, forecast, name)[-1].tolist()
                    for name in self.models}
        return Nowcast(issued_s=float(t[-1]), horizons_min=self.horizons_min,
                       valid_s=[float(t[-1] + 60.0 * h) for h in self.horizons_min],
                       depth_cm=by_model[self.chosen], model=self.chosen, by_model=by_model)


# =============================================================== many sites
class ReservoirFleet:
    """Many sites' conceptual models stepped together, one reading at a time.

    Parameters
    ----------
    params : sequence of ReservoirParams
        One per site (calibrated with :func:`calibrate_reservoir`).
    dt_s : float
        Reading interval, seconds.
    horizons_min : sequence of float
        Nowcast horizons.
    """

    def __init__(self, params: Sequence[ReservoirParams], dt_s: float = 60.0,
                 horizons_min: Sequence[float] = HORIZONS_MIN):
        if not params:
            raise NowcastInputError("params: no sites")
        self.params = list(params)
        self.dt_s = float(dt_s)
        self.horizons_min = tuple(horizons_min)
        self.steps = horizon_steps(self.horizons_min, self.dt_s)
        self._c = _Coefficients(self.params, self.dt_s)
        n = len(self.params)
        self.loss_deficit_mm = self._c.loss_cap.copy()
        self.stores_cm = np.zeros((n, self._c.n_max))
        self.pond_cm = np.zeros(n)
        self._recent = np.zeros((n, _steps(RECENT_RAIN_MIN, self.dt_s)))

    def update(self, rain_mm, depth_cm=None) -> None:
        """Take one reading of every site; a NaN depth (no reading) keeps the model's.

        Parameters
        ----------
        rain_mm : array-like
            Rain of the interval just ended, per site.
        depth_cm : array-like, optional
            Depth just read, per site; the pond is reset to it.
        """
        n = self.pond_cm.size
        rain = _series("rain_mm", rain_mm, n)
        if (rain < 0).any():
            raise NowcastInputError(f"rain_mm: negative at site {int(np.argmax(rain < 0))}")
        _step(self.loss_deficit_mm, self.stores_cm, self.pond_cm, rain, self._c)
        self._recent = np.roll(self._recent, -1, axis=1)
        self._recent[:, -1] = rain
        if depth_cm is not None:
            depth = np.asarray(depth_cm, dtype=float)
            if depth.shape != (n,):
                raise NowcastInputError(f"depth_cm: shape {depth.shape}, expected ({n},)")
            if (depth < 0).any() or np.isinf(depth).any():
                raise NowcastInputError("depth_cm: negative or infinite depth")
            seen = ~np.isnan(depth)
            self.pond_cm[seen] = depth[seen]

    def nowcast(self, rain_forecast_mm=None) -> np.ndarray:
        """Depth at every horizon for every site: ``(sites, horizons)``, cm.

        ``rain_forecast_mm`` is ``(sites, steps)``; without it the rain is assumed to
        decay from its recent rate (:func:`assumed_rain`).
        """
        n = self.pond_cm.size
        if rain_forecast_mm is None:
            future = self._recent.mean(axis=1)[:, None] * _decay_weights(
                self.dt_s, int(self.steps.max()))
        else:
            future = _series("rain_forecast_mm", rain_forecast_mm, n, ndim=2)
            if future.shape[1] < self.steps.max():
                raise NowcastInputError(f"rain_forecast_mm: {future.shape[1]} columns, "
                                        f"{self.steps.max()} needed")
        return _run_ahead(self.loss_deficit_mm.copy(), self.stores_cm.copy(),
                          self.pond_cm.copy(), future, self._c, self.steps)


def nowcast_sites(params: Sequence[ReservoirParams], rain_mm, depth_cm, dt_s: float = 60.0,
                  rain_forecast_mm=None,
                  horizons_min: Sequence[float] = HORIZONS_MIN) -> np.ndarray:
    """Conceptual nowcasts for many sites from a recent window of their readings.

    Each site's model starts from a dry road at the window's start (give three hours
    or more, so that a storm's water is in it), runs through the window's rain with its
    pond reset to each depth read, and runs ahead.

    Parameters
    ----------
    params : sequence of ReservoirParams
        One per site.
    rain_mm, depth_cm : array-like
        ``(sites, readings)``.
    dt_s : float
        Reading interval.
    rain_forecast_mm : array-like, optional
        ``(sites, steps)``: rain expected after the last reading.
    horizons_min : sequence of float
        Nowcast horizons.

    Returns
    -------
    numpy.ndarray
        ``(sites, horizons)`` depth, cm.
    """
    rain = _series("rain_mm", rain_mm, len(params), ndim=2)
    depth = _series("depth_cm", depth_cm, len(params), ndim=2)
    if rain.shape != depth.shape:
        raise NowcastInputError(f"depth_cm: shape {depth.shape} does not match rain_mm "
                                f"{rain.shape}")
    fleet = ReservoirFleet(params, dt_s, horizons_min)
    for i in range(rain.shape[1]):
        fleet.update(rain[:, i], depth[:, i])
    return fleet.nowcast(rain_forecast_mm)
