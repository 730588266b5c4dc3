"""One processed product, many customers: areas of interest, summaries, alerts, metering.

The metro area is processed once (one :class:`~cityos.apps.subsidence.points.PointStore`,
the *published* product, :func:`publish_product`). Each customer (a railway, an
insurer, a developer) is a CityOS tenant:

- its **areas of interest** are what it pays for. The platform operator sets them
  (:func:`set_area`); they are kept as documents of the tenant, which a customer's key
  cannot write, and mirrored as ``SubsidenceArea`` entities for its map. Every point
  a customer sees lies inside one of its areas (:func:`allowed_rows`);
- its **assets** are its own entities: ``Building`` (Polygon footprint) and
  ``LinearAsset`` (LineString: rail, canal, road). After each new acquisition,
  :func:`refresh_customers` writes onto every asset inside the customer's areas its
  summary (rate, cumulative displacement, angular distortion, damage category, risk
  class, last acquisition; each value observed at the last acquisition, so the
  entity's history is one row per acquisition);
- **thresholds** of each area (rate mm/yr, acceleration mm/yr^2, trend change) raise an
  ``Alert`` entity in the customer's tenant when an asset starts exceeding one (an
  asset that stays over a threshold is not alerted again at every acquisition);
- **API usage** is metered per tenant and endpoint (:func:`meter`), kept as documents
  and read back by the platform operator (:func:`usage`).
"""

from __future__ import annotations

import logging
import math
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from shapely.geometry import shape

from cityos.apps.subsidence.assets import (
    DEFAULT_BIN_M,
    DEFAULT_BUFFER_M,
    LinearAsset,
    chainage_profile,
)
from cityos.apps.subsidence.buildings import (
    RATE_LIMITS_MM_YR,
    Footprint,
    damage_category,
    rate_class,
    risk_class,
    summarise_building,
)
from cityos.core.errors import AlreadyExists, BadRequestData
from cityos.core.timefmt import format_datetime, now_utc

log = logging.getLogger(__name__)

AREA_TYPE = "SubsidenceArea"
BUILDING_TYPE = "Building"
LINEAR_TYPE = "LinearAsset"
AREA_KIND = "subsidence-area"       # documents of a tenant: its areas of interest
USAGE_KIND = "subsidence-usage"     # documents of a tenant: its API usage per endpoint
PLATFORM_TENANT = "@subsidence"     # documents outside every tenant: the published product
PRODUCT_KIND = "product"
DEFAULT_RATE_THRESHOLD = 10.0          # mm/yr
DEFAULT_ACCELERATION_THRESHOLD = 2.0   # mm/yr^2
_usage_lock = threading.Lock()
_SAFE = re.compile(r"[^A-Za-z0-9._~-]+")


# ===================================================================== the product
def publish_product(store, directory: str | Path, name: str = "") -> dict:
    """Make the point store at ``directory`` the product every customer is served."""
    doc = {"directory": str(Path(directory).resolve()), "name": name or Path(directory).name,
           "published": format_datetime(now_utc())}
    store.put_document(PLATFORM_TENANT, PRODUCT_KIND, "current", doc)
    return doc


def published_product(store) -> dict | None:
    """The published product's record (``directory``, ``name``, ``published``), or None."""
    return store.get_document(PLATFORM_TENANT, PRODUCT_KIND, "current")


def open_published(store):
    """The published :class:`PointStore`, or None when none is published."""
    from cityos.apps.subsidence.points import PointStore

    doc = published_product(store)
    if doc is None:
        return None
    return PointStore.open(doc["directory"])


# =========================================================================== areas
@dataclass
class Area:
    """A customer's area of interest and its alert thresholds."""

    area_id: str
    name: str
    polygon: dict
    rate_threshold_mm_yr: float = DEFAULT_RATE_THRESHOLD
    acceleration_threshold_mm_yr2: float = DEFAULT_ACCELERATION_THRESHOLD
    trend_change_alert: bool = True

    @property
    def geometry(self):
        return shape(self.polygon)

    def entity(self) -> dict:
        """The ``SubsidenceArea`` entity that shows the area on the customer's map."""
        return {"id": self.area_id, "type": AREA_TYPE, "name": _prop(self.name),
                "location": {"type": "GeoProperty", "value": self.polygon},
                "rateThreshold": _prop(self.rate_threshold_mm_yr, unitCode="H_mm_yr"),
                "accelerationThreshold": _prop(self.acceleration_threshold_mm_yr2),
                "trendChangeAlert": _prop(self.trend_change_alert)}


