"""Geo-queries and geometry validation: known distances, precise errors, and property
tests against pyproj.Geod and a brute-force Shapely evaluation on random geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pyproj import Geod
from shapely.geometry import LineString, MultiPoint, Point, Polygon, box, shape

from cityos.core.errors import BadRequestData
from cityos.core.geo import (
    GeoQuery,
    distance_m,
    geo_matches,
    lonlat_bounds,
    parse_geo_query,
    validate_geometry,
)

GEOD = Geod(ellps="WGS84")
SQUARE = [[[8.50, 47.30], [8.60, 47.30], [8.60, 47.40], [8.50, 47.40], [8.50, 47.30]]]


def located(geojson: dict, name: str = "location") -> dict:
    return {"id": "urn:ngsi-ld:Sensor:1", "type": "Sensor",
            name: {"type": "GeoProperty", "value": geojson}}


def point(lon: float, lat: float) -> dict:
    return {"type": "Point", "coordinates": [lon, lat]}


# ------------------------------------------------------------------- validation
@pytest.mark.parametrize("value, fragment", [
    (42, "location: a geometry must be a GeoJSON object, got int"),
    ({"type": "Circle", "coordinates": [0, 0]}, "location: geometry type 'Circle' is not one of"),
    ({"type": "Point"}, "location: a Point needs 'coordinates'"),
    (point(181, 0), "location.coordinates: longitude 181 is outside [-180, 180]"),
    (point(0, -90.5), "location.coordinates: latitude -90.5 is outside [-90, 90]"),
    (point("8.5", 47), 'location.coordinates: "8.5" is not a finite number'),
    (point(True, 47), "location.coordinates: true is not a finite number"),
    ({"type": "Point", "coordinates": [8.5]}, "a position must be [longitude, latitude]"),
    ({"type": "Point", "coordinates": [[8.5, 47]]}, "a position must be [longitude, latitude]"),
    ({"type": "LineString", "coordinates": [[0, 0]]},
     "location.coordinates: expected at least 2 element(s), got 1"),
    ({"type": "LineString", "coordinates": [[0, 0], [0, 200]]},
     "location.coordinates[1]: latitude 200 is outside [-90, 90]"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]},
     "location.coordinates[0]: a polygon ring needs at least 4 positions, got 3"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]},
     "location.coordinates[0]: the polygon ring is not closed"),
    ({"type": "Polygon", "coordinates": [[0, 0], [1, 0], [1, 1], [0, 0]]},
     "location.coordinates[0][0]: a position must be"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
     "location: the Polygon is not valid: Self-intersection"),
    ({"type": "MultiPolygon", "coordinates": [SQUARE, SQUARE]},
     "location: the MultiPolygon is not valid"),
    ({"type": "MultiPolygon", "coordinates": [[[[0, 0], [1, 0], [1, 1], [0, 0.5]]]]},
     "location.coordinates[0][0]: the polygon ring is not closed"),
    ({"type": "Polygon", "coordinates": "[[0,0]]"}, "location.coordinates: expected an array"),
])
def test_invalid_geometry_is_refused_naming_the_field(value, fragment):
    with pytest.raises(BadRequestData) as caught:
        validate_geometry(value, field="location")
    assert fragment in caught.value.detail


def test_valid_geometries_become_shapely():
    assert validate_geometry(point(8.5, 47.4)).equals(Point(8.5, 47.4))
    assert validate_geometry({"type": "Point", "coordinates": [8.5, 47.4, 410.0]}).equals(
        Point(8.5, 47.4))
    assert validate_geometry({"type": "Polygon", "coordinates": SQUARE}).area == \
        pytest.approx(0.01)
    holed = {"type": "Polygon", "coordinates": SQUARE + [
        [[8.52, 47.32], [8.54, 47.32], [8.54, 47.34], [8.52, 47.32]]]}
    assert validate_geometry(holed).area == pytest.approx(0.01 - 0.0002)
    multi = validate_geometry({"type": "MultiLineString",
                               "coordinates": [[[0, 0], [1, 1]], [[2, 2], [3, 3]]]})
    assert multi.geom_type == "MultiLineString"
    assert validate_geometry(point(-180, 90)).equals(Point(-180, 90))


def test_lonlat_bounds():
    assert lonlat_bounds(point(8.5, 47.4)) == (8.5, 47.4, 8.5, 47.4)
    assert lonlat_bounds({"type": "Polygon", "coordinates": SQUARE}) == (8.5, 47.3, 8.6, 47.4)
    assert lonlat_bounds({"type": "MultiPoint", "coordinates": [[1, 5, 100], [-2, 3]]}) == \
        (-2.0, 3.0, 1.0, 5.0)
    with pytest.raises(BadRequestData, match="geometry: "):
        lonlat_bounds({"type": "Nope"})
    with pytest.raises(BadRequestData, match="has no positions"):
        lonlat_bounds({"type": "Polygon", "coordinates": []})


# ---------------------------------------------------------------- query parsing
def test_parse_geo_query_accepts_the_http_forms():
    gq = parse_geo_query("near;maxDistance==2000", "Point", "[8.54,47.37]")
    assert (gq.georel, gq.max_distance_m, gq.min_distance_m, gq.geoproperty) == \
        ("near", 2000.0, None, "location")
    assert gq.geometry.equals(Point(8.54, 47.37))
    gq = parse_geo_query("near;maxDistance==2000;minDistance==10", "Point", [8.54, 47.37],
                         geoproperty="observationSpace")
    assert (gq.max_distance_m, gq.min_distance_m, gq.geoproperty) == \
        (2000.0, 10.0, "observationSpace")
    assert parse_geo_query("near;minDistance==1e3", "Point", [0, 0]).min_distance_m == 1000.0
    for rel in ("within", "contains", "intersects", "disjoint", "equals", "overlaps"):
        assert parse_geo_query(rel, "Polygon", SQUARE).georel == rel
    assert parse_geo_query("intersects", "MultiPolygon", [SQUARE]).geometry.geom_type == \
        "MultiPolygon"


@pytest.mark.parametrize("georel, geometry, coordinates, fragment", [
    ("", "Point", "[0,0]", "georel: a geo-query needs georel"),
    ("close", "Point", "[0,0]", "georel: 'close' is not one of near, within"),
    ("near", "Point", "[0,0]", "georel: near needs maxDistance==<metres>"),
    ("near;maxDistance=100", "Point", "[0,0]", "is not maxDistance==<metres>"),
    ("near;maxDistance==-5", "Point", "[0,0]", "maxDistance must be a number of metres >= 0"),
    ("near;maxDistance==far", "Point", "[0,0]", "got 'far'"),
    ("near;maxDistance==nan", "Point", "[0,0]", "must be a number of metres"),
    ("near;maxDistance==1;maxDistance==2", "Point", "[0,0]", "maxDistance is given twice"),
    ("near;maxDistance==10;minDistance==20", "Point", "[0,0]",
     "minDistance 20 is greater than maxDistance 10"),
    ("within;maxDistance==10", "Polygon", SQUARE, "georel: within takes no modifier"),
    ("within", "Circle", "[0,0]", "geometry: 'Circle' is not one of"),
    ("within", "Point", "[0,0", "coordinates: \"[0,0\" is not a JSON array"),
    ("within", "Point", "7", "coordinates: expected a JSON array, got 7"),
    ("within", "Point", "[0,100]", "coordinates: latitude 100 is outside [-90, 90]"),
    ("within", "Polygon", "[[[0,0],[1,0],[1,1]]]", "coordinates[0]: a polygon ring needs"),
])
def test_parse_geo_query_errors_name_the_parameter(georel, geometry, coordinates, fragment):
    with pytest.raises(BadRequestData) as caught:
        parse_geo_query(georel, geometry, coordinates)
    assert fragment in caught.value.detail


def test_a_self_intersecting_polygon_is_valid_geojson_and_is_repaired_for_queries():
    bowtie = [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]
    # RFC 7946 asks no OGC validity: an entity may store it, a query may use it
    assert validate_geometry({"type": "Polygon", "coordinates": bowtie},
                             simple=False).geom_type == "Polygon"
    gq = parse_geo_query("within", "Polygon", bowtie)
    assert gq.matches_geometry(Point(0.2, 0.5))  # in the left triangle
    assert not gq.matches_geometry(Point(0.5, 0.2))  # between the triangles


def test_geoproperty_must_be_a_name():
    with pytest.raises(BadRequestData, match="geoproperty"):
        parse_geo_query("within", "Polygon", SQUARE, geoproperty=" ")


# ------------------------------------------------------------- prefilter boxes
def test_prefilter_boxes():
    assert parse_geo_query("within", "Polygon", SQUARE).prefilter_bbox() == \
        (8.5, 47.3, 8.6, 47.4)
    assert parse_geo_query("disjoint", "Polygon", SQUARE).prefilter_bbox() is None
    assert parse_geo_query("near;minDistance==10", "Point", [0, 0]).prefilter_bbox() is None
    west, south, east, north = parse_geo_query(
        "near;maxDistance==110574", "Point", [10, 0]).prefilter_bbox()
    assert south == pytest.approx(-1.0, abs=0.002) and north == pytest.approx(1.0, abs=0.002)
    assert east - 10 == pytest.approx(110574 / 111319 / math.cos(math.radians(north)), rel=2e-3)
    # at 60 degrees north a degree of longitude is about half as long
    west, south, east, north = parse_geo_query(
        "near;maxDistance==10000", "Point", [10, 60]).prefilter_bbox()
    assert (east - 10) / (north - 60) == pytest.approx(2.0, rel=0.01)
    # near a pole and across the antimeridian the box spans every longitude
    polar = parse_geo_query("near;maxDistance==20000", "Point", [0, 89.9]).prefilter_bbox()
    assert (polar[0], polar[2], polar[3]) == (-180.0, 180.0, 90.0)
    box_ = parse_geo_query("near;maxDistance==5000", "Point", [179.99, 0]).prefilter_bbox()
    assert (box_[0], box_[2]) == (-180.0, 180.0)


# ---------------------------------------------------------------------- distances
def test_known_distances():
    # one degree of latitude at the equator, and of longitude along it
    assert distance_m(point(0, 0), point(0, 1)) == pytest.approx(110574.4, abs=0.5)
    assert distance_m(Point(0, 0), Point(1, 0)) == pytest.approx(111319.5, abs=0.5)
    # Zurich HB to Geneva Cornavin, geodesic, about 224 km
    assert distance_m(point(8.5402, 47.3782), point(6.1424, 46.2102)) == \
        pytest.approx(GEOD.inv(8.5402, 47.3782, 6.1424, 46.2102)[2], abs=1e-6)
    # a point 0.01 degree of latitude south of an east-west road
    road = {"type": "LineString", "coordinates": [[8.50, 47.40], [8.60, 47.40]]}
    assert distance_m(point(8.55, 47.39), road) == \
        pytest.approx(GEOD.inv(8.55, 47.39, 8.55, 47.40)[2], rel=1e-4)
    assert distance_m(point(8.55, 47.35), {"type": "Polygon", "coordinates": SQUARE}) == 0.0


def test_near_with_points_lines_and_polygons():
    station = point(8.55, 47.35)
    one_km_north = GEOD.fwd(8.55, 47.35, 0, 1000)[:2]
    entity = located(point(*one_km_north))
    assert geo_matches(parse_geo_query("near;maxDistance==1001", "Point", station["coordinates"]),
                       entity)
    assert not geo_matches(parse_geo_query("near;maxDistance==999", "Point",
                                           station["coordinates"]), entity)
    assert geo_matches(parse_geo_query("near;minDistance==999", "Point",
                                       station["coordinates"]), entity)
    assert not geo_matches(parse_geo_query("near;minDistance==1001", "Point",
                                           station["coordinates"]), entity)
    assert geo_matches(parse_geo_query("near;maxDistance==1500;minDistance==500", "Point",
                                       station["coordinates"]), entity)
    # a district polygon that contains the query point is 0 m away
    district = located({"type": "Polygon", "coordinates": SQUARE})
    assert geo_matches(parse_geo_query("near;maxDistance==0", "Point", [8.55, 47.35]), district)
    # a polygon query and a point 2 km east of its east edge
    east = GEOD.fwd(8.60, 47.35, 90, 2000)[:2]
    query = parse_geo_query("near;maxDistance==2010", "Polygon", SQUARE)
    assert geo_matches(query, located(point(*east)))
    assert not geo_matches(parse_geo_query("near;maxDistance==1990", "Polygon", SQUARE),
                           located(point(*east)))
    assert query.distance_to_m(Point(*east)) == pytest.approx(2000, rel=5e-3)


def test_entities_without_the_geoproperty_or_with_several_instances():
    query = parse_geo_query("within", "Polygon", SQUARE)
    assert not geo_matches(query, {"id": "urn:x", "type": "T"})
    assert not geo_matches(query, located(point(8.55, 47.35), name="observationSpace"))
    assert geo_matches(parse_geo_query("within", "Polygon", SQUARE,
                                       geoproperty="observationSpace"),
                       located(point(8.55, 47.35), name="observationSpace"))
    two = {"id": "urn:x", "type": "T", "location": [
        {"type": "GeoProperty", "value": point(0, 0), "datasetId": "urn:a"},
        {"type": "GeoProperty", "value": point(8.55, 47.35), "datasetId": "urn:b"}]}
    assert geo_matches(query, two)
    assert not geo_matches(parse_geo_query("within", "Point", [1, 1]), two)
    # malformed stored data never raises
    broken = {"id": "urn:x", "type": "T",
              "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": []}}}
    assert not geo_matches(query, broken)


def test_relations_on_known_shapes():
    square = {"type": "Polygon", "coordinates": SQUARE}
    inner = [[[8.52, 47.32], [8.54, 47.32], [8.54, 47.34], [8.52, 47.34], [8.52, 47.32]]]
    half_out = [[[8.55, 47.35], [8.65, 47.35], [8.65, 47.45], [8.55, 47.45], [8.55, 47.35]]]
    cases = [
        ("within", "Polygon", SQUARE, point(8.55, 47.35), True),
        ("within", "Polygon", SQUARE, point(8.50, 47.35), False),  # on the boundary
        ("within", "Polygon", SQUARE, {"type": "Polygon", "coordinates": inner}, True),
        ("contains", "Polygon", inner, square, True),
        ("contains", "Point", [8.55, 47.35], square, True),
        ("contains", "Polygon", half_out, square, False),
        ("intersects", "Polygon", half_out, square, True),
        ("intersects", "Point", [8.50, 47.35], square, True),
        ("disjoint", "Point", [9.0, 47.0], square, True),
        ("disjoint", "Polygon", half_out, square, False),
        ("overlaps", "Polygon", half_out, square, True),
        ("overlaps", "Polygon", inner, square, False),
        ("equals", "Polygon", [list(reversed(SQUARE[0]))], square, True),
        ("equals", "Polygon", inner, square, False),
        ("intersects", "LineString", [[8.4, 47.35], [8.7, 47.35]], square, True),
    ]
    for georel, geometry, coordinates, entity_geometry, expected in cases:
        query = parse_geo_query(georel, geometry, coordinates)
        assert geo_matches(query, located(entity_geometry)) is expected, (georel, coordinates)


def test_geoquery_built_directly_from_geojson():
    gq = GeoQuery("within", {"type": "Polygon", "coordinates": SQUARE}, None, None)
    assert geo_matches(gq, located(point(8.55, 47.35)))
    with pytest.raises(BadRequestData, match="georel"):
        GeoQuery("beside", Point(0, 0), None, None)


# --------------------------------------------------------- property-based tests
lons = st.floats(-170, 170, allow_nan=False)
lats = st.floats(-80, 80, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(lons, st.floats(-89, 89), st.floats(0, 360), st.floats(0, 50_000))
def test_near_points_agree_with_geodesic_distance(lon, lat, azimuth, metres):
    """A point placed ``metres`` away with Geod.fwd is matched by near exactly then."""
    lon2, lat2, _ = GEOD.fwd(lon, lat, azimuth, metres)
    entity = located(point(lon2, lat2))
    assert distance_m(point(lon, lat), point(lon2, lat2)) == pytest.approx(metres, abs=1e-3)
    inside = parse_geo_query(f"near;maxDistance=={metres * (1 + 1e-9) + 0.01}", "Point",
                             [lon, lat])
    assert geo_matches(inside, entity)
    # the prefilter box never loses a match
    west, south, east, north = inside.prefilter_bbox()
    assert west <= lon2 <= east and south <= lat2 <= north
    if metres > 1:
        outside = parse_geo_query(f"near;maxDistance=={metres * (1 - 1e-9) - 0.01}", "Point",
                                  [lon, lat])
        assert not geo_matches(outside, entity)
        far = parse_geo_query(f"near;minDistance=={metres * (1 - 1e-9) - 0.01}", "Point",
                              [lon, lat])
        assert geo_matches(far, entity)


def _brute_distance_to_segment(lon, lat, start, end, samples=800) -> float:
    """Minimum geodesic distance from (lon, lat) to a lon/lat segment, by sampling."""
    t = np.linspace(0.0, 1.0, samples)
    xs = start[0] + t * (end[0] - start[0])
    ys = start[1] + t * (end[1] - start[1])
    _, _, dist = GEOD.inv(np.full(samples, lon), np.full(samples, lat), xs, ys)
    return float(dist.min())


@settings(max_examples=150, deadline=None)
@given(lons, st.floats(-70, 70), st.floats(0, 360), st.floats(2_000, 50_000),
       st.floats(-60, 60))
def test_point_to_line_distance_within_half_a_percent(lon, lat, azimuth, metres, skew):
    """Near a road (a 4 km segment) ``distance_m`` agrees with the geodesic minimum."""
    mid_lon, mid_lat, _ = GEOD.fwd(lon, lat, azimuth, metres)
    start = GEOD.fwd(mid_lon, mid_lat, azimuth + 90 + skew, 2000)[:2]
    end = GEOD.fwd(mid_lon, mid_lat, azimuth - 90 + skew, 2000)[:2]
    assume(abs(start[0] - end[0]) < 180)  # no antimeridian crossing
    road = {"type": "LineString", "coordinates": [list(start), list(end)]}
    expected = _brute_distance_to_segment(lon, lat, start, end)
    assert distance_m(point(lon, lat), road) == pytest.approx(expected, rel=5e-3)
    # and the other way round: the road as the query, the point as the entity
    query = parse_geo_query(f"near;maxDistance=={expected * 1.01}", "LineString",
                            road["coordinates"])
    assert geo_matches(query, located(point(lon, lat)))
    assert query.distance_to_m(Point(lon, lat)) == pytest.approx(expected, rel=5e-3)


@st.composite
def polygons(draw):
    """A box, a convex hull of grid points, or a polygon with a hole, in [0, 10]^2."""
    kind = draw(st.integers(0, 2))
    coord = st.integers(0, 10).map(float) if draw(st.booleans()) else st.floats(0, 10)
    if kind == 0:
        x0, x1 = sorted([draw(coord), draw(coord)])
        y0, y1 = sorted([draw(coord), draw(coord)])
        assume(x1 > x0 and y1 > y0)
        return box(x0, y0, x1, y1)
    if kind == 1:
        pts = draw(st.lists(st.tuples(coord, coord), min_size=3, max_size=8))
        shape_ = MultiPoint(pts).convex_hull
        assume(shape_.geom_type == "Polygon" and shape_.area > 1e-6)
        return shape_
    x0 = draw(st.integers(0, 5))
    y0 = draw(st.integers(0, 5))
    return Polygon([(x0, y0), (x0 + 5, y0), (x0 + 5, y0 + 5), (x0, y0 + 5)],
                   [[(x0 + 1, y0 + 1), (x0 + 2, y0 + 1), (x0 + 2, y0 + 2), (x0 + 1, y0 + 2)]])


def _geojson(geom) -> dict:
    if geom.geom_type == "Point":
        return point(geom.x, geom.y)
    if geom.geom_type == "LineString":
        return {"type": "LineString", "coordinates": [list(c) for c in geom.coords]}
    return {"type": "Polygon",
            "coordinates": [[list(c) for c in ring.coords]
                            for ring in (geom.exterior, *geom.interiors)]}


@st.composite
def entity_geometries(draw):
    kind = draw(st.integers(0, 2))
    coord = st.integers(0, 10).map(float) if draw(st.booleans()) else st.floats(0, 10)
    if kind == 0:
        return Point(draw(coord), draw(coord))
    if kind == 1:
        a, b = (draw(coord), draw(coord)), (draw(coord), draw(coord))
        assume(a != b)
        return LineString([a, b])
    return draw(polygons())


BRUTE = {
    "within": lambda e, q: e.within(q),
    "contains": lambda e, q: e.contains(q),
    "intersects": lambda e, q: e.intersects(q),
    "disjoint": lambda e, q: e.disjoint(q),
    "equals": lambda e, q: e.equals(q),
    "overlaps": lambda e, q: e.overlaps(q),
}


@settings(max_examples=200, deadline=None)
@given(polygons(), st.lists(entity_geometries(), min_size=1, max_size=3),
       st.sampled_from(sorted(BRUTE)))
def test_relations_agree_with_brute_force_shapely(query_polygon, geometries, georel):
    """``geo_matches`` equals Shapely's predicate on the raw GeoJSON, any instance."""
    query_json = _geojson(query_polygon)
    gq = parse_geo_query(georel, "Polygon", query_json["coordinates"])
    instances = [{"type": "GeoProperty", "value": _geojson(g), "datasetId": f"urn:d:{i}"}
                 for i, g in enumerate(geometries)]
    entity = {"id": "urn:x", "type": "T",
              "location": instances[0] if len(instances) == 1 else instances}
    expected = any(BRUTE[georel](shape(i["value"]), shape(query_json)) for i in instances)
    assert geo_matches(gq, entity) is expected
    box_ = gq.prefilter_bbox()
    if expected and box_ is not None:  # the prefilter keeps every match
        assert any(_meets(lonlat_bounds(i["value"]), box_) for i in instances)


def _meets(a, b) -> bool:
    return a[0] <= b[2] and a[2] >= b[0] and a[1] <= b[3] and a[3] >= b[1]
