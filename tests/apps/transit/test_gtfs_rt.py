"""GTFS-realtime feeds: built, serialised, parsed back with the official bindings and
validated against the specification's rules."""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from google.transit import gtfs_realtime_pb2 as rt

from cityos.apps.transit.gtfs_rt import (
    GtfsRealtimeError,
    ServiceAlert,
    TripState,
    VehicleState,
    alerts_feed,
    occupancy_status,
    parse_feed,
    parse_feed_text,
    to_json,
    trip_updates_feed,
    validate_feed,
    vehicle_positions_feed,
    vehicle_state_from_ping,
)
from cityos.apps.transit.models import (
    Agency,
    ArrivalPrediction,
    Feed,
    Ping,
    Route,
    ServiceCalendar,
    Stop,
    StopTimes,
    Trip,
)

SPEC_EXAMPLES = Path(__file__).resolve().parents[4] / "shared" / "data" / "gtfs-rt"
NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def small_feed() -> Feed:
    """One route, four stops, two trips of three and four stops."""
    stops = {s: Stop(s, f"Stop {s}", 4.89 + i * 0.001, 114.94) for i, s in enumerate("ABCD")}
    trips = {"T1": Trip("T1", "R1", "WK", direction_id=0),
             "T2": Trip("T2", "R1", "WK", direction_id=0)}
    stop_ids = ["A", "B", "C", "D"]
    rows = [("T1", ["A", "B", "C"], [1, 2, 3], [28800, 28920, 29040]),
            ("T2", ["A", "B", "C", "D"], [1, 2, 3, 4], [30600, 30720, 30840, 30960])]
    index, seq, arr = [], [], []
    starts = [0]
    for _, sids, seqs, times in rows:
        index += [stop_ids.index(s) for s in sids]
        seq += seqs
        arr += times
        starts.append(len(index))
    stop_times = StopTimes(["T1", "T2"], np.array(starts, dtype=np.int64), stop_ids,
                           np.array(index, dtype=np.int32), np.array(seq, dtype=np.int32),
                           np.array(arr, dtype=float), np.array(arr, dtype=float),
                           np.full(len(arr), np.nan))
    return Feed({"AG": Agency("AG", "Bus", "http://bus.example", "Asia/Brunei")}, stops,
                {"R1": Route("R1", "1", "Route One")}, trips, stop_times, {},
                {"WK": ServiceCalendar("WK", (True,) * 7, date(2023, 1, 1), date(2023, 12, 31))})


def prediction(trip_id, seq, stop_id, predicted, scheduled, half_width=30.0):
    return ArrivalPrediction(trip_id, seq, stop_id, "BUS7", predicted, predicted - half_width,
                             predicted + half_width, scheduled, NOW - 5)


# ------------------------------------------------------------------ vehicle positions
def test_vehicle_positions_round_trip_through_the_official_bindings():
    vehicles = [
        VehicleState(vehicle_id="BUS7", label="7", trip_id="T1", route_id="R1",
                     start_date=date(2023, 11, 15), lat=4.8903, lon=114.9401, bearing=92.5,
                     speed=8.5, t=NOW - 3, current_stop_sequence=2, stop_id="B",
                     current_status="IN_TRANSIT_TO", occupancy="MANY_SEATS_AVAILABLE"),
        VehicleState(vehicle_id="BUS9", lat=4.8921, lon=114.9411, t=NOW - 10),
        VehicleState(vehicle_id="BUS9", lat=4.8922, lon=114.9412, t=NOW - 2),  # newer wins
    ]
    data = vehicle_positions_feed(vehicles, NOW).SerializeToString()
    back = rt.FeedMessage()
    back.ParseFromString(data)
    assert back.header.gtfs_realtime_version == "2.0"
    assert back.header.incrementality == rt.FeedHeader.FULL_DATASET
    assert back.header.timestamp == int(NOW)
    assert [e.id for e in back.entity] == ["BUS7", "BUS9"]
    bus7 = back.entity[0].vehicle
    assert bus7.trip.trip_id == "T1" and bus7.trip.route_id == "R1"
    assert bus7.trip.start_date == "20231115"
    assert bus7.vehicle.id == "BUS7" and bus7.vehicle.label == "7"
    assert bus7.position.latitude == pytest.approx(4.8903, abs=1e-6)
    assert bus7.position.longitude == pytest.approx(114.9401, abs=1e-5)
    assert bus7.position.bearing == pytest.approx(92.5)
    assert bus7.position.speed == pytest.approx(8.5)
    assert bus7.current_stop_sequence == 2 and bus7.stop_id == "B"
    assert bus7.current_status == rt.VehiclePosition.IN_TRANSIT_TO
    assert bus7.occupancy_status == rt.VehiclePosition.MANY_SEATS_AVAILABLE
    assert bus7.timestamp == int(NOW - 3)
    bus9 = back.entity[1].vehicle
    assert not bus9.HasField("trip")
    assert bus9.position.latitude == pytest.approx(4.8922, abs=1e-6)
    assert bus9.timestamp == int(NOW - 2)
    assert validate_feed(back, small_feed(), now=NOW, warnings=True) == []


