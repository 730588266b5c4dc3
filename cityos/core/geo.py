"""Geo-queries (NGSI-LD ``georel``) and GeoJSON geometry validation.

Geometry is GeoJSON in WGS84 longitude/latitude. Topological relations (within,
contains, intersects, disjoint, equals, overlaps) are evaluated by Shapely on the
lon/lat coordinates, edges being straight lines in lon/lat as GeoJSON draws them.

Distances for ``near`` are metres on the WGS84 ellipsoid:

* point to point: the geodesic distance (``pyproj.Geod.inv``), exact;
* anything else: both geometries are projected to an azimuthal equidistant projection
  centred on the query geometry's centroid and Shapely measures the planar distance.
  Distances from the centre are geodesic there; elsewhere the scale error grows like
  ``rho**2 / (6 R**2)`` with ``rho`` the distance from the centre, i.e. under 0.01 %
  within 200 km of it, far inside the 0.5 % CityOS promises up to 50 km. Edges are
  cut into pieces of at most 0.01 degree before projecting so that they stay the
  straight lon/lat lines the topological predicates use; geometries that intersect in
  lon/lat are 0 m apart. The antimeridian is not handled specially.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Geod, Transformer
from shapely.geometry import (
    LineString,
    MultiLineString,
    MultiPoint,
    MultiPolygon,
    Point,
    Polygon,
    shape,
)
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from cityos.core.errors import BadRequestData

__all__ = ["GEOMETRY_TYPES", "GEORELS", "WGS84", "GeoQuery", "distance_m", "geo_matches",
           "lonlat_bounds", "parse_geo_query", "validate_geometry"]

GEORELS = ("near", "within", "contains", "intersects", "disjoint", "equals", "overlaps")
GEOMETRY_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon",
                  "MultiPolygon")
# How deep the coordinate arrays nest for each type (0: one position).
_NESTING = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2,
            "Polygon": 2, "MultiPolygon": 3}

WGS84 = Geod(ellps="WGS84")
# The shortest degree of latitude on WGS84 (at the equator) is 110,574.3 m and a degree
# of longitude is at least 111,319.49 m * cos(latitude); rounding both down (and the
# margin below) keeps the prefilter box conservative.
_MIN_M_PER_DEG_LAT = 110_574.0
_M_PER_DEG_LON_EQUATOR = 111_319.0
_BOX_MARGIN = 1.001
_MAX_EDGE_DEG = 0.01  # about 1 km: longest edge projected as one straight piece
_DISTANCE = re.compile(r"(maxDistance|minDistance)\s*==\s*(\S+)")


# ------------------------------------------------------------------- validation
def validate_geometry(value: Any, field: str = "geometry", *,
                      simple: bool = True) -> BaseGeometry:
    """Check a GeoJSON geometry and return it as a Shapely geometry.

    Parameters
    ----------
    value : dict
        A GeoJSON geometry object: Point, MultiPoint, LineString, MultiLineString,
        Polygon or MultiPolygon, in WGS84 longitude/latitude.
    field : str
        Name reported in errors (e.g. ``location`` or ``entity 3: location``).
    simple : bool
        Also require OGC validity (no self-intersection). RFC 7946 does not, so an
        entity's GeoProperty and a query geometry are checked with ``simple=False``
        (NGSI-LD takes what GeoJSON allows); predicates then use the repaired form.

    Returns
    -------
    shapely.geometry.base.BaseGeometry
        Two-dimensional; an altitude, if any, is dropped.

    Raises
    ------
    BadRequestData
        Naming ``field`` and the coordinate at fault: not an object, unknown type,
        badly nested or non-numeric coordinates, longitude outside [-180, 180] or
        latitude outside [-90, 90], a ring not closed or with fewer than 4 positions,
        or a geometry Shapely finds invalid (for example a self-intersecting polygon).
    """
    if not isinstance(value, dict):
        raise BadRequestData(f"{field}: a geometry must be a GeoJSON object, "
                             f"got {type(value).__name__}")
    kind = value.get("type")
    if kind not in GEOMETRY_TYPES:
        raise BadRequestData(f"{field}: geometry type {kind!r} is not one of "
                             f"{', '.join(GEOMETRY_TYPES)}")
    if "coordinates" not in value:
        raise BadRequestData(f"{field}: a {kind} needs 'coordinates'")
    return _build(kind, value["coordinates"], field, f"{field}.coordinates", simple)


def _build(kind: str, coords: Any, field: str, where: str,
           simple: bool = True) -> BaseGeometry:
    if kind == "Point":
        return Point(_position(coords, where))
    if kind == "MultiPoint":
        geom = MultiPoint(_positions(coords, where, 1))
    elif kind == "LineString":
        geom = LineString(_positions(coords, where, 2))
    elif kind == "MultiLineString":
        geom = MultiLineString([_positions(line, f"{where}[{i}]", 2)
                                for i, line in enumerate(_array(coords, where, 1))])
    elif kind == "Polygon":
        geom = Polygon(*_polygon(coords, where))
    else:
        geom = MultiPolygon([_polygon(poly, f"{where}[{i}]")
                             for i, poly in enumerate(_array(coords, where, 1))])
    if simple and not geom.is_valid:
        raise BadRequestData(f"{field}: the {kind} is not valid: {explain_validity(geom)}")
    return geom


def _array(value: Any, where: str, min_count: int) -> list:
    if not isinstance(value, (list, tuple)):
        raise BadRequestData(f"{where}: expected an array, got {_shown(value)}")
    if len(value) < min_count:
        raise BadRequestData(f"{where}: expected at least {min_count} element(s), "
                             f"got {len(value)}")
    return list(value)


def _position(value: Any, where: str) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or not 2 <= len(value) <= 3:
        raise BadRequestData(f"{where}: a position must be [longitude, latitude] "
                             f"(optionally with altitude), got {_shown(value)}")
    for number in value:
        if isinstance(number, bool) or not isinstance(number, (int, float)) or \
                not math.isfinite(number):
            raise BadRequestData(f"{where}: {_shown(number)} is not a finite number")
    lon, lat = float(value[0]), float(value[1])
    if not -180.0 <= lon <= 180.0:
        raise BadRequestData(f"{where}: longitude {value[0]} is outside [-180, 180]")
    if not -90.0 <= lat <= 90.0:
        raise BadRequestData(f"{where}: latitude {value[1]} is outside [-90, 90]")
    return lon, lat


def _positions(value: Any, where: str, min_count: int) -> list[tuple[float, float]]:
    return [_position(p, f"{where}[{i}]")
            for i, p in enumerate(_array(value, where, min_count))]


def _polygon(value: Any, where: str) -> tuple[list, list]:
    rings = []
    for i, ring in enumerate(_array(value, where, 1)):
        positions = _positions(ring, f"{where}[{i}]", 0)
        if len(positions) < 4:
            raise BadRequestData(f"{where}[{i}]: a polygon ring needs at least 4 positions, "
                                 f"got {len(positions)}")
        if positions[0] != positions[-1]:
            raise BadRequestData(f"{where}[{i}]: the polygon ring is not closed (the first "
                                 f"position {list(positions[0])} differs from the last "
                                 f"{list(positions[-1])})")
        rings.append(positions)
    return rings[0], rings[1:]


def _shown(value: Any) -> str:
    try:  # show what the client sent, in its own JSON spelling
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS84 UTM zone containing ``(lon, lat)``.

    Parameters
    ----------
    lon, lat : float
        A WGS84 position in degrees.

    Returns
    -------
    int
        326zz north of the equator, 327zz south of it.
    """
    zone = min(60, max(1, int((lon + 180.0) // 6.0) + 1))
    return (32600 if lat >= 0 else 32700) + zone


def lonlat_bounds(geojson: dict) -> tuple[float, float, float, float]:
    """Lon/lat box ``(min_lon, min_lat, max_lon, max_lat)`` of a GeoJSON geometry.

    Used by the store backends to index an entity's location. Walks the coordinates
    without building a Shapely geometry.

    Raises
    ------
    BadRequestData
        When ``geojson`` is not a GeoJSON geometry with at least one position.
    """
    if not isinstance(geojson, dict) or geojson.get("type") not in GEOMETRY_TYPES:
        raise BadRequestData(f"geometry: {_shown(geojson)} is not a GeoJSON geometry")
    xs: list[float] = []
    ys: list[float] = []
    stack = [geojson.get("coordinates")]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)) and len(item) >= 2 and \
                all(isinstance(n, (int, float)) for n in item[:2]):
            xs.append(float(item[0]))
            ys.append(float(item[1]))
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    if not xs:
        raise BadRequestData(f"geometry: the {geojson['type']} has no positions")
    return min(xs), min(ys), max(xs), max(ys)


# --------------------------------------------------------------------- distances
@lru_cache(maxsize=512)
def _aeqd(lon: float, lat: float) -> Transformer:
    """WGS84 lon/lat -> azimuthal equidistant metres centred at (lon, lat)."""
    crs = CRS.from_proj4(f"+proj=aeqd +lat_0={lat} +lon_0={lon} +datum=WGS84 +units=m")
    return Transformer.from_crs("EPSG:4326", crs, always_xy=True)


def _projector_for(geom: BaseGeometry) -> Transformer:
    centre = geom.centroid
    # Rounding to ~1 m lets nearby queries share one cached Transformer.
    return _aeqd(round(centre.x, 5), round(centre.y, 5))


def _project(geom: BaseGeometry, transformer: Transformer) -> BaseGeometry:
    def forward(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack((x, y))

    if not isinstance(geom, (Point, MultiPoint)):
        # Edges are straight in lon/lat (GeoJSON, and the topological predicates here);
        # projected, a long edge would become a chord. Short pieces keep the two within
        # centimetres.
        geom = shapely.segmentize(geom, _MAX_EDGE_DEG)
    return shapely.transform(geom, forward)


def _as_geometry(value: Any, field: str) -> BaseGeometry:
    return value if isinstance(value, BaseGeometry) else validate_geometry(value, field)


def distance_m(geom_a: Any, geom_b: Any) -> float:
    """Minimum distance in metres between two geometries on the WGS84 ellipsoid.

    Parameters
    ----------
    geom_a, geom_b : shapely geometry or GeoJSON dict
        In lon/lat. ``geom_a`` centres the projection used for non-point pairs.

    Returns
    -------
    float
        Geodesic for two points; otherwise measured in an azimuthal equidistant
        projection centred on ``geom_a`` (see the module notes on accuracy).
    """
    a, b = _as_geometry(geom_a, "geom_a"), _as_geometry(geom_b, "geom_b")
    if isinstance(a, Point) and isinstance(b, Point):
        return float(WGS84.inv(a.x, a.y, b.x, b.y)[2])
    if a.intersects(b):
        return 0.0
    transformer = _projector_for(a)
    return float(_project(a, transformer).distance(_project(b, transformer)))


# ----------------------------------------------------------------------- queries
@dataclass
class GeoQuery:
    """A parsed geo-query: ``georel`` applied to ``geometry`` against the entity's
    GeoProperty ``geoproperty``; distances in metres for ``near``."""

    georel: str
    geometry: BaseGeometry
    max_distance_m: float | None = None
    min_distance_m: float | None = None
    geoproperty: str = "location"
    _projected: BaseGeometry | None = field(default=None, init=False, repr=False,
                                            compare=False)
    _transformer: Transformer | None = field(default=None, init=False, repr=False,
                                             compare=False)
    _box: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.geometry, BaseGeometry):
            self.geometry = validate_geometry(self.geometry, "geometry")
        if self.georel not in GEORELS:
            raise BadRequestData(f"georel: {self.georel!r} is not one of {', '.join(GEORELS)}")
        shapely.prepare(self.geometry)  # predicates against it run per candidate
        self._box = self._compute_box()

    def prefilter_bbox(self) -> tuple[float, float, float, float] | None:
        """A lon/lat box ``(min_lon, min_lat, max_lon, max_lat)`` that every matching
        geometry intersects, or None when none can be given (``disjoint``, ``near``
        with only ``minDistance``)."""
        return self._box

    def _compute_box(self) -> tuple[float, float, float, float] | None:
        min_lon, min_lat, max_lon, max_lat = self.geometry.bounds
        if self.georel == "disjoint":
            return None
        if self.georel != "near":
            return min_lon, min_lat, max_lon, max_lat
        if self.max_distance_m is None:
            return None
        # A path of length d cannot leave this latitude band, and along it a degree of
        # longitude is at least 111,319 m * cos(the band's largest |latitude|).
        d_lat = self.max_distance_m / _MIN_M_PER_DEG_LAT * _BOX_MARGIN
        low, high = min_lat - d_lat, max_lat + d_lat
        if low <= -90.0 or high >= 90.0:
            return -180.0, max(low, -90.0), 180.0, min(high, 90.0)
        widest = max(abs(low), abs(high))
        d_lon = self.max_distance_m / (_M_PER_DEG_LON_EQUATOR *
                                       math.cos(math.radians(widest))) * _BOX_MARGIN
        west, east = min_lon - d_lon, max_lon + d_lon
        if west < -180.0 or east > 180.0:  # wraps the antimeridian: all longitudes
            west, east = -180.0, 180.0
        return west, low, east, high

    def distance_to_m(self, geom: BaseGeometry) -> float:
        """Metres from the query geometry to ``geom`` (see :func:`distance_m`)."""
        query = self.geometry
        if isinstance(query, Point) and isinstance(geom, Point):
            return float(WGS84.inv(query.x, query.y, geom.x, geom.y)[2])
        if query.intersects(geom):
            return 0.0
        if self._transformer is None:  # built once per query, on first need
            transformer = _projector_for(query)
            projected = _project(query, transformer)
            shapely.prepare(projected)
            self._projected, self._transformer = projected, transformer
        return float(self._projected.distance(_project(geom, self._transformer)))

    def matches_geometry(self, geom: BaseGeometry) -> bool:
        """True when ``geom`` (an entity's geometry) satisfies the query."""
        query = self.geometry
        rel = self.georel
        if rel == "near":
            if self.max_distance_m is not None and self._box is not None and \
                    not isinstance(geom, Point) and not _boxes_meet(geom.bounds, self._box):
                return False  # cheap rejection before any projection
            distance = self.distance_to_m(geom)
            return (self.max_distance_m is None or distance <= self.max_distance_m) and \
                (self.min_distance_m is None or distance >= self.min_distance_m)
        if rel == "within":
            return query.contains(geom)
        if rel == "contains":
            return geom.contains(query)
        if rel == "intersects":
            return query.intersects(geom)
        if rel == "disjoint":
            return query.disjoint(geom)
        if rel == "equals":
            return query.equals(geom)
        return query.overlaps(geom)


def _boxes_meet(a: tuple, b: tuple) -> bool:
    return a[0] <= b[2] and a[2] >= b[0] and a[1] <= b[3] and a[3] >= b[1]


def parse_geo_query(georel: str, geometry: str, coordinates: str | list,
                    geoproperty: str | None = None) -> GeoQuery:
    """Parse the HTTP geo-query parameters into a :class:`GeoQuery`.

    Parameters
    ----------
    georel : str
        ``near;maxDistance==2000``, ``near;minDistance==100`` (both may be given),
        ``within``, ``contains``, ``intersects``, ``disjoint``, ``equals`` or
        ``overlaps``. Distances are metres.
    geometry : str
        Point, MultiPoint, LineString, MultiLineString, Polygon or MultiPolygon.
    coordinates : str or list
        GeoJSON coordinates, as a JSON string (``[8.54,47.37]``) or already parsed.
    geoproperty : str, optional
        The entity's GeoProperty to test; ``location`` by default.

    A self-intersecting Polygon is valid GeoJSON (RFC 7946): it is accepted and
    evaluated as its repaired (``make_valid``) form.

    Raises
    ------
    BadRequestData
        Naming ``georel``, ``geometry``, ``coordinates`` or ``geoproperty``.
    """
    if not isinstance(georel, str) or not georel.strip():
        raise BadRequestData("georel: a geo-query needs georel, e.g. near;maxDistance==2000 "
                             "or within")
    rel, *modifiers = [part.strip() for part in georel.split(";")]
    if rel not in GEORELS:
        raise BadRequestData(f"georel: {rel!r} is not one of {', '.join(GEORELS)}")
    distances: dict[str, float] = {}
    for modifier in modifiers:
        if rel != "near":
            raise BadRequestData(f"georel: {rel} takes no modifier, got {modifier!r}")
        match = _DISTANCE.fullmatch(modifier)
        if not match:
            raise BadRequestData(f"georel: {modifier!r} is not maxDistance==<metres> or "
                                 f"minDistance==<metres>")
        try:
            metres = float(match[2])
        except ValueError:
            metres = math.nan
        if not math.isfinite(metres) or metres < 0:
            raise BadRequestData(f"georel: {match[1]} must be a number of metres >= 0, "
                                 f"got {match[2]!r}")
        if match[1] in distances:
            raise BadRequestData(f"georel: {match[1]} is given twice")
        distances[match[1]] = metres
    if rel == "near" and not distances:
        raise BadRequestData("georel: near needs maxDistance==<metres> and/or "
                             "minDistance==<metres>, e.g. near;maxDistance==2000")
    max_d, min_d = distances.get("maxDistance"), distances.get("minDistance")
    if max_d is not None and min_d is not None and min_d > max_d:
        raise BadRequestData(f"georel: minDistance {min_d:g} is greater than "
                             f"maxDistance {max_d:g}")
    if geometry not in GEOMETRY_TYPES:
        raise BadRequestData(f"geometry: {geometry!r} is not one of {', '.join(GEOMETRY_TYPES)}")
    if isinstance(coordinates, str):
        try:
            coordinates = json.loads(coordinates)
        except ValueError:
            raise BadRequestData(f"coordinates: {_shown(coordinates)} is not a JSON array "
                                 f"such as [8.54,47.37]") from None
    if not isinstance(coordinates, (list, tuple)):
        raise BadRequestData(f"coordinates: expected a JSON array, got {_shown(coordinates)}")
    shape_ = _build(geometry, coordinates, "coordinates", "coordinates", simple=False)
    if not shape_.is_valid:  # valid GeoJSON, not a simple feature: repaired for predicates
        shape_ = shapely.make_valid(shape_)
    if geoproperty is None:
        geoproperty = "location"
    if not isinstance(geoproperty, str) or not geoproperty.strip():
        raise BadRequestData(f"geoproperty: {geoproperty!r} is not an attribute name")
    return GeoQuery(rel, shape_, max_d, min_d, geoproperty)


def _entity_geometries(entity: dict, name: str) -> list[BaseGeometry]:
    attr = entity.get(name)
    if attr is None:
        return []
    out = []
    for instance in attr if isinstance(attr, list) else (attr,):
        value = instance.get("value") if isinstance(instance, dict) else None
        if not isinstance(value, dict):
            continue
        try:
            if value.get("type") == "Point":  # the common case, without shape()'s cost
                x, y = value["coordinates"][:2]
                out.append(Point(float(x), float(y)))
            else:
                geom = shape(value)
                # stored as GeoJSON allows it (possibly self-intersecting): repaired for
                # the predicates, which need a valid geometry
                out.append(geom if geom.is_valid else shapely.make_valid(geom))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError,
                shapely.errors.ShapelyError):
            continue  # stored data was validated on write; never fail a query on it
    return out


def geo_matches(gq: GeoQuery, entity: dict) -> bool:
    """True when the entity's GeoProperty ``gq.geoproperty`` satisfies the geo-query.

    Parameters
    ----------
    gq : GeoQuery
        From :func:`parse_geo_query`.
    entity : dict
        An entity in canonical normalised form. With several instances of the
        GeoProperty, any one that matches is enough; without it, the entity fails.

    Notes
    -----
    ``within``: the entity's geometry lies within the query geometry; ``contains``:
    the entity's geometry contains it; ``intersects``, ``disjoint``, ``equals`` and
    ``overlaps`` as in DE-9IM; ``near``: geodesic metres, see :func:`distance_m`.
    """
    return any(gq.matches_geometry(geom) for geom in _entity_geometries(entity, gq.geoproperty))
