"""Shape snapping: analytical answers on a straight line, a loop route, an out-and-back
route, and noisy GPS."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pyproj import Transformer

from cityos.apps.transit.models import Shape
from cityos.apps.transit.snapping import ShapeSnapper, utm_epsg

# metric ground truth in UTM zone 50N (Bandar Seri Begawan), converted to WGS84
EPSG = 32650
X0, Y0 = 530_000.0, 540_000.0
_TO_WGS84 = Transformer.from_crs(EPSG, 4326, always_xy=True)


def latlon(x, y):
    """WGS84 (lat, lon) of local metres (x east, y north) from the origin."""
    lon, lat = _TO_WGS84.transform(np.asarray(x, float) + X0, np.asarray(y, float) + Y0)
    return lat, lon


def shape_from_xy(shape_id, x, y, dist=None):
    x, y = np.asarray(x, float), np.asarray(y, float)
    if dist is None:
        dist = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
    lat, lon = latlon(x, y)
    return Shape(shape_id, np.asarray(lon), np.asarray(lat), np.asarray(dist, float))


def straight(length=5000.0, n=51):
    x = np.linspace(0.0, length, n)
    return shape_from_xy("straight", x, np.zeros(n))


def loop(radius=500.0, n=73):
    """A circle starting and ending at the same stop (angle 0), anticlockwise."""
    a = np.linspace(0.0, 2 * math.pi, n)
    a[-1] = 0.0  # the same point exactly
    x, y = radius * np.cos(a), radius * np.sin(a)
    x[-1], y[-1] = x[0], y[0]
    return shape_from_xy("loop", x, y), x, y


def out_and_back(leg=2000.0, n=41):
    """A to B along a bent street, then B to A along identical coordinates."""
    s = np.linspace(0.0, leg, n)
    x, y = s.copy(), np.where(s > 1000.0, s - 1000.0, 0.0) * 0.5  # a bend at 1 km
    x = np.concatenate([x, x[-2::-1]])
    y = np.concatenate([y, y[-2::-1]])
    return shape_from_xy("outback", x, y), x, y


def point_on(x, y, dist_m):
    """Local metres of the point ``dist_m`` along a polyline."""
    d = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
    return np.interp(dist_m, d, x), np.interp(dist_m, d, y)


# ---------------------------------------------------------------------- basics
def test_utm_zone_of_brunei_and_of_the_south():
    assert utm_epsg(114.94, 4.89) == 32650
    assert utm_epsg(-43.2, -22.9) == 32723


def test_straight_line_matches_the_analytical_distance_and_offset():
    snapper = ShapeSnapper(straight())
    assert snapper.length_m == pytest.approx(5000.0)
    for along, across in [(0.0, 0.0), (1234.5, 20.0), (2500.0, -35.0), (4999.0, 5.0)]:
        lat, lon = latlon(along, across)
        got = snapper.snap(float(lat), float(lon))
        assert got.dist_m == pytest.approx(along, abs=0.01)
        assert got.offset_m == pytest.approx(abs(across), abs=0.01)
        back_lat, back_lon = latlon(along, 0.0)
        assert got.lat == pytest.approx(float(back_lat), abs=1e-7)
        assert got.lon == pytest.approx(float(back_lon), abs=1e-7)
    # beyond the ends: clamped to the ends, offset to the end point
    lat, lon = latlon(-30.0, 40.0)
    got = snapper.snap(float(lat), float(lon))
    assert got.dist_m == pytest.approx(0.0)
    assert got.offset_m == pytest.approx(50.0, abs=0.01)


def test_distance_follows_the_feeds_own_frame():
    # shape_dist_traveled in the feed's frame (here 2x the metres): interpolated in it
    x = np.linspace(0.0, 1000.0, 11)
    shape = shape_from_xy("scaled", x, np.zeros(11), dist=2 * x)
    lat, lon = latlon(250.0, 10.0)
    assert ShapeSnapper(shape).snap(float(lat), float(lon)).dist_m == pytest.approx(500.0, abs=0.01)


def test_missing_or_broken_dist_is_measured_on_the_map():
    x = np.linspace(0.0, 1000.0, 11)
    shape = shape_from_xy("nodist", x, np.zeros(11), dist=np.full(11, np.nan))
    lat, lon = latlon(300.0, 0.0)
    assert ShapeSnapper(shape).snap(float(lat), float(lon)).dist_m == pytest.approx(300.0, abs=0.01)


def test_off_route_is_none_and_too_short_a_shape_is_refused():
    snapper = ShapeSnapper(straight(), max_offset_m=80.0)
    lat, lon = latlon(1000.0, 300.0)
    assert snapper.snap(float(lat), float(lon)) is None
    assert snapper.snap(float(lat), float(lon), previous_dist_m=900.0) is None
    assert snapper.snap(float(lat), float(lon), max_offset_m=400.0).dist_m == pytest.approx(1000.0)
    lat1, lon1 = latlon([0.0], [0.0])
    with pytest.raises(ValueError, match="one.*2 points|at least 2 points"):
        ShapeSnapper(Shape("one", lon1, lat1, np.zeros(1)))


def test_backward_jitter_keeps_progress_and_an_outage_is_caught_up():
    snapper = ShapeSnapper(straight(), max_advance_m=500.0)
    lat, lon = latlon(990.0, 12.0)
    got = snapper.snap(float(lat), float(lon), previous_dist_m=1000.0)
    assert got.dist_m == pytest.approx(1000.0)  # clamped, not back to 990
    assert got.offset_m == pytest.approx(12.0, abs=0.01)  # perpendicular error only
    # after an outage the bus is 3 km further than the window: found on the rest
    lat, lon = latlon(4000.0, 5.0)
    got = snapper.snap(float(lat), float(lon), previous_dist_m=1000.0)
    assert got.dist_m == pytest.approx(4000.0, abs=0.01)


# ------------------------------------------------------------------ loop route
def test_loop_route_start_snaps_near_zero_and_end_near_length():
    shape, x, y = loop()
    snapper = ShapeSnapper(shape)
    length = snapper.length_m
    assert length == pytest.approx(2 * math.pi * 500.0, rel=1e-3)
    # at the shared first/last stop with no history: the beginning
    lat, lon = latlon(x[0], y[0])
    assert snapper.snap(float(lat), float(lon)).dist_m == pytest.approx(0.0, abs=1.0)
    # a bus driving the whole loop, 1 ping per 10 m, passing the start/end point
    truth = np.arange(0.0, length + 0.1, 10.0)
    px, py = point_on(x, y, truth)
    lats, lons = latlon(px, py)
    progress, got = None, []
    for la, lo in zip(lats, lons, strict=True):
        res = snapper.snap(float(la), float(lo), previous_dist_m=progress, max_advance_m=300.0)
        progress = res.dist_m
        got.append(progress)
    got = np.array(got)
    assert got[0] == pytest.approx(0.0, abs=1.0)
    assert got[1] == pytest.approx(10.0, abs=1.0)
    assert got[-1] == pytest.approx(length, abs=2.0)
    assert np.abs(got - truth).max() < 2.0
    # near the end, with progress, the same point is the end, not the start
    near_end = snapper.snap(float(lats[0]), float(lons[0]), previous_dist_m=length - 30.0)
    assert near_end.dist_m == pytest.approx(length, abs=1.0)


# ------------------------------------------------------------- out-and-back route
def test_out_and_back_return_leg_snaps_to_length_minus_x():
    shape, x, y = out_and_back()
    snapper = ShapeSnapper(shape)
    length = snapper.length_m
    leg = length / 2
    truth = np.arange(0.0, length + 0.1, 15.0)
    px, py = point_on(x, y, truth)
    lats, lons = latlon(px, py)
    progress, got = None, []
    for la, lo in zip(lats, lons, strict=True):
        progress = snapper.snap(float(la), float(lo), previous_dist_m=progress).dist_m
        got.append(progress)
    got = np.array(got)
    assert np.abs(got - truth).max() < 1.0
    # a ping 500 m from A on the way back, just after the turn: length - 500
    bx, by = point_on(x, y, 500.0)
    lat, lon = latlon(bx, by)
    back = snapper.snap(float(lat), float(lon), previous_dist_m=leg + 100.0)
    assert back.dist_m == pytest.approx(length - 500.0, abs=0.5)
    # ... and with no history the outbound leg (the earliest) is taken
    assert snapper.snap(float(lat), float(lon)).dist_m == pytest.approx(500.0, abs=0.5)
    # both legs are distinct branches of that position
    assert [round(b.dist_m) for b in snapper.branches(float(lat), float(lon))] == \
        [500, round(length - 500.0)]


def test_track_on_out_and_back_finds_the_return_leg_from_direction():
    shape, x, y = out_and_back()
    snapper = ShapeSnapper(shape)
    length = snapper.length_m
    # the vehicle is first seen on the way back, 1500 m then 1400, ... from A
    from_a = np.arange(1500.0, 900.0, -100.0)
    px, py = point_on(x, y, length - from_a)
    lats, lons = latlon(px, py)
    dist, offset = snapper.snap_track(lats, lons)
    np.testing.assert_allclose(dist, length - from_a, atol=0.5)
    assert np.nanmax(offset) < 0.5


# --------------------------------------------------------------------- noisy GPS
@pytest.mark.parametrize("route", ["wiggly", "out_and_back", "loop"])
def test_noisy_gps_gives_monotonic_progress_within_15_m_rms(route):
    rng = np.random.default_rng(7)
    if route == "wiggly":
        s = np.linspace(0.0, 1.0, 500)
        x, y = s * 8000.0, 600.0 * np.sin(s * 9.0)
        shape = shape_from_xy(route, x, y)
    elif route == "out_and_back":
        shape, x, y = out_and_back()
    else:
        shape, x, y = loop()
    snapper = ShapeSnapper(shape)
    truth = np.arange(0.0, snapper.length_m, 8.0)  # 8 m/s, one ping a second
    px, py = point_on(x, y, truth)
    lats, lons = latlon(px + rng.normal(0, 10.0, len(px)), py + rng.normal(0, 10.0, len(py)))
    progress, got = None, []
    for la, lo in zip(lats, lons, strict=True):
        res = snapper.snap(float(la), float(lo), previous_dist_m=progress, max_advance_m=300.0)
        if res is not None:
            progress = res.dist_m
        got.append(np.nan if progress is None else progress)
    got = np.array(got)
    assert np.isfinite(got).all()
    assert (np.diff(got) >= 0).all()
    rms = math.sqrt(float(np.mean((got - truth) ** 2)))
    assert rms < 15.0, rms