def test_vehicle_state_from_ping_and_bad_states():
    ping = Ping("BUS3", NOW, 4.89, 114.94, speed_mps=5.0, bearing_deg=10.0, trip_id="T2")
    state = vehicle_state_from_ping(ping, route_id="R1", current_status="STOPPED_AT")
    assert (state.trip_id, state.speed, state.bearing, state.current_status) == (
        "T2", 5.0, 10.0, "STOPPED_AT")
    with pytest.raises(GtfsRealtimeError, match="lat 95"):
        VehicleState(vehicle_id="X", lat=95.0, lon=0.0, t=NOW)
    with pytest.raises(GtfsRealtimeError, match="occupancy"):
        VehicleState(vehicle_id="X", lat=0.0, lon=0.0, t=NOW, occupancy="PACKED")
    with pytest.raises(GtfsRealtimeError, match="start_date"):
        VehicleState(vehicle_id="X", lat=0.0, lon=0.0, t=NOW, start_date="2023-11-15")


def test_occupancy_status_from_passenger_counts():
    assert occupancy_status(None, 30, 60) == "NO_DATA_AVAILABLE"
    assert occupancy_status(0, 30, 60) == "EMPTY"
    assert occupancy_status(10, 30, 60) == "MANY_SEATS_AVAILABLE"
    assert occupancy_status(20, 30, 60) == "FEW_SEATS_AVAILABLE"
    assert occupancy_status(40, 30, 60) == "STANDING_ROOM_ONLY"
    assert occupancy_status(55, 30, 60) == "CRUSHED_STANDING_ROOM_ONLY"
    assert occupancy_status(60, 30, 60) == "FULL"


# ----------------------------------------------------------------------- trip updates
def test_trip_updates_round_trip_with_sequence_stop_time_delay_and_uncertainty():
    origin = 1_699_977_600.0  # 2023-11-15 00:00 in Asia/Brunei (UTC+8) is 16:00Z the day before
    predictions = [
        prediction("T2", 4, "D", origin + 30960 + 95, origin + 30960, half_width=40),
        prediction("T2", 2, "B", origin + 30720 + 60, origin + 30720, half_width=20),
        prediction("T2", 3, "C", origin + 30840 + 75, origin + 30840, half_width=30),
    ]
    states = [TripState(trip_id="T2", route_id="R1", start_date=date(2023, 11, 15),
                        vehicle_id="BUS7", vehicle_label="7", delay_s=60),
              TripState(trip_id="T1", route_id="R1", start_date="20231115",
                        schedule_relationship="CANCELED")]
    message = trip_updates_feed(predictions, states, NOW)
    back = parse_feed(message.SerializeToString())
    assert [e.id for e in back.entity] == ["T1", "T2"]
    canceled = back.entity[0].trip_update
    assert canceled.trip.schedule_relationship == rt.TripDescriptor.CANCELED
    assert len(canceled.stop_time_update) == 0
    update = back.entity[1].trip_update
    assert update.trip.trip_id == "T2" and update.trip.route_id == "R1"
    assert update.trip.start_date == "20231115"
    assert update.trip.schedule_relationship == rt.TripDescriptor.SCHEDULED
    assert update.vehicle.id == "BUS7" and update.vehicle.label == "7"
    assert update.delay == 60
    assert update.timestamp == int(NOW - 5)
    rows = [(u.stop_sequence, u.stop_id, u.arrival.time, u.arrival.delay, u.arrival.uncertainty)
            for u in update.stop_time_update]
    assert rows == [(2, "B", int(origin + 30780), 60, 20),
                    (3, "C", int(origin + 30915), 75, 30),
                    (4, "D", int(origin + 31055), 95, 40)]
    assert validate_feed(back, small_feed(), now=NOW) == []


