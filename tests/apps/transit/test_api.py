"""The transit app's API over a real app: SQLite store, ingest path, live service.

The demo city's feed is imported (as ``cityos demo`` does), twenty minutes of its
simulated morning are posted to ``/apps/ingest/observations`` as Vehicle observations
(speed in km/h, as Smart Data Models and the simulator have it), and the GTFS-realtime
feeds, stop board, alerts, analytics and driver monitoring are read back.
"""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import UTC, date, datetime

import pytest
from google.transit import gtfs_realtime_pb2 as rt

from cityos.apps.transit import analytics, gtfs_rt
from cityos.apps.transit.demo import build_transit_demo
from cityos.apps.transit.models import ObservedArrival, service_day_origin
from cityos.apps.transit.pings import PingError
from cityos.apps.transit.service import (
    ARRIVALS_KIND,
    DERIVED_ATTRIBUTES,
    TransitService,
    punctuality,
    vehicle_ping,
)
from cityos.apps.transit.sim import ping_observation
from cityos.apps.transit.synthetic import demo_feed, simulate_day
from cityos.config import Settings
from cityos.core.store import open_store
from cityos.core.tenancy import create_key

TENANT, OTHER = "city", "other"
DAY = date(2026, 1, 6)  # a Tuesday: weekday service
TZ = "Asia/Kuala_Lumpur"
WINDOW_S = (8 * 3600, 8 * 3600 + 1200)  # 08:00-08:20 local
VEHICLES = 4
BRAKE_T0 = service_day_origin(date(2026, 1, 5), TZ) + 10 * 3600  # a crafted stop


def _post(client, key: str, bodies: list[dict], tenant: str = TENANT) -> None:
    headers = {"Authorization": f"Bearer {key}", "NGSILD-Tenant": tenant}
    for start in range(0, len(bodies), 1000):
        response = client.post("/apps/ingest/observations", json=bodies[start:start + 1000],
                               headers=headers)
        assert response.status_code == 204, response.text


def _observation(ping) -> dict:
    return {**ping_observation(ping), "id": f"urn:ngsi-ld:Vehicle:{ping.vehicle_id}",
            "type": "Vehicle"}


def _braking_pings():
    """A bus at 12 m/s that brakes at 0.6 g to a stand, 1 Hz, heading east."""
    from cityos.apps.transit.models import Ping

    pings, x, v = [], 0.0, 12.0
    for second in range(40):
        t = BRAKE_T0 + second
        pings.append(Ping("bus-brake", t, 3.1466, 101.60 + x / 111_320.0, speed_mps=v,
                          bearing_deg=90.0, driver_id="drv-brake"))
        decel = 0.6 * 9.80665 if 30 <= second < 32 else 0.0
        step_v = max(0.0, v - decel)
        x += (v + step_v) / 2
        v = step_v
    return pings


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    from fastapi.testclient import TestClient

    from cityos.server import create_app

    folder = tmp_path_factory.mktemp("transit-api")
    url = f"sqlite:///{folder / 'city.db'}"
    store = open_store(url)
    build_transit_demo(store, TENANT, datetime.now(UTC))
    build_transit_demo(store, OTHER, datetime.now(UTC))
    keys = {role: create_key(store, TENANT, role)[0] for role in ("viewer", "operator")}
    keys["other"] = create_key(store, OTHER, "viewer")[0]
    app = create_app(Settings(database_url=url), store)

    feed = demo_feed()
    trace = simulate_day(feed, DAY, timezone=TZ)
    origin = service_day_origin(DAY, TZ)
    begin, end = origin + WINDOW_S[0], origin + WINDOW_S[1]
    window = [p for p in trace.pings if begin <= p.t < end]
    vehicles = sorted({p.vehicle_id for p in window if p.vehicle_id.startswith("bus-1-")})
    vehicles = vehicles[:VEHICLES]
    pings = [p for p in window if p.vehicle_id in vehicles]
    with TestClient(app) as client:
        service = next(s for s in app.state.services if isinstance(s, TransitService))
        service.clock = lambda: end
        state = service.tenant(TENANT)
        deadline = time.monotonic() + 120
        while not state.predictor_trained and time.monotonic() < deadline:
            time.sleep(0.1)  # the demo's predictor learns from simulated days
        assert state.predictor_trained
        _post(client, keys["operator"], [_observation(p) for p in pings])
        _post(client, keys["operator"], [_observation(p) for p in _braking_pings()])
        assert service.wait_idle(60)
        yield {"client": client, "store": store, "service": service, "state": state,
               "keys": keys, "feed": feed, "pings": pings, "vehicles": vehicles, "now": end}


