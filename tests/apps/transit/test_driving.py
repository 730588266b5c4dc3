"""Driver monitoring on crafted traces whose events are known by construction."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pytest
from pyproj import Geod

from cityos.apps.transit.driving import (
    DrivingEvent,
    DrivingRecord,
    DrivingThresholds,
    G,
    ScoreWeights,
    driving_scores,
    limit_lookup,
    monitor_driving,
    vehicle_kinematics,
    weekly_report,
)
from cityos.apps.transit.models import Ping, Stop

WGS84 = Geod(ellps="WGS84")
LAT0, LON0 = 4.8900, 114.9400  # Bandar Seri Begawan
T0 = 1_700_000_000.0  # 2023-11-15 06:13:20 in Asia/Brunei
KMH = 1 / 3.6


def straight(phases, v0=0.0, *, vehicle="BUS1", driver="D1", t0=T0, with_speed=True,
             doors=None, start=(LAT0, LON0)):
    """Pings at 1 Hz of a bus driving east; ``phases`` are (seconds, acceleration m/s2)."""
    times, speeds, dists = [0.0], [v0], [0.0]
    v, s, t = v0, 0.0, 0.0
    for duration, accel in phases:
        for _ in range(int(duration)):
            s += v + 0.5 * accel
            v = max(0.0, v + accel)
            t += 1.0
            times.append(t)
            speeds.append(v)
            dists.append(s)
    lon, lat, _ = WGS84.fwd(np.full(len(dists), start[1]), np.full(len(dists), start[0]),
                            np.full(len(dists), 90.0), np.array(dists))
    return [Ping(vehicle, t0 + t, float(la), float(lo),
                 speed_mps=float(sp) if with_speed else None,
                 bearing_deg=90.0 if with_speed else None, driver_id=driver,
                 doors_open=None if doors is None else doors(i, sp))
            for i, (t, sp, la, lo) in enumerate(zip(times, speeds, lat, lon, strict=True))]


def circle(radius_m, speed_mps, seconds, *, with_speed=True, t0=T0):
    """Pings at 1 Hz of a bus going clockwise (turning right) round a circle."""
    omega = math.degrees(speed_mps / radius_m)  # degrees per second
    az = np.array([i * omega for i in range(seconds + 1)])
    lon, lat, _ = WGS84.fwd(np.full(len(az), LON0), np.full(len(az), LAT0), az,
                            np.full(len(az), radius_m))
    return [Ping("BUS2", t0 + i, float(la), float(lo),
                 speed_mps=speed_mps if with_speed else None,
                 bearing_deg=float((a + 90.0) % 360.0) if with_speed else None, driver_id="D2")
            for i, (a, la, lo) in enumerate(zip(az, lat, lon, strict=True))]


def kinds(record: DrivingRecord) -> list[str]:
    return [e.kind for e in record.events]


# ---------------------------------------------------------------- braking / accelerating
@pytest.mark.parametrize("with_speed", [True, False], ids=["reported-speed", "from-positions"])
def test_braking_from_50_kmh_to_standstill_in_3_s_is_one_harsh_braking_of_0_47_g(with_speed):
    decel = 50 * KMH / 3  # 4.63 m/s2 = 0.472 g
    pings = straight([(10, 0.0), (3, -decel), (5, 0.0)], v0=50 * KMH, with_speed=with_speed)
    record = monitor_driving(pings)
    assert kinds(record) == ["harsh_braking"]
    event = record.events[0]
    assert event.magnitude == pytest.approx(decel / G, rel=0.01)  # 0.472 g
    assert event.magnitude == pytest.approx(0.472, abs=0.002)
    assert event.severity == 2  # 1.35 x the 0.35 g threshold
    assert (event.vehicle_id, event.driver_id) == ("BUS1", "D1")
    assert T0 + 9 <= event.t <= T0 + 11 and event.end_t <= T0 + 15
    assert event.lat == pytest.approx(LAT0, abs=1e-3)


def test_gentle_stops_and_starts_are_not_events():
    # 0 to 50 km/h in 15 s (0.094 g), cruise, 50 to 0 in 10 s (0.142 g)
    pings = straight([(15, 50 * KMH / 15), (20, 0.0), (10, -50 * KMH / 10), (15, 0.0)])
    along = vehicle_kinematics(pings).longitudinal_g
    assert np.nanmin(along) == pytest.approx(-50 * KMH / 10 / G, rel=1e-6)
    assert np.nanmax(along) == pytest.approx(50 * KMH / 15 / G, rel=1e-6)
    assert monitor_driving(pings).events == []


def test_no_acceleration_across_a_gps_outage():
    before = straight([(10, 0.0)], v0=50 * KMH)
    after = straight([(10, 0.0)], v0=0.0, t0=T0 + 40, start=(LAT0, LON0 + 0.002))
    assert monitor_driving(before + after).events == []


def test_harsh_acceleration_and_the_threshold_is_configurable():
    pings = straight([(5, 0.0), (4, 3.2), (10, 0.0)], v0=0.0)  # 3.2 m/s2 = 0.326 g
    assert kinds(monitor_driving(pings)) == ["harsh_acceleration"]
    assert monitor_driving(pings).events[0].magnitude == pytest.approx(3.2 / G, rel=1e-6)
    lenient = DrivingThresholds(harsh_acceleration_g=0.4)
    assert monitor_driving(pings, thresholds=lenient).events == []


def test_a_single_speed_spike_is_not_two_events():
    pings = straight([(20, 0.0)], v0=30 * KMH)
    spike = pings[10]
    pings[10] = Ping(spike.vehicle_id, spike.t, spike.lat, spike.lon, speed_mps=60 * KMH,
                     bearing_deg=90.0, driver_id="D1")
    assert monitor_driving(pings).events == []


# ------------------------------------------------------------------------- cornering
@pytest.mark.parametrize("with_speed", [True, False], ids=["reported", "from-positions"])
def test_constant_radius_turn_gives_v_squared_over_r(with_speed):
    # 36 km/h on a 25 m radius: 10**2 / 25 = 4 m/s2 = 0.408 g, a right turn
    pings = circle(25.0, 10.0, 8, with_speed=with_speed)
    lateral = vehicle_kinematics(pings).lateral_g
    expected = 10.0 ** 2 / 25.0 / G
    tolerance = 1e-3 if with_speed else 0.02
    assert np.nanmedian(lateral) == pytest.approx(expected, rel=tolerance)
    record = monitor_driving(pings)
    assert kinds(record) == ["harsh_cornering"]
    assert record.events[0].magnitude == pytest.approx(expected, rel=tolerance)
    assert "right turn" in record.events[0].detail


def test_a_one_ping_course_jump_is_not_cornering():
    pings = straight([(20, 0.0)], v0=40 * KMH)
    jump = pings[10]
    pings[10] = Ping(jump.vehicle_id, jump.t, jump.lat, jump.lon, jump.speed_mps, 120.0,
                     driver_id="D1")  # 30 degrees off for one fix: 1 g for a second
    assert np.nanmax(np.abs(vehicle_kinematics(pings).lateral_g)) > 0.5
    assert monitor_driving(pings).events == []


def test_wide_turn_is_measured_but_not_an_event():
    pings = circle(80.0, 10.0, 10)  # 1.25 m/s2 = 0.127 g
    assert np.nanmedian(vehicle_kinematics(pings).lateral_g) == pytest.approx(1.25 / G, rel=1e-3)
    assert monitor_driving(pings).events == []


# --------------------------------------------------------------------------- speeding
def test_speeding_against_a_per_road_class_limit():
    pings = straight([(40, 0.0)], v0=45 * KMH) + straight(
        [(40, 0.0)], v0=45 * KMH, t0=T0 + 41, start=(LAT0, LON0 + 0.01))
    road_class = limit_lookup(lambda p: "residential" if p.t <= T0 + 40 else "arterial",
                              {"residential": 30.0, "arterial": 60.0})
    record = monitor_driving(pings, speed_limit_kmh=road_class)
    assert kinds(record) == ["speeding"]
    event = record.events[0]
    assert event.magnitude == pytest.approx(15.0, abs=1e-6)  # 45 in a 30 zone
    assert event.severity == 2 and event.end_t - event.t == pytest.approx(40.0)
    assert "limit is 30 km/h" in event.detail
    # a short burst (5 s over) is not an event, nor is the 5 km/h margin
    burst = straight([(5, 0.0)], v0=45 * KMH)
    assert monitor_driving(burst, speed_limit_kmh=30.0).events == []
    assert monitor_driving(straight([(30, 0.0)], v0=34 * KMH), speed_limit_kmh=30.0).events == []


# ----------------------------------------------------------------------------- idling
def test_long_idling_away_from_stops_but_not_at_a_stop():
    pings = straight([(10, 0.0), (400, 0.0)], v0=0.0)  # stands 410 s
    record = monitor_driving(pings)
    assert kinds(record) == ["idling"]
    assert record.events[0].magnitude == pytest.approx(410.0)
    at_stop = [Stop("S1", "Kianggeh", LAT0 + 0.0001, LON0)]  # 11 m away
    assert monitor_driving(pings, stops=at_stop).events == []
    far_stop = [Stop("S2", "Far", LAT0 + 0.01, LON0)]
    assert kinds(monitor_driving(pings, stops=far_stop)) == ["idling"]
    assert monitor_driving(straight([(200, 0.0)], v0=0.0)).events == []  # short: fine


# ----------------------------------------------------------------------------- doors
def test_door_open_while_moving():
    def doors(i, speed):
        return 20 <= i <= 22 or i >= 30  # open at 20 km/h for 3 s, and when standing

    pings = straight([(20, 0.0), (2, 0.0), (3, -20 * KMH / 3), (10, 0.0)], v0=20 * KMH,
                     doors=doors)
    record = monitor_driving(pings)
    assert kinds(record) == ["door_open_moving"]
    event = record.events[0]
    assert event.magnitude == pytest.approx(20.0)
    assert event.t == T0 + 20 and event.end_t == T0 + 22 and event.severity == 3
    assert event.as_geojson()["geometry"]["coordinates"][1] == pytest.approx(LAT0, abs=1e-3)


# ------------------------------------------------------------------- scores and report
def _event(kind, driver, vehicle, severity):
    return DrivingEvent(kind, vehicle, driver, T0, T0 + 1, LAT0, LON0, 0.5, severity)


def test_scores_from_weighted_events_per_100_km():
    record = DrivingRecord(
        events=[_event("harsh_braking", "D1", "BUS1", 2),
                _event("door_open_moving", "D3", "BUS2", 3)],
        km_by_driver={"D1": 20.0, "D2": 20.0, "D3": 5.0},
        km_by_vehicle={"BUS1": 40.0, "BUS2": 5.0})
    by_driver = driving_scores(record)
    # D1: one severity-2 braking (weight 1 x 2) in 20 km = 10 per 100 km -> 100 - 5 x 10
    assert by_driver["D1"].weighted_per_100km == pytest.approx(10.0)
    assert by_driver["D1"].score == pytest.approx(50.0)
    assert by_driver["D1"].events == {"harsh_braking": 1}
    assert by_driver["D2"].score == 100.0
    assert by_driver["D3"].score is None  # 5 km is too little to judge
    assert driving_scores(record, weights=ScoreWeights(min_km=1.0))["D3"].score == 0.0
    by_vehicle = driving_scores(record, by="vehicle")
    assert by_vehicle["BUS1"].score == pytest.approx(75.0)  # 2 per 40 km = 5 / 100 km
    with pytest.raises(ValueError, match="by"):
        driving_scores(record, by="depot")


def test_kilometres_follow_a_driver_change_and_standing_adds_none():
    drive = straight([(90, 0.0), (10, -1.0)], v0=36 * KMH)  # 900 m, then 50 m to a stop
    drive = [p if i <= 60 else Ping(p.vehicle_id, p.t, p.lat, p.lon, p.speed_mps,
                                    p.bearing_deg, driver_id="D2")
             for i, p in enumerate(drive)]
    end = drive[-1]
    standing = [Ping("BUS1", end.t + i, end.lat, end.lon, speed_mps=0.0, driver_id="D2")
                for i in range(1, 120)]
    record = monitor_driving(drive + standing, stops=[Stop("S", "End", end.lat, end.lon)])
    # the step from D1's last ping to D2's first is D1's
    assert record.km_by_driver == pytest.approx({"D1": 0.610, "D2": 0.340}, abs=1e-3)
    assert record.km_by_vehicle == pytest.approx({"BUS1": 0.950}, abs=1e-3)
    assert record.events == []


def test_weekly_report_rows_csv_and_markdown():
    decel = 50 * KMH / 3
    harsh = straight([(10, 0.0), (3, -decel), (5, 0.0)], v0=50 * KMH, driver="D1")
    calm = straight([(60, 0.0)], v0=30 * KMH, vehicle="BUS2", driver="D2")
    next_week = straight([(3, -decel)], v0=50 * KMH, driver="D1", t0=T0 + 8 * 86400)
    report = weekly_report(harsh + calm + next_week, date(2023, 11, 13), "Asia/Brunei",
                           weights=ScoreWeights(min_km=0.1))
    assert [e.kind for e in report.events] == ["harsh_braking"]
    rows = report.rows()
    assert [r["driver"] for r in rows] == ["D1", "D2"]  # worst first
    assert rows[0]["harsh_braking"] == 1 and rows[1]["score"] == 100.0
    assert rows[0]["score"] < 100.0
    csv_text = report.to_csv("vehicle")
    assert csv_text.splitlines()[0].startswith("vehicle,km,harsh_braking,")
    assert len(csv_text.splitlines()) == 3
    markdown = report.to_markdown()
    assert markdown.startswith("# Driving report 2023-11-13 to 2023-11-19")
    assert "| D1 |" in markdown and "- Harsh braking: 1" in markdown
