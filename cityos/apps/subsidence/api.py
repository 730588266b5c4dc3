"""The subsidence API, mounted at ``/apps/subsidence``.

Tenancy is the core's: every call acts for the caller's tenant (a customer), and every
point it returns lies inside one of that customer's areas of interest. Data calls are
metered per tenant and endpoint.

=====================================  =========  ============================================
``GET /points?bbox=w,s,e,n``           viewer     points in the box and the caller's areas,
                                                  with fitted columns (vertical mm/yr)
``GET /points/{id}/series``            viewer     a point's series and the fitted model curve
``GET /buildings``                     viewer     the caller's buildings with rate and risk
``GET /assets``                        viewer     the caller's linear assets with rate and risk
``GET /assets/{id}/profile``           viewer     chainage profile of a linear asset
``GET /levelling``                     viewer     the latest levelling comparison (JSON)
``POST /levelling``                    operator   compare a benchmarks CSV (the body)
``GET /areas``                         viewer     the caller's areas of interest
``POST /areas``                        platform   give a customer an area (a ``*`` admin key)
``GET /usage``                         operator   API usage of the tenant; ``?all=true``
                                                  every tenant's (platform key)
``GET /product``                       viewer     the published product: dates, points
``GET /pages/ground|profile|levelling``  public   the dashboard pages (HTML)
=====================================  =========  ============================================
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from cityos.apps.subsidence import customers
from cityos.core.errors import BadRequestData, Forbidden, NgsiLdError, ResourceNotFound
from cityos.core.tenancy import ALL_TENANTS, KEY_KIND, KEYS_TENANT, Caller, get_store, require

router = APIRouter(tags=["subsidence"])
STATIC = Path(__file__).parent / "static"
PAGES = {"ground": "ground.html", "profile": "profile.html", "levelling": "levelling.html"}
MAX_POINTS = 20_000
MAX_CSV_BYTES = 4 * 1024 * 1024
LEVELLING_KIND = "subsidence-levelling"
_open_lock = threading.Lock()
_opened: dict[str, tuple[float, object]] = {}


class ProductUnavailable(NgsiLdError):
    """No product is published (or its files are gone)."""

    error_type, title, status = "ResourceNotFound", "No product", 404


# ======================================================================= helpers
def _json(data, status_code: int = 200) -> Response:
    return Response(orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY
                                 | orjson.OPT_NON_STR_KEYS),
                    status_code=status_code, media_type="application/json")


def _clean(value):
    if isinstance(value, float | np.floating):
        return None if not math.isfinite(value) else round(float(value), 4)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else str(value)[:10]
    return value


def product_points(store):
    """The published PointStore (opened once per change of its files)."""
    from cityos.apps.subsidence.points import PointStore, PointStoreError

    record = customers.published_product(store)
    if record is None:
        raise ProductUnavailable("no InSAR product is published: run `cityos subsidence "
                                 "publish --store DIR`")
    directory = record["directory"]
    try:
        stamp = max((Path(directory) / n).stat().st_mtime
                    for n in ("meta.json", "points.parquet"))
    except OSError:
        raise ProductUnavailable(f"the published product at {directory} is missing") from None
    with _open_lock:
        cached = _opened.get(directory)
        if cached is None or cached[0] != stamp:
            try:
                cached = (stamp, PointStore.open(directory))
            except PointStoreError as error:
                raise ProductUnavailable(str(error)) from None
            _opened[directory] = cached
    return cached[1]


def _allowed(points, store, tenant: str) -> np.ndarray:
    areas = customers.areas_of(store, tenant)
    if not areas:
        raise Forbidden(f"tenant {tenant!r} has no area of interest: the platform operator "
                        "gives one with POST /apps/subsidence/areas")
    return customers.allowed_rows(points, areas)


def metered(endpoint: str):
    """Dependency factory: the caller (at least ``viewer``) with the call counted."""
    def dependency(caller: Caller = Depends(require("viewer")),
                   store=Depends(get_store)) -> Caller:
        customers.meter(store, caller.tenant, endpoint)
        return caller
    return dependency


def _platform(caller: Caller, store) -> bool:
    """Whether the caller is the platform operator (a ``*`` key, or auth off)."""
    if caller.key_id is None:
        return True
    doc = store.get_document(KEYS_TENANT, KEY_KIND, caller.key_id) or {}
    return doc.get("tenant") == ALL_TENANTS


def _bbox(text: str | None) -> tuple[float, float, float, float] | None:
    if text is None:
        return None
    try:
        west, south, east, north = (float(v) for v in text.split(","))
    except ValueError:
        raise BadRequestData(f"bbox: {text!r} is not four numbers west,south,east,north") \
            from None
    if not (west <= east and south <= north) or not all(
            math.isfinite(v) for v in (west, south, east, north)):
        raise BadRequestData("bbox: needs west <= east and south <= north")
    return west, south, east, north


# ======================================================================== points
@router.get("/product")
def product(caller: Caller = Depends(metered("product")), store=Depends(get_store)) -> Response:
    """The published product: epochs, kind, the component the points are shown in
    (``vertical``, or ``los`` for a line-of-sight product without incidence angle), and
    the points in the caller's areas."""
    from cityos.apps.subsidence.levelling import product_kind, shown_scale

    points = product_points(store)
    allowed = _allowed(points, store, caller.tenant)
    dates = np.asarray(points.dates)
    return _json({"dates": [str(d)[:10] for d in dates], "kind": product_kind(points),
                  "component": shown_scale(points, allowed[:0])[1],
                  "first": str(dates[0])[:10], "last": str(dates[-1])[:10],
                  "points_in_areas": int(allowed.size),
                  "areas": [{"id": a.area_id, "name": a.name, "polygon": a.polygon}
                            for a in customers.areas_of(store, caller.tenant)]})


