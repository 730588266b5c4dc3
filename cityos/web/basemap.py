"""The demo city's own base map: boundary, water, parks, roads and buildings as GeoJSON.

The dashboard draws this when no tile server is configured (``Settings.tile_url``), so
the map has a city under it with no internet at all. The data is synthetic and
deterministic (a fixed seed, coordinates rounded to 1e-6 degrees): the same city on
every machine, laid around :data:`cityos.demo.CITY_CENTRE`, with the river passing
under the demo's River Bridge sensors.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from shapely.geometry import LineString, Point, Polygon, box, mapping
from shapely.ops import unary_union

from cityos.demo import CITY_CENTRE

#: Half extents of the city in degrees (lon, lat): about 6.6 km by 5.5 km.
HALF_WIDTH_DEG, HALF_HEIGHT_DEG = 0.030, 0.025
MAJOR_SPACING_DEG = 0.006
MINOR_SPACING_DEG = 0.002
DOWNTOWN_RADIUS_DEG = 0.02
RIVER_HALF_WIDTH_DEG = 0.0006
SEED = 20260105


def _round(geometry) -> dict:
    """GeoJSON of a shapely geometry, coordinates rounded to 1e-6 degrees."""
    def walk(value):
        if isinstance(value, (list, tuple)):
            if value and isinstance(value[0], (int, float)):
                return [round(float(v), 6) for v in value]
            return [walk(v) for v in value]
        return value

    data = mapping(geometry)
    return {"type": data["type"], "coordinates": walk(data["coordinates"])}


def _feature(kind: str, geometry, **properties) -> dict:
    return {"type": "Feature", "geometry": _round(geometry),
            "properties": {"kind": kind, **properties}}


def city_boundary() -> Polygon:
    """The city limits: an irregular 16-gon around the centre."""
    lon0, lat0 = CITY_CENTRE
    angles = np.linspace(0.0, 2 * math.pi, 16, endpoint=False)
    wobble = 0.9 + 0.1 * np.sin(3 * angles + 0.7)
    return Polygon([(lon0 + HALF_WIDTH_DEG * w * math.cos(a),
                     lat0 + HALF_HEIGHT_DEG * w * math.sin(a))
                    for a, w in zip(angles, wobble, strict=True)])


def river_line() -> LineString:
    """The river's centre line, west to east, passing south of River Bridge."""
    lon0, lat0 = CITY_CENTRE
    xs = np.linspace(-HALF_WIDTH_DEG * 1.2, HALF_WIDTH_DEG * 1.2, 121)
    ys = -0.0025 + 0.004 * np.sin((xs - 0.012) * 180.0) + 0.15 * (xs - 0.012)
    return LineString([(lon0 + x, lat0 + y) for x, y in zip(xs, ys, strict=True)])


def road_lines(boundary: Polygon) -> list[tuple[LineString, str, str]]:
    """``(line, class, name)`` of the roads: avenues, streets and the ring road."""
    lon0, lat0 = CITY_CENTRE
    roads: list[tuple[LineString, str, str]] = []
    west, south, east, north = boundary.bounds
    for index, offset in enumerate(np.arange(-0.030, 0.0301, MINOR_SPACING_DEG)):
        major = abs(round(offset / MAJOR_SPACING_DEG) * MAJOR_SPACING_DEG - offset) < 1e-9
        klass = "major" if major else "minor"
        for line, name in ((LineString([(lon0 + offset, south), (lon0 + offset, north)]),
                            f"Jalan {index + 1}"),
                           (LineString([(west, lat0 + offset), (east, lat0 + offset)]),
                            f"Lorong {index + 1}")):
            if not major and abs(offset) > DOWNTOWN_RADIUS_DEG:
                continue  # streets only downtown; avenues cross the whole city
            clipped = line.intersection(boundary)
            if not clipped.is_empty:
                roads.append((clipped, klass, name if major else ""))
    ring = Point(lon0, lat0).buffer(0.021, 32).exterior
    roads.append((LineString(ring.coords), "major", "Ring Road"))
    return roads


def building_footprints(boundary: Polygon, blocked) -> list[Polygon]:
    """Downtown building footprints, 1-4 per street block, clear of water and parks."""
    lon0, lat0 = CITY_CENTRE
    rng = np.random.default_rng(SEED)
    footprints = []
    steps = np.arange(-DOWNTOWN_RADIUS_DEG, DOWNTOWN_RADIUS_DEG, MINOR_SPACING_DEG)
    margin = 0.00025  # the street's half width plus a pavement
    for x0 in steps:
        for y0 in steps:
            if math.hypot(x0 + MINOR_SPACING_DEG / 2, y0 + MINOR_SPACING_DEG / 2) \
                    > DOWNTOWN_RADIUS_DEG:
                continue
            count = int(rng.integers(1, 5))
            size = (MINOR_SPACING_DEG - 2 * margin) / 2
            for slot in rng.permutation(4)[:count]:
                sx, sy = slot % 2, slot // 2
                w = size * rng.uniform(0.55, 0.9)
                h = size * rng.uniform(0.55, 0.9)
                left = lon0 + x0 + margin + sx * size + (size - w) / 2
                bottom = lat0 + y0 + margin + sy * size + (size - h) / 2
                footprint = box(left, bottom, left + w, bottom + h)
                if boundary.contains(footprint) and not footprint.intersects(blocked):
                    footprints.append(footprint)
    return footprints


@lru_cache(maxsize=1)
def demo_basemap() -> dict:
    """The demo city's base map as a GeoJSON FeatureCollection.

    Features carry ``kind`` (``boundary``, ``water``, ``park``, ``road``,
    ``building``), roads also ``class`` (``major``/``minor``) and ``name``. The result
    is cached: it never changes.
    """
    lon0, lat0 = CITY_CENTRE
    boundary = city_boundary()
    river = river_line().buffer(RIVER_HALF_WIDTH_DEG, cap_style="flat").intersection(boundary)
    lake = Point(lon0 - 0.017, lat0 + 0.011).buffer(0.0035, 24)
    parks = [box(lon0 - 0.0118, lat0 + 0.0062, lon0 - 0.0062, lat0 + 0.0098),
             Point(lon0 + 0.016, lat0 + 0.012).buffer(0.0022, 16)]
    blocked = unary_union([river.buffer(0.0002), lake, *parks])
    features = [_feature("boundary", LineString(boundary.exterior.coords), name="Demo City")]
    features.append(_feature("water", river, name="Sungai Demo"))
    features.append(_feature("water", lake, name="Tasik Demo"))
    features += [_feature("park", park, name=f"Taman {i + 1}") for i, park in enumerate(parks)]
    for line, klass, name in road_lines(boundary):
        features.append(_feature("road", line, **{"class": klass, "name": name}))
    features += [_feature("building", fp) for fp in building_footprints(boundary, blocked)]
    return {"type": "FeatureCollection", "features": features}


def demo_bus_routes() -> list[list[tuple[float, float]]]:
    """Closed loops (lon, lat) the demo's sample vehicles drive round: the ring road
    and a downtown loop of avenues."""
    lon0, lat0 = CITY_CENTRE
    ring = Point(lon0, lat0).buffer(0.021, 32).exterior
    s = MAJOR_SPACING_DEG
    downtown = [(lon0 - s, lat0 - s), (lon0 + 2 * s, lat0 - s), (lon0 + 2 * s, lat0 + s),
                (lon0 - s, lat0 + s), (lon0 - s, lat0 - s)]
    return [list(ring.coords), downtown]
