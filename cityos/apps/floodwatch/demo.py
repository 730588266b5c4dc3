"""The demo city's flood watch: sensor sites, rain gauges, pumps and two days of history.

:func:`build_floodwatch_demo` is the builder that ``cityos demo`` runs (see
:mod:`cityos.demo`). It registers, with fixed ids:

- six flood-depth sites (``WaterObserved``, with the ``Device`` of each sensor) at low
  road points of the demo city, each with alert levels 10/20/30 cm and its nearest rain
  gauge (:data:`SITES`);
- three rain gauges (``WeatherObserved``, :data:`GAUGES`);
- three drainage pumps (``Pump``, :data:`PUMPS`) at three of the sites: onLevel 15 cm,
  offLevel 5 cm, 300 s shortest run and rest, two under the ``rule`` controller and
  one ``predictive``;

and writes the readings of the two days before ``at``, one a minute, for nowcast
calibration and event analytics to learn from (:func:`demo_history`).

The history is a function of absolute time, not of ``at``: every local day has an
afternoon thunderstorm (starting 13:30-16:00, Kuala Lumpur time) and an evening
shower (20:00-21:30), drawn from that day's own seed, so any two days hold at least
three complete storms, and two builds with different ``at`` agree on every instant
they share. Rain and depth come from :mod:`cityos.apps.floodwatch.synthetic`: storms
by :func:`~cityos.apps.floodwatch.synthetic.storm_rain`, gauge readings by
:func:`~cityos.apps.floodwatch.synthetic.tipping_bucket`, and each site's depth by
:func:`~cityos.apps.floodwatch.synthetic.site_response` with the site's known
:class:`~cityos.apps.floodwatch.synthetic.SiteParams` (:attr:`SiteSpec.params`). The
pumps were off throughout the history (a clean record to calibrate on); the live
simulator (:mod:`cityos.apps.floodwatch.sim`) drives them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from scipy.signal import lfilter

from cityos.appkit.demo import CITY_CENTRE
from cityos.apps.floodwatch.synthetic import (
    SiteParams,
    Storm,
    site_response,
    storm_rain,
    tipping_bucket,
)
from cityos.core.timefmt import format_datetime

DEMO_SEED = 0
UTC_OFFSET_H = 8.0  # Kuala Lumpur time, for the afternoon storms
HISTORY_DAYS = 2.0
HISTORY_STEP_S = 60.0
GAUGE_TIP_MM = 0.2
ALERT_LEVELS_CM = (10.0, 20.0, 30.0)
BATTERY_EVERY_S = 3600.0   # how often the history carries a battery level
WEATHER_EVERY_S = 600.0    # ... and a gauge's temperature and humidity
#: Quality settings of the demo's depth sensors: they report every 30 s (the history is
#: one a minute) and their battery level as a fraction, checked as a percentage.
SENSOR_PROFILE = {"interval_s": 30.0, "battery_units": "%", "battery_low": 20.0}
_DAY_S = 86_400.0
_DAY_START_S = 6 * 3600.0  # local 06:00: every storm of the night before has drained


@dataclass(frozen=True)
class GaugeSpec:
    """A rain gauge of the demo city: local id, name, offset (degrees) from the centre."""

    local_id: str
    name: str
    d_lon: float
    d_lat: float


@dataclass(frozen=True)
class SiteSpec:
    """A flood-depth sensor site of the demo city.

    Attributes
    ----------
    local_id, name : str
    d_lon, d_lat : float
        Offset from the centre, degrees.
    gauge : str
        Local id of its rain gauge.
    params : SiteParams
        Its true flood response (the synthetic catchment's model).
    battery : float
        The sensor's battery level, fraction 0-1.
    """

    local_id: str
    name: str
    d_lon: float
    d_lat: float
    gauge: str
    params: SiteParams
    battery: float


@dataclass(frozen=True)
class PumpSpec:
    """A drainage pump of the demo city.

    Attributes
    ----------
    local_id, name : str
    site : str
        Local id of the site it drains.
    control_mode : str
        ``rule`` or ``predictive``.
    capacity_cm_per_h : float
        How fast it lowers the water at its site when on, on top of the drain (cm/h).
    """

    local_id: str
    name: str
    site: str
    control_mode: str
    capacity_cm_per_h: float
    on_level_cm: float = 15.0
    off_level_cm: float = 5.0
    min_on_s: float = 300.0
    min_off_s: float = 300.0


GAUGES = (
    GaugeSpec("fw-rain-masjid-jamek", "Rain gauge, Masjid Jamek", 0.0005, 0.0010),
    GaugeSpec("fw-rain-chow-kit", "Rain gauge, Chow Kit", 0.0010, 0.0125),
    GaugeSpec("fw-rain-bukit-bintang", "Rain gauge, Bukit Bintang", 0.0110, 0.0015),
)


def _sag(**values) -> SiteParams:
    return SiteParams(n_reservoirs=2, noise_cm=0.3, resolution_cm=0.1, **values)


# Underpasses collect a large road and embankment area into a small sag (large
# area_ratio) and respond within minutes; open-road sags are slower and shallower.
SITES = (
    SiteSpec("fw-tun-perak", "Jalan Tun Perak underpass", 0.0012, 0.0021,
             "fw-rain-masjid-jamek",
             _sag(runoff_coefficient=0.95, initial_loss_mm=0.5, k_min=0.8,
                  drain_capacity_mm_per_h=12.0, area_ratio=70.0), 0.92),
    SiteSpec("fw-raja-laut", "Jalan Raja Laut low point, Chow Kit", 0.0003, 0.0118,
             "fw-rain-chow-kit",
             _sag(runoff_coefficient=0.85, initial_loss_mm=2.0, k_min=4.0,
                  drain_capacity_mm_per_h=12.0, area_ratio=30.0), 0.88),
    SiteSpec("fw-ampang", "Jalan Ampang sag, Jalan Sultan Ismail junction", 0.0105, 0.0043,
             "fw-rain-bukit-bintang",
             _sag(runoff_coefficient=0.9, initial_loss_mm=1.0, k_min=2.0,
                  drain_capacity_mm_per_h=14.0, area_ratio=40.0), 0.81),
    SiteSpec("fw-sultan-ismail", "Jalan Sultan Ismail underpass, Jalan P. Ramlee", 0.0085,
             0.0002, "fw-rain-bukit-bintang",
             _sag(runoff_coefficient=0.9, initial_loss_mm=1.0, k_min=1.2,
                  drain_capacity_mm_per_h=14.0, area_ratio=45.0), 0.95),
    SiteSpec("fw-kuching", "Jalan Kuching at Jalan Parlimen", -0.0046, 0.0095,
             "fw-rain-chow-kit",
             _sag(runoff_coefficient=0.75, initial_loss_mm=3.0, k_min=6.0,
                  drain_capacity_mm_per_h=12.0, area_ratio=20.0), 0.77),
    SiteSpec("fw-pudu", "Jalan Pudu low point, Puduraya", 0.0045, -0.0055,
             "fw-rain-masjid-jamek",
             _sag(runoff_coefficient=0.85, initial_loss_mm=1.5, k_min=3.0,
                  drain_capacity_mm_per_h=14.0, area_ratio=35.0), 0.16),
)

PUMPS = (
    PumpSpec("fw-pump-tun-perak", "Tun Perak underpass pump station", "fw-tun-perak",
             "predictive", 90.0),
    PumpSpec("fw-pump-sultan-ismail", "Sultan Ismail underpass pump", "fw-sultan-ismail",
             "rule", 60.0),
    PumpSpec("fw-pump-pudu", "Jalan Pudu sump pump", "fw-pudu", "rule", 40.0),
)


# ================================================================= ids, entities
def site_id(local_id: str) -> str:
    """``urn:ngsi-ld:WaterObserved:<local_id>``."""
    return f"urn:ngsi-ld:WaterObserved:{local_id}"


def gauge_id(local_id: str) -> str:
    """``urn:ngsi-ld:WeatherObserved:<local_id>``."""
    return f"urn:ngsi-ld:WeatherObserved:{local_id}"


def pump_id(local_id: str) -> str:
    """``urn:ngsi-ld:Pump:<local_id>``."""
    return f"urn:ngsi-ld:Pump:{local_id}"


def device_id(site_local_id: str) -> str:
    """The ``Device`` of a site's depth sensor: ``urn:ngsi-ld:Device:<site>-sensor``."""
    return f"urn:ngsi-ld:Device:{site_local_id}-sensor"


def _prop(value, **members) -> dict:
    return {"type": "Property", "value": value, **members}


def _rel(target: str) -> dict:
    return {"type": "Relationship", "object": target}


def _location(d_lon: float, d_lat: float) -> dict:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [
        round(CITY_CENTRE[0] + d_lon, 6), round(CITY_CENTRE[1] + d_lat, 6)]}}


