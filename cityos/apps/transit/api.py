"""The transit app's HTTP API, mounted at ``/apps/transit``.

Tenancy is the core's: the tenant is the caller's (``NGSILD-Tenant`` or the key's own).
Every route reads the live state of :class:`~cityos.apps.transit.service.TransitService`,
which the server's lifespan runs (:func:`services`).

===============================================  ========  ================================
``GET /gtfs-rt/vehicle-positions``               viewer    GTFS-realtime (``?format=json``)
``GET /gtfs-rt/trip-updates``                    viewer    GTFS-realtime (``?format=json``)
``GET /gtfs-rt/alerts``                          viewer    GTFS-realtime (``?format=json``)
``GET /alerts``                                  viewer    service alerts (JSON)
``POST /alerts``                                 operator  create (or replace) an alert
``DELETE /alerts/{id}``                          operator  withdraw an alert
``GET /stops/{stop_id}/board``                   public    the stop board page (HTML)
``GET /stops/{stop_id}/arrivals``                viewer    the next arrivals at a stop
``GET /analytics/on-time``                       viewer    on-time performance
``GET /analytics/headways``                      viewer    headway regularity (+ events)
``GET /analytics/running-times``                 viewer    running time per segment
``GET /analytics/service-delivered``             viewer    trips / km / hours run
``GET /analytics/fleet``                         viewer    vehicles in service per hour
``GET /analytics/ridership``                     viewer    boardings and alightings
``GET /drivers/scores``                          viewer    per driver or vehicle
``GET /drivers/events``                          viewer    driving events (``?format=geojson``)
``GET /drivers/weekly-report``                   viewer    ``?format=json|csv|markdown``
``GET /status``                                  viewer    the tenant's live service state
===============================================  ========  ================================

The stop board page itself needs no key, so that a screen at a stop can open it: it
reads ``/arrivals`` with a display session (the screen's display link, see
:mod:`cityos.web.display`) or the dashboard's signed-in session.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, is_dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote
from zoneinfo import ZoneInfo

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from cityos.apps.transit import analytics, driving, gtfs_rt
from cityos.apps.transit.service import TenantTransit, TransitService
from cityos.core.clock import now as clock_now
from cityos.core.errors import BadRequestData, NgsiLdError, ResourceNotFound
from cityos.core.tenancy import Caller, get_store, require

router = APIRouter(tags=["transit"])

ALERT_KIND = "transit-alert"
PROTOBUF = "application/x-protobuf"
STATIC_DIR = Path(__file__).parent / "static"
BOARD_PAGE = STATIC_DIR / "board.html"
ANALYTICS_PAGE = STATIC_DIR / "analytics.html"
_ALERT_ID = re.compile(r"^[A-Za-z0-9._~\-]{1,64}$")
GTFS_STOP_PREFIX = "urn:ngsi-ld:GtfsStop:"


class ServiceUnavailable(NgsiLdError):
    """The transit service is not running in this process."""

    error_type, title, status = "InternalError", "Service unavailable", 503


# ===================================================================== the service
def services(store, settings) -> list:
    """The app's background services, run by the server's lifespan."""
    return [TransitService(store, settings)]


def get_service(request: Request) -> TransitService:
    """FastAPI dependency: the running :class:`TransitService` of this app."""
    for service in getattr(request.app.state, "services", None) or ():
        if isinstance(service, TransitService):
            return service
    raise ServiceUnavailable("the transit service is not running (the server's lifespan "
                             "starts it)")


def _tenant(service: TransitService, caller: Caller) -> TenantTransit:
    state = service.tenant(caller.tenant)
    if state is None:
        raise ResourceNotFound(f"tenant {caller.tenant!r} has no GTFS feed: import one with "
                               "`cityos transit import feed.zip`")
    return state


def _json(data, status_code: int = 200) -> Response:
    return Response(orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS, default=_plain),
                    status_code=status_code, media_type="application/json")


def _plain(value):
    if is_dataclass(value):
        return asdict(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(type(value).__name__)


# ======================================================================== GTFS-rt
def _feed_response(message, format: str | None) -> Response:  # noqa: A002
    if format == "json":
        return Response(gtfs_rt.to_json(message), media_type="application/json")
    if format not in (None, "", "pb", "protobuf"):
        raise BadRequestData(f"format: {format!r} is not 'json' or 'protobuf'")
    return Response(message.SerializeToString(), media_type=PROTOBUF)


@router.get("/gtfs-rt/vehicle-positions")
def vehicle_positions(format: str | None = None,  # noqa: A002
                      caller: Caller = Depends(require("viewer")),
                      service: TransitService = Depends(get_service)) -> Response:
    """GTFS-realtime vehicle positions of the tenant's fleet."""
    state = _tenant(service, caller)
    now = service.clock()
    with state.lock:
        vehicles = list(state.fleet.vehicles(now))
    return _feed_response(gtfs_rt.vehicle_positions_feed(vehicles, now), format)


