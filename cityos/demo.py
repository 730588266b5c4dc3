"""The demo city: a deterministic synthetic city that ``cityos demo`` writes and feeds.

Core writes a handful of sample entities of "Demo City" (a made-up city at Kuala
Lumpur's latitude and longitude). Apps add their own data and live feeds by adding a
``"module:function"`` line to :data:`DEMO_BUILDERS` (static data, written once through
the :class:`~cityos.core.store.base.ContextStore`) or :data:`DEMO_SIMULATORS` (live
feeds, started in a thread while the demo server runs, going through the same ingest
path as a real device).

A builder is ``build(store, tenant, at) -> list[str]`` (the entity ids it wrote); it
must be idempotent (upserts, fixed ids, history instants derived from ``at``). A
simulator is ``run(demo: DemoContext) -> None`` and returns when ``demo.stop`` is set.
"""

from __future__ import annotations

import importlib
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cityos.core.timefmt import format_datetime

#: Static data of the demo city, in the order they run.
DEMO_BUILDERS: list[str] = [
    "cityos.demo:build_core_sample",
    "cityos.apps.transit.demo:build_transit_demo",  # transit: the GTFS feed, stops, routes
    "cityos.apps.floodwatch.demo:build_floodwatch_demo",  # flood sensors, gauges, pumps
    "cityos.apps.floodrisk.demo:build_floodrisk_demo",  # floodrisk: tiny study, hazard areas
    # subsidence: InSAR product, area, buildings, metro line
    "cityos.apps.subsidence.demo:build_subsidence_demo",
]

#: Live feeds started while ``cityos demo`` serves.
DEMO_SIMULATORS: list[str] = [
    # core: the sample alert (the transit app's simulator drives the buses, so the
    # core's two sample buses, run_demo_feed, stay parked)
    "cityos.web.demo_feed:run_alert_feed",
    "cityos.apps.transit.sim:run",  # transit: the demo city's buses through ingest
    "cityos.apps.floodwatch.sim:run",  # floodwatch: rain, water and pump controllers
]

CITY_NAME = "Demo City"
#: Centre of the synthetic city (lon, lat): Kuala Lumpur-like coordinates.
CITY_CENTRE = (101.6958, 3.1466)
ID_PREFIX = "urn:ngsi-ld:{type}:demo-city:"


@dataclass
class DemoContext:
    """What a demo simulator gets: where to send its data and when to stop.

    Attributes
    ----------
    base_url : str
        The running server, e.g. ``http://127.0.0.1:8000``.
    api_key : str
        An admin key of ``tenant`` for HTTP calls.
    tenant : str
    mqtt_url : str or None
        The broker the ingester listens on, None when MQTT is off.
    store : ContextStore
        For reading what is there (writes go through the ingest path).
    stop : threading.Event
        Set when the demo shuts down.
    """

    base_url: str
    api_key: str
    tenant: str
    mqtt_url: str | None
    store: object
    stop: threading.Event = field(default_factory=threading.Event)


def load(target: str | Callable) -> Callable:
    """Resolve a ``"package.module:function"`` name (or pass a callable through)."""
    if callable(target):
        return target
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def demo_anchor(now: datetime) -> datetime:
    """The instant the sample history ends: ``now`` floored to the hour, so a rerun
    within the same hour writes the same history rows (it is idempotent)."""
    return now.replace(minute=0, second=0, microsecond=0)


def builder_label(name: str) -> str:
    """What a builder is called in the progress lines: its app (``"transit"``) or
    ``"core"`` for one outside ``cityos.apps``."""
    parts = name.partition(":")[0].split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "apps" else "core"


def build_demo_city(store, tenant: str, at: datetime, *,
                    progress: bool = False) -> dict[str, int]:
    """Run every demo builder; return the number of entities each wrote.

    Parameters
    ----------
    store : ContextStore
    tenant : str
    at : datetime
        End of the sample history (timezone-aware); see :func:`demo_anchor`.
    progress : bool
        Report each builder on stderr (:class:`~cityos.core.progress.Progress`:
        ``"demo city: transit (2/5): 124 entities"``), unless ``cityos --quiet``.
    """
    from cityos.core.progress import Progress

    written = {}
    with Progress("demo city", total=len(DEMO_BUILDERS),
                  quiet=None if progress else True) as bar:
        for target in DEMO_BUILDERS:
            name = target if isinstance(target, str) else \
                f"{target.__module__}:{target.__name__}"
            label = builder_label(name)
            bar.start(label)
            written[name] = len(load(target)(store, tenant, at))
            bar.step(label, f"{written[name]} entities")
    return written


def start_simulators(demo: DemoContext) -> list[threading.Thread]:
    """Start every demo simulator in a daemon thread."""
    threads = []
    for target in DEMO_SIMULATORS:
        thread = threading.Thread(target=load(target), args=(demo,), daemon=True,
                                  name=f"demo-sim {target}")
        thread.start()
        threads.append(thread)
    return threads


# --------------------------------------------------------------- core sample data
def _id(entity_type: str, local: str) -> str:
    return ID_PREFIX.format(type=entity_type) + local


def _point(d_lon: float, d_lat: float) -> dict:
    return {"type": "Point",
            "coordinates": [round(CITY_CENTRE[0] + d_lon, 6), round(CITY_CENTRE[1] + d_lat, 6)]}


def _prop(value, **members) -> dict:
    return {"type": "Property", "value": value, **members}


def _geo(geometry: dict) -> dict:
    return {"type": "GeoProperty", "value": geometry}


def flood_depth_cm(hours_before_peak: float) -> float:
    """Water depth of the sample storm: 4 cm base, a 38 cm peak, an hour wide."""
    return round(4.0 + 38.0 * math.exp(-(hours_before_peak ** 2)), 1)


