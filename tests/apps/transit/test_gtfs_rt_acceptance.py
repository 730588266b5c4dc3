"""Acceptance: GTFS-realtime of real feeds and of the demo city, buses simulated.

The shared Kuala Lumpur feed (frequency-based, ``exact_times=0``, templates timed at
the two ends only, cut shapes) and Transjakarta feed (no stop times at all), and the
demo city's feed: five minutes of simulated buses on a few routes go through
:class:`LiveFleet` under a pinned clock. The served trip updates and vehicle
positions, read back with the official bindings, must break no rule of the
specification, and every trip under way must predict each stop ahead of its bus;
the stop board of a stop ahead lists the bus live.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

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
from cityos.apps.transit.prediction import ArrivalPredictor
from cityos.apps.transit.sim import service_day_like
from cityos.apps.transit.synthetic import demo_feed, simulate_day

SHARED = Path(__file__).resolve().parents[4] / "shared" / "data" / "gtfs"
WEDNESDAY = date(2026, 1, 7)
ROUTES = 4  # simulated routes of each feed (the first ones running that day)
WINDOW_S = 300.0  # five minutes of pings before the read
CLOCK_S = 8 * 3600  # the read, local time of the service day
STALE_S = 300.0


def _shared_feed(name: str) -> Feed:
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared sample data, see its README)")
    return read_feed(path, skip_invalid=True)


def _case(name: str) -> tuple[Feed, date, list[str], ArrivalPredictor]:
    """The feed, the service day, the routes simulated and the predictor."""
    if name == "demo":  # its predictor has learnt from a simulated day, as the demo's
        feed = demo_feed()
        routes = ["1", "2"]
        learnt = ArrivalPredictor().learn(
            simulate_day(feed, date(2025, 3, 4), route_ids=routes).arrivals, feed)
        return feed, date(2025, 3, 5), routes, learnt
    feed = _shared_feed(name)
    day = service_day_like(feed, WEDNESDAY)
    assert day is not None
    routes = sorted({feed.trips[t].route_id for t in feed.trips_on(day)})[:ROUTES]
    return feed, day, routes, ArrivalPredictor()  # a feed just imported: nothing learnt


@pytest.mark.parametrize("name", ["kuala-lumpur-2014.zip", "transjakarta-2021.zip", "demo"])
def test_every_trip_under_way_predicts_each_stop_ahead(name):
    feed, day, routes, predictor = _case(name)
    timezone = next(iter(feed.agencies.values())).timezone
    now = service_day_origin(day, timezone) + CLOCK_S
    fleet = LiveFleet(feed, predictor, stale_s=STALE_S)
    for ping in simulate_day(feed, day, route_ids=routes).pings:
        if now - WINDOW_S <= ping.t <= now:
            fleet.process(ping, now=ping.t)
    fleet.release_due(now)

    updates = rt.FeedMessage.FromString(trip_updates_feed(
        fleet.predictions(now), fleet.trip_states(now), now, feed=feed).SerializeToString())
    positions = rt.FeedMessage.FromString(
        vehicle_positions_feed(fleet.vehicles(now), now).SerializeToString())
    for message in (updates, positions):
        assert validate_feed(message, feed, now=now, warnings=True, max_age_s=STALE_S) == []
    assert stops_ahead_problems(updates, positions, feed) == []

    on_trips = [e.vehicle for e in positions.entity if e.vehicle.trip.trip_id]
    assert len(positions.entity) >= 10 and len(on_trips) >= 0.9 * len(positions.entity)
    assert len(updates.entity) >= 0.8 * len(on_trips)  # the others stand at their last stop
    for update in (e.trip_update for e in updates.entity):
        assert update.timestamp and update.stop_time_update
        if update.trip.trip_id in feed.frequencies:
            assert update.trip.start_time and update.trip.start_date

    # the stop board of the next stop of a bus shows it live
    update = next(e.trip_update for e in updates.entity if len(e.trip_update.stop_time_update) > 1)
    stop = update.stop_time_update[0]
    rows = fleet.stop_board(stop.stop_id, now, limit=50, horizon_s=6 * 3600)
    live = [r for r in rows if r.live and r.vehicle_id == update.vehicle.id]
    assert live and live[0].stop_sequence == stop.stop_sequence
    assert round(live[0].expected_t) == stop.arrival.time
