"""The flood watch's live demo feed: rain, rising water, sensor faults and pumps.

:func:`run` is the demo city's simulator (``run(demo)``, see :mod:`cityos.demo`). Every
:data:`TICK_S` (30 s) it publishes a reading of each site and rain gauge of
:mod:`cityos.apps.floodwatch.demo`, stamped with the time it stands for, through the
real ingest path: MQTT QoS 1 to ``cityos/<tenant>/<EntityType>/<local-id>`` when the
demo has a broker, else ``POST /apps/ingest/observations`` with the demo's key. The
bodies (keyValues, with units where the model has them)::

    WaterObserved   {"depth": {"type": "Property", "value": 12.3, "unitCode": "CMT"},
                     "batteryLevel": 0.92, "observedAt": "..."}
    WeatherObserved {"precipitation": {"type": "Property", "value": 0.4,
                     "unitCode": "MMT"}, "temperature": {...,"unitCode": "CEL"},
                     "relativeHumidity": 0.88, "observedAt": "..."}
    Device          {"batteryLevel": 0.92, "observedAt": "..."}      every 10 readings
    Pump            {"status": "off", "observedAt": "..."}           at start, after each
                                                                     command, every 20

**Storms.** Storm ``k`` starts :data:`FIRST_STORM_S` (1 min) after the start of cycle
``k``, a cycle lasting :data:`STORM_EVERY_S` (40 min). The first is a design storm
(15 min, 120 mm/h peak reached within a minute, 14 mm in all at the Masjid Jamek gauge)
that takes the Jalan Tun Perak underpass past 10 cm within about 3 minutes and past
20 cm within about 5; later ones are drawn from the seed (12-25 min, 50-120 mm/h).
Each gauge sees a storm with its own strength and delay. Rain comes from
:func:`~cityos.apps.floodwatch.synthetic.storm_rain`, gauges report whole 0.2 mm tips,
and each site's water follows the synthetic catchment's model
(:func:`~cityos.apps.floodwatch.synthetic.site_response`, stepped one reading at a time
by :class:`SiteWater`) with the site's :class:`~cityos.apps.floodwatch.synthetic.
SiteParams`.

**Sensor faults** (:data:`FAULTS`), the same in every cycle, times from the cycle's
start:

- spike: ``fw-raja-laut`` reads 40 cm above the water at +30 min, one reading;
- stuck: ``fw-ampang`` repeats the value it read at +8 min until +33 min (50 readings;
  the quality checks see it when that value is above a dry road's, as in the first
  cycle);
- offline: ``fw-kuching`` sends nothing from +12 min to +16 min (8 readings);
- low battery: ``fw-pudu`` reports a battery of 0.16 and falling (fraction, 0-1).

**Pumps.** The simulator plays the pump controllers too: subscribed to
``cityos/<tenant>/cmd/Pump/+``, it executes each switch command
(:class:`PumpControllers`), answers on ``cityos/<tenant>/cmdexe/Pump/<id>`` (``OK``, or
``ERROR`` "motor overload" for every 10th command) and reports ``status`` as an
ordinary observation. While a pump runs, its site drains faster by the pump's
capacity (:attr:`~cityos.apps.floodwatch.demo.PumpSpec.capacity_cm_per_h`). Without a
broker there is no command channel and the pumps stay off.

:func:`simulate` is the same feed without I/O: the readings of a time range, with
the pumps off, on, or switched by the level rule, for tests and the benchmark.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import orjson

from cityos.appkit.demo import DemoContext
from cityos.appkit.publish import demo_publisher
from cityos.apps.floodwatch.demo import (
    GAUGE_TIP_MM,
    GAUGES,
    PUMPS,
    SITES,
    PumpSpec,
    air,
    wet_memory,
)
from cityos.apps.floodwatch.synthetic import SiteParams, Storm, storm_rain
from cityos.core.clock import now as clock_now
from cityos.core.errors import BadRequestData
from cityos.core.timefmt import format_datetime, parse_datetime

log = logging.getLogger(__name__)

TICK_S = 30.0
FIRST_STORM_S = 60.0
STORM_EVERY_S = 2400.0
#: The first storm of a demo (minutes, mm/h, peak at this share of the storm, mm at the
#: first gauge): strong and quick, so the water rises in the first minutes.
DESIGN_STORM = {"duration_min": 15.0, "peak_mm_per_h": 120.0, "peak_fraction": 0.05,
                "total_mm": 14.0}
DEVICE_EVERY = 10   # readings between two Device battery reports
STATUS_EVERY = 20   # readings between two pump status reports
COMMAND_ERROR_EVERY = 10  # every 10th command fails ("motor overload")
PUMP_MODES = ("off", "on", "rule")


@dataclass(frozen=True)
class Fault:
    """A sensor fault of the demo, repeated in every storm cycle.

    Attributes
    ----------
    kind : str
        ``spike``, ``stuck``, ``offline`` or ``low-battery``.
    site : str
        Local id of the site.
    start_s, end_s : float
        When, seconds from the cycle's start (``end_s`` excluded).
    size_cm : float
        A spike's height above the water.
    """

    kind: str
    site: str
    start_s: float
    end_s: float
    size_cm: float = 0.0


FAULTS = (
    Fault("spike", "fw-raja-laut", 30 * 60.0, 30 * 60.0 + TICK_S, 40.0),
    Fault("stuck", "fw-ampang", 8 * 60.0, 33 * 60.0),
    Fault("offline", "fw-kuching", 12 * 60.0, 16 * 60.0),
    Fault("low-battery", "fw-pudu", 0.0, STORM_EVERY_S),
)
_LOW_BATTERY_DRAIN_PER_H = 0.02
_BATTERY_DRAIN_PER_H = 0.001


class SimError(ValueError):
    """A bad simulator setting; the text names it."""


# ======================================================================= physics
class SiteWater:
    """The water at several sites, stepped one reading at a time.

    The model of :func:`~cityos.apps.floodwatch.synthetic.site_response` (initial loss,
    runoff coefficient, Nash cascade integrated exactly over each step, drain), with an
    extra drain per step: a pump. Starts dry.

    Parameters
    ----------
    params : sequence of SiteParams
    dt_s : float
        Reading interval.
    """

    def __init__(self, params: Sequence[SiteParams], dt_s: float):
        if not dt_s > 0:
            raise SimError(f"dt_s: {dt_s!r} must be positive")
        self.params = list(params)
        dt_h = dt_s / 3600.0
        col = lambda name: np.array([float(getattr(p, name)) for p in self.params])  # noqa: E731
        self._loss_cap = col("initial_loss_mm")
        self._recovery = col("loss_recovery_mm_per_h") * dt_h
        self._runoff = col("runoff_coefficient")
        self._drain = col("drain_capacity_mm_per_h") * dt_h
        self._area_ratio = col("area_ratio")
        n_max = max(p.n_reservoirs for p in self.params)
        self._a = np.zeros((len(self.params), n_max))
        self._b = np.zeros((len(self.params), n_max))
        for i, p in enumerate(self.params):
            k_s = 60.0 * p.k_min
            self._a[i, :p.n_reservoirs] = math.exp(-dt_s / k_s)
            self._b[i, :p.n_reservoirs] = k_s / dt_s * (1.0 - math.exp(-dt_s / k_s))
        self.deficit = self._loss_cap.copy()
        self.stores = np.zeros((len(self.params), n_max))
        self.pond = np.zeros(len(self.params))

    def extra_drain_mm(self, cm_per_h: np.ndarray, dt_s: float) -> np.ndarray:
        """A pump rate at each site (cm/h of depth) as mm over the contributing area
        per step: the unit the drain works in."""
        return np.asarray(cm_per_h, dtype=float) * 10.0 / self._area_ratio * dt_s / 3600.0

    def step(self, rain_mm, extra_drain_mm=0.0) -> np.ndarray:
        """Advance one reading: ``rain_mm`` fell at each site, pumps took
        ``extra_drain_mm`` more; return the true depth at each site, cm."""
        rain = np.asarray(rain_mm, dtype=float)
        self.deficit = np.minimum(self._loss_cap, self.deficit + self._recovery)
        absorbed = np.minimum(rain, self.deficit)
        self.deficit = self.deficit - absorbed
        flow = self._runoff * (rain - absorbed)
        for j in range(self.stores.shape[1]):
            new = self._a[:, j] * self.stores[:, j] + self._b[:, j] * flow
            flow = self.stores[:, j] + flow - new
            self.stores[:, j] = new
        available = self.pond + flow
        self.pond = available - np.minimum(available, self._drain + extra_drain_mm)
        return self.pond * self._area_ratio / 10.0


# ======================================================================== storms
def live_storm(cycle: int, start_s: float, seed: int = 0) -> Storm:
    """Storm of cycle ``cycle`` of a demo that started at ``start_s``.

    Cycle 0 is the :data:`DESIGN_STORM`; later ones are drawn from ``(seed, cycle)``.
    """
    begin = start_s + cycle * STORM_EVERY_S + FIRST_STORM_S
    if cycle == 0:
        return Storm(begin, DESIGN_STORM["duration_min"], DESIGN_STORM["peak_mm_per_h"],
                     DESIGN_STORM["peak_fraction"])
    rng = np.random.default_rng([seed, 21, cycle])
    return Storm(begin, float(rng.uniform(12.0, 25.0)), float(rng.uniform(50.0, 120.0)),
                 float(rng.uniform(0.05, 0.3)))


def cycle_rain(cycle: int, start_s: float, dt_s: float, seed: int = 0) -> np.ndarray:
    """True rain (mm per reading) at each gauge over one storm cycle.

    Returns
    -------
    numpy.ndarray
        ``(gauges, readings of the cycle)``; reading ``k`` holds the rain of
        ``(cycle start + k dt, cycle start + (k + 1) dt]``.
    """
    n = int(round(STORM_EVERY_S / dt_s))
    t = start_s + cycle * STORM_EVERY_S + dt_s * np.arange(1, n + 1)
    storm = live_storm(cycle, start_s, seed)
    rng = np.random.default_rng([seed, 22, cycle])
    if cycle == 0:  # the design storm reaches the first gauge first and fullest
        factors = np.array([1.0, 0.8, 0.95])[:len(GAUGES)]
        lags = np.array([0.0, 3.0, 1.0])[:len(GAUGES)]
    else:
        factors = np.exp(0.3 * rng.standard_normal(len(GAUGES)) - 0.045)
        lags = rng.uniform(0.0, 5.0, len(GAUGES))
    rain = np.array([storm_rain(t, [storm], dt_s, seed=(seed * 1000 + cycle) * 10 + g,
                                intensity_factor=factors[g], lag_min=lags[g])
                     for g in range(len(GAUGES))])
    if cycle == 0:
        totals = rain.sum(axis=1)
        rain *= (DESIGN_STORM["total_mm"] * factors / np.where(totals > 0, totals, 1.0))[:, None]
    return rain


# ========================================================================== feed
@dataclass
class Tick:
    """One round of readings (rows follow :data:`~cityos.apps.floodwatch.demo.SITES`,
    :data:`~cityos.apps.floodwatch.demo.GAUGES` and
    :data:`~cityos.apps.floodwatch.demo.PUMPS`).

    ``depth_cm`` is what each sensor reports, NaN when it sends nothing.
    """

    index: int
    t_s: float
    depth_cm: np.ndarray
    depth_true_cm: np.ndarray
    battery: np.ndarray
    rain_mm: np.ndarray
    rain_true_mm: np.ndarray
    temperature_c: np.ndarray
    humidity: np.ndarray
    pump_on: np.ndarray


class FloodwatchFeed:
    """The demo's sites and gauges, one reading at a time.

    Parameters
    ----------
    start_s : float
        When the demo started (seconds since the epoch): storm cycles count from here.
    seed : int
        Later storms, gauge spread, sensor noise.
    dt_s : float
        Reading interval; a divisor of :data:`STORM_EVERY_S`.
    faults : bool
        Play the :data:`FAULTS`.
    """

    def __init__(self, start_s: float, seed: int = 0, dt_s: float = TICK_S,
                 faults: bool = True):
        if not (isinstance(start_s, int | float) and math.isfinite(start_s)):
            raise SimError(f"start_s: {start_s!r} must be a finite number of seconds")
        if not (dt_s > 0 and abs(STORM_EVERY_S / dt_s - round(STORM_EVERY_S / dt_s)) < 1e-9):
            raise SimError(f"dt_s: {dt_s!r} must divide the storm cycle ({STORM_EVERY_S:g} s)")
        self.start_s = float(start_s)
        self.seed = seed
        self.dt_s = float(dt_s)
        self.faults = faults
        self.index = 0
        self.water = SiteWater([s.params for s in SITES], self.dt_s)
        self._gauge_of_site = [next(g for g, gauge in enumerate(GAUGES)
                                    if gauge.local_id == s.gauge) for s in SITES]
        self._site_of_pump = [next(i for i, s in enumerate(SITES) if s.local_id == p.site)
                              for p in PUMPS]
        self._rng = np.random.default_rng([seed, 31])
        self._carry = np.zeros(len(GAUGES))
        self._wet = np.zeros(len(GAUGES))
        self._cycle: tuple[int, np.ndarray] | None = None
        self._stuck_value: dict[str, float] = {}
        self._per_cycle = int(round(STORM_EVERY_S / self.dt_s))

    def _rain(self, k: int) -> np.ndarray:
        cycle, offset = divmod(k, self._per_cycle)
        if self._cycle is None or self._cycle[0] != cycle:
            self._cycle = (cycle, cycle_rain(cycle, self.start_s, self.dt_s, self.seed))
        return self._cycle[1][:, offset]

    def tick(self, pumps_on: Mapping[str, bool] | Sequence[bool] | None = None) -> Tick:
        """The next round of readings, with the pumps running as ``pumps_on`` says
        (by pump local id, or in :data:`PUMPS` order) during its interval."""
        k = self.index
        self.index += 1
        t = self.start_s + (k + 1) * self.dt_s
        on = np.zeros(len(PUMPS), dtype=bool)
        if isinstance(pumps_on, Mapping):
            on = np.array([bool(pumps_on.get(p.local_id, False)) for p in PUMPS])
        elif pumps_on is not None:
            on = np.array([bool(v) for v in pumps_on])
        rain_true = self._rain(k)
        site_rain = rain_true[self._gauge_of_site]
        pump_cm_per_h = np.zeros(len(SITES))
        for p, pump in enumerate(PUMPS):
            if on[p]:
                pump_cm_per_h[self._site_of_pump[p]] += pump.capacity_cm_per_h
        depth_true = self.water.step(site_rain, self.water.extra_drain_mm(pump_cm_per_h,
                                                                          self.dt_s))
        noise = self._rng.standard_normal(len(SITES))
        depth = np.array([round(max(depth_true[i] + s.params.noise_cm * noise[i], 0.0), 1)
                          for i, s in enumerate(SITES)])
        total = self._carry + rain_true
        tips = np.floor(total / GAUGE_TIP_MM + 1e-9)
        self._carry = total - tips * GAUGE_TIP_MM
        decay = wet_memory(self.dt_s)
        self._wet = decay * self._wet + (1.0 - decay) * rain_true * 3600.0 / self.dt_s
        temperature, humidity = air(np.full(len(GAUGES), t), self._wet)
        hours = (t - self.start_s) / 3600.0
        battery = np.array([s.battery - _BATTERY_DRAIN_PER_H * hours for s in SITES])
        if self.faults:
            depth, battery = self._apply_faults(t, depth, battery, hours)
        return Tick(k, t, depth, depth_true, np.round(battery, 3),
                    np.round(tips * GAUGE_TIP_MM, 1), rain_true, temperature, humidity, on)

    def _apply_faults(self, t, depth, battery, hours):
        in_cycle = (t - self.start_s) % STORM_EVERY_S
        row = {s.local_id: i for i, s in enumerate(SITES)}
        for fault in FAULTS:
            i = row[fault.site]
            active = fault.start_s <= in_cycle < fault.end_s
            if fault.kind == "low-battery":
                battery[i] = max(0.05, SITES[i].battery - _LOW_BATTERY_DRAIN_PER_H * hours)
            elif fault.kind == "spike" and active:
                depth[i] = round(depth[i] + fault.size_cm, 1)
            elif fault.kind == "offline" and active:
                depth[i] = math.nan
            elif fault.kind == "stuck":
                if active:
                    depth[i] = self._stuck_value.setdefault(fault.site, depth[i])
                else:
                    self._stuck_value.pop(fault.site, None)
        return depth, battery

    def observations(self, tick: Tick) -> list[tuple[str, str, dict]]:
        """What the devices send for ``tick``: ``(entity type, local id, body)``."""
        stamp = format_datetime(datetime.fromtimestamp(tick.t_s, tz=UTC))
        out = []
        for i, site in enumerate(SITES):
            if math.isnan(tick.depth_cm[i]):
                continue  # offline: nothing arrives
            out.append(("WaterObserved", site.local_id, {
                "depth": {"type": "Property", "value": float(tick.depth_cm[i]),
                          "unitCode": "CMT"},
                "batteryLevel": float(tick.battery[i]), "observedAt": stamp}))
            if tick.index % DEVICE_EVERY == 0:
                out.append(("Device", f"{site.local_id}-sensor",
                            {"batteryLevel": float(tick.battery[i]), "observedAt": stamp}))
        for g, gauge in enumerate(GAUGES):
            out.append(("WeatherObserved", gauge.local_id, {
                "precipitation": {"type": "Property", "value": float(tick.rain_mm[g]),
                                  "unitCode": "MMT"},
                "temperature": {"type": "Property", "value": float(tick.temperature_c[g]),
                                "unitCode": "CEL"},
                "relativeHumidity": float(tick.humidity[g]), "observedAt": stamp}))
        return out


# ====================================================================== simulate
@dataclass
class SimulatedFeed:
    """The readings of :func:`simulate`: arrays ``(rows, readings)``, rows following
    :data:`~cityos.apps.floodwatch.demo.SITES` (depth, battery),
    :data:`~cityos.apps.floodwatch.demo.GAUGES` (rain, weather) and
    :data:`~cityos.apps.floodwatch.demo.PUMPS` (pump state). ``depth_cm`` is what the
    sensors report (NaN: nothing sent), ``depth_true_cm`` the water. ``messages`` are
    the observations in the order :func:`run` publishes them: ``(t_s, entity type,
    local id, body)``."""

    t_s: np.ndarray
    site_ids: list[str]
    gauge_ids: list[str]
    pump_ids: list[str]
    depth_cm: np.ndarray
    depth_true_cm: np.ndarray
    battery: np.ndarray
    rain_mm: np.ndarray
    rain_true_mm: np.ndarray
    temperature_c: np.ndarray
    humidity: np.ndarray
    pump_on: np.ndarray
    storms: list[Storm]
    messages: list[tuple[float, str, str, dict]]

    def site(self, local_id: str) -> int:
        """Row of a site."""
        return self.site_ids.index(local_id)


class RulePumps:
    """The level rule the platform applies (on at ``onLevel``, off at ``offLevel``, no
    shorter run or rest than ``minOnTime``/``minOffTime``), on the reported depth;
    what :func:`simulate` uses for ``pumps="rule"``.

    Parameters
    ----------
    pumps : sequence of PumpSpec
    """

    def __init__(self, pumps: Sequence[PumpSpec] = PUMPS):
        self.pumps = list(pumps)
        self.on = {p.local_id: False for p in self.pumps}
        self.since = {p.local_id: -math.inf for p in self.pumps}

    def decide(self, t_s: float, depth_by_site: Mapping[str, float]) -> dict[str, bool]:
        """Switch each pump on the latest depth of its site; return the states."""
        for pump in self.pumps:
            depth = depth_by_site.get(pump.site, math.nan)
            if math.isnan(depth):
                continue  # no reading: hold
            held = t_s - self.since[pump.local_id]
            if self.on[pump.local_id]:
                if depth <= pump.off_level_cm and held >= pump.min_on_s:
                    self.on[pump.local_id], self.since[pump.local_id] = False, t_s
            elif depth >= pump.on_level_cm and held >= pump.min_off_s:
                self.on[pump.local_id], self.since[pump.local_id] = True, t_s
        return dict(self.on)


def simulate(start_s: float, end_s: float, *, seed: int = 0, dt_s: float = TICK_S,
             pumps: str = "off", faults: bool = True) -> SimulatedFeed:
    """The live feed of a demo started at ``start_s``, up to ``end_s``, without I/O.

    Parameters
    ----------
    start_s, end_s : float
        Seconds since the epoch; readings at ``start_s + dt_s, start_s + 2 dt_s, ...,
        <= end_s``.
    seed : int
        Storms after the first, gauge spread, sensor noise.
    dt_s : float
        Reading interval.
    pumps : str
        ``"off"`` (never run), ``"on"`` (always run) or ``"rule"`` (:class:`RulePumps`
        on the reported depth, as the platform's rule controller would).
    faults : bool
        Play the :data:`FAULTS`.

    Returns
    -------
    SimulatedFeed
    """
    if pumps not in PUMP_MODES:
        raise SimError(f"pumps: {pumps!r} must be one of {', '.join(PUMP_MODES)}")
    if not (isinstance(end_s, int | float) and end_s >= start_s):
        raise SimError(f"end_s: {end_s!r} must not be before start_s ({start_s!r})")
    feed = FloodwatchFeed(start_s, seed, dt_s, faults)
    n = int(math.floor((end_s - start_s) / feed.dt_s + 1e-9))
    rule = RulePumps()
    state = {p.local_id: pumps == "on" for p in PUMPS}
    ticks, messages = [], []
    last_depth: dict[str, float] = {}
    for _ in range(n):
        if pumps == "rule":
            t_now = feed.start_s + feed.index * feed.dt_s
            state = rule.decide(t_now, last_depth)
        tick = feed.tick(state)
        ticks.append(tick)
        for i, site in enumerate(SITES):
            if not math.isnan(tick.depth_cm[i]):
                last_depth[site.local_id] = float(tick.depth_cm[i])
        messages.extend((tick.t_s, *m) for m in feed.observations(tick))

    def stack(name: str, rows: int) -> np.ndarray:
        if not ticks:
            return np.empty((rows, 0))
        return np.stack([getattr(tk, name) for tk in ticks], axis=1)

    cycles = range(max(1, int(math.ceil((end_s - start_s) / STORM_EVERY_S))))
    return SimulatedFeed(
        np.array([tk.t_s for tk in ticks]), [s.local_id for s in SITES],
        [g.local_id for g in GAUGES], [p.local_id for p in PUMPS],
        stack("depth_cm", len(SITES)), stack("depth_true_cm", len(SITES)),
        stack("battery", len(SITES)), stack("rain_mm", len(GAUGES)),
        stack("rain_true_mm", len(GAUGES)), stack("temperature_c", len(GAUGES)),
        stack("humidity", len(GAUGES)), stack("pump_on", len(PUMPS)).astype(bool),
        [live_storm(c, start_s, seed) for c in cycles], messages)


# ========================================================================= pumps
class PumpControllers:
    """The demo's pump controllers: execute switch commands, answer, report state.

    Thread-safe: commands arrive on the MQTT client's thread while the feed reads the
    states on its own.

    Parameters
    ----------
    pumps : sequence of PumpSpec
    error_every : int
        Every this many-th command is refused with ``ERROR`` "motor overload".
    """

    def __init__(self, pumps: Sequence[PumpSpec] = PUMPS,
                 error_every: int = COMMAND_ERROR_EVERY):
        self.pumps = {p.local_id: p for p in pumps}
        self._on = {p: False for p in self.pumps}
        self._lock = threading.Lock()
        self.error_every = error_every
        self.commands = 0

    def states(self) -> dict[str, bool]:
        """Whether each pump runs, by local id."""
        with self._lock:
            return dict(self._on)

    def status_reports(self, t_s: float) -> list[tuple[str, str, dict]]:
        """Every pump's ``status`` as an observation ``(type, local id, body)``."""
        stamp = _stamp(t_s)
        with self._lock:
            return [("Pump", p, {"status": "on" if on else "off", "observedAt": stamp})
                    for p, on in self._on.items()]

    def command(self, local_id: str, payload: bytes | str | Mapping,
                now_s: float) -> list[tuple[str, str, dict]]:
        """Execute one command from ``cmd/Pump/<local_id>``; return what to publish:
        the answer ``("cmdexe", local_id, {"id", "status", "info"})`` and then the
        state report ``("Pump", local_id, {"status", "observedAt"})``.

        A command without an id, or past its ``expiresAt``, gets no answer (the
        platform expires it).
        """
        if not isinstance(payload, Mapping):
            try:
                payload = orjson.loads(payload)
            except orjson.JSONDecodeError:
                log.warning("floodwatch sim: pump %s: command is not JSON", local_id)
                return []
        command_id = payload.get("id") if isinstance(payload, Mapping) else None
        if not isinstance(command_id, str) or not command_id:
            log.warning("floodwatch sim: pump %s: command without an id ignored", local_id)
            return []
        expires = payload.get("expiresAt")
        if isinstance(expires, str):
            try:
                if parse_datetime(expires, "expiresAt").timestamp() < now_s:
                    log.info("floodwatch sim: pump %s: command %s expired", local_id,
                             command_id)
                    return []
            except BadRequestData:
                return [_answer(local_id, command_id, "ERROR", "expiresAt: not a date-time")]
        switch = payload.get("switch")
        if local_id not in self.pumps:
            return [_answer(local_id, command_id, "ERROR", f"unknown pump {local_id!r}")]
        if switch not in ("on", "off"):
            return [_answer(local_id, command_id, "ERROR",
                            f"switch: must be 'on' or 'off', got {switch!r}")]
        with self._lock:
            self.commands += 1
            if self.commands % self.error_every == 0:
                answer = _answer(local_id, command_id, "ERROR", "motor overload")
            else:
                was = self._on[local_id]
                self._on[local_id] = switch == "on"
                info = f"switched {switch}" if was != self._on[local_id] else f"already {switch}"
                answer = _answer(local_id, command_id, "OK", info)
            state = "on" if self._on[local_id] else "off"
        return [answer, ("Pump", local_id, {"status": state, "observedAt": _stamp(now_s)})]


def _answer(local_id: str, command_id: str, status: str, info: str) -> tuple[str, str, dict]:
    return ("cmdexe", local_id, {"id": command_id, "status": status, "info": info})


def _stamp(t_s: float) -> str:
    return format_datetime(datetime.fromtimestamp(t_s, tz=UTC))


# ====================================================================== transport
def _send(publisher, message: tuple[str, str, dict]) -> None:
    """Publish one ``(kind, local_id, body)`` message: ``kind`` an entity type, or
    ``cmdexe`` for a pump command's answer."""
    kind, local_id, body = message
    if kind == "cmdexe":
        publisher.publish("Pump", local_id, body, answer=True)
    else:
        publisher.publish(kind, local_id, body)


def _link(demo, controllers: PumpControllers):
    """The demo's publisher (:func:`cityos.appkit.publish.demo_publisher`): MQTT with
    the pump commands when the demo has a broker, else its HTTP ingest (readings only);
    None when the demo stopped first."""
    holder: dict = {}

    def on_command(local_id: str, payload: bytes) -> None:
        # the platform's clock decides expiry, whatever the feed's speed-up
        for message in controllers.command(local_id, payload, clock_now()):
            _send(holder["link"], message)

    holder["link"] = demo_publisher(demo, client_id=f"cityos-floodwatch-sim-{demo.tenant}",
                                    label="floodwatch sim", command_type="Pump",
                                    on_command=on_command)
    return holder["link"]


def run(demo: DemoContext, *, seed: int = 0, speedup: float = 1.0) -> None:
    """The demo city's flood-watch simulator: publish readings through the real
    ingest path and play the pump controllers until ``demo.stop`` is set.

    Parameters
    ----------
    demo : DemoContext
        MQTT when ``demo.mqtt_url`` is set (readings and pump commands), else HTTP
        with ``demo.api_key`` (readings only).
    seed : int
    speedup : float
        Simulated seconds per wall-clock second (1: a reading every 30 s, stamped now).
    """
    if not speedup > 0:
        raise SimError(f"speedup: {speedup!r} must be positive")
    start_s = clock_now()
    start_wall = time.monotonic()
    feed = FloodwatchFeed(start_s, seed)
    controllers = PumpControllers()
    link = _link(demo, controllers)
    if link is None:
        return
    try:
        for message in controllers.status_reports(start_s):
            _send(link, message)
        link.flush()
        while not demo.stop.is_set():
            due_wall = start_wall + (feed.index + 1) * feed.dt_s / speedup
            wait = due_wall - time.monotonic()
            if wait > 0 and demo.stop.wait(wait):
                break
            tick = feed.tick(controllers.states())
            for message in feed.observations(tick):
                _send(link, message)
            if tick.index % STATUS_EVERY == STATUS_EVERY - 1:
                for message in controllers.status_reports(tick.t_s):
                    _send(link, message)
            link.flush()
    except Exception:
        log.exception("floodwatch sim: stopped by an error")
        raise
    finally:
        link.close()