def _prop(value, **members) -> dict:
    return {"type": "Property", "value": value, **members}


def _local(entity_id: str) -> str:
    return _SAFE.sub("-", entity_id.rsplit(":", 1)[-1])[:64] or "x"


def area_id(local: str) -> str:
    return local if local.startswith("urn:") else f"urn:ngsi-ld:{AREA_TYPE}:{local}"


def set_area(store, tenant: str, local_id: str, name: str, polygon: dict, *,
             rate_threshold_mm_yr: float = DEFAULT_RATE_THRESHOLD,
             acceleration_threshold_mm_yr2: float = DEFAULT_ACCELERATION_THRESHOLD,
             trend_change_alert: bool = True) -> Area:
    """Give a customer an area of interest (or change one); the platform's act.

    Raises
    ------
    BadRequestData
        The polygon is not a valid Polygon/MultiPolygon or a threshold is not positive.
    """
    from cityos.core.geo import validate_geometry

    if not isinstance(polygon, dict) or polygon.get("type") not in ("Polygon", "MultiPolygon"):
        raise BadRequestData("polygon: an area of interest must be a GeoJSON Polygon")
    validate_geometry(polygon, "polygon")
    for value, field_name in ((rate_threshold_mm_yr, "rateThreshold"),
                              (acceleration_threshold_mm_yr2, "accelerationThreshold")):
        if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise BadRequestData(f"{field_name}: {value!r} must be a positive number")
    area = Area(area_id(local_id), name or local_id, polygon, float(rate_threshold_mm_yr),
                float(acceleration_threshold_mm_yr2), bool(trend_change_alert))
    store.put_document(tenant, AREA_KIND, area.area_id, area.__dict__)
    store.upsert_entities(tenant, [area.entity()], replace=False)
    return area


def areas_of(store, tenant: str) -> list[Area]:
    """The customer's areas of interest (from the platform's documents)."""
    return [Area(**doc) for doc in store.list_documents(tenant, AREA_KIND, limit=10_000)]


def customer_tenants(store) -> list[str]:
    """Tenants that have at least one area of interest."""
    return [t for t in store.tenants() if not t.startswith("@") and areas_of(store, t)]


def allowed_rows(points, areas: list[Area]) -> np.ndarray:
    """Rows of the product inside any of the areas (sorted, unique)."""
    found = [np.asarray(points.select_polygon(a.geometry), dtype=np.int64) for a in areas]
    if not found:
        return np.array([], dtype=np.int64)
    return np.unique(np.concatenate(found))


# ====================================================================== summaries
def _value(entity: dict, name: str, default=None):
    attribute = entity.get(name)
    if isinstance(attribute, list):
        attribute = attribute[0] if attribute else None
    if isinstance(attribute, dict):
        return attribute.get("value", attribute.get("object", default))
    return default


def _finite(value) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 4)


def _point_trends(points, rows: np.ndarray) -> tuple[float, bool]:
    """Mean fitted acceleration of ``rows`` and whether most of them changed trend."""
    if rows.size == 0:
        return float("nan"), False
    try:
        fitted = points.fitted(rows) or {}
    except ValueError:  # not fitted yet
        fitted = {}
    accel = np.asarray(fitted.get("acceleration_mm_yr2", np.full(rows.size, np.nan)), float)
    changed = np.asarray(fitted.get("trend_change", np.zeros(rows.size, bool)), bool)
    mean_accel = float(np.nanmean(accel)) if np.isfinite(accel).any() else float("nan")
    return mean_accel, bool(changed.mean() > 0.5)


@dataclass
class AssetState:
    """What :func:`refresh_customers` found for one asset."""

    entity_id: str
    entity_type: str
    name: str
    rate_mm_yr: float
    acceleration_mm_yr2: float
    trend_changed: bool
    risk_class: str
    points: int
    exceeded: list[str] = field(default_factory=list)
    location: dict | None = None


