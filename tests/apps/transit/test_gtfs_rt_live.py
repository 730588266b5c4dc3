"""GTFS-realtime from the live pipeline on feeds shaped like the ones users bring.

Small GTFS feeds are written as text files and read with the importer, shaped like a
long-distance bus feed (a few stops hours apart, an overnight trip past 24:00, an
intermediate stop without times, one ``frequencies.txt`` row) and a US city bus
feed (``America/Los_Angeles``, times at timepoints only). A simulated day of each
is replayed ping by ping through :class:`LiveFleet` under a pinned clock; the
served bytes are read back with the official bindings and checked against the
specification's rules (:func:`validate_feed`) and against the vehicle positions
(:func:`stops_ahead_problems`: every trip under way predicts each stop ahead).
Buses that go quiet leave the feeds after ``stale_s``.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest
from google.transit import gtfs_realtime_pb2 as rt

from cityos.apps.transit.gtfs import read_feed
from cityos.apps.transit.gtfs_rt import (
    stops_ahead_problems,
    trip_updates_feed,
    validate_feed,
    vehicle_positions_feed,
)
from cityos.apps.transit.live import LiveFleet
from cityos.apps.transit.models import Feed, service_day_origin
from cityos.apps.transit.pings import distance_m
from cityos.apps.transit.prediction import ArrivalPredictor
from cityos.apps.transit.synthetic import simulate_day

DAY = date(2025, 3, 5)  # a Wednesday
WINDOW_S = 600.0  # pings replayed before the read
STALE_S = 300.0
CALENDAR = [["service_id", "monday", "tuesday", "wednesday", "thursday", "friday",
             "saturday", "sunday", "start_date", "end_date"],
            ["D", 1, 1, 1, 1, 1, 1, 1, "20250101", "20261231"]]


def _hms(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _write(folder: Path, tables: dict[str, list[list]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        (folder / f"{name}.txt").write_text(
            "\n".join(",".join(str(v) for v in row) for row in rows) + "\n", encoding="utf-8")
    return folder


def long_distance_feed(folder: Path) -> Feed:
    """Five towns about 80 km apart: an overnight trip 20:00-28:30 (boarding from
    19:45) whose middle stop has no time, and a daytime trip run hourly from one
    frequencies.txt row."""
    stops = [["stop_id", "stop_name", "stop_lat", "stop_lon"]]
    stops += [[f"S{i}", f"Town {i}", 17.97 + 0.7 * i, 102.60 + 0.1 * i] for i in range(5)]
    stop_times = [["trip_id", "arrival_time", "departure_time", "stop_id", "stop_sequence",
                   "timepoint"]]
    night = ["20:00:00", "22:10:00", "", "26:20:00", "28:30:00"]
    boarding = ["19:45:00"] + night[1:]  # boarding starts before the departure
    stop_times += [["NIGHT", a, d, f"S{i}", i + 1, 1 if d else 0]
                   for i, (a, d) in enumerate(zip(boarding, night, strict=True))]
    day = ["06:00:00", "08:10:00", "10:15:00", "12:20:00", "14:30:00"]
    stop_times += [["DAY", t, t, f"S{i}", i + 1, 1] for i, t in enumerate(day)]
    return read_feed(_write(folder, {
        "agency": [["agency_id", "agency_name", "agency_url", "agency_timezone"],
                   ["A", "Long-distance buses", "https://bus.example.la", "Asia/Vientiane"]],
        "stops": stops,
        "routes": [["route_id", "agency_id", "route_short_name", "route_long_name",
                    "route_type"], ["N", "A", "13N", "Overnight north", 3],
                   ["D", "A", "13D", "Day north", 3]],
        "trips": [["route_id", "service_id", "trip_id"], ["N", "D", "NIGHT"], ["D", "D", "DAY"]],
        "stop_times": stop_times,
        "calendar": CALENDAR,
        "frequencies": [["trip_id", "start_time", "end_time", "headway_secs"],
                        ["DAY", "06:00:00", "18:00:00", 3600]],
    }))


def city_timepoint_feed(folder: Path) -> Feed:
    """A route of twelve stops in Salem, Oregon, a trip every 15 minutes from 06:00
    to 20:45 (past 16:00 local, the UTC date is the next day), with times at three
    timepoints only."""
    n = 12
    stops = [["stop_id", "stop_name", "stop_lat", "stop_lon"]]
    stops += [[f"P{i}", f"Street {i}", 44.94 + 0.004 * i, -123.03 + 0.002 * i]
              for i in range(n)]
    trips = [["route_id", "service_id", "trip_id"]]
    stop_times = [["trip_id", "arrival_time", "departure_time", "stop_id", "stop_sequence",
                   "timepoint"]]
    for k in range(60):
        trip_id = f"T{k:02d}"
        trips.append(["11", "D", trip_id])
        for i in range(n):
            timed = i in (0, 5, n - 1)
            t = _hms(6 * 3600 + 900 * k + 120 * i) if timed else ""
            stop_times.append([trip_id, t, t, f"P{i}", 10 * (i + 1), 1 if timed else 0])
    return read_feed(_write(folder, {
        "agency": [["agency_id", "agency_name", "agency_url", "agency_timezone"],
                   ["C", "City buses", "https://bus.example.us", "America/Los_Angeles"]],
        "stops": stops,
        "routes": [["route_id", "agency_id", "route_short_name", "route_long_name",
                    "route_type"], ["11", "C", "11", "Lancaster", 3]],
        "trips": trips, "stop_times": stop_times, "calendar": CALENDAR,
    }))


def replay(feed: Feed, now: float, *, stale_s: float = STALE_S,
           window_s: float = WINDOW_S, day: date = DAY) -> LiveFleet:
    """The pings of the ``window_s`` before ``now`` of a simulated day, through a
    fleet with a predictor that has learnt nothing yet (a feed just imported)."""
    fleet = LiveFleet(feed, ArrivalPredictor(), stale_s=stale_s)
    for ping in simulate_day(feed, day).pings:
        if now - window_s <= ping.t <= now:
            fleet.process(ping, now=ping.t)
    fleet.release_due(now)
    return fleet


def served(fleet: LiveFleet, now: float) -> tuple[rt.FeedMessage, rt.FeedMessage]:
    """Trip updates and vehicle positions at ``now``, as a consumer reads them: the
    served bytes parsed with the official bindings."""
    updates = trip_updates_feed(fleet.predictions(now), fleet.trip_states(now), now,
                                feed=fleet.feed)
    positions = vehicle_positions_feed(fleet.vehicles(now), now)
    return (rt.FeedMessage.FromString(updates.SerializeToString()),
            rt.FeedMessage.FromString(positions.SerializeToString()))


def assert_valid(fleet: LiveFleet, now: float) -> tuple[rt.FeedMessage, rt.FeedMessage]:
    updates, positions = served(fleet, now)
    for message in (updates, positions):
        assert validate_feed(message, fleet.feed, now=now, warnings=True,
                             max_age_s=fleet.stale_s) == []
    assert stops_ahead_problems(updates, positions, fleet.feed) == []
    return updates, positions


@pytest.fixture(scope="module")
def long_distance(tmp_path_factory) -> Feed:
    return long_distance_feed(tmp_path_factory.mktemp("long-distance"))


@pytest.fixture(scope="module")
def city(tmp_path_factory) -> Feed:
    return city_timepoint_feed(tmp_path_factory.mktemp("city"))


@pytest.mark.parametrize("clock_s", [9 * 3600, 23 * 3600, 25 * 3600 + 1800],
                         ids=["morning", "evening", "after-midnight"])
def test_long_distance_runs_predict_every_stop_ahead(long_distance, clock_s):
    origin = service_day_origin(DAY, "Asia/Vientiane")
    now = origin + clock_s
    fleet = replay(long_distance, now)
    updates, positions = assert_valid(fleet, now)
    assert len(positions.entity) >= 2 and len(updates.entity) == len(positions.entity)
    runs = {(e.trip_update.trip.trip_id, e.trip_update.trip.start_time) for e in updates.entity}
    if clock_s >= 23 * 3600:  # the overnight trip is under way (on its own service day)
        assert ("NIGHT", "19:45:00") in runs  # start_time: the first arrival (E023)
        night = next(e.trip_update for e in updates.entity
                     if e.trip_update.trip.trip_id == "NIGHT")
        assert night.trip.start_date == "20250305"
    for update in (e.trip_update for e in updates.entity):
        assert update.HasField("timestamp") and update.stop_time_update
        if update.trip.trip_id == "DAY":  # a run of the frequencies.txt row
            assert update.trip.start_time in {_hms(6 * 3600 + 3600 * k) for k in range(12)}
        assert [u.stop_sequence for u in update.stop_time_update][-1] == 5
        assert all(u.arrival.uncertainty > 0 for u in update.stop_time_update)


@pytest.mark.parametrize("clock_s", [7 * 3600 + 900, 16 * 3600 + 300],
                         ids=["morning", "late-afternoon-next-utc-day"])
def test_timepoint_only_city_feed_in_los_angeles(city, clock_s):
    origin = service_day_origin(DAY, "America/Los_Angeles")
    now = origin + clock_s
    fleet = replay(city, now)
    updates, positions = assert_valid(fleet, now)
    assert updates.entity and len(updates.entity) == len(positions.entity)
    # the untimed stops are predicted too, with their schedule deviation
    stops = {u.stop_sequence for e in updates.entity for u in e.trip_update.stop_time_update}
    assert stops - {10, 60, 120}
    assert all(u.arrival.HasField("delay") for e in updates.entity
               for u in e.trip_update.stop_time_update)


def test_the_stop_board_shows_the_buses_under_way(city):
    origin = service_day_origin(DAY, "America/Los_Angeles")
    now = origin + 7 * 3600 + 900
    fleet = replay(city, now)
    predictions = fleet.predictions(now)
    stop_id, trip_id = next((p.stop_id, p.trip_id) for p in predictions
                            if p.stop_id != "P11")
    rows = fleet.stop_board(stop_id, now, limit=20)
    live = [r for r in rows if r.live]
    assert trip_id in {r.trip_id for r in live}
    row = next(r for r in live if r.trip_id == trip_id)
    mine = next(p for p in predictions if p.trip_id == trip_id and p.stop_id == stop_id)
    assert row.expected_t == mine.predicted_t and row.lower_t <= row.expected_t <= row.upper_t


# ============================================================ quiet vehicles
QUIET_TRIP = "T04"  # 07:00-07:22


def _quiet_case(city):
    """Two buses under way at 07:20; the one on the 07:00 trip stops reporting four
    minutes before."""
    origin = service_day_origin(DAY, "America/Los_Angeles")
    now = origin + 7 * 3600 + 1200
    fleet = LiveFleet(city, ArrivalPredictor(), stale_s=STALE_S)
    pings = [p for p in simulate_day(city, DAY).pings if now - WINDOW_S <= p.t <= now]
    quiet = next(p.vehicle_id for p in pings if p.trip_id == QUIET_TRIP)
    cut = max(p.t for p in pings if p.vehicle_id == quiet) - 240
    for ping in pings:
        if ping.vehicle_id != quiet or ping.t <= cut:
            fleet.process(ping, now=ping.t)
    fleet.flush()  # no ping held back for reordering
    last_t = next(v.t for v in fleet.vehicles() if v.vehicle_id == quiet)
    return fleet, quiet, last_t, now, pings


def test_a_quiet_bus_leaves_the_feeds_and_its_trip_predictions_end(city):
    fleet, quiet, last_t, now, pings = _quiet_case(city)
    others = {v.vehicle_id for v in fleet.vehicles(now)} - {quiet}
    assert others
    # still within stale_s: published, with its trip's predictions
    updates, positions = assert_valid(fleet, last_t + STALE_S)
    assert quiet in {e.vehicle.vehicle.id for e in positions.entity}
    assert QUIET_TRIP in {e.trip_update.trip.trip_id for e in updates.entity}
    # silent for longer: gone from both feeds, the others stay
    later = last_t + STALE_S + 1
    updates, positions = assert_valid(fleet, later)
    assert {e.vehicle.vehicle.id for e in positions.entity} == others
    assert QUIET_TRIP not in {e.trip_update.trip.trip_id for e in updates.entity}
    assert fleet.trip_predictions(QUIET_TRIP, later) == []
    assert QUIET_TRIP not in {p.trip_id for p in fleet.predictions(later)}
    # the stop boards show the trip from the timetable again
    board_stop = "P10"
    rows = fleet.stop_board(board_stop, later, limit=20)
    assert any(r.trip_id == QUIET_TRIP and not r.live for r in rows)
    assert not any(r.trip_id == QUIET_TRIP and r.live for r in rows)
    # release_due drops the forecast itself; a new ping brings the bus back
    fleet.release_due(later)
    assert QUIET_TRIP not in {p.trip_id for p in fleet.predictions()}
    back = next(p for p in pings if p.vehicle_id == quiet and p.t > last_t)
    fleet.process(back, now=later)
    fleet.flush()
    updates, positions = assert_valid(fleet, later)
    assert quiet in {e.vehicle.vehicle.id for e in positions.entity}
    assert QUIET_TRIP in {e.trip_update.trip.trip_id for e in updates.entity}


def test_how_long_a_bus_may_be_silent_is_configurable(city):
    fleet, quiet, last_t, _, _ = _quiet_case(city)
    fleet.stale_s = 600.0
    _, positions = assert_valid(fleet, last_t + 400)
    assert quiet in {e.vehicle.vehicle.id for e in positions.entity}


def test_pings_hours_behind_the_clock_give_an_empty_valid_feed(long_distance):
    """What the field trial saw: buses replayed hours behind the server's clock were
    published 4.3 h after their last ping, their trip updates with a delay and no
    stop time update."""
    origin = service_day_origin(DAY, "Asia/Vientiane")
    seen = origin + 9 * 3600
    fleet = replay(long_distance, seen)
    now = seen + 4.3 * 3600
    fleet.release_due(now)
    updates, positions = assert_valid(fleet, now)
    assert len(updates.entity) == 0 and len(positions.entity) == 0
    assert fleet.vehicles() == [] and fleet.predictions() == []


def test_without_a_predictor_the_trips_predict_from_the_timetable(city):
    origin = service_day_origin(DAY, "America/Los_Angeles")
    now = origin + 7 * 3600 + 900
    fleet = LiveFleet(city, stale_s=STALE_S)
    for ping in simulate_day(city, DAY).pings:
        if now - WINDOW_S <= ping.t <= now:
            fleet.process(ping, now=ping.t)
    updates, _ = assert_valid(fleet, now)
    assert updates.entity
    for update in (e.trip_update for e in updates.entity):
        # the trip's delay carried to every stop ahead; no interval, so no uncertainty
        assert all(not u.arrival.HasField("uncertainty") for u in update.stop_time_update)
        assert {u.arrival.delay for u in update.stop_time_update[-3:]} == {update.delay}


def test_a_trip_with_no_prediction_is_not_published_without_stop_time_updates(city):
    origin = service_day_origin(DAY, "America/Los_Angeles")
    now = origin + 7 * 3600 + 900
    fleet = replay(city, now)
    states = fleet.trip_states(now)
    message = trip_updates_feed([], states, now, feed=city)
    assert len(message.entity) == 0
    assert validate_feed(message, city, now=now) == []



# ============================================================ no times at all
def untimed_feed(folder: Path) -> Feed:
    """A BRT corridor of six stops 3 km apart whose stop_times.txt has no times (as
    the Transjakarta feed): the simulator runs it every 30 minutes."""
    stops = [["stop_id", "stop_name", "stop_lat", "stop_lon"]]
    stops += [[f"H{i}", f"Halte {i}", -6.20 + 0.027 * i, 106.82] for i in range(6)]
    stop_times = [["trip_id", "arrival_time", "departure_time", "stop_id", "stop_sequence"]]
    stop_times += [["U1", "", "", f"H{i}", i + 1] for i in range(6)]
    return read_feed(_write(folder, {
        "agency": [["agency_id", "agency_name", "agency_url", "agency_timezone"],
                   ["J", "BRT", "https://brt.example.id", "Asia/Jakarta"]],
        "stops": stops,
        "routes": [["route_id", "agency_id", "route_short_name", "route_long_name",
                    "route_type"], ["1", "J", "1", "Corridor 1", 3]],
        "trips": [["route_id", "service_id", "trip_id"], ["1", "D", "U1"]],
        "stop_times": stop_times, "calendar": CALENDAR,
    }), skip_invalid=True)


def test_trips_without_times_are_followed_run_by_run(tmp_path):
    feed = untimed_feed(tmp_path / "untimed")
    assert not np.isfinite(feed.schedule("U1").arrival_s).any()
    now = service_day_origin(DAY, "Asia/Jakarta") + 8 * 3600 + 600
    fleet = replay(feed, now, window_s=1800)
    updates, positions = assert_valid(fleet, now)
    runs = [e.trip_update for e in updates.entity]
    # several buses on the one trip: a trip update each, told apart by start_time
    assert len(runs) >= 2 and {u.trip.trip_id for u in runs} == {"U1"}
    assert len({u.trip.start_time for u in runs}) == len(runs)
    assert len({u.vehicle.id for u in runs}) == len(runs)
    for update in runs:
        # predicted times, but no schedule to deviate from
        assert not update.HasField("delay")
        assert all(u.arrival.time and not u.arrival.HasField("delay")
                   for u in update.stop_time_update)
        times = [u.arrival.time for u in update.stop_time_update]
        assert times == sorted(times) and times[0] >= update.timestamp


# ================================================================= the server
def test_the_server_serves_predictions_and_drops_buses_silent_past_its_setting(tmp_path):
    """The city feed imported into a server whose transit_vehicle_stale_s is 120 s:
    fifteen minutes of pings through the ingest path, the feeds read over HTTP."""
    from fastapi.testclient import TestClient

    from cityos.apps.transit.entities import import_feed
    from cityos.apps.transit.service import TransitService
    from cityos.apps.transit.sim import ping_observation
    from cityos.config import Settings
    from cityos.core.store import open_store
    from cityos.core.tenancy import create_key
    from cityos.server import create_app

    folder = tmp_path / "city"
    feed = city_timepoint_feed(folder)
    url = f"sqlite:///{tmp_path / 'city.db'}"
    store = open_store(url)
    import_feed(store, "salem", folder)
    key = create_key(store, "salem", "operator")[0]
    app = create_app(Settings(database_url=url, transit_vehicle_stale_s=120.0), store)
    now = service_day_origin(DAY, "America/Los_Angeles") + 7 * 3600 + 900
    pings = [p for p in simulate_day(feed, DAY).pings if now - 900 <= p.t <= now]
    headers = {"Authorization": f"Bearer {key}", "NGSILD-Tenant": "salem"}
    clock = {"now": now}
    with TestClient(app) as client:
        service = next(s for s in app.state.services if isinstance(s, TransitService))
        service.clock = lambda: clock["now"]
        body = [{**ping_observation(p), "id": f"urn:ngsi-ld:Vehicle:{p.vehicle_id}",
                 "type": "Vehicle"} for p in pings]
        assert client.post("/apps/ingest/observations", json=body,
                           headers=headers).status_code == 204
        assert service.wait_idle(60)
        state = service.tenant("salem")
        with state.lock:
            state.fleet.flush()  # every ping placed, none held for reordering
            last_t = max(v.t for v in state.fleet.vehicles())

        def read(feed_name: str) -> rt.FeedMessage:
            response = client.get(f"/apps/transit/gtfs-rt/{feed_name}", headers=headers)
            assert response.status_code == 200
            return rt.FeedMessage.FromString(response.content)

        updates, positions = read("trip-updates"), read("vehicle-positions")
        for message in (updates, positions):
            assert validate_feed(message, feed, now=now, warnings=True, max_age_s=120) == []
        assert stops_ahead_problems(updates, positions, feed) == []
        assert updates.entity and all(e.trip_update.stop_time_update for e in updates.entity)
        status = client.get("/apps/transit/status", headers=headers).json()
        assert status["vehicles"] == len(positions.entity)
        # the stop ahead of a bus lists it live
        update = updates.entity[0].trip_update
        stop = update.stop_time_update[0]
        board = client.get(f"/apps/transit/stops/{stop.stop_id}/arrivals",
                           headers=headers).json()["arrivals"]
        assert any(r["live"] and r["vehicle_id"] == update.vehicle.id for r in board)

        # two minutes after the last ping every bus is gone, the board back to the timetable
        clock["now"] = last_t + 121
        updates, positions = read("trip-updates"), read("vehicle-positions")
        assert len(updates.entity) == 0 and len(positions.entity) == 0
        assert client.get("/apps/transit/status", headers=headers).json()["vehicles"] == 0
        board = client.get(f"/apps/transit/stops/{stop.stop_id}/arrivals",
                           headers=headers).json()["arrivals"]
        assert board and not any(r["live"] for r in board)


def test_a_bus_metres_from_its_next_stop_still_predicts_that_stop(city):
    """The predictor counts a stop within 20 m as reached; the fleet only once the bus
    gets there. The trip update starts at the stop the vehicle positions say the bus
    is heading for: due now."""
    from cityos.apps.transit.models import Ping

    origin = service_day_origin(DAY, "America/Los_Angeles")
    t0 = origin + 7 * 3600  # trip T04 leaves P0 at 07:00
    a, b = city.stops["P0"], city.stops["P1"]
    share = 1.0 - 10.0 / distance_m(a.lat, a.lon, b.lat, b.lon)  # 10 m short of P1
    near = (a.lat + share * (b.lat - a.lat), a.lon + share * (b.lon - a.lon))
    fleet = LiveFleet(city, ArrivalPredictor(), stale_s=STALE_S)
    for ping in (Ping("bus-x", t0 - 30, a.lat, a.lon, 0.0, trip_id="T04"),
                 Ping("bus-x", t0, a.lat, a.lon, 0.0, trip_id="T04"),
                 Ping("bus-x", t0 + 60, *near, 8.0, trip_id="T04")):
        fleet.process(ping, now=ping.t)
    fleet.flush()
    updates, positions = assert_valid(fleet, t0 + 60)
    vehicle = positions.entity[0].vehicle
    assert (vehicle.current_stop_sequence, vehicle.current_status) == \
        (20, rt.VehiclePosition.IN_TRANSIT_TO)
    first = updates.entity[0].trip_update.stop_time_update[0]
    assert (first.stop_sequence, first.arrival.time) == (20, int(t0 + 60))
