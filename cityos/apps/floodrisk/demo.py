"""The demo city's flood-risk results, and a tiny study that computes them in seconds.

:func:`write_tiny_study` writes a small, complete study (a 24 x 24-cell bowl of 10-m
cells near the demo city's centre, with houses, shops and a road, three return periods
and one package of measures); tests use it end to end. :func:`build_floodrisk_demo` is
the builder ``cityos demo`` runs (see :mod:`cityos.demo`): it runs the tiny study (a
couple of seconds on the NumPy engine), then writes, with fixed ids,

- ``FloodHazardArea`` polygons: the maximum-depth classes of the 50-year storm without
  measures and with the package (``scenario`` = ``baseline`` or the package name), for
  the dashboard layer (:mod:`.web`);
- a ``FloodRiskStudy`` entity with the headline numbers;

and stores the study summary and the HTML report as documents for the API (:mod:`.api`).
The full-size demo study (the new-town catchment of :mod:`.catchment`) runs with
``cityos floodrisk run``.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np
import yaml
from shapely.geometry import LineString, box, mapping

from cityos.appkit.demo import CITY_CENTRE
from cityos.core.geo import utm_epsg

STUDY_TYPE = "FloodRiskStudy"
AREA_TYPE = "FloodHazardArea"
DOC_KIND = "floodrisk-study"
DEMO_STUDY_ID = "demo-city"
#: Lower bounds (m) of the depth classes drawn on the map.
DEPTH_CLASSES_M = (0.10, 0.25, 0.50, 1.00)
TINY_SIZE = 24
TINY_CELL_M = 10.0
#: Offset of the tiny catchment from the demo city's centre (degrees; south-east of it).
TINY_OFFSET_DEG = (0.012, -0.010)


def _geojson(path: Path, features: list[tuple[object, dict]], crs: str) -> str:
    doc = {"type": "FeatureCollection",
           "crs": {"type": "name", "properties": {"name": crs}},
           "features": [{"type": "Feature", "geometry": mapping(g), "properties": p}
                        for g, p in features]}
    path.write_text(json.dumps(doc))
    return path.name


def write_tiny_study(directory: str | Path, *, size: int = TINY_SIZE,
                     cell_size_m: float = TINY_CELL_M, engine: str = "numpy",
                     return_periods: tuple[float, ...] = (2, 10, 50),
                     origin_lonlat: tuple[float, float] | None = None) -> Path:
    """Write a small, complete flood-risk study; return the study.yaml path.

    The ground is a cone (2 % slopes) around a low centre where storm water ponds, with a
    ring of houses and shops at different heights above the centre and a road across it.
    The package ``pond_and_drains`` digs a 0.8 m retention pond at the centre and adds
    30 mm/h of drainage.

    Parameters
    ----------
    directory : path
        Created if missing.
    size : int
        Cells per side.
    cell_size_m : float
    engine : str
        The solver engine (``numpy`` keeps tests free of compilation).
    return_periods : tuple of float
    origin_lonlat : (float, float), optional
        The catchment's centre; default near the demo city's centre.
    """
    from cityos.apps.floodrisk.grid import GridSpec, write_geotiff

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lon, lat = origin_lonlat or (CITY_CENTRE[0] + TINY_OFFSET_DEG[0],
                                 CITY_CENTRE[1] + TINY_OFFSET_DEG[1])
    crs = f"EPSG:{utm_epsg(lon, lat)}"
    from pyproj import Transformer

    cx, cy = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
    half = size * cell_size_m / 2
    west, north = round(cx - half), round(cy + half)
    grid = GridSpec.from_origin(west, north, cell_size_m, (size, size), crs)
    rows, cols = np.indices(grid.shape)
    x, y = grid.xy(rows, cols)
    centre_x, centre_y = west + half, north - half
    radius = np.hypot(x - centre_x, y - centre_y)
    write_geotiff(directory / "dem.tif", (2.0 + 0.02 * radius).astype("float32"), grid,
                  description="elevation (m)")
    landcover = np.where(radius < 0.35 * half, 2, 1).astype("uint8")  # 2: paved centre
    write_geotiff(directory / "landcover.tif", landcover, grid, description="land cover")
    buildings = []
    rng = np.random.default_rng(7)
    for i, angle in enumerate(np.linspace(0, 2 * np.pi, 16, endpoint=False)):
        r = half * (0.2 + 0.6 * (i % 4) / 3)
        bx, by = centre_x + r * math.cos(angle), centre_y + r * math.sin(angle)
        use = "commercial" if i % 5 == 0 else "residential"
        side = 8.0 if use == "residential" else 12.0
        buildings.append((box(bx - side / 2, by - side / 2, bx + side / 2, by + side / 2),
                          {"id": f"b{i:02d}", "use_class": use,
                           "value": float(round(rng.uniform(0.8, 1.2) * 150_000 * side / 8)),
                           "floor_height_m": 0.15, "people": 4 if use == "residential" else 12}))
    _geojson(directory / "buildings.geojson", buildings, crs)
    road = LineString([(west + 5, centre_y + 3), (west + 2 * half - 5, centre_y + 3)])
    _geojson(directory / "roads.geojson", [(road, {"name": "main road"})], crs)
    pond = box(centre_x - 25, centre_y - 25, centre_x + 25, centre_y + 25)
    study = {
        "name": "Tiny bowl (demo)",
        "inputs": {
            "dem": "dem.tif",
            "landcover": {"raster": "landcover.tif", "manning": {1: 0.05, 2: 0.015},
                          "curve_number": {1: 75, 2: 95}},
            "soil": {"curve_number": "landcover"},
            "buildings": "buildings.geojson",
            "roads": "roads.geojson",
            "boundary": "closed",
        },
        "rainfall": {"idf": {"parameters": {"form": "sherman", "a": 1800.0, "b": 15.0,
                                            "n": 0.8, "m": 0.18}},
                     "hyetograph": "alternating_block", "duration_min": 60, "step_min": 10},
        "return_periods": [float(t) for t in return_periods],
        "simulation": {"duration_h": 1.5, "engine": engine},
        "packages": {"pond_and_drains": [
            {"type": "retention_pond", "name": "central pond",
             "polygon": [list(c) for c in pond.exterior.coords], "depth_m": 0.8,
             "capital_cost": 250_000.0, "annual_cost": 5_000.0},
            {"type": "drainage_upgrade", "name": "bigger drains", "extra_mm_h": 30.0,
             "capital_cost": 150_000.0, "annual_cost": 3_000.0},
        ]},
        "economics": {"discount_rate": 0.06, "lifetime_years": 30, "loading_factor": 0.3,
                      "currency": "USD"},
        "damage": {"curves": "jrc-asia"},
        "headline": {"return_period": 50},
    }
    path = directory / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


# ==================================================================== entities
def _prop(value, **members) -> dict:
    return {"type": "Property", "value": value, **members}


def hazard_polygons(depth: np.ndarray, grid, classes_m=DEPTH_CLASSES_M) -> list[dict]:
    """Polygons (WGS84 GeoJSON geometries) of the maximum-depth classes.

    Returns a list of ``{"min_depth_m", "max_depth_m", "area_m2", "geometry"}``, one per
    class that has cells, shallowest first (``max_depth_m`` None for the deepest class).
    """
    import shapely
    from pyproj import Transformer
    from rasterio import features
    from shapely.geometry import shape

    depth = np.nan_to_num(np.asarray(depth, dtype=float), nan=0.0)
    to_wgs84 = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform
    out = []
    for i, low in enumerate(classes_m):
        high = classes_m[i + 1] if i + 1 < len(classes_m) else None
        mask = (depth > low) & (depth <= high if high is not None else True)
        if not mask.any():
            continue
        polygons = [shape(g) for g, _ in features.shapes(mask.astype("uint8"), mask=mask,
                                                          transform=grid.transform)]
        merged = shapely.union_all(polygons).simplify(grid.cell_size * 0.25)
        geometry = shapely.transform(merged, lambda xy: np.column_stack(
            to_wgs84(xy[:, 0], xy[:, 1])))
        out.append({"min_depth_m": low, "max_depth_m": high,
                    "area_m2": float(mask.sum()) * grid.cell_size ** 2,
                    "geometry": mapping(geometry)})
    return out


def _rounded(geometry: dict, digits: int = 7) -> dict:
    """The geometry with coordinates to ``digits`` decimals (1 cm at 7): the same
    study gives the same entity, whatever the last bits of its floating point."""
    def walk(value):
        if isinstance(value, (list, tuple)):
            return [walk(v) for v in value]
        return round(float(value), digits)

    return {**geometry, "coordinates": walk(geometry["coordinates"])}


def hazard_area_entities(results, package: str, return_period: float, *,
                         study_id: str = DEMO_STUDY_ID) -> list[dict]:
    """``FloodHazardArea`` entities of one run's depth classes (NGSI-LD, normalised)."""
    from cityos.apps.floodrisk.grid import read_raster

    run = results.run(package, return_period)
    depth, grid = read_raster(run.raster("max_depth_m"))
    entities = []
    for item in hazard_polygons(depth, grid):
        low, high = item["min_depth_m"], item["max_depth_m"]
        label = f"> {low:g} m" if high is None else f"{low:g}-{high:g} m"
        local = f"{study_id}:{package}:T{return_period:g}:d{int(round(low * 100))}"
        entities.append({
            "id": f"urn:ngsi-ld:{AREA_TYPE}:{local}", "type": AREA_TYPE,
            "name": _prop(f"{return_period:g}-year flood, {package}: {label}"),
            "location": {"type": "GeoProperty", "value": _rounded(item["geometry"])},
            "minDepth": _prop(low, unitCode="MTR"),
            **({"maxDepth": _prop(high, unitCode="MTR")} if high is not None else {}),
            "depthClass": _prop(label),
            "area": _prop(round(item["area_m2"], 1), unitCode="MTK"),
            "returnPeriod": _prop(return_period, unitCode="ANN"),
            "scenario": _prop(package),
            "refFloodRiskStudy": {"type": "Relationship",
                                  "object": f"urn:ngsi-ld:{STUDY_TYPE}:{study_id}"},
        })
    return entities


