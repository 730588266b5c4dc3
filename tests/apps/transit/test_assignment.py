"""Trip assignment: direction, departure time, block, headway-based trips, off route.

The feed: one street running 3 km east from stop A to stop D (stops every 1 km), a
shape each way, trips each way at 08:00 and 08:10 (10 minutes end to end, 30 s dwell),
a westbound trip at 07:50 whose bus goes on with block b1, and a headway-based loop.
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from cityos.apps.transit.assignment import (
    assign_trip,
    assign_trip_explained,
    instance_id,
    schedule_of,
    split_instance_id,
)
from cityos.apps.transit.models import (
    Agency,
    Feed,
    Frequency,
    Ping,
    Route,
    ServiceCalendar,
    Shape,
    Stop,
    StopTimes,
    Trip,
    service_day_origin,
)

TZ = "Asia/Brunei"
DAY = date(2024, 3, 4)  # a Monday
LAT0, LON0 = 4.89, 114.90
M_PER_DEG = 111_195.0
STREET_M = 3000.0
SPEED = STREET_M / 540.0  # 3 km in 9 min of running + 2 x 30 s dwell = 10 min


def east_lon(east_m):
    return LON0 + np.asarray(east_m, float) / (M_PER_DEG * math.cos(math.radians(LAT0)))


def hms(h, m, s=0):
    return h * 3600 + m * 60 + s


def at(seconds):
    """POSIX time of a GTFS time of the test day."""
    return service_day_origin(DAY, TZ) + seconds


def build_feed() -> Feed:
    stops = {f"S{k}": Stop(f"S{k}", "ABCD"[k], LAT0, float(east_lon(1000.0 * k)))
             for k in range(4)}
    # a small loop north of the street for the headway-based route
    angle = np.linspace(0, 2 * math.pi, 41)
    loop_lat = LAT0 + 0.02 + 400 * np.sin(angle) / M_PER_DEG
    loop_lon = east_lon(1500.0 + 400 * np.cos(angle))
    stops["L0"] = Stop("L0", "Loop", float(loop_lat[0]), float(loop_lon[0]))
    stops["L1"] = Stop("L1", "Loop top", float(loop_lat[20]), float(loop_lon[20]))

    x = np.linspace(0.0, STREET_M, 31)
    shapes = {
        "east": Shape("east", east_lon(x), np.full(31, LAT0), x.copy()),
        "west": Shape("west", east_lon(x[::-1]), np.full(31, LAT0), x.copy()),
        "loop": Shape("loop", loop_lon, loop_lat, np.linspace(0, 2 * math.pi * 400, 41)),
    }
    trips = {}
    rows = []  # (trip, stop, seq, arrival, departure, dist)

    def street_trip(trip_id, direction, depart_s, block):
        trips[trip_id] = Trip(trip_id, "R1", "wk", "east" if direction == 0 else "west",
                              direction, block)
        order = [0, 1, 2, 3] if direction == 0 else [3, 2, 1, 0]
        t = depart_s
        for seq, k in enumerate(order):
            dist = 1000.0 * seq
            arrive = t if seq == 0 else t + 1000.0 / SPEED
            depart = arrive if seq in (0, 3) else arrive + 30
            rows.append((trip_id, f"S{k}", seq + 1, arrive, depart, dist))
            t = depart

    street_trip("W0750", 1, hms(7, 50), "b1")
    street_trip("E0800", 0, hms(8, 0), "b1")
    street_trip("E0810", 0, hms(8, 10), "b2")
    street_trip("W0800", 1, hms(8, 0), "b2")
    street_trip("W0810", 1, hms(8, 10), "b1")
    # headway-based: a 10-minute loop every 10 minutes, 07:00-09:00, times unknown in
    # the shape frame (NaN: measured by snapping the stops)
    trips["LOOP"] = Trip("LOOP", "R2", "wk", "loop", 0, None)
    loop_len = 2 * math.pi * 400
    rows += [("LOOP", "L0", 1, 0, 0, np.nan), ("LOOP", "L1", 2, 300, 300, np.nan),
             ("LOOP", "L0", 3, 600, 600, np.nan)]
    assert loop_len > 0

    trip_ids = list(trips)
    rows.sort(key=lambda r: (trip_ids.index(r[0]), r[2]))
    stop_ids = list(stops)
    counts = [sum(1 for r in rows if r[0] == t) for t in trip_ids]
    stop_times = StopTimes(
        trip_ids, np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), stop_ids,
        np.array([stop_ids.index(r[1]) for r in rows], np.int32),
        np.array([r[2] for r in rows], np.int32),
        np.array([r[3] for r in rows], float), np.array([r[4] for r in rows], float),
        np.array([r[5] for r in rows], float))
    weekdays = ServiceCalendar("wk", (True,) * 5 + (False,) * 2, date(2024, 1, 1),
                               date(2024, 12, 31))
    return Feed({"A1": Agency("A1", "Bus", "https://bus.example", TZ)}, stops,
                {"R1": Route("R1", "1", "A-D"), "R2": Route("R2", "2", "Loop")}, trips,
                stop_times, shapes, {"wk": weekdays},
                {"LOOP": [Frequency("LOOP", hms(7, 0), hms(9, 0), 600)]})


@pytest.fixture(scope="module")
def feed():
    return build_feed()


def street_pings(vehicle, direction, start_east_m, t_s, n=7, step_s=10.0):
    """Pings of a bus driving along the street from ``start_east_m`` at ``t_s``."""
    sign = 1 if direction == 0 else -1
    return [Ping(vehicle, at(t_s + i * step_s), LAT0 + 3e-5,  # 3 m off the centre line
                 float(east_lon(start_east_m + sign * SPEED * i * step_s)))
            for i in range(n)]


def expected_east_m(direction, depart_s, now_s):
    """Where a trip on time is at ``now_s`` (running only, first stop dwell is 0)."""
    run = now_s - depart_s
    dist = 0.0
    for leg in range(3):
        leg_s = 1000.0 / SPEED
        if run <= leg_s:
            dist += run * SPEED
            break
        dist += 1000.0
        run -= leg_s + (30 if leg < 2 else 0)
        if run <= 0:
            break
    return dist if direction == 0 else STREET_M - dist


# ---------------------------------------------------------------------- the cases
@pytest.mark.parametrize("direction, depart, expected", [
    (0, hms(8, 0), "E0800"), (0, hms(8, 10), "E0810"),
    (1, hms(8, 0), "W0800"), (1, hms(8, 10), "W0810"),
])
def test_picks_the_direction_and_the_departure(feed, direction, depart, expected):
    now = depart + 240  # four minutes into the trip, on time
    where = expected_east_m(direction, depart, now - 60)
    *recent, ping = street_pings("bus-9", direction, where, now - 60)
    assert ping.t == pytest.approx(at(now))
    got = assign_trip_explained(feed, ping, recent, DAY, TZ)
    assert got.trip_id == expected, got
    best = got.candidates[0]
    assert abs(best.deviation_s) < 60 and best.offset_m < 10
    # the other direction was refused for going the wrong way
    wrong = [c for c in got.candidates if c.trip_id[0] != expected[0]]
    assert wrong and all(c.rejected for c in wrong)


def test_a_late_bus_still_gets_its_trip(feed):
    # the 08:00 eastbound bus running 4 minutes late, seen at 08:08
    where = expected_east_m(0, hms(8, 4), hms(8, 7))
    *recent, ping = street_pings("bus-3", 0, where, hms(8, 7))
    got = assign_trip_explained(feed, ping, recent, DAY, TZ)
    assert got.trip_id == "E0800"
    # 4 min late at the start, a little less once dwell time at B is counted
    assert 150 < got.candidates[0].deviation_s < 250


def test_the_block_decides_at_the_terminal(feed):
    # a bus standing at A (east end of W0750, start of E0800 / E0810) at 08:05
    standing = [Ping("bus-5", at(hms(8, 4) + 10 * i), LAT0, float(east_lon(5.0)))
                for i in range(7)]
    *recent, ping = standing
    # without a block: the 08:10 departure it is waiting for
    assert assign_trip(feed, ping, recent, DAY, TZ) == "E0810"
    # it just ran W0750 in block b1: the next trip of b1 is E0800 (now 5 min late)
    got = assign_trip_explained(feed, ping, recent, DAY, TZ, previous_trip_id="W0750")
    assert got.trip_id == "E0800" and "block" in got.reason
    # the device told the block: the b1 trip under way now
    assert assign_trip(feed, ping, recent, DAY, TZ, block_id="b1") == "E0800"
    assert assign_trip(feed, ping, recent, DAY, TZ, block_id="b2") == "E0810"


def test_far_from_every_shape_is_none_with_a_reason(feed):
    far = Ping("bus-1", at(hms(8, 5)), LAT0 - 0.05, LON0 + 0.01)
    got = assign_trip_explained(feed, far, [], DAY, TZ)
    assert got.trip_id is None and "no trip" in got.reason
    assert assign_trip(feed, far, [], DAY, TZ) is None
    # near the street, but 100 m off it: candidates exist and all are refused
    off = Ping("bus-1", at(hms(8, 5)), LAT0 + 100 / M_PER_DEG, float(east_lon(1500.0)))
    got = assign_trip_explained(feed, off, [], DAY, TZ)
    assert got.trip_id is None and got.candidates
    assert all(c.rejected for c in got.candidates)


def test_nothing_runs_at_night_or_on_sunday(feed):
    where = float(east_lon(1000.0))
    assert assign_trip(feed, Ping("b", at(hms(3, 0)), LAT0, where), [], DAY, TZ) is None
    sunday = date(2024, 3, 10)
    ping = Ping("b", service_day_origin(sunday, TZ) + hms(8, 5), LAT0, where)
    assert assign_trip(feed, ping, [], sunday, TZ) is None


def test_a_trip_id_sent_by_the_device_is_kept(feed):
    ping = Ping("b", at(hms(8, 5)), LAT0, float(east_lon(1000.0)), trip_id="W0810")
    assert assign_trip(feed, ping, [], DAY, TZ) == "W0810"
    # a trip id the feed does not know is ignored: assigned from time and place
    where = float(east_lon(expected_east_m(0, hms(8, 0), hms(8, 4))))
    unknown = Ping("b", at(hms(8, 4)), LAT0, where, trip_id="nope")
    assert assign_trip(feed, unknown, [], DAY, TZ) == "E0800"


def test_headway_based_trips_expand_to_instances(feed):
    assert instance_id("LOOP", hms(8, 20)) == "LOOP@08:20:00"
    assert instance_id("NIGHT", hms(25, 5, 9)) == "NIGHT@25:05:09"
    assert split_instance_id("LOOP@08:20:00") == ("LOOP", hms(8, 20))
    assert split_instance_id("E0800") == ("E0800", None)
    schedule = schedule_of(feed, "LOOP@08:20:00")
    assert list(schedule.arrival_s) == [hms(8, 20), hms(8, 25), hms(8, 30)]
    # a bus a quarter of the way round the loop at 08:22:30, moving anticlockwise
    shape = feed.shapes["loop"]
    length = float(shape.dist_m[-1])
    pings = []
    for i, frac in enumerate(np.linspace(0.15, 0.25, 5)):
        d = frac * length
        pings.append(Ping("bus-L", at(hms(8, 22) - 60 + 15 * i),
                          float(np.interp(d, shape.dist_m, shape.lat)),
                          float(np.interp(d, shape.dist_m, shape.lon))))
    *recent, ping = pings
    assert assign_trip(feed, ping, recent, DAY, TZ) == "LOOP@08:20:00"
    # the device names the template trip: its instance is chosen
    named = Ping(ping.vehicle_id, ping.t, ping.lat, ping.lon, trip_id="LOOP")
    assert assign_trip(feed, named, recent, DAY, TZ) == "LOOP@08:20:00"


def test_a_bus_at_the_loop_terminal_before_departure_waits_for_its_start(feed):
    shape = feed.shapes["loop"]
    # standing at the loop's first/last stop at 08:38: the 08:40 departure
    ping = Ping("bus-L", at(hms(8, 38)), float(shape.lat[0]), float(shape.lon[0]))
    assert assign_trip(feed, ping, [], DAY, TZ) == "LOOP@08:40:00"


def test_a_real_feed_assigns_a_scheduled_trip():
    path = Path(__file__).resolve().parents[3].parent / "shared/data/gtfs/google-sample-feed-1.zip"
    if not path.exists():
        pytest.skip(f"real GTFS sample absent: {path}")
    gtfs = pytest.importorskip("cityos.apps.transit.gtfs")
    if not hasattr(gtfs, "read_feed"):
        pytest.skip("the GTFS reader is not there yet")
    real = gtfs.read_feed(path)
    day = next(d for d in (date(2007, 6, 4), date(2008, 1, 7), date(2010, 1, 4))
               if real.trips_on(d))
    tz = next(iter(real.agencies.values())).timezone
    right = 0
    for trip_id in real.trips_on(day):
        schedule = real.schedule(trip_id)
        stop = real.stops[schedule.stop_ids[1]]
        # at the second stop at its scheduled time (for a headway-based trip, the
        # template's time)
        ping = Ping("bus", service_day_origin(day, tz) + float(schedule.arrival_s[1]),
                    stop.lat, stop.lon)
        got = assign_trip_explained(real, ping, [], day, tz)
        # never another trip; None only when two trips share the stop at that time
        assert got.trip_id is None or split_instance_id(got.trip_id)[0] == trip_id, got
        right += got.trip_id is not None
    assert right >= len(real.trips_on(day)) - 2