def test_trip_updates_fill_route_from_the_static_feed_and_keep_times_non_decreasing():
    predictions = [prediction("T2", 2, "B", NOW + 300, NOW + 240),
                   prediction("T2", 3, "C", NOW + 299.6, NOW + 360)]  # rounding tie
    message = trip_updates_feed(predictions, None, NOW, feed=small_feed())
    update = message.entity[0].trip_update
    assert update.trip.route_id == "R1" and update.trip.direction_id == 0
    assert [u.arrival.time for u in update.stop_time_update] == [int(NOW + 300)] * 2
    assert validate_feed(message, small_feed(), now=NOW) == []
    assert any(p.startswith("E022") for p in
               validate_feed(message, small_feed(), now=NOW, strict_times=True))


def test_json_format_uses_the_specification_field_names():
    message = trip_updates_feed([prediction("T2", 2, "B", NOW + 300, NOW + 240)],
                                [TripState(trip_id="T2", start_date="20231115")], NOW)
    data = json.loads(to_json(message))
    assert data["header"]["gtfs_realtime_version"] == "2.0"
    assert data["header"]["incrementality"] == "FULL_DATASET"
    assert int(data["header"]["timestamp"]) == int(NOW)
    stop_update = data["entity"][0]["trip_update"]["stop_time_update"][0]
    assert stop_update["stop_sequence"] == 2 and stop_update["stop_id"] == "B"
    assert int(stop_update["arrival"]["time"]) == int(NOW + 300)


# ----------------------------------------------------------------------------- alerts
def test_alerts_round_trip_with_periods_informed_entities_and_translations():
    alert = ServiceAlert(id="works-1", cause="CONSTRUCTION", effect="DETOUR",
                         header={"en": "Stop B closed", "ms": "Hentian B ditutup"},
                         description={"en": "Use stop C, 300 m north.",
                                      "ms": "Gunakan hentian C, 300 m ke utara."},
                         start=NOW - 3600, end=NOW + 7200, route_ids=("R1",),
                         stop_ids=("B",), trip_ids=("T2",), url={"en": "http://bus.example/b"})
    back = parse_feed(alerts_feed([alert], NOW).SerializeToString())
    assert len(back.entity) == 1 and back.entity[0].id == "works-1"
    body = back.entity[0].alert
    assert [(p.start, p.end) for p in body.active_period] == [(int(NOW - 3600), int(NOW + 7200))]
    selectors = [(s.route_id, s.stop_id, s.trip.trip_id) for s in body.informed_entity]
    assert selectors == [("R1", "", ""), ("", "B", ""), ("", "", "T2")]
    assert body.cause == rt.Alert.CONSTRUCTION and body.effect == rt.Alert.DETOUR
    assert {(t.language, t.text) for t in body.header_text.translation} == {
        ("en", "Stop B closed"), ("ms", "Hentian B ditutup")}
    assert {t.language for t in body.description_text.translation} == {"en", "ms"}
    assert body.url.translation[0].text == "http://bus.example/b"
    assert validate_feed(back, small_feed(), now=NOW) == []


def test_bad_alerts_name_the_field():
    with pytest.raises(GtfsRealtimeError, match="cause: 'ROADWORKS'"):
        ServiceAlert(id="a", cause="ROADWORKS", header={"en": "x"}, route_ids=("R1",))
    with pytest.raises(GtfsRealtimeError, match="header"):
        ServiceAlert(id="a", route_ids=("R1",))
    with pytest.raises(GtfsRealtimeError, match="route_id, stop_id"):
        ServiceAlert(id="a", header={"en": "x"})
    with pytest.raises(GtfsRealtimeError, match="end .* before start"):
        ServiceAlert(id="a", header={"en": "x"}, stop_ids=("B",), start=NOW, end=NOW - 1)
    ok = ServiceAlert(id="a", header={"en": "x"}, stop_ids=("B",))
    with pytest.raises(GtfsRealtimeError, match="'a': id is used"):
        alerts_feed([ok, ok], NOW)


