"""The live fleet: a simulated morning of the demo city replayed ping by ping.

Route 1 of the demo city is simulated for a weekday (the truth: every arrival and
departure, and the devices' noisy pings with outages, duplicates and late delivery);
half the buses send no trip id. The replay must find the stop passages the simulator
knows, the trips of the buses that do not say, predictions for the trips under way and
a stop board mixing live and timetabled rows.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import date

import numpy as np
import pytest

from cityos.apps.transit.assignment import split_instance_id
from cityos.apps.transit.gtfs_rt import TripState, VehicleState
from cityos.apps.transit.live import BoardRow, LiveFleet, VehicleUpdate
from cityos.apps.transit.models import Feed, Frequency, Ping, StopTimes, service_day_origin
from cityos.apps.transit.prediction import ArrivalPredictor
from cityos.apps.transit.synthetic import TIMEZONE, demo_feed, simulate_day

DAY = date(2025, 3, 5)  # a Wednesday
TRAIN_DAY = date(2025, 3, 4)
ROUTES = ["1"]
START_S, END_S = 6 * 3600, 9 * 3600 + 1800  # the replayed morning, GTFS seconds


@pytest.fixture(scope="module")
def feed() -> Feed:
    return demo_feed()


@pytest.fixture(scope="module")
def replay(feed):
    """The morning replayed through a fleet with a trained predictor."""
    train = simulate_day(feed, TRAIN_DAY, route_ids=ROUTES)
    predictor = ArrivalPredictor().learn(train.arrivals, feed)
    day = simulate_day(feed, DAY, route_ids=ROUTES)
    origin = service_day_origin(DAY, TIMEZONE)
    vehicles = sorted({p.vehicle_id for p in day.pings})
    silent = set(vehicles[::2])  # these devices send no trip id
    pings = [dataclasses.replace(p, trip_id=None) if p.vehicle_id in silent else p
             for p in day.pings if origin + START_S <= p.t < origin + END_S]
    fleet = LiveFleet(feed, predictor)
    updates: list[VehicleUpdate] = []
    boards = []
    board_stop = feed.schedule(next(iter(day.vehicles.values()))[0]).stop_ids[6]
    for ping in pings:
        update = fleet.process(ping)
        if update is not None:
            updates.append(update)
        if not boards and ping.t >= origin + 8 * 3600:
            # a snapshot in the morning peak, while buses are under way
            boards.append((ping.t, fleet.stop_board(board_stop, ping.t, limit=12),
                           fleet.trip_states(), fleet.vehicles(), fleet.predictions()))
    updates.extend(fleet.flush())
    return {"fleet": fleet, "day": day, "updates": updates, "silent": silent,
            "origin": origin, "board": boards[0], "board_stop": board_stop,
            "pings": pings}


def _truth(day):
    return {(a.vehicle_id, a.trip_id, a.stop_sequence): a for a in day.arrivals}


def test_stop_passages_match_the_simulated_truth(replay):
    fleet, day, origin = replay["fleet"], replay["day"], replay["origin"]
    truth = _truth(day)
    observed = fleet.arrivals_log
    matched = [(a, truth[(a.vehicle_id, a.trip_id, a.stop_sequence)]) for a in observed
               if (a.vehicle_id, a.trip_id, a.stop_sequence) in truth]
    # every passage is of a trip the vehicle really ran
    assert len(matched) == len(observed) > 500
    arrival_error = np.array([abs(a.arrival_t - b.arrival_t) for a, b in matched
                              if a.stop_sequence != 1])  # first stops: at the terminus
    departure_error = np.array([abs(a.departure_t - b.departure_t) for a, b in matched])
    assert np.median(arrival_error) < 30.0
    assert np.percentile(arrival_error, 90) < 60.0
    assert np.median(departure_error) < 30.0
    # nearly every stop served inside the window (away from its edges) was found,
    # for the buses that name their trip and for those whose trip was assigned
    inside = [a for a in day.arrivals
              if origin + START_S + 900 <= a.arrival_t < origin + END_S - 900]
    found = {(a.vehicle_id, a.trip_id, a.stop_sequence) for a in observed}
    for group in (replay["silent"], {a.vehicle_id for a in inside} - replay["silent"]):
        expected = [a for a in inside if a.vehicle_id in group]
        share = np.mean([(a.vehicle_id, a.trip_id, a.stop_sequence) in found
                         for a in expected])
        assert expected and share > 0.9, share
    # dwell seen where the bus stood: observed dwell times follow the true ones
    dwell = np.array([(a.departure_t - a.arrival_t, b.departure_t - b.arrival_t)
                      for a, b in matched if 1 < a.stop_sequence])
    assert abs(np.median(dwell[:, 0]) - np.median(dwell[:, 1])) < 10.0
    # passenger counts reported at the stops reach the observed arrivals
    assert sum(1 for a in observed if a.boardings) > 50


def test_updates_carry_the_trip_position_and_delay(replay):
    updates, feed_day = replay["updates"], replay["day"]
    on_trip = [u for u in updates if u.trip_id is not None]
    assert len(on_trip) > 0.8 * len(updates)
    true_trips = feed_day.vehicles
    assert all(split_instance_id(u.trip_id)[0] in true_trips[u.vehicle_id] for u in on_trip)
    for u in on_trip[::50]:
        assert u.status in ("IN_TRANSIT_TO", "STOPPED_AT")
        assert u.stop_id is not None and u.current_stop_sequence is not None
        assert math.isfinite(u.delay_s)
        if u.on_route:  # snapped onto the shape, within GPS error of the fix
            assert abs(u.lat - u.raw_lat) * 111_000 < 60 and u.dist_m >= 0
    # a vehicle's progress along a trip never goes back
    last: dict[tuple[str, str], float] = {}
    for u in on_trip:
        key = (u.vehicle_id, u.trip_id)
        if u.dist_m is not None:
            assert u.dist_m >= last.get(key, -1.0)
            last[key] = u.dist_m
    # stop passages come out on the updates as well as in the log
    assert sum(len(u.new_arrivals) for u in updates) == len(replay["fleet"].arrivals_log)


def test_predictions_for_the_trips_under_way(replay):
    t, _rows, trip_states, vehicles, predictions = replay["board"]
    truth = _truth(replay["day"])
    assert trip_states and predictions
    assert all(isinstance(s, TripState) for s in trip_states)
    assert all(isinstance(v, VehicleState) for v in vehicles)
    under_way = {s.trip_id: s for s in trip_states}
    errors = []
    for p in predictions:
        assert p.trip_id in under_way
        assert p.vehicle_id == under_way[p.trip_id].vehicle_id
        assert p.lower_t <= p.predicted_t <= p.upper_t
        assert t - 60 <= p.made_at <= t
        actual = truth.get((p.vehicle_id, p.trip_id, p.stop_sequence))
        if actual is not None and p.predicted_t - p.made_at < 600:
            errors.append(actual.arrival_t - p.predicted_t)
    assert len(errors) > 10
    assert np.median(np.abs(errors)) < 120.0
    # updates carried predictions when they were refreshed, and not on every ping
    updates = replay["updates"]
    refreshed = [u for u in updates if u.predictions]
    assert 0 < len(refreshed) < len(updates)
    sample = refreshed[len(refreshed) // 2]
    sequences = [p.stop_sequence for p in sample.predictions]
    assert sequences == sorted(sequences)
    assert all(p.trip_id == sample.trip_id for p in sample.predictions)


def test_stop_board_mixes_live_and_scheduled_rows(replay, feed):
    t, rows, trip_states, _vehicles, predictions = replay["board"]
    assert all(isinstance(r, BoardRow) for r in rows)
    expected = [r.expected_t for r in rows]
    assert expected == sorted(expected)
    live = [r for r in rows if r.live]
    scheduled = [r for r in rows if not r.live]
    assert live and scheduled
    vehicles_of = {s.trip_id: s.vehicle_id for s in trip_states}
    for r in live:
        assert vehicles_of[r.trip_id] == r.vehicle_id
        p = next(p for p in predictions if p.trip_id == r.trip_id
                 and p.stop_id == replay["board_stop"])
        assert r.expected_t == p.predicted_t and r.scheduled_t == p.scheduled_t
    for r in scheduled:
        assert r.trip_id not in vehicles_of and r.vehicle_id is None
        assert r.expected_t == r.scheduled_t >= t - 60
    for r in rows:
        trip = feed.trips[r.trip_id]
        assert r.route_short_name == feed.routes[trip.route_id].short_name
        assert r.headsign == trip.headsign
    with pytest.raises(KeyError, match="stop_id"):
        replay["fleet"].stop_board("no-such-stop", t)


def test_duplicates_and_teleports_are_rejected_and_counted(feed):
    day = simulate_day(feed, DAY, route_ids=["2"])
    vehicle = sorted(day.vehicles)[0]
    own = sorted((p for p in day.pings if p.vehicle_id == vehicle), key=lambda p: p.t)[:80]
    own = list({p.t: p for p in own}.values())  # the simulator's own duplicates out
    fleet = LiveFleet(feed, None, max_speed_mps=33.0)
    for p in own[:40]:
        fleet.process(p)
    fleet.flush()
    before = fleet.vehicles()[0]
    sent_twice = own[39]
    teleport = dataclasses.replace(own[40], lat=own[40].lat + 0.5)  # 55 km away
    assert fleet.process(sent_twice) is None
    assert fleet.process(teleport) is None
    fleet.flush()
    after = fleet.vehicles()[0]
    assert (after.lat, after.lon, after.t) == (before.lat, before.lon, before.t)
    counts = fleet.rejected[vehicle]
    assert counts["duplicate"] == 1 and counts["jump"] == 1
    assert fleet.rejected_totals() == {"duplicate": 1, "jump": 1}
    # the rest of the trace goes on normally
    updates = [fleet.process(p) for p in own[41:]] + fleet.flush()
    assert [u for u in updates if u is not None][-1].t == own[-1].t


def test_without_a_predictor_positions_and_passages_still_flow(feed):
    day = simulate_day(feed, DAY, route_ids=["4"])
    origin = service_day_origin(DAY, TIMEZONE)
    pings = [p for p in day.pings if origin + 7 * 3600 <= p.t < origin + 8 * 3600]
    fleet = LiveFleet(feed)
    updates = [u for u in (fleet.process(p) for p in pings) if u is not None]
    assert fleet.arrivals_log
    assert all(not u.predictions for u in updates)
    assert any(u.delay_s is not None for u in updates)
    # the trips under way still predict every stop ahead: the timetable shifted by
    # the delay, never before the last report, with no interval
    states = {s.trip_id: s for s in fleet.trip_states()}
    predictions = fleet.predictions()
    assert states and {p.trip_id for p in predictions} == set(states)
    assert all(math.isnan(p.lower_t) and math.isnan(p.upper_t) for p in predictions)
    for trip_id, state in states.items():
        mine = sorted((p for p in predictions if p.trip_id == trip_id),
                      key=lambda p: p.stop_sequence)
        expected = np.maximum.accumulate([max(p.scheduled_t + (state.delay_s or 0.0),
                                              state.timestamp) for p in mine])
        assert [p.predicted_t for p in mine] == pytest.approx(expected.tolist())


def _frequency_feed(feed: Feed) -> tuple[Feed, str]:
    """Route 2 outbound as one template trip every 10 minutes, 07:00-08:00."""
    template = min((t for t in feed.trips.values()
                    if t.route_id == "2" and t.direction_id == 0 and t.service_id == "WD"),
                   key=lambda t: feed.schedule(t.trip_id).departure_s[0])
    schedule = feed.schedule(template.trip_id)
    st = feed.stop_times
    index = {s: i for i, s in enumerate(st.stop_ids)}
    shift = 7 * 3600 - float(schedule.departure_s[0])
    times = StopTimes([template.trip_id], np.array([0, len(schedule)]), list(st.stop_ids),
                      np.array([index[s] for s in schedule.stop_ids], dtype=np.int32),
                      np.asarray(schedule.stop_sequence, dtype=np.int32),
                      schedule.arrival_s + shift, schedule.departure_s + shift,
                      np.asarray(schedule.shape_dist_m, dtype=float))
    trip = dataclasses.replace(template, block_id=None)
    return Feed(feed.agencies, feed.stops, feed.routes, {trip.trip_id: trip}, times,
                feed.shapes, feed.calendars,
                {trip.trip_id: [Frequency(trip.trip_id, 7 * 3600, 8 * 3600, 600)]}), \
        trip.trip_id


def test_frequency_trips_run_as_instances(feed):
    frequent, template = _frequency_feed(feed)
    day = simulate_day(frequent, DAY)
    train = simulate_day(frequent, TRAIN_DAY)
    predictor = ArrivalPredictor().learn(train.arrivals, frequent)
    origin = service_day_origin(DAY, TIMEZONE)
    fleet = LiveFleet(frequent, predictor)
    now = origin + 7 * 3600 + 1500
    for ping in day.pings:
        if ping.t >= now:
            break
        fleet.process(ping)
    states = fleet.trip_states()
    assert states
    for state in states:
        base, start_s = split_instance_id(state.trip_id)
        assert base == template and start_s is not None
        assert state.start_time == state.trip_id.split("@")[1]
    predicted = {p.trip_id for p in fleet.predictions()}
    assert predicted <= {s.trip_id for s in states} and predicted
    # observed arrivals keep the feed's trip id, as history does
    assert fleet.arrivals_log and {a.trip_id for a in fleet.arrivals_log} == {template}
    truth = {(a.vehicle_id, a.stop_sequence): a.arrival_t for a in day.arrivals}
    errors = [abs(a.arrival_t - truth[(a.vehicle_id, a.stop_sequence)])
              for a in fleet.arrivals_log if a.stop_sequence != 1]
    assert np.median(errors) < 30.0
    # the board lists the instances not yet under way from the timetable
    stop = frequent.schedule(template).stop_ids[3]
    rows = fleet.stop_board(stop, now, limit=20)
    scheduled = [r for r in rows if not r.live]
    assert scheduled and all(split_instance_id(r.trip_id)[0] == template for r in scheduled)
    assert {r.trip_id for r in scheduled}.isdisjoint(s.trip_id for s in states)
    starts = sorted(split_instance_id(r.trip_id)[1] for r in scheduled)
    assert all(b - a == 600 for a, b in zip(starts, starts[1:], strict=False))
    assert all(r.trip_id in {s.trip_id for s in states} for r in rows if r.live)


def test_a_ping_is_held_for_reordering_then_released(feed):
    trip_id = next(t for t in feed.trips if t.startswith("1-WD-0-08"))
    schedule = feed.schedule(trip_id)
    origin = service_day_origin(DAY, TIMEZONE)
    stop = feed.stops[schedule.stop_ids[0]]
    t0 = origin + float(schedule.departure_s[0]) - 60
    fleet = LiveFleet(feed)
    first = Ping("bus-x", t0, stop.lat, stop.lon, 0.0, trip_id=trip_id)
    assert fleet.process(first) is None  # waits for later pings arriving out of order
    update = fleet.process(Ping("bus-x", t0 + 5, stop.lat, stop.lon, 0.0, trip_id=trip_id))
    assert update is not None and update.t == t0 and update.trip_id == trip_id
    assert update.status == "STOPPED_AT" and update.current_stop_sequence == \
        int(schedule.stop_sequence[0])
    assert update.delay_s == 0.0  # waiting for its departure is not being late
    released = fleet.release_due(t0 + 60)
    assert [u.t for u in released] == [t0 + 5]
