"""A synthetic urban catchment whose flood response is known, for tests, demo and benchmark.

Everything is reproducible from a seed and sampled every ``dt_s`` seconds (60 s by
default); time is float seconds since the Unix epoch (UTC).

Rain (:func:`generate_storms`, :func:`storm_rain`)
    Tropical convective storms. Storms start as a Poisson process whose rate follows
    the afternoon tendency of convection (a von Mises bump peaking at 16:00 local time,
    2.7 x the daily mean at the peak, 0.14 x at the trough) and the season (a yearly
    harmonic, +-35 %, wettest in mid-November, the north-east monsoon), with at least
    ``min_dry_min`` of dry weather after a storm before the next one starts. A storm
    lasts 20 min to 3 h (lognormal, median 50 min) and its peak intensity is 10-120 mm/h
    (lognormal, median 50 mm/h). The intensity rises linearly from 20 % of the peak to
    the peak over the first 15-35 % of the storm and then decays exponentially to 10 %
    of the peak at its end, modulated by a lognormal AR(1) fluctuation (sigma 0.3,
    lag-1 correlation 0.85 per minute) and capped at 120 mm/h. Each site sees each
    storm with its own intensity factor (lognormal, sigma 0.35) and arrival lag (0-10
    min), as a convective cell crosses the city.

Gauge (:func:`tipping_bucket`)
    A tipping-bucket rain gauge at each site reports whole tips (0.2 mm by default) per
    reading interval, so light rain shows as an occasional tip.

Depth (:func:`site_response`): per site, a known conceptual model, stepped per reading
    1. initial loss: the road surface holds up to ``initial_loss_mm`` (puddles,
       wetting, cracks) which dries out at ``loss_recovery_mm_per_h``; rain first refills
       it, the excess runs off (while it rains, the drying goes on as a continuing
       loss);
    2. effective rain = ``runoff_coefficient`` x excess, in mm over the contributing
       area;
    3. a cascade of ``n_reservoirs`` equal linear reservoirs, each with time constant
       ``k_min`` (a Nash cascade: the outflow of one feeds the next), routes it to the
       low point of the road; each step is integrated exactly for an inflow constant
       over the step, so the water balance closes to rounding error;
    4. a drain there swallows up to ``drain_capacity_mm_per_h`` (over the contributing
       area); what it cannot take ponds on the road;
    5. depth = ponded volume / ponding area = pond (mm over the contributing area) x
       ``area_ratio`` / 10 cm, zero on a dry road.
    The sensor adds Gaussian noise (``noise_cm``), reads no less than zero and reports
    to ``resolution_cm``.

Rain and depth alone cannot tell the runoff coefficient, the drain capacity and the
area ratio apart: doubling the first two while halving the third gives the same
depths. Only ``runoff_coefficient x area_ratio`` and ``drain_capacity_mm_per_h x
area_ratio`` matter, and :class:`SiteParams` gives them in depth units
(:attr:`SiteParams.gain_cm_per_mm`, :attr:`SiteParams.drain_cm_per_h`): these,
``initial_loss_mm`` and ``k_min`` are what a calibration can recover.

:func:`synthetic_catchment` puts it together for several sites over many days, and
:func:`rain_forecast` gives a rainfall "forecast" for the next 30 min (the truth plus a
timing and an amount error) at every reading.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np
from scipy.signal import lfilter

__all__ = ["DEFAULT_START_S", "Catchment", "CatchmentConfigError", "SiteParams",
           "SiteResponse", "Storm", "generate_storms", "rain_forecast", "sample_site_params",
           "sensor_depth", "site_response", "storm_rain", "storm_rate_per_day",
           "synthetic_catchment", "tipping_bucket"]

#: 2025-11-01 00:00 in Kuala Lumpur (UTC+8), early in the north-east monsoon.
DEFAULT_START_S = datetime(2025, 11, 1, tzinfo=timezone(timedelta(hours=8))).timestamp()
UTC_OFFSET_H = 8.0
PEAK_HOUR_LOCAL = 16.0
DIURNAL_KAPPA = 1.5          # concentration of the afternoon bump
SEASONAL_AMPLITUDE = 0.35
WETTEST_DAY_OF_YEAR = 319    # mid-November
MAX_INTENSITY_MM_PER_H = 120.0
_DAY_S = 86_400.0


class CatchmentConfigError(ValueError):
    """A synthetic-catchment setting that cannot work; the text names the setting."""


@dataclass(frozen=True)
class Storm:
    """One convective storm over the city (before each site's own factor and lag)."""

    start_s: float
    duration_min: float
    peak_mm_per_h: float
    peak_fraction: float  # when the peak comes, as a fraction of the duration


@dataclass(frozen=True)
class SiteParams:
    """The true flood response of one site (see the module text for the model)."""

    runoff_coefficient: float = 0.8
    initial_loss_mm: float = 3.0
    k_min: float = 10.0
    n_reservoirs: int = 2
    drain_capacity_mm_per_h: float = 20.0
    area_ratio: float = 20.0  # contributing area / ponding area
    loss_recovery_mm_per_h: float = 2.0
    noise_cm: float = 0.5
    resolution_cm: float = 0.1

    def __post_init__(self):
        checks = {
            "runoff_coefficient": 0.0 < self.runoff_coefficient <= 1.0,
            "initial_loss_mm": self.initial_loss_mm >= 0.0,
            "k_min": self.k_min > 0.0,
            "n_reservoirs": int(self.n_reservoirs) == self.n_reservoirs >= 1,
            "drain_capacity_mm_per_h": self.drain_capacity_mm_per_h >= 0.0,
            "area_ratio": self.area_ratio > 0.0,
            "loss_recovery_mm_per_h": self.loss_recovery_mm_per_h >= 0.0,
            "noise_cm": self.noise_cm >= 0.0,
            "resolution_cm": self.resolution_cm >= 0.0,
        }
        for name, ok in checks.items():
            if not ok or not math.isfinite(float(getattr(self, name))):
                raise CatchmentConfigError(f"{name}: {getattr(self, name)!r} is out of range")

    @property
    def gain_cm_per_mm(self) -> float:
        """Depth (cm) that 1 mm of rain above the initial loss would pond, undrained."""
        return self.runoff_coefficient * self.area_ratio / 10.0

    @property
    def drain_cm_per_h(self) -> float:
        """How fast the drain lowers the pond, cm/h (the recession slope of the depth)."""
        return self.drain_capacity_mm_per_h * self.area_ratio / 10.0


@dataclass
class SiteResponse:
    """What :func:`site_response` computes, per reading; rows are sites when several.

    Water amounts are mm over the contributing area during (flows) or at the end of
    (stores) each reading interval.
    """

    effective_rain_mm: np.ndarray
    outflow_mm: np.ndarray        # from the reservoir cascade into the low point
    drained_mm: np.ndarray        # taken by the drain
    storage_mm: np.ndarray        # held in the reservoirs (all of the cascade)
    pond_mm: np.ndarray           # ponded on the road
    loss_deficit_mm: np.ndarray   # what the initial loss can still take
    depth_cm: np.ndarray          # true depth at the sensor


@dataclass
class Catchment:
    """Several sites over many days: rain, depth, and the truth behind them.

    Arrays are ``(sites, readings)``; ``rain_mm`` and ``depth_cm`` are what the
    devices report (gauge tips, noisy depth), ``rain_true_mm`` and ``depth_true_cm``
    what happened.
    """

    t_s: np.ndarray
    dt_s: float
    site_ids: list[str]
    sites: list[SiteParams]
    storms: list[Storm]
    rain_true_mm: np.ndarray
    rain_mm: np.ndarray
    depth_true_cm: np.ndarray
    depth_cm: np.ndarray
    seed: int = 0
    storm_factors: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))

    def rain_forecast(self, site: int, horizon_min: float = 30.0, seed: int | None = None,
                      **errors) -> np.ndarray:
        """:func:`rain_forecast` of one site's true rain (seeded from the catchment's)."""
        seed = self.seed * 7919 + 101 * site + 13 if seed is None else seed
        return rain_forecast(self.rain_true_mm[site], self.dt_s, horizon_min, seed=seed,
                             **errors)


