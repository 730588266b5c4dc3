"""The flood watch's view of the city: sites, rain gauges and pumps, read from entities.

A **site** is a road point that floods, watched by a flood-depth sensor: a
``WaterObserved`` entity whose ``depth`` (cm) the device reports, with its alarm
levels, its rain gauge (``refWeatherObserved``, a ``WeatherObserved`` entity whose
``precipitation`` is the rain since the previous reading, mm) and the pumps that drain
it. A **pump** is a Smart Data Models ``Pump`` entity with the site whose level
switches it and its control settings. The floodwatch service writes quality flags,
alert levels and nowcasts back onto the site's entity (see
:mod:`cityos.apps.floodwatch.service`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

SITE_TYPE = "WaterObserved"
GAUGE_TYPE = "WeatherObserved"
PUMP_TYPE = "Pump"
DEVICE_TYPE = "Device"
DEFAULT_LEVELS_CM = (10.0, 20.0, 30.0)
CONTROL_MODES = ("rule", "predictive", "manual")


class SiteConfigError(ValueError):
    """An entity that cannot be read as a site, gauge or pump (names entity and field)."""


def value_of(entity: Mapping, name: str, default=None):
    """An attribute's value, normalized or keyValues; ``default`` when absent."""
    attribute = entity.get(name)
    if attribute is None:
        return default
    if isinstance(attribute, list):  # several datasetIds: the default instance
        attribute = next((a for a in attribute if "datasetId" not in a), attribute[0])
    if isinstance(attribute, Mapping):
        kind = attribute.get("type")
        if kind in ("Property", "GeoProperty"):
            return attribute.get("value", default)
        if kind == "Relationship":
            return attribute.get("object", default)
    return attribute


def _objects(entity: Mapping, name: str) -> tuple[str, ...]:
    """Targets of a Relationship that may hold one id or a list of them."""
    raw = entity.get(name)
    if raw is None:
        return ()
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for item in items:
        target = value_of({"r": item}, "r")
        out.extend(target if isinstance(target, list) else [target])
    return tuple(str(t) for t in out if t)


def _number(entity: Mapping, name: str, default: float, *, positive: bool = False) -> float:
    value = value_of(entity, name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SiteConfigError(f"{entity.get('id')}: {name}: {value!r} is not a number")
    if positive and value <= 0:
        raise SiteConfigError(f"{entity.get('id')}: {name}: {value!r} must be positive")
    return float(value)


def _point(entity: Mapping) -> tuple[float, float] | None:
    location = value_of(entity, "location")
    if isinstance(location, Mapping) and location.get("type") == "Point":
        lon, lat = location["coordinates"][:2]
        return float(lon), float(lat)
    return None


@dataclass(frozen=True)
class Site:
    """A flood-depth sensor site.

    Attributes
    ----------
    site_id : str
        The ``WaterObserved`` entity id.
    name : str
    lon, lat : float or None
        Where it is (WGS84).
    levels_cm : tuple of float
        Ascending alert levels, cm.
    gauge_id : str or None
        Its rain gauge (``WeatherObserved`` id).
    pump_ids : tuple of str
        Pumps that drain it.
    profile : dict
        Overrides of the quality-check defaults (``sensorProfile``).
    """

    site_id: str
    name: str
    lon: float | None
    lat: float | None
    levels_cm: tuple[float, ...] = DEFAULT_LEVELS_CM
    gauge_id: str | None = None
    pump_ids: tuple[str, ...] = ()
    profile: dict = field(default_factory=dict)

    @classmethod
    def from_entity(cls, entity: Mapping) -> Site:
        """Read a ``WaterObserved`` entity (normalized or keyValues)."""
        entity_id = entity.get("id", "?")
        levels = value_of(entity, "alertLevels", list(DEFAULT_LEVELS_CM))
        if not isinstance(levels, list) or not levels or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in levels):
            raise SiteConfigError(f"{entity_id}: alertLevels: {levels!r} is not a list of "
                                  "depths in cm")
        if sorted(levels) != list(levels) or len(set(levels)) != len(levels):
            raise SiteConfigError(f"{entity_id}: alertLevels: {levels!r} must strictly ascend")
        profile = value_of(entity, "sensorProfile", {}) or {}
        if not isinstance(profile, Mapping):
            raise SiteConfigError(f"{entity_id}: sensorProfile: must be an object")
        point = _point(entity)
        gauges = _objects(entity, "refWeatherObserved")
        return cls(entity_id, str(value_of(entity, "name", entity_id)),
                   point[0] if point else None, point[1] if point else None,
                   tuple(float(v) for v in levels), gauges[0] if gauges else None,
                   _objects(entity, "refPump"), dict(profile))


@dataclass(frozen=True)
class PumpConfig:
    """A drainage pump and how it is controlled.

    Attributes
    ----------
    pump_id : str
        The ``Pump`` entity id.
    name : str
    site_id : str or None
        The site whose depth switches it (``refWaterObserved``).
    on_level_cm, off_level_cm : float
        Start at or above, stop at or below (cm at the site).
    min_on_s, min_off_s : float
        Shortest run and rest (no short-cycling).
    mode : str
        ``rule``, ``predictive`` (starts early on the nowcast) or ``manual``.
    """

    pump_id: str
    name: str
    site_id: str | None
    on_level_cm: float = 15.0
    off_level_cm: float = 5.0
    min_on_s: float = 300.0
    min_off_s: float = 300.0
    mode: str = "rule"

    @classmethod
    def from_entity(cls, entity: Mapping) -> PumpConfig:
        """Read a ``Pump`` entity (normalized or keyValues)."""
        entity_id = entity.get("id", "?")
        sites = _objects(entity, "refWaterObserved")
        mode = value_of(entity, "controlMode", "rule")
        if mode not in CONTROL_MODES:
            raise SiteConfigError(f"{entity_id}: controlMode: {mode!r} is not one of "
                                  f"{', '.join(CONTROL_MODES)}")
        on = _number(entity, "onLevel", 15.0)
        off = _number(entity, "offLevel", 5.0)
        if off >= on:
            raise SiteConfigError(f"{entity_id}: offLevel: {off} must be below onLevel {on}")
        return cls(entity_id, str(value_of(entity, "name", entity_id)),
                   sites[0] if sites else None, on, off,
                   _number(entity, "minOnTime", 300.0), _number(entity, "minOffTime", 300.0),
                   mode)