def study_entity(results, *, study_id: str = DEMO_STUDY_ID) -> dict:
    """The ``FloodRiskStudy`` entity: the headline numbers, located at the study area."""
    from pyproj import Transformer

    grid = results.grid
    t = grid["transform"]
    ny, nx = grid["shape"]
    to_wgs84 = Transformer.from_crs(grid["crs"], "EPSG:4326", always_xy=True).transform
    lon, lat = to_wgs84(t[2] + t[0] * nx / 2, t[5] + t[4] * ny / 2)
    h = results.headline
    attrs = {k: v for k, v in h.items() if isinstance(v, int | float) and v is not None}
    return {"id": f"urn:ngsi-ld:{STUDY_TYPE}:{study_id}", "type": STUDY_TYPE,
            "name": _prop(results.name),
            "location": {"type": "GeoProperty",
                         "value": {"type": "Point", "coordinates": [lon, lat]}},
            "headline": _prop(attrs), "package": _prop(h.get("package") or ""),
            "expectedAnnualDamage": _prop(results.baseline_ead),
            "currency": _prop(results.economics.get("currency", ""))}


def publish_study(store, tenant: str, results, *, study_id: str, package: str | None = None,
                  return_period: float | None = None, report_html: str | None = None
                  ) -> list[str]:
    """Store a study's summary (and report) as documents and its hazard areas and study
    entity as entities; return the entity ids."""
    from cityos.core.entities import normalise_entity

    if not re.match(r"^[A-Za-z0-9._~\-]{1,64}$", study_id):
        raise ValueError(f"study id {study_id!r}: use 1-64 letters, digits, '.', '_', '~' "
                         "or '-'")
    h = results.headline
    period = return_period or h["return_period"]
    chosen = [p for p in ("baseline", package or h.get("package")) if p]
    entities = [study_entity(results, study_id=study_id)]
    for name in dict.fromkeys(chosen):
        entities += hazard_area_entities(results, name, period, study_id=study_id)
    wanted = [normalise_entity(e) for e in entities]
    # an entity already stored as wanted is not written again (no new modifiedAt)
    stored = {r.id: r.entity for r in store.scan(tenant, ids=[e["id"] for e in wanted])}
    changed = [e for e in wanted if stored.get(e["id"]) != e]
    outcome = store.upsert_entities(tenant, changed, replace=True)
    if outcome.errors:
        from cityos.core.store.base import _error_from_problem

        raise _error_from_problem(outcome.errors[0]["error"])
    summary = json.loads(json.dumps(results.to_dict(), default=str))
    store.put_document(tenant, DOC_KIND, study_id, {"id": study_id, "name": results.name,
                                                    "summary": summary,
                                                    "report_html": report_html})
    return [e["id"] for e in wanted]


def build_floodrisk_demo(store, tenant: str, at: datetime) -> list[str]:
    """Run the tiny study and publish it as the demo city's flood-risk study.

    Idempotent: fixed ids, entities replaced. ``at`` is unused (the study has no history).
    """
    from cityos.apps.floodrisk.report import render_report
    from cityos.apps.floodrisk.study import run_study

    with tempfile.TemporaryDirectory(prefix="floodrisk-demo-") as tmp:
        study = write_tiny_study(Path(tmp) / "study")
        results = run_study(study, Path(tmp) / "out", workers=1)
        html = render_report(results)
        return publish_study(store, tenant, results, study_id=DEMO_STUDY_ID, report_html=html)
