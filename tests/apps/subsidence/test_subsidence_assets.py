"""Chainage profile along a straight line with a known settlement trough."""

from __future__ import annotations

import numpy as np
import pytest

from cityos.apps.subsidence.assets import (
    AssetFormatError,
    chainage_profile,
    linear_assets_from_features,
    profile_figure,
    utm_crs,
)
from tests.apps.subsidence.test_subsidence_levelling import DAYS, make_store, metric_to_lonlat

LENGTH_M = 1000.0


def trough(x_m):
    """Velocity (mm/yr) of a Gaussian trough 20 mm/yr deep at chainage 500 m."""
    return -20.0 * np.exp(-(((np.asarray(x_m) - 500.0) / 100.0) ** 2))


@pytest.fixture
def line_and_points(tmp_path):
    # the line runs east along the UTM x axis; points every 10 m at 20 m either side and,
    # outside the 50 m buffer, at 80 m (fast sinking: must not count)
    x = np.arange(5.0, LENGTH_M, 10.0)
    xs = np.concatenate([x, x, x])
    ys = np.concatenate([np.full(x.size, 20.0), np.full(x.size, -20.0), np.full(x.size, 80.0)])
    velocity = np.concatenate([trough(x), trough(x), np.full(x.size, -99.0)])
    lon, lat = metric_to_lonlat(xs, ys)
    disp = velocity[:, None] * DAYS[None, :] / 365.25
    store = make_store(tmp_path / "store", lon, lat, disp, fit={"velocity_mm_yr": velocity})
    ends_lon, ends_lat = metric_to_lonlat([0.0, LENGTH_M], [0.0, 0.0])
    (asset,) = linear_assets_from_features([{
        "type": "Feature", "id": "metro-1", "properties": {"name": "Metro line 1", "kind": "rail"},
        "geometry": {"type": "LineString",
                     "coordinates": [[ends_lon[0], ends_lat[0]], [ends_lon[1], ends_lat[1]]]}}])
    return store, asset


def test_the_profile_finds_the_trough(line_and_points):
    store, asset = line_and_points
    profile = chainage_profile(store, asset, buffer_m=50.0, bin_m=50.0)
    assert profile.length_m == pytest.approx(LENGTH_M, abs=0.01)
    assert len(profile.count) == 20
    assert profile.count.tolist() == [10] * 20  # 5 chainages x 2 sides; the 80 m row is out
    assert profile.chainage_m[:2] == pytest.approx([25.0, 75.0])
    for k in range(20):
        expected = trough(np.arange(50.0 * k + 5.0, 50.0 * (k + 1), 10.0)).mean()
        assert profile.rate_mm_yr[k] == pytest.approx(expected, abs=1e-6)
        assert profile.cumulative_mm[k] == pytest.approx(expected * 360 / 365.25, abs=1e-3)
    deepest = int(np.argmin(profile.rate_mm_yr))
    assert profile.chainage_m[deepest] in (475.0, 525.0)
    assert profile.point_offset_m.max() == pytest.approx(20.0, abs=0.01)
    assert profile.to_json()["points"] == 200
    assert profile_figure(profile).get_label() == "Profile of metro-1"


def test_a_wider_buffer_takes_the_far_row_and_allowed_rows_restrict(line_and_points):
    store, asset = line_and_points
    wide = chainage_profile(store, asset, buffer_m=100.0, bin_m=100.0)
    assert wide.count.tolist() == [30] * 10
    ids = np.asarray(store.ids)
    allowed = np.flatnonzero(ids < 100)  # the +20 m side only
    narrow = chainage_profile(store, asset, buffer_m=50.0, bin_m=50.0, allowed_rows=allowed)
    assert narrow.count.tolist() == [5] * 20


def test_utm_zones():
    assert utm_crs(101.7, 3.1) == "EPSG:32647"
    assert utm_crs(-0.1, 51.5) == "EPSG:32630"
    assert utm_crs(151.2, -33.9) == "EPSG:32756"


def test_a_polygon_is_not_a_line():
    with pytest.raises(AssetFormatError, match="feature 1 \\(x\\): geometry: 'Polygon'"):
        linear_assets_from_features([{"type": "Feature", "id": "x", "geometry": {
            "type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}}])
