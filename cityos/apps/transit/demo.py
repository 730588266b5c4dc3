"""The demo city's bus network: the builder that ``cityos demo`` runs.

:func:`build_transit_demo` writes the synthetic feed
(:func:`~cityos.apps.transit.synthetic.write_demo_gtfs`) as a GTFS zip next to the
demo's SQLite database (``var/`` for another store) and imports it with
:func:`~cityos.apps.transit.entities.import_feed`: stops and routes become entities,
and the tenant's ``transit-feed/current`` document, marked ``demo``, tells the transit
service to run the feed and to learn its predictor from simulated days. The buses
themselves come from the simulator (:func:`cityos.apps.transit.sim.run`).

The bus routes' roads become ``RoadSegment`` entities with their speed limits
(:func:`demo_road_segments`): secondary roads at 50 km/h and a 30 km/h school zone on
route 1, where buses cruising at city speeds are caught speeding.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np

from cityos.apps.transit.entities import FEED_DOCUMENT, feed_entities, import_feed
from cityos.apps.transit.gtfs import read_feed
from cityos.apps.transit.models import Feed
from cityos.apps.transit.synthetic import write_demo_gtfs

DEMO_SEED = 0
FEED_FILE = "demo-city-gtfs.zip"
SCHOOL_ZONE = (0.40, 0.55)  # share of route 1's first shape under the 30 km/h limit


def demo_feed_path(store) -> Path:
    """Where the demo's GTFS zip goes: beside the SQLite database, else ``var/``."""
    path = getattr(store, "path", None)
    if isinstance(path, str) and path and path != ":memory:" and not path.startswith("file:"):
        return Path(path).resolve().parent / FEED_FILE
    return Path("var").resolve() / FEED_FILE


def build_transit_demo(store, tenant: str, at: datetime) -> list[str]:
    """Write and import the demo city's GTFS feed and its bus roads; return the ids of
    their entities.

    Idempotent: the zip is written only when missing (it is deterministic), and an
    import already recorded for the same file is not repeated.
    """
    path = demo_feed_path(store)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_demo_gtfs(path, seed=DEMO_SEED)
    document = store.get_document(tenant, *FEED_DOCUMENT)
    feed = read_feed(path)
    roads = [entity["id"] for entity in demo_road_segments(feed)]
    if document and document.get("demo") and document.get("path") == str(path):
        return [entity["id"] for entity in feed_entities(feed)] + roads
    store.upsert_entities(tenant, demo_road_segments(feed))
    report = import_feed(store, tenant, path)
    document = store.get_document(tenant, *FEED_DOCUMENT) or {}
    document.update(demo=True, seed=DEMO_SEED)
    store.put_document(tenant, *FEED_DOCUMENT, document)
    return [entity["id"] for entity in feed_entities(report.feed)] + roads


def _line(shape, start_m: float, end_m: float) -> list[list[float]]:
    inside = (shape.dist_m > start_m) & (shape.dist_m < end_m)
    ends = [[float(np.interp(d, shape.dist_m, shape.lon)), float(np.interp(d, shape.dist_m,
                                                                             shape.lat))]
            for d in (start_m, end_m)]
    middle = np.column_stack([shape.lon[inside], shape.lat[inside]]).tolist()
    return [ends[0], *middle, ends[1]]


def demo_road_segments(feed: Feed) -> list[dict]:
    """``RoadSegment`` entities along the feed's shapes: one per shape at the
    secondary-road limit, and the school zone on the first shape of the first route.

    Parameters
    ----------
    feed : Feed
        The demo city's feed.

    Returns
    -------
    list of dict
        Normalized NGSI-LD entities (Smart Data Models ``RoadSegment``).
    """
    def entity(suffix: str, name: str, coordinates, limit_kmh: float, road_class: str):
        return {"id": f"urn:ngsi-ld:RoadSegment:demo-{suffix}", "type": "RoadSegment",
                "name": {"type": "Property", "value": name},
                "roadClass": {"type": "Property", "value": road_class},
                "maximumAllowedSpeed": {"type": "Property", "value": limit_kmh,
                                        "unitCode": "KMH"},
                "location": {"type": "GeoProperty", "value": {
                    "type": "LineString", "coordinates": coordinates}}}

    segments = [entity(shape_id, f"Bus road {shape_id}", _line(shape, 0.0, shape.length_m),
                       50.0, "secondary")
                for shape_id, shape in sorted(feed.shapes.items())]
    first_route = sorted(feed.routes)[0]
    shape_id = sorted(t.shape_id for t in feed.trips.values()
                      if t.route_id == first_route and t.shape_id)[0]
    shape = feed.shapes[shape_id]
    start, end = (share * shape.length_m for share in SCHOOL_ZONE)
    segments.append(entity("school-zone", "School zone", _line(shape, start, end), 30.0,
                           "school_zone"))
    return segments
