"""The flood watch's HTTP API, mounted at ``/apps/floodwatch``.

Tenancy is the core's. Readings themselves arrive through the core ingest path (MQTT
``cityos/<tenant>/WaterObserved/<site>`` or ``POST /apps/ingest/observations``); this
API registers sensors and pumps, shows what the service made of the readings, and
issues pump commands.

===============================================  ========  ================================
``GET /sites``                                   viewer    sites: depth, level, quality,
                                                           nowcast
``POST /sites``                                  operator  register a flood-depth sensor
``GET /sites/{id}/quality``                      viewer    flagged readings of a period
``GET /sites/{id}/nowcast``                      viewer    latest nowcast and model skill
``GET /gauges``                                  viewer    rain gauges
``POST /gauges``                                 operator  register a rain gauge
``GET /pumps``                                   viewer    pumps, state and last command
``POST /pumps/{id}/commands``                    operator  switch a pump (``on``/``off``)
``GET /pumps/{id}/commands``                     viewer    recent commands and status
``GET /report``                                  viewer    the event report (HTML)
``GET /status``                                  viewer    the tenant's live service state
``GET /watch``                                   public    the flood watch page (HTML)
===============================================  ========  ================================
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from cityos.apps.floodwatch import history
from cityos.apps.floodwatch.models import (
    DEVICE_TYPE,
    GAUGE_TYPE,
    PUMP_TYPE,
    SITE_TYPE,
    Site,
    SiteConfigError,
    value_of,
)
from cityos.apps.floodwatch.service import FloodWatchService, TenantFloodWatch
from cityos.core.clock import now as clock_now
from cityos.core.errors import BadRequestData, NgsiLdError, ResourceNotFound
from cityos.core.tenancy import Caller, get_store, require
from cityos.core.timefmt import parse_datetime

router = APIRouter(tags=["floodwatch"])
WATCH_PAGE = Path(__file__).parent / "static" / "watch.html"
_LOCAL_ID = re.compile(r"^[A-Za-z0-9._~\-]{1,64}$")
MAX_REPORT_DAYS = 366


class ServiceUnavailable(NgsiLdError):
    """The flood watch service is not running in this process."""

    error_type, title, status = "InternalError", "Service unavailable", 503


# ===================================================================== the service
def services(store, settings) -> list:
    """The app's background services, run by the server's lifespan: the flood watch,
    with a pump commander when an MQTT broker is configured."""
    from cityos.apps.floodwatch.control import attach_control

    commander = None
    if getattr(settings, "mqtt_url", None):
        from cityos.apps.floodwatch.commands import PumpCommander

        commander = PumpCommander(store, settings.mqtt_url)
    service = FloodWatchService(store, commander=commander)
    attach_control(service)
    return [service]


def get_service(request: Request) -> FloodWatchService:
    """FastAPI dependency: the running :class:`FloodWatchService`."""
    for service in getattr(request.app.state, "services", None) or ():
        if isinstance(service, FloodWatchService):
            return service
    raise ServiceUnavailable("the flood watch service is not running (the server's lifespan "
                             "starts it)")


def _json(data, status_code: int = 200) -> Response:
    return Response(orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY),
                    status_code=status_code, media_type="application/json")


async def _json_object(request: Request) -> dict:
    try:
        data = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError as error:
        raise BadRequestData(f"request body is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise BadRequestData("the request body must be a JSON object")
    return data


def _state(service: FloodWatchService, caller: Caller) -> TenantFloodWatch:
    state = service.tenant(caller.tenant)
    if state is None:
        raise ResourceNotFound(f"tenant {caller.tenant!r} has no flood sensors: register one "
                               "with POST /apps/floodwatch/sites")
    return state


def _entity_id(kind: str, value: str) -> str:
    return value if value.startswith("urn:ngsi-ld:") else f"urn:ngsi-ld:{kind}:{value}"


def _instant(value: str | None, field: str) -> float | None:
    if value is None:
        return None
    try:
        return parse_datetime(value, field).timestamp()
    except NgsiLdError:
        raise
    except ValueError:
        raise BadRequestData(f"{field}: {value!r} is not an ISO 8601 date-time") from None


# =================================================================== registration
def _number(data: dict, field: str, *, low: float | None = None) -> float:
    value = data[field]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequestData(f"{field}: {value!r} is not a number")
    if low is not None and value < low:
        raise BadRequestData(f"{field}: {value!r} must be at least {low}")
    return float(value)


def _position(data: dict) -> list[float]:
    for field in ("lon", "lat"):
        if field not in data:
            raise BadRequestData(f"{field}: missing (the sensor's WGS84 position)")
    lon, lat = _number(data, "lon"), _number(data, "lat")
    if not (-180 <= lon <= 180):
        raise BadRequestData(f"lon: {lon} is outside -180..180")
    if not (-90 <= lat <= 90):
        raise BadRequestData(f"lat: {lat} is outside -90..90")
    return [lon, lat]


def _local_id(data: dict) -> str:
    local = data.get("id")
    if not isinstance(local, str) or not _LOCAL_ID.match(local):
        raise BadRequestData(f"id: {local!r} must be 1-64 letters, digits, '.', '_', '~' or '-'")
    return local


def site_entities(data: dict) -> list[dict]:
    """The ``Device`` and ``WaterObserved`` entities of a site registration.

    Body: ``id``, ``name``, ``lon``, ``lat``, optional ``alertLevels`` (cm, ascending),
    ``gauge`` (rain gauge id), ``pumps`` (pump ids), ``sensorProfile`` (quality
    settings), ``units`` (``cm``; depth is kept in cm).

    Raises
    ------
    BadRequestData
        Naming the field at fault.
    """
    local = _local_id(data)
    point = {"type": "Point", "coordinates": _position(data)}
    name = data.get("name") or local
    if not isinstance(name, str) or len(name) > 200:
        raise BadRequestData("name: must be a text of at most 200 characters")
    if data.get("units", "cm") != "cm":
        raise BadRequestData(f"units: {data['units']!r}: flood depth is reported in cm")
    site_id = _entity_id(SITE_TYPE, local)
    device_id = _entity_id(DEVICE_TYPE, local)
    site = {"id": site_id, "type": SITE_TYPE, "name": {"type": "Property", "value": name},
            "location": {"type": "GeoProperty", "value": point},
            "refDevice": {"type": "Relationship", "object": device_id}}
    if "alertLevels" in data:
        site["alertLevels"] = {"type": "Property", "value": data["alertLevels"],
                               "unitCode": "CMT"}
    if data.get("gauge"):
        site["refWeatherObserved"] = {"type": "Relationship",
                                      "object": _entity_id(GAUGE_TYPE, str(data["gauge"]))}
    if data.get("pumps"):
        if not isinstance(data["pumps"], list):
            raise BadRequestData("pumps: must be a list of pump ids")
        site["refPump"] = {"type": "Relationship",
                           "object": [_entity_id(PUMP_TYPE, str(p)) for p in data["pumps"]]}
    if "sensorProfile" in data:
        site["sensorProfile"] = {"type": "Property", "value": data["sensorProfile"]}
    try:
        Site.from_entity(site)  # the same checks the service applies
        if "sensorProfile" in data:
            from cityos.apps.floodwatch.service import sensor_profile

            sensor_profile("depth", data["sensorProfile"], "sensorProfile")
    except SiteConfigError as error:
        raise BadRequestData(str(error).replace(f"{site_id}: ", "")) from None
    device = {"id": device_id, "type": DEVICE_TYPE, "name": {"type": "Property", "value": name},
              "category": {"type": "Property", "value": ["sensor"]},
              "controlledProperty": {"type": "Property", "value": ["depth"]},
              "location": {"type": "GeoProperty", "value": point},
              "controlledAsset": {"type": "Relationship", "object": site_id}}
    return [device, site]


@router.post("/sites", status_code=201)
async def register_site(request: Request, caller: Caller = Depends(require("operator")),
                        store=Depends(get_store)) -> Response:
    """Register (or re-register) a flood-depth sensor site."""
    entities = site_entities(await _json_object(request))
    await run_in_threadpool(store.upsert_entities, caller.tenant, entities, replace=False)
    return _json({"id": entities[1]["id"], "device": entities[0]["id"]}, status_code=201)


@router.post("/gauges", status_code=201)
async def register_gauge(request: Request, caller: Caller = Depends(require("operator")),
                         store=Depends(get_store)) -> Response:
    """Register a rain gauge: ``id``, ``name``, ``lon``, ``lat``."""
    data = await _json_object(request)
    local = _local_id(data)
    entity = {"id": _entity_id(GAUGE_TYPE, local), "type": GAUGE_TYPE,
              "name": {"type": "Property", "value": str(data.get("name") or local)},
              "location": {"type": "GeoProperty", "value": {
                  "type": "Point", "coordinates": _position(data)}}}
    await run_in_threadpool(store.upsert_entities, caller.tenant, [entity], replace=False)
    return _json({"id": entity["id"]}, status_code=201)


# ========================================================================== sites
def _site_view(entity: dict) -> dict:
    def reading(name):
        attribute = entity.get(name)
        if isinstance(attribute, dict) and "value" in attribute:
            return {"value": attribute["value"], "observedAt": attribute.get("observedAt")}
        return None

    return {"id": entity["id"], "name": value_of(entity, "name"),
            "location": value_of(entity, "location"),
            "alertLevels": value_of(entity, "alertLevels", [10, 20, 30]),
            "depth": reading("depth"), "floodLevel": value_of(entity, "floodLevel", 0),
            "floodLevelName": value_of(entity, "floodLevelName", "none"),
            "quality": reading("depthQuality"), "sensorStatus": value_of(entity, "sensorStatus"),
            "forecast": {h: reading(f"depthForecast{h}min") for h in (10, 20, 30)},
            "nowcastModel": value_of(entity, "nowcastModel"),
            "gauge": value_of(entity, "refWeatherObserved")}


@router.get("/sites")
def list_sites(caller: Caller = Depends(require("viewer")),
               store=Depends(get_store)) -> Response:
    """Every site with its latest depth, alert level, quality and nowcast."""
    return _json([_site_view(r.entity) for r in store.scan(caller.tenant, types=[SITE_TYPE])])


@router.get("/gauges")
def list_gauges(caller: Caller = Depends(require("viewer")),
                store=Depends(get_store)) -> Response:
    """Every rain gauge with its latest reading."""
    rows = []
    for record in store.scan(caller.tenant, types=[GAUGE_TYPE]):
        entity = record.entity
        rain = entity.get("precipitation") or {}
        rows.append({"id": entity["id"], "name": value_of(entity, "name"),
                     "location": value_of(entity, "location"),
                     "precipitation": rain.get("value"), "observedAt": rain.get("observedAt"),
                     "sensorStatus": value_of(entity, "sensorStatus")})
    return _json(rows)


def _site(store, tenant: str, site: str) -> dict:
    entity_id = _entity_id(SITE_TYPE, site)
    found = list(store.scan(tenant, ids=[entity_id]))
    if not found:
        raise ResourceNotFound(f"site {site} does not exist")
    return found[0].entity


@router.get("/sites/{site}/quality")
def site_quality(site: str, since: str | None = None, until: str | None = None,
                 caller: Caller = Depends(require("viewer")),
                 store=Depends(get_store)) -> Response:
    """The flagged readings of a site (default the last 24 h): time, depth, flags."""
    entity = _site(store, caller.tenant, site)
    end = _instant(until, "until") or clock_now()
    begin = _instant(since, "since") or end - 86_400.0
    if end <= begin:
        raise BadRequestData("until: must be after since")
    rows = store.history(caller.tenant, entity["id"], ["depth", "depthQuality"],
                         int(begin * 1e6), int(end * 1e6), None)
    depth = {r.observed_us: r.instance.get("value") for r in rows if r.attribute == "depth"}
    flagged = [{"observedAt": datetime.fromtimestamp(r.observed_us / 1e6, UTC).isoformat(),
                "depth": depth.get(r.observed_us), "flags": r.instance.get("value")}
               for r in rows if r.attribute == "depthQuality"]
    counts: dict[str, int] = {}
    for row in flagged:
        for flag in row["flags"] or ():
            counts[flag] = counts.get(flag, 0) + 1
    return _json({"site": entity["id"], "readings": len(depth), "flagged": flagged,
                  "counts": counts})


@router.get("/sites/{site}/nowcast")
def site_nowcast(site: str, caller: Caller = Depends(require("viewer")),
                 store=Depends(get_store),
                 service: FloodWatchService = Depends(get_service)) -> Response:
    """The site's latest nowcast and how its model was chosen (validation skill)."""
    entity = _site(store, caller.tenant, site)
    state = _state(service, caller)
    view = _site_view(entity)
    choice = getattr(state, "nowcast_choice", {}).get(entity["id"])
    return _json({"site": entity["id"], "forecast": view["forecast"],
                  "model": view["nowcastModel"], "selection": choice})