# ====================================================================== rain
def storm_rate_per_day(t_s, storms_per_day: float = 0.5,
                       utc_offset_h: float = UTC_OFFSET_H) -> np.ndarray:
    """Rate at which storms start at times ``t_s``, per day.

    The daily mean (over a day and over a year) is ``storms_per_day``; the afternoon
    bump and the season multiply it (see the module text).
    """
    t = np.asarray(t_s, dtype=float)
    hour = ((t / 3600.0 + utc_offset_h) % 24.0)
    diurnal = (np.exp(DIURNAL_KAPPA * np.cos(2 * np.pi * (hour - PEAK_HOUR_LOCAL) / 24.0))
               / np.i0(DIURNAL_KAPPA))
    day_of_year = ((t + utc_offset_h * 3600.0) / _DAY_S) % 365.25
    seasonal = 1.0 + SEASONAL_AMPLITUDE * np.cos(
        2 * np.pi * (day_of_year - WETTEST_DAY_OF_YEAR) / 365.25)
    return storms_per_day * diurnal * seasonal


def generate_storms(seed: int, days: float, start_s: float = DEFAULT_START_S,
                    storms_per_day: float = 0.5, min_dry_min: float = 60.0,
                    utc_offset_h: float = UTC_OFFSET_H) -> list[Storm]:
    """The city's storms over ``days`` from ``start_s``, reproducible from ``seed``.

    Parameters
    ----------
    seed : int
        Random seed.
    days : float
        Length of the period.
    start_s : float
        Start, seconds since the epoch (UTC).
    storms_per_day : float
        Mean rate of storms (before the dry-spell rule thins it a little).
    min_dry_min : float
        Dry weather after a storm's end before another can start.
    utc_offset_h : float
        Local time offset, for the afternoon tendency.

    Returns
    -------
    list of Storm
        In time order, none overlapping.
    """
    if not days > 0:
        raise CatchmentConfigError(f"days: {days!r} must be positive")
    if not storms_per_day >= 0:
        raise CatchmentConfigError(f"storms_per_day: {storms_per_day!r} must be >= 0")
    rng = np.random.default_rng([seed, 1])
    step_s = 60.0
    t = start_s + step_s * np.arange(int(math.ceil(days * _DAY_S / step_s)))
    p_start = storm_rate_per_day(t, storms_per_day, utc_offset_h) * step_s / _DAY_S
    candidates = t[rng.random(t.size) < p_start]
    storms: list[Storm] = []
    free_from = -math.inf
    for start in candidates:
        if start < free_from:
            continue
        duration = float(np.clip(50.0 * math.exp(0.6 * rng.standard_normal()), 20.0, 180.0))
        peak = float(np.clip(50.0 * math.exp(0.4 * rng.standard_normal()), 10.0,
                             MAX_INTENSITY_MM_PER_H))
        storms.append(Storm(float(start), duration, peak, float(rng.uniform(0.15, 0.35))))
        free_from = start + 60.0 * (duration + min_dry_min)
    return storms


