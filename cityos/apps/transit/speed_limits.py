"""Speed limits where the bus is: per road segment, else per road class, else the city's.

Speeding is judged against the limit of the road a bus is on. The city's road network
is in the store as Smart Data Models ``RoadSegment`` entities: a ``LineString``
``location`` and ``maximumAllowedSpeed`` (km/h), or only a road class (``roadClass``
or ``category``, OpenStreetMap ``highway`` names) whose limit comes from a per-class
table. :class:`RoadSpeedLimits` finds the nearest segment within a snapping distance
of a ping (GPS on a bus is good to a few metres; lanes of a dual carriageway are
10-20 m apart) and gives its limit; away from every segment the city's default
applies.

Segments are projected once to a local equirectangular plane (metres; over a city the
scale error is well under 0.1%, nothing at a 25 m snapping distance) and indexed in a
Shapely STRtree, so a lookup is a tree query and a few distances. ``floor_kmh``, the
lowest limit anywhere, lets speeding detection skip the lookup for slower pings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import shapely
from shapely import LineString, Point, STRtree

from cityos.apps.transit.models import Ping

#: Default limits per road class (OpenStreetMap ``highway`` values and the base map's
#: ``major``/``minor``), km/h: typical urban limits in South-East Asian cities.
ROAD_CLASS_LIMITS_KMH: dict[str, float] = {
    "motorway": 90.0, "trunk": 80.0, "primary": 60.0, "secondary": 50.0,
    "tertiary": 40.0, "residential": 30.0, "living_street": 20.0, "service": 20.0,
    "major": 50.0, "minor": 40.0, "school_zone": 30.0,
}
#: How far from a segment a ping may be and still be on it, m.
SNAP_DISTANCE_M = 25.0
#: Segments this much farther than the nearest count as equally near, m.
TIE_M = 2.0
EARTH_RADIUS_M = 6_371_008.8  # mean radius


class RoadLimitError(ValueError):
    """A road segment that cannot give a speed limit (names the entity and field)."""


@dataclass(frozen=True)
class RoadSegmentLimit:
    """One road segment's geometry and limit.

    Parameters
    ----------
    segment_id : str
        The ``RoadSegment`` entity id.
    coordinates : sequence of (lon, lat)
        The centre line, WGS84.
    limit_kmh : float
        The speed limit, km/h.
    road_class : str, optional
        The class it was derived from, when it had no ``maximumAllowedSpeed``.
    """

    segment_id: str
    coordinates: tuple[tuple[float, float], ...]
    limit_kmh: float
    road_class: str | None = None


def _value(entity: Mapping, name: str):
    """An attribute's value, normalized (``{"type": "Property", "value": ...}``) or not."""
    value = entity.get(name)
    if isinstance(value, Mapping) and value.get("type") in ("Property", "GeoProperty"):
        return value.get("value")
    return value


def segment_from_entity(entity: Mapping,
                        class_limits_kmh: Mapping[str, float] = ROAD_CLASS_LIMITS_KMH,
                        ) -> RoadSegmentLimit | None:
    """The :class:`RoadSegmentLimit` of a ``RoadSegment`` entity (normalized or
    keyValues); ``None`` when it has neither a limit nor a known road class.

    Raises
    ------
    RoadLimitError
        The geometry is not a LineString/MultiLineString, or the limit is not a
        positive number.
    """
    entity_id = entity.get("id", "?")
    location = _value(entity, "location")
    if not isinstance(location, Mapping) or location.get("type") not in (
            "LineString", "MultiLineString"):
        raise RoadLimitError(f"{entity_id}: location: a road segment needs a LineString")
    coordinates = location["coordinates"]
    if location["type"] == "MultiLineString":  # the longest part stands for the segment
        coordinates = max(coordinates, key=len)
    if len(coordinates) < 2:
        raise RoadLimitError(f"{entity_id}: location: a LineString needs two positions")
    limit = _value(entity, "maximumAllowedSpeed")
    road_class = _value(entity, "roadClass") or _value(entity, "category")
    if isinstance(road_class, list):  # SDM's category is an array
        road_class = next((c for c in road_class if c in class_limits_kmh), None)
    if limit is None:
        if road_class not in class_limits_kmh:
            return None
        return RoadSegmentLimit(entity_id, tuple(map(tuple, coordinates)),
                                float(class_limits_kmh[road_class]), road_class)
    if isinstance(limit, bool) or not isinstance(limit, int | float) or not (
            math.isfinite(limit) and limit > 0):
        raise RoadLimitError(f"{entity_id}: maximumAllowedSpeed: {limit!r} is not a positive "
                             "number of km/h")
    return RoadSegmentLimit(entity_id, tuple(map(tuple, coordinates)), float(limit))