def _thresholds(areas: list[Area], geometry) -> tuple[float, float, bool] | None:
    """The strictest thresholds of the areas ``geometry`` meets; None when none."""
    hit = [a for a in areas if a.geometry.intersects(geometry)]
    if not hit:
        return None
    return (min(a.rate_threshold_mm_yr for a in hit),
            min(a.acceleration_threshold_mm_yr2 for a in hit),
            any(a.trend_change_alert for a in hit))


def _exceeded(state: AssetState, thresholds) -> list[str]:
    rate_limit, accel_limit, trend = thresholds
    kinds = []
    if math.isfinite(state.rate_mm_yr) and abs(state.rate_mm_yr) >= rate_limit:
        kinds.append("rate")
    if math.isfinite(state.acceleration_mm_yr2) and abs(state.acceleration_mm_yr2) >= accel_limit:
        kinds.append("acceleration")
    if trend and state.trend_changed:
        kinds.append("trend-change")
    return kinds


def _building_fragment(entity_id: str, summary, accel: float, trend: bool, observed: str,
                       exceeded: list[str]) -> dict:
    def p(value, **kw):
        return {"type": "Property", "value": value, "observedAt": observed, **kw}

    return {"id": entity_id, "type": BUILDING_TYPE,
            "subsidenceRate": p(_finite(summary.mean_rate_mm_yr), unitCode="H_mm_yr"),
            "subsidenceRateMin": p(_finite(summary.min_rate_mm_yr)),
            "subsidenceAcceleration": p(_finite(accel)),
            "cumulativeDisplacement": p(_finite(summary.cumulative_mm), unitCode="MMT"),
            "differentialSettlement": p(_finite(summary.differential_settlement_mm),
                                        unitCode="MMT"),
            "angularDistortion": p(_finite(summary.angular_distortion)),
            "damageCategory": p(summary.damage_category),
            "damageCategoryName": p(summary.damage_name),
            "rateClass": p(summary.rate_class), "riskClass": p(summary.risk_class),
            "trendChange": p(trend), "insarPointCount": p(summary.n_points),
            "lastAcquisition": p(summary.last_date),
            "subsidenceExceeded": p(exceeded)}


def _linear_summary(points, asset: LinearAsset, rows: np.ndarray, buffer_m: float,
                    bin_m: float):
    profile = chainage_profile(points, asset, buffer_m=buffer_m, bin_m=bin_m,
                               allowed_rows=rows)
    rates = profile.point_rate_mm_yr
    mean_rate = float(np.nanmean(rates)) if np.isfinite(rates).any() else float("nan")
    worst = float(np.nanmin(profile.rate_mm_yr)) if np.isfinite(profile.rate_mm_yr).any() \
        else float("nan")
    # angular distortion along the line: cumulative difference between adjacent bins
    cumulative = profile.cumulative_mm
    pairs = np.isfinite(cumulative[:-1]) & np.isfinite(cumulative[1:])
    spacing = np.diff(profile.chainage_m)
    beta = float(np.max(np.abs(np.diff(cumulative))[pairs] / 1000.0 / spacing[pairs])) \
        if pairs.any() else float("nan")
    category = damage_category(beta)
    klass = rate_class(worst)
    return profile, mean_rate, worst, beta, category, klass, risk_class(category, klass)


def _alert_id(kind: str, entity_id: str, day: str) -> str:
    return f"urn:ngsi-ld:Alert:subsidence-{kind}-{_local(entity_id)}-{day.replace('-', '')}"