def storm_rain(t_s, storms: Sequence[Storm], dt_s: float, seed: int = 0,
               intensity_factor: Sequence[float] | float = 1.0,
               lag_min: Sequence[float] | float = 0.0) -> np.ndarray:
    """Rain (mm per reading interval) that ``storms`` drop at one site.

    Parameters
    ----------
    t_s : array-like
        Reading times; reading ``i`` holds the rain of ``(t_s[i] - dt_s, t_s[i]]``.
    storms : sequence of Storm
        From :func:`generate_storms`.
    dt_s : float
        Reading interval.
    seed : int
        Seed of the within-storm fluctuation.
    intensity_factor, lag_min : float or sequence of float
        Per storm (or one for all): how much stronger the storm is here, and how much
        later it arrives.

    Returns
    -------
    numpy.ndarray
        Rain per reading interval, mm.
    """
    t = np.asarray(t_s, dtype=float)
    rain_mm_per_h = np.zeros(t.size)
    factors = np.broadcast_to(np.asarray(intensity_factor, dtype=float), (len(storms),))
    lags = np.broadcast_to(np.asarray(lag_min, dtype=float), (len(storms),))
    rng = np.random.default_rng([seed, 2])
    rho = 0.85 ** (dt_s / 60.0)
    decay = math.log(10.0)
    mid = t - dt_s / 2.0  # intensity at the middle of each reading interval
    for storm, factor, lag in zip(storms, factors, lags, strict=True):
        begin = storm.start_s + 60.0 * lag
        lo, hi = np.searchsorted(mid, [begin, begin + 60.0 * storm.duration_min])
        if hi <= lo:
            continue
        x = (mid[lo:hi] - begin) / (60.0 * storm.duration_min)
        f = storm.peak_fraction
        shape = np.where(x < f, 0.2 + 0.8 * x / f, np.exp(-decay * (x - f) / (1.0 - f)))
        # AR(1) in log intensity with a stationary start: gusts and cells within the storm
        z = lfilter([math.sqrt(1 - rho**2)], [1.0, -rho], rng.standard_normal(hi - lo),
                    zi=[rho * rng.standard_normal()])[0]
        wobble = np.exp(0.3 * z - 0.045)
        rain_mm_per_h[lo:hi] += factor * storm.peak_mm_per_h * shape * wobble
    np.minimum(rain_mm_per_h, MAX_INTENSITY_MM_PER_H, out=rain_mm_per_h)
    return rain_mm_per_h * dt_s / 3600.0


