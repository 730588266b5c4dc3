"""Buildings: ground motion per footprint, differential settlement and damage risk.

The InSAR points inside a footprint (persistent scatterers sit on roofs and walls) give
the building's mean, fastest and slowest vertical velocity. Between every pair of its
points ``i, j`` at least :data:`MIN_PAIR_DISTANCE_M` apart, the differential
settlement is ``|s_i - s_j|`` (``s`` the cumulative vertical displacement at the last
epoch relative to the first) and the angular distortion is

    beta = differential settlement / distance between the points,

the slope the building's foundation took over the observed period. The largest
``beta`` of the building sets its damage category.

Damage categories
-----------------
Burland (1995) grades visible damage from 0 to 5: negligible, very slight, slight,
moderate, severe, very severe (crack widths under 0.1 mm, up to 1, 5, 15, 25 mm and
more). Boscardin & Cording (1989) related these categories to angular distortion and
horizontal strain of buildings next to excavations and tunnels; with no horizontal
strain, the limits of their chart are beta = 1/1000 (negligible to very slight),
1.5/1000 (very slight to slight), 1/300 (slight to moderate) and 1/150 (moderate to
severe). They are the limiting tensile strains of Burland & Wroth (0.05 %, 0.075 %,
0.15 %, 0.3 %) at about twice the strain, and neither source separates severe from
very severe by deformation: beta of 1/150 or more is category 4, "severe to very
severe" (:data:`DAMAGE_CATEGORIES`).

- Boscardin, M. D. and Cording, E. J. (1989). Building response to excavation-induced
  settlement. Journal of Geotechnical Engineering 115(1), 1-21.
- Burland, J. B. (1995). Assessment of risk of damage to buildings due to tunnelling
  and excavation. Proc. 1st Int. Conf. on Earthquake Geotechnical Engineering, Tokyo,
  1189-1201.

InSAR sees only the distortion accumulated while the satellite watched, so the
category is that of the observed period; a building's history before it is not known.

Rate classes and the risk class
-------------------------------
The velocity classes (:data:`RATE_LIMITS_MM_YR`, on the building's mean vertical
velocity: stable under 2 mm/yr, slow under 5, moderate under 10, fast from 10) are
this project's defaults, to be set per customer. The risk class is the higher of the
two gradings: damage category 0/1/2/3-4 and rate class stable/slow/moderate/fast give
``negligible``/``low``/``medium``/``high``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from cityos.apps.subsidence.assets import (
    AssetFormatError,
    cumulative_vertical,
    feature_id,
    read_features,
    to_metric,
    vertical_rates,
)

#: Angular distortion limits of Boscardin & Cording (1989) with no horizontal strain:
#: category k holds beta from ``ANGULAR_DISTORTION_LIMITS[k-1]`` up to the next.
ANGULAR_DISTORTION_LIMITS = (1.0 / 1000.0, 1.5 / 1000.0, 1.0 / 300.0, 1.0 / 150.0)
#: Burland (1995) categories reached by angular distortion (4 covers 4 and 5).
DAMAGE_CATEGORIES = ("negligible", "very slight", "slight", "moderate",
                     "severe to very severe")
#: Project defaults: limits of |mean vertical velocity| between the rate classes.
RATE_LIMITS_MM_YR = (2.0, 5.0, 10.0)
RATE_CLASSES = ("stable", "slow", "moderate", "fast")
RISK_CLASSES = ("negligible", "low", "medium", "high")
MIN_PAIR_DISTANCE_M = 5.0
MAX_POINTS_PER_BUILDING = 2000  # pairs grow as n^2; a larger set is thinned evenly


def damage_category(beta: float) -> int:
    """Damage category (0-4, :data:`DAMAGE_CATEGORIES`) of an angular distortion."""
    if not math.isfinite(beta):
        return 0
    return sum(1 for limit in ANGULAR_DISTORTION_LIMITS if abs(beta) >= limit)


def rate_class(rate_mm_yr: float, limits: tuple[float, float, float] = RATE_LIMITS_MM_YR) -> str:
    """``stable``, ``slow``, ``moderate`` or ``fast`` by |velocity|."""
    if not math.isfinite(rate_mm_yr):
        return RATE_CLASSES[0]
    return RATE_CLASSES[sum(1 for limit in limits if abs(rate_mm_yr) >= limit)]


def risk_class(category: int, rate: str) -> str:
    """The higher of the damage category's and the rate class's grade."""
    by_damage = min(category, 3)
    by_rate = RATE_CLASSES.index(rate)
    return RISK_CLASSES[max(by_damage, by_rate)]


@dataclass
class Footprint:
    """A building: id, name and lon/lat (Multi)Polygon."""

    building_id: str
    name: str
    geometry: BaseGeometry


def footprints_from_features(features: list[dict], source: str = "buildings") -> list[Footprint]:
    """Footprints from GeoJSON features with Polygon or MultiPolygon geometry."""
    found = []
    for number, feature in enumerate(features, start=1):
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            raise AssetFormatError(f"{source}: feature {number}: not a GeoJSON Feature")
        building_id = feature_id(feature, number, source)
        geometry = feature.get("geometry") or {}
        if geometry.get("type") not in ("Polygon", "MultiPolygon"):
            raise AssetFormatError(f"{source}: feature {number} ({building_id}): geometry: "
                                   f"{geometry.get('type')!r} is not a Polygon")
        try:
            polygon = shape(geometry)
        except (ValueError, TypeError, AttributeError, IndexError) as error:
            raise AssetFormatError(f"{source}: feature {number} ({building_id}): geometry: "
                                   f"{error}") from None
        if polygon.is_empty or not polygon.is_valid or polygon.area == 0:
            raise AssetFormatError(f"{source}: feature {number} ({building_id}): geometry: "
                                   "not a valid polygon with an area")
        props = feature.get("properties") or {}
        found.append(Footprint(building_id, str(props.get("name") or building_id), polygon))
    return found


def read_footprints(path) -> list[Footprint]:
    """Read building footprints from a GeoJSON file."""
    return footprints_from_features(read_features(path), str(path))


@dataclass
class BuildingSummary:
    """Ground motion of one building over the observed period."""

    building_id: str
    name: str
    n_points: int
    mean_rate_mm_yr: float
    min_rate_mm_yr: float
    max_rate_mm_yr: float
    cumulative_mm: float
    differential_settlement_mm: float
    angular_distortion: float
    pair_distance_m: float
    damage_category: int
    rate_class: str
    risk_class: str
    last_date: str

    @property
    def damage_name(self) -> str:
        return DAMAGE_CATEGORIES[self.damage_category]

    def to_json(self) -> dict:
        data = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in self.__dict__.items()}
        data["damage_name"] = self.damage_name
        return data


def differential_settlement(x_m, y_m, settlement_mm,
                            min_distance_m: float = MIN_PAIR_DISTANCE_M) -> tuple[float, float, float]:
    """The largest angular distortion over point pairs at least ``min_distance_m`` apart.

    Parameters
    ----------
    x_m, y_m : array_like
        Metric coordinates of the points.
    settlement_mm : array_like
        Cumulative vertical displacement of each point, mm.
    min_distance_m : float

    Returns
    -------
    (beta, differential_mm, distance_m)
        Of the pair with the largest ``beta``; NaN when no pair qualifies.
    """
    x = np.asarray(x_m, dtype=np.float64)
    y = np.asarray(y_m, dtype=np.float64)
    s = np.asarray(settlement_mm, dtype=np.float64)
    good = np.isfinite(s)
    x, y, s = x[good], y[good], s[good]
    nan = float("nan")
    if s.size < 2:
        return nan, nan, nan
    i, j = np.triu_indices(s.size, k=1)
    distance = np.hypot(x[i] - x[j], y[i] - y[j])
    usable = distance >= min_distance_m
    if not usable.any():
        return nan, nan, nan
    diff = np.abs(s[i] - s[j])[usable]
    distance = distance[usable]
    beta = diff / 1000.0 / distance
    best = int(np.argmax(beta))
    return float(beta[best]), float(diff[best]), float(distance[best])


def summarise_building(points, footprint: Footprint, *,
                       allowed_rows: np.ndarray | None = None,
                       min_pair_distance_m: float = MIN_PAIR_DISTANCE_M,
                       rate_limits: tuple[float, float, float] = RATE_LIMITS_MM_YR) -> BuildingSummary:
    """Rate, differential settlement, angular distortion and risk of one building.

    Parameters
    ----------
    points : PointStore
        With fitted velocities.
    footprint : Footprint
    allowed_rows : numpy.ndarray, optional
        Only these rows may be used (a customer's areas of interest).
    min_pair_distance_m : float
        Closer pairs are left out of the angular distortion (noise over a short
        baseline would dominate).
    rate_limits : tuple of float
        Limits between the rate classes, mm/yr.
    """
    rows = np.asarray(points.select_polygon(footprint.geometry), dtype=np.int64)
    if allowed_rows is not None:
        rows = rows[np.isin(rows, allowed_rows)]
    if rows.size > MAX_POINTS_PER_BUILDING:
        rows = rows[np.linspace(0, rows.size - 1, MAX_POINTS_PER_BUILDING).astype(np.int64)]
    last = str(np.asarray(points.dates)[-1])[:10]
    nan = float("nan")
    if rows.size == 0:
        return BuildingSummary(footprint.building_id, footprint.name, 0, nan, nan, nan, nan,
                               nan, nan, nan, 0, RATE_CLASSES[0], RISK_CLASSES[0], last)
    rates = vertical_rates(points, rows)
    settlement = cumulative_vertical(points, rows)
    centre = footprint.geometry.centroid
    x, y = to_metric(centre.x, centre.y).transform(np.asarray(points.lon)[rows],
                                                    np.asarray(points.lat)[rows])
    beta, diff, distance = differential_settlement(x, y, settlement, min_pair_distance_m)
    mean_rate = float(np.nanmean(rates)) if np.isfinite(rates).any() else nan
    category = damage_category(beta)
    klass = rate_class(mean_rate, rate_limits)
    return BuildingSummary(
        footprint.building_id, footprint.name, int(rows.size), mean_rate,
        float(np.nanmin(rates)) if np.isfinite(rates).any() else nan,
        float(np.nanmax(rates)) if np.isfinite(rates).any() else nan,
        float(np.nanmean(settlement)) if np.isfinite(settlement).any() else nan,
        diff, beta, distance, category, klass, risk_class(category, klass), last)


def analyse_buildings(points, footprints: list[Footprint], **options) -> list[BuildingSummary]:
    """:func:`summarise_building` for every footprint, in order."""
    return [summarise_building(points, f, **options) for f in footprints]


def footprint_points(points, footprint: Footprint) -> np.ndarray:
    """Rows of the points inside a footprint (for maps and tests)."""
    return np.asarray(points.select_polygon(footprint.geometry), dtype=np.int64)