def registration_entities() -> list[dict]:
    """The static part of every floodwatch entity of the demo city (normalized NGSI-LD):
    sites, their sensors' ``Device`` entities, gauges and pumps, without readings."""
    pumps_of: dict[str, list[str]] = {}
    for pump in PUMPS:
        pumps_of.setdefault(pump.site, []).append(pump_id(pump.local_id))
    entities = []
    for number, site in enumerate(SITES, start=1):
        entity = {
            "id": site_id(site.local_id), "type": "WaterObserved",
            "name": _prop(site.name),
            "location": _location(site.d_lon, site.d_lat),
            "alertLevels": _prop(list(ALERT_LEVELS_CM), unitCode="CMT"),
            "refWeatherObserved": _rel(gauge_id(site.gauge)),
            "refDevice": _rel(device_id(site.local_id)),
            "sensorProfile": _prop(dict(SENSOR_PROFILE)),
        }
        pumps = pumps_of.get(site.local_id, [])
        if pumps:
            entity["refPump"] = {"type": "Relationship",
                                 "object": pumps[0] if len(pumps) == 1 else pumps}
        entities.append(entity)
        entities.append({
            "id": device_id(site.local_id), "type": "Device",
            "name": _prop(f"Flood-depth sensor, {site.name}"),
            "category": _prop(["sensor"]),
            "controlledProperty": _prop(["depth"]),
            "serialNumber": _prop(f"FW-UDS-{number:04d}"),
            "location": _location(site.d_lon, site.d_lat),
            "refWaterObserved": _rel(site_id(site.local_id)),
        })
    for gauge in GAUGES:
        entities.append({
            "id": gauge_id(gauge.local_id), "type": "WeatherObserved",
            "name": _prop(gauge.name),
            "location": _location(gauge.d_lon, gauge.d_lat),
            "sensorProfile": _prop({"interval_s": SENSOR_PROFILE["interval_s"]}),
        })
    site_at = {s.local_id: s for s in SITES}
    for pump in PUMPS:
        site = site_at[pump.site]
        entities.append({
            "id": pump_id(pump.local_id), "type": "Pump",
            "name": _prop(pump.name),
            "location": _location(site.d_lon + 0.0002, site.d_lat - 0.0001),
            "refWaterObserved": _rel(site_id(pump.site)),
            "onLevel": _prop(pump.on_level_cm, unitCode="CMT"),
            "offLevel": _prop(pump.off_level_cm, unitCode="CMT"),
            "minOnTime": _prop(pump.min_on_s, unitCode="SEC"),
            "minOffTime": _prop(pump.min_off_s, unitCode="SEC"),
            "controlMode": _prop(pump.control_mode),
        })
    return entities