def tipping_bucket(rain_mm, tip_mm: float = 0.2) -> np.ndarray:
    """What a tipping-bucket gauge reports per interval: whole tips, the rest carried."""
    rain = np.asarray(rain_mm, dtype=float)
    if tip_mm <= 0:
        return rain.copy()
    tips = np.floor(np.cumsum(rain, axis=-1) / tip_mm + 1e-9)
    return np.diff(tips, axis=-1, prepend=0.0) * tip_mm


# ===================================================================== depth
def site_response(params: SiteParams | Sequence[SiteParams], rain_mm,
                  dt_s: float = 60.0) -> SiteResponse:
    """The true response of one site (or several, one row each) to its rain.

    A reference implementation, stepped reading by reading (vectorised over sites),
    starting dry: the initial loss empty of water, no water in the reservoirs or the
    pond.

    Parameters
    ----------
    params : SiteParams or sequence of SiteParams
        One site, or one per row of ``rain_mm``.
    rain_mm : array-like
        Rain per reading interval, shape ``(readings,)`` or ``(sites, readings)``.
    dt_s : float
        Reading interval, seconds.

    Returns
    -------
    SiteResponse
        Arrays shaped like ``rain_mm``.
    """
    single = isinstance(params, SiteParams)
    sites = [params] if single else list(params)
    rain = np.atleast_2d(np.asarray(rain_mm, dtype=float))
    if rain.shape[0] != len(sites):
        raise CatchmentConfigError(f"rain_mm: {rain.shape[0]} rows for {len(sites)} sites")
    if not dt_s > 0:
        raise CatchmentConfigError(f"dt_s: {dt_s!r} must be positive")
    dt_h = dt_s / 3600.0
    col = lambda name: np.array([float(getattr(s, name)) for s in sites])  # noqa: E731
    loss_cap = col("initial_loss_mm")
    recovery = col("loss_recovery_mm_per_h") * dt_h
    runoff = col("runoff_coefficient")
    drain = col("drain_capacity_mm_per_h") * dt_h
    n_max = max(s.n_reservoirs for s in sites)
    # a reservoir past a site's own cascade passes its inflow straight on (a = b = 0)
    a = np.zeros((len(sites), n_max))
    b = np.zeros((len(sites), n_max))
    for i, s in enumerate(sites):
        k_s = 60.0 * s.k_min
        a[i, :s.n_reservoirs] = math.exp(-dt_s / k_s)
        b[i, :s.n_reservoirs] = k_s / dt_s * (1.0 - math.exp(-dt_s / k_s))

    out = {name: np.empty(rain.shape) for name in (
        "effective_rain_mm", "outflow_mm", "drained_mm", "storage_mm", "pond_mm",
        "loss_deficit_mm")}
    deficit = loss_cap.copy()
    stores = np.zeros((len(sites), n_max))
    pond = np.zeros(len(sites))
    for i in range(rain.shape[1]):
        r = rain[:, i]
        deficit = np.minimum(loss_cap, deficit + recovery)
        absorbed = np.minimum(r, deficit)
        deficit = deficit - absorbed
        flow = runoff * (r - absorbed)
        out["effective_rain_mm"][:, i] = flow
        for j in range(n_max):
            new = a[:, j] * stores[:, j] + b[:, j] * flow
            flow = stores[:, j] + flow - new  # what left reservoir j during the step
            stores[:, j] = new
        out["outflow_mm"][:, i] = flow
        available = pond + flow
        drained = np.minimum(available, drain)
        pond = available - drained
        out["drained_mm"][:, i] = drained
        out["storage_mm"][:, i] = stores.sum(axis=1)
        out["pond_mm"][:, i] = pond
        out["loss_deficit_mm"][:, i] = deficit
    out["depth_cm"] = out["pond_mm"] * col("area_ratio")[:, None] / 10.0
    if single:
        out = {k: v[0] for k, v in out.items()}
    return SiteResponse(**out)