# ------------------------------------------------------------------------- validation
def test_validator_reports_the_rules_a_broken_feed_breaks():
    message = rt.FeedMessage()
    message.header.gtfs_realtime_version = "2.0"
    message.header.timestamp = int(NOW + 600)  # ten minutes ahead of the clock
    update = message.entity.add(id="x").trip_update
    update.trip.trip_id = "NOPE"
    update.trip.start_date = "2023-11-15"
    for seq, stop_id, t in [(3, "C", NOW + 100), (2, "B", NOW + 50), (4, "Z", NOW + 40)]:
        stu = update.stop_time_update.add(stop_sequence=seq, stop_id=stop_id)
        stu.arrival.time = int(t)
    stu = update.stop_time_update.add(stop_sequence=5)  # no arrival nor departure
    twice = message.entity.add(id="x")
    twice.vehicle.position.latitude = 91.0
    twice.vehicle.position.longitude = 0.0
    twice.alert.header_text.translation.add(text="both")
    message.entity.add(id="a").alert.header_text.translation.add(text="no one informed")
    problems = validate_feed(message, small_feed(), now=NOW)
    codes = [p.split()[0] for p in problems]
    for code in ("E050", "E049", "E021", "E003", "E002", "E011", "E022", "E043", "E026",
                 "E032"):
        assert code in codes, (code, problems)
    assert any("id is not unique" in p for p in problems)
    assert any("exactly one of trip_update, vehicle, alert (has vehicle, alert)" in p
               for p in problems)
    assert any(p.startswith("E002 entity[0] 'x' trip_update.stop_time_update[1]") for p in problems)


def test_validator_checks_stop_sequence_against_the_static_trip():
    message = trip_updates_feed([prediction("T1", 2, "C", NOW + 60, NOW + 60)],
                                [TripState(trip_id="T1", route_id="R1")], NOW)
    problems = validate_feed(message, small_feed(), now=NOW)
    assert problems == ["E045 entity[0] 'T1' trip_update.stop_time_update[0]: stop_sequence 2 "
                        "is stop 'B' in the static feed, not 'C'"]


def test_parse_feed_rejects_what_is_not_a_feed():
    with pytest.raises(GtfsRealtimeError, match="not a GTFS-realtime FeedMessage"):
        parse_feed(b"\x0a\x05hello")
    with pytest.raises(GtfsRealtimeError, match="header"):
        parse_feed(b"")


# ----------------------------------------------------------- the specification's examples
def _spec_example(name: str) -> str:
    path = SPEC_EXAMPLES / name
    if not path.exists():
        pytest.skip(f"the specification's example {path} is absent")
    return path.read_text()


def test_spec_alert_example_parses_and_is_valid():
    message = parse_feed_text(_spec_example("alerts.asciipb"))
    alert = message.entity[0].alert
    assert alert.cause == rt.Alert.CONSTRUCTION and alert.effect == rt.Alert.DETOUR
    assert [(s.route_id, s.stop_id) for s in alert.informed_entity] == [
        ("219", ""), ("", "16230"), ("100", "16299")]
    assert validate_feed(message, now=1284457468 + 60) == []
    # and the binary encoding of it reads back the same
    assert parse_feed(message.SerializeToString()) == message


def test_spec_trip_updates_example_parses_and_misses_arrivals_where_the_spec_now_requires_them():
    message = parse_feed_text(_spec_example("trip-updates-full.asciipb"))
    assert [e.id for e in message.entity] == ["simple-trip", "3"]
    first = message.entity[0].trip_update
    assert [(u.stop_sequence, u.arrival.delay) for u in first.stop_time_update] == [
        (3, 5), (8, 1), (10, 0)]
    assert message.entity[1].trip_update.trip.start_time == "11:15:35"
    # The example predates the rule that a SCHEDULED update carries an arrival or a
    # departure (its last update of each trip carries neither): exactly those two.
    problems = validate_feed(message, now=1284457468 + 60)
    recommended = validate_feed(message, now=1284457468 + 60, warnings=True)
    assert sum(p.startswith("W001") for p in recommended) == 2  # no trip update timestamps
    assert problems == [
        "E043 entity[0] 'simple-trip' trip_update.stop_time_update[2]: a SCHEDULED "
        "stop_time_update needs arrival or departure",
        "E043 entity[1] '3' trip_update.stop_time_update[1]: a SCHEDULED "
        "stop_time_update needs arrival or departure",
    ]