# ========================================================================== pumps
@router.get("/pumps")
def list_pumps(caller: Caller = Depends(require("viewer")), store=Depends(get_store),
               service: FloodWatchService = Depends(get_service)) -> Response:
    """Every pump: its settings, reported state and the last command's status."""
    rows = []
    for record in store.scan(caller.tenant, types=[PUMP_TYPE]):
        entity = record.entity
        rows.append({"id": entity["id"], "name": value_of(entity, "name"),
                     "location": value_of(entity, "location"),
                     "site": value_of(entity, "refWaterObserved"),
                     "controlMode": value_of(entity, "controlMode", "rule"),
                     "onLevel": value_of(entity, "onLevel"),
                     "offLevel": value_of(entity, "offLevel"),
                     "status": value_of(entity, "status"),
                     "command": {"switch": value_of(entity, "switch"),
                                 "status": value_of(entity, "switch_status"),
                                 "info": value_of(entity, "switch_info"),
                                 "id": value_of(entity, "switch_id")}})
    return _json(rows)


@router.post("/pumps/{pump}/commands", status_code=202)
async def command_pump(pump: str, request: Request,
                       caller: Caller = Depends(require("operator")), store=Depends(get_store),
                       service: FloodWatchService = Depends(get_service)) -> Response:
    """Switch a pump by hand: body ``{"switch": "on"|"off"}``. Answers 202 with the
    command; its status (PENDING, DELIVERED, OK, ERROR, EXPIRED) follows on
    ``GET /pumps/{id}/commands`` and on the Pump entity's ``switch_status``."""
    from cityos.apps.floodwatch.commands import CommandError, PumpCommandUnavailable

    data = await _json_object(request)
    setting = data.get("switch")
    if setting not in ("on", "off"):
        raise BadRequestData(f"switch: {setting!r} is not 'on' or 'off'")
    if service.commander is None:
        raise ServiceUnavailable("pump commands need an MQTT broker (settings mqtt_url)")
    who = caller.name or caller.key_id
    try:
        command = await run_in_threadpool(service.commander.send, caller.tenant, pump, setting,
                                          f"operator {who}")
    except CommandError as error:
        if error.field == "pump_id" and error.problem.startswith("no Pump"):
            raise ResourceNotFound(str(error)) from None
        raise BadRequestData(str(error)) from None
    except PumpCommandUnavailable as error:
        raise ServiceUnavailable(str(error)) from None
    return _json(command.as_dict(), status_code=202)