def sample_site_params(rng: np.random.Generator, **fixed) -> SiteParams:
    """A flood-prone road sag (where a city puts its depth sensors), any field fixed by
    keyword.

    Runoff coefficient 0.7-0.95, initial loss 1-5 mm, two reservoirs of 3-10 min each
    (the road floods within half an hour of heavy rain), drain capacity 6-20 mm/h over
    the contributing area (old or silted drains), contributing area 10-25 x the
    ponding area. About one storm in five takes a typical site past 20 cm.
    """
    values = dict(runoff_coefficient=rng.uniform(0.7, 0.95),
                  initial_loss_mm=rng.uniform(1.0, 5.0),
                  k_min=rng.uniform(3.0, 10.0),
                  drain_capacity_mm_per_h=rng.uniform(6.0, 20.0),
                  area_ratio=rng.uniform(10.0, 25.0))
    values.update(fixed)
    return SiteParams(**{k: float(v) if k != "n_reservoirs" else int(v)
                         for k, v in values.items()})


def sensor_depth(depth_true_cm, params: SiteParams, rng: np.random.Generator) -> np.ndarray:
    """What a depth sensor reports: noise, never below zero, to its resolution."""
    depth = np.asarray(depth_true_cm, dtype=float)
    if params.noise_cm > 0:
        depth = depth + params.noise_cm * rng.standard_normal(depth.shape)
    depth = np.maximum(depth, 0.0)
    if params.resolution_cm > 0:
        depth = np.round(depth / params.resolution_cm) * params.resolution_cm
    return depth


def synthetic_catchment(seed: int = 0, days: float = 30.0, sites: int = 5,
                        dt_s: float = 60.0, start_s: float = DEFAULT_START_S,
                        storms_per_day: float = 0.5, gauge_tip_mm: float = 0.2,
                        site_params: Sequence[SiteParams] | None = None,
                        spatial_sigma: float = 0.35, max_lag_min: float = 10.0) -> Catchment:
    """Several flood-depth sites with their rain gauges over many days.

    Parameters
    ----------
    seed : int
        Everything is reproducible from it.
    days : float
        Length of the record.
    sites : int
        Number of sites (ignored when ``site_params`` is given).
    dt_s : float
        Reading interval, seconds (60 by default).
    start_s : float
        First reading's interval starts here (seconds since the epoch, UTC).
    storms_per_day : float
        Mean storm rate (see :func:`generate_storms`).
    gauge_tip_mm : float
        Tipping-bucket resolution; 0 reports the true rain.
    site_params : sequence of SiteParams, optional
        The sites' true responses; sampled with :func:`sample_site_params` by default.
    spatial_sigma : float
        Log-sd of a storm's intensity from one site to another; 0: the same everywhere.
    max_lag_min : float
        Storms reach the sites up to this much apart.

    Returns
    -------
    Catchment
    """
    if not dt_s > 0:
        raise CatchmentConfigError(f"dt_s: {dt_s!r} must be positive")
    rng = np.random.default_rng([seed, 3])
    if site_params is None:
        if int(sites) != sites or sites < 1:
            raise CatchmentConfigError(f"sites: {sites!r} must be a positive integer")
        site_params = [sample_site_params(rng) for _ in range(int(sites))]
    site_params = list(site_params)
    n_sites = len(site_params)
    storms = generate_storms(seed, days, start_s, storms_per_day)
    t = start_s + dt_s * np.arange(1, int(round(days * _DAY_S / dt_s)) + 1)
    factors = np.exp(spatial_sigma * rng.standard_normal((n_sites, len(storms)))
                     - spatial_sigma**2 / 2)
    lags = rng.uniform(0.0, max_lag_min, (n_sites, len(storms)))
    rain_true = np.array([storm_rain(t, storms, dt_s, seed=seed * 1000 + i,
                                     intensity_factor=factors[i], lag_min=lags[i])
                          for i in range(n_sites)]).reshape(n_sites, t.size)
    depth_true = site_response(site_params, rain_true, dt_s).depth_cm
    depth = np.array([sensor_depth(depth_true[i], p, np.random.default_rng([seed, 4, i]))
                      for i, p in enumerate(site_params)]).reshape(depth_true.shape)
    return Catchment(t_s=t, dt_s=float(dt_s), site_ids=[f"site-{i:02d}" for i in range(n_sites)],
                     sites=site_params, storms=storms, rain_true_mm=rain_true,
                     rain_mm=tipping_bucket(rain_true, gauge_tip_mm), depth_true_cm=depth_true,
                     depth_cm=depth, seed=seed, storm_factors=factors)