def _get(city, path: str, role: str = "viewer", **params):
    return city["client"].get(f"/apps/transit{path}", params=params, headers={
        "Authorization": f"Bearer {city['keys'][role]}"})


# =================================================================== conversions
def _vehicle(**attributes) -> dict:
    entity = {"id": "urn:ngsi-ld:Vehicle:bus-9", "type": "Vehicle",
              "location": {"type": "GeoProperty", "value": {
                  "type": "Point", "coordinates": [101.69, 3.14]},
                  "observedAt": "2026-01-06T00:00:00Z"}}
    entity.update({k: {"type": "Property", **v} for k, v in attributes.items()})
    return entity


def test_vehicle_ping_converts_speed_by_unit_code():
    assert vehicle_ping(_vehicle(speed={"value": 36.0, "unitCode": "KMH"})).speed_mps \
        == pytest.approx(10.0)
    assert vehicle_ping(_vehicle(speed={"value": 36.0})).speed_mps == pytest.approx(10.0)
    assert vehicle_ping(_vehicle(speed={"value": 10.0, "unitCode": "MTS"})).speed_mps == 10.0
    ping = vehicle_ping(_vehicle(bearing={"value": 87.5, "unitCode": "DD"},
                                 tripId={"value": "T1"}, driverId={"value": "D1"},
                                 doorsOpen={"value": False}))
    assert (ping.vehicle_id, ping.lat, ping.lon, ping.bearing_deg) == ("bus-9", 3.14, 101.69,
                                                                        87.5)
    assert (ping.trip_id, ping.driver_id, ping.doors_open) == ("T1", "D1", False)
    assert ping.t == datetime(2026, 1, 6, tzinfo=UTC).timestamp()
    with pytest.raises(PingError, match="speed: unitCode 'FOO'"):
        vehicle_ping(_vehicle(speed={"value": 3.0, "unitCode": "FOO"}))


def test_vehicle_ping_takes_only_what_the_observation_wrote():
    entity = _vehicle(tripId={"value": "stale-trip"}, speed={"value": 18.0})
    ping = vehicle_ping(entity, changed=["location", "speed"])
    assert ping.trip_id is None and ping.speed_mps == pytest.approx(5.0)


def test_punctuality_classes():
    assert [punctuality(d) for d in (-61, -60, 299, 300, 599, 600)] == [
        "early", "onTime", "onTime", "late", "late", "veryLate"]


# ======================================================================= GTFS-rt
def test_vehicle_positions_protobuf_has_every_bus(city):
    response = _get(city, "/gtfs-rt/vehicle-positions")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-protobuf"
    message = rt.FeedMessage()
    message.ParseFromString(response.content)
    assert message.header.gtfs_realtime_version == "2.0"
    assert message.header.incrementality == rt.FeedHeader.FULL_DATASET
    assert message.header.timestamp == int(city["now"])
    by_id = {e.id: e.vehicle for e in message.entity}
    assert set(city["vehicles"]) <= set(by_id)
    for vehicle_id in city["vehicles"]:
        position = by_id[vehicle_id]
        assert position.vehicle.id == vehicle_id
        assert position.trip.trip_id in city["feed"].trips
        assert position.trip.route_id == "1"
        assert position.trip.start_date == "20260106"
        last = max(p.t for p in city["pings"] if p.vehicle_id == vehicle_id)
        # the newest ping or one shortly before it (a ping may wait to be reordered)
        assert round(last) - 60 <= position.timestamp <= round(last)
        assert 3.0 < position.position.latitude < 3.3
    assert gtfs_rt.validate_feed(message, city["feed"], now=city["now"]) == []