@router.get("/pumps/{pump}/commands")
def pump_commands(pump: str, caller: Caller = Depends(require("viewer")),
                  service: FloodWatchService = Depends(get_service)) -> Response:
    """Recent commands of a pump, newest first."""
    if service.commander is None:
        return _json([])
    return _json([c.as_dict() for c in service.commander.recent(
        caller.tenant, _entity_id(PUMP_TYPE, pump))])


# ========================================================================= report
@router.get("/report", include_in_schema=False)
def event_report(since: str | None = None, until: str | None = None,
                 tz: str = "Asia/Kuala_Lumpur", caller: Caller = Depends(require("viewer")),
                 store=Depends(get_store)) -> Response:
    """The event report of a period (default the last 30 days) as one HTML page."""
    from cityos.apps.floodwatch.report import ReportOptions, render_report

    end = _instant(until, "until") or clock_now()
    begin = _instant(since, "since") or end - 30 * 86_400.0
    if end <= begin:
        raise BadRequestData("until: must be after since")
    if end - begin > timedelta(days=MAX_REPORT_DAYS).total_seconds():
        raise BadRequestData(f"since: a report covers at most {MAX_REPORT_DAYS} days")
    records = [history.site_record(store, caller.tenant, site, start_t=begin, end_t=end)
               for site in history.sites_of(store, caller.tenant)]
    records = [r for r in records if len(r.depth_t)]
    if not records:
        raise ResourceNotFound("no site has readings in this period")
    try:
        html = render_report(records, ReportOptions(tz=tz))
    except ValueError as error:
        raise BadRequestData(str(error)) from None
    return HTMLResponse(html)


@router.get("/watch", include_in_schema=False)
def watch_page() -> Response:
    """The flood watch page (a dashboard view; its data comes from this API with the
    operator's key)."""
    return HTMLResponse(WATCH_PAGE.read_text(encoding="utf-8"),
                        headers={"Cache-Control": "no-cache"})


# ========================================================================= status
@router.get("/status")
def status(caller: Caller = Depends(require("viewer")),
           service: FloodWatchService = Depends(get_service)) -> Response:
    """The tenant's live flood watch: sites, gauges, pumps, readings, alerts."""
    state = _state(service, caller)
    with state.lock:
        body = {"sites": len(state.sites), "gauges": len(state.gauges),
                "pumps": len(state.pumps), "readings": state.readings,
                "flagged": state.flagged, "alerts_raised": state.alerts_raised,
                "levels": {w.site.site_id: w.level + 1 for w in state.sites.values()},
                "offline": sorted([w.site.site_id for w in state.sites.values()
                                   if w.sensor.offline])}
    body["commander"] = service.commander is not None
    return _json(body)