def rain_forecast(rain_true_mm, dt_s: float = 60.0, horizon_min: float = 30.0, seed: int = 0,
                  amount_sd: float = 0.4, timing_sd_min: float = 4.0) -> np.ndarray:
    """A rainfall nowcast issued at every reading: the truth, shifted and scaled.

    Row ``i`` forecasts the rain of the next ``horizon_min / dt_s`` reading intervals
    after ``t_s[i]`` (column ``j`` is the interval ending at ``t_s[i] + (j + 1) dt_s``).
    It is the true rain displaced in time by a timing error (sd ``timing_sd_min``,
    varying slowly from one issue to the next, as a radar extrapolation misjudges a
    cell's speed) times a lognormal amount error whose log-sd grows linearly to
    ``amount_sd`` at the last interval. Beyond the record the truth is taken as dry.

    Parameters
    ----------
    rain_true_mm : array-like
        True rain per reading interval, one site.
    dt_s : float
        Reading interval, seconds.
    horizon_min : float
        How far the forecast reaches.
    seed : int
        Random seed.
    amount_sd, timing_sd_min : float
        Error sizes; both 0 gives the truth itself.

    Returns
    -------
    numpy.ndarray
        Shape ``(readings, horizon_min * 60 / dt_s)``, mm per interval.
    """
    rain = np.asarray(rain_true_mm, dtype=float)
    if rain.ndim != 1:
        raise CatchmentConfigError(f"rain_true_mm: one site's series expected, got shape "
                                   f"{rain.shape}")
    steps = horizon_min * 60.0 / dt_s
    if steps < 1 or abs(steps - round(steps)) > 1e-9:
        raise CatchmentConfigError(f"horizon_min: {horizon_min!r} is not a whole number of "
                                   f"{dt_s:g}-s intervals")
    steps = int(round(steps))
    n = rain.size
    rng = np.random.default_rng([seed, 5])
    rho = math.exp(-dt_s / (15 * 60.0))  # errors of successive issues are alike for ~15 min
    smooth = lambda: lfilter([math.sqrt(1 - rho**2)], [1.0, -rho],  # noqa: E731
                             rng.standard_normal(n), zi=[rho * rng.standard_normal()])[0]
    shift = np.rint(timing_sd_min * 60.0 / dt_s * smooth()).astype(int)
    amount = smooth()
    lead = np.arange(1, steps + 1)
    source = np.arange(n)[:, None] + lead[None, :] + shift[:, None]
    padded = np.concatenate([rain, np.zeros(steps + 1)])
    truth = np.where((source >= 0) & (source < n), padded[np.clip(source, 0, n)], 0.0)
    sd = amount_sd * lead / steps
    return truth * np.exp(sd[None, :] * amount[:, None] - sd[None, :] ** 2 / 2)