def test_trip_updates_predict_downstream_stops_in_order(city):
    response = _get(city, "/gtfs-rt/trip-updates")
    message = gtfs_rt.parse_feed(response.content)
    assert gtfs_rt.validate_feed(message, city["feed"], now=city["now"]) == []
    assert len(message.entity) >= VEHICLES
    longest = 0
    for entity in message.entity:
        update = entity.trip_update
        sequences = [u.stop_sequence for u in update.stop_time_update]
        assert sequences == sorted(set(sequences))
        times = [u.arrival.time for u in update.stop_time_update]
        assert times == sorted(times)
        assert all(t >= city["now"] - 120 for t in times)
        schedule = city["feed"].schedule(update.trip.trip_id)
        stops = dict(zip(schedule.stop_sequence.tolist(), schedule.stop_ids, strict=True))
        assert all(stops[u.stop_sequence] == u.stop_id for u in update.stop_time_update)
        longest = max(longest, len(sequences))
    assert longest >= 5


def test_gtfs_rt_json_format(city):
    response = _get(city, "/gtfs-rt/vehicle-positions", format="json")
    assert response.headers["content-type"].startswith("application/json")
    data = json.loads(response.text)
    assert data["header"]["gtfs_realtime_version"] == "2.0"
    assert {e["id"] for e in data["entity"]} >= set(city["vehicles"])
    assert _get(city, "/gtfs-rt/alerts", format="xml").status_code == 400


def test_gtfs_rt_is_per_tenant(city):
    client = city["client"]
    other = client.get("/apps/transit/gtfs-rt/vehicle-positions",
                       headers={"Authorization": f"Bearer {city['keys']['other']}"})
    assert other.status_code == 200
    assert len(gtfs_rt.parse_feed(other.content).entity) == 0
    crossing = client.get("/apps/transit/gtfs-rt/vehicle-positions", headers={
        "Authorization": f"Bearer {city['keys']['viewer']}", "NGSILD-Tenant": OTHER})
    assert crossing.status_code == 403
    assert client.get("/apps/transit/gtfs-rt/trip-updates").status_code == 401


# ============================================================ derived attributes
def test_vehicle_entities_carry_delay_without_a_feedback_loop(city):
    store, state = city["store"], city["state"]
    positions = gtfs_rt.parse_feed(_get(city, "/gtfs-rt/vehicle-positions").content)
    trips = {e.id: e.vehicle.trip.trip_id for e in positions.entity}
    for vehicle_id in city["vehicles"]:
        entity = store.get_entity(TENANT, f"urn:ngsi-ld:Vehicle:{vehicle_id}")
        delay = entity["delaySeconds"]["value"]
        assert entity["punctuality"]["value"] == punctuality(delay)
        assert entity["currentTripId"]["value"] == trips[vehicle_id]
        assert entity["routeId"]["value"] == "1"
        # the device's speed is kept as sent, in km/h
        assert entity["speed"]["unitCode"] == "KMH"
    # every posted observation was placed once; the service's own writes were not
    posted = len(city["pings"]) + len(_braking_pings())
    assert state.pings_processed == posted
    rows = store.history(TENANT, f"urn:ngsi-ld:Vehicle:{city['vehicles'][0]}",
                         ["delaySeconds"], None, None, None)
    assert 0 < len(rows) <= sum(p.vehicle_id == city["vehicles"][0] for p in city["pings"])
    assert DERIVED_ATTRIBUTES >= {"delaySeconds", "punctuality"}


# ==================================================================== stop board
def test_stop_board_json_marks_live_and_scheduled(city):
    updates = gtfs_rt.parse_feed(_get(city, "/gtfs-rt/trip-updates").content)
    stop_id = next(u.stop_id for e in updates.entity for u in e.trip_update.stop_time_update)
    response = _get(city, f"/stops/{stop_id}/arrivals", limit=8)
    assert response.status_code == 200
    data = response.json()
    assert data["stop"]["id"] == stop_id
    assert data["timezone"] == TZ
    rows = data["arrivals"]
    assert 0 < len(rows) <= 8
    assert [r["expected_t"] for r in rows] == sorted(r["expected_t"] for r in rows)
    live = [r for r in rows if r["live"]]
    assert live and all(r["vehicle_id"] in city["vehicles"] for r in live)
    assert all(r["expected_t"] == r["scheduled_t"] for r in rows if not r["live"])
    assert all(r["minutes"] == max(0, round((r["expected_t"] - city["now"]) / 60))
               for r in rows)
    # the map links a GtfsStop entity id to the same board
    by_entity = _get(city, f"/stops/urn:ngsi-ld:GtfsStop:{stop_id}/arrivals", limit=8)
    assert by_entity.json()["arrivals"] == rows
    assert _get(city, "/stops/NO-SUCH-STOP/arrivals").status_code == 404