@router.get("/gtfs-rt/trip-updates")
def trip_updates(format: str | None = None,  # noqa: A002
                 caller: Caller = Depends(require("viewer")),
                 service: TransitService = Depends(get_service)) -> Response:
    """GTFS-realtime trip updates: a predicted arrival at every downstream stop (the
    trips of buses silent for ``transit_vehicle_stale_s`` are left out)."""
    state = _tenant(service, caller)
    now = service.clock()
    with state.lock:
        predictions = list(state.fleet.predictions(now))
        trip_states = state.fleet.trip_states(now)
    message = gtfs_rt.trip_updates_feed(predictions, trip_states, now, feed=state.feed)
    return _feed_response(message, format)


@router.get("/gtfs-rt/alerts")
def alerts_feed(format: str | None = None,  # noqa: A002
                caller: Caller = Depends(require("viewer")), store=Depends(get_store),
                service: TransitService = Depends(get_service)) -> Response:
    """GTFS-realtime service alerts: the operators' alerts not yet over."""
    now = service.clock()
    alerts = [alert_from_document(d) for d in _alert_documents(store, caller.tenant)
              if d.get("end") is None or d["end"] >= now]
    return _feed_response(gtfs_rt.alerts_feed(alerts, now), format)


# ================================================================= service alerts
def _instant(value, field: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise BadRequestData(f"{field}: must be finite")
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise BadRequestData(f"{field}: {value!r} is not ISO 8601 or POSIX seconds") \
                from None
        if moment.tzinfo is None:
            raise BadRequestData(f"{field}: {value!r} needs a UTC offset (e.g. 'Z')")
        return moment.timestamp()
    raise BadRequestData(f"{field}: must be ISO 8601 text or POSIX seconds")


def _texts(value, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, str):
        return {"en": value}
    if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str)
                                       for k, v in value.items()):
        return dict(value)
    raise BadRequestData(f"{field}: must be a text or an object of language code to text")


