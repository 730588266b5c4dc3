"""Property-based tests: ``q`` and geo-queries through the store, on both backends.

Hypothesis builds a small city (entities of a few types with numeric, text, boolean,
mixed and array values, some attributes missing, some with several instances by
``datasetId``, locations as points on a grid over central Tallinn plus a few lines,
polygons and two-instance locations), writes it with ``create_entities``, replaces
part of it with ``upsert_entities`` and deletes a few entities, so the backends'
type and spatial indexes see updates too. Then random queries go through
``ContextStore.query_entities`` and the ids it returns (whole, and page by page with
``count``) are compared with a brute-force evaluation written here on the bodies the
test wrote:

* ``q``: plain Python over a query tree the test generates and renders to text
  (comparisons, ranges, value lists, patterns, existence, ``;``, ``|`` and
  parentheses, redundant ones included);
* geo: DE-9IM patterns (``shapely.relate_pattern``) for within / contains /
  intersects / disjoint, and for ``near`` geodesic metres from ``pyproj.Geod.inv``:
  exact between points, else the minimum over the other geometry sampled every
  0.00005 degree (about 4 m) along its edges.

Boundary cases: the implementation measures non-point distances in a projection, so
an entity whose brute-force distance lies within 0.5 % (at least 1 m) of a distance
threshold is left out of the comparison; between two points (geodesic on both sides)
the slack is 1 cm. ``near`` with a line or polygon as the query geometry is only
checked on entities located by points (the brute force samples the query geometry;
line-to-polygon minima are not brute-forced). Each example writes into a tenant of
its own, which isolates it completely from the others on the same store.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass

import numpy as np
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import Geod
from shapely.geometry import shape

from cityos.core.geo import parse_geo_query
from cityos.core.store.base import EntityQuery

GEOD = Geod(ellps="WGS84")

# Central Tallinn, about 5.6 km east-west and 6.7 km north-south, on a 0.0005-degree grid
# (about 28 m x 56 m), so points share rows, columns and polygon edges: boundary cases.
WEST, SOUTH, STEP = 24.70, 59.40, 0.0005
COLUMNS, ROWS = 200, 120

ENTITY_TYPES = ["Vehicle", "WeatherObserved", ["Vehicle", "Device"], ["Device", "WeatherObserved"]]
QUERY_TYPES = ["Vehicle", "WeatherObserved", "Device", "Building"]
NUMBERS = [-5, 0, 10, 12.5, 20, 30, 30.0, 47.25, 50, 80, 100]
STATUSES = ["open", "closed", "full", "out of service", "Open"]
ROUTES = ["urn:ngsi-ld:Route:7", "urn:ngsi-ld:Route:12", "urn:ngsi-ld:Route:40"]
DATASETS = ["urn:ngsi-ld:Dataset:gps", "urn:ngsi-ld:Dataset:can"]
PATTERNS = ["^c", "en$", "(?i)^open", "of", "[0-9]"]

SETTINGS = settings(max_examples=12, deadline=None, derandomize=False,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])


def grid(column: int, row: int) -> list[float]:
    """Lon/lat of a grid node, rounded so that the JSON text is the float itself."""
    return [round(WEST + column * STEP, 6), round(SOUTH + row * STEP, 6)]


# ------------------------------------------------------------------ the city
columns = st.integers(0, COLUMNS)
rows = st.integers(0, ROWS)
nodes = st.tuples(columns, rows)
offsets = st.tuples(st.integers(-25, 25), st.integers(-15, 15))


def _clamped(node: tuple[int, int], offset: tuple[int, int]) -> tuple[int, int]:
    return (min(max(node[0] + offset[0], -20), COLUMNS + 20),
            min(max(node[1] + offset[1], -20), ROWS + 20))


@st.composite
def points(draw, spread: int = 0) -> dict:
    column = draw(st.integers(-spread, COLUMNS + spread))
    row = draw(st.integers(-spread, ROWS + spread))
    return {"type": "Point", "coordinates": grid(column, row)}


@st.composite
def lines(draw) -> dict:
    start = draw(nodes)
    vertices = [start] + [_clamped(start, o) for o in draw(st.lists(offsets, min_size=1,
                                                                    max_size=3))]
    distinct = list(dict.fromkeys(vertices))
    if len(distinct) < 2:
        distinct.append((distinct[0][0] + 1, distinct[0][1]))
    return {"type": "LineString", "coordinates": [grid(*v) for v in distinct]}


@st.composite
def polygons(draw, largest: int = 20) -> dict:
    west, south = draw(nodes)
    if draw(st.booleans()):  # an axis-aligned rectangle: edges along grid lines
        width, height = draw(st.integers(1, largest)), draw(st.integers(1, largest))
        ring = [(west, south), (west + width, south), (west + width, south + height),
                (west, south + height)]
    else:  # a triangle, its vertices not in one line
        b = _clamped((west, south), draw(st.tuples(st.integers(1, largest),
                                                   st.integers(-largest, largest))))
        c = _clamped((west, south), draw(st.tuples(st.integers(-largest, largest),
                                                   st.integers(1, largest))))
        cross = (b[0] - west) * (c[1] - south) - (b[1] - south) * (c[0] - west)
        if cross == 0:
            c = (c[0] + 1, c[1] + 1) if b[1] != south else (c[0], c[1] + 1)
        ring = [(west, south), b, c]
    return {"type": "Polygon", "coordinates": [[grid(*v) for v in ring + ring[:1]]]}


def prop(value, dataset: str | None = None) -> dict:
    body = {"type": "Property", "value": value}
    if dataset:
        body["datasetId"] = dataset
    return body


@st.composite
def attribute(draw, values, multi: bool = True):
    """None (missing), one instance, or two instances by datasetId."""
    shape_ = draw(st.sampled_from(["missing", "one", "one", "two"] if multi
                                  else ["missing", "one", "one"]))
    if shape_ == "missing":
        return None
    if shape_ == "one":
        return prop(draw(values))
    first = None if draw(st.booleans()) else DATASETS[1]  # default instance or not
    return [prop(draw(values), first), prop(draw(values), DATASETS[0])]


scalars = st.one_of(st.sampled_from(NUMBERS), st.sampled_from(STATUSES), st.booleans())


@st.composite
def locations(draw):
    kind = draw(st.sampled_from(["none", "point", "point", "point", "point", "point",
                                 "line", "polygon", "two points"]))
    if kind == "none":
        return None
    if kind == "point":
        return {"type": "GeoProperty", "value": draw(points())}
    if kind == "line":
        return {"type": "GeoProperty", "value": draw(lines())}
    if kind == "polygon":
        return {"type": "GeoProperty", "value": draw(polygons())}
    return [{"type": "GeoProperty", "value": draw(points()), "datasetId": DATASETS[0]},
            {"type": "GeoProperty", "value": draw(points()), "datasetId": DATASETS[1]}]


@st.composite
def entity_bodies(draw, number: int) -> dict:
    body: dict = {"id": f"urn:ngsi-ld:Asset:{number:03d}",
                  "type": draw(st.sampled_from(ENTITY_TYPES))}
    attrs = {
        "speed": draw(attribute(st.sampled_from(NUMBERS))),
        "status": draw(attribute(st.sampled_from(STATUSES))),
        "active": draw(attribute(st.booleans(), multi=False)),
        "reading": draw(attribute(st.one_of(scalars, st.lists(scalars, min_size=1,
                                                                   max_size=3)))),
        "location": draw(locations()),
    }
    if draw(st.booleans()):
        attrs["refRoute"] = {"type": "Relationship", "object": draw(st.sampled_from(ROUTES))}
    body.update({name: attr for name, attr in attrs.items() if attr is not None})
    return body


@dataclass
class City:
    created: list[dict]   # written with create_entities
    replaced: list[dict]  # then written with upsert_entities (replace)
    deleted: list[str]    # then deleted

    def final(self) -> dict[str, dict]:
        """The bodies the store should hold at the end, by id."""
        bodies = {body["id"]: body for body in self.created}
        bodies.update({body["id"]: body for body in self.replaced})
        for entity_id in self.deleted:
            bodies.pop(entity_id)
        return bodies


@st.composite
def cities(draw) -> City:
    size = draw(st.integers(30, 80))
    created = [draw(entity_bodies(n)) for n in range(size)]
    again = draw(st.lists(st.integers(0, size + 4), max_size=8, unique=True))
    replaced = [draw(entity_bodies(n)) for n in again]  # ids past `size` are created
    gone = draw(st.lists(st.integers(0, size - 1), max_size=4, unique=True))
    return City(created, replaced, [f"urn:ngsi-ld:Asset:{n:03d}" for n in gone])


def write_city(store, city: City) -> str:
    """Write the city into a tenant of its own and return the tenant."""
    tenant = f"prop-{uuid.uuid4().hex[:12]}"
    half = len(city.created) // 2  # two batches: two transactions
    for batch in (city.created[:half], city.created[half:]):
        assert store.create_entities(tenant, batch).errors == []
    assert store.upsert_entities(tenant, city.replaced, replace=True).errors == []
    if city.deleted:
        assert store.delete_entities(tenant, city.deleted).errors == []
    return tenant


# --------------------------------------------------------------- q, generated
@dataclass(frozen=True)
class Comparison:
    """One q term: ``attr``, ``op`` (exists, !exists, ==, !=, <, <=, >, >=, ~=, !~=),
    the query values (two bounds when ``is_range``) or a regular expression."""

    attr: str
    op: str
    values: tuple = ()
    is_range: bool = False
    quoted_uri: bool = False
    paren: bool = False

    def text(self) -> str:
        if self.op == "exists":
            return self.attr
        if self.op == "!exists":
            return f"!{self.attr}"
        if self.op in ("~=", "!~="):
            return f'{self.attr}{self.op}{json.dumps(self.values[0])}'
        joiner = ".." if self.is_range else ","
        return f"{self.attr}{self.op}{joiner.join(self.literal(v) for v in self.values)}"

    def literal(self, value) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return repr(value)
        if value.startswith("urn:") and not self.quoted_uri:
            return value
        return json.dumps(value)


@dataclass(frozen=True)
class Combination:
    """``;`` (and) or ``|`` (or) of parts."""

    kind: str
    parts: tuple
    paren: bool = False


def render(node, parent: str | None = None) -> str:
    if isinstance(node, Comparison):
        text = node.text()
    else:
        text = (";" if node.kind == "and" else "|").join(render(p, node.kind)
                                                          for p in node.parts)
    needed = parent == "and" and isinstance(node, Combination) and node.kind == "or"
    return f"({text})" if needed or node.paren else text


QUERY_VALUES = {
    "speed": st.one_of(st.sampled_from(NUMBERS), st.sampled_from(NUMBERS),
                       st.sampled_from(STATUSES)),
    "status": st.one_of(st.sampled_from(STATUSES), st.sampled_from(STATUSES),
                        st.sampled_from(["a", "m", "p"]), st.sampled_from(NUMBERS)),
    "active": st.booleans(),
    "reading": scalars,
    "refRoute": st.sampled_from(ROUTES),
    "colour": scalars,  # no entity has it
}


@st.composite
def comparisons(draw) -> Comparison:
    attr = draw(st.sampled_from(sorted(QUERY_VALUES)))
    values = QUERY_VALUES[attr]
    op = draw(st.sampled_from(["exists", "!exists", "==", "==", "!=", "<", "<=", ">", ">=",
                               "range", "!range", "~=", "!~="]))
    paren = draw(st.booleans()) and draw(st.booleans())
    if op in ("exists", "!exists"):
        return Comparison(attr, op, paren=paren)
    if op in ("~=", "!~="):
        return Comparison(attr, op, (draw(st.sampled_from(PATTERNS)),), paren=paren)
    first = draw(values)
    orderable = not isinstance(first, bool) and not (isinstance(first, str)
                                                     and first.startswith("urn:"))
    if op in ("range", "!range") and orderable:
        second = draw(values.filter(lambda v, k=_kind(first): _kind(v) == k))
        low, high = sorted([first, second]) if draw(st.booleans()) else (first, second)
        return Comparison(attr, "==" if op == "range" else "!=", (low, high), is_range=True,
                    paren=paren)
    if op in ("<", "<=", ">", ">=") and orderable:
        return Comparison(attr, op, (first,), paren=paren)
    op = "!=" if op in ("!=", "!range") else "=="
    more = draw(st.lists(values, max_size=2))
    return Comparison(attr, op, (first, *more), quoted_uri=draw(st.booleans()), paren=paren)


def _combine(parts):
    return st.builds(Combination, st.sampled_from(["and", "or"]),
                     st.lists(parts, min_size=2, max_size=3).map(tuple),
                     st.booleans().map(lambda b: b and False) | st.booleans())


q_trees = st.recursive(comparisons(), _combine, max_leaves=6)


# ------------------------------------------------------------ q, brute force
def _kind(value) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "num"
    if isinstance(value, str):
        return "str"
    return None


def instance_values(body: dict, attr: str) -> list:
    """The value of each instance of the attribute (a Relationship's object)."""
    found = body.get(attr)
    if found is None:
        return []
    instances = found if isinstance(found, list) else [found]
    return [i["object"] if i["type"] == "Relationship" else i["value"] for i in instances]


def _elements(value) -> list:
    return value if isinstance(value, list) else [value]


def _same_kind(a, b) -> bool:
    return _kind(a) is not None and _kind(a) == _kind(b)


def _equal_to_any(test: Comparison, value) -> bool:
    """``==`` on one instance's value: some element equals some query value, or lies in
    the range (both bounds of the element's kind)."""
    for element in _elements(value):
        if test.is_range:
            low, high = test.values
            if _same_kind(element, low) and _same_kind(element, high) and \
                    low <= element <= high:
                return True
        elif any(_same_kind(element, v) and element == v for v in test.values):
            return True
    return False


def _found_by(pattern: str, value) -> bool:
    return any(isinstance(e, str) and re.search(pattern, e) for e in _elements(value))


ORDERS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
          ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def holds(node, body: dict) -> bool:
    """Brute-force q: a term holds when some instance satisfies it; a missing attribute
    fails all but ``!attr``; values of different kinds never compare."""
    if isinstance(node, Combination):
        results = [holds(part, body) for part in node.parts]
        return all(results) if node.kind == "and" else any(results)
    values = instance_values(body, node.attr)
    if node.op == "exists":
        return bool(values)
    if node.op == "!exists":
        return not values
    if node.op == "==":
        return any(_equal_to_any(node, v) for v in values)
    if node.op == "!=":
        return any(not _equal_to_any(node, v) for v in values)
    if node.op == "~=":
        return any(_found_by(node.values[0], v) for v in values)
    if node.op == "!~=":
        return any(not _found_by(node.values[0], v) for v in values)
    wanted = node.values[0]
    return any(_same_kind(e, wanted) and ORDERS[node.op](e, wanted)
               for v in values for e in _elements(v))


def typed(body: dict, types: list[str] | None) -> bool:
    if types is None:
        return True
    mine = body["type"] if isinstance(body["type"], list) else [body["type"]]
    return bool(set(mine) & set(types))


type_filters = st.one_of(st.none(), st.lists(st.sampled_from(QUERY_TYPES), min_size=1,
                                             max_size=2, unique=True))


# ------------------------------------------------------------- geo, generated
@dataclass(frozen=True)
class GeoSpec:
    """A geo-query as the HTTP parameters give it, and its distances in metres."""

    georel: str
    geometry: dict
    max_distance: float | None = None
    min_distance: float | None = None

    def parsed(self):
        return parse_geo_query(self.georel, self.geometry["type"],
                               json.dumps(self.geometry["coordinates"]))


distances_m = st.integers(20, 4000).map(float) | st.integers(200, 40000).map(lambda d: d / 10)


@st.composite
def geo_specs(draw) -> GeoSpec:
    rel = draw(st.sampled_from(["near", "near", "near", "within", "contains",
                                "intersects", "disjoint"]))
    if rel == "near":
        geometry = draw(st.one_of(points(spread=20), points(spread=20), lines(),
                                  polygons(largest=40)))
        kind = draw(st.sampled_from(["max", "max", "min", "both"]))
        a, b = sorted([draw(distances_m), draw(distances_m)])
        if kind == "max":
            return GeoSpec(f"near;maxDistance=={b:g}", geometry, max_distance=b)
        if kind == "min":
            return GeoSpec(f"near;minDistance=={a:g}", geometry, min_distance=a)
        return GeoSpec(f"near;minDistance=={a:g};maxDistance=={b:g}", geometry, b, a)
    if rel == "contains":
        geometry = draw(st.one_of(points(), polygons(largest=3), lines()))
    elif rel == "within":
        geometry = draw(st.one_of(polygons(largest=80), polygons(largest=80), lines()))
    else:
        geometry = draw(st.one_of(points(), lines(), polygons(largest=80)))
    return GeoSpec(rel, geometry)


# ----------------------------------------------------------- geo, brute force
PATTERNS_9IM = {"within": "T*F**F***", "contains": "T*****FF*", "disjoint": "FF*FF****"}
SAMPLE_DEG = 0.00005  # about 3 m of longitude, 5.6 m of latitude here


def _edge_samples(geom) -> np.ndarray:
    edges = geom.exterior if geom.geom_type == "Polygon" else geom
    return shapely.get_coordinates(shapely.segmentize(edges, SAMPLE_DEG))


def geodesic_distance_m(query, geom) -> float | None:
    """Metres between the query geometry and one entity geometry, or None when this
    test does not brute-force the pair (neither is a point)."""
    if query.geom_type == "Point" and geom.geom_type == "Point":
        return float(GEOD.inv(query.x, query.y, geom.x, geom.y)[2])
    if not shapely.relate_pattern(query, geom, PATTERNS_9IM["disjoint"]):
        return 0.0
    if query.geom_type == "Point":
        point, other = query, geom
    elif geom.geom_type == "Point":
        point, other = geom, query
    else:
        return None
    samples = _edge_samples(other)
    ones = np.ones(len(samples))
    return float(GEOD.inv(point.x * ones, point.y * ones, samples[:, 0], samples[:, 1])[2].min())


def _beyond(distance: float, threshold: float, slack: float) -> bool | None:
    """distance <= threshold, or None inside the slack around the threshold."""
    if abs(distance - threshold) <= slack:
        return None
    return distance <= threshold


def geo_verdict(spec: GeoSpec, body: dict) -> bool | None:
    """Brute-force geo-query on one entity: True, False, or None (not decided here).

    With several location instances, one that matches is enough (as the store says).
    """
    location = body.get("location")
    if location is None:
        return False
    geometries = [shape(i["value"]) for i in (location if isinstance(location, list)
                                              else [location])]
    query = shape(spec.geometry)
    verdicts = []
    for geom in geometries:
        if spec.georel in PATTERNS_9IM:
            verdicts.append(bool(shapely.relate_pattern(geom, query,
                                                        PATTERNS_9IM[spec.georel])))
        elif spec.georel == "intersects":
            verdicts.append(not shapely.relate_pattern(geom, query, PATTERNS_9IM["disjoint"]))
        else:
            verdicts.append(_near_verdict(spec, query, geom))
    if True in verdicts:
        return True
    return None if None in verdicts else False


def _near_verdict(spec: GeoSpec, query, geom) -> bool | None:
    distance = geodesic_distance_m(query, geom)
    if distance is None:
        return None
    both_points = query.geom_type == "Point" and geom.geom_type == "Point"
    outcome = True
    for threshold, inside in ((spec.max_distance, True), (spec.min_distance, False)):
        if threshold is None:
            continue
        slack = 0.01 if both_points else max(0.005 * threshold, 1.0)
        within = _beyond(distance, threshold, slack)
        if within is None:
            return None
        # minDistance keeps what lies at or beyond it
        outcome = outcome and (within if inside else (not within or distance == threshold))
    return outcome


# ------------------------------------------------------------------- checks
def ids_of(result) -> list[str]:
    return [record.id for record in result.entities]


def check_pages(store, tenant: str, query: EntityQuery, everything: list[str],
                page_size: int, offset: int) -> None:
    """Pages of ``page_size`` with ``count`` tile the whole answer; any offset works."""
    walked: list[str] = []
    start = 0
    while True:
        page = store.query_entities(tenant, EntityQuery(
            types=query.types, q=query.q, geo=query.geo, limit=page_size, offset=start,
            count=True))
        assert page.count == len(everything)
        walked += ids_of(page)
        if len(page.entities) < page_size:
            break
        start += page_size
    assert walked == everything
    page = store.query_entities(tenant, EntityQuery(
        types=query.types, q=query.q, geo=query.geo, limit=page_size, offset=offset))
    assert ids_of(page) == everything[offset:offset + page_size]
    assert page.count is None


@SETTINGS
@given(city=cities(), queries=st.lists(st.tuples(type_filters, q_trees), min_size=4,
                                       max_size=8),
       page_size=st.integers(3, 12), offset=st.integers(0, 90))
def test_q_through_the_store_agrees_with_brute_force(store, city, queries, page_size, offset):
    tenant = write_city(store, city)
    final = city.final()
    for types, tree in queries:
        text = render(tree)
        expected = sorted(i for i, body in final.items()
                          if typed(body, types) and holds(tree, body))
        query = EntityQuery(types=types, q=text, limit=1000)
        got = ids_of(store.query_entities(tenant, query))
        assert got == expected, f"types={types} q={text}"
    check_pages(store, tenant, query, got, page_size, offset)


@SETTINGS
@given(city=cities(),
       queries=st.lists(st.tuples(type_filters, geo_specs(), st.none() | comparisons()),
                        min_size=4, max_size=8),
       page_size=st.integers(3, 12), offset=st.integers(0, 90))
def test_geo_queries_through_the_store_agree_with_brute_force(store, city, queries,
                                                              page_size, offset):
    tenant = write_city(store, city)
    final = city.final()
    for types, spec, q_test in queries:
        verdicts = {i: geo_verdict(spec, body) for i, body in final.items()
                    if typed(body, types) and (q_test is None or holds(q_test, body))}
        undecided = {i for i, verdict in verdicts.items() if verdict is None}
        expected = sorted(i for i, verdict in verdicts.items() if verdict)
        query = EntityQuery(types=types, q=q_test and render(q_test), geo=spec.parsed(),
                            limit=1000)
        got = ids_of(store.query_entities(tenant, query))
        assert got == sorted(got)
        assert [i for i in got if i not in undecided] == expected, \
            f"types={types} q={query.q} georel={spec.georel} geometry={spec.geometry}"
    check_pages(store, tenant, query, got, page_size, offset)
