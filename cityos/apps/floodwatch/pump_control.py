"""Drainage-pump control: level-triggered rules and a predictive mode that starts early.

Pure logic: a controller is fed ``(t, levels)`` (time in seconds since the epoch, the
latest level of every signal it watches) and answers the setting each pump should
have. The platform turns the :class:`SwitchDecision` records into pump commands; the
SWMM evaluation in :mod:`cityos.apps.floodwatch.swmm_eval` feeds the same controllers
from a running storm-water model.

:class:`RuleController` is what a pumping-station PLC does: per pump, a start level and
a lower stop level on the pump's trigger (its wet-well level, or a sensor it protects),
so the pump does not chatter on a level hovering at one threshold (hysteresis); a
minimum on-time and a minimum off-time between switches, and optionally a cap on
starts per rolling hour, because motors overheat and contactors wear when a pump is
short-cycled. An optional *inhibit* signal stops the pump (and keeps it stopped)
while that level is above a limit, the downstream high-level interlock of real
stations: pumping into a full receiving sewer only moves the flood downstream. The
interlock overrides the minimum on-time, as a safety trip does.

:class:`PredictiveController` obeys the same rules but also starts a pump when a
forecast of its trigger level crosses the start level within a lead time (30 minutes
by default), so the wet well is drawn down before the storm's peak arrives instead of
after the level has risen; it stops only when both the current level and every
forecast within the lead time are below the stop level. A forecaster is any callable
``(t, history) -> levels at +10, +20, +30 min``; two are provided here:
:class:`LevelTrendForecaster` (a least-squares line through the recent levels) and
:class:`RainInflowForecaster` (the rain expected over the next half hour through a
linear reservoir calibrated with :func:`fit_linear_reservoir`, against what the
pumps take out now). The floodwatch nowcaster can be plugged in the same way.

A pump in these classes is any actuator switched between two settings: the rules also
drive a gate or an orifice, whose "on" setting is the throttled position.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.signal import lfilter

__all__ = [
    "DEFAULT_HORIZONS_S",
    "Forecaster",
    "LevelTrendForecaster",
    "PredictiveController",
    "PumpControlError",
    "PumpRule",
    "RainInflowForecaster",
    "RuleController",
    "StateHistory",
    "SwitchDecision",
    "fit_linear_reservoir",
    "linear_reservoir_inflow",
]

#: Forecast horizons (s): +10, +20 and +30 minutes.
DEFAULT_HORIZONS_S = (600.0, 1200.0, 1800.0)


class PumpControlError(ValueError):
    """Bad controller configuration or input; the message names the field."""


def _finite(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise PumpControlError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise PumpControlError(f"{name} must be finite, got {value!r}")
    return value


@dataclass(frozen=True)
class PumpRule:
    """Switching rule of one pump (or one gate driven like a pump).

    Parameters
    ----------
    pump : str
        Pump identifier (the SWMM link name, or the platform's pump id).
    trigger : str
        Signal whose level starts and stops the pump, usually its wet-well level.
    on_level, off_level : float
        Start when the trigger rises above ``on_level``; stop when it falls below
        ``off_level`` (same unit as the signal, ``off_level < on_level``).
    min_on_s, min_off_s : float
        Shortest run and shortest rest between switches, seconds.
    max_starts_per_hour : int, optional
        At most this many starts in any rolling 3600 s.
    on_setting, off_setting : float
        Settings sent when on and when off (a pump 1/0; a throttling gate, e.g. 0/1).
    inhibit : str, optional
        Signal of a downstream interlock; while above ``inhibit_level`` the pump is
        stopped at once (overriding ``min_on_s``) and not started.
    inhibit_level : float, optional
        Limit of the interlock, required with ``inhibit``.
    early_level : float, optional
        For :class:`PredictiveController`: a forecast above this level within the lead
        time starts the pump early (``on_level`` by default). Set it higher than
        ``on_level`` so that only a real rise, not the ordinary refilling of the well
        between cycles, brings a pump in ahead of the rule.
    """

    pump: str
    trigger: str
    on_level: float
    off_level: float
    min_on_s: float = 0.0
    min_off_s: float = 0.0
    max_starts_per_hour: int | None = None
    on_setting: float = 1.0
    off_setting: float = 0.0
    inhibit: str | None = None
    inhibit_level: float | None = None
    early_level: float | None = None

    def __post_init__(self) -> None:
        for name in ("pump", "trigger"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise PumpControlError(f"{name} must be a non-empty string")
        on = _finite("on_level", self.on_level)
        off = _finite("off_level", self.off_level)
        if off >= on:
            raise PumpControlError(
                f"off_level ({off}) must be below on_level ({on}) for {self.pump}"
            )
        for name in ("min_on_s", "min_off_s"):
            if _finite(name, getattr(self, name)) < 0:
                raise PumpControlError(f"{name} must be >= 0 for {self.pump}")
        for name in ("on_setting", "off_setting"):
            _finite(name, getattr(self, name))
        starts = self.max_starts_per_hour
        if starts is not None and (isinstance(starts, bool) or not isinstance(starts, int)
                                   or starts < 1):
            raise PumpControlError(f"max_starts_per_hour must be an integer >= 1 for {self.pump}")
        if (self.inhibit is None) != (self.inhibit_level is None):
            raise PumpControlError(f"inhibit and inhibit_level go together for {self.pump}")
        if self.inhibit is not None:
            if not isinstance(self.inhibit, str) or not self.inhibit:
                raise PumpControlError("inhibit must be a non-empty string")
            _finite("inhibit_level", self.inhibit_level)
        if self.early_level is not None and _finite("early_level", self.early_level) < on:
            raise PumpControlError(f"early_level must not be below on_level for {self.pump}")

    @property
    def signals(self) -> tuple[str, ...]:
        """Signals this rule reads."""
        return (self.trigger,) if self.inhibit is None else (self.trigger, self.inhibit)


@dataclass(frozen=True)
class SwitchDecision:
    """One switch of one pump, for the platform to send as a command.

    Attributes
    ----------
    t : float
        When (s since the epoch).
    pump : str
        Which pump.
    setting : float
        The new setting.
    reason : str
        Why, in words (the level and the threshold it crossed).
    """

    t: float
    pump: str
    setting: float
    reason: str


class StateHistory:
    """The levels a controller has seen, per signal, trimmed to the last ``span_s``.

    Parameters
    ----------
    span_s : float
        How much history to keep, seconds.
    """

    def __init__(self, span_s: float = 3600.0) -> None:
        if _finite("span_s", span_s) <= 0:
            raise PumpControlError("span_s must be positive")
        self.span_s = float(span_s)
        self._t: deque[float] = deque()
        self._levels: dict[str, deque[float]] = {}

    def append(self, t: float, levels: Mapping[str, float]) -> None:
        """Record the levels at ``t`` (every signal at every call, in time order)."""
        if self._t and t < self._t[-1]:
            raise PumpControlError(f"t must not go backwards ({t} after {self._t[-1]})")
        if not self._levels:
            self._levels = {name: deque() for name in levels}
        elif set(levels) != set(self._levels):
            raise PumpControlError("levels must name the same signals at every call")
        self._t.append(t)
        for name, value in levels.items():
            self._levels[name].append(value)
        while self._t[0] < t - self.span_s:
            self._t.popleft()
            for values in self._levels.values():
                values.popleft()

    def __len__(self) -> int:
        return len(self._t)

    @property
    def signals(self) -> tuple[str, ...]:
        """Names of the recorded signals."""
        return tuple(self._levels)

    def window(self, signal: str, span_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Times and levels of ``signal`` over the last ``span_s`` seconds (inclusive).

        Returns
        -------
        tuple of numpy.ndarray
            ``(t, level)``, oldest first; empty when nothing was recorded.
        """
        if signal not in self._levels:
            if not self._t:
                return np.empty(0), np.empty(0)
            raise PumpControlError(f"signal {signal!r} is not in the history")
        t = np.fromiter(self._t, dtype=np.float64, count=len(self._t))
        level = np.fromiter(self._levels[signal], dtype=np.float64, count=len(self._t))
        keep = t >= t[-1] - span_s
        return t[keep], level[keep]


#: ``(t, history) -> predicted levels at the controller's horizons``.
Forecaster = Callable[[float, StateHistory], np.ndarray]


@dataclass
class _PumpState:
    on: bool = False
    last_switch_t: float = -math.inf
    starts: deque = field(default_factory=deque)  # start times within the last hour


class RuleController:
    """Level-triggered pump control with hysteresis, minimum on/off times and start caps.

    Parameters
    ----------
    rules : sequence of PumpRule
        One rule per pump; pump names must be unique.
    history_s : float
        History kept for forecasters, seconds.
    extra_signals : sequence of str
        Further signals to require in ``levels`` and keep in the history, for the
        forecasters (a station's pumped flow, say).

    Notes
    -----
    Works with any, even irregular, time step: every constraint is measured on the
    clock passed to :meth:`update`. All pumps start off.
    """

    def __init__(
        self, rules: Sequence[PumpRule], *, history_s: float = 3600.0,
        extra_signals: Sequence[str] = (),
    ) -> None:
        rules = tuple(rules)
        if not rules:
            raise PumpControlError("rules must name at least one pump")
        for rule in rules:
            if not isinstance(rule, PumpRule):
                raise PumpControlError(f"rules must be PumpRule objects, got {type(rule).__name__}")
        names = [r.pump for r in rules]
        if len(set(names)) != len(names):
            raise PumpControlError(f"rules: pump names must be unique, got {names}")
        self.rules = rules
        self.history = StateHistory(history_s)
        self.decisions: list[SwitchDecision] = []
        self._state = {r.pump: _PumpState() for r in rules}
        for name in extra_signals:
            if not isinstance(name, str) or not name:
                raise PumpControlError("extra_signals must be non-empty strings")
        self._signals = tuple(dict.fromkeys([*(s for r in rules for s in r.signals),
                                             *extra_signals]))
        self._last_t = -math.inf

    @property
    def signals(self) -> tuple[str, ...]:
        """Every signal the controller needs in ``levels``."""
        return self._signals

    @property
    def settings(self) -> dict[str, float]:
        """Current setting of every pump."""
        return {
            r.pump: r.on_setting if self._state[r.pump].on else r.off_setting for r in self.rules
        }

    def is_on(self, pump: str) -> bool:
        """Whether ``pump`` is running (its rule engaged)."""
        if pump not in self._state:
            raise PumpControlError(f"pump {pump!r} is not controlled here")
        return self._state[pump].on

    def update(self, t: float, levels: Mapping[str, float]) -> dict[str, float]:
        """Take the levels observed at ``t`` and return every pump's setting.

        Parameters
        ----------
        t : float
            Time, seconds since the epoch; never earlier than the previous call.
        levels : mapping of str to float
            Latest level of every signal in :attr:`signals` (extra keys are ignored).

        Returns
        -------
        dict of str to float
            Setting per pump.
        """
        t = _finite("t", t)
        if t < self._last_t:
            raise PumpControlError(f"t must not go backwards ({t} after {self._last_t})")
        observed = {}
        for name in self._signals:
            if name not in levels:
                raise PumpControlError(f"levels: missing signal {name!r}")
            observed[name] = _finite(f"levels[{name!r}]", levels[name])
        self._last_t = t
        self.history.append(t, observed)
        for rule in self.rules:
            self._step(rule, t, observed)
        return self.settings

    # -- the state machine -------------------------------------------------------------
    def _step(self, rule: PumpRule, t: float, levels: Mapping[str, float]) -> None:
        state = self._state[rule.pump]
        while state.starts and state.starts[0] <= t - 3600.0:
            state.starts.popleft()
        inhibited = rule.inhibit is not None and levels[rule.inhibit] > rule.inhibit_level
        if state.on:
            if inhibited:
                self._switch(rule, state, t, False, f"inhibit {rule.inhibit} "
                             f"{levels[rule.inhibit]:.3f} above {rule.inhibit_level:.3f}")
                return
            if t - state.last_switch_t < rule.min_on_s:
                return
            reason = self._stop_reason(rule, t, levels)
            if reason is not None:
                self._switch(rule, state, t, False, reason)
            return
        if inhibited or t - state.last_switch_t < rule.min_off_s:
            return
        if rule.max_starts_per_hour is not None and len(state.starts) >= rule.max_starts_per_hour:
            return
        reason = self._start_reason(rule, t, levels)
        if reason is not None:
            state.starts.append(t)
            self._switch(rule, state, t, True, reason)

    def _start_reason(self, rule: PumpRule, t: float, levels: Mapping[str, float]) -> str | None:
        level = levels[rule.trigger]
        if level > rule.on_level:
            return f"{rule.trigger} {level:.3f} above on-level {rule.on_level:.3f}"
        return None

    def _stop_reason(self, rule: PumpRule, t: float, levels: Mapping[str, float]) -> str | None:
        level = levels[rule.trigger]
        if level < rule.off_level:
            return f"{rule.trigger} {level:.3f} below off-level {rule.off_level:.3f}"
        return None

    def _switch(self, rule: PumpRule, state: _PumpState, t: float, on: bool, reason: str) -> None:
        state.on = on
        state.last_switch_t = t
        setting = rule.on_setting if on else rule.off_setting
        self.decisions.append(SwitchDecision(t, rule.pump, setting, reason))


class PredictiveController(RuleController):
    """:class:`RuleController` that also starts pumps on a forecast of their trigger.

    Parameters
    ----------
    rules : sequence of PumpRule
        As for :class:`RuleController`.
    forecasters : mapping of str to Forecaster
        Per trigger signal, a callable ``(t, history) -> levels at horizons_s``.
        Pumps whose trigger has no forecaster behave exactly as in the rule controller;
        a forecast that is not finite (too little history, say) counts as no forecast.
    horizons_s : sequence of float
        Forecast horizons, seconds ahead (10, 20, 30 minutes by default).
    lead_time_s : float
        Only horizons up to this lead time can start a pump or keep it running.
    history_s : float
        History kept for the forecasters, seconds.
    extra_signals : sequence of str
        Further signals kept in the history for the forecasters.
    """

    def __init__(
        self,
        rules: Sequence[PumpRule],
        forecasters: Mapping[str, Forecaster],
        *,
        horizons_s: Sequence[float] = DEFAULT_HORIZONS_S,
        lead_time_s: float = 1800.0,
        history_s: float = 3600.0,
        extra_signals: Sequence[str] = (),
    ) -> None:
        super().__init__(rules, history_s=history_s, extra_signals=extra_signals)
        horizons = np.asarray([_finite("horizons_s", h) for h in horizons_s], dtype=np.float64)
        if horizons.size == 0 or np.any(horizons <= 0) or np.any(np.diff(horizons) <= 0):
            raise PumpControlError("horizons_s must be positive and increasing")
        if _finite("lead_time_s", lead_time_s) <= 0:
            raise PumpControlError("lead_time_s must be positive")
        triggers = {r.trigger for r in self.rules}
        for name, forecaster in forecasters.items():
            if name not in triggers:
                raise PumpControlError(f"forecasters: {name!r} is no pump's trigger")
            if not callable(forecaster):
                raise PumpControlError(f"forecasters[{name!r}] must be callable")
        self.forecasters = dict(forecasters)
        self.horizons_s = horizons
        self.lead_time_s = float(lead_time_s)
        self._in_lead = horizons <= self.lead_time_s
        self._forecast_cache: dict[str, tuple[float, float]] = {}

    def forecast_peak(self, trigger: str, t: float) -> float:
        """Highest forecast level of ``trigger`` within the lead time (NaN if none)."""
        cached = self._forecast_cache.get(trigger)
        if cached is not None and cached[0] == t:
            return cached[1]
        peak = math.nan
        forecaster = self.forecasters.get(trigger)
        if forecaster is not None and self._in_lead.any():
            levels = np.asarray(forecaster(t, self.history), dtype=np.float64).reshape(-1)
            if levels.shape != self.horizons_s.shape:
                raise PumpControlError(
                    f"forecasters[{trigger!r}] returned {levels.size} levels, "
                    f"expected {self.horizons_s.size}"
                )
            ahead = levels[self._in_lead]
            if np.all(np.isfinite(ahead)):
                peak = float(ahead.max())
        self._forecast_cache[trigger] = (t, peak)
        return peak

    def _start_reason(self, rule: PumpRule, t: float, levels: Mapping[str, float]) -> str | None:
        reason = super()._start_reason(rule, t, levels)
        if reason is not None:
            return reason
        peak = self.forecast_peak(rule.trigger, t)
        early = rule.on_level if rule.early_level is None else rule.early_level
        if peak > early:
            return (f"{rule.trigger} forecast {peak:.3f} within {self.lead_time_s / 60:.0f} min "
                    f"above {'on' if early == rule.on_level else 'early'}-level {early:.3f}")
        return None

    def _stop_reason(self, rule: PumpRule, t: float, levels: Mapping[str, float]) -> str | None:
        reason = super()._stop_reason(rule, t, levels)
        if reason is None:
            return None
        peak = self.forecast_peak(rule.trigger, t)
        if peak >= rule.off_level:  # a rise is coming: keep the well drawn down
            return None
        return reason if math.isnan(peak) else f"{reason}, forecast {peak:.3f} too"


# -- forecasters ------------------------------------------------------------------------
def _trend(history: StateHistory, signal: str, window_s: float) -> tuple[float, float] | None:
    """Level now and its least-squares rate of change (per s) over the window."""
    t, level = history.window(signal, window_s)
    if t.size < 3 or t[-1] - t[0] < 0.5 * window_s:
        return None
    dt = t - t[-1]
    slope = np.polyfit(dt, level, 1)[0]
    return float(level[-1]), float(slope)


class LevelTrendForecaster:
    """Extrapolates the recent level trend: a straight line fitted to the last window.

    Parameters
    ----------
    signal : str
        The level to forecast.
    window_s : float
        Fitting window, seconds; the forecast is NaN until half of it is observed.
    horizons_s : sequence of float
        Horizons to forecast, seconds ahead.
    """

    def __init__(
        self, signal: str, *, window_s: float = 600.0,
        horizons_s: Sequence[float] = DEFAULT_HORIZONS_S,
    ) -> None:
        if not isinstance(signal, str) or not signal:
            raise PumpControlError("signal must be a non-empty string")
        if _finite("window_s", window_s) <= 0:
            raise PumpControlError("window_s must be positive")
        self.signal = signal
        self.window_s = float(window_s)
        self.horizons_s = np.asarray(horizons_s, dtype=np.float64)

    def __call__(self, t: float, history: StateHistory) -> np.ndarray:
        trend = _trend(history, self.signal, self.window_s)
        if trend is None:
            return np.full(self.horizons_s.shape, np.nan)
        level, slope = trend
        return level + slope * self.horizons_s


def linear_reservoir_inflow(
    t: np.ndarray, rain_mm_per_h: np.ndarray, area_m2: float, lag_s: float
) -> np.ndarray:
    """Inflow (m3/s) of a linear reservoir ``k dQ/dt = A i - Q`` fed by rain.

    Parameters
    ----------
    t : numpy.ndarray
        Regular time grid, seconds.
    rain_mm_per_h : numpy.ndarray
        Rain intensity held over each grid step (from ``t[i]`` to ``t[i+1]``), mm/h.
    area_m2 : float
        Effective contributing area (runoff coefficient times area), m2.
    lag_s : float
        Reservoir time constant ``k``, seconds.

    Returns
    -------
    numpy.ndarray
        Inflow at each grid time, starting from zero.
    """
    t = np.asarray(t, dtype=np.float64)
    rain = np.asarray(rain_mm_per_h, dtype=np.float64)
    if t.ndim != 1 or t.shape != rain.shape or t.size < 2:
        raise PumpControlError("t and rain_mm_per_h must be 1-d arrays of one length >= 2")
    step = np.diff(t)
    if np.any(step <= 0) or not np.allclose(step, step[0], rtol=1e-9, atol=1e-9):
        raise PumpControlError("t must be a regular increasing grid")
    if _finite("lag_s", lag_s) <= 0:
        raise PumpControlError("lag_s must be positive")
    # Exact update for rain constant over a step: Q+ = a Q + (1 - a) A i.
    a = math.exp(-step[0] / lag_s)
    forcing = _finite("area_m2", area_m2) * rain / 3.6e6  # mm/h over m2 -> m3/s
    q = lfilter([0.0, 1.0 - a], [1.0, -a], forcing)
    return q


def fit_linear_reservoir(
    t: np.ndarray, rain_mm_per_h: np.ndarray, inflow_m3_per_s: np.ndarray,
    *, lag_bounds_s: tuple[float, float] = (60.0, 4 * 3600.0),
) -> tuple[float, float]:
    """Calibrate a linear reservoir (area, lag) to an observed inflow by least squares.

    For a given lag the best area is linear (a projection), so only the lag is searched,
    on a log scale.

    Parameters
    ----------
    t, rain_mm_per_h : numpy.ndarray
        Regular time grid (s) and the rain held over each step (mm/h).
    inflow_m3_per_s : numpy.ndarray
        Observed inflow at the grid times, m3/s.
    lag_bounds_s : tuple of float
        Search range of the lag, seconds.

    Returns
    -------
    tuple of float
        ``(area_m2, lag_s)``.
    """
    q = np.asarray(inflow_m3_per_s, dtype=np.float64)
    if q.shape != np.shape(t) or not np.all(np.isfinite(q)):
        raise PumpControlError("inflow_m3_per_s must be finite and match t")
    lo, hi = (float(b) for b in lag_bounds_s)
    if not 0 < lo < hi:
        raise PumpControlError("lag_bounds_s must be increasing and positive")

    def fit(log_lag: float) -> tuple[float, float]:
        unit = linear_reservoir_inflow(t, rain_mm_per_h, 1.0, math.exp(log_lag))
        norm = float(unit @ unit)
        if norm == 0.0:
            raise PumpControlError("rain_mm_per_h has no rain to calibrate on")
        area = float(unit @ q) / norm
        return area, float(np.sum((q - area * unit) ** 2))

    grid = np.linspace(math.log(lo), math.log(hi), 25)
    best = grid[int(np.argmin([fit(g)[1] for g in grid]))]
    width = grid[1] - grid[0]
    res = minimize_scalar(lambda g: fit(g)[1], bounds=(max(grid[0], best - width),
                          min(grid[-1], best + width)), method="bounded",
                          options={"xatol": 1e-4})
    return fit(res.x)[0], float(math.exp(res.x))


class RainInflowForecaster:
    """Wet-well level forecast from the rain expected over the next half hour.

    A mass balance of the wet well: ``level(t+h) = level(t) + (V_in - Q_out h) / A``,
    with ``V_in`` the inflow volume over ``[t, t+h]`` of a linear reservoir fed by the
    rain (calibrated with :func:`fit_linear_reservoir`), ``Q_out`` the station's
    pumped flow now, but at least ``min_outflow_m3_per_s``, and ``A`` the wet well's
    plan area. With the duty pump's capacity as that floor (the level rule starts it
    anyway), a forecast above the start levels means the rain will outrun the duty
    pump, not merely refill the well between two cycles. Above the incoming sewer's crown the true area is larger, so the
    forecast errs high there, which only makes the pumps start earlier.

    Parameters
    ----------
    signal : str
        The wet-well level to forecast (metres).
    rain_t : numpy.ndarray
        Start of each rain interval, seconds since the epoch (increasing).
    rain_mm_per_h : numpy.ndarray
        Rain intensity over each interval (the gauge record so far, then the nowcast);
        the last value lasts one more interval, then it is dry.
    area_m2, lag_s : float
        Calibrated linear reservoir.
    storage_area_m2 : float
        Plan area of the wet well, m2.
    outflow_signal : str
        History signal holding the station's pumped flow, m3/s.
    min_outflow_m3_per_s : float
        Outflow assumed at least, m3/s.
    horizons_s : sequence of float
        Horizons to forecast, seconds ahead.
    step_s : float
        Internal grid of the reservoir, seconds.

    Notes
    -----
    Reading the inflow at ``t + h`` uses rain up to ``t + h`` only: with horizons of at
    most 30 minutes it needs a 30-minute rain nowcast, the one floodwatch produces.
    """

    def __init__(
        self, signal: str, rain_t: np.ndarray, rain_mm_per_h: np.ndarray, *,
        area_m2: float, lag_s: float, storage_area_m2: float, outflow_signal: str,
        min_outflow_m3_per_s: float = 0.0, horizons_s: Sequence[float] = DEFAULT_HORIZONS_S, step_s: float = 30.0,
    ) -> None:
        for name, value in (("signal", signal), ("outflow_signal", outflow_signal)):
            if not isinstance(value, str) or not value:
                raise PumpControlError(f"{name} must be a non-empty string")
        rain_t = np.asarray(rain_t, dtype=np.float64)
        rain = np.asarray(rain_mm_per_h, dtype=np.float64)
        if rain_t.ndim != 1 or rain_t.shape != rain.shape or rain_t.size == 0:
            raise PumpControlError("rain_t and rain_mm_per_h must be 1-d arrays of one length")
        if np.any(~np.isfinite(rain_t)) or np.any(np.diff(rain_t) <= 0):
            raise PumpControlError("rain_t must be finite and increase strictly")
        if np.any(~np.isfinite(rain)) or np.any(rain < 0):
            raise PumpControlError("rain_mm_per_h must be finite and >= 0")
        if _finite("storage_area_m2", storage_area_m2) <= 0:
            raise PumpControlError("storage_area_m2 must be positive")
        if _finite("step_s", step_s) <= 0:
            raise PumpControlError("step_s must be positive")
        if _finite("lag_s", lag_s) <= 0:
            raise PumpControlError("lag_s must be positive")
        self.signal = signal
        self.outflow_signal = outflow_signal
        self.min_outflow_m3_per_s = _finite("min_outflow_m3_per_s", min_outflow_m3_per_s)
        if self.min_outflow_m3_per_s < 0:
            raise PumpControlError("min_outflow_m3_per_s must be >= 0")
        self.storage_area_m2 = float(storage_area_m2)
        self.horizons_s = np.asarray(horizons_s, dtype=np.float64)
        last = rain_t[-1] - rain_t[-2] if rain_t.size > 1 else step_s
        rain_end = rain_t[-1] + last
        self._grid = np.arange(rain_t[0], rain_end + self.horizons_s.max() + 5 * lag_s, step_s)
        idx = np.searchsorted(rain_t, self._grid, side="right") - 1
        on_grid = np.where(self._grid < rain_end, rain[np.clip(idx, 0, None)], 0.0)
        self._inflow = linear_reservoir_inflow(self._grid, on_grid, area_m2, lag_s)
        # Cumulative inflow volume (trapezoid) for the integral over any interval.
        self._volume = np.concatenate(
            [[0.0], np.cumsum(0.5 * (self._inflow[1:] + self._inflow[:-1]) * step_s)]
        )

    def inflow(self, t: np.ndarray | float) -> np.ndarray:
        """Forecast inflow (m3/s) at times ``t``."""
        return np.interp(t, self._grid, self._inflow, left=0.0, right=0.0)

    def __call__(self, t: float, history: StateHistory) -> np.ndarray:
        _, level = history.window(self.signal, 0.0)
        _, outflow = history.window(self.outflow_signal, 0.0)
        if level.size == 0:
            return np.full(self.horizons_s.shape, np.nan)
        inflow_volume = (np.interp(t + self.horizons_s, self._grid, self._volume)
                         - np.interp(t, self._grid, self._volume))
        net = inflow_volume - max(outflow[-1], self.min_outflow_m3_per_s) * self.horizons_s
        return level[-1] + net / self.storage_area_m2