def test_stop_board_page_is_public_and_localised(city):
    response = city["client"].get("/apps/transit/stops/S004/board")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert 'data-i18n="transit.board.destination"' in response.text
    from cityos.web import i18n

    used = {"transit.board.title", "transit.board.live", "transit.board.scheduled",
            "transit.board.minutes", "transit.board.noKey"}
    assert used <= set(i18n.load_catalogue("en")) and used <= set(i18n.load_catalogue("ja"))
    assert not [k for k in i18n.missing_keys("ja") if k.startswith("transit.")]


# ======================================================================== alerts
def test_service_alerts_crud_with_roles(city):
    client = city["client"]
    alert = {"id": "detour-1", "header": {"en": "Route 1 diverted", "ja": "1系統 迂回"},
             "description": "Road works on the avenue", "cause": "CONSTRUCTION",
             "effect": "DETOUR", "route_ids": ["1"], "stop_ids": ["S004"],
             "start": "2026-01-06T00:00:00Z"}
    viewer = {"Authorization": f"Bearer {city['keys']['viewer']}"}
    operator = {"Authorization": f"Bearer {city['keys']['operator']}"}
    assert client.post("/apps/transit/alerts", json=alert, headers=viewer).status_code == 403
    created = client.post("/apps/transit/alerts", json=alert, headers=operator)
    assert created.status_code == 201, created.text
    assert created.json()["header"] == alert["header"]
    assert [a["id"] for a in client.get("/apps/transit/alerts", headers=viewer).json()] \
        == ["detour-1"]
    feed = gtfs_rt.parse_feed(_get(city, "/gtfs-rt/alerts").content)
    assert gtfs_rt.validate_feed(feed, city["feed"], now=city["now"]) == []
    (entity,) = feed.entity
    assert entity.id == "detour-1"
    assert entity.alert.effect == rt.Alert.DETOUR
    assert {e.route_id for e in entity.alert.informed_entity} == {"1", ""}
    assert entity.alert.active_period[0].start == int(datetime(2026, 1, 6, tzinfo=UTC)
                                                      .timestamp())
    board = _get(city, "/stops/S004/arrivals").json()
    assert [a["id"] for a in board["alerts"]] == ["detour-1"]

    bad = client.post("/apps/transit/alerts", json={**alert, "route_ids": ["99"]},
                      headers=operator)
    assert bad.status_code == 400 and "route_ids: 99" in bad.json()["detail"]
    no_header = client.post("/apps/transit/alerts", json={**alert, "header": {}},
                            headers=operator)
    assert no_header.status_code == 400 and "header" in no_header.json()["detail"]
    assert client.delete("/apps/transit/alerts/detour-1", headers=viewer).status_code == 403
    assert client.delete("/apps/transit/alerts/detour-1", headers=operator).status_code == 204
    assert client.delete("/apps/transit/alerts/detour-1", headers=operator).status_code == 404
    assert len(gtfs_rt.parse_feed(_get(city, "/gtfs-rt/alerts").content).entity) == 0


# ===================================================================== analytics
HAND_DAY = date(2026, 1, 7)


def _hand_arrivals(feed) -> list[ObservedArrival]:
    """Departures of one trip at four stops: 2 min early, on time, 200 s and 400 s
    late; 3 boardings and 1 alighting at each."""
    trip_id = next(t for t in feed.trips_on(HAND_DAY) if t.startswith("2-WD-0-08"))
    schedule = feed.schedule(trip_id)
    origin = service_day_origin(HAND_DAY, TZ)
    out = []
    for index, deviation in zip((1, 2, 3, 4), (-120.0, 0.0, 200.0, 400.0), strict=True):
        depart = origin + float(schedule.departure_s[index]) + deviation
        out.append(ObservedArrival(trip_id, int(schedule.stop_sequence[index]),
                                   schedule.stop_ids[index], depart - 20.0, depart,
                                   "bus-hand", HAND_DAY, 3, 1))
    return out