@router.get("/points")
def list_points(bbox: str | None = None, limit: int = MAX_POINTS,
                caller: Caller = Depends(metered("points")),
                store=Depends(get_store)) -> Response:
    """Points inside ``bbox`` (lon/lat) and the caller's areas, with fitted columns.

    ``velocity_mm_yr`` is vertical, or in the product's own direction where it gives no
    vertical motion (``component``: ``vertical``, ``los`` or ``east``); at most ``limit``
    points (evenly thinned, with ``thinned`` true) come back.
    """
    from cityos.apps.subsidence.levelling import shown_scale

    if not 1 <= limit <= MAX_POINTS:
        raise BadRequestData(f"limit: must be 1..{MAX_POINTS}")
    points = product_points(store)
    allowed = _allowed(points, store, caller.tenant)
    box = _bbox(bbox)
    rows = allowed if box is None else np.intersect1d(
        np.asarray(points.select_bbox(*box), dtype=np.int64), allowed)
    total = int(rows.size)
    if rows.size > limit:
        rows = rows[np.linspace(0, rows.size - 1, limit).astype(np.int64)]
    try:
        fitted = points.fitted(rows)
    except ValueError:
        fitted = {}
    scale, component = shown_scale(points, rows)
    columns = {"velocity_mm_yr": "velocity_mm_yr", "velocity_se": "velocity_se",
               "acceleration_mm_yr2": "acceleration_mm_yr2",
               "seasonal_amplitude_mm": "seasonal_amplitude_mm", "rms_mm": "rms_mm",
               "coherence": "coherence", "trend_change": "trend_change",
               "break_date": "break_date"}
    scaled = {"velocity_mm_yr", "velocity_se", "acceleration_mm_yr2", "seasonal_amplitude_mm",
              "rms_mm"}
    values = {}
    for name, column in columns.items():
        if column in fitted:
            data = np.asarray(fitted[column])
            values[name] = data * scale if name in scaled else data
    ids, lon, lat = np.asarray(points.ids)[rows], np.asarray(points.lon)[rows], \
        np.asarray(points.lat)[rows]
    body = [{"id": str(ids[k]), "lon": round(float(lon[k]), 7), "lat": round(float(lat[k]), 7),
             **{name: _clean(v[k]) for name, v in values.items()}} for k in range(rows.size)]
    return _json({"points": body, "total": total, "thinned": total > rows.size,
                  "component": component, "last": str(np.asarray(points.dates)[-1])[:10]})