def sample_entities(at: datetime) -> list[dict]:
    """The current state of the core sample entities (normalised NGSI-LD)."""
    observed = format_datetime(at)
    stops = [
        ("S001", "Central Station", 0.0, 0.0),
        ("S002", "Market Square", 0.0062, 0.0031),
        ("S003", "River Bridge", 0.0121, -0.0017),
        ("S004", "Hospital", 0.0185, 0.0046),
    ]
    entities = [
        {"id": _id("GtfsStop", code), "type": "GtfsStop", "name": _prop(name),
         "code": _prop(code), "location": _geo(_point(dx, dy)),
         "wheelChairAccessible": _prop("ACCESSIBLE"),
         "address": _prop({"addressLocality": CITY_NAME})}
        for code, name, dx, dy in stops
    ]
    entities.append({
        "id": _id("Vehicle", "bus-101"), "type": "Vehicle",
        "vehicleType": _prop("bus"), "name": _prop("Bus 101"),
        "location": {**_geo(_point(0.0088, 0.0012)), "observedAt": observed},
        "speed": _prop(32.5, unitCode="KMH", observedAt=observed),
        "heading": _prop(78.0, unitCode="DD", observedAt=observed),
        "serviceStatus": _prop("onRoute"),
    })
    entities.append({
        "id": _id("WaterObserved", "flood-01"), "type": "WaterObserved",
        "name": _prop("Flood sensor, River Bridge underpass"),
        "location": _geo(_point(0.0118, -0.0021)),
        "depth": _prop(flood_depth_cm(0.0), unitCode="CMT", observedAt=observed),
        "alertThreshold": _prop(30.0, unitCode="CMT"),
    })
    entities.append({
        "id": _id("WeatherObserved", "rain-01"), "type": "WeatherObserved",
        "name": _prop("Rain gauge, Market Square"),
        "location": _geo(_point(0.0060, 0.0035)),
        "precipitation": _prop(12.4, unitCode="MMT", observedAt=observed),
        "temperature": _prop(27.8, unitCode="CEL", observedAt=observed),
        "relativeHumidity": _prop(0.86, observedAt=observed),
    })
    lon, lat = CITY_CENTRE
    footprint = [[lon + 0.0010, lat + 0.0010], [lon + 0.0016, lat + 0.0010],
                 [lon + 0.0016, lat + 0.0015], [lon + 0.0010, lat + 0.0015],
                 [lon + 0.0010, lat + 0.0010]]
    entities.append({
        "id": _id("Building", "city-hall"), "type": "Building",
        "name": _prop("City Hall"), "category": _prop(["office"]),
        "floorsAboveGround": _prop(12),
        "location": _geo({"type": "Polygon",
                          "coordinates": [[[round(x, 6), round(y, 6)] for x, y in footprint]]}),
        "address": _prop({"streetAddress": "1 Jalan Demo", "addressLocality": CITY_NAME}),
    })
    return entities


def sample_history(at: datetime, hours: int = 6) -> list[dict]:
    """Earlier readings of the flood sensor (every 10 minutes) and the rain gauge
    (hourly) over the ``hours`` before ``at``, oldest first, as update fragments."""
    fragments = []
    steps = hours * 6
    for step in range(steps, 0, -1):  # the reading at ``at`` itself is the current state
        when = at - timedelta(minutes=10 * step)
        hours_before_peak = (at - when).total_seconds() / 3600.0
        fragments.append({"id": _id("WaterObserved", "flood-01"), "depth": _prop(
            flood_depth_cm(hours_before_peak), unitCode="CMT", observedAt=format_datetime(when))})
        if step % 6 == 0:
            rain = round(2.0 + 10.0 * math.exp(-((hours_before_peak - 1.0) ** 2)), 1)
            fragments.append({"id": _id("WeatherObserved", "rain-01"), "precipitation": _prop(
                rain, unitCode="MMT", observedAt=format_datetime(when))})
    return fragments


def build_core_sample(store, tenant: str, at: datetime) -> list[str]:
    """Write the core sample entities and their history; return their ids.

    Idempotent: ids are fixed, history instants depend only on ``at``, and an entity
    already stored as wanted is left alone (no write, no new history row). Attributes
    an app added to a sample entity (the subsidence summary of City Hall, say) are
    kept: the sample's own attributes are merged in, not the entity replaced.
    """
    from cityos.core.entities import normalise_entity

    wanted = sample_entities(at)
    ids = [e["id"] for e in wanted]
    stored = {r.id: r.entity for r in store.scan(tenant, ids=ids)}

    def as_wanted(entity: dict) -> bool:
        have = stored.get(entity["id"])
        return have is not None and all(have.get(k) == v
                                        for k, v in normalise_entity(entity).items())

    changed = [e for e in wanted if not as_wanted(e)]
    if not changed:
        return ids
    _raise_on_errors(store.upsert_entities(tenant, changed, replace=False))
    changed_ids = {e["id"] for e in changed}
    history = [f for f in sample_history(at) if f["id"] in changed_ids]
    # the earlier readings pass through the entity; then put the latest back on top
    latest = [{"id": e["id"], **{k: v for k, v in e.items()
                                 if isinstance(v, dict) and "observedAt" in v}}
              for e in changed if e["id"] in {f["id"] for f in history}]
    if history:
        _raise_on_errors(store.update_entities(tenant, history + latest))
    return ids


def _raise_on_errors(result) -> None:
    if result.errors:
        from cityos.core.store.base import _error_from_problem

        raise _error_from_problem(result.errors[0]["error"])
