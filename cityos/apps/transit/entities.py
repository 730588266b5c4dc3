"""A GTFS feed as NGSI-LD entities (Smart Data Models ``GtfsAgency``, ``GtfsStop``,
``GtfsRoute``) and the import that writes them to the context store.

Ids are ``urn:ngsi-ld:GtfsStop:<stop_id>`` and so on (:func:`entity_id`). Every stop, whatever its
``location_type``, is a ``GtfsStop`` (a ``locationType`` Property tells stations and
entrances apart) so that a stop board or a GTFS-realtime stop_id maps to one id. A
route's ``location`` is the MultiLineString of the distinct shapes its trips follow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np

from cityos.apps.transit.gtfs import FeedReading, GtfsProblem, read_gtfs
from cityos.apps.transit.models import Agency, Feed, Route, Stop
from cityos.core.clock import now_datetime
from cityos.core.entities import normalise_entity

__all__ = ["ImportReport", "agency_entity", "feed_entities", "import_feed", "route_entity",
           "stop_entity", "entity_id"]

_URN_SAFE = ":/@!$&'()*+,;=-._~"  # kept as they are in the id
#: Entities per store write.
BATCH_SIZE = 500
#: Where the last import of a tenant is recorded (``store.put_document``).
FEED_DOCUMENT = ("transit-feed", "current")


def entity_id(kind: str, gtfs_id: str) -> str:
    """``urn:ngsi-ld:<kind>:<gtfs_id>`` (``kind`` e.g. ``GtfsStop``); characters a URI
    cannot hold (spaces, non-ASCII letters) are percent-encoded, as in
    ``urn:ngsi-ld:GtfsStop:Blok%20M``."""
    return f"urn:ngsi-ld:{kind}:{quote(gtfs_id, safe=_URN_SAFE)}"


def _text(value: str | None) -> dict | None:
    return {"type": "Property", "value": value} if value not in (None, "") else None


def _with(entity: dict, **attributes: dict | None) -> dict:
    entity.update({k: v for k, v in attributes.items() if v is not None})
    return entity


def agency_entity(agency: Agency) -> dict:
    """A ``GtfsAgency``: name, page, timezone, language, phone."""
    return _with({"id": entity_id("GtfsAgency", agency.agency_id), "type": "GtfsAgency"},
                 name=_text(agency.name), page=_text(agency.url), source=_text(agency.url),
                 timezone=_text(agency.timezone), language=_text(agency.lang),
                 phone=_text(agency.phone))


def stop_entity(stop: Stop) -> dict:
    """A ``GtfsStop``: name, code, location (a Point), locationType,
    wheelChairAccessible and hasParentStation (a Relationship)."""
    entity = _with({"id": entity_id("GtfsStop", stop.stop_id), "type": "GtfsStop"},
                   name=_text(stop.name), code=_text(stop.code),
                   locationType=_text(stop.location_type),
                   wheelChairAccessible=_text(None if stop.wheelchair_boarding is None
                                              else str(stop.wheelchair_boarding)))
    if np.isfinite(stop.lat) and np.isfinite(stop.lon):
        entity["location"] = {"type": "GeoProperty",
                              "value": {"type": "Point", "coordinates": [stop.lon, stop.lat]}}
    if stop.parent_station:
        entity["hasParentStation"] = {"type": "Relationship",
                                      "object": entity_id("GtfsStop", stop.parent_station)}
    return entity


def route_entity(route: Route, lines: list[list[list[float]]] | None = None) -> dict:
    """A ``GtfsRoute``: shortName, name, routeType, routeColor, routeTextColor,
    operatedBy (a Relationship to its GtfsAgency) and, given ``lines``, location."""
    entity = _with({"id": entity_id("GtfsRoute", route.route_id), "type": "GtfsRoute"},
                   shortName=_text(route.short_name), name=_text(route.long_name),
                   routeType=_text(str(route.route_type)), routeColor=_text(route.color),
                   routeTextColor=_text(route.text_color))
    if route.agency_id:
        entity["operatedBy"] = {"type": "Relationship",
                                "object": entity_id("GtfsAgency", route.agency_id)}
    if lines:
        entity["location"] = {"type": "GeoProperty",
                              "value": {"type": "MultiLineString", "coordinates": lines}}
    return entity


def route_lines(feed: Feed) -> dict[str, list[list[list[float]]]]:
    """Per route, the distinct shapes of its trips as GeoJSON line coordinates."""
    shapes_of: dict[str, list[str]] = {}
    for trip in feed.trips.values():
        if trip.shape_id and trip.shape_id in feed.shapes:
            used = shapes_of.setdefault(trip.route_id, [])
            if trip.shape_id not in used:
                used.append(trip.shape_id)
    lines: dict[str, list] = {}
    for route_id, shape_ids in shapes_of.items():
        for shape_id in shape_ids:
            shape = feed.shapes[shape_id]
            if len(shape.lon) < 2:
                continue
            coords = np.round(np.column_stack([shape.lon, shape.lat]), 6).tolist()
            lines.setdefault(route_id, []).append(coords)
    return lines


def feed_entities(feed: Feed) -> list[dict]:
    """Every agency, stop and route of ``feed`` as canonical NGSI-LD entities."""
    lines = route_lines(feed)
    bodies = [agency_entity(a) for a in feed.agencies.values()]
    bodies += [stop_entity(s) for s in feed.stops.values()]
    bodies += [route_entity(r, lines.get(r.route_id)) for r in feed.routes.values()]
    return [normalise_entity(body) for body in bodies]


@dataclass
class ImportReport:
    """What :func:`import_feed` read and wrote."""

    feed: Feed
    warnings: list[GtfsProblem]
    entities_written: int
    counts: dict[str, int] = field(default_factory=dict)
    #: the rows left out of the feed (see :class:`~cityos.apps.transit.gtfs.FeedReading`)
    dropped: list[GtfsProblem] = field(default_factory=list)


def feed_counts(feed: Feed) -> dict[str, int]:
    """How many of each thing the feed holds."""
    return {
        "agencies": len(feed.agencies), "stops": len(feed.stops),
        "routes": len(feed.routes), "trips": len(feed.trips),
        "stop_times": len(feed.stop_times),
        "shapes": sum(not s.derived for s in feed.shapes.values()),
        "derived_shapes": sum(s.derived for s in feed.shapes.values()),
        "services": len(feed.calendars),
        "frequencies": sum(len(f) for f in feed.frequencies.values()),
    }


def import_feed(store, tenant: str, path: str | Path | FeedReading, *,
                skip_invalid: bool = False, batch_size: int = BATCH_SIZE,
                progress: Callable[[int], None] | None = None) -> ImportReport:
    """Read a GTFS feed and write its agencies, stops and routes to the store.

    The feed is read and checked in full first: when it has errors nothing is
    written. The path and counts of the import are kept as the tenant's
    ``transit-feed/current`` document.

    Parameters
    ----------
    store : ContextStore
        Where to write.
    tenant : str
        The tenant the entities belong to.
    path : str, Path or FeedReading
        A GTFS zip or folder, or a feed already read with
        :func:`~cityos.apps.transit.gtfs.read_gtfs`.
    skip_invalid : bool
        Drop rows with errors instead of stopping (see :func:`read_feed_report`);
        ignored for a feed already read.
    batch_size : int
        Entities per ``upsert_entities`` call.
    progress : callable, optional
        Called with the number of entities of each batch written (e.g.
        :meth:`cityos.core.progress.Progress.advance`).

    Returns
    -------
    ImportReport

    Raises
    ------
    GtfsError
        When the feed has errors (nothing written).
    RuntimeError
        When the store refuses an entity (the batches before it are written).
    """
    reading = path if isinstance(path, FeedReading) else \
        read_gtfs(path, skip_invalid=skip_invalid)
    feed, warnings, path = reading.feed, reading.warnings, reading.path
    entities = feed_entities(feed)
    written = 0
    for start in range(0, len(entities), max(1, batch_size)):
        result = store.upsert_entities(tenant, entities[start:start + batch_size])
        if result.errors:
            first = result.errors[0]
            raise RuntimeError(f"the store refused {len(result.errors)} entities, e.g. "
                               f"{first['entityId']}: {first['error'].get('detail')}; "
                               f"{written + len(result.success)} written")
        written += len(result.success)
        if progress is not None:
            progress(len(result.success))
    counts = feed_counts(feed)
    store.put_document(tenant, *FEED_DOCUMENT, {
        "path": str(Path(path).resolve()), "importedAt": now_datetime().isoformat(),
        "skipInvalid": reading.skip_invalid, "counts": counts, "warnings": len(warnings),
        "droppedRows": len(reading.dropped)})
    return ImportReport(feed, warnings, written, counts, reading.dropped)