def _raise(store, tenant: str, state: AssetState, kind: str, thresholds, day: str) -> str | None:
    from cityos.core.alerts import alert_entity, raise_alert

    rate_limit, accel_limit, _ = thresholds
    if kind == "rate":
        direction = "sinking" if state.rate_mm_yr < 0 else "rising"
        text = (f"{state.name} is {direction} at {abs(state.rate_mm_yr):.1f} mm/yr "
                f"(threshold {rate_limit:g} mm/yr), acquisition {day}")
        severity = "high" if abs(state.rate_mm_yr) >= 2 * rate_limit else "medium"
    elif kind == "acceleration":
        text = (f"{state.name}: ground motion accelerating at "
                f"{state.acceleration_mm_yr2:+.1f} mm/yr² (threshold {accel_limit:g}), "
                f"acquisition {day}")
        severity = "medium"
    else:
        text = f"{state.name}: the ground motion changed trend, acquisition {day}"
        severity = "medium"
    alert_id = _alert_id(kind, state.entity_id, day)
    entity = alert_entity(alert_id, category="naturalDisaster", sub_category="subsidence",
                          severity=severity, description=text, location=state.location,
                          alert_source=state.entity_id)
    try:
        raise_alert(store, tenant, entity)
    except AlreadyExists:
        return None
    return alert_id


@dataclass
class RefreshResult:
    """What a refresh did in one tenant."""

    tenant: str
    assets: list[AssetState] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    points_in_areas: int = 0


def refresh_tenant(points, store, tenant: str, *, buffer_m: float = DEFAULT_BUFFER_M,
                   bin_m: float = DEFAULT_BIN_M) -> RefreshResult:
    """Summarise one customer's assets from ``points`` and raise its alerts."""
    result = RefreshResult(tenant)
    areas = areas_of(store, tenant)
    if not areas:
        return result
    rows = allowed_rows(points, areas)
    result.points_in_areas = int(rows.size)
    day = str(np.asarray(points.dates)[-1])[:10]
    observed = f"{day}T00:00:00Z"
    fragments: list[dict] = []
    area_fragments = []
    for area in areas:
        inside = np.asarray(points.select_polygon(area.geometry), dtype=np.int64)
        fitted = points.fitted(inside) if inside.size else {}
        velocity = np.asarray(fitted.get("velocity_mm_yr", []), dtype=float)
        area_fragments.append({
            "id": area.area_id, "type": AREA_TYPE,
            "insarPointCount": {"type": "Property", "value": int(inside.size),
                                "observedAt": observed},
            "subsidenceRateMin": {"type": "Property", "observedAt": observed,
                                  "value": _finite(float(np.nanmin(velocity)))
                                  if np.isfinite(velocity).any() else None},
            "lastAcquisition": {"type": "Property", "value": day, "observedAt": observed}})
    for record in store.scan(tenant, types=[BUILDING_TYPE]):
        entity = record.entity
        geometry = _value(entity, "location")
        if not isinstance(geometry, dict) or geometry.get("type") not in ("Polygon",
                                                                          "MultiPolygon"):
            continue
        footprint = Footprint(entity["id"], str(_value(entity, "name") or entity["id"]),
                              shape(geometry))
        thresholds = _thresholds(areas, footprint.geometry)
        if thresholds is None:
            continue
        summary = summarise_building(points, footprint, allowed_rows=rows,
                                     rate_limits=RATE_LIMITS_MM_YR)
        inside = np.asarray(points.select_polygon(footprint.geometry), dtype=np.int64)
        inside = inside[np.isin(inside, rows)]
        accel, trend = _point_trends(points, inside)
        state = AssetState(entity["id"], BUILDING_TYPE, footprint.name,
                           summary.mean_rate_mm_yr, accel, trend, summary.risk_class,
                           summary.n_points, location=geometry)
        if summary.n_points:
            state.exceeded = _exceeded(state, thresholds)
        before = _value(entity, "subsidenceExceeded") or []
        for kind in state.exceeded:
            if kind not in before:
                raised = _raise(store, tenant, state, kind, thresholds, day)
                if raised:
                    result.alerts.append(raised)
        fragments.append(_building_fragment(entity["id"], summary, accel, trend, observed,
                                            state.exceeded))
        result.assets.append(state)
    for record in store.scan(tenant, types=[LINEAR_TYPE]):
        entity = record.entity
        geometry = _value(entity, "location")
        if not isinstance(geometry, dict) or geometry.get("type") != "LineString":
            continue
        asset = LinearAsset(entity["id"], str(_value(entity, "name") or entity["id"]),
                            str(_value(entity, "assetType") or "other"), shape(geometry))
        thresholds = _thresholds(areas, asset.line)
        if thresholds is None:
            continue
        profile, mean_rate, worst, beta, category, klass, risk = _linear_summary(
            points, asset, rows, buffer_m, bin_m)
        accel, trend = _point_trends(points, profile.rows)
        state = AssetState(entity["id"], LINEAR_TYPE, asset.name, worst, accel, trend, risk,
                           profile.n_points, location=geometry)
        if profile.n_points:
            state.exceeded = _exceeded(state, thresholds)
        before = _value(entity, "subsidenceExceeded") or []
        for kind in state.exceeded:
            if kind not in before:
                raised = _raise(store, tenant, state, kind, thresholds, day)
                if raised:
                    result.alerts.append(raised)

        def p(value, **kw):
            return {"type": "Property", "value": value, "observedAt": observed, **kw}

        fragments.append({"id": entity["id"], "type": LINEAR_TYPE,
                          "subsidenceRate": p(_finite(mean_rate), unitCode="H_mm_yr"),
                          "subsidenceRateMin": p(_finite(worst), unitCode="H_mm_yr"),
                          "subsidenceAcceleration": p(_finite(accel)),
                          "angularDistortion": p(_finite(beta)),
                          "damageCategory": p(category), "rateClass": p(klass),
                          "riskClass": p(risk), "trendChange": p(trend),
                          "insarPointCount": p(profile.n_points),
                          "lengthMetres": p(round(profile.length_m, 1)),
                          "lastAcquisition": p(day), "subsidenceExceeded": p(state.exceeded)})
        result.assets.append(state)
    writes = [_without_nulls(f) for f in area_fragments + fragments]
    if writes:
        outcome = store.upsert_entities(tenant, writes, replace=False)
        for error in outcome.errors:
            log.warning("subsidence: %s in %s: %s", error["entityId"], tenant,
                        error["error"].get("detail"))
    return result