# ======================================================================= history
def local_day(t_s: float) -> int:
    """Index of the local (UTC+8) calendar day of ``t_s``."""
    return int(math.floor((t_s + UTC_OFFSET_H * 3600.0) / _DAY_S))


def _day_origin(day: int) -> float:
    """Local midnight of ``day``, seconds since the epoch."""
    return day * _DAY_S - UTC_OFFSET_H * 3600.0


def history_storms(day: int, seed: int = DEMO_SEED) -> list[Storm]:
    """The storms of one local day: an afternoon thunderstorm and an evening shower.

    Parameters
    ----------
    day : int
        Local day index (:func:`local_day`).
    seed : int

    Returns
    -------
    list of Storm
        Two storms, drawn from ``(seed, day)`` alone.
    """
    rng = np.random.default_rng([seed, 11, day])
    midnight = _day_origin(day)
    afternoon = Storm(midnight + 3600.0 * rng.uniform(13.5, 16.0),
                      float(np.clip(40.0 * math.exp(0.3 * rng.standard_normal()), 25.0, 70.0)),
                      float(np.clip(50.0 * math.exp(0.3 * rng.standard_normal()), 25.0, 90.0)),
                      float(rng.uniform(0.15, 0.35)))
    evening = Storm(midnight + 3600.0 * rng.uniform(20.0, 21.5),
                    float(rng.uniform(20.0, 60.0)), float(rng.uniform(15.0, 50.0)),
                    float(rng.uniform(0.15, 0.35)))
    return [afternoon, evening]


