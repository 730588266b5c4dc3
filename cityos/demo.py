"""The demo city: a deterministic synthetic city that ``cityos demo`` writes and feeds.

Core writes a handful of sample entities of "Demo City" (a made-up city at Kuala
Lumpur's latitude and longitude; its constants are in :mod:`cityos.appkit.demo`). Apps
add their own data and live feeds through their :class:`~cityos.apps.registry.AppSpec`:
``demo_builder`` (static data, written once through the
:class:`~cityos.core.store.base.ContextStore`, after the core's :data:`CORE_BUILDERS`,
app by app in the registry's order) and ``simulator`` (a live feed, started in a thread
while the demo server runs, going through the same ingest path as a real device).

A builder is ``build(store, tenant, at) -> list[str]`` (the entity ids it wrote); it
must be idempotent (upserts, fixed ids, history instants derived from ``at``). A
simulator is ``run(demo: DemoContext) -> None`` and returns when ``demo.stop`` is set.
"""

from __future__ import annotations

import importlib
import math
import threading
from collections.abc import Callable, Collection
from datetime import datetime, timedelta

# the demo city's constants are the apps' (appkit); re-exported for the command line
from cityos.appkit.demo import CITY_CENTRE, CITY_NAME, DemoContext, demo_anchor  # noqa: F401
from cityos.core.timefmt import format_datetime

#: The core's static data of the demo city, written before the apps'.
CORE_BUILDERS: list[str] = ["cityos.demo:build_core_sample"]

#: The core's live feeds, started with the apps' while ``cityos demo`` serves.
CORE_SIMULATORS: list[str] = [
    # the sample alert (the transit app's simulator drives the buses, so the core's two
    # sample buses, run_demo_feed, stay parked)
    "cityos.web.demo_feed:run_alert_feed",
]

ID_PREFIX = "urn:ngsi-ld:{type}:demo-city:"


def load(target: str | Callable) -> Callable:
    """Resolve a ``"package.module:function"`` name (or pass a callable through)."""
    if callable(target):
        return target
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def builder_label(name: str) -> str:
    """What a builder is called in the progress lines: its app (``"transit"``) or
    ``"core"`` for one outside ``cityos.apps``."""
    parts = name.partition(":")[0].split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "apps" else "core"


def _app_parts(part: str, apps: Collection[str] | None) -> list[tuple[str, str, Callable]]:
    """``(label, name, function)`` of every app's ``part`` (``demo_builder`` or
    ``simulator``), in the registry's order; an app whose part fails to load is
    reported by the registry and left out."""
    from cityos.apps.registry import discover, load_part

    found = []
    for spec in discover():
        if apps is not None and spec.name not in apps:
            continue
        function = load_part(spec, part)
        if function is not None:
            found.append((spec.name, spec.reference(part), function))
    return found


def demo_builders(apps: Collection[str] | None = None) -> list[tuple[str, str, Callable]]:
    """``(label, name, build)`` of every demo builder, in the order they run: the core's,
    then each app's (only those named in ``apps`` when given)."""
    core = [(builder_label(n), n, load(n)) for n in CORE_BUILDERS]
    return core + _app_parts("demo_builder", apps)


def demo_simulators(apps: Collection[str] | None = None) -> list[tuple[str, str, Callable]]:
    """``(label, name, run)`` of every demo simulator: the core's, then each app's."""
    core = [(builder_label(n), n, load(n)) for n in CORE_SIMULATORS]
    return core + _app_parts("simulator", apps)


def build_demo_city(store, tenant: str, at: datetime, *, progress: bool = False,
                    apps: Collection[str] | None = None) -> dict[str, int]:
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
    apps : collection of str, optional
        Build only these apps' data (and the core's); every app's when omitted.

    Returns
    -------
    dict of str to int
        Keyed by the builder's ``"module:function"`` name.
    """
    from cityos.core.progress import Progress

    builders = demo_builders(apps)
    written = {}
    with Progress("demo city", total=len(builders),
                  quiet=None if progress else True) as bar:
        for label, name, build in builders:
            bar.start(label)
            written[name] = len(build(store, tenant, at))
            bar.step(label, f"{written[name]} entities")
    return written


def start_simulators(demo: DemoContext) -> list[threading.Thread]:
    """Start every demo simulator in a daemon thread."""
    threads = []
    for _label, name, run in demo_simulators():
        thread = threading.Thread(target=run, args=(demo,), daemon=True,
                                  name=f"demo-sim {name}")
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