class RoadSpeedLimits:
    """The speed limit at a position: nearest road segment, else the default.

    Parameters
    ----------
    segments : iterable of RoadSegmentLimit
        The road network's limits.
    default_kmh : float or None
        The limit away from every segment (``None``: speeding not judged there).
    snap_distance_m : float
        How far a ping may be from a segment's centre line.

    Notes
    -----
    Where two segments are both within reach (a junction), the nearer wins; a bus
    crossing a slow side street keeps the limit of the road it drives on as long as
    that road is nearer.
    """

    def __init__(self, segments: Iterable[RoadSegmentLimit], default_kmh: float | None = 50.0,
                 snap_distance_m: float = SNAP_DISTANCE_M) -> None:
        self.segments = list(segments)
        self.default_kmh = default_kmh
        self.snap_distance_m = snap_distance_m
        self._tree = None
        if not self.segments:
            return
        lon0 = float(np.mean([c[0] for s in self.segments for c in s.coordinates]))
        lat0 = float(np.mean([c[1] for s in self.segments for c in s.coordinates]))
        self._origin = (lon0, lat0)
        self._scale = (EARTH_RADIUS_M * math.radians(1.0) * math.cos(math.radians(lat0)),
                       EARTH_RADIUS_M * math.radians(1.0))
        lines = [np.column_stack(self._to_metres(*np.asarray(s.coordinates, dtype=float).T))
                 for s in self.segments]
        self._lines = np.array([LineString(line) for line in lines], dtype=object)
        self._tree = STRtree(self._lines)
        self._limits = np.array([s.limit_kmh for s in self.segments])

    def _to_metres(self, lon, lat):
        return ((lon - self._origin[0]) * self._scale[0], (lat - self._origin[1]) * self._scale[1])

    @property
    def floor_kmh(self) -> float | None:
        """The lowest limit anywhere (``None`` when some places are not judged)."""
        if self.default_kmh is None:
            return None
        return float(min([self.default_kmh, *(s.limit_kmh for s in self.segments)]))

    @classmethod
    def from_entities(cls, entities: Iterable[Mapping], default_kmh: float | None = 50.0,
                      class_limits_kmh: Mapping[str, float] = ROAD_CLASS_LIMITS_KMH,
                      snap_distance_m: float = SNAP_DISTANCE_M) -> RoadSpeedLimits:
        """Build from ``RoadSegment`` entities (see :func:`segment_from_entity`)."""
        segments = [s for s in (segment_from_entity(e, class_limits_kmh) for e in entities)
                    if s is not None]
        return cls(segments, default_kmh, snap_distance_m)

    def segment_at(self, lat: float, lon: float) -> RoadSegmentLimit | None:
        """The nearest segment within the snapping distance, or ``None``.

        Segments as near as the nearest, to within ``TIE_M`` (a zone drawn over the
        road it belongs to), give the lowest limit: the more specific sign wins.
        """
        if self._tree is None:
            return None
        x, y = self._to_metres(lon, lat)
        point = Point(x, y)
        close = self._tree.query(point, predicate="dwithin", distance=self.snap_distance_m)
        if not len(close):
            return None
        distances = shapely.distance(self._lines[close], point)
        tied = close[distances <= distances.min() + TIE_M]
        return self.segments[int(min(tied, key=lambda i: (self._limits[i], i)))]

    def limit_at(self, lat: float, lon: float) -> float | None:
        """The speed limit at a position, km/h (``None``: not judged there)."""
        segment = self.segment_at(lat, lon)
        return segment.limit_kmh if segment is not None else self.default_kmh

    def __call__(self, ping: Ping) -> float | None:
        """The limit at a ping: the lookup :func:`~cityos.apps.transit.driving.monitor_driving` takes."""
        return self.limit_at(ping.lat, ping.lon)

    def __len__(self) -> int:
        return len(self.segments)