def point_series(points, row: int) -> dict:
    """A point's series, vertical where the product gives it (``component``), and the
    fitted model (linear, acceleration, annual)."""
    from cityos.apps.subsidence.fit import design_matrix
    from cityos.apps.subsidence.levelling import shown_scale

    rows = np.array([row])
    scale, component = shown_scale(points, rows)
    series = np.asarray(points.displacement(rows), np.float64)[0] * scale[0]
    good = np.isfinite(series)
    dates = np.asarray(points.dates, dtype="datetime64[D]")
    model = np.full(series.size, np.nan)
    if good.sum() > 5:
        design = design_matrix(dates[good])
        coefficients = design.pinv @ series[good]
        model[good] = design.matrix @ coefficients
    try:
        fitted = {k: _clean(np.asarray(v)[0]) for k, v in points.fitted(rows).items()}
    except ValueError:
        fitted = {}
    return {"id": str(np.asarray(points.ids)[row]), "lon": float(np.asarray(points.lon)[row]),
            "lat": float(np.asarray(points.lat)[row]), "dates": [str(d) for d in dates],
            "component": component, "displacement_mm": [_clean(v) for v in series],
            "model_mm": [_clean(v) for v in model], "fitted": fitted}


@router.get("/points/{point_id}/series")
def series(point_id: str, caller: Caller = Depends(metered("series")),
           store=Depends(get_store)) -> Response:
    """A point's displacement series (vertical mm) with the fitted model curve."""
    points = product_points(store)
    allowed = _allowed(points, store, caller.tenant)
    ids = np.asarray(points.ids)[allowed]
    match = np.flatnonzero(ids.astype(str) == point_id)
    if match.size == 0:  # a point outside the caller's areas does not exist for it
        raise ResourceNotFound(f"point {point_id} does not exist")
    return _json(point_series(points, int(allowed[match[0]])))


# ======================================================================== assets
_SUMMARY = ("name", "subsidenceRate", "subsidenceRateMin", "subsidenceAcceleration",
            "cumulativeDisplacement", "differentialSettlement", "angularDistortion",
            "damageCategory", "damageCategoryName", "rateClass", "riskClass", "trendChange",
            "insarPointCount", "lastAcquisition", "lengthMetres", "assetType",
            "subsidenceExceeded")


def _summary(entity: dict) -> dict:
    from cityos.apps.subsidence.customers import _value

    return {"id": entity["id"], "type": entity["type"],
            "location": _value(entity, "location"),
            **{name: _value(entity, name) for name in _SUMMARY}}


@router.get("/buildings")
def buildings(caller: Caller = Depends(metered("buildings")),
              store=Depends(get_store)) -> Response:
    """The caller's buildings with their rate, angular distortion and risk."""
    rows = [_summary(r.entity) for r in store.scan(caller.tenant,
                                                   types=[customers.BUILDING_TYPE])]
    return _json([r for r in rows if r["riskClass"] is not None])


@router.get("/assets")
def assets(caller: Caller = Depends(metered("assets")), store=Depends(get_store)) -> Response:
    """The caller's linear assets with their rate and risk."""
    return _json([_summary(r.entity) for r in store.scan(caller.tenant,
                                                         types=[customers.LINEAR_TYPE])])


@router.get("/assets/{asset}/profile")
def asset_profile(asset: str, buffer_m: float = 50.0, bin_m: float = 50.0,
                  caller: Caller = Depends(metered("profile")),
                  store=Depends(get_store)) -> Response:
    """The chainage profile of one of the caller's linear assets."""
    from shapely.geometry import shape

    from cityos.apps.subsidence.assets import LinearAsset, chainage_profile
    from cityos.apps.subsidence.customers import _value

    if not (0 < buffer_m <= 1000 and 1 <= bin_m <= 10_000):
        raise BadRequestData("buffer_m must be in (0, 1000] and bin_m in [1, 10000]")
    entity_id = asset if asset.startswith("urn:") else f"urn:ngsi-ld:LinearAsset:{asset}"
    found = list(store.scan(caller.tenant, ids=[entity_id]))
    if not found:
        raise ResourceNotFound(f"linear asset {asset} does not exist")
    entity = found[0].entity
    geometry = _value(entity, "location")
    if not isinstance(geometry, dict) or geometry.get("type") != "LineString":
        raise BadRequestData(f"{entity_id}: location is not a LineString")
    points = product_points(store)
    allowed = _allowed(points, store, caller.tenant)
    line = LinearAsset(entity_id, str(_value(entity, "name") or asset), "other", shape(geometry))
    profile = chainage_profile(points, line, buffer_m=buffer_m, bin_m=bin_m,
                               allowed_rows=allowed)
    return _json({**profile.to_json(), "name": line.name, "geometry": geometry})