def test_a_run_of_a_frequency_trip_is_published_as_trip_id_and_start_time():
    from cityos.apps.transit.gtfs_rt import _trip_descriptor

    descriptor = rt.TripDescriptor()
    _trip_descriptor(descriptor, trip_id="R1-weekday@25:10:05", route_id="R1",
                     start_date="20260302")
    assert (descriptor.trip_id, descriptor.start_time) == ("R1-weekday", "25:10:05")
    plain = rt.TripDescriptor()
    _trip_descriptor(plain, trip_id="T7", route_id="R1")
    assert (plain.trip_id, plain.start_time) == ("T7", "")


# ------------------------------------------------------------ more specification rules
def _frequent_feed(exact_times: bool) -> Feed:
    """small_feed with T2 run every 10 minutes 08:30-09:30."""
    from dataclasses import replace as _replace

    from cityos.apps.transit.models import Frequency

    return _replace(small_feed(), frequencies={
        "T2": [Frequency("T2", 30600, 34200, 600, exact_times)]})


def _one_update(trip_id: str, **descriptor) -> rt.FeedMessage:
    message = trip_updates_feed([prediction(trip_id, 2, "B", NOW + 60, NOW + 60)],
                                [TripState(trip_id=trip_id, route_id="R1", **descriptor)],
                                NOW, feed=small_feed())
    return message


def test_validator_wants_start_time_and_start_date_of_a_frequency_based_run():
    problems = validate_feed(_one_update("T2"), _frequent_feed(False), now=NOW)
    assert [p.split(":")[0] for p in problems] == [
        "E006 entity[0] 'T2' trip_update.trip.start_time",
        "E006 entity[0] 'T2' trip_update.trip.start_date"]
    good = _one_update("T2", start_time="08:40:00", start_date="20231114")
    assert validate_feed(good, _frequent_feed(False), now=NOW) == []


def test_validator_checks_a_run_start_against_the_frequency_periods():
    off_headway = _one_update("T2", start_time="08:45:00", start_date="20231114")
    assert validate_feed(off_headway, _frequent_feed(False), now=NOW) == []  # exact_times=0
    problems = validate_feed(off_headway, _frequent_feed(True), now=NOW)
    assert len(problems) == 1 and problems[0].startswith(
        "E019 entity[0] 'T2' trip_update.trip.start_time: 08:45:00 is not a whole number")
    outside = _one_update("T2", start_time="10:00:00", start_date="20231114")
    problems = validate_feed(outside, _frequent_feed(False), now=NOW)
    assert problems == ["entity[0] 'T2' trip_update.trip.start_time: 10:00:00 is outside "
                        "every frequencies.txt period of trip 'T2'"]


def test_validator_rejects_negative_uncertainty_and_a_second_update_of_a_run():
    message = trip_updates_feed([prediction("T1", 2, "B", NOW + 60, NOW + 60)],
                                [TripState(trip_id="T1", route_id="R1")], NOW)
    message.entity[0].trip_update.stop_time_update[0].arrival.uncertainty = -5
    twin = message.entity.add()
    twin.CopyFrom(message.entity[0])
    twin.id = "T1-again"
    twin.trip_update.stop_time_update[0].arrival.uncertainty = 5
    problems = validate_feed(message, small_feed(), now=NOW)
    assert problems == [
        "entity[0] 'T1' trip_update.stop_time_update[0].arrival.uncertainty: -5 is negative",
        "entity[1] 'T1-again' trip_update.trip: trip 'T1' has another trip update in the "
        "feed (at most one per trip)"]