def _without_nulls(fragment: dict) -> dict:
    """The fragment less the Properties without a value (NGSI-LD has no null value)."""
    return {k: v for k, v in fragment.items()
            if not (isinstance(v, dict) and v.get("type") == "Property" and v["value"] is None)}


def refresh_customers(product_store, store, *, tenants: list[str] | None = None,
                      **options) -> dict[str, RefreshResult]:
    """After a new acquisition was imported and fitted: refresh every customer.

    Parameters
    ----------
    product_store : PointStore
        The processed product (fitted).
    store : ContextStore
    tenants : list of str, optional
        Only these customers (default: every tenant with an area of interest).
    **options
        ``buffer_m`` and ``bin_m`` of the linear-asset profiles.

    Returns
    -------
    dict
        Tenant -> :class:`RefreshResult`.
    """
    results = {}
    for tenant in tenants if tenants is not None else customer_tenants(store):
        results[tenant] = refresh_tenant(product_store, store, tenant, **options)
    return results


# ======================================================================= metering
def meter(store, tenant: str, endpoint: str, at: datetime | None = None) -> int:
    """Count one call of ``endpoint`` by ``tenant``; return the new total.

    Counts are documents of the tenant (kind :data:`USAGE_KIND`, one per endpoint),
    with a per-month tally for billing.
    """
    when = at or now_utc()
    stamp = format_datetime(when)
    month = when.strftime("%Y-%m")
    with _usage_lock:
        doc = store.get_document(tenant, USAGE_KIND, endpoint) or {
            "tenant": tenant, "endpoint": endpoint, "count": 0, "first": stamp,
            "months": {}}
        doc["count"] += 1
        doc["last"] = stamp
        doc["months"][month] = doc["months"].get(month, 0) + 1
        store.put_document(tenant, USAGE_KIND, endpoint, doc)
    return doc["count"]


def usage(store, tenant: str | None = None) -> list[dict]:
    """Usage counters, of one tenant or of every tenant, by tenant then endpoint."""
    tenants = [tenant] if tenant else [t for t in store.tenants() if not t.startswith("@")]
    rows = []
    for name in sorted(tenants):
        rows.extend(sorted(store.list_documents(name, USAGE_KIND, limit=10_000),
                           key=lambda d: d["endpoint"]))
    return rows