# ===================================================================== levelling
@router.get("/levelling")
def levelling(caller: Caller = Depends(metered("levelling")),
              store=Depends(get_store)) -> Response:
    """The tenant's latest levelling comparison."""
    doc = store.get_document(caller.tenant, LEVELLING_KIND, "latest")
    if doc is None:
        raise ResourceNotFound("no levelling comparison yet: POST a benchmarks CSV to "
                               "/apps/subsidence/levelling")
    return _json(doc)


def compare_and_keep(store, tenant: str, text: str, radius_m: float,
                     source: str = "levelling.csv") -> dict:
    """Compare a benchmarks CSV with the product inside the tenant's areas; keep the
    result as the tenant's latest comparison."""
    from cityos.apps.subsidence.levelling import (
        LevellingFormatError,
        compare_levelling,
        parse_levelling_csv,
    )

    try:
        benchmarks = parse_levelling_csv(text, source)
    except LevellingFormatError as error:
        raise BadRequestData(str(error)) from None
    points = product_points(store)
    comparison = compare_levelling(points, benchmarks, radius_m,
                                   allowed_rows=_allowed(points, store, tenant))
    doc = comparison.to_json()
    store.put_document(tenant, LEVELLING_KIND, "latest", doc)
    return doc


@router.post("/levelling")
async def post_levelling(request: Request, radius_m: float = 100.0,
                         caller: Caller = Depends(require("operator")),
                         store=Depends(get_store)) -> Response:
    """Compare a benchmarks CSV (the request body, ``text/csv``) with the product."""
    if not 0 < radius_m <= 2000:
        raise BadRequestData("radius_m must be in (0, 2000]")
    raw = await request.body()
    if len(raw) > MAX_CSV_BYTES:
        raise BadRequestData(f"the CSV is larger than {MAX_CSV_BYTES} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequestData("the CSV is not UTF-8 text") from None
    await run_in_threadpool(customers.meter, store, caller.tenant, "levelling-compare")
    doc = await run_in_threadpool(compare_and_keep, store, caller.tenant, text, radius_m)
    return _json(doc)


# ========================================================================= areas
@router.get("/areas")
def areas(caller: Caller = Depends(require("viewer")), store=Depends(get_store)) -> Response:
    """The caller's areas of interest and their thresholds."""
    return _json([a.__dict__ for a in customers.areas_of(store, caller.tenant)])


@router.post("/areas", status_code=201)
async def post_area(request: Request, caller: Caller = Depends(require("admin")),
                    store=Depends(get_store)) -> Response:
    """Give the tenant (``NGSILD-Tenant``) an area of interest: ``id``, ``name``,
    ``polygon`` (GeoJSON), ``rateThreshold``, ``accelerationThreshold``,
    ``trendChangeAlert``. Platform operators only (a ``*`` key)."""
    if not _platform(caller, store):
        raise Forbidden("areas of interest are set by the platform operator (a '*' key)")
    try:
        data = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError as error:
        raise BadRequestData(f"request body is not valid JSON: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise BadRequestData("id: an area needs an id (text)")
    area = customers.set_area(
        store, caller.tenant, data["id"], str(data.get("name") or data["id"]),
        data.get("polygon"),
        rate_threshold_mm_yr=data.get("rateThreshold", customers.DEFAULT_RATE_THRESHOLD),
        acceleration_threshold_mm_yr2=data.get("accelerationThreshold",
                                               customers.DEFAULT_ACCELERATION_THRESHOLD),
        trend_change_alert=bool(data.get("trendChangeAlert", True)))
    return _json(area.__dict__, status_code=201)


# ========================================================================= usage
@router.get("/usage")
def get_usage(all: bool = False, caller: Caller = Depends(require("operator")),  # noqa: A002
              store=Depends(get_store)) -> Response:
    """API usage per endpoint: the caller's tenant, or every tenant (``all=true``,
    platform keys only)."""
    if all:
        if not _platform(caller, store):
            raise Forbidden("all=true needs a platform key (tenant '*')")
        return _json(customers.usage(store))
    return _json(customers.usage(store, caller.tenant))


# ========================================================================= pages
@router.get("/pages/{page}", include_in_schema=False)
def page(page: str) -> Response:
    """The ground motion, profile and levelling pages (dashboard views)."""
    if page not in PAGES:
        raise ResourceNotFound(f"no page {page!r}")
    return HTMLResponse((STATIC / PAGES[page]).read_text(encoding="utf-8"),
                        headers={"Cache-Control": "no-cache"})