@dataclass
class DemoHistory:
    """The readings of the demo's sites and gauges before ``at``, one row per entity.

    ``depth_cm`` is what the sensors reported (noise, 0.1 cm steps), ``rain_mm`` the
    gauges' tips per reading; ``depth_true_cm`` and ``rain_true_mm`` are the truth.
    Rows follow :data:`SITES` and :data:`GAUGES`.
    """

    t_s: np.ndarray
    depth_cm: np.ndarray
    depth_true_cm: np.ndarray
    rain_mm: np.ndarray
    rain_true_mm: np.ndarray
    temperature_c: np.ndarray
    humidity: np.ndarray
    storms: list[Storm]


def air(t_s, wet_mm_per_h) -> tuple[np.ndarray, np.ndarray]:
    """Air temperature (degC) and relative humidity (0-1) at a gauge.

    A tropical diurnal cycle (25 degC at 02:00, 33 degC at 14:00 local) cooled by up
    to 6 degC when it has been raining, humidity mirroring the temperature.

    Parameters
    ----------
    t_s : array-like
        Times, seconds since the epoch.
    wet_mm_per_h : array-like
        Recent rain: the rain rate smoothed with an hour's exponential memory.
    """
    t = np.asarray(t_s, dtype=float)
    hour = (t / 3600.0 + UTC_OFFSET_H) % 24.0
    diurnal = 29.0 - 4.0 * np.cos(2 * np.pi * (hour - 14.0) / 24.0)
    cooled = 6.0 * (1.0 - np.exp(-np.asarray(wet_mm_per_h, dtype=float) / 10.0))
    temperature = diurnal - cooled
    humidity = np.clip(0.95 - 0.035 * (temperature - 25.0) + 0.02 * cooled, 0.4, 1.0)
    return np.round(temperature, 1), np.round(humidity, 2)


def wet_memory(step_s: float) -> float:
    """Per-reading decay of the recent-rain memory that :func:`air` is given (1 h)."""
    return math.exp(-step_s / 3600.0)