def _ids(data: dict, field: str) -> tuple[str, ...]:
    value = data.get(field, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise BadRequestData(f"{field}: must be a list of ids")
    return tuple(value)


def alert_from_request(data: dict, state: TenantTransit | None) -> gtfs_rt.ServiceAlert:
    """Validate an alert's JSON body into a :class:`ServiceAlert`.

    Ids of routes, stops, trips and agencies are checked against the tenant's feed
    when there is one.
    """
    alert_id = data.get("id") or f"alert-{int(time.time() * 1000):x}"
    if not isinstance(alert_id, str) or not _ALERT_ID.match(alert_id):
        raise BadRequestData(f"id: {alert_id!r} must be 1-64 letters, digits, '-', '_', '.'")
    fields = {name: _ids(data, name) for name in ("route_ids", "stop_ids", "trip_ids",
                                                   "agency_ids")}
    if state is not None:
        known = {"route_ids": state.feed.routes, "stop_ids": state.feed.stops,
                 "trip_ids": state.feed.trips, "agency_ids": state.feed.agencies}
        for name, ids in fields.items():
            unknown = [i for i in ids if i not in known[name]]
            if unknown:
                raise BadRequestData(f"{name}: {', '.join(unknown)} not in the feed")
    try:
        return gtfs_rt.ServiceAlert(
            id=alert_id, cause=data.get("cause") or "UNKNOWN_CAUSE",
            effect=data.get("effect") or "UNKNOWN_EFFECT",
            header=_texts(data.get("header"), "header"),
            description=_texts(data.get("description"), "description"),
            start=_instant(data.get("start"), "start"), end=_instant(data.get("end"), "end"),
            url=_texts(data.get("url"), "url"), severity=data.get("severity"), **fields)
    except gtfs_rt.GtfsRealtimeError as error:
        raise BadRequestData(str(error)) from None


def alert_document(alert: gtfs_rt.ServiceAlert, caller: Caller) -> dict:
    """The stored form of an alert (what ``GET /alerts`` lists)."""
    doc = asdict(alert)
    for name in ("route_ids", "stop_ids", "trip_ids", "agency_ids"):
        doc[name] = list(doc[name])
    doc.update(createdAt=clock_now(), createdBy=caller.name or caller.key_id)
    return doc


def alert_from_document(doc: dict) -> gtfs_rt.ServiceAlert:
    """The :class:`ServiceAlert` of a stored alert."""
    fields = {k: v for k, v in doc.items() if k not in ("createdAt", "createdBy")}
    for name in ("route_ids", "stop_ids", "trip_ids", "agency_ids"):
        fields[name] = tuple(fields.get(name) or ())
    return gtfs_rt.ServiceAlert(**fields)


def _alert_documents(store, tenant: str) -> list[dict]:
    return store.list_documents(tenant, ALERT_KIND, limit=10_000)


async def _json_object(request: Request) -> dict:
    raw = await request.body()
    try:
        data = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as error:
        raise BadRequestData(f"request body is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise BadRequestData("the request body must be a JSON object")
    return data


@router.get("/alerts")
def list_alerts(caller: Caller = Depends(require("viewer")),
                store=Depends(get_store)) -> Response:
    """The tenant's service alerts, oldest first."""
    return _json(_alert_documents(store, caller.tenant))


@router.post("/alerts", status_code=201)
async def create_alert(request: Request, caller: Caller = Depends(require("operator")),
                       store=Depends(get_store),
                       service: TransitService = Depends(get_service)) -> Response:
    """Create a service alert (an existing id is replaced). Body: ``id`` (optional),
    ``header`` and ``description`` (text, or language code to text), ``cause``,
    ``effect``, ``severity`` (GTFS-realtime names), ``start``/``end`` (ISO 8601 or
    POSIX seconds), ``route_ids``, ``stop_ids``, ``trip_ids``, ``agency_ids``."""
    data = await _json_object(request)
    state = await run_in_threadpool(service.tenant, caller.tenant)
    alert = alert_from_request(data, state)
    doc = alert_document(alert, caller)
    await run_in_threadpool(store.put_document, caller.tenant, ALERT_KIND, alert.id, doc)
    return _json(doc, status_code=201)


@router.delete("/alerts/{alert_id}", status_code=204)
def delete_alert(alert_id: str, caller: Caller = Depends(require("operator")),
                 store=Depends(get_store)) -> Response:
    """Withdraw a service alert."""
    if not store.delete_document(caller.tenant, ALERT_KIND, alert_id):
        raise ResourceNotFound(f"service alert {alert_id} does not exist")
    return Response(status_code=204)


# ====================================================================== stop board
def gtfs_stop_id(stop: str) -> str:
    """The GTFS stop id of a board's path: a stop id, or a ``GtfsStop`` entity id."""
    stop = unquote(stop)
    return unquote(stop[len(GTFS_STOP_PREFIX):]) if stop.startswith(GTFS_STOP_PREFIX) else stop


@router.get("/stops/{stop_id}/board", include_in_schema=False)
def stop_board_page(stop_id: str) -> Response:
    """The stop board page (public: the data comes from ``/arrivals`` with a key)."""
    return HTMLResponse(BOARD_PAGE.read_text(encoding="utf-8"),
                        headers={"Cache-Control": "no-cache"})


@router.get("/analytics", include_in_schema=False)
def analytics_page() -> Response:
    """The operations analytics and service-alert page (a dashboard view; its data
    comes from ``/analytics/*`` and ``/alerts`` with the operator's key)."""
    return HTMLResponse(ANALYTICS_PAGE.read_text(encoding="utf-8"),
                        headers={"Cache-Control": "no-cache"})


@router.get("/stops/{stop_id}/arrivals")
def stop_arrivals(stop_id: str, limit: int = Query(10, ge=1, le=50),
                  caller: Caller = Depends(require("viewer")), store=Depends(get_store),
                  service: TransitService = Depends(get_service)) -> Response:
    """The next arrivals at a stop, live where a bus is tracked, else scheduled; and
    the service alerts that name the stop or its routes."""
    state = _tenant(service, caller)
    gtfs_id = gtfs_stop_id(stop_id)
    stop = state.feed.stops.get(gtfs_id)
    if stop is None:
        raise ResourceNotFound(f"stop {gtfs_id!r} is not in the tenant's feed")
    now = service.clock()
    with state.lock:
        rows = state.fleet.stop_board(gtfs_id, now, limit=limit)
    arrivals = []
    routes = set()
    for row in rows:
        data = asdict(row) if is_dataclass(row) else dict(vars(row))
        expected = data.get("expected_t")
        if expected is None:
            expected = data.get("scheduled_t")
        data["minutes"] = max(0, int(round((expected - now) / 60.0)))
        arrivals.append(data)
        if data.get("route_id"):
            routes.add(data["route_id"])
    routes |= {r.route_id for r in state.feed.routes.values()
               if any(row.get("route_short_name") == r.short_name for row in arrivals)}
    alerts = []
    for doc in _alert_documents(store, caller.tenant):
        if doc.get("end") is not None and doc["end"] < now:
            continue
        if doc.get("start") is not None and doc["start"] > now + 86_400:
            continue
        if gtfs_id in (doc.get("stop_ids") or ()) or routes & set(doc.get("route_ids") or ()):
            alerts.append({"id": doc["id"], "header": doc["header"],
                           "description": doc.get("description") or {},
                           "effect": doc.get("effect")})
    return _json({"stop": {"id": stop.stop_id, "name": stop.name, "code": stop.code},
                  "now": now, "timezone": state.timezone, "arrivals": arrivals,
                  "alerts": alerts})


# ======================================================================= analytics
def _day(state: TenantTransit, service: TransitService, value: str | None) -> date:
    if not value:
        return state.today(service.clock())
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadRequestData(f"date: {value!r} is not YYYY-MM-DD") from None


def _by(value: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if value is None:
        return default
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    for name in names:
        if name not in analytics.GROUPINGS:
            raise BadRequestData(f"by: {name!r} is not one of {', '.join(analytics.GROUPINGS)}")
    return names


def _analytics(result_of, by: tuple[str, ...]) -> list[dict]:
    try:
        return analytics.as_rows(result_of(), by)
    except analytics.AnalyticsError as error:
        raise BadRequestData(str(error)) from None


@router.get("/analytics/on-time")
def on_time(date: str | None = None, by: str | None = None,  # noqa: A002
            early_s: float = Query(60.0, ge=0), late_s: float = Query(300.0, ge=0),
            measure: str = "departure", caller: Caller = Depends(require("viewer")),
            service: TransitService = Depends(get_service)) -> Response:
    """On-time performance of a service date (default today): ``by`` any of route,
    direction, stop, hour (default ``route,stop,hour``; empty: the network); on time
    is ``-early_s <= actual - scheduled <= late_s``."""
    state = _tenant(service, caller)
    day = _day(state, service, date)
    names = _by(by, ("route", "stop", "hour"))
    if measure not in ("departure", "arrival"):
        raise BadRequestData(f"measure: {measure!r} is not 'departure' or 'arrival'")
    rows = _analytics(lambda: analytics.on_time_performance(
        state.arrivals_on(day), state.feed, by=names, early_s=early_s, late_s=late_s,
        measure=measure, timezone=state.timezone), names)
    return _json({"date": day, "by": names, "early_s": early_s, "late_s": late_s,
                  "rows": rows})


@router.get("/analytics/headways")
def headways(date: str | None = None, by: str | None = None,  # noqa: A002
             bunching_ratio: float = Query(0.25, gt=0), gap_ratio: float = Query(1.5, gt=0),
             events: bool = False, caller: Caller = Depends(require("viewer")),
             service: TransitService = Depends(get_service)) -> Response:
    """Headway regularity (coefficient of variation, bunching, gaps); ``events=true``
    adds every bunching and gap event."""
    state = _tenant(service, caller)
    day = _day(state, service, date)
    names = _by(by, ("route", "stop"))
    arrivals = state.arrivals_on(day)
    rows = _analytics(lambda: analytics.headway_regularity(
        arrivals, state.feed, by=names, bunching_ratio=bunching_ratio, gap_ratio=gap_ratio,
        timezone=state.timezone), names)
    body = {"date": day, "by": names, "rows": rows}
    if events:
        body["events"] = analytics.headway_events(
            arrivals, state.feed, bunching_ratio=bunching_ratio, gap_ratio=gap_ratio,
            timezone=state.timezone)
    return _json(body)


@router.get("/analytics/running-times")
def running_times(date: str | None = None, by: str | None = None,  # noqa: A002
                  caller: Caller = Depends(require("viewer")),
                  service: TransitService = Depends(get_service)) -> Response:
    """Running time per segment (default ``by=segment,hour``)."""
    state = _tenant(service, caller)
    day = _day(state, service, date)
    names = _by(by, ("segment", "hour"))
    rows = _analytics(lambda: analytics.running_times(
        state.arrivals_on(day), state.feed, by=names, timezone=state.timezone), names)
    return _json({"date": day, "by": names, "rows": rows})


@router.get("/analytics/service-delivered")
def service_delivered(date: str | None = None, by: str | None = None,  # noqa: A002
                      caller: Caller = Depends(require("viewer")),
                      service: TransitService = Depends(get_service)) -> Response:
    """Trips, km and hours run against scheduled (``by`` any of route, direction)."""
    state = _tenant(service, caller)
    day = _day(state, service, date)
    names = _by(by, ("route",))
    rows = _analytics(lambda: analytics.service_delivered(
        state.arrivals_on(day), state.feed, by=names, service_dates=[day],
        timezone=state.timezone), names)
    return _json({"date": day, "by": names, "rows": rows})


@router.get("/analytics/fleet")
def fleet(date: str | None = None, fleet_size: int | None = Query(None, gt=0),  # noqa: A002
          caller: Caller = Depends(require("viewer")),
          service: TransitService = Depends(get_service)) -> Response:
    """Vehicles in service per clock hour against the fleet."""
    state = _tenant(service, caller)
    day = _day(state, service, date)
    arrivals = state.arrivals_on(day)
    if not arrivals:
        return _json({"date": day, "by": ["date", "hour"], "rows": []})
    rows = _analytics(lambda: analytics.fleet_utilisation(
        arrivals, state.feed, fleet_size=fleet_size, timezone=state.timezone),
        ("date", "hour"))
    return _json({"date": day, "by": ["date", "hour"], "rows": rows})


@router.get("/analytics/ridership")
def ridership(date: str | None = None, by: str | None = None,  # noqa: A002
              caller: Caller = Depends(require("viewer")),
              service: TransitService = Depends(get_service)) -> Response:
    """Boardings and alightings (default ``by=route,stop,hour``)."""
    state = _tenant(service, caller)
    day = _day(state, service, date)
    names = _by(by, ("route", "stop", "hour"))
    rows = _analytics(lambda: analytics.ridership(
        state.arrivals_on(day), state.feed, by=names, timezone=state.timezone), names)
    return _json({"date": day, "by": names, "rows": rows})


# ============================================================== driver monitoring
def _period(state: TenantTransit, service: TransitService, since: str | None,
            until: str | None, default_days: int) -> tuple[float, float]:
    end = _instant(until, "until") if until else service.clock()
    begin = _instant(since, "since") if since else end - default_days * 86_400.0
    if end <= begin:
        raise BadRequestData("until: must be after since")
    return begin, end


@router.get("/drivers/scores")
def driver_scores(by: str = "driver", since: str | None = None, until: str | None = None,
                  caller: Caller = Depends(require("viewer")),
                  service: TransitService = Depends(get_service)) -> Response:
    """Driving scores per driver (or ``by=vehicle``) over a period (default the last
    7 days; ``since``/``until`` ISO 8601)."""
    if by not in ("driver", "vehicle"):
        raise BadRequestData(f"by: {by!r} is not 'driver' or 'vehicle'")
    state = _tenant(service, caller)
    begin, end = _period(state, service, since, until, 7)
    record = state.driving_record(begin, end)
    scores = driving.driving_scores(record, by)
    rows = [{by: s.who, "km": round(s.km, 2), "events": s.events,
             "weighted_events_per_100km": None if not math.isfinite(s.weighted_per_100km)
             else round(s.weighted_per_100km, 2),
             "score": None if s.score is None else round(s.score, 1)}
            for s in scores.values()]
    return _json({"by": by, "since": begin, "until": end, "rows": rows})


@router.get("/drivers/events")
def driver_events(since: str | None = None, until: str | None = None,
                  kind: str | None = None, driver: str | None = None,
                  vehicle: str | None = None, format: str = "json",  # noqa: A002
                  caller: Caller = Depends(require("viewer")),
                  service: TransitService = Depends(get_service)) -> Response:
    """Driving events (default the last 24 h), filtered by ``kind``, ``driver``,
    ``vehicle``; ``format=geojson`` for the map."""
    if kind is not None and kind not in driving.KINDS:
        raise BadRequestData(f"kind: {kind!r} is not one of {', '.join(driving.KINDS)}")
    state = _tenant(service, caller)
    begin, end = _period(state, service, since, until, 1)
    events = [e for e in state.driving_record(begin, end).events
              if (kind is None or e.kind == kind) and (driver is None or e.driver_id == driver)
              and (vehicle is None or e.vehicle_id == vehicle)]
    if format == "geojson":
        return Response(orjson.dumps({"type": "FeatureCollection",
                                      "features": [e.as_geojson() for e in events]}),
                        media_type="application/geo+json")
    if format != "json":
        raise BadRequestData(f"format: {format!r} is not 'json' or 'geojson'")
    return _json([{**asdict(e), "unit": e.unit} for e in events])


@router.get("/drivers/weekly-report")
def weekly_report(week: str | None = None, format: str = "json",  # noqa: A002
                  caller: Caller = Depends(require("viewer")),
                  service: TransitService = Depends(get_service)) -> Response:
    """The driving report of the week starting ``week`` (YYYY-MM-DD; default the
    week before this one, Monday first): ``format=json``, ``csv`` or ``markdown``."""
    state = _tenant(service, caller)
    if week:
        try:
            start = date.fromisoformat(week)
        except ValueError:
            raise BadRequestData(f"week: {week!r} is not YYYY-MM-DD") from None
    else:
        today = state.today(service.clock())
        start = today - timedelta(days=today.weekday() + 7)
    zone = ZoneInfo(state.timezone)
    begin = datetime.combine(start, datetime.min.time(), zone).timestamp()
    end = datetime.combine(start + timedelta(days=7), datetime.min.time(), zone).timestamp()
    record = state.driving_record(begin, end)

    def worst_first(scores):
        return sorted(scores.values(), key=lambda s: (s.score is None, s.score or 0, s.who))

    report = driving.WeeklyReport(start, worst_first(driving.driving_scores(record, "driver")),
                                  worst_first(driving.driving_scores(record, "vehicle")),
                                  record.events)
    if format == "csv":
        return Response(report.to_csv("driver"), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition":
                                 f'attachment; filename="driving-{start.isoformat()}.csv"'})
    if format == "markdown":
        return Response(report.to_markdown(), media_type="text/markdown; charset=utf-8")
    if format != "json":
        raise BadRequestData(f"format: {format!r} is not 'json', 'csv' or 'markdown'")
    return _json({"week_start": start, "drivers": report.rows("driver"),
                  "vehicles": report.rows("vehicle"),
                  "events": len(report.events)})


# ========================================================================== status
@router.get("/status")
def status(caller: Caller = Depends(require("viewer")),
           service: TransitService = Depends(get_service)) -> Response:
    """The tenant's live service: feed, predictor, vehicles, pings, arrivals."""
    state = _tenant(service, caller)
    now = service.clock()
    with state.lock:
        feed = {k: state.feed_document.get(k) for k in ("importedAt", "counts", "warnings",
                                                          "demo")}
        body = {"feed": feed, "timezone": state.timezone,
                "predictor_trained": state.predictor_trained,
                # those in the vehicle positions feed (not silent for stale_s)
                "vehicles": len(state.fleet.vehicles(now)),
                "pings_processed": state.pings_processed,
                "pings_invalid": state.pings_invalid,
                "rejected": getattr(state.fleet, "rejected", {}),
                "arrivals": len(state.arrivals),
                "driving_events": len(state.driving_events)}
    return _json(body)
