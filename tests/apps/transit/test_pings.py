"""AVL ping validation and cleaning: duplicates, reordering, late pings, jumps."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import pytest

from cityos.apps.transit.models import Ping
from cityos.apps.transit.pings import PingCleaner, PingError, distance_m, parse_ping

T0 = datetime(2024, 3, 4, 8, 0, tzinfo=UTC).timestamp()
LAT0, LON0 = 4.89, 114.94
M_PER_DEG_LAT = 111_195.0


def ping(t, east_m=0.0, vehicle="bus-1", **extra):
    """A ping ``t`` seconds after 08:00 UTC, ``east_m`` east of a fixed point."""
    lon = LON0 + east_m / (M_PER_DEG_LAT * math.cos(math.radians(LAT0)))
    return Ping(vehicle, T0 + t, LAT0, lon, **extra)


def drive(n, speed_mps=10.0, vehicle="bus-1"):
    return [ping(i, i * speed_mps, vehicle) for i in range(n)]


# ------------------------------------------------------------------- parse_ping
def test_parse_ping_reads_iso_epoch_and_the_optional_fields():
    got = parse_ping({"vehicle_id": "bus-7", "time": "2024-03-04T16:00:05+08:00",
                      "lat": "4.89", "lon": 114.94, "speed": 8.5, "bearing": 270,
                      "trip_id": "T1", "driver_id": "D9", "passengers_in": 3,
                      "passengers_out": 0, "occupancy": 41, "doors": "closed",
                      "firmware": "2.1"})
    assert got == Ping("bus-7", T0 + 5, 4.89, 114.94, speed_mps=8.5, bearing_deg=270.0,
                       trip_id="T1", driver_id="D9", passengers_in=3, passengers_out=0,
                       occupancy=41, doors_open=False)
    assert parse_ping({"vehicle": "b", "t": T0, "latitude": 1, "lng": 2}).t == T0
    assert parse_ping({"vehicle": "b", "timestamp": T0 * 1000, "lat": 1, "lon": 2}).t == T0
    assert parse_ping({"vehicle": "b", "t": "2024-03-04T08:00:00Z", "lat": 1, "lon": 2}).t == T0
    assert parse_ping({"t": T0, "lat": 1, "lon": 2, "speed_kmh": 36}, vehicle_id="topic-bus") \
        == Ping("topic-bus", T0, 1.0, 2.0, speed_mps=10.0)
    local = parse_ping({"vehicle_id": "b", "t": "2024-03-04 16:00:00", "lat": 1, "lon": 2},
                       timezone="Asia/Brunei")
    assert local.t == T0


@pytest.mark.parametrize("payload, field, words", [
    ({"t": 1, "lat": 1, "lon": 2}, "vehicle_id", "required"),
    ({"vehicle_id": "b", "lat": 1, "lon": 2}, "t", "required"),
    ({"vehicle_id": "b", "t": "yesterday", "lat": 1, "lon": 2}, "t", "ISO 8601"),
    ({"vehicle_id": "b", "time": "2024-03-04T08:00:00", "lat": 1, "lon": 2}, "time", "offset"),
    ({"vehicle_id": "b", "t": 1e9, "lon": 2}, "lat", "required"),
    ({"vehicle_id": "b", "t": 1e9, "lat": 91, "lon": 2}, "lat", "between -90 and 90"),
    ({"vehicle_id": "b", "t": 1e9, "lat": 1, "longitude": -181}, "longitude", "between"),
    ({"vehicle_id": "b", "t": 1e9, "lat": 1, "lon": "east"}, "lon", "number"),
    ({"vehicle_id": "b", "t": 1e9, "lat": True, "lon": 2}, "lat", "number"),
    ({"vehicle_id": "b", "t": 1e9, "lat": float("nan"), "lon": 2}, "lat", "finite"),
    ({"vehicle_id": "b", "t": 1e9, "lat": 1, "lon": 2, "speed": -3}, "speed", ">= 0"),
    ({"vehicle_id": "b", "t": 1e9, "lat": 1, "lon": 2, "heading": 400}, "heading", "360"),
    ({"vehicle_id": "b", "t": 1e9, "lat": 1, "lon": 2, "passengers_in": -1}, "passengers_in",
     "whole number"),
    ({"vehicle_id": "b", "t": 1e9, "lat": 1, "lon": 2, "occupancy": 2.5}, "occupancy",
     "whole number"),
    ({"vehicle_id": "b", "t": 1e9, "lat": 1, "lon": 2, "doors": "ajar"}, "doors", "open"),
    ({"vehicle_id": "", "t": 1e9, "lat": 1, "lon": 2}, "vehicle_id", "empty"),
])
def test_parse_ping_errors_name_the_field(payload, field, words):
    with pytest.raises(PingError) as caught:
        parse_ping(payload)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert words in str(caught.value)


def test_parse_ping_refuses_a_non_object():
    with pytest.raises(PingError, match="payload: must be a JSON object"):
        parse_ping(["bus", 1, 2])  # type: ignore[arg-type]


# ---------------------------------------------------------------------- cleaning
def test_clean_stream_passes_through_in_order():
    cleaner = PingCleaner()
    pings = drive(30)
    out = [p for q in pings for p in cleaner.accept(q)] + cleaner.flush()
    assert out == pings
    stats = cleaner.stats["bus-1"]
    assert (stats.received, stats.released, stats.rejected_total) == (30, 30, 0)


def test_duplicates_are_dropped_and_counted():
    cleaner = PingCleaner(reorder_s=2.0)
    pings = drive(10)
    stream = []
    for p in pings:
        stream.append(p)
        if p.t - T0 in (3, 7):
            stream.append(p)  # the device sent it twice
        if p.t - T0 == 5:
            stream.append(ping(5.2, 50.3))  # the same fix again, 0.2 s and 30 cm later
    stream.append(pings[1])  # a repeat of one released long ago: a duplicate, not late
    out = [p for q in stream for p in cleaner.accept(q)] + cleaner.flush()
    assert out == pings
    assert cleaner.rejected["bus-1"] == {"duplicate": 3, "near_duplicate": 1}
    # a standing bus reporting each second is not a duplicate
    standing = PingCleaner(reorder_s=0)
    out = [p for i in range(5) for p in standing.accept(ping(i, 0.0, "bus-2"))]
    assert len(out) == 5 and standing.rejected["bus-2"] == {}


def test_shuffled_pings_within_the_window_come_out_sorted():
    rng = random.Random(3)
    pings = drive(200)
    shuffled = list(pings)
    # local disorder: each ping moved at most 3 places (3 s) from its slot
    for start in range(0, len(shuffled), 4):
        chunk = shuffled[start:start + 4]
        rng.shuffle(chunk)
        shuffled[start:start + 4] = chunk
    assert shuffled != pings
    cleaner = PingCleaner(reorder_s=4.0, reorder_count=10)
    out = [p for q in shuffled for p in cleaner.accept(q)]
    assert cleaner.held("bus-1") > 0  # the newest still wait for stragglers
    out += cleaner.flush("bus-1")
    assert out == pings
    assert cleaner.rejected["bus-1"] == {}


def test_a_ping_older_than_the_released_is_late_and_counted():
    cleaner = PingCleaner(reorder_s=2.0, reorder_count=5)
    pings = drive(20)
    straggler = pings[4]
    stream = [p for p in pings if p is not straggler]
    out = [p for q in stream[:15] for p in cleaner.accept(q)]
    out += cleaner.accept(straggler)  # 10 s late, far beyond the 2 s window
    out += [p for q in stream[15:] for p in cleaner.accept(q)] + cleaner.flush()
    assert straggler not in out
    assert out == stream
    assert cleaner.rejected["bus-1"] == {"late": 1}


def test_reorder_count_bounds_the_wait():
    cleaner = PingCleaner(reorder_s=1000.0, reorder_count=3)
    out = [p for q in drive(10) for p in cleaner.accept(q)]
    assert len(out) == 7 and cleaner.held("bus-1") == 3


def test_no_reordering_releases_at_once():
    cleaner = PingCleaner(reorder_s=0.0)
    assert cleaner.accept(ping(0)) == [ping(0)]
    assert cleaner.accept(ping(1, 10.0)) == [ping(1, 10.0)]


def test_a_teleport_is_rejected_and_counted_and_the_route_goes_on():
    cleaner = PingCleaner(max_speed_mps=120 / 3.6, reorder_s=0.0)
    pings = drive(20)
    teleport = ping(10.5, 100 + 8_000.0)  # 8 km in half a second
    stream = pings[:11] + [teleport] + pings[11:]
    out = [p for q in stream for p in cleaner.accept(q)]
    assert out == pings
    assert cleaner.rejected["bus-1"] == {"jump": 1}
    # 30 m/s is fine under 120 km/h; 40 m/s is not
    fast = PingCleaner(max_speed_mps=120 / 3.6, reorder_s=0.0, position_tolerance_m=0.0)
    assert len([p for i in range(5) for p in fast.accept(ping(i, 30.0 * i, "car"))]) == 5
    assert fast.accept(ping(5, 150 + 200.0, "car")) == []
    assert fast.rejected["car"] == {"jump": 1}


def test_consistent_pings_after_a_bad_anchor_take_over():
    cleaner = PingCleaner(reorder_s=0.0, reanchor_after=3)
    bad_first = ping(0, 50_000.0)  # the first fix of the day was wrong
    released = cleaner.accept(bad_first)
    for i in range(1, 6):
        released += cleaner.accept(ping(i, 10.0 * i))
    assert released == [bad_first, ping(3, 30.0), ping(4, 40.0), ping(5, 50.0)]
    stats = cleaner.stats["bus-1"]
    assert stats.rejected == {"jump": 2} and stats.reanchored == 1


def test_counts_are_kept_per_vehicle():
    cleaner = PingCleaner(reorder_s=0.0)
    a, b = drive(5, vehicle="A"), drive(5, vehicle="B")
    for pa, pb in zip(a, b, strict=True):
        cleaner.accept(pa)
        cleaner.accept(pb)
    cleaner.accept(a[2])
    cleaner.accept(ping(9, 5_000_000.0, "B"))
    assert cleaner.rejected == {"A": {"duplicate": 1}, "B": {"jump": 1}}
    assert cleaner.stats["A"].released == 5 and cleaner.stats["B"].released == 5


def test_null_island_invalid_and_future_fixes_are_rejected():
    cleaner = PingCleaner(reorder_s=0.0)
    assert cleaner.accept(Ping("bus-1", T0, 0.0, 0.0)) == []
    assert cleaner.accept(Ping("bus-1", T0, float("nan"), 114.9)) == []
    assert cleaner.accept(ping(3600), now=T0) == []
    assert cleaner.accept(ping(30), now=T0) == [ping(30)]
    assert cleaner.rejected["bus-1"] == {"null_position": 1, "invalid": 1, "future": 1}


def test_release_due_lets_out_a_quiet_vehicles_last_pings():
    cleaner = PingCleaner(reorder_s=5.0)
    out = [p for q in drive(3) for p in cleaner.accept(q)]
    assert out == [] and cleaner.held("bus-1") == 3
    assert cleaner.release_due(now=T0 + 6.5) == drive(2)
    assert cleaner.release_due(now=T0 + 60) == drive(3)[2:]


def test_distance_is_the_great_circle():
    # one degree of latitude on the mean sphere
    assert distance_m(0.0, 0.0, 1.0, 0.0) == pytest.approx(111_195.0, rel=1e-4)