def weather(t_s, rain_mm, step_s: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`air` over a series of readings, starting dry.

    Parameters
    ----------
    t_s : array-like
        Reading times.
    rain_mm : array-like
        Rain per reading (last axis: time).
    step_s : float
        Reading interval.
    """
    decay = wet_memory(step_s)
    rate = np.asarray(rain_mm, dtype=float) * 3600.0 / step_s
    return air(t_s, lfilter([1.0 - decay], [1.0, -decay], rate, axis=-1))


def demo_history(at_s: float, seed: int = DEMO_SEED, days: float = HISTORY_DAYS,
                 step_s: float = HISTORY_STEP_S) -> DemoHistory:
    """The demo's readings over ``days`` before ``at_s`` (included), every ``step_s``.

    Readings fall on whole multiples of ``step_s`` since the epoch. The catchment is
    simulated from local 06:00 (everything drained) on or before the window's start to
    06:00 after ``at_s``, so a value at an instant does not depend on ``at_s``.

    Parameters
    ----------
    at_s : float
        End of the history, seconds since the epoch.
    seed : int
    days : float
        Length of the history.
    step_s : float
        Reading interval, seconds (a divisor of an hour).

    Returns
    -------
    DemoHistory
    """
    if not days > 0:
        raise ValueError(f"days: {days!r} must be positive")
    if not (step_s > 0 and 3600.0 % step_s == 0):
        raise ValueError(f"step_s: {step_s!r} must divide an hour")
    first = math.floor((at_s - days * _DAY_S) / step_s + 1) * step_s  # after the window start
    last = math.floor(at_s / step_s) * step_s
    sim_start = _day_origin(local_day(first - _DAY_START_S)) + _DAY_START_S
    sim_end = _day_origin(local_day(last - _DAY_START_S) + 1) + _DAY_START_S
    t = np.arange(sim_start + step_s, sim_end + step_s / 2, step_s)
    days_in = range(local_day(sim_start) - 1, local_day(sim_end) + 1)
    storms = [s for d in days_in for s in history_storms(d, seed)
              if s.start_s + 60.0 * (s.duration_min + 10.0) > sim_start and s.start_s < sim_end]
    rain_true = np.zeros((len(GAUGES), t.size))
    for g in range(len(GAUGES)):
        for storm in storms:
            # each storm's spread over the gauges is drawn from the storm itself
            key = int(storm.start_s // 60)
            spread = np.random.default_rng([seed, 12, key, g])
            factor = math.exp(0.3 * spread.standard_normal() - 0.045)
            lag = spread.uniform(0.0, 8.0)
            rain_true[g] += storm_rain(t, [storm], step_s, seed=seed * 7919 + key * 3 + g,
                                       intensity_factor=factor, lag_min=lag)
    gauge_row = {gauge.local_id: i for i, gauge in enumerate(GAUGES)}
    site_rain = rain_true[[gauge_row[s.gauge] for s in SITES]]
    depth_true = site_response([s.params for s in SITES], site_rain, step_s).depth_cm
    # sensor noise and gauge tips per simulated day, so they too depend on the instant only
    depth = np.empty_like(depth_true)
    rain = np.empty_like(rain_true)
    per_day = int(round(_DAY_S / step_s))
    for start in range(0, t.size, per_day):
        chunk = slice(start, start + per_day)
        day = local_day(t[start])
        for i, site in enumerate(SITES):
            noise = np.random.default_rng([seed, 4, i, day]).standard_normal(per_day)
            values = depth_true[i, chunk] + site.params.noise_cm * noise[:t[chunk].size]
            depth[i, chunk] = np.round(np.maximum(values, 0.0) / site.params.resolution_cm
                                       ) * site.params.resolution_cm
        rain[:, chunk] = tipping_bucket(rain_true[:, chunk], GAUGE_TIP_MM)
    temperature, humidity = weather(t, rain_true, step_s)
    keep = (t >= first) & (t <= last)
    return DemoHistory(t[keep], np.round(depth[:, keep], 1), depth_true[:, keep],
                       np.round(rain[:, keep], 1), rain_true[:, keep], temperature[:, keep],
                       humidity[:, keep], storms)


def _stamp(t_s: float) -> str:
    return format_datetime(datetime.fromtimestamp(t_s, tz=UTC))


def history_fragments(history: DemoHistory) -> list[dict]:
    """The history as update fragments (normalized, each with its ``observedAt``),
    oldest first: ``depth`` per site (with ``batteryLevel`` every hour) and
    ``precipitation`` per gauge (with ``temperature`` and ``relativeHumidity`` every
    10 minutes)."""
    fragments = []
    stamps = [_stamp(t) for t in history.t_s.tolist()]
    battery_due = (np.mod(history.t_s, BATTERY_EVERY_S) == 0).tolist()
    weather_due = (np.mod(history.t_s, WEATHER_EVERY_S) == 0).tolist()
    depths = history.depth_cm.tolist()
    rains = history.rain_mm.tolist()
    temperatures = history.temperature_c.tolist()
    humidities = history.humidity.tolist()
    for k, stamp in enumerate(stamps):
        for i, site in enumerate(SITES):
            fragment = {"id": site_id(site.local_id),
                        "depth": _prop(depths[i][k], unitCode="CMT", observedAt=stamp)}
            if battery_due[k]:
                fragment["batteryLevel"] = _prop(site.battery, observedAt=stamp)
            fragments.append(fragment)
        for g, gauge in enumerate(GAUGES):
            fragment = {"id": gauge_id(gauge.local_id),
                        "precipitation": _prop(rains[g][k], unitCode="MMT", observedAt=stamp)}
            if weather_due[k]:
                fragment["temperature"] = _prop(temperatures[g][k], unitCode="CEL",
                                                observedAt=stamp)
                fragment["relativeHumidity"] = _prop(humidities[g][k], observedAt=stamp)
            fragments.append(fragment)
    return fragments


def latest_fragments(history: DemoHistory) -> list[dict]:
    """The state at the end of the history: the newest reading of each site and gauge,
    each sensor ``Device``'s battery and every pump ``off``."""
    stamp = _stamp(float(history.t_s[-1]))
    fragments = []
    for i, site in enumerate(SITES):
        fragments.append({"id": site_id(site.local_id),
                          "depth": _prop(float(history.depth_cm[i, -1]), unitCode="CMT",
                                         observedAt=stamp),
                          "batteryLevel": _prop(site.battery, observedAt=stamp)})
        fragments.append({"id": device_id(site.local_id),
                          "batteryLevel": _prop(site.battery, observedAt=stamp)})
    for g, gauge in enumerate(GAUGES):
        fragments.append({"id": gauge_id(gauge.local_id),
                          "precipitation": _prop(float(history.rain_mm[g, -1]), unitCode="MMT",
                                                 observedAt=stamp),
                          "temperature": _prop(float(history.temperature_c[g, -1]),
                                               unitCode="CEL", observedAt=stamp),
                          "relativeHumidity": _prop(float(history.humidity[g, -1]),
                                                    observedAt=stamp)})
    for pump in PUMPS:
        fragments.append({"id": pump_id(pump.local_id), "status": _prop("off", observedAt=stamp)})
    return fragments


# ======================================================================= builder
def build_floodwatch_demo(store, tenant: str, at: datetime) -> list[str]:
    """Register the demo city's flood watch and write its history; return the entity ids.

    Idempotent: ids are fixed; registration attributes are merged only where they
    differ from what is stored (so what the floodwatch service wrote on the entities
    stays); history rows are written only for instants not yet stored, and a reading
    newer than ``at`` (the live simulator's) stays the current one. A second build
    with the same ``at`` writes nothing.

    Parameters
    ----------
    store : ContextStore
    tenant : str
    at : datetime
        End of the history (timezone-aware).

    Returns
    -------
    list of str
        Ids of the sites, sensor devices, gauges and pumps.
    """
    from cityos.core.entities import normalise_entity

    if at.tzinfo is None:
        raise ValueError(f"at: {at!r} must be timezone-aware")
    wanted = [normalise_entity(e) for e in registration_entities()]
    ids = [e["id"] for e in wanted]
    stored = {r.id: r.entity for r in store.scan(tenant, ids=ids)}
    changed = [e for e in wanted if any(stored.get(e["id"], {}).get(name) != value
                                        for name, value in e.items())]
    if changed:
        _raise_on_errors(store.upsert_entities(tenant, changed, replace=False))

    history = demo_history(at.timestamp())
    start_us = int(round(history.t_s[0] * 1e6))
    end_us = int(round(history.t_s[-1] * 1e6)) + 1
    fragments = history_fragments(history) + latest_fragments(history)
    have: dict[str, set[tuple[str, int]]] = {}
    for entity_id in ids:
        rows = store.history(tenant, entity_id, None, start_us, end_us, None)
        have[entity_id] = {(row.attribute, row.observed_us) for row in rows}
    missing = []
    for fragment in fragments:
        attrs = {name: value for name, value in fragment.items() if name != "id"
                 and (name, _micros(value["observedAt"])) not in have[fragment["id"]]}
        if attrs:
            missing.append({"id": fragment["id"], **attrs})
    if not missing:
        return ids
    # the history passes through the entities' current state: keep a newer reading
    # (the live simulator's) on top afterwards
    current = {r.id: r.entity for r in store.scan(tenant, ids=ids)}
    _raise_on_errors(store.update_entities(tenant, missing))
    newer = []
    for entity_id, entity in current.items():
        keep = {name: value for name, value in entity.items() if isinstance(value, dict)
                and "observedAt" in value and _micros(value["observedAt"]) >= end_us}
        if keep:
            newer.append({"id": entity_id, **keep})
    if newer:
        _raise_on_errors(store.update_entities(tenant, newer))
    return ids


def _micros(stamp: str) -> int:
    from cityos.core.store.base import instant_micros

    return instant_micros(stamp)


def _raise_on_errors(result) -> None:
    if result.errors:
        from cityos.core.store.base import _error_from_problem

        raise _error_from_problem(result.errors[0]["error"])