def test_validator_reports_stale_entities_and_trip_updates_without_stop_times():
    vehicle = VehicleState(vehicle_id="BUS7", trip_id="T1", lat=4.89, lon=114.94, t=NOW - 900)
    positions = vehicle_positions_feed([vehicle], NOW)
    assert validate_feed(positions, small_feed(), now=NOW) == []
    assert validate_feed(positions, small_feed(), now=NOW, max_age_s=300) == [
        "entity[0] 'BUS7' vehicle.timestamp: 1699999100 is 900 s older than "
        "header.timestamp: the data is stale (more than 300 s)"]
    bare = rt.FeedMessage()
    bare.CopyFrom(trip_updates_feed([], [TripState(trip_id="T1", schedule_relationship="CANCELED")],
                                    NOW))
    assert validate_feed(bare, small_feed(), now=NOW) == []  # a cancelled trip needs none
    bare.entity[0].trip_update.trip.schedule_relationship = rt.TripDescriptor.SCHEDULED
    assert [p.split()[0] for p in validate_feed(bare, small_feed(), now=NOW)] == ["E041"]
    # and the builder never writes one
    assert len(trip_updates_feed([], [TripState(trip_id="T1")], NOW).entity) == 0


def test_trip_updates_are_timestamped_and_predictions_without_interval_have_no_uncertainty():
    no_interval = ArrivalPrediction("T1", 2, "B", "BUS7", NOW + 60, math.nan, math.nan,
                                    NOW + 30, NOW - 5)
    message = trip_updates_feed([no_interval], [TripState(trip_id="T1", timestamp=NOW - 2)], NOW)
    update = message.entity[0].trip_update
    assert update.timestamp == int(NOW - 2)
    arrival = update.stop_time_update[0].arrival
    assert (arrival.time, arrival.delay, arrival.HasField("uncertainty")) == \
        (int(NOW + 60), 30, False)
    # without a trip state's timestamp: when the prediction was made
    message = trip_updates_feed([no_interval], None, NOW)
    assert message.entity[0].trip_update.timestamp == int(NOW - 5)


def test_stops_ahead_needs_a_trip_update_for_each_stop_ahead_of_each_vehicle():
    from cityos.apps.transit.gtfs_rt import stops_ahead_problems

    feed = small_feed()
    vehicle = VehicleState(vehicle_id="BUS7", trip_id="T2", lat=4.89, lon=114.94, t=NOW - 5,
                           current_stop_sequence=2, current_status="IN_TRANSIT_TO")
    positions = vehicle_positions_feed([vehicle], NOW)
    ahead = [prediction("T2", seq, stop, NOW + 60 * seq, NOW + 60 * seq)
             for seq, stop in [(2, "B"), (3, "C"), (4, "D")]]
    updates = trip_updates_feed(ahead, [TripState(trip_id="T2", vehicle_id="BUS7")], NOW)
    assert stops_ahead_problems(updates, positions, feed) == []
    short = trip_updates_feed(ahead[:2], [TripState(trip_id="T2", vehicle_id="BUS7")], NOW)
    assert stops_ahead_problems(short, positions, feed) == [
        "entity[0] trip_update: stop_sequences [2, 3] are not the stops ahead of vehicle "
        "'BUS7' on trip 'T2' at 2 (on its way): [2, 3, 4]"]
    none = trip_updates_feed([], None, NOW)
    assert stops_ahead_problems(none, positions, feed) == [
        "vehicle 'BUS7' on trip 'T2': 0 trip updates of the run (one expected)"]
    gone = vehicle_positions_feed([], NOW)
    assert stops_ahead_problems(updates, gone, feed) == [
        "entity[0] trip_update: vehicle 'BUS7' is not in the vehicle positions"]


def test_validator_wants_a_scheduled_start_time_at_the_first_arrival_and_boarding_stops():
    from dataclasses import replace as _replace

    late_start = _one_update("T1", start_time="08:00:30", start_date="20231114")
    assert validate_feed(late_start, small_feed(), now=NOW) == [
        "E023 entity[0] 'T1' trip_update.trip.start_time: 08:00:30 is not the first arrival "
        "of trip 'T1' in stop_times.txt (08:00:00)"]
    on_time = _one_update("T1", start_time="08:00:00", start_date="20231114")
    assert validate_feed(on_time, small_feed(), now=NOW) == []
    feed = small_feed()
    station = _replace(feed, stops={**feed.stops, "B": _replace(feed.stops["B"],
                                                                location_type=1)})
    assert validate_feed(on_time, station, now=NOW) == [
        "E015 entity[0] 'T1' trip_update.stop_time_update[0].stop_id: stop_id 'B' has "
        "location_type 1: a trip stops at a boarding stop (0)"]
