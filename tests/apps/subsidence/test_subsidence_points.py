"""PointStore: import in chunks, grid-indexed queries against brute force, series reads
and fitted columns."""

from __future__ import annotations

import numpy as np
import pytest
from shapely.geometry import Polygon

from cityos.apps.subsidence.points import PointStore, PointStoreError, haversine_m
from cityos.apps.subsidence.products import read_egms_csv, read_mintpy
from cityos.apps.subsidence.synthetic import mintpy_attributes, write_mintpy_timeseries

DATES = np.datetime64("2021-01-01") + np.arange(6) * np.timedelta64(12, "D")
ROWS, COLS = 60, 50


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A 60 x 50 product whose pixel (r, c) moves (100 r + c) / 100 mm per epoch, with a
    few NaN pixels, imported 700 points at a time (rows span chunks, cells reorder)."""
    tmp = tmp_path_factory.mktemp("store")
    r, c = np.mgrid[0:ROWS, 0:COLS]
    cube = np.stack([i * (100 * r + c) / 100.0 / 1000.0 for i in range(len(DATES))])
    cube[:, 7, 7] = np.nan
    cube[:, 30, 1] = np.nan
    attrs = mintpy_attributes(ROWS, COLS, DATES, x_first=106.70, y_first=-6.10,
                              x_step=0.002, y_step=-0.002, ref_yx=(0, 0))
    write_mintpy_timeseries(tmp / "timeseries.h5", DATES, cube.astype(np.float32), attrs)
    return PointStore.create(tmp / "points", read_mintpy(tmp / "timeseries.h5"), chunk=700,
                             cell_deg=0.007)


def _pixel_series(ids):
    r, c = np.divmod(np.asarray(ids), COLS)
    return np.arange(len(DATES))[None, :] * ((100 * r + c) / 100.0)[:, None]


def test_import_keeps_every_point_once_sorted_by_cell(store):
    reopened = PointStore.open(store.directory)
    assert reopened.n_points == ROWS * COLS - 2
    assert sorted(reopened.ids) == sorted(set(range(ROWS * COLS)) - {7 * COLS + 7, 30 * COLS + 1})
    assert np.all(np.diff(reopened._column("cell")) >= 0)
    assert list(reopened.dates) == list(DATES)
    rows = np.array([5, 0, 2000, 17, 2999 - 2, 5])
    np.testing.assert_allclose(reopened.displacement(rows), _pixel_series(reopened.ids[rows]),
                               atol=1e-4)
    np.testing.assert_allclose(reopened.displacement_block(100, 140),
                               _pixel_series(reopened.ids[100:140]), atol=1e-4)


def test_bbox_near_and_polygon_match_brute_force(store):
    rng = np.random.default_rng(5)
    lon, lat = store.lon, store.lat
    for _ in range(20):
        w, s = rng.uniform(106.69, 106.79), rng.uniform(-6.23, -6.09)
        e, n = w + rng.uniform(0, 0.05), s + rng.uniform(0, 0.05)
        brute = np.flatnonzero((lon >= w) & (lon <= e) & (lat >= s) & (lat <= n))
        fresh = PointStore.open(store.directory)          # coordinates read per range
        assert np.array_equal(np.sort(fresh.select_bbox(w, s, e, n)), brute)
        assert np.array_equal(np.sort(store.select_bbox(w, s, e, n)), brute)
    for _ in range(20):
        x, y, radius = rng.uniform(106.69, 106.81), rng.uniform(-6.23, -6.09), \
            rng.uniform(50, 3000)
        brute = np.flatnonzero(haversine_m(x, y, lon, lat) <= radius)
        assert np.array_equal(np.sort(PointStore.open(store.directory).select_near(
            x, y, radius)), brute)
    import shapely

    for _ in range(10):
        cx, cy = rng.uniform(106.71, 106.79), rng.uniform(-6.21, -6.11)
        angles = np.sort(rng.uniform(0, 2 * np.pi, 7))
        radii = rng.uniform(0.003, 0.03, 7)
        poly = Polygon(np.column_stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)]))
        brute = np.flatnonzero(shapely.intersects_xy(poly, lon, lat))
        assert np.array_equal(np.sort(store.select_polygon(poly)), brute)
    assert len(store.select_bbox(107.5, 0, 108, 1)) == 0


def test_haversine_against_a_known_distance():
    # one degree of latitude on the 6,371,008.8 m sphere
    assert haversine_m(106.8, -6.0, 106.8, -7.0) == pytest.approx(111_195.08, abs=0.05)


def test_fitted_columns_round_trip(store):
    with pytest.raises(PointStoreError, match="not fitted"):
        PointStore.open(store.directory).fitted()
    n = store.n_points
    velocity = np.arange(n, dtype=np.float64)
    breaks = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    breaks[3] = np.datetime64("2021-01-13")
    store.write_fit({"velocity_mm_yr": velocity, "trend_change": np.arange(n) == 3,
                     "break_date": breaks})
    again = PointStore.open(store.directory)
    got = again.fitted(rows=[3, 10])
    assert list(got["velocity_mm_yr"]) == [3.0, 10.0]
    assert list(got["trend_change"]) == [True, False]
    assert got["break_date"][0] == np.datetime64("2021-01-13")
    assert np.isnat(got["break_date"][1])
    with pytest.raises(ValueError, match="velocity_mm_yr"):
        store.write_fit({"velocity_mm_yr": velocity[:-1]})


def test_egms_store_keeps_string_ids(tmp_path):
    head = "pid,latitude,longitude,height,mean_velocity,20200101,20200113,20200125"
    rows = [f"P{i:03d},{-6.2 + i * 1e-3},{106.8 + (i % 7) * 1e-3},1,0,0,{i},{2 * i}"
            for i in range(40)]
    (tmp_path / "e.csv").write_text("\n".join([head] + rows) + "\n")
    store = PointStore.create(tmp_path / "s", read_egms_csv(tmp_path / "e.csv"), chunk=9)
    assert store.n_points == 40
    assert sorted(store.ids) == [f"P{i:03d}" for i in range(40)]
    row = int(np.flatnonzero(store.ids == "P017")[0])
    np.testing.assert_allclose(store.displacement([row])[0], [0, 17, 34])
