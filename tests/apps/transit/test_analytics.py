"""Operations analytics on a small case whose answers are worked out by hand below."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pytest

from cityos.apps.transit.analytics import (
    AnalyticsError,
    as_rows,
    fleet_utilisation,
    headway_events,
    headway_regularity,
    on_time_performance,
    ridership,
    running_times,
    service_delivered,
)
from cityos.apps.transit.models import (
    Agency,
    Feed,
    Frequency,
    ObservedArrival,
    Route,
    ServiceCalendar,
    Shape,
    Stop,
    StopTimes,
    Trip,
    service_day_origin,
)

DAY = date(2024, 3, 4)
TZ = "Asia/Brunei"  # UTC+8, no daylight saving
EIGHT = service_day_origin(DAY, TZ) + 8 * 3600  # 08:00 local, POSIX seconds


def the_feed() -> Feed:
    """Route R1 A-B-C (3 km), a trip every 10 min from 08:00 (T1..T5, T5 never runs),
    5 min between stops, no scheduled dwell; route F is headway-based (every 10 min)."""
    stops = {s: Stop(s, s, 4.89 + 0.0135 * i, 114.94) for i, s in enumerate("ABC")}
    trips = {f"T{n}": Trip(f"T{n}", "R1", "WK", "S1", 0) for n in range(1, 6)}
    trips["F1"] = Trip("F1", "F", "WK", None, 0)
    rows = [(f"T{n}", 8 * 3600 + 600 * (n - 1)) for n in range(1, 6)] + [("F1", 8 * 3600)]
    trip_ids, starts, index, seq, times, dist = [], [0], [], [], [], []
    for trip_id, first in rows:
        trip_ids.append(trip_id)
        index += [0, 1, 2]
        seq += [1, 2, 3]
        times += [first, first + 300, first + 600]
        dist += [0.0, 1500.0, 3000.0] if trip_id != "F1" else [np.nan] * 3
        starts.append(len(index))
    stop_times = StopTimes(trip_ids, np.array(starts, dtype=np.int64), ["A", "B", "C"],
                           np.array(index, dtype=np.int32), np.array(seq, dtype=np.int32),
                           np.array(times, dtype=float), np.array(times, dtype=float),
                           np.array(dist))
    shape = Shape("S1", np.array([114.94] * 3), np.array([4.89, 4.9035, 4.917]),
                  np.array([0.0, 1500.0, 3000.0]))
    return Feed({"AG": Agency("AG", "Bus", "http://bus.example", TZ)}, stops,
                {"R1": Route("R1", "1", "One"), "F": Route("F", "F", "Frequent")}, trips,
                stop_times, {"S1": shape},
                {"WK": ServiceCalendar("WK", (True,) * 7, date(2024, 1, 1), date(2024, 12, 31))},
                {"F1": [Frequency("F1", 8 * 3600, 9 * 3600, 600, exact_times=False)]})


def arrive(trip, seq, arrival, departure=None, vehicle="V1", boardings=None, alightings=None):
    """An arrival ``arrival`` seconds after 08:00 local."""
    return ObservedArrival(trip, seq, "ABC"[seq - 1], EIGHT + arrival,
                           EIGHT + (arrival if departure is None else departure), vehicle, DAY,
                           boardings, alightings)


# Seconds after 08:00.   scheduled A / B / C      observed (arrival, departure) at A, B, C
#   T1 (V1)              0 / 300 / 600            (30, 30)    (320, 350)   (640, 640)
#   T2 (V2)              600 / 900 / 1200         (540, 540)  (860, 890)   (1190, 1190)
#   T3 (V1)              1200 / 1500 / 1800       (1620, 1620) (1900, 1940) (2230, 2230)
#   T4 (V3)              1800 / 2100 / 2400       (1680, 1680) (1950, 1970) (2260, 2260)
#   T5                   2400 / 2700 / 3000       never ran
ARRIVALS = [
    arrive("T1", 1, 30, vehicle="V1", boardings=5, alightings=0),
    arrive("T1", 2, 320, 350, vehicle="V1", boardings=3, alightings=2),
    arrive("T1", 3, 640, vehicle="V1", boardings=0, alightings=6),
    arrive("T2", 1, 540, vehicle="V2", boardings=4, alightings=0),
    arrive("T2", 2, 860, 890, vehicle="V2", boardings=1, alightings=1),
    arrive("T2", 3, 1190, vehicle="V2"),  # counter failed
    arrive("T3", 1, 1620, vehicle="V1"),
    arrive("T3", 2, 1900, 1940, vehicle="V1"),
    arrive("T3", 3, 2230, vehicle="V1"),
    arrive("T4", 1, 1680, vehicle="V3"),
    arrive("T4", 2, 1950, 1970, vehicle="V3"),
    arrive("T4", 3, 2260, vehicle="V3"),
]


# --------------------------------------------------------------------- on time
def test_on_time_performance_per_stop_with_the_default_window():
    otp = on_time_performance(ARRIVALS, the_feed(), by=("stop",))
    # departures vs schedule at A: T1 +30 on, T2 -60 on (the edge), T3 +420 late, T4 -120 early
    a = otp[("A",)]
    assert (a.observed, a.early, a.on_time, a.late) == (4, 1, 2, 1)
    assert a.on_time_share == 0.5
    assert a.mean_deviation_s == pytest.approx((30 - 60 + 420 - 120) / 4)
    # departures at B: +50, -10, +440, -130; arrivals at the last stop C: +40, -10, +430, -140
    assert otp[("B",)].mean_deviation_s == pytest.approx((50 - 10 + 440 - 130) / 4)
    assert otp[("C",)].mean_deviation_s == pytest.approx((40 - 10 + 430 - 140) / 4)
    route = on_time_performance(ARRIVALS, the_feed(), by=("route", "hour"))
    assert list(route) == [("R1", 8)]
    assert (route[("R1", 8)].early, route[("R1", 8)].on_time, route[("R1", 8)].late) == (3, 6, 3)


def test_on_time_window_and_measure_are_configurable():
    wide = on_time_performance(ARRIVALS, the_feed(), by=("stop",), early_s=120, late_s=450)
    assert wide[("A",)].on_time == 4 and wide[("B",)].on_time == 3  # B: +440 on, -130 early
    arrivals = on_time_performance(ARRIVALS, the_feed(), by=("stop",), measure="arrival")
    # arrivals at B: +20, -40, +400, -150
    assert arrivals[("B",)].mean_deviation_s == pytest.approx((20 - 40 + 400 - 150) / 4)
    with pytest.raises(AnalyticsError, match="measure"):
        on_time_performance(ARRIVALS, the_feed(), measure="halfway")
    with pytest.raises(AnalyticsError, match="by: 'depot'"):
        on_time_performance(ARRIVALS, the_feed(), by=("depot",))


# --------------------------------------------------------------------- headways
def test_headway_regularity_bunching_and_gaps():
    stats = headway_regularity(ARRIVALS, the_feed(), by=("stop",))
    a = stats[("A",)]
    # arrivals at A 30, 540, 1620, 1680: headways 510, 1080, 60 against 600 scheduled
    assert a.headways == 3
    assert a.mean_s == pytest.approx(550.0)
    assert a.std_s == pytest.approx(math.sqrt((40**2 + 530**2 + 490**2) / 3))  # 417.37
    assert a.cv == pytest.approx(417.3727 / 550, rel=1e-6)  # 0.7589
    assert a.scheduled_mean_s == 600.0
    assert (a.bunching, a.gaps) == (1, 1)  # 60 < 150; 1080 > 900
    # at B 540, 1040, 50 and at C 550, 1040, 30: one bunching and one gap each
    route = headway_regularity(ARRIVALS, the_feed(), by=("route",))[("R1",)]
    assert (route.headways, route.bunching, route.gaps) == (9, 3, 3)
    strict = headway_regularity(ARRIVALS, the_feed(), by=(), bunching_ratio=0.9,
                                gap_ratio=1.8)[()]
    # under 540 s: 510, 60, 50, 30 (540 itself is not); over 1080 s: none (1080 is not)
    assert (strict.bunching, strict.gaps) == (4, 0)


def test_headway_events_name_the_buses():
    events = headway_events(ARRIVALS, the_feed())
    # in time order of the arrival closing the headway: 1620, 1680, 1900, 1950, 2230, 2260
    assert [(e.kind, e.stop_id) for e in events] == [
        ("gap", "A"), ("bunching", "A"), ("gap", "B"), ("bunching", "B"), ("gap", "C"),
        ("bunching", "C")]
    bunch = events[1]
    assert (bunch.trip_id, bunch.previous_trip_id, bunch.vehicle_id) == ("T4", "T3", "V3")
    assert (bunch.headway_s, bunch.scheduled_headway_s) == (60.0, 600.0)


def test_headways_of_a_frequency_based_route_use_headway_secs():
    arrivals = [arrive("F1", 1, 60, vehicle="F-a"), arrive("F1", 1, 540, vehicle="F-b"),
                arrive("F1", 1, 1500, vehicle="F-c")]
    stats = headway_regularity(arrivals, the_feed(), by=("route",))[("F",)]
    assert (stats.headways, stats.mean_s, stats.scheduled_mean_s) == (2, 720.0, 600.0)
    assert (stats.bunching, stats.gaps) == (0, 1)  # 480 fine, 960 > 900
    assert on_time_performance(arrivals, the_feed()) == {}  # no timetable to be late against


# ----------------------------------------------------------------- running times
def test_running_times_per_segment_median_and_p90():
    times = running_times(ARRIVALS, the_feed())
    ab = times[(("A", "B"), 8)]
    # A->B: 290, 320, 280, 270 -> sorted 270 280 290 320; p90 at rank 2.7: 290 + 0.7 x 30
    assert (ab.observed, ab.median_s, ab.p90_s, ab.mean_s) == (4, 285.0, 311.0, 290.0)
    assert ab.scheduled_median_s == 300.0
    bc = times[(("B", "C"), 8)]
    # B->C (from departure): 290, 300, 290, 290
    assert (bc.median_s, bc.p90_s) == (290.0, pytest.approx(297.0))
    rows = as_rows(times, ("segment", "hour"))
    assert rows[0]["from_stop_id"] == "A" and rows[0]["to_stop_id"] == "B"
    assert rows[0]["hour"] == 8 and rows[0]["median_s"] == 285.0


def test_running_time_needs_both_ends_of_the_segment():
    partial = [arrive("T1", 1, 30), arrive("T1", 3, 640)]  # B not seen
    assert running_times(partial, the_feed()) == {}


# ------------------------------------------------------------- service delivered
def test_service_delivered_trips_km_and_hours():
    service = service_delivered(ARRIVALS, the_feed())
    r1 = service[("R1",)]
    assert (r1.trips_scheduled, r1.trips_run, r1.share_run) == (5, 4, 0.8)
    assert (r1.km_scheduled, r1.km_run) == (15.0, 12.0)
    assert r1.hours_scheduled == pytest.approx(5 * 600 / 3600)
    # first departure to last arrival: 610 + 650 + 610 + 580 s
    assert r1.hours_run == pytest.approx(2450 / 3600)
    frequent = service[("F",)]
    assert (frequent.trips_scheduled, frequent.trips_run) == (6, 0)  # every 10 min for 1 h
    assert frequent.km_scheduled == pytest.approx(6 * 3.0, rel=0.01)  # stop to stop, 1.5 km each
    # a trip seen at one of its three stops did not run
    thin = [a for a in ARRIVALS if not (a.trip_id == "T4" and a.stop_sequence > 1)]
    assert service_delivered(thin, the_feed(), by=())[()].trips_run == 4 - 1


# ------------------------------------------------------------- fleet utilisation
def test_fleet_utilisation_per_hour():
    arrivals = [arrive("T1", 1, 30, vehicle="V1"), arrive("T1", 3, 640, vehicle="V1"),
                arrive("T2", 1, 3290, 3300, vehicle="V2"),  # 08:54:50, leaves 08:55
                arrive("T2", 3, 3920, vehicle="V2")]  # 09:05:20
    use = fleet_utilisation(arrivals, the_feed(), fleet_size=4)
    assert list(use) == [(DAY, 8), (DAY, 9)]
    eight, nine = use[(DAY, 8)], use[(DAY, 9)]
    assert (eight.vehicles_in_service, eight.share) == (2, 0.5)
    assert eight.vehicle_hours == pytest.approx((610 + 300) / 3600)
    assert (nine.vehicles_in_service, nine.share) == (1, 0.25)
    assert nine.vehicle_hours == pytest.approx(320 / 3600)
    assert fleet_utilisation(arrivals, the_feed())[(DAY, 8)].share == 1.0  # fleet seen: 2


# --------------------------------------------------------------------- ridership
def test_ridership_by_stop_and_route():
    by_stop = ridership(ARRIVALS, the_feed(), by=("stop",))
    assert (by_stop[("A",)].boardings, by_stop[("A",)].alightings) == (9, 0)
    assert (by_stop[("B",)].boardings, by_stop[("B",)].alightings) == (4, 3)
    c = by_stop[("C",)]
    assert (c.boardings, c.alightings, c.observations, c.counted) == (0, 6, 4, 1)
    total = ridership(ARRIVALS, the_feed(), by=("route", "hour"))[("R1", 8)]
    assert (total.boardings, total.alightings, total.counted) == (13, 9, 5)


def test_arrivals_that_do_not_fit_the_feed_are_named():
    with pytest.raises(AnalyticsError, match=r"arrival 0 \(trip 'T9'.*trip_id is not in the feed"):
        ridership([arrive("T9", 1, 0)], the_feed())
    with pytest.raises(AnalyticsError, match="stop_sequence is not a stop"):
        ridership([ObservedArrival("T1", 7, "A", EIGHT, EIGHT, "V1", DAY)], the_feed())
    with pytest.raises(AnalyticsError, match="stop_id 'C' is not the trip's stop 'A'"):
        ridership([ObservedArrival("T1", 1, "C", EIGHT, EIGHT, "V1", DAY)], the_feed())
