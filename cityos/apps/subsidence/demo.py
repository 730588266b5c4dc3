"""The demo city's ground motion: a small synthetic product, fitted and served.

:func:`build_subsidence_demo` is the builder ``cityos demo`` runs (see
:mod:`cityos.demo`). It writes the synthetic metropolitan product of
:mod:`cityos.apps.subsidence.synthetic` (MintPy layout, known truth) beside the demo
database, imports it through the same reader a real MintPy file uses, fits it, publishes
it, gives the demo tenant an area of interest over the whole product with the demo's
buildings and metro line as its assets, refreshes them (summaries and alerts) and keeps
the levelling comparison of the demo benchmarks. The product is written and fitted
once; later builds reuse it, so the builder is idempotent.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

DEMO_SCALE = 0.4         # the city's layout at 0.4: 11 x 9 km
DEMO_POINTS_SIDE = 250   # 62,500 points, 45 m x 35 m apart: seconds to build
DEMO_DATES = 60
DEMO_BUILDINGS = 60
DEMO_BOWL_WIDTH = 0.5     # bowls of 500, 400 and 300 m (sigma)
DEMO_BUILDING_SCALE = 2.5  # blocks of 30-100 m by 38-225 m: several points each
DEMO_SEED = 7
#: Noise of the demo product: residual atmosphere after correction, white noise, and
#: the levelling (per levelled height), mm.
DEMO_ATMOSPHERE_MM = 1.0
DEMO_NOISE_MM = 1.5
DEMO_LEVELLING_MM = 1.0
DEMO_RADIUS_M = 100.0
#: The demo area's alert thresholds (mm/yr, mm/yr^2).
DEMO_RATE_THRESHOLD = 20.0
DEMO_ACCELERATION_THRESHOLD = 5.0


def demo_options() -> dict:
    """The arguments of :func:`~cityos.apps.subsidence.synthetic.write_demo_product` for
    the demo: the city centred on :data:`cityos.appkit.demo.CITY_CENTRE` (the default), its
    layout at :data:`DEMO_SCALE` with bowls :data:`DEMO_BOWL_WIDTH` as wide."""
    from cityos.apps.subsidence.synthetic import DemoCity

    return {"points_side": DEMO_POINTS_SIDE, "n_dates": DEMO_DATES, "seed": DEMO_SEED,
            "n_buildings": DEMO_BUILDINGS, "building_scale": DEMO_BUILDING_SCALE,
            "atmosphere_mm": DEMO_ATMOSPHERE_MM, "noise_mm": DEMO_NOISE_MM,
            "levelling_noise_mm": DEMO_LEVELLING_MM,
            "city": DemoCity(scale=DEMO_SCALE, bowl_width=DEMO_BOWL_WIDTH)}


AREA_ID = "demo-metro-area"
ID_PREFIX = "subsidence-demo-"
#: Marks a tenant whose demo is built, so that ``cityos demo`` run again writes nothing.
DEMO_DOCUMENT = ("subsidence-demo", "built")


def demo_directory(store) -> Path:
    """Where the demo product lives: beside the SQLite file, else ``var/``."""
    path = getattr(store, "path", None)
    if isinstance(path, str) and path not in ("", ":memory:"):
        return Path(path).resolve().parent / "subsidence-demo"
    return Path("var/subsidence-demo").resolve()


def ensure_demo_product(directory: Path):
    """The demo's fitted PointStore and the synthetic files, built when missing."""
    from cityos.apps.subsidence.fit import fit_store
    from cityos.apps.subsidence.points import PointStore, PointStoreError
    from cityos.apps.subsidence.products import read_mintpy
    from cityos.apps.subsidence.synthetic import write_demo_product

    files = directory / "product"
    try:
        points = PointStore.open(directory / "points")
        if points.meta.get("fitted") and (files / "levelling.csv").is_file():
            return points, files
    except PointStoreError:
        pass
    write_demo_product(files, **demo_options())
    points = PointStore.create(directory / "points", read_mintpy(files / "timeseries.h5"))
    fit_store(points)
    return points, files


def _entities(files: Path) -> list[dict]:
    entities = []
    for kind, name in (("Building", "buildings.geojson"), ("LinearAsset", "metro_line.geojson")):
        document = json.loads((files / name).read_text(encoding="utf-8"))
        for number, feature in enumerate(document["features"], start=1):
            props = feature.get("properties") or {}
            local = str(feature.get("id", props.get("id", number)))
            entity = {"id": f"urn:ngsi-ld:{kind}:{ID_PREFIX}{local}", "type": kind,
                      "name": {"type": "Property", "value": str(props.get("name") or local)},
                      "location": {"type": "GeoProperty", "value": feature["geometry"]}}
            if kind == "LinearAsset":
                entity["assetType"] = {"type": "Property", "value": props.get("kind", "rail")}
            entities.append(entity)
    return entities


def build_subsidence_demo(store, tenant: str, at: datetime) -> list[str]:
    """Build the demo's product, area of interest, assets, summaries and comparison.

    Parameters
    ----------
    store : ContextStore
    tenant : str
    at : datetime
        Unused: the product's dates are fixed (the synthetic acquisitions).

    Returns
    -------
    list of str
        The ids of the entities written.
    """
    from cityos.apps.subsidence.api import compare_and_keep
    from cityos.apps.subsidence.customers import publish_product, refresh_tenant, set_area

    points, files = ensure_demo_product(demo_directory(store))
    entities = _entities(files)
    built = store.get_document(tenant, *DEMO_DOCUMENT)
    if built and built.get("points") == str(points.directory):
        # already built on this product: the summaries, alerts and comparison stand
        return [built["area"], *(e["id"] for e in entities)]
    publish_product(store, points.directory, "demo metropolitan product")
    lon, lat = points.lon, points.lat
    west, east, south, north = lon.min(), lon.max(), lat.min(), lat.max()
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    # thresholds of a metro operator watching its line: alert on fast or speeding-up
    # ground, not on the slow regional sinking every building shares
    area = set_area(store, tenant, AREA_ID, "Demo metropolitan area",
                    {"type": "Polygon", "coordinates": [[[round(float(x), 6), round(float(y), 6)]
                                                         for x, y in ring]]},
                    rate_threshold_mm_yr=DEMO_RATE_THRESHOLD,
                    acceleration_threshold_mm_yr2=DEMO_ACCELERATION_THRESHOLD)
    result = store.upsert_entities(tenant, entities, replace=False)
    if result.errors:
        raise ValueError(f"demo subsidence entities refused: {result.errors[0]}")
    refresh_tenant(points, store, tenant)
    compare_and_keep(store, tenant, (files / "levelling.csv").read_text(encoding="utf-8"),
                     DEMO_RADIUS_M, "levelling.csv")
    store.put_document(tenant, *DEMO_DOCUMENT, {"points": str(points.directory),
                                                "area": area.area_id})
    return [area.area_id, *(e["id"] for e in entities)]