def test_on_time_and_ridership_on_a_hand_computed_case(city):
    state = city["state"]
    with state.lock:
        state.arrivals.extend(_hand_arrivals(city["feed"]))
    data = _get(city, "/analytics/on-time", date=HAND_DAY.isoformat(), by="route").json()
    assert data["rows"] == [{"route": "2", "observed": 4, "early": 1, "on_time": 2, "late": 1,
                             "on_time_share": 0.5, "mean_deviation_s": 120.0}]
    narrow = _get(city, "/analytics/on-time", date=HAND_DAY.isoformat(), by="",
                  early_s=30, late_s=100).json()["rows"]
    assert (narrow[0]["early"], narrow[0]["on_time"], narrow[0]["late"]) == (1, 1, 2)
    riders = _get(city, "/analytics/ridership", date=HAND_DAY.isoformat(), by="route").json()
    assert riders["rows"] == [{"route": "2", "boardings": 12, "alightings": 4,
                               "observations": 4, "counted": 4}]
    assert _get(city, "/analytics/on-time", by="colour").status_code == 400
    assert _get(city, "/analytics/on-time", date="06/01/2026").status_code == 400


def test_analytics_of_the_live_morning_match_the_library(city):
    state, feed = city["state"], city["feed"]
    arrivals = state.arrivals_on(DAY)
    assert arrivals
    expected = analytics.as_rows(analytics.running_times(arrivals, feed, by=("segment",),
                                                         timezone=TZ), ("segment",))
    got = _get(city, "/analytics/running-times", date=DAY.isoformat(), by="segment").json()
    assert got["rows"] == json.loads(json.dumps(expected))
    for path in ("/analytics/headways", "/analytics/service-delivered", "/analytics/fleet"):
        response = _get(city, path, date=DAY.isoformat())
        assert response.status_code == 200, (path, response.text)
        assert response.json()["rows"], path
    headways = _get(city, "/analytics/headways", date=DAY.isoformat(), events="true").json()
    assert isinstance(headways["events"], list)
    delivered = _get(city, "/analytics/service-delivered", date=DAY.isoformat()).json()
    route_1 = next(r for r in delivered["rows"] if r["route"] == "1")
    assert route_1["trips_scheduled"] > route_1["trips_run"] >= 0


# ============================================================ driver monitoring
def test_driver_events_scores_and_weekly_report(city):
    state = city["state"]
    state.sweep_driving(final=True)
    window = {"since": "2026-01-04T00:00:00Z", "until": "2026-01-08T00:00:00Z"}
    events = _get(city, "/drivers/events", kind="harsh_braking", **window).json()
    braking = [e for e in events if e["driver_id"] == "drv-brake"]
    assert len(braking) == 1
    assert braking[0]["magnitude"] == pytest.approx(0.6, abs=0.05)
    assert braking[0]["vehicle_id"] == "bus-brake" and braking[0]["unit"] == "g"
    geojson = _get(city, "/drivers/events", format="geojson", **window).json()
    assert geojson["type"] == "FeatureCollection"
    scores = _get(city, "/drivers/scores", **window).json()["rows"]
    brake = next(r for r in scores if r["driver"] == "drv-brake")
    assert brake["events"] == {"harsh_braking": 1}
    assert brake["km"] == pytest.approx(0.37, abs=0.05)
    report = _get(city, "/drivers/weekly-report", week="2026-01-05", format="csv")
    assert report.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(report.text)))
    assert {r["driver"] for r in rows} >= {"drv-brake"}
    assert next(r for r in rows if r["driver"] == "drv-brake")["harsh_braking"] == "1"
    assert _get(city, "/drivers/events", kind="sneezing").status_code == 400


# ================================================================== persistence
def test_arrivals_and_driving_survive_a_restart(city):
    state, store = city["state"], city["store"]
    state.persist(store)
    assert store.list_documents(TENANT, ARRIVALS_KIND)
    restarted = TransitService(store, clock=lambda: city["now"]).tenant(TENANT)
    observed = [a for a in state.arrivals if a.vehicle_id != "bus-hand"]  # not live ones
    assert sorted(restarted.arrivals, key=repr) == sorted(observed, key=repr)
    assert len(restarted.driving_events) == len(state.driving_events)
    day = "2026-01-05"
    assert restarted.km_by_driver[day] == pytest.approx(state.km_by_driver[day])
